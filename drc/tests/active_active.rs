//! Two regions, both taking writes, on loopback: `drc run` in each (relay
//! replicating the other region's stream, capture of the local MariaDB,
//! MySQL applier of the other region's stream). Both databases converge,
//! every change is applied once in the other region, and nothing comes back:
//! each region's applier leaves out the transactions marked with its own
//! origin, and once the writes stop the streams stop growing.

use std::process::Command;
use std::time::{Duration, Instant};

use drc_tests::{free_port, skip, MariaDb, MariaDbOptions};

mod common;
use common::Proc;

fn region_config(
    region: &str,
    other: &str,
    port: u16,
    other_port: u16,
    data: &std::path::Path,
    db: &MariaDb,
) -> String {
    format!(
        "region = \"{region}\"\n\
         [relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\ninsecure_plaintext = true\n\n\
         [[relay.upstreams]]\nurl = \"http://127.0.0.1:{other_port}\"\ninsecure_plaintext = true\n\
         streams = [\"{other}.shop\"]\nsubscriber = \"relay-{region}\"\n\n\
         [[capture]]\nstream = \"{region}.shop\"\nsource = \"{url}\"\nstart = \"start\"\n\
         relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\n\
         [[apply]]\nstream = \"{other}.shop\"\nsubscriber = \"apply-{region}\"\n\
         relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\
         sink = {{ kind = \"mysql\", url = \"{url}\" }}\n",
        url = db.url(),
    )
}

/// Every row of shop.o, in order.
fn rows(db: &MariaDb) -> String {
    db.sql("SELECT id, v FROM shop.o ORDER BY id")
        .unwrap_or_default()
}

/// The applied checkpoint of `stream` in `db` (0 when none yet).
fn checkpoint(db: &MariaDb, stream: &str) -> u64 {
    db.sql(&format!(
        "SELECT `offset` FROM drc.checkpoints WHERE stream = '{stream}'"
    ))
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

#[test]
fn two_regions_converge_and_nothing_loops() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let a = MariaDb::start(MariaDbOptions {
        server_id: 1,
        gtid_domain_id: Some(1),
        ..Default::default()
    })
    .expect("region a database");
    let b = MariaDb::start(MariaDbOptions {
        server_id: 2,
        gtid_domain_id: Some(2),
        ..Default::default()
    })
    .expect("region b database");
    // The schema is made in region a only; region b gets it replicated.
    a.sql("CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(30))")
        .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let (pa, pb) = (free_port().expect("port"), free_port().expect("port"));
    let cfg_a = w.join("a.toml");
    let cfg_b = w.join("b.toml");
    std::fs::write(
        &cfg_a,
        region_config("a", "b", pa, pb, &w.join("relay-a"), &a),
    )
    .expect("a.toml");
    std::fs::write(
        &cfg_b,
        region_config("b", "a", pb, pa, &w.join("relay-b"), &b),
    )
    .expect("b.toml");
    let drc = env!("CARGO_BIN_EXE_drc");
    let mut run_a = Proc::spawn(
        "drc run (a)",
        Command::new(drc),
        &["run", "--config", &cfg_a.to_string_lossy()],
        &w.join("a.log"),
    );
    let mut run_b = Proc::spawn(
        "drc run (b)",
        Command::new(drc),
        &["run", "--config", &cfg_b.to_string_lossy()],
        &w.join("b.log"),
    );
    let logs = || {
        format!(
            "--- a.log\n{}\n--- b.log\n{}",
            std::fs::read_to_string(w.join("a.log")).unwrap_or_default(),
            std::fs::read_to_string(w.join("b.log")).unwrap_or_default()
        )
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}\n{}", logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the schema reaches region b", &|| {
        b.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'")
            .map(|s| s == "1")
            .unwrap_or(false)
    });

    // Both regions write, each in its own key range, interleaved.
    for i in 0..40 {
        a.sql(&format!("INSERT INTO shop.o VALUES ({i}, 'a{i}')"))
            .expect("write in a");
        b.sql(&format!("INSERT INTO shop.o VALUES ({}, 'b{i}')", 1000 + i))
            .expect("write in b");
        if i % 5 == 4 {
            a.sql(&format!(
                "UPDATE shop.o SET v = 'a{i} again' WHERE id = {i}"
            ))
            .expect("update in a");
            b.sql(&format!("DELETE FROM shop.o WHERE id = {}", 1000 + i - 1))
                .expect("delete in b");
        }
    }
    let want = a_and_b_rows();
    wait("both regions hold every row", &|| {
        rows(&a) == want && rows(&b) == want
    });

    // Nothing comes back: once the writes stop, the streams stop growing
    // (an applied change that came back would be applied again and grow the
    // other stream again, or stop the applier on a duplicate key).
    let settled = || (checkpoint(&a, "b.shop"), checkpoint(&b, "a.shop"));
    std::thread::sleep(Duration::from_secs(2));
    let before = settled();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        settled(),
        before,
        "the streams grew with no writes\n{}",
        logs()
    );
    assert_eq!(rows(&a), want);
    assert_eq!(rows(&b), want);
    for db in [&a, &b] {
        assert_eq!(
            db.sql("SELECT COUNT(*) FROM drc.conflicts")
                .expect("conflicts"),
            "0",
            "no conflict: no change was applied twice"
        );
    }
    // Region b's applied transactions of a.shop are marked as a's in b's own
    // stream and left out by a's applier: a applied exactly b's 40 inserts,
    // 8 deletes and nothing of its own (its rows would be duplicate keys).
    run_a.stop();
    run_b.stop();
    let errors: Vec<String> = logs()
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
}

/// The rows both regions must end with.
fn a_and_b_rows() -> String {
    let mut rows = Vec::new();
    for i in 0..40 {
        let v = if i % 5 == 4 {
            format!("a{i} again")
        } else {
            format!("a{i}")
        };
        rows.push(format!("{i}\t{v}"));
    }
    for i in 0..40 {
        let deleted = (0..40).any(|j| j % 5 == 4 && 1000 + j - 1 == 1000 + i);
        if !deleted {
            rows.push(format!("{}\tb{i}", 1000 + i));
        }
    }
    rows.join("\n")
}
