//! The capture's errors, each classified once: transient errors are retried
//! with backoff (network, server restarts); definite ones stop the stream with
//! a message that says what is wrong and what to do.

use crate::position::BinlogPos;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The source is set up in a way capture cannot work with (log_bin off,
    /// binlog_format not ROW, ...). The message names the fix.
    #[error("source not ready: {0}")]
    Source(String),
    /// The resume point is no longer in the source's binlogs.
    #[error("resume point purged: {0}")]
    Purged(String),
    /// An event could not be decoded; the stream stops here.
    #[error("cannot decode {event} at {pos}: {reason}")]
    Decode {
        pos: BinlogPos,
        event: String,
        reason: String,
    },
    /// A DDL on a tracked table that the schema history cannot follow.
    #[error("cannot follow DDL at {pos} ({statement:?}): {reason}; restart the capture at the head so the new definition can be read from the server, or set binlog_row_metadata=FULL")]
    UnknownDdl {
        pos: BinlogPos,
        db: String,
        statement: String,
        reason: String,
    },
    #[error("schema history: {0}")]
    Schema(#[from] crate::schema::history::SchemaError),
    #[error("connection to the source: {0}")]
    Protocol(#[from] crate::binlog::protocol::ProtocolError),
    #[error("query on the source: {0}")]
    Query(#[from] mysql_async::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad binlog file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("output: {0}")]
    Output(String),
    #[error("{0}")]
    Config(String),
    /// Returned by a consumer's callback to end a capture cleanly:
    /// [`crate::capture::run`] then returns its statistics.
    #[error("stopped by the consumer")]
    Stop,
}

impl CaptureError {
    /// True for errors that a reconnect with backoff can cure.
    pub fn is_transient(&self) -> bool {
        match self {
            CaptureError::Protocol(e) => e.is_transient(),
            CaptureError::Query(e) => matches!(e, mysql_async::Error::Io(_)),
            _ => false,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CaptureError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = CaptureError> = std::result::Result<T, E>;
