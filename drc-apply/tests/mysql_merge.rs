//! Merged statements of the MySQL/MariaDB sink against real MariaDB
//! servers: with large groups, row changes of many source transactions
//! become a few statements per table (multi-row INSERTs, UPDATEs with a
//! `CASE` per column, DELETEs with one match per row). The tests apply
//! workloads whose rows meet again and again within a group and check the
//! target row by row, that no merged statement missed a row (no group fell
//! back to the slow path) and that statements were in fact merged.

mod common;

use common::shared_keys::write_workload;
use common::{assert_same, batches, capture_all, config, start};
use drc_apply::sink::mysql::{ConflictPolicy, MySqlSink};
use drc_apply::Sink;
use drc_proto::v1 as pb;
use drc_tests::{skip, MariaDb, MariaDbOptions};

fn row_changes(txns: &[pb::Transaction]) -> u64 {
    txns.iter().map(|t| t.changes.len() as u64).sum()
}

/// Applies `txns` into a fresh target in groups of up to `group_rows` rows on
/// `parallel` connections; checks it equals `src` and returns the sink's
/// fast-path statement count.
async fn apply_merged(src: &MariaDb, txns: &[pb::Transaction], parallel: usize) -> u64 {
    let dst = MariaDb::start(MariaDbOptions::default()).expect("start target");
    let mut cfg = config(&dst, ConflictPolicy::Fail);
    cfg.parallel = parallel;
    cfg.group_rows = 400;
    let mut sink = MySqlSink::connect(cfg).await.expect("connect");
    for b in batches("a.m", txns, 250) {
        sink.apply(&b).await.expect("apply");
    }
    assert_same(src, &dst);
    let stats = sink.stats();
    eprintln!(
        "parallel {parallel}: {} row changes, {stats:?}",
        row_changes(txns)
    );
    assert_eq!(
        stats.slow_groups, 0,
        "every merged statement found the rows it expected: {stats:?}"
    );
    assert_eq!(stats.redone_groups, 0, "{stats:?}");
    assert_eq!(
        sink.checkpoint("a.m").await.expect("checkpoint").offset,
        txns.len() as u64
    );
    stats.fast_statements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_statements_keep_row_order_unique_keys_and_foreign_keys() {
    let Some(src) = start() else {
        skip!("mariadbd is not installed");
    };
    write_workload(&src, 720_261_201, 600).await;
    let txns = capture_all(&src).await;
    let changes = row_changes(&txns);
    for parallel in [1, 4] {
        let statements = apply_merged(&src, &txns, parallel).await;
        assert!(
            statements * 3 < changes,
            "{statements} statements for {changes} row changes: merged across transactions"
        );
    }
}

/// Every column of the type-torture table but the generated and invisible
/// ones.
const TORTURE_COLUMNS: &str = "ti, tiu, si, siu, mi, miu, i, iu, bi, biu, d, d2, f, db, b, b3, \
     dt, tm, tm6, dtm, dtm3, dtm6, ts, ts6, y, c, vc, tx, cl, c3, bn, vb, bl, e, s, j, g, p, ip, u";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_updates_and_deletes_carry_every_type_exactly() {
    let Some(src) = start() else {
        skip!("mariadbd is not installed");
    };
    src.exec(drc_tests::torture::DDL)
        .await
        .expect("torture table");
    src.exec(drc_tests::torture::ROWS)
        .await
        .expect("torture rows");
    // More rows with the same values, so that updates of many rows of each
    // shape meet in one group.
    let mut setup = String::from("SET time_zone = '+00:00'; SET sql_mode = '';");
    for copy in 1..=5 {
        setup.push_str(&format!(
            "INSERT INTO tt.torture (id, {TORTURE_COLUMNS}) SELECT id + {}, {TORTURE_COLUMNS} FROM tt.torture WHERE id <= 3;",
            copy * 10
        ));
    }
    src.exec(&setup).await.expect("copies");
    let ids: Vec<u32> = (0..=5)
        .flat_map(|c| (1..=3).map(move |i| c * 10 + i))
        .collect();
    let mut work = String::from("SET time_zone = '+00:00'; SET sql_mode = '';");
    for round in 0..6u32 {
        for &id in &ids {
            // Each a transaction of its own; one set of columns a round, a
            // few sets in all (each its own merged statement).
            let set = match round % 4 {
                0 => format!(
                    "ti = -{round}, biu = 18446744073709551615 - {round}, d = d - 1.5, d2 = {round}.25, \
                     dt = '2026-12-0{}', tm6 = '-12:00:0{round}.5', dtm3 = '2026-12-01 10:00:0{round}.125', \
                     ts6 = '2030-01-01 00:00:0{round}.000001', y = {}",
                    round + 1,
                    1990 + round
                ),
                1 => format!(
                    "c = 'r{round}', vc = CONCAT(IFNULL(vc, ''), '✓{round}'), cl = 'é{round}', \
                     c3 = '日{round}', tx = NULL, bn = X'0A0B0C0{round}', vb = X'', bl = REPEAT(X'00FF', {}), \
                     e = 'b', s = 'y,z', ip = '::ffff:10.0.0.{round}', u = '123e4567-e89b-12d3-a456-42661417400{round}'",
                    round + 1
                ),
                // Floating point, BIT, JSON and geometry: one row at a time.
                2 => format!(
                    "f = {round}.5, db = -{round}.125e10, b = b'{:b}', j = '{{\"r\": {round}}}', \
                     p = POINT({round}, 1)",
                    round + 1
                ),
                _ => format!("i = IFNULL(i, 0) + {round}, tm = '01:0{round}:00'"),
            };
            work.push_str(&format!(
                "START TRANSACTION; UPDATE tt.torture SET {set} WHERE id = {id}; COMMIT;"
            ));
        }
    }
    // Deletes of rows of every kind, a key moved, a row inserted again
    // under a key a delete freed in the same group.
    work.push_str(
        "START TRANSACTION; DELETE FROM tt.torture WHERE id IN (11, 22, 33); COMMIT;
         START TRANSACTION; UPDATE tt.torture SET id = 100 WHERE id = 41; COMMIT;
         START TRANSACTION; DELETE FROM tt.torture WHERE id = 51; COMMIT;",
    );
    work.push_str(&format!(
        "START TRANSACTION; INSERT INTO tt.torture (id, {TORTURE_COLUMNS}) SELECT 51, {TORTURE_COLUMNS} FROM tt.torture WHERE id = 1; COMMIT;
         START TRANSACTION; UPDATE tt.torture SET c = 'again' WHERE id = 51; COMMIT;"
    ));
    src.exec(&work).await.expect("workload");
    let txns = capture_all(&src).await;
    let changes = row_changes(&txns);
    let statements = apply_merged(&src, &txns, 1).await;
    assert!(
        statements * 2 < changes,
        "{statements} statements for {changes} row changes"
    );
}
