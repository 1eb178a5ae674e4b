//! The MySQL/MariaDB sink: applies a stream to a MySQL or MariaDB server,
//! exactly once.
//!
//! # One target transaction per batch
//!
//! [`MySqlSink::apply`] opens one target transaction, locks the stream's row
//! of `drc.checkpoints` (`SELECT ... FOR UPDATE`), skips every transaction
//! at or below the stored offset (so a batch that is delivered again is
//! harmless, and two appliers of one stream take turns), applies the rest in
//! source commit order, writes `batch.last_offset` and the last transaction's
//! source position into `drc.checkpoints`, and commits. A crash or a lost
//! connection at any moment leaves either the whole batch with its
//! checkpoint or nothing of it. Committed means durable as far as the
//! target's settings make commits durable (`innodb_flush_log_at_trx_commit=1`).
//!
//! # DDL
//!
//! DDL commits implicitly in MySQL and MariaDB, so a batch is split at each
//! DDL: the open transaction is committed with a checkpoint at the offset
//! before the DDL, the DDL runs (after `USE` of its default database), and
//! its own checkpoint follows in a small transaction of its own. A crash
//! between the DDL and that checkpoint replays the DDL: when the DDL is the
//! first transaction after the stored checkpoint, the errors that mean "done
//! already" (database, table, column or key exists or is gone:
//! 1007, 1008, 1050, 1051, 1060, 1061, 1091) are taken as applied, with a
//! warning. Anywhere else they stop the stream like any failed DDL.
//!
//! # Rows
//!
//! - Runs of INSERTs into one table with the same columns become multi-row
//!   `INSERT` statements (bounded by [`MAX_ROWS_PER_INSERT`] and the
//!   target's `max_allowed_packet`).
//! - UPDATE sets every column of the after image and DELETE removes the row,
//!   both matched by the primary key of the before image (or, for tables
//!   without one, every comparable column of the before image with NULL-safe
//!   `<=>`, `LIMIT 1`).
//! - Generated columns (known from the target's `information_schema`,
//!   cached per table until the next DDL) are never written or matched.
//! - Values are exact literals (see [`sql`]); the session uses
//!   `sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'` (a zero in
//!   an AUTO_INCREMENT column stays zero, zero dates are allowed) and
//!   `time_zone = '+00:00'` (TIMESTAMP values are UTC seconds).
//! - Foreign key checks stay on: applying in source commit order satisfies
//!   them.
//! - Changes of the `drc` schema in a stream are skipped: they are another
//!   region's bookkeeping.
//!
//! Conflicts (a missing row, a taken key) follow the configured policy; see
//! [`conflict`].
//!
//! # The target's own binlog
//!
//! Applied rows go to the target's binlog (the session's `sql_log_bin` is
//! left on, which needs no privilege), with the checkpoint row in the same
//! transaction: that row names the origin, so the target's capture can tell
//! applied transactions from local ones (the design's "Active-active"). DDL
//! is not marked that way, as its checkpoint commits separately.
//!
//! # Known limits
//!
//! - Triggers on the target fire for applied rows. A target that replicates
//!   into tables its triggers also write gets those writes twice; drop or
//!   guard such triggers on the target (MySQL and MariaDB offer no
//!   per-session switch outside their own replication threads).
//! - An UPDATE that changes unique keys of several rows in one source
//!   statement (e.g. swapping two values) can hit a duplicate key when
//!   applied row by row.
//!
//! # Errors
//!
//! A lost connection, a deadlock, a lock wait timeout or a read-only target
//! is [`ApplyError::Transient`]: the batch was rolled back and the applier
//! retries from the checkpoint. A change the target refuses is
//! [`ApplyError::Definite`] with its offset. Error messages name the
//! statement kind, table and server error code, never row values.

pub mod checkpoint;
pub mod config;
pub mod conflict;
pub mod sql;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use drc_proto::v1 as pb;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use pb::value::Kind;

use crate::error::{ApplyError, Result};
use crate::sink::{Batch, Checkpoint, Sink, SinkGuarantees};

