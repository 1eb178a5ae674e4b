//! `drc migrate` into MariaDB and PostgreSQL on real servers: every type of the capture's
//! type-torture table, tables with and without keys, composite keys, foreign
//! keys, triggers, views and routines, a few hundred thousand rows, while a
//! writer keeps changing the source during the snapshot; kill -9 in the middle
//! of the snapshot and `--resume`; the cutover; and bad input refused before
//! anything is written. Every check compares the rows themselves.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_tests::{skip, MariaDb, MariaDbOptions, Postgres, PostgresOptions};

fn drc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drc"))
}

fn start() -> Option<(MariaDb, MariaDb)> {
    if !MariaDb::available() {
        return None;
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("start source");
    let dst = MariaDb::start(MariaDbOptions {
        server_id: 2,
        ..Default::default()
    })
    .expect("start target");
    Some((src, dst))
}

/// The schema the tests migrate (besides the torture table).
const APP: &str = "
CREATE DATABASE app;
USE app;
CREATE TABLE app.big (id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, c VARCHAR(120) NOT NULL,
  pad CHAR(60) NOT NULL, KEY k_1 (k)) ENGINE=InnoDB;
INSERT INTO app.big (k, c, pad) SELECT seq % 1000, CONCAT('c-', seq, REPEAT('x', seq % 50)), 'pad'
  FROM seq_1_to_300000;
CREATE TABLE app.comp (region VARCHAR(16) NOT NULL, n INT NOT NULL, v VARCHAR(40),
  PRIMARY KEY (region, n)) ENGINE=InnoDB;
INSERT INTO app.comp SELECT ELT(1 + seq % 4, 'ap', 'EU', 'us', 'Zz'), seq, CONCAT('v', seq) FROM seq_1_to_12000;
CREATE TABLE app.nokey (a INT, b VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO app.nokey SELECT seq % 100, IF(seq % 7 = 0, NULL, CONCAT('b', seq % 10)) FROM seq_1_to_3000;
CREATE TABLE app.parent (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB;
CREATE TABLE app.child (id INT PRIMARY KEY, parent_id INT NOT NULL, note VARCHAR(20),
  CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES app.parent (id)) ENGINE=InnoDB;
INSERT INTO app.parent SELECT seq, CONCAT('p', seq) FROM seq_1_to_500;
INSERT INTO app.child SELECT seq, 1 + seq % 500, 'n' FROM seq_1_to_1000;
CREATE TABLE app.orders (id INT PRIMARY KEY, amount INT) ENGINE=InnoDB;
CREATE TABLE app.audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, what VARCHAR(10)) ENGINE=InnoDB;
CREATE TRIGGER app.orders_ai AFTER INSERT ON app.orders FOR EACH ROW
  INSERT INTO app.audit (order_id, what) VALUES (NEW.id, 'insert');
INSERT INTO app.orders SELECT seq, seq * 10 FROM seq_1_to_200;
CREATE VIEW app.big_small AS SELECT id, k FROM app.big WHERE id < 100;
CREATE FUNCTION app.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
";

/// Every table's rows, each as one line of hex, in a fixed order (a table
/// without a key is compared as a sorted multiset).
fn dump(db: &MariaDb, table: &str, cols: &str) -> Vec<String> {
    let exprs: Vec<String> = cols
        .split(',')
        .map(|c| format!("IFNULL(HEX({}), 'NULL')", c.trim()))
        .collect();
    let sql = format!(
        "SET time_zone = '+00:00'; SELECT CONCAT_WS('|', {}) AS r FROM {table} ORDER BY r",
        exprs.join(", ")
    );
    let out = db.sql(&sql).expect("dump");
    out.lines().map(str::to_owned).collect()
}

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

/// A writer changing every kind of table until `stop`; counts its commits.
fn writer(
    src: &MariaDb,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let opts = src.opts().expect("opts");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::new(opts).await.expect("writer connect");
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = 1 + (i * 7919) % 300_000;
                let sql = match i % 8 {
                    0 => format!("UPDATE app.big SET c = CONCAT('w', {i}), k = {} WHERE id = {id}", i % 1000),
                    1 => format!("DELETE FROM app.big WHERE id = {}", 1 + (i * 104_729) % 300_000),
                    2 => format!("INSERT INTO app.big (k, c, pad) VALUES ({}, 'new', 'p')", i % 1000),
                    3 => format!(
                        "BEGIN; INSERT INTO app.nokey VALUES ({}, 'w'); DELETE FROM app.nokey WHERE a = {} LIMIT 1; COMMIT",
                        i % 100,
                        (i + 50) % 100
                    ),
                    4 => format!("UPDATE app.comp SET v = 'w{i}' WHERE n = {}", 1 + (i * 7) % 12_000),
                    5 => format!(
                        "BEGIN; INSERT INTO app.parent VALUES ({p}, 'np'); INSERT INTO app.child VALUES ({p}, {p}, 'nc'); COMMIT",
                        p = 1000 + i
                    ),
                    6 => format!("INSERT INTO app.orders VALUES ({}, {i})", 1000 + i),
                    _ => format!("UPDATE tt.torture SET i = {} WHERE id = 2", i % 1000),
                };
                c.query_drop(sql).await.expect("writer statement");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    })
}

fn phase(dst: &MariaDb) -> String {
    dst.sql("SELECT phase FROM drc.migrate").unwrap_or_default()
}

fn migrate(src: &MariaDb, dst: &MariaDb, state: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = drc();
    cmd.args(["migrate", "--source", &src.url(), "--target", &dst.url()])
        .args(["--tables", "app.*,tt.*", "--state"])
        .arg(state)
        .args(extra)
        .env("DRC_LOG", "warn");
    cmd
}

/// Kills `child` (SIGKILL) once at least 1/`part` of the chunks are done
/// (`progress`: done, all), and checks that the snapshot was not over yet.
fn kill_midway(child: &mut Child, part: u64, progress: impl Fn() -> (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, all) = progress();
        if all > 0 && done * part >= all {
            break;
        }
        assert!(Instant::now() < deadline, "the snapshot did not get going");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "drc migrate ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let (done, all) = progress();
    assert!(
        done < all,
        "the snapshot finished before the kill ({done}/{all})"
    );
}

fn finish(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().expect("wait for drc");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    // bounded under its case-insensitive collation ('ap' < 'EU' < 'us' <
    // 'Zz', unlike the bytes' order).
    let comp_chunks: u32 = dst
        .sql("SELECT COUNT(*) FROM drc.migrate_chunks WHERE tbl = 'comp' AND done = 1")
        .expect("chunks")
        .parse()
        .expect("count");
    assert!(comp_chunks >= 4, "app.comp in {comp_chunks} chunks");
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
    src.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
             INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_5000;",
    )
    .expect("schema");
    let state = tempfile::tempdir().expect("state dir");
    let mut cmd = drc();
    cmd.args(["migrate", "--source", &src.url(), "--target", &dst.url()])
        .args(["--tables", "app.*", "--follow", "--cutover", "--state"])
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(&dst) != "verified" {
        assert!(Instant::now() < deadline, "never verified");
        std::thread::sleep(Duration::from_millis(20));
    }
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
    src.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_1000;",
    )
    .expect("schema");
    let state = tempfile::tempdir().expect("state dir");
    let mut child = migrate(&src, &dst, state.path(), &["--follow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(&dst) != "verified" {
        assert!(Instant::now() < deadline, "never verified");
        std::thread::sleep(Duration::from_millis(20));
    }
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
