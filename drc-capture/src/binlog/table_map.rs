//! TABLE_MAP events: the table a following rows event writes to, its column
//! types and type metadata, and — when the server sends it
//! (`binlog_row_metadata=FULL`/`MINIMAL`) — the optional metadata: names,
//! signedness, charsets, ENUM/SET labels, primary key, visibility.

use super::cursor::{Cursor, Short};
use super::event::{types, FormatDescription};

/// MySQL column type codes as they appear in TABLE_MAP.
pub mod col {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const VECTOR: u8 = 242;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// Everything a TABLE_MAP event says about one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableMap {
    pub table_id: u64,
    pub db: String,
    pub table: String,
    pub column_types: Vec<u8>,
    /// Raw per-column type metadata, decoded by type (0–2 bytes each).
    pub column_meta: Vec<u16>,
    pub nullable: Vec<bool>,
    pub opt: OptionalMeta,
    /// Written by MariaDB (its metadata conventions differ slightly).
    pub mariadb: bool,
}

/// Optional metadata; each field is empty when the server did not send it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptionalMeta {
    /// Per numeric column (in column order), true when UNSIGNED.
    pub signedness: Vec<bool>,
    /// Per character column (in column order), the collation id.
    pub charsets: Vec<u16>,
    /// Per ENUM/SET column, the collation id.
    pub enum_set_charsets: Vec<u16>,
    pub column_names: Vec<String>,
    pub set_labels: Vec<Vec<String>>,
    pub enum_labels: Vec<Vec<String>>,
    pub geometry_types: Vec<u64>,
    pub primary_key: Vec<usize>,
    pub visibility: Vec<bool>,
}

impl TableMap {
    /// The real type of column `i`: STRING columns may really be ENUM or SET.
    pub fn real_type(&self, i: usize) -> u8 {
        let t = self.column_types.get(i).copied().unwrap_or(0);
        if t == col::STRING {
            let meta = self.column_meta.get(i).copied().unwrap_or(0);
            let byte0 = (meta >> 8) as u8;
            if byte0 == col::ENUM || byte0 == col::SET {
                return byte0;
            }
        }
        t
    }

    /// Whether column `i` has a bit in the SIGNEDNESS metadata. MariaDB
    /// counts YEAR (an unsigned tiny integer to it); MySQL does not.
    pub fn is_numeric(&self, i: usize) -> bool {
        if self.mariadb && self.real_type(i) == col::YEAR {
            return true;
        }
        matches!(
            self.real_type(i),
            col::TINY
                | col::SHORT
                | col::INT24
                | col::LONG
                | col::LONGLONG
                | col::FLOAT
                | col::DOUBLE
                | col::NEWDECIMAL
                | col::DECIMAL
        )
    }

    pub fn is_character(&self, i: usize) -> bool {
        matches!(
            self.real_type(i),
            col::STRING
                | col::VARCHAR
                | col::VAR_STRING
                | col::BLOB
                | col::TINY_BLOB
                | col::MEDIUM_BLOB
                | col::LONG_BLOB
        )
    }

    pub fn is_enum_or_set(&self, i: usize) -> bool {
        matches!(self.real_type(i), col::ENUM | col::SET)
    }
}

fn short(e: Short) -> String {
    format!("TABLE_MAP: {e}")
}

