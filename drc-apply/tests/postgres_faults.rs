//! The PostgreSQL sink against a real server, with hand-built
//! transactions: conflict policies and their records in `drc.conflicts`;
//! bad input (missing privileges, missing or different tables, values
//! PostgreSQL refuses, untranslatable or failing DDL) stops at its offset
//! with nothing committed; a lost connection or a killed server mid-batch
//! leaves all or nothing; COPY and multi-row INSERT write the same rows.

use std::time::{Duration, Instant};

use drc_apply::sink::postgres::{ConflictPolicy, PostgresSink, PostgresSinkConfig, UnsupportedDdl};
use drc_apply::{ApplyError, Batch, Sink};
use drc_proto::v1 as pb;
use drc_tests::{skip, Postgres};
use pb::value::Kind;

mod pg_common;
use pg_common::{config, pg_client, start_pg};

// ---- hand-built transactions ----

fn col(name: &str, sql_type: &str) -> pb::Column {
    pb::Column {
        name: name.into(),
        sql_type: sql_type.into(),
        nullable: true,
        charset: String::new(),
    }
}

fn val(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

fn row(id: i64, v: &str) -> Option<pb::Row> {
    Some(pb::Row {
        values: vec![val(Kind::Int(id)), val(Kind::Text(v.into()))],
    })
}

/// A change of table `d.<table> (id INT PRIMARY KEY, v VARCHAR(20))`.
fn change(
    op: pb::Op,
    table: &str,
    before: Option<(i64, &str)>,
    after: Option<(i64, &str)>,
) -> pb::RowChange {
    pb::RowChange {
        op: op as i32,
        schema: "d".into(),
        table: table.into(),
        columns: vec![col("id", "int(11)"), col("v", "varchar(20)")],
        primary_key: vec![0],
        before: before.and_then(|(i, v)| row(i, v)),
        after: after.and_then(|(i, v)| row(i, v)),
    }
}

fn ins(table: &str, id: i64, v: &str) -> pb::RowChange {
    change(pb::Op::Insert, table, None, Some((id, v)))
}

fn upd(table: &str, id: i64, old: &str, new: &str) -> pb::RowChange {
    change(pb::Op::Update, table, Some((id, old)), Some((id, new)))
}

fn del(table: &str, id: i64, old: &str) -> pb::RowChange {
    change(pb::Op::Delete, table, Some((id, old)), None)
}

fn txn(seq: u64, changes: Vec<pb::RowChange>) -> pb::Transaction {
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

fn ddl_txn(seq: u64, db: &str, statement: &str) -> pb::Transaction {
    pb::Transaction {
        ddl: Some(pb::Ddl {
            statement: statement.into(),
            database: db.into(),
        }),
        ..txn(seq, Vec::new())
    }
}

fn batch(stream: &str, first: u64, txns: Vec<pb::Transaction>) -> Batch {
    let offsets: Vec<u64> = (first..first + txns.len() as u64).collect();
    Batch {
        stream: stream.into(),
        last_offset: first + txns.len() as u64 - 1,
        offsets,
        transactions: txns,
    }
}

fn rows_of(pg: &Postgres, table: &str) -> String {
    pg.sql(&format!("SELECT id, v FROM d.{table} ORDER BY id"))
        .expect("rows")
        .replace('\n', " ; ")
}

fn offset_of(pg: &Postgres, stream: &str) -> String {
    pg.sql(&format!(
        "SELECT \"offset\" FROM drc.checkpoints WHERE stream = '{stream}'"
    ))
    .expect("checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policies() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    pg.sql(
        "CREATE SCHEMA d;
         CREATE TABLE d.f (id int PRIMARY KEY, v varchar(20));
         CREATE TABLE d.i (id int PRIMARY KEY, v varchar(20));
         CREATE TABLE d.o (id int PRIMARY KEY, v varchar(20));
         INSERT INTO d.f VALUES (1, 'target'); INSERT INTO d.i VALUES (1, 'target');
         INSERT INTO d.o VALUES (1, 'target');",
    )
    .expect("tables");
    let conflicting = |t: &str| {
        vec![
            txn(1, vec![ins(t, 5, "five")]),
            // a taken key inside a run of inserts
            txn(
                2,
                vec![ins(t, 6, "six"), ins(t, 1, "source"), ins(t, 7, "seven")],
            ),
            // missing rows
            txn(3, vec![upd(t, 2, "old", "new"), del(t, 3, "gone")]),
            txn(4, vec![upd(t, 5, "five", "FIVE")]),
        ]
    };

    // fail: the error names the exact offset and table; nothing of the
    // batch is visible; the checkpoint did not move.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
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
    assert_eq!(rows_of(&pg, "f"), "1|target");
    assert_eq!(sink.checkpoint("f").await.expect("cp").offset, 0);
    // A missing row under fail, after a good batch; the sink goes on after.
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
    assert_eq!(rows_of(&pg, "f"), "1|target ; 5|five");
    assert_eq!(sink.checkpoint("f").await.expect("cp").offset, 1);
    sink.apply(&batch("f", 2, vec![txn(2, vec![ins("f", 8, "eight")])]))
        .await
        .expect("after a failure");
    assert_eq!(rows_of(&pg, "f"), "1|target ; 5|five ; 8|eight");
    assert_eq!(
        pg.sql("SELECT count(*) FROM drc.conflicts").expect("n"),
        "0"
    );

    // ignore: target rows stay, every conflict recorded with both images.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Ignore))
        .await
        .expect("connect");
    sink.apply(&batch("i", 1, conflicting("i")))
        .await
        .expect("ignore");
    assert_eq!(rows_of(&pg, "i"), "1|target ; 5|FIVE ; 6|six ; 7|seven");
    assert_eq!(
        pg.sql(
            "SELECT \"offset\", gtid, db, tbl, op, kind, policy FROM drc.conflicts
             WHERE stream = 'i' ORDER BY id"
        )
        .expect("conflicts"),
        "2|0-1-2|d|i|insert|duplicate|ignore\n3|0-1-3|d|i|update|missing|ignore\n\
         3|0-1-3|d|i|delete|missing|ignore"
    );
    assert_eq!(
        pg.sql(
            "SELECT before_image, after_image, target_image FROM drc.conflicts
             WHERE stream = 'i' ORDER BY id"
        )
        .expect("images"),
        "|{\"v\": \"source\", \"id\": 1}|{\"v\": \"target\", \"id\": 1}\n\
         {\"v\": \"old\", \"id\": 2}|{\"v\": \"new\", \"id\": 2}|\n\
         {\"v\": \"gone\", \"id\": 3}||"
    );
    assert_eq!(offset_of(&pg, "i"), "4");

    // overwrite: the source's image wins; conflicts recorded.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Overwrite))
        .await
        .expect("connect");
    sink.apply(&batch("o", 1, conflicting("o")))
        .await
        .expect("overwrite");
    assert_eq!(
        rows_of(&pg, "o"),
        "1|source ; 2|new ; 5|FIVE ; 6|six ; 7|seven"
    );
    assert_eq!(
        pg.sql("SELECT \"offset\", kind, policy, message FROM drc.conflicts WHERE stream = 'o' ORDER BY id")
            .expect("conflicts"),
        "2|duplicate|overwrite|insert duplicate on d.o: after image written\n\
         3|missing|overwrite|update missing on d.o: after image written\n\
         3|missing|overwrite|delete missing on d.o: nothing to do"
    );
    // An UPDATE onto a taken key under overwrite: recorded, skipped.
    sink.apply(&batch(
        "o",
        5,
        vec![txn(
            5,
            vec![change(
                pb::Op::Update,
                "o",
                Some((6, "six")),
                Some((7, "six")),
            )],
        )],
    ))
    .await
    .expect("update onto a taken key");
    assert_eq!(
        rows_of(&pg, "o"),
        "1|source ; 2|new ; 5|FIVE ; 6|six ; 7|seven"
    );
    assert_eq!(
        pg.sql("SELECT kind, message FROM drc.conflicts WHERE stream = 'o' AND \"offset\" = 5")
            .expect("conflict"),
        "duplicate|update duplicate on d.o: update skipped (another row holds the key)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_stops_at_its_offset_with_nothing_committed() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    pg.sql("CREATE ROLE weak LOGIN").expect("role");

    // No privilege to create the sink's schema.
    let weak = PostgresSinkConfig::new(pg.url_for("weak", "postgres"));
    let err = PostgresSink::connect(weak.clone())
        .await
        .expect_err("no CREATE");
    let msg = err.to_string();
    assert!(
        msg.contains("grant the sink's user CREATE on the database"),
        "{msg}"
    );

    // The schema exists and is the user's, but the table is not theirs.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect as owner");
    pg.sql(
        "GRANT USAGE ON SCHEMA drc TO weak; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA drc TO weak;
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA drc TO weak;
         CREATE SCHEMA d; GRANT USAGE ON SCHEMA d TO weak;
         CREATE TABLE d.t (id int PRIMARY KEY, v varchar(20));
         CREATE TABLE d.short (id int PRIMARY KEY, v varchar(3));
         CREATE TABLE d.other (id int PRIMARY KEY, w text)",
    )
    .expect("setup");
    let mut weak_sink = PostgresSink::connect(weak).await.expect("connect as weak");
    let err = weak_sink
        .apply(&batch("p", 1, vec![txn(1, vec![ins("t", 1, "a")])]))
        .await
        .expect_err("no INSERT privilege");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 1, .. })
            && msg.contains("42501")
            && msg.contains("grant the sink's user INSERT"),
        "{msg}"
    );
    assert_eq!(offset_of(&pg, "p"), "");

    // A missing table, a table with different columns.
    for (table, needle) in [
        ("missing", "is missing in the target"),
        (
            "other",
            "column(s) v missing in the target table \"d\".\"other\" (it has: id, w)",
        ),
    ] {
        let err = sink
            .apply(&batch(
                "m",
                1,
                vec![
                    txn(1, vec![ins("t", 1, "a")]),
                    txn(2, vec![ins(table, 1, "a")]),
                ],
            ))
            .await
            .expect_err("table mismatch");
        let msg = err.to_string();
        assert!(
            matches!(err, ApplyError::Definite { offset: 2, .. }) && msg.contains(needle),
            "{msg}"
        );
        assert_eq!(rows_of(&pg, "t"), "");
        assert_eq!(offset_of(&pg, "m"), "");
    }

    // Values PostgreSQL refuses: the server's (too long for varchar(3)) in
    // a COPY run across transactions, and one the sink refuses itself (a
    // NUL in text). The error names the exact offset; nothing is committed.
    let mut long_run: Vec<pb::Transaction> = (1..=40)
        .map(|i| txn(i, vec![ins("short", i as i64, "ok")]))
        .collect();
    long_run[29] = txn(30, vec![ins("short", 30, "far too long")]);
    let err = sink
        .apply(&batch("v", 1, long_run))
        .await
        .expect_err("too long");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 30, .. }) && msg.contains("22001"),
        "{msg}"
    );
    assert!(
        !msg.contains("far too long"),
        "no row values in errors: {msg}"
    );
    assert_eq!(pg.sql("SELECT count(*) FROM d.short").expect("n"), "0");
    // The same inside a COPY run: refused by the sink's encoder mid-stream.
    let mut nul_run: Vec<pb::Transaction> = (1..=40)
        .map(|i| txn(i, vec![ins("t", i as i64, "ok")]))
        .collect();
    nul_run[24] = txn(25, vec![ins("t", 25, "nul\0")]);
    let err = sink
        .apply(&batch("v", 1, nul_run))
        .await
        .expect_err("NUL in a COPY run");
    assert!(
        matches!(err, ApplyError::Definite { offset: 25, .. }) && err.to_string().contains("NUL"),
        "{err}"
    );
    assert_eq!(rows_of(&pg, "t"), "");
    // The sink's connection still works after the aborted COPY.
    assert_eq!(sink.checkpoint("v").await.expect("checkpoint").offset, 0);
    let err = sink
        .apply(&batch(
            "v",
            1,
            vec![
                txn(1, vec![ins("t", 1, "a")]),
                txn(2, vec![ins("t", 2, "b")]),
                txn(3, vec![ins("t", 3, "nul\0here")]),
            ],
        ))
        .await
        .expect_err("NUL");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 3, .. })
            && msg.contains("column v")
            && msg.contains("NUL")
            && msg.contains("source GTID 0-1-3"),
        "{msg}"
    );
    assert_eq!(rows_of(&pg, "t"), "");
    assert_eq!(offset_of(&pg, "v"), "");

    // DDL with no translation stops the stream, unless skipped.
    let view = || {
        vec![
            txn(1, vec![ins("t", 1, "a")]),
            ddl_txn(2, "d", "CREATE VIEW vv AS SELECT 1"),
            txn(3, vec![ins("t", 2, "b")]),
        ]
    };
    let err = sink
        .apply(&batch("ddl", 1, view()))
        .await
        .expect_err("view");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 2, .. })
            && msg.contains("no PostgreSQL translation")
            && msg.contains("on_unsupported_ddl"),
        "{msg}"
    );
    assert_eq!(rows_of(&pg, "t"), "");
    let mut skipping = PostgresSink::connect(PostgresSinkConfig {
        on_unsupported_ddl: UnsupportedDdl::Skip,
        ..config(&pg, ConflictPolicy::Fail)
    })
    .await
    .expect("connect");
    skipping
        .apply(&batch("ddl", 1, view()))
        .await
        .expect("skipped");
    assert_eq!(rows_of(&pg, "t"), "1|a ; 2|b");
    assert_eq!(offset_of(&pg, "ddl"), "3");

    // A failing translated DDL: definite at its offset, the batch rolled back.
    let err = sink
        .apply(&batch(
            "ddl2",
            1,
            vec![
                txn(1, vec![ins("t", 3, "c")]),
                ddl_txn(2, "d", "ALTER TABLE t ADD COLUMN v INT"),
            ],
        ))
        .await
        .expect_err("duplicate column");
    assert!(
        matches!(err, ApplyError::Definite { offset: 2, .. }) && err.to_string().contains("42701"),
        "{err}"
    );
    assert_eq!(rows_of(&pg, "t"), "1|a ; 2|b");

    // Rows of a missing table create it when configured to.
    let mut creating = PostgresSink::connect(PostgresSinkConfig {
        create_missing_tables: true,
        ..config(&pg, ConflictPolicy::Fail)
    })
    .await
    .expect("connect");
    creating
        .apply(&batch("c", 1, vec![txn(1, vec![ins("fresh", 1, "x")])]))
        .await
        .expect("create from the change");
    assert_eq!(rows_of(&pg, "fresh"), "1|x");
    assert_eq!(
        pg.sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'd.fresh'::regclass AND attnum > 0 ORDER BY attnum")
            .expect("types"),
        "integer\ncharacter varying(20)"
    );
}

