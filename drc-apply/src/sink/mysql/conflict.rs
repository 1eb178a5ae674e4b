//! Conflicts: a change that does not fit the target's rows.
//!
//! What is detected:
//!
//! - **missing**: an UPDATE or DELETE matched no target row (matched, not
//!   changed: the sink's connection counts found rows);
//! - **duplicate**: an INSERT hit an existing primary or unique key
//!   (`ER_DUP_ENTRY`).
//!
//! - **differs** (with `check_before_image`, the default): the row with the
//!   change's primary key exists but is not the change's before image (a
//!   row changed on both sides).
//!
//! The [`Writer`] methods here handle a conflict the slow path met.
//!
//! What the policy does ([`ConflictPolicy`]), always inside the batch's
//! target transaction, so a record is committed with the data it describes:
//!
//! | kind      | `fail`              | `ignore`        | `overwrite`                          |
//! |-----------|---------------------|-----------------|--------------------------------------|
//! | duplicate | roll back, error    | record, skip    | record, upsert the after image       |
//! | missing (UPDATE) | roll back, error | record, skip | record, insert the after image     |
//! | missing (DELETE) | roll back, error | record, skip | record (the row is already gone)   |
//! | differs (UPDATE) | roll back, error | record, skip | record, update by primary key      |
//! | differs (DELETE) | roll back, error | record, skip | record, delete by primary key      |
//!
//! Each record is a row of `drc.conflicts`: stream, offset and GTID of the
//! source transaction, table, operation, kind, policy, and the before, after
//! and (for duplicates, found by primary key) target images as JSON objects.

use drc_proto::v1 as pb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use pb::value::Kind;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

use super::row_error;
use super::sql::{
    self, format_date, format_datetime, format_time, format_timestamp, hex_lower, ColVal,
};
use super::write::{conflict_error, definite, image, value_kind, written_columns, Ctx, Writer};
use crate::error::Result;

/// What the sink does when a change conflicts with the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// Stop: the batch is rolled back and `apply` returns
    /// [`crate::ApplyError::Conflict`] naming the offset and table.
    Fail,
    /// Make the target row what the source says, and record the conflict.
    Overwrite,
    /// Leave the target row as it is, and record the conflict.
    Ignore,
}

impl ConflictPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Fail => "fail",
            ConflictPolicy::Overwrite => "overwrite",
            ConflictPolicy::Ignore => "ignore",
        }
    }
}

impl Default for ConflictPolicy {
    fn default() -> Self {
        super::config::DEFAULT_CONFLICT_POLICY
    }
}

/// The kinds of conflict, as recorded in `drc.conflicts.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// UPDATE/DELETE found no row.
    Missing,
    /// The target row is not the before image (not detected yet).
    Differs,
    /// INSERT found the key taken.
    Duplicate,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Missing => "missing",
            ConflictKind::Differs => "differs",
            ConflictKind::Duplicate => "duplicate",
        }
    }
}

/// The name of an operation in `drc.conflicts.op`.
pub fn op_name(op: pb::Op) -> &'static str {
    match op {
        pb::Op::Insert => "insert",
        pb::Op::Update => "update",
        pb::Op::Delete => "delete",
        pb::Op::Unspecified => "unknown",
    }
}

/// One conflict to record.
#[derive(Debug)]
pub struct ConflictRecord<'a> {
    pub stream: &'a str,
    pub offset: u64,
    pub gtid: &'a str,
    pub change: &'a pb::RowChange,
    pub kind: ConflictKind,
    pub policy: ConflictPolicy,
    /// The target row as the sink found it, when it looked.
    pub target_image: Option<Json>,
    pub message: String,
}

/// Inserts `rec` into `drc.conflicts` in the caller's transaction.
pub async fn record(conn: &mut Conn, rec: &ConflictRecord<'_>) -> mysql_async::Result<()> {
    let c = rec.change;
    let image = |row: &Option<pb::Row>| row.as_ref().map(|r| image_json(&c.columns, r).to_string());
    conn.exec_drop(
        "INSERT INTO drc.conflicts (stream, `offset`, gtid, db, tbl, op, kind, policy,
           before_image, after_image, target_image, message, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NOW(6))",
        (
            rec.stream,
            rec.offset,
            (!rec.gtid.is_empty()).then_some(rec.gtid),
            &c.schema,
            &c.table,
            op_name(c.op()),
            rec.kind.as_str(),
            rec.policy.as_str(),
            image(&c.before),
            image(&c.after),
            rec.target_image.as_ref().map(Json::to_string),
            &rec.message,
        ),
    )
    .await
}