/// Parses a TABLE_MAP body.
pub fn parse_table_map(body: &[u8], fde: &FormatDescription) -> Result<TableMap, String> {
    let mut c = Cursor::new(body);
    let id_len = if fde.post_header_len(types::TABLE_MAP, 8) == 6 {
        4
    } else {
        6
    };
    let table_id = c.uint_le(id_len, "table id").map_err(short)?;
    c.skip(2, "flags").map_err(short)?;
    let db_len = usize::from(c.u8("db length").map_err(short)?);
    let db = c.take(db_len, "db name").map_err(short)?;
    c.skip(1, "db terminator").map_err(short)?;
    let t_len = usize::from(c.u8("table length").map_err(short)?);
    let table = c.take(t_len, "table name").map_err(short)?;
    c.skip(1, "table terminator").map_err(short)?;
    let n = c.lenenc_len("column count").map_err(short)?;
    let column_types = c.take(n, "column types").map_err(short)?.to_vec();
    let meta_len = c.lenenc_len("metadata length").map_err(short)?;
    let mut m = Cursor::new(c.take(meta_len, "metadata").map_err(short)?);
    let mut column_meta = Vec::with_capacity(n);
    for &t in &column_types {
        let v = match t {
            col::FLOAT
            | col::DOUBLE
            | col::BLOB
            | col::TINY_BLOB
            | col::MEDIUM_BLOB
            | col::LONG_BLOB
            | col::GEOMETRY
            | col::JSON
            | col::TIMESTAMP2
            | col::DATETIME2
            | col::TIME2
            | col::VECTOR => u16::from(m.u8("column metadata").map_err(short)?),
            col::VARCHAR | col::VAR_STRING => m.u16("column metadata").map_err(short)?,
            // Stored big-endian: real type (or length high bits) then length.
            col::STRING | col::ENUM | col::SET | col::NEWDECIMAL | col::BIT => {
                m.uint_be(2, "column metadata").map_err(short)? as u16
            }
            _ => 0,
        };
        column_meta.push(v);
    }
    let null_bits = c.take(n.div_ceil(8), "null bitmap").map_err(short)?;
    let nullable = (0..n)
        .map(|i| null_bits[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    let mut map = TableMap {
        table_id,
        db: String::from_utf8_lossy(db).into_owned(),
        table: String::from_utf8_lossy(table).into_owned(),
        column_types,
        column_meta,
        nullable,
        opt: OptionalMeta::default(),
        mariadb: fde.is_mariadb(),
    };
    parse_optional(&mut c, &mut map)?;
    Ok(map)
}

fn bits_msb(buf: &[u8], count: usize) -> Vec<bool> {
    (0..count)
        .map(|i| buf.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0))
        .collect()
}

fn labels(c: &mut Cursor<'_>) -> Result<Vec<Vec<String>>, Short> {
    let mut out = Vec::new();
    while !c.is_empty() {
        let k = c.lenenc("label count")?;
        let mut v = Vec::new();
        for _ in 0..k {
            v.push(String::from_utf8_lossy(c.lenenc_bytes("label")?).into_owned());
        }
        out.push(v);
    }
    Ok(out)
}

/// DEFAULT_CHARSET form: default collation, then (index, collation) pairs for
/// the columns that differ; expanded to one collation per column of the kind.
fn default_charsets(c: &mut Cursor<'_>, count: usize) -> Result<Vec<u16>, Short> {
    let default = c.lenenc("default collation")? as u16;
    let mut v = vec![default; count];
    while !c.is_empty() {
        let i = c.lenenc("column index")? as usize;
        let coll = c.lenenc("collation")? as u16;
        if let Some(slot) = v.get_mut(i) {
            *slot = coll;
        }
    }
    Ok(v)
}

fn parse_optional(c: &mut Cursor<'_>, map: &mut TableMap) -> Result<(), String> {
    let n = map.column_types.len();
    let n_numeric = (0..n).filter(|&i| map.is_numeric(i)).count();
    let n_char = (0..n).filter(|&i| map.is_character(i)).count();
    let n_enum_set = (0..n).filter(|&i| map.is_enum_or_set(i)).count();
    while !c.is_empty() {
        let kind = c.u8("optional metadata type").map_err(short)?;
        let len = c.lenenc_len("optional metadata length").map_err(short)?;
        let mut v = Cursor::new(c.take(len, "optional metadata").map_err(short)?);
        let o = &mut map.opt;
        match kind {
            1 => o.signedness = bits_msb(v.rest(), n_numeric),
            2 => o.charsets = default_charsets(&mut v, n_char).map_err(short)?,
            3 => {
                while !v.is_empty() {
                    o.charsets
                        .push(v.lenenc("column charset").map_err(short)? as u16);
                }
            }
            4 => {
                while !v.is_empty() {
                    let name = v.lenenc_bytes("column name").map_err(short)?;
                    o.column_names
                        .push(String::from_utf8_lossy(name).into_owned());
                }
            }
            5 => o.set_labels = labels(&mut v).map_err(short)?,
            6 => o.enum_labels = labels(&mut v).map_err(short)?,
            7 => {
                while !v.is_empty() {
                    o.geometry_types
                        .push(v.lenenc("geometry type").map_err(short)?);
                }
            }
            8 => {
                while !v.is_empty() {
                    o.primary_key
                        .push(v.lenenc("primary key column").map_err(short)? as usize);
                }
            }
            9 => {
                while !v.is_empty() {
                    o.primary_key
                        .push(v.lenenc("primary key column").map_err(short)? as usize);
                    v.lenenc("primary key prefix").map_err(short)?;
                }
            }
            10 => o.enum_set_charsets = default_charsets(&mut v, n_enum_set).map_err(short)?,
            11 => {
                while !v.is_empty() {
                    o.enum_set_charsets
                        .push(v.lenenc("enum/set charset").map_err(short)? as u16);
                }
            }
            12 => o.visibility = bits_msb(v.rest(), n),
            // Newer servers add kinds (e.g. vector dimensions); they only refine
            // types we already decode from the column type and metadata.
            _ => {}
        }
    }
    if !map.opt.column_names.is_empty() && map.opt.column_names.len() != n {
        return Err(format!(
            "TABLE_MAP of {}.{}: {} column names for {} columns",
            map.db,
            map.table,
            map.opt.column_names.len(),
            n
        ));
    }
    Ok(())
}
