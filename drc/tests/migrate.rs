//! `drc migrate` into MariaDB on real servers: every type of the capture's
//! type-torture table, tables with and without keys, composite keys (read in
//! keyset chunks), foreign keys, triggers, views and routines, a few hundred
//! thousand rows, while a writer keeps changing the source during the
//! snapshot; kill -9 in the middle of the snapshot and of the follow, and
//! `--resume`; the cutover; and bad input refused before anything is
//! written. Every check compares the rows themselves.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_tests::{skip, MariaDb, MariaDbOptions};

mod migrate_common;
use migrate_common::*;

const TABLES: [(&str, &str); 8] = [
    ("app.big", "id, k, c, pad"),
    ("app.comp", "region, n, v"),
    ("app.nokey", "a, b"),
    ("app.parent", "id, name"),
    ("app.child", "id, parent_id, note"),
    ("app.orders", "id, amount"),
    ("app.audit", "id, order_id, what"),
    (
        "tt.torture",
        "id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, d, d2, CAST(f AS DOUBLE), db, b, b3, dt, tm, tm6, dtm, dtm3, dtm6, ts, ts6, y, c, vc, tx, cl, c3, bn, vb, bl, e, s, j, g, p, ip, u, gen, gens, inv",
    ),
];

fn assert_identical(src: &MariaDb, dst: &MariaDb) {
    for (table, cols) in TABLES {
        let a = dump(src, table, cols);
        let b = dump(dst, table, cols);
        assert_eq!(a.len(), b.len(), "{table}: row counts differ");
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            panic!(
                "{table}: first differing row:\n  source {}\n  target {}",
                a[i], b[i]
            );
        }
    }
}

#[test]
fn migrates_every_type_and_key_shape_while_the_source_is_written() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    src.sql(drc_tests::torture::DDL).expect("torture table");
    src.sql(drc_tests::torture::ROWS).expect("torture rows");
    src.sql(APP).expect("app schema");
    let state = tempfile::tempdir().expect("state dir");

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let w = writer(&src, Arc::clone(&stop), Arc::clone(&done));
    std::thread::sleep(Duration::from_millis(300));
    let child = migrate(
        &src,
        &dst,
        state.path(),
        &["--chunk-rows", "3000", "--parallel", "2"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start drc migrate");
    // Write through the snapshot; stop once the tables are finished so the
    // verify sees a quiet source.
    let mut during_snapshot = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = phase(&dst);
        if p == "snapshot" && during_snapshot.is_none() {
            during_snapshot = Some(done.load(Ordering::Relaxed));
        }
        if p == "finished" || p == "verified" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_finish = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("migrate: target identical to the source"),
        "{stdout}"
    );
    let before = during_snapshot.expect("the snapshot phase was seen");
    assert!(
        at_finish > before,
        "the writer committed nothing during the snapshot ({before} -> {at_finish})"
    );
    assert_identical(&src, &dst);

    // The composite key starting with a string was read in keyset chunks,
    // ranges and chunks bounded under its case-insensitive collation ('ap' < 'EU' < 'us' <
    // 'Zz', unlike the bytes' order).
    let comp_chunks: u32 = dst
        .sql("SELECT COUNT(*) FROM drc.migrate_chunks WHERE tbl = 'comp' AND done = 1")
        .expect("chunks")
        .parse()
        .expect("count");
    assert!(comp_chunks >= 4, "app.comp in {comp_chunks} chunks");
    // ... in key ranges read side by side (a range's chain of chunks is
    // numbered from range x 2^20).
    let comp_ranges: u32 = dst
        .sql("SELECT COUNT(DISTINCT seq DIV 1048576) FROM drc.migrate_chunks WHERE tbl = 'comp'")
        .expect("ranges")
        .parse()
        .expect("count");
    assert!(comp_ranges >= 2, "app.comp in {comp_ranges} key ranges");
    // Indexes and foreign keys came after the load; objects came along.
    let keys = dst
        .sql("SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='app' AND TABLE_NAME='big' ORDER BY 1")
        .expect("indexes");
    assert_eq!(keys, "k_1\nPRIMARY");
    let fk = dst
        .sql("SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA='app'")
        .expect("fks");
    assert_eq!(fk, "fk_parent");
    assert_eq!(dst.sql("SELECT app.twice(21)").expect("function"), "42");
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM app.big_small").expect("view"),
        src.sql("SELECT COUNT(*) FROM app.big_small").expect("view")
    );
    // The trigger is there, guarded: it fired once per order on the source
    // (the binlog carried its rows) and not again on the target, yet it
    // fires for the target's own writes.
    let audit = |db: &MariaDb| db.sql("SELECT COUNT(*) FROM app.audit").expect("audit");
    assert_eq!(audit(&src), audit(&dst));
    assert_eq!(
        audit(&dst),
        dst.sql("SELECT COUNT(*) FROM app.orders").expect("orders")
    );
    dst.sql("INSERT INTO app.orders VALUES (999999, 1)")
        .expect("own write");
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM app.audit WHERE order_id = 999999")
            .expect("audit"),
        "1"
    );
    // The catch-up replays the overlap without recording it as conflicts.
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM drc.conflicts")
            .expect("conflicts"),
        "0"
    );
}