/// A row image as a JSON object `{column: value}` (absent values left out).
pub fn image_json(columns: &[pb::Column], row: &pb::Row) -> Json {
    let mut map = Map::new();
    for (i, v) in row.values.iter().enumerate() {
        let Some(kind) = &v.kind else { continue };
        let name = columns
            .get(i)
            .map_or_else(|| format!("@{}", i + 1), |c| c.name.clone());
        map.insert(name, value_json(kind));
    }
    Json::Object(map)
}

fn value_json(kind: &Kind) -> Json {
    match kind {
        Kind::Null(_) => Json::Null,
        Kind::Int(i) => json!(i),
        Kind::Uint(u) => json!(u),
        Kind::Float(f) => json!(f),
        Kind::Double(d) => json!(d),
        Kind::Year(y) => json!(y),
        Kind::Decimal(s)
        | Kind::Text(s)
        | Kind::EnumLabel(s)
        | Kind::Json(s)
        | Kind::Inet6(s)
        | Kind::Uuid(s) => json!(s),
        Kind::Bytes(b) => json!({ "hex": hex_lower(b) }),
        Kind::Date(d) => json!(format_date(d)),
        Kind::Time(t) => json!(format_time(t)),
        Kind::Datetime(d) => json!(format_datetime(d)),
        Kind::Timestamp(t) => format_timestamp(t).map_or(json!(t.seconds), |s| json!(s)),
        Kind::Bit(b) => json!(b.value),
        Kind::SetLabels(s) => json!(s.labels),
        Kind::Geometry(g) => json!({ "srid": g.srid, "wkb_hex": hex_lower(&g.wkb) }),
        Kind::Vector(v) => json!(v.values),
    }
}

/// A target row read with the text protocol as a JSON object: text where
/// the bytes are UTF-8, `{"hex": ...}` otherwise.
pub fn target_row_json(row: &mysql_async::Row) -> Json {
    let mut map = Map::new();
    for (i, col) in row.columns_ref().iter().enumerate() {
        let value = match row.as_ref(i) {
            None | Some(mysql_async::Value::NULL) => Json::Null,
            Some(mysql_async::Value::Bytes(b)) => match std::str::from_utf8(b) {
                Ok(s) => json!(s),
                Err(_) => json!({ "hex": hex_lower(b) }),
            },
            Some(other) => json!(other.as_sql(true)),
        };
        map.insert(col.name_str().into_owned(), value);
    }
    Json::Object(map)
}

