//! DRC's normalized change model, generated from `drc.proto`.
//!
//! Every crate speaks these types: a capture produces [`v1::Transaction`]s, the
//! relay stores them, appliers consume them.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/drc.v1.rs"));
}

pub use v1::*;
