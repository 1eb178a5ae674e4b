//! One stream at this relay: its durable log, the source position it has
//! reached, and who is reading it.
//!
//! A stream is either **local** (its capture publishes here; this relay
//! assigns offsets) or a **replica** (copied from the relay of its home
//! region at the same offsets). Publishing to a replica is refused: a stream
//! has one writer.
//!
//! Appends are serialized per stream by an async mutex held across the log
//! append, so the position state moves exactly with what is durable: the
//! state is updated only after the append is fsync'd, and a failed append
//! leaves it as it was.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use drc_log::{Log, LogError, Offset};
use drc_proto::v1::SourcePosition;

use crate::error::{RelayError, Result};
use crate::position::PositionState;
use crate::record;

/// Whether this relay writes the stream or copies it from another region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Local,
    /// Replicated from the relay at this URL.
    Replica {
        upstream: String,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Local => "local",
            Role::Replica { .. } => "replica",
        }
    }
}

/// The answer to one publish request.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub appended: u32,
    pub duplicates: u32,
    /// The stream's last offset after the request (0 when empty).
    pub last_offset: u64,
    pub position: Option<SourcePosition>,
}

/// A subscription that is connected now.
#[derive(Debug, Clone, Default)]
struct Live {
    connections: u32,
    sent: u64,
}

/// A subscriber as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub name: String,
    pub confirmed: u64,
    pub sent: u64,
    pub connected: bool,
}

/// One stream.
pub struct Stream {
    name: String,
    role: Role,
    log: Arc<Log>,
    /// Held across appends; the position state after the last durable record.
    writer: tokio::sync::Mutex<PositionState>,
    /// Copy of the last position for readers that must not wait on appends.
    last_position: Mutex<Option<SourcePosition>>,
    /// Source commit time of the last record (0 when empty).
    last_commit_ts_us: std::sync::atomic::AtomicI64,
    live: Mutex<BTreeMap<String, Live>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps a log error onto the relay's classification.
pub(crate) fn log_error(stream: &str, e: LogError) -> RelayError {
    match e {
        LogError::Deleted { .. } | LogError::BeyondEnd { .. } => {
            RelayError::OutOfRange(format!("stream {stream}: {e}"))
        }
        LogError::OffsetMismatch { .. } => {
            RelayError::Precondition(format!("stream {stream}: {e}"))
        }
        LogError::RecordTooLarge { .. } | LogError::EmptyAppend => {
            RelayError::InvalidRequest(format!("stream {stream}: {e}"))
        }
        other => RelayError::Log {
            stream: stream.to_string(),
            transient: other.is_transient(),
            message: other.to_string(),
        },
    }
}

impl Stream {
    /// Wraps an open log; reads the last record to recover the position.
    pub(crate) async fn new(name: String, role: Role, log: Log) -> Result<Self> {
        let mut last_commit_ts_us = 0;
        let last = match log.last_offset() {
            None => None,
            Some(o) => {
                let rec = read_one(&log, o).await.map_err(|e| log_error(&name, e))?;
                match rec {
                    Some(bytes) => {
                        let head = record::head(&bytes).map_err(|e| RelayError::Log {
                            stream: name.clone(),
                            message: format!("last record (offset {o}) is not a transaction: {e}"),
                            transient: false,
                        })?;
                        last_commit_ts_us = head.commit_ts_us;
                        head.position
                    }
                    None => None,
                }
            }
        };
        let stream = Self {
            name,
            role,
            log: Arc::new(log),
            last_position: Mutex::new(last.clone()),
            last_commit_ts_us: last_commit_ts_us.into(),
            writer: tokio::sync::Mutex::new(PositionState::recover(last)),
            live: Mutex::new(BTreeMap::new()),
        };
        stream.record_metrics();
        Ok(stream)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The last offset, 0 when empty.
    pub fn last_offset(&self) -> u64 {
        self.log.last_offset().map_or(0, |o| o.0)
    }

    /// The source position of the last record.
    pub fn last_position(&self) -> Option<SourcePosition> {
        lock(&self.last_position).clone()
    }

    /// Source commit time of the last record, microseconds since the epoch
    /// (0 when empty).
    pub fn last_commit_ts_us(&self) -> i64 {
        self.last_commit_ts_us
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends the transactions the stream does not hold yet; see
    /// `position.rs` for the rule. The whole request is refused, nothing
    /// appended, when one of its transactions has no readable position.
    pub async fn publish(&self, records: Vec<Bytes>) -> Result<Published> {
        if let Role::Replica { upstream } = &self.role {
            return Err(RelayError::Precondition(format!(
                "stream {} is a replica of {upstream}; publish to it at its home relay",
                self.name
            )));
        }
        let mut state = self.writer.lock().await;
        let mut next = state.clone();
        let mut fresh = Vec::with_capacity(records.len());
        let mut duplicates = 0u32;
        let mut commit_ts_us = 0;
        for r in records {
            let head = record::head(&r)?;
            let pos = head.position.ok_or_else(|| {
                RelayError::InvalidRequest(
                    "transaction has no position; the capture must set it".into(),
                )
            })?;
            if next.holds(&pos)? {
                duplicates += 1;
                continue;
            }
            next.advance(&pos)?;
            commit_ts_us = head.commit_ts_us;
            fresh.push(r);
        }
        let appended = fresh.len() as u32;
        if !fresh.is_empty() {
            self.log
                .append(fresh)
                .await
                .map_err(|e| log_error(&self.name, e))?;
            *state = next;
            *lock(&self.last_position) = state.last().cloned();
            self.last_commit_ts_us
                .store(commit_ts_us, std::sync::atomic::Ordering::Relaxed);
            self.record_metrics();
        }
        Ok(Published {
            appended,
            duplicates,
            last_offset: self.last_offset(),
            position: state.last().cloned(),
        })
    }

    /// Stores records of a replica at the offsets its upstream gave them.
    pub async fn append_replicated(&self, first: u64, records: Vec<Bytes>) -> Result<u64> {
        let Some(last) = records.last() else {
            return Ok(self.last_offset());
        };
        let head = record::head(last).ok();
        let commit_ts_us = head.as_ref().map_or(0, |h| h.commit_ts_us);
        let pos = head.and_then(|h| h.position);
        let mut state = self.writer.lock().await;
        let end = self
            .log
            .append_at(Offset(first), records)
            .await
            .map_err(|e| log_error(&self.name, e))?;
        if pos.is_some() {
            *state = PositionState::recover(pos.clone());
            *lock(&self.last_position) = pos;
        }
        self.last_commit_ts_us
            .store(commit_ts_us, std::sync::atomic::Ordering::Relaxed);
        self.record_metrics();
        Ok(end.0)
    }

    /// The stream's gauges after an append.
    fn record_metrics(&self) {
        drc_obs::stream_appended(
            &self.name,
            self.role.name(),
            self.last_offset(),
            self.log.size_bytes(),
        );
    }

    /// Closes the log (its writer finishes, the directory lock is released)
    /// when this was its last user.
    pub(crate) async fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.log) {
            Ok(log) => log.close().await.map_err(|e| log_error(&self.name, e)),
            Err(_) => Ok(()),
        }
    }

