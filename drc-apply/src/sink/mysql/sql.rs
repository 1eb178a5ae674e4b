//! SQL text for the MySQL/MariaDB sink: identifiers, exact value literals and
//! the row statements.
//!
//! Values are written as literals rather than bound parameters so that runs
//! of inserts become one multi-row statement and every type keeps its exact
//! value whatever the protocol's type mapping would do:
//!
//! - integers, `DECIMAL` (its exact digits, unquoted so comparisons stay
//!   exact), `FLOAT`/`DOUBLE` (the shortest text that reads back as the same
//!   double; a `FLOAT` is written as the double it widens to, so the server's
//!   narrowing gives back the very same float), `YEAR` and `BIT` as numbers;
//! - text, `ENUM`, `SET`, `INET6`, `UUID` and JSON as `_utf8mb4 X'…'`: UTF-8
//!   bytes in hex with a character set introducer, so nothing needs escaping
//!   under any `sql_mode` and the server converts to the column's charset;
//! - binary strings as `X'…'`;
//! - temporal values as quoted literals (`TIMESTAMP` from UTC seconds: the
//!   sink's session runs with `time_zone = '+00:00'`; second 0 is the zero
//!   timestamp);
//! - geometry as the server's internal form (4-byte little-endian SRID, then
//!   WKB), the same bytes a dump with hex blobs carries, so no axis-order or
//!   SRS rules apply;
//! - vectors as their little-endian float32 bytes.

use std::fmt::Write as _;

use drc_proto::v1 as pb;
use pb::value::Kind;

/// Which server the sink writes to; a few comparisons differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// Where a literal goes: a value to store, or the right side of a `<=>`
/// comparison in a `WHERE` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Store,
    /// Compared under the column's collation (a key: the target's
    /// uniqueness follows the same collation).
    Compare,
    /// Compared byte for byte (a whole row image of a table without a key:
    /// 'abc' must not match 'Abc' under a case-insensitive collation).
    CompareExact,
}

/// Appends `name` as a backquoted identifier.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
}

/// `` `schema`.`table` ``.
pub fn table_ref(schema: &str, table: &str) -> String {
    let mut out = String::with_capacity(schema.len() + table.len() + 5);
    push_ident(&mut out, schema);
    out.push('.');
    push_ident(&mut out, table);
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out.push('\'');
}

/// Lowercase hex of `bytes`, for conflict images.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A UTF-8 string literal that needs no escaping.
fn push_text(out: &mut String, text: &str) {
    out.push_str("_utf8mb4 ");
    push_hex(out, text.as_bytes());
}

/// Whether `s` is a plain decimal number: `-?digits[.digits]`.
fn is_decimal_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let frac_ok = match frac {
        None => true,
        Some(f) => !f.is_empty() && all_digits(f),
    };
    !int.is_empty() && all_digits(int) && frac_ok
}

fn push_double(out: &mut String, d: f64) -> Result<(), String> {
    if !d.is_finite() {
        return Err(format!("{d} cannot be stored in MySQL/MariaDB"));
    }
    // `{:e}` is the shortest text that parses back to the same double, with
    // an exponent so that 1e308 is not 309 digits.
    let _ = write!(out, "{d:e}");
    Ok(())
}

