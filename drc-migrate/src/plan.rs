//! Cutting tables into chunks, and the positions that tie chunks to the
//! binlog.
//!
//! A table whose key starts with an integer column is cut into ranges of
//! that column, about `chunk_rows` rows each (from the source's estimate);
//! the first range is open below and the last open above, so rows inserted
//! outside the planned bounds during the snapshot still belong to a chunk.
//! A keyed table whose key orders in SQL as its index does (`keyset()`) is
//! cut into ranges of its whole key, about `chunk_rows` rows each: one walk
//! along the key index finds the bounds (`LIMIT 1 OFFSET n` from the last
//! bound, so the server's collation places them; on InnoDB a scan of the
//! table that sends nothing but the bounds), the first range is open
//! below and the last open above. The ranges are read in parallel, each as
//! a chain of keyset chunks (`key > last key read AND key <= range end
//! ORDER BY key LIMIT n`). Any other keyed table is one chunk (read in key
//! order), and so is a table
//! without a key: that one is read in a single consistent snapshot whose
//! binlog position is kept, so the catch-up can skip exactly the changes the
//! snapshot already holds (rows without a key cannot be replayed
//! idempotently).

use drc_capture::position::BinlogPos;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::error::{self, Result};
use crate::source::{quote_ident, table_ref, SourceTable};

/// Default rows per chunk.
pub const DEFAULT_CHUNK_ROWS: u64 = 50_000;
/// Most key ranges a keyset table is cut into.
pub const MAX_KEY_RANGES: u64 = 1024;
/// Sequence numbers a key range's chain of keyset chunks may use: range r's
/// chunks are numbered from `r * RANGE_SEQ`.
pub const RANGE_SEQ: u32 = 1 << 20;

/// One unit of snapshot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the table in the plan.
    pub table: usize,
    pub seq: u32,
    /// `lo <= key < hi` on the chunk column; `None`: open on that side.
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    /// Estimated rows, for progress.
    pub est_rows: u64,
    /// Whether it has been loaded (on a resumed run).
    pub done: bool,
    /// Rows loaded.
    pub rows: u64,
    /// The binlog position of the snapshot it was read in.
    pub snapshot: Option<BinlogPos>,
    /// A keyset chunk's lower bound (exclusive): the key literals of the row
    /// the previous chunk ended at, as a JSON array; `None` from the start.
    pub lo_key: Option<String>,
    /// A keyset chunk's upper bound (inclusive): the end of its key range,
    /// as key literals (JSON array); `None`: open above.
    pub hi_key: Option<String>,
}

/// What the read of a chunk ended with, handed to its load.
#[derive(Debug, Clone, Default)]
pub struct ChunkEnd {
    pub rows: u64,
    /// Keyset chunks: the key literals of the last row read (JSON array),
    /// the next chunk's lower bound.
    pub last_key: Option<String>,
    /// Keyset chunks: the read stopped at its limit, so rows may follow.
    pub more: bool,
}

impl Chunk {
    /// A chunk of table `idx` not yet read, over the whole key (the caller
    /// sets its bounds).
    pub fn planned(table: usize, seq: u32, est_rows: u64) -> Chunk {
        Chunk {
            table,
            seq,
            lo: None,
            hi: None,
            est_rows,
            done: false,
            rows: 0,
            snapshot: None,
            lo_key: None,
            hi_key: None,
        }
    }

    /// The `WHERE ... [ORDER BY ... LIMIT n]` of the chunk: a range of the
    /// integer chunk column, or for a keyset table the next `limit` rows
    /// after `lo_key` in key order; empty: the whole table.
    pub fn clause(&self, t: &SourceTable, limit: u64) -> Result<String> {
        if !t.keyset() {
            return Ok(self.condition(t.chunk_column().map(|c| c.name.as_str())));
        }
        let keys: Vec<String> = t
            .schema
            .primary_key
            .iter()
            .map(|&i| quote_ident(&t.schema.columns[i].name))
            .collect();
        let mut conds = Vec::new();
        if let Some(lo) = &self.lo_key {
            conds.push(key_after(&keys, &bound_literals(lo, &keys, t)?));
        }
        if let Some(hi) = &self.hi_key {
            conds.push(format!(
                "NOT ({})",
                key_after(&keys, &bound_literals(hi, &keys, t)?)
            ));
        }
        let mut out = String::new();
        if !conds.is_empty() {
            out.push_str(" WHERE ");
            out.push_str(&conds.join(" AND "));
        }
        out.push_str(&format!(" ORDER BY {} LIMIT {limit}", keys.join(", ")));
        Ok(out)
    }

