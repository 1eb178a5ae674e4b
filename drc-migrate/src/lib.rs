//! DRC migrate: moves a MariaDB database into MariaDB/MySQL or PostgreSQL
//! once, while the source keeps taking writes.
//!
//! The phases ([`run`]):
//!
//! 1. **Preflight** ([`source::preflight`], [`target::Target`]): binlog
//!    settings and privileges (the capture's checks), every selected table
//!    readable, tables without a key listed (they take the whole-table path),
//!    the target reachable and empty (or holding this migration's state, with
//!    `--resume`), every table representable on the target. Nothing is
//!    written before all of it passes.
//! 2. **Schema**: databases and tables created on the target, secondary
//!    indexes and foreign keys left for after the load.
//! 3. **Snapshot** ([`snapshot`]): the binlog position is recorded first;
//!    chunks are then read in parallel, each in its own consistent snapshot
//!    (no global lock at any moment), and streamed into the target; each
//!    chunk is recorded done in the transaction that loads it ([`state`]).
//! 4. **Indexes and objects**: deferred indexes and foreign keys, then views,
//!    routines and triggers (guarded so they do not fire again for replicated
//!    rows).
//! 5. **Catch-up** ([`catchup`]): the binlog from the recorded position,
//!    applied exactly-once by the apply sinks until caught up.
//! 6. **Verify**: `drc verify`'s comparison over every migrated table; the
//!    migration succeeds only if the target is identical.
//! 7. **Follow / cutover**: keep replicating, and on `--cutover` set the
//!    source read-only, apply the last transactions, verify, and report the
//!    downtime.

pub mod catchup;
pub mod error;
pub mod maria;
pub mod pg;
pub mod pgvalue;
pub mod plan;
pub mod report;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use drc_apply::sink::mysql::{ConflictPolicy, MySqlSink, MySqlSinkConfig};
use drc_capture::position::BinlogPos;
use drc_verify::Endpoint;

pub use error::{Error, Result};
pub use report::Report;

use crate::plan::{pos_le, Chunk};
use crate::state::{ChunkState, Phase};
use crate::target::Target;

/// The stream name of the catch-up's checkpoint on the target.
pub const STREAM: &str = "migrate";
/// Default number of chunks read and loaded at once.
pub const DEFAULT_PARALLEL: usize = 4;
/// Verification rounds on a source that is still written (each after a
/// further catch-up) before differences are reported.
const VERIFY_ROUNDS: usize = 3;

/// What to migrate and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The source as given (`mysql://...`), for the binlog capture.
    pub source_url: String,
    pub source: Endpoint,
    /// The target as given, for the apply sink.
    pub target_url: String,
    pub target: Endpoint,
    /// `db.table` globs; empty: every table outside the system databases.
    pub tables: Vec<String>,
    pub parallel: usize,
    pub chunk_rows: u64,
    /// Continue a migration the target holds state of.
    pub resume: bool,
    /// Keep replicating after the verify, until cancelled.
    pub follow: bool,
    /// Set the source read-only and finish (after the follow, if any).
    pub cutover: bool,
    /// Local state: the catch-up's schema history and the last report.
    pub state_dir: PathBuf,
    /// Conflict policy of the catch-up after the replay window.
    pub conflict_policy: ConflictPolicy,
    /// Server id the catch-up registers with on the source.
    pub replica_server_id: u32,
}

/// Progress callbacks (every method has an empty default; called from many
/// tasks, so they must be cheap).
pub trait Progress: Send + Sync {
    /// A phase starts.
    fn phase(&self, _name: &str) {}
    /// A line worth showing (plan, notes, catch-up lag).
    fn line(&self, _msg: &str) {}
    /// The snapshot of `table` is planned: estimated rows and bytes.
    fn table_planned(&self, _table: &str, _est_rows: u64, _est_bytes: u64, _chunks: usize) {}
    /// Rows and bytes of `table` read since the last call.
    fn rows(&self, _table: &str, _rows: u64, _bytes: u64) {}
    /// A chunk of `table` is loaded.
    fn chunk_done(&self, _table: &str) {}
    /// The snapshot is over (bars can go).
    fn snapshot_done(&self) {}
}

/// Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Runs a migration; `cancel` resolves on Ctrl-C / SIGTERM (a `--follow`
/// then ends, with the cutover when `--cutover` is set; other phases stop
/// and can be resumed).
pub async fn run(
    opts: &Options,
    progress: Arc<dyn Progress>,
    cancel: impl std::future::Future<Output = ()> + Send,
) -> Result<Report> {
    let mut cancel = std::pin::pin!(cancel);
    let mut report = Report::default();
    let started = Instant::now();
    std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
        Error::Preflight(format!(
            "--state {}: cannot create it: {e}",
            opts.state_dir.display()
        ))
    })?;

    // 1. Preflight.
    progress.phase("preflight");
    let t = Instant::now();
    let ctl_pool = source::pool(&opts.source, source::Charset::Utf8, 1)?;
    let mut ctl = ctl_pool.get_conn().await.map_err(|e| {
        Error::Preflight(format!(
            "source {}: cannot connect: {e}",
            opts.source.addr()
        ))
    })?;
    // The binlog position before the schemas are read: a DDL statement
    // between the two is then in the catch-up's replay window, where it is
    // judged (catchup.rs), instead of falling between the schema the target
    // is created with and the first change replayed. A source without a
    // binary log fails here with no position, and the preflight says why.
    let early_start = source::head(&mut ctl).await.ok();
    let mut plan = source::preflight(&mut ctl, &opts.tables).await?;
    let target = Arc::new(Target::connect(&opts.target, opts.parallel).await?);
    for t in plan.tables.iter_mut() {
        t.copied = target.copied(t);
    }
    let label = opts.source.addr();
    let recorded = target.state().await?;
    match (&recorded, opts.resume) {
        (Some(s), false) => {
            return Err(Error::Preflight(format!(
                "the target holds a migration from {} (phase {}); rerun with --resume to \
                 continue it, or drop its tables and drc.migrate, drc.migrate_chunks to start over",
                s.source,
                s.phase.as_str()
            )))
        }
        (Some(s), true) if s.source != label => {
            return Err(Error::Preflight(format!(
                "the target holds a migration from {}, not from {label}; --resume continues a \
                 migration from the same source",
                s.source
            )))
        }
        (None, _) => {
            let existing = target.existing(&plan.tables).await?;
            if !existing.is_empty() {
                return Err(Error::Preflight(format!(
                    "the target is not empty: {} already exist there; migrate into an empty \
                     target, or drop them",
                    existing.join(", ")
                )));
            }
        }
        _ => {}
    }
    let problems = target.representable(&mut ctl, &plan.tables).await?;
    if !problems.is_empty() {
        return Err(Error::Preflight(format!(
            "the target cannot hold these tables:\n  {}",
            problems.join("\n  ")
        )));
    }
    report.plan_lines(&plan);
    for l in report.plan.iter() {
        progress.line(l);
    }
    report.phase("preflight", t.elapsed());

    // 2. Schema and chunk plan (a resumed run past this phase keeps both).
    let tables = Arc::new(plan.tables.clone());
    let resumed_phase = recorded.as_ref().map(|s| s.phase);
    let deferred = if resumed_phase.is_none_or(|p| p == Phase::Schema) {
        progress.phase("schema");
        let t = Instant::now();
        let start = match early_start {
            Some(p) => p,
            None => source::head(&mut ctl).await?,
        };
        target.init_state(&label, &start).await?;
        let deferred = target
            .create_tables(&mut ctl, &tables, &plan.databases)
            .await?;
        let mut states = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            for c in plan::chunks(&mut ctl, i, t, opts.chunk_rows).await? {
                states.push(ChunkState::planned(t, &c));
            }
        }
        target.record_plan(&states).await?;
        report.phase("schema", t.elapsed());
        deferred
    } else {
        target.deferred(&mut ctl, &tables).await?
    };

    // 3. Snapshot, each table's indexes built as soon as its rows are in
    // (while other tables still load).
    let st = target
        .state()
        .await?
        .ok_or_else(|| error::target("read drc.migrate", "the state vanished"))?;
    let finishing = st.phase < Phase::Finished;
    let deferred = Arc::new(deferred);
    let (loaded_tx, loaded_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let finisher = finishing.then(|| {
        tokio::spawn(finish_tables(
            Arc::clone(&target),
            Arc::clone(&deferred),
            Arc::clone(&tables),
            loaded_rx,
            Arc::clone(&progress),
        ))
    });
    let chunks = chunks_of(&st.chunks, &tables)?;
    let todo: Vec<Chunk> = chunks.iter().filter(|c| !c.done).cloned().collect();
    if !todo.is_empty() {
        progress.phase("snapshot");
        let t = Instant::now();
        for (i, tb) in tables.iter().enumerate() {
            let n = chunks.iter().filter(|c| c.table == i).count();
            let left: u64 = chunks
                .iter()
                .filter(|c| c.table == i && !c.done)
                .map(|c| c.est_rows)
                .sum();
            progress.table_planned(&tb.full_name(), left, tb.est_bytes, n);
        }
        let read_pool = source::pool(&opts.source, target.source_charset(), opts.parallel)?;
        let snap = tokio::select! {
            r = snapshot::run(
                &read_pool,
                Arc::clone(&target),
                Arc::clone(&tables),
                todo,
                snapshot::Settings {
                    parallel: opts.parallel,
                    chunk_rows: opts.chunk_rows,
                },
                Arc::clone(&progress),
                loaded_tx.clone(),
            ) => r,
            _ = &mut cancel => return Err(Error::Interrupted),
        };
        let _ = read_pool.disconnect().await;
        progress.snapshot_done();
        let snap = snap?;
        report.snapshot_rows = snap.rows;
        report.snapshot_bytes = snap.bytes;
        report.phase("snapshot", t.elapsed());
    }
    // Tables loaded by an earlier run (the finisher skips repeats).
    for i in 0..tables.len() {
        let _ = loaded_tx.send(i);
    }
    drop(loaded_tx);
    let st = target
        .state()
        .await?
        .ok_or_else(|| error::target("read drc.migrate", "the state vanished"))?;
    report.rows = st.chunks.iter().map(|c| c.rows).sum();
    report.tables = tables.len();

    // 4. The rest of the indexes, foreign keys, other objects.
    if let Some(finisher) = finisher {
        progress.phase("indexes");
        let t = Instant::now();
        finisher
            .await
            .map_err(|e| error::target("build indexes", e))??;
        target.finish_all(&deferred).await?;
        let (created, skipped) = target
            .create_objects(&mut ctl, &plan.objects, &deferred)
            .await?;
        report.objects_created = created;
        report.objects_skipped = skipped;
        target.set_phase(Phase::Finished).await?;
        report.phase("indexes", t.elapsed());
    }
    // 5. Catch-up.
    progress.phase("catch-up");
    let t = Instant::now();
    let c = catchup_settings(opts, &st, &tables)?;
    let mut sink = connect_sink(opts).await?;
    let r = tokio::select! {
        r = catchup::run(&c, &mut sink, catchup::Until::CaughtUp, Arc::clone(&progress)) => r,
        _ = &mut cancel => return Err(Error::Interrupted),
    }?;
    report.catchup_transactions += r.transactions;
    report.catchup_rows += r.rows;
    report.phase("catch-up", t.elapsed());

    // 6. Verify.
    progress.phase("verify");
    let t = Instant::now();
    verify_loop(
        opts,
        &c,
        &mut sink,
        &tables,
        progress.clone(),
        !opts.cutover,
    )
    .await?;
    target.set_phase(Phase::Verified).await?;
    target.finalize(&deferred).await?;
    report.phase("verify", t.elapsed());

    // 7. Follow, cutover.
    if opts.follow {
        progress.phase("follow");
        progress.line(if opts.cutover {
            "following the source; Ctrl-C (or SIGTERM) starts the cutover"
        } else {
            "following the source; Ctrl-C (or SIGTERM) stops (rerun with --resume to go on)"
        });
        let t = Instant::now();
        let r = tokio::select! {
            r = catchup::run(&c, &mut sink, catchup::Until::Forever, Arc::clone(&progress)) => Some(r?),
            _ = &mut cancel => None,
        };
        if let Some(r) = r {
            report.catchup_transactions += r.transactions;
        }
        report.phase("follow", t.elapsed());
        // The sink may have been cut off midway: reconnect for what follows.
        sink = connect_sink(opts).await?;
    }
    if opts.cutover {
        progress.phase("cutover");
        let t = Instant::now();
        cutover(
            opts,
            &mut ctl,
            &c,
            &mut sink,
            &tables,
            &mut report,
            progress.clone(),
        )
        .await?;
        target.finalize(&deferred).await?;
        report.phase("cutover", t.elapsed());
    }
    report.total = started.elapsed();
    let _ = std::fs::write(opts.state_dir.join("report.txt"), report.human());
    Ok(report)
}

