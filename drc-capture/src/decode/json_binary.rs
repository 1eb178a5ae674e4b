//! Decoder for MySQL's binary JSON format, the representation of `JSON`
//! column values in row events (and of the values carried by partial JSON
//! update diffs).
//!
//! A document is one type byte followed by the value. Objects and arrays come
//! in a small form (2-byte counts, sizes and offsets) and a large form (4-byte);
//! their header holds the element count, the total size in bytes, then key
//! entries (offset, 2-byte length) for objects and value entries (type byte,
//! offset or inlined value) for both. All offsets are relative to the start of
//! the container (the byte after its type byte). Literals and 16-bit integers
//! are inlined in the value entry, as are 32-bit integers in large
//! containers. Strings carry a variable-length size (7 bits per byte, low
//! bits first). Opaque values carry a MySQL column type byte and raw bytes:
//! `DECIMAL` becomes a JSON number, `DATE`/`TIME`/`DATETIME`/`TIMESTAMP`
//! become strings formatted as MySQL prints them (e.g. `"2015-01-15"`,
//! `"23:24:25.000000"`, `"2015-01-15 23:24:25.000000"`), and everything else
//! becomes `"base64:type<N>:<base64 data>"`.
//!
//! An empty buffer decodes to JSON `null` in [`decode_json`]: the server
//! writes an empty value for a `NULL` forced into a `NOT NULL` JSON column
//! (non-strict mode / `IGNORE`) and itself reads it back as `null`.
//! [`decode_json_document`] rejects empty input instead.
//!
//! Guarantees: never panics and never reads outside the input; all offsets
//! and lengths are bounds-checked; nesting is limited to [`MAX_DEPTH`]
//! containers; the total work (and output size) is bounded linearly by the
//! input size, so offsets that share sub-values cannot blow up the output;
//! object keys keep their stored order; strings and keys must be UTF-8;
//! non-finite doubles are rejected.
//!
//! Precision note: without arbitrary-precision numbers in `serde_json`,
//! a `DECIMAL` with a fractional part (or too large for 64-bit integers) is
//! returned as the nearest `f64` by default (so `9.00` becomes `9.0`);
//! [`JsonDecodeOptions::decimal_as_string`] returns the exact decimal text as
//! a JSON string instead.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::decimal::decode_decimal;
use super::temporal::{
    datetime_from_packed, format_datetime, format_time_padded, time_from_packed,
};

/// Deepest container nesting accepted (same limit as the server).
pub const MAX_DEPTH: usize = 100;

pub const JSONB_TYPE_SMALL_OBJECT: u8 = 0x00;
pub const JSONB_TYPE_LARGE_OBJECT: u8 = 0x01;
pub const JSONB_TYPE_SMALL_ARRAY: u8 = 0x02;
pub const JSONB_TYPE_LARGE_ARRAY: u8 = 0x03;
pub const JSONB_TYPE_LITERAL: u8 = 0x04;
pub const JSONB_TYPE_INT16: u8 = 0x05;
pub const JSONB_TYPE_UINT16: u8 = 0x06;
pub const JSONB_TYPE_INT32: u8 = 0x07;
pub const JSONB_TYPE_UINT32: u8 = 0x08;
pub const JSONB_TYPE_INT64: u8 = 0x09;
pub const JSONB_TYPE_UINT64: u8 = 0x0a;
pub const JSONB_TYPE_DOUBLE: u8 = 0x0b;
pub const JSONB_TYPE_STRING: u8 = 0x0c;
pub const JSONB_TYPE_OPAQUE: u8 = 0x0f;

pub const JSONB_LITERAL_NULL: u8 = 0x00;
pub const JSONB_LITERAL_TRUE: u8 = 0x01;
pub const JSONB_LITERAL_FALSE: u8 = 0x02;

// MySQL column types that get special treatment inside opaque values.
const MYSQL_TYPE_TIMESTAMP: u8 = 7;
const MYSQL_TYPE_DATE: u8 = 10;
const MYSQL_TYPE_TIME: u8 = 11;
const MYSQL_TYPE_DATETIME: u8 = 12;
const MYSQL_TYPE_NEWDECIMAL: u8 = 246;

/// Work units charged per decoded value; a value entry takes at least three
/// bytes in a well-formed document.
const NODE_COST: usize = 3;

/// Choices for representing values that JSON cannot carry exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonDecodeOptions {
    /// Return opaque `DECIMAL` values as their exact text in a JSON string
    /// (e.g. `"9.00"`) instead of a JSON number.
    pub decimal_as_string: bool,
}

