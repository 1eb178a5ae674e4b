//! DRC apply: writes a stream into a sink in order, with checkpoints that make
//! delivery exactly-once where the sink is transactional.
//!
//! - [`sink::Sink`] is the contract every sink implements.
//! - [`applier`] subscribes to a stream at its relay from the sink's
//!   checkpoint and feeds the sink batches of whole transactions.

pub mod applier;
pub mod error;
pub mod sink;

pub use error::{ApplyError, Result};
pub use sink::{Batch, Checkpoint, Sink, SinkGuarantees};
