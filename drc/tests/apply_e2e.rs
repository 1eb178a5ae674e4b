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
