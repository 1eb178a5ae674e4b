//! A table's decode plan: how to read each column of its row images.
//!
//! Built once per TABLE_MAP from the binlog's own column metadata and, where the
//! server did not send enough of it (`binlog_row_metadata=MINIMAL`, MariaDB
//! INET6/UUID which travel as plain binary strings), from the schema history.

use std::sync::Arc;

use drc_proto::v1 as pb;

use super::charset::{Charset, Collations};
use crate::binlog::table_map::{col, TableMap};
use crate::schema::TableSchema;

/// How one column's value is stored in a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum ColKind {
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Year,
    Date,
    TimeV1,
    Time2 {
        fsp: u8,
    },
    DateTimeV1,
    DateTime2 {
        fsp: u8,
    },
    TimestampV1,
    Timestamp2 {
        fsp: u8,
    },
    Bit {
        bytes: u8,
        width: u8,
    },
    /// CHAR/VARCHAR (and BINARY/VARBINARY): a 1- or 2-byte length prefix;
    /// `fixed_len` is n of a BINARY(n), whose zero padding the binlog drops.
    Str {
        len_bytes: u8,
        charset: Charset,
        fixed_len: Option<u16>,
    },
    /// BLOB/TEXT: a 1–4-byte length prefix.
    Blob {
        len_bytes: u8,
        charset: Charset,
    },
    /// MySQL binary JSON behind a length prefix.
    Json {
        len_bytes: u8,
    },
    /// MariaDB JSON: LONGTEXT holding JSON text (known from the schema).
    JsonText {
        len_bytes: u8,
    },
    Enum {
        bytes: u8,
        labels: Arc<Vec<String>>,
    },
    Set {
        bytes: u8,
        labels: Arc<Vec<String>>,
    },
    Geometry {
        len_bytes: u8,
    },
    Vector {
        len_bytes: u8,
    },
    /// MariaDB INET6 / UUID: fixed binary strings shown in their text form.
    Inet6 {
        len_bytes: u8,
    },
    Uuid {
        len_bytes: u8,
    },
}

#[derive(Debug, Clone)]
pub struct ColPlan {
    pub name: String,
    pub kind: ColKind,
}

/// Everything needed to decode the rows of one table id.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table_id: u64,
    pub db: String,
    pub table: String,
    pub cols: Vec<ColPlan>,
    /// Column descriptions as they go into every RowChange.
    pub columns: Vec<pb::Column>,
    pub primary_key: Vec<u32>,
}

fn fixed_len_bytes(max_len: u16) -> u8 {
    if max_len > 255 {
        2
    } else {
        1
    }
}

