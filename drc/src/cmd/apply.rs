//! `drc apply --config FILE`: runs the `[[apply]]` pipelines of a region's
//! config until SIGINT/SIGTERM. Each pipeline subscribes to one stream at a
//! relay and writes it into one sink, from the sink's own checkpoint.
//!
//! ```toml
//! [[apply]]
//! stream = "a.shop"
//! subscriber = "apply-jsonl"          # the name the relay knows it by (retention, status)
//! relay = { url = "http://127.0.0.1:7400", insecure_plaintext = true }
//! include = ["shop.*"]                # optional; also exclude, exclude_origins
//! max_batch_rows = 20000              # optional bounds of one sink batch
//! max_batch_bytes = 33554432
//! max_batch_delay_ms = 200
//! sink = { kind = "jsonl", path = "/var/lib/drc/out/a.shop.jsonl", max_file_bytes = 268435456 }
//! ```
//!
//! `sink.kind` picks the sink; the other keys of `sink` are that sink's
//! settings (for `jsonl`: `path` — a file or `-` for standard output —,
//! `max_file_bytes`, `checkpoint`; for `mysql`: `url`, `conflict_policy`,
//! `origin`; for `postgres`: `url`, `conflict_policy`, `origin`,
//! `on_unsupported_ddl`, `create_missing_tables`, `schema_map`; for `nats`:
//! `url`, `jetstream_stream`, `subject`, `kv_bucket` and the rest of
//! `NatsSinkConfig`). A pipeline that meets a definite error
//! stops with it, and the others go on; the command exits non-zero once
//! every pipeline has ended if any failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use drc_apply::applier::{self, ApplierConfig, ApplyStats};
use drc_apply::sink::jsonl::{JsonlConfig, JsonlSink};
use drc_relay::ClientConfig;
use serde::Deserialize;
use tokio::sync::watch;

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The region's TOML config (its `[[apply]]` entries).
    #[arg(long)]
    config: PathBuf,
    /// Run only the pipelines of this stream (repeatable; default: all).
    #[arg(long)]
    stream: Vec<String>,
}

fn default_max_batch_rows() -> usize {
    applier::DEFAULT_MAX_BATCH_ROWS
}

fn default_max_batch_bytes() -> usize {
    applier::DEFAULT_MAX_BATCH_BYTES
}

fn default_max_batch_delay_ms() -> u64 {
    applier::DEFAULT_MAX_BATCH_DELAY.as_millis() as u64
}

/// One pipeline: a stream from a relay into a sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// Stream to apply, e.g. `a.shop`.
    pub stream: String,
    /// Name the relay knows this pipeline by (retention keeps what it has
    /// not confirmed; `drc status` shows its lag). Unique per stream.
    pub subscriber: String,
    /// The relay to subscribe to (usually this region's).
    pub relay: ClientConfig,
    /// Tables to apply (`db.table` globs); all when empty.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables never applied.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Transactions that came from these origins are left out (besides this
    /// region's own: the streams of its `[[capture]]` entries and its
    /// `region` name, always left out so changes never loop back).
    #[serde(default)]
    pub exclude_origins: Vec<String>,
    /// Row changes per sink batch (a larger transaction goes alone).
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// Encoded transaction bytes per sink batch.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Longest a batch keeps growing while more keeps arriving, in
    /// milliseconds; a batch is applied at once when the relay has nothing
    /// more ready.
    #[serde(default = "default_max_batch_delay_ms")]
    pub max_batch_delay_ms: u64,
    /// Where the stream goes.
    pub sink: SinkConfig,
}

/// A sink, chosen by `kind`; the other keys are the sink's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkConfig {
    /// JSON lines in a file (rotated by size) or on standard output.
    Jsonl(JsonlConfig),
    /// A MySQL or MariaDB database, exactly once (checkpoint in `drc.checkpoints`).
    Mysql(drc_apply::sink::mysql::MySqlSinkConfig),
    /// A PostgreSQL database, exactly once (checkpoint in `drc.checkpoints`,
    /// types and DDL translated).
    Postgres(drc_apply::sink::postgres::PostgresSinkConfig),
    /// NATS JetStream, at-least-once with stable message ids (checkpoint in
    /// a key-value bucket).
    /// (Boxed: its settings are much larger than the other sinks'.)
    Nats(Box<drc_apply::sink::nats::NatsSinkConfig>),
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Jsonl(_) => "jsonl",
            SinkConfig::Mysql(_) => "mysql",
            SinkConfig::Postgres(_) => "postgres",
            SinkConfig::Nats(_) => "nats",
        }
    }
}

impl ApplyConfig {
    /// The applier's settings.
    pub fn applier_config(&self) -> ApplierConfig {
        ApplierConfig {
            stream: self.stream.clone(),
            relay: self.relay.clone(),
            subscriber: self.subscriber.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            exclude_origins: self.exclude_origins.clone(),
            max_batch_rows: self.max_batch_rows,
            max_batch_bytes: self.max_batch_bytes,
            max_batch_delay: Duration::from_millis(self.max_batch_delay_ms),
        }
    }
}