/// Builds each table's deferred indexes as its index arrives on `loaded`
/// (each table once, tables at the same time), until the channel closes.
async fn finish_tables(
    target: Arc<Target>,
    deferred: Arc<target::Deferred>,
    tables: Arc<Vec<source::SourceTable>>,
    mut loaded: tokio::sync::mpsc::UnboundedReceiver<usize>,
    progress: Arc<dyn Progress>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut jobs = Vec::new();
    while let Some(i) = loaded.recv().await {
        if !seen.insert(i) {
            continue;
        }
        if let Some(t) = tables.get(i) {
            progress.line(&format!("building the indexes of {}", t.full_name()));
        }
        let target = Arc::clone(&target);
        let deferred = Arc::clone(&deferred);
        jobs.push(tokio::spawn(async move {
            target.finish_table(&deferred, i).await
        }));
    }
    let mut first_err = None;
    for j in jobs {
        let r = j
            .await
            .map_err(|e| error::target("build indexes", e))
            .and_then(|r| r);
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The recorded chunks as plan chunks of `tables`; the recorded plan must
/// cover exactly the selected tables.
fn chunks_of(states: &[ChunkState], tables: &[source::SourceTable]) -> Result<Vec<Chunk>> {
    let index: HashMap<(&str, &str), usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.db(), t.name()), i))
        .collect();
    let mut out = Vec::with_capacity(states.len());
    let mut seen = HashSet::new();
    for s in states {
        let Some(&i) = index.get(&(s.db.as_str(), s.table.as_str())) else {
            return Err(Error::Preflight(format!(
                "the migration recorded on the target includes {}.{}, which --tables does not \
                 select now; resume with the same --tables",
                s.db, s.table
            )));
        };
        seen.insert(i);
        out.push(Chunk {
            table: i,
            seq: s.seq,
            lo: s.lo,
            hi: s.hi,
            est_rows: s.est_rows,
            done: s.done,
            rows: s.rows,
            snapshot: s.snapshot.clone(),
            lo_key: s.lo_key.clone(),
            hi_key: s.range_hi.clone(),
        });
    }
    if let Some(t) = tables.iter().enumerate().find(|(i, _)| !seen.contains(i)) {
        return Err(Error::Preflight(format!(
            "--tables selects {} but the migration recorded on the target does not include it; \
             resume with the same --tables",
            t.1.full_name()
        )));
    }
    Ok(out)
}

