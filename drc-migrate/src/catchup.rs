//! The catch-up: the source's binlog from the position recorded before the
//! snapshot, captured and applied into the target by the apply sinks
//! (checkpoint in the same target transaction: exactly-once, resumable).
//!
//! # The replay window
//!
//! Chunks were read at different moments after the start position, so the
//! target may already hold the effect of a change the binlog replays. Up to
//! the newest chunk's snapshot position (the *window end*), changes of
//! keyed tables are applied idempotently: the sink's `overwrite` policy with
//! conflicts not recorded (an INSERT of an existing key writes the after
//! image, an UPDATE of a missing row inserts it, a DELETE of a missing row
//! does nothing). Replaying, in commit order, every change since a point
//! before the chunk was read ends with each row as the source had it at the
//! window end, because every change carries full row images. Changes of a
//! table without a key cannot be replayed that way; its single chunk was read
//! in one snapshot, and exactly the changes that snapshot holds (those
//! committed at or before its position) are dropped. After the window end,
//! the sink runs with the configured conflict policy (default `fail`): a
//! conflict there is real.
//!
//! A DDL statement inside the window is replayed when every table it
//! changes was read, all of its chunks, before the statement (or is not
//! part of the snapshot, e.g. one it creates): the target then holds those
//! tables as they were before it, and the statement and the changes after
//! it replay exactly. Any other DDL statement on a migrated database inside
//! the window (on a table a chunk read after it, or one whose tables cannot
//! be told: views, triggers, routines, statements the schema tracker does
//! not know) stops the catch-up with an error, because the snapshot may or
//! may not hold its effect. After the window every DDL statement is applied
//! like any other change.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_apply::sink::mysql::{ConflictPolicy, MySqlSink};
use drc_apply::sink::postgres::PostgresSink;
use drc_apply::{ApplyError, Batch, Sink};
use drc_capture::assemble::AssembledTxn;
use drc_capture::capture::{self, CaptureOptions, StartAt, TxnSink};
use drc_capture::error::CaptureError;
use drc_capture::position::BinlogPos;

use crate::error::{Error, Result};
use crate::plan::{in_snapshot, pos_le};
use crate::Progress;

/// Transactions per applied batch (at most).
const BATCH_TXNS: usize = 2_000;
/// Row changes per applied batch (at most, unless one transaction is larger).
const BATCH_ROWS: usize = 20_000;
/// Attempts at a batch the target refused for a passing reason.
const TRANSIENT_RETRIES: u32 = 10;
/// Heartbeat asked of the source: how soon a quiet stream is noticed.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A stream with no transaction for this long, read to its end, has none
/// left before the position waited for (what remains are events such as a
/// binlog rotation, which carry no transaction).
const QUIET: Duration = Duration::from_millis(1500);

/// Either apply sink.
pub enum AnySink {
    Maria(Box<MySqlSink>),
    Pg(Box<PostgresSink>),
}

impl AnySink {
    async fn apply(&mut self, b: &Batch) -> std::result::Result<(), ApplyError> {
        match self {
            AnySink::Maria(s) => s.apply(b).await,
            AnySink::Pg(s) => s.apply(b).await,
        }
    }

    pub async fn checkpoint(
        &mut self,
        stream: &str,
    ) -> std::result::Result<drc_apply::Checkpoint, ApplyError> {
        match self {
            AnySink::Maria(s) => s.checkpoint(stream).await,
            AnySink::Pg(s) => s.checkpoint(stream).await,
        }
    }

    fn set_conflict_handling(&mut self, policy: ConflictPolicy, record: bool) {
        match self {
            AnySink::Maria(s) => s.set_conflict_handling(policy, record),
            AnySink::Pg(s) => s.set_conflict_handling(policy, record),
        }
    }
}

/// When the catch-up returns.
#[derive(Debug, Clone)]
pub enum Until {
    /// Once the binlog is read up to the source's position at the start of
    /// the run (lag under a second) and applied.
    CaughtUp,
    /// Once everything up to this source position is applied.
    Position(BinlogPos),
    /// Never (until cancelled).
    Forever,
}

/// Settings of one catch-up run.
pub struct Catchup {
    pub source_url: String,
    pub replica_server_id: u32,
    pub schema_history: PathBuf,
    pub stream: String,
    /// Where to read from when the sink has no checkpoint yet.
    pub start: BinlogPos,
    pub window_end: BinlogPos,
    /// The newest chunk snapshot position of each table read by the snapshot.
    pub table_window: HashMap<(String, String), BinlogPos>,
    /// The migrated tables' schemas as planned, to tell which tables a DDL
    /// statement inside the window changes.
    pub schemas: drc_capture::schema::ddl::SchemaSet,
    /// Snapshot position of each table without a key.
    pub exact: HashMap<(String, String), BinlogPos>,
    pub tables: HashSet<(String, String)>,
    /// `--tables` as a capture filter: the decoder keeps only the rows and
    /// DDL of matching tables (tables a DDL creates after the snapshot too).
    pub filter: drc_capture::filter::Filter,
    /// Conflict policy after the window.
    pub policy: ConflictPolicy,
}