pub use config::MySqlSinkConfig;
use conflict::ConflictRecord;
pub use conflict::{ConflictKind, ConflictPolicy};
use sql::{ColVal, Flavor};

/// The sink's name in logs and errors.
pub const SINK_NAME: &str = "mysql";

/// Most rows in one multi-row INSERT.
pub const MAX_ROWS_PER_INSERT: usize = 1000;

/// Most bytes of one multi-row INSERT (also kept under the target's
/// `max_allowed_packet`); a single row larger than this is sent alone.
pub const MAX_STATEMENT_BYTES: usize = 8 << 20;

/// Bytes kept free under `max_allowed_packet` for the packet header.
const PACKET_MARGIN: usize = 4096;

/// Session settings of every connection of the sink.
const SESSION_SETUP: [&str; 3] = [
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION time_zone = '+00:00'",
];

/// `ER_DUP_ENTRY`.
const ER_DUP_ENTRY: u16 = 1062;

/// `ER_BAD_DB_ERROR`: unknown database.
const ER_BAD_DB_ERROR: u16 = 1049;

/// DDL errors meaning the DDL has been applied already: database exists
/// (1007), database does not exist (1008), table exists (1050), unknown table
/// (1051), duplicate column (1060), duplicate key name (1061), cannot drop
/// column or key (1091).
const DDL_ALREADY_APPLIED: [u16; 7] = [1007, 1008, 1050, 1051, 1060, 1061, 1091];

/// Server errors worth a retry: too many connections (1040), shutdown in
/// progress (1053), lock wait timeout (1205), deadlock (1213), read-only
/// (1290, 1836), query interrupted (1317), connection killed (1927), server
/// gone or lost (2006, 2013), idle disconnect (4031).
const TRANSIENT_CODES: [u16; 11] = [
    1040, 1053, 1205, 1213, 1290, 1836, 1317, 1927, 2006, 2013, 4031,
];

/// Applies streams to a MySQL or MariaDB server; see the module docs.
pub struct MySqlSink {
    config: MySqlSinkConfig,
    opts: Opts,
    /// Taken out while a call uses it: a call that is cancelled midway drops
    /// the connection, and the server rolls back its open transaction.
    conn: Option<Conn>,
    flavor: Flavor,
    max_statement_bytes: usize,
    /// Generated columns (lowercase names) per (schema, table).
    generated: HashMap<(String, String), Arc<HashSet<String>>>,
}

impl std::fmt::Debug for MySqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("MySqlSink")
            .field("flavor", &self.flavor)
            .field("conflict_policy", &self.config.conflict_policy)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a change comes from, for errors and conflict records.
#[derive(Debug, Clone, Copy)]
struct Ctx<'a> {
    stream: &'a str,
    offset: u64,
    gtid: &'a str,
}