#[test]
fn kill_9_during_the_snapshot_then_resume_completes_without_duplicates() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    src.sql(drc_tests::torture::DDL).expect("torture table");
    src.sql(drc_tests::torture::ROWS).expect("torture rows");
    src.sql(APP).expect("app schema");
    let state = tempfile::tempdir().expect("state dir");
    let mut child = migrate(
        &src,
        &dst,
        state.path(),
        &["--chunk-rows", "1000", "--parallel", "2"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start drc migrate");
    let progress = |dst: &MariaDb| -> (u64, u64) {
        let s = dst
            .sql("SELECT IFNULL(SUM(done), 0), COUNT(*) FROM drc.migrate_chunks")
            .unwrap_or_default();
        let mut it = s.split('\t').map(|v| v.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    kill_midway(&mut child, 5, || progress(&dst));
    // What is on the target is exactly the chunks marked done: a chunk cut
    // off midway left nothing.
    let loaded = dst
        .sql("SELECT SUM(rows_loaded) FROM drc.migrate_chunks WHERE db = 'app' AND tbl = 'big' AND done = 1")
        .expect("loaded");
    let present = dst.sql("SELECT COUNT(*) FROM app.big").expect("rows");
    assert_eq!(loaded.replace("NULL", "0"), present);

    // Without --resume the target is refused.
    let (code, _, stderr) = finish(
        migrate(&src, &dst, state.path(), &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rerun"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("rerun with --resume"), "{stderr}");

    src.sql("UPDATE app.big SET c = 'after-kill' WHERE id IN (1, 150000, 299999); DELETE FROM app.comp WHERE n = 3")
        .expect("changes after the kill");
    let (code, stdout, stderr) = finish(
        migrate(&src, &dst, state.path(), &["--resume", "--parallel", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("resume"),
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let read_now: u64 = stdout
        .split(" read this run")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("rows read this run in the report");
    assert!(
        read_now < 300_000,
        "the resumed run read everything again: {stdout}"
    );
    assert_identical(&src, &dst);
}

#[test]
fn cutover_sets_the_source_read_only_and_reports_the_downtime() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    small_app(&src, 5000);
    let state = tempfile::tempdir().expect("state dir");
    let mut cmd = drc();
    cmd.args(["migrate", "--source", &src.url(), "--target", &dst.url()])
        .args(["--tables", "app.*", "--follow", "--cutover", "--state"])
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start");
    wait_verified(&dst);
    // Following: changes keep arriving.
    src.sql("UPDATE app.t SET v = -1 WHERE id <= 10; INSERT INTO app.t VALUES (9001, 1)")
        .expect("writes while following");
    drc_tests::wait_until("the follow applies", Duration::from_secs(30), || {
        Ok(dst
            .sql("SELECT COUNT(*) FROM app.t WHERE v = -1")
            .unwrap_or_default()
            == "10")
    })
    .expect("follow");
    // A table made later in a migrated database comes along; another
    // database's does not.
    src.sql(
        "CREATE TABLE app.later (id INT PRIMARY KEY, v INT); INSERT INTO app.later VALUES (1, 2);
         CREATE DATABASE other; CREATE TABLE other.x (id INT PRIMARY KEY); INSERT INTO other.x VALUES (1);",
    )
    .expect("later DDL");
    drc_tests::wait_until("the new table arrives", Duration::from_secs(30), || {
        Ok(dst.sql("SELECT v FROM app.later").unwrap_or_default() == "2")
    })
    .expect("app.later");
    // Ctrl-C starts the cutover.
    let pid = child.id() as i32;
    // SAFETY-free: a plain signal to our own child.
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("downtime (source read-only until caught up and verified):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("roll back: run SET GLOBAL read_only = 0"),
        "{stdout}"
    );
    assert_eq!(src.sql("SELECT @@global.read_only").expect("ro"), "1");
    assert_eq!(
        dump(&src, "app.t", "id, v"),
        dump(&dst, "app.t", "id, v"),
        "target differs after the cutover"
    );
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'other'")
            .expect("schemata"),
        "0",
        "a database outside --tables was created on the target"
    );
    src.sql("SET GLOBAL read_only = 0").expect("roll back");
}

#[test]
fn kill_9_while_following_then_resume_applies_each_change_once() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    small_app(&src, 1000);
    let state = tempfile::tempdir().expect("state dir");
    let mut child = migrate(&src, &dst, state.path(), &["--follow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    wait_verified(&dst);
    // Inserts (each its own transaction) while following; kill -9 once
    // some have arrived and others have not.
    let opts = src.opts().expect("opts");
    let w = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::new(opts).await.expect("connect");
            for i in 0..3000 {
                c.query_drop(format!("INSERT INTO app.t VALUES ({}, {i})", 10_000 + i))
                    .await
                    .expect("insert");
                c.query_drop(format!(
                    "UPDATE app.t SET v = v + 1 WHERE id = {}",
                    1 + i % 1000
                ))
                .await
                .expect("update");
            }
        });
    });
    let count = |db: &MariaDb| -> u64 {
        db.sql("SELECT COUNT(*) FROM app.t")
            .unwrap_or_default()
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&dst) < 1300 {
        assert!(Instant::now() < deadline, "the follow applied nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    w.join().expect("writer");
    assert!(
        count(&dst) < 4000,
        "the follow had applied everything before the kill"
    );
    // The rerun resumes the catch-up from the target's checkpoint: under the
    // default fail policy a change applied twice would stop it.
    let (code, stdout, stderr) = finish(
        migrate(&src, &dst, state.path(), &["--resume"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("resume"),
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(count(&dst), 4000);
    assert_eq!(dump(&src, "app.t", "id, v"), dump(&dst, "app.t", "id, v"));
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM drc.conflicts")
            .expect("conflicts"),
        "0"
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let dst = MariaDb::start(MariaDbOptions::default()).expect("target");
    let run = |source: &str, target: &str| {
        let state = tempfile::tempdir().expect("state");
        let out = drc()
            .args(["migrate", "--source", source, "--target", target, "--state"])
            .arg(state.path())
            .env("DRC_LOG", "warn")
            .output()
            .expect("run drc");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let nothing_written = |why: &str| {
        assert_eq!(
            dst.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('drc', 'app')")
                .expect("schemata"),
            "0",
            "{why}: something was written to the target"
        );
    };

    // No binlog.
    let nolog = MariaDb::start(MariaDbOptions {
        log_bin: false,
        ..Default::default()
    })
    .expect("source without binlog");
    nolog
        .sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        .expect("schema");
    let (code, err) = run(&nolog.url(), &dst.url());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("binary logging is off"), "{err}");
    nothing_written("no binlog");

    // No replication privileges.
    let src = MariaDb::start(MariaDbOptions::default()).expect("source");
    src.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1);
         CREATE USER 'reader'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON app.* TO 'reader'@'%';",
    )
    .expect("schema");
    let (code, err) = run(&src.url_for("reader", "pw"), &dst.url());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("REPLICATION"), "{err}");
    nothing_written("no privileges");

    // A target that refuses LOAD DATA LOCAL.
    let no_local = MariaDb::start(MariaDbOptions {
        extra_args: vec!["--local-infile=0".into()],
        ..Default::default()
    })
    .expect("target without local_infile");
    let (code, err) = run(&src.url(), &no_local.url());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("local_infile is OFF"), "{err}");
    assert_eq!(
        no_local
            .sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('drc', 'app')")
            .expect("schemata"),
        "0"
    );

    // A target that is not empty.
    dst.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        .expect("target table");
    let (code, err) = run(&src.url(), &dst.url());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("the target is not empty: app.t already exist"),
        "{err}"
    );
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'drc'")
            .expect("drc"),
        "0"
    );
    assert_eq!(
        dst.sql("SELECT COUNT(*) FROM app.t").expect("untouched"),
        "0"
    );
}

/// Runs `drc migrate --parallel 1` of `app.first` (read first: the larger)
/// and `app.rest`, and once every chunk of `app.first` is loaded while
/// `app.rest` still has chunks to read, runs `ddl` (and `after`) on the
/// source. Returns the exit code, stdout and stderr, and whether a chunk
/// of `app.rest` was read after the statement (the statement was inside
/// the replay window).
fn migrate_with_ddl_midway(
    src: &MariaDb,
    dst: &MariaDb,
    ddl: &str,
    after: &str,
) -> (Option<i32>, String, String, bool) {
    src.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.first (id INT PRIMARY KEY, v INT NOT NULL);
         CREATE TABLE app.rest (id INT PRIMARY KEY, v VARCHAR(100) NOT NULL);
         INSERT INTO app.first SELECT seq, seq FROM app.seq_1_to_60000;
         INSERT INTO app.rest SELECT seq, CONCAT('r', seq) FROM app.seq_1_to_30000;
         ANALYZE TABLE app.first, app.rest;",
    )
    .expect("schema");
    let state = tempfile::tempdir().expect("state dir");
    let child = migrate(
        src,
        dst,
        state.path(),
        &["--chunk-rows", "500", "--parallel", "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start drc migrate");
    let count = |sql: &str| -> u64 { dst.sql(sql).ok().and_then(|s| s.parse().ok()).unwrap_or(0) };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // One query: the plan may be recorded between two.
        let counts = dst
            .sql(
                "SELECT IFNULL(SUM(tbl = 'first'), 0), IFNULL(SUM(tbl = 'first' AND done = 0), 0), \
                 IFNULL(SUM(tbl = 'rest' AND done = 0), 0) FROM drc.migrate_chunks",
            )
            .unwrap_or_default();
        let c: Vec<u64> = counts.split('\t').filter_map(|v| v.parse().ok()).collect();
        let (first_all, first_left, rest_left) = match c[..] {
            [a, b, r] => (a, b, r),
            _ => (0, 0, 0),
        };
        if first_all > 0 && first_left == 0 {
            assert!(
                rest_left > 0,
                "app.rest was read before the statement could run"
            );
            break;
        }
        assert!(Instant::now() < deadline, "app.first was never loaded");
        std::thread::sleep(Duration::from_millis(2));
    }
    src.sql(ddl).expect("the statement");
    let at: String = src.sql("SHOW MASTER STATUS").expect("binlog position");
    let mut at = at.split('\t');
    let (file, pos) = (
        at.next().unwrap_or_default().to_owned(),
        at.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0),
    );
    if !after.is_empty() {
        src.sql(after).expect("changes after the statement");
    }
    let (code, stdout, stderr) = finish(child);
    let rest_after = count(&format!(
        "SELECT COUNT(*) FROM drc.migrate_chunks WHERE tbl = 'rest' AND \
         (snap_file > '{file}' OR (snap_file = '{file}' AND snap_pos >= {pos}))"
    ));
    (code, stdout, stderr, rest_after > 0)
}

