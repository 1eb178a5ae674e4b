//! One table's comparison: chunk checksums, drill-down, row-by-row leaves.
//!
//! A table with a one-column integer key is cut into value ranges of about
//! `chunk_rows` rows (from the source's row estimate and the union of both
//! sides' MIN/MAX, so rows only the target has are covered too). For each
//! chunk both servers compute `COUNT(*)` and the XOR of the row hashes at the
//! same time; equal pairs are done. A differing chunk larger than
//! `leaf_rows` is split into `split` sub-ranges and compared again; a small
//! one is a leaf: both sides return `(key, row hash)` of its rows, the
//! client matches them by key, and only the rows that differ are fetched
//! whole (normalized per column, to name the differing columns; the source's
//! raw values too, for repair statements).
//!
//! Any other key (composite, text, binary) is compared as one chunk; if it
//! differs the whole table is a leaf, so its keys and hashes are read (this
//! holds one key and hash per row in memory). A table with no usable key is
//! compared whole only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::endpoint::{Db, Dialect};
use crate::error::{Error, Result};
use crate::expr::{self, Mode};
use crate::repair;
use crate::report::{DiffKind, RowDiff, TableReport, TableStatus};
use crate::schema::{literal, Described, Table};
use crate::{Progress, Tuning};

/// Everything a table's comparison needs.
pub(crate) struct Ctx {
    pub source: Db,
    pub target: Db,
    pub mode: Mode,
    pub tuning: Tuning,
    pub progress: Arc<dyn Progress>,
    pub repair: bool,
}

/// An inclusive range of an integer key; `None` is the whole table.
type Range = Option<(i128, i128)>;

/// A chunk's count and checksum on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sum {
    count: u64,
    xor: u64,
}

/// Compares one described table.
pub(crate) async fn compare_table(ctx: &Ctx, d: Described) -> Result<TableReport> {
    let started = Instant::now();
    let table = d.table;
    let mut report = TableReport::new(table.full_name());
    report.notes = d.notes;
    ctx.progress
        .table_start(&report.table, table.estimated_rows);
    if !d.target_exists {
        report.status = TableStatus::MissingOnTarget;
        report.source_rows = sum(ctx, &ctx.source, &table, None).await?.count;
        report.diff_count = report.source_rows;
        report
            .notes
            .push("the target has no such table: create it and copy its rows".into());
        report.elapsed = started.elapsed();
        ctx.progress.table_done(&report);
        return Ok(report);
    }
    if ctx.mode == Mode::Native && !has_schema_note(&report) && checksums_equal(ctx, &table).await?
    {
        report.source_rows = table.estimated_rows;
        report.target_rows = table.estimated_rows;
        report.notes.push(
            "CHECKSUM TABLE equal on both servers (row counts are the source's estimate)".into(),
        );
        ctx.progress.rows(&report.table, table.estimated_rows);
    } else if table.key.is_empty() {
        let (s, t) = both(ctx, &table, None).await?;
        report.source_rows = s.count;
        report.target_rows = t.count;
        report.chunks = 1;
        report.notes.push(
            "no primary key and no unique NOT NULL key: compared whole (count and checksum); \
             differing rows cannot be listed (add a primary key to compare row by row)"
                .into(),
        );
        if s != t {
            report.status = TableStatus::Different;
        }
        ctx.progress.rows(&report.table, s.count);
    } else {
        let done = AtomicU64::new(0);
        let leaves = match table.int_key() {
            Some(_) => int_chunks(ctx, &table, &mut report, &done).await?,
            None => {
                let (s, t) = both(ctx, &table, None).await?;
                report.source_rows = s.count;
                report.target_rows = t.count;
                report.chunks = 1;
                ctx.progress.rows(&report.table, s.count);
                if s != t {
                    report.notes.push(format!(
                        "the key ({}) is not one integer column: compared row by row over the whole table",
                        table.key_name.as_deref().unwrap_or("?")
                    ));
                    vec![None]
                } else {
                    Vec::new()
                }
            }
        };
        let found: Vec<Vec<Found>> = stream::iter(leaves)
            .map(|leaf| compare_leaf(ctx, &table, leaf))
            .buffer_unordered(ctx.tuning.parallel)
            .try_collect()
            .await?;
        let mut found: Vec<Found> = found.into_iter().flatten().collect();
        found.sort_by(|a, b| a.order.cmp(&b.order));
        report.diff_count = found.len() as u64;
        for f in found.into_iter() {
            if report.diffs.len() < ctx.tuning.max_diffs {
                report.diffs.push(f.diff);
                report.repair.extend(f.repair);
            }
        }
        if report.diff_count > 0 || !report.notes.is_empty() && has_schema_note(&report) {
            report.status = TableStatus::Different;
        }
    }
    if has_schema_note(&report) {
        report.status = TableStatus::Different;
    }
    report.elapsed = started.elapsed();
    ctx.progress.table_done(&report);
    Ok(report)
}

