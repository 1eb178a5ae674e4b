//! The applier: feeds one stream from its relay into a sink.
//!
//! 1. Reads the sink's checkpoint ([`Sink::checkpoint`]) — the sink, never
//!    memory, says where to resume.
//! 2. Subscribes at the relay from the next offset (zstd batches unless the
//!    relay is on this machine, the pipeline's filters, under its subscriber
//!    name).
//! 3. Groups whole transactions into [`Batch`]es bounded by rows, bytes and
//!    time. A transaction is never split; one larger than the bounds travels
//!    alone. A batch's `last_offset` covers the offsets the relay filtered out
//!    as well, so the checkpoint moves over them. A batch goes to the sink as
//!    soon as the relay has nothing more ready for it: what arrives while the
//!    sink works makes the next batch, so a backlog still travels in large
//!    batches, while a quiet stream is not held back waiting for more (the
//!    time bound is for a stream that keeps coming in small pieces).
//! 4. Calls [`Sink::apply`], then reports the offset to the relay
//!    (`Confirm`, at most about once a second) so its retention keeps only
//!    what the sink has not got yet.
//!
//! Transient errors of the relay or the sink are retried with backoff
//! ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]), each time from the sink's
//! checkpoint again; definite errors stop the pipeline with the error. The
//! stop signal lets the batch being built be applied, then returns the
//! statistics.
//!
//! Relay batches are read and decoded by a task of their own, a few batches
//! ahead of the sink ([`READ_AHEAD`]): a slow sink slows its subscription
//! (HTTP/2 flow control), never the relay, and memory stays bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drc_proto::v1 as pb;
use drc_relay::batch::RecordBatch;
use drc_relay::{ClientConfig, RelayClient, RelayError, SubscribeOptions, Subscription};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::{ApplyError, Result};
use crate::sink::{Batch, Sink};

/// Row changes per batch (a transaction with more travels alone).
pub const DEFAULT_MAX_BATCH_ROWS: usize = 20_000;
/// Encoded transaction bytes per batch (a larger transaction travels alone).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 32 << 20;
/// Longest a received transaction waits for more before its batch is applied,
/// while more keeps coming (a batch is applied at once when nothing more is
/// ready).
pub const DEFAULT_MAX_BATCH_DELAY: Duration = Duration::from_millis(200);
/// Retry backoff after a transient error: first wait, doubled up to the cap.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Shortest interval between two confirms to the relay.
pub const CONFIRM_INTERVAL: Duration = Duration::from_secs(1);
/// A confirm that takes longer is abandoned (the next one repeats it).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Relay batches decoded ahead of the sink.
pub const READ_AHEAD: usize = 4;

/// One pipeline: a stream, the relay that serves it, and how to batch it.
#[derive(Debug, Clone)]
pub struct ApplierConfig {
    /// Stream to apply, e.g. `a.shop`.
    pub stream: String,
    /// The relay to subscribe to.
    pub relay: ClientConfig,
    /// Name the relay knows this applier by (status, retention); empty for an
    /// anonymous subscriber, which confirms nothing.
    pub subscriber: String,
    /// `db.table` globs to apply (empty: all).
    pub include: Vec<String>,
    /// `db.table` globs never applied.
    pub exclude: Vec<String>,
    /// Transactions of these origins are left out.
    pub exclude_origins: Vec<String>,
    /// Row changes per batch.
    pub max_batch_rows: usize,
    /// Encoded transaction bytes per batch.
    pub max_batch_bytes: usize,
    /// Longest a transaction waits for more before its batch is applied, while
    /// more keeps coming; a batch is applied at once when nothing more is ready.
    pub max_batch_delay: Duration,
}

impl ApplierConfig {
    /// A config with the default bounds and no filters.
    pub fn new(stream: impl Into<String>, relay: ClientConfig) -> Self {
        Self {
            stream: stream.into(),
            relay,
            subscriber: String::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            exclude_origins: Vec::new(),
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_delay: DEFAULT_MAX_BATCH_DELAY,
        }
    }

