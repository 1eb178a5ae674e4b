//! Parallel apply with dependency tracking and ordered readiness.
//!
//! A run of source transactions (between two DDL) is cut into **groups** of
//! whole transactions, bounded by rows ([`super::MySqlSinkConfig::group_rows`]).
//! Each group is one target transaction, and records the range of offsets it
//! covers in `drc.applied` (see [`super::checkpoint`]), in that transaction.
//!
//! - **Dependencies.** Each group gets the union of its changes' keys
//!   ([`super::keys`]: primary and unique keys, foreign-key references). A
//!   group depends on the latest earlier group that shares a key. It starts
//!   at once with the row changes that touch none of the shared rows (nor,
//!   in source order, any row such a change touches); the others wait until
//!   that group has *committed*, so they see its rows and never wait on its
//!   locks ([`Writer::apply_fast_after`]). Per row, changes reach the target
//!   in source order, and a child row never comes before its parent. (The
//!   first version held the whole group back; with groups of thousands of
//!   rows nearly every group shares a row or two with the one before, so
//!   groups ran one after another.)
//! - **Ordered readiness, free commits.** A group that has run is *ready*; it
//!   commits once every earlier group is ready too. Groups then commit at
//!   the same time (the server's group commit shares the fsyncs), in any
//!   order, each with its own `drc.applied` row, so no two groups wait on one
//!   row lock. A crash at any moment leaves a set of whole groups, each with
//!   its row: the checkpoint is the contiguous prefix, and groups committed
//!   past a gap are skipped when the stream is applied again. Nothing is
//!   lost or applied twice.
//! - **Nothing committed past a refused change.** A change the target
//!   refuses (or a conflict under `fail`) stops its group before it is
//!   ready, and no later group commits while an earlier one is not ready.
//! - **Optimistic ahead, serial when needed.** A group runs while earlier
//!   groups may still run; the keys can miss an order the target enforces (a
//!   collation equivalence beyond case, a cascade or trigger writing other
//!   rows). Any surprise there (a duplicate key, a row count off, a
//!   foreign-key error, a deadlock, a lock wait past [`WORKER_LOCK_WAIT_S`])
//!   rolls the group back, and it runs again once every earlier group has
//!   committed: that is serial apply, where a surprise is a real conflict and
//!   gets the configured policy. Locks the keys do not predict (InnoDB's gap
//!   locks of unique checks) can make an earlier group wait for a later,
//!   ready one: a ready group that waits longer than [`TURN_PATIENCE`] for
//!   the earlier groups rolls back, lets go of its locks and runs again later
//!   too. A ready group whose earlier groups are all ready never rolls back,
//!   so once a group may commit, every earlier group commits or the sink
//!   stops.
//!
//! Groups are written with the fast path of [`Writer`] (multi-statement
//! packets); a surprise in serial apply falls back to the slow path for the
//! group, which handles conflicts one statement at a time. With one
//! connection every group runs serially.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use drc_proto::v1 as pb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;

use super::checkpoint;
use super::keys;
use super::meta::MetaCache;
use super::write::{Ctx, Fast, Writer};
use super::{classify, SINK_NAME};
use crate::error::{ApplyError, Result};

/// Longest a parallel worker waits for a row lock before its group rolls
/// back and runs again at its turn (see the module docs).
pub const WORKER_LOCK_WAIT_S: u32 = 5;

/// How long a ready group waits for the earlier groups holding its locks;
/// past it, it rolls back and runs again once they have committed.
pub const TURN_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

/// A run of whole source transactions applied as one target transaction.
#[derive(Debug)]
pub struct Group<'b> {
    pub txns: &'b [(u64, &'b pb::Transaction)],
    /// The first offset the group covers (after the previous group's
    /// `checkpoint`: offsets filtered out upstream included).
    pub from: u64,
    /// The last offset the group covers.
    pub checkpoint: u64,
    /// The source position of the group's last transaction.
    pub position: Option<&'b pb::SourcePosition>,
    /// The origin its transactions carry (all the same; empty: this
    /// stream's own, written as the sink's `origin`).
    pub origin: &'b str,
    /// The latest earlier group this one depends on.
    pub after: Option<usize>,
    /// The dependency keys it shares with earlier groups, each with the
    /// latest earlier group holding it.
    pub shared: Vec<(u64, usize)>,
    /// The dependency keys of each of its row changes, computed once for
    /// the dependencies and the statement planner.
    pub keys: ChangeKeys,
}

/// The dependency keys ([`keys::change_keys`]) of a group's row changes, in
/// order, counted across its transactions.
#[derive(Debug, Default)]
pub struct ChangeKeys {
    flat: Vec<u64>,
    ends: Vec<usize>,
}

