//! Decoder for MySQL's binary `DECIMAL` representation (column type
//! `NEWDECIMAL`, 246) as it appears in row events and inside binary JSON
//! opaque values.
//!
//! Format: the digits left and right of the decimal point are packed
//! separately. Each complete group of nine decimal digits takes four bytes
//! (big-endian); a partial group of `n` digits takes
//! `[0, 1, 1, 2, 2, 3, 3, 4, 4, 4][n]` bytes. The integer part starts with its
//! partial group (the most significant digits), the fractional part ends with
//! its partial group (the least significant digits). The top bit of the first
//! byte is flipped so that the byte string sorts like the number; a negative
//! number additionally has every byte inverted.
//!
//! Guarantees: the decoder never panics and never reads outside the input
//! slice. It rejects out-of-range precision/scale, truncated input, and digit
//! groups that do not hold valid decimal digits. The result is the exact
//! decimal text: an optional `-`, the integer part without leading zeros (a
//! single `0` when it is zero) and, when `scale > 0`, a `.` followed by exactly
//! `scale` digits. Negative zero is printed as zero.

/// Largest precision MySQL accepts for `DECIMAL`.
pub const MAX_PRECISION: u8 = 65;
/// Largest scale MySQL accepts for `DECIMAL`.
pub const MAX_SCALE: u8 = 30;

const DIGITS_PER_GROUP: usize = 9;
const GROUP_BYTES: usize = 4;
/// Bytes needed for a partial group of `n` digits (index `n`, `0..=9`).
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

fn partial_bytes(digits: usize) -> usize {
    DIG2BYTES.get(digits).copied().unwrap_or(GROUP_BYTES)
}

/// Number of bytes MySQL uses to store a `DECIMAL(precision, scale)` value.
///
/// A `scale` larger than `precision` is treated as `scale == precision`.
pub fn decimal_bin_size(precision: u8, scale: u8) -> usize {
    let scale = usize::from(scale.min(precision));
    let intg = usize::from(precision) - scale;
    (intg / DIGITS_PER_GROUP) * GROUP_BYTES
        + partial_bytes(intg % DIGITS_PER_GROUP)
        + (scale / DIGITS_PER_GROUP) * GROUP_BYTES
        + partial_bytes(scale % DIGITS_PER_GROUP)
}

/// Reads `len` (1..=4) bytes big-endian from `bytes` starting at `*pos`,
/// applying `mask` (0x00 or 0xff) to each byte, and advances `*pos`.
fn read_group(bytes: &[u8], pos: &mut usize, len: usize, mask: u8) -> Result<u32, String> {
    let end = pos
        .checked_add(len)
        .ok_or_else(|| "decimal: position overflow".to_string())?;
    let chunk = bytes.get(*pos..end).ok_or_else(|| {
        format!(
            "decimal: group at {pos} of {len} bytes beyond input",
            pos = *pos
        )
    })?;
    let mut v: u32 = 0;
    for b in chunk {
        v = (v << 8) | u32::from(b ^ mask);
    }
    *pos = end;
    Ok(v)
}

/// Appends `value` as exactly `digits` decimal digits (zero padded), after
/// checking that it fits.
fn push_group(out: &mut String, value: u32, digits: usize) -> Result<(), String> {
    let limit = 10u64.pow(u32::try_from(digits).unwrap_or(9));
    if u64::from(value) >= limit {
        return Err(format!(
            "decimal: digit group value {value} does not fit in {digits} digits"
        ));
    }
    let s = value.to_string();
    for _ in s.len()..digits {
        out.push('0');
    }
    out.push_str(&s);
    Ok(())
}

