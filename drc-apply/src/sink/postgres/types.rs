//! The MySQL/MariaDB → PostgreSQL type mapping, and the text form of every
//! value the capture decodes.
//!
//! # Column types
//!
//! Used both for DDL translation and for tables created from a change's
//! column list. The source type is `information_schema.COLUMNS.COLUMN_TYPE`
//! as the capture spells it (`int(10) unsigned`, `decimal(10,2)`, ...).
//!
//! | MySQL / MariaDB                         | PostgreSQL                  | notes |
//! |-----------------------------------------|-----------------------------|-------|
//! | `TINYINT` (signed or not), `BOOL`       | `smallint`                  | |
//! | `SMALLINT`                              | `smallint`                  | `UNSIGNED`: `integer` |
//! | `MEDIUMINT` (signed or not)             | `integer`                   | |
//! | `INT`                                   | `integer`                   | `UNSIGNED`: `bigint` |
//! | `BIGINT`                                | `bigint`                    | `UNSIGNED`: `numeric(20)` |
//! | `DECIMAL(p,s)` / `NUMERIC`              | `numeric(p,s)`              | exact digits |
//! | `FLOAT`                                 | `real`                      | same float32 |
//! | `DOUBLE` / `REAL`                       | `double precision`          | same float64 |
//! | `BIT(n)`                                | `bit(n)`                    | all 64 bits kept |
//! | `CHAR(n)`, `VARCHAR(n)`                 | `varchar(n)`                | n characters, like MySQL |
//! | `TINYTEXT` … `LONGTEXT`                 | `text`                      | |
//! | `BINARY`, `VARBINARY`, `*BLOB`          | `bytea`                     | |
//! | `DATE`                                  | `date`                      | zero date: `-infinity` |
//! | `TIME(fsp)`                             | `interval`                  | TIME spans ±838:59:59 |
//! | `DATETIME(fsp)`                         | `timestamp(fsp)`            | zero: `-infinity` |
//! | `TIMESTAMP(fsp)`                        | `timestamptz(fsp)`          | UTC; zero: `-infinity` |
//! | `YEAR`                                  | `smallint`                  | 0 stays 0 |
//! | `ENUM(...)`                             | `text`                      | the label |
//! | `SET(...)`                              | `text`                      | labels joined by `,` |
//! | `JSON`                                  | `jsonb`                     | MariaDB's `LONGTEXT` JSON arrives as `longtext`: `text` |
//! | `GEOMETRY`, `POINT`, … (all spatial)    | `bytea`                     | MySQL's internal form: 4-byte little-endian SRID, then WKB |
//! | `INET6`                                 | `inet`                      | |
//! | `INET4`                                 | `inet`                      | |
//! | `UUID`                                  | `uuid`                      | |
//! | `VECTOR(n)`                             | `real[]`                    | |
//!
//! Zero dates: MySQL's `'0000-00-00'` (and `'0000-00-00 00:00:00'`, the zero
//! TIMESTAMP) have no PostgreSQL value; they become `-infinity`, which keeps
//! `NOT NULL` columns valid and stays distinct from NULL and from every real
//! date. A date with only some zero fields (`'2020-00-10'`) is refused. Year
//! 0 with a real month and day is the astronomical year 0, 1 BC.
//!
//! # Values
//!
//! Every value is sent as its PostgreSQL text input form, either as a quoted
//! SQL literal (standard_conforming_strings on: only `'` is doubled; the
//! column's type converts the literal, so no cast is needed) or as a field
//! of a text-format COPY. A value PostgreSQL cannot hold is refused here with
//! a message naming why (a NUL character in text or JSON, a partial zero
//! date, malformed DECIMAL text); the sink turns that into a definite error
//! at the change's offset.

use std::fmt::Write as _;

use drc_proto::v1 as pb;
use pb::value::Kind;

