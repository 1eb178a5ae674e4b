//! The source side: connecting, the preflight checks, and what is migrated
//! (tables, their columns, keys, sizes, and the other objects of their
//! databases).
//!
//! The source must be MariaDB: the snapshot takes each chunk's binlog
//! position from `START TRANSACTION WITH CONSISTENT SNAPSHOT` and
//! `Binlog_snapshot_file`/`_position`, which MySQL does not have (it would
//! need a brief global lock instead; not done yet).

use std::collections::BTreeSet;

use drc_capture::filter::Filter;
use drc_capture::position::BinlogPos;
use drc_capture::schema::ddl::TableMeta;
use drc_capture::schema::{ColumnDef, TableSchema};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};

use crate::error::{self, Error, Result};
use drc_verify::Endpoint;

/// Databases never migrated: the server's own and DRC's bookkeeping.
pub const SKIPPED_DATABASES: [&str; 5] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "drc",
];

/// How the source session prints values: the raw bytes of every column
/// (`binary`, for a MariaDB target, which takes them back as they are) or
/// UTF-8 text (for PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Binary,
    Utf8,
}

/// A pool of source connections with the session settings reads need.
pub fn pool(ep: &Endpoint, charset: Charset, size: usize) -> Result<Pool> {
    let names = match charset {
        Charset::Binary => "binary",
        Charset::Utf8 => "utf8mb4",
    };
    let init = vec![
        format!(
            "SET NAMES {names}, time_zone = '+00:00', SESSION net_write_timeout = 3600, \
             SESSION net_read_timeout = 3600"
        ),
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_owned(),
    ];
    ep.maria_pool(init, size + 2)
        .ok_or_else(|| Error::Preflight("bad source pool size".into()))
}

/// One migrated table as the source defines it.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub schema: TableSchema,
    pub meta: TableMeta,
    /// Indexes into `schema.columns` of the columns copied: all but
    /// generated ones (the target computes those), invisible ones included.
    pub copied: Vec<usize>,
    /// `TABLE_ROWS` (an estimate) and `DATA_LENGTH + INDEX_LENGTH`.
    pub est_rows: u64,
    pub est_bytes: u64,
    /// The AUTO_INCREMENT column, if any.
    pub auto_increment: Option<String>,
    /// `COLLATION_NAME` of each column (`None` for non-string columns).
    pub collations: Vec<Option<String>>,
}

impl SourceTable {
    pub fn db(&self) -> &str {
        &self.schema.db
    }

    pub fn name(&self) -> &str {
        &self.schema.table
    }

    /// `db.table`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.schema.db, self.schema.table)
    }

    /// Whether rows can be told apart by a key (primary, or unique with all
    /// columns NOT NULL): only then can the table be read in parallel chunks
    /// and the changes made during the snapshot be replayed idempotently.
    pub fn has_key(&self) -> bool {
        !self.schema.primary_key.is_empty()
    }

    /// The first key column when it is an integer that fits `i64`: chunks
    /// are ranges of it.
    pub fn chunk_column(&self) -> Option<&ColumnDef> {
        let first = *self.schema.primary_key.first()?;
        let c = self.schema.columns.get(first)?;
        let fits = match c.data_type.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" => true,
            "bigint" => !c.unsigned,
            _ => false,
        };
        fits.then_some(c)
    }

    /// Whether a keyed table without an integer first key column is read in
    /// keyset chunks (`key > last key read, ORDER BY key LIMIT n`): every key
    /// column is of a type whose SQL comparison orders as the index does.
    pub fn keyset(&self) -> bool {
        self.has_key()
            && self.chunk_column().is_none()
            && self.schema.primary_key.iter().all(|&i| {
                let c = &self.schema.columns[i];
                !c.generated
                    && matches!(
                        c.data_type.as_str(),
                        "tinyint"
                            | "smallint"
                            | "mediumint"
                            | "int"
                            | "integer"
                            | "bigint"
                            | "decimal"
                            | "numeric"
                            | "char"
                            | "varchar"
                            | "binary"
                            | "varbinary"
                            | "date"
                            | "datetime"
                            | "timestamp"
                            | "time"
                            | "year"
                    )
                    && (!matches!(c.data_type.as_str(), "char" | "varchar")
                        || (c.charset.is_some()
                            && self.collations.get(i).is_some_and(|x| x.is_some())))
            })
    }

    /// The select expressions that give, per key column, what
    /// [`key_literal`] turns into a literal (hex for strings).
    pub fn key_exprs(&self) -> Vec<String> {
        self.schema
            .primary_key
            .iter()
            .map(|&i| {
                let c = &self.schema.columns[i];
                let q = quote_ident(&c.name);
                match c.data_type.as_str() {
                    "char" | "varchar" | "binary" | "varbinary" => format!("HEX({q})"),
                    _ => q,
                }
            })
            .collect()
    }

    /// The SQL literal of key column `k` (index into the key) from the value
    /// [`Self::key_exprs`] selected: strings are compared under the column's
    /// own collation, so the bound orders exactly as the key index.
    pub fn key_literal(&self, k: usize, raw: &[u8]) -> Option<String> {
        let i = *self.schema.primary_key.get(k)?;
        let c = &self.schema.columns[i];
        let text = std::str::from_utf8(raw).ok()?;
        Some(match c.data_type.as_str() {
            "char" | "varchar" => {
                if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let cs = c.charset.as_deref()?;
                let coll = self.collations.get(i)?.as_deref()?;
                let ok = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok(cs) || !ok(coll) {
                    return None;
                }
                format!("CONVERT(X'{text}' USING {cs}) COLLATE {coll}")
            }
            "binary" | "varbinary" => {
                if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                format!("X'{text}'")
            }
            _ => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''")),
        })
    }

    pub fn copied_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.copied.iter().map(|&i| &self.schema.columns[i])
    }
}

