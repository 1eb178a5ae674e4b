//! `drc migrate` into PostgreSQL on real servers: the type-torture table per
//! the documented mapping and the other tables row by row, through a kill -9
//! in the middle of the snapshot and `--resume` while a writer changes the
//! source; and a table PostgreSQL cannot hold, refused before anything is
//! written.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_tests::{skip, MariaDb, MariaDbOptions, Postgres, PostgresOptions};

mod migrate_common;
use migrate_common::*;

/// Rows of `cols` (SQL expressions, the same on both servers) of each side,
/// sorted: MariaDB's text against PostgreSQL's.
fn rows_maria(db: &MariaDb, table: &str, cols: &str) -> Vec<String> {
    let mut v: Vec<String> = db
        .sql(&format!("SELECT CONCAT_WS('|', {cols}) FROM {table}"))
        .expect("mariadb rows")
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn rows_pg(pg: &Postgres, table: &str, cols: &str) -> Vec<String> {
    let mut v: Vec<String> = pg
        .sql(&format!("SELECT concat_ws('|', {cols}) FROM {table}"))
        .expect("postgres rows")
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

const PG_TABLES: [(&str, &str); 7] = [
    ("app.big", "id, k, c, pad"),
    ("app.comp", "region, n, v"),
    ("app.nokey", "a, b"),
    ("app.parent", "id, name"),
    ("app.child", "id, parent_id, note"),
    ("app.orders", "id, amount"),
    ("app.audit", "id, order_id, what"),
];

fn pg_progress(pg: &Postgres) -> (u64, u64) {
    let s = pg
        .sql("SELECT coalesce(sum(done::int), 0) || ' ' || count(*) FROM drc.migrate_chunks")
        .unwrap_or_default();
    let mut it = s.split(' ').map(|v| v.trim().parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn migrates_into_postgres_through_a_kill_9_while_the_source_is_written() {
    if !MariaDb::available() || !Postgres::available() {
        skip!("mariadbd or PostgreSQL is not installed");
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("source");
    let pg = Postgres::start(PostgresOptions::default()).expect("postgres");
    src.sql(drc_tests::torture::DDL).expect("torture table");
    src.sql(drc_tests::torture::ROWS).expect("torture rows");
    src.sql(APP).expect("app schema");
    let state = tempfile::tempdir().expect("state dir");
    let run = |extra: &[&str]| {
        let mut cmd = drc();
        cmd.args(["migrate", "--source", &src.url(), "--target", &pg.url()])
            .args([
                "--tables",
                "app.*,tt.*",
                "--chunk-rows",
                "1000",
                "--parallel",
                "2",
                "--state",
            ])
            .arg(state.path())
            .args(extra)
            .env("DRC_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("start drc migrate")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let w = writer(&src, Arc::clone(&stop), Arc::clone(&done));

    // Killed in the middle of the snapshot, while the writer writes.
    let mut child = run(&[]);
    kill_midway(&mut child, 4, || pg_progress(&pg));
    let loaded = pg
        .sql("SELECT coalesce(sum(rows_loaded), 0) FROM drc.migrate_chunks WHERE db = 'app' AND tbl = 'big' AND done")
        .expect("loaded");
    assert_eq!(
        loaded,
        pg.sql("SELECT count(*) FROM app.big").expect("rows")
    );

    // Resumed; the writer stops once the tables are finished.
    let child = run(&["--resume"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = pg.sql("SELECT phase FROM drc.migrate").unwrap_or_default();
        if p == "finished" || p == "verified" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("migrate: target identical to the source"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not created: view app.big_small"),
        "{stdout}"
    );
    assert!(stdout.contains("not created: foreign key of"), "{stdout}");
    assert!(done.load(Ordering::Relaxed) > 0);

    for (table, cols) in PG_TABLES {
        let a = rows_maria(&src, table, cols);
        let b = rows_pg(&pg, table, cols);
        assert_eq!(a.len(), b.len(), "{table}: row counts differ");
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            panic!(
                "{table}: first differing row:\n  source {}\n  target {}",
                a[i], b[i]
            );
        }
    }
    // The type-torture rows, per the documented mapping.
    let torture = pg
        .sql(
            "SET TimeZone = 'UTC'; SELECT concat_ws('|', id, biu, d, b, dt, dtm6, ts6, tm, y, e, s, c3, \
             encode(bn, 'hex'), host(ip), u, gen, gens, inv, f) FROM tt.torture ORDER BY id",
        )
        .expect("torture");
    let lines: Vec<&str> = torture
        .lines()
        .filter(|l| !l.is_empty() && *l != "SET")
        .collect();
    assert_eq!(
        lines[0],
        "1|18446744073709551615|99999999999999999999999999999999999.999999999999999999999999999999|\
         1111111111111111111111111111111111111111111111111111111111111111|9999-12-31|\
         9999-12-31 23:59:59.999999|2038-01-19 03:14:07.999999+00|838:59:59|2155|c|x,z|日本語|\
         01020000|2001:db8::1|123e4567-e89b-12d3-a456-426614174000|2147483647|2147483647|7|3.5"
    );
    assert!(
        lines[1].starts_with(
            "2|0|-99999999999999999999999999999999999.999999999999999999999999999999|\
             0000000000000000000000000000000000000000000000000000000000000000|-infinity|\
             1970-01-01 00:00:00.000001|1970-01-01 00:00:01.000001+00|"
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("|::ffff:1.2.3.4|00000000-0000-0000-0000-000000000000|"),
        "{}",
        lines[1]
    );
    // NULLs stay NULL; the invisible column's default came along.
    assert_eq!(lines[2], "3|7");
    // The AUTO_INCREMENT column is an identity past the largest value.
    pg.sql("INSERT INTO app.big (k, c, pad) VALUES (1, 'own', 'p')")
        .expect("own insert");
    let max_src = src.sql("SELECT MAX(id) FROM app.big").expect("max");
    let own = pg
        .sql("SELECT id FROM app.big WHERE c = 'own'")
        .expect("own id");
    assert!(
        own.parse::<u64>().expect("id") > max_src.parse::<u64>().expect("max"),
        "{own} <= {max_src}"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM drc.conflicts")
            .expect("conflicts"),
        "0"
    );
}

#[test]
fn a_table_postgres_cannot_hold_is_refused_before_anything_is_written() {
    if !MariaDb::available() || !Postgres::available() {
        skip!("mariadbd or PostgreSQL is not installed");
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("source");
    let pg = Postgres::start(PostgresOptions::default()).expect("postgres");
    src.sql(
        "CREATE DATABASE app; CREATE TABLE app.ok (id INT PRIMARY KEY);
         CREATE TABLE app.hist (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING;",
    )
    .expect("schema");
    let state = tempfile::tempdir().expect("state");
    let out = drc()
        .args([
            "migrate",
            "--source",
            &src.url(),
            "--target",
            &pg.url(),
            "--state",
        ])
        .arg(state.path())
        .env("DRC_LOG", "warn")
        .output()
        .expect("run drc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the target cannot hold these tables"), "{err}");
    assert!(err.contains("app.hist:"), "{err}");
    assert_eq!(
        pg.sql(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ('drc', 'app')"
        )
        .expect("schemata"),
        "0"
    );
}