impl ChangeKeys {
    fn of_group(txns: &[(u64, &pb::Transaction)], meta: &MetaCache) -> Self {
        let mut k = ChangeKeys::default();
        for (_, txn) in txns {
            for c in &txn.changes {
                keys::change_keys(c, meta.get(&c.schema, &c.table).map(|m| &**m), &mut k.flat);
                k.ends.push(k.flat.len());
            }
        }
        k
    }

    /// The keys of row change `i` of the group.
    pub fn of(&self, i: usize) -> &[u64] {
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
        &self.flat[start..self.ends[i]]
    }
}

/// Cuts `txns` (all after offset `after`) into groups of at most `max_rows`
/// row changes (a larger transaction travels alone) and finds their
/// dependencies. The groups cover `after + 1 ..= last_checkpoint` without a
/// gap (offsets filtered out upstream included); with no transaction, one
/// empty group covers the range.
pub fn groups<'b>(
    txns: &'b [(u64, &'b pb::Transaction)],
    max_rows: usize,
    after: u64,
    last_checkpoint: u64,
    meta: &MetaCache,
) -> Vec<Group<'b>> {
    let mut out: Vec<Group<'b>> = Vec::new();
    let mut start = 0;
    let mut rows = 0usize;
    for (i, (_, txn)) in txns.iter().enumerate() {
        let n = txn.changes.len();
        // A group is marked with one origin, so transactions that came
        // through this stream from elsewhere keep theirs.
        let other_origin = i > start && txn.origin != txns[start].1.origin;
        if i > start && (rows + n > max_rows || other_origin) {
            out.push(group(&txns[start..i]));
            start = i;
            rows = 0;
        }
        rows += n;
    }
    if start < txns.len() {
        out.push(group(&txns[start..]));
    }
    if out.is_empty() && last_checkpoint > after {
        out.push(group(&[]));
    }
    let mut from = after + 1;
    for g in &mut out {
        g.from = from;
        g.checkpoint = g.checkpoint.max(from);
        from = g.checkpoint + 1;
    }
    if let Some(last) = out.last_mut() {
        last.checkpoint = last.checkpoint.max(last_checkpoint);
    }
    for g in &mut out {
        g.keys = ChangeKeys::of_group(g.txns, meta);
    }
    if out.len() > 1 {
        let mut last_writer: HashMap<u64, usize> = HashMap::new();
        let mut keys_buf = Vec::new();
        for (k, g) in out.iter_mut().enumerate() {
            keys_buf.clear();
            keys_buf.extend_from_slice(&g.keys.flat);
            keys_buf.sort_unstable();
            keys_buf.dedup();
            for key in &keys_buf {
                if let Some(j) = last_writer.insert(*key, k) {
                    g.after = Some(g.after.map_or(j, |a| a.max(j)));
                    g.shared.push((*key, j));
                }
            }
        }
    }
    out
}

fn group<'b>(txns: &'b [(u64, &'b pb::Transaction)]) -> Group<'b> {
    Group {
        txns,
        from: 0,
        checkpoint: txns.last().map_or(0, |t| t.0),
        position: txns.iter().rev().find_map(|(_, t)| t.position.as_ref()),
        origin: txns.first().map_or("", |(_, t)| t.origin.as_str()),
        after: None,
        shared: Vec::new(),
        keys: ChangeKeys::default(),
    }
}

/// What a run did, beyond committing its groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Groups whose first attempt hit a surprise and ran again at their turn.
    pub redone: u64,
    /// Groups that rolled back while waiting for their turn (their locks may
    /// have held up an earlier group) and ran again at their turn.
    pub yielded: u64,
    /// Groups applied one statement at a time (the slow path) after a
    /// surprise at their turn.
    pub slow: u64,
    /// Statements the fast path wrote for the groups it applied.
    pub statements: u64,
}

/// Where a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    /// Run, its `drc.applied` row written: only COMMIT is left.
    Ready,
    Committed,
}

/// What every worker of a run shares.
struct Shared<'r, 'b> {
    writer: Writer<'r>,
    stream: &'r str,
    origin: &'r str,
    groups: &'r [Group<'b>],
    next: AtomicUsize,
    status: Mutex<Vec<Status>>,
    /// Bumped at every change of `status`, to wake the waiting workers.
    changed: watch::Sender<u64>,
    redone: AtomicU64,
    yielded: AtomicU64,
    slow: AtomicU64,
    statements: AtomicU64,
}

