//! Decoders for the temporal column formats found in MySQL binlog row events,
//! plus the "packed longlong" temporal representation used inside binary
//! JSON, and text formatting helpers.
//!
//! Supported row formats (by binlog column type):
//! `DATE` (10), old `TIME` (11), `TIME2` (19), old `DATETIME` (12),
//! `DATETIME2` (18), old `TIMESTAMP` (7) and `TIMESTAMP2` (17).
//! Fractional seconds (`fsp` 0..=6) occupy `(fsp + 1) / 2` big-endian bytes:
//! one byte holds hundredths, two bytes ten-thousandths and three bytes
//! microseconds (scaled to microseconds by 10000, 100 and 1).
//!
//! Guarantees: every decoder is pure, never panics and never reads outside the
//! given slice; each returns the number of bytes it consumed. Field values
//! are returned as stored (e.g. a zero date stays `0000-00-00`, month 13 is
//! not rejected), but inputs that cannot be represented are rejected with an
//! error: truncated buffers, `fsp > 6`, fractional parts above 999999
//! microseconds, negative `DATETIME` values and years that do not fit.

use std::fmt;

/// A calendar date as stored (zero parts allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A `TIME` value: a signed duration of up to 838 hours in valid data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Time {
    pub negative: bool,
    pub hours: u32,
    pub minutes: u8,
    pub seconds: u8,
    pub micros: u32,
}

/// A `DATETIME` (or a `TIMESTAMP` converted to civil UTC time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

impl DateTime {
    /// The date part.
    pub fn date(&self) -> Date {
        Date {
            year: self.year,
            month: self.month,
            day: self.day,
        }
    }
}

const MAX_MICROS: u32 = 999_999;
const TIMEF_INT_OFS: i64 = 0x80_0000;
const DATETIMEF_INT_OFS: i64 = 0x80_0000_0000;

fn truncated(what: &str, need: usize, have: usize) -> String {
    format!("{what}: needs {need} bytes, only {have} available")
}