#[test]
fn a_ddl_inside_the_replay_window_is_replayed_once_its_tables_are_read() {
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    // On the table already read: replayed, with the changes after it.
    let (code, stdout, stderr, in_window) = migrate_with_ddl_midway(
        &src,
        &dst,
        "ALTER TABLE app.first ADD COLUMN extra INT NOT NULL DEFAULT 7",
        "UPDATE app.first SET extra = 9, v = -v WHERE id <= 40;
         INSERT INTO app.first VALUES (60001, 1, 5);
         INSERT INTO app.rest VALUES (30001, 'late');",
    );
    assert!(
        in_window,
        "the statement ran after the last chunk of app.rest was read"
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("migrate: target identical to the source"),
        "{stdout}"
    );
    for (table, cols) in [("app.first", "id, v, extra"), ("app.rest", "id, v")] {
        assert_eq!(dump(&src, table, cols), dump(&dst, table, cols), "{table}");
    }
    assert_eq!(
        dst.sql("SELECT COUNT(*), SUM(extra = 9), SUM(extra = 7) FROM app.first")
            .expect("extra"),
        "60001\t40\t59960"
    );

    // On a table the snapshot reads after the statement: refused, naming it.
    let Some((src, dst)) = start() else {
        skip!("mariadbd is not installed");
    };
    let (code, stdout, stderr, in_window) = migrate_with_ddl_midway(
        &src,
        &dst,
        "ALTER TABLE app.rest ADD COLUMN extra INT NOT NULL DEFAULT 7",
        "",
    );
    assert!(
        in_window,
        "the statement ran after the last chunk of app.rest was read"
    );
    assert_ne!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ran during the snapshot")
            && stderr.contains("a chunk of app.rest was read after it"),
        "{stderr}"
    );
}
