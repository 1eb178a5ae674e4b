//! The sink's own tables in the target, schema `drc`:
//!
//! - `drc.checkpoints`: one row per stream, written in the same target
//!   transaction as the data it covers. Its `origin` column names where the
//!   applied changes came from: the target's own capture sees this row inside
//!   each applied transaction and marks the transaction with that origin, so
//!   it is never sent back (see the design's "Active-active").
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
pub const CREATE_STATEMENTS: [&str; 3] = [
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