/// `n` transactions of one INSERT each into `d.t` (ids 1..=n), with an
/// UPDATE of the pre-existing row 0 in the middle: a test holding a lock on
/// row 0 stops the batch there, half applied in its open transaction.
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

/// Waits until the sink's UPDATE waits for the lock on row 0; returns its
/// backend pid.
fn wait_for_blocked_batch(pg: &Postgres) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let pid = pg
            .sql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'UPDATE \"d\".\"t\"%' AND wait_event_type = 'Lock'")
            .unwrap_or_default();
        if !pid.is_empty() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the batch never reached the locked row");
}

/// Whether the batch is all there (with its checkpoint); panics if only a
/// part of it is.
fn all_or_nothing(pg: &Postgres, stream: &str, n: u64) -> bool {
    let rows = pg
        .sql("SELECT count(*) || '|' || (SELECT v FROM d.t WHERE id = 0) FROM d.t WHERE id > 0")
        .expect("count");
    let cp = offset_of(pg, stream);
    if rows == "0|before" {
        assert!(cp.is_empty() || cp == "0", "no rows, no checkpoint: {cp}");
        false
    } else {
        assert_eq!(
            rows,
            format!("{}|after", n - 1),
            "half a batch is visible (checkpoint {cp:?})"
        );
        assert_eq!(cp, n.to_string(), "all rows, the batch's checkpoint");
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_or_a_killed_server_leaves_all_or_nothing() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let mut pg = start_pg();
    pg.sql("CREATE SCHEMA d; CREATE TABLE d.t (id int PRIMARY KEY, v varchar(20))")
        .expect("table");
    let reset =
        "DELETE FROM d.t; INSERT INTO d.t VALUES (0, 'before'); DELETE FROM drc.checkpoints";
    let n = 2_000;
    let b = interruptible_batch("k", n);
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    pg.sql(reset).expect("reset");

    // The sink's backend is terminated mid-batch.
    let locker = pg_client(&pg).await;
    locker
        .batch_execute("BEGIN; SELECT * FROM d.t WHERE id = 0 FOR UPDATE")
        .await
        .expect("lock row 0");
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = sink.apply(&b).await;
            (sink, r)
        })
    };
    let pid = tokio::task::block_in_place(|| wait_for_blocked_batch(&pg));
    pg.sql(&format!("SELECT pg_terminate_backend({pid})"))
        .expect("terminate");
    let (mut sink, r) = task.await.expect("join apply");
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let err = r.expect_err("the batch failed");
    assert!(err.is_transient(), "a lost connection is transient: {err}");
    assert!(!all_or_nothing(&pg, "k", n), "nothing of the batch");
    assert_eq!(sink.checkpoint("k").await.expect("cp").offset, 0);
    sink.apply(&b).await.expect("retry");
    assert!(all_or_nothing(&pg, "k", n));

    // The server is killed (kill -9) mid-batch and restarted.
    pg.sql(reset).expect("reset");
    let locker = pg_client(&pg).await;
    locker
        .batch_execute("BEGIN; SELECT * FROM d.t WHERE id = 0 FOR UPDATE")
        .await
        .expect("lock row 0");
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = sink.apply(&b).await;
            (sink, r)
        })
    };
    tokio::task::block_in_place(|| wait_for_blocked_batch(&pg));
    pg.kill9().expect("kill -9");
    let (mut sink, r) = task.await.expect("join apply");
    drop(locker);
    let err = r.expect_err("the batch failed");
    assert!(err.is_transient(), "a lost server is transient: {err}");
    pg.restart().expect("restart");
    assert!(
        !all_or_nothing(&pg, "k", n),
        "nothing of the batch after recovery"
    );
    assert_eq!(
        sink.checkpoint("k").await.expect("cp after restart").offset,
        0
    );
    sink.apply(&b).await.expect("retry after restart");
    assert!(all_or_nothing(&pg, "k", n));
}

