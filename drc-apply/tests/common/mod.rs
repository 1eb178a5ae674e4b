//! Helpers of the MySQL/MariaDB sink tests: throwaway servers, captured
//! workloads cut into batches, and row-by-row comparison of two servers.

#![allow(dead_code)]

pub mod shared_keys;

use std::collections::BTreeMap;

use drc_apply::sink::mysql::{ConflictPolicy, MySqlSinkConfig};
use drc_apply::Batch;
use drc_capture::capture::{self, CaptureOptions, StartAt};
use drc_proto::v1 as pb;
use drc_tests::{MariaDb, MariaDbOptions};
use pb::value::Kind;

pub fn start() -> Option<MariaDb> {
    if !MariaDb::available() {
        return None;
    }
    Some(MariaDb::start(MariaDbOptions::default()).expect("start mariadb"))
}

pub fn config(db: &MariaDb, policy: ConflictPolicy) -> MySqlSinkConfig {
    MySqlSinkConfig {
        conflict_policy: policy,
        origin: Some("region-a".into()),
        ..MySqlSinkConfig::new(db.url())
    }
}

/// Every transaction of the source's binlog, spilled changes included.
pub async fn capture_all(src: &MariaDb) -> Vec<pb::Transaction> {
    let mut opts = CaptureOptions::new(src.url(), StartAt::FromStart);
    opts.stop_at_end = true;
    let mut out = Vec::new();
    capture::run(opts, |mut t| {
        let mut changes = Vec::new();
        t.for_each_change(|c| {
            changes.push(c.clone());
            Ok(())
        })?;
        let mut txn = t.txn;
        txn.changes = changes;
        out.push(txn);
        Ok(())
    })
    .await
    .expect("capture");
    out
}

/// Batches of `size` transactions at offsets 1, 2, ...
pub fn batches(stream: &str, txns: &[pb::Transaction], size: usize) -> Vec<Batch> {
    txns.chunks(size)
        .enumerate()
        .map(|(n, chunk)| {
            let first = (n * size) as u64 + 1;
            let offsets: Vec<u64> = (first..first + chunk.len() as u64).collect();
            Batch {
                stream: stream.into(),
                last_offset: *offsets.last().expect("non-empty chunk"),
                offsets,
                transactions: chunk.to_vec(),
            }
        })
        .collect()
}

/// Every user table of `db` as text: its definition and its rows in a fixed
/// order, binary columns in hex.
pub fn dump(db: &MariaDb) -> BTreeMap<String, String> {
    let tables = db
        .sql(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
             WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'drc')
             ORDER BY 1, 2",
        )
        .expect("list tables");
    let mut out = BTreeMap::new();
    for line in tables.lines().filter(|l| !l.is_empty()) {
        let (schema, table) = line.split_once('\t').expect("schema\ttable");
        let cols = db
            .sql(&format!(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = '{schema}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
            ))
            .expect("columns");
        let exprs: Vec<String> = cols
            .lines()
            .map(|l| {
                let (name, ty) = l.split_once('\t').expect("name\ttype");
                let binary = [
                    "binary",
                    "varbinary",
                    "tinyblob",
                    "blob",
                    "mediumblob",
                    "longblob",
                    "bit",
                ]
                .contains(&ty)
                    || ["geometry", "point", "linestring", "polygon"].contains(&ty);
                if binary {
                    format!("HEX(`{name}`)")
                } else if name == "j" {
                    // The capture carries JSON documents in compact form, not
                    // MariaDB's stored text.
                    format!("JSON_COMPACT(`{name}`)")
                } else {
                    format!("`{name}`")
                }
            })
            .collect();
        let order: Vec<String> = (1..=exprs.len()).map(|i| i.to_string()).collect();
        let rows = db
            .sql(&format!(
                "SELECT {} FROM `{schema}`.`{table}` ORDER BY {}",
                exprs.join(", "),
                order.join(", ")
            ))
            .expect("rows");
        let create = db
            .sql(&format!("SHOW CREATE TABLE `{schema}`.`{table}`"))
            .expect("show create");
        let create: String = create
            .split(' ')
            .filter(|w| !w.starts_with("AUTO_INCREMENT="))
            .collect::<Vec<_>>()
            .join(" ");
        out.insert(format!("{schema}.{table}"), format!("{create}\n{rows}"));
    }
    out
}

pub fn assert_same(src: &MariaDb, dst: &MariaDb) {
    let (a, b) = (dump(src), dump(dst));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same tables"
    );
    for (table, want) in &a {
        assert_eq!(Some(want), b.get(table), "table {table} differs");
    }
}

// ---- hand-built transactions ----

pub fn col(name: &str) -> pb::Column {
    pb::Column {
        name: name.into(),
        sql_type: "int(11)".into(),
        nullable: true,
        charset: String::new(),
    }
}

pub fn int(i: i64) -> pb::Value {
    pb::Value {
        kind: Some(Kind::Int(i)),
    }
}

pub fn text(s: &str) -> pb::Value {
    pb::Value {
        kind: Some(Kind::Text(s.into())),
    }
}

pub fn row(values: Vec<pb::Value>) -> Option<pb::Row> {
    Some(pb::Row { values })
}

/// A change of table `d.t (id INT PRIMARY KEY, v VARCHAR)`.
pub fn change(
    op: pb::Op,
    table: &str,
    before: Option<(i64, &str)>,
    after: Option<(i64, &str)>,
) -> pb::RowChange {
    pb::RowChange {
        op: op as i32,
        schema: "d".into(),
        table: table.into(),
        columns: vec![col("id"), col("v")],
        primary_key: vec![0],
        before: before.and_then(|(i, v)| row(vec![int(i), text(v)])),
        after: after.and_then(|(i, v)| row(vec![int(i), text(v)])),
    }
}

pub fn ins(table: &str, id: i64, v: &str) -> pb::RowChange {
    change(pb::Op::Insert, table, None, Some((id, v)))
}

pub fn upd(table: &str, id: i64, old: &str, new: &str) -> pb::RowChange {
    change(pb::Op::Update, table, Some((id, old)), Some((id, new)))
}

pub fn del(table: &str, id: i64, old: &str) -> pb::RowChange {
    change(pb::Op::Delete, table, Some((id, old)), None)
}

pub fn txn(seq: u64, changes: Vec<pb::RowChange>) -> pb::Transaction {
    pb::Transaction {
        position: Some(pb::SourcePosition {
            gtid: format!("0-1-{seq}"),
            file: "binlog.000001".into(),
            pos: 100 + seq,
            gtid_set: format!("0-1-{seq}"),
        }),
        changes,
        ..Default::default()
    }
}

pub fn ddl_txn(seq: u64, db: &str, statement: &str) -> pb::Transaction {
    pb::Transaction {
        ddl: Some(pb::Ddl {
            statement: statement.into(),
            database: db.into(),
        }),
        ..txn(seq, Vec::new())
    }
}

pub fn batch(stream: &str, first: u64, txns: Vec<pb::Transaction>) -> Batch {
    let offsets: Vec<u64> = (first..first + txns.len() as u64).collect();
    Batch {
        stream: stream.into(),
        last_offset: first + txns.len() as u64 - 1,
        offsets,
        transactions: txns,
    }
}

pub fn rows_of(db: &MariaDb, table: &str) -> String {
    db.sql(&format!("SELECT id, v FROM d.{table} ORDER BY id"))
        .expect("rows")
        .replace('\n', " | ")
}
