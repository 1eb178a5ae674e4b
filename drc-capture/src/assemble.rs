//! Transaction assembly with bounded memory.
//!
//! Row changes of the open transaction are kept in memory until their
//! estimated size passes the spill threshold (default 64 MiB); from then on
//! they are appended, length-delimited protobuf, to an unlinked temporary file
//! and read back one at a time when the transaction is consumed. Memory thus
//! does not grow with transaction size.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use drc_proto::v1 as pb;
use prost::Message;

use crate::error::{CaptureError, Result};

pub const DEFAULT_SPILL_THRESHOLD: usize = 64 << 20;

/// A whole source transaction: header fields plus its changes, in memory or
/// partly spilled to disk.
#[derive(Debug)]
pub struct AssembledTxn {
    /// Position, time, server id, origin and DDL; `changes` holds the changes
    /// that were not spilled (they come after the spilled ones).
    pub txn: pb::Transaction,
    spilled: Option<Spill>,
}

#[derive(Debug)]
struct Spill {
    file: BufWriter<File>,
    count: u64,
}

impl AssembledTxn {
    pub fn in_memory(txn: pb::Transaction) -> Self {
        Self { txn, spilled: None }
    }

    /// Number of changes, spilled ones included.
    pub fn change_count(&self) -> u64 {
        self.spilled.as_ref().map_or(0, |s| s.count) + self.txn.changes.len() as u64
    }

    pub fn is_spilled(&self) -> bool {
        self.spilled.is_some()
    }

    /// Visits every change in order, reading spilled ones back from disk.
    pub fn for_each_change(
        &mut self,
        mut f: impl FnMut(&pb::RowChange) -> Result<()>,
    ) -> Result<()> {
        if let Some(spill) = self.spilled.as_mut() {
            spill
                .file
                .flush()
                .map_err(|e| CaptureError::io("flush transaction spill file", e))?;
            let file = spill.file.get_mut();
            file.seek(SeekFrom::Start(0))
                .map_err(|e| CaptureError::io("rewind transaction spill file", e))?;
            let mut r = BufReader::with_capacity(1 << 20, &*file);
            let mut buf = Vec::new();
            for _ in 0..spill.count {
                let mut len = [0u8; 4];
                r.read_exact(&mut len)
                    .map_err(|e| CaptureError::io("read transaction spill file", e))?;
                buf.resize(u32::from_le_bytes(len) as usize, 0);
                r.read_exact(&mut buf)
                    .map_err(|e| CaptureError::io("read transaction spill file", e))?;
                let change = pb::RowChange::decode(buf.as_slice())
                    .map_err(|e| CaptureError::Output(format!("spill file corrupt: {e}")))?;
                f(&change)?;
            }
        }
        for c in &self.txn.changes {
            f(c)?;
        }
        Ok(())
    }

    /// The whole transaction in memory (reads spilled changes back).
    pub fn into_transaction(mut self) -> Result<pb::Transaction> {
        if self.spilled.is_none() {
            return Ok(self.txn);
        }
        let mut all = Vec::new();
        self.for_each_change(|c| {
            all.push(c.clone());
            Ok(())
        })?;
        self.txn.changes = all;
        Ok(self.txn)
    }
}

/// Builds one transaction, spilling past a threshold.
#[derive(Debug)]
pub struct TxnBuilder {
    pub txn: pb::Transaction,
    approx_bytes: usize,
    threshold: usize,
    spill_dir: Option<PathBuf>,
    spilled: Option<Spill>,
}

impl TxnBuilder {
    pub fn new(txn: pb::Transaction, threshold: usize, spill_dir: Option<PathBuf>) -> Self {
        Self {
            txn,
            approx_bytes: 0,
            threshold,
            spill_dir,
            spilled: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.txn.changes.is_empty() && self.spilled.is_none()
    }

    /// Adds one change (in memory until the next [`Self::add_bytes`] decides).
    pub fn push(&mut self, change: pb::RowChange) {
        self.txn.changes.push(change);
    }

    /// Accounts `approx` bytes of changes pushed; spills past the threshold.
    pub fn add_bytes(&mut self, approx: usize) -> Result<()> {
        self.approx_bytes += approx;
        if self.approx_bytes >= self.threshold {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        if self.spilled.is_none() {
            let file = match &self.spill_dir {
                Some(d) => tempfile::tempfile_in(d),
                None => tempfile::tempfile(),
            }
            .map_err(|e| CaptureError::io("create transaction spill file", e))?;
            self.spilled = Some(Spill {
                file: BufWriter::with_capacity(1 << 20, file),
                count: 0,
            });
        }
        if let Some(spill) = self.spilled.as_mut() {
            let mut buf = Vec::new();
            for c in self.txn.changes.drain(..) {
                buf.clear();
                c.encode(&mut buf)
                    .map_err(|e| CaptureError::Output(format!("encode change: {e}")))?;
                spill
                    .file
                    .write_all(&(buf.len() as u32).to_le_bytes())
                    .and_then(|_| spill.file.write_all(&buf))
                    .map_err(|e| CaptureError::io("write transaction spill file", e))?;
                spill.count += 1;
            }
        }
        self.txn.changes.shrink_to(1024);
        self.approx_bytes = 0;
        Ok(())
    }

    pub fn finish(self) -> AssembledTxn {
        AssembledTxn {
            txn: self.txn,
            spilled: self.spilled,
        }
    }
}
