//! What the `drc migrate` tests share: throwaway servers, the schema they
//! migrate, a writer that keeps changing it, dumps compared row by row, and
//! running, killing and waiting for `drc migrate`.

#![allow(dead_code)]

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_tests::{MariaDb, MariaDbOptions};

pub fn drc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drc"))
}

pub fn start() -> Option<(MariaDb, MariaDb)> {
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
pub const APP: &str = "
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
pub fn dump(db: &MariaDb, table: &str, cols: &str) -> Vec<String> {
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

/// A writer changing every kind of table until `stop`; counts its commits.
pub fn writer(
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

pub fn phase(dst: &MariaDb) -> String {
    dst.sql("SELECT phase FROM drc.migrate").unwrap_or_default()
}

/// Waits (at most 60 s) until the migration on `dst` is verified.
pub fn wait_verified(dst: &MariaDb) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(dst) != "verified" {
        assert!(Instant::now() < deadline, "never verified");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small source: `app.t (id, v)` with `rows` rows.
pub fn small_app(src: &MariaDb, rows: u32) {
    src.sql(&format!(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_{rows};"
    ))
    .expect("schema");
}

pub fn migrate(src: &MariaDb, dst: &MariaDb, state: &std::path::Path, extra: &[&str]) -> Command {
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
pub fn kill_midway(child: &mut Child, part: u64, progress: impl Fn() -> (u64, u64)) {
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

pub fn finish(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().expect("wait for drc");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
