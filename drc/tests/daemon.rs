//! `drc run` as a daemon: systemd notifications, `/metrics`, `/healthz`,
//! `/readyz`, `drc status`, and graceful stops under load.
//!
//! One region: relay, a capture of database A, an applier of that stream
//! into database B. A writer commits transactions into A the whole time
//! while the daemon is stopped with SIGTERM and restarted, several times.
//! Each stop must exit 0 within a few seconds; afterwards B must hold every
//! row of A exactly once (a table without a primary key shows a repeated
//! insert as a second row), and the relay's stream one record per source
//! transaction.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_tests::{free_port, skip, MariaDb, MariaDbOptions};

mod common;
use common::{http_get, Proc};

/// Notifications received on the test's NOTIFY_SOCKET so far.
fn notifications(sock: &UnixDatagram, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

fn wait_for(
    what: &str,
    timeout: Duration,
    logs: &dyn Fn() -> String,
    done: &mut dyn FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn graceful_stops_under_load_lose_and_repeat_nothing() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let a = MariaDb::start(MariaDbOptions::default()).expect("database a");
    let b = MariaDb::start(MariaDbOptions {
        server_id: 2,
        ..Default::default()
    })
    .expect("database b");
    a.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.log (n INT NOT NULL, v VARCHAR(20)); \
         CREATE TABLE shop.o (id INT PRIMARY KEY, qty INT NOT NULL)",
    )
    .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let (relay_port, metrics_port) = (free_port().expect("port"), free_port().expect("port"));
    let cfg = w.join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "region = \"a\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [relay]\nlisten = \"127.0.0.1:{relay_port}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\
             [[capture]]\nstream = \"a.shop\"\nsource = \"{}\"\nstart = \"start\"\n\
             relay = {{ url = \"http://127.0.0.1:{relay_port}\", insecure_plaintext = true }}\n\
             [[apply]]\nstream = \"a.shop\"\nsubscriber = \"apply-b\"\n\
             relay = {{ url = \"http://127.0.0.1:{relay_port}\", insecure_plaintext = true }}\n\
             sink = {{ kind = \"mysql\", url = \"{}\" }}\n",
            w.join("relay"),
            a.url(),
            b.url()
        ),
    )
    .expect("config");
    let notify_path = w.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify.set_nonblocking(true).expect("nonblocking");
    let log_path = w.join("drc.log");
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drc"));
        cmd.env("NOTIFY_SOCKET", &notify_path);
        Proc::spawn(
            "drc run",
            cmd,
            &["run", "--config", &cfg.to_string_lossy()],
            &log_path,
        )
    };

    // The writer: one transaction per step, two tables, until told to stop.
    let stop_writes = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (Arc::clone(&stop_writes), Arc::clone(&written));
        let url = a.url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use mysql_async::prelude::Queryable;
                let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let sql = format!(
                        "BEGIN; INSERT INTO shop.log VALUES ({n}, 'row {n}'); \
                         INSERT INTO shop.o VALUES ({}, 1) ON DUPLICATE KEY UPDATE qty = qty + 1; COMMIT",
                        n % 50
                    );
                    conn.query_drop(sql).await.expect("write");
                    written.store(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        })
    };

    let mut seen = Vec::new();
    let mut stops = Vec::new();
    for round in 0..4 {
        let mut drc = start();
        wait_for("READY=1", Duration::from_secs(30), &logs, &mut || {
            notifications(&notify, &mut seen);
            seen.iter().any(|m| m.contains("READY=1"))
        });
        seen.clear();
        wait_for(
            "/readyz answers 200",
            Duration::from_secs(30),
            &logs,
            &mut || http_get(metrics_port, "/readyz").is_some_and(|(c, _)| c == 200),
        );
        assert_eq!(
            http_get(metrics_port, "/healthz").map(|(c, _)| c),
            Some(200)
        );
        // Let it work under load for a while, then stop it mid-stream.
        std::thread::sleep(Duration::from_millis(700 + 400 * round));
        if round == 3 {
            let (code, text) = http_get(metrics_port, "/metrics").expect("metrics");
            assert_eq!(code, 200);
            for name in [
                "drc_capture_transactions_total{stream=\"a.shop\"}",
                "drc_capture_lag_seconds{stream=\"a.shop\"}",
                "drc_stream_last_offset{stream=\"a.shop\",role=\"local\"}",
                "drc_apply_transactions_total{stream=\"a.shop\",sink=\"mysql\",subscriber=\"apply-b\"}",
                "drc_apply_lag_seconds{stream=\"a.shop\",sink=\"mysql\",subscriber=\"apply-b\"}",
            ] {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(name))
                    .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"));
                let v: f64 = line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("a value");
                if name.contains("_total") || name.contains("last_offset") {
                    assert!(v > 0.0, "{line}");
                }
            }
            let out = Command::new(env!("CARGO_BIN_EXE_drc"))
                .args(["status", "--config", &cfg.to_string_lossy()])
                .output()
                .expect("drc status");
            let table = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "drc status: {table}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with("a.shop") && l.contains("local")),
                "drc status lists the stream:\n{table}"
            );
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with("apply-b") && l.contains("a.shop")),
                "drc status lists the subscriber:\n{table}"
            );
            assert!(
                table.contains("apply a.shop -> mysql (apply-b)"),
                "drc status lists the pipeline:\n{table}"
            );
        }
        let t = Instant::now();
        drc.stop();
        stops.push(t.elapsed());
        notifications(&notify, &mut seen);
        assert!(
            seen.iter().any(|m| m.contains("STOPPING=1")),
            "STOPPING=1 sent: {seen:?}"
        );
        seen.clear();
    }
    for d in &stops {
        assert!(*d < Duration::from_secs(5), "graceful stops took {stops:?}");
    }
    stop_writes.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let n = written.load(Ordering::Relaxed);
    assert!(n > 200, "the writer committed {n} transactions");

    // A last run catches up with what was written while it was down.
    let mut drc = start();
    let want_o = a
        .sql("SELECT id, qty FROM shop.o ORDER BY id")
        .expect("a rows");
    wait_for(
        "b holds every row of a",
        Duration::from_secs(60),
        &logs,
        &mut || {
            b.sql("SELECT COUNT(*) FROM shop.log").ok().as_deref() == Some(n.to_string().as_str())
                && b.sql("SELECT id, qty FROM shop.o ORDER BY id")
                    .ok()
                    .as_deref()
                    == Some(want_o.as_str())
        },
    );
    drc.stop();
    assert_eq!(
        b.sql("SELECT COUNT(*), COUNT(DISTINCT n), MIN(n), MAX(n) FROM shop.log")
            .expect("log rows"),
        format!("{n}\t{n}\t1\t{n}"),
        "every row once"
    );
    assert_eq!(
        b.sql("SELECT COUNT(*) FROM drc.conflicts")
            .expect("conflicts"),
        "0"
    );
    // One record per source transaction: the DDL (3 statements) and the n
    // writes; nothing doubled in the relay across the restarts either.
    let last = common::last_offset(&w.join("relay").join("streams").join("a.shop"));
    assert_eq!(last, n + 3, "relay records\n{}", logs());
    let applied = b
        .sql("SELECT `offset` FROM drc.checkpoints WHERE stream = 'a.shop'")
        .expect("checkpoint");
    assert_eq!(
        applied,
        last.to_string(),
        "the checkpoint is the stream's end"
    );
    let errors: Vec<String> = logs()
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
}
