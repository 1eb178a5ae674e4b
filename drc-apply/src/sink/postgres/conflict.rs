//! Conflicts of the PostgreSQL sink: a change that does not fit the
//! target's rows.
//!
//! Detected, as in the MySQL sink:
//!
//! - **missing**: an UPDATE or DELETE matched no target row;
//! - **duplicate**: an INSERT, or an UPDATE, hit an existing primary or
//!   unique key (SQLSTATE 23505).
//!
//! Not detected: a target row that exists but differs from the before image
//! (rows are matched on their primary key; the whole before image only for
//! tables without one).
//!
//! What the policy does, always inside the batch's target transaction (a
//! record is committed with the data it describes, or not at all):
//!
//! | kind | `fail` | `ignore` | `overwrite` |
//! |------|--------|----------|-------------|
//! | duplicate (INSERT) | roll back, error | record, skip | record, the row becomes the after image (`ON CONFLICT (key) DO UPDATE`) |
//! | duplicate (UPDATE) | roll back, error | record, skip | record, skip (another row holds the key) |
//! | missing (UPDATE) | roll back, error | record, skip | record, insert the after image |
//! | missing (DELETE) | roll back, error | record, skip | record (the row is already gone) |
//!
//! Under `ignore` and `overwrite` each INSERT and UPDATE runs alone inside a
//! savepoint (PostgreSQL aborts the whole transaction at an error
//! otherwise); `fail` keeps COPY and multi-row statements.
//!
//! Each record is a row of `drc.conflicts`: stream, offset and GTID of the
//! source transaction, table, operation, kind, policy, and the before, after
//! and (when a row holds the key) target images as `jsonb` objects.

use drc_proto::v1 as pb;
use serde_json::Value as Json;
use tokio_postgres::Client;

pub use crate::sink::mysql::conflict::{image_json, op_name, ConflictKind};
use crate::sink::mysql::ConflictPolicy;

/// One conflict to record.
#[derive(Debug)]
pub struct ConflictRecord<'a> {
    pub stream: &'a str,
    pub offset: u64,
    pub gtid: &'a str,
    pub change: &'a pb::RowChange,
    pub kind: ConflictKind,
    pub policy: ConflictPolicy,
    /// The target row as the sink found it (`to_jsonb` of the row).
    pub target_image: Option<String>,
    pub message: String,
}

/// Inserts `rec` into `drc.conflicts` in the caller's transaction.
pub async fn record(
    client: &Client,
    rec: &ConflictRecord<'_>,
) -> Result<(), tokio_postgres::Error> {
    let c = rec.change;
    let image = |row: &Option<pb::Row>| row.as_ref().map(|r| json_text(&image_json(&c.columns, r)));
    let offset = i64::try_from(rec.offset).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO drc.conflicts (stream, \"offset\", gtid, db, tbl, op, kind, policy,
               before_image, after_image, target_image, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb,
               $11::text::jsonb, $12)",
            &[
                &rec.stream,
                &offset,
                &(!rec.gtid.is_empty()).then_some(rec.gtid),
                &c.schema,
                &c.table,
                &op_name(c.op()),
                &rec.kind.as_str(),
                &rec.policy.as_str(),
                &image(&c.before),
                &image(&c.after),
                &rec.target_image,
                &rec.message,
            ],
        )
        .await?;
    Ok(())
}

/// JSON text that jsonb accepts: a NUL in a string (which jsonb refuses) is
/// written as U+FFFD.
fn json_text(v: &Json) -> String {
    v.to_string().replace("\\u0000", "\u{fffd}")
}
