//! `drc migrate`: a one-shot migration of a MariaDB database into MariaDB or
//! PostgreSQL (see the `drc-migrate` crate for the phases and guarantees).
//!
//! Exit status: 0 when the target is verified identical (and, with
//! `--cutover`, cut over), 1 when verification found differences, 2 on any
//! other error (nothing half-done is left that `--resume` cannot continue).
//! The plan, phases and progress go to stderr (bars on a terminal, a line
//! every few seconds otherwise); the final report to stdout.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use drc_apply::sink::mysql::ConflictPolicy;
use drc_migrate::{Options, Progress};
use drc_verify::Endpoint;

const EXIT_DIFFERENT: u8 = 1;
const EXIT_ERROR: u8 = 2;
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The MariaDB source: mysql://USER[:PASS]@HOST:PORT[?socket=PATH]. The
    /// user needs SELECT on the migrated tables, REPLICATION SLAVE and
    /// REPLICATION CLIENT (BINLOG MONITOR), and for --cutover SUPER or
    /// READ_ONLY ADMIN.
    #[arg(long)]
    source: String,
    /// The target: mysql://USER[:PASS]@HOST:PORT or
    /// postgres://USER[:PASS]@HOST:PORT/DB (source database `d` becomes
    /// schema `d` there).
    #[arg(long)]
    target: String,
    /// Environment variable holding the source's password.
    #[arg(long, value_name = "VAR")]
    source_password_env: Option<String>,
    /// Environment variable holding the target's password.
    #[arg(long, value_name = "VAR")]
    target_password_env: Option<String>,
    /// Tables to migrate: `db.table` globs, comma-separated (`shop.*`); a
    /// bare name is a database. Default: every table outside the system
    /// databases.
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Chunks read and loaded at once.
    #[arg(long, default_value_t = drc_migrate::DEFAULT_PARALLEL)]
    parallel: usize,
    /// Rows per snapshot chunk (estimated).
    #[arg(long, default_value_t = drc_migrate::plan::DEFAULT_CHUNK_ROWS)]
    chunk_rows: u64,
    /// Continue the migration the target holds state of (after a crash,
    /// Ctrl-C or a failed phase).
    #[arg(long)]
    resume: bool,
    /// After the verify, keep replicating until Ctrl-C / SIGTERM.
    #[arg(long)]
    follow: bool,
    /// Finish with a cutover: set the source read-only, apply the last
    /// transactions, verify, and report the downtime (with --follow: on
    /// Ctrl-C / SIGTERM).
    #[arg(long)]
    cutover: bool,
    /// Local state directory (the catch-up's schema history, the report).
    #[arg(long, value_name = "DIR", default_value = "drc-migrate-state")]
    state: PathBuf,
    /// Conflict policy of the catch-up once past the changes made during
    /// the snapshot: fail, overwrite or ignore.
    #[arg(long, default_value = "fail", value_parser = parse_policy)]
    conflict_policy: ConflictPolicy,
    /// Server id the catch-up registers with on the source (unique in the
    /// source's replication topology).
    #[arg(long, default_value_t = drc_capture::capture::DEFAULT_REPLICA_SERVER_ID + 1)]
    server_id: u32,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_policy(s: &str) -> Result<ConflictPolicy, String> {
    match s {
        "fail" => Ok(ConflictPolicy::Fail),
        "overwrite" => Ok(ConflictPolicy::Overwrite),
        "ignore" => Ok(ConflictPolicy::Ignore),
        _ => Err(format!("{s:?}: use fail, overwrite or ignore")),
    }
}

/// A mysql:// URL with the password put in (for the capture and sink, which
/// take URLs).
fn with_password(url: &str, ep: &Endpoint) -> String {
    match (&ep.password, url::Url::parse(url)) {
        (Some(p), Ok(mut u)) if u.password().is_none() => {
            let _ = u.set_password(Some(p));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

pub fn run(args: MigrateArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let differs = e
                .downcast_ref::<drc_migrate::Error>()
                .is_some_and(|e| matches!(e, drc_migrate::Error::NotIdentical(_)));
            ExitCode::from(if differs { EXIT_DIFFERENT } else { EXIT_ERROR })
        }
    }
}

fn run_inner(args: MigrateArgs) -> anyhow::Result<()> {
    let endpoint = super::verify::endpoint;
    let source = endpoint("source", &args.source, args.source_password_env.as_deref())?;
    let target = endpoint("target", &args.target, args.target_password_env.as_deref())?;
    if source.dialect != drc_verify::Dialect::Maria {
        bail!("--source must be a mysql:// URL (MariaDB)");
    }
    if args.parallel == 0 || args.chunk_rows == 0 {
        bail!("--parallel and --chunk-rows must be at least 1");
    }
    let opts = Options {
        source_url: with_password(&args.source, &source),
        target_url: with_password(&args.target, &target),
        source,
        target,
        tables: args
            .tables
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        parallel: args.parallel,
        chunk_rows: args.chunk_rows,
        resume: args.resume,
        follow: args.follow,
        cutover: args.cutover,
        state_dir: args.state.clone(),
        conflict_policy: args.conflict_policy,
        replica_server_id: args.server_id,
    };
    let progress: Arc<dyn Progress> = if args.quiet {
        Arc::new(drc_migrate::NoProgress)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Plain::default())
    };
    let runtime = super::runtime()?;
    let report = runtime.block_on(drc_migrate::run(&opts, progress, super::shutdown_signal()))?;
    print!("{}", report.human());
    Ok(())
}

