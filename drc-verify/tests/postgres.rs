//! `drc_verify::verify` from MariaDB to PostgreSQL: a table of every type
//! the normalization covers is captured from MariaDB and written to
//! PostgreSQL by the real PostgreSQL sink; verify finds the two identical,
//! then finds each change made on the PostgreSQL side with the right key
//! and column, and its repair file makes them identical again.

use std::collections::BTreeMap;
use std::sync::Arc;

use drc_apply::sink::postgres::{PostgresSink, PostgresSinkConfig};
use drc_apply::{Batch, Sink};
use drc_capture::capture::{self, CaptureOptions, StartAt};
use drc_proto::v1 as pb;
use drc_tests::{skip, MariaDb, MariaDbOptions, Postgres, PostgresOptions};
use drc_verify::{DiffKind, Endpoint, NoProgress, Options, Report, Tuning};

const TYPES: &str = "CREATE DATABASE w;
    CREATE TABLE w.types (id INT PRIMARY KEY, i TINYINT NOT NULL, b TINYINT(1) NULL,
      u BIGINT UNSIGNED NOT NULL, dec1 DECIMAL(12,4) NOT NULL, f FLOAT NOT NULL, d DOUBLE NOT NULL,
      s VARCHAR(30) NOT NULL, t TEXT NULL, e ENUM('a','b') NOT NULL, st SET('x','y','z') NOT NULL,
      bin VARBINARY(8) NULL, bn BINARY(4) NOT NULL, dt DATE NOT NULL, dtm DATETIME(6) NOT NULL,
      ts TIMESTAMP(3) NULL, tm TIME(6) NOT NULL, y YEAR NOT NULL, bits BIT(10) NOT NULL, j JSON NULL);
    INSERT INTO w.types VALUES
      (1, -128, 1, 18446744073709551615, -12.3400, 3.14, 0.1, 'café ☕', NULL, 'a', '', NULL, 'ab', '2024-02-29',
       '2024-02-29 23:59:59.999999', '2024-01-01 00:00:00.001', '-838:59:59.000000', 2024, b'1010101010', '{\"k\": [1, 2.5, \"x\"]}'),
      (2, 127, 0, 0, 99999999.9999, -1.5e-7, 1e300, '', '', 'b', 'x,z', '', 'a\\0b\\0', '0000-00-00',
       '0000-00-00 00:00:00', NULL, '838:59:59.5', 1901, b'0', NULL),
      (3, 0, NULL, 42, 0, 123456789, -2.2250738585072014e-308, 'quote '' and \\\\ backslash', 'text', 'a', 'y', x'00FF', 'wxyz', '1000-01-01',
       '1970-01-01 00:00:00', '2038-01-19 03:14:07.499', '00:00:00.000001', 2155, b'1111111111', '[]');
    INSERT INTO w.types SELECT 10 + seq, seq % 100, seq % 2, seq * 1000, seq / 8, seq / 3, seq / 7, CONCAT('s', seq),
      IF(seq % 5 = 0, NULL, CONCAT('t', seq)), 'a', 'x,y', UNHEX(HEX(seq)), 'abcd', '2020-01-01' + INTERVAL seq DAY,
      '2020-01-01 12:00:00.5' + INTERVAL seq MINUTE, '2021-06-01 00:00:00' + INTERVAL seq SECOND,
      SEC_TO_TIME(seq * 37), 2000 + seq % 100, seq % 1024, JSON_OBJECT('n', seq)
      FROM w.seq_1_to_200;";

