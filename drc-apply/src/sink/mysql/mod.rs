//! The MySQL/MariaDB sink: applies a stream to a MySQL or MariaDB server,
//! exactly once, on several connections at a time.
//!
//! # Target transactions and the checkpoint
//!
//! A batch from the applier is cut at each DDL into runs of source
//! transactions. Each run is cut into **groups** (whole source transactions,
//! up to `group_rows` row changes each); a group is one target transaction
//! that also inserts its row into `drc.applied`: the offsets it covers, the
//! source position, the origin. With `parallel` > 1, groups that touch
//! disjoint keys run at once on that many connections and commit together;
//! see [`parallel`] for the scheme (dependency keys from primary keys,
//! unique keys and foreign keys; ordered readiness; a group surprised by an
//! order the keys missed runs again serially). When a run has committed,
//! `drc.checkpoints` moves to its end and its `drc.applied` rows go (see
//! [`checkpoint`]). A crash or a lost connection at any moment leaves whole
//! groups, each with its row, and nothing of the others; a batch delivered
//! again skips every offset the rows cover. Committed means durable as far
//! as the target's settings make commits durable
//! (`innodb_flush_log_at_trx_commit=1`). The control connection holds the
//! named lock `drc.apply.<stream>` (`GET_LOCK`) while it writes a stream, so
//! two appliers of one stream never write to one target at once.
//!
//! # DDL
//!
//! DDL commits implicitly in MySQL and MariaDB, so it runs alone, after every
//! group before it has committed: `USE` of its default database, the
//! statement, then its own checkpoint in a small transaction. A crash
//! between the DDL and that checkpoint replays the DDL: when the DDL is the
//! first transaction after the stored checkpoint, the errors that mean "done
//! already" (database, table, column or key exists or is gone:
//! 1007, 1008, 1050, 1051, 1060, 1061, 1091) are taken as applied, with a
//! warning. Anywhere else they stop the stream like any failed DDL.
//!
//! # Rows
//!
//! See [`write`]: multi-row `INSERT`s (bounded by rows and the target's
//! `max_allowed_packet`), UPDATE and DELETE by primary key plus the before
//! image (`check_before_image`), or the whole before image `LIMIT 1` for
//! tables without a key, sent as multi-statement packets whose row counts
//! are checked. Generated columns (from the target's `information_schema`,
//! cached per table until the next DDL) are never written or matched.
//! Values are exact literals (see [`sql`]); sessions use
//! `sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'` (a zero in an
//! AUTO_INCREMENT column stays zero, zero dates are allowed) and
//! `time_zone = '+00:00'` (TIMESTAMP values are UTC seconds), and on MariaDB
//! `binlog_annotate_row_events = OFF` where the user may (the target's
//! binlog would otherwise carry the text of every merged statement beside
//! its row events: ~10% of the apply rate in bench/apply.sh). Changes of the
//! `drc` schema in a stream are skipped: they are another region's
//! bookkeeping.
//!
//! Foreign key checks stay on: a child row is never applied before the
//! parent row it references (the dependency keys hold the reference), and
//! within one connection changes follow the source order.
//!
//! # Triggers
//!
//! The source's binlog already carries every row its triggers wrote. Every
//! sink session sets `@drc_apply = 1`, and under the default trigger policy
//! `guard` the sink rewrites each trigger of a table before its first write
//! into it so that the body runs only when `@drc_apply` is not set (see
//! [`meta::TriggerPolicy`], [`triggers`]): local writes fire it, replicated rows do not.
//! The rewrite runs with `sql_log_bin = 0` where the sink's user may set it
//! (else it reaches the target's binlog like any DDL).
//!
//! Conflicts (a missing row, a taken key, a row that differs from the before
//! image) follow the configured policy; see [`conflict`].
//!
//! # The target's own binlog
//!
//! Applied rows go to the target's binlog (the session's `sql_log_bin` is
//! left on, which needs no privilege), with the group's `drc.applied` row in
//! the same transaction: that row names the origin, so the target's capture can tell
//! applied transactions from local ones (the design's "Active-active"). DDL
//! is not marked that way, as its checkpoint commits separately.
//!
//! # Known limits
//!
//! - An UPDATE that changes unique keys of several rows in one source
//!   statement (e.g. swapping two values) can hit a duplicate key when
//!   applied row by row.
//!
//! # Errors
//!
//! A lost connection, a deadlock, a lock wait timeout or a read-only target
//! is [`ApplyError::Transient`]: the open groups were rolled back and the
//! applier retries from the checkpoint. A change the target refuses is
//! [`ApplyError::Definite`] with its offset. Error messages name the
//! statement kind, table and server error code, never row values.