/// Decodes a binary JSON column value. An empty buffer is JSON `null`.
pub fn decode_json(buf: &[u8]) -> Result<Value, String> {
    decode_json_with(buf, JsonDecodeOptions::default())
}

/// [`decode_json`] with explicit options.
pub fn decode_json_with(buf: &[u8], options: JsonDecodeOptions) -> Result<Value, String> {
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    decode_json_document_with(buf, options)
}

/// Decodes a binary JSON document (type byte + value); empty input is an
/// error. Trailing bytes after the root value are ignored, as the server
/// does.
pub fn decode_json_document(buf: &[u8]) -> Result<Value, String> {
    decode_json_document_with(buf, JsonDecodeOptions::default())
}

/// [`decode_json_document`] with explicit options.
pub fn decode_json_document_with(buf: &[u8], options: JsonDecodeOptions) -> Result<Value, String> {
    let (&ty, rest) = buf
        .split_first()
        .ok_or_else(|| "binary JSON: empty document".to_string())?;
    let mut dec = Decoder {
        budget: buf.len().saturating_mul(2).saturating_add(64),
        doc_len: buf.len(),
        options,
    };
    dec.value(ty, rest, 0)
}

struct Decoder {
    /// Remaining work units (values and string bytes) before giving up.
    budget: usize,
    doc_len: usize,
    options: JsonDecodeOptions,
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

impl Decoder {
    fn charge(&mut self, units: usize) -> Result<(), String> {
        self.budget = self.budget.checked_sub(units).ok_or_else(|| {
            format!(
                "binary JSON: document of {} bytes expands beyond its size (shared or cyclic offsets)",
                self.doc_len
            )
        })?;
        Ok(())
    }