/// Level 0 between two MariaDB servers: `CHECKSUM TABLE` on both at once.
/// Equal checksums mean the same rows (a CRC-based whole-table checksum);
/// anything else (different, NULL, an error such as a missing privilege)
/// sends the table to the chunked comparison.
async fn checksums_equal(ctx: &Ctx, table: &Table) -> Result<bool> {
    let sql = |target| {
        format!(
            "CHECKSUM TABLE {}",
            expr::from(Dialect::Maria, table, target)
        )
    };
    let what = format!("CHECKSUM TABLE {}", table.full_name());
    let (sql_s, sql_t) = (sql(false), sql(true));
    let (s, t) = tokio::join!(
        ctx.source.query(&sql_s, &what),
        ctx.target.query(&sql_t, &what)
    );
    let value = |r: Result<Vec<Vec<Option<String>>>>| {
        r.ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|row| row.into_iter().nth(1).flatten())
    };
    Ok(match (value(s), value(t)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    })
}

fn has_schema_note(r: &TableReport) -> bool {
    r.notes.iter().any(|n| n.starts_with("column "))
}

/// Chunks an integer-keyed table, compares and drills down; returns the
/// leaves that differ.
async fn int_chunks(
    ctx: &Ctx,
    table: &Table,
    report: &mut TableReport,
    done: &AtomicU64,
) -> Result<Vec<Range>> {
    let (lo_s, hi_s) = min_max(&ctx.source, table, false).await?;
    let (lo_t, hi_t) = min_max(&ctx.target, table, true).await?;
    let lo = [lo_s, lo_t].into_iter().flatten().min();
    let hi = [hi_s, hi_t].into_iter().flatten().max();
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new()); // both empty
    };
    let width = hi - lo + 1;
    let chunk_rows = ctx.tuning.chunk_rows.max(1) as i128;
    let n = (table.estimated_rows as i128 / chunk_rows).clamp(1, width.max(1));
    let mut level = split(lo, hi, n);
    let mut leaves = Vec::new();
    let mut top = true;
    while !level.is_empty() {
        let results: Vec<(Range, Sum, Sum)> = stream::iter(level)
            .map(|r| async move {
                let (s, t) = both(ctx, table, r).await?;
                if top {
                    let d = done.fetch_add(s.count, Ordering::Relaxed) + s.count;
                    ctx.progress.rows(&table.full_name(), d);
                }
                Ok::<_, Error>((r, s, t))
            })
            .buffer_unordered(ctx.tuning.parallel)
            .try_collect()
            .await?;
        report.chunks += results.len() as u64;
        let mut next = Vec::new();
        for (r, s, t) in results {
            if top {
                report.source_rows += s.count;
                report.target_rows += t.count;
            }
            if s == t {
                continue;
            }
            let Some((a, b)) = r else { continue };
            if s.count.max(t.count) <= ctx.tuning.leaf_rows as u64 || b == a {
                leaves.push(r);
            } else {
                next.extend(split(a, b, ctx.tuning.split as i128));
            }
        }
        level = next;
        top = false;
    }
    Ok(leaves)
}

/// `[lo, hi]` cut into at most `n` ranges of equal width.
fn split(lo: i128, hi: i128, n: i128) -> Vec<Range> {
    let width = hi - lo + 1;
    let n = n.clamp(1, width);
    let step = (width + n - 1) / n;
    let mut out = Vec::new();
    let mut a = lo;
    while a <= hi {
        let b = (a + step - 1).min(hi);
        out.push(Some((a, b)));
        a = b + 1;
    }
    out
}