/// `YYYY-MM-DD`.
pub fn format_date(d: &pb::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

fn push_micros(out: &mut String, micros: u32, fsp: u32) {
    if micros != 0 || fsp != 0 {
        let _ = write!(out, ".{micros:06}");
    }
}

/// `[-]H:MM:SS[.ffffff]`.
pub fn format_time(t: &pb::Time) -> String {
    let mut s = String::with_capacity(18);
    if t.negative {
        s.push('-');
    }
    let _ = write!(s, "{:02}:{:02}:{:02}", t.hours, t.minutes, t.seconds);
    push_micros(&mut s, t.micros, t.fsp);
    s
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
pub fn format_datetime(d: &pb::DateTime) -> String {
    let mut s = String::with_capacity(26);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    );
    push_micros(&mut s, d.micros, d.fsp);
    s
}

/// A `TIMESTAMP` as UTC `YYYY-MM-DD HH:MM:SS[.ffffff]`; second 0 (with no
/// fraction) is MySQL's zero timestamp.
pub fn format_timestamp(t: &pb::Timestamp) -> Result<String, String> {
    if t.seconds == 0 && t.micros == 0 {
        let mut s = String::from("0000-00-00 00:00:00");
        push_micros(&mut s, 0, t.fsp);
        return Ok(s);
    }
    if t.seconds < 0 {
        return Err(format!("TIMESTAMP before 1970: {} s", t.seconds));
    }
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(26);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    push_micros(&mut s, t.micros, t.fsp);
    Ok(s)
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (y, m as u32, d as u32)
}

/// Whether a value of this kind can be matched with `<=>` in a `WHERE`
/// clause. Geometry and vectors are left out of before-image matching, and
/// so is JSON: the change carries the document, not the target's exact text
/// (MariaDB stores JSON as text, whitespace included).
pub fn comparable(kind: &Kind) -> bool {
    !matches!(kind, Kind::Geometry(_) | Kind::Vector(_) | Kind::Json(_))
}

/// Appends the literal of `kind`. An error says why the value cannot be
/// written (a NaN, malformed decimal text, ...).
pub fn push_literal(
    out: &mut String,
    kind: &Kind,
    flavor: Flavor,
    place: Place,
) -> Result<(), String> {
    match kind {
        Kind::Null(_) => out.push_str("NULL"),
        Kind::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Kind::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Kind::Decimal(d) => {
            if !is_decimal_text(d) {
                return Err(format!("malformed DECIMAL text {d:?}"));
            }
            out.push_str(d);
        }
        Kind::Float(f) => push_double(out, f64::from(*f))?,
        Kind::Double(d) => push_double(out, *d)?,
        Kind::Bytes(b) => push_hex(out, b),
        Kind::Text(s) | Kind::EnumLabel(s) => {
            push_text(out, s);
            if place == Place::CompareExact {
                out.push_str(" COLLATE utf8mb4_bin");
            }
        }
        Kind::Inet6(s) | Kind::Uuid(s) => push_text(out, s),
        Kind::Json(s) => {
            if flavor == Flavor::MySql && place != Place::Store {
                // A MySQL JSON column compares with a string as a JSON
                // string scalar; compare documents instead.
                out.push_str("CAST(");
                push_text(out, s);
                out.push_str(" AS JSON)");
            } else {
                push_text(out, s);
            }
        }
        Kind::SetLabels(set) => {
            push_text(out, &set.labels.join(","));
            if place == Place::CompareExact {
                out.push_str(" COLLATE utf8mb4_bin");
            }
        }
        Kind::Date(d) => {
            let _ = write!(out, "'{}'", format_date(d));
        }
        Kind::Time(t) => {
            let _ = write!(out, "'{}'", format_time(t));
        }
        Kind::Datetime(d) => {
            let _ = write!(out, "'{}'", format_datetime(d));
        }
        Kind::Timestamp(t) => {
            let _ = write!(out, "'{}'", format_timestamp(t)?);
        }
        Kind::Year(y) => {
            let _ = write!(out, "{y}");
        }
        Kind::Bit(b) => {
            let _ = write!(out, "{}", b.value);
        }
        Kind::Geometry(g) => {
            let mut bytes = Vec::with_capacity(4 + g.wkb.len());
            bytes.extend_from_slice(&g.srid.to_le_bytes());
            bytes.extend_from_slice(&g.wkb);
            push_hex(out, &bytes);
        }
        Kind::Vector(v) => {
            let bytes: Vec<u8> = v.values.iter().flat_map(|f| f.to_le_bytes()).collect();
            push_hex(out, &bytes);
        }
    }
    Ok(())
}

/// One column of a statement: its name and the value it takes or matches.
#[derive(Debug, Clone, Copy)]
pub struct ColVal<'a> {
    pub name: &'a str,
    pub kind: &'a Kind,
}

