//! Source values, as a MariaDB session in UTF-8 and UTC prints them, turned
//! into the capture's typed values, so the PostgreSQL target writes them
//! exactly as the PostgreSQL sink writes captured changes (the same
//! documented type mapping, the same COPY text; see
//! `drc_apply::sink::postgres::types`).
//!
//! Text columns arrive converted to UTF-8 by the source; binary columns,
//! BIT and spatial values arrive as their stored bytes; FLOAT is read as
//! DOUBLE text (the server's FLOAT text keeps only 6 digits).

use drc_capture::schema::ColumnDef;
use drc_proto::v1 as pb;
use pb::value::Kind;

/// The typed value of `raw`, the source's text of a non-NULL value of `col`.
pub fn kind_of(col: &ColumnDef, raw: Vec<u8>) -> Result<Kind, String> {
    let text = |raw: Vec<u8>| {
        String::from_utf8(raw).map_err(|_| {
            format!(
                "column {}: the source sent text that is not UTF-8",
                col.name
            )
        })
    };
    let bad = |raw: &str| {
        format!(
            "column {}: unexpected {} value {raw:?}",
            col.name, col.data_type
        )
    };
    Ok(match col.data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
            let s = text(raw)?;
            if col.unsigned {
                Kind::Uint(s.parse().map_err(|_| bad(&s))?)
            } else {
                Kind::Int(s.parse().map_err(|_| bad(&s))?)
            }
        }
        "decimal" | "numeric" => Kind::Decimal(text(raw)?),
        "float" => {
            let s = text(raw)?;
            Kind::Float(s.parse::<f64>().map_err(|_| bad(&s))? as f32)
        }
        "double" | "real" => {
            let s = text(raw)?;
            Kind::Double(s.parse().map_err(|_| bad(&s))?)
        }
        "bit" => {
            if raw.len() > 8 {
                return Err(bad(&format!("{} bytes", raw.len())));
            }
            let value = raw.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
            let width = col
                .column_type
                .trim_start_matches("bit(")
                .trim_end_matches(')')
                .parse()
                .unwrap_or(1);
            Kind::Bit(pb::Bit { value, width })
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Kind::Bytes(raw)
        }
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            if raw.len() < 4 {
                return Err(bad(&format!("{} bytes", raw.len())));
            }
            let srid = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            Kind::Geometry(pb::Geometry {
                srid,
                wkb: raw[4..].to_vec(),
            })
        }
        "date" => {
            let s = text(raw)?;
            let (y, m, d) = ymd(&s).ok_or_else(|| bad(&s))?;
            Kind::Date(pb::Date {
                year: y,
                month: m,
                day: d,
            })
        }
        "datetime" => {
            let s = text(raw)?;
            let (y, mo, d, h, mi, se, us) = datetime(&s).ok_or_else(|| bad(&s))?;
            Kind::Datetime(pb::DateTime {
                year: y,
                month: mo,
                day: d,
                hour: h,
                minute: mi,
                second: se,
                micros: us,
                fsp: 0,
            })
        }
        "timestamp" => {
            let s = text(raw)?;
            let (y, mo, d, h, mi, se, us) = datetime(&s).ok_or_else(|| bad(&s))?;
            if y == 0 && mo == 0 && d == 0 {
                Kind::Timestamp(pb::Timestamp {
                    seconds: 0,
                    micros: 0,
                    fsp: 0,
                })
            } else {
                let days = days_from_civil(i64::from(y), mo, d);
                Kind::Timestamp(pb::Timestamp {
                    seconds: days * 86_400
                        + i64::from(h) * 3600
                        + i64::from(mi) * 60
                        + i64::from(se),
                    micros: us,
                    fsp: 0,
                })
            }
        }
        "time" => {
            let s = text(raw)?;
            let (negative, rest) = match s.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, s.as_str()),
            };
            let (hms, us) = split_frac(rest).ok_or_else(|| bad(&s))?;
            let mut it = hms.split(':');
            let mut num = || it.next().and_then(|p| p.parse::<u32>().ok());
            let (h, m, se) = (num(), num(), num());
            let (Some(hours), Some(minutes), Some(seconds)) = (h, m, se) else {
                return Err(bad(&s));
            };
            Kind::Time(pb::Time {
                negative,
                hours,
                minutes,
                seconds,
                micros: us,
                fsp: 0,
            })
        }
        "year" => {
            let s = text(raw)?;
            Kind::Year(s.parse().map_err(|_| bad(&s))?)
        }
        "enum" => Kind::EnumLabel(text(raw)?),
        "set" => {
            let s = text(raw)?;
            Kind::SetLabels(pb::SetLabels {
                labels: if s.is_empty() {
                    Vec::new()
                } else {
                    s.split(',').map(str::to_owned).collect()
                },
            })
        }
        "json" => Kind::Json(text(raw)?),
        "inet6" | "inet4" => Kind::Inet6(text(raw)?),
        "uuid" => Kind::Uuid(text(raw)?),
        _ => Kind::Text(text(raw)?),
    })
}