async fn min_max(db: &Db, table: &Table, target: bool) -> Result<(Option<i128>, Option<i128>)> {
    let d = db.dialect();
    let Some(k) = table.int_key() else {
        return Ok((None, None));
    };
    let k = crate::schema::ident(d, &k.name);
    let rows = db
        .query(
            &format!(
                "SELECT MIN({k}), MAX({k}) FROM {}",
                expr::from(d, table, target)
            ),
            &format!("key range of {}", table.full_name()),
        )
        .await?;
    let parse = |v: Option<&Option<String>>| -> Result<Option<i128>> {
        match v.and_then(|v| v.as_deref()) {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| Error::Protocol {
                side: db.side(),
                reason: format!("key bound {s:?} of {} is not an integer", table.full_name()),
            }),
        }
    };
    let row = rows.first();
    Ok((
        parse(row.and_then(|r| r.first()))?,
        parse(row.and_then(|r| r.get(1)))?,
    ))
}

/// A chunk's sums on both sides, computed at the same time.
async fn both(ctx: &Ctx, table: &Table, r: Range) -> Result<(Sum, Sum)> {
    tokio::try_join!(
        sum(ctx, &ctx.source, table, r),
        sum(ctx, &ctx.target, table, r)
    )
}

async fn sum(ctx: &Ctx, db: &Db, table: &Table, r: Range) -> Result<Sum> {
    let d = db.dialect();
    let target = db.side() == "target";
    let sql = format!(
        "SELECT {} FROM {}{}",
        expr::aggregate(d, ctx.mode, table),
        expr::from(d, table, target),
        expr::range(d, table, r)
    );
    let rows = db
        .query(&sql, &format!("chunk checksum of {}", table.full_name()))
        .await?;
    let bad = || Error::Protocol {
        side: db.side(),
        reason: format!(
            "a chunk checksum of {} is not two numbers",
            table.full_name()
        ),
    };
    let row = rows.first().ok_or_else(bad)?;
    let num = |i: usize| -> Result<u64> {
        let s = row.get(i).and_then(|v| v.as_deref()).unwrap_or("0");
        s.parse::<u64>()
            .or_else(|_| s.parse::<i64>().map(|v| v as u64))
            .map_err(|_| bad())
    };
    Ok(Sum {
        count: num(0)?,
        xor: num(1)?,
    })
}

/// A differing row with its sort order and repair statement.
struct Found {
    order: (i128, String),
    diff: RowDiff,
    repair: Option<String>,
}

/// A leaf: keys and row hashes from both sides, matched by key; the rows
/// that differ fetched whole.
async fn compare_leaf(ctx: &Ctx, table: &Table, r: Range) -> Result<Vec<Found>> {
    let (s, t) = tokio::try_join!(
        key_hashes(ctx, &ctx.source, table, r),
        key_hashes(ctx, &ctx.target, table, r)
    )?;
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for (k, h) in &s {
        match t.get(k) {
            None => missing.push(k.clone()),
            Some(th) if th != h => changed.push(k.clone()),
            Some(_) => {}
        }
    }
    let extra: Vec<String> = t.keys().filter(|k| !s.contains_key(*k)).cloned().collect();
    let wanted_source: Vec<String> = missing.iter().chain(&changed).cloned().collect();
    let (src_rows, dst_rows) = tokio::try_join!(
        full_rows(ctx, &ctx.source, table, r, &wanted_source),
        full_rows(ctx, &ctx.target, table, r, &changed)
    )?;
    let key_parts = |k: &str| -> Vec<(String, String)> {
        table
            .key
            .iter()
            .zip(k.split('\u{1f}'))
            .map(|(&i, v)| (table.columns[i].name.clone(), v.to_owned()))
            .collect()
    };
    let order = |k: &str| -> (i128, String) {
        if table.int_key().is_some() {
            (k.parse().unwrap_or(0), String::new())
        } else {
            (0, k.to_owned())
        }
    };
    let mut out = Vec::new();
    for k in missing {
        let repair = src_rows
            .get(&k)
            .filter(|_| ctx.repair)
            .map(|row| repair::upsert(ctx.target.dialect(), table, &row.raw));
        out.push(Found {
            order: order(&k),
            diff: RowDiff {
                kind: DiffKind::Missing,
                key: key_parts(&k),
                columns: Vec::new(),
            },
            repair,
        });
    }
    for k in changed {
        let (Some(a), Some(b)) = (src_rows.get(&k), dst_rows.get(&k)) else {
            // Changed between the two reads: report it as different anyway.
            out.push(Found {
                order: order(&k),
                diff: RowDiff {
                    kind: DiffKind::Different,
                    key: key_parts(&k),
                    columns: Vec::new(),
                },
                repair: None,
            });
            continue;
        };
        let columns = table
            .columns
            .iter()
            .zip(a.norm.iter().zip(&b.norm))
            .filter(|(_, (x, y))| x != y)
            .map(|(c, _)| c.name.clone())
            .collect();
        out.push(Found {
            order: order(&k),
            diff: RowDiff {
                kind: DiffKind::Different,
                key: key_parts(&k),
                columns,
            },
            repair: ctx
                .repair
                .then(|| repair::upsert(ctx.target.dialect(), table, &a.raw)),
        });
    }
    for k in extra {
        let repair = ctx
            .repair
            .then(|| repair::delete(ctx.target.dialect(), table, &k));
        out.push(Found {
            order: order(&k),
            diff: RowDiff {
                kind: DiffKind::Extra,
                key: key_parts(&k),
                columns: Vec::new(),
            },
            repair,
        });
    }
    Ok(out)
}

