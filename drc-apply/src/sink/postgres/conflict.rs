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
//! Under `ignore` and `overwrite` each INSERT runs alone with `ON CONFLICT
//! DO NOTHING` (no row inserted: a duplicate), and each UPDATE and each
//! overwriting upsert inside a savepoint (PostgreSQL aborts the whole
//! transaction at an error otherwise); `fail` keeps COPY and multi-row
//! statements.
//!
//! Each record is a row of `drc.conflicts`: stream, offset and GTID of the
//! source transaction, table, operation, kind, policy, and the before, after
//! and (when a row holds the key) target images as `jsonb` objects.

use std::fmt::Write as _;

use drc_proto::v1 as pb;
use serde_json::Value as Json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::rows::{image, written, Writer};
use super::types::ident;
use super::Ctx;
use crate::error::{ApplyError, Result};
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

impl Writer<'_> {
    /// The target row holding the after image's key, as jsonb text.
    async fn target_image(&self) -> Result<Option<String>> {
        let c = self.change;
        let Some(after) = c.after.as_ref() else {
            return Ok(None);
        };
        if c.primary_key.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT to_jsonb(x)::text FROM {} x{} LIMIT 1",
            self.table.name,
            self.where_clause(after)?
        );
        let msgs = self
            .client
            .simple_query(&sql)
            .await
            .map_err(|e| self.err(e, "select from"))?;
        Ok(msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        }))
    }

    /// Handles a conflict under the configured policy (see the module docs).
    pub async fn conflict(&self, kind: ConflictKind) -> Result<()> {
        let c = self.change;
        if self.policy == ConflictPolicy::Fail {
            return Err(conflict_error(self.ctx, c, kind));
        }
        let target_image = if kind == ConflictKind::Duplicate && self.record {
            self.target_image().await?
        } else {
            None
        };
        let mut message = format!(
            "{} {} on {}.{}",
            op_name(c.op()),
            kind.as_str(),
            c.schema,
            c.table
        );
        if self.policy == ConflictPolicy::Overwrite {
            match (c.op(), kind) {
                (pb::Op::Insert, ConflictKind::Duplicate) => {
                    message.push_str(&self.overwrite_with_after().await?);
                }
                (pb::Op::Update, ConflictKind::Missing) => {
                    let sql = self.insert_sql(" ON CONFLICT DO NOTHING")?;
                    match self.exec(&sql, "insert into").await? {
                        0 => message.push_str(": after image not written (a unique key is taken)"),
                        _ => message.push_str(": after image written"),
                    }
                }
                (pb::Op::Update, ConflictKind::Duplicate) => {
                    message.push_str(": update skipped (another row holds the key)");
                }
                _ => message.push_str(": nothing to do"),
            }
        } else {
            message.push_str(": skipped");
        }
        if !self.record {
            return Ok(());
        }
        tracing::warn!(
            offset = self.ctx.offset,
            table = %self.table.name,
            kind = kind.as_str(),
            policy = self.policy.as_str(),
            "postgres sink: conflict"
        );
        drc_obs::apply_conflict(self.ctx.stream, "postgres", kind.as_str());
        let rec = ConflictRecord {
            stream: self.ctx.stream,
            offset: self.ctx.offset,
            gtid: self.ctx.gtid,
            change: c,
            kind,
            policy: self.policy,
            target_image,
            message,
        };
        record(self.client, &rec).await.map_err(|e| {
            super::classify_with_message(
                e,
                Some(self.ctx.offset),
                "record a conflict in drc.conflicts",
            )
        })
    }

    /// Makes the row holding the after image's primary key the after image.
    async fn overwrite_with_after(&self) -> Result<String> {
        let c = self.change;
        if c.primary_key.is_empty() {
            return Ok(": skipped (no primary key to overwrite by)".into());
        }
        let after = image(self.ctx, c, c.after.as_ref(), "after")?;
        let cols = written(self.ctx, c, after, self.table)?;
        let mut keys = Vec::new();
        for &i in &c.primary_key {
            if let Some((_, n)) = cols.iter().find(|(j, _)| *j == i as usize) {
                keys.push(ident(n));
            }
        }
        let mut tail = format!(" ON CONFLICT ({}) DO UPDATE SET ", keys.join(", "));
        for (k, (_, n)) in cols.iter().enumerate() {
            if k > 0 {
                tail.push_str(", ");
            }
            let n = ident(n);
            let _ = write!(tail, "{n} = EXCLUDED.{n}");
        }
        let sql = self.insert_sql(&tail)?;
        Ok(
            match self
                .guarded(
                    &sql,
                    "upsert into",
                    Some(&SqlState::INVALID_COLUMN_REFERENCE),
                )
                .await?
            {
                Some(_) => ": after image written".into(),
                None => ": after image not written (another unique key is taken, or the target \
                          has no unique index on the primary key)"
                    .into(),
            },
        )
    }
}

pub(super) fn conflict_error(ctx: Ctx<'_>, c: &pb::RowChange, kind: ConflictKind) -> ApplyError {
    let what = match kind {
        ConflictKind::Missing => "the row is missing",
        ConflictKind::Duplicate => "the key is taken",
        ConflictKind::Differs => "the row differs from the before image",
    };
    ApplyError::Conflict {
        offset: ctx.offset,
        table: format!("{}.{}", c.schema, c.table),
        message: format!(
            "{} {}: {what} (policy fail: nothing of the batch was applied; set \
             conflict_policy to overwrite or ignore, or fix the target row)",
            op_name(c.op()),
            kind.as_str()
        ),
    }
}
