//! The applier's and sinks' errors: transient (retry from the checkpoint
//! with backoff) or definite (stop the pipeline and say why).

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("relay: {0}")]
    Relay(#[from] drc_relay::RelayError),
    /// The target refused or lost the connection; retry.
    #[error("{sink}: {message}")]
    Transient { sink: String, message: String },
    /// The target cannot take this change: stop the stream at `offset`.
    #[error("{sink} at offset {offset}: {message}")]
    Definite {
        sink: String,
        offset: u64,
        message: String,
    },
    /// A conflict under the `fail` policy.
    #[error("conflict at offset {offset} on {table}: {message}")]
    Conflict {
        offset: u64,
        table: String,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl ApplyError {
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Relay(e) => e.is_transient(),
            ApplyError::Transient { .. } | ApplyError::Io { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = ApplyError> = std::result::Result<T, E>;
