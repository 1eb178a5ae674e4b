//! `drc_verify::verify` between two real MariaDB servers: identical tables,
//! each kind of difference found with its key and columns (deep inside one
//! of many chunks, so the drill-down is what finds it), composite keys,
//! tables without a key, a table the target lacks, repair SQL that makes
//! the target equal, and errors that name what is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use drc_tests::{skip, MariaDb, MariaDbOptions};
use drc_verify::{DiffKind, Endpoint, Error, NoProgress, Options, Report, TableStatus, Tuning};

fn opts(src: &str, dst: &str, tables: &[&str]) -> Options {
    Options {
        source: Endpoint::parse("source", src).expect("source url"),
        target: Endpoint::parse("target", dst).expect("target url"),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        schema_map: BTreeMap::new(),
        // Small chunks so 3,000 rows make many chunks and several levels.
        tuning: Tuning {
            chunk_rows: 200,
            leaf_rows: 20,
            split: 4,
            parallel: 2,
            max_diffs: 100,
        },
        repair_sql: None,
    }
}

async fn run(o: &Options) -> Report {
    drc_verify::verify(o, Arc::new(NoProgress))
        .await
        .expect("verify runs")
}

/// `(kind, key, columns)` of every differing row of `table`.
fn diffs(r: &Report, table: &str) -> Vec<(DiffKind, String, Vec<String>)> {
    let t = r
        .tables
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("no report for {table}: {r:?}"));
    t.diffs
        .iter()
        .map(|d| (d.kind, d.key_display(), d.columns.clone()))
        .collect()
}

const ORDERS: &str = "CREATE DATABASE shop;
    CREATE TABLE shop.orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL,
      total DECIMAL(10,2) NOT NULL, note TEXT NULL, placed DATETIME(3) NOT NULL,
      flags BIT(4) NOT NULL, raw VARBINARY(20) NULL, f FLOAT NOT NULL, d DOUBLE NOT NULL);
    INSERT INTO shop.orders SELECT seq, CONCAT('customer ', seq % 97), seq * 1.25,
      IF(seq % 100 = 0, '', CONCAT('note ', seq)), '2026-11-27 10:00:00.125' + INTERVAL seq SECOND,
      seq % 16, IF(seq % 3 = 0, NULL, UNHEX(SHA1(seq))), seq / 7, seq / 3
      FROM shop.seq_1_to_3000;";

fn start() -> Option<(MariaDb, MariaDb)> {
    if !MariaDb::available() {
        return None;
    }
    let a = MariaDb::start(MariaDbOptions::default()).expect("start source");
    let b = MariaDb::start(MariaDbOptions::default()).expect("start target");
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_each_kind_of_difference_deep_in_many_chunks_and_repairs_it() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    src.exec(ORDERS).await.expect("source rows");
    dst.exec(ORDERS).await.expect("target rows");
    let mut o = opts(&src.url(), &dst.url(), &["shop.*"]);

    let r = run(&o).await;
    assert!(r.identical(), "{}", r.human());
    let t = &r.tables[0];
    assert_eq!(t.table, "shop.orders");
    assert!(
        t.notes.iter().any(|n| n.contains("CHECKSUM TABLE equal")),
        "level 0 settles identical tables: {:?}",
        t.notes
    );

    dst.exec(
        "UPDATE shop.orders SET total = total + 1 WHERE id = 1234;
         DELETE FROM shop.orders WHERE id = 77;
         INSERT INTO shop.orders SELECT 5000, 'new', 1, NULL, NOW(), 0, NULL, 0, 0;
         UPDATE shop.orders SET note = NULL WHERE id = 2000;
         UPDATE shop.orders SET raw = UNHEX('00FF'), flags = 15 WHERE id = 2999;
         UPDATE shop.orders SET d = d + 0.000001 WHERE id = 10;",
    )
    .await
    .expect("change the target");
    let r = run(&o).await;
    assert!(!r.identical());
    assert_eq!(r.tables[0].status, TableStatus::Different);
    let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        diffs(&r, "shop.orders"),
        vec![
            (DiffKind::Different, "id=10".into(), cols(&["d"])),
            (DiffKind::Missing, "id=77".into(), vec![]),
            (DiffKind::Different, "id=1234".into(), cols(&["total"])),
            (DiffKind::Different, "id=2000".into(), cols(&["note"])),
            (
                DiffKind::Different,
                "id=2999".into(),
                cols(&["flags", "raw"])
            ),
            (DiffKind::Extra, "id=5000".into(), vec![]),
        ],
        "{}",
        r.human()
    );
    assert_eq!(r.diff_count(), 6);
    let t = &r.tables[0];
    assert_eq!((t.source_rows, t.target_rows), (3000, 3000));
    // About 15 top-level chunks, and the six that differ split into four,
    // level after level, down to 20-row leaves.
    assert!(
        t.chunks >= 30,
        "differing chunks were split: {} chunk queries",
        t.chunks
    );

    // The repair file makes the target equal.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("repair.sql");
    o.repair_sql = Some(path.clone());
    let r = run(&o).await;
    assert_eq!(r.diff_count(), 6);
    let sql = std::fs::read_to_string(&path).expect("repair file");
    assert_eq!(
        sql.matches("REPLACE INTO `shop`.`orders`").count(),
        5,
        "{sql}"
    );
    assert_eq!(
        sql.matches("DELETE FROM `shop`.`orders`").count(),
        1,
        "{sql}"
    );
    dst.exec(&sql).await.expect("run the repair file");
    o.repair_sql = None;
    let r = run(&o).await;
    assert!(r.identical(), "after repair: {}", r.human());
    assert_eq!(
        dst.sql("SELECT total, note IS NULL, HEX(raw) FROM shop.orders WHERE id IN (1234, 2000, 2999) ORDER BY id")
            .expect("read back"),
        src.sql("SELECT total, note IS NULL, HEX(raw) FROM shop.orders WHERE id IN (1234, 2000, 2999) ORDER BY id")
            .expect("read source")
    );
}

