//! A MariaDB/MySQL target: tables as the source defines them, loaded with
//! `LOAD DATA LOCAL INFILE` streamed from the source read, secondary indexes
//! and foreign keys added after the load, then views, routines and
//! (guarded) triggers.
//!
//! Loads run with `SET NAMES binary` on both ends, so every value travels as
//! the bytes the source stores, with no character set conversion; FLOAT is
//! read as DOUBLE text (the server's FLOAT text keeps only 6 digits) and
//! INET6/UUID go through a `SET` clause (their binary-charset input is the
//! 16-byte form). The load sessions turn off unique and foreign key checks
//! (the source's rows already satisfy them) and, where the user may, the
//! target's binlog (`sql_log_bin = 0`: the copied rows are not new changes
//! for a capture on the target).

use bytes::{BufMut, Bytes, BytesMut};
use drc_capture::position::BinlogPos;
use drc_capture::schema::ColumnDef;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use tokio::sync::mpsc;

use crate::error::{self, Error, Result};
use crate::plan::Chunk;
use crate::source::{quote_ident, table_ref, ObjectKind, SourceObject, SourceTable};
use crate::state::{ChunkState, State};
use drc_verify::Endpoint;

/// Session settings of every target connection.
const SESSION: &str = "SET time_zone = '+00:00', \
     sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', \
     foreign_key_checks = 0, unique_checks = 0, \
     SESSION net_read_timeout = 3600, SESSION net_write_timeout = 3600";

pub struct MariaTarget {
    /// DDL and bookkeeping (utf8mb4).
    pub ddl: Pool,
    /// Loads (binary).
    pub load: Pool,
}

fn pool(ep: &Endpoint, names: &str, size: usize) -> Result<Pool> {
    ep.maria_pool(
        vec![format!("SET NAMES {names}"), SESSION.to_owned()],
        size + 1,
    )
    .ok_or_else(|| Error::Preflight("bad target pool size".into()))
}

impl MariaTarget {
    pub async fn connect(ep: &Endpoint, parallel: usize) -> Result<Self> {
        let t = Self {
            ddl: pool(ep, "utf8mb4", 2)?,
            load: pool(ep, "binary", parallel)?,
        };
        let mut c =
            t.ddl.get_conn().await.map_err(|e| {
                Error::Preflight(format!("target {}: cannot connect: {e}", ep.addr()))
            })?;
        // The loads stream rows with LOAD DATA LOCAL INFILE, which the
        // server must allow (MySQL 8 refuses it by default).
        let local: Option<String> = c
            .query_first("SELECT @@GLOBAL.local_infile")
            .await
            .map_err(|e| Error::Preflight(format!("target {}: {e}", ep.addr())))?;
        if !matches!(local.as_deref(), Some("1" | "ON")) {
            return Err(Error::Preflight(format!(
                "target {}: local_infile is OFF, and the snapshot loads with LOAD DATA LOCAL \
                 INFILE: SET GLOBAL local_infile = 1 on the target (and local_infile = 1 in its \
                 config) for the migration",
                ep.addr()
            )));
        }
        Ok(t)
    }

    pub async fn conn(&self) -> Result<Conn> {
        self.ddl
            .get_conn()
            .await
            .map_err(|e| error::target("connect", e))
    }

