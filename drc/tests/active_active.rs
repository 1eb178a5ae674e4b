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
    // Nor did a's changes cross the link back to a: b's stream holds them
    // whole (b's capture marked them with a's origin), a's copy of it holds
    // them as stubs at the same offsets.
    let in_b = origins(&w.join("relay-b").join("streams").join("b.shop"));
    let in_a = origins(&w.join("relay-a").join("streams").join("b.shop"));
    assert_eq!(in_b.len(), in_a.len(), "a's copy keeps b's offsets");
    let mut stubs = 0;
    for ((ob, origin, whole_b), (oa, origin_a, whole_a)) in in_b.iter().zip(&in_a) {
        assert_eq!((ob, origin), (oa, origin_a), "offset {ob}");
        assert!(
            whole_b,
            "offset {ob}: b's own log holds the whole transaction"
        );
        if origin == "a.shop" {
            assert!(
                !whole_a,
                "offset {oa}: a's own change came back across the link"
            );
            stubs += 1;
        } else {
            assert!(whole_a, "offset {oa}: b's change arrived without its rows");
        }
    }
    assert!(
        stubs > 0,
        "b's stream holds a's changes (as b applied them)"
    );
    let errors: Vec<String> = logs()
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
}

/// (offset, origin, whole) of every record of the stream log in `dir`; a
/// record is whole when it carries its changes or DDL (not a stub).
fn origins(dir: &std::path::Path) -> Vec<(u64, String, bool)> {
    use prost::Message as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let log = drc_log::Log::open(dir, drc_log::LogConfig::default())
            .await
            .expect("open the stream log");
        let mut reader = log.reader(log.first_offset()).expect("reader");
        let mut out = Vec::new();
        while let Some((o, rec)) = reader.try_next().expect("read") {
            let t = drc_proto::v1::Transaction::decode(rec).expect("decode");
            let whole = !t.changes.is_empty() || t.ddl.is_some_and(|d| !d.statement.is_empty());
            out.push((o.0, t.origin, whole));
        }
        log.close().await.expect("close");
        out
    })
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

/// A chain a → b → c: region b applies a's stream, and its capture marks
/// those transactions with a's origin; region c replicates b's stream and
/// applies them too (they are not c's own), recording a's origin in its
/// `drc.applied` rows, so c's own capture would carry them on as a's.
#[test]
fn a_chain_passes_the_first_regions_changes_through_the_middle_one() {
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let dbs: Vec<MariaDb> = (1..=3)
        .map(|i| {
            MariaDb::start(MariaDbOptions {
                server_id: i,
                gtid_domain_id: Some(i),
                ..Default::default()
            })
            .expect("database")
        })
        .collect();
    dbs[0]
        .sql("CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(30))")
        .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let ports: Vec<u16> = (0..3).map(|_| free_port().expect("port")).collect();
    let relay = |i: usize| {
        format!(
            "{{ url = \"http://127.0.0.1:{}\", insecure_plaintext = true }}",
            ports[i]
        )
    };
    let relay_section = |i: usize, name: &str| {
        format!(
            "region = \"{name}\"\n[relay]\nlisten = \"127.0.0.1:{}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n",
            ports[i],
            w.join(format!("relay-{name}"))
        )
    };
    let capture = |i: usize, name: &str| {
        format!(
            "[[capture]]\nstream = \"{name}.shop\"\nsource = \"{}\"\nstart = \"start\"\ninclude = [\"shop.*\"]\nrelay = {}\n",
            dbs[i].url(),
            relay(i)
        )
    };
    let upstream = |from: usize, name: &str, me: &str| {
        format!(
            "[[relay.upstreams]]\nurl = \"http://127.0.0.1:{}\"\ninsecure_plaintext = true\nstreams = [\"{name}.shop\"]\nsubscriber = \"relay-{me}\"\n",
            ports[from]
        )
    };
    let apply = |i: usize, stream: &str, me: &str| {
        format!(
            "[[apply]]\nstream = \"{stream}.shop\"\nsubscriber = \"apply-{me}\"\nrelay = {}\nsink = {{ kind = \"mysql\", url = \"{}\" }}\n",
            relay(i),
            dbs[i].url()
        )
    };
    let configs = [
        format!("{}{}", relay_section(0, "a"), capture(0, "a")),
        format!(
            "{}{}{}{}",
            relay_section(1, "b"),
            upstream(0, "a", "b"),
            capture(1, "b"),
            apply(1, "a", "b")
        ),
        format!(
            "{}{}{}",
            relay_section(2, "c"),
            upstream(1, "b", "c"),
            apply(2, "b", "c")
        ),
    ];
    let drc = env!("CARGO_BIN_EXE_drc");
    let mut procs = Vec::new();
    for (i, (cfg, name)) in configs.iter().zip(["a", "b", "c"]).enumerate() {
        let path = w.join(format!("{name}.toml"));
        std::fs::write(&path, cfg).expect("config");
        procs.push(Proc::spawn(
            ["drc run (a)", "drc run (b)", "drc run (c)"][i],
            Command::new(drc),
            &["run", "--config", &path.to_string_lossy()],
            &w.join(format!("{name}.log")),
        ));
    }
    let logs = || {
        ["a", "b", "c"]
            .iter()
            .map(|n| {
                format!(
                    "--- {n}.log\n{}",
                    std::fs::read_to_string(w.join(format!("{n}.log"))).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for i in 0..30 {
        dbs[0]
            .sql(&format!("INSERT INTO shop.o VALUES ({i}, 'a{i}')"))
            .expect("write in a");
    }
    dbs[0]
        .sql("UPDATE shop.o SET v = 'changed' WHERE id < 5")
        .expect("update in a");
    let want = rows(&dbs[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&dbs[2]) != want {
        assert!(
            Instant::now() < deadline,
            "region c holds a's rows through b\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rows(&dbs[1]), want);
    // c applied them as a's changes, not as b's own: every group c's sink
    // committed for b.shop wrote its drc.applied row with a's origin (what
    // c's own capture would mark them with). Read from c's binlog, since
    // settled rows leave the table.
    let out = Command::new(drc)
        .args([
            "capture",
            "--source",
            &dbs[2].url(),
            "--from-start",
            "--stop-at-end",
        ])
        .args(["--include", "drc.applied"])
        .output()
        .expect("drc capture of c");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut groups = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let t: serde_json::Value = serde_json::from_str(line).expect("json line");
        for c in t["changes"].as_array().into_iter().flatten() {
            let after = &c["after"];
            if c["op"] == "insert" && after["stream"] == "b.shop" {
                groups += 1;
                assert_eq!(after["origin"], "a.shop", "{line}");
            }
        }
    }
    assert!(groups > 0, "c applied b.shop in groups");
    for p in &mut procs {
        p.stop();
    }
    let errors: Vec<String> = logs()
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
}
