//! The `Log` handle: open (with recovery), append, read, status, subscribers
//! and retention. The work itself happens in `writer.rs` (appends),
//! `reader.rs` (reads), `recover.rs` (open) and `retention.rs`.
//!
//! `Log` is not `Clone`; share it in an `Arc`. Dropping it stops the writer
//! once every append already submitted has been answered; [`Log::close`] does
//! the same and waits for it, so the directory can be opened again at once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{LogError, Result};
use crate::reader::LogReader;
use crate::retention::{self, RetentionReport, Subscribers};
use crate::writer::{self, Request, SegmentWriter};
use crate::{recover, LogConfig, Offset};

/// One segment as the log knows it in memory.
#[derive(Debug)]
pub(crate) struct SegmentMeta {
    pub first: Offset,
    pub path: PathBuf,
    /// Bytes written and fsync'd, header included.
    pub bytes: u64,
    /// Sparse (offset, byte position) pairs, oldest first; empty for sealed
    /// segments found on open (readers then scan from the start).
    pub index: Vec<(Offset, u64)>,
}

/// What the writer publishes and readers and status look at.
#[derive(Debug)]
pub(crate) struct State {
    /// Oldest first; never empty (the last one is the segment being written).
    pub segments: Vec<SegmentMeta>,
    /// The offset after the last acknowledged record.
    pub next: Offset,
}

impl State {
    pub fn first_offset(&self) -> Offset {
        self.segments.first().map_or(self.next, |s| s.first)
    }
}

/// Counters for status and tests.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
}

/// Everything the handle, the writer and the readers share.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub state: Mutex<State>,
    /// The offset after the last acknowledged record; readers wait on it.
    pub committed: watch::Receiver<u64>,
    pub subscribers: Subscribers,
    /// One retention pass at a time.
    pub retention_lock: Mutex<()>,
    pub counters: Counters,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves data that is
/// still consistent here (every update is a single assignment or push).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How much work the log has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Append calls answered successfully.
    pub appends: u64,
    /// Records written by them.
    pub records: u64,
    /// Group commits (each one write and one fdatasync per segment touched).
    pub batches: u64,
    /// fsync/fdatasync calls of the writer (data, new segments, directory).
    pub fsyncs: u64,
}

/// One segment, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStatus {
    /// Its first offset (also its name).
    pub first: Offset,
    /// Its last acknowledged offset; `None` while it has none.
    pub last: Option<Offset>,
    /// Its size in bytes, header included.
    pub bytes: u64,
    /// Its file.
    pub path: PathBuf,
}

/// A durable, group-committed, segmented log in one directory.
pub struct Log {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl Log {
    /// Opens the log in `dir`, creating it if missing. Recovers from a crash:
    /// checks every segment header and the end of every sealed segment,
    /// scans the last segment record by record and cuts off a torn tail
    /// (with a warning); anything else that is damaged is an error naming the
    /// file and byte. Must be called inside a tokio runtime (it starts the
    /// writer task).
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let rec = tokio::task::spawn_blocking(move || recover::recover(&dir))
            .await
            .map_err(|e| LogError::Failed {
                cause: format!("log recovery task: {e}"),
            })??;
        let (committed_tx, committed_rx) = watch::channel(rec.next.0);
        let shared = Arc::new(Shared {
            dir: rec.dir.clone(),
            config,
            state: Mutex::new(State {
                segments: rec.segments,
                next: rec.next,
            }),
            committed: committed_rx,
            subscribers: Subscribers::new(rec.subscribers),
            retention_lock: Mutex::new(()),
            counters: Counters::default(),
        });
        let (tx, rx) = mpsc::channel(shared.config.queue_depth);
        let core = SegmentWriter::new(shared.clone(), committed_tx, rec.active, rec.lock);
        let writer = tokio::spawn(writer::run(core, rx));
        Ok(Log {
            shared,
            tx,
            writer: Some(writer),
        })
    }

    /// Appends `records` at the next offsets; resolves to the offset of the
    /// last one once they are fsync'd (never before). Many concurrent calls
    /// share one write and one fdatasync. Dropping the future does not
    /// cancel the append once it has been handed to the writer.
    pub fn append(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = Result<Offset>> + Send + 'static {
        self.submit(None, records)
    }

