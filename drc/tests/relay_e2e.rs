//! Two regions on one machine: `drc run` in region A (relay + capture of a
//! MariaDB) and `drc relay` in region B replicating A's stream over mutual
//! TLS. The capture, relay A and relay B are each killed with SIGKILL while
//! writes go on; at the end both logs hold the same records at the same
//! offsets, and the stream holds every source transaction exactly once.

use std::process::Command;
use std::time::{Duration, Instant};

use drc_proto::v1 as pb;
use drc_tests::{free_port, skip, MariaDb, MariaDbOptions};
use prost::Message;

mod common;
use common::{last_offset, records, tls_table, Proc};

fn drc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drc"));
    c.env("DRC_LOG", "info");
    c
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn capture_relay_a_relay_b_over_mtls_survive_kill9() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("mariadb");
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(50))")
        .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let tls = w.join("tls");
    let out = drc()
        .args(["tls", "init"])
        .arg(&tls)
        .args(["--regions", "a,b"])
        .output()
        .expect("tls init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (pa, pb) = (free_port().expect("port"), free_port().expect("port"));
    let a_cfg = w.join("a.toml");
    std::fs::write(
        &a_cfg,
        format!(
            "region = \"a\"\n[relay]\nlisten = \"127.0.0.1:{pa}\"\ndata_dir = {:?}\ntls = {}\n\n\
             [[capture]]\nstream = \"a.shop\"\nsource = \"{}\"\nstart = \"start\"\nschema_history = {:?}\n\
             relay = {{ url = \"https://127.0.0.1:{pa}\", tls = {} }}\n",
            w.join("a-data"),
            tls_table(&tls, "a"),
            db.url(),
            w.join("a-schema.jsonl"),
            tls_table(&tls, "a"),
        ),
    )
    .expect("write a.toml");
    let b_cfg = w.join("b.toml");
    std::fs::write(
        &b_cfg,
        format!(
            "region = \"b\"\n[relay]\nlisten = \"127.0.0.1:{pb}\"\ndata_dir = {:?}\ntls = {}\n\n\
             [[relay.upstreams]]\nurl = \"https://127.0.0.1:{pa}\"\ntls = {}\nstreams = [\"a.shop\"]\nsubscriber = \"relay-b\"\n",
            w.join("b-data"),
            tls_table(&tls, "b"),
            tls_table(&tls, "b"),
        ),
    )
    .expect("write b.toml");
    let check = drc()
        .args(["relay", "--config"])
        .arg(w.join("missing.toml"))
        .output()
        .expect("run");
    assert!(!check.status.success());

    let log_a = w.join("a.log");
    let log_b = w.join("b.log");
    let a_args = ["run", "--config", a_cfg.to_str().unwrap_or_default()];
    let b_args = ["relay", "--config", b_cfg.to_str().unwrap_or_default()];
    let mut a = Proc::spawn("drc run (A)", drc(), &a_args, &log_a);
    let mut b = Proc::spawn("drc relay (B)", drc(), &b_args, &log_b);
    let a_dir = w.join("a-data").join("streams").join("a.shop");
    let b_dir = w.join("b-data").join("streams").join("a.shop");

    // 300 transactions in 6 rounds; a SIGKILL of one process between rounds.
    let mut next_id = 0;
    let mut round = |n: usize| {
        for _ in 0..n {
            db.sql(&format!(
                "INSERT INTO shop.o VALUES ({next_id}, REPEAT('x', 40))"
            ))
            .expect("insert");
            next_id += 1;
        }
    };
    round(50);
    wait_for("A's stream to start", 60, || a_dir.exists());
    a.kill9(); // capture and relay A at once
    round(50);
    a = Proc::spawn("drc run (A)", drc(), &a_args, &log_a);
    round(50);
    b.kill9();
    round(50);
    b = Proc::spawn("drc relay (B)", drc(), &b_args, &log_b);
    round(50);
    a.kill9();
    a = Proc::spawn("drc run (A)", drc(), &a_args, &log_a);
    round(50);
    // Two DDL transactions + 300 inserts.
    let want = 302;
    let logs = || {
        format!(
            "A:\n{}\nB:\n{}",
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    a.stop();
    while last_offset(&b_dir) < want {
        assert!(
            Instant::now() < deadline,
            "B caught up: {}\n{}",
            last_offset(&b_dir),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A was stopped with everything captured? Restart it once more to let
    // the capture finish the binlog if SIGTERM came early, then stop.
    let a_last = last_offset(&a_dir);
    assert!(a_last >= want, "A holds the stream: {a_last}\n{}", logs());
    b.stop();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (ra, rb) = rt.block_on(async { (records(&a_dir).await, records(&b_dir).await) });
    assert_eq!(ra.len() as u64, want, "exactly once: {}", logs());
    assert_eq!(ra, rb, "identical records at identical offsets");
    let offsets: Vec<u64> = ra.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=want).collect::<Vec<u64>>(), "dense, no gap");
    let mut ids = Vec::new();
    for (_, bytes) in &ra {
        let t = pb::Transaction::decode(bytes.as_slice()).expect("transaction");
        for c in &t.changes {
            if let Some(pb::value::Kind::Int(id)) =
                c.after.as_ref().and_then(|r| r.values[0].kind.clone())
            {
                ids.push(id);
            }
        }
    }
    assert_eq!(
        ids,
        (0..300).collect::<Vec<i64>>(),
        "every insert once, in order"
    );
}

/// A capture that fails for good (here: a source without a binlog) says so in
/// the log at once, while `drc run` keeps its relay serving; before, the error
/// appeared only at shutdown, so a stalled stream showed nothing.
#[test]
fn a_failed_capture_is_logged_at_once() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let db = MariaDb::start(MariaDbOptions {
        log_bin: false,
        ..Default::default()
    })
    .expect("mariadb");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let port = free_port().expect("port");
    let cfg = w.join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\n\
             [[capture]]\nstream = \"a.shop\"\nsource = \"{}\"\nstart = \"start\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n",
            w.join("data"),
            db.url(),
        ),
    )
    .expect("config");
    let log = w.join("run.log");
    let mut run = Proc::spawn(
        "drc run",
        drc(),
        &["run", "--config", cfg.to_str().unwrap_or_default()],
        &log,
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the capture failure in the log", 30, || {
        logged().contains("capture failed")
    });
    let line = logged()
        .lines()
        .find(|l| l.contains("capture failed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("a.shop"), "names the stream: {line}");
    assert!(line.contains("log_bin"), "says what is wrong: {line}");
    // The region is still up: its relay answers.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the relay keeps serving after the capture failed"
    );
    run.kill9();
}