/// The PostgreSQL column type for a MySQL/MariaDB `COLUMN_TYPE`; see the
/// module docs. An error names a type with no mapping.
pub fn pg_type(mysql_type: &str) -> Result<String, String> {
    let t = mysql_type.trim().to_ascii_lowercase();
    let base_end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(t.len());
    let base = &t[..base_end];
    let rest = &t[base_end..];
    let args: Option<&str> = rest
        .trim_start()
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .map(|(a, _)| a.trim());
    let words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .collect();
    let unsigned = words.contains(&"unsigned") || words.contains(&"zerofill");
    let int_arg = |default: Option<u32>| -> Result<Option<u32>, String> {
        match args {
            None | Some("") => Ok(default),
            Some(a) => a
                .parse::<u32>()
                .map(Some)
                .map_err(|_| format!("bad length in type {mysql_type:?}")),
        }
    };
    let fsp = || -> Result<String, String> {
        Ok(match int_arg(None)? {
            Some(n) if n > 6 => return Err(format!("fractional digits over 6 in {mysql_type:?}")),
            Some(n) => format!("({n})"),
            None => "(0)".into(),
        })
    };
    Ok(match base {
        "tinyint" | "bool" | "boolean" => "smallint".into(),
        "smallint" if unsigned => "integer".into(),
        "smallint" => "smallint".into(),
        "mediumint" => "integer".into(),
        "int" | "integer" if unsigned => "bigint".into(),
        "int" | "integer" => "integer".into(),
        "bigint" if unsigned => "numeric(20)".into(),
        "bigint" => "bigint".into(),
        "serial" => "numeric(20)".into(),
        "decimal" | "numeric" | "dec" | "fixed" => match args {
            None | Some("") => "numeric(10,0)".into(),
            Some(a) => {
                let parts: Vec<&str> = a.split(',').map(str::trim).collect();
                let ok = !parts.is_empty()
                    && parts.len() <= 2
                    && parts.iter().all(|p| p.parse::<u32>().is_ok());
                if !ok {
                    return Err(format!("bad precision in type {mysql_type:?}"));
                }
                format!("numeric({})", parts.join(","))
            }
        },
        "float" => "real".into(),
        "double" | "real" => "double precision".into(),
        "bit" => format!("bit({})", int_arg(Some(1))?.unwrap_or(1).clamp(1, 64)),
        "char" | "varchar" | "nchar" | "nvarchar" => match int_arg(None)? {
            Some(n) if n > 0 => format!("varchar({n})"),
            // CHAR(0) holds '' or NULL; an unknown length holds anything.
            _ => "text".into(),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" | "long" => "text".into(),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "bytea".into(),
        "date" => "date".into(),
        "time" => "interval".into(),
        "datetime" => format!("timestamp{}", fsp()?),
        "timestamp" => format!("timestamptz{}", fsp()?),
        "year" => "smallint".into(),
        "enum" | "set" => "text".into(),
        "json" => "jsonb".into(),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => "bytea".into(),
        "inet6" | "inet4" => "inet".into(),
        "uuid" => "uuid".into(),
        "vector" => "real[]".into(),
        _ => return Err(format!("no PostgreSQL type for MySQL type {mysql_type:?}")),
    })
}

/// Appends `name` as a quoted identifier.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// `name` as a quoted identifier.
pub fn ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    push_ident(&mut s, name);
    s
}

/// `"schema"."table"`.
pub fn table_ref(schema: &str, table: &str) -> String {
    let mut s = String::with_capacity(schema.len() + table.len() + 5);
    push_ident(&mut s, schema);
    s.push('.');
    push_ident(&mut s, table);
    s
}

/// Appends `s` as a quoted string literal.
pub fn push_quoted(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
}

