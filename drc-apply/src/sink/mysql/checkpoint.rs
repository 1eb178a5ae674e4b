//! The sink's own tables in the target, schema `drc`:
//!
//! - `drc.applied`: one row per group (target transaction) of the stream,
//!   inserted in the same target transaction as the data it covers: the
//!   range of offsets `[from_offset, to_offset]` the group covers, the source
//!   position of its last transaction and the `origin`. The target's own
//!   capture sees this row inside each applied transaction and marks the
//!   transaction with that origin, so it is never sent back (see the design's
//!   "Active-active"). Groups commit in any order (see `parallel.rs`), each
//!   with its own row, so no two groups wait on one row lock.
//! - `drc.checkpoints`: one row per stream, the settled checkpoint: every
//!   offset up to it is applied. Once a run of groups has committed, the sink
//!   moves this row to the end of the run and deletes the run's
//!   `drc.applied` rows, in one transaction. The stream's checkpoint is this
//!   row extended by the `drc.applied` ranges that follow it without a gap
//!   ([`read_state`]); ranges past a gap (groups that committed before an
//!   earlier one when the applier stopped) are applied already and skipped.
//! - `drc.conflicts`: one row per conflict (see [`super::conflict`]).
//!
//! Row changes of the `drc` schema that arrive in a stream are never applied:
//! they are another region's bookkeeping.

use drc_proto::v1 as pb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::sink::Checkpoint;

/// The schema holding the sink's tables.
pub const SCHEMA: &str = "drc";