    /// Source tables that already exist on the target.
    pub async fn existing(&self, tables: &[SourceTable]) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let rows: Vec<(String, String)> = c
            .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES")
            .await
            .map_err(|e| error::target("list tables", e))?;
        Ok(tables
            .iter()
            .filter(|t| rows.iter().any(|(d, n)| d == t.db() && n == t.name()))
            .map(SourceTable::full_name)
            .collect())
    }

    /// Creates the databases and tables (without the deferred parts), after
    /// dropping what a previous run left half made in the schema phase.
    pub async fn create_tables(
        &self,
        src: &mut Conn,
        tables: &[SourceTable],
        dbs: &[String],
    ) -> Result<Vec<Deferred>> {
        let mut c = self.conn().await?;
        for db in dbs {
            let create = crate::source::show_create(src, "DATABASE", db, "", 1)
                .await
                .unwrap_or_else(|_| format!("CREATE DATABASE {}", quote_ident(db)));
            let create = create.replacen("CREATE DATABASE", "CREATE DATABASE IF NOT EXISTS", 1);
            let create = create.replace("IF NOT EXISTS /*!32312 IF NOT EXISTS*/", "IF NOT EXISTS");
            c.query_drop(&create)
                .await
                .map_err(|e| error::target(format!("create database {db}"), e))?;
        }
        let mut deferred = Vec::new();
        for t in tables {
            let show = crate::source::show_create(src, "TABLE", t.db(), t.name(), 1).await?;
            let (create, d) = split_create(t, &show)?;
            let name = table_ref(t.db(), t.name());
            c.query_drop(format!("DROP TABLE IF EXISTS {name}"))
                .await
                .map_err(|e| error::target(format!("drop the half-made {name}"), e))?;
            c.query_drop(&create)
                .await
                .map_err(|e| error::target(format!("create {name}"), e))?;
            deferred.push(d);
        }
        Ok(deferred)
    }

    /// Loads one chunk: the rows arriving on `rx` (LOAD DATA format, see
    /// [`encode_row`]), and its state row, in one transaction.
    pub async fn load_chunk(
        &self,
        t: &SourceTable,
        chunk: &Chunk,
        snap: &BinlogPos,
        rx: mpsc::Receiver<Bytes>,
        rows_sent: tokio::sync::oneshot::Receiver<crate::plan::ChunkEnd>,
    ) -> Result<u64> {
        let mut c = self
            .load
            .get_conn()
            .await
            .map_err(|e| error::target("connect", e))?;
        // Not binlogged where the user may say so; ignored otherwise.
        let _ = c.query_drop("SET SESSION sql_log_bin = 0").await;
        let name = t.full_name();
        let what = |w: &str| format!("{w} chunk {} of {name}", chunk.seq);
        c.query_drop("START TRANSACTION")
            .await
            .map_err(|e| error::target(what("begin"), e))?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream = futures::StreamExt::map(stream, Ok::<Bytes, std::io::Error>);
        c.set_infile_handler(async move { Ok(Box::pin(stream) as mysql_async::InfileData) });
        c.query_drop(load_statement(t))
            .await
            .map_err(|e| error::target(what("load"), e))?;
        let loaded = c.affected_rows();
        let end = rows_sent
            .await
            .map_err(|_| error::source(what("read"), "the read stopped"))?;
        let sent = end.rows;
        if loaded != sent {
            return Err(error::target(
                what("load"),
                format!("{sent} rows sent but {loaded} loaded; check the target's error log and warnings"),
            ));
        }
        let mut st = ChunkState::of(t, chunk, loaded, snap);
        st.hi_key = end.last_key.clone();
        crate::state::maria_chunk_done(&mut c, &st).await?;
        if let (true, Some(next)) = (end.more, &end.last_key) {
            crate::state::maria_chunk_next(&mut c, &st, next).await?;
        }
        c.query_drop("COMMIT")
            .await
            .map_err(|e| error::target(what("commit"), e))?;
        Ok(loaded)
    }

    /// Adds the deferred indexes of one table (those it does not have yet:
    /// a rerun after a crash midway adds only the rest). Tables are finished
    /// one by one as their loads end, while other tables still load.
    pub async fn finish_table(&self, d: &Deferred) -> Result<()> {
        if d.indexes.is_empty() {
            return Ok(());
        }
        let mut c = self
            .ddl
            .get_conn()
            .await
            .map_err(|e| error::target("connect", e))?;
        let (db, table) = &d.name;
        let have: Vec<String> = c
            .exec(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
            .map_err(|e| error::target(format!("read the indexes of {}", d.table), e))?;
        let todo: Vec<String> = d
            .indexes
            .iter()
            .filter(|i| {
                backquoted_name(i).is_none_or(|n| !have.iter().any(|h| h.eq_ignore_ascii_case(&n)))
            })
            .map(|i| format!("ADD {i}"))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let sql = format!("ALTER TABLE {} {}", d.table, todo.join(", "));
        c.query_drop(&sql)
            .await
            .map_err(|e| error::target(format!("add the indexes of {}", d.table), e))
    }

    /// Adds the deferred foreign keys (after every table is loaded and
    /// indexed), skipping those a previous run added.
    pub async fn add_foreign_keys(&self, deferred: &[Deferred]) -> Result<()> {
        let mut c = self.conn().await?;
        for d in deferred.iter().filter(|d| !d.foreign_keys.is_empty()) {
            let (db, table) = &d.name;
            let have: Vec<String> = c
                .exec(
                    "SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_TYPE = 'FOREIGN KEY'",
                    (db, table),
                )
                .await
                .map_err(|e| error::target(format!("read the foreign keys of {}", d.table), e))?;
            let todo: Vec<String> = d
                .foreign_keys
                .iter()
                .filter(|f| {
                    backquoted_name(f)
                        .is_none_or(|n| !have.iter().any(|h| h.eq_ignore_ascii_case(&n)))
                })
                .map(|f| format!("ADD {f}"))
                .collect();
            if todo.is_empty() {
                continue;
            }
            let sql = format!("ALTER TABLE {} {}", d.table, todo.join(", "));
            c.query_drop(&sql)
                .await
                .map_err(|e| error::target(format!("add the foreign keys of {}", d.table), e))?;
        }
        Ok(())
    }

    /// Creates views, routines and triggers (guarded, so they do not fire
    /// again for the rows the catch-up applies). Views are retried until
    /// the ones they depend on exist.
    pub async fn create_objects(
        &self,
        src: &mut Conn,
        objects: &[SourceObject],
    ) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let mut created = Vec::new();
        let mut pending: Vec<(String, String, String)> = Vec::new();
        for o in objects {
            let (kind, col) = match o.kind {
                ObjectKind::View => ("VIEW", 1),
                ObjectKind::Trigger => ("TRIGGER", 2),
                ObjectKind::Procedure => ("PROCEDURE", 2),
                ObjectKind::Function => ("FUNCTION", 2),
            };
            let show = crate::source::show_create(src, kind, &o.db, &o.name, col).await?;
            let mode_col = if o.kind == ObjectKind::View {
                None
            } else {
                Some(1)
            };
            let sql_mode = match mode_col {
                Some(i) => crate::source::show_create(src, kind, &o.db, &o.name, i)
                    .await
                    .unwrap_or_default(),
                None => String::new(),
            };
            let mut stmt = strip_definer(&show);
            if o.kind == ObjectKind::Trigger {
                let action: Option<String> = src
                    .exec_first(
                        "SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?",
                        (&o.db, &o.name),
                    )
                    .await
                    .map_err(|e| error::source(format!("read trigger {}.{}", o.db, o.name), e))?;
                if let Some(g) = action
                    .as_deref()
                    .and_then(|a| drc_apply::sink::mysql::meta::guarded_statement(&stmt, a, false))
                {
                    stmt = g;
                }
            }
            pending.push((
                format!("{} {}.{}", o.kind.as_str(), o.db, o.name),
                o.db.clone(),
                format!("{sql_mode}\u{0}{stmt}"),
            ));
        }
        // Views may name views created later: retry what failed while
        // something succeeds.
        loop {
            let mut failed = Vec::new();
            let mut last_err = None;
            let before = pending.len();
            for (label, db, packed) in pending {
                let (mode, stmt) = packed.split_once('\u{0}').unwrap_or(("", packed.as_str()));
                let _ = c
                    .query_drop(format!(
                        "SET SESSION sql_mode = '{}'",
                        mode.replace('\'', "")
                    ))
                    .await;
                let _ = c.query_drop(format!("USE {}", quote_ident(&db))).await;
                match c.query_drop(stmt).await {
                    Ok(()) => created.push(label),
                    Err(e) => {
                        last_err = Some(format!("{label}: {e}"));
                        failed.push((label, db, packed.clone()));
                    }
                }
            }
            let _ = c.query_drop(SESSION).await;
            if failed.is_empty() {
                break;
            }
            if failed.len() == before {
                return Err(error::target(
                    "create views, routines and triggers",
                    last_err.unwrap_or_default(),
                ));
            }
            pending = failed;
        }
        Ok(created)
    }

    pub async fn state(&self) -> Result<Option<State>> {
        let mut c = self.conn().await?;
        crate::state::maria_read(&mut c).await
    }
}

