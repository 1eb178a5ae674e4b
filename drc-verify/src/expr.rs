//! The SQL expressions each server evaluates: a column's normalized text, a
//! row's text and hash, a chunk's aggregate, and the raw text repair
//! statements are built from.
//!
//! Two modes:
//!
//! - **Native** (MariaDB ↔ MariaDB): a row's text is its columns as the
//!   server prints them (FLOAT widened to DOUBLE so no digit is lost), and a
//!   chunk's checksum is `BIT_XOR(CRC32(row text))` with `COUNT(*)`. CRC32
//!   is the same family of checksum `CHECKSUM TABLE` uses, and measured
//!   faster than it (see [`crate`]): a change is missed only when two
//!   chunks' 32-bit XORs collide, about one chance in four billion per
//!   changed chunk.
//! - **Normalized** (MariaDB ↔ PostgreSQL): both servers compute the same
//!   text for equal values (the rules below), and a chunk's checksum is the
//!   XOR of the first 64 bits of each row text's MD5.
//!
//! Normalized text, per source type (the PostgreSQL side reads the type the
//! PostgreSQL sink created):
//!
//! | type | text |
//! |---|---|
//! | integers, DECIMAL, strings, ENUM, SET, JSON (MariaDB's is text) | as printed (DECIMAL keeps its scale on both) |
//! | BINARY, VARBINARY, BLOB, spatial | upper-case hex |
//! | DATE | `YYYY-MM-DD`; `-infinity` reads as the zero date |
//! | DATETIME, TIMESTAMP | `YYYY-MM-DD HH:MM:SS.ffffff` (TIMESTAMP in UTC); `-infinity` as zero |
//! | TIME (`interval` on PostgreSQL) | signed microseconds |
//! | YEAR | the number |
//! | BIT(n) | n binary digits |
//! | FLOAT / DOUBLE | `M e E`: the value rounded to 6 / 15 significant digits (MariaDB's own print precision), as an integer mantissa and a power of ten, computed in IEEE double arithmetic on both servers |
//!
//! NULL is `~` and any value `=` followed by its text, so NULL and the empty
//! string differ. Columns are joined with the byte 0x1F; a value holding
//! that byte next to a neighbour could in theory make two different rows
//! print the same, as with any text-joining checksum.

use crate::endpoint::Dialect;
use crate::schema::{ident, Column, Kind, Table};

/// The byte between columns of a row's text (written raw inside a literal).
const SEP: &str = "'\u{1f}'";

/// Whether both sides print values alike (native) or must be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Both servers MariaDB/MySQL.
    Native,
    /// A PostgreSQL side: normalized text and MD5.
    Normalized,
}

/// `db`.`t` on the source, or the target's copy.
pub fn from(d: Dialect, table: &Table, target: bool) -> String {
    let db = if target { &table.target_db } else { &table.db };
    format!("{}.{}", ident(d, db), ident(d, &table.name))
}

/// A column's normalized text (NULL when the value is NULL).
pub fn norm(d: Dialect, col: &Column) -> String {
    let c = ident(d, &col.name);
    match d {
        Dialect::Maria => match col.kind {
            Kind::Int | Kind::Decimal | Kind::Text | Kind::Date | Kind::Inet => c,
            Kind::Float => maria_sig(&c, 6),
            Kind::Double => maria_sig(&c, 15),
            Kind::Binary => format!("HEX({c})"),
            Kind::DateTime | Kind::Timestamp => {
                format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')")
            }
            Kind::Time => format!("CAST(TIME_TO_SEC({c}) * 1000000 AS SIGNED)"),
            Kind::Year => format!("({c} + 0)"),
            Kind::Bit(n) => format!("LPAD(BIN({c}), {n}, '0')"),
        },
        Dialect::Postgres => match col.kind {
            Kind::Int | Kind::Decimal | Kind::Text | Kind::Year | Kind::Bit(_) => {
                format!("{c}::text")
            }
            Kind::Float => pg_sig(&c, 6),
            Kind::Double => pg_sig(&c, 15),
            Kind::Binary => format!("upper(encode({c}, 'hex'))"),
            Kind::Date => format!(
                "CASE WHEN {c} = '-infinity' THEN '0000-00-00' ELSE to_char({c}, 'YYYY-MM-DD') END"
            ),
            Kind::DateTime | Kind::Timestamp => format!(
                "CASE WHEN {c} = '-infinity' THEN '0000-00-00 00:00:00.000000' \
                 ELSE to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US') END"
            ),
            Kind::Time => format!("(extract(epoch FROM {c}) * 1000000)::bigint::text"),
            Kind::Inet => format!("host({c})"),
        },
    }
}