    /// Reads `n` bytes at `off` in `data` (a value or container slice).
    fn bytes<'a>(
        &self,
        data: &'a [u8],
        off: usize,
        n: usize,
        what: &str,
    ) -> Result<&'a [u8], String> {
        off.checked_add(n)
            .and_then(|end| data.get(off..end))
            .ok_or_else(|| {
                format!(
                    "binary JSON: {what} of {n} bytes at offset {off} beyond {}-byte value",
                    data.len()
                )
            })
    }

    /// Decodes a value of type `ty` whose bytes start at `data[0]`.
    fn value(&mut self, ty: u8, data: &[u8], depth: usize) -> Result<Value, String> {
        self.charge(NODE_COST)?;
        match ty {
            JSONB_TYPE_SMALL_OBJECT => self.container(data, false, true, depth),
            JSONB_TYPE_LARGE_OBJECT => self.container(data, true, true, depth),
            JSONB_TYPE_SMALL_ARRAY => self.container(data, false, false, depth),
            JSONB_TYPE_LARGE_ARRAY => self.container(data, true, false, depth),
            JSONB_TYPE_LITERAL => {
                literal(*self.bytes(data, 0, 1, "literal")?.first().unwrap_or(&0xff))
            }
            JSONB_TYPE_INT16 => Ok(Value::from(
                le(self.bytes(data, 0, 2, "int16")?) as u16 as i16
            )),
            JSONB_TYPE_UINT16 => Ok(Value::from(le(self.bytes(data, 0, 2, "uint16")?) as u16)),
            JSONB_TYPE_INT32 => Ok(Value::from(
                le(self.bytes(data, 0, 4, "int32")?) as u32 as i32
            )),
            JSONB_TYPE_UINT32 => Ok(Value::from(le(self.bytes(data, 0, 4, "uint32")?) as u32)),
            JSONB_TYPE_INT64 => Ok(Value::from(le(self.bytes(data, 0, 8, "int64")?) as i64)),
            JSONB_TYPE_UINT64 => Ok(Value::from(le(self.bytes(data, 0, 8, "uint64")?))),
            JSONB_TYPE_DOUBLE => {
                let bits = le(self.bytes(data, 0, 8, "double")?);
                let f = f64::from_bits(bits);
                Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("binary JSON: non-finite double {f}"))
            }
            JSONB_TYPE_STRING => {
                let (len, used) = read_var_len(data)?;
                let raw = self.bytes(data, used, len, "string")?;
                self.charge(len)?;
                let s = std::str::from_utf8(raw)
                    .map_err(|e| format!("binary JSON: string is not valid UTF-8: {e}"))?;
                Ok(Value::String(s.to_owned()))
            }
            JSONB_TYPE_OPAQUE => {
                let field_type = *self.bytes(data, 0, 1, "opaque type")?.first().unwrap_or(&0);
                let rest = data.get(1..).unwrap_or(&[]);
                let (len, used) = read_var_len(rest)?;
                let raw = self.bytes(rest, used, len, "opaque data")?;
                self.charge(len)?;
                opaque(field_type, raw, self.options)
            }
            other => Err(format!("binary JSON: unknown value type 0x{other:02x}")),
        }
    }

    fn container(
        &mut self,
        data: &[u8],
        large: bool,
        object: bool,
        depth: usize,
    ) -> Result<Value, String> {
        let depth = depth.saturating_add(1);
        if depth > MAX_DEPTH {
            return Err(format!("binary JSON: nesting deeper than {MAX_DEPTH}"));
        }
        let kind = if object { "object" } else { "array" };
        let os: usize = if large { 4 } else { 2 };
        let count = usize::try_from(le(self.bytes(data, 0, os, kind)?))
            .map_err(|_| format!("binary JSON: {kind} element count overflow"))?;
        let size = usize::try_from(le(self.bytes(data, os, os, kind)?))
            .map_err(|_| format!("binary JSON: {kind} size overflow"))?;
        let data = data.get(..size).ok_or_else(|| {
            format!(
                "binary JSON: {kind} size {size} beyond {} available bytes",
                data.len()
            )
        })?;
        let key_entry = if object { os + 2 } else { 0 };
        let value_entry = 1 + os;
        let header = count
            .checked_mul(key_entry + value_entry)
            .and_then(|n| n.checked_add(2 * os))
            .filter(|&h| h <= size)
            .ok_or_else(|| {
                format!(
                    "binary JSON: {kind} with {count} elements does not fit in its {size} bytes"
                )
            })?;
        let values_start = 2 * os + count * key_entry;

        let mut map = Map::new();
        let mut arr = Vec::new();
        if !object {
            arr.reserve(count);
        }
        for i in 0..count {
            let key = if object {
                let e = self.bytes(data, 2 * os + i * key_entry, key_entry, "key entry")?;
                let key_off = usize::try_from(le(e.get(..os).unwrap_or(&[])))
                    .map_err(|_| "binary JSON: key offset overflow".to_string())?;
                let key_len = usize::try_from(le(e.get(os..).unwrap_or(&[])))
                    .map_err(|_| "binary JSON: key length overflow".to_string())?;
                if key_off < header {
                    return Err(format!(
                        "binary JSON: key offset {key_off} inside the {header}-byte object header"
                    ));
                }
                let raw = key_off
                    .checked_add(key_len)
                    .and_then(|end| data.get(key_off..end))
                    .ok_or_else(|| {
                        format!(
                            "binary JSON: key of {key_len} bytes at offset {key_off} beyond {size}-byte object"
                        )
                    })?;
                self.charge(key_len)?;
                let k = std::str::from_utf8(raw)
                    .map_err(|e| format!("binary JSON: object key is not valid UTF-8: {e}"))?;
                Some(k.to_owned())
            } else {
                None
            };

            let e = self.bytes(
                data,
                values_start + i * value_entry,
                value_entry,
                "value entry",
            )?;
            let ty = *e.first().unwrap_or(&0xff);
            let field = le(e.get(1..).unwrap_or(&[]));
            let v = if is_inlined(ty, large) {
                self.charge(NODE_COST)?;
                inlined(ty, field)?
            } else {
                let off = usize::try_from(field)
                    .map_err(|_| "binary JSON: value offset overflow".to_string())?;
                if off < header {
                    return Err(format!(
                        "binary JSON: value offset {off} inside the {header}-byte {kind} header"
                    ));
                }
                let sub = data.get(off..).filter(|s| !s.is_empty()).ok_or_else(|| {
                    format!("binary JSON: value offset {off} beyond {size}-byte {kind}")
                })?;
                self.value(ty, sub, depth)?
            };
            match key {
                Some(k) => {
                    map.insert(k, v);
                }
                None => arr.push(v),
            }
        }
        Ok(if object {
            Value::Object(map)
        } else {
            Value::Array(arr)
        })
    }
}

fn is_inlined(ty: u8, large: bool) -> bool {
    match ty {
        JSONB_TYPE_LITERAL | JSONB_TYPE_INT16 | JSONB_TYPE_UINT16 => true,
        JSONB_TYPE_INT32 | JSONB_TYPE_UINT32 => large,
        _ => false,
    }
}

