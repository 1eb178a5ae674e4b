//! Repair statements: what would make the target equal to the source, for
//! the rows a verification found. A MariaDB target gets `REPLACE INTO` (a
//! missing or different row: the source's whole row) and `DELETE` (an extra
//! row); a PostgreSQL target `INSERT ... ON CONFLICT (key) DO UPDATE` and
//! `DELETE`. Values are the source's own, read as text (binary as hex, BIT
//! as digits) and written as literals of the target's dialect, quoted and
//! escaped; zero dates become `-infinity` on PostgreSQL as the sink writes
//! them. The file is one transaction; nothing is run by `drc verify`.

use crate::endpoint::Dialect;
use crate::expr;
use crate::schema::{ident, literal, Column, Kind, Table};

/// The file's opening lines: session settings the literals assume.
pub fn header(d: Dialect) -> &'static str {
    match d {
        Dialect::Maria => {
            "SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nSET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';\nSTART TRANSACTION;\n"
        }
        Dialect::Postgres => "SET TimeZone = 'UTC';\nBEGIN;\n",
    }
}

/// The file's closing line.
pub fn footer() -> &'static str {
    "COMMIT;\n"
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_bits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0' || b == b'1')
}

fn is_int(s: &str) -> bool {
    s.parse::<i128>().is_ok()
}

/// A MariaDB string literal that also escapes NUL.
fn maria_str(s: &str) -> String {
    literal(Dialect::Maria, s).replace('\0', "\\0")
}

/// A zero date or datetime as MariaDB prints it.
fn is_zero_date(s: &str) -> bool {
    s.starts_with("0000-00-00")
}

/// A literal of the target's dialect from a source value's raw text.
fn value(d: Dialect, col: &Column, raw: Option<&str>) -> String {
    let Some(v) = raw else {
        return "NULL".into();
    };
    match (d, col.kind) {
        (Dialect::Maria, Kind::Binary) if is_hex(v) && !v.is_empty() => format!("0x{v}"),
        (Dialect::Maria, Kind::Bit(_)) if is_bits(v) => format!("b'{v}'"),
        (Dialect::Maria, Kind::Int | Kind::Year) if is_int(v) => v.to_owned(),
        (Dialect::Maria, _) => maria_str(v),
        (Dialect::Postgres, Kind::Binary) if is_hex(v) => format!("'\\x{v}'"),
        (Dialect::Postgres, Kind::Bit(_)) if is_bits(v) => format!("B'{v}'"),
        (Dialect::Postgres, Kind::Int | Kind::Year) if is_int(v) => v.to_owned(),
        (Dialect::Postgres, Kind::Date | Kind::DateTime | Kind::Timestamp) if is_zero_date(v) => {
            "'-infinity'".into()
        }
        (Dialect::Postgres, Kind::Timestamp) => literal(Dialect::Postgres, &format!("{v}+00")),
        (Dialect::Postgres, _) => literal(Dialect::Postgres, v),
    }
}

/// Writes the source's row over the target's (insert or replace).
pub fn upsert(d: Dialect, table: &Table, raw: &[Option<String>]) -> String {
    let cols: Vec<String> = table.columns.iter().map(|c| ident(d, &c.name)).collect();
    let vals: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| value(d, c, raw.get(i).and_then(|v| v.as_deref())))
        .collect();
    let name = expr::from(d, table, true);
    match d {
        Dialect::Maria => format!(
            "REPLACE INTO {name} ({}) VALUES ({});",
            cols.join(", "),
            vals.join(", ")
        ),
        Dialect::Postgres => {
            let keys: Vec<String> = table
                .key
                .iter()
                .map(|&i| ident(d, &table.columns[i].name))
                .collect();
            let sets: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| !table.key.contains(i))
                .map(|(_, c)| {
                    let c = ident(d, &c.name);
                    format!("{c} = EXCLUDED.{c}")
                })
                .collect();
            let action = if sets.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                format!("DO UPDATE SET {}", sets.join(", "))
            };
            format!(
                "INSERT INTO {name} ({}) VALUES ({}) ON CONFLICT ({}) {action};",
                cols.join(", "),
                vals.join(", "),
                keys.join(", ")
            )
        }
    }
}

/// Deletes the target's row of a key (its normalized text, as the
/// comparison names it).
pub fn delete(d: Dialect, table: &Table, key_text: &str) -> String {
    let conds: Vec<String> = table
        .key
        .iter()
        .zip(key_text.split('\u{1f}'))
        .map(|(&i, v)| {
            let col = &table.columns[i];
            let c = ident(d, &col.name);
            match key_literal(d, col, v) {
                Some(lit) => format!("{c} = {lit}"),
                // No literal form of the normalized text: match on it.
                None => format!("{} = {}", expr::norm(d, col), literal(d, v)),
            }
        })
        .collect();
    let limit = if d == Dialect::Maria { " LIMIT 1" } else { "" };
    format!(
        "DELETE FROM {} WHERE {}{limit};",
        expr::from(d, table, true),
        conds.join(" AND ")
    )
}

/// A literal equal to a key column's value, from its normalized text.
fn key_literal(d: Dialect, col: &Column, norm: &str) -> Option<String> {
    match col.kind {
        Kind::Int | Kind::Year => is_int(norm).then(|| norm.to_owned()),
        Kind::Binary => is_hex(norm).then(|| match d {
            Dialect::Maria if norm.is_empty() => "''".to_owned(),
            Dialect::Maria => format!("0x{norm}"),
            Dialect::Postgres => format!("'\\x{norm}'"),
        }),
        Kind::Bit(_) => is_bits(norm).then(|| match d {
            Dialect::Maria => format!("b'{norm}'"),
            Dialect::Postgres => format!("B'{norm}'"),
        }),
        Kind::Text | Kind::Inet | Kind::Decimal | Kind::Date | Kind::DateTime | Kind::Timestamp => {
            Some(value(d, col, Some(norm)))
        }
        Kind::Time | Kind::Float | Kind::Double => None,
    }
}