    /// Appends `records` only if `first` is the log's next offset, else
    /// fails with [`LogError::OffsetMismatch`] and writes nothing: how a
    /// replica stores records at the same offsets as its upstream.
    pub fn append_at(
        &self,
        first: Offset,
        records: Vec<Bytes>,
    ) -> impl Future<Output = Result<Offset>> + Send + 'static {
        self.submit(Some(first), records)
    }

    fn submit(
        &self,
        at: Option<Offset>,
        records: Vec<Bytes>,
    ) -> impl Future<Output = Result<Offset>> + Send + 'static {
        let tx = self.tx.clone();
        let max = self.shared.config.max_record_bytes;
        let checked = if records.is_empty() {
            Err(LogError::EmptyAppend)
        } else if let Some(big) = records.iter().find(|r| r.len() as u64 > max) {
            Err(LogError::RecordTooLarge {
                len: big.len() as u64,
                max,
            })
        } else {
            Ok(())
        };
        async move {
            checked?;
            let (reply, answer) = oneshot::channel();
            tx.send(Request { at, records, reply })
                .await
                .map_err(|_| LogError::Closed)?;
            answer.await.map_err(|_| LogError::Closed)?
        }
    }

    /// A reader that starts at `from` (`Offset(0)` reads from the first
    /// available record). `from` may be the next offset (wait for new
    /// records), not beyond; below the first available offset it is
    /// [`LogError::Deleted`].
    pub fn reader(&self, from: Offset) -> Result<LogReader> {
        LogReader::new(self.shared.clone(), from)
    }

    /// The oldest offset the log still holds (the next offset when empty).
    pub fn first_offset(&self) -> Offset {
        self.shared.state().first_offset()
    }

    /// The last acknowledged offset; `None` when the log holds no records.
    pub fn last_offset(&self) -> Option<Offset> {
        let st = self.shared.state();
        (st.next > st.first_offset()).then(|| st.next.prev())
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> Offset {
        self.shared.state().next
    }

    /// Bytes on disk in segments (headers included).
    pub fn size_bytes(&self) -> u64 {
        self.shared.state().segments.iter().map(|s| s.bytes).sum()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentStatus> {
        let st = self.shared.state();
        st.segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let end = st.segments.get(i + 1).map_or(st.next, |n| n.first);
                SegmentStatus {
                    first: s.first,
                    last: (end > s.first).then(|| end.prev()),
                    bytes: s.bytes,
                    path: s.path.clone(),
                }
            })
            .collect()
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Work counters since open.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.counters;
        LogStats {
            appends: c.appends.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Registers a subscriber whose confirmed position retention honours.
    /// A new one starts as having confirmed nothing still in the log (it
    /// holds everything); registering again keeps the saved position.
    /// Returns its confirmed position. Saved durably before returning.
    pub async fn register_subscriber(&self, name: &str) -> Result<Offset> {
        let shared = self.shared.clone();
        let name = name.to_owned();
        blocking(move || retention::register(&shared, &name)).await
    }

    /// Records that subscriber `name` has durably processed everything up to
    /// and including `offset`. Never moves a position backward (an older
    /// offset is ignored). Kept in memory and saved with the next retention
    /// pass or registration, which is safe: after a crash retention only
    /// sees an older position and keeps more.
    pub fn confirm(&self, name: &str, offset: Offset) -> Result<Offset> {
        let next = self.next_offset();
        if offset >= next {
            return Err(LogError::BeyondEnd {
                requested: offset,
                next,
            });
        }
        self.shared.subscribers.confirm(name, offset)
    }

    /// Forgets a subscriber (saved durably); false if it was not registered.
    pub async fn unregister(&self, name: &str) -> Result<bool> {
        let shared = self.shared.clone();
        let name = name.to_owned();
        blocking(move || retention::unregister(&shared, &name)).await
    }

    /// The registered subscribers and their confirmed positions, by name.
    pub fn subscribers(&self) -> Vec<(String, Offset)> {
        self.shared.subscribers.list()
    }

    /// Deletes old segments as the retention config says (the writer also
    /// runs this every `retention_interval`).
    pub async fn enforce_retention(&self) -> Result<RetentionReport> {
        let shared = self.shared.clone();
        blocking(move || retention::enforce(&shared)).await
    }

    /// Stops the writer after it has answered every append already handed
    /// to it, saves subscriber positions, and releases the directory lock.
    pub async fn close(mut self) -> Result<()> {
        let writer = self.writer.take();
        drop(self);
        if let Some(w) = writer {
            w.await.map_err(|e| LogError::Failed {
                cause: format!("log writer task: {e}"),
            })?;
        }
        Ok(())
    }
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Failed {
            cause: format!("log file task: {e}"),
        })?
}