fn catchup_settings(
    opts: &Options,
    st: &state::State,
    tables: &[source::SourceTable],
) -> Result<catchup::Catchup> {
    let mut exact = HashMap::new();
    let mut table_window: HashMap<(String, String), drc_capture::position::BinlogPos> =
        HashMap::new();
    for ch in &st.chunks {
        let Some(p) = &ch.snapshot else { continue };
        let tw = table_window
            .entry((ch.db.clone(), ch.table.clone()))
            .or_insert_with(|| p.clone());
        if pos_le(tw, p) {
            *tw = p.clone();
        }
        if let Some(t) = tables
            .iter()
            .find(|t| t.db() == ch.db && t.name() == ch.table)
        {
            if !t.has_key() {
                exact.insert((ch.db.clone(), ch.table.clone()), p.clone());
            }
        }
    }
    // The newest chunk of any table.
    let window_end = table_window.values().fold(st.start.clone(), |end, p| {
        if pos_le(&end, p) {
            p.clone()
        } else {
            end
        }
    });
    Ok(catchup::Catchup {
        source_url: opts.source_url.clone(),
        replica_server_id: opts.replica_server_id,
        schema_history: opts.state_dir.join("schema-history"),
        stream: STREAM.into(),
        start: st.start.clone(),
        window_end,
        table_window,
        schemas: {
            let mut set = drc_capture::schema::ddl::SchemaSet::new();
            for t in tables {
                set.insert(t.schema.clone(), t.meta.clone());
            }
            set
        },
        exact,
        tables: tables
            .iter()
            .map(|t| (t.db().to_owned(), t.name().to_owned()))
            .collect(),
        // Without --tables: the migrated databases, whole.
        filter: drc_capture::filter::Filter::new(
            &if opts.tables.is_empty() {
                tables
                    .iter()
                    .map(|t| t.db().to_owned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect()
            } else {
                opts.tables.clone()
            },
            &[],
        )
        .map_err(|e| Error::Preflight(format!("--tables: {e}")))?,
        policy: opts.conflict_policy,
    })
}

async fn connect_sink(opts: &Options) -> Result<catchup::AnySink> {
    match opts.target.dialect {
        drc_verify::Dialect::Maria => {
            let mut cfg = MySqlSinkConfig::new(opts.target_url.clone());
            cfg.origin = Some(STREAM.into());
            cfg.conflict_policy = opts.conflict_policy;
            let s = MySqlSink::connect(cfg)
                .await
                .map_err(|e| Error::Catchup(format!("connect the apply sink: {e}")))?;
            Ok(catchup::AnySink::Maria(Box::new(s)))
        }
        drc_verify::Dialect::Postgres => {
            let mut cfg = drc_apply::sink::postgres::PostgresSinkConfig::new(pg_url(&opts.target));
            cfg.origin = Some(STREAM.into());
            cfg.conflict_policy = opts.conflict_policy;
            let s = drc_apply::sink::postgres::PostgresSink::connect(cfg)
                .await
                .map_err(|e| Error::Catchup(format!("connect the apply sink: {e}")))?;
            Ok(catchup::AnySink::Pg(Box::new(s)))
        }
    }
}

/// A tokio-postgres connection string for `ep` (key=value form, so any
/// password is passed as is).
pub fn pg_url(ep: &Endpoint) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut out = format!(
        "host={} port={} user={} dbname={}",
        q(&ep.host),
        ep.port,
        q(&ep.user),
        q(ep.database.as_deref().unwrap_or("postgres"))
    );
    if let Some(p) = &ep.password {
        out.push_str(&format!(" password={}", q(p)));
    }
    out
}

