//! The JSON-lines sink: one line per transaction, in the format of
//! `drc capture` (see `drc_capture::output::jsonl`), with two more fields
//! first — the stream and the transaction's offset in it:
//!
//! ```text
//! {"stream":"a.shop","offset":7,"gtid":"0-1-7","file":"binlog.000001","pos":1234,"ts":"2026-11-27T10:00:00Z","server_id":1,"changes":[...]}
//! ```
//!
//! **Delivery is at-least-once.** The sink is not atomic: it appends a
//! batch's lines, fsyncs the file, and only then replaces its checkpoint file
//! (`<path>.checkpoint.json`: temp file, fsync, rename, directory fsync). A
//! crash between the two repeats at most that one batch on the next start,
//! with the same lines. `(stream, offset)` identifies a transaction for
//! good: **consumers drop a line whose `(stream, offset)` they have already
//! seen** (offsets only grow, so remembering the highest offset per stream
//! is enough). A torn last line left by a crash is cut when the file is
//! opened again.
//!
//! Guarantees: `atomic = false`, `idempotent = true` (the ids above),
//! `durable = true` for a file (fsync'd before `apply` returns). With
//! `path = "-"` lines go to standard output, flushed before `apply` returns
//! (`durable = false`); the checkpoint then lives in the file named by
//! `checkpoint`, or in memory.
//!
//! Files: `config.rs` (settings), `writer.rs` (the output and its rotation),
//! `state.rs` (the checkpoint file).

pub mod config;
mod state;
mod writer;

use std::io::Write;
use std::path::PathBuf;

use drc_capture::assemble::AssembledTxn;
use drc_proto::v1 as pb;

pub use config::JsonlConfig;

use crate::error::{ApplyError, Result};
use crate::sink::{Batch, Checkpoint, Sink, SinkGuarantees};
use writer::{Output, RotatingFile};

/// Writes a stream as JSON lines to a file or standard output.
pub struct JsonlSink {
    config: JsonlConfig,
    checkpoint_path: Option<PathBuf>,
    /// Open output; `None` before the first use and after a failed write
    /// (reopened, and repaired, on the next call).
    out: Option<Output>,
    /// The last checkpoint recorded.
    checkpoint: Option<Checkpoint>,
    /// Formatted lines of a batch, reused.
    buf: Vec<u8>,
}

impl JsonlSink {
    /// Checks the config; opens nothing yet.
    pub fn new(config: JsonlConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            checkpoint_path: config.checkpoint_path(),
            config,
            out: None,
            checkpoint: None,
            buf: Vec::new(),
        })
    }

    /// The file holding the checkpoint, if it is kept in one.
    pub fn checkpoint_path(&self) -> Option<&std::path::Path> {
        self.checkpoint_path.as_deref()
    }

    /// Opens the output (off the async threads) unless it is open.
    async fn output(&mut self) -> Result<Output> {
        if let Some(o) = self.out.take() {
            return Ok(o);
        }
        if self.config.is_stdout() {
            return Ok(Output::Stdout);
        }
        let path = self.config.path.clone();
        let max = self.config.max_file_bytes;
        blocking(0, move || RotatingFile::open(&path, max).map(Output::File)).await
    }

    /// Reads the checkpoint (file, else memory) for `stream`.
    async fn load(&mut self, stream: &str) -> Result<Checkpoint> {
        let stored = match &self.checkpoint_path {
            Some(p) => {
                let p = p.clone();
                blocking(0, move || state::read(&p)).await?
            }
            None => self.checkpoint.clone(),
        };
        let cp = match stored {
            Some(cp) if cp.stream != stream => {
                return Err(ApplyError::Config(format!(
                    "{} holds the checkpoint of stream {:?}, not {stream:?}; give each stream its own sink.path",
                    self.where_(),
                    cp.stream
                )))
            }
            Some(cp) => cp,
            None => Checkpoint {
                stream: stream.to_string(),
                offset: 0,
                position: None,
            },
        };
        self.checkpoint = Some(cp.clone());
        Ok(cp)
    }

    fn where_(&self) -> String {
        match &self.checkpoint_path {
            Some(p) => p.display().to_string(),
            None => "the sink".into(),
        }
    }
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    offset: u64,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApplyError::Definite {
            sink: "jsonl".into(),
            offset,
            message: format!("writer task failed: {e}"),
        })?
}

/// Appends the line of `txn` at `offset` to `out`.
fn format_line(
    out: &mut Vec<u8>,
    stream: &str,
    offset: u64,
    txn: &pb::Transaction,
    line: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    line.clear();
    let mut t = AssembledTxn::in_memory(txn.clone());
    drc_capture::output::jsonl::write_txn(line, &mut t, scratch).map_err(|e| {
        ApplyError::Definite {
            sink: "jsonl".into(),
            offset,
            message: format!("format the transaction: {e}"),
        }
    })?;
    let Some(rest) = line.strip_prefix(b"{") else {
        return Err(ApplyError::Definite {
            sink: "jsonl".into(),
            offset,
            message: "the capture format did not start a JSON object".into(),
        });
    };
    out.extend_from_slice(b"{\"stream\":");
    serde_json::to_writer(&mut *out, stream).map_err(|e| ApplyError::Definite {
        sink: "jsonl".into(),
        offset,
        message: format!("format the stream name: {e}"),
    })?;
    // Writing to a Vec cannot fail.
    let _ = write!(out, ",\"offset\":{offset},");
    out.extend_from_slice(rest);
    Ok(())
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn guarantees(&self) -> SinkGuarantees {
        SinkGuarantees {
            atomic: false,
            durable: !self.config.is_stdout(),
            idempotent: true,
        }
    }

    async fn checkpoint(&mut self, stream: &str) -> Result<Checkpoint> {
        let out = self.output().await?;
        self.out = Some(out);
        self.load(stream).await
    }

    async fn apply(&mut self, batch: &Batch) -> Result<()> {
        let current = match &self.checkpoint {
            Some(cp) if cp.stream == batch.stream => cp.clone(),
            _ => self.load(&batch.stream).await?,
        };
        if batch.last_offset <= current.offset {
            // Already recorded: the checkpoint never moves backward.
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut ends = Vec::with_capacity(batch.transactions.len());
        let (mut line, mut scratch) = (Vec::new(), Vec::new());
        for (&offset, txn) in batch.offsets.iter().zip(&batch.transactions) {
            if offset <= current.offset {
                continue;
            }
            format_line(
                &mut buf,
                &batch.stream,
                offset,
                txn,
                &mut line,
                &mut scratch,
            )?;
            ends.push(buf.len());
        }
        let position = batch
            .transactions
            .last()
            .and_then(|t| t.position.clone())
            .or(current.position);
        let next = Checkpoint {
            stream: batch.stream.clone(),
            offset: batch.last_offset,
            position,
        };
        let mut out = self.output().await?;
        let state_path = self.checkpoint_path.clone();
        let cp = next.clone();
        let (out, buf) = blocking(next.offset, move || {
            if !ends.is_empty() {
                out.write_lines(&buf, &ends)?;
                out.sync()?;
            }
            if let Some(p) = state_path {
                state::write(&p, &cp)?;
            }
            Ok((out, buf))
        })
        .await?;
        self.out = Some(out);
        self.buf = buf;
        self.checkpoint = Some(next);
        Ok(())
    }
}
