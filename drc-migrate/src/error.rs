//! Errors of a migration. Each says what is wrong and what to do; none is
//! raised after a partial write that a rerun could not continue from (a
//! chunk is loaded and recorded in one target transaction).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A check before anything is written failed (settings, privileges,
    /// a non-empty target, a table the target cannot hold).
    #[error("preflight: {0}")]
    Preflight(String),
    /// The source could not be read.
    #[error("source: {what}: {reason}")]
    Source { what: String, reason: String },
    /// The target refused a write or a query.
    #[error("target: {what}: {reason}")]
    Target { what: String, reason: String },
    /// The catch-up (binlog capture and apply) stopped.
    #[error("catch-up: {0}")]
    Catchup(String),
    /// Verification could not run.
    #[error("verify: {0}")]
    Verify(String),
    /// Verification ran and found differences.
    #[error("verify: the target differs from the source:\n{0}")]
    NotIdentical(String),
    /// Ctrl-C / SIGTERM before the migration finished; a rerun with
    /// `--resume` continues it.
    #[error("interrupted; rerun with --resume to continue")]
    Interrupted,
    /// The cutover could not complete; the message says the state the
    /// source was left in.
    #[error("cutover: {0}")]
    Cutover(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A MariaDB/MySQL error in `what` on the source.
pub fn source(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Source {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// An error in `what` on the target.
pub fn target(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Target {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// A PostgreSQL error with the server's message when there is one.
pub fn pg(what: impl Into<String>, e: &tokio_postgres::Error) -> Error {
    let reason = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    Error::Target {
        what: what.into(),
        reason,
    }
}
