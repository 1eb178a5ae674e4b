//! `drc capture`: print a source's transactions as JSON lines (or decode and
//! discard them, for benchmarks).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, ValueEnum};
use drc_capture::assemble::{AssembledTxn, DEFAULT_SPILL_THRESHOLD};
use drc_capture::capture::{self, CaptureOptions, StartAt, DEFAULT_REPLICA_SERVER_ID};
use drc_capture::decoder::{DecoderOptions, StreamDecoder};
use drc_capture::filter::Filter;
use drc_capture::output::jsonl;
use drc_capture::position::BinlogPos;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per transaction (see the README for the format).
    Jsonl,
    /// Decode everything, print nothing (for benchmarks).
    Null,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["source", "binlog_file", "config"])))]
#[command(group(ArgGroup::new("start").args(["from_start", "from_now", "gtid", "file"])))]
pub struct CaptureArgs {
    /// Run the `[[capture]]` entries of this region config as a daemon,
    /// publishing to their relays (with --stream: only that one).
    #[arg(long, conflicts_with_all = ["relay", "format", "stop_at_end", "from_start", "from_now", "gtid", "file"])]
    config: Option<PathBuf>,
    /// Source server: mysql://USER:PASS@HOST:PORT.
    #[arg(long)]
    source: Option<String>,
    /// Read binlog files from disk instead (in the order given; .gz accepted).
    #[arg(long = "binlog-file", num_args = 1..)]
    binlog_file: Vec<PathBuf>,
    /// Start at the oldest binlog the server has.
    #[arg(long)]
    from_start: bool,
    /// Start at the server's current position (the default).
    #[arg(long)]
    from_now: bool,
    /// Start after this GTID set (MariaDB `0-1-42,1-2-7` or MySQL `uuid:1-42`).
    #[arg(long)]
    gtid: Option<String>,
    /// Start at this binlog file (with --pos).
    #[arg(long, requires = "pos")]
    file: Option<String>,
    /// Offset in --file where an event starts.
    #[arg(long, requires = "file")]
    pos: Option<u64>,
    /// Only these tables (`db.table` globs, or a database name). Repeatable.
    #[arg(long)]
    include: Vec<String>,
    /// Never these tables (`db.table` globs, or a database name). Repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Exit 0 after the last event the server has.
    #[arg(long)]
    stop_at_end: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Server id the capture registers with as a replica.
    #[arg(long, default_value_t = DEFAULT_REPLICA_SERVER_ID)]
    server_id: u32,
    /// Persist the schema history in this file (needed to resume at an old
    /// position when binlog_row_metadata is MINIMAL).
    #[arg(long)]
    schema_history: Option<PathBuf>,
    /// Transactions larger than this many bytes spill to disk.
    #[arg(long, default_value_t = DEFAULT_SPILL_THRESHOLD)]
    spill_threshold: usize,
    /// Publish to this relay instead of printing (`https://HOST:PORT`, or
    /// `http://127.0.0.1:PORT` with --relay-insecure-plaintext); the capture
    /// resumes where the relay's copy of the stream ends.
    #[arg(long, requires_all = ["source", "stream"])]
    relay: Option<String>,
    /// Stream name at the relay, e.g. `a.shop`.
    #[arg(long)]
    stream: Option<String>,
    /// CA certificate that signs the relay's certificate.
    #[arg(long, requires_all = ["relay_cert", "relay_key"])]
    relay_ca: Option<PathBuf>,
    /// This capture's client certificate.
    #[arg(long)]
    relay_cert: Option<PathBuf>,
    /// This capture's client key.
    #[arg(long)]
    relay_key: Option<PathBuf>,
    /// Talk to the relay without TLS (loopback or unix socket only).
    #[arg(long)]
    relay_insecure_plaintext: bool,
}

/// `drc capture --config FILE`: the config's captures as a daemon.
fn from_config(path: &std::path::Path, only: Option<&str>) -> anyhow::Result<()> {
    let mut cfg = crate::config::Config::load(path)?;
    if let Some(stream) = only {
        cfg.capture.retain(|c| c.stream == stream);
        if cfg.capture.is_empty() {
            bail!("{} has no [[capture]] for stream {stream}", path.display());
        }
    }
    if cfg.capture.is_empty() {
        bail!("{} has no [[capture]] entry", path.display());
    }
    let roles = crate::daemon::Roles::Capture;
    crate::daemon::run(cfg, roles, Vec::new())
}

struct Out {
    format: Format,
    w: std::io::BufWriter<std::io::Stdout>,
    buf: Vec<u8>,
    txns: u64,
    changes: u64,
}

