//! Conflicts: a change that does not fit the target's rows.
//!
//! What is detected:
//!
//! - **missing**: an UPDATE or DELETE matched no target row (matched, not
//!   changed: the sink's connection counts found rows);
//! - **duplicate**: an INSERT hit an existing primary or unique key
//!   (`ER_DUP_ENTRY`).
//!
//! Not detected yet: **differs**, a target row that exists but is not the
//! change's before image. Rows are matched on their primary key (the whole
//! before image only for tables without one), so a row changed on both sides
//! is overwritten by the later apply without a record.
//!
//! What the policy does ([`ConflictPolicy`]), always inside the batch's
//! target transaction, so a record is committed with the data it describes:
//!
//! | kind      | `fail`              | `ignore`        | `overwrite`                          |
//! |-----------|---------------------|-----------------|--------------------------------------|
//! | duplicate | roll back, error    | record, skip    | record, upsert the after image       |
//! | missing (UPDATE) | roll back, error | record, skip | record, insert the after image     |
//! | missing (DELETE) | roll back, error | record, skip | record (the row is already gone)   |
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

use super::sql::{format_date, format_datetime, format_time, format_timestamp, hex_lower};

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