/// Per-table bars and an overall bar on a terminal.
struct Bars {
    multi: indicatif::MultiProgress,
    total: Mutex<Option<indicatif::ProgressBar>>,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
    /// Bytes read so far and when the first arrived, for MB/s.
    bytes: Mutex<(u64, Option<Instant>)>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            total: Mutex::new(None),
            bars: Mutex::new(HashMap::new()),
            bytes: Mutex::new((0, None)),
        }
    }

    fn style(template: &str) -> indicatif::ProgressStyle {
        indicatif::ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str) {
        let _ = self.multi.println(format!("migrate: {name}"));
    }

    fn line(&self, msg: &str) {
        let _ = self.multi.println(msg);
    }

    fn table_planned(&self, table: &str, est_rows: u64, _est_bytes: u64, _chunks: usize) {
        let mut total = self.total.lock().unwrap_or_else(|e| e.into_inner());
        let t = total.get_or_insert_with(|| {
            let b = self.multi.add(indicatif::ProgressBar::new(0));
            b.set_style(Self::style(
                "{prefix:>30} [{bar:30}] {pos}/~{len} rows {per_sec} {msg} ETA {eta}",
            ));
            b.set_prefix("all tables");
            b
        });
        t.inc_length(est_rows.max(1));
        let bar = self.multi.add(indicatif::ProgressBar::new(est_rows.max(1)));
        bar.set_style(Self::style(
            "{prefix:>30} [{bar:30}] {pos}/~{len} rows {elapsed}",
        ));
        bar.set_prefix(table.to_owned());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(table.to_owned(), bar);
        }
    }

    fn rows(&self, table: &str, rows: u64, bytes: u64) {
        let mbs = {
            let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
            let started = *b.1.get_or_insert_with(Instant::now);
            b.0 += bytes;
            b.0 as f64 / 1e6 / started.elapsed().as_secs_f64().max(0.001)
        };
        if let Ok(bars) = self.bars.lock() {
            if let Some(bar) = bars.get(table) {
                bar.inc(rows);
                if bar.position() > bar.length().unwrap_or(0) {
                    bar.set_length(bar.position());
                }
            }
        }
        if let Some(t) = self.total.lock().ok().as_ref().and_then(|t| t.as_ref()) {
            t.inc(rows);
            t.set_message(format!("{mbs:.1} MB/s"));
        }
    }

    fn snapshot_done(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, b) in bars.drain() {
                b.finish_and_clear();
                self.multi.remove(&b);
            }
        }
        if let Some(t) = self.total.lock().ok().and_then(|mut t| t.take()) {
            t.finish_and_clear();
        }
    }
}

/// Plain lines when stderr is not a terminal.
#[derive(Default)]
struct Plain {
    state: Mutex<PlainState>,
}

#[derive(Default)]
struct PlainState {
    started: Option<Instant>,
    last: Option<Instant>,
    est_rows: u64,
    rows: u64,
    bytes: u64,
}

impl Progress for Plain {
    fn phase(&self, name: &str) {
        eprintln!("migrate: {name}");
    }

    fn line(&self, msg: &str) {
        eprintln!("{msg}");
    }

    fn table_planned(&self, _table: &str, est_rows: u64, _est_bytes: u64, _chunks: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.est_rows += est_rows;
            s.started.get_or_insert_with(Instant::now);
        }
    }

    fn rows(&self, _table: &str, rows: u64, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.rows += rows;
            s.bytes += bytes;
            if s.last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                s.last = Some(Instant::now());
                let secs = s
                    .started
                    .map_or(0.0, |t| t.elapsed().as_secs_f64())
                    .max(0.001);
                let rate = s.rows as f64 / secs;
                let eta = if rate > 0.0 && s.est_rows > s.rows {
                    format!("{:.0} s", (s.est_rows - s.rows) as f64 / rate)
                } else {
                    "-".into()
                };
                eprintln!(
                    "snapshot: {} of ~{} rows, {:.1} MB/s, ETA {eta}",
                    s.rows,
                    s.est_rows,
                    s.bytes as f64 / 1e6 / secs
                );
            }
        }
    }
}
