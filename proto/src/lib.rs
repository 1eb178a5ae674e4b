//! DRC's normalized change model, generated from `drc.proto`.
//!
//! Every crate speaks these types: a capture produces [`v1::Transaction`]s, the
//! relay stores them, appliers consume them. The relay's gRPC service
//! (`relay.proto`: [`v1::relay_client`], [`v1::relay_server`]) lives in the same
//! module, since it shares the `drc.v1` package.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/drc.v1.rs"));
}

pub use v1::*;
