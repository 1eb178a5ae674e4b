//! Parallel apply with dependency tracking and in-order commit.
//!
//! A run of source transactions (between two DDL) is cut into **groups** of
//! whole transactions, bounded by rows ([`super::MySqlSinkConfig::group_rows`]).
//! Each group is one target transaction, and ends by writing the stream's
//! checkpoint row: the offset of its last transaction.
//!
//! - **Dependencies.** Each group gets the union of its changes' keys
//!   ([`super::keys`]: primary and unique keys, foreign-key references). A
//!   group depends on the latest earlier group that shares a key. It starts
//!   only once that group has *committed*, so it sees that group's rows and
//!   never waits on its locks.
//! - **In-order commit.** Groups go to the connections in order; a group that
//!   has run waits for its turn, then commits. Commits therefore follow the
//!   stream's order, and the checkpoint row always names a contiguous prefix:
//!   a crash at any moment leaves the groups up to the stored checkpoint and
//!   nothing of any later one. Since every group waits only for earlier
//!   groups, the smallest unfinished group can always go on: no cycle.
//! - **Compare-and-set checkpoint.** Before committing, a group reads the
//!   checkpoint row `FOR UPDATE` and checks it is where the previous group
//!   left it. Anything else means another applier of the same stream wrote
//!   it: the group rolls back (a transient error; the applier resumes from the
//!   stored checkpoint), so two appliers never both apply a transaction.
//! - **Optimistic, then serial.** A group that runs ahead of its turn is
//!   optimistic: the keys can miss an order the target enforces (a collation
//!   equivalence beyond case, a cascade or trigger writing other rows). Any
//!   surprise there (a duplicate key, a row count off, a foreign-key error,
//!   a deadlock, a lock wait past [`WORKER_LOCK_WAIT_S`]) rolls the group
//!   back, and it runs again at its turn, when every earlier group has
//!   committed: that is serial apply, where a surprise is a real conflict
//!   and gets the configured policy. Locks the keys do not predict (InnoDB's
//!   gap locks of unique checks) can make an earlier group wait for a later
//!   one that waits for its turn: a group that waits for its turn longer
//!   than [`TURN_PATIENCE`] rolls back, lets go of its locks, and also runs
//!   again at its turn. So the run always ends, and ends as serial apply
//!   would have.
//!
//! Groups are written with the fast path of [`Writer`] (multi-statement
//! packets); a surprise at a group's turn falls back to the slow path for
//! the group, which handles conflicts one statement at a time. With one
//! connection every group runs at its turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

/// How long a group that has run waits for its turn holding its locks;
/// past it, it rolls back and runs again at its turn.
pub const TURN_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

/// A run of whole source transactions applied as one target transaction.
#[derive(Debug)]
pub struct Group<'b> {
    pub txns: &'b [(u64, &'b pb::Transaction)],
    /// The checkpoint the group writes.
    pub checkpoint: u64,
    /// The source position of the group's last transaction.
    pub position: Option<&'b pb::SourcePosition>,
    /// The latest earlier group this one depends on.
    pub after: Option<usize>,
}

/// Cuts `txns` into groups of at most `max_rows` row changes (a larger
/// transaction travels alone) and finds their dependencies. The last group
/// writes `last_checkpoint` (which may cover offsets filtered out upstream).
pub fn groups<'b>(
    txns: &'b [(u64, &'b pb::Transaction)],
    max_rows: usize,
    last_checkpoint: u64,
    meta: &MetaCache,
) -> Vec<Group<'b>> {
    let mut out: Vec<Group<'b>> = Vec::new();
    let mut start = 0;
    let mut rows = 0usize;
    for (i, (_, txn)) in txns.iter().enumerate() {
        let n = txn.changes.len();
        if i > start && rows + n > max_rows {
            out.push(group(&txns[start..i]));
            start = i;
            rows = 0;
        }
        rows += n;
    }
    if start < txns.len() {
        out.push(group(&txns[start..]));
    }
    if let Some(last) = out.last_mut() {
        last.checkpoint = last.checkpoint.max(last_checkpoint);
    }
    if out.len() > 1 {
        let mut last_writer: HashMap<u64, usize> = HashMap::new();
        let mut keys_buf = Vec::new();
        for (k, g) in out.iter_mut().enumerate() {
            keys_buf.clear();
            for (_, txn) in g.txns {
                for c in &txn.changes {
                    keys::change_keys(
                        c,
                        meta.get(&c.schema, &c.table).map(|m| &**m),
                        &mut keys_buf,
                    );
                }
            }
            keys_buf.sort_unstable();
            keys_buf.dedup();
            for key in &keys_buf {
                if let Some(j) = last_writer.insert(*key, k) {
                    g.after = Some(g.after.map_or(j, |a| a.max(j)));
                }
            }
        }
    }
    out
}

