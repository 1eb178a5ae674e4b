//! The messages: a Debezium-compatible JSON envelope per row change, and a
//! schema-change message per DDL.
//!
//! A row change (`op` `c` insert, `u` update, `d` delete):
//!
//! ```text
//! {"before":null,"after":{"id":1,"name":"café","price":"9.90"},
//!  "source":{"version":"0.1.0","connector":"drc","name":"a.shop","ts_ms":1764237600000,"snapshot":"false",
//!            "db":"shop","table":"orders","server_id":1,"gtid":"0-1-7","file":"binlog.000001","pos":1234,
//!            "stream":"a.shop","offset":7,"index":0,"origin":null,"pk":["id"]},
//!  "op":"c","ts_ms":1764237600000,
//!  "transaction":{"id":"a.shop:7","total_order":1,"data_collection_order":1,"event_count":3}}
//! ```
//!
//! - `before`/`after` are the row images (`null` where the operation has
//!   none), column name to value, values in the form of DRC's JSON lines
//!   (`drc_capture::output::jsonl`): integers as numbers, DECIMAL as a
//!   string of its exact digits, bytes as `{"base64":...}`, temporal values
//!   as strings, SET as an array, JSON as the document itself, NULL as
//!   `null`. A column absent from the row image (only in binlog files
//!   written with MINIMAL/NOBLOB images) is left out.
//! - An UPDATE that changes the primary key is one `u` message with both
//!   images (Debezium splits it into `d` and `c`); `source.pk` names the
//!   key columns (empty: the table has no key), so a consumer can tell.
//! - `ts_ms` (top level and in `source`) is the source commit time in
//!   milliseconds. Debezium puts the processing time at the top level; DRC
//!   puts the commit time there too so that **a repeated message is
//!   byte-identical to the first**.
//! - `transaction` tells where the message sits in its source transaction:
//!   `total_order` counts from 1 over the transaction's messages,
//!   `data_collection_order` over those of its table, `event_count` is the
//!   number of messages of the transaction.
//!
//! A DDL gives one schema-change message on the DDL subject, in the shape of
//! Debezium's schema-change topic (`tableChanges` is left empty: the
//! capture does not carry the resulting table definition):
//!
//! ```text
//! {"source":{...,"db":"shop","table":null,...},"ts_ms":1764237600000,"databaseName":"shop",
//!  "ddl":"ALTER TABLE orders ADD note TEXT","tableChanges":[],"transaction":{...}}
//! ```
//!
//! A `TRUNCATE [TABLE] [db.]name` DDL gives, after its schema-change
//! message, a Debezium truncate (`op` `t`, both images `null`) on the
//! table's subject, so a consumer of that subject alone sees it.

use std::io::Write;

use drc_proto::v1 as pb;

/// `source.connector`.
pub const CONNECTOR: &str = "drc";
/// `source.version`: the version of DRC that wrote the message.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One message a transaction turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// The row change at this index of `changes`.
    Row(usize),
    /// The schema-change message of the transaction's DDL.
    Ddl,
    /// A truncate of (db, table), after the `Ddl` message.
    Truncate(String, String),
}

/// The messages of `txn`, in publish order; their position is the index in
/// the message id.
pub fn plan(txn: &pb::Transaction) -> Vec<Planned> {
    let mut out: Vec<Planned> = (0..txn.changes.len()).map(Planned::Row).collect();
    if let Some(ddl) = txn.ddl.as_ref().filter(|d| !d.statement.trim().is_empty()) {
        out.push(Planned::Ddl);
        if let Some((db, table)) = truncated_table(ddl) {
            out.push(Planned::Truncate(db, table));
        }
    }
    out
}

/// `<stream>:<offset>:<index>`, the JetStream message id (`Nats-Msg-Id`).
pub fn message_id(stream: &str, offset: u64, index: usize) -> String {
    format!("{stream}:{offset}:{index}")
}

/// Splits a message id into (stream, offset, index). DRC stream names hold
/// no `:`.
pub fn parse_message_id(id: &str) -> Option<(&str, u64, usize)> {
    let mut parts = id.rsplitn(3, ':');
    let index = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let stream = parts.next()?;
    Some((stream, offset, index))
}

/// Where a message sits: its stream, offset, index and counts.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub stream: &'a str,
    pub offset: u64,
    pub index: usize,
    /// 1-based order among the messages of the same table (or 1).
    pub table_order: usize,
    /// Messages of the transaction.
    pub count: usize,
}

fn str_(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn opt_str(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        str_(out, s);
    }
}

fn ts_ms(txn: &pb::Transaction) -> i64 {
    txn.commit_ts_us.div_euclid(1000)
}

