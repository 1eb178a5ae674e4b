//! One region in one process, `drc run` with a relay, a capture of a
//! MariaDB and an applier publishing into NATS JetStream, SIGKILLed again
//! and again while the source is busy. Afterwards the JetStream stream,
//! read from the start and replayed, equals the source tables row by row
//! (a keyless, insert-only table proves nothing was lost or doubled), and
//! every message id appears once, in stream order, with each transaction's
//! messages complete.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use drc_tests::replay::{mariadb_tables, read_jetstream, StoredMessage, TableState};
use drc_tests::{free_port, skip, MariaDb, MariaDbOptions, Nats, NatsOptions};

mod common;
use common::Proc;

/// The DRC stream, and the JetStream stream the sink makes for it.
const STREAM: &str = "a.shop";
const JS_STREAM: &str = "DRC_a_shop";

/// Statement `i` of the busy workload.
fn statement(i: usize) -> String {
    match i % 5 {
        0 | 1 => format!(
            "INSERT INTO shop.o (id, v, n) VALUES ({i}, 'v{i}', {i}.25); INSERT INTO shop.log VALUES ('row {i}')"
        ),
        2 => format!(
            "BEGIN; UPDATE shop.o SET n = n + 1, v = 'u{i}' WHERE id = {}; INSERT INTO shop.log VALUES ('upd {i}'); COMMIT",
            i / 2
        ),
        3 => format!("DELETE FROM shop.o WHERE id = {}", i / 3),
        _ => format!(
            "BEGIN; INSERT INTO shop.o (id, v, n) VALUES ({i}, 'multi', 1.5); UPDATE shop.o SET id = id + 100000 WHERE id = {i}; \
             INSERT INTO shop.log VALUES ('multi {i}'), ('multi {i} again'); COMMIT"
        ),
    }
}

fn keys() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([("shop.o".to_string(), vec!["id".to_string()])])
}

fn replay(msgs: &[StoredMessage]) -> Result<TableState, String> {
    let mut state = TableState::default();
    for m in msgs {
        let j = m.json().map_err(|e| format!("{e:#}"))?;
        state
            .apply(&j)
            .map_err(|e| format!("message {} ({}): {e:#}", m.sequence, m.id))?;
    }
    Ok(state.normalized())
}

#[test]
fn nats_applier_survives_kill9_without_loss_or_changed_ids() {
    if !MariaDb::available() || !Nats::available() {
        skip!("mariadbd or nats-server is not installed");
    }
    kill9_under_load(false);
}

/// The same with an ALTER TABLE in the middle of the load. A capture
/// restarted right before the ALTER resumes behind the schema snapshot it
/// takes at the head, which already shows the ALTER: it must hand the ALTER
/// on, not stop at it.
#[test]
fn nats_applier_survives_kill9_with_ddl_under_load() {
    if !MariaDb::available() || !Nats::available() {
        skip!("mariadbd or nats-server is not installed");
    }
    kill9_under_load(true);
}

fn kill9_under_load(ddl_mid_load: bool) {
    let src = MariaDb::start(MariaDbOptions::default()).expect("source");
    let nats = Nats::start(NatsOptions::default()).expect("nats-server");
    src.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2));
         CREATE TABLE shop.log (msg VARCHAR(50))",
    )
    .expect("schema");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let port = free_port().expect("port");
    let cfg = w.join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\n\
             [[capture]]\nstream = \"{STREAM}\"\nsource = \"{}\"\nstart = \"start\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\n\
             [[apply]]\nstream = \"{STREAM}\"\nsubscriber = \"apply-nats\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\
             max_batch_rows = 50\n\
             sink = {{ kind = \"nats\", url = \"{}\" }}\n",
            w.join("data"),
            src.url(),
            nats.url(),
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
    let statements = 300;
    let mut kills = 0;
    std::thread::scope(|s| {
        let busy = s.spawn(|| {
            for i in 0..statements {
                if ddl_mid_load && i == statements / 2 {
                    src.sql("ALTER TABLE shop.o ADD COLUMN note VARCHAR(20) NULL")
                        .expect("alter");
                }
                src.sql(&statement(i)).expect("write");
            }
        });
        // SIGKILL the whole region at uneven moments while the source is
        // busy, then start it again.
        let mut delay = 150;
        while !busy.is_finished() {
            std::thread::sleep(Duration::from_millis(delay));
            run.kill9();
            kills += 1;
            run = start();
            delay = 150 + (delay * 7 + 113) % 500;
        }
    });
    assert!(kills >= 3, "only {kills} kills during the workload");

    let want = rt
        .block_on(mariadb_tables(&src.url(), &["shop"], &keys()))
        .expect("source tables");
    assert!(want.tables["shop.log"].keyless.len() > 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let msgs = loop {
        let msgs = rt
            .block_on(read_jetstream(&nats.url(), JS_STREAM))
            .unwrap_or_default();
        if replay(&msgs).is_ok_and(|got| got == want) {
            break msgs;
        }
        assert!(
            Instant::now() < deadline,
            "JetStream never matched the source ({} messages, replay {:?})\n{}",
            msgs.len(),
            replay(&msgs).map(|s| s.tables.keys().cloned().collect::<Vec<_>>()),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    run.stop();

    // Every id once, in order; each transaction's messages complete
    // (indexes 0..n), every offset from 1 to the last present.
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<(u64, u64)> = None;
    for m in &msgs {
        assert!(seen.insert(m.id.clone()), "id {} stored twice", m.id);
        let mut parts = m.id.rsplitn(3, ':');
        let index: u64 = parts.next().and_then(|p| p.parse().ok()).expect("index");
        let offset: u64 = parts.next().and_then(|p| p.parse().ok()).expect("offset");
        assert_eq!(parts.next(), Some(STREAM));
        let ok = match last {
            None => offset == 1 && index == 0,
            Some((o, i)) => (offset == o && index == i + 1) || (offset == o + 1 && index == 0),
        };
        assert!(ok, "message {} ({}) after {last:?}", m.sequence, m.id);
        let j = m.json().expect("JSON");
        let count = j["transaction"]["event_count"]
            .as_u64()
            .expect("event_count");
        assert!(index < count, "{}", m.id);
        last = Some((offset, index));
    }
    eprintln!(
        "{kills} kills; {} messages of {} transactions, each once",
        msgs.len(),
        last.map_or(0, |(o, _)| o)
    );
}
