//! The crate's one error type. Every variant names what is wrong and, where
//! there is one, the fix; none carries row values or passwords.

/// Why a verification could not run (differences are not errors: they are
/// the [`crate::Report`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--source`/`--target` URL that cannot be used.
    #[error("bad {side} URL: {reason}")]
    BadUrl {
        /// `source` or `target`.
        side: &'static str,
        /// What is wrong with it and what is expected.
        reason: String,
    },
    /// Connecting or authenticating failed.
    #[error("connect to the {side} ({addr}): {reason}")]
    Connect {
        /// `source` or `target`.
        side: &'static str,
        /// host:port, never the password.
        addr: String,
        /// The server's or the network's message.
        reason: String,
    },
    /// A query failed on a server.
    #[error("query on the {side} failed ({what}): {reason}")]
    Query {
        /// `source` or `target`.
        side: &'static str,
        /// What the query was for, e.g. `chunk checksum of shop.orders`.
        what: String,
        /// The server's message.
        reason: String,
    },
    /// A `--tables` pattern that is not a valid glob, or that matches nothing.
    #[error("--tables: {0}")]
    Tables(String),
    /// A server answered something this code cannot read.
    #[error("unexpected answer from the {side}: {reason}")]
    Protocol {
        /// `source` or `target`.
        side: &'static str,
        /// What was expected and what came.
        reason: String,
    },
    /// Writing the repair SQL file failed.
    #[error("write repair SQL to {path}: {reason}")]
    Repair {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