impl Shared<'_, '_> {
    fn set(&self, k: usize, s: Status) {
        if let Ok(mut st) = self.status.lock() {
            st[k] = s;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn all_before(&self, k: usize, ok: impl Fn(Status) -> bool) -> bool {
        self.status
            .lock()
            .map(|st| st[..k].iter().all(|s| ok(*s)))
            .unwrap_or(false)
    }

    fn committed(&self, j: usize) -> bool {
        self.status
            .lock()
            .map(|st| st[j] == Status::Committed)
            .unwrap_or(false)
    }

    async fn wait(&self, rx: &mut watch::Receiver<u64>, f: impl Fn() -> bool) -> Result<()> {
        rx.wait_for(|_| f())
            .await
            .map(|_| ())
            .map_err(|_| ApplyError::Transient {
                sink: SINK_NAME.into(),
                message: "parallel apply ended".into(),
            })
    }
}

fn ready_or_committed(s: Status) -> bool {
    s != Status::Pending
}

fn is_committed(s: Status) -> bool {
    s == Status::Committed
}

/// Applies `groups` over `conns` (one worker per connection); see the module
/// docs. On an error the connections may hold open transactions: drop them
/// (the server rolls them back); the groups that committed have their
/// `drc.applied` rows.
pub async fn run(
    writer: Writer<'_>,
    conns: &mut [Conn],
    stream: &str,
    origin: &str,
    groups: &[Group<'_>],
) -> Result<RunStats> {
    let (changed, _) = watch::channel(0u64);
    let shared = Shared {
        writer,
        stream,
        origin,
        groups,
        next: AtomicUsize::new(0),
        status: Mutex::new(vec![Status::Pending; groups.len()]),
        changed,
        redone: AtomicU64::new(0),
        yielded: AtomicU64::new(0),
        slow: AtomicU64::new(0),
        statements: AtomicU64::new(0),
    };
    let workers = conns.iter_mut().map(|conn| worker(&shared, conn));
    futures::future::try_join_all(workers).await?;
    Ok(RunStats {
        redone: shared.redone.load(Ordering::Relaxed),
        yielded: shared.yielded.load(Ordering::Relaxed),
        slow: shared.slow.load(Ordering::Relaxed),
        statements: shared.statements.load(Ordering::Relaxed),
    })
}

async fn worker(sh: &Shared<'_, '_>, conn: &mut Conn) -> Result<()> {
    let mut rx = sh.changed.subscribe();
    loop {
        let k = sh.next.fetch_add(1, Ordering::SeqCst);
        let Some(g) = sh.groups.get(k) else {
            return Ok(());
        };
        let t0 = std::time::Instant::now();
        let mut ready = false;
        if !sh.all_before(k, is_committed) {
            // Optimistic: earlier groups may still be running. What does
            // not touch their rows goes first, the rest once the group it
            // depends on has committed (so it sees that group's rows and
            // never waits on its locks).
            begin(conn).await?;
            let mut dep_rx = rx.clone();
            let earlier = async {
                match g.after {
                    Some(dep) => sh.wait(&mut dep_rx, || sh.committed(dep)).await,
                    None => Ok(()),
                }
            };
            // Only rows of groups not committed yet need to wait.
            let shared: Vec<u64> = g
                .shared
                .iter()
                .filter(|(_, j)| !sh.committed(*j))
                .map(|(key, _)| *key)
                .collect();
            let applied = sh
                .writer
                .apply_fast_after(conn, sh.stream, g.txns, &g.keys, &shared, earlier)
                .await;
            let outcome = match applied {
                // A change the target refuses is judged in serial apply, so
                // the error names the first offset that fails.
                Err(e) if !e.is_transient() => Fast::Surprise(e.to_string()),
                other => other?,
            };
            match outcome {
                Fast::Applied(n) => {
                    sh.statements.fetch_add(n, Ordering::Relaxed);
                    record(sh, conn, g).await?;
                    sh.set(k, Status::Ready);
                    ready = true;
                }
                Fast::Surprise(why) => {
                    tracing::debug!(stream = %sh.stream, group = k, reason = %why, "mysql sink: group surprised; again in serial");
                    sh.redone.fetch_add(1, Ordering::Relaxed);
                    rollback(conn).await?;
                }
            }
            if ready {
                let waited = tokio::time::timeout(
                    TURN_PATIENCE,
                    sh.wait(&mut rx, || sh.all_before(k, ready_or_committed)),
                )
                .await;
                match waited {
                    Ok(r) => r?,
                    Err(_) if yield_locks(sh, k) => {
                        // An earlier group may wait for a lock this one
                        // holds (gap locks of unique checks, say): let go.
                        sh.yielded.fetch_add(1, Ordering::Relaxed);
                        rollback(conn).await?;
                        ready = false;
                    }
                    Err(_) => {}
                }
            }
        }
        if !ready {
            // Serial apply: every earlier group has committed.
            sh.wait(&mut rx, || sh.all_before(k, is_committed)).await?;
            begin(conn).await?;
            match sh
                .writer
                .apply_fast(conn, sh.stream, g.txns, &g.keys)
                .await?
            {
                Fast::Applied(n) => {
                    sh.statements.fetch_add(n, Ordering::Relaxed);
                }
                Fast::Surprise(why) => {
                    tracing::debug!(stream = %sh.stream, reason = %why, "mysql sink: slow path");
                    sh.slow.fetch_add(1, Ordering::Relaxed);
                    rollback(conn).await?;
                    begin(conn).await?;
                    for (offset, txn) in g.txns {
                        let ctx = Ctx::of(sh.stream, *offset, txn);
                        sh.writer.apply_slow(conn, ctx, &txn.changes).await?;
                    }
                }
            }
            record(sh, conn, g).await?;
            sh.set(k, Status::Ready);
        }
        sh.wait(&mut rx, || sh.all_before(k, ready_or_committed))
            .await?;
        let t_ready = t0.elapsed();
        commit(conn).await?;
        sh.set(k, Status::Committed);
        tracing::debug!(
            group = k,
            ready_ms = t_ready.as_millis() as u64,
            total_ms = t0.elapsed().as_millis() as u64,
            "mysql sink: group committed"
        );
    }
}

/// Whether ready group `k` should give up its locks: only while an earlier
/// group is not ready (else every earlier group is about to commit, and a
/// later group may already have committed counting on this one). Marks it
/// pending under the same lock.
fn yield_locks(sh: &Shared<'_, '_>, k: usize) -> bool {
    let Ok(mut st) = sh.status.lock() else {
        return false;
    };
    if st[..k].iter().all(|s| ready_or_committed(*s)) {
        return false;
    }
    st[k] = Status::Pending;
    drop(st);
    sh.changed.send_modify(|v| *v += 1);
    true
}

/// Writes the group's `drc.applied` row in its open transaction.
async fn record(sh: &Shared<'_, '_>, conn: &mut Conn, g: &Group<'_>) -> Result<()> {
    let origin = if g.origin.is_empty() {
        sh.origin
    } else {
        g.origin
    };
    match checkpoint::record_group(conn, sh.stream, g.from, g.checkpoint, g.position, origin).await
    {
        Ok(()) => Ok(()),
        Err(e) if super::server_code(&e) == Some(1062) => Err(ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!(
                "offsets {}..={} of stream {} are recorded as applied already: another applier \
                 of the stream is writing to this target; resuming from the stored checkpoint",
                g.from, g.checkpoint, sh.stream
            ),
        }),
        Err(e) => Err(classify(e, None, "drc.applied")),
    }
}

pub async fn begin(conn: &mut Conn) -> Result<()> {
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(|e| classify(e, None, "START TRANSACTION"))
}

pub async fn commit(conn: &mut Conn) -> Result<()> {
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| classify(e, None, "COMMIT"))
}

async fn rollback(conn: &mut Conn) -> Result<()> {
    conn.query_drop("ROLLBACK")
        .await
        .map_err(|e| classify(e, None, "ROLLBACK"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::mysql::meta::TableMeta;
    use pb::value::Kind;

    fn txn(ids: &[i64]) -> pb::Transaction {
        pb::Transaction {
            changes: ids
                .iter()
                .map(|&id| pb::RowChange {
                    op: pb::Op::Insert as i32,
                    schema: "s".into(),
                    table: "t".into(),
                    columns: vec![pb::Column {
                        name: "id".into(),
                        ..Default::default()
                    }],
                    primary_key: vec![0],
                    before: None,
                    after: Some(pb::Row {
                        values: vec![pb::Value {
                            kind: Some(Kind::Int(id)),
                        }],
                    }),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_are_bounded_and_ordered_by_shared_keys() {
        let txns = [txn(&[1, 2]), txn(&[3]), txn(&[4, 5]), txn(&[1]), txn(&[9])];
        let with_offsets: Vec<(u64, &pb::Transaction)> = txns
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64 + 1, t))
            .collect();
        let mut meta = MetaCache::default();
        meta.insert(
            "s",
            "t",
            TableMeta {
                key_lists: vec![vec!["id".into()]],
                ..Default::default()
            },
        );
        let g = groups(&with_offsets, 2, 0, 9, &meta);
        // [1,2] [3] | [4,5] | [1] [9]  -> rows bound 2: {t1}, {t2}, {t3}, {t4, t5}
        assert_eq!(g.len(), 4);
        assert_eq!(
            g.iter().map(|g| g.txns.len()).collect::<Vec<_>>(),
            [1, 1, 1, 2]
        );
        assert_eq!(
            g.iter().map(|g| g.checkpoint).collect::<Vec<_>>(),
            [1, 2, 3, 9]
        );
        // Only the last group touches a key seen before (id 1, in group 0).
        assert_eq!(
            g.iter().map(|g| g.after).collect::<Vec<_>>(),
            [None, None, None, Some(0)]
        );
    }
}
