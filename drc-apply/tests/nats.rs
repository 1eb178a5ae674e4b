//! The NATS JetStream sink against real servers: a random workload captured
//! from MariaDB (inserts, updates, key changes, deletes, multi-row
//! transactions, a keyless table, DDL, TRUNCATE, a table whose name needs
//! escaping) published into a real nats-server, read back from the start
//! with a consumer and replayed, gives the source's tables row by row.
//! Calls cancelled mid-batch, batches delivered again, a checkpoint behind
//! the published messages and a killed broker leave every message once, in
//! order, with stable ids; JetStream drops a repeated id. Bad setups stop
//! with definite errors that name the fix.

use std::collections::BTreeMap;
use std::time::Duration;

use drc_apply::sink::nats::{NatsSink, NatsSinkConfig};
use drc_apply::{ApplyError, Batch, Sink};
use drc_proto::v1 as pb;
use drc_tests::replay::{mariadb_tables, read_jetstream, StoredMessage, TableState};
use drc_tests::{skip, MariaDb, MariaDbOptions, Nats, NatsOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;

use common::{batches, capture_all};

const STREAM: &str = "a.w";

fn servers() -> Option<(MariaDb, Nats)> {
    if !MariaDb::available() || !Nats::available() {
        return None;
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    let nats = Nats::start(NatsOptions::default()).expect("start nats-server");
    Some((db, nats))
}

fn keys() -> BTreeMap<String, Vec<String>> {
    [
        ("w.a", vec!["id"]),
        ("w.b", vec!["k"]),
        ("w.c", vec!["id"]),
        ("w.odd.t %", vec!["id"]),
    ]
    .into_iter()
    .map(|(t, k)| (t.to_string(), k.into_iter().map(String::from).collect()))
    .collect()
}

fn text(rng: &mut StdRng) -> String {
    const WORDS: [&str; 8] = [
        "alpha",
        "béta",
        "gamma ü",
        "δέλτα",
        "e'q",
        "x\\y",
        "😀",
        "a.b %",
    ];
    let n = rng.gen_range(1..4);
    (0..n)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\\', "\\\\")
        .replace('\'', "''")
}

/// One random statement (or transaction) of the workload.
fn random_statement(rng: &mut StdRng, with_c: bool, nested: bool) -> String {
    let id = rng.gen_range(0..60);
    match rng.gen_range(0..12) {
        0 | 1 => format!(
            "INSERT IGNORE INTO w.a (id, v, n, d) VALUES ({id}, '{}', {}, {}.{:02})",
            text(rng),
            rng.gen_range(-1000..1000),
            rng.gen_range(-500..500),
            rng.gen_range(0..100)
        ),
        2 => format!(
            "UPDATE w.a SET v = '{}', n = n + 1 WHERE id = {id}",
            text(rng)
        ),
        3 => format!("UPDATE IGNORE w.a SET id = id + 100 WHERE id = {id}"),
        4 => format!("DELETE FROM w.a WHERE id = {id}"),
        5 => format!(
            "INSERT INTO w.b VALUES ('k{id}', {}) ON DUPLICATE KEY UPDATE x = IF(x IS NULL, 1, NULL)",
            rng.gen_range(0..9)
        ),
        6 => format!("INSERT INTO w.nokey VALUES ({}, '{}')", id % 5, text(rng)),
        7 => format!("DELETE FROM w.nokey WHERE a = {} LIMIT 1", id % 5),
        8 => format!(
            "UPDATE w.nokey SET b = '{}' WHERE a = {} LIMIT 1",
            text(rng),
            id % 5
        ),
        9 => format!(
            "INSERT INTO w.`odd.t %` (id, v) VALUES ({id}, '{}') ON DUPLICATE KEY UPDATE v = CONCAT(v, '+')",
            text(rng)
        ),
        10 if with_c => format!(
            "INSERT INTO w.c VALUES ({id}, NOW()) ON DUPLICATE KEY UPDATE t = t + INTERVAL 1 SECOND"
        ),
        10 | 11 if nested => format!("DELETE FROM w.a WHERE id = {}", id + 1),
        _ => {
            // A multi-row, multi-table transaction.
            let mut s = String::from("BEGIN;");
            for _ in 0..rng.gen_range(2..6) {
                s.push_str(&random_statement(rng, with_c, true));
                s.push(';');
            }
            s.push_str("INSERT INTO w.a (id, v) SELECT seq + 1000, 'bulk' FROM w.seq_1_to_5 ON DUPLICATE KEY UPDATE n = IFNULL(n, 0) + 1;");
            s.push_str("COMMIT");
            s
        }
    }
}

/// Runs a seeded random workload with DDL in the middle.
async fn workload(src: &MariaDb, seed: u64, statements: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    src.exec(
        "CREATE DATABASE w;
         CREATE TABLE w.a (id INT PRIMARY KEY, v VARCHAR(100), n INT, d DECIMAL(10,2)) DEFAULT CHARSET=utf8mb4;
         CREATE TABLE w.b (k VARCHAR(20) PRIMARY KEY, x INT) DEFAULT CHARSET=utf8mb4;
         CREATE TABLE w.nokey (a INT, b VARCHAR(100)) DEFAULT CHARSET=utf8mb4;
         CREATE TABLE w.`odd.t %` (id INT PRIMARY KEY, v TEXT) DEFAULT CHARSET=utf8mb4",
    )
    .await
    .expect("schema");
    let mut with_c = false;
    for i in 0..statements {
        if i == statements / 3 {
            src.exec("ALTER TABLE w.a ADD COLUMN extra VARCHAR(10) NULL")
                .await
                .expect("alter");
            src.exec("UPDATE w.a SET extra = 'x' WHERE id % 3 = 0")
                .await
                .expect("update extra");
        }
        if i == statements / 2 {
            src.exec("TRUNCATE TABLE w.b").await.expect("truncate");
            src.exec("CREATE TABLE w.c (id INT PRIMARY KEY, t DATETIME)")
                .await
                .expect("create c");
            with_c = true;
        }
        let stmt = random_statement(&mut rng, with_c, false);
        src.exec(&stmt)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e:#}"));
    }
}

/// The messages of the sink's JetStream stream, checked: ids unique and
/// strictly increasing in (offset, index), each message valid JSON on the
/// subject of its table.
async fn stored(nats: &Nats, sink: &NatsSink) -> Vec<StoredMessage> {
    let msgs = read_jetstream(&nats.url(), &sink.jetstream_stream(STREAM))
        .await
        .expect("read the stream back");
    let mut last: Option<(u64, u64)> = None;
    for m in &msgs {
        let mut parts = m.id.rsplitn(3, ':');
        let index: u64 = parts.next().and_then(|p| p.parse().ok()).expect("index");
        let offset: u64 = parts.next().and_then(|p| p.parse().ok()).expect("offset");
        assert_eq!(parts.next(), Some(STREAM), "id {}", m.id);
        assert!(
            last.is_none_or(|l| (offset, index) > l),
            "message {} ({}) after {last:?}: a repeat or out of order",
            m.sequence,
            m.id
        );
        last = Some((offset, index));
        let j = m.json().expect("JSON");
        assert_eq!(j["source"]["offset"], offset, "{}", m.id);
        assert_eq!(j["source"]["index"], index, "{}", m.id);
        if j.get("ddl").is_some() {
            assert!(m.subject.ends_with(".a%2Ew._schema"), "{}", m.subject);
        } else {
            let s = &j["source"];
            let want = sink.subject_for(
                STREAM,
                s["db"].as_str().unwrap_or_default(),
                s["table"].as_str().unwrap_or_default(),
            );
            assert_eq!(m.subject, want, "{}", m.id);
        }
    }
    msgs
}

fn replay(msgs: &[StoredMessage]) -> TableState {
    let mut state = TableState::default();
    for m in msgs {
        let j = m.json().expect("JSON");
        state
            .apply(&j)
            .unwrap_or_else(|e| panic!("replay message {} ({}): {e:#}", m.sequence, m.id));
    }
    state.normalized()
}

fn assert_same(want: &TableState, got: &TableState) {
    assert_eq!(
        want.tables.keys().collect::<Vec<_>>(),
        got.tables.keys().collect::<Vec<_>>(),
        "same non-empty tables"
    );
    for (name, t) in &want.tables {
        let g = &got.tables[name];
        assert_eq!(t.keyed.len(), g.keyed.len(), "rows of {name}");
        for (k, row) in &t.keyed {
            assert_eq!(Some(row), g.keyed.get(k), "{name} row {k}");
        }
        assert_eq!(t.keyless, g.keyless, "keyless rows of {name}");
    }
}

/// The number of messages the transactions turn into.
fn message_count(txns: &[pb::Transaction]) -> usize {
    txns.iter()
        .map(|t| {
            let ddl = t.ddl.as_ref().filter(|d| !d.statement.trim().is_empty());
            let truncate =
                ddl.is_some_and(|d| d.statement.to_ascii_uppercase().starts_with("TRUNCATE"));
            t.changes.len() + usize::from(ddl.is_some()) + usize::from(truncate)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_workload_replays_to_the_source_tables() {
    let Some((src, nats)) = servers() else {
        skip!("mariadbd or nats-server is not installed");
    };
    workload(&src, 7, 400).await;
    let txns = capture_all(&src).await;
    assert!(txns.iter().filter(|t| t.ddl.is_some()).count() >= 7);
    let mut sink = NatsSink::new(NatsSinkConfig::new(nats.url())).expect("sink");
    assert_eq!(sink.name(), "nats");
    let g = sink.guarantees();
    assert!(!g.atomic && g.durable && g.idempotent);
    assert_eq!(sink.checkpoint(STREAM).await.expect("checkpoint").offset, 0);
    let started = std::time::Instant::now();
    for b in batches(STREAM, &txns, 25) {
        sink.apply(&b).await.expect("apply");
    }
    let elapsed = started.elapsed();
    let n = txns.len() as u64;
    let cp = sink.checkpoint(STREAM).await.expect("checkpoint");
    assert_eq!(cp.offset, n);
    assert_eq!(
        cp.position.as_ref().map(|p| &p.gtid),
        txns.last()
            .and_then(|t| t.position.as_ref())
            .map(|p| &p.gtid)
    );

    let msgs = stored(&nats, &sink).await;
    assert_eq!(
        msgs.len(),
        message_count(&txns),
        "one message per change and DDL"
    );
    eprintln!(
        "published {} messages of {n} transactions in {elapsed:?}",
        msgs.len()
    );
    // The envelope of one change carries the source position.
    let first_row = msgs
        .iter()
        .find(|m| m.subject == "drc.a%2Ew.w.a")
        .expect("a row of w.a");
    let j = first_row.json().expect("JSON");
    let offset = j["source"]["offset"].as_u64().expect("offset");
    let txn = &txns[offset as usize - 1];
    let pos = txn.position.as_ref().expect("position");
    assert_eq!(j["source"]["gtid"], pos.gtid.as_str());
    assert_eq!(j["source"]["file"], pos.file.as_str());
    assert_eq!(j["source"]["pos"], pos.pos);
    assert_eq!(j["source"]["connector"], "drc");
    assert_eq!(j["op"], "c");
    assert_eq!(j["ts_ms"], txn.commit_ts_us / 1000);
    // The escaped table's subject and the truncate.
    assert!(msgs
        .iter()
        .any(|m| m.subject == "drc.a%2Ew.w.odd%2Et%20%25"));
    assert!(msgs
        .iter()
        .any(|m| m.subject == "drc.a%2Ew.w.b" && m.json().is_ok_and(|j| j["op"] == "t")));

    let want = mariadb_tables(&src.url(), &["w"], &keys())
        .await
        .expect("source tables");
    assert!(want.tables["w.a"].keyed.len() > 10, "a busy table");
    assert_same(&want, &replay(&msgs));

    // Everything delivered again: nothing is published twice.
    for b in batches(STREAM, &txns, 40) {
        sink.apply(&b).await.expect("apply again");
    }
    assert_eq!(stored(&nats, &sink).await.len(), msgs.len());
}

/// Polls `f` until it is ready, or drops it at its `polls`-th wait (a crash
/// at that point, as far as the sink can tell).
async fn cut_after<R>(polls: usize, f: impl std::future::Future<Output = R>) -> Option<R> {
    let mut f = std::pin::pin!(f);
    let mut waits = 0;
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => {
            waits += 1;
            if waits >= polls {
                std::task::Poll::Ready(None)
            } else {
                std::task::Poll::Pending
            }
        }
    })
    .await
}

/// Sets the checkpoint of `STREAM` in the default bucket to `offset` (a
/// crash between the publish acks and the checkpoint, seen from outside).
async fn set_checkpoint(nats: &Nats, offset: u64) {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value("drc_checkpoints").await.expect("bucket");
    let value = format!("{{\"stream\":\"{STREAM}\",\"offset\":{offset}}}");
    kv.put(STREAM, value.into()).await.expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_redelivery_and_a_killed_broker_leave_each_message_once() {
    let Some((src, mut nats)) = servers() else {
        skip!("mariadbd or nats-server is not installed");
    };
    workload(&src, 11, 250).await;
    let txns = capture_all(&src).await;
    let all = batches(STREAM, &txns, 12);
    let want_msgs = message_count(&txns);
    let mut rng = StdRng::seed_from_u64(3);

    // Calls cancelled at random points (a crash of the applier as the sink
    // sees it), each followed by a new sink resuming from its checkpoint.
    let mut sink = NatsSink::new(NatsSinkConfig::new(nats.url())).expect("sink");
    let mut cancelled = 0;
    let mut retried = 0;
    let mut attempt = 0;
    loop {
        let cp = sink.checkpoint(STREAM).await.expect("checkpoint").offset;
        let Some(next) = all.iter().find(|b| b.last_offset > cp) else {
            break;
        };
        // Every other call is cut short after a random number of waits.
        attempt += 1;
        let polls = if attempt % 2 == 1 {
            rng.gen_range(1..4)
        } else {
            usize::MAX
        };
        match cut_after(polls, sink.apply(next)).await {
            Some(Ok(())) => {}
            // A publish of the cancelled call that arrives late makes the
            // next expected sequence wrong: retried from the checkpoint,
            // as the applier does.
            Some(Err(e)) if e.is_transient() => retried += 1,
            Some(Err(e)) => panic!("apply: {e}"),
            None => {
                cancelled += 1;
                sink = NatsSink::new(NatsSinkConfig::new(nats.url())).expect("new sink");
            }
        }
    }
    assert!(cancelled >= 5, "only {cancelled} calls were cut short");
    eprintln!("{cancelled} calls cancelled, {retried} retried");
    let msgs = stored(&nats, &sink).await;
    assert_eq!(
        msgs.len(),
        want_msgs,
        "every message once after {cancelled} cancelled calls"
    );

    // A checkpoint far behind what JetStream holds (a crash between the acks
    // and the checkpoint): the batches come again, nothing is stored twice.
    set_checkpoint(&nats, 5).await;
    let mut sink = NatsSink::new(NatsSinkConfig::new(nats.url())).expect("sink");
    assert_eq!(sink.checkpoint(STREAM).await.expect("checkpoint").offset, 5);
    for b in all.iter().filter(|b| b.last_offset > 5) {
        sink.apply(b).await.expect("redeliver");
    }
    assert_eq!(stored(&nats, &sink).await.len(), want_msgs);

    // A repeat of a stored id within the duplicate window is dropped by
    // JetStream itself, even when its bytes come from another publisher.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let repeat = &msgs[msgs.len() / 2];
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", repeat.id.as_str());
    let ack = js
        .publish_with_headers(
            repeat.subject.clone(),
            headers,
            repeat.payload.clone().into(),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(ack.duplicate, "JetStream took a repeated id {}", repeat.id);
    assert_eq!(ack.sequence, repeat.sequence);

    // The broker killed with kill -9 mid-batch and restarted: the call
    // fails (transient) or lands; after the restart everything is there once.
    // (Into a new JetStream stream and bucket, so the batch is published.)
    let mut sink = NatsSink::new(NatsSinkConfig {
        ack_timeout_ms: 2000,
        jetstream_stream: "KILLED_{stream}".into(),
        jetstream_subjects: vec!["killed.{stream}.>".into()],
        subject: "killed.{stream}.{db}.{table}".into(),
        ddl_subject: "killed.{stream}._schema".into(),
        kv_bucket: "killed".into(),
        ..NatsSinkConfig::new(nats.url())
    })
    .expect("sink");
    sink.checkpoint(STREAM).await.expect("checkpoint");
    let big = batches(STREAM, &txns, txns.len()).remove(0);
    {
        let apply = sink.apply(&big);
        tokio::pin!(apply);
        let early = tokio::time::timeout(Duration::from_millis(3), &mut apply).await;
        nats.kill9().expect("kill -9 nats-server");
        match early {
            Ok(r) => eprintln!("the batch ended before the kill: {r:?}"),
            Err(_) => match apply.await {
                Ok(()) => eprintln!("the batch was acknowledged before the kill"),
                Err(e) => {
                    eprintln!("the kill cut the batch short: {e}");
                    assert!(e.is_transient(), "a killed broker is transient: {e}");
                }
            },
        }
    }
    nats.restart().expect("restart nats-server");
    let mut tries = 0;
    let before_retry = read_jetstream(&nats.url(), &sink.jetstream_stream(STREAM))
        .await
        .expect("read")
        .len();
    eprintln!("after the kill JetStream holds {before_retry} of {want_msgs} messages");
    loop {
        tries += 1;
        let r = match sink.checkpoint(STREAM).await {
            Ok(_) => sink.apply(&big).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => break,
            Err(e) if e.is_transient() && tries < 30 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("after the restart: {e}"),
        }
    }
    let msgs = stored(&nats, &sink).await;
    assert_eq!(msgs.len(), want_msgs);
    let want = mariadb_tables(&src.url(), &["w"], &keys())
        .await
        .expect("source tables");
    assert_same(&want, &replay(&msgs));
}

fn row_txn(seq: u64, value: String) -> pb::Transaction {
    let col = |n: &str| pb::Column {
        name: n.into(),
        ..Default::default()
    };
    pb::Transaction {
        position: Some(pb::SourcePosition {
            gtid: format!("0-1-{seq}"),
            file: "binlog.000001".into(),
            pos: 100 + seq,
            gtid_set: format!("0-1-{seq}"),
        }),
        changes: vec![pb::RowChange {
            op: pb::Op::Insert as i32,
            schema: "d".into(),
            table: "t".into(),
            columns: vec![col("id"), col("v")],
            primary_key: vec![0],
            before: None,
            after: Some(pb::Row {
                values: vec![
                    pb::Value {
                        kind: Some(pb::value::Kind::Int(seq as i64)),
                    },
                    pb::Value {
                        kind: Some(pb::value::Kind::Text(value)),
                    },
                ],
            }),
        }],
        ..Default::default()
    }
}

fn one(offset: u64, txn: pb::Transaction) -> Batch {
    Batch {
        stream: STREAM.into(),
        offsets: vec![offset],
        transactions: vec![txn],
        last_offset: offset,
    }
}

fn definite_at(e: ApplyError, offset: u64, needle: &str) {
    match &e {
        ApplyError::Definite {
            offset: o, message, ..
        } => {
            assert_eq!(*o, offset, "{e}");
            assert!(message.contains(needle), "{e}");
        }
        other => panic!("want a definite error with {needle:?}, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_setups_and_oversized_messages_are_definite_errors() {
    if !Nats::available() {
        skip!("nats-server is not installed");
    }
    // Nothing listens: transient.
    let port = drc_tests::free_port().expect("port");
    let mut sink = NatsSink::new(NatsSinkConfig {
        connect_timeout_ms: 500,
        ..NatsSinkConfig::new(format!("nats://127.0.0.1:{port}"))
    })
    .expect("sink");
    let e = sink.checkpoint(STREAM).await.expect_err("no server");
    assert!(e.is_transient(), "{e}");

    let nats = Nats::start(NatsOptions {
        max_payload: Some(4096),
        ..Default::default()
    })
    .expect("nats");

    // A message over max_payload: definite, at its offset, naming the fix.
    let mut sink = NatsSink::new(NatsSinkConfig::new(nats.url())).expect("sink");
    sink.checkpoint(STREAM).await.expect("checkpoint");
    sink.apply(&one(1, row_txn(1, "small".into())))
        .await
        .expect("small row");
    let e = sink
        .apply(&one(2, row_txn(2, "x".repeat(10_000))))
        .await
        .expect_err("too big");
    definite_at(e, 2, "max_payload");
    assert_eq!(sink.checkpoint(STREAM).await.expect("cp").offset, 1);

    // The stream missing and `create = false`.
    let mut sink = NatsSink::new(NatsSinkConfig {
        create: false,
        jetstream_stream: "OTHER_{stream}".into(),
        ..NatsSinkConfig::new(nats.url())
    })
    .expect("sink");
    let e = sink.checkpoint(STREAM).await.expect_err("missing stream");
    definite_at(e, 0, "create = true");

    // A subject the stream does not cover.
    let mut sink = NatsSink::new(NatsSinkConfig {
        subject: "elsewhere.{table}".into(),
        ..NatsSinkConfig::new(nats.url())
    })
    .expect("sink");
    sink.checkpoint(STREAM).await.expect("checkpoint");
    let e = sink
        .apply(&one(2, row_txn(2, "v".into())))
        .await
        .expect_err("uncovered subject");
    definite_at(e, 2, "elsewhere.t");

    // Another writer's message at the end of the stream.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.publish("drc.a%2Ew.d.t", "not drc".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let mut sink = NatsSink::new(NatsSinkConfig::new(nats.url())).expect("sink");
    let e = sink.checkpoint(STREAM).await.expect_err("foreign message");
    definite_at(e, 0, "its own JetStream stream");
}
