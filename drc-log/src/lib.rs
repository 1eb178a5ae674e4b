//! `drc-log`: the durable, append-only log under each relay, one log per
//! stream, stored as segment files in one directory.
//!
//! The log stores opaque records (the relay puts encoded transactions in
//! them) at dense offsets from 1. What it guarantees:
//!
//! - **Durable before acknowledged.** An append's future resolves only after
//!   its records were written and fdatasync'd. Concurrent appends are
//!   group-committed by one writer: one write and one fdatasync per batch
//!   (per segment touched by the batch).
//! - **Readers see only acknowledged records**, read them from the files
//!   (not from memory), and wait for new ones without polling.
//! - **No silent skips.** A torn tail at the end of the last segment (a crash
//!   mid-write, never acknowledged) is cut off with a warning on open; any
//!   other damage is an error naming the file and byte position. See
//!   `segment.rs` for the on-disk format and the exact torn-tail rule, and
//!   `record.rs` for the record layout.
//! - **Retention** deletes whole old segments by size and age, never past
//!   what a registered subscriber has confirmed, unless a hard size cap
//!   forces it (with a warning).
//!
//! The directory holds the segments `NNNNNNNNNNNNNNNNNNNN.seg`, the
//! subscriber positions `subscribers.json` (replaced atomically), and `LOCK`,
//! which an open log holds with an exclusive file lock so two writers can
//! never share a directory.
//!
//! Start with [`Log::open`]; [`check`] verifies a log offline.

mod check;
mod durable;
mod error;
mod log;
mod reader;
pub mod record;
mod recover;
mod retention;
pub mod segment;
mod writer;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use check::{check, CheckReport, SegmentReport};
pub use error::{LogError, Result};
pub use log::{Log, LogStats, SegmentStatus};
pub use reader::LogReader;
pub use retention::{Retention, RetentionReport};
pub use segment::TornTail;

/// A record's position in its stream: dense from 1, the same in every region
/// that holds the stream. `Offset(0)` means "before the first record".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// Before the first record: what a subscriber has confirmed when it has
    /// confirmed nothing.
    pub const ZERO: Offset = Offset(0);
    /// The first offset of every stream.
    pub const FIRST: Offset = Offset(1);

    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0.saturating_add(1))
    }

    /// The offset before this one (`ZERO` stays `ZERO`).
    pub fn prev(self) -> Offset {
        Offset(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Offset {
    fn from(v: u64) -> Self {
        Offset(v)
    }
}

/// Segments roll (a new file starts) once they reach this size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 << 20;
/// One group commit writes at most about this many bytes of appends.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 8 << 20;
/// The largest record accepted.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 256 << 20;
/// Appends waiting for the writer; more wait in `append` (backpressure).
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;
/// How often the writer enforces retention and saves subscriber positions.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// The smallest `segment_bytes` accepted (for tests; real logs use MiBs).
pub const MIN_SEGMENT_BYTES: u64 = 64;

/// How a log is written and kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment once the current one would grow past this many
    /// bytes. A single record larger than this gets a segment of its own.
    pub segment_bytes: u64,
    /// Stop adding appends to a group commit once it holds this many bytes
    /// (one append is never split).
    pub max_batch_bytes: u64,
    /// Refuse records larger than this (at most 4 GiB - 1, the format's
    /// limit).
    pub max_record_bytes: u64,
    /// Appends queued for the writer before `append` itself waits.
    pub queue_depth: usize,
    /// What to delete, and when.
    pub retention: Retention,
    /// How often the writer runs retention and saves subscriber positions.
    pub retention_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            retention: Retention::default(),
            retention_interval: DEFAULT_RETENTION_INTERVAL,
        }
    }
}

impl LogConfig {
    /// Checks the values; the message names the setting and the fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LogError::Config(m));
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return bad(format!(
                "segment_bytes = {} is too small: use at least {MIN_SEGMENT_BYTES} (default {DEFAULT_SEGMENT_BYTES})",
                self.segment_bytes
            ));
        }
        if self.max_batch_bytes == 0 {
            return bad("max_batch_bytes must be at least 1".into());
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > record::MAX_PAYLOAD_LEN {
            return bad(format!(
                "max_record_bytes = {} must be between 1 and {}",
                self.max_record_bytes,
                record::MAX_PAYLOAD_LEN
            ));
        }
        if self.queue_depth == 0 {
            return bad("queue_depth must be at least 1".into());
        }
        if self.retention_interval.is_zero() {
            return bad("retention_interval must be more than zero".into());
        }
        self.retention.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_display_and_serde() -> std::result::Result<(), serde_json::Error> {
        assert_eq!(Offset(42).to_string(), "42");
        assert_eq!(serde_json::to_string(&Offset(42))?, "42");
        assert_eq!(serde_json::from_str::<Offset>("7")?, Offset(7));
        assert_eq!(Offset::ZERO.prev(), Offset::ZERO);
        assert_eq!(Offset(1).next(), Offset(2));
        Ok(())
    }

    #[test]
    fn config_validation_names_the_key() {
        assert!(LogConfig::default().validate().is_ok());
        let c = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(c
            .validate()
            .err()
            .is_some_and(|e| e.to_string().contains("segment_bytes")));
    }
}
