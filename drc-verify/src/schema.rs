//! What is compared: the source's tables (MariaDB `information_schema`), their
//! columns, the key each comparison walks, and the target's copy of each.
//!
//! The key is the primary key, else the first unique key whose columns are
//! all NOT NULL (the same rule the capture and the sinks use), else none:
//! such a table can only be compared whole (count and checksum), never row
//! by row. A PostgreSQL target holds `db.table` as schema `db`, table
//! `table` (the PostgreSQL sink's default mapping), or the schema given by
//! the schema map.

use std::collections::BTreeMap;

use crate::endpoint::{Db, Dialect};
use crate::error::{Error, Result};

/// Databases never compared by default: the servers' own, and DRC's
/// bookkeeping (`drc.checkpoints` differs between regions by design).
pub const SYSTEM_DATABASES: [&str; 6] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "drc",
    "pg_catalog",
];

/// How a column's values are read and normalized (from the source's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TINYINT … BIGINT, BOOL (signed or not).
    Int,
    /// DECIMAL / NUMERIC: exact digits at the column's scale.
    Decimal,
    /// FLOAT (compared at 6 significant digits).
    Float,
    /// DOUBLE / REAL (compared at 15 significant digits).
    Double,
    /// CHAR, VARCHAR, TEXT, ENUM, SET, JSON, INET4/6, UUID.
    Text,
    /// BINARY, VARBINARY, BLOB, spatial types: compared as hex.
    Binary,
    /// DATE.
    Date,
    /// DATETIME(p).
    DateTime,
    /// TIMESTAMP(p) (read in UTC).
    Timestamp,
    /// TIME(p): compared as signed microseconds.
    Time,
    /// YEAR.
    Year,
    /// BIT(n), compared as n binary digits.
    Bit(u32),
    /// INET4 / INET6 (PostgreSQL `inet`, whose text would add the mask).
    Inet,
}

impl Kind {
    /// The kind of a MariaDB column from `DATA_TYPE` and `COLUMN_TYPE`.
    pub fn of(data_type: &str, column_type: &str) -> Kind {
        match data_type {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bool"
            | "boolean" => Kind::Int,
            "decimal" | "numeric" => Kind::Decimal,
            "float" => Kind::Float,
            "double" | "real" | "double precision" => Kind::Double,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" => Kind::Binary,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "timestamp" => Kind::Timestamp,
            "time" => Kind::Time,
            "year" => Kind::Year,
            "inet6" | "inet4" => Kind::Inet,
            "bit" => {
                let width = column_type
                    .trim_start_matches("bit(")
                    .trim_end_matches(')')
                    .parse()
                    .unwrap_or(1);
                Kind::Bit(width)
            }
            _ => Kind::Text,
        }
    }
}

/// One column of a compared table.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name (the same on both sides).
    pub name: String,
    /// How its values are normalized.
    pub kind: Kind,
    /// Whether it may hold NULL (on the source).
    pub nullable: bool,
}

/// A table to compare, as the source defines it.
#[derive(Debug, Clone)]
pub struct Table {
    /// Source database.
    pub db: String,
    /// Table name.
    pub name: String,
    /// Columns compared (those both sides have), in the source's order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key walked, empty when there is none.
    pub key: Vec<usize>,
    /// Which key that is (`PRIMARY` or a unique key's name), for messages.
    pub key_name: Option<String>,
    /// The source's row estimate (`TABLE_ROWS`), for chunk sizes and progress.
    pub estimated_rows: u64,
    /// The target's schema (PostgreSQL) or database (MariaDB) holding it.
    pub target_db: String,
}

impl Table {
    /// `db.table`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.db, self.name)
    }

    /// Whether the key is one integer column (chunks are then value ranges).
    pub fn int_key(&self) -> Option<&Column> {
        match self.key.as_slice() {
            [i] if self.columns[*i].kind == Kind::Int => Some(&self.columns[*i]),
            _ => None,
        }
    }
}

/// A string literal for `dialect`.
pub fn literal(dialect: Dialect, s: &str) -> String {
    match dialect {
        Dialect::Maria => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        Dialect::Postgres => format!("'{}'", s.replace('\'', "''")),
    }
}

