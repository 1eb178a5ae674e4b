//! The PostgreSQL sink: applies a MySQL/MariaDB stream to a PostgreSQL
//! database, exactly once.
//!
//! # One target transaction per batch, DDL included
//!
//! [`PostgresSink::apply`] opens one transaction, locks the stream's row of
//! `drc.checkpoints` (creating it at offset 0 if missing, so a second
//! applier of the stream waits rather than applying too), skips every
//! transaction at or below the stored offset (a batch delivered again is
//! harmless), applies the rest in source commit order, writes
//! `batch.last_offset` and the last transaction's source position into
//! `drc.checkpoints`, and commits. PostgreSQL DDL is transactional, so
//! translated DDL runs inside the same transaction: a crash at any moment
//! leaves the whole batch, its DDL and its checkpoint, or nothing of it; no
//! DDL is ever replayed. Committed means durable as far as the target's
//! settings make commits durable (`fsync`, `synchronous_commit`).
//!
//! # Tables and schemas
//!
//! Source database `db` maps to PostgreSQL schema `db` (or the one
//! `schema_map` names); table and column names are kept as the source spells
//! them (always quoted). Tables are created by translated DDL (see [`ddl`]);
//! a row for a table the target lacks stops the stream, unless
//! `create_missing_tables` is on: then the table is created from the
//! change's column list (types per [`types`], `NOT NULL` and the primary
//! key from the change), for streams that start after their tables were
//! created. Before a table is first written in a batch the sink reads its
//! columns from the catalog: a source column the target lacks is a definite
//! error naming it; target columns the source lacks are left to their
//! defaults; generated target columns are never written.
//!
//! # Rows
//!
//! - Runs of INSERTs into one table with the same columns, across the
//!   transactions of a batch, are written with `COPY ... FROM STDIN` (text
//!   format) from [`COPY_MIN_ROWS`] rows on, and as one multi-row `INSERT`
//!   below that. When such a run fails, the batch is rolled back and applied
//!   again with runs cut at transaction boundaries, so the error names the
//!   exact offset.
//! - UPDATE sets every column of the after image and DELETE removes the row,
//!   both matched by the primary key of the before image (`=`, so the key's
//!   index is used). For tables without one, the first row equal to the whole
//!   before image (`IS NOT DISTINCT FROM` on every column, by `ctid`) is the
//!   one changed.
//! - Values are exact text literals per [`types`]; the session runs with
//!   `TimeZone = 'UTC'`, ISO dates, `standard_conforming_strings = on`.
//! - Changes of a `drc` database in a stream are skipped: they are another
//!   region's bookkeeping.
//!
//! Conflicts (a missing row, a taken key) follow the configured policy; see
//! [`conflict`].
//!
//! # Errors
//!
//! A lost connection, a serialization failure, a deadlock, a lock timeout, a
//! server shutting down or a read-only (standby) target is
//! [`ApplyError::Transient`]: the transaction is gone and the applier
//! retries from the checkpoint. A change the target refuses (a value it
//! cannot hold, a missing privilege, a missing table or column, a DDL that
//! fails) is [`ApplyError::Definite`] with its offset, and nothing of the
//! batch is committed. Messages name the statement kind, table, SQLSTATE and
//! PostgreSQL's message up to the point where it would quote a value; never
//! row values.
//!
//! # Known limits
//!
//! - No TLS to the target yet: keep it on a trusted network or a Unix socket.
//! - Under the `ignore` and `overwrite` policies rows are written one
//!   statement at a time (INSERT ... ON CONFLICT DO NOTHING; each UPDATE
//!   inside a savepoint), so those policies apply slower than `fail`.
//! - An UPDATE that changes unique keys of several rows in one source
//!   statement (swapping two values) can hit a taken key when applied row
//!   by row, as in the MySQL sink.
//! - Index names are `<table>_<index>` as of their creation; after a table
//!   rename, a later `DROP INDEX` of the old index misses it (it is `IF
//!   EXISTS`, so it does nothing).

pub mod checkpoint;
pub mod config;
pub mod conflict;
pub mod ddl;
mod rows;
pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use drc_proto::v1 as pb;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::error::{ApplyError, Result};
use crate::sink::{Batch, Checkpoint, Sink, SinkGuarantees};