impl MySqlSink {
    /// Connects to the target, sets up the session and creates the `drc`
    /// schema and tables if they are missing.
    pub async fn connect(config: MySqlSinkConfig) -> Result<Self> {
        config.validate()?;
        let opts = Opts::from_url(&config.url)
            .map_err(|e| ApplyError::Config(format!("mysql sink: bad `url`: {e}")))?;
        // Found rows, not changed rows: an UPDATE that matches a row whose
        // values are already the after image is not a missing row.
        let opts: Opts = OptsBuilder::from_opts(opts).client_found_rows(true).into();
        let mut sink = Self {
            config,
            opts,
            conn: None,
            flavor: Flavor::MySql,
            max_statement_bytes: MAX_STATEMENT_BYTES,
            generated: HashMap::new(),
        };
        let conn = sink.open().await?;
        sink.conn = Some(conn);
        Ok(sink)
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &MySqlSinkConfig {
        &self.config
    }

    /// Whether the target is MariaDB (else MySQL).
    pub fn is_mariadb(&self) -> bool {
        self.flavor == Flavor::MariaDb
    }

    async fn open(&mut self) -> Result<Conn> {
        let mut conn = Conn::new(self.opts.clone())
            .await
            .map_err(|e| classify(e, None, "connect"))?;
        for stmt in SESSION_SETUP {
            conn.query_drop(stmt)
                .await
                .map_err(|e| classify(e, None, "session setup"))?;
        }
        let info: Option<(String, u64, Option<i64>)> = conn
            .query_first("SELECT VERSION(), @@max_allowed_packet, @@session.sql_log_bin")
            .await
            .map_err(|e| classify(e, None, "read server settings"))?;
        if let Some((version, max_packet, log_bin)) = info {
            self.flavor = if version.to_ascii_lowercase().contains("mariadb") {
                Flavor::MariaDb
            } else {
                Flavor::MySql
            };
            let max_packet = usize::try_from(max_packet).unwrap_or(usize::MAX);
            self.max_statement_bytes =
                MAX_STATEMENT_BYTES.min(max_packet.saturating_sub(PACKET_MARGIN));
            if log_bin == Some(0) {
                tracing::warn!(
                    "mysql sink: sql_log_bin is off for this user's sessions: applied \
                     changes will not reach the target's binlog or its captures"
                );
            }
        }
        checkpoint::ensure_schema(&mut conn)
            .await
            .map_err(|e| classify(e, None, "create the drc schema"))?;
        Ok(conn)
    }

    async fn take_conn(&mut self) -> Result<Conn> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => self.open().await,
        }
    }

    /// Ends a failed call: rolls back and keeps the connection if it still
    /// works, else drops it (the next call reconnects).
    async fn recover(&mut self, mut conn: Conn) {
        if conn.query_drop("ROLLBACK").await.is_ok() {
            self.conn = Some(conn);
        }
    }

    async fn apply_batch(&mut self, conn: &mut Conn, batch: &Batch) -> Result<()> {
        if batch.offsets.len() != batch.transactions.len() {
            return Err(ApplyError::Definite {
                sink: SINK_NAME.into(),
                offset: batch.offsets.first().copied().unwrap_or(batch.last_offset),
                message: format!(
                    "malformed batch: {} offsets for {} transactions",
                    batch.offsets.len(),
                    batch.transactions.len()
                ),
            });
        }
        let stream = batch.stream.as_str();
        let origin = self
            .config
            .origin
            .clone()
            .unwrap_or_else(|| stream.to_owned());
        let bookkeeping = |e| classify(e, None, "drc.checkpoints");

        begin(conn).await?;
        let stored = checkpoint::read(conn, stream, true)
            .await
            .map_err(bookkeeping)?
            .offset;
        if batch.last_offset <= stored {
            commit(conn).await?;
            return Ok(());
        }
        let mut last_pos: Option<&pb::SourcePosition> = None;
        // Whether the open target transaction holds applied transactions.
        let mut open_work = false;
        // Whether a transaction of this batch has been applied: a DDL before
        // any may be the replay of one applied just before a crash.
        let mut applied_any = false;
        for (&offset, txn) in batch.offsets.iter().zip(&batch.transactions) {
            if offset <= stored {
                continue;
            }
            let ctx = Ctx {
                stream,
                offset,
                gtid: txn.position.as_ref().map_or("", |p| p.gtid.as_str()),
            };
            let ddl = txn.ddl.as_ref().filter(|d| !d.statement.trim().is_empty());
            if let Some(ddl) = ddl {
                if open_work {
                    checkpoint::write(conn, stream, offset - 1, last_pos, &origin)
                        .await
                        .map_err(bookkeeping)?;
                }
                commit(conn).await?;
                self.exec_ddl(conn, ddl, offset, !applied_any).await?;
                self.generated.clear();
                begin(conn).await?;
                self.apply_changes(conn, ctx, &txn.changes).await?;
                last_pos = txn.position.as_ref().or(last_pos);
                checkpoint::write(conn, stream, offset, last_pos, &origin)
                    .await
                    .map_err(bookkeeping)?;
                commit(conn).await?;
                begin(conn).await?;
                open_work = false;
            } else {
                self.apply_changes(conn, ctx, &txn.changes).await?;
                last_pos = txn.position.as_ref().or(last_pos);
                open_work = true;
            }
            applied_any = true;
        }
        checkpoint::write(conn, stream, batch.last_offset, last_pos, &origin)
            .await
            .map_err(bookkeeping)?;
        commit(conn).await
    }

    async fn exec_ddl(
        &mut self,
        conn: &mut Conn,
        ddl: &pb::Ddl,
        offset: u64,
        may_be_replay: bool,
    ) -> Result<()> {
        let shown = abbreviate(&ddl.statement);
        if !ddl.database.is_empty() {
            let mut use_db = String::from("USE ");
            sql::push_ident(&mut use_db, &ddl.database);
            match conn.query_drop(use_db).await {
                Ok(()) => {}
                // The server names the database a CREATE/DROP DATABASE is
                // about as its default database; such a statement (and any
                // that ran on the source without it existing) does not
                // depend on it.
                Err(mysql_async::Error::Server(e)) if e.code == ER_BAD_DB_ERROR => {}
                Err(e) => {
                    return Err(classify(
                        e,
                        Some(offset),
                        &format!("USE {} for DDL {shown}", ddl.database),
                    ))
                }
            }
        }
        match conn.query_drop(ddl.statement.as_str()).await {
            Ok(()) => Ok(()),
            Err(mysql_async::Error::Server(e))
                if may_be_replay && DDL_ALREADY_APPLIED.contains(&e.code) =>
            {
                tracing::warn!(
                    offset,
                    code = e.code,
                    "mysql sink: DDL already applied (replayed after a stop between the DDL \
                     and its checkpoint): {shown}"
                );
                Ok(())
            }
            Err(e) => Err(classify_with_message(
                e,
                Some(offset),
                &format!("DDL {shown}"),
            )),
        }
    }

    async fn generated_columns(
        &mut self,
        conn: &mut Conn,
        schema: &str,
        table: &str,
    ) -> Result<Arc<HashSet<String>>> {
        let key = (schema.to_owned(), table.to_owned());
        if let Some(set) = self.generated.get(&key) {
            return Ok(Arc::clone(set));
        }
        let names: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND IFNULL(GENERATION_EXPRESSION, '') <> ''",
                (schema, table),
            )
            .await
            .map_err(|e| classify(e, None, "read generated columns"))?;
        let set = Arc::new(
            names
                .into_iter()
                .map(|n| n.to_lowercase())
                .collect::<HashSet<_>>(),
        );
        self.generated.insert(key, Arc::clone(&set));
        Ok(set)
    }

    async fn apply_changes(
        &mut self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        changes: &[pb::RowChange],
    ) -> Result<()> {
        let mut i = 0;
        while i < changes.len() {
            let c = &changes[i];
            if c.schema.eq_ignore_ascii_case(checkpoint::SCHEMA) {
                i += 1;
                continue;
            }
            match c.op() {
                pb::Op::Insert => {
                    let mut end = i + 1;
                    while end < changes.len() && same_insert_shape(c, &changes[end]) {
                        end += 1;
                    }
                    self.insert_run(conn, ctx, &changes[i..end]).await?;
                    i = end;
                }
                pb::Op::Update => {
                    self.update(conn, ctx, c).await?;
                    i += 1;
                }
                pb::Op::Delete => {
                    self.delete(conn, ctx, c).await?;
                    i += 1;
                }
                pb::Op::Unspecified => {
                    return Err(definite(
                        ctx,
                        format!("row change on {}.{} has no operation", c.schema, c.table),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn insert_run(
        &mut self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        run: &[pb::RowChange],
    ) -> Result<()> {
        let Some(first) = run.first() else {
            return Ok(());
        };
        let table = sql::table_ref(&first.schema, &first.table);
        let generated = self
            .generated_columns(conn, &first.schema, &first.table)
            .await?;
        let after = image(ctx, first, first.after.as_ref(), "after")?;
        let cols = written_columns(ctx, first, after, &generated)?;
        let names: Vec<&str> = cols
            .iter()
            .map(|&i| first.columns[i].name.as_str())
            .collect();
        let head = sql::insert_head(&table, &names);
        let mut start = 0;
        while start < run.len() {
            let mut stmt = head.clone();
            let mut end = start;
            let mut row = String::new();
            while end < run.len() && end - start < MAX_ROWS_PER_INSERT {
                row.clear();
                let after = image(ctx, &run[end], run[end].after.as_ref(), "after")?;
                sql::push_row(
                    &mut row,
                    cols.iter().map(|&i| value_kind(after, i)),
                    self.flavor,
                )
                .map_err(|m| definite(ctx, format!("insert into {table}: {m}")))?;
                if end > start && stmt.len() + row.len() + 2 > self.max_statement_bytes {
                    break;
                }
                if end > start {
                    stmt.push_str(", ");
                }
                stmt.push_str(&row);
                end += 1;
            }
            match conn.query_drop(stmt).await {
                Ok(()) => {}
                Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                    if self.config.conflict_policy == ConflictPolicy::Fail {
                        return Err(conflict_error(ctx, first, ConflictKind::Duplicate));
                    }
                    // The statement was rolled back as a whole: find the
                    // taken keys row by row.
                    for change in &run[start..end] {
                        self.insert_one(conn, ctx, change, &head, &cols).await?;
                    }
                }
                Err(e) => return Err(row_error(e, ctx, "insert into", &table)),
            }
            start = end;
        }
        Ok(())
    }

    async fn insert_one(
        &mut self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        change: &pb::RowChange,
        head: &str,
        cols: &[usize],
    ) -> Result<()> {
        let table = sql::table_ref(&change.schema, &change.table);
        let after = image(ctx, change, change.after.as_ref(), "after")?;
        let mut stmt = head.to_owned();
        sql::push_row(
            &mut stmt,
            cols.iter().map(|&i| value_kind(after, i)),
            self.flavor,
        )
        .map_err(|m| definite(ctx, format!("insert into {table}: {m}")))?;
        match conn.query_drop(stmt).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                self.conflict(conn, ctx, change, ConflictKind::Duplicate)
                    .await
            }
            Err(e) => Err(row_error(e, ctx, "insert into", &table)),
        }
    }

    async fn update(&mut self, conn: &mut Conn, ctx: Ctx<'_>, c: &pb::RowChange) -> Result<()> {
        let table = sql::table_ref(&c.schema, &c.table);
        let generated = self.generated_columns(conn, &c.schema, &c.table).await?;
        let before = image(ctx, c, c.before.as_ref(), "before")?;
        let after = image(ctx, c, c.after.as_ref(), "after")?;
        let set: Vec<ColVal<'_>> = written_columns(ctx, c, after, &generated)?
            .into_iter()
            .map(|i| ColVal {
                name: &c.columns[i].name,
                kind: value_kind(after, i),
            })
            .collect();
        let (key, limit_one) = match_key(ctx, c, before, &generated)?;
        let stmt = sql::update(&table, &set, &key, limit_one, self.flavor)
            .map_err(|m| definite(ctx, format!("update {table}: {m}")))?;
        match conn.query_drop(stmt).await {
            Ok(()) if conn.affected_rows() == 0 => {
                self.conflict(conn, ctx, c, ConflictKind::Missing).await
            }
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(ER_DUP_ENTRY) => {
                self.conflict(conn, ctx, c, ConflictKind::Duplicate).await
            }
            Err(e) => Err(row_error(e, ctx, "update", &table)),
        }
    }

    async fn delete(&mut self, conn: &mut Conn, ctx: Ctx<'_>, c: &pb::RowChange) -> Result<()> {
        let table = sql::table_ref(&c.schema, &c.table);
        let generated = self.generated_columns(conn, &c.schema, &c.table).await?;
        let before = image(ctx, c, c.before.as_ref(), "before")?;
        let (key, limit_one) = match_key(ctx, c, before, &generated)?;
        let stmt = sql::delete(&table, &key, limit_one, self.flavor)
            .map_err(|m| definite(ctx, format!("delete from {table}: {m}")))?;
        match conn.query_drop(stmt).await {
            Ok(()) if conn.affected_rows() == 0 => {
                self.conflict(conn, ctx, c, ConflictKind::Missing).await
            }
            Ok(()) => Ok(()),
            Err(e) => Err(row_error(e, ctx, "delete from", &table)),
        }
    }

    /// Handles a conflict under the configured policy (see [`conflict`]).
    async fn conflict(
        &mut self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        c: &pb::RowChange,
        kind: ConflictKind,
    ) -> Result<()> {
        let policy = self.config.conflict_policy;
        if policy == ConflictPolicy::Fail {
            return Err(conflict_error(ctx, c, kind));
        }
        let table = sql::table_ref(&c.schema, &c.table);
        let target_image = if kind == ConflictKind::Duplicate {
            self.target_image(conn, ctx, c).await?
        } else {
            None
        };
        let mut message = format!(
            "{} {} on {}.{}",
            conflict::op_name(c.op()),
            kind.as_str(),
            c.schema,
            c.table
        );
        if policy == ConflictPolicy::Overwrite {
            match (c.op(), kind) {
                (pb::Op::Insert, ConflictKind::Duplicate)
                | (pb::Op::Update, ConflictKind::Missing) => {
                    self.upsert_after(conn, ctx, c).await?;
                    message.push_str(": after image written");
                }
                (pb::Op::Update, ConflictKind::Duplicate) => {
                    message.push_str(": update skipped (another row holds the key)");
                }
                _ => message.push_str(": nothing to do"),
            }
        } else {
            message.push_str(": skipped");
        }
        tracing::warn!(offset = ctx.offset, table = %table, kind = kind.as_str(), policy = policy.as_str(), "mysql sink: conflict");
        let rec = ConflictRecord {
            stream: ctx.stream,
            offset: ctx.offset,
            gtid: ctx.gtid,
            change: c,
            kind,
            policy,
            target_image,
            message,
        };
        conflict::record(conn, &rec)
            .await
            .map_err(|e| classify(e, Some(ctx.offset), "record a conflict in drc.conflicts"))
    }

    /// The target row holding the after image's primary key, if the table
    /// has one and the row exists.
    async fn target_image(
        &mut self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        c: &pb::RowChange,
    ) -> Result<Option<serde_json::Value>> {
        let Some(after) = c.after.as_ref() else {
            return Ok(None);
        };
        if c.primary_key.is_empty() {
            return Ok(None);
        }
        let mut key = Vec::with_capacity(c.primary_key.len());
        for &i in &c.primary_key {
            let i = i as usize;
            let (Some(col), Some(kind)) = (
                c.columns.get(i),
                after.values.get(i).and_then(|v| v.kind.as_ref()),
            ) else {
                return Ok(None);
            };
            key.push(ColVal {
                name: &col.name,
                kind,
            });
        }
        let table = sql::table_ref(&c.schema, &c.table);
        let stmt = sql::select_one(&table, &key, self.flavor)
            .map_err(|m| definite(ctx, format!("select from {table}: {m}")))?;
        let row: Option<mysql_async::Row> = conn
            .query_first(stmt)
            .await
            .map_err(|e| row_error(e, ctx, "select from", &table))?;
        Ok(row.as_ref().map(conflict::target_row_json))
    }

    /// Inserts the after image, replacing the row that holds its key.
    async fn upsert_after(
        &mut self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        c: &pb::RowChange,
    ) -> Result<()> {
        let table = sql::table_ref(&c.schema, &c.table);
        let generated = self.generated_columns(conn, &c.schema, &c.table).await?;
        let after = image(ctx, c, c.after.as_ref(), "after")?;
        let cols = written_columns(ctx, c, after, &generated)?;
        let names: Vec<&str> = cols.iter().map(|&i| c.columns[i].name.as_str()).collect();
        let mut stmt = sql::insert_head(&table, &names);
        sql::push_row(
            &mut stmt,
            cols.iter().map(|&i| value_kind(after, i)),
            self.flavor,
        )
        .map_err(|m| definite(ctx, format!("insert into {table}: {m}")))?;
        sql::push_upsert_tail(&mut stmt, &names);
        conn.query_drop(stmt)
            .await
            .map_err(|e| row_error(e, ctx, "upsert into", &table))
    }
}

impl Sink for MySqlSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    fn guarantees(&self) -> SinkGuarantees {
        SinkGuarantees {
            atomic: true,
            durable: true,
            // A batch delivered again is skipped up to the stored checkpoint.
            idempotent: true,
        }
    }

    async fn checkpoint(&mut self, stream: &str) -> Result<Checkpoint> {
        let mut conn = self.take_conn().await?;
        match checkpoint::read(&mut conn, stream, false).await {
            Ok(cp) => {
                self.conn = Some(conn);
                Ok(cp)
            }
            Err(e) => {
                let err = classify(e, None, "read drc.checkpoints");
                self.recover(conn).await;
                Err(err)
            }
        }
    }

    async fn apply(&mut self, batch: &Batch) -> Result<()> {
        let mut conn = self.take_conn().await?;
        match self.apply_batch(&mut conn, batch).await {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(err) => {
                self.recover(conn).await;
                Err(err)
            }
        }
    }
}

async fn begin(conn: &mut Conn) -> Result<()> {
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(|e| classify(e, None, "START TRANSACTION"))
}

async fn commit(conn: &mut Conn) -> Result<()> {
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| classify(e, None, "COMMIT"))
}