/// A quoted identifier for `dialect`.
pub fn ident(dialect: Dialect, s: &str) -> String {
    match dialect {
        Dialect::Maria => format!("`{}`", s.replace('`', "``")),
        Dialect::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

/// Source tables named by `patterns` (`db.table` globs; a bare name means
/// every table of that database), or every base table of every non-system
/// database (only `only_db`'s when set) when there are none.
pub async fn list_tables(
    source: &Db,
    patterns: &[String],
    only_db: Option<&str>,
) -> Result<Vec<(String, String, u64)>> {
    let mut builder = globset::GlobSetBuilder::new();
    for p in patterns {
        let p = if p.contains('.') {
            p.clone()
        } else {
            format!("{p}.*")
        };
        let glob = globset::GlobBuilder::new(&p)
            .literal_separator(false)
            .build()
            .map_err(|e| Error::Tables(format!("{p:?} is not a valid glob: {e}")))?;
        builder.add(glob);
    }
    let set = builder
        .build()
        .map_err(|e| Error::Tables(format!("bad patterns: {e}")))?;
    let rows = source
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, IFNULL(TABLE_ROWS, 0) FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
            "list tables",
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let [Some(db), Some(name), rows] =
            <[Option<String>; 3]>::try_from(row).map_err(|_| Error::Protocol {
                side: "source",
                reason: "information_schema.TABLES row of the wrong width".into(),
            })?
        else {
            continue;
        };
        let rows = rows.and_then(|r| r.parse().ok()).unwrap_or(0);
        let full = format!("{db}.{name}");
        let wanted = if patterns.is_empty() {
            !SYSTEM_DATABASES.contains(&db.as_str()) && only_db.is_none_or(|d| d == db)
        } else {
            set.is_match(&full)
        };
        if wanted {
            out.push((db, name, rows));
        }
    }
    if out.is_empty() && !patterns.is_empty() {
        return Err(Error::Tables(format!(
            "no base table of the source matches {}",
            patterns.join(",")
        )));
    }
    Ok(out)
}

/// A source column as `information_schema` describes it.
struct SourceColumn {
    name: String,
    data_type: String,
    column_type: String,
    nullable: bool,
}

/// What the comparison of one table starts from: the table, or why it can
/// only be partly compared.
pub struct Described {
    /// The table (its columns limited to those both sides have).
    pub table: Table,
    /// Whether the target has the table at all.
    pub target_exists: bool,
    /// Schema differences found (a column only one side has), for the report.
    pub notes: Vec<String>,
}

/// Reads the columns and key of `db.name` on the source and the columns of
/// its copy on the target.
pub async fn describe(
    source: &Db,
    target: &Db,
    db: &str,
    name: &str,
    estimated_rows: u64,
    schema_map: &BTreeMap<String, String>,
) -> Result<Described> {
    let m = Dialect::Maria;
    let cols = source
        .query(
            &format!(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
                literal(m, db),
                literal(m, name)
            ),
            &format!("columns of {db}.{name}"),
        )
        .await?;
    let mut source_cols = Vec::new();
    for row in cols {
        let mut it = row.into_iter();
        let (Some(Some(name)), Some(Some(data_type)), Some(Some(column_type)), Some(nullable)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(Error::Protocol {
                side: "source",
                reason: format!("a column of {db}.{name} without name or type"),
            });
        };
        source_cols.push(SourceColumn {
            name,
            data_type: data_type.to_lowercase(),
            column_type: column_type.to_lowercase(),
            nullable: nullable.as_deref() == Some("YES"),
        });
    }
    let keys = source
        .query(
            &format!(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND NON_UNIQUE = 0 \
                 ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
                literal(m, db),
                literal(m, name)
            ),
            &format!("keys of {db}.{name}"),
        )
        .await?;
    let mut by_index: Vec<(String, Vec<String>)> = Vec::new();
    for row in keys {
        let mut it = row.into_iter();
        let (Some(Some(index)), Some(Some(column))) = (it.next(), it.next()) else {
            continue;
        };
        match by_index.last_mut() {
            Some((last, cols)) if *last == index => cols.push(column),
            _ => by_index.push((index, vec![column])),
        }
    }
    let not_null = |c: &str| source_cols.iter().any(|s| s.name == c && !s.nullable);
    let chosen = by_index
        .into_iter()
        .find(|(index, cols)| index == "PRIMARY" || cols.iter().all(|c| not_null(c)));

    let target_db = schema_map.get(db).cloned().unwrap_or_else(|| db.to_owned());
    let target_cols = target_columns(target, &target_db, name).await?;
    let target_exists = !target_cols.is_empty();
    let mut notes = Vec::new();
    let mut columns = Vec::new();
    for c in &source_cols {
        if target_exists && !target_cols.iter().any(|t| t == &c.name) {
            notes.push(format!("column {} is missing on the target", c.name));
            continue;
        }
        columns.push(Column {
            name: c.name.clone(),
            kind: Kind::of(&c.data_type, &c.column_type),
            nullable: c.nullable,
        });
    }
    for t in &target_cols {
        if !source_cols.iter().any(|c| &c.name == t) {
            notes.push(format!("column {t} exists only on the target"));
        }
    }
    let (key, key_name) = match chosen {
        Some((index, cols)) => {
            let idx: Option<Vec<usize>> = cols
                .iter()
                .map(|c| columns.iter().position(|col| &col.name == c))
                .collect();
            match idx {
                Some(idx) => (idx, Some(index)),
                // A key column the target lacks: only whole-table checks remain.
                None => (Vec::new(), None),
            }
        }
        None => (Vec::new(), None),
    };
    Ok(Described {
        table: Table {
            db: db.to_owned(),
            name: name.to_owned(),
            columns,
            key,
            key_name,
            estimated_rows,
            target_db,
        },
        target_exists,
        notes,
    })
}

/// The target's column names of `db.name` (schema `db` on PostgreSQL); empty
/// when it has no such table.
async fn target_columns(target: &Db, db: &str, name: &str) -> Result<Vec<String>> {
    let d = target.dialect();
    let sql = match d {
        Dialect::Maria => format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            literal(d, db),
            literal(d, name)
        ),
        Dialect::Postgres => format!(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
            literal(d, db),
            literal(d, name)
        ),
    };
    let rows = target
        .query(&sql, &format!("columns of {db}.{name}"))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}