/// Every transaction of the source's binlog.
async fn capture_all(src: &MariaDb) -> Vec<pb::Transaction> {
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

fn opts(src: &MariaDb, pg: &Postgres) -> Options {
    Options {
        source: Endpoint::parse("source", &src.url()).expect("source url"),
        target: Endpoint::parse("target", &pg.url()).expect("target url"),
        tables: vec!["w.*".into()],
        schema_map: BTreeMap::new(),
        tuning: Tuning {
            chunk_rows: 50,
            leaf_rows: 10,
            ..Tuning::default()
        },
        repair_sql: None,
    }
}

async fn run(o: &Options) -> Report {
    drc_verify::verify(o, Arc::new(NoProgress))
        .await
        .expect("verify runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_to_postgres_across_the_type_list() {
    if !MariaDb::available() || !Postgres::available() {
        skip!("mariadbd or postgres is not installed");
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    let pg = Postgres::start(PostgresOptions::default()).expect("start postgres");
    src.exec(TYPES).await.expect("source rows");

    // The real sink writes the target.
    let txns = capture_all(&src).await;
    let mut sink = PostgresSink::connect(PostgresSinkConfig::new(pg.url()))
        .await
        .expect("connect the sink");
    let offsets: Vec<u64> = (1..=txns.len() as u64).collect();
    let batch = Batch {
        stream: "a.w".into(),
        last_offset: txns.len() as u64,
        offsets,
        transactions: txns,
    };
    sink.apply(&batch).await.expect("apply");
    drop(sink);
    assert_eq!(
        pg.sql("SELECT count(*) FROM w.types").expect("count"),
        "203"
    );

    let mut o = opts(&src, &pg);
    let r = run(&o).await;
    assert!(r.identical(), "{}", r.human());
    assert_eq!(
        (r.tables[0].source_rows, r.tables[0].target_rows),
        (203, 203)
    );

    // One change per row, each in one column, on the PostgreSQL side.
    pg.sql(
        "UPDATE w.types SET dec1 = dec1 + 0.0001 WHERE id = 1;
         UPDATE w.types SET f = f * 2 WHERE id = 3;
         UPDATE w.types SET tm = tm + interval '1 microsecond' WHERE id = 11;
         UPDATE w.types SET dtm = dtm + interval '1 microsecond' WHERE id = 12;
         UPDATE w.types SET bin = '\\x00' WHERE id = 13;
         UPDATE w.types SET t = '' WHERE id = 15;
         UPDATE w.types SET ts = ts + interval '1 second' WHERE id = 16;
         UPDATE w.types SET bits = B'0000000000' WHERE id = 17;
         UPDATE w.types SET dt = '-infinity' WHERE id = 18;
         UPDATE w.types SET d = 0.2 WHERE id = 19;
         UPDATE w.types SET s = 'S20' WHERE id = 20;
         DELETE FROM w.types WHERE id = 21;
         INSERT INTO w.types SELECT 500, i, b, u, dec1, f, d, s, t, e, st, bin, bn, dt, dtm, ts, tm, y, bits, j
           FROM w.types WHERE id = 22;",
    )
    .expect("change the target");
    let r = run(&o).await;
    let got: Vec<(DiffKind, String, Vec<String>)> = r.tables[0]
        .diffs
        .iter()
        .map(|d| (d.kind, d.key_display(), d.columns.clone()))
        .collect();
    let diff = |id: u32, col: &str| {
        (
            DiffKind::Different,
            format!("id={id}"),
            vec![col.to_owned()],
        )
    };
    assert_eq!(
        got,
        vec![
            diff(1, "dec1"),
            diff(3, "f"),
            diff(11, "tm"),
            diff(12, "dtm"),
            diff(13, "bin"),
            diff(15, "t"),
            diff(16, "ts"),
            diff(17, "bits"),
            diff(18, "dt"),
            diff(19, "d"),
            diff(20, "s"),
            (DiffKind::Missing, "id=21".into(), vec![]),
            (DiffKind::Extra, "id=500".into(), vec![]),
        ],
        "{}",
        r.human()
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("repair.sql");
    o.repair_sql = Some(path.clone());
    run(&o).await;
    let sql = std::fs::read_to_string(&path).expect("repair file");
    assert_eq!(
        sql.matches("ON CONFLICT (\"id\") DO UPDATE").count(),
        12,
        "{sql}"
    );
    pg.sql(&sql).expect("run the repair file on postgres");
    o.repair_sql = None;
    let r = run(&o).await;
    assert!(r.identical(), "after repair: {}", r.human());
}
