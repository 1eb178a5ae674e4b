//! Helpers of the MySQL/MariaDB sink tests: throwaway servers, captured
//! workloads cut into batches, and row-by-row comparison of two servers.

#![allow(dead_code)]

use std::collections::BTreeMap;

use drc_apply::sink::mysql::{ConflictPolicy, MySqlSinkConfig};
use drc_apply::Batch;
use drc_capture::capture::{self, CaptureOptions, StartAt};
use drc_proto::v1 as pb;
use drc_tests::{MariaDb, MariaDbOptions};

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