/// Checks `[[apply]]` entries; every message names the entry and the key.
pub fn validate(entries: &[ApplyConfig]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut outputs = std::collections::HashSet::new();
    for (i, a) in entries.iter().enumerate() {
        if !crate::config::valid_stream_name(&a.stream) {
            bail!(
                "apply[{i}].stream = {:?}: use letters, digits, '.', '_' and '-'",
                a.stream
            );
        }
        if a.subscriber.is_empty() {
            bail!("apply[{i}].subscriber is empty; name the pipeline (e.g. \"apply-jsonl\")");
        }
        if !seen.insert((&a.stream, &a.subscriber)) {
            bail!(
                "apply[{i}]: stream {:?} with subscriber {:?} is configured twice; give each pipeline its own subscriber",
                a.stream,
                a.subscriber
            );
        }
        a.applier_config()
            .validate()
            .map_err(|e| anyhow::anyhow!("apply[{i}]: {e}"))?;
        match &a.sink {
            SinkConfig::Jsonl(j) => {
                j.validate()
                    .map_err(|e| anyhow::anyhow!("apply[{i}]: {e}"))?;
                if !j.is_stdout() && !outputs.insert(j.path.clone()) {
                    bail!(
                        "apply[{i}].sink.path = {:?} is used by another pipeline; give each its own file",
                        j.path
                    );
                }
            }
            SinkConfig::Mysql(m) => {
                m.validate()
                    .map_err(|e| anyhow::anyhow!("apply[{i}].sink: {e}"))?;
            }
            SinkConfig::Postgres(p) => {
                p.validate()
                    .map_err(|e| anyhow::anyhow!("apply[{i}].sink: {e}"))?;
            }
            SinkConfig::Nats(n) => {
                n.validate()
                    .map_err(|e| anyhow::anyhow!("apply[{i}]: {e}"))?;
            }
        }
    }
    Ok(())
}

/// The `[[apply]]` entries of a region's config file.
pub fn load(path: &Path) -> anyhow::Result<Vec<ApplyConfig>> {
    Ok(crate::config::Config::load(path)?.appliers())
}

/// Runs one pipeline until `stop` or a definite error.
async fn run_one(entry: ApplyConfig, stop: watch::Receiver<bool>) -> anyhow::Result<ApplyStats> {
    let cfg = entry.applier_config();
    match entry.sink {
        SinkConfig::Jsonl(j) => {
            let mut sink = JsonlSink::new(j)?;
            Ok(applier::run(cfg, &mut sink, stop).await?)
        }
        SinkConfig::Mysql(m) => {
            let mut sink = drc_apply::sink::mysql::MySqlSink::connect(m).await?;
            Ok(applier::run(cfg, &mut sink, stop).await?)
        }
        SinkConfig::Postgres(p) => {
            let mut sink = drc_apply::sink::postgres::PostgresSink::connect(p).await?;
            Ok(applier::run(cfg, &mut sink, stop).await?)
        }
        SinkConfig::Nats(n) => {
            let mut sink = drc_apply::sink::nats::NatsSink::new(*n)?;
            Ok(applier::run(cfg, &mut sink, stop).await?)
        }
    }
}

/// Runs every pipeline until `stop` turns true. A pipeline that fails stops
/// alone (logged at once); the error of the first failed one is returned
/// once all have ended.
pub async fn run_pipelines(
    entries: Vec<ApplyConfig>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    validate(&entries)?;
    let mut tasks = tokio::task::JoinSet::new();
    for entry in entries {
        let rx = stop.clone();
        let name = format!(
            "{} -> {} ({})",
            entry.stream,
            entry.sink.kind(),
            entry.subscriber
        );
        tasks.spawn(async move { (name, run_one(entry, rx).await) });
    }
    let mut failed: Option<anyhow::Error> = None;
    let mut count = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Ok(stats))) => tracing::info!(
                pipeline = %name,
                transactions = stats.transactions,
                rows = stats.rows,
                batches = stats.batches,
                last_offset = stats.last_offset,
                "apply stopped"
            ),
            Ok((name, Err(e))) => {
                tracing::error!(pipeline = %name, error = %format!("{e:#}"), "apply failed");
                count += 1;
                failed.get_or_insert(e.context(format!("apply {name}")));
            }
            Err(e) => {
                count += 1;
                failed.get_or_insert(anyhow::anyhow!("apply task: {e}"));
            }
        }
    }
    match failed {
        Some(e) if count > 1 => Err(e.context(format!("{count} pipelines failed"))),
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn run(a: ApplyArgs) -> anyhow::Result<()> {
    let mut entries = load(&a.config)?;
    if !a.stream.is_empty() {
        entries.retain(|e| a.stream.contains(&e.stream));
    }
    if entries.is_empty() {
        bail!(
            "{} has no [[apply]] entry{}",
            a.config.display(),
            if a.stream.is_empty() {
                String::new()
            } else {
                format!(" for stream {}", a.stream.join(", "))
            }
        );
    }
    let roles = crate::daemon::Roles::Apply;
    crate::daemon::run(crate::config::Config::load(&a.config)?, roles, entries)
}