impl Catchup {
    /// Whether a DDL statement at `pos`, inside the window, replays exactly
    /// (see the module docs); the reason when not.
    fn replayable_in_window(
        &self,
        database: &str,
        statement: &str,
        pos: &BinlogPos,
    ) -> std::result::Result<(), String> {
        let plan = self
            .schemas
            .plan_ddl(database, statement)
            .map_err(|e| format!("which tables it changes cannot be told ({e})"))?;
        let touched = plan.effect.touched();
        if touched.is_empty() {
            return Err(
                "it is not a statement on tables (a view, trigger, routine or database)".into(),
            );
        }
        let late: Vec<String> = touched
            .iter()
            .filter(|k| {
                self.table_window
                    .get(*k)
                    .is_some_and(|end| in_snapshot(&pos.file, pos.pos, end))
            })
            .map(|(db, t)| format!("{db}.{t}"))
            .collect();
        if late.is_empty() {
            Ok(())
        } else {
            Err(format!("a chunk of {} was read after it", late.join(", ")))
        }
    }
}

/// What a catch-up run did.
#[derive(Debug, Clone, Default)]
pub struct CatchupStats {
    pub transactions: u64,
    pub rows: u64,
    /// Source position of the last applied transaction.
    pub applied: Option<BinlogPos>,
    /// Commit time of the last applied transaction (µs since the epoch).
    pub last_commit_us: i64,
}

/// Runs the catch-up into `sink` until `until` holds.
pub async fn run(
    c: &Catchup,
    sink: &mut AnySink,
    until: Until,
    progress: Arc<dyn Progress>,
) -> Result<CatchupStats> {
    let cp = sink
        .checkpoint(&c.stream)
        .await
        .map_err(|e| Error::Catchup(format!("read the checkpoint: {e}")))?;
    let from = match cp.position.as_ref() {
        Some(p) if cp.offset > 0 && !p.file.is_empty() => BinlogPos::new(p.file.clone(), p.pos),
        _ => c.start.clone(),
    };
    let until = match until {
        Until::CaughtUp => Until::Position(source_head(&c.source_url).await?),
        other => other,
    };
    if let Until::Position(p) = &until {
        if pos_le(p, &from) {
            return Ok(CatchupStats {
                applied: Some(from),
                ..Default::default()
            });
        }
    }
    let in_window = pos_le(&from, &c.window_end) && from != c.window_end;
    if in_window {
        sink.set_conflict_handling(ConflictPolicy::Overwrite, false);
    } else {
        sink.set_conflict_handling(c.policy, true);
    }
    let mut opts = CaptureOptions::new(c.source_url.clone(), StartAt::FilePos(from.clone()));
    opts.heartbeat = HEARTBEAT;
    opts.decoder.filter = c.filter.clone();
    opts.replica_server_id = c.replica_server_id;
    opts.schema_history = Some(c.schema_history.clone());
    opts.max_reconnects = 20;
    let mut s = Applying {
        c,
        sink,
        until,
        in_window,
        next_offset: cp.offset + 1,
        batch: Batch {
            stream: c.stream.clone(),
            ..Default::default()
        },
        rows_pending: 0,
        stats: CatchupStats {
            applied: Some(from.clone()),
            ..Default::default()
        },
        progress,
        last_report: Instant::now(),
        error: None,
        seen: from.clone(),
        last_txn: Instant::now(),
    };
    match capture::run_with(opts, &mut s).await {
        Ok(_) | Err(CaptureError::Stop) => {}
        Err(e) => {
            return Err(match s.error.take() {
                Some(e) => e,
                None => Error::Catchup(format!("capture: {e}")),
            })
        }
    }
    if let Some(e) = s.error.take() {
        return Err(e);
    }
    Ok(s.stats)
}

struct Applying<'a> {
    c: &'a Catchup,
    sink: &'a mut AnySink,
    until: Until,
    in_window: bool,
    next_offset: u64,
    batch: Batch,
    rows_pending: usize,
    stats: CatchupStats,
    progress: Arc<dyn Progress>,
    last_report: Instant,
    error: Option<Error>,
    /// Position of the last transaction handed over (applied or not ours).
    seen: BinlogPos,
    last_txn: Instant,
}