    /// The `WHERE` condition of the chunk on `column` (empty: the whole table).
    pub fn condition(&self, column: Option<&str>) -> String {
        let Some(col) = column else {
            return String::new();
        };
        let col = quote_ident(col);
        match (self.lo, self.hi) {
            (None, None) => String::new(),
            (Some(lo), None) => format!(" WHERE {col} >= {lo}"),
            (None, Some(hi)) => format!(" WHERE {col} < {hi}"),
            (Some(lo), Some(hi)) => format!(" WHERE {col} >= {lo} AND {col} < {hi}"),
        }
    }
}

/// A key bound's literals, checked against the key.
fn bound_literals(bound: &str, keys: &[String], t: &SourceTable) -> Result<Vec<String>> {
    let lits: Vec<String> = serde_json::from_str(bound)
        .map_err(|e| error::target("read a chunk's key bound", format!("{bound:?}: {e}")))?;
    if lits.len() != keys.len() {
        return Err(error::target(
            "read a chunk's key bound",
            format!("{bound:?} does not match the key of {}", t.full_name()),
        ));
    }
    Ok(lits)
}

/// `key > lits` as `(k1 > l1) OR (k1 = l1 AND k2 > l2) OR ...`: ranges the
/// key index serves directly.
fn key_after(keys: &[String], lits: &[String]) -> String {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", keys[j], lits[j]))
            .collect();
        ands.push(format!("{} > {}", keys[i], lits[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    format!("({})", ors.join(" OR "))
}

/// The bound (key literals as a JSON array) of a row's key values, as
/// [`SourceTable::key_exprs`] selected them; `None` when a value cannot be
/// written as a literal.
pub fn key_bound(t: &SourceTable, values: &[mysql_async::Value]) -> Option<String> {
    let lits: Option<Vec<String>> = values
        .iter()
        .enumerate()
        .map(|(k, v)| match v {
            mysql_async::Value::Bytes(b) => t.key_literal(k, b),
            mysql_async::Value::NULL => None,
            other => t.key_literal(k, other.as_sql(true).trim_matches('\'').as_bytes()),
        })
        .collect();
    serde_json::to_string(&lits?).ok()
}

/// Cuts a keyset table into about `n` ranges of its key, walking the key
/// index from bound to bound; fewer when the table holds fewer rows than
/// estimated.
async fn key_ranges(
    conn: &mut Conn,
    idx: usize,
    t: &SourceTable,
    n: u64,
    step: u64,
) -> Result<Vec<Chunk>> {
    let mut bounds: Vec<String> = Vec::new();
    for _ in 1..n {
        let probe = Chunk {
            lo_key: bounds.last().cloned(),
            ..Chunk::planned(idx, 0, 0)
        };
        let sql = format!(
            "SELECT {} FROM {}{} OFFSET {}",
            t.key_exprs().join(", "),
            table_ref(t.db(), t.name()),
            probe.clause(t, 1)?,
            step.saturating_sub(1)
        );
        let row: Option<mysql_async::Row> = conn
            .query_first(&sql)
            .await
            .map_err(|e| error::source(format!("find the key ranges of {}", t.full_name()), e))?;
        let Some(row) = row else { break };
        // `Row::unwrap` hands over the row's values (none was taken).
        let Some(b) = key_bound(t, &row.unwrap()) else {
            // A key value no literal can carry: the table is read as one
            // chain, as before ranges.
            bounds.clear();
            break;
        };
        bounds.push(b);
    }
    let n = bounds.len() + 1;
    Ok((0..n)
        .map(|r| Chunk {
            lo_key: r.checked_sub(1).map(|p| bounds[p].clone()),
            hi_key: bounds.get(r).cloned(),
            ..Chunk::planned(idx, r as u32 * RANGE_SEQ, step)
        })
        .collect())
}

/// Plans the chunks of `t` (index `idx`).
pub async fn chunks(
    conn: &mut Conn,
    idx: usize,
    t: &SourceTable,
    chunk_rows: u64,
) -> Result<Vec<Chunk>> {
    let one = |est| vec![Chunk::planned(idx, 0, est)];
    if t.keyset() {
        let n = t
            .est_rows
            .div_ceil(chunk_rows.max(1))
            .clamp(1, MAX_KEY_RANGES);
        if n <= 1 {
            return Ok(one(t.est_rows));
        }
        return key_ranges(conn, idx, t, n, t.est_rows / n).await;
    }
    let Some(col) = t.chunk_column() else {
        return Ok(one(t.est_rows));
    };
    let sql = format!(
        "SELECT CAST(MIN({c}) AS SIGNED), CAST(MAX({c}) AS SIGNED), COUNT(*) > 0 FROM {t}",
        c = quote_ident(&col.name),
        t = table_ref(t.db(), t.name())
    );
    // MIN/MAX read the ends of the key index: instant. BIGINT UNSIGNED past
    // i64 comes back clamped by CAST and ends in the open last range.
    let row: Option<(Option<i64>, Option<i64>, i64)> = conn
        .query_first(&sql)
        .await
        .map_err(|e| error::source(format!("find the key range of {}", t.full_name()), e))?;
    let (Some(min), Some(max)) = row.map(|r| (r.0, r.1)).unwrap_or((None, None)) else {
        return Ok(one(0));
    };
    let est = t.est_rows.max(1);
    let n = est.div_ceil(chunk_rows.max(1)).max(1);
    let span = (max as i128 - min as i128 + 1).max(1);
    let n = (n as i128).min(span) as u64;
    if n <= 1 {
        return Ok(one(t.est_rows));
    }
    let step = span.div_euclid(n as i128).max(1);
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let lo = (i > 0).then(|| (min as i128 + step * i as i128) as i64);
        let hi = (i + 1 < n).then(|| (min as i128 + step * (i as i128 + 1)) as i64);
        out.push(Chunk {
            lo,
            hi,
            ..Chunk::planned(idx, i as u32, est / n)
        });
    }
    Ok(out)
}

/// Opens a consistent snapshot on `conn` and returns its binlog position
/// (MariaDB's `Binlog_snapshot_file` / `_position`: the position of exactly
/// the transactions the snapshot sees).
pub async fn begin_snapshot(conn: &mut Conn) -> Result<BinlogPos> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| error::source("start a consistent snapshot", e))?;
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| error::source("read the snapshot's binlog position", e))?;
    let mut file = None;
    let mut pos = None;
    for (k, v) in rows {
        match k.to_ascii_lowercase().as_str() {
            "binlog_snapshot_file" => file = Some(v),
            "binlog_snapshot_position" => pos = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    match (file, pos) {
        (Some(f), Some(p)) if !f.is_empty() => Ok(BinlogPos::new(f, p)),
        _ => Err(error::source(
            "read the snapshot's binlog position",
            "the server reports no Binlog_snapshot_file/position (binary log off?)",
        )),
    }
}

/// Whether a transaction ending at `txn` (file, position after its commit)
/// is visible in a snapshot taken at `snap`.
pub fn in_snapshot(txn_file: &str, txn_pos: u64, snap: &BinlogPos) -> bool {
    let a = (drc_capture::position::file_index(txn_file), txn_pos);
    let b = (snap.file_index(), snap.pos);
    match (a.0, b.0) {
        (Some(fa), Some(fb)) => (fa, a.1) <= (fb, b.1),
        _ => (txn_file, txn_pos) <= (snap.file.as_str(), snap.pos),
    }
}

/// `a <= b` for binlog positions.
pub fn pos_le(a: &BinlogPos, b: &BinlogPos) -> bool {
    in_snapshot(&a.file, a.pos, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_by_file_index_then_offset() {
        let snap = BinlogPos::new("binlog.000002", 500);
        assert!(in_snapshot("binlog.000001", 9999, &snap));
        assert!(in_snapshot("binlog.000002", 500, &snap));
        assert!(!in_snapshot("binlog.000002", 501, &snap));
        assert!(!in_snapshot("binlog.000010", 4, &snap));
    }

    #[test]
    fn conditions_cover_open_ends() {
        let mut c = Chunk {
            hi: Some(10),
            ..Chunk::planned(0, 0, 0)
        };
        assert_eq!(c.condition(Some("id")), " WHERE `id` < 10");
        c.lo = Some(10);
        c.hi = None;
        assert_eq!(c.condition(Some("id")), " WHERE `id` >= 10");
        assert_eq!(c.condition(None), "");
    }
}
