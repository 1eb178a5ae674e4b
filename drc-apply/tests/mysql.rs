//! The MySQL/MariaDB sink against real MariaDB servers: a captured workload
//! (every column type, tables without a primary key, foreign keys, DDL mid
//! stream) applied in batches gives identical tables; batches delivered again
//! and a new sink resuming from its checkpoint apply nothing twice; conflict
//! policies; DDL replay; and a lost connection or a killed server mid-batch
//! leaves a prefix of whole groups (target transactions) with a matching
//! checkpoint.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_same, batch, batches, capture_all, config, ddl_txn, del, ins, rows_of, start, txn, upd,
};
use drc_apply::sink::mysql::{ConflictPolicy, MySqlSink};
use drc_apply::{ApplyError, Batch, Sink};
use drc_tests::{skip, MariaDb, MariaDbOptions};

fn checkpoint_row(db: &MariaDb, stream: &str) -> String {
    db.sql(&format!(
        "SELECT `offset`, gtid, origin FROM drc.checkpoints WHERE stream = '{stream}'"
    ))
    .expect("checkpoint row")
}

const WORKLOAD: &[&str] = &[
    "CREATE DATABASE w",
    "CREATE TABLE w.types (
      id INT PRIMARY KEY,
      ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
      bi BIGINT, biu BIGINT UNSIGNED, d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
      b BIT(64), b3 BIT(3), dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME, dtm3 DATETIME(3),
      dtm6 DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
      c CHAR(10), vc VARCHAR(300), tx TEXT, cl VARCHAR(20) CHARACTER SET latin1,
      c3 VARCHAR(20) CHARACTER SET utf8mb3, bn BINARY(4), vb VARBINARY(10), bl BLOB,
      e ENUM('a','b','c'), s SET('x','y','z'), j JSON, g GEOMETRY, p POINT, ip INET6, u UUID,
      gen INT AS (i + 1) VIRTUAL, gens INT AS (i * 2) STORED, inv INT INVISIBLE DEFAULT 7
    ) DEFAULT CHARSET=utf8mb4",
    "SET time_zone = '+00:00'; SET sql_mode = '';
     INSERT INTO w.types (id, ti, tiu, si, miu, i, iu, bi, biu, d, d2, f, db, b, b3, dt, tm, tm6, dtm, dtm3,
       dtm6, ts, ts6, y, c, vc, tx, cl, c3, bn, vb, bl, e, s, j, g, p, ip, u) VALUES
     (1, 127, 255, 32767, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
      '99999999999999999999999999999999999.999999999999999999999999999999', 12345678.90, 3.4028235e38,
      1.7976931348623157e308, b'1111111111111111111111111111111111111111111111111111111111111111', b'101',
      '9999-12-31', '838:59:59', '-838:59:59.000000', '9999-12-31 23:59:59', '2026-11-27 12:34:56.789',
      '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999', 2155,
      'héllo', 'emoji 😀 and ñ \\\\ '' \"', 'line\\nbreak\\ttab', 'café €', '日本語', X'0102', X'00FF', X'DEADBEEF',
      'c', 'x,z', '{\"a\": [1, 2.5, \"x\"],\\n \"b\": null}', ST_GeomFromText('LINESTRING(0 0,1 1)'),
      POINT(1, 2), '2001:db8::1', '123e4567-e89b-12d3-a456-426614174000'),
     (2, -128, 0, -32768, 0, -2147483648, 0, -9223372036854775808, 0,
      '-99999999999999999999999999999999999.999999999999999999999999999999', -0.01, 0.1, -2.5e-300,
      b'0', b'000', '0000-00-00', '-00:00:01.5', '00:00:00.000001', '0000-00-00 00:00:00',
      '1000-01-01 00:00:00.001', '1970-01-01 00:00:00.000001', '0000-00-00 00:00:00',
      '1970-01-01 00:00:01.000001', 0, '', '', '', '', '', X'', X'', X'', '', '', '[]',
      ST_GeomFromText('POINT(0 0)'), POINT(-1.5, 0), '::ffff:1.2.3.4', '00000000-0000-0000-0000-000000000000'),
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL)",
    // Rows events whose data is shorter than the table's column count
    // (mostly NULL rows of wide tables) are refused by the capture's rows
    // event parser: it bounds the column count by the bytes left. Keep this
    // row long enough.
    "INSERT INTO w.types (id, i, vc) VALUES (4, 4, REPEAT('four', 20))",
    "CREATE TABLE w.nopk (a INT, b VARCHAR(20), c DOUBLE, f FLOAT, t DATETIME(6), j JSON) DEFAULT CHARSET=utf8mb4",
    "INSERT INTO w.nopk VALUES (1, 'x', 0.5, 0.1, '2020-01-01 00:00:00.5', '{\"k\":  [1,  2]}'),
       (1, 'x', 0.5, 0.1, '2020-01-01 00:00:00.5', '{\"k\":  [1,  2]}'),
       (2, NULL, NULL, NULL, NULL, NULL), (3, 'Abc', 1e-10, 3.3, NULL, '1'), (3, 'abc', 1e-10, 3.3, NULL, '1')",
    "CREATE TABLE w.parent (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB",
    "CREATE TABLE w.child (id INT PRIMARY KEY, parent_id INT NOT NULL, v INT,
       FOREIGN KEY (parent_id) REFERENCES w.parent (id)) ENGINE=InnoDB",
    "BEGIN; INSERT INTO w.parent VALUES (1, 'one'), (2, 'two');
     INSERT INTO w.child VALUES (10, 1, 0), (11, 1, 0), (20, 2, 0); COMMIT",
    "SET sql_mode = ''; BEGIN; UPDATE w.types SET i = i - 1, vc = 'changed', f = 1.5 WHERE id = 1;
     UPDATE w.types SET id = 20 WHERE id = 2; DELETE FROM w.types WHERE id = 4; COMMIT",
    "UPDATE w.nopk SET b = 'y' WHERE a = 1 LIMIT 1",
    "DELETE FROM w.nopk WHERE a = 3 AND b = 'abc' COLLATE utf8mb4_bin",
    "UPDATE w.nopk SET c = NULL WHERE a = 2",
    "BEGIN; DELETE FROM w.child WHERE parent_id = 2; DELETE FROM w.parent WHERE id = 2;
     INSERT INTO w.parent VALUES (3, 'three'); INSERT INTO w.child VALUES (30, 3, 1);
     UPDATE w.child SET v = v + 1 WHERE parent_id = 1; COMMIT",
    "ALTER TABLE w.child ADD COLUMN note VARCHAR(30) NOT NULL DEFAULT 'n/a'",
    "INSERT INTO w.child VALUES (31, 3, 2, 'new column')",
    "UPDATE w.child SET note = 'set later' WHERE id = 10",
    "BEGIN; INSERT INTO w.parent VALUES (4, 'four'); UPDATE w.parent SET name = 'FOUR' WHERE id = 4;
     INSERT INTO w.parent SELECT seq, CONCAT('p', seq) FROM w.seq_100_to_1299; COMMIT",
    "CREATE TABLE w.auto (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    "INSERT INTO w.auto (id, v) VALUES (0, 0)",
    "INSERT INTO w.auto (v) VALUES (1), (2)",
    "ALTER TABLE w.nopk ADD INDEX (a)",
    "DELETE FROM w.parent WHERE id BETWEEN 500 AND 700",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_a_captured_workload_exactly_once() {
    let Some(src) = start() else {
        skip!("mariadbd is not installed");
    };
    let dst = MariaDb::start(MariaDbOptions::default()).expect("start target");
    for stmt in WORKLOAD {
        if let Err(e) = src.exec(stmt).await {
            panic!("{stmt}: {e:#}");
        }
    }
    let txns = capture_all(&src).await;
    assert!(
        txns.iter().filter(|t| t.ddl.is_some()).count() >= 8,
        "DDL captured: {}",
        txns.len()
    );
    let stream = "a.w";
    let all = batches(stream, &txns, 3);
    let half = all.len() / 2;

    // First half with one sink.
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Fail))
        .await
        .expect("connect");
    assert_eq!(sink.name(), "mysql");
    assert!(sink.guarantees().atomic && sink.guarantees().durable);
    assert!(sink.is_mariadb());
    assert_eq!(sink.checkpoint(stream).await.expect("checkpoint").offset, 0);
    for b in &all[..half] {
        sink.apply(b).await.expect("apply first half");
    }
    let at = all[half - 1].last_offset;
    drop(sink);

    // A new sink resumes from its checkpoint.
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Fail))
        .await
        .expect("reconnect");
    let cp = sink.checkpoint(stream).await.expect("checkpoint");
    assert_eq!(cp.offset, at);
    let last_txn = &txns[at as usize - 1];
    let want = last_txn.position.as_ref().expect("captured position");
    let got = cp.position.as_ref().expect("stored position");
    assert_eq!(
        (&got.gtid, &got.file, got.pos, &got.gtid_set),
        (&want.gtid, &want.file, want.pos, &want.gtid_set)
    );
    for b in all.iter().filter(|b| b.last_offset > cp.offset) {
        sink.apply(b).await.expect("apply second half");
    }
    let n = txns.len() as u64;
    assert_eq!(sink.checkpoint(stream).await.expect("checkpoint").offset, n);
    assert_same(&src, &dst);
    let row = checkpoint_row(&dst, stream);
    assert!(
        row.starts_with(&format!("{n}\t")) && row.ends_with("\tregion-a"),
        "{row}"
    );

    // Everything delivered again: nothing applied twice, no error (the DDL
    // is not run again either).
    for b in &all {
        sink.apply(b).await.expect("apply again");
    }
    assert_same(&src, &dst);
    assert_eq!(sink.checkpoint(stream).await.expect("checkpoint").offset, n);

    // One batch spanning everything, to another schema-less target, gives the
    // same result (DDL in the middle of one batch), here with every source
    // transaction a group of its own on 4 connections: the foreign keys
    // between parent and child and the keys of every table order them.
    let dst2 = MariaDb::start(MariaDbOptions::default()).expect("start target 2");
    let mut cfg2 = config(&dst2, ConflictPolicy::Fail);
    cfg2.group_rows = 1;
    let mut sink2 = MySqlSink::connect(cfg2).await.expect("connect 2");
    sink2
        .apply(&batches(stream, &txns, txns.len())[0])
        .await
        .expect("one big batch");
    assert_same(&src, &dst2);
    assert_eq!(sink2.checkpoint(stream).await.expect("cp").offset, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policies() {
    let Some(dst) = start() else {
        skip!("mariadbd is not installed");
    };
    dst.exec(
        "CREATE DATABASE d;
         CREATE TABLE d.f (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE d.i (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE d.o (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO d.f VALUES (1, 'target');
         INSERT INTO d.i VALUES (1, 'target');
         INSERT INTO d.o VALUES (1, 'target');",
    )
    .await
    .expect("tables");
    let conflicting = |t: &str| {
        vec![
            txn(1, vec![ins(t, 5, "five")]),
            // duplicate key in a multi-row run
            txn(
                2,
                vec![ins(t, 6, "six"), ins(t, 1, "source"), ins(t, 7, "seven")],
            ),
            // missing rows
            txn(3, vec![upd(t, 2, "old", "new"), del(t, 3, "gone")]),
            txn(4, vec![upd(t, 5, "five", "FIVE")]),
        ]
    };

    // fail: the error names offset and table; nothing of the batch is
    // visible; the checkpoint did not move.
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Fail))
        .await
        .expect("connect");
    let err = sink
        .apply(&batch("f", 1, conflicting("f")))
        .await
        .expect_err("conflict");
    match &err {
        ApplyError::Conflict { offset, table, .. } => {
            assert_eq!((*offset, table.as_str()), (2, "d.f"), "{err}");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(!err.is_transient());
    assert_eq!(rows_of(&dst, "f"), "1\ttarget");
    assert_eq!(sink.checkpoint("f").await.expect("cp").offset, 0);
    // A missing row under fail, in a later batch after a good one.
    sink.apply(&batch("f", 1, vec![txn(1, vec![ins("f", 5, "five")])]))
        .await
        .expect("good batch");
    let err = sink
        .apply(&batch(
            "f",
            2,
            vec![
                txn(2, vec![ins("f", 8, "eight")]),
                txn(3, vec![del("f", 3, "gone")]),
            ],
        ))
        .await
        .expect_err("missing row");
    assert!(
        matches!(err, ApplyError::Conflict { offset: 3, .. }),
        "{err}"
    );
    assert_eq!(rows_of(&dst, "f"), "1\ttarget | 5\tfive");
    assert_eq!(sink.checkpoint("f").await.expect("cp").offset, 1);
    // The same sink keeps working after a failed batch.
    sink.apply(&batch("f", 2, vec![txn(2, vec![ins("f", 8, "eight")])]))
        .await
        .expect("after a failure");
    assert_eq!(rows_of(&dst, "f"), "1\ttarget | 5\tfive | 8\teight");

    // ignore: target rows stay, conflicts are recorded.
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Ignore))
        .await
        .expect("connect");
    sink.apply(&batch("i", 1, conflicting("i")))
        .await
        .expect("ignore");
    assert_eq!(
        rows_of(&dst, "i"),
        "1\ttarget | 5\tFIVE | 6\tsix | 7\tseven"
    );
    assert_eq!(
        dst.sql("SELECT `offset`, db, tbl, op, kind, policy FROM drc.conflicts WHERE stream = 'i' ORDER BY id")
            .expect("conflicts"),
        "2\td\ti\tinsert\tduplicate\tignore\n3\td\ti\tupdate\tmissing\tignore\n3\td\ti\tdelete\tmissing\tignore"
    );
    let images = dst
        .sql("SELECT after_image, target_image FROM drc.conflicts WHERE stream = 'i' AND kind = 'duplicate'")
        .expect("images");
    assert!(
        images.contains("\"source\"") && images.contains("\"target\""),
        "{images}"
    );
    assert_eq!(sink.checkpoint("i").await.expect("cp").offset, 4);

    // overwrite: the source's image wins, conflicts are recorded.
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Overwrite))
        .await
        .expect("connect");
    sink.apply(&batch("o", 1, conflicting("o")))
        .await
        .expect("overwrite");
    assert_eq!(
        rows_of(&dst, "o"),
        "1\tsource | 2\tnew | 5\tFIVE | 6\tsix | 7\tseven"
    );
    assert_eq!(
        dst.sql("SELECT kind, policy FROM drc.conflicts WHERE stream = 'o' ORDER BY id")
            .expect("conflicts"),
        "duplicate\toverwrite\nmissing\toverwrite\nmissing\toverwrite"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_replay_after_a_stop_between_ddl_and_checkpoint() {
    let Some(dst) = start() else {
        skip!("mariadbd is not installed");
    };
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Fail))
        .await
        .expect("connect");
    let txns = vec![
        ddl_txn(1, "", "CREATE DATABASE d"),
        ddl_txn(2, "d", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"),
        txn(3, vec![ins("t", 1, "a")]),
        ddl_txn(4, "d", "ALTER TABLE t ADD COLUMN w INT"),
        txn(5, vec![ins("t", 2, "b")]),
    ];
    sink.apply(&batch("s", 1, txns.clone()))
        .await
        .expect("apply");
    assert_eq!(rows_of(&dst, "t"), "1\ta | 2\tb");
    // A stop right after the ALTER, before its checkpoint: the checkpoint
    // says 3, the column exists. Replaying from 4 works.
    dst.exec(
        "UPDATE drc.checkpoints SET `offset` = 3 WHERE stream = 's'; DELETE FROM d.t WHERE id = 2",
    )
    .await
    .expect("rewind");
    sink.apply(&batch("s", 4, txns[3..].to_vec()))
        .await
        .expect("replay");
    assert_eq!(rows_of(&dst, "t"), "1\ta | 2\tb");
    assert_eq!(sink.checkpoint("s").await.expect("cp").offset, 5);
    // The same error anywhere else is a definite error at its offset.
    let err = sink
        .apply(&batch(
            "s",
            6,
            vec![
                txn(6, vec![ins("t", 3, "c")]),
                ddl_txn(7, "d", "ALTER TABLE t ADD COLUMN w INT"),
            ],
        ))
        .await
        .expect_err("duplicate column");
    assert!(
        matches!(err, ApplyError::Definite { offset: 7, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("1060"), "{err}");
    // The transactions before the DDL were committed with their checkpoint.
    assert_eq!(sink.checkpoint("s").await.expect("cp").offset, 6);
    assert_eq!(rows_of(&dst, "t"), "1\ta | 2\tb | 3\tc");
}

/// `n` transactions of one INSERT each into `d.t` (ids 1..=n), with an
/// UPDATE of the pre-existing row 0 in the middle: a test that holds a lock
/// on row 0 stops the batch there, half applied in its open transaction.
fn interruptible_batch(stream: &str, n: u64) -> Batch {
    let txns = (1..=n)
        .map(|i| {
            if i == n / 2 {
                txn(i, vec![upd("t", 0, "before", "after")])
            } else {
                txn(i, vec![ins("t", i as i64, "v")])
            }
        })
        .collect();
    batch(stream, 1, txns)
}

/// A connection that holds a lock on row 0 of `d.t` until dropped or
/// rolled back.
async fn lock_row_zero(dst: &MariaDb) -> mysql_async::Conn {
    use mysql_async::prelude::Queryable;
    let mut conn = dst.conn().await.expect("lock connection");
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("SELECT * FROM d.t WHERE id = 0 FOR UPDATE")
        .await
        .expect("lock row 0");
    conn
}

/// Waits until the sink runs the UPDATE of row 0 (where it waits for the
/// lock, after half the batch); returns its connection id.
fn wait_for_blocked_batch(dst: &MariaDb) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = dst
            .sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE `d`.`t` %'")
            .unwrap_or_default();
        if let Some(id) = out.lines().next().and_then(|l| l.trim().parse().ok()) {
            return id;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the batch never reached the locked row: {:?} {:?}",
        dst.sql("SELECT trx_mysql_thread_id, trx_state, trx_rows_modified, trx_query FROM information_schema.INNODB_TRX"),
        dst.sql("SHOW PROCESSLIST")
    );
}

/// The stored checkpoint of the batch, after checking that the target holds
/// exactly the transactions it covers: a prefix of whole groups, never a
/// part of one and never a row past the checkpoint.
fn committed_prefix(dst: &MariaDb, stream: &str, n: u64) -> u64 {
    let cp: u64 = dst
        .sql(&format!(
            "SELECT `offset` FROM drc.checkpoints WHERE stream = '{stream}'"
        ))
        .expect("checkpoint")
        .trim()
        .parse()
        .unwrap_or(0);
    let rows = dst
        .sql("SELECT COUNT(*), IFNULL(MAX(id), 0), (SELECT v FROM d.t WHERE id = 0) FROM d.t WHERE id > 0")
        .expect("count");
    let update_at = n / 2;
    let inserts = if cp >= update_at { cp - 1 } else { cp };
    let v = if cp >= update_at { "after" } else { "before" };
    assert_eq!(
        rows,
        format!(
            "{inserts}\t{}\t{v}",
            if cp == update_at { cp - 1 } else { cp }
        ),
        "the target holds exactly the transactions up to its checkpoint {cp}"
    );
    cp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_or_a_killed_server_leaves_whole_groups_and_their_checkpoint() {
    let Some(mut dst) = start() else {
        skip!("mariadbd is not installed");
    };
    let reset =
        "DELETE FROM d.t; INSERT INTO d.t VALUES (0, 'before'); DELETE FROM drc.checkpoints";
    dst.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .expect("table");
    let n = 2_000;
    let b = interruptible_batch("k", n);
    let mut sink = MySqlSink::connect(config(&dst, ConflictPolicy::Fail))
        .await
        .expect("connect");
    dst.exec(reset).await.expect("reset");

    // The sink's connection is killed mid-batch.
    let lock = lock_row_zero(&dst).await;
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = sink.apply(&b).await;
            (sink, r)
        })
    };
    let thread = tokio::task::block_in_place(|| wait_for_blocked_batch(&dst));
    dst.exec(&format!("KILL CONNECTION {thread}"))
        .await
        .expect("kill");
    let (mut sink, r) = task.await.expect("join apply");
    drop(lock);
    let err = r.expect_err("the batch failed");
    assert!(err.is_transient(), "a lost connection is transient: {err}");
    let cp = committed_prefix(&dst, "k", n);
    assert!(cp < n / 2, "nothing from the blocked transaction on: {cp}");
    // The applier retries from the checkpoint; the sink reconnects.
    assert_eq!(sink.checkpoint("k").await.expect("cp").offset, cp);
    sink.apply(&b).await.expect("retry");
    assert_eq!(committed_prefix(&dst, "k", n), n);

    // The server is killed (kill -9) mid-batch and restarted.
    dst.exec(reset).await.expect("reset");
    let lock = lock_row_zero(&dst).await;
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = sink.apply(&b).await;
            (sink, r)
        })
    };
    tokio::task::block_in_place(|| wait_for_blocked_batch(&dst));
    dst.kill9().expect("kill -9");
    let (mut sink, r) = task.await.expect("join apply");
    drop(lock);
    let err = r.expect_err("the batch failed");
    assert!(err.is_transient(), "a lost server is transient: {err}");
    dst.restart().expect("restart");
    let cp = committed_prefix(&dst, "k", n);
    assert!(
        cp < n / 2,
        "nothing from the blocked transaction on after recovery: {cp}"
    );
    assert_eq!(
        sink.checkpoint("k").await.expect("cp after restart").offset,
        cp
    );
    sink.apply(&b).await.expect("retry after restart");
    assert_eq!(committed_prefix(&dst, "k", n), n);
    // A committed batch survives a crash.
    dst.kill9().expect("kill -9 again");
    dst.restart().expect("restart again");
    assert_eq!(committed_prefix(&dst, "k", n), n);
}