async fn key_hashes(
    ctx: &Ctx,
    db: &Db,
    table: &Table,
    r: Range,
) -> Result<HashMap<String, String>> {
    let d = db.dialect();
    let sql = format!(
        "SELECT {}, {} FROM {}{}",
        expr::key_text(d, table),
        expr::row_hash(d, ctx.mode, table),
        expr::from(d, table, db.side() == "target"),
        expr::range(d, table, r)
    );
    let rows = db
        .query(&sql, &format!("row hashes of {}", table.full_name()))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let mut it = row.into_iter();
            Some((it.next()??, it.next().flatten().unwrap_or_default()))
        })
        .collect())
}

/// A whole row: normalized text per column, and (source) raw text per column.
struct FullRow {
    norm: Vec<Option<String>>,
    raw: Vec<Option<String>>,
}

/// Batch size of the key lists in full-row reads.
const KEYS_PER_QUERY: usize = 500;

async fn full_rows(
    _ctx: &Ctx,
    db: &Db,
    table: &Table,
    r: Range,
    keys: &[String],
) -> Result<HashMap<String, FullRow>> {
    let d = db.dialect();
    let is_source = db.side() == "source";
    let mut out = HashMap::new();
    let n = table.columns.len();
    let mut select: Vec<String> = vec![expr::key_text(d, table)];
    select.extend(table.columns.iter().map(|c| expr::norm(d, c)));
    if is_source {
        select.extend(table.columns.iter().map(expr::raw));
    }
    for batch in keys.chunks(KEYS_PER_QUERY) {
        let list: Vec<String> = batch.iter().map(|k| literal(d, k)).collect();
        let key_filter = match table.int_key() {
            Some(k) => {
                let ints: Vec<&str> = batch
                    .iter()
                    .map(String::as_str)
                    .filter(|k| k.parse::<i128>().is_ok())
                    .collect();
                format!(
                    "{} IN ({})",
                    crate::schema::ident(d, &k.name),
                    ints.join(", ")
                )
            }
            None => format!("{} IN ({})", expr::key_text(d, table), list.join(", ")),
        };
        let range = expr::range(d, table, r);
        let filter = if range.is_empty() {
            format!(" WHERE {key_filter}")
        } else {
            format!("{range} AND {key_filter}")
        };
        let sql = format!(
            "SELECT {} FROM {}{filter}",
            select.join(", "),
            expr::from(d, table, !is_source)
        );
        let rows = db
            .query(&sql, &format!("differing rows of {}", table.full_name()))
            .await?;
        for row in rows {
            let mut it = row.into_iter();
            let Some(Some(key)) = it.next() else { continue };
            if !batch.contains(&key) {
                continue; // a collation-equal neighbour of a wanted key
            }
            let norm: Vec<Option<String>> = it.by_ref().take(n).collect();
            let raw: Vec<Option<String>> = it.collect();
            out.insert(key, FullRow { norm, raw });
        }
    }
    Ok(out)
}