/// The text input form of a value for PostgreSQL, `None` for NULL.
pub fn pg_text(kind: &Kind) -> Result<Option<String>, String> {
    let mut s = String::new();
    match kind {
        Kind::Null(_) => return Ok(None),
        Kind::Int(i) => {
            let _ = write!(s, "{i}");
        }
        Kind::Uint(u) => {
            let _ = write!(s, "{u}");
        }
        Kind::Decimal(d) => {
            if !is_decimal_text(d) {
                return Err(format!("malformed DECIMAL text {:?}", abbreviate(d)));
            }
            s.push_str(d);
        }
        // The shortest text that reads back as the same float32 / float64.
        Kind::Float(f) => push_float(&mut s, f64::from(*f), format!("{f}")),
        Kind::Double(d) => push_float(&mut s, *d, format!("{d:e}")),
        Kind::Bytes(b) => push_bytea(&mut s, b),
        Kind::Text(t) | Kind::EnumLabel(t) | Kind::Inet6(t) | Kind::Uuid(t) => {
            no_nul(t, "text")?;
            s.push_str(t);
        }
        Kind::Json(j) => {
            // jsonb refuses \u0000 escapes as well as raw NUL.
            if j.contains('\0') || j.contains("\\u0000") {
                return Err(
                    "a JSON document holds a NUL character, which jsonb cannot store".into(),
                );
            }
            s.push_str(j);
        }
        Kind::SetLabels(set) => {
            let joined = set.labels.join(",");
            no_nul(&joined, "SET")?;
            s.push_str(&joined);
        }
        Kind::Date(d) => push_date(&mut s, d.year, d.month, d.day)?,
        Kind::Time(t) => {
            if t.negative {
                s.push('-');
            }
            let _ = write!(s, "{:02}:{:02}:{:02}", t.hours, t.minutes, t.seconds);
            push_micros(&mut s, t.micros);
        }
        Kind::Datetime(d) => {
            let zero_time = d.hour == 0 && d.minute == 0 && d.second == 0 && d.micros == 0;
            if d.year == 0 && d.month == 0 && d.day == 0 && zero_time {
                s.push_str("-infinity");
            } else {
                let bc = date_core(&mut s, d.year, d.month, d.day)?;
                let _ = write!(s, " {:02}:{:02}:{:02}", d.hour, d.minute, d.second);
                push_micros(&mut s, d.micros);
                if bc {
                    s.push_str(" BC");
                }
            }
        }
        Kind::Timestamp(t) => {
            if t.seconds == 0 && t.micros == 0 {
                // MySQL's zero TIMESTAMP.
                s.push_str("-infinity");
            } else {
                let days = t.seconds.div_euclid(86_400);
                let secs = t.seconds.rem_euclid(86_400);
                let (y, m, d) = civil_from_days(days);
                if y < 1 {
                    return Err(format!("TIMESTAMP before year 1: {} s", t.seconds));
                }
                let _ = write!(
                    s,
                    "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60
                );
                push_micros(&mut s, t.micros);
                s.push_str("+00");
            }
        }
        Kind::Year(y) => {
            let _ = write!(s, "{y}");
        }
        Kind::Bit(b) => {
            let width = b.width.clamp(1, 64);
            if width < 64 && b.value >> width != 0 {
                return Err(format!("BIT value wider than its {width} bits"));
            }
            for i in (0..width).rev() {
                s.push(if b.value >> i & 1 == 1 { '1' } else { '0' });
            }
        }
        Kind::Geometry(g) => {
            let mut bytes = Vec::with_capacity(4 + g.wkb.len());
            bytes.extend_from_slice(&g.srid.to_le_bytes());
            bytes.extend_from_slice(&g.wkb);
            push_bytea(&mut s, &bytes);
        }
        Kind::Vector(v) => {
            s.push('{');
            for (i, f) in v.values.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                push_float(&mut s, f64::from(*f), format!("{f}"));
            }
            s.push('}');
        }
    }
    Ok(Some(s))
}

/// Appends the SQL literal of a value: `NULL` or a quoted string.
pub fn push_literal(out: &mut String, kind: &Kind) -> Result<(), String> {
    match pg_text(kind)? {
        None => out.push_str("NULL"),
        Some(t) => push_quoted(out, &t),
    }
    Ok(())
}

/// Appends a value as one field of a text-format COPY row.
pub fn push_copy_field(out: &mut String, kind: &Kind) -> Result<(), String> {
    match pg_text(kind)? {
        None => out.push_str("\\N"),
        Some(t) => {
            for c in t.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
        }
    }
    Ok(())
}

fn no_nul(s: &str, what: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!(
            "a {what} value holds a NUL character, which PostgreSQL text cannot store"
        ));
    }
    Ok(())
}

fn push_float(out: &mut String, d: f64, shortest: String) {
    if d.is_nan() {
        out.push_str("NaN");
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&shortest);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_bytea(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2 + 2);
    out.push_str("\\x");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// `YYYY-MM-DD` (or `-infinity` for the zero date).
fn push_date(out: &mut String, year: u32, month: u32, day: u32) -> Result<(), String> {
    if year == 0 && month == 0 && day == 0 {
        out.push_str("-infinity");
        return Ok(());
    }
    if date_core(out, year, month, day)? {
        out.push_str(" BC");
    }
    Ok(())
}

/// Writes the date part; returns whether ` BC` must follow (year 0).
fn date_core(out: &mut String, year: u32, month: u32, day: u32) -> Result<bool, String> {
    if month == 0 || day == 0 || month > 12 || day > 31 {
        return Err(format!(
            "date {year:04}-{month:02}-{day:02} has no PostgreSQL value (a partial zero date)"
        ));
    }
    // PostgreSQL counts 1 BC where MySQL counts year 0.
    let bc = year == 0;
    let _ = write!(out, "{:04}-{month:02}-{day:02}", if bc { 1 } else { year });
    Ok(bc)
}

fn push_micros(out: &mut String, micros: u32) {
    if micros != 0 {
        let _ = write!(out, ".{micros:06}");
    }
}

/// Whether `s` is a plain decimal number: `-?digits[.digits]`.
fn is_decimal_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    !int.is_empty() && all_digits(int) && frac.is_none_or(|f| !f.is_empty() && all_digits(f))
}