/// Statements that create the sink's schema and tables if they are missing.
pub const CREATE_STATEMENTS: [&str; 4] = [
    "CREATE DATABASE IF NOT EXISTS drc DEFAULT CHARACTER SET utf8mb4",
    "CREATE TABLE IF NOT EXISTS drc.checkpoints (
        stream VARCHAR(200) NOT NULL PRIMARY KEY,
        `offset` BIGINT UNSIGNED NOT NULL,
        gtid TEXT NULL,
        gtid_set TEXT NULL,
        file VARCHAR(255) NULL,
        pos BIGINT UNSIGNED NULL,
        origin VARCHAR(200) NULL,
        updated_at TIMESTAMP(6) NULL DEFAULT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS drc.applied (
        stream VARCHAR(200) NOT NULL,
        from_offset BIGINT UNSIGNED NOT NULL,
        to_offset BIGINT UNSIGNED NOT NULL,
        gtid TEXT NULL,
        gtid_set TEXT NULL,
        file VARCHAR(255) NULL,
        pos BIGINT UNSIGNED NULL,
        origin VARCHAR(200) NULL,
        PRIMARY KEY (stream, from_offset)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS drc.conflicts (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        stream VARCHAR(200) NOT NULL,
        `offset` BIGINT UNSIGNED NOT NULL,
        gtid TEXT NULL,
        db VARCHAR(64) NOT NULL,
        tbl VARCHAR(64) NOT NULL,
        op VARCHAR(8) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        policy VARCHAR(16) NOT NULL,
        before_image LONGTEXT NULL,
        after_image LONGTEXT NULL,
        target_image LONGTEXT NULL,
        message TEXT NULL,
        at TIMESTAMP(6) NULL DEFAULT NULL,
        KEY stream_offset (stream, `offset`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

/// Creates the sink's schema and tables if they are missing.
pub async fn ensure_schema(conn: &mut Conn) -> mysql_async::Result<()> {
    for stmt in CREATE_STATEMENTS {
        conn.query_drop(stmt).await?;
    }
    Ok(())
}

type CheckpointRow = (
    u64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<u64>,
);

/// Reads the checkpoint of `stream`; with `lock`, inside an open transaction,
/// the row stays locked until it ends (so two appliers of one stream take
/// turns rather than both applying).
pub async fn read(conn: &mut Conn, stream: &str, lock: bool) -> mysql_async::Result<Checkpoint> {
    let sql = if lock {
        "SELECT `offset`, gtid, gtid_set, file, pos FROM drc.checkpoints WHERE stream = ? FOR UPDATE"
    } else {
        "SELECT `offset`, gtid, gtid_set, file, pos FROM drc.checkpoints WHERE stream = ?"
    };
    let row: Option<CheckpointRow> = conn.exec_first(sql, (stream,)).await?;
    Ok(match row {
        None => Checkpoint {
            stream: stream.to_owned(),
            offset: 0,
            position: None,
        },
        Some((offset, gtid, gtid_set, file, pos)) => {
            let position = (gtid.is_some() || file.is_some()).then(|| pb::SourcePosition {
                gtid: gtid.unwrap_or_default(),
                file: file.unwrap_or_default(),
                pos: pos.unwrap_or_default(),
                gtid_set: gtid_set.unwrap_or_default(),
            });
            Checkpoint {
                stream: stream.to_owned(),
                offset,
                position,
            }
        }
    })
}

/// Records `offset` (and the source position of the last transaction it
/// covers, when known) as the checkpoint of `stream`, in the caller's
/// transaction. Without a position the stored one is kept.
pub async fn write(
    conn: &mut Conn,
    stream: &str,
    offset: u64,
    position: Option<&pb::SourcePosition>,
    origin: &str,
) -> mysql_async::Result<()> {
    match position {
        Some(p) => {
            let empty_none = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            conn.exec_drop(
                "INSERT INTO drc.checkpoints (stream, `offset`, gtid, gtid_set, file, pos, origin, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, NOW(6))
                 ON DUPLICATE KEY UPDATE `offset` = VALUES(`offset`), gtid = VALUES(gtid),
                   gtid_set = VALUES(gtid_set), file = VALUES(file), pos = VALUES(pos),
                   origin = VALUES(origin), updated_at = VALUES(updated_at)",
                (
                    stream,
                    offset,
                    empty_none(&p.gtid),
                    empty_none(&p.gtid_set),
                    empty_none(&p.file),
                    (!p.file.is_empty()).then_some(p.pos),
                    origin,
                ),
            )
            .await
        }
        None => {
            conn.exec_drop(
                "INSERT INTO drc.checkpoints (stream, `offset`, origin, updated_at)
                 VALUES (?, ?, ?, NOW(6))
                 ON DUPLICATE KEY UPDATE `offset` = VALUES(`offset`), origin = VALUES(origin),
                   updated_at = VALUES(updated_at)",
                (stream, offset, origin),
            )
            .await
        }
    }
}

/// A stream's state in the target: the checkpoint (settled row extended by
/// the contiguous `drc.applied` ranges), and the ranges applied past a gap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub checkpoint: Checkpoint,
    /// The offset `drc.checkpoints` itself holds.
    pub settled: u64,
    /// Whether `drc.applied` holds rows of the stream (a settle is due).
    pub unsettled: bool,
    /// Ranges `[from, to]` applied past the checkpoint, in order.
    pub ahead: Vec<(u64, u64)>,
}

impl State {
    /// Whether `offset` is applied already.
    pub fn covers(&self, offset: u64) -> bool {
        offset <= self.checkpoint.offset
            || self.ahead.iter().any(|&(a, b)| a <= offset && offset <= b)
    }
}

type AppliedRow = (
    u64,
    u64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<u64>,
);

fn position_of(
    gtid: Option<String>,
    gtid_set: Option<String>,
    file: Option<String>,
    pos: Option<u64>,
) -> Option<pb::SourcePosition> {
    (gtid.is_some() || file.is_some()).then(|| pb::SourcePosition {
        gtid: gtid.unwrap_or_default(),
        file: file.unwrap_or_default(),
        pos: pos.unwrap_or_default(),
        gtid_set: gtid_set.unwrap_or_default(),
    })
}

/// Reads the state of `stream` (no locks).
pub async fn read_state(conn: &mut Conn, stream: &str) -> mysql_async::Result<State> {
    let settled = read(conn, stream, false).await?;
    let rows: Vec<AppliedRow> = conn
        .exec(
            "SELECT from_offset, to_offset, gtid, gtid_set, file, pos FROM drc.applied
             WHERE stream = ? ORDER BY from_offset",
            (stream,),
        )
        .await?;
    let mut state = State {
        unsettled: !rows.is_empty(),
        settled: settled.offset,
        checkpoint: settled,
        ahead: Vec::new(),
    };
    for (from, to, gtid, gtid_set, file, pos) in rows {
        if to <= state.checkpoint.offset {
            continue;
        }
        if from <= state.checkpoint.offset + 1 && state.ahead.is_empty() {
            state.checkpoint.offset = to;
            if let Some(p) = position_of(gtid, gtid_set, file, pos) {
                state.checkpoint.position = Some(p);
            }
        } else {
            state.ahead.push((from, to));
        }
    }
    // Ranges that now touch the checkpoint (after an earlier gap closed)
    // cannot exist: a gap is only closed by a group whose row is read above.
    Ok(state)
}

/// Records a group `[from, to]` of `stream` in the caller's transaction.
pub async fn record_group(
    conn: &mut Conn,
    stream: &str,
    from: u64,
    to: u64,
    position: Option<&pb::SourcePosition>,
    origin: &str,
) -> mysql_async::Result<()> {
    let empty_none = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (gtid, gtid_set, file, pos) = match position {
        Some(p) => (
            empty_none(&p.gtid),
            empty_none(&p.gtid_set),
            empty_none(&p.file),
            (!p.file.is_empty()).then_some(p.pos),
        ),
        None => (None, None, None, None),
    };
    conn.exec_drop(
        "INSERT INTO drc.applied (stream, from_offset, to_offset, gtid, gtid_set, file, pos, origin)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (stream, from, to, gtid, gtid_set, file, pos, origin),
    )
    .await
}

/// Moves the settled checkpoint of `stream` to `checkpoint` and deletes the
/// `drc.applied` rows it covers, in the caller's transaction.
pub async fn settle(
    conn: &mut Conn,
    stream: &str,
    checkpoint: &Checkpoint,
    origin: &str,
) -> mysql_async::Result<()> {
    write(
        conn,
        stream,
        checkpoint.offset,
        checkpoint.position.as_ref(),
        origin,
    )
    .await?;
    conn.exec_drop(
        "DELETE FROM drc.applied WHERE stream = ? AND to_offset <= ?",
        (stream, checkpoint.offset),
    )
    .await
}

/// The name of a stream's lock on the target (at most 64 characters, the
/// servers' limit).
pub fn lock_name(stream: &str) -> String {
    let name = format!("drc.apply.{stream}");
    if name.len() <= 64 {
        return name;
    }
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    stream.hash(&mut h);
    format!("drc.apply.{:016x}", h.finish())
}

/// Locks the checkpoint row of `stream` in the open transaction and checks
/// it still holds `expected` (else another applier moved it).
pub async fn cas(conn: &mut Conn, stream: &str, expected: u64) -> crate::error::Result<()> {
    let stored = read(conn, stream, true)
        .await
        .map_err(|e| super::classify(e, None, "drc.checkpoints"))?
        .offset;
    if stored == expected {
        return Ok(());
    }
    Err(crate::error::ApplyError::Transient {
        sink: super::SINK_NAME.into(),
        message: format!(
            "the checkpoint of stream {stream} moved to {stored} while this applier expected \
             {expected}: another applier of the stream is running; resuming from the stored checkpoint"
        ),
    })
}
