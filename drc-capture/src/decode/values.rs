//! Decodes one column value of a row image into the normalized [`pb::Value`].
//!
//! Exactness rules: integers keep signedness and the full 64-bit range, DECIMAL
//! keeps its digits as text, temporal values keep their fields and the column's
//! fractional precision, text is decoded from the column charset (invalid bytes
//! are an error), BINARY(n) is re-padded to n bytes as the server stores it.

use drc_proto::v1 as pb;
use pb::value::Kind;

use super::charset::Charset;
use super::plan::ColKind;
use super::{decimal, json_binary, temporal};
use crate::binlog::cursor::Cursor;

fn v(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

pub fn null() -> pb::Value {
    v(Kind::Null(true))
}

fn sh(e: crate::binlog::cursor::Short) -> String {
    e.to_string()
}

/// Reads the raw bytes of a length-prefixed value (BLOB/JSON/GEOMETRY).
pub fn read_prefixed<'a>(c: &mut Cursor<'a>, len_bytes: u8) -> Result<&'a [u8], String> {
    if !(1..=4).contains(&len_bytes) {
        return Err(format!("bad length-prefix size {len_bytes}"));
    }
    let n = c
        .uint_le(usize::from(len_bytes), "value length")
        .map_err(sh)? as usize;
    c.take(n, "value").map_err(sh)
}

