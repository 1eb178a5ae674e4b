//! `drc-relay`: the regional change store and hub.
//!
//! A relay keeps one durable log (`drc-log`) per stream and serves it over
//! gRPC (`proto/relay.proto`):
//!
//! - captures **publish** whole transactions; the relay dedups them by source
//!   position, appends, fsyncs, then acks (so a capture that restarts and
//!   resends is harmless, and resumes where the relay says);
//! - appliers, consumers and the relays of other regions **subscribe** from an
//!   offset, with filters, zstd batches, and HTTP/2 flow control as the
//!   backpressure;
//! - a relay **replicates** streams of other regions by subscribing to their
//!   home relay and appending at identical offsets.
//!
//! Links are mutually authenticated TLS by default; plaintext only on a
//! loopback address or unix socket when the config says so.
//!
//! Files, one job each: `config.rs` (settings and their checks), `server.rs`
//! (the service and listener), `client.rs`, `replicate.rs`, `registry.rs` and
//! `stream.rs` (streams and their logs), `position.rs` (dedup), `filter.rs`,
//! `batch.rs` (the wire form of batches), `record.rs` (reading a stored
//! transaction's head), `tls.rs`, `net.rs` (sockets), `error.rs`.

pub mod batch;
pub mod client;
pub mod config;
pub mod error;
pub mod filter;
pub mod net;
pub mod position;
pub mod record;
pub mod registry;
pub mod replicate;
pub mod server;
pub mod stream;
pub mod tls;

pub use client::{Publisher, RelayClient, SubscribeOptions, Subscription};
pub use config::{ClientConfig, RelayConfig, UpstreamConfig};
pub use drc_log::Offset;
pub use error::{RelayError, Result};
pub use server::{RelayServer, RelayService, ServerStats};
pub use tls::TlsConfig;