    /// Marks a named subscription as connected; the guard marks it gone.
    pub(crate) fn attach(self: &Arc<Self>, name: &str) -> LiveGuard {
        lock(&self.live)
            .entry(name.to_string())
            .or_default()
            .connections += 1;
        LiveGuard {
            stream: self.clone(),
            name: name.to_string(),
        }
    }

    /// Subscribers: those registered in the log (with their confirmed
    /// position) and those connected now.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        let mut out: BTreeMap<String, SubscriberInfo> = self
            .log
            .subscribers()
            .into_iter()
            .map(|(name, o)| {
                (
                    name.clone(),
                    SubscriberInfo {
                        name,
                        confirmed: o.0,
                        sent: 0,
                        connected: false,
                    },
                )
            })
            .collect();
        for (name, l) in lock(&self.live).iter() {
            let e = out.entry(name.clone()).or_insert_with(|| SubscriberInfo {
                name: name.clone(),
                confirmed: 0,
                sent: 0,
                connected: false,
            });
            e.sent = l.sent;
            e.connected = l.connections > 0;
        }
        out.into_values().collect()
    }
}

/// A connected named subscription; dropping it marks it disconnected.
pub(crate) struct LiveGuard {
    stream: Arc<Stream>,
    name: String,
}

impl LiveGuard {
    /// Notes the last offset sent.
    pub fn sent(&self, offset: u64) {
        if let Some(l) = lock(&self.stream.live).get_mut(&self.name) {
            l.sent = l.sent.max(offset);
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = lock(&self.stream.live);
        if let Some(l) = live.get_mut(&self.name) {
            l.connections = l.connections.saturating_sub(1);
        }
    }
}

/// The record at `offset`, if the log holds it.
pub(crate) async fn read_one(
    log: &Log,
    offset: Offset,
) -> std::result::Result<Option<Bytes>, LogError> {
    let mut r = log.reader(offset)?;
    Ok(r.try_next()?.map(|(_, b)| b))
}