/// What is added to a table after its load.
#[derive(Debug, Clone, Default)]
pub struct Deferred {
    /// `` `db`.`t` ``.
    pub table: String,
    /// (database, table).
    pub name: (String, String),
    /// Index definitions as `SHOW CREATE TABLE` prints them (`KEY ...`).
    pub indexes: Vec<String>,
    /// `CONSTRAINT ... FOREIGN KEY ...`.
    pub foreign_keys: Vec<String>,
}

/// The `CREATE TABLE` to run before the load (primary key kept, other
/// indexes and foreign keys deferred), from `SHOW CREATE TABLE`.
pub fn split_create(t: &SourceTable, show: &str) -> Result<(String, Deferred)> {
    let mut lines = show.lines();
    let head = lines.next().unwrap_or_default();
    if !head.trim_end().ends_with('(') {
        return Err(error::source(
            format!("read the definition of {}", t.full_name()),
            "unexpected SHOW CREATE TABLE layout",
        ));
    }
    let mut body = Vec::new();
    let mut tail = String::new();
    let mut d = Deferred {
        table: table_ref(t.db(), t.name()),
        name: (t.db().to_owned(), t.name().to_owned()),
        ..Default::default()
    };
    for line in lines {
        if line.starts_with(')') {
            tail = line.to_owned();
            continue;
        }
        let item = line.trim().trim_end_matches(',').to_owned();
        let upper = item.to_ascii_uppercase();
        if upper.starts_with("KEY ")
            || upper.starts_with("UNIQUE KEY ")
            || upper.starts_with("FULLTEXT KEY ")
            || upper.starts_with("SPATIAL KEY ")
            || upper.starts_with("VECTOR KEY ")
        {
            d.indexes.push(item);
        } else if upper.starts_with("CONSTRAINT ") && upper.contains(" FOREIGN KEY ") {
            d.foreign_keys.push(item);
        } else if !tail.is_empty() {
            // Partitioning clauses and the like after the closing line.
            tail.push('\n');
            tail.push_str(line);
        } else {
            body.push(format!("  {item}"));
        }
    }
    let create = format!("CREATE TABLE {} (\n{}\n{tail}", d.table, body.join(",\n"));
    Ok((create, d))
}