fn group<'b>(txns: &'b [(u64, &'b pb::Transaction)]) -> Group<'b> {
    Group {
        txns,
        checkpoint: txns.last().map_or(0, |t| t.0),
        position: txns.iter().rev().find_map(|(_, t)| t.position.as_ref()),
        after: None,
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
}

/// What every worker of a run shares.
struct Shared<'r, 'b> {
    writer: Writer<'r>,
    stream: &'r str,
    origin: &'r str,
    groups: &'r [Group<'b>],
    /// The checkpoint before the first group.
    start: u64,
    next: AtomicUsize,
    committed: watch::Sender<usize>,
    redone: AtomicU64,
    yielded: AtomicU64,
}

/// Applies `groups` over `conns` (one worker per connection); see the module
/// docs. `start` is the stored checkpoint before the first group. On an
/// error, the groups before the stored checkpoint are committed and the
/// connections may hold open transactions: drop them.
pub async fn run(
    writer: Writer<'_>,
    conns: &mut [Conn],
    stream: &str,
    origin: &str,
    groups: &[Group<'_>],
    start: u64,
) -> Result<RunStats> {
    let (committed, _) = watch::channel(0usize);
    let shared = Shared {
        writer,
        stream,
        origin,
        groups,
        start,
        next: AtomicUsize::new(0),
        committed,
        redone: AtomicU64::new(0),
        yielded: AtomicU64::new(0),
    };
    let workers = conns.iter_mut().map(|conn| worker(&shared, conn));
    futures::future::try_join_all(workers).await?;
    Ok(RunStats {
        redone: shared.redone.load(Ordering::Relaxed),
        yielded: shared.yielded.load(Ordering::Relaxed),
    })
}

async fn worker(sh: &Shared<'_, '_>, conn: &mut Conn) -> Result<()> {
    let mut turn = sh.committed.subscribe();
    loop {
        let k = sh.next.fetch_add(1, Ordering::SeqCst);
        let Some(g) = sh.groups.get(k) else {
            return Ok(());
        };
        if let Some(dep) = g.after {
            wait_committed(&mut turn, |c| *c > dep).await?;
        }
        let mut done = false;
        if *turn.borrow() != k {
            // Ahead of its turn: optimistic.
            begin(conn).await?;
            let outcome = match sh.writer.apply_fast(conn, sh.stream, g.txns).await {
                // A change the target refuses is judged at the group's turn,
                // so the error names the first offset that fails.
                Err(e) if !e.is_transient() => Fast::Surprise(e.to_string()),
                other => other?,
            };
            match outcome {
                Fast::Applied => done = true,
                Fast::Surprise(why) => {
                    tracing::debug!(stream = %sh.stream, group = k, reason = %why, "mysql sink: group surprised; again at its turn");
                    sh.redone.fetch_add(1, Ordering::Relaxed);
                    rollback(conn).await?;
                }
            }
            if done {
                let waited =
                    tokio::time::timeout(TURN_PATIENCE, wait_committed(&mut turn, |c| *c == k))
                        .await;
                if waited.is_err() {
                    // An earlier group may wait for a lock this one holds
                    // (gap locks of unique checks, say): let go of them.
                    sh.yielded.fetch_add(1, Ordering::Relaxed);
                    rollback(conn).await?;
                    done = false;
                }
            }
        }
        wait_committed(&mut turn, |c| *c == k).await?;
        if !done {
            // At its turn every earlier group has committed: this is serial
            // apply, where a surprise is a conflict for the policy.
            begin(conn).await?;
            if let Fast::Surprise(why) = sh.writer.apply_fast(conn, sh.stream, g.txns).await? {
                tracing::debug!(stream = %sh.stream, reason = %why, "mysql sink: slow path");
                rollback(conn).await?;
                begin(conn).await?;
                for (offset, txn) in g.txns {
                    let ctx = Ctx::of(sh.stream, *offset, txn);
                    sh.writer.apply_slow(conn, ctx, &txn.changes).await?;
                }
            }
        }
        let expected = if k == 0 {
            sh.start
        } else {
            sh.groups[k - 1].checkpoint
        };
        super::cas_checkpoint(conn, sh.stream, expected).await?;
        checkpoint::write(conn, sh.stream, g.checkpoint, g.position, sh.origin)
            .await
            .map_err(|e| classify(e, None, "drc.checkpoints"))?;
        commit(conn).await?;
        sh.committed.send_replace(k + 1);
    }
}

async fn wait_committed(
    rx: &mut watch::Receiver<usize>,
    f: impl FnMut(&usize) -> bool,
) -> Result<()> {
    rx.wait_for(f)
        .await
        .map(|_| ())
        .map_err(|_| ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: "parallel apply ended".into(),
        })
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
        let g = groups(&with_offsets, 2, 9, &meta);
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
