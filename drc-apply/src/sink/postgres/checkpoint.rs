//! The sink's own tables in the target, schema `drc`:
//!
//! - `drc.checkpoints`: one row per stream (offset, source position,
//!   origin), written in the same target transaction as the data it covers,
//!   and locked (`SELECT ... FOR UPDATE`) at the start of every batch so two
//!   appliers of one stream take turns instead of both applying.
//! - `drc.conflicts`: one row per conflict (see [`super::conflict`]).
//!
//! Row changes of a `drc` database that arrive in a stream are never applied:
//! they are another region's bookkeeping.

use drc_proto::v1 as pb;
use tokio_postgres::Client;

use crate::sink::Checkpoint;

/// The schema holding the sink's tables.
pub const SCHEMA: &str = "drc";

/// Statements that create the sink's tables if they are missing (the schema
/// is created first, see [`super::PostgresSink::connect`]).
pub const CREATE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS drc.checkpoints (
        stream text PRIMARY KEY,
        \"offset\" bigint NOT NULL,
        gtid text,
        gtid_set text,
        file text,
        pos bigint,
        origin text,
        updated_at timestamptz
    );
    CREATE TABLE IF NOT EXISTS drc.conflicts (
        id bigserial PRIMARY KEY,
        stream text NOT NULL,
        \"offset\" bigint NOT NULL,
        gtid text,
        db text NOT NULL,
        tbl text NOT NULL,
        op text NOT NULL,
        kind text NOT NULL,
        policy text NOT NULL,
        before_image jsonb,
        after_image jsonb,
        target_image jsonb,
        message text,
        at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS conflicts_stream_offset ON drc.conflicts (stream, \"offset\");";

/// Reads the checkpoint of `stream`; with `lock`, inside an open
/// transaction, the row is created if missing and stays locked until the
/// transaction ends.
pub async fn read(
    client: &Client,
    stream: &str,
    lock: bool,
) -> Result<Checkpoint, tokio_postgres::Error> {
    if lock {
        // A row to lock even before the first batch: a second applier of
        // the stream waits here until the first commits.
        client
            .execute(
                "INSERT INTO drc.checkpoints (stream, \"offset\") VALUES ($1, 0) \
                 ON CONFLICT (stream) DO NOTHING",
                &[&stream],
            )
            .await?;
    }
    let sql = if lock {
        "SELECT \"offset\", gtid, gtid_set, file, pos FROM drc.checkpoints WHERE stream = $1 FOR UPDATE"
    } else {
        "SELECT \"offset\", gtid, gtid_set, file, pos FROM drc.checkpoints WHERE stream = $1"
    };
    let row = client.query_opt(sql, &[&stream]).await?;
    let Some(row) = row else {
        return Ok(Checkpoint {
            stream: stream.to_owned(),
            offset: 0,
            position: None,
        });
    };
    let offset: i64 = row.try_get(0)?;
    let gtid: Option<String> = row.try_get(1)?;
    let gtid_set: Option<String> = row.try_get(2)?;
    let file: Option<String> = row.try_get(3)?;
    let pos: Option<i64> = row.try_get(4)?;
    let position = (gtid.is_some() || file.is_some()).then(|| pb::SourcePosition {
        gtid: gtid.unwrap_or_default(),
        file: file.unwrap_or_default(),
        pos: pos.and_then(|p| u64::try_from(p).ok()).unwrap_or_default(),
        gtid_set: gtid_set.unwrap_or_default(),
    });
    Ok(Checkpoint {
        stream: stream.to_owned(),
        // Offsets are written from u64 values below 2^63.
        offset: u64::try_from(offset).unwrap_or_default(),
        position,
    })
}

/// Records `offset` (and the source position of the last transaction it
/// covers, when known) as the checkpoint of `stream`, in the caller's
/// transaction. Without a position the stored one is kept.
pub async fn write(
    client: &Client,
    stream: &str,
    offset: u64,
    position: Option<&pb::SourcePosition>,
    origin: &str,
) -> Result<(), tokio_postgres::Error> {
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    match position {
        Some(p) => {
            let empty_none = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let pos: Option<i64> =
                (!p.file.is_empty()).then(|| i64::try_from(p.pos).unwrap_or(i64::MAX));
            client
                .execute(
                    "INSERT INTO drc.checkpoints (stream, \"offset\", gtid, gtid_set, file, pos, origin, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                     ON CONFLICT (stream) DO UPDATE SET \"offset\" = EXCLUDED.\"offset\",
                       gtid = EXCLUDED.gtid, gtid_set = EXCLUDED.gtid_set, file = EXCLUDED.file,
                       pos = EXCLUDED.pos, origin = EXCLUDED.origin, updated_at = EXCLUDED.updated_at",
                    &[
                        &stream,
                        &offset,
                        &empty_none(&p.gtid),
                        &empty_none(&p.gtid_set),
                        &empty_none(&p.file),
                        &pos,
                        &origin,
                    ],
                )
                .await?;
        }
        None => {
            client
                .execute(
                    "INSERT INTO drc.checkpoints (stream, \"offset\", origin, updated_at)
                     VALUES ($1, $2, $3, now())
                     ON CONFLICT (stream) DO UPDATE SET \"offset\" = EXCLUDED.\"offset\",
                       origin = EXCLUDED.origin, updated_at = EXCLUDED.updated_at",
                    &[&stream, &offset, &origin],
                )
                .await?;
        }
    }
    Ok(())
}