/// The common types' COPY field straight from the source's text, without
/// the typed value in between (the same text [`kind_of`] and the sink's
/// formatting would give): integers and DECIMAL as printed, text escaped.
/// `None`: the type takes the general path.
pub fn push_fast(col: &ColumnDef, raw: &[u8], out: &mut String) -> Option<Result<(), String>> {
    match col.data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
        | "numeric" => {
            let ok = !raw.is_empty()
                && raw
                    .iter()
                    .all(|&b| b.is_ascii_digit() || b == b'-' || b == b'.');
            if !ok {
                return None;
            }
            // ASCII checked above.
            out.push_str(std::str::from_utf8(raw).ok()?);
            Some(Ok(()))
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" => {
            let Ok(text) = std::str::from_utf8(raw) else {
                return Some(Err(format!(
                    "column {}: the source sent text that is not UTF-8",
                    col.name
                )));
            };
            if text.contains('\0') {
                return Some(Err(format!(
                    "column {}: a text value holds a NUL character, which PostgreSQL text cannot store",
                    col.name
                )));
            }
            let mut start = 0;
            for (i, b) in text.bytes().enumerate() {
                let esc = match b {
                    b'\\' => "\\\\",
                    b'\n' => "\\n",
                    b'\r' => "\\r",
                    b'\t' => "\\t",
                    _ => continue,
                };
                out.push_str(&text[start..i]);
                out.push_str(esc);
                start = i + 1;
            }
            out.push_str(&text[start..]);
            Some(Ok(()))
        }
        _ => None,
    }
}

/// `"HH:MM:SS.ffffff"` → (`"HH:MM:SS"`, micros).
fn split_frac(s: &str) -> Option<(&str, u32)> {
    match s.split_once('.') {
        None => Some((s, 0)),
        Some((a, f)) => {
            if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let us: u32 = f.parse().ok()?;
            Some((a, us * 10u32.pow(6 - f.len() as u32)))
        }
    }
}

fn ymd(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split('-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next()?.parse().ok()?;
    it.next().is_none().then_some((y, m, d))
}

type Civil = (u32, u32, u32, u32, u32, u32, u32);

fn datetime(s: &str) -> Option<Civil> {
    let (date, time) = s.split_once(' ')?;
    let (y, mo, d) = ymd(date)?;
    let (hms, us) = split_frac(time)?;
    let mut it = hms.split(':');
    let h = it.next()?.parse().ok()?;
    let mi = it.next()?.parse().ok()?;
    let se = it.next()?.parse().ok()?;
    Some((y, mo, d, h, mi, se, us))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str) -> ColumnDef {
        ColumnDef {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            unsigned: column_type.contains("unsigned"),
            nullable: true,
            charset: None,
            labels: Vec::new(),
            generated: false,
            invisible: false,
        }
    }

    #[test]
    fn reads_temporal_text() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        let k = kind_of(
            &col("timestamp", "timestamp(6)"),
            b"2038-01-19 03:14:07.999999".to_vec(),
        )
        .expect("ts");
        assert_eq!(
            k,
            Kind::Timestamp(pb::Timestamp {
                seconds: 2_147_483_647,
                micros: 999_999,
                fsp: 0
            })
        );
        let k = kind_of(&col("time", "time(6)"), b"-838:59:59.5".to_vec()).expect("time");
        assert_eq!(
            k,
            Kind::Time(pb::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 500_000,
                fsp: 0
            })
        );
        assert!(kind_of(&col("date", "date"), b"2020-1".to_vec()).is_err());
    }

    #[test]
    fn the_fast_path_writes_what_the_general_one_does() {
        use drc_apply::sink::postgres::types::push_copy_field;
        let cases: [(&str, &str, &[u8]); 5] = [
            ("int", "int(11)", b"-2147483648"),
            ("decimal", "decimal(10,2)", b"-0.01"),
            ("varchar", "varchar(20)", b"a\tb\\c\nd\re \xc3\xa9"),
            ("text", "text", b""),
            ("enum", "enum('a','b')", b"b"),
        ];
        for (dt, ct, raw) in cases {
            let c = col(dt, ct);
            let mut fast = String::new();
            push_fast(&c, raw, &mut fast)
                .expect("fast path")
                .expect("ok");
            let mut slow = String::new();
            push_copy_field(&mut slow, &kind_of(&c, raw.to_vec()).expect("kind")).expect("text");
            assert_eq!(fast, slow, "{dt}");
        }
        assert!(
            push_fast(&col("varchar", "varchar(3)"), b"a\0b", &mut String::new())
                .expect("fast")
                .is_err()
        );
        assert!(push_fast(&col("date", "date"), b"2020-01-01", &mut String::new()).is_none());
    }

    #[test]
    fn reads_numbers_bits_and_sets() {
        assert_eq!(
            kind_of(
                &col("bigint", "bigint(20) unsigned"),
                b"18446744073709551615".to_vec()
            )
            .expect("u64"),
            Kind::Uint(u64::MAX)
        );
        assert_eq!(
            kind_of(&col("bit", "bit(3)"), vec![5]).expect("bit"),
            Kind::Bit(pb::Bit { value: 5, width: 3 })
        );
        assert_eq!(
            kind_of(&col("set", "set('x','y')"), b"".to_vec()).expect("set"),
            Kind::SetLabels(pb::SetLabels { labels: vec![] })
        );
        assert!(kind_of(&col("int", "int(11)"), b"x".to_vec()).is_err());
    }
}