/// Whether two inserts can share one multi-row statement: same table, same
/// columns, same columns present.
fn same_insert_shape(a: &pb::RowChange, b: &pb::RowChange) -> bool {
    let present = |c: &pb::RowChange| -> Option<Vec<bool>> {
        c.after
            .as_ref()
            .map(|r| r.values.iter().map(|v| v.kind.is_some()).collect())
    };
    b.op() == pb::Op::Insert
        && a.schema == b.schema
        && a.table == b.table
        && a.columns.len() == b.columns.len()
        && a.columns
            .iter()
            .zip(&b.columns)
            .all(|(x, y)| x.name == y.name)
        && present(a) == present(b)
}

fn image<'a>(
    ctx: Ctx<'_>,
    c: &pb::RowChange,
    row: Option<&'a pb::Row>,
    which: &str,
) -> Result<&'a pb::Row> {
    row.ok_or_else(|| {
        definite(
            ctx,
            format!(
                "{} on {}.{} has no {which} image",
                conflict::op_name(c.op()),
                c.schema,
                c.table
            ),
        )
    })
}

static ABSENT: Kind = Kind::Null(true);

/// The value of column `i` (only called for present columns).
fn value_kind(row: &pb::Row, i: usize) -> &Kind {
    row.values
        .get(i)
        .and_then(|v| v.kind.as_ref())
        .unwrap_or(&ABSENT)
}