/// An insert into a wider table `d.<table>` of mixed types.
fn wide_insert(table: &str, id: i64) -> pb::RowChange {
    let names = ["id", "v", "n", "t", "d", "b", "j"];
    pb::RowChange {
        op: pb::Op::Insert as i32,
        schema: "d".into(),
        table: table.into(),
        columns: names.iter().map(|n| col(n, "")).collect(),
        primary_key: vec![0],
        before: None,
        after: Some(pb::Row {
            values: vec![
                val(Kind::Int(id)),
                val(Kind::Text(format!("value number {id}"))),
                val(Kind::Decimal(format!("{id}.25"))),
                val(Kind::Datetime(pb::DateTime {
                    year: 2026,
                    month: 1 + (id % 12) as u32,
                    day: 1 + (id % 28) as u32,
                    hour: (id % 24) as u32,
                    minute: 30,
                    second: 15,
                    micros: 123_456,
                    fsp: 6,
                })),
                val(Kind::Double(id as f64 / 7.0)),
                val(Kind::Bytes(id.to_le_bytes().to_vec())),
                val(Kind::Json(format!("{{\"k\":{id},\"tags\":[\"a\",\"b\"]}}"))),
            ],
        }),
    }
}

/// COPY and multi-row INSERT write the same rows; prints how long each
/// takes for long runs (the figures in BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_multi_row_insert_write_the_same_rows() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    pg.sql(
        "CREATE SCHEMA d; CREATE TABLE d.a (id int PRIMARY KEY, v varchar(40), n numeric(12,2),
           t timestamp(6), d double precision, b bytea, j jsonb);
         CREATE TABLE d.b (LIKE d.a INCLUDING ALL); CREATE TABLE d.c (LIKE d.a INCLUDING ALL)",
    )
    .expect("tables");
    let rows = 30_000;
    let txns = |t: &str, per_txn: i64| -> Vec<pb::Transaction> {
        (0..rows / per_txn)
            .map(|k| {
                txn(
                    k as u64 + 1,
                    (0..per_txn)
                        .map(|i| wide_insert(t, k * per_txn + i))
                        .collect(),
                )
            })
            .collect()
    };
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    let mut timings = Vec::new();
    for (table, copy_min_rows, per_txn) in
        [("a", 16, 1), ("b", usize::MAX, 1), ("c", usize::MAX, rows)]
    {
        sink.set_copy_min_rows(copy_min_rows);
        let b = batch(table, 1, txns(table, per_txn));
        let started = Instant::now();
        sink.apply(&b).await.expect("apply");
        timings.push(started.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!(
        "{rows} rows of 7 columns in one batch: COPY {:.0} ms, multi-row INSERT {:.0} ms ({:.2}x)",
        timings[0],
        timings[1],
        timings[1] / timings[0]
    );
    for t in ["b", "c"] {
        assert_eq!(
            pg.sql(&format!(
                "SELECT count(*) FROM ((SELECT * FROM d.a EXCEPT SELECT * FROM d.{t}) UNION ALL
                   (SELECT * FROM d.{t} EXCEPT SELECT * FROM d.a)) x"
            ))
            .expect("diff"),
            "0",
            "d.a and d.{t} hold the same rows"
        );
    }
    assert_eq!(
        pg.sql("SELECT count(*), sum(id), min(t), max(j->>'k') FROM d.a")
            .expect("a"),
        format!(
            "{rows}|{}|2026-01-01 00:30:15.123456|9999",
            rows * (rows - 1) / 2
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_map_sends_a_database_to_another_schema() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    let mut cfg = config(&pg, ConflictPolicy::Fail);
    cfg.schema_map.insert("d".into(), "replica".into());
    let mut sink = PostgresSink::connect(cfg).await.expect("connect");
    sink.apply(&batch(
        "s",
        1,
        vec![
            ddl_txn(1, "", "CREATE DATABASE d"),
            ddl_txn(2, "d", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"),
            txn(3, vec![ins("t", 1, "a"), ins("t", 2, "b")]),
            txn(4, vec![upd("t", 1, "a", "A"), del("t", 2, "b")]),
            ddl_txn(5, "d", "RENAME TABLE t TO u"),
            txn(6, vec![ins("u", 3, "c")]),
        ],
    ))
    .await
    .expect("apply");
    assert_eq!(
        pg.sql("SELECT id, v FROM replica.u ORDER BY id")
            .expect("rows"),
        "1|A\n3|c"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'd'")
            .expect("schemas"),
        "0",
        "nothing went to a schema named after the database"
    );
}