const OTHERS: &str = "CREATE DATABASE inv;
    CREATE TABLE inv.lines (order_id INT NOT NULL, sku VARCHAR(20) NOT NULL, qty INT NOT NULL,
      note VARCHAR(20) NULL, PRIMARY KEY (order_id, sku));
    INSERT INTO inv.lines SELECT seq DIV 5, CONCAT('sku-', seq % 5), seq, IF(seq % 2, NULL, 'x')
      FROM inv.seq_1_to_500;
    CREATE TABLE inv.codes (code VARCHAR(10) NOT NULL, label TEXT, UNIQUE KEY (code));
    INSERT INTO inv.codes SELECT CONCAT('c', seq), CONCAT('label ', seq) FROM inv.seq_1_to_50;
    CREATE TABLE inv.log (msg TEXT);
    INSERT INTO inv.log SELECT CONCAT('line ', seq) FROM inv.seq_1_to_30;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_and_unique_keys_tables_without_a_key_and_missing_tables() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    src.exec(OTHERS).await.expect("source rows");
    dst.exec(OTHERS).await.expect("target rows");
    src.exec("CREATE TABLE inv.only_here (id INT PRIMARY KEY); INSERT INTO inv.only_here VALUES (1), (2)")
        .await
        .expect("source-only table");
    let mut o = opts(&src.url(), &dst.url(), &["inv"]);

    let r = run(&o).await;
    let status: Vec<(&str, TableStatus)> = r
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.status))
        .collect();
    assert_eq!(
        status,
        vec![
            ("inv.codes", TableStatus::Identical),
            ("inv.lines", TableStatus::Identical),
            ("inv.log", TableStatus::Identical),
            ("inv.only_here", TableStatus::MissingOnTarget),
        ]
    );
    assert_eq!(
        r.tables[3].diff_count, 2,
        "both rows of the missing table count"
    );

    dst.exec(
        "UPDATE inv.lines SET qty = 0 WHERE order_id = 17 AND sku = 'sku-3';
         UPDATE inv.lines SET note = '' WHERE order_id = 40 AND sku = 'sku-1';
         DELETE FROM inv.lines WHERE order_id = 99 AND sku = 'sku-0';
         INSERT INTO inv.codes VALUES ('zz', 'extra');
         UPDATE inv.codes SET label = NULL WHERE code = 'c7';
         INSERT INTO inv.log VALUES ('one more');",
    )
    .await
    .expect("change the target");
    let r = run(&o).await;
    let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        diffs(&r, "inv.lines"),
        vec![
            (
                DiffKind::Different,
                "order_id=17, sku=sku-3".into(),
                cols(&["qty"])
            ),
            (
                DiffKind::Different,
                "order_id=40, sku=sku-1".into(),
                cols(&["note"])
            ),
            (DiffKind::Missing, "order_id=99, sku=sku-0".into(), vec![]),
        ],
        "{}",
        r.human()
    );
    assert_eq!(
        diffs(&r, "inv.codes"),
        vec![
            (DiffKind::Different, "code=c7".into(), cols(&["label"])),
            (DiffKind::Extra, "code=zz".into(), vec![]),
        ]
    );
    let log = r.tables.iter().find(|t| t.table == "inv.log").expect("log");
    assert_eq!(
        (log.status, log.source_rows, log.target_rows, log.diff_count),
        (TableStatus::Different, 30, 31, 0)
    );
    assert!(
        log.notes.iter().any(|n| n.contains("no primary key")),
        "{:?}",
        log.notes
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("repair.sql");
    o.repair_sql = Some(path.clone());
    o.tables = vec!["inv.lines".into(), "inv.codes".into()];
    run(&o).await;
    let sql = std::fs::read_to_string(&path).expect("repair file");
    dst.exec(&sql).await.expect("run the repair file");
    o.repair_sql = None;
    let r = run(&o).await;
    assert!(r.identical(), "after repair: {}", r.human());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_what_is_wrong() {
    for (url, want) in [
        ("http://root@h:1", "unknown scheme"),
        ("mysql://h:3306", "no user name"),
        ("postgres://u@h:5432", "needs the database"),
        ("not a url", "expected mysql://"),
    ] {
        let err = Endpoint::parse("target", url).expect_err(url).to_string();
        assert!(err.contains(want) && err.contains("target"), "{url}: {err}");
    }
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    src.exec("CREATE USER 'v'@'%' IDENTIFIED BY 'right'; GRANT SELECT ON *.* TO 'v'@'%'")
        .await
        .expect("user");
    let o = opts(&src.url_for("v", "wrong"), &dst.url(), &[]);
    let err = drc_verify::verify(&o, Arc::new(NoProgress))
        .await
        .expect_err("wrong password");
    assert!(
        matches!(err, Error::Connect { side: "source", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Access denied"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "no password in errors: {err}"
    );

    let o = opts(&src.url_for("v", "right"), &dst.url(), &["nosuch.*"]);
    let err = drc_verify::verify(&o, Arc::new(NoProgress))
        .await
        .expect_err("no table");
    assert!(
        err.to_string()
            .contains("no base table of the source matches nosuch.*"),
        "{err}"
    );

    let mut o = opts(&dst.url(), &src.url(), &[]);
    o.tuning.split = 1;
    let err = drc_verify::verify(&o, Arc::new(NoProgress))
        .await
        .expect_err("split 1");
    assert!(err.to_string().contains("--split"), "{err}");
}