fn abbreviate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: Kind) -> String {
        pg_text(&kind)
            .expect("encodes")
            .unwrap_or_else(|| "NULL".into())
    }

    #[test]
    fn type_mapping() {
        for (my, pg) in [
            ("tinyint(4)", "smallint"),
            ("tinyint(3) unsigned", "smallint"),
            ("smallint(5) unsigned", "integer"),
            ("mediumint(8) unsigned", "integer"),
            ("int(11)", "integer"),
            ("int(10) unsigned", "bigint"),
            ("bigint(20) unsigned", "numeric(20)"),
            ("decimal(65,30)", "numeric(65,30)"),
            ("decimal(10)", "numeric(10)"),
            ("float", "real"),
            ("double", "double precision"),
            ("bit(64)", "bit(64)"),
            ("char(10)", "varchar(10)"),
            ("varchar(300)", "varchar(300)"),
            ("varchar", "text"),
            ("longtext", "text"),
            ("varbinary(10)", "bytea"),
            ("date", "date"),
            ("time(6)", "interval"),
            ("datetime", "timestamp(0)"),
            ("datetime(3)", "timestamp(3)"),
            ("timestamp(6)", "timestamptz(6)"),
            ("year(4)", "smallint"),
            ("enum('a','b')", "text"),
            ("set('x','y')", "text"),
            ("json", "jsonb"),
            ("point", "bytea"),
            ("inet6", "inet"),
            ("uuid", "uuid"),
            ("vector(3)", "real[]"),
        ] {
            assert_eq!(pg_type(my).as_deref(), Ok(pg), "{my}");
        }
        assert!(pg_type("hyperloglog").is_err());
        assert!(pg_type("datetime(7)").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(text(Kind::Uint(u64::MAX)), "18446744073709551615");
        assert_eq!(text(Kind::Float(0.1)), "0.1");
        assert_eq!(
            text(Kind::Float(3.4028235e38)),
            "340282350000000000000000000000000000000"
        );
        assert_eq!(text(Kind::Double(-2.5e-300)), "-2.5e-300");
        assert_eq!(text(Kind::Bytes(vec![0, 0xff])), "\\x00ff");
        assert_eq!(
            text(Kind::Date(pb::Date {
                year: 0,
                month: 0,
                day: 0
            })),
            "-infinity"
        );
        assert_eq!(
            text(Kind::Date(pb::Date {
                year: 0,
                month: 1,
                day: 2
            })),
            "0001-01-02 BC"
        );
        assert_eq!(
            text(Kind::Time(pb::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0,
                fsp: 0
            })),
            "-838:59:59"
        );
        assert_eq!(
            text(Kind::Timestamp(pb::Timestamp {
                seconds: 2_147_483_647,
                micros: 999_999,
                fsp: 6
            })),
            "2038-01-19 03:14:07.999999+00"
        );
        assert_eq!(text(Kind::Bit(pb::Bit { value: 5, width: 3 })), "101");
        assert_eq!(
            text(Kind::Bit(pb::Bit {
                value: u64::MAX,
                width: 64
            })),
            "1".repeat(64)
        );
        assert_eq!(
            text(Kind::Geometry(pb::Geometry {
                srid: 4326,
                wkb: vec![1]
            })),
            "\\xe610000001"
        );
        assert_eq!(
            text(Kind::SetLabels(pb::SetLabels {
                labels: vec!["x".into(), "z".into()]
            })),
            "x,z"
        );
        assert_eq!(text(Kind::Null(true)), "NULL");
    }

    #[test]
    fn refuses_what_postgres_cannot_hold() {
        for bad in [
            Kind::Text("a\0b".into()),
            Kind::Json("\"\\u0000\"".into()),
            Kind::Date(pb::Date {
                year: 2020,
                month: 0,
                day: 10,
            }),
            Kind::Decimal("1e5".into()),
            Kind::Decimal("1; DROP".into()),
            Kind::Bit(pb::Bit { value: 8, width: 3 }),
        ] {
            assert!(pg_text(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn literals_and_copy_fields() {
        let mut s = String::new();
        push_literal(&mut s, &Kind::Text("it's \\ ok".into())).expect("literal");
        assert_eq!(s, "'it''s \\ ok'");
        let mut s = String::new();
        push_copy_field(&mut s, &Kind::Text("a\tb\nc\\".into())).expect("field");
        assert_eq!(s, "a\\tb\\nc\\\\");
        let mut s = String::new();
        push_copy_field(&mut s, &Kind::Bytes(vec![1])).expect("field");
        assert_eq!(s, "\\\\x01");
        assert_eq!(table_ref("a\"b", "t"), "\"a\"\"b\".\"t\"");
    }
}