pub use crate::sink::mysql::ConflictPolicy;
pub use config::{PostgresSinkConfig, UnsupportedDdl};
use ddl::Translation;
use rows::TargetTable;

/// The sink's name in logs and errors.
pub const SINK_NAME: &str = "postgres";

/// Runs of inserts at least this long go through COPY; shorter ones are one
/// multi-row INSERT (COPY's extra round trips cost more than they save on
/// a few rows).
pub const COPY_MIN_ROWS: usize = 16;

/// Most rows in one multi-row INSERT.
pub const MAX_ROWS_PER_INSERT: usize = 1000;

/// Bytes of COPY data sent per message.
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Session settings of every connection of the sink.
const SESSION_SETUP: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
    SET IntervalStyle = 'postgres'; SET standard_conforming_strings = on; \
    SET client_encoding = 'UTF8'; SET bytea_output = 'hex'; SET extra_float_digits = 3";

/// Applies streams to a PostgreSQL database; see the module docs.
pub struct PostgresSink {
    config: PostgresSinkConfig,
    pg: tokio_postgres::Config,
    /// Taken out while a call uses it: a call that is cancelled midway drops
    /// the client, the connection closes and the server rolls back.
    client: Option<Client>,
    /// Target tables by `(schema, table)`, read from the catalog; cleared by
    /// DDL and by a failed batch.
    tables: HashMap<(String, String), Arc<TargetTable>>,
    /// [`COPY_MIN_ROWS`], changeable for measurements.
    copy_min_rows: usize,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresSink")
            .field("conflict_policy", &self.config.conflict_policy)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a change comes from, for errors and conflict records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub stream: &'a str,
    pub offset: u64,
    pub gtid: &'a str,
}

impl PostgresSink {
    /// Connects to the target, sets up the session and creates the `drc`
    /// schema and tables if they are missing.
    pub async fn connect(config: PostgresSinkConfig) -> Result<Self> {
        config.validate()?;
        let pg = config
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ApplyError::Config(format!("postgres sink: bad `url`: {e}")))?;
        let mut sink = Self {
            config,
            pg,
            client: None,
            tables: HashMap::new(),
            copy_min_rows: COPY_MIN_ROWS,
        };
        let client = sink.open().await?;
        sink.client = Some(client);
        Ok(sink)
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &PostgresSinkConfig {
        &self.config
    }

    /// Changes the conflict policy and whether conflicts are recorded, from
    /// the next batch on (see [`PostgresSinkConfig::record_conflicts`]).
    pub fn set_conflict_handling(&mut self, policy: ConflictPolicy, record: bool) {
        self.config.conflict_policy = policy;
        self.config.record_conflicts = record;
    }

    /// Sets the shortest run of inserts written with COPY (for measuring
    /// COPY against multi-row INSERT; `usize::MAX` turns COPY off).
    #[doc(hidden)]
    pub fn set_copy_min_rows(&mut self, rows: usize) {
        self.copy_min_rows = rows.max(1);
    }

