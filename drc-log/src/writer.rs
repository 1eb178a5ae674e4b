//! The single writer: group commit, segment roll, and publishing what is
//! durable.
//!
//! Appends arrive over a bounded channel. The writer task takes one, then
//! every other one already waiting (up to `max_batch_bytes`), and hands the
//! batch to [`SegmentWriter::commit`] on a blocking thread: offsets are
//! assigned in arrival order, all records are encoded into one buffer,
//! written with one `pwrite` and made durable with one `fdatasync`. Only then
//! is the new end published to readers and every append in the batch
//! answered. While that fsync runs, new appends queue up and form the next
//! batch, so the fsync rate stays flat while the append rate grows.
//!
//! A batch that would grow the segment past `segment_bytes` is split: the
//! first part is written and fsync'd, a new segment is created (header
//! fsync'd, directory fsync'd), and the rest goes there.
//!
//! After a failed write or fsync the writer answers every later append with
//! [`LogError::Failed`]: once fsync has failed, the kernel may have dropped
//! the dirty pages and a retry could "succeed" without the data. Reopening
//! the log recovers from what is really on disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::{LogError, Result};
use crate::log::{lock, SegmentMeta, Shared};
use crate::record::{encode_into, encoded_len};
use crate::recover::Active;
use crate::retention;
use crate::segment::{self, HEADER_LEN, INDEX_INTERVAL};
use crate::Offset;

/// Buffers larger than this are given back after a batch, so one huge
/// record does not pin its memory for the life of the log.
const KEEP_BUFFER_BYTES: usize = 16 << 20;

/// One `append` or `append_at` call.
pub(crate) struct Request {
    /// `Some` for `append_at`: the first offset the caller requires.
    pub at: Option<Offset>,
    pub records: Vec<Bytes>,
    /// Answered with the last offset once durable.
    pub reply: oneshot::Sender<Result<Offset>>,
}

impl Request {
    fn bytes(&self) -> u64 {
        self.records.iter().map(|r| encoded_len(r.len())).sum()
    }
}

/// The writing side of the log: the active segment and the next offset.
/// Synchronous, so it runs on a blocking thread and can be tested directly.
pub(crate) struct SegmentWriter {
    shared: Arc<Shared>,
    committed: watch::Sender<u64>,
    file: File,
    path: PathBuf,
    /// Byte position after the last durable record in `file`.
    pos: u64,
    /// The offset after the last durable record.
    next: Offset,
    last_indexed: u64,
    buf: Vec<u8>,
    /// Index entries of records in `buf`, added to the segment once durable.
    pending_index: Vec<(Offset, u64)>,
    failed: Option<String>,
    /// Held for the writer's life: no other writer may open the directory.
    _lock: File,
}

impl SegmentWriter {
    pub fn new(
        shared: Arc<Shared>,
        committed: watch::Sender<u64>,
        active: Active,
        lock_file: File,
    ) -> Self {
        let next = Offset(*committed.borrow());
        SegmentWriter {
            shared,
            committed,
            file: active.file,
            path: active.path,
            pos: active.end,
            next,
            last_indexed: active.last_indexed,
            buf: Vec::new(),
            pending_index: Vec::new(),
            failed: None,
            _lock: lock_file,
        }
    }

    /// Writes a batch durably, publishes it, and answers every request.
    pub fn commit(&mut self, batch: Vec<Request>) {
        let items: Vec<(Option<Offset>, &[Bytes])> =
            batch.iter().map(|r| (r.at, &r.records[..])).collect();
        let results = self.write_batch(&items);
        drop(items);
        for (req, res) in batch.into_iter().zip(results) {
            // The caller may have gone away; its records are durable anyway.
            let _ = req.reply.send(res);
        }
    }