/// Indexes of the columns of `row` to write: present in the image and not
/// generated in the target.
fn written_columns(
    ctx: Ctx<'_>,
    c: &pb::RowChange,
    row: &pb::Row,
    generated: &HashSet<String>,
) -> Result<Vec<usize>> {
    let mut cols = Vec::with_capacity(c.columns.len());
    for (i, col) in c.columns.iter().enumerate() {
        if row.values.get(i).and_then(|v| v.kind.as_ref()).is_none() {
            continue;
        }
        if col.name.is_empty() {
            return Err(definite(
                ctx,
                format!(
                    "column {} of {}.{} has no name (capture with binlog_row_metadata=FULL \
                     or a schema history)",
                    i + 1,
                    c.schema,
                    c.table
                ),
            ));
        }
        if generated.contains(&col.name.to_lowercase()) {
            continue;
        }
        cols.push(i);
    }
    if cols.is_empty() {
        return Err(definite(
            ctx,
            format!(
                "{} on {}.{}: no column to write",
                conflict::op_name(c.op()),
                c.schema,
                c.table
            ),
        ));
    }
    Ok(cols)
}

/// The columns that identify the before image's row: the primary key, or
/// every present, comparable, non-generated column (then `LIMIT 1`).
fn match_key<'a>(
    ctx: Ctx<'_>,
    c: &'a pb::RowChange,
    before: &'a pb::Row,
    generated: &HashSet<String>,
) -> Result<(Vec<ColVal<'a>>, bool)> {
    if !c.primary_key.is_empty() {
        let mut key = Vec::with_capacity(c.primary_key.len());
        for &i in &c.primary_key {
            let i = i as usize;
            let col = c.columns.get(i);
            let kind = before.values.get(i).and_then(|v| v.kind.as_ref());
            match (col, kind) {
                (Some(col), Some(kind)) if !col.name.is_empty() => key.push(ColVal {
                    name: &col.name,
                    kind,
                }),
                _ => {
                    return Err(definite(
                        ctx,
                        format!(
                            "{} on {}.{}: primary key column {} is missing from the before image",
                            conflict::op_name(c.op()),
                            c.schema,
                            c.table,
                            i + 1
                        ),
                    ))
                }
            }
        }
        return Ok((key, false));
    }
    let mut key = Vec::with_capacity(c.columns.len());
    for i in written_columns(ctx, c, before, generated)? {
        let kind = value_kind(before, i);
        if sql::comparable(kind) {
            key.push(ColVal {
                name: &c.columns[i].name,
                kind,
            });
        }
    }
    Ok((key, true))
}

