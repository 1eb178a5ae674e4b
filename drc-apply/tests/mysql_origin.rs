//! Loop prevention: what the MySQL/MariaDB sink applies, a capture of the
//! same server recognizes. Applied row transactions carry their group's
//! `drc.applied` row and applied DDL a leading origin comment; the capture
//! marks those transactions with the origin, local writes stay unmarked, and
//! a transaction that came from a third region keeps that region's origin.

mod common;

use common::{batch, capture_all, config, ddl_txn, ins, start, txn, upd};
use drc_apply::sink::mysql::{ConflictPolicy, MySqlSink};
use drc_apply::Sink;
use drc_tests::skip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_the_target_tells_applied_transactions_from_local_ones() {
    let Some(dst) = start() else {
        skip!("mariadbd is not installed");
    };
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Fail))
        .await
        .expect("connect");
    let mut from_c = txn(4, vec![ins("t", 3, "via b")]);
    from_c.origin = "c.shop".into();
    sink.apply(&batch(
        "a.shop",
        1,
        vec![
            ddl_txn(1, "", "CREATE DATABASE d"),
            ddl_txn(2, "d", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"),
            txn(3, vec![ins("t", 1, "one"), ins("t", 2, "two")]),
            from_c,
            txn(5, vec![upd("t", 1, "one", "uno")]),
        ],
    ))
    .await
    .expect("apply");
    dst.exec("INSERT INTO d.t VALUES (10, 'local')")
        .await
        .expect("local write");

    let captured = capture_all(&dst).await;
    // (origin, user tables changed or DDL) of every captured transaction
    // that is not the sink's own bookkeeping alone.
    let seen: Vec<(String, String)> = captured
        .iter()
        .filter_map(|t| {
            if let Some(ddl) = &t.ddl {
                return Some((t.origin.clone(), ddl.statement.clone()));
            }
            let user: Vec<String> = t
                .changes
                .iter()
                .filter(|c| c.schema != "drc")
                .map(|c| format!("{}.{}", c.schema, c.table))
                .collect();
            (!user.is_empty()).then(|| (t.origin.clone(), user.join(",")))
        })
        .filter(|(_, what)| {
            !what.starts_with("CREATE DATABASE IF NOT EXISTS drc") && !what.contains("drc.")
        })
        .collect();
    let want: Vec<(String, String)> = vec![
        ("region-a".into(), "CREATE DATABASE d".into()),
        (
            "region-a".into(),
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))".into(),
        ),
        ("region-a".into(), "d.t,d.t".into()),
        ("c.shop".into(), "d.t".into()),
        ("region-a".into(), "d.t".into()),
        (String::new(), "d.t".into()),
    ];
    // The DDL comes first and in order. Independent groups commit in
    // parallel, so the row transactions may reach the binlog in either
    // order, except that the update of id 1 follows its insert (they share
    // a key) and the local write follows the whole batch.
    assert_eq!(seen.len(), want.len(), "{seen:#?}");
    assert_eq!(seen[..2], want[..2], "{seen:#?}");
    let sorted = |v: &[(String, String)]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(&seen[2..]), sorted(&want[2..]), "{seen:#?}");
    let at = |what: (&str, &str)| {
        seen.iter()
            .position(|(o, w)| o == what.0 && w == what.1)
            .unwrap_or_else(|| panic!("{what:?} captured: {seen:#?}"))
    };
    assert!(
        at(("region-a", "d.t,d.t")) < at(("region-a", "d.t")),
        "{seen:#?}"
    );
    assert_eq!(seen.last(), want.last(), "the local write is last");
}
