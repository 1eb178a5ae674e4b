//! Capture → relay: a [`TxnSink`] that publishes to a relay, and the loop that
//! keeps a capture publishing across failures of either side.
//!
//! The relay is the source of truth for where a capture resumes: every
//! (re)connection opens a Publish call, reads the relay's last source
//! position, and starts the binlog right after it. Transactions are sent
//! without waiting for each ack (up to [`MAX_IN_FLIGHT`] requests), and the
//! relay drops any it already holds, so a resend after a crash is harmless.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use drc_capture::assemble::AssembledTxn;
use drc_capture::capture::{self, CaptureOptions, StartAt, TxnSink};
use drc_capture::error::CaptureError;
use drc_capture::position::BinlogPos;
use drc_relay::client::{Publisher, RelayClient};
use drc_relay::config::ClientConfig;
use prost::Message;
use tokio::sync::watch;

/// Publish requests sent before the sink waits for acks.
pub const MAX_IN_FLIGHT: usize = 8;

/// Transactions per publish request, at most (the relay fsyncs once per request).
pub const MAX_BATCH_TXNS: usize = 512;
/// Bytes per publish request, at most (a larger transaction travels alone).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

struct PublishSink<'a> {
    stream: &'a str,
    health: &'a drc_obs::health::Part,
    publisher: Publisher,
    /// Commit time of the newest pending transaction.
    pending_commit_ts_us: i64,
    sent: u64,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// The relay client's message limit: a larger transaction cannot be sent.
    max_message_bytes: usize,
}

impl TxnSink for PublishSink<'_> {
    async fn accept(&mut self, txn: AssembledTxn) -> drc_capture::error::Result<()> {
        let txn = txn.into_transaction()?;
        let bytes = Bytes::from(txn.encode_to_vec());
        if bytes.len() + 1024 > self.max_message_bytes {
            // Definite: retrying cannot help, and skipping would lose data.
            let pos = txn
                .position
                .as_ref()
                .map(|p| format!("{}:{}", p.file, p.pos))
                .unwrap_or_default();
            return Err(CaptureError::Config(format!(
                "the transaction ending at {pos} encodes to {} bytes, over max_message_bytes ({}) of the relay link; raise max_message_bytes on the relay and in the capture's relay settings",
                bytes.len(),
                self.max_message_bytes
            )));
        }
        if self.pending_bytes + bytes.len() > MAX_BATCH_BYTES.min(self.max_message_bytes / 2) {
            self.flush().await?;
        }
        self.pending_bytes += bytes.len();
        self.pending_commit_ts_us = txn.commit_ts_us;
        self.pending.push(bytes);
        self.sent += 1;
        if self.pending.len() >= MAX_BATCH_TXNS {
            self.flush().await?;
        }
        Ok(())
    }

    async fn idle(&mut self) -> drc_capture::error::Result<()> {
        self.flush().await?;
        // The binlog is read to its end: the stream is live.
        drc_obs::capture_caught_up(self.stream);
        self.health.ready();
        Ok(())
    }
}

impl PublishSink<'_> {
    /// Sends what is pending as one request (one fsync at the relay).
    async fn flush(&mut self) -> drc_capture::error::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let txns = batch.len() as u64;
        self.publisher
            .send_encoded(batch)
            .await
            .map_err(|e| CaptureError::Output(format!("publish to the relay: {e}")))?;
        while self.publisher.in_flight() > MAX_IN_FLIGHT {
            self.publisher
                .ack()
                .await
                .map_err(|e| CaptureError::Output(format!("publish to the relay: {e}")))?;
        }
        drc_obs::capture_published(self.stream, txns, self.pending_commit_ts_us);
        self.health.ready();
        Ok(())
    }
}

/// Where the capture starts given what the relay holds.
fn start_from_relay(
    position: Option<&drc_proto::v1::SourcePosition>,
    fallback: StartAt,
) -> StartAt {
    match position {
        Some(p) if !p.gtid_set.is_empty() => StartAt::Gtid(p.gtid_set.clone()),
        Some(p) if !p.file.is_empty() => StartAt::FilePos(BinlogPos::new(p.file.clone(), p.pos)),
        _ => fallback,
    }
}

/// Runs a capture that publishes to `relay` until `stop` turns true or a
/// definite error. Transient failures of the source or the relay reconnect
/// with backoff and resume where the relay says.
pub async fn capture_to_relay(
    stream: &str,
    mut opts: CaptureOptions,
    relay: ClientConfig,
    fallback: StartAt,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut failures = 0u32;
    let health = drc_obs::health::Part::register(format!("capture {stream}"));
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let attempt = async {
            let client = RelayClient::connect(relay.clone())
                .await
                .context("connect to the relay")?;
            let publisher = client
                .publisher(stream, "capture")
                .await
                .context("open publish call")?;
            let resume = publisher.resume().clone();
            opts.start = start_from_relay(resume.position.as_ref(), fallback.clone());
            tracing::info!(stream, relay_offset = resume.last_offset, start = ?opts.start, "publishing to the relay");
            let mut sink = PublishSink {
                stream,
                health: &health,
                publisher,
                pending_commit_ts_us: 0,
                sent: 0,
                pending: Vec::new(),
                pending_bytes: 0,
                max_message_bytes: relay.max_message_bytes,
            };
            let mut r = capture::run_with(opts.clone(), &mut sink).await;
            if r.is_ok() {
                if let Err(e) = sink.flush().await {
                    r = Err(e);
                }
            }
            let sent = sink.sent;
            let fin = sink.publisher.finish().await;
            match (r, fin) {
                (Ok(_), Ok(_)) => Ok(sent),
                (Err(e), _) => Err(anyhow::Error::new(e)).context("capture"),
                (Ok(_), Err(e)) => Err(anyhow::Error::new(e)).context("finish publishing"),
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = stop.changed() => return Ok(()),
        };
        match result {
            Ok(_) if opts.stop_at_end => return Ok(()),
            Ok(_) => failures = 0,
            Err(e) => {
                let definite = e.chain().any(|c| {
                    c.downcast_ref::<CaptureError>().is_some_and(|ce| {
                        matches!(
                            ce,
                            CaptureError::Source(_)
                                | CaptureError::Purged(_)
                                | CaptureError::Config(_)
                                | CaptureError::Decode { .. }
                                | CaptureError::UnknownDdl { .. }
                        )
                    })
                });
                drc_obs::capture_error(stream);
                if definite {
                    health.not_ready(format!("stopped: {e:#}"));
                    return Err(e);
                }
                health.not_ready(format!("interrupted, retrying: {e:#}"));
                drc_obs::capture_reconnect(stream);
                failures = failures.saturating_add(1);
                let delay = Duration::from_millis((200u64 << failures.min(5)).min(5_000));
                tracing::warn!(stream, error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "capture to relay failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return Ok(()),
                }
            }
        }
    }
}
