//! Cross-region replication: this relay subscribes to the relay of a
//! stream's home region and stores what it receives at the same offsets.
//!
//! One task per replicated stream, all streams of an upstream sharing one
//! HTTP/2 connection (mutual TLS, zstd batches of up to 4 MiB, BBR and
//! keepalives, see `net.rs`; fixed receive windows sized for a long link,
//! see [`config::DEFAULT_UPSTREAM_WINDOW_BYTES`]). How it resumes, after
//! any break (network error, the upstream restarting, this relay
//! restarting):
//!
//! 1. Read the local log's last offset `L` (empty log: next offset `N`).
//! 2. Subscribe from `L` (or `N`): the first record received must be
//!    byte-identical to the local record `L` (or one of the two the other's
//!    stub, see below). If it is not, the replica and
//!    its upstream have diverged (an upstream restored from an old backup, a
//!    wiped and recreated stream): replication of that stream stops with a
//!    definite error, because appending would silently mix two histories.
//! 3. Append each batch with `append_at(first, records)`: the log refuses any
//!    first offset other than its next one, so a gap or an overlap cannot be
//!    written. Reading and writing are two halves over a bounded queue
//!    ([`REPLICA_QUEUE`] batches): the reader keeps taking batches off the
//!    link while the writer waits on an fsync, and the writer appends all
//!    batches queued meanwhile with one call (one fsync). Nothing is
//!    confirmed upstream before its append is durable.
//! 4. On a transient error, wait (exponential backoff from 100 ms, capped at
//!    3 s, reset by the first batch that arrives) and go back to 1.
//!
//! Transactions whose origin is this region (`stub_origins`) arrive as stubs:
//! the offset, position and origin are kept, the changes never travel back
//! to the region they came from.
//!
//! The task confirms its durable offset to the upstream under the
//! configured subscriber name, at most once a second while batches arrive
//! and once more when the link has been quiet for a second (a caught-up
//! replica's last position), so the upstream's retention keeps what this
//! region has not copied yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drc_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::batch::RecordBatch;
use crate::client::{RelayClient, SubscribeOptions, Subscription};
use crate::config::{self, UpstreamConfig};
use crate::error::{RelayError, Result};
use crate::registry::Registry;
use crate::server::{stopped, TaskToken};
use crate::stream::{log_error, read_one, Stream};

/// How often a replica confirms its position to the upstream.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// Batches received but not yet appended: what the link keeps delivering
/// while an append waits for its fsync. With batches of at most
/// [`REPLICA_BATCH_BYTES`], this bounds a replica's memory per stream.
const REPLICA_QUEUE: usize = 8;
/// Record bytes per batch a replica asks its upstream for (the upstream
/// caps it at its own `max_batch_bytes`): one zstd frame over 4 MiB of the
/// stream is ~7% smaller than four frames of 1 MiB on row data.
const REPLICA_BATCH_BYTES: u32 = 4 << 20;
/// Record bytes one append gathers from the queue (one fsync for them all).
const REPLICA_APPEND_BYTES: usize = 8 << 20;

/// Starts one task per replicated stream of every upstream.
pub(crate) fn spawn(
    registry: Arc<Registry>,
    upstreams: &[UpstreamConfig],
    max_message_bytes: usize,
    stop: watch::Receiver<bool>,
    token: TaskToken,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    let mut tasks = Vec::new();
    for u in upstreams {
        let mut cc = u.client_config();
        cc.max_message_bytes = max_message_bytes;
        let client = RelayClient::connect_lazy(cc)?;
        for name in &u.streams {
            let stream = registry
                .get(name)
                .ok_or_else(|| RelayError::UnknownStream(name.clone()))?;
            let link = Link {
                client: client.clone(),
                stream,
                upstream: u.url.clone(),
                subscriber: u.subscriber.clone().unwrap_or_default(),
                stub_origins: u.stub_origins.clone(),
            };
            let stop = stop.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let _token = token;
                link.run(stop).await
            }));
        }
    }
    Ok(tasks)
}

/// Replication of one stream from one upstream.
pub struct Link {
    pub client: RelayClient,
    pub stream: Arc<Stream>,
    pub upstream: String,
    /// Name registered at the upstream; empty for none.
    pub subscriber: String,
    /// Origins the upstream sends as stubs (this region's own).
    pub stub_origins: Vec<String>,
}

