//! The MySQL/MariaDB sink on a target that does not match its stream: a
//! missing table, a table with other columns, a user without the privilege
//! to write, a value the target column cannot hold. Each stops the stream
//! with a definite error that names the offset, the table and the fix, and
//! nothing from that transaction on is committed (the checkpoint stays
//! before it), on one connection and on several.

mod common;

use common::{batch, ins, rows_of, start, txn};
use drc_apply::sink::mysql::{MySqlSink, MySqlSinkConfig};
use drc_apply::{ApplyError, Sink};
use drc_tests::skip;

/// Applies offsets 1..=4 (row ids 1..=4 into `d.<table>`) and returns the
/// error and the stored checkpoint.
async fn apply_expecting_error(cfg: MySqlSinkConfig, table: &str) -> (ApplyError, u64) {
    let mut sink = MySqlSink::connect(cfg).await.expect("connect");
    let txns = (1..=4)
        .map(|i| txn(i, vec![ins(table, i as i64, "v")]))
        .collect();
    let err = sink
        .apply(&batch("s", 1, txns))
        .await
        .expect_err("the target cannot take it");
    let cp = sink.checkpoint("s").await.expect("checkpoint").offset;
    (err, cp)
}

fn definite(err: &ApplyError) -> (u64, String) {
    match err {
        ApplyError::Definite {
            offset, message, ..
        } => (*offset, message.clone()),
        other => panic!("expected a definite error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_match_stops_with_the_offset_and_the_fix() {
    let Some(dst) = start() else {
        skip!("mariadbd is not installed");
    };
    dst.exec(
        "CREATE DATABASE d;
         CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE d.cols (id INT PRIMARY KEY, other VARCHAR(20));
         CREATE TABLE d.short (id INT PRIMARY KEY, v VARCHAR(20), CHECK (id <> 3));
         CREATE USER reader@'%';
         GRANT SELECT ON d.* TO reader@'%';
         GRANT ALL ON drc.* TO reader@'%';",
    )
    .await
    .expect("schema");
    for parallel in [1, 4] {
        let cfg = |url: String| MySqlSinkConfig {
            parallel,
            group_rows: 1,
            ..MySqlSinkConfig::new(url)
        };
        // A table the target lacks.
        let (err, cp) = apply_expecting_error(cfg(dst.url()), "missing").await;
        let (offset, message) = definite(&err);
        assert_eq!((offset, cp), (1, 0), "parallel {parallel}: {message}");
        assert!(message.contains("`d`.`missing`"), "{message}");
        assert!(
            message.contains("does not exist on the target"),
            "{message}"
        );

        // A table with other columns.
        let (err, cp) = apply_expecting_error(cfg(dst.url()), "cols").await;
        let (offset, message) = definite(&err);
        assert_eq!((offset, cp), (1, 0), "parallel {parallel}: {message}");
        assert!(message.contains("no column of this name"), "{message}");
        assert_eq!(dst.sql("SELECT COUNT(*) FROM d.cols").expect("count"), "0");

        // A user that may read but not write.
        let url = dst.url_for("reader", "");
        let (err, cp) = apply_expecting_error(cfg(url), "t").await;
        let (offset, message) = definite(&err);
        assert_eq!((offset, cp), (1, 0), "parallel {parallel}: {message}");
        assert!(message.contains("lacks a privilege"), "{message}");
        assert_eq!(rows_of(&dst, "t"), "");

        // A value the target refuses (a CHECK the source does not have), at
        // offset 3: offsets 1 and 2 are applied, nothing from 3 on.
        dst.exec("DELETE FROM d.short; DELETE FROM drc.checkpoints")
            .await
            .expect("reset");
        let (err, cp) = apply_expecting_error(cfg(dst.url()), "short").await;
        let (offset, message) = definite(&err);
        assert_eq!(offset, 3, "parallel {parallel}: {message}");
        assert!(
            cp < 3,
            "checkpoint {cp} stays before the refused transaction"
        );
        let rows = rows_of(&dst, "short");
        let want = (1..=cp)
            .map(|i| format!("{i}\tv"))
            .collect::<Vec<_>>()
            .join(" | ");
        assert_eq!(
            rows, want,
            "the target holds exactly what the checkpoint covers"
        );
        dst.exec("DELETE FROM d.short; DELETE FROM drc.checkpoints")
            .await
            .expect("reset");
    }
}