/// The first backquoted name of a `SHOW CREATE TABLE` item (`` KEY `k_1` (...) ``
/// → `k_1`).
fn backquoted_name(item: &str) -> Option<String> {
    let start = item.find('`')? + 1;
    let mut out = String::new();
    let mut chars = item[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            if chars.peek() == Some(&'`') {
                chars.next();
                out.push('`');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// `CREATE DEFINER=... VIEW` → `CREATE VIEW` (the definer may not exist on
/// the target; objects are owned by the migration's user there).
pub fn strip_definer(create: &str) -> String {
    let Some(start) = create.find("DEFINER=") else {
        return create.to_owned();
    };
    let rest = &create[start + "DEFINER=".len()..];
    // DEFINER=`user`@`host` followed by a space.
    let mut end = 0;
    let mut in_quote = false;
    for (i, ch) in rest.char_indices() {
        match ch {
            '`' => in_quote = !in_quote,
            ' ' if !in_quote => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    if end == 0 {
        return create.to_owned();
    }
    format!("{}{}", &create[..start], rest[end..].trim_start())
}

/// Whether a column's binary-charset input is not its stored bytes, so the
/// load must convert it from text (`SET col = CONVERT(@v USING utf8mb4)`).
fn via_text(c: &ColumnDef) -> bool {
    matches!(c.data_type.as_str(), "inet6" | "inet4" | "uuid")
}

/// The source `SELECT` list for a MariaDB target.
pub fn select_list(t: &SourceTable) -> String {
    t.copied_columns()
        .map(|c| {
            let q = quote_ident(&c.name);
            if c.data_type == "float" {
                // The text form of FLOAT has 6 digits; DOUBLE's round-trips.
                format!("CAST({q} AS DOUBLE)")
            } else {
                q
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_statement(t: &SourceTable) -> String {
    let mut cols = Vec::new();
    let mut sets = Vec::new();
    for (i, c) in t.copied_columns().enumerate() {
        if via_text(c) {
            cols.push(format!("@v{i}"));
            sets.push(format!(
                "{} = CONVERT(@v{i} USING utf8mb4)",
                quote_ident(&c.name)
            ));
        } else {
            cols.push(quote_ident(&c.name));
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'drc-migrate' INTO TABLE {} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        table_ref(t.db(), t.name()),
        cols.join(", ")
    );
    if !sets.is_empty() {
        sql.push_str(" SET ");
        sql.push_str(&sets.join(", "));
    }
    sql
}

/// Appends one row in `LOAD DATA`'s default escaped format.
pub fn encode_row(out: &mut BytesMut, row: Vec<mysql_async::Value>) {
    for (i, v) in row.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b'\t');
        }
        match v {
            mysql_async::Value::NULL => out.put_slice(b"\\N"),
            mysql_async::Value::Bytes(b) => escape(out, &b),
            other => escape(out, other.as_sql(true).trim_matches('\'').as_bytes()),
        }
    }
    out.put_u8(b'\n');
}

fn escape(out: &mut BytesMut, b: &[u8]) {
    let mut start = 0;
    for (i, &ch) in b.iter().enumerate() {
        let esc = match ch {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            0 => b'0',
            _ => continue,
        };
        out.put_slice(&b[start..i]);
        out.put_u8(b'\\');
        out.put_u8(esc);
        start = i + 1;
    }
    out.put_slice(&b[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_load_data_reads_specially() {
        let mut out = BytesMut::new();
        encode_row(
            &mut out,
            vec![
                mysql_async::Value::Bytes(b"a\tb\\c\nd\0".to_vec()),
                mysql_async::Value::NULL,
                mysql_async::Value::Bytes(b"\\N".to_vec()),
            ],
        );
        assert_eq!(&out[..], b"a\\tb\\\\c\\nd\\0\t\\N\t\\\\N\n");
    }

    #[test]
    fn names_of_items() {
        assert_eq!(backquoted_name("KEY `k_1` (`k`)").as_deref(), Some("k_1"));
        assert_eq!(
            backquoted_name("UNIQUE KEY `a``b` (`x`)").as_deref(),
            Some("a`b")
        );
        assert_eq!(backquoted_name("KEY k (x)"), None);
    }

    #[test]
    fn strips_the_definer() {
        assert_eq!(
            strip_definer("CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1"),
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(
            strip_definer("CREATE VIEW v AS select 1"),
            "CREATE VIEW v AS select 1"
        );
    }
}