    async fn open(&mut self) -> Result<Client> {
        let (client, connection) = self
            .pg
            .connect(NoTls)
            .await
            .map_err(|e| classify(e, None, "connect"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres sink: connection ended");
            }
        });
        client
            .batch_execute(SESSION_SETUP)
            .await
            .map_err(|e| classify(e, None, "session setup"))?;
        ensure_schema(&client).await?;
        Ok(client)
    }

    async fn take_client(&mut self) -> Result<Client> {
        match self.client.take() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.open().await,
        }
    }

    /// Ends a failed call: rolls back and keeps the connection if it still
    /// works, else drops it (the next call reconnects).
    async fn recover(&mut self, client: Client) {
        self.tables.clear();
        if !client.is_closed() && client.batch_execute("ROLLBACK").await.is_ok() {
            self.client = Some(client);
        }
    }

    async fn apply_batch(&mut self, client: &Client, batch: &Batch, precise: bool) -> Result<()> {
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

        exec(client, "BEGIN").await?;
        let stored = checkpoint::read(client, stream, true)
            .await
            .map_err(bookkeeping)?
            .offset;
        if batch.last_offset <= stored {
            exec(client, "COMMIT").await?;
            return Ok(());
        }
        let mut last_pos: Option<&pb::SourcePosition> = None;
        let mut run = rows::InsertRun::default();
        for (&offset, txn) in batch.offsets.iter().zip(&batch.transactions) {
            if offset <= stored {
                continue;
            }
            let ctx = Ctx {
                stream,
                offset,
                gtid: txn.position.as_ref().map_or("", |p| p.gtid.as_str()),
            };
            if let Some(ddl) = txn.ddl.as_ref().filter(|d| !d.statement.trim().is_empty()) {
                self.flush(client, &mut run).await?;
                self.exec_ddl(client, ctx, ddl).await?;
                self.tables.clear();
            }
            for c in &txn.changes {
                if c.schema.eq_ignore_ascii_case(checkpoint::SCHEMA) {
                    continue;
                }
                if c.op() == pb::Op::Insert && self.config.conflict_policy == ConflictPolicy::Fail {
                    if !run.fits(c) {
                        self.flush(client, &mut run).await?;
                    }
                    if run.is_empty() {
                        let table = self.target_table(client, ctx, c).await?;
                        run.start(ctx, c, table)?;
                    } else {
                        run.push(ctx, c)?;
                    }
                } else {
                    self.flush(client, &mut run).await?;
                    self.apply_one(client, ctx, c).await?;
                }
            }
            if precise {
                self.flush(client, &mut run).await?;
            }
            last_pos = txn.position.as_ref().or(last_pos);
        }
        self.flush(client, &mut run).await?;
        checkpoint::write(client, stream, batch.last_offset, last_pos, &origin)
            .await
            .map_err(bookkeeping)?;
        exec(client, "COMMIT").await
    }

    async fn exec_ddl(&mut self, client: &Client, ctx: Ctx<'_>, ddl: &pb::Ddl) -> Result<()> {
        let shown = crate::sink::abbreviate(&ddl.statement);
        match ddl::translate(&ddl.statement, &ddl.database, &self.config) {
            Translation::Statements(stmts) => {
                for s in stmts {
                    client.batch_execute(&s).await.map_err(|e| {
                        classify_with_message(e, Some(ctx.offset), &format!("DDL {shown}"))
                    })?;
                }
                Ok(())
            }
            Translation::NoOp(why) => {
                tracing::debug!(
                    offset = ctx.offset,
                    "postgres sink: DDL needs nothing on the target ({why}): {shown}"
                );
                Ok(())
            }
            Translation::Unsupported(why) => match self.config.on_unsupported_ddl {
                UnsupportedDdl::Skip => {
                    tracing::warn!(
                        offset = ctx.offset,
                        "postgres sink: DDL skipped (on_unsupported_ddl = \"skip\"): {why}: {shown}"
                    );
                    Ok(())
                }
                UnsupportedDdl::Fail => Err(ApplyError::Definite {
                    sink: SINK_NAME.into(),
                    offset: ctx.offset,
                    message: format!(
                        "DDL has no PostgreSQL translation ({why}): {shown}. Make the \
                         equivalent change on the target by hand, then restart with \
                         on_unsupported_ddl = \"skip\" or move the checkpoint past it \
                         (UPDATE drc.checkpoints SET \"offset\" = {} WHERE stream = '{}')",
                        ctx.offset, ctx.stream
                    ),
                }),
            },
        }
    }

    /// Writes out the pending run of inserts.
    async fn flush(&mut self, client: &Client, run: &mut rows::InsertRun<'_>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let r = if run.len() >= self.copy_min_rows {
            run.copy(client).await
        } else {
            run.insert(client).await
        };
        run.clear();
        r
    }

    /// The target table of a change, from the cache or the catalog;
    /// creates it when it is missing and the config says so.
    async fn target_table(
        &mut self,
        client: &Client,
        ctx: Ctx<'_>,
        c: &pb::RowChange,
    ) -> Result<Arc<TargetTable>> {
        let schema = self.config.schema_of(&c.schema).to_owned();
        let key = (schema.clone(), c.table.clone());
        if let Some(t) = self.tables.get(&key) {
            return Ok(Arc::clone(t));
        }
        let mut table = rows::read_table(client, &schema, &c.table)
            .await
            .map_err(|e| classify(e, Some(ctx.offset), "read the target table's columns"))?;
        if table.is_none() {
            if !self.config.create_missing_tables {
                return Err(definite(
                    ctx,
                    format!(
                        "table {}.{} is missing in the target (as {}): create it, fix \
                         `schema_map`, or set create_missing_tables = true",
                        c.schema,
                        c.table,
                        types::table_ref(&schema, &c.table)
                    ),
                ));
            }
            rows::create_table(client, ctx, &schema, c).await?;
            tracing::info!(offset = ctx.offset, schema = %schema, table = %c.table, "postgres sink: created a missing table from the change's columns");
            table = rows::read_table(client, &schema, &c.table)
                .await
                .map_err(|e| classify(e, Some(ctx.offset), "read the target table's columns"))?;
        }
        let table = Arc::new(table.ok_or_else(|| {
            definite(
                ctx,
                format!("table {schema}.{} vanished after creation", c.table),
            )
        })?);
        self.tables.insert(key, Arc::clone(&table));
        Ok(table)
    }

    async fn apply_one(&mut self, client: &Client, ctx: Ctx<'_>, c: &pb::RowChange) -> Result<()> {
        let table = self.target_table(client, ctx, c).await?;
        let policy = self.config.conflict_policy;
        let w = rows::Writer {
            client,
            ctx,
            change: c,
            table: &table,
            policy,
            record: self.config.record_conflicts,
        };
        let outcome = match c.op() {
            pb::Op::Insert => w.insert_one().await?,
            pb::Op::Update => w.update().await?,
            pb::Op::Delete => w.delete().await?,
            pb::Op::Unspecified => {
                return Err(definite(
                    ctx,
                    format!("row change on {}.{} has no operation", c.schema, c.table),
                ))
            }
        };
        match outcome {
            rows::Outcome::Done => Ok(()),
            rows::Outcome::Conflict(kind) => w.conflict(kind).await,
        }
    }
}