/// Decodes one binary `DECIMAL(precision, scale)` value from the start of
/// `buf`.
///
/// Returns the exact decimal text and the number of bytes consumed
/// ([`decimal_bin_size`]). Errors on `precision` outside `1..=65`, `scale`
/// above 30 or above `precision`, a buffer shorter than the value, or invalid
/// digit groups.
pub fn decode_decimal(buf: &[u8], precision: u8, scale: u8) -> Result<(String, usize), String> {
    if precision == 0 || precision > MAX_PRECISION {
        return Err(format!(
            "decimal: precision {precision} outside 1..={MAX_PRECISION}"
        ));
    }
    if scale > MAX_SCALE || scale > precision {
        return Err(format!(
            "decimal: scale {scale} invalid for precision {precision} (max {MAX_SCALE})"
        ));
    }
    let size = decimal_bin_size(precision, scale);
    let bytes = buf.get(..size).ok_or_else(|| {
        format!(
            "decimal: DECIMAL({precision},{scale}) needs {size} bytes, only {} available",
            buf.len()
        )
    })?;
    let first = *bytes
        .first()
        .ok_or_else(|| "decimal: empty value".to_string())?;
    // Positive values have the top bit set (after the flip it is clear).
    let negative = first & 0x80 == 0;
    let mask: u8 = if negative { 0xff } else { 0x00 };
    // Work on a copy with the sign bit restored so every group reads alike.
    let mut work: Vec<u8> = bytes.to_vec();
    if let Some(b) = work.first_mut() {
        *b ^= 0x80;
    }

    let scale_u = usize::from(scale);
    let intg = usize::from(precision) - scale_u;
    let intg_full = intg / DIGITS_PER_GROUP;
    let intg_part = intg % DIGITS_PER_GROUP;
    let frac_full = scale_u / DIGITS_PER_GROUP;
    let frac_part = scale_u % DIGITS_PER_GROUP;

    let mut pos = 0usize;
    let mut int_digits = String::with_capacity(intg);
    if intg_part > 0 {
        let v = read_group(&work, &mut pos, partial_bytes(intg_part), mask)?;
        push_group(&mut int_digits, v, intg_part)?;
    }
    for _ in 0..intg_full {
        let v = read_group(&work, &mut pos, GROUP_BYTES, mask)?;
        push_group(&mut int_digits, v, DIGITS_PER_GROUP)?;
    }
    let mut frac_digits = String::with_capacity(scale_u);
    for _ in 0..frac_full {
        let v = read_group(&work, &mut pos, GROUP_BYTES, mask)?;
        push_group(&mut frac_digits, v, DIGITS_PER_GROUP)?;
    }
    if frac_part > 0 {
        let v = read_group(&work, &mut pos, partial_bytes(frac_part), mask)?;
        push_group(&mut frac_digits, v, frac_part)?;
    }

    let int_trimmed = int_digits.trim_start_matches('0');
    let is_zero = int_trimmed.is_empty() && frac_digits.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(int_trimmed.len() + frac_digits.len() + 3);
    if negative && !is_zero {
        out.push('-');
    }
    if int_trimmed.is_empty() {
        out.push('0');
    } else {
        out.push_str(int_trimmed);
    }
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Ok((out, pos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Test-only encoder: `int_digits` / `frac_digits` are ASCII digit
    /// strings (`frac_digits.len() == scale`, `int_digits.len() <= intg`).
    fn encode(
        negative: bool,
        int_digits: &str,
        frac_digits: &str,
        precision: u8,
        scale: u8,
    ) -> Vec<u8> {
        let scale = usize::from(scale);
        let intg = usize::from(precision) - scale;
        assert!(int_digits.len() <= intg);
        assert_eq!(frac_digits.len(), scale);
        let padded_int = format!("{}{}", "0".repeat(intg - int_digits.len()), int_digits);
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, digits: &str| {
            let v: u32 = if digits.is_empty() {
                0
            } else {
                digits.parse().unwrap()
            };
            let n = DIG2BYTES[digits.len()];
            for i in (0..n).rev() {
                out.push((v >> (8 * i)) as u8);
            }
        };
        let lead = intg % 9;
        put(&mut out, &padded_int[..lead]);
        for chunk in padded_int.as_bytes()[lead..].chunks(9) {
            put(&mut out, std::str::from_utf8(chunk).unwrap());
        }
        let full = scale / 9 * 9;
        for chunk in frac_digits.as_bytes()[..full].chunks(9) {
            put(&mut out, std::str::from_utf8(chunk).unwrap());
        }
        put(&mut out, &frac_digits[full..]);
        if negative {
            for b in &mut out {
                *b = !*b;
            }
        }
        out[0] ^= 0x80;
        out
    }

    fn expected(negative: bool, int_digits: &str, frac_digits: &str) -> String {
        let t = int_digits.trim_start_matches('0');
        let zero = t.is_empty() && frac_digits.bytes().all(|b| b == b'0');
        let mut s = String::new();
        if negative && !zero {
            s.push('-');
        }
        s.push_str(if t.is_empty() { "0" } else { t });
        if !frac_digits.is_empty() {
            s.push('.');
            s.push_str(frac_digits);
        }
        s
    }

    #[test]
    fn bin_sizes() {
        assert_eq!(decimal_bin_size(10, 2), 5);
        assert_eq!(decimal_bin_size(65, 30), 30);
        assert_eq!(decimal_bin_size(5, 0), 3);
        assert_eq!(decimal_bin_size(5, 5), 3);
        assert_eq!(decimal_bin_size(18, 9), 8);
        assert_eq!(decimal_bin_size(1, 0), 1);
    }

    #[test]
    fn decimal_10_2_known_vectors() {
        // 1234567.89: int part 8 digits "01234567" -> lead 8 digits in 4 bytes
        // = 0x0012D687, frac "89" -> 1 byte 0x59; sign flip on first byte.
        let pos = [0x80, 0x12, 0xD6, 0x87, 0x59];
        assert_eq!(
            decode_decimal(&pos, 10, 2).unwrap(),
            ("1234567.89".to_string(), 5)
        );
        let neg = [0x7F, 0xED, 0x29, 0x78, 0xA6];
        assert_eq!(
            decode_decimal(&neg, 10, 2).unwrap(),
            ("-1234567.89".to_string(), 5)
        );
        // trailing bytes are not consumed
        let mut longer = pos.to_vec();
        longer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_decimal(&longer, 10, 2).unwrap().1, 5);
    }

    #[test]
    fn decimal_keeps_scale_digits() {
        let b = encode(true, "1234", "5600", 8, 4);
        assert_eq!(decode_decimal(&b, 8, 4).unwrap().0, "-1234.5600");
        let b = encode(false, "", "00", 4, 2);
        assert_eq!(decode_decimal(&b, 4, 2).unwrap().0, "0.00");
        let b = encode(true, "", "00", 4, 2);
        assert_eq!(decode_decimal(&b, 4, 2).unwrap().0, "0.00");
    }

    #[test]
    fn decimal_5_0_zero() {
        assert_eq!(
            decode_decimal(&[0x80, 0, 0], 5, 0).unwrap(),
            ("0".to_string(), 3)
        );
        // The negative encoding of zero is normalised.
        assert_eq!(decode_decimal(&[0x7f, 0xff, 0xff], 5, 0).unwrap().0, "0");
    }

    #[test]
    fn decimal_all_scale() {
        // DECIMAL(5,5) 0.12345 -> frac "12345" in 3 bytes = 0x003039.
        let b = [0x80, 0x30, 0x39];
        assert_eq!(
            decode_decimal(&b, 5, 5).unwrap(),
            ("0.12345".to_string(), 3)
        );
        assert_eq!(encode(false, "", "12345", 5, 5), b.to_vec());
        let nb = encode(true, "", "12345", 5, 5);
        assert_eq!(decode_decimal(&nb, 5, 5).unwrap().0, "-0.12345");
    }

    #[test]
    fn decimal_65_30_extremes() {
        let i = "9".repeat(35);
        let f = "9".repeat(30);
        for neg in [false, true] {
            let b = encode(neg, &i, &f, 65, 30);
            assert_eq!(b.len(), 30);
            let (s, n) = decode_decimal(&b, 65, 30).unwrap();
            assert_eq!(n, 30);
            assert_eq!(s, expected(neg, &i, &f));
        }
        let b = encode(false, "1", &format!("{}1", "0".repeat(29)), 65, 30);
        assert_eq!(
            decode_decimal(&b, 65, 30).unwrap().0,
            format!("1.{}1", "0".repeat(29))
        );
    }

    #[test]
    fn decimal_errors() {
        assert!(decode_decimal(&[0x80, 0x12], 10, 2)
            .unwrap_err()
            .contains("needs 5 bytes"));
        assert!(decode_decimal(&[0x80; 40], 0, 0).is_err());
        assert!(decode_decimal(&[0x80; 40], 66, 0).is_err());
        assert!(decode_decimal(&[0x80; 40], 40, 31).is_err());
        assert!(decode_decimal(&[0x80; 40], 4, 5).is_err());
        // Group holding 0xffffffff (> 999999999) is invalid.
        assert!(decode_decimal(&[0xff, 0xff, 0xff, 0xff], 9, 0).is_err());
        // Partial 1-byte group for 2 digits holding 100 is invalid.
        assert!(decode_decimal(&[0x80, 100], 3, 2).is_err());
    }

    fn digits(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(0u8..10, 0..=max)
            .prop_map(|v| v.into_iter().map(|d| char::from(b'0' + d)).collect())
    }

    proptest! {
        #[test]
        fn round_trip(
            (precision, scale) in (1u8..=65).prop_flat_map(|p| (Just(p), 0u8..=p.min(30))),
            neg in any::<bool>(),
            int_seed in digits(65),
            frac_seed in digits(30),
        ) {
            let intg = usize::from(precision - scale);
            let int_digits: String = int_seed.chars().take(intg).collect();
            let mut frac_digits: String = frac_seed.chars().take(usize::from(scale)).collect();
            while frac_digits.len() < usize::from(scale) {
                frac_digits.push('0');
            }
            let bytes = encode(neg, &int_digits, &frac_digits, precision, scale);
            prop_assert_eq!(bytes.len(), decimal_bin_size(precision, scale));
            let (s, n) = decode_decimal(&bytes, precision, scale).unwrap();
            prop_assert_eq!(n, bytes.len());
            prop_assert_eq!(s, expected(neg, &int_digits, &frac_digits));
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..40),
                                       precision in any::<u8>(), scale in any::<u8>()) {
            if let Ok((s, n)) = decode_decimal(&buf, precision, scale) {
                prop_assert!(n <= buf.len());
                prop_assert!(!s.is_empty());
            }
        }
    }
}
