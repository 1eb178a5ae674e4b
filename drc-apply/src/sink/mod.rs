//! The Sink contract.
//!
//! A sink receives [`Batch`]es: runs of whole source transactions of one
//! stream, in offset order, with no gap after the sink's checkpoint. What a
//! sink promises is stated by [`Sink::guarantees`] and checked by the
//! applier's tests:
//!
//! - **Atomic batches** (`atomic`): after `apply` returns `Ok`, the whole batch
//!   *and* its checkpoint are durable together; after a crash at any moment
//!   either all of a batch is visible with its checkpoint or none of it is.
//!   Transactional sinks (MySQL/MariaDB, PostgreSQL) write the checkpoint in
//!   the same target transaction as the data. This gives exactly-once.
//! - **Durable on return** (`durable`): `apply` returns only once the batch is
//!   durable (fsync'd, committed, or acknowledged by the broker).
//! - **Idempotent** (`idempotent`): applying a batch again after a crash
//!   between the data write and the checkpoint is harmless, because every
//!   message carries a stable id (`stream:offset:index`) that consumers or the
//!   broker use to drop repeats. Non-atomic sinks (JSON lines, NATS) are
//!   at-least-once with such ids.
//!
//! Every sink reads its checkpoint at start ([`Sink::checkpoint`]); the
//! applier subscribes from the next offset. The checkpoint never moves
//! backward.

pub mod jsonl;
pub mod mysql;
pub mod nats;
pub mod postgres;

use drc_proto::v1 as pb;

use crate::error::Result;

/// The first line of `s`, cut to 200 characters, for error messages that
/// quote a statement.
pub(crate) fn abbreviate(s: &str) -> String {
    let line = s.trim().lines().next().unwrap_or_default();
    let cut: String = line.chars().take(200).collect();
    if cut.len() < s.trim().len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// How far a sink has durably got in one stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    pub stream: String,
    /// Offset of the last transaction applied (0: nothing yet).
    pub offset: u64,
    /// Source position of that transaction.
    pub position: Option<pb::SourcePosition>,
}

/// What a sink promises; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkGuarantees {
    pub atomic: bool,
    pub durable: bool,
    pub idempotent: bool,
}

/// A run of whole transactions at consecutive offsets (transactions filtered
/// out upstream leave holes in `offsets`, never in the stream's order).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub stream: String,
    /// Offset of each transaction, increasing.
    pub offsets: Vec<u64>,
    pub transactions: Vec<pb::Transaction>,
    /// The checkpoint to record with this batch: the last offset the batch
    /// covers (it may exceed the last transaction's offset when the relay
    /// filtered transactions out).
    pub last_offset: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Row changes in the batch.
    pub fn rows(&self) -> usize {
        self.transactions.iter().map(|t| t.changes.len()).sum()
    }
}

/// A destination of a stream.
pub trait Sink: Send {
    /// Short name for logs and metrics (`mysql`, `postgres`, `jsonl`, ...).
    fn name(&self) -> &str;

    fn guarantees(&self) -> SinkGuarantees;

    /// The checkpoint of `stream`, read from the sink itself.
    fn checkpoint(
        &mut self,
        stream: &str,
    ) -> impl std::future::Future<Output = Result<Checkpoint>> + Send;

    /// Applies a batch and records `batch.last_offset` as the checkpoint, with
    /// the guarantees above. A batch with no transaction (every offset it
    /// covers was filtered out upstream) may leave the checkpoint where it
    /// is: after a restart those offsets are filtered out again. An error leaves the checkpoint where it was for
    /// atomic sinks; the applier then retries from the sink's checkpoint.
    fn apply(&mut self, batch: &Batch) -> impl std::future::Future<Output = Result<()>> + Send;
}