impl Sink for PostgresSink {
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
        let client = self.take_client().await?;
        match checkpoint::read(&client, stream, false).await {
            Ok(cp) => {
                self.client = Some(client);
                Ok(cp)
            }
            Err(e) => {
                let err = classify(e, None, "read drc.checkpoints");
                self.recover(client).await;
                Err(err)
            }
        }
    }

    async fn apply(&mut self, batch: &Batch) -> Result<()> {
        let client = self.take_client().await?;
        let first = self.apply_batch(&client, batch, false).await;
        let err = match first {
            Ok(()) => {
                self.client = Some(client);
                return Ok(());
            }
            Err(err) => err,
        };
        // A run of inserts that spans transactions names the offset of its
        // first row only: apply again with runs cut at every transaction,
        // which fails at the exact offset.
        let retry = !err.is_transient() && batch.transactions.len() > 1;
        self.recover(client).await;
        if !retry {
            return Err(err);
        }
        let client = self.take_client().await?;
        match self.apply_batch(&client, batch, true).await {
            Ok(()) => {
                self.client = Some(client);
                Ok(())
            }
            Err(precise) => {
                self.recover(client).await;
                Err(precise)
            }
        }
    }
}

/// Creates the `drc` schema and tables when they are missing, under an
/// advisory lock (two sinks starting at once do not race). Existing ones
/// need no CREATE privilege.
async fn ensure_schema(client: &Client) -> Result<()> {
    let exists = |e| classify(e, None, "look up the drc schema");
    let row = client
        .query_one(
            "SELECT to_regclass('drc.checkpoints') IS NOT NULL AND to_regclass('drc.conflicts') IS NOT NULL",
            &[],
        )
        .await
        .map_err(exists)?;
    let present: bool = row.try_get(0).map_err(exists)?;
    if present {
        return Ok(());
    }
    let create = async {
        client.batch_execute("BEGIN").await?;
        client
            .batch_execute("SELECT pg_advisory_xact_lock(7100730)")
            .await?;
        let has_schema: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'drc')",
                &[],
            )
            .await?
            .try_get(0)?;
        if !has_schema {
            client.batch_execute("CREATE SCHEMA drc").await?;
        }
        client.batch_execute(checkpoint::CREATE_TABLES).await?;
        client.batch_execute("COMMIT").await
    };
    match create.await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                return Err(ApplyError::Config(format!(
                    "postgres sink: cannot create the sink's schema `drc` and its tables \
                     ({}): grant the sink's user CREATE on the database, or create schema drc \
                     owned by that user",
                    db_message(&e)
                )));
            }
            Err(classify_with_message(e, None, "create the drc schema"))
        }
    }
}

