//! `drc verify`: compares a source and a target database (see the
//! `drc-verify` crate for how) and exits 0 when they are identical, 1 when
//! they differ, 2 when the comparison could not run.
//!
//! The report goes to stdout (`--json` for machines); progress goes to
//! stderr: bars when stderr is a terminal, a line per table and every few
//! seconds otherwise, nothing with `--quiet`.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use drc_verify::{Endpoint, Options, Progress, TableReport, Tuning};

/// Exit status when the databases differ.
const EXIT_DIFFERENT: u8 = 1;
/// Exit status when the comparison could not run.
const EXIT_ERROR: u8 = 2;
/// How often plain progress lines are printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The source: mysql://USER[:PASS]@HOST:PORT[/DB].
    #[arg(long)]
    source: String,
    /// The target: mysql://USER[:PASS]@HOST:PORT[/DB] or postgres://USER[:PASS]@HOST:PORT/DB.
    #[arg(long)]
    target: String,
    /// Environment variable holding the source's password (instead of the URL).
    #[arg(long, value_name = "VAR")]
    source_password_env: Option<String>,
    /// Environment variable holding the target's password (instead of the URL).
    #[arg(long, value_name = "VAR")]
    target_password_env: Option<String>,
    /// Tables to compare: `db.table` globs, comma-separated (`shop.*,crm.users`);
    /// a bare name means a database. Default: every base table of every
    /// non-system database of the source.
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// A source database held under another name on the target: `SRC=DST`
    /// (a PostgreSQL schema, or a MariaDB database). Repeatable.
    #[arg(long, value_name = "SRC=DST")]
    schema_map: Vec<String>,
    /// Write the statements that would make the target equal to the source
    /// to FILE (nothing is run).
    #[arg(long, value_name = "FILE")]
    repair_sql: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Rows per top-level chunk.
    #[arg(long, default_value_t = drc_verify::DEFAULT_CHUNK_ROWS)]
    chunk_rows: usize,
    /// Rows at or under which a differing chunk is compared row by row.
    #[arg(long, default_value_t = drc_verify::DEFAULT_LEAF_ROWS)]
    leaf_rows: usize,
    /// Sub-ranges a larger differing chunk is split into.
    #[arg(long, default_value_t = drc_verify::DEFAULT_SPLIT)]
    split: usize,
    /// Chunk queries in flight per server.
    #[arg(long, default_value_t = drc_verify::DEFAULT_PARALLEL)]
    parallel: usize,
    /// Differing rows listed per table (all are counted).
    #[arg(long, default_value_t = drc_verify::DEFAULT_MAX_DIFFS)]
    max_diffs: usize,
}

/// Runs the command and maps the outcome to the exit status.
pub fn run(args: VerifyArgs) -> ExitCode {
    match run_inner(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_DIFFERENT),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Parses `url` for `--{side}`, the password from `password_env` when named.
pub(super) fn endpoint(
    side: &'static str,
    url: &str,
    password_env: Option<&str>,
) -> anyhow::Result<Endpoint> {
    let mut ep = Endpoint::parse(side, url)?;
    if let Some(var) = password_env {
        match std::env::var(var) {
            Ok(p) => ep.password = Some(p),
            Err(_) => bail!(
                "--{side}-password-env names {var}, which is not set (export it, or put the password in the URL)"
            ),
        }
    }
    Ok(ep)
}

fn run_inner(args: VerifyArgs) -> anyhow::Result<bool> {
    let source = endpoint("source", &args.source, args.source_password_env.as_deref())?;
    let target = endpoint("target", &args.target, args.target_password_env.as_deref())?;
    let mut schema_map = BTreeMap::new();
    for m in &args.schema_map {
        let Some((a, b)) = m
            .split_once('=')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        else {
            bail!("--schema-map {m:?}: write SRC=DST, e.g. --schema-map shop=shop_b");
        };
        schema_map.insert(a.to_owned(), b.to_owned());
    }
    let opts = Options {
        source,
        target,
        tables: args
            .tables
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        schema_map,
        tuning: Tuning {
            chunk_rows: args.chunk_rows,
            leaf_rows: args.leaf_rows,
            split: args.split,
            parallel: args.parallel,
            max_diffs: args.max_diffs,
        },
        repair_sql: args.repair_sql.clone(),
    };
    let progress: Arc<dyn Progress> = if args.quiet {
        Arc::new(drc_verify::NoProgress)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Plain::default())
    };
    let runtime = super::runtime()?;
    let report = runtime
        .block_on(drc_verify::verify(&opts, progress.clone()))
        .context("verify")?;
    drop(progress);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encode the report")?
        );
    } else {
        print!("{}", report.human());
    }
    if let Some(path) = &args.repair_sql {
        if !args.quiet {
            eprintln!("repair statements written to {}", path.display());
        }
    }
    Ok(report.identical())
}

/// Progress bars on a terminal: one per table being compared.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn table_start(&self, table: &str, estimated_rows: u64) {
        let bar = self
            .multi
            .add(indicatif::ProgressBar::new(estimated_rows.max(1)));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {pos}/~{len} rows {elapsed}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(table.to_owned());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(table.to_owned(), bar);
        }
    }

    fn rows(&self, table: &str, rows_done: u64) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(bar) = bars.get(table) {
                if rows_done > bar.length().unwrap_or(0) {
                    bar.set_length(rows_done);
                }
                bar.set_position(rows_done);
            }
        }
    }

    fn table_done(&self, report: &TableReport) {
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(bar) = bars.remove(&report.table) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        let _ = self.multi.println(done_line(report));
    }
}

/// Plain lines when stderr is not a terminal: a line per finished table and
/// a progress line at most every few seconds.
#[derive(Default)]
struct Plain {
    last: Mutex<Option<Instant>>,
}

impl Progress for Plain {
    fn rows(&self, table: &str, rows_done: u64) {
        if let Ok(mut last) = self.last.lock() {
            if last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                *last = Some(Instant::now());
                eprintln!("verify: {table}: {rows_done} rows compared");
            }
        }
    }

    fn table_done(&self, report: &TableReport) {
        eprintln!("{}", done_line(report));
    }
}

fn done_line(r: &TableReport) -> String {
    format!(
        "verify: {}: {:?}, {} rows, {} chunks, {} differing rows, {:.2}s",
        r.table,
        r.status,
        r.source_rows,
        r.chunks,
        r.diff_count,
        r.elapsed.as_secs_f64()
    )
}