fn inlined(ty: u8, field: u64) -> Result<Value, String> {
    Ok(match ty {
        JSONB_TYPE_LITERAL => return literal((field & 0xff) as u8),
        JSONB_TYPE_INT16 => Value::from(field as u16 as i16),
        JSONB_TYPE_UINT16 => Value::from(field as u16),
        JSONB_TYPE_INT32 => Value::from(field as u32 as i32),
        JSONB_TYPE_UINT32 => Value::from(field as u32),
        other => return Err(format!("binary JSON: type 0x{other:02x} cannot be inlined")),
    })
}

fn literal(b: u8) -> Result<Value, String> {
    match b {
        JSONB_LITERAL_NULL => Ok(Value::Null),
        JSONB_LITERAL_TRUE => Ok(Value::Bool(true)),
        JSONB_LITERAL_FALSE => Ok(Value::Bool(false)),
        other => Err(format!("binary JSON: unknown literal 0x{other:02x}")),
    }
}

/// Reads the variable-length size used by strings and opaque values: up to
/// five bytes, seven bits each, low bits first, high bit = more bytes follow.
/// Returns (length, bytes used).
fn read_var_len(data: &[u8]) -> Result<(usize, usize), String> {
    let mut len: u64 = 0;
    for i in 0..5usize {
        let b = *data
            .get(i)
            .ok_or_else(|| "binary JSON: truncated variable-length size".to_string())?;
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let len = u32::try_from(len)
                .map_err(|_| format!("binary JSON: variable-length size {len} too large"))?;
            let len = usize::try_from(len)
                .map_err(|_| format!("binary JSON: variable-length size {len} too large"))?;
            return Ok((len, i + 1));
        }
    }
    Err("binary JSON: variable-length size longer than 5 bytes".to_string())
}