pub mod checkpoint;
pub mod config;
pub mod conflict;
mod ddl;
mod errors;
pub mod keys;
pub mod meta;
pub mod parallel;
mod planner;
pub mod sql;
mod triggers;
pub mod write;

use std::collections::{BTreeSet, HashSet};

use drc_proto::v1 as pb;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::error::{ApplyError, Result};
use crate::sink::{Batch, Checkpoint, Sink, SinkGuarantees};

pub use config::MySqlSinkConfig;
pub use conflict::{ConflictKind, ConflictPolicy};
use errors::{classify, is_transient, row_error, server_code};
use meta::MetaCache;
use parallel::{begin, commit};
use sql::Flavor;
use write::Writer;

pub use write::MAX_ROWS_PER_INSERT;

/// The sink's name in logs and errors.
pub const SINK_NAME: &str = "mysql";

/// Most bytes of one statement packet (also kept under the target's
/// `max_allowed_packet`); a single row larger than this is sent alone.
pub const MAX_STATEMENT_BYTES: usize = 8 << 20;

/// Bytes kept free under `max_allowed_packet` for the packet header.
const PACKET_MARGIN: usize = 4096;

/// Session settings of every connection of the sink.
const SESSION_SETUP: [&str; 4] = [
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION time_zone = '+00:00'",
    "SET @drc_apply = 1",
];

/// How long the sink waits for another session's lock of its stream.
const STREAM_LOCK_WAIT_S: u32 = 10;

/// Applies streams to a MySQL or MariaDB server; see the module docs.
pub struct MySqlSink {
    config: MySqlSinkConfig,
    opts: Opts,
    /// The control connection: checkpoints, DDL, metadata, and the groups
    /// when there is one connection. Taken out while a call uses it: a call
    /// that is cancelled midway drops the connection, and the server rolls
    /// back its open transaction.
    conn: Option<Conn>,
    /// The parallel workers' connections (`parallel` > 1), opened on first
    /// use and dropped after any failure.
    workers: Vec<Conn>,
    flavor: Flavor,
    max_statement_bytes: usize,
    meta: MetaCache,
    stats: MySqlSinkStats,
    /// Streams whose named lock the control connection holds.
    locked: HashSet<String>,
}

/// What `drc.checkpoints` holds for a stream, as far as this call knows.
#[derive(Debug, Clone)]
struct Settled {
    offset: u64,
    /// Whether `drc.applied` may hold rows of the stream.
    unsettled: bool,
    position: Option<pb::SourcePosition>,
}

/// The transaction's DDL, if it is one.
fn ddl_of(txn: &pb::Transaction) -> Option<&pb::Ddl> {
    txn.ddl.as_ref().filter(|d| !d.statement.trim().is_empty())
}

/// What a sink has done since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MySqlSinkStats {
    /// Groups (target transactions) committed by parallel workers.
    pub parallel_groups: u64,
    /// Groups committed on the one control connection.
    pub serial_groups: u64,
    /// Parallel groups that hit a surprise ahead of their turn and ran again
    /// at their turn (see [`parallel`]).
    pub redone_groups: u64,
    /// Parallel groups that gave up their locks while waiting for their turn
    /// and ran again at their turn.
    pub yielded_groups: u64,
    /// Groups applied one statement at a time after a surprise at their
    /// turn (a conflict, a refused change, a merged statement that did not
    /// find every row it expected).
    pub slow_groups: u64,
    /// Statements the fast path wrote (merged across transactions: far
    /// fewer than row changes).
    pub fast_statements: u64,
}