/// Reads `len` (0..=8) bytes big-endian at `off`.
fn read_be(buf: &[u8], off: usize, len: usize, what: &str) -> Result<u64, String> {
    let end = off
        .checked_add(len)
        .ok_or_else(|| format!("{what}: length overflow"))?;
    let s = buf
        .get(off..end)
        .ok_or_else(|| truncated(what, end, buf.len()))?;
    Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Reads `len` (0..=8) bytes little-endian at `off`.
fn read_le(buf: &[u8], off: usize, len: usize, what: &str) -> Result<u64, String> {
    let end = off
        .checked_add(len)
        .ok_or_else(|| format!("{what}: length overflow"))?;
    let s = buf
        .get(off..end)
        .ok_or_else(|| truncated(what, end, buf.len()))?;
    Ok(s.iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Number of bytes used for the fractional part of a value with `fsp`
/// fractional digits. Errors when `fsp > 6`.
pub fn frac_bytes(fsp: u8) -> Result<usize, String> {
    if fsp > 6 {
        return Err(format!("temporal: fractional precision {fsp} above 6"));
    }
    Ok(usize::from(fsp).div_ceil(2))
}

/// Reads the fractional part (unsigned, big-endian) at `off` and scales it to
/// microseconds, rejecting values above 999999.
fn read_frac(buf: &[u8], off: usize, fsp: u8, what: &str) -> Result<u32, String> {
    let n = frac_bytes(fsp)?;
    let raw = read_be(buf, off, n, what)?;
    let scale: u64 = match n {
        0 => 0,
        1 => 10_000,
        2 => 100,
        _ => 1,
    };
    let micros = raw.saturating_mul(scale);
    if micros > u64::from(MAX_MICROS) {
        return Err(format!(
            "{what}: fractional part {raw} ({micros} microseconds) out of range"
        ));
    }
    Ok(u32::try_from(micros).unwrap_or(MAX_MICROS))
}

/// `DATE` (type 10): 3 bytes little-endian, `day | month << 5 | year << 9`.
pub fn decode_date(buf: &[u8]) -> Result<(Date, usize), String> {
    let v = read_le(buf, 0, 3, "DATE")?;
    let date = Date {
        day: (v & 31) as u8,
        month: ((v >> 5) & 15) as u8,
        year: ((v >> 9) & 0x7fff) as u16,
    };
    Ok((date, 3))
}

/// Old `TIME` (type 11): 3 bytes little-endian, a signed 24-bit integer
/// `[-]HHMMSS`.
pub fn decode_time_v1(buf: &[u8]) -> Result<(Time, usize), String> {
    let raw = read_le(buf, 0, 3, "TIME")? as i64;
    let v = if raw & 0x80_0000 != 0 {
        raw - 0x100_0000
    } else {
        raw
    };
    let a = v.unsigned_abs();
    let t = Time {
        negative: v < 0,
        hours: (a / 10_000) as u32,
        minutes: ((a / 100) % 100) as u8,
        seconds: (a % 100) as u8,
        micros: 0,
    };
    Ok((t, 3))
}

/// Converts MySQL's in-memory packed time (`(intpart << 24) + micros`, with
/// `intpart = hours << 12 | minutes << 6 | seconds`, negated for negative
/// times) to a [`Time`]. This is also the 8-byte representation of `TIME`
/// values inside binary JSON.
pub fn time_from_packed(packed: i64) -> Result<Time, String> {
    let negative = packed < 0;
    let a = packed.unsigned_abs();
    let micros = a % (1 << 24);
    if micros > u64::from(MAX_MICROS) {
        return Err(format!("TIME: fractional part {micros} out of range"));
    }
    let hms = a >> 24;
    Ok(Time {
        negative,
        hours: ((hms >> 12) % (1 << 10)) as u32,
        minutes: ((hms >> 6) % (1 << 6)) as u8,
        seconds: (hms % (1 << 6)) as u8,
        micros: micros as u32,
    })
}

/// Converts MySQL's in-memory packed datetime (`(intpart << 24) + micros`
/// with `intpart = ((year * 13 + month) << 5 | day) << 17 | hour << 12 |
/// minute << 6 | second`) to a [`DateTime`]. This is also the 8-byte
/// representation of `DATE`/`DATETIME`/`TIMESTAMP` values in binary JSON.
pub fn datetime_from_packed(packed: i64) -> Result<DateTime, String> {
    if packed < 0 {
        return Err(format!("DATETIME: negative packed value {packed}"));
    }
    let a = packed.unsigned_abs();
    let micros = a % (1 << 24);
    if micros > u64::from(MAX_MICROS) {
        return Err(format!("DATETIME: fractional part {micros} out of range"));
    }
    let ymdhms = a >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    let year =
        u16::try_from(ym / 13).map_err(|_| format!("DATETIME: year {} out of range", ym / 13))?;
    Ok(DateTime {
        year,
        month: (ym % 13) as u8,
        day: (ymd % (1 << 5)) as u8,
        hour: (hms >> 12) as u8,
        minute: ((hms >> 6) % (1 << 6)) as u8,
        second: (hms % (1 << 6)) as u8,
        micros: micros as u32,
    })
}

/// `TIME2` (type 19): 3 bytes big-endian integer part biased by `0x800000`
/// (`hours << 12 | minutes << 6 | seconds`, sign by the bias), followed by
/// `(fsp + 1) / 2` fractional bytes. Negative values with a fractional part
/// are stored with a borrow: the stored integer part is one less and the
/// stored fraction is `0x100 / 0x10000 / 0x1000000 - fraction`.
pub fn decode_time2(buf: &[u8], fsp: u8) -> Result<(Time, usize), String> {
    let n = frac_bytes(fsp)?;
    let total = 3 + n;
    if buf.len() < total {
        return Err(truncated("TIME2", total, buf.len()));
    }
    let mut intpart = read_be(buf, 0, 3, "TIME2")? as i64 - TIMEF_INT_OFS;
    let mut frac = read_be(buf, 3, n, "TIME2")? as i64;
    let (modulus, unit): (i64, i64) = match n {
        0 => (1, 0),
        1 => (0x100, 10_000),
        2 => (0x1_0000, 100),
        _ => (0x100_0000, 1),
    };
    if intpart < 0 && frac != 0 {
        intpart += 1;
        frac -= modulus;
    }
    let frac_micros = frac * unit;
    if frac_micros.unsigned_abs() > u64::from(MAX_MICROS) {
        return Err(format!(
            "TIME2: fractional part {frac} (fsp {fsp}) out of range"
        ));
    }
    // |intpart| < 2^23, so the shift and sum stay far inside i64.
    let packed = (intpart << 24) + frac_micros;
    Ok((time_from_packed(packed)?, total))
}

/// Old `DATETIME` (type 12): 8 bytes little-endian, the decimal number
/// `YYYYMMDDhhmmss`.
pub fn decode_datetime_v1(buf: &[u8]) -> Result<(DateTime, usize), String> {
    let v = read_le(buf, 0, 8, "DATETIME")?;
    let date = v / 1_000_000;
    let time = v % 1_000_000;
    let year = date / 10_000;
    if year > 9999 {
        return Err(format!("DATETIME: value {v} has year {year} above 9999"));
    }
    let dt = DateTime {
        year: year as u16,
        month: ((date / 100) % 100) as u8,
        day: (date % 100) as u8,
        hour: (time / 10_000) as u8,
        minute: ((time / 100) % 100) as u8,
        second: (time % 100) as u8,
        micros: 0,
    };
    Ok((dt, 8))
}

/// `DATETIME2` (type 18): 5 bytes big-endian biased by `0x8000000000`
/// (1 sign bit, 17 bits `year * 13 + month`, 5 bits day, 5 bits hour,
/// 6 bits minute, 6 bits second) followed by `(fsp + 1) / 2` fractional
/// bytes.
pub fn decode_datetime2(buf: &[u8], fsp: u8) -> Result<(DateTime, usize), String> {
    let n = frac_bytes(fsp)?;
    let total = 5 + n;
    if buf.len() < total {
        return Err(truncated("DATETIME2", total, buf.len()));
    }
    let intpart = read_be(buf, 0, 5, "DATETIME2")? as i64 - DATETIMEF_INT_OFS;
    if intpart < 0 {
        return Err(format!("DATETIME2: negative value {intpart}"));
    }
    let micros = read_frac(buf, 5, fsp, "DATETIME2")?;
    let packed = (intpart << 24) + i64::from(micros);
    Ok((datetime_from_packed(packed)?, total))
}

/// Old `TIMESTAMP` (type 7): 4 bytes little-endian seconds since the epoch.
/// Returns `(seconds, micros, consumed)`.
pub fn decode_timestamp_v1(buf: &[u8]) -> Result<(u32, u32, usize), String> {
    let v = read_le(buf, 0, 4, "TIMESTAMP")?;
    Ok((v as u32, 0, 4))
}

/// `TIMESTAMP2` (type 17): 4 bytes big-endian seconds since the epoch, then
/// `(fsp + 1) / 2` fractional bytes. Returns `(seconds, micros, consumed)`.
pub fn decode_timestamp2(buf: &[u8], fsp: u8) -> Result<(u32, u32, usize), String> {
    let n = frac_bytes(fsp)?;
    let total = 4 + n;
    if buf.len() < total {
        return Err(truncated("TIMESTAMP2", total, buf.len()));
    }
    let secs = read_be(buf, 0, 4, "TIMESTAMP2")? as u32;
    let micros = read_frac(buf, 4, fsp, "TIMESTAMP2")?;
    Ok((secs, micros, total))
}

/// Earliest instant representable as a [`DateTime`] here: 0000-01-01 00:00:00.
const MIN_UNIX_SECS: i64 = -62_167_219_200;
/// Latest: 9999-12-31 23:59:59.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// Converts seconds since the Unix epoch (plus microseconds) to a UTC civil
/// date-time (proleptic Gregorian calendar). Microseconds of one second or
/// more carry into the seconds; results are clamped to the range
/// `0000-01-01 00:00:00` ..= `9999-12-31 23:59:59.999999`.
pub fn unix_to_datetime(secs: i64, micros: u32) -> DateTime {
    let secs = secs.saturating_add(i64::from(micros / 1_000_000));
    let mut micros = micros % 1_000_000;
    let secs = if secs > MAX_UNIX_SECS {
        micros = MAX_MICROS;
        MAX_UNIX_SECS
    } else if secs < MIN_UNIX_SECS {
        micros = 0;
        MIN_UNIX_SECS
    } else {
        secs
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year,
    // then split into 400-year eras of 146097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        year: u16::try_from(year).unwrap_or(0),
        month: month as u8,
        day: day as u8,
        hour: (sod / 3600) as u8,
        minute: ((sod / 60) % 60) as u8,
        second: (sod % 60) as u8,
        micros,
    }
}

/// Fractional-second suffix with exactly `fsp` digits (truncating): `""` for
/// 0, `".123"` for 3. `fsp` above 6 is treated as 6; `micros` above 999999
/// as 999999.
pub fn format_frac(micros: u32, fsp: u8) -> String {
    let fsp = usize::from(fsp.min(6));
    if fsp == 0 {
        return String::new();
    }
    let digits = format!("{:06}", micros.min(MAX_MICROS));
    let mut out = String::with_capacity(fsp + 1);
    out.push('.');
    out.push_str(digits.get(..fsp).unwrap_or(&digits));
    out
}

/// `[-]H:MM:SS` followed by exactly `fsp` fractional digits.
pub fn format_time(t: &Time, fsp: u8) -> String {
    format!(
        "{}{}:{:02}:{:02}{}",
        if t.negative { "-" } else { "" },
        t.hours,
        t.minutes,
        t.seconds,
        format_frac(t.micros, fsp)
    )
}

/// `[-]HH:MM:SS` (hours padded to at least two digits, as MySQL prints
/// `TIME` values) followed by exactly `fsp` fractional digits.
pub fn format_time_padded(t: &Time, fsp: u8) -> String {
    format!(
        "{}{:02}:{:02}:{:02}{}",
        if t.negative { "-" } else { "" },
        t.hours,
        t.minutes,
        t.seconds,
        format_frac(t.micros, fsp)
    )
}

/// `YYYY-MM-DD HH:MM:SS` followed by exactly `fsp` fractional digits.
pub fn format_datetime(dt: &DateTime, fsp: u8) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}",
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        format_frac(dt.micros, fsp)
    )
}