fn source(
    out: &mut Vec<u8>,
    p: Place<'_>,
    txn: &pb::Transaction,
    db: &str,
    table: Option<&str>,
    pk: Option<&[String]>,
) {
    let pos = txn.position.clone().unwrap_or_default();
    out.extend_from_slice(b"{\"version\":");
    str_(out, VERSION);
    out.extend_from_slice(b",\"connector\":");
    str_(out, CONNECTOR);
    out.extend_from_slice(b",\"name\":");
    str_(out, p.stream);
    let _ = write!(
        out,
        ",\"ts_ms\":{},\"snapshot\":\"false\",\"db\":",
        ts_ms(txn)
    );
    str_(out, db);
    out.extend_from_slice(b",\"table\":");
    match table {
        Some(t) => str_(out, t),
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\"server_id\":{},\"gtid\":", txn.server_id);
    opt_str(out, &pos.gtid);
    out.extend_from_slice(b",\"file\":");
    str_(out, &pos.file);
    let _ = write!(out, ",\"pos\":{},\"stream\":", pos.pos);
    str_(out, p.stream);
    let _ = write!(
        out,
        ",\"offset\":{},\"index\":{},\"origin\":",
        p.offset, p.index
    );
    opt_str(out, &txn.origin);
    if let Some(pk) = pk {
        out.extend_from_slice(b",\"pk\":[");
        for (i, k) in pk.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            str_(out, k);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn transaction(out: &mut Vec<u8>, p: Place<'_>) {
    out.extend_from_slice(b",\"transaction\":{\"id\":");
    str_(out, &format!("{}:{}", p.stream, p.offset));
    let _ = write!(
        out,
        ",\"total_order\":{},\"data_collection_order\":{},\"event_count\":{}}}",
        p.index + 1,
        p.table_order,
        p.count
    );
}

fn row(out: &mut Vec<u8>, columns: &[pb::Column], row: Option<&pb::Row>) {
    let Some(row) = row else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    let mut first = true;
    for (c, v) in columns.iter().zip(&row.values) {
        if v.kind.is_none() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        str_(out, &c.name);
        out.push(b':');
        drc_capture::output::jsonl::write_value(out, v);
    }
    out.push(b'}');
}

/// The Debezium `op` of a row change; `None` for an unknown operation.
pub fn op_code(c: &pb::RowChange) -> Option<&'static str> {
    match pb::Op::try_from(c.op) {
        Ok(pb::Op::Insert) => Some("c"),
        Ok(pb::Op::Update) => Some("u"),
        Ok(pb::Op::Delete) => Some("d"),
        _ => None,
    }
}

/// Appends the envelope of row change `c`; `op` from [`op_code`].
pub fn row_change(
    out: &mut Vec<u8>,
    p: Place<'_>,
    txn: &pb::Transaction,
    c: &pb::RowChange,
    op: &str,
) {
    let pk: Vec<String> = c
        .primary_key
        .iter()
        .filter_map(|&k| c.columns.get(k as usize).map(|col| col.name.clone()))
        .collect();
    out.extend_from_slice(b"{\"before\":");
    row(out, &c.columns, c.before.as_ref());
    out.extend_from_slice(b",\"after\":");
    row(out, &c.columns, c.after.as_ref());
    out.extend_from_slice(b",\"source\":");
    source(out, p, txn, &c.schema, Some(&c.table), Some(&pk));
    let _ = write!(out, ",\"op\":\"{op}\",\"ts_ms\":{}", ts_ms(txn));
    transaction(out, p);
    out.push(b'}');
}

/// Appends the Debezium truncate of `db.table`.
pub fn truncate(out: &mut Vec<u8>, p: Place<'_>, txn: &pb::Transaction, db: &str, table: &str) {
    out.extend_from_slice(b"{\"before\":null,\"after\":null,\"source\":");
    source(out, p, txn, db, Some(table), None);
    let _ = write!(out, ",\"op\":\"t\",\"ts_ms\":{}", ts_ms(txn));
    transaction(out, p);
    out.push(b'}');
}

/// Appends the schema-change message of `ddl`.
pub fn schema_change(out: &mut Vec<u8>, p: Place<'_>, txn: &pb::Transaction, ddl: &pb::Ddl) {
    out.extend_from_slice(b"{\"source\":");
    source(out, p, txn, &ddl.database, None, None);
    let _ = write!(out, ",\"ts_ms\":{},\"databaseName\":", ts_ms(txn));
    str_(out, &ddl.database);
    out.extend_from_slice(b",\"ddl\":");
    str_(out, &ddl.statement);
    out.extend_from_slice(b",\"tableChanges\":[]");
    transaction(out, p);
    out.push(b'}');
}

/// The table a `TRUNCATE [TABLE] [db.]name` statement empties (the
/// statement's default database when it names none); `None` for any other
/// statement or one this small reader does not follow (comments, several
/// tables): those get their schema-change message only.
pub fn truncated_table(ddl: &pb::Ddl) -> Option<(String, String)> {
    let s = ddl.statement.trim().trim_end_matches(';').trim_end();
    let (word, rest) = split_word(s)?;
    if !word.eq_ignore_ascii_case("truncate") {
        return None;
    }
    let rest = rest.trim_start();
    let rest = match split_word(rest) {
        Some((w, r)) if w.eq_ignore_ascii_case("table") => r.trim_start(),
        _ => rest,
    };
    let (first, rest) = ident(rest)?;
    let (db, table, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let (t, r) = ident(r)?;
            (first, t, r)
        }
        None => (ddl.database.clone(), first, rest),
    };
    if !rest.trim().is_empty() || db.is_empty() {
        return None;
    }
    Some((db, table))
}