impl Link {
    /// Replicates until `stop` turns true (Ok) or a definite error (Err).
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut backoff = config::BACKOFF_MIN;
        // Since when the link has delivered nothing: each warning says how
        // long, so an unreachable region reads as one outage, not as many.
        let mut interrupted_since: Option<Instant> = None;
        let name = self.stream.name().to_string();
        let health =
            drc_obs::health::Part::register(format!("replicate {name} from {}", self.upstream));
        loop {
            let r = tokio::select! {
                r = self.once(&mut backoff, &health) => r,
                () = stopped(&mut stop) => return Ok(()),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    // A batch arrived in this attempt (it reset the backoff
                    // after the first failure): a new outage starts now.
                    if backoff == config::BACKOFF_MIN {
                        interrupted_since = None;
                    }
                    let since = *interrupted_since.get_or_insert_with(Instant::now);
                    drc_obs::replication_reconnect(&name, &self.upstream);
                    health.not_ready(format!("interrupted, retrying: {e}"));
                    tracing::warn!(stream = %name, upstream = %self.upstream, error = %e, interrupted_for_s = since.elapsed().as_secs(), retry_in_ms = backoff.as_millis() as u64, "replication interrupted");
                }
                Err(e) => {
                    health.not_ready(format!("stopped: {e}"));
                    tracing::error!(stream = %name, upstream = %self.upstream, error = %e, "replication stopped");
                    return Err(e);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stopped(&mut stop) => return Ok(()),
            }
            backoff = (backoff * 2).min(config::BACKOFF_MAX);
        }
    }

    /// One subscription, until it breaks: always an error, transient ones
    /// (also a clean end of the stream: the upstream is restarting) for the
    /// caller to retry.
    ///
    /// Two halves joined by a bounded queue: the reader takes batches off the
    /// connection (decompressing and checking them) while the writer appends
    /// and fsyncs, so the socket never waits on the disk.
    async fn once(&self, backoff: &mut Duration, health: &drc_obs::health::Part) -> Result<()> {
        let name = self.stream.name();
        let log = self.stream.log();
        let (from, verify) = match log.last_offset() {
            Some(last) => {
                let rec = read_one(log, last)
                    .await
                    .map_err(|e| log_error(name, e))?
                    .ok_or_else(|| RelayError::Log {
                        stream: name.to_string(),
                        message: format!("last record {last} cannot be read"),
                        transient: false,
                    })?;
                (last.0, Some((last.0, rec)))
            }
            None => (log.next_offset().0, None),
        };
        let sub = self
            .client
            .subscribe(SubscribeOptions {
                stream: name.to_string(),
                from_offset: from,
                subscriber: self.subscriber.clone(),
                stub_origins: self.stub_origins.clone(),
                compression: pb::Compression::ZstdStream,
                max_batch_bytes: REPLICA_BATCH_BYTES,
                ..Default::default()
            })
            .await?;
        tracing::info!(stream = %name, upstream = %self.upstream, from, "replicating");
        health.ready();
        let (tx, rx) = mpsc::channel(REPLICA_QUEUE);
        let read = read_batches(sub, tx, self.upstream.clone());
        let write = self.write_batches(rx, verify, backoff);
        tokio::pin!(read);
        tokio::pin!(write);
        tokio::select! {
            // The writer ends first only on an error (the reader still holds
            // the queue open): that error wins, the reader is dropped.
            w = &mut write => {
                w?;
                read.await
            }
            // The reader ended (the link broke, the upstream restarts):
            // what it queued is still appended before its reason is given.
            r = &mut read => {
                (&mut write).await?;
                r
            }
        }
    }

    /// Appends what the reader queued, in order: the first record is checked
    /// against the local last one (divergence), batches waiting together
    /// are appended with one call (one fsync), and the durable end is
    /// confirmed to the upstream now and then. Returns Ok when the queue
    /// closes (the reader has ended), Err on a divergence or a log error.
    async fn write_batches(
        &self,
        mut rx: mpsc::Receiver<RecordBatch>,
        mut verify: Option<(u64, Bytes)>,
        backoff: &mut Duration,
    ) -> Result<()> {
        let name = self.stream.name();
        let mut last_confirm = Instant::now();
        let mut confirmed = 0u64;
        // The durable end not yet confirmed upstream.
        let mut unconfirmed = 0u64;
        loop {
            // A replica that has caught up confirms its end once the link
            // has been quiet for a while, not only with its next append.
            let next = if unconfirmed > confirmed {
                match tokio::time::timeout(CONFIRM_EVERY, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.confirm_upstream(unconfirmed);
                        confirmed = unconfirmed;
                        last_confirm = Instant::now();
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let Some(batch) = next else { break };
            *backoff = config::BACKOFF_MIN;
            let mut upstream_last = batch.last_offset;
            let mut records: Vec<(u64, Bytes)> = batch.records;
            if let Some((o, mine)) = verify.take() {
                let first = records.first().map(|r| r.0);
                match records.first() {
                    Some((ro, theirs))
                        if *ro == o && crate::filter::same_transaction(theirs, &mine) =>
                    {
                        records.remove(0);
                    }
                    _ => {
                        return Err(RelayError::Precondition(format!(
                            "stream {name} diverged from its upstream {}: the local record at offset {o} differs from the upstream's (first upstream offset {first:?}); \
                             move this region's copy aside and let it replicate afresh",
                            self.upstream
                        )))
                    }
                }
            }
            // Whatever else is already queued goes into the same append:
            // the reader keeps up with the link, the fsync rate stays flat.
            let mut bytes: usize = records.iter().map(|r| r.1.len()).sum();
            while bytes < REPLICA_APPEND_BYTES {
                match rx.try_recv() {
                    Ok(more) => {
                        upstream_last = upstream_last.max(more.last_offset);
                        bytes += more.records.iter().map(|r| r.1.len()).sum::<usize>();
                        records.extend(more.records);
                    }
                    Err(_) => break,
                }
            }
            let Some(first) = records.first().map(|r| r.0) else {
                continue;
            };
            let started = Instant::now();
            let n = records.len();
            let commit_ts_us = records
                .last()
                .and_then(|r| crate::record::head(&r.1).ok())
                .map_or(0, |h| h.commit_ts_us);
            let end = self
                .stream
                .append_replicated(first, records.into_iter().map(|r| r.1).collect())
                .await?;
            tracing::debug!(stream = %name, first, end, records = n, bytes, append_ms = started.elapsed().as_secs_f64() * 1e3, "replica append");
            let last = self.stream.last_offset();
            drc_obs::replication_progress(name, &self.upstream, last, commit_ts_us);
            if last >= upstream_last {
                drc_obs::replication_caught_up(name, &self.upstream);
            }
            if !self.subscriber.is_empty() {
                unconfirmed = end;
                if last_confirm.elapsed() >= CONFIRM_EVERY && end > confirmed {
                    last_confirm = Instant::now();
                    confirmed = end;
                    self.confirm_upstream(end);
                }
            }
        }
        Ok(())
    }

    /// Tells the upstream, in the background, that everything up to `end`
    /// is durable here.
    fn confirm_upstream(&self, end: u64) {
        let client = self.client.clone();
        let (stream, subscriber) = (self.stream.name().to_string(), self.subscriber.clone());
        tokio::spawn(async move {
            if let Err(e) = client.confirm(&stream, &subscriber, end).await {
                tracing::debug!(stream = %stream, error = %e, "confirm to upstream failed");
            }
        });
    }
}

/// Takes batches off the subscription into the writer's queue until the
/// subscription breaks (an Err, also for a clean end: the upstream is
/// restarting) or the writer is gone (Ok: the writer reports its error).
async fn read_batches(
    mut sub: Subscription,
    tx: mpsc::Sender<RecordBatch>,
    upstream: String,
) -> Result<()> {
    loop {
        let Some(batch) = sub.next_batch().await? else {
            return Err(RelayError::Net {
                context: format!("subscription to {upstream}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upstream ended the stream",
                ),
            });
        };
        if !batch.is_dense() {
            return Err(RelayError::Corrupt(format!(
                "upstream filtered a replication batch at offset {}",
                batch.first_offset
            )));
        }
        if tx.send(batch).await.is_err() {
            return Ok(());
        }
    }
}