/// Another object of a migrated database (created on the target after the
/// load).
#[derive(Debug, Clone)]
pub struct SourceObject {
    pub db: String,
    pub name: String,
    pub kind: ObjectKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    View,
    Trigger,
    Procedure,
    Function,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::View => "view",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Procedure => "procedure",
            ObjectKind::Function => "function",
        }
    }
}

/// What the preflight learned of the source.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub version: String,
    pub tables: Vec<SourceTable>,
    pub objects: Vec<SourceObject>,
    /// Databases holding migrated tables.
    pub databases: Vec<String>,
}

/// Checks the source (binlog settings and privileges as the capture needs
/// them, MariaDB's consistent-snapshot position, SELECT on every table) and
/// lists what `tables` selects. Nothing is written anywhere.
pub async fn preflight(conn: &mut Conn, tables: &[String]) -> Result<SourcePlan> {
    let info = drc_capture::checks::check_source(conn)
        .await
        .map_err(|e| Error::Preflight(format!("source: {e}")))?;
    if !info.is_mariadb {
        return Err(Error::Preflight(format!(
            "source is {} — drc migrate needs a MariaDB source (it takes each chunk's binlog \
             position from a consistent snapshot, which MySQL does not report); use `drc run` \
             with a capture for MySQL sources",
            info.version
        )));
    }
    let filter =
        Filter::new(tables, &[]).map_err(|e| Error::Preflight(format!("--tables: {e}")))?;
    let snap = drc_capture::schema::snapshot::load_snapshot(conn, None)
        .await
        .map_err(|e| error::source("read the table definitions", e))?;
    let mut selected: Vec<SourceTable> = Vec::new();
    for (schema, meta) in snap.tables {
        if SKIPPED_DATABASES.contains(&schema.db.as_str())
            || !filter.matches(&schema.db, &schema.table)
        {
            continue;
        }
        let copied = (0..schema.columns.len())
            .filter(|&i| !schema.columns[i].generated)
            .collect();
        selected.push(SourceTable {
            schema,
            meta,
            copied,
            est_rows: 0,
            est_bytes: 0,
            auto_increment: None,
            collations: Vec::new(),
        });
    }
    if selected.is_empty() {
        return Err(Error::Preflight(if tables.is_empty() {
            "the source has no table outside the system databases".into()
        } else {
            format!(
                "no source table matches --tables {}; list them as db.table globs (`shop.*`)",
                tables.join(",")
            )
        }));
    }
    type SizeRow = (String, String, Option<u64>, Option<u64>, Option<u64>);
    let rows: Vec<SizeRow> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH \
             FROM information_schema.TABLES WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
        )
        .await
        .map_err(|e| error::source("read table sizes", e))?;
    for (db, name, est, data, index) in rows {
        if let Some(t) = selected
            .iter_mut()
            .find(|t| t.db() == db && t.name() == name)
        {
            t.est_rows = est.unwrap_or(0);
            t.est_bytes = data.unwrap_or(0) + index.unwrap_or(0);
        }
    }
    let colls: Vec<(String, String, String, Option<String>)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS",
        )
        .await
        .map_err(|e| error::source("read column collations", e))?;
    for t in selected.iter_mut() {
        t.collations = vec![None; t.schema.columns.len()];
    }
    for (db, name, col, coll) in colls {
        if let Some(t) = selected
            .iter_mut()
            .find(|t| t.db() == db && t.name() == name)
        {
            if let Some(i) = t.schema.column_index(&col) {
                t.collations[i] = coll;
            }
        }
    }
    let autos: Vec<(String, String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE EXTRA LIKE '%auto_increment%'",
        )
        .await
        .map_err(|e| error::source("read AUTO_INCREMENT columns", e))?;
    for (db, name, col) in autos {
        if let Some(t) = selected
            .iter_mut()
            .find(|t| t.db() == db && t.name() == name)
        {
            t.auto_increment = Some(col);
        }
    }
    for t in &selected {
        let sql = format!("SELECT 1 FROM {} LIMIT 0", table_ref(t.db(), t.name()));
        conn.query_drop(sql).await.map_err(|e| {
            Error::Preflight(format!(
                "source: cannot read {}: {e}; GRANT SELECT ON {}.* TO the migration's user",
                t.full_name(),
                quote_ident(t.db())
            ))
        })?;
    }
    let databases: Vec<String> = selected
        .iter()
        .map(|t| t.db().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let objects = list_objects(conn, &databases).await?;
    Ok(SourcePlan {
        version: info.version,
        tables: selected,
        objects,
        databases,
    })
}