fn split_word(s: &str) -> Option<(&str, &str)> {
    let end = s
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// A bare or backquoted identifier at the start of `s`.
fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(r) = s.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = r.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '`' {
                if r[i + 1..].starts_with('`') {
                    name.push('`');
                    chars.next();
                } else {
                    return Some((name, &r[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_owned(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::value::Kind;

    fn ddl(db: &str, s: &str) -> pb::Ddl {
        pb::Ddl {
            statement: s.into(),
            database: db.into(),
        }
    }

    #[test]
    fn truncate_statements() {
        let t = |db, s| truncated_table(&ddl(db, s));
        assert_eq!(t("d", "TRUNCATE TABLE x"), Some(("d".into(), "x".into())));
        assert_eq!(
            t("", "truncate `a b`.`c``d`;"),
            Some(("a b".into(), "c`d".into()))
        );
        assert_eq!(t("d", "TRUNCATE e.x"), Some(("e".into(), "x".into())));
        assert_eq!(t("", "TRUNCATE x"), None);
        assert_eq!(t("d", "ALTER TABLE x ADD c INT"), None);
        assert_eq!(t("d", "TRUNCATE TABLE x, y"), None);
    }

    #[test]
    fn ids_round_trip() {
        let id = message_id("a.shop", 42, 3);
        assert_eq!(id, "a.shop:42:3");
        assert_eq!(parse_message_id(&id), Some(("a.shop", 42, 3)));
        assert_eq!(parse_message_id("x:1"), None);
    }

    #[test]
    fn envelope_is_valid_json_with_the_documented_fields() {
        let v = |k| pb::Value { kind: Some(k) };
        let col = |n: &str| pb::Column {
            name: n.into(),
            ..Default::default()
        };
        let change = pb::RowChange {
            op: pb::Op::Update as i32,
            schema: "shop".into(),
            table: "orders".into(),
            columns: vec![col("id"), col("price"), col("note"), col("gone")],
            primary_key: vec![0],
            before: Some(pb::Row {
                values: vec![
                    v(Kind::Int(1)),
                    v(Kind::Decimal("9.90".into())),
                    v(Kind::Null(true)),
                    pb::Value { kind: None },
                ],
            }),
            after: Some(pb::Row {
                values: vec![
                    v(Kind::Int(1)),
                    v(Kind::Decimal("10.00".into())),
                    v(Kind::Text("caf\u{e9} \"x\"".into())),
                    pb::Value { kind: None },
                ],
            }),
        };
        let txn = pb::Transaction {
            position: Some(pb::SourcePosition {
                gtid: "0-1-7".into(),
                file: "binlog.000001".into(),
                pos: 1234,
                gtid_set: "0-1-7".into(),
            }),
            commit_ts_us: 1_764_237_600_123_456,
            server_id: 1,
            changes: vec![change.clone()],
            ..Default::default()
        };
        let p = Place {
            stream: "a.shop",
            offset: 7,
            index: 0,
            table_order: 1,
            count: 1,
        };
        let mut out = Vec::new();
        row_change(&mut out, p, &txn, &change, "u");
        let j: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(j["op"], "u");
        assert_eq!(j["ts_ms"], 1_764_237_600_123i64);
        assert_eq!(j["before"]["price"], "9.90");
        assert_eq!(j["before"]["note"], serde_json::Value::Null);
        assert!(j["before"].get("gone").is_none());
        assert_eq!(j["after"]["note"], "caf\u{e9} \"x\"");
        let s = &j["source"];
        assert_eq!(s["connector"], "drc");
        assert_eq!(s["name"], "a.shop");
        assert_eq!(
            (s["db"].as_str(), s["table"].as_str()),
            (Some("shop"), Some("orders"))
        );
        assert_eq!(
            (s["gtid"].as_str(), s["file"].as_str()),
            (Some("0-1-7"), Some("binlog.000001"))
        );
        assert_eq!(
            (s["pos"].as_u64(), s["offset"].as_u64()),
            (Some(1234), Some(7))
        );
        assert_eq!(s["pk"], serde_json::json!(["id"]));
        assert_eq!(s["origin"], serde_json::Value::Null);
        assert_eq!(j["transaction"]["id"], "a.shop:7");

        out.clear();
        let d = ddl("shop", "TRUNCATE orders");
        schema_change(&mut out, p, &txn, &d);
        let j: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(j["ddl"], "TRUNCATE orders");
        assert_eq!(j["databaseName"], "shop");
        out.clear();
        truncate(&mut out, p, &txn, "shop", "orders");
        let j: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(j["op"], "t");
        assert_eq!(j["after"], serde_json::Value::Null);
    }
}