/// `M e E` of a MariaDB float at `digits` significant digits.
fn maria_sig(c: &str, digits: u32) -> String {
    let e = format!("FLOOR(LOG10(ABS({c})))");
    format!(
        "IF({c} = 0, '0', CONCAT(CAST(FLOOR({c} / POW(10, {e} - {}) + 0.5) AS SIGNED), 'e', CAST({e} AS SIGNED)))",
        digits - 1
    )
}

/// The same on PostgreSQL (`log` is base 10 there).
fn pg_sig(c: &str, digits: u32) -> String {
    let v = format!("{c}::float8");
    let e = format!("floor(log(abs({v})))");
    format!(
        "CASE WHEN {v} = 0 THEN '0' ELSE floor({v} / power(10::float8, {e} - {}) + 0.5)::bigint::text || 'e' || {e}::bigint::text END",
        digits - 1
    )
}

/// A column's text inside a row's text: native or normalized, with the
/// NULL marker when it may be NULL.
fn cell(d: Dialect, mode: Mode, col: &Column) -> String {
    let v = match (mode, col.kind) {
        (Mode::Native, Kind::Float) => format!("CAST({} AS DOUBLE)", ident(d, &col.name)),
        (Mode::Native, _) => ident(d, &col.name),
        (Mode::Normalized, _) => norm(d, col),
    };
    if !col.nullable {
        return v;
    }
    match d {
        Dialect::Maria => format!("IFNULL(CONCAT('=', {v}), '~')"),
        Dialect::Postgres => format!("coalesce('=' || {v}, '~')"),
    }
}

/// A row's text: every compared column, joined.
pub fn row_text(d: Dialect, mode: Mode, table: &Table) -> String {
    let cells: Vec<String> = table.columns.iter().map(|c| cell(d, mode, c)).collect();
    match d {
        Dialect::Maria => format!("CONCAT({})", cells.join(&format!(", {SEP}, "))),
        Dialect::Postgres => format!("({})", cells.join(&format!(" || {SEP} || "))),
    }
}

/// `COUNT(*), <xor of row hashes>` over a chunk.
pub fn aggregate(d: Dialect, mode: Mode, table: &Table) -> String {
    let t = row_text(d, mode, table);
    match (d, mode) {
        (Dialect::Maria, Mode::Native) => format!("COUNT(*), BIT_XOR(CRC32({t}))"),
        (Dialect::Maria, Mode::Normalized) => {
            format!("COUNT(*), BIT_XOR(CAST(CONV(LEFT(MD5({t}), 16), 16, 10) AS UNSIGNED))")
        }
        (Dialect::Postgres, _) => format!(
            "count(*), coalesce(bit_xor(('x' || substr(md5({t}), 1, 16))::bit(64)::bigint), 0)"
        ),
    }
}

/// One row's hash, as text, for row-by-row comparison.
pub fn row_hash(d: Dialect, mode: Mode, table: &Table) -> String {
    let t = row_text(d, mode, table);
    match (d, mode) {
        (Dialect::Maria, Mode::Native) => format!("CRC32({t})"),
        (Dialect::Maria, Mode::Normalized) => format!("LEFT(MD5({t}), 16)"),
        (Dialect::Postgres, _) => format!("substr(md5({t}), 1, 16)"),
    }
}

/// The key's normalized text (key columns are NOT NULL), which names a row
/// the same way on both sides.
pub fn key_text(d: Dialect, table: &Table) -> String {
    let parts: Vec<String> = table
        .key
        .iter()
        .map(|&i| norm(d, &table.columns[i]))
        .collect();
    match (d, parts.as_slice()) {
        (_, [one]) => one.clone(),
        (Dialect::Maria, _) => format!("CONCAT({})", parts.join(&format!(", {SEP}, "))),
        (Dialect::Postgres, _) => format!("({})", parts.join(&format!(" || {SEP} || "))),
    }
}

/// The raw text of a source (MariaDB) column that repair literals are made
/// from: hex for binary, binary digits for BIT, FLOAT widened to DOUBLE.
pub fn raw(col: &Column) -> String {
    let c = ident(Dialect::Maria, &col.name);
    match col.kind {
        Kind::Binary => format!("HEX({c})"),
        Kind::Bit(n) => format!("LPAD(BIN({c}), {n}, '0')"),
        Kind::Float => format!("CAST({c} AS DOUBLE)"),
        Kind::Year => format!("({c} + 0)"),
        _ => c,
    }
}

/// `WHERE`-clause of an integer key range (inclusive), or nothing.
pub fn range(d: Dialect, table: &Table, r: Option<(i128, i128)>) -> String {
    match (r, table.int_key()) {
        (Some((lo, hi)), Some(k)) => {
            format!(" WHERE {} BETWEEN {lo} AND {hi}", ident(d, &k.name))
        }
        _ => String::new(),
    }
}