/// Views, triggers (of migrated tables) and routines of the databases.
async fn list_objects(conn: &mut Conn, dbs: &[String]) -> Result<Vec<SourceObject>> {
    let mut out = Vec::new();
    for db in dbs {
        let views: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
                (db,),
            )
            .await
            .map_err(|e| error::source("list views", e))?;
        out.extend(views.into_iter().map(|name| SourceObject {
            db: db.clone(),
            name,
            kind: ObjectKind::View,
        }));
        let triggers: Vec<String> = conn
            .exec(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? \
                 ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
                (db,),
            )
            .await
            .map_err(|e| error::source("list triggers", e))?;
        out.extend(triggers.into_iter().map(|name| SourceObject {
            db: db.clone(),
            name,
            kind: ObjectKind::Trigger,
        }));
        let routines: Vec<(String, String)> = conn
            .exec(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_NAME",
                (db,),
            )
            .await
            .map_err(|e| error::source("list stored routines", e))?;
        out.extend(routines.into_iter().map(|(name, kind)| SourceObject {
            db: db.clone(),
            name,
            kind: if kind.eq_ignore_ascii_case("FUNCTION") {
                ObjectKind::Function
            } else {
                ObjectKind::Procedure
            },
        }));
    }
    Ok(out)
}

/// The server's current binlog position (where the catch-up starts).
pub async fn head(conn: &mut Conn) -> Result<BinlogPos> {
    drc_capture::checks::master_position(conn)
        .await
        .map_err(|e| error::source("read the binlog position", e))
}

/// `SHOW CREATE <kind>` of `db.name` (of database `db` when `name` is
/// empty): column `col` of its result.
pub async fn show_create(
    conn: &mut Conn,
    kind: &str,
    db: &str,
    name: &str,
    col: usize,
) -> Result<String> {
    let object = if name.is_empty() {
        quote_ident(db)
    } else {
        table_ref(db, name)
    };
    let sql = format!("SHOW CREATE {kind} {object}");
    let row: Option<mysql_async::Row> = conn
        .query_first(&sql)
        .await
        .map_err(|e| error::source(sql.clone(), e))?;
    let value = row
        .and_then(|r| r.get_opt::<Vec<u8>, _>(col))
        .and_then(|v| v.ok())
        .ok_or_else(|| error::source(sql, "no definition returned (missing privilege?)"))?;
    String::from_utf8(value)
        .map_err(|_| error::source(format!("SHOW CREATE {kind} {db}.{name}"), "not UTF-8"))
}

/// `` `a``b` ``.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// `` `db`.`table` ``.
pub fn table_ref(db: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(table))
}