/// `INSERT INTO t (a, b) VALUES ` (rows follow).
pub fn insert_head(table: &str, names: &[&str]) -> String {
    let mut s = String::with_capacity(64 + names.len() * 16);
    s.push_str("INSERT INTO ");
    s.push_str(table);
    s.push_str(" (");
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        push_ident(&mut s, n);
    }
    s.push_str(") VALUES ");
    s
}

/// Appends `(v1, v2, ...)`.
pub fn push_row<'a>(
    out: &mut String,
    values: impl IntoIterator<Item = &'a Kind>,
    flavor: Flavor,
) -> Result<(), String> {
    out.push('(');
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_literal(out, v, flavor, Place::Store)?;
    }
    out.push(')');
    Ok(())
}

/// ` ON DUPLICATE KEY UPDATE a = VALUES(a), ...`: the row becomes the
/// inserted one.
pub fn push_upsert_tail(out: &mut String, names: &[&str]) {
    out.push_str(" ON DUPLICATE KEY UPDATE ");
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_ident(out, n);
        out.push_str(" = VALUES(");
        push_ident(out, n);
        out.push(')');
    }
}

/// How a statement finds its row: `WHERE a <=> 1 AND b <=> 'x'`
/// (NULL-safe). The first `exact_from` columns are a key, compared under the
/// column's collation; the rest are the before image, compared byte for byte
/// (so 'abc' does not match 'Abc' under a case-insensitive collation).
#[derive(Debug, Clone, Copy)]
pub struct RowMatch<'k, 'a> {
    pub columns: &'k [ColVal<'a>],
    pub exact_from: usize,
    /// ` LIMIT 1`: the match is a whole row of a table without a key, which
    /// may have duplicates.
    pub limit_one: bool,
}

fn push_where(out: &mut String, m: RowMatch<'_, '_>, flavor: Flavor) -> Result<(), String> {
    out.push_str(" WHERE ");
    push_match(out, m, flavor)?;
    if m.limit_one {
        out.push_str(" LIMIT 1");
    }
    Ok(())
}

/// Appends the condition of `m`, `a <=> 1 AND b <=> 'x'` (its `limit_one`
/// is for the caller).
pub fn push_match(out: &mut String, m: RowMatch<'_, '_>, flavor: Flavor) -> Result<(), String> {
    if m.columns.is_empty() {
        return Err("no column to identify the row by".into());
    }
    for (i, c) in m.columns.iter().enumerate() {
        if i > 0 {
            out.push_str(" AND ");
        }
        let place = if i >= m.exact_from {
            Place::CompareExact
        } else {
            Place::Compare
        };
        push_ident(out, c.name);
        out.push_str(" <=> ");
        push_literal(out, c.kind, flavor, place)?;
    }
    Ok(())
}

/// `UPDATE t SET ... WHERE ...`.
pub fn update(
    table: &str,
    set: &[ColVal<'_>],
    m: RowMatch<'_, '_>,
    flavor: Flavor,
) -> Result<String, String> {
    if set.is_empty() {
        return Err("no column to set".into());
    }
    let mut s = String::with_capacity(64 + (set.len() + m.columns.len()) * 24);
    s.push_str("UPDATE ");
    s.push_str(table);
    s.push_str(" SET ");
    for (i, c) in set.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        push_ident(&mut s, c.name);
        s.push_str(" = ");
        push_literal(&mut s, c.kind, flavor, Place::Store)?;
    }
    push_where(&mut s, m, flavor)?;
    Ok(s)
}

/// Whether a value of this kind may be one branch of a `CASE` that a merged
/// UPDATE assigns: its literal gives the same stored value through the
/// `CASE` as assigned directly (numbers, strings, temporal strings, JSON
/// text, the hex of geometry; the type-torture test checks each of them).
/// Vectors are set one row at a time.
pub fn case_safe(kind: &Kind) -> bool {
    !matches!(kind, Kind::Vector(_))
}