fn definite(ctx: Ctx<'_>, message: String) -> ApplyError {
    ApplyError::Definite {
        sink: SINK_NAME.into(),
        offset: ctx.offset,
        message,
    }
}

fn conflict_error(ctx: Ctx<'_>, c: &pb::RowChange, kind: ConflictKind) -> ApplyError {
    let what = match kind {
        ConflictKind::Missing => "the row is missing",
        ConflictKind::Duplicate => "the key is taken",
        ConflictKind::Differs => "the row differs from the before image",
    };
    ApplyError::Conflict {
        offset: ctx.offset,
        table: format!("{}.{}", c.schema, c.table),
        message: format!(
            "{} {}: {what} (policy fail: nothing of the batch was applied)",
            conflict::op_name(c.op()),
            kind.as_str()
        ),
    }
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

fn is_transient(e: &mysql_async::Error) -> bool {
    use mysql_async::DriverError as D;
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Other(_) => true,
        mysql_async::Error::Driver(d) => matches!(
            d,
            D::ConnectionClosed
                | D::PacketOutOfOrder
                | D::PoolDisconnected
                | D::UnexpectedPacket { .. }
                | D::BadCompressedPacketHeader
        ),
        mysql_async::Error::Server(s) => TRANSIENT_CODES.contains(&s.code),
        mysql_async::Error::Url(_) => false,
    }
}