/// Decodes one non-NULL value of `kind` at the cursor.
pub fn decode_value(c: &mut Cursor<'_>, kind: &ColKind) -> Result<pb::Value, String> {
    Ok(match kind {
        ColKind::Int { bytes, unsigned } => {
            let n = usize::from(*bytes);
            let raw = c.uint_le(n, "integer").map_err(sh)?;
            if *unsigned {
                v(Kind::Uint(raw))
            } else {
                let shift = 64 - 8 * n as u32;
                v(Kind::Int(((raw << shift) as i64) >> shift))
            }
        }
        ColKind::Float => {
            let b = c.take(4, "float").map_err(sh)?;
            v(Kind::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        ColKind::Double => {
            let b = c.take(8, "double").map_err(sh)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            v(Kind::Double(f64::from_le_bytes(a)))
        }
        ColKind::Decimal { precision, scale } => {
            let (text, used) = decimal::decode_decimal(c.peek_rest(), *precision, *scale)?;
            c.skip(used, "decimal").map_err(sh)?;
            v(Kind::Decimal(text))
        }
        ColKind::Year => {
            let y = c.u8("year").map_err(sh)?;
            v(Kind::Year(if y == 0 { 0 } else { 1900 + u32::from(y) }))
        }
        ColKind::Date => {
            let (d, used) = temporal::decode_date(c.peek_rest())?;
            c.skip(used, "date").map_err(sh)?;
            v(Kind::Date(pb::Date {
                year: u32::from(d.year),
                month: u32::from(d.month),
                day: u32::from(d.day),
            }))
        }
        ColKind::TimeV1 | ColKind::Time2 { .. } => {
            let (t, used, fsp) = match kind {
                ColKind::Time2 { fsp } => {
                    let (t, u) = temporal::decode_time2(c.peek_rest(), *fsp)?;
                    (t, u, *fsp)
                }
                _ => {
                    let (t, u) = temporal::decode_time_v1(c.peek_rest())?;
                    (t, u, 0)
                }
            };
            c.skip(used, "time").map_err(sh)?;
            v(Kind::Time(pb::Time {
                negative: t.negative,
                hours: t.hours,
                minutes: u32::from(t.minutes),
                seconds: u32::from(t.seconds),
                micros: t.micros,
                fsp: u32::from(fsp),
            }))
        }
        ColKind::DateTimeV1 | ColKind::DateTime2 { .. } => {
            let (d, used, fsp) = match kind {
                ColKind::DateTime2 { fsp } => {
                    let (d, u) = temporal::decode_datetime2(c.peek_rest(), *fsp)?;
                    (d, u, *fsp)
                }
                _ => {
                    let (d, u) = temporal::decode_datetime_v1(c.peek_rest())?;
                    (d, u, 0)
                }
            };
            c.skip(used, "datetime").map_err(sh)?;
            v(Kind::Datetime(pb::DateTime {
                year: u32::from(d.year),
                month: u32::from(d.month),
                day: u32::from(d.day),
                hour: u32::from(d.hour),
                minute: u32::from(d.minute),
                second: u32::from(d.second),
                micros: d.micros,
                fsp: u32::from(fsp),
            }))
        }
        ColKind::TimestampV1 | ColKind::Timestamp2 { .. } => {
            let (secs, micros, used, fsp) = match kind {
                ColKind::Timestamp2 { fsp } => {
                    let (s, m, u) = temporal::decode_timestamp2(c.peek_rest(), *fsp)?;
                    (s, m, u, *fsp)
                }
                _ => {
                    let (s, m, u) = temporal::decode_timestamp_v1(c.peek_rest())?;
                    (s, m, u, 0)
                }
            };
            c.skip(used, "timestamp").map_err(sh)?;
            v(Kind::Timestamp(pb::Timestamp {
                seconds: i64::from(secs),
                micros,
                fsp: u32::from(fsp),
            }))
        }
        ColKind::Bit { bytes, width } => {
            let raw = c.uint_be(usize::from(*bytes), "bit").map_err(sh)?;
            v(Kind::Bit(pb::Bit {
                value: raw,
                width: u32::from(*width),
            }))
        }
        ColKind::Str {
            len_bytes,
            charset,
            fixed_len,
        } => {
            let n = c
                .uint_le(usize::from(*len_bytes), "string length")
                .map_err(sh)? as usize;
            let b = c.take(n, "string").map_err(sh)?;
            text_or_bytes(b, *charset, *fixed_len)?
        }
        ColKind::Blob { len_bytes, charset } => {
            let b = read_prefixed(c, *len_bytes)?;
            text_or_bytes(b, *charset, None)?
        }
        ColKind::Json { len_bytes } => {
            let b = read_prefixed(c, *len_bytes)?;
            let doc = json_binary::decode_json(b).map_err(|e| format!("JSON: {e}"))?;
            v(Kind::Json(doc.to_string()))
        }
        ColKind::JsonText { len_bytes } => {
            let b = read_prefixed(c, *len_bytes)?;
            let text = std::str::from_utf8(b).map_err(|_| "JSON text is not UTF-8".to_string())?;
            if text.is_empty() {
                // MariaDB stores '' in a JSON column when the check allows it.
                v(Kind::Text(String::new()))
            } else {
                // Normalized to compact form: stored text may hold newlines.
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(doc) => v(Kind::Json(doc.to_string())),
                    Err(e) => return Err(format!("JSON column holds invalid JSON: {e}")),
                }
            }
        }
        ColKind::Enum { bytes, labels } => {
            let i = c.uint_le(usize::from(*bytes), "enum").map_err(sh)? as usize;
            if i == 0 {
                // The empty string MySQL stores for an invalid value in non-strict mode.
                v(Kind::EnumLabel(String::new()))
            } else {
                match labels.get(i - 1) {
                    Some(l) => v(Kind::EnumLabel(l.clone())),
                    None if labels.is_empty() => v(Kind::Uint(i as u64)),
                    None => {
                        return Err(format!("ENUM index {i} beyond its {} labels", labels.len()))
                    }
                }
            }
        }
        ColKind::Set { bytes, labels } => {
            let bits = c.uint_le(usize::from(*bytes), "set").map_err(sh)?;
            if labels.is_empty() {
                v(Kind::Uint(bits))
            } else {
                let mut out = Vec::new();
                for (i, l) in labels.iter().enumerate().take(64) {
                    if bits & (1u64 << i) != 0 {
                        out.push(l.clone());
                    }
                }
                if labels.len() < 64 && bits >> labels.len() != 0 {
                    return Err(format!(
                        "SET bits {bits:#x} beyond its {} labels",
                        labels.len()
                    ));
                }
                v(Kind::SetLabels(pb::SetLabels { labels: out }))
            }
        }
        ColKind::Geometry { len_bytes } => {
            let b = read_prefixed(c, *len_bytes)?;
            if b.len() < 4 {
                return Err("geometry shorter than its SRID".into());
            }
            v(Kind::Geometry(pb::Geometry {
                srid: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                wkb: b[4..].to_vec(),
            }))
        }
        ColKind::Vector { len_bytes } => {
            let b = read_prefixed(c, *len_bytes)?;
            if b.len() % 4 != 0 {
                return Err("vector length not a multiple of 4".into());
            }
            v(Kind::Vector(pb::Vector {
                values: b
                    .chunks_exact(4)
                    .map(|p| f32::from_le_bytes([p[0], p[1], p[2], p[3]]))
                    .collect(),
            }))
        }
        ColKind::Inet6 { len_bytes } => {
            let n = c
                .uint_le(usize::from(*len_bytes), "inet6 length")
                .map_err(sh)? as usize;
            let b = padded16(c.take(n, "inet6").map_err(sh)?)?;
            v(Kind::Inet6(std::net::Ipv6Addr::from(b).to_string()))
        }
        ColKind::Uuid { len_bytes } => {
            let n = c
                .uint_le(usize::from(*len_bytes), "uuid length")
                .map_err(sh)? as usize;
            let b = padded16(c.take(n, "uuid").map_err(sh)?)?;
            v(Kind::Uuid(mariadb_uuid_text(&b)))
        }
    })
}

fn padded16(b: &[u8]) -> Result<[u8; 16], String> {
    if b.len() > 16 {
        return Err(format!("{} bytes for a 16-byte value", b.len()));
    }
    let mut a = [0u8; 16];
    a[..b.len()].copy_from_slice(b);
    Ok(a)
}

/// MariaDB stores RFC 4122 UUIDs (variant 1, versions 1–5) with their five
/// groups in reverse order so that time-based ids sort; other UUIDs as written.
fn mariadb_uuid_text(rec: &[u8; 16]) -> String {
    let variant_ok = rec[8] & 0xc0 == 0x80 || rec[0] & 0xc0 == 0x80;
    // Record layout when swapped: node(6) clock_seq(2) time_hi(2) time_mid(2) time_low(4).
    let swapped = {
        let version = rec[6] >> 4;
        !(rec[8] & 0xc0 == 0x80 && (1..=5).contains(&version))
    };
    let text = if swapped && variant_ok {
        let mut u = [0u8; 16];
        u[0..4].copy_from_slice(&rec[12..16]);
        u[4..6].copy_from_slice(&rec[10..12]);
        u[6..8].copy_from_slice(&rec[8..10]);
        u[8..10].copy_from_slice(&rec[6..8]);
        u[10..16].copy_from_slice(&rec[0..6]);
        u
    } else {
        *rec
    };
    crate::binlog::events::format_uuid(&text)
}

fn text_or_bytes(b: &[u8], charset: Charset, fixed_len: Option<u16>) -> Result<pb::Value, String> {
    if charset == Charset::Unknown {
        return Ok(match std::str::from_utf8(b) {
            Ok(s) => v(Kind::Text(s.to_owned())),
            Err(_) => v(Kind::Bytes(b.to_vec())),
        });
    }
    if charset == Charset::Binary {
        let mut bytes = b.to_vec();
        if let Some(n) = fixed_len {
            // BINARY(n): the binlog drops the trailing zero padding the row has.
            if bytes.len() < usize::from(n) {
                bytes.resize(usize::from(n), 0);
            }
        }
        return Ok(v(Kind::Bytes(bytes)));
    }
    charset.decode(b).map(|s| v(Kind::Text(s)))
}