impl fmt::Display for Date {
    /// `YYYY-MM-DD`; the zero date prints as `0000-00-00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for Time {
    /// `[-]H:MM:SS`, plus `.ffffff` when the microseconds are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fsp = if self.micros == 0 { 0 } else { 6 };
        f.write_str(&format_time(self, fsp))
    }
}

impl fmt::Display for DateTime {
    /// `YYYY-MM-DD HH:MM:SS`, plus `.ffffff` when the microseconds are not
    /// zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fsp = if self.micros == 0 { 0 } else { 6 };
        f.write_str(&format_datetime(self, fsp))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- test-only encoders, written from the format description ----

    fn enc_date(d: Date) -> Vec<u8> {
        let v = u32::from(d.day) | (u32::from(d.month) << 5) | (u32::from(d.year) << 9);
        v.to_le_bytes()[..3].to_vec()
    }

    /// Signed microsecond total of a time.
    fn time_total_micros(t: &Time) -> i64 {
        let abs = ((i64::from(t.hours) * 60 + i64::from(t.minutes)) * 60 + i64::from(t.seconds))
            * 1_000_000
            + i64::from(t.micros);
        if t.negative {
            -abs
        } else {
            abs
        }
    }

    /// Encodes a TIME2 the way the server does: build the packed value, then
    /// split it into integer and (signed) fractional part with arithmetic
    /// shift / truncating remainder, and store the fraction's low bytes.
    fn enc_time2(t: &Time, fsp: u8) -> Vec<u8> {
        let hms = (i64::from(t.hours) << 12) | (i64::from(t.minutes) << 6) | i64::from(t.seconds);
        let abs = (hms << 24) + i64::from(t.micros);
        let packed = if t.negative { -abs } else { abs };
        let int_part = packed >> 24;
        let frac_part = packed % (1 << 24);
        let mut out = ((int_part + TIMEF_INT_OFS) as u32).to_be_bytes()[1..].to_vec();
        match fsp {
            0 => {}
            1 | 2 => out.push((frac_part / 10_000) as i8 as u8),
            3 | 4 => out.extend_from_slice(&((frac_part / 100) as i16).to_be_bytes()),
            _ => {
                // 5/6: the whole packed value as 6 bytes, offset 0x800000000000
                out = ((packed + (TIMEF_INT_OFS << 24)) as u64).to_be_bytes()[2..].to_vec();
            }
        }
        out
    }