struct VerifyProgress(Arc<dyn Progress>);
impl drc_verify::Progress for VerifyProgress {
    fn table_done(&self, r: &drc_verify::TableReport) {
        self.0.line(&format!(
            "verify: {} {}",
            r.table,
            if r.diffs.is_empty() && r.diff_count == 0 {
                "identical"
            } else {
                "differs"
            }
        ));
    }
}

/// Verifies; on a source that may still be written (`live`), differences
/// are rechecked after a further catch-up, a few times, before they count.
async fn verify_loop(
    opts: &Options,
    c: &catchup::Catchup,
    sink: &mut catchup::AnySink,
    tables: &[source::SourceTable],
    progress: Arc<dyn Progress>,
    live: bool,
) -> Result<()> {
    let vopts = drc_verify::Options {
        source: opts.source.clone(),
        target: opts.target.clone(),
        tables: tables.iter().map(|t| t.full_name()).collect(),
        schema_map: Default::default(),
        tuning: drc_verify::Tuning {
            parallel: opts.parallel.max(1),
            ..Default::default()
        },
        repair_sql: None,
    };
    let rounds = if live { VERIFY_ROUNDS } else { 1 };
    let mut last = String::new();
    for round in 0..rounds {
        if round > 0 {
            progress
                .line("verify: differences found on a live source; catching up and checking again");
            catchup::run(c, sink, catchup::Until::CaughtUp, Arc::clone(&progress)).await?;
        }
        let r = drc_verify::verify(&vopts, Arc::new(VerifyProgress(Arc::clone(&progress))))
            .await
            .map_err(|e| Error::Verify(e.to_string()))?;
        if r.identical() {
            return Ok(());
        }
        last = r.human();
    }
    Err(Error::NotIdentical(last))
}

async fn cutover(
    opts: &Options,
    ctl: &mut mysql_async::Conn,
    c: &catchup::Catchup,
    sink: &mut catchup::AnySink,
    tables: &[source::SourceTable],
    report: &mut Report,
    progress: Arc<dyn Progress>,
) -> Result<()> {
    use mysql_async::prelude::Queryable;
    let t0 = Instant::now();
    ctl.query_drop("SET GLOBAL read_only = 1")
        .await
        .map_err(|e| {
            Error::Cutover(format!(
                "cannot set the source read-only: {e}; the migration's user needs the SUPER or \
             READ_ONLY ADMIN privilege (the source is unchanged and still writable)"
            ))
        })?;
    progress.line("cutover: source is read-only; applying the last transactions");
    let head: BinlogPos = source::head(ctl).await?;
    let r = catchup::run(
        c,
        sink,
        catchup::Until::Position(head.clone()),
        Arc::clone(&progress),
    )
    .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            return Err(Error::Cutover(format!(
                "{e}; the source stays read-only: fix the cause and rerun with --resume --cutover, \
                 or roll back with SET GLOBAL read_only = 0 on the source"
            )))
        }
    };
    report.catchup_transactions += r.transactions;
    verify_loop(opts, c, sink, tables, progress.clone(), false)
        .await
        .map_err(|e| {
            Error::Cutover(format!(
                "{e}; the source stays read-only: roll back with SET GLOBAL read_only = 0 on the \
                 source, or investigate and rerun with --resume --cutover"
            ))
        })?;
    let downtime = t0.elapsed();
    report.downtime = Some(downtime);
    report.cutover_position = Some(head);
    Ok(())
}