impl std::fmt::Debug for MySqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("MySqlSink")
            .field("flavor", &self.flavor)
            .field("conflict_policy", &self.config.conflict_policy)
            .field("parallel", &self.config.parallel)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
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
            workers: Vec::new(),
            flavor: Flavor::MySql,
            max_statement_bytes: MAX_STATEMENT_BYTES,
            meta: MetaCache::default(),
            stats: MySqlSinkStats::default(),
            locked: HashSet::new(),
        };
        let mut conn = sink.open().await?;
        checkpoint::ensure_schema(&mut conn)
            .await
            .map_err(|e| classify(e, None, "create the drc schema"))?;
        sink.conn = Some(conn);
        Ok(sink)
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &MySqlSinkConfig {
        &self.config
    }

    /// Changes the conflict policy and whether conflicts are recorded, from
    /// the next batch on (see [`MySqlSinkConfig::record_conflicts`]).
    pub fn set_conflict_handling(&mut self, policy: ConflictPolicy, record: bool) {
        self.config.conflict_policy = policy;
        self.config.record_conflicts = record;
    }

    /// What the sink has done since it connected.
    pub fn stats(&self) -> MySqlSinkStats {
        self.stats
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
            if self.flavor == Flavor::MariaDb {
                // MariaDB writes each statement's text into its binlog
                // beside the row events by default; the sink's merged
                // statements are large, and the row events say it all.
                // Best effort: a user who may not change it keeps it.
                if let Err(e) = conn
                    .query_drop("SET SESSION binlog_annotate_row_events = OFF")
                    .await
                {
                    tracing::debug!(error = %e, "mysql sink: binlog_annotate_row_events stays on");
                }
            }
            if log_bin == Some(0) {
                tracing::warn!(
                    "mysql sink: sql_log_bin is off for this user's sessions: applied \
                     changes will not reach the target's binlog or its captures"
                );
            }
        }
        Ok(conn)
    }

    /// Opens the parallel workers' connections that are missing.
    async fn open_workers(&mut self) -> Result<()> {
        while self.workers.len() < self.config.parallel {
            let mut conn = self.open().await?;
            for stmt in [
                format!(
                    "SET SESSION innodb_lock_wait_timeout = {}",
                    parallel::WORKER_LOCK_WAIT_S
                ),
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
            ] {
                conn.query_drop(stmt)
                    .await
                    .map_err(|e| classify(e, None, "worker session setup"))?;
            }
            self.workers.push(conn);
        }
        Ok(())
    }

    async fn take_conn(&mut self) -> Result<Conn> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => {
                // A new connection holds no lock yet.
                self.locked.clear();
                self.open().await
            }
        }
    }

    /// Ends a failed call: rolls back and keeps the connection if it still
    /// works, else drops it (the next call reconnects). Worker connections
    /// are dropped, which rolls back whatever they held.
    async fn recover(&mut self, mut conn: Conn) {
        self.workers.clear();
        if conn.query_drop("ROLLBACK").await.is_ok() {
            self.conn = Some(conn);
        }
    }

    fn writer(&self) -> Writer<'_> {
        Writer {
            config: &self.config,
            flavor: self.flavor,
            max_statement_bytes: self.max_statement_bytes,
            meta: &self.meta,
        }
    }

    fn origin(&self, stream: &str) -> String {
        self.config
            .origin
            .clone()
            .unwrap_or_else(|| stream.to_owned())
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
        self.lock_stream(conn, stream).await?;
        let state = checkpoint::read_state(conn, stream)
            .await
            .map_err(|e| classify(e, None, "read drc.checkpoints"))?;
        let all: Vec<(u64, &pb::Transaction)> = batch
            .offsets
            .iter()
            .copied()
            .zip(&batch.transactions)
            .collect();
        let mut settled = Settled {
            offset: state.settled,
            unsettled: state.unsettled,
            position: state.checkpoint.position.clone(),
        };
        let mut cp = state.checkpoint.offset;
        if batch.last_offset <= cp {
            return self.settle(conn, stream, cp, &all, &mut settled).await;
        }
        let pending: Vec<(u64, &pb::Transaction)> = all
            .iter()
            .copied()
            .filter(|(o, _)| !state.covers(*o))
            .collect();
        if pending.is_empty() {
            // Only offsets filtered out upstream: nothing to write. The
            // checkpoint may stay behind them (they are filtered again after
            // a restart); writing it would put a bookkeeping transaction into
            // this target's binlog for each such batch, which in two regions
            // that both capture bounces back and forth for ever.
            return self
                .settle(conn, stream, state.checkpoint.offset, &all, &mut settled)
                .await;
        }
        // Ranges committed past a gap before a stop: skipped, and no group
        // may cover them again.
        let mut ahead = state.ahead.clone();
        // Whether a transaction of this batch has been applied: a DDL before
        // any may be the replay of one applied just before a crash.
        let mut applied_any = false;
        let mut i = 0;
        loop {
            while let Some(&(a, b)) = ahead.first() {
                if a > cp + 1 {
                    break;
                }
                cp = cp.max(b);
                ahead.remove(0);
            }
            let limit = ahead.first().map(|&(a, _)| a);
            if i >= pending.len() {
                // Only offsets filtered out upstream (or applied) remain.
                let end = limit.map_or(batch.last_offset, |a| a - 1);
                if end > cp {
                    self.apply_run(conn, stream, &[], cp, end).await?;
                    cp = end;
                }
                if ahead.is_empty() {
                    break;
                }
                continue;
            }
            let (offset, txn) = pending[i];
            if let Some(ddl) = ddl_of(txn) {
                self.settle(conn, stream, cp, &all, &mut settled).await?;
                let checkpoint = if i + 1 == pending.len() && ahead.is_empty() {
                    batch.last_offset
                } else {
                    offset
                };
                self.apply_ddl(conn, stream, offset, txn, ddl, cp, checkpoint, !applied_any)
                    .await?;
                settled = Settled {
                    offset: checkpoint,
                    unsettled: false,
                    position: txn.position.clone(),
                };
                cp = checkpoint;
                applied_any = true;
                i += 1;
                continue;
            }
            let mut end = i;
            while end < pending.len()
                && ddl_of(pending[end].1).is_none()
                && limit.is_none_or(|a| pending[end].0 < a)
            {
                end += 1;
            }
            let last_checkpoint = match (pending.get(end), limit) {
                (Some((_, t)), _) if ddl_of(t).is_some() => pending[end - 1].0,
                (_, Some(a)) => a - 1,
                (None, None) => batch.last_offset,
                (Some(_), None) => pending[end - 1].0,
            };
            self.apply_run(conn, stream, &pending[i..end], cp, last_checkpoint)
                .await?;
            settled.unsettled = true;
            cp = last_checkpoint;
            applied_any = true;
            i = end;
        }
        self.settle(conn, stream, cp, &all, &mut settled).await
    }

    /// Moves `drc.checkpoints` of `stream` to `cp` (every offset up to it is
    /// applied) and drops the `drc.applied` rows it covers, when due.
    async fn settle(
        &mut self,
        conn: &mut Conn,
        stream: &str,
        cp: u64,
        txns: &[(u64, &pb::Transaction)],
        settled: &mut Settled,
    ) -> Result<()> {
        if cp <= settled.offset && !settled.unsettled {
            return Ok(());
        }
        let position = txns
            .iter()
            .rev()
            .filter(|(o, _)| *o <= cp)
            .find_map(|(_, t)| t.position.clone())
            .or_else(|| settled.position.clone());
        let to = Checkpoint {
            stream: stream.to_owned(),
            offset: cp,
            position,
        };
        let origin = self.origin(stream);
        begin(conn).await?;
        checkpoint::settle(conn, stream, &to, &origin)
            .await
            .map_err(|e| classify(e, None, "settle drc.checkpoints"))?;
        commit(conn).await?;
        *settled = Settled {
            offset: cp,
            unsettled: false,
            position: to.position,
        };
        Ok(())
    }

    /// Takes the target's named lock of `stream` on the control connection
    /// (held while it lives), so two appliers of one stream never write to
    /// one target at once.
    async fn lock_stream(&mut self, conn: &mut Conn, stream: &str) -> Result<()> {
        if self.locked.contains(stream) {
            return Ok(());
        }
        let name = checkpoint::lock_name(stream);
        let got: Option<Option<i64>> = conn
            // A stopped applier's session can outlive it by a moment.
            .exec_first("SELECT GET_LOCK(?, ?)", (&name, STREAM_LOCK_WAIT_S))
            .await
            .map_err(|e| classify(e, None, "GET_LOCK"))?;
        if got != Some(Some(1)) {
            return Err(ApplyError::Transient {
                sink: SINK_NAME.into(),
                message: format!(
                    "another applier of stream {stream} is writing to this target (it holds the \
                     lock {name:?}); waiting until it stops"
                ),
            });
        }
        self.locked.insert(stream.to_owned());
        Ok(())
    }

    /// Applies a run of transactions without DDL that covers offsets
    /// `start + 1 ..= last_checkpoint`, in groups.
    async fn apply_run(
        &mut self,
        conn: &mut Conn,
        stream: &str,
        run: &[(u64, &pb::Transaction)],
        start: u64,
        last_checkpoint: u64,
    ) -> Result<()> {
        self.resolve_tables(conn, run).await?;
        let origin = self.origin(stream);
        let mut parallel = self.config.parallel > 1 && run.len() > 1;
        if parallel {
            if let Err(e) = self.open_workers().await {
                // Apply on one connection meanwhile (too many connections on
                // the target, say); the next run tries again.
                tracing::warn!(error = %e, "mysql sink: cannot open the parallel connections; applying on one");
                self.workers.clear();
                parallel = false;
            }
        }
        let group_rows = if parallel {
            self.config.group_rows
        } else {
            usize::MAX
        };
        let groups = parallel::groups(run, group_rows, start, last_checkpoint, &self.meta);
        let writer = Writer {
            config: &self.config,
            flavor: self.flavor,
            max_statement_bytes: self.max_statement_bytes,
            meta: &self.meta,
        };
        let conns = if parallel {
            &mut self.workers[..]
        } else {
            std::slice::from_mut(conn)
        };
        match parallel::run(writer, conns, stream, &origin, &groups).await {
            Ok(run) => {
                let n = groups.len() as u64;
                if parallel {
                    self.stats.parallel_groups += n;
                } else {
                    self.stats.serial_groups += n;
                }
                self.stats.redone_groups += run.redone;
                self.stats.yielded_groups += run.yielded;
                self.stats.slow_groups += run.slow;
                self.stats.fast_statements += run.statements;
                Ok(())
            }
            Err(e) => {
                self.workers.clear();
                Err(e)
            }
        }
    }

    /// Reads what the sink must know of every table `txns` write (see
    /// [`meta`]) and guards their triggers, once per table until the next
    /// DDL. Runs outside any transaction.
    async fn resolve_tables(
        &mut self,
        conn: &mut Conn,
        txns: &[(u64, &pb::Transaction)],
    ) -> Result<()> {
        let mut missing: BTreeSet<(&str, &str, u64)> = BTreeSet::new();
        for (offset, txn) in txns {
            for c in &txn.changes {
                if !c.schema.eq_ignore_ascii_case(checkpoint::SCHEMA)
                    && !self.meta.contains(&c.schema, &c.table)
                    && !missing
                        .iter()
                        .any(|(s, t, _)| *s == c.schema && *t == c.table)
                {
                    missing.insert((&c.schema, &c.table, *offset));
                }
            }
        }
        for (schema, table, offset) in missing {
            let m = meta::load(conn, schema, table).await.map_err(|e| {
                classify(
                    e,
                    Some(offset),
                    &format!("read the definition of {schema}.{table}"),
                )
            })?;
            triggers::handle(
                conn,
                self.config.triggers,
                self.flavor,
                schema,
                table,
                offset,
            )
            .await?;
            self.meta.insert(schema, table, m);
        }
        Ok(())
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
        match checkpoint::read_state(&mut conn, stream).await {
            Ok(state) => {
                self.conn = Some(conn);
                Ok(state.checkpoint)
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