    /// Assigns offsets (checking `append_at` expectations in order), writes
    /// and fsyncs the accepted records, publishes the new end. Returns one
    /// result per item: the last offset of its records, or why not.
    pub fn write_batch(&mut self, items: &[(Option<Offset>, &[Bytes])]) -> Vec<Result<Offset>> {
        if let Some(cause) = &self.failed {
            return items
                .iter()
                .map(|_| {
                    Err(LogError::Failed {
                        cause: cause.clone(),
                    })
                })
                .collect();
        }
        let mut results = Vec::with_capacity(items.len());
        let mut accepted: Vec<&Bytes> = Vec::new();
        let mut next = self.next;
        for (at, records) in items {
            match at {
                Some(at) if *at != next => results.push(Err(LogError::OffsetMismatch {
                    expected: next,
                    got: *at,
                })),
                _ => {
                    next = Offset(next.0 + records.len() as u64);
                    results.push(Ok(next.prev()));
                    accepted.extend(records.iter());
                }
            }
        }
        if accepted.is_empty() {
            return results;
        }
        if let Err(e) = self.write_records(&accepted) {
            tracing::error!(file = %self.path.display(), error = %e, "log write failed; the log refuses appends until reopened");
            let cause = e.to_string();
            self.failed = Some(cause.clone());
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(LogError::Failed {
                    cause: cause.clone(),
                });
            }
            return results;
        }
        let c = &self.shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.records
            .fetch_add(accepted.len() as u64, Ordering::Relaxed);
        c.appends.fetch_add(
            results.iter().filter(|r| r.is_ok()).count() as u64,
            Ordering::Relaxed,
        );
        results
    }

    fn write_records(&mut self, records: &[&Bytes]) -> Result<()> {
        let segment_bytes = self.shared.config.segment_bytes;
        self.buf.clear();
        self.pending_index.clear();
        let mut end = self.pos; // segment end including what is in buf
        let mut offset = self.next;
        for rec in records {
            let len = encoded_len(rec.len());
            if end > HEADER_LEN && end + len > segment_bytes {
                self.flush()?;
                self.roll(offset)?;
                end = HEADER_LEN;
            }
            if end - self.last_indexed >= INDEX_INTERVAL {
                self.pending_index.push((offset, end));
                self.last_indexed = end;
            }
            encode_into(&mut self.buf, offset, rec);
            end += len;
            offset = offset.next();
        }
        self.flush()?;
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.next = offset;
        lock(&self.shared.state).next = offset;
        // Readers may read up to here only now: everything before is durable.
        self.committed.send_replace(offset.0);
        Ok(())
    }

    /// Writes `buf` at the end of the active segment and fdatasyncs it.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.buf, self.pos)
            .map_err(|e| LogError::io("write segment", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fdatasync segment", &self.path, e))?;
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.pos += self.buf.len() as u64;
        let mut st = lock(&self.shared.state);
        if let Some(seg) = st.segments.last_mut() {
            seg.bytes = self.pos;
            seg.index.append(&mut self.pending_index);
        }
        drop(st);
        self.buf.clear();
        Ok(())
    }

    /// Starts a new segment whose first record will be `first`.
    fn roll(&mut self, first: Offset) -> Result<()> {
        let dir = self.shared.dir.clone();
        let (file, path) = segment::create(&dir, first)?;
        // File header and directory entry.
        self.shared.counters.fsyncs.fetch_add(2, Ordering::Relaxed);
        tracing::debug!(file = %path.display(), first_offset = first.0, "new log segment");
        self.file = file;
        self.path = path.clone();
        self.pos = HEADER_LEN;
        self.last_indexed = HEADER_LEN;
        lock(&self.shared.state).segments.push(SegmentMeta {
            first,
            path,
            bytes: HEADER_LEN,
            index: Vec::new(),
        });
        Ok(())
    }
}

/// The writer task: batches requests, commits them on a blocking thread,
/// and runs retention every `retention_interval`. Ends when every sender is
/// gone (the `Log` and all pending appends), after saving subscriber
/// positions.
pub(crate) async fn run(mut core: SegmentWriter, mut rx: mpsc::Receiver<Request>) {
    let shared = core.shared.clone();
    let max_batch = shared.config.max_batch_bytes;
    let every = shared.config.retention_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut periodic: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            req = rx.recv() => {
                let Some(first) = req else { break };
                let mut bytes = first.bytes();
                let mut batch = vec![first];
                while bytes < max_batch {
                    match rx.try_recv() {
                        Ok(r) => {
                            bytes += r.bytes();
                            batch.push(r);
                        }
                        Err(_) => break,
                    }
                }
                match tokio::task::spawn_blocking(move || {
                    core.commit(batch);
                    core
                })
                .await
                {
                    Ok(c) => core = c,
                    Err(e) => {
                        tracing::error!(error = %e, "log writer thread failed; the log is closed");
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                // Retention runs beside appends, not in their way; one pass
                // at a time.
                if periodic.as_ref().is_none_or(|p| p.is_finished()) {
                    let s = shared.clone();
                    periodic = Some(tokio::task::spawn_blocking(move || retention::run_periodic(&s)));
                }
            }
        }
    }
    // No retention pass may outlive the writer (and its directory lock).
    if let Some(p) = periodic {
        let _ = p.await;
    }
    // Save positions while still holding the directory lock.
    let s = shared.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || retention::save_subscribers(&s)).await {
        tracing::warn!(error = %e, "could not save subscriber positions on close");
    }
    drop(core);
}