fn opaque(field_type: u8, raw: &[u8], options: JsonDecodeOptions) -> Result<Value, String> {
    match field_type {
        MYSQL_TYPE_NEWDECIMAL => {
            let (&precision, rest) = raw
                .split_first()
                .ok_or_else(|| "binary JSON: empty opaque DECIMAL".to_string())?;
            let (&scale, bin) = rest
                .split_first()
                .ok_or_else(|| "binary JSON: opaque DECIMAL without scale".to_string())?;
            let (text, _) = decode_decimal(bin, precision, scale)
                .map_err(|e| format!("binary JSON: opaque {e}"))?;
            if options.decimal_as_string {
                Ok(Value::String(text))
            } else {
                decimal_to_json(&text, scale)
            }
        }
        MYSQL_TYPE_DATE | MYSQL_TYPE_TIME | MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP => {
            let arr: [u8; 8] = raw.try_into().map_err(|_| {
                format!(
                    "binary JSON: opaque temporal (type {field_type}) has {} bytes, expected 8",
                    raw.len()
                )
            })?;
            let packed = i64::from_le_bytes(arr);
            let text = if field_type == MYSQL_TYPE_TIME {
                let t = time_from_packed(packed).map_err(|e| format!("binary JSON: {e}"))?;
                format_time_padded(&t, 6)
            } else {
                let dt = datetime_from_packed(packed).map_err(|e| format!("binary JSON: {e}"))?;
                if field_type == MYSQL_TYPE_DATE {
                    dt.date().to_string()
                } else {
                    format_datetime(&dt, 6)
                }
            };
            Ok(Value::String(text))
        }
        other => Ok(Value::String(format!(
            "base64:type{other}:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))),
    }
}

/// Turns exact decimal text into a JSON number: an integer when there is no
/// fractional part and it fits 64 bits, the nearest `f64` otherwise.
fn decimal_to_json(text: &str, scale: u8) -> Result<Value, String> {
    if scale == 0 {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Value::from(u));
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("binary JSON: decimal {text} not representable"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    // ---- a small test-only encoder (always non-inlined except where the
    // format requires inlining), used for round trips ----

    fn var_len(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// Encodes `v` as (type, bytes); containers are encoded in the large
    /// form when `large`.
    fn enc(v: &Value, large: bool) -> (u8, Vec<u8>) {
        match v {
            Value::Null => (JSONB_TYPE_LITERAL, vec![0]),
            Value::Bool(true) => (JSONB_TYPE_LITERAL, vec![1]),
            Value::Bool(false) => (JSONB_TYPE_LITERAL, vec![2]),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    if let Ok(x) = i16::try_from(i) {
                        (JSONB_TYPE_INT16, x.to_le_bytes().to_vec())
                    } else if let Ok(x) = i32::try_from(i) {
                        (JSONB_TYPE_INT32, x.to_le_bytes().to_vec())
                    } else {
                        (JSONB_TYPE_INT64, i.to_le_bytes().to_vec())
                    }
                } else if let Some(u) = n.as_u64() {
                    (JSONB_TYPE_UINT64, u.to_le_bytes().to_vec())
                } else {
                    (
                        JSONB_TYPE_DOUBLE,
                        n.as_f64().unwrap().to_le_bytes().to_vec(),
                    )
                }
            }
            Value::String(s) => {
                let mut out = Vec::new();
                var_len(s.len(), &mut out);
                out.extend_from_slice(s.as_bytes());
                (JSONB_TYPE_STRING, out)
            }
            Value::Array(items) => {
                let entries: Vec<(Option<&str>, &Value)> =
                    items.iter().map(|v| (None, v)).collect();
                enc_container(&entries, false, large)
            }
            Value::Object(m) => {
                let entries: Vec<(Option<&str>, &Value)> =
                    m.iter().map(|(k, v)| (Some(k.as_str()), v)).collect();
                enc_container(&entries, true, large)
            }
        }
    }

    fn put(out: &mut Vec<u8>, v: usize, width: usize) {
        out.extend_from_slice(&(v as u64).to_le_bytes()[..width]);
    }

    fn enc_container(
        entries: &[(Option<&str>, &Value)],
        object: bool,
        large: bool,
    ) -> (u8, Vec<u8>) {
        let os = if large { 4 } else { 2 };
        let n = entries.len();
        let header = 2 * os + n * (if object { os + 2 } else { 0 }) + n * (1 + os);
        let mut keys = Vec::new();
        let mut key_entries = Vec::new();
        let mut cursor = header;
        if object {
            for (k, _) in entries {
                let k = k.unwrap();
                put(&mut key_entries, cursor, os);
                put(&mut key_entries, k.len(), 2);
                keys.extend_from_slice(k.as_bytes());
                cursor += k.len();
            }
        }
        let mut value_entries = Vec::new();
        let mut values = Vec::new();
        for (_, v) in entries {
            let (ty, bytes) = enc(v, large);
            value_entries.push(ty);
            if is_inlined(ty, large) {
                let mut field = bytes.clone();
                field.resize(os, 0);
                value_entries.extend_from_slice(&field[..os]);
            } else {
                put(&mut value_entries, cursor, os);
                cursor += bytes.len();
                values.extend_from_slice(&bytes);
            }
        }
        let mut out = Vec::new();
        put(&mut out, n, os);
        put(&mut out, cursor, os);
        out.extend_from_slice(&key_entries);
        out.extend_from_slice(&value_entries);
        out.extend_from_slice(&keys);
        out.extend_from_slice(&values);
        let ty = match (object, large) {
            (true, false) => JSONB_TYPE_SMALL_OBJECT,
            (true, true) => JSONB_TYPE_LARGE_OBJECT,
            (false, false) => JSONB_TYPE_SMALL_ARRAY,
            (false, true) => JSONB_TYPE_LARGE_ARRAY,
        };
        (ty, out)
    }

    fn doc(v: &Value, large: bool) -> Vec<u8> {
        let (ty, mut bytes) = enc(v, large);
        bytes.insert(0, ty);
        bytes
    }

    #[test]
    fn empty_is_null() {
        assert_eq!(decode_json(&[]).unwrap(), Value::Null);
        assert!(decode_json_document(&[]).is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(decode_json(&[0x04, 0x00]).unwrap(), Value::Null);
        assert_eq!(decode_json(&[0x04, 0x01]).unwrap(), json!(true));
        assert_eq!(decode_json(&[0x04, 0x02]).unwrap(), json!(false));
        assert!(decode_json(&[0x04, 0x03]).is_err());
        assert_eq!(decode_json(&[0x05, 0xff, 0xff]).unwrap(), json!(-1));
        assert_eq!(decode_json(&[0x06, 0xff, 0xff]).unwrap(), json!(65535));
        assert_eq!(
            decode_json(&[0x07, 0x00, 0x00, 0x00, 0x80]).unwrap(),
            json!(i32::MIN)
        );
        assert_eq!(
            decode_json(&[0x08, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            json!(u32::MAX)
        );
        assert_eq!(
            decode_json(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0x80]).unwrap(),
            json!(i64::MIN)
        );
        assert_eq!(
            decode_json(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            json!(u64::MAX)
        );
        let mut d = vec![0x0b];
        d.extend_from_slice(&3.5f64.to_le_bytes());
        assert_eq!(decode_json(&d).unwrap(), json!(3.5));
        let mut d = vec![0x0b];
        d.extend_from_slice(&f64::NAN.to_le_bytes());
        assert!(decode_json(&d).unwrap_err().contains("non-finite"));
        assert_eq!(decode_json(b"\x0c\x05hello").unwrap(), json!("hello"));
        assert_eq!(decode_json(b"\x0c\x00").unwrap(), json!(""));
        assert!(decode_json(b"\x0c\x06hello").is_err());
        assert!(decode_json(b"\x0c\x02\xff\xfe").is_err());
        assert!(decode_json(&[0x0d, 0x00]).is_err());
        assert!(decode_json(&[0x09, 0, 0]).is_err());
    }

    #[test]
    fn long_string_var_len() {
        let s = "x".repeat(300);
        let mut d = vec![0x0c, 0xac, 0x02]; // 300 = 0b10_0101100
        d.extend_from_slice(s.as_bytes());
        assert_eq!(decode_json(&d).unwrap(), json!(s));
        assert!(decode_json(&[0x0c, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert!(decode_json(&[0x0c, 0x80]).is_err());
    }

    #[test]
    fn small_object_hand_built() {
        // {"a": 1, "b": "xy"}: count 2, size; key entries at 4, value entries
        // at 12; keys at 18 ("a"), 19 ("b"); value "xy" at 20.
        let d: Vec<u8> = vec![
            0x00, // small object
            0x02, 0x00, // count
            0x17, 0x00, // size 23
            0x12, 0x00, 0x01, 0x00, // key "a" @18 len 1
            0x13, 0x00, 0x01, 0x00, // key "b" @19 len 1
            0x05, 0x01, 0x00, // int16 inlined 1
            0x0c, 0x14, 0x00, // string @20
            b'a', b'b', // keys
            0x02, b'x', b'y', // string value
        ];
        assert_eq!(decode_json(&d).unwrap(), json!({"a": 1, "b": "xy"}));
        // key offset pointing into the header is rejected
        let mut bad = d.clone();
        bad[5] = 0x02;
        assert!(decode_json(&bad).is_err());
        // size beyond buffer
        let mut bad = d.clone();
        bad[3] = 0x30;
        assert!(decode_json(&bad).unwrap_err().contains("size"));
        // value offset beyond object
        let mut bad = d.clone();
        bad[17] = 0x40;
        assert!(decode_json(&bad).unwrap_err().contains("beyond"));
    }

    #[test]
    fn key_order_preserved() {
        let v = json!({"zeta": 1, "alpha": [1, 2], "mid": {"y": null, "b": true}});
        let out = decode_json(&doc(&v, false)).unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"zeta":1,"alpha":[1,2],"mid":{"y":null,"b":true}}"#
        );
    }

    #[test]
    fn arrays_small_and_large_with_inlining() {
        // large array with inlined int32 and uint32
        let d: Vec<u8> = vec![
            0x03, // large array
            0x02, 0, 0, 0, // count
            0x12, 0, 0, 0, // size 18
            0x07, 0xfe, 0xff, 0xff, 0xff, // int32 -2 inlined
            0x08, 0xff, 0xff, 0xff, 0xff, // uint32 max inlined
        ];
        assert_eq!(decode_json(&d).unwrap(), json!([-2, u32::MAX]));
        // small array: int32 is NOT inlined, offset to 4 bytes
        let d: Vec<u8> = vec![
            0x02, 0x02, 0x00, 0x10, 0x00, // count 2, size 16
            0x07, 0x0a, 0x00, // int32 @10
            0x04, 0x01, 0x00, // literal true inlined
            0x2a, 0x00, 0x00, 0x00, // 42
            0xAA, 0xBB, // padding within size
        ];
        assert_eq!(decode_json(&d).unwrap(), json!([42, true]));
        assert_eq!(decode_json(&[0x02, 0, 0, 4, 0]).unwrap(), json!([]));
        assert_eq!(decode_json(&[0x00, 0, 0, 4, 0]).unwrap(), json!({}));
        // count that does not fit
        assert!(decode_json(&[0x02, 0xff, 0xff, 4, 0]).is_err());
    }

    #[test]
    fn nested_round_trip_small_and_large() {
        let v = json!({
            "name": "drc", "n": -70000, "big": 9_000_000_000i64, "u": u64::MAX,
            "f": -1.25, "list": [1, "two", [3, {"four": 4}], null, false],
            "empty": {}, "unicode": "h\u{e9}llo \u{1f600}"
        });
        for large in [false, true] {
            assert_eq!(decode_json(&doc(&v, large)).unwrap(), v);
        }
    }

    #[test]
    fn depth_limit() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        assert_eq!(decode_json(&doc(&v, false)).unwrap(), v);
        let v = json!([v]);
        assert!(decode_json(&doc(&v, false))
            .unwrap_err()
            .contains("nesting"));
    }

    #[test]
    fn shared_offsets_do_not_explode() {
        // Each level is an array of two entries pointing at the same child.
        // child at level k is at offset 10 of its parent.
        let mut inner: Vec<u8> = vec![0x00, 0x00, 0x04, 0x00]; // []
        for _ in 0..60 {
            let size = 10 + inner.len();
            let mut d = vec![0x02, 0x00];
            d.extend_from_slice(&(size as u16).to_le_bytes());
            d.extend_from_slice(&[0x02, 0x0a, 0x00, 0x02, 0x0a, 0x00]);
            d.extend_from_slice(&inner);
            if d.len() > 0xffff {
                break;
            }
            inner = d;
        }
        let mut full = vec![0x02];
        full.extend_from_slice(&inner);
        assert!(decode_json(&full).unwrap_err().contains("expands"));
    }

    #[test]
    fn opaque_decimal() {
        // DECIMAL(10,2) 1234567.89
        let d = [0x0f, 246, 0x07, 10, 2, 0x80, 0x12, 0xD6, 0x87, 0x59];
        assert_eq!(decode_json(&d).unwrap(), json!(1234567.89));
        // DECIMAL(5,0) -123 -> 3 bytes; 123 = 0x00007B -> inverted 0xFFFF84 -> flip 0x7FFF84
        let d = [0x0f, 246, 0x05, 5, 0, 0x7F, 0xFF, 0x84];
        assert_eq!(decode_json(&d).unwrap(), json!(-123));
        let d = [0x0f, 246, 0x04, 10, 2, 0x80, 0x12];
        assert!(decode_json(&d).is_err());
        // exact text on request
        let opts = JsonDecodeOptions {
            decimal_as_string: true,
        };
        let d = [0x0f, 246, 0x04, 3, 2, 0x89, 0x00];
        assert_eq!(decode_json(&d).unwrap(), json!(9.0));
        assert_eq!(decode_json_with(&d, opts).unwrap(), json!("9.00"));
        assert_eq!(decode_json_document_with(&d, opts).unwrap(), json!("9.00"));
    }

    #[test]
    fn opaque_temporal() {
        let hms = (23i64 << 12) | (24 << 6) | 25;
        let ymd = ((2015i64 * 13 + 1) << 5) | 15;
        let dt_packed = ((ymd << 17) | hms) << 24;
        let date_packed = (ymd << 17) << 24;
        let mk = |ty: u8, p: i64| {
            let mut d = vec![0x0f, ty, 8];
            d.extend_from_slice(&p.to_le_bytes());
            d
        };
        assert_eq!(
            decode_json(&mk(10, date_packed)).unwrap(),
            json!("2015-01-15")
        );
        assert_eq!(
            decode_json(&mk(12, dt_packed)).unwrap(),
            json!("2015-01-15 23:24:25.000000")
        );
        assert_eq!(
            decode_json(&mk(7, dt_packed + 5)).unwrap(),
            json!("2015-01-15 23:24:25.000005")
        );
        assert_eq!(
            decode_json(&mk(11, hms << 24)).unwrap(),
            json!("23:24:25.000000")
        );
        assert_eq!(
            decode_json(&mk(11, -((hms << 24) + 500_000))).unwrap(),
            json!("-23:24:25.500000")
        );
        assert!(decode_json(&[0x0f, 10, 2, 0, 0]).is_err());
        assert!(decode_json(&mk(12, -1)).is_err());
    }

    #[test]
    fn opaque_other_is_base64() {
        assert_eq!(
            decode_json(&[0x0f, 15, 2, 0x00, 0x01]).unwrap(),
            json!("base64:type15:AAE=")
        );
        assert_eq!(
            decode_json(&[0x0f, 252, 0]).unwrap(),
            json!("base64:type252:")
        );
        assert!(decode_json(&[0x0f, 252, 3, 1]).is_err());
        assert!(decode_json(&[0x0f]).is_err());
    }

    #[test]
    fn opaque_inside_object() {
        // {"d": <opaque date>}
        let ymd = ((2020i64 * 13 + 2) << 5) | 29;
        let mut val = vec![10u8, 8];
        val.extend_from_slice(&((ymd << 17) << 24).to_le_bytes());
        let header = 4 + 4 + 3;
        let mut d = vec![0x00, 0x01, 0x00];
        d.extend_from_slice(&((header + 1 + val.len()) as u16).to_le_bytes());
        d.extend_from_slice(&(header as u16).to_le_bytes());
        d.extend_from_slice(&[0x01, 0x00]);
        d.push(0x0f);
        d.extend_from_slice(&((header + 1) as u16).to_le_bytes());
        d.push(b'd');
        d.extend_from_slice(&val);
        assert_eq!(decode_json(&d).unwrap(), json!({"d": "2020-02-29"}));
    }

    /// Reads a recorded binlog from the shared fixture folder beside the
    /// project, or `None` (with a note) where the folder is absent.
    fn fixture(name: &str) -> Option<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binlogs");
        match std::fs::read(format!("{dir}/{name}")) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("SKIPPED: binlog fixture {name} not available ({e})");
                None
            }
        }
    }

    /// Finds every 4-byte-length-prefixed slice of `file` that decodes as a
    /// binary JSON object or array (how JSON columns appear in row images)
    /// and returns the decoded values as compact text.
    fn scan_json_values(file: &[u8], options: JsonDecodeOptions) -> Vec<String> {
        let mut found = Vec::new();
        for i in 0..file.len().saturating_sub(4) {
            let len = u32::from_le_bytes(file[i..i + 4].try_into().unwrap()) as usize;
            let Some(doc) = file.get(i + 4..i + 4 + len) else {
                continue;
            };
            if len < 5 || doc[0] > JSONB_TYPE_LARGE_ARRAY {
                continue;
            }
            if let Ok(v) = decode_json_with(doc, options) {
                found.push(v.to_string());
            }
        }
        found
    }

    #[test]
    fn recorded_mysql_9_opaque_values() {
        let Some(file) = fixture("mysql-common__json-opaque.binlog") else {
            return;
        };
        let found = scan_json_values(&file, JsonDecodeOptions::default());
        for want in [
            r#"{"a":"base64:type15:VQ=="}"#,
            r#"{"b":"2012-03-18"}"#,
            r#"{"c":"2012-03-18 11:30:45.000000"}"#,
            r#"{"c":"87:31:46.654321"}"#,
            r#"{"d":123.456}"#,
            r#"{"e":9.0}"#,
            r#"{"e":[0,1,true,false]}"#,
            r#"{"e":null}"#,
        ] {
            assert!(
                found.iter().any(|f| f == want),
                "{want} not among {found:?}"
            );
        }
        let exact = scan_json_values(
            &file,
            JsonDecodeOptions {
                decimal_as_string: true,
            },
        );
        assert!(exact.iter().any(|f| f == r#"{"e":"9.00"}"#), "{exact:?}");
        assert!(exact.iter().any(|f| f == r#"{"d":"123.456"}"#), "{exact:?}");
    }

    #[test]
    fn recorded_mysql_8_documents() {
        let Some(file) = fixture("mysql-common__json.binlog.000001") else {
            return;
        };
        let found = scan_json_values(&file, JsonDecodeOptions::default());
        for want in [
            r#"{"age":24,"data":"xxxxxxxxxx","name":"Joe"}"#,
            r#"{"age":33,"data":"yyyyyyyyyy","name":"Sue"}"#,
            r#"{"age":41,"data":"zzzzzzzzzz","name":"Pete"}"#,
        ] {
            assert!(
                found.iter().any(|f| f == want),
                "{want} not among {found:?}"
            );
        }
    }

    fn json_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e15f64..1e15).prop_map(Value::from),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((".{0,8}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in json_strategy(), large in any::<bool>()) {
            let d = doc(&v, large);
            prop_assert_eq!(decode_json(&d).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_json(&buf);
        }

        #[test]
        fn mutated_documents_never_panic(v in json_strategy(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut d = doc(&v, false);
            for (i, b) in flips {
                let n = d.len();
                d[i % n] = b;
            }
            let _ = decode_json(&d);
        }
    }
}