/// The stall at a DDL after kill -9, made deterministic: `drc run` with no
/// schema history file is killed, an ALTER and an insert run on the source
/// while it is down, and it is started again. The restarted capture resumes
/// from the transaction before the ALTER with a snapshot taken after it; it
/// must publish the ALTER and the insert (with the new column), not stop.
#[test]
fn restart_right_before_a_ddl_without_a_history_file_goes_on() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("mariadb");
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO shop.o VALUES (1, 'one')",
    )
    .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let port = free_port().expect("port");
    let cfg = w.join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\n\
             [[capture]]\nstream = \"a.shop\"\nsource = \"{}\"\nstart = \"start\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n",
            w.join("data"),
            db.url(),
        ),
    )
    .expect("config");
    let log = w.join("run.log");
    let args = ["run", "--config", cfg.to_str().unwrap_or_default()];
    let dir = w.join("data").join("streams").join("a.shop");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let rows_of = |recs: &[(u64, Vec<u8>)]| -> Vec<(String, Vec<String>, String)> {
        recs.iter()
            .map(|(_, b)| pb::Transaction::decode(b.as_slice()).expect("transaction"))
            .map(|t| match (&t.ddl, t.changes.first()) {
                (Some(d), _) => ("ddl".to_string(), Vec::new(), d.statement.clone()),
                (None, Some(c)) => (
                    c.table.clone(),
                    c.columns.iter().map(|c| c.name.clone()).collect(),
                    format!("{:?}", c.after.as_ref().map(|r| &r.values)),
                ),
                (None, None) => ("empty".to_string(), Vec::new(), String::new()),
            })
            .collect()
    };

    // First run: everything up to the insert of row 1, then SIGKILL.
    let mut run = Proc::spawn("drc run", drc(), &args, &log);
    wait_for("the first insert in the relay", 60, || {
        last_offset(&dir) >= 3
    });
    std::thread::sleep(Duration::from_millis(300));
    run.kill9();
    // Read-only: opening the log here would hold its lock.
    let held = last_offset(&dir) as usize;

    // While it is down the source runs an ALTER and an insert.
    db.sql(
        "ALTER TABLE shop.o ADD COLUMN note VARCHAR(20) NULL;
         INSERT INTO shop.o VALUES (2, 'two', 'n2')",
    )
    .expect("alter and insert");

    let mut run = Proc::spawn("drc run", drc(), &args, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_offset(&dir) < held as u64 + 2 {
        assert!(
            Instant::now() < deadline,
            "the restarted capture published the ALTER and the insert: relay at {}, held {held} before\n{}",
            last_offset(&dir),
            logged()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run.stop();
    let after = rt.block_on(records(&dir));
    assert_eq!(after.len(), held + 2, "exactly once\n{}", logged());
    let old = rows_of(&after[..held]);
    let last = old.last().cloned().unwrap_or_default();
    assert_eq!(last.0, "o", "the first run ended with the insert: {old:?}");
    assert_eq!(last.1, ["id", "v"]);
    let new = rows_of(&after[held..]);
    assert_eq!(
        new[0],
        (
            "ddl".to_string(),
            Vec::new(),
            "ALTER TABLE shop.o ADD COLUMN note VARCHAR(20) NULL".to_string()
        )
    );
    assert_eq!(new[1].0, "o");
    assert_eq!(new[1].1, ["id", "v", "note"]);
    assert!(
        new[1].2.contains("Int(2)") && new[1].2.contains("\"two\"") && new[1].2.contains("\"n2\""),
        "the new row with its new column: {}",
        new[1].2
    );
}
