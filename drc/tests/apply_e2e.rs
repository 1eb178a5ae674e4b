//! One region in one process: `drc run` with a relay, a capture of a MariaDB
//! and an applier writing the stream as JSON lines. Every source transaction
//! arrives once, in order, with its stream offset.

use std::process::Command;
use std::time::{Duration, Instant};

use drc_tests::{free_port, skip, MariaDb, MariaDbOptions};

mod common;
use common::Proc;

#[test]
fn capture_relay_and_jsonl_applier_in_one_process() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("mariadb");
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20))")
        .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let port = free_port().expect("port");
    let out = w.join("a.shop.jsonl");
    let cfg = w.join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "region = \"a\"\n\
             [relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\n\
             [[capture]]\nstream = \"a.shop\"\nsource = \"{}\"\nstart = \"start\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\n\
             [[apply]]\nstream = \"a.shop\"\nsubscriber = \"apply-jsonl\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\
             sink = {{ kind = \"jsonl\", path = {:?} }}\n",
            w.join("data"),
            db.url(),
            out,
        ),
    )
    .expect("config");
    let cmd = Command::new(env!("CARGO_BIN_EXE_drc"));
    let mut run = Proc::spawn(
        "drc run",
        cmd,
        &["run", "--config", &cfg.to_string_lossy()],
        &w.join("run.log"),
    );
    for i in 0..20 {
        db.sql(&format!("INSERT INTO shop.o VALUES ({i}, 'v{i}')"))
            .expect("insert");
    }
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines().len() < 22 {
        assert!(
            Instant::now() < deadline,
            "applier output: {} lines\n{}",
            lines().len(),
            std::fs::read_to_string(w.join("run.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run.stop();
    let got = lines();
    assert_eq!(got.len(), 22, "two DDL and twenty inserts, once each");
    let offsets: Vec<u64> = got
        .iter()
        .map(|l| l["offset"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(offsets, (1..=22).collect::<Vec<u64>>());
    assert!(got.iter().all(|l| l["stream"] == "a.shop"));
    let ids: Vec<i64> = got[2..]
        .iter()
        .map(|l| l["changes"][0]["after"]["id"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(ids, (0..20).collect::<Vec<i64>>());
    assert_eq!(got[21]["changes"][0]["after"]["v"], "v19");
}

#[test]
fn capture_relay_and_mariadb_applier_survive_kill9() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("source");
    let dst = MariaDb::start(MariaDbOptions {
        server_id: 2,
        ..Default::default()
    })
    .expect("target");
    src.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2));
         CREATE TABLE shop.log (msg VARCHAR(50))",
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
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\n\
             [[apply]]\nstream = \"a.shop\"\nsubscriber = \"apply-b\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\
             sink = {{ kind = \"mysql\", url = \"{}\" }}\n",
            w.join("data"),
            src.url(),
            dst.url(),
        ),
    )
    .expect("config");
    let args = ["run", "--config", cfg.to_str().unwrap_or_default()];
    let log = w.join("run.log");
    let start = || {
        Proc::spawn(
            "drc run",
            Command::new(env!("CARGO_BIN_EXE_drc")),
            &args,
            &log,
        )
    };
    let mut run = start();
    for round in 0..4 {
        for i in 0..50 {
            let id = round * 50 + i;
            src.sql(&format!(
                "INSERT INTO shop.o VALUES ({id}, 'v{id}', {id}.25); UPDATE shop.o SET n = n + 1 WHERE id = {id} DIV 2;
                 INSERT INTO shop.log VALUES ('row {id}')"
            ))
            .expect("write");
        }
        src.sql(&format!("DELETE FROM shop.o WHERE id % 7 = {round}"))
            .expect("delete");
        // SIGKILL the whole region mid-stream, then start it again.
        run.kill9();
        run = start();
    }
    let dump = |db: &MariaDb| {
        (
            db.sql("SELECT id, v, n FROM shop.o ORDER BY id")
                .unwrap_or_default(),
            db.sql("SELECT msg FROM shop.log ORDER BY msg")
                .unwrap_or_default(),
        )
    };
    let want = dump(&src);
    let deadline = Instant::now() + Duration::from_secs(90);
    while dump(&dst) != want {
        assert!(
            Instant::now() < deadline,
            "target never matched the source\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    run.stop();
    // The keyless table proves no change was applied twice.
    let count = dst.sql("SELECT COUNT(*) FROM shop.log").expect("count");
    assert_eq!(count, "200");
    let ckpt = dst
        .sql("SELECT stream FROM drc.checkpoints")
        .expect("checkpoint");
    assert_eq!(ckpt, "a.shop");
}