async fn exec(client: &Client, sql: &str) -> Result<()> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| classify(e, None, sql))
}

/// Rows affected by a simple query (its last command).
pub(crate) fn affected(msgs: &[SimpleQueryMessage]) -> u64 {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .last()
        .unwrap_or(0)
}

/// A definite error at the change's offset; the source GTID is added, so
/// the position can be found on the source too.
pub(crate) fn definite(ctx: Ctx<'_>, mut message: String) -> ApplyError {
    if !ctx.gtid.is_empty() {
        message.push_str(&format!(
            " [stream {}, source GTID {}]",
            ctx.stream, ctx.gtid
        ));
    }
    ApplyError::Definite {
        sink: SINK_NAME.into(),
        offset: ctx.offset,
        message,
    }
}

/// SQLSTATE classes and codes worth a retry: connection exceptions (08),
/// transaction rollbacks (40: serialization failure, deadlock), insufficient
/// resources (53), operator intervention (57: shutdown, cancel), lock not
/// available, read-only transaction (a standby).
fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("40")
                || c.starts_with("53")
                || c.starts_with("57")
                || c == SqlState::LOCK_NOT_AVAILABLE.code()
                || c == SqlState::READ_ONLY_SQL_TRANSACTION.code()
        }
        // No server error: the connection failed or broke (I/O, protocol).
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                if s.is::<std::io::Error>() {
                    return true;
                }
                source = s.source();
            }
            let text = e.to_string();
            text.contains("connect") || text.contains("closed") || text.contains("communicating")
        }
    }
}

/// PostgreSQL's message, cut before a quoted value: messages such as
/// `invalid input syntax for type integer: "x"` end with the value.
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let m = db.message();
            let cut = m.split(": \"").next().unwrap_or(m);
            let cut = cut.split(": 0x").next().unwrap_or(cut);
            format!("SQLSTATE {}: {cut}", db.code().code())
        }
        None => e.to_string(),
    }
}

/// An error of a statement that holds no row values: the server's whole
/// message is kept.
fn classify_with_message(e: tokio_postgres::Error, offset: Option<u64>, what: &str) -> ApplyError {
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: SQLSTATE {}: {}", db.code().code(), db.message()),
        None => format!("{what}: {e}"),
    };
    if is_transient(&e) {
        return ApplyError::Transient {
            sink: SINK_NAME.into(),
            message,
        };
    }
    if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return ApplyError::Definite {
            sink: SINK_NAME.into(),
            offset: offset.unwrap_or(0),
            message: format!("{message} (grant the sink's user the privilege it names)"),
        };
    }
    ApplyError::Definite {
        sink: SINK_NAME.into(),
        offset: offset.unwrap_or(0),
        message,
    }
}

/// [`classify_with_message`] for bookkeeping statements.
fn classify(e: tokio_postgres::Error, offset: Option<u64>, what: &str) -> ApplyError {
    classify_with_message(e, offset, what)
}

/// An error of a row statement: only the SQLSTATE, the message up to any
/// quoted value, and the column or constraint PostgreSQL names.
pub(crate) fn row_error(
    e: tokio_postgres::Error,
    ctx: Ctx<'_>,
    what: &str,
    table: &str,
) -> ApplyError {
    if is_transient(&e) {
        return ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!("{what} {table}: {e}"),
        };
    }
    let mut detail = db_message(&e);
    if let Some(db) = e.as_db_error() {
        if let Some(col) = db.column() {
            detail.push_str(&format!(" (column {col})"));
        }
        if let Some(cons) = db.constraint() {
            detail.push_str(&format!(" (constraint {cons})"));
        }
    }
    let hint = match e.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            ": grant the sink's user INSERT, UPDATE, DELETE and SELECT on the table"
        }
        Some(c) if *c == SqlState::UNDEFINED_COLUMN || *c == SqlState::UNDEFINED_TABLE => {
            ": make the target table match the source"
        }
        _ => ": PostgreSQL refused the change; nothing of the batch was committed",
    };
    definite(ctx, format!("{what} {table}: {detail}{hint}"))
}