    fn enc_datetime2(dt: &DateTime, fsp: u8) -> Vec<u8> {
        let ym = u64::from(dt.year) * 13 + u64::from(dt.month);
        let ymd = (ym << 5) | u64::from(dt.day);
        let hms = (u64::from(dt.hour) << 12) | (u64::from(dt.minute) << 6) | u64::from(dt.second);
        let int_part = ((ymd << 17) | hms) + 0x80_0000_0000;
        let mut out = int_part.to_be_bytes()[3..].to_vec();
        let n = frac_bytes(fsp).unwrap();
        let stored = match n {
            0 => 0,
            1 => dt.micros / 10_000,
            2 => dt.micros / 100,
            _ => dt.micros,
        };
        out.extend_from_slice(&stored.to_be_bytes()[4 - n..]);
        out
    }

    /// Truncates micros to what `fsp` digits can hold.
    fn trunc_micros(m: u32, fsp: u8) -> u32 {
        let div = 10u32.pow(6 - u32::from(fsp));
        m / div * div
    }

    #[test]
    fn date_vectors() {
        // 2015-01-15: 15 | 1<<5 | 2015<<9 = 1031727 = 0x0FBE2F
        let (d, n) = decode_date(&[0x2F, 0xBE, 0x0F]).unwrap();
        assert_eq!(
            (d, n),
            (
                Date {
                    year: 2015,
                    month: 1,
                    day: 15
                },
                3
            )
        );
        assert_eq!(d.to_string(), "2015-01-15");
        let (z, _) = decode_date(&[0, 0, 0]).unwrap();
        assert_eq!(z.to_string(), "0000-00-00");
        assert_eq!(
            decode_date(&enc_date(Date {
                year: 9999,
                month: 12,
                day: 31
            }))
            .unwrap()
            .0
            .to_string(),
            "9999-12-31"
        );
        assert!(decode_date(&[1, 2]).is_err());
    }

