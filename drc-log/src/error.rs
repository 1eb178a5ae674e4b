//! The log's one error type, and the one place that classifies each error as
//! transient (retry, perhaps after reopening the log) or definite (stop and
//! tell an operator).
//!
//! Every error about the files names the file, and where it matters the byte
//! position in it, so an operator can find the problem with `drc log check`.

use std::io;
use std::path::PathBuf;

use crate::Offset;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file system call failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What the log was doing, phrased as the action ("fsync segment").
        action: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The bytes on disk are not a valid log: never skipped, never repaired
    /// silently.
    #[error(
        "corrupt log file {} at byte {pos}: {reason}; the log will not skip it: restore \
         this stream's log from another relay or replicate the stream again",
        path.display()
    )]
    Corrupt {
        /// The segment (or state) file.
        path: PathBuf,
        /// Byte position in that file where the problem starts.
        pos: u64,
        /// What is wrong there.
        reason: String,
    },

    /// A reader asked for an offset that retention has already deleted.
    #[error(
        "offset {requested} is no longer in the log: retention deleted it, the first \
         available offset is {first_available}; resume from a newer checkpoint or \
         re-snapshot the consumer"
    )]
    Deleted {
        /// The offset asked for.
        requested: Offset,
        /// The oldest offset the log still holds.
        first_available: Offset,
    },

    /// A reader (or a subscriber confirmation) named an offset past the end.
    #[error(
        "offset {requested} is beyond the end of the log: the next offset to be \
         written is {next}"
    )]
    BeyondEnd {
        /// The offset asked for.
        requested: Offset,
        /// The next offset the log will assign.
        next: Offset,
    },

    /// `append_at` was called with a first offset other than the log's next
    /// offset: the replica and its upstream disagree about where they are.
    #[error("append at offset {got} refused: the log's next offset is {expected}")]
    OffsetMismatch {
        /// The log's next offset.
        expected: Offset,
        /// The first offset the caller wanted to write.
        got: Offset,
    },

    /// One record is larger than the configured limit.
    #[error("record of {len} bytes is larger than the limit of {max} bytes (max_record_bytes)")]
    RecordTooLarge {
        /// The record's size.
        len: u64,
        /// The configured limit.
        max: u64,
    },

    /// An append with no records.
    #[error("append with no records")]
    EmptyAppend,

    /// Another `Log` (in this or another process) has the directory open.
    #[error(
        "the log in {} is already open (lock file held by another process or handle)",
        path.display()
    )]
    Locked {
        /// The log directory.
        path: PathBuf,
    },

    /// A write or fsync failed earlier; this handle accepts no more appends,
    /// because after a failed fsync the kernel's page cache can no longer be
    /// trusted to match the disk.
    #[error(
        "the log writer stopped after a failed write ({cause}); reopen the log to \
         recover from what is on disk"
    )]
    Failed {
        /// The first failure, as text.
        cause: String,
    },

    /// The log was closed (its writer has stopped).
    #[error("the log is closed")]
    Closed,

    /// `check` was given a file, or a directory with no segment files.
    #[error("{} is not a log directory: it holds no segments (*.seg)", path.display())]
    NotALog {
        /// The directory.
        path: PathBuf,
    },

    /// `confirm` or `unregister` named a subscriber that is not registered.
    #[error("unknown subscriber {name:?}: register it first")]
    UnknownSubscriber {
        /// The name given.
        name: String,
    },

    /// The configuration is unusable.
    #[error("invalid log config: {0}")]
    Config(String),
}

impl LogError {
    /// True when retrying may succeed without an operator: a file system
    /// error (disk full, a slow device), a lock another process still holds,
    /// or a failed writer (reopen the log, which recovers from disk, then
    /// retry). Everything else is definite: the same call will fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            LogError::Io { .. } | LogError::Locked { .. } | LogError::Failed { .. } => true,
            LogError::Corrupt { .. }
            | LogError::Deleted { .. }
            | LogError::BeyondEnd { .. }
            | LogError::OffsetMismatch { .. }
            | LogError::RecordTooLarge { .. }
            | LogError::EmptyAppend
            | LogError::Closed
            | LogError::NotALog { .. }
            | LogError::UnknownSubscriber { .. }
            | LogError::Config(_) => false,
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, pos: u64, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            path: path.into(),
            pos,
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_and_offset() {
        let e = LogError::corrupt("/x/00000000000000000001.seg", 4096, "bad crc");
        let s = e.to_string();
        assert!(s.contains("00000000000000000001.seg"), "{s}");
        assert!(s.contains("byte 4096"), "{s}");
        assert!(!e.is_transient());
        let d = LogError::Deleted {
            requested: Offset(5),
            first_available: Offset(100),
        };
        assert!(d.to_string().contains("first available offset is 100"));
        assert!(LogError::io("fsync segment", "/x", io::Error::other("eio")).is_transient());
    }
}