impl Out {
    fn emit(&mut self, mut t: AssembledTxn) -> drc_capture::error::Result<()> {
        self.txns += 1;
        self.changes += t.change_count();
        if self.format == Format::Jsonl {
            jsonl::write_txn(&mut self.w, &mut t, &mut self.buf)?;
        } else {
            // Visit spilled changes too, so `null` costs what decoding costs.
            t.for_each_change(|_| Ok(()))?;
        }
        Ok(())
    }
}

pub fn run(a: CaptureArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.config {
        return from_config(path, a.stream.as_deref());
    }
    let filter = Filter::new(&a.include, &a.exclude).map_err(anyhow::Error::msg)?;
    let decoder = DecoderOptions {
        filter,
        spill_threshold: a.spill_threshold,
        ..DecoderOptions::default()
    };
    let mut out = Out {
        format: a.format,
        w: std::io::BufWriter::with_capacity(1 << 20, std::io::stdout()),
        buf: Vec::with_capacity(1 << 16),
        txns: 0,
        changes: 0,
    };
    let started = Instant::now();
    if let Some(url) = &a.relay {
        return to_relay(&a, url, decoder);
    }
    if !a.binlog_file.is_empty() {
        if a.from_start || a.from_now || a.gtid.is_some() || a.file.is_some() {
            bail!("--binlog-file reads whole files: --from-start, --from-now, --gtid and --file/--pos apply to --source only");
        }
        let mut dec = StreamDecoder::offline(decoder);
        for path in &a.binlog_file {
            drc_capture::binlog::file::read_file(path, &mut dec, &mut |t| out.emit(t))
                .with_context(|| format!("read binlog file {}", path.display()))?;
        }
        if dec.in_transaction() {
            tracing::warn!("the last file ends inside a transaction; it was not printed");
        }
    } else {
        let url = a.source.clone().unwrap_or_default();
        let mut opts = CaptureOptions::new(url, start(&a));
        opts.stop_at_end = a.stop_at_end;
        opts.replica_server_id = a.server_id;
        opts.schema_history = a.schema_history.clone();
        opts.decoder = decoder;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        let stats = rt
            .block_on(capture::run(opts, |t| out.emit(t)))
            .context("capture")?;
        tracing::debug!(reconnects = stats.reconnects, "capture finished");
    }
    out.w.flush().context("flush output")?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        transactions = out.txns,
        changes = out.changes,
        seconds = format!("{secs:.3}"),
        changes_per_s = format!("{:.0}", out.changes as f64 / secs.max(1e-9)),
        "capture done"
    );
    Ok(())
}

fn start(a: &CaptureArgs) -> StartAt {
    if a.from_start {
        StartAt::FromStart
    } else if let Some(g) = &a.gtid {
        StartAt::Gtid(g.clone())
    } else if let (Some(f), Some(p)) = (&a.file, a.pos) {
        StartAt::FilePos(BinlogPos::new(f.clone(), p))
    } else {
        StartAt::FromNow
    }
}

/// `--relay`: publish until SIGINT/SIGTERM (or the end with --stop-at-end).
/// The start options apply only while the relay holds nothing of the stream.
fn to_relay(a: &CaptureArgs, url: &str, decoder: DecoderOptions) -> anyhow::Result<()> {
    let stream = a.stream.clone().unwrap_or_default();
    if !crate::config::valid_stream_name(&stream) {
        bail!("--stream {stream:?}: use letters, digits, '.', '_' and '-'");
    }
    let mut relay = drc_relay::config::ClientConfig::new(url);
    relay.insecure_plaintext = a.relay_insecure_plaintext;
    if let (Some(ca), Some(cert), Some(key)) = (&a.relay_ca, &a.relay_cert, &a.relay_key) {
        relay.tls = Some(drc_relay::tls::TlsConfig {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    relay
        .validate()
        .map_err(|e| anyhow::anyhow!("--relay: {e}"))?;
    let fallback = start(a);
    let mut opts = CaptureOptions::new(a.source.clone().unwrap_or_default(), fallback.clone());
    opts.stop_at_end = a.stop_at_end;
    opts.replica_server_id = a.server_id;
    opts.schema_history = a.schema_history.clone();
    opts.decoder = decoder;
    let rt = crate::cmd::runtime()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::cmd::shutdown_signal().await;
            let _ = tx.send(true);
        });
        crate::publish::capture_to_relay(&stream, opts, relay, fallback, rx).await
    })
}