    /// Refuses what cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.stream.is_empty() {
            return Err(ApplyError::Config(
                "stream is empty; name the stream to apply (e.g. \"a.shop\")".into(),
            ));
        }
        self.relay
            .validate()
            .map_err(|e| ApplyError::Config(format!("relay: {e}")))?;
        drc_relay::filter::Filter::new(&self.include, &self.exclude, &self.exclude_origins)
            .map_err(|e| ApplyError::Config(format!("include/exclude: {e}")))?;
        if self.max_batch_rows == 0 {
            return Err(ApplyError::Config(format!(
                "max_batch_rows must be at least 1 (default {DEFAULT_MAX_BATCH_ROWS})"
            )));
        }
        if self.max_batch_bytes == 0 {
            return Err(ApplyError::Config(format!(
                "max_batch_bytes must be at least 1 (default {DEFAULT_MAX_BATCH_BYTES})"
            )));
        }
        Ok(())
    }
}

/// What a run applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Transactions applied.
    pub transactions: u64,
    /// Row changes applied.
    pub rows: u64,
    /// Batches applied (filtered-only ranges included).
    pub batches: u64,
    /// The last checkpoint recorded (0 when nothing was applied by this run).
    pub last_offset: u64,
}

/// Applies `cfg.stream` into `sink` until `stop` turns true (returns the
/// statistics) or a definite error (returns it).
pub async fn run<S: Sink>(
    cfg: ApplierConfig,
    sink: &mut S,
    mut stop: watch::Receiver<bool>,
) -> Result<ApplyStats> {
    cfg.validate()?;
    let mut stats = ApplyStats::default();
    let mut backoff = BACKOFF_MIN;
    let probe = Probe {
        metrics: drc_obs::Pipeline::new(&cfg.stream, sink.name(), &cfg.subscriber),
        health: drc_obs::health::Part::register(format!(
            "apply {} -> {} ({})",
            cfg.stream,
            sink.name(),
            cfg.subscriber
        )),
    };
    loop {
        if *stop.borrow() {
            return Ok(stats);
        }
        match session(&cfg, sink, &mut stop, &mut stats, &mut backoff, &probe).await {
            Ok(()) => return Ok(stats),
            Err(e) if e.is_transient() => {
                probe.metrics.error(true);
                probe
                    .health
                    .not_ready(format!("interrupted, retrying: {e}"));
                tracing::warn!(
                    stream = %cfg.stream,
                    sink = sink.name(),
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "apply interrupted; resuming from the sink's checkpoint"
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopped(&mut stop) => return Ok(stats),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                probe.metrics.error(false);
                tracing::error!(stream = %cfg.stream, sink = sink.name(), error = %e, "apply stopped");
                return Err(e);
            }
        }
    }
}

/// What a pipeline tells the daemon's `/metrics` and `/readyz`.
struct Probe {
    metrics: drc_obs::Pipeline,
    health: drc_obs::health::Part,
}

/// Resolves once `stop` is true; never when its sender is gone without
/// saying so.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One relay batch, decoded: the transactions it delivers and the end of the
/// range it covers.
struct Chunk {
    /// The offset after the covered range.
    end: u64,
    /// `(offset, transaction, encoded bytes)`, ascending.
    txns: Vec<(u64, pb::Transaction, usize)>,
    /// The stream's last offset when the relay made the batch.
    stream_last: u64,
}

fn decode_chunk(b: RecordBatch) -> Result<Chunk> {
    let end = b.end_offset();
    let stream_last = b.last_offset;
    let txns = b
        .records
        .into_iter()
        .map(|(o, bytes)| {
            let len = bytes.len();
            pb::Transaction::decode(bytes)
                .map(|t| (o, t, len))
                .map_err(|e| {
                    ApplyError::Relay(RelayError::Corrupt(format!(
                        "transaction at offset {o}: {e}"
                    )))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Chunk {
        end,
        txns,
        stream_last,
    })
}

/// Reads and decodes relay batches ahead of the sink; ends after the first
/// error it hands on, or when the applier stops listening.
async fn read_ahead(mut sub: Subscription, tx: mpsc::Sender<Result<Chunk>>) {
    loop {
        let item = match sub.next_batch().await {
            Ok(Some(b)) => decode_chunk(b),
            Ok(None) => Err(ApplyError::Relay(RelayError::Net {
                context: "subscribe".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the relay ended the subscription",
                ),
            })),
            Err(e) => Err(e.into()),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// Aborts the reader when the session ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The batch being built and what the sink has.
struct Builder<'a> {
    cfg: &'a ApplierConfig,
    probe: &'a Probe,
    /// The stream's last offset as the relay last said.
    stream_last: u64,
    batch: Batch,
    rows: usize,
    bytes: usize,
    /// When the oldest unapplied part of `batch` arrived.
    since: Option<Instant>,
    /// The sink's checkpoint.
    applied: u64,
    client: RelayClient,
    /// The last offset the relay took a confirm of.
    confirmed: Arc<AtomicU64>,
    confirmed_at: Option<Instant>,
    /// A confirm in flight.
    confirming: Option<tokio::task::JoinHandle<()>>,
}

impl Builder<'_> {
    fn full(&self) -> bool {
        self.rows >= self.cfg.max_batch_rows || self.bytes >= self.cfg.max_batch_bytes
    }

    /// Whether `rows`/`bytes` more would break a bound of a non-empty batch.
    fn overflows(&self, rows: usize, bytes: usize) -> bool {
        !self.batch.is_empty()
            && (self.rows + rows > self.cfg.max_batch_rows
                || self.bytes + bytes > self.cfg.max_batch_bytes)
    }

    fn mark(&mut self) {
        if self.since.is_none() && self.batch.last_offset > self.applied {
            self.since = Some(Instant::now());
        }
    }

    /// Adds a relay batch, applying batches as they fill up.
    async fn add<S: Sink>(
        &mut self,
        sink: &mut S,
        chunk: Chunk,
        stats: &mut ApplyStats,
        backoff: &mut Duration,
    ) -> Result<()> {
        self.stream_last = self.stream_last.max(chunk.stream_last);
        for (offset, txn, len) in chunk.txns {
            // DDL and empty transactions count as one row for the bounds.
            let rows = txn.changes.len().max(1);
            if self.overflows(rows, len) {
                // Everything before this transaction is covered.
                self.batch.last_offset = offset - 1;
                self.flush(sink, stats, backoff).await?;
            }
            self.batch.offsets.push(offset);
            self.batch.transactions.push(txn);
            self.batch.last_offset = offset;
            self.rows += rows;
            self.bytes += len;
            self.mark();
            if self.full() {
                self.flush(sink, stats, backoff).await?;
            }
        }
        let covered = chunk.end.saturating_sub(1);
        if covered > self.batch.last_offset {
            self.batch.last_offset = covered;
        }
        self.mark();
        Ok(())
    }

    /// Applies the batch built so far (also one that only covers filtered
    /// offsets), then confirms to the relay when it is time.
    async fn flush<S: Sink>(
        &mut self,
        sink: &mut S,
        stats: &mut ApplyStats,
        backoff: &mut Duration,
    ) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.rows = 0;
        self.bytes = 0;
        self.since = None;
        if batch.last_offset <= self.applied {
            self.batch.last_offset = self.applied;
            return Ok(());
        }
        let batch = Batch {
            stream: self.cfg.stream.clone(),
            ..batch
        };
        sink.apply(&batch).await?;
        self.applied = batch.last_offset;
        self.batch.last_offset = self.applied;
        stats.transactions += batch.transactions.len() as u64;
        stats.rows += batch.rows() as u64;
        stats.batches += 1;
        stats.last_offset = self.applied;
        *backoff = BACKOFF_MIN;
        self.probe.metrics.applied(
            batch.transactions.len() as u64,
            batch.rows() as u64,
            self.applied,
            batch.transactions.last().map_or(0, |t| t.commit_ts_us),
        );
        if self.applied >= self.stream_last {
            self.probe.metrics.caught_up();
        }
        tracing::debug!(
            stream = %self.cfg.stream,
            transactions = batch.transactions.len(),
            last_offset = batch.last_offset,
            "batch applied"
        );
        if !matches!(self.confirmed_at, Some(t) if t.elapsed() < CONFIRM_INTERVAL)
            && self.confirming.as_ref().is_none_or(|t| t.is_finished())
        {
            // In the background: the confirm's answer shares the connection
            // with the subscription, whose unread batches can hold up the
            // connection's flow-control window until the sink reads them.
            self.confirming = self.confirm_call().map(tokio::spawn);
        }
        Ok(())
    }

    /// Reports the sink's checkpoint to the relay, and waits for the answer
    /// (at stop, once the subscription is gone).
    async fn confirm(&mut self) {
        if let Some(call) = self.confirm_call() {
            call.await;
        }
    }

    /// The confirm of the sink's checkpoint, if the relay lacks it; a failure
    /// is only logged (retention keeps a little more until the next confirm).
    fn confirm_call(&mut self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let applied = self.applied;
        if self.cfg.subscriber.is_empty() || applied <= self.confirmed.load(Ordering::Relaxed) {
            return None;
        }
        self.confirmed_at = Some(Instant::now());
        let client = self.client.clone();
        let confirmed = Arc::clone(&self.confirmed);
        let (stream, subscriber) = (self.cfg.stream.clone(), self.cfg.subscriber.clone());
        Some(async move {
            let call = client.confirm(&stream, &subscriber, applied);
            match tokio::time::timeout(CONFIRM_TIMEOUT, call).await {
                Ok(Ok(())) => {
                    confirmed.fetch_max(applied, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    tracing::warn!(stream = %stream, error = %e, "confirm to the relay failed")
                }
                Err(_) => tracing::warn!(stream = %stream, "confirm to the relay timed out"),
            }
        })
    }
}

/// One subscription, from the sink's checkpoint until stop (`Ok`) or an
/// error.
async fn session<S: Sink>(
    cfg: &ApplierConfig,
    sink: &mut S,
    stop: &mut watch::Receiver<bool>,
    stats: &mut ApplyStats,
    backoff: &mut Duration,
    probe: &Probe,
) -> Result<()> {
    let checkpoint = sink.checkpoint(&cfg.stream).await?;
    let from = checkpoint.offset + 1;
    let client = tokio::select! {
        r = RelayClient::connect(cfg.relay.clone()) => r?,
        () = stopped(stop) => return Ok(()),
    };
    let options = SubscribeOptions {
        stream: cfg.stream.clone(),
        from_offset: from,
        include: cfg.include.clone(),
        exclude: cfg.exclude.clone(),
        exclude_origins: cfg.exclude_origins.clone(),
        stub_origins: Vec::new(),
        subscriber: cfg.subscriber.clone(),
        // Compression pays on a network, not between processes of one
        // machine, where it only costs both sides CPU.
        compression: if cfg.relay.validate().is_ok_and(|t| t.dial.is_local()) {
            pb::Compression::None
        } else {
            pb::Compression::ZstdStream
        },
        max_batch_bytes: 0,
    };
    let sub = tokio::select! {
        r = client.subscribe(options) => r?,
        () = stopped(stop) => return Ok(()),
    };
    tracing::info!(stream = %cfg.stream, sink = sink.name(), from, "applying");
    probe.health.ready();
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let reader = AbortOnDrop(tokio::spawn(read_ahead(sub, tx)));
    let mut b = Builder {
        cfg,
        probe,
        stream_last: 0,
        batch: Batch {
            last_offset: checkpoint.offset,
            ..Batch::default()
        },
        rows: 0,
        bytes: 0,
        since: None,
        applied: checkpoint.offset,
        client,
        confirmed: Arc::new(AtomicU64::new(0)),
        confirmed_at: None,
        confirming: None,
    };
    loop {
        let deadline = b.since.map(|t| t + cfg.max_batch_delay);
        tokio::select! {
            biased;
            () = stopped(stop) => {
                b.flush(sink, stats, backoff).await?;
                // The subscription goes first, so its unread batches no
                // longer hold the connection's window the answer needs.
                drop(reader);
                drop(rx);
                b.confirm().await;
                return Ok(());
            }
            () = sleep_until(deadline) => b.flush(sink, stats, backoff).await?,
            item = rx.recv() => match item {
                Some(Ok(chunk)) => {
                    if let Some(&(o, _, _)) = chunk.txns.first() {
                        if o <= b.applied {
                            return Err(ApplyError::Relay(RelayError::Corrupt(format!(
                                "the relay sent offset {o}, at or before the checkpoint {}",
                                b.applied
                            ))));
                        }
                    }
                    b.add(sink, chunk, stats, backoff).await?;
                    // Nothing more is ready: waiting for more would only add
                    // the delay to every transaction of a quiet stream (at
                    // 500 txn/s, 100 ms on average with a 200 ms delay).
                    if rx.is_empty() {
                        b.flush(sink, stats, backoff).await?;
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(ApplyError::Relay(RelayError::Net {
                        context: "subscribe".into(),
                        source: std::io::Error::other("the subscription reader ended"),
                    }))
                }
            },
        }
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