/// Builds a plan. `schema` is the schema history's view of the table, if any.
pub fn build_plan(
    map: &TableMap,
    schema: Option<&TableSchema>,
    collations: &Collations,
) -> Result<TablePlan, String> {
    let n = map.column_types.len();
    let schema = schema.filter(|s| s.columns.len() == n);
    let have_names = map.opt.column_names.len() == n;
    if !have_names && schema.is_none() {
        tracing::debug!(db = %map.db, table = %map.table, "no column names in binlog or schema history; using @N names");
    }
    let mut numeric_i = 0usize;
    let mut char_i = 0usize;
    let mut enum_i = 0usize;
    let mut set_i = 0usize;
    let mut cols = Vec::with_capacity(n);
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        let t = map.column_types[i];
        let meta = map.column_meta.get(i).copied().unwrap_or(0);
        let real = map.real_type(i);
        let sdef = schema.and_then(|s| s.columns.get(i));
        let name = if have_names {
            map.opt.column_names[i].clone()
        } else if let Some(d) = sdef {
            d.name.clone()
        } else {
            format!("@{}", i + 1)
        };
        let unsigned = if map.is_numeric(i) {
            let u = map
                .opt
                .signedness
                .get(numeric_i)
                .copied()
                .or(sdef.map(|d| d.unsigned))
                .unwrap_or(false);
            numeric_i += 1;
            u
        } else {
            false
        };
        let charset_of = |coll: Option<u16>| -> Result<Option<Charset>, String> {
            if let Some(id) = coll {
                let cs = collations.charset_name(id).ok_or_else(|| {
                    format!("{}.{}.{name}: unknown collation id {id}", map.db, map.table)
                })?;
                return Charset::from_name(cs).map(Some).ok_or_else(|| {
                    format!(
                        "{}.{}.{name}: charset {cs} is not supported",
                        map.db, map.table
                    )
                });
            }
            if let Some(cs) = sdef.and_then(|d| d.charset.as_deref()) {
                return Charset::from_name(cs).map(Some).ok_or_else(|| {
                    format!(
                        "{}.{}.{name}: charset {cs} is not supported",
                        map.db, map.table
                    )
                });
            }
            Ok(None)
        };
        let data_type = sdef.map(|d| d.data_type.as_str()).unwrap_or("");
        let mut charset_name = String::new();
        let kind = match real {
            col::TINY => ColKind::Int { bytes: 1, unsigned },
            col::SHORT => ColKind::Int { bytes: 2, unsigned },
            col::INT24 => ColKind::Int { bytes: 3, unsigned },
            col::LONG => ColKind::Int { bytes: 4, unsigned },
            col::LONGLONG => ColKind::Int { bytes: 8, unsigned },
            col::FLOAT => ColKind::Float,
            col::DOUBLE => ColKind::Double,
            col::NEWDECIMAL => ColKind::Decimal {
                precision: (meta >> 8) as u8,
                scale: meta as u8,
            },
            col::YEAR => ColKind::Year,
            col::DATE | col::NEWDATE => ColKind::Date,
            col::TIME => ColKind::TimeV1,
            col::TIME2 => ColKind::Time2 { fsp: meta as u8 },
            col::DATETIME => ColKind::DateTimeV1,
            col::DATETIME2 => ColKind::DateTime2 { fsp: meta as u8 },
            col::TIMESTAMP => ColKind::TimestampV1,
            col::TIMESTAMP2 => ColKind::Timestamp2 { fsp: meta as u8 },
            col::BIT => {
                let bits = (meta >> 8) as u8;
                let bytes = meta as u8;
                ColKind::Bit {
                    bytes: bytes + u8::from(bits > 0),
                    width: bytes.saturating_mul(8).saturating_add(bits),
                }
            }
            col::VARCHAR | col::VAR_STRING | col::STRING => {
                let max_len = if t == col::STRING {
                    let b0 = meta >> 8;
                    let b1 = meta & 0xff;
                    if b0 & 0x30 != 0x30 {
                        (((b0 & 0x30) ^ 0x30) << 4) | b1
                    } else {
                        b1
                    }
                } else {
                    meta
                };
                let coll = map.opt.charsets.get(char_i).copied();
                char_i += 1;
                let cs = charset_of(coll)?;
                charset_name = cs_name(cs, coll, collations, sdef);
                let len_bytes = fixed_len_bytes(max_len);
                match data_type {
                    "inet6" => ColKind::Inet6 { len_bytes },
                    "uuid" => ColKind::Uuid { len_bytes },
                    _ => {
                        let charset = cs.unwrap_or(Charset::Unknown);
                        let fixed_len =
                            (t == col::STRING && charset == Charset::Binary).then_some(max_len);
                        ColKind::Str {
                            len_bytes,
                            charset,
                            fixed_len,
                        }
                    }
                }
            }
            col::BLOB | col::TINY_BLOB | col::MEDIUM_BLOB | col::LONG_BLOB => {
                let coll = map.opt.charsets.get(char_i).copied();
                char_i += 1;
                let cs = charset_of(coll)?;
                charset_name = cs_name(cs, coll, collations, sdef);
                if data_type == "json" {
                    ColKind::JsonText {
                        len_bytes: meta as u8,
                    }
                } else {
                    ColKind::Blob {
                        len_bytes: meta as u8,
                        charset: cs.unwrap_or(Charset::Unknown),
                    }
                }
            }
            col::JSON => ColKind::Json {
                len_bytes: meta as u8,
            },
            col::GEOMETRY => ColKind::Geometry {
                len_bytes: meta as u8,
            },
            col::VECTOR => ColKind::Vector {
                len_bytes: meta as u8,
            },
            col::ENUM | col::SET => {
                let bytes = (meta & 0xff) as u8;
                let is_enum = real == col::ENUM;
                let from_map = if is_enum {
                    let l = map.opt.enum_labels.get(enum_i).cloned();
                    enum_i += 1;
                    l
                } else {
                    let l = map.opt.set_labels.get(set_i).cloned();
                    set_i += 1;
                    l
                };
                let labels = Arc::new(
                    from_map
                        .or(sdef.map(|d| d.labels.clone()))
                        .unwrap_or_default(),
                );
                if is_enum {
                    ColKind::Enum { bytes, labels }
                } else {
                    ColKind::Set { bytes, labels }
                }
            }
            other => {
                return Err(format!(
                    "{}.{}.{name}: column type {other} is not supported",
                    map.db, map.table
                ))
            }
        };
        let sql_type = sdef
            .map(|d| d.column_type.clone())
            .unwrap_or_else(|| type_text(&kind));
        columns.push(pb::Column {
            name: name.clone(),
            sql_type,
            nullable: map.nullable.get(i).copied().unwrap_or(true),
            charset: charset_name,
        });
        cols.push(ColPlan { name, kind });
    }
    let primary_key: Vec<u32> = if !map.opt.primary_key.is_empty() {
        map.opt
            .primary_key
            .iter()
            .filter(|&&i| i < n)
            .map(|&i| i as u32)
            .collect()
    } else {
        schema
            .map(|s| {
                s.primary_key
                    .iter()
                    .filter(|&&i| i < n)
                    .map(|&i| i as u32)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(TablePlan {
        table_id: map.table_id,
        db: map.db.clone(),
        table: map.table.clone(),
        cols,
        columns,
        primary_key,
    })
}

fn cs_name(
    cs: Option<Charset>,
    coll: Option<u16>,
    collations: &Collations,
    sdef: Option<&crate::schema::ColumnDef>,
) -> String {
    if let Some(name) = coll.and_then(|c| collations.charset_name(c)) {
        return name.to_string();
    }
    if let Some(name) = sdef.and_then(|d| d.charset.clone()) {
        return name;
    }
    match cs {
        Some(Charset::Binary) => "binary".into(),
        _ => String::new(),
    }
}

/// A type description for columns the schema history does not describe.
fn type_text(kind: &ColKind) -> String {
    match kind {
        ColKind::Int { bytes, unsigned } => {
            let base = match bytes {
                1 => "tinyint",
                2 => "smallint",
                3 => "mediumint",
                4 => "int",
                _ => "bigint",
            };
            if *unsigned {
                format!("{base} unsigned")
            } else {
                base.to_string()
            }
        }
        ColKind::Float => "float".into(),
        ColKind::Double => "double".into(),
        ColKind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColKind::Year => "year".into(),
        ColKind::Date => "date".into(),
        ColKind::TimeV1 => "time".into(),
        ColKind::Time2 { fsp } => with_fsp("time", *fsp),
        ColKind::DateTimeV1 => "datetime".into(),
        ColKind::DateTime2 { fsp } => with_fsp("datetime", *fsp),
        ColKind::TimestampV1 => "timestamp".into(),
        ColKind::Timestamp2 { fsp } => with_fsp("timestamp", *fsp),
        ColKind::Bit { width, .. } => format!("bit({width})"),
        ColKind::Str { charset, .. } => {
            if *charset == Charset::Binary {
                "varbinary".into()
            } else {
                "varchar".into()
            }
        }
        ColKind::Blob { charset, .. } => {
            if *charset == Charset::Binary {
                "blob".into()
            } else {
                "text".into()
            }
        }
        ColKind::Json { .. } | ColKind::JsonText { .. } => "json".into(),
        ColKind::Enum { .. } => "enum".into(),
        ColKind::Set { .. } => "set".into(),
        ColKind::Geometry { .. } => "geometry".into(),
        ColKind::Vector { .. } => "vector".into(),
        ColKind::Inet6 { .. } => "inet6".into(),
        ColKind::Uuid { .. } => "uuid".into(),
    }
}

fn with_fsp(base: &str, fsp: u8) -> String {
    if fsp == 0 {
        base.to_string()
    } else {
        format!("{base}({fsp})")
    }
}