/// An error of a statement that holds no row values: the server's message
/// is kept.
fn classify_with_message(e: mysql_async::Error, offset: Option<u64>, what: &str) -> ApplyError {
    if is_transient(&e) {
        return ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!("{what}: {e}"),
        };
    }
    match offset {
        Some(offset) => ApplyError::Definite {
            sink: SINK_NAME.into(),
            offset,
            message: format!("{what}: {e}"),
        },
        None => ApplyError::Definite {
            sink: SINK_NAME.into(),
            offset: 0,
            message: format!("{what}: {e}"),
        },
    }
}

/// [`classify_with_message`] for bookkeeping statements.
fn classify(e: mysql_async::Error, offset: Option<u64>, what: &str) -> ApplyError {
    if let mysql_async::Error::Url(u) = &e {
        return ApplyError::Config(format!("mysql sink: {what}: {u}"));
    }
    classify_with_message(e, offset, what)
}

/// An error of a row statement: server messages can quote row values, so
/// only the error code and state are kept.
fn row_error(e: mysql_async::Error, ctx: Ctx<'_>, what: &str, table: &str) -> ApplyError {
    if is_transient(&e) {
        return ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!("{what} {table}: {e}"),
        };
    }
    let detail = match &e {
        mysql_async::Error::Server(s) => format!("server error {} ({})", s.code, s.state),
        other => other.to_string(),
    };
    definite(ctx, format!("{what} {table}: {detail}"))
}

/// The first line of `s`, cut to 200 characters.
fn abbreviate(s: &str) -> String {
    let line = s.trim().lines().next().unwrap_or_default();
    let cut: String = line.chars().take(200).collect();
    if cut.len() < s.trim().len() {
        format!("{cut}…")
    } else {
        cut
    }
}
