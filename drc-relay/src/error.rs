//! The relay's errors, classified once: transient errors (network, an
//! upstream that restarts, a stream not created yet) are retried with backoff;
//! definite ones (bad config, refused certificates, a diverged replica, a
//! purged offset) stop the work with a message that says what to do.
//!
//! Errors cross the gRPC boundary as [`tonic::Status`] codes chosen here, so
//! a client can classify a server's answer the same way.

use std::path::PathBuf;

use tonic::Code;

/// One error type for the whole crate.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration is unusable; the message names the key and the fix.
    #[error("config: {0}")]
    Config(String),
    /// A TLS file or handshake problem.
    #[error("tls: {0}")]
    Tls(String),
    /// Reading or writing a file of the relay.
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A network operation failed (connect, accept, a broken link).
    #[error("{context}: {source}")]
    Net {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The durable log of a stream failed.
    #[error("log of stream {stream}: {message}")]
    Log {
        stream: String,
        message: String,
        transient: bool,
    },
    /// No such stream (yet).
    #[error("unknown stream {0:?}")]
    UnknownStream(String),
    /// A request that can never succeed as sent (bad stream name, missing
    /// position, undecodable transaction, bad filter).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The requested offset is not in the stream (deleted by retention, or
    /// past its end).
    #[error("{0}")]
    OutOfRange(String),
    /// The stream cannot take this operation in its state (publishing to a
    /// replica, a replica that diverged from its upstream).
    #[error("{0}")]
    Precondition(String),
    /// A malformed batch or record from a peer.
    #[error("bad data from the relay: {0}")]
    Corrupt(String),
    /// The peer answered with a gRPC status, or the call could not reach it
    /// (a status made on this side from the connection's failure).
    #[error("{}", describe_status(.0))]
    Status(Box<tonic::Status>),
    /// Could not set up or keep the gRPC connection.
    #[error("connection: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The relay is shutting down.
    #[error("shutting down")]
    Shutdown,
}

/// Convenience alias.
pub type Result<T, E = RelayError> = std::result::Result<T, E>;

impl RelayError {
    /// True when retrying later with backoff can cure the error.
    pub fn is_transient(&self) -> bool {
        match self {
            RelayError::Net { .. } | RelayError::Transport(_) | RelayError::Shutdown => true,
            RelayError::Log { transient, .. } => *transient,
            // A stream that does not exist yet appears when its capture
            // first publishes.
            RelayError::UnknownStream(_) => true,
            RelayError::Status(s) => is_transient_code(s.code()),
            RelayError::Config(_)
            | RelayError::Tls(_)
            | RelayError::Io { .. }
            | RelayError::InvalidRequest(_)
            | RelayError::OutOfRange(_)
            | RelayError::Precondition(_)
            | RelayError::Corrupt(_) => false,
        }
    }

    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        RelayError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn net(context: impl Into<String>, source: std::io::Error) -> Self {
        RelayError::Net {
            context: context.into(),
            source,
        }
    }
}

/// A status the peer sent is its answer. One that tonic made on this side
/// from a failed connection (it carries that failure as its source; a
/// status read off the wire has none) means the peer was not heard, and the
/// message says so: "relay answered" would send an operator looking at the
/// wrong end of a cut link.
fn describe_status(s: &tonic::Status) -> String {
    match (std::error::Error::source(s).is_some(), s.code()) {
        (true, Code::Unavailable) => format!("cannot reach the relay: {}", s.message()),
        (true, _) => format!("lost the connection to the relay: {}", s.message()),
        (false, code) => format!("relay answered {code}: {}", s.message()),
    }
}

/// gRPC codes a retry can cure.
fn is_transient_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Aborted
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::NotFound
            | Code::Internal
    )
}

impl From<tonic::Status> for RelayError {
    fn from(s: tonic::Status) -> Self {
        RelayError::Status(Box::new(s))
    }
}

impl From<RelayError> for tonic::Status {
    fn from(e: RelayError) -> Self {
        let code = match &e {
            RelayError::Config(_) | RelayError::Tls(_) => Code::FailedPrecondition,
            RelayError::Io { .. } | RelayError::Corrupt(_) => Code::Internal,
            RelayError::Net { .. } | RelayError::Transport(_) | RelayError::Shutdown => {
                Code::Unavailable
            }
            RelayError::Log { transient, .. } => {
                if *transient {
                    Code::Unavailable
                } else {
                    Code::Internal
                }
            }
            RelayError::UnknownStream(_) => Code::NotFound,
            RelayError::InvalidRequest(_) => Code::InvalidArgument,
            RelayError::OutOfRange(_) => Code::OutOfRange,
            RelayError::Precondition(_) => Code::FailedPrecondition,
            RelayError::Status(s) => return (**s).clone(),
        };
        tonic::Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_survives_the_wire() {
        let e = RelayError::OutOfRange("offset 3 was deleted".into());
        assert!(!e.is_transient());
        let back = RelayError::from(tonic::Status::from(e));
        assert!(!back.is_transient());
        let e = RelayError::UnknownStream("a.b".into());
        let back = RelayError::from(tonic::Status::from(e));
        assert!(back.is_transient());
    }
}