/// One row of a merged UPDATE: its key (the `CASE` conditions), how the
/// `WHERE` finds it, and the values it sets (the same columns, in the same
/// order, for every row of the statement).
#[derive(Debug, Clone, Copy)]
pub struct UpdateRow<'k, 'a> {
    pub key: RowMatch<'k, 'a>,
    pub full: RowMatch<'k, 'a>,
    pub set: &'k [ColVal<'a>],
}

/// `UPDATE t SET a = CASE WHEN <key 1> THEN v1 WHEN <key 2> THEN v2 END, ...
/// WHERE (<row 1>) OR (<row 2>) ...`: several rows of one table, each found
/// by its own match (so the row count says whether every one was found),
/// each set to its own values. The rows' keys must differ, and no key
/// column may be set (assignments run left to right, and a later `CASE`
/// would see the new key).
pub fn update_many(
    table: &str,
    rows: &[UpdateRow<'_, '_>],
    flavor: Flavor,
) -> Result<String, String> {
    let Some(first) = rows.first() else {
        return Err("no row to update".into());
    };
    if first.set.is_empty() {
        return Err("no column to set".into());
    }
    let mut s =
        String::with_capacity(64 + rows.len() * (first.set.len() + first.full.columns.len()) * 48);
    s.push_str("UPDATE ");
    s.push_str(table);
    s.push_str(" SET ");
    for (ci, col) in first.set.iter().enumerate() {
        if ci > 0 {
            s.push_str(", ");
        }
        push_ident(&mut s, col.name);
        s.push_str(" = CASE");
        for r in rows {
            let Some(v) = r.set.get(ci).filter(|v| v.name == col.name) else {
                return Err("rows of one merged update set different columns".into());
            };
            s.push_str(" WHEN ");
            push_match(&mut s, r.key, flavor)?;
            s.push_str(" THEN ");
            push_literal(&mut s, v.kind, flavor, Place::Store)?;
        }
        s.push_str(" END");
    }
    s.push_str(" WHERE ");
    for (i, r) in rows.iter().enumerate() {
        if r.set.len() != first.set.len() {
            return Err("rows of one merged update set different columns".into());
        }
        if i > 0 {
            s.push_str(" OR ");
        }
        s.push('(');
        push_match(&mut s, r.full, flavor)?;
        s.push(')');
    }
    Ok(s)
}

/// `DELETE FROM t WHERE (<row 1>) OR (<row 2>) ...`: several rows of one
/// table, each found by its own match.
pub fn delete_many(
    table: &str,
    rows: &[RowMatch<'_, '_>],
    flavor: Flavor,
) -> Result<String, String> {
    if rows.is_empty() {
        return Err("no row to delete".into());
    }
    let mut s = String::with_capacity(64 + rows.len() * rows[0].columns.len() * 40);
    s.push_str("DELETE FROM ");
    s.push_str(table);
    s.push_str(" WHERE ");
    for (i, m) in rows.iter().enumerate() {
        if i > 0 {
            s.push_str(" OR ");
        }
        s.push('(');
        push_match(&mut s, *m, flavor)?;
        s.push(')');
    }
    Ok(s)
}

/// `DELETE FROM t WHERE ...`.
pub fn delete(table: &str, m: RowMatch<'_, '_>, flavor: Flavor) -> Result<String, String> {
    let mut s = String::with_capacity(64 + m.columns.len() * 24);
    s.push_str("DELETE FROM ");
    s.push_str(table);
    push_where(&mut s, m, flavor)?;
    Ok(s)
}