    #[test]
    fn time_v1_vectors() {
        // 838:59:59 = 8385959 = 0x7FF5A7
        let (t, n) = decode_time_v1(&[0xA7, 0xF5, 0x7F]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(t.to_string(), "838:59:59");
        // -1:02:03 = -10203 -> 0x1000000 - 10203 = 0xFFD825
        let (t, _) = decode_time_v1(&[0x25, 0xD8, 0xFF]).unwrap();
        assert_eq!(
            t,
            Time {
                negative: true,
                hours: 1,
                minutes: 2,
                seconds: 3,
                micros: 0
            }
        );
        assert_eq!(t.to_string(), "-1:02:03");
        assert!(decode_time_v1(&[0]).is_err());
    }

    #[test]
    fn time2_vectors() {
        // 00:00:00, fsp 0
        assert_eq!(
            decode_time2(&[0x80, 0, 0], 0).unwrap().0.to_string(),
            "0:00:00"
        );
        // 838:59:59 -> hms = 838<<12 | 59<<6 | 59 = 0x346EFB, +0x800000
        let (t, n) = decode_time2(&[0xB4, 0x6E, 0xFB], 0).unwrap();
        assert_eq!((t.to_string(), n), ("838:59:59".to_string(), 3));
        // -838:59:59.000000 fsp 6: packed = -(0x346EFB << 24); stored
        // 0x800000000000 - 0x346EFB000000 = 0x4B9105000000
        let (t, n) = decode_time2(&[0x4B, 0x91, 0x05, 0, 0, 0], 6).unwrap();
        assert_eq!(n, 6);
        assert_eq!(format_time(&t, 6), "-838:59:59.000000");
        // -00:00:00.5 fsp 1: int 0x7FFFFF, frac 0x100 - 50 = 0xCE
        let (t, n) = decode_time2(&[0x7F, 0xFF, 0xFF, 0xCE], 1).unwrap();
        assert_eq!(n, 4);
        assert_eq!(
            t,
            Time {
                negative: true,
                hours: 0,
                minutes: 0,
                seconds: 0,
                micros: 500_000
            }
        );
        assert_eq!(format_time(&t, 1), "-0:00:00.5");
        // -00:00:01.00 fsp 2: int 0x7FFFFF, frac 0
        let (t, _) = decode_time2(&[0x7F, 0xFF, 0xFF, 0x00], 2).unwrap();
        assert_eq!(format_time(&t, 2), "-0:00:01.00");
        // -00:00:01.10 fsp 2: int 0x7FFFFE, frac 0x100 - 10 = 0xF6
        let (t, _) = decode_time2(&[0x7F, 0xFF, 0xFE, 0xF6], 2).unwrap();
        assert_eq!(format_time(&t, 2), "-0:00:01.10");
        // -1:00:00.000001 fsp 6: packed = -((1<<12)<<24 | 1) ->
        // 0x800000000000 - 0x001000000001 = 0x7FEFFFFFFFFF
        let (t, _) = decode_time2(&[0x7F, 0xEF, 0xFF, 0xFF, 0xFF, 0xFF], 6).unwrap();
        assert_eq!(
            t,
            Time {
                negative: true,
                hours: 1,
                minutes: 0,
                seconds: 0,
                micros: 1
            }
        );
        assert_eq!(t.to_string(), "-1:00:00.000001");
        // -1:00:00.0001 fsp 4: int = -(1<<12) - 1 + 0x800000 = 0x7FEFFF,
        // frac = 0x10000 - 1 = 0xFFFF
        let (t, n) = decode_time2(&[0x7F, 0xEF, 0xFF, 0xFF, 0xFF], 4).unwrap();
        assert_eq!(n, 5);
        assert_eq!(format_time(&t, 4), "-1:00:00.0001");
        // 12:34:56.789 fsp 3: hms = 12<<12|34<<6|56 = 0xC8B8, frac 7890 = 0x1ED2
        let (t, _) = decode_time2(&[0x80, 0xC8, 0xB8, 0x1E, 0xD2], 3).unwrap();
        assert_eq!(format_time(&t, 3), "12:34:56.789");
        assert_eq!(format_time_padded(&t, 6), "12:34:56.789000");
        // errors
        assert!(decode_time2(&[0x80, 0, 0], 1).is_err());
        assert!(decode_time2(&[0x80, 0, 0, 0], 7).is_err());
        assert!(decode_time2(&[0x80, 0, 0, 200], 2).is_err()); // 200 hundredths
    }

    #[test]
    fn time2_encoder_matches_hand_vectors() {
        let t = Time {
            negative: true,
            hours: 0,
            minutes: 0,
            seconds: 0,
            micros: 500_000,
        };
        assert_eq!(enc_time2(&t, 1), vec![0x7F, 0xFF, 0xFF, 0xCE]);
        let t = Time {
            negative: true,
            hours: 1,
            minutes: 0,
            seconds: 0,
            micros: 100,
        };
        assert_eq!(enc_time2(&t, 4), vec![0x7F, 0xEF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn datetime_v1_vectors() {
        let v: u64 = 20150115232425;
        let (dt, n) = decode_datetime_v1(&v.to_le_bytes()).unwrap();
        assert_eq!(n, 8);
        assert_eq!(dt.to_string(), "2015-01-15 23:24:25");
        assert_eq!(
            decode_datetime_v1(&[0; 8]).unwrap().0.to_string(),
            "0000-00-00 00:00:00"
        );
        assert!(decode_datetime_v1(&u64::MAX.to_le_bytes()).is_err());
        assert!(decode_datetime_v1(&[0; 7]).is_err());
    }

    #[test]
    fn datetime2_vectors() {
        // 2015-01-15 23:24:25: ym = 2015*13+1 = 26196, ymd = 26196<<5|15 =
        // 838287, hms = 23<<12|24<<6|25 = 95769;
        // (838287<<17 | 95769) + 0x8000000000 = 0x99_95_1F_76_19
        let b = [0x99, 0x95, 0x1F, 0x76, 0x19];
        let (dt, n) = decode_datetime2(&b, 0).unwrap();
        assert_eq!(n, 5);
        assert_eq!(dt.to_string(), "2015-01-15 23:24:25");
        assert_eq!(enc_datetime2(&dt, 0), b.to_vec());
        // with .123456 at fsp 6 -> 0x01E240
        let (dt, n) =
            decode_datetime2(&[0x99, 0x95, 0x1F, 0x76, 0x19, 0x01, 0xE2, 0x40], 6).unwrap();
        assert_eq!(n, 8);
        assert_eq!(format_datetime(&dt, 6), "2015-01-15 23:24:25.123456");
        assert_eq!(format_datetime(&dt, 3), "2015-01-15 23:24:25.123");
        assert_eq!(format_datetime(&dt, 0), "2015-01-15 23:24:25");
        // zero datetime
        let (z, _) = decode_datetime2(&[0x80, 0, 0, 0, 0], 0).unwrap();
        assert_eq!(z.to_string(), "0000-00-00 00:00:00");
        // negative / truncated / bad fraction
        assert!(decode_datetime2(&[0x7F, 0, 0, 0, 0], 0).is_err());
        assert!(decode_datetime2(&[0x80, 0, 0, 0, 0], 2).is_err());
        assert!(decode_datetime2(&[0x80, 0, 0, 0, 0, 0xFF, 0xFF], 4).is_err());
    }

    #[test]
    fn timestamp_vectors() {
        assert_eq!(
            decode_timestamp_v1(&[0x01, 0x02, 0x03, 0x04]).unwrap(),
            (0x0403_0201, 0, 4)
        );
        assert_eq!(
            decode_timestamp2(&[0x54, 0xB8, 0x4C, 0x79], 0).unwrap(),
            (0x54B8_4C79, 0, 4)
        );
        assert_eq!(
            decode_timestamp2(&[0, 0, 0, 1, 0x32], 1).unwrap(),
            (1, 500_000, 5)
        );
        assert_eq!(
            decode_timestamp2(&[0, 0, 0, 1, 0x03, 0x09], 3).unwrap(),
            (1, 77_700, 6)
        );
        assert_eq!(
            decode_timestamp2(&[0, 0, 0, 1, 0x0F, 0x42, 0x3F], 6).unwrap(),
            (1, 999_999, 7)
        );
        assert!(decode_timestamp2(&[0, 0, 0, 1, 0x0F, 0x42, 0x40], 6).is_err());
        assert!(decode_timestamp2(&[0, 0, 0], 0).is_err());
        assert!(decode_timestamp_v1(&[0, 0, 0]).is_err());
    }

    #[test]
    fn unix_conversion() {
        assert_eq!(unix_to_datetime(0, 0).to_string(), "1970-01-01 00:00:00");
        // 0x54B84C79 = 1421364345 = 2015-01-15 23:25:45 UTC
        assert_eq!(
            unix_to_datetime(1_421_364_345, 0).to_string(),
            "2015-01-15 23:25:45"
        );
        assert_eq!(
            unix_to_datetime(951_782_400, 0).to_string(),
            "2000-02-29 00:00:00"
        );
        assert_eq!(
            unix_to_datetime(2_147_483_647, 1).to_string(),
            "2038-01-19 03:14:07.000001"
        );
        assert_eq!(unix_to_datetime(-1, 0).to_string(), "1969-12-31 23:59:59");
        assert_eq!(
            unix_to_datetime(59, 1_500_000).to_string(),
            "1970-01-01 00:01:00.500000"
        );
        assert_eq!(
            unix_to_datetime(i64::MAX, u32::MAX).to_string(),
            "9999-12-31 23:59:59.999999"
        );
        assert_eq!(
            unix_to_datetime(i64::MIN, 0).to_string(),
            "0000-01-01 00:00:00"
        );
    }

    #[test]
    fn packed_conversions() {
        // TIME 23:24:25 packed
        let hms = (23i64 << 12) | (24 << 6) | 25;
        let t = time_from_packed(hms << 24).unwrap();
        assert_eq!(format_time_padded(&t, 6), "23:24:25.000000");
        let t = time_from_packed(-((hms << 24) + 5)).unwrap();
        assert_eq!(format_time_padded(&t, 6), "-23:24:25.000005");
        assert!(time_from_packed(0xFF_FFFF).is_err());
        let _ = time_from_packed(i64::MIN);
        let ymd = ((2015i64 * 13 + 1) << 5) | 15;
        let dt = datetime_from_packed(((ymd << 17) | hms) << 24).unwrap();
        assert_eq!(format_datetime(&dt, 6), "2015-01-15 23:24:25.000000");
        assert!(datetime_from_packed(-1).is_err());
        assert!(datetime_from_packed(i64::MAX).is_err());
    }

    #[test]
    fn frac_formatting() {
        assert_eq!(format_frac(123_456, 0), "");
        assert_eq!(format_frac(123_456, 3), ".123");
        assert_eq!(format_frac(5, 6), ".000005");
        assert_eq!(format_frac(5, 9), ".000005");
        assert_eq!(format_frac(u32::MAX, 2), ".99");
    }

    fn time_strategy() -> impl Strategy<Value = Time> {
        (any::<bool>(), 0u32..=838, 0u8..60, 0u8..60, 0u32..=999_999).prop_map(
            |(negative, hours, minutes, seconds, micros)| Time {
                negative,
                hours,
                minutes,
                seconds,
                micros,
            },
        )
    }

    fn datetime_strategy() -> impl Strategy<Value = DateTime> {
        (
            0u16..=9999,
            0u8..=12,
            0u8..=31,
            0u8..24,
            0u8..60,
            0u8..60,
            0u32..=999_999,
        )
            .prop_map(
                |(year, month, day, hour, minute, second, micros)| DateTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    micros,
                },
            )
    }

    proptest! {
        #[test]
        fn time2_round_trip(t in time_strategy(), fsp in 0u8..=6) {
            let mut t = t;
            t.micros = trunc_micros(t.micros, fsp);
            if time_total_micros(&t) == 0 {
                t.negative = false;
            }
            let b = enc_time2(&t, fsp);
            let (d, n) = decode_time2(&b, fsp).unwrap();
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(d, t);
        }

        #[test]
        fn datetime2_round_trip(dt in datetime_strategy(), fsp in 0u8..=6) {
            let mut dt = dt;
            dt.micros = trunc_micros(dt.micros, fsp);
            let b = enc_datetime2(&dt, fsp);
            let (d, n) = decode_datetime2(&b, fsp).unwrap();
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(d, dt);
        }

        #[test]
        fn date_round_trip(year in 0u16..=9999, month in 0u8..=12, day in 0u8..=31) {
            let d = Date { year, month, day };
            prop_assert_eq!(decode_date(&enc_date(d)).unwrap(), (d, 3));
        }

        #[test]
        fn datetime_v1_round_trip(dt in datetime_strategy()) {
            let mut dt = dt;
            dt.micros = 0;
            let v = ((u64::from(dt.year) * 100 + u64::from(dt.month)) * 100 + u64::from(dt.day)) * 1_000_000
                + (u64::from(dt.hour) * 100 + u64::from(dt.minute)) * 100 + u64::from(dt.second);
            prop_assert_eq!(decode_datetime_v1(&v.to_le_bytes()).unwrap(), (dt, 8));
        }

        #[test]
        fn time_v1_round_trip(t in time_strategy()) {
            let mut t = t;
            t.micros = 0;
            let abs = i64::from(t.hours) * 10_000 + i64::from(t.minutes) * 100 + i64::from(t.seconds);
            if abs == 0 { t.negative = false; }
            let v = if t.negative { -abs } else { abs };
            let b = (v as i32).to_le_bytes();
            prop_assert_eq!(decode_time_v1(&b[..3]).unwrap(), (t, 3));
        }

        #[test]
        fn unix_round_trip_days(secs in MIN_UNIX_SECS..=MAX_UNIX_SECS) {
            let dt = unix_to_datetime(secs, 0);
            // Recompute seconds from the civil date by counting days.
            let y = i64::from(dt.year) - i64::from(dt.month <= 2);
            let era = y.div_euclid(400);
            let yoe = y.rem_euclid(400);
            let m = i64::from(dt.month);
            let mp = if m > 2 { m - 3 } else { m + 9 };
            let doy = (153 * mp + 2) / 5 + i64::from(dt.day) - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            let back = days * 86_400 + i64::from(dt.hour) * 3600 + i64::from(dt.minute) * 60 + i64::from(dt.second);
            prop_assert_eq!(back, secs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..12), fsp in any::<u8>(),
                                       secs in any::<i64>(), micros in any::<u32>(), packed in any::<i64>()) {
            if let Ok((v, n)) = decode_date(&buf) { prop_assert!(n <= buf.len()); let _ = v.to_string(); }
            if let Ok((v, n)) = decode_time_v1(&buf) { prop_assert!(n <= buf.len()); let _ = v.to_string(); }
            if let Ok((v, n)) = decode_time2(&buf, fsp) { prop_assert!(n <= buf.len()); let _ = format_time(&v, fsp); }
            if let Ok((v, n)) = decode_datetime_v1(&buf) { prop_assert!(n <= buf.len()); let _ = v.to_string(); }
            if let Ok((v, n)) = decode_datetime2(&buf, fsp) { prop_assert!(n <= buf.len()); let _ = format_datetime(&v, fsp); }
            if let Ok((_, m, n)) = decode_timestamp_v1(&buf) { prop_assert!(n <= buf.len()); prop_assert!(m <= MAX_MICROS); }
            if let Ok((_, m, n)) = decode_timestamp2(&buf, fsp) { prop_assert!(n <= buf.len()); prop_assert!(m <= MAX_MICROS); }
            let _ = unix_to_datetime(secs, micros).to_string();
            let _ = time_from_packed(packed);
            let _ = datetime_from_packed(packed);
        }
    }
}
