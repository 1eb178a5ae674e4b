//! Parallel apply of the MySQL/MariaDB sink against real MariaDB servers:
//! a random workload full of shared keys (hot rows, unique names reused
//! after a delete or a rename, children and their parents with a cascading
//! foreign key, a trigger) applied on 4 connections in tiny groups ends
//! identical to the source, with the target's trigger guarded (it fires for
//! local writes, not for replicated rows); an order the dependency keys
//! cannot see (an accent-insensitive unique key) is caught and the group
//! runs again at its turn; and `triggers = "fail"` stops with the trigger's name.

mod common;

use std::time::Duration;

use common::shared_keys::{write_workload, SCHEMA};
use common::{
    assert_same, batch, batches, capture_all, config, del, ins, rows_of, start, txn, upd,
};
use drc_apply::sink::mysql::meta::TriggerPolicy;
use drc_apply::sink::mysql::{ConflictPolicy, MySqlSink};
use drc_apply::{ApplyError, Sink};
use drc_tests::{skip, MariaDb, MariaDbOptions};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_groups_keep_row_order_foreign_keys_and_triggers() {
    let Some(src) = start() else {
        skip!("mariadbd is not installed");
    };
    let dst = MariaDb::start(MariaDbOptions::default()).expect("start target");
    write_workload(&src, 20261201, 400).await;
    let txns = capture_all(&src).await;
    assert!(txns.len() > 400, "captured {}", txns.len());

    let mut cfg = config(&dst, ConflictPolicy::Fail);
    cfg.parallel = 4;
    cfg.group_rows = 3;
    let mut sink = MySqlSink::connect(cfg).await.expect("connect");
    for b in batches("a.pw", &txns, 60) {
        sink.apply(&b).await.expect("apply");
    }
    assert_same(&src, &dst);
    let stats = sink.stats();
    eprintln!("{} transactions: {stats:?}", txns.len());
    assert!(stats.parallel_groups > 200, "{stats:?}");
    assert_eq!(
        stats.redone_groups, 0,
        "the dependency keys ordered every group: {stats:?}"
    );
    assert_eq!(
        sink.checkpoint("a.pw").await.expect("cp").offset,
        txns.len() as u64
    );

    // The target's trigger is guarded: it did not fire for replicated rows
    // (the audit tables are equal above), and it fires for local writes.
    let action = dst
        .sql("SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_NAME = 'c_ai'")
        .expect("trigger");
    assert!(action.starts_with("IF @drc_apply IS NULL THEN"), "{action}");
    let before: u64 = dst
        .sql("SELECT COUNT(*) FROM pw.audit")
        .expect("count")
        .trim()
        .parse()
        .expect("number");
    dst.exec(
        "INSERT INTO pw.p VALUES (100000, 'local'); INSERT INTO pw.c VALUES (100000, 100000, 0)",
    )
    .await
    .expect("local write");
    assert_eq!(
        dst.sql("SELECT COUNT(*), MAX(c_id) FROM pw.audit")
            .expect("count"),
        format!("{}\t100000", before + 1),
        "a local write fires the guarded trigger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_keys_miss_runs_again_at_its_turn() {
    let Some(dst) = start() else {
        skip!("mariadbd is not installed");
    };
    // 'e' and 'é' are the same key under utf8mb4_general_ci; the dependency
    // keys only fold case, so the two transactions look independent.
    dst.exec(
        "CREATE DATABASE d;
         CREATE TABLE d.u (id INT PRIMARY KEY, v VARCHAR(10) COLLATE utf8mb4_general_ci, UNIQUE KEY (v));
         INSERT INTO d.u VALUES (0, 'z'), (1, 'e');",
    )
    .await
    .expect("target");
    // The first group waits for a lock this test holds on row 0 before it
    // deletes 'e', so the second group's insert of 'é' surely runs first.
    let mut lock = dst.conn().await.expect("lock connection");
    lock.query_drop("BEGIN").await.expect("begin");
    lock.query_drop("SELECT * FROM d.u WHERE id = 0 FOR UPDATE")
        .await
        .expect("lock row 0");
    let mut cfg = config(&dst, ConflictPolicy::Fail);
    cfg.parallel = 4;
    cfg.group_rows = 1;
    let mut sink = MySqlSink::connect(cfg).await.expect("connect");
    let b = batch(
        "a.ai",
        1,
        vec![
            txn(1, vec![upd("u", 0, "z", "zz"), del("u", 1, "e")]),
            txn(2, vec![ins("u", 2, "é")]),
        ],
    );
    let task = tokio::spawn(async move {
        let r = sink.apply(&b).await;
        (sink, r)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    lock.query_drop("ROLLBACK").await.expect("release");
    let (mut sink, r) = task.await.expect("join");
    r.expect("apply");
    assert_eq!(rows_of(&dst, "u"), "0\tzz | 2\té");
    let stats = sink.stats();
    assert!(
        stats.redone_groups >= 1,
        "the insert of 'é' ran before the delete of 'e', hit the unique key and ran \
         again once the delete had committed: {stats:?}"
    );
    assert_eq!(sink.checkpoint("a.ai").await.expect("cp").offset, 2);
    let conflicts = dst
        .sql("SELECT COUNT(*) FROM drc.conflicts")
        .expect("conflicts");
    assert_eq!(
        conflicts, "0",
        "no conflict is recorded for a surprise of parallel apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_fail_policy_names_the_trigger() {
    let Some(src) = start() else {
        skip!("mariadbd is not installed");
    };
    let dst = MariaDb::start(MariaDbOptions::default()).expect("start target");
    src.exec(SCHEMA).await.expect("schema");
    src.exec("INSERT INTO pw.p VALUES (1, 'one'); INSERT INTO pw.c VALUES (1, 1, 0)")
        .await
        .expect("rows");
    let txns = capture_all(&src).await;
    let mut cfg = config(&dst, ConflictPolicy::Fail);
    cfg.triggers = TriggerPolicy::Fail;
    let mut sink = MySqlSink::connect(cfg).await.expect("connect");
    let err = sink
        .apply(&batches("a.pw", &txns, txns.len())[0])
        .await
        .expect_err("a trigger on pw.c");
    match &err {
        ApplyError::Definite {
            message, offset, ..
        } => {
            assert!(message.contains("pw.c has triggers (c_ai)"), "{message}");
            assert!(message.contains("triggers = \"guard\""), "{message}");
            assert!(*offset > 0);
        }
        other => panic!("expected a definite error, got {other}"),
    }
    // Nothing of the row transactions was applied; the DDL before them was.
    assert_eq!(dst.sql("SELECT COUNT(*) FROM pw.c").expect("count"), "0");
    let cp = sink.checkpoint("a.pw").await.expect("cp").offset;
    assert!(cp < txns.len() as u64);
}
