//! The parallel snapshot: `parallel` workers take chunks off one queue
//! (largest tables first, so the last minutes are not one big table alone);
//! each opens a consistent snapshot on the source, notes its binlog
//! position, and streams the chunk's rows straight into the target's load,
//! with no file in between. A chunk is loaded and marked done in one target
//! transaction.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::error::{self, Result};
use crate::plan::{self, Chunk};
use crate::source::{table_ref, SourceTable};
use crate::target::Target;
use crate::Progress;

/// Bytes per message from the reader to the loader.
const BUFFER_BYTES: usize = 256 << 10;
/// Messages buffered between them.
const BUFFERS: usize = 8;

/// What the snapshot did.
#[derive(Debug, Clone, Default)]
pub struct SnapshotStats {
    pub chunks: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// How much runs at once and how big a keyset chunk is.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub parallel: usize,
    /// Rows per keyset chunk.
    pub chunk_rows: u64,
}

/// Loads every chunk of `chunks` (the ones not done); sends each table's
/// index on `loaded` once all its rows are in.
pub async fn run(
    source: &Pool,
    target: Arc<Target>,
    tables: Arc<Vec<SourceTable>>,
    chunks: Vec<Chunk>,
    settings: Settings,
    progress: Arc<dyn Progress>,
    loaded: mpsc::UnboundedSender<usize>,
) -> Result<SnapshotStats> {
    let mut chunks = chunks;
    // Chunks queued or being loaded, per table: a table is loaded when its
    // count drops to 0 (a keyset chunk's follow-up keeps it up).
    let mut pending: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for c in &chunks {
        *pending.entry(c.table).or_default() += 1;
    }
    let pending = Arc::new(Mutex::new(pending));
    // Big tables first; a table's chunks in order.
    chunks.sort_by_key(|c| (std::cmp::Reverse(tables[c.table].est_rows), c.table, c.seq));
    let queue = Arc::new(Mutex::new(VecDeque::from(chunks)));
    let stats = Arc::new(Mutex::new(SnapshotStats::default()));
    let mut workers = Vec::new();
    for _ in 0..settings.parallel.max(1) {
        let queue = Arc::clone(&queue);
        let stats = Arc::clone(&stats);
        let source = source.clone();
        let target = Arc::clone(&target);
        let tables = Arc::clone(&tables);
        let progress = Arc::clone(&progress);
        let pending = Arc::clone(&pending);
        let loaded = loaded.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(chunk) = next else {
                    return Ok::<(), crate::Error>(());
                };
                let t = &tables[chunk.table];
                let (rows, bytes, next) = one_chunk(
                    &source,
                    &target,
                    t,
                    &chunk,
                    settings.chunk_rows,
                    progress.as_ref(),
                )
                .await?;
                let table = chunk.table;
                let followed = next.is_some();
                if let Some(next) = next {
                    // A keyset table goes on where this chunk ended.
                    if let Ok(mut q) = queue.lock() {
                        q.push_front(next);
                    }
                }
                if !followed {
                    let done = pending.lock().ok().is_some_and(|mut p| {
                        let n = p.entry(table).or_insert(1);
                        *n = n.saturating_sub(1);
                        *n == 0
                    });
                    if done {
                        let _ = loaded.send(table);
                    }
                }
                if let Ok(mut s) = stats.lock() {
                    s.chunks += 1;
                    s.rows += rows;
                    s.bytes += bytes;
                }
                progress.chunk_done(&t.full_name());
            }
        }));
    }
    let mut first_err = None;
    for w in workers {
        let r = w
            .await
            .map_err(|e| error::target("snapshot worker", e))
            .and_then(|r| r);
        if let Err(e) = r {
            // Stop the others: they find the queue empty.
            if let Ok(mut q) = queue.lock() {
                q.clear();
            }
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let s = stats.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(s)
}

/// Reads and loads one chunk; returns (rows, bytes sent, the keyset chunk
/// that follows it).
async fn one_chunk(
    source: &Pool,
    target: &Arc<Target>,
    t: &SourceTable,
    chunk: &Chunk,
    chunk_rows: u64,
    progress: &dyn Progress,
) -> Result<(u64, u64, Option<Chunk>)> {
    let name = t.full_name();
    let mut src = source
        .get_conn()
        .await
        .map_err(|e| error::source("connect", e))?;
    let snap = plan::begin_snapshot(&mut src).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFERS);
    let (count_tx, count_rx) = oneshot::channel::<plan::ChunkEnd>();
    let load = {
        let target = Arc::clone(target);
        let t = t.clone();
        let chunk = chunk.clone();
        let snap = snap.clone();
        tokio::spawn(async move { target.load_chunk(&t, &chunk, &snap, rx, count_rx).await })
    };
    let keyset = t.keyset();
    let key_exprs = if keyset {
        format!(", {}", t.key_exprs().join(", "))
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {}{key_exprs} FROM {}{}",
        target.select_list(t),
        table_ref(t.db(), t.name()),
        chunk.clause(t, chunk_rows)?
    );
    let copied = t.copied.len();
    let read = async {
        let mut result = src
            .query_iter(sql)
            .await
            .map_err(|e| error::source(format!("read chunk {} of {name}", chunk.seq), e))?;
        let mut buf = BytesMut::with_capacity(BUFFER_BYTES + 4096);
        let mut scratch = String::new();
        let mut rows = 0u64;
        let mut bytes = 0u64;
        let mut since = 0u64;
        let mut since_rows = 0u64;
        let mut last_key: Vec<mysql_async::Value> = Vec::new();
        while let Some(row) = result
            .next()
            .await
            .map_err(|e| error::source(format!("read chunk {} of {name}", chunk.seq), e))?
        {
            let mut values = row.unwrap();
            if keyset {
                last_key = values.split_off(copied.min(values.len()));
            }
            target.encode_row(t, &mut buf, values, &mut scratch)?;
            rows += 1;
            since_rows += 1;
            if buf.len() >= BUFFER_BYTES {
                bytes += buf.len() as u64;
                since += buf.len() as u64;
                let out = buf.split().freeze();
                if tx.send(out).await.is_err() {
                    // The load ended early; its error is the one to report.
                    return Ok((rows, bytes, false, last_key));
                }
                if since >= 4 * BUFFER_BYTES as u64 {
                    progress.rows(&name, since_rows, since);
                    since = 0;
                    since_rows = 0;
                }
            }
        }
        if !buf.is_empty() {
            bytes += buf.len() as u64;
            since += buf.len() as u64;
            if tx.send(buf.split().freeze()).await.is_err() {
                return Ok((rows, bytes, false, last_key));
            }
        }
        progress.rows(&name, since_rows, since);
        Ok::<_, crate::Error>((rows, bytes, true, last_key))
    };
    let read = read.await;
    drop(tx);
    let _ = src.query_drop("COMMIT").await;
    match read {
        Ok((rows, bytes, complete, last_key)) => {
            let mut end = plan::ChunkEnd {
                rows,
                ..Default::default()
            };
            if keyset && rows > 0 {
                let bound = plan::key_bound(t, &last_key).ok_or_else(|| {
                    error::source(
                        format!("read chunk {} of {name}", chunk.seq),
                        "a key value of the last row cannot be written as a bound",
                    )
                })?;
                end.last_key = Some(bound);
                end.more = rows >= chunk_rows;
            }
            let next = end.more.then(|| Chunk {
                seq: chunk.seq + 1,
                lo_key: end.last_key.clone(),
                done: false,
                rows: 0,
                snapshot: None,
                ..chunk.clone()
            });
            if complete {
                let _ = count_tx.send(end);
            }
            let loaded = load
                .await
                .map_err(|e| error::target(format!("load chunk {} of {name}", chunk.seq), e))??;
            Ok((loaded, bytes, next))
        }
        Err(e) => {
            load.abort();
            Err(e)
        }
    }
}
