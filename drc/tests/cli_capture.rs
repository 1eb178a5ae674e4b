//! The `drc capture` command as users run it: the JSON-lines contract, exit
//! codes, bounded memory on a huge transaction, and clear errors on bad files.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use drc_tests::{skip, MariaDb, MariaDbOptions};

fn drc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drc"));
    c.env("DRC_LOG", "warn");
    c
}

#[test]
fn jsonl_contract_and_stop_at_end() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    db.sql(
        "CREATE DATABASE c; CREATE TABLE c.t (id BIGINT UNSIGNED PRIMARY KEY, amount DECIMAL(12,4), at DATETIME(3), note VARCHAR(20));
         INSERT INTO c.t VALUES (18446744073709551615, -12.5, '2026-01-02 03:04:05.678', 'hi \"there\"');
         UPDATE c.t SET note = NULL;",
    )
    .expect("workload");
    let out = drc()
        .args([
            "capture",
            "--source",
            &db.url(),
            "--from-start",
            "--stop-at-end",
            "--format",
            "jsonl",
            "--include",
            "c.*",
        ])
        .output()
        .expect("run drc");
    assert!(
        out.status.success(),
        "exit 0 at the end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let ddl: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("ddl").is_some()).collect();
    assert!(ddl.iter().any(|l| l["ddl"]
        .as_str()
        .is_some_and(|s| s.starts_with("CREATE TABLE c.t"))));
    for l in &ddl {
        for k in ["gtid", "file", "pos", "ts", "ddl", "db"] {
            assert!(l.get(k).is_some(), "DDL line has {k}: {l}");
        }
    }
    let dml: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("changes").is_some())
        .collect();
    assert_eq!(dml.len(), 2);
    let t = dml[0];
    assert!(t["gtid"].as_str().is_some_and(|g| g.starts_with("0-1-")));
    assert!(t["file"].as_str().is_some_and(|f| f.starts_with("binlog.")));
    assert!(t["pos"].as_u64().is_some_and(|p| p > 4));
    assert!(t["ts"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z') && s.contains('T')));
    assert_eq!(t["server_id"], 1);
    let c = &t["changes"][0];
    assert_eq!(c["op"], "insert");
    assert_eq!(c["db"], "c");
    assert_eq!(c["table"], "t");
    assert_eq!(c["pk"], serde_json::json!(["id"]));
    assert_eq!(c["before"], serde_json::Value::Null);
    // The exact text of the line, for the number forms serde_json would normalize.
    let line = text
        .lines()
        .find(|l| l.contains("\"changes\""))
        .expect("dml line");
    assert!(line.contains("\"id\":18446744073709551615"), "{line}");
    assert!(line.contains("\"amount\":\"-12.5000\""), "{line}");
    assert!(
        line.contains("\"at\":\"2026-01-02 03:04:05.678\""),
        "{line}"
    );
    assert_eq!(c["after"]["note"], "hi \"there\"");
    let u = &dml[1]["changes"][0];
    assert_eq!(u["op"], "update");
    assert_eq!(u["before"]["note"], "hi \"there\"");
    assert_eq!(u["after"]["note"], serde_json::Value::Null);
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn huge_transaction_spills_and_memory_stays_bounded() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let db = MariaDb::start(MariaDbOptions {
        extra_args: vec![
            "--max-binlog-size=1G".into(),
            "--binlog-cache-size=1M".into(),
        ],
        ..Default::default()
    })
    .expect("start mariadb");
    // One transaction of 350,000 rows × ~1 KiB: about 360 MB of binlog.
    db.sql(
        "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, pad VARCHAR(1000));
         INSERT INTO big.t SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) FROM big.seq_1_to_350000;",
    )
    .expect("one huge transaction");
    let binlog_bytes: u64 = db
        .sql("SHOW BINARY LOGS")
        .expect("logs")
        .lines()
        .filter_map(|l| l.split('\t').nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(
        binlog_bytes > 300_000_000,
        "the binlog holds the transaction: {binlog_bytes}"
    );
    let spill = tempfile::tempdir().expect("tempdir");
    let mut child = drc()
        .args([
            "capture",
            "--source",
            &db.url(),
            "--from-start",
            "--stop-at-end",
            "--format",
            "jsonl",
            "--include",
            "big.*",
        ])
        .env("TMPDIR", spill.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drc");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    // Read the output as it comes, counting rows without keeping them, and
    // sample the peak RSS while the process lives.
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 20];
        let mut lines = 0u64;
        let mut ids = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = stdout.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            for w in buf[..n].iter() {
                if *w == b'\n' {
                    lines += 1;
                }
            }
            // Count `"id":` occurrences across chunk boundaries.
            tail.extend_from_slice(&buf[..n]);
            let s = &tail[..];
            let mut i = 0;
            while let Some(p) = s[i..].windows(5).position(|x| x == b"\"id\":") {
                ids += 1;
                i += p + 5;
            }
            let keep = tail.len().saturating_sub(4);
            tail.drain(..keep);
        }
        (lines, ids)
    });
    let mut peak = 0u64;
    while child.try_wait().expect("wait").is_none() {
        if let Some(h) = vm_hwm_kib(pid) {
            peak = peak.max(h);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().expect("wait");
    let (lines, ids) = reader.join().expect("reader");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "drc failed: {err}");
    assert_eq!(ids, 350_000, "every row once");
    assert!(lines >= 3, "DDL lines plus the transaction");
    assert!(peak > 0, "RSS was sampled");
    assert!(
        peak < 200 * 1024,
        "peak RSS {peak} KiB must stay under 200 MiB"
    );
}

#[test]
fn bad_binlog_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.000001");
    std::fs::write(&garbage, b"this is not a binlog at all").expect("write");
    let out = drc()
        .args(["capture", "--binlog-file"])
        .arg(&garbage)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a binlog file"), "{err}");

    // A real file cut in the middle of an event.
    let Some(fixtures) = drc_tests::shared_fixtures_dir() else {
        skip!("../shared/fixtures/binlogs is absent");
    };
    let full = std::fs::read(fixtures.join("mysql-common__mariadb-bin.000001")).expect("fixture");
    let cut = dir.path().join("cut.000001");
    let mut f = std::fs::File::create(&cut).expect("create");
    f.write_all(&full[..full.len() - 7]).expect("write");
    drop(f);
    let out = drc()
        .args(["capture", "--binlog-file"])
        .arg(&cut)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated event at offset"), "{err}");
    // A flipped byte inside an event is caught by the checksum, with its position.
    let mut bad = full.clone();
    let at = bad.len() - 40;
    bad[at] ^= 0x55;
    let flipped = dir.path().join("flip.000001");
    std::fs::write(&flipped, &bad).expect("write");
    let out = drc()
        .args(["capture", "--binlog-file"])
        .arg(&flipped)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains("flip.000001:"),
        "{err}"
    );
}