impl Writer<'_> {
    /// Handles a conflict under the configured policy (see the module docs).
    pub(super) async fn conflict(
        &self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        c: &pb::RowChange,
        kind: ConflictKind,
    ) -> Result<()> {
        let policy = self.config.conflict_policy;
        if policy == ConflictPolicy::Fail {
            return Err(conflict_error(ctx, c, kind));
        }
        let table = sql::table_ref(&c.schema, &c.table);
        let record = self.config.record_conflicts;
        let target_image = match kind {
            _ if !record => None,
            ConflictKind::Duplicate => self.target_image(conn, ctx, c, c.after.as_ref()).await?,
            ConflictKind::Differs => self.target_image(conn, ctx, c, c.before.as_ref()).await?,
            ConflictKind::Missing => None,
        };
        let mut message = format!(
            "{} {} on {}.{}",
            op_name(c.op()),
            kind.as_str(),
            c.schema,
            c.table
        );
        if policy == ConflictPolicy::Overwrite {
            match (c.op(), kind) {
                (pb::Op::Insert, ConflictKind::Duplicate)
                | (pb::Op::Update, ConflictKind::Missing) => {
                    self.upsert_after(conn, ctx, c).await?;
                    message.push_str(": after image written");
                }
                (pb::Op::Update, ConflictKind::Differs) => {
                    self.by_key_only(conn, ctx, c).await?;
                    message.push_str(": after image written");
                }
                (pb::Op::Delete, ConflictKind::Differs) => {
                    self.by_key_only(conn, ctx, c).await?;
                    message.push_str(": target row deleted");
                }
                (pb::Op::Update, ConflictKind::Duplicate) => {
                    message.push_str(": update skipped (another row holds the key)");
                }
                _ => message.push_str(": nothing to do"),
            }
        } else {
            message.push_str(": skipped");
        }
        if !record {
            return Ok(());
        }
        tracing::warn!(offset = ctx.offset, table = %table, kind = kind.as_str(), policy = policy.as_str(), "mysql sink: conflict");
        drc_obs::apply_conflict(ctx.stream, "mysql", kind.as_str());
        let rec = ConflictRecord {
            stream: ctx.stream,
            offset: ctx.offset,
            gtid: ctx.gtid,
            change: c,
            kind,
            policy,
            target_image,
            message,
        };
        self::record(conn, &rec)
            .await
            .map_err(|e| super::classify(e, Some(ctx.offset), "record a conflict in drc.conflicts"))
    }

    /// UPDATE or DELETE matched by the primary key alone (overwriting a
    /// target row that differs from the before image).
    async fn by_key_only(&self, conn: &mut Conn, ctx: Ctx<'_>, c: &pb::RowChange) -> Result<()> {
        let table = sql::table_ref(&c.schema, &c.table);
        let stmt = if c.op() == pb::Op::Update {
            self.update_sql(ctx, c, false)?
        } else {
            self.delete_sql(ctx, c, false)?
        };
        conn.query_drop(stmt)
            .await
            .map_err(|e| row_error(e, ctx, "overwrite", &table))
    }

    /// The target row holding the primary key of `row`, if the table has one
    /// and the row exists.
    pub(super) async fn target_image(
        &self,
        conn: &mut Conn,
        ctx: Ctx<'_>,
        c: &pb::RowChange,
        row: Option<&pb::Row>,
    ) -> Result<Option<serde_json::Value>> {
        let Some(row) = row else {
            return Ok(None);
        };
        if c.primary_key.is_empty() {
            return Ok(None);
        }
        let mut key = Vec::with_capacity(c.primary_key.len());
        for &i in &c.primary_key {
            let i = i as usize;
            let (Some(col), Some(kind)) = (
                c.columns.get(i),
                row.values.get(i).and_then(|v| v.kind.as_ref()),
            ) else {
                return Ok(None);
            };
            key.push(ColVal {
                name: &col.name,
                kind,
            });
        }
        let table = sql::table_ref(&c.schema, &c.table);
        let stmt = sql::select_one(&table, &key, self.flavor)
            .map_err(|m| definite(ctx, format!("select from {table}: {m}")))?;
        let found: Option<mysql_async::Row> = conn
            .query_first(stmt)
            .await
            .map_err(|e| row_error(e, ctx, "select from", &table))?;
        Ok(found.as_ref().map(target_row_json))
    }

    /// Inserts the after image, replacing the row that holds its key.
    async fn upsert_after(&self, conn: &mut Conn, ctx: Ctx<'_>, c: &pb::RowChange) -> Result<()> {
        let table = sql::table_ref(&c.schema, &c.table);
        let after = image(ctx, c, c.after.as_ref(), "after")?;
        let cols = written_columns(ctx, c, after, self.generated(c))?;
        let names: Vec<&str> = cols.iter().map(|&i| c.columns[i].name.as_str()).collect();
        let mut stmt = sql::insert_head(&table, &names);
        sql::push_row(
            &mut stmt,
            cols.iter().map(|&i| value_kind(after, i)),
            self.flavor,
        )
        .map_err(|m| definite(ctx, format!("insert into {table}: {m}")))?;
        sql::push_upsert_tail(&mut stmt, &names);
        conn.query_drop(stmt)
            .await
            .map_err(|e| row_error(e, ctx, "upsert into", &table))
    }
}