impl Applying<'_> {
    fn stop(&mut self, e: Error) -> CaptureError {
        let msg = e.to_string();
        self.error = Some(e);
        CaptureError::Output(msg)
    }

    async fn flush(&mut self) -> std::result::Result<(), CaptureError> {
        if self.batch.offsets.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                stream: self.c.stream.clone(),
                ..Default::default()
            },
        );
        let mut attempt = 0;
        loop {
            match self.sink.apply(&batch).await {
                Ok(()) => break,
                Err(ApplyError::Transient { message, .. }) if attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(attempt, %message, "catch-up: the target refused a batch for now; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(self.stop(Error::Catchup(format!("apply: {e}")))),
            }
        }
        self.stats.transactions += batch.transactions.len() as u64;
        self.stats.rows += batch.rows() as u64;
        if let Some(p) = batch.transactions.last().and_then(|t| t.position.as_ref()) {
            self.stats.applied = Some(BinlogPos::new(p.file.clone(), p.pos));
        }
        self.rows_pending = 0;
        if self.last_report.elapsed() >= Duration::from_secs(5) {
            self.last_report = Instant::now();
            let lag = lag_s(self.stats.last_commit_us);
            self.progress.line(&format!(
                "catch-up: {} transactions, {} rows applied; lag {lag:.1} s",
                self.stats.transactions, self.stats.rows
            ));
        }
        Ok(())
    }

    /// Whether the target position is reached (everything up to it handed
    /// over; the caller flushes before stopping).
    fn done(&self) -> bool {
        match &self.until {
            Until::Position(p) => pos_le(p, &self.seen),
            _ => false,
        }
    }
}

fn lag_s(commit_us: i64) -> f64 {
    if commit_us == 0 {
        return 0.0;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    ((now - commit_us) as f64 / 1e6).max(0.0)
}

impl TxnSink for Applying<'_> {
    async fn accept(&mut self, txn: AssembledTxn) -> std::result::Result<(), CaptureError> {
        let mut txn = txn.into_transaction()?;
        let pos = txn
            .position
            .as_ref()
            .map(|p| BinlogPos::new(p.file.clone(), p.pos))
            .unwrap_or_else(|| BinlogPos::new("", 0));
        let in_window = pos_le(&pos, &self.c.window_end);
        if self.in_window && !in_window {
            // The first change past the window: what comes now is applied
            // under the configured policy.
            self.flush().await?;
            self.sink.set_conflict_handling(self.c.policy, true);
            self.in_window = false;
        }
        // DDL that reaches here names a migrated table (or database): the
        // capture's filter left the rest out.
        if let Some(ddl) = txn.ddl.as_ref().filter(|d| !d.statement.trim().is_empty()) {
            if in_window {
                if let Err(why) = self
                    .c
                    .replayable_in_window(&ddl.database, &ddl.statement, &pos)
                {
                    return Err(self.stop(Error::Catchup(format!(
                        "a DDL statement on a migrated database ran during the snapshot, at {}:{} ({}), \
                         and {why}: the snapshot may already hold its effect, so it can neither be \
                         replayed nor skipped safely; drop the migrated tables and the drc.migrate \
                         tables on the target and start the migration again",
                        pos.file,
                        pos.pos,
                        ddl.statement.chars().take(200).collect::<String>()
                    ))));
                }
            }
        }
        let c = self.c;
        txn.changes.retain(|ch| {
            let key = (ch.schema.clone(), ch.table.clone());
            let ours = c.tables.contains(&key)
                || (!crate::source::SKIPPED_DATABASES.contains(&ch.schema.as_str())
                    && c.filter.matches(&ch.schema, &ch.table));
            if !ours {
                return false;
            }
            match c.exact.get(&key) {
                Some(snap) => !in_snapshot(&pos.file, pos.pos, snap),
                None => true,
            }
        });
        let offset = self.next_offset;
        self.next_offset += 1;
        self.seen = pos.clone();
        self.last_txn = Instant::now();
        self.stats.last_commit_us = txn.commit_ts_us;
        self.batch.last_offset = offset;
        if txn.changes.is_empty() && txn.ddl.is_none() {
            // Nothing of the migration in it; its offset is a hole.
            if self.done() {
                self.flush().await?;
                return Err(CaptureError::Stop);
            }
            return Ok(());
        }
        self.rows_pending += txn.changes.len();
        self.batch.offsets.push(offset);
        self.batch.transactions.push(txn);
        if self.batch.transactions.len() >= BATCH_TXNS || self.rows_pending >= BATCH_ROWS {
            self.flush().await?;
        }
        if self.done() {
            self.flush().await?;
            return Err(CaptureError::Stop);
        }
        Ok(())
    }

    async fn idle(&mut self) -> std::result::Result<(), CaptureError> {
        self.flush().await?;
        // Idle means nothing is buffered right now, not the binlog's end:
        // stop at the position waited for, or once the stream is quiet.
        match &self.until {
            Until::Position(_) if self.done() || self.last_txn.elapsed() >= QUIET => {
                Err(CaptureError::Stop)
            }
            _ => Ok(()),
        }
    }
}

/// The source's current binlog position.
async fn source_head(url: &str) -> Result<BinlogPos> {
    let opts = mysql_async::Opts::from_url(url)
        .map_err(|e| Error::Catchup(format!("bad source URL: {e}")))?;
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| Error::Catchup(format!("connect to the source: {e}")))?;
    let head = crate::source::head(&mut conn).await;
    let _ = conn.disconnect().await;
    head
}