/// `SELECT * FROM t WHERE ... LIMIT 1` (for the target image of a conflict).
pub fn select_one(table: &str, key: &[ColVal<'_>], flavor: Flavor) -> Result<String, String> {
    let mut s = String::with_capacity(64 + key.len() * 24);
    s.push_str("SELECT * FROM ");
    s.push_str(table);
    let m = RowMatch {
        columns: key,
        exact_from: key.len(),
        limit_one: true,
    };
    push_where(&mut s, m, flavor)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(kind: Kind) -> String {
        let mut s = String::new();
        push_literal(&mut s, &kind, Flavor::MariaDb, Place::Store).expect("literal");
        s
    }

    #[test]
    fn literals() {
        assert_eq!(lit(Kind::Null(true)), "NULL");
        assert_eq!(lit(Kind::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(lit(Kind::Uint(u64::MAX)), "18446744073709551615");
        assert_eq!(lit(Kind::Decimal("-12.3400".into())), "-12.3400");
        assert_eq!(
            lit(Kind::Double(1.7976931348623157e308)),
            "1.7976931348623157e308"
        );
        assert_eq!(lit(Kind::Float(0.1)), "1.0000000149011612e-1");
        assert_eq!(lit(Kind::Bytes(vec![0, 0xff])), "X'00FF'");
        assert_eq!(lit(Kind::Text("a'\\".into())), "_utf8mb4 X'61275C'");
        assert_eq!(lit(Kind::Text(String::new())), "_utf8mb4 X''");
        assert_eq!(
            lit(Kind::Time(pb::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0,
                fsp: 6
            })),
            "'-838:59:59.000000'"
        );
        assert_eq!(
            lit(Kind::Timestamp(pb::Timestamp {
                seconds: 2_147_483_647,
                micros: 999_999,
                fsp: 6
            })),
            "'2038-01-19 03:14:07.999999'"
        );
        assert_eq!(
            lit(Kind::Timestamp(pb::Timestamp {
                seconds: 0,
                micros: 0,
                fsp: 0
            })),
            "'0000-00-00 00:00:00'"
        );
        assert_eq!(
            lit(Kind::Geometry(pb::Geometry {
                srid: 4326,
                wkb: vec![1]
            })),
            "X'E610000001'"
        );
    }

    #[test]
    fn refuses_values_mysql_cannot_hold() {
        let mut s = String::new();
        for bad in [
            Kind::Double(f64::NAN),
            Kind::Float(f32::INFINITY),
            Kind::Decimal("1e5".into()),
            Kind::Decimal("1; DROP".into()),
            Kind::Decimal(String::new()),
            Kind::Decimal("1.".into()),
        ] {
            assert!(push_literal(&mut s, &bad, Flavor::MySql, Place::Store).is_err());
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn statements() {
        let t = table_ref("d`b", "t");
        assert_eq!(t, "`d``b`.`t`");
        let one = Kind::Int(1);
        let null = Kind::Null(true);
        let sql = update(
            &t,
            &[ColVal {
                name: "a",
                kind: &one,
            }],
            RowMatch {
                columns: &[ColVal {
                    name: "b",
                    kind: &null,
                }],
                exact_from: 0,
                limit_one: true,
            },
            Flavor::MariaDb,
        )
        .expect("update");
        assert_eq!(
            sql,
            "UPDATE `d``b`.`t` SET `a` = 1 WHERE `b` <=> NULL LIMIT 1"
        );
        let text = Kind::Text("x".into());
        let key_and_image = [
            ColVal {
                name: "id",
                kind: &one,
            },
            ColVal {
                name: "v",
                kind: &text,
            },
        ];
        let sql = delete(
            &t,
            RowMatch {
                columns: &key_and_image,
                exact_from: 1,
                limit_one: false,
            },
            Flavor::MariaDb,
        )
        .expect("delete");
        assert_eq!(
            sql,
            "DELETE FROM `d``b`.`t` WHERE `id` <=> 1 AND `v` <=> _utf8mb4 X'78' COLLATE utf8mb4_bin"
        );
        let mut ins = insert_head(&t, &["a", "b"]);
        push_row(&mut ins, [&one, &null], Flavor::MariaDb).expect("row");
        push_upsert_tail(&mut ins, &["a", "b"]);
        assert_eq!(
            ins,
            "INSERT INTO `d``b`.`t` (`a`, `b`) VALUES (1, NULL) ON DUPLICATE KEY UPDATE \
             `a` = VALUES(`a`), `b` = VALUES(`b`)"
        );
        let none = RowMatch {
            columns: &[],
            exact_from: 0,
            limit_one: false,
        };
        assert!(delete(&t, none, Flavor::MySql).is_err());
    }
}
