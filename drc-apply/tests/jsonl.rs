//! The applier with the JSON-lines sink against a relay running in this
//! process: order, offsets and values of the lines; resume from the
//! checkpoint; repeats with the same ids after a lost checkpoint; filtered
//! offsets covered by the checkpoint; rotation by size; batching bounds and
//! retry after a transient sink error; a quiet stream applied without waiting
//! for the batch delay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drc_apply::applier::{self, ApplierConfig, ApplyStats};
use drc_apply::sink::jsonl::{JsonlConfig, JsonlSink};
use drc_apply::{ApplyError, Batch, Checkpoint, Sink, SinkGuarantees};
use drc_proto::v1 as pb;
use drc_relay::{ClientConfig, RelayClient, RelayConfig, RelayServer};
use tokio::sync::{oneshot, watch};

const STREAM: &str = "a.shop";

/// Transaction `seq`: one insert into `shop.orders` (even) or
/// `shop.audit_log` (odd) with `payload` bytes of text.
fn tx(seq: u64, payload: usize) -> pb::Transaction {
    let table = if seq & 1 == 0 { "orders" } else { "audit_log" };
    pb::Transaction {
        position: Some(pb::SourcePosition {
            gtid: format!("0-1-{seq}"),
            file: "mariadb-bin.000001".into(),
            pos: 1000 + seq * 100,
            gtid_set: format!("0-1-{seq}"),
        }),
        commit_ts_us: 1_700_000_000_000_000 + seq as i64,
        server_id: 1,
        origin: String::new(),
        changes: vec![pb::RowChange {
            op: pb::Op::Insert as i32,
            schema: "shop".into(),
            table: table.into(),
            columns: vec![
                pb::Column {
                    name: "id".into(),
                    sql_type: "bigint(20)".into(),
                    nullable: false,
                    charset: String::new(),
                },
                pb::Column {
                    name: "note".into(),
                    sql_type: "text".into(),
                    nullable: true,
                    charset: "utf8mb4".into(),
                },
            ],
            primary_key: vec![0],
            before: None,
            after: Some(pb::Row {
                values: vec![
                    pb::Value {
                        kind: Some(pb::value::Kind::Int(seq as i64)),
                    },
                    pb::Value {
                        kind: Some(pb::value::Kind::Text(format!(
                            "note {seq} {}",
                            "x".repeat(payload)
                        ))),
                    },
                ],
            }),
        }],
        ddl: None,
    }
}

/// A relay serving in a task of this test.
struct Relay {
    client: ClientConfig,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<drc_relay::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Relay {
    async fn start() -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = RelayConfig::new("127.0.0.1:0", dir.path().join("relay"));
        cfg.insecure_plaintext = true;
        let server = RelayServer::bind(cfg).await.expect("bind relay");
        let addr = server.local_addr().expect("tcp address");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        let mut client = ClientConfig::new(format!("http://{addr}"));
        client.insecure_plaintext = true;
        Relay {
            client,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// Publishes transactions `seqs` (offsets follow the publish order).
    async fn publish(&self, seqs: std::ops::RangeInclusive<u64>, payload: usize) {
        let client = RelayClient::connect(self.client.clone())
            .await
            .expect("connect");
        let mut p = client.publisher(STREAM, "test").await.expect("publisher");
        let txns: Vec<_> = seqs.map(|s| tx(s, payload)).collect();
        for chunk in txns.chunks(25) {
            p.publish(chunk).await.expect("publish");
        }
        p.finish().await.expect("finish");
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn applier_config(relay: &Relay) -> ApplierConfig {
    let mut c = ApplierConfig::new(STREAM, relay.client.clone());
    c.subscriber = "apply-test".into();
    c.max_batch_delay = Duration::from_millis(20);
    c
}

fn checkpoint_offset(path: &Path) -> u64 {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["offset"].as_u64())
        .unwrap_or(0)
}

/// Runs the applier until the sink's checkpoint file says `target`, then
/// stops it.
async fn apply_until(cfg: ApplierConfig, sink: JsonlConfig, target: u64) -> ApplyStats {
    let cp = sink.checkpoint_path().expect("checkpoint file");
    let mut sink = JsonlSink::new(sink).expect("sink");
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { applier::run(cfg, &mut sink, stop_rx).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while checkpoint_offset(&cp) < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint stuck at {} (want {target})",
            checkpoint_offset(&cp)
        );
        assert!(!task.is_finished(), "applier ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).expect("stop");
    task.await.expect("applier task").expect("applier")
}

/// Runs the applier for `d`, then stops it.
async fn apply_for(cfg: ApplierConfig, sink: JsonlConfig, d: Duration) -> ApplyStats {
    let mut sink = JsonlSink::new(sink).expect("sink");
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { applier::run(cfg, &mut sink, stop_rx).await });
    tokio::time::sleep(d).await;
    stop_tx.send(true).expect("stop");
    task.await.expect("applier task").expect("applier")
}

fn lines(paths: &[PathBuf]) -> Vec<serde_json::Value> {
    paths
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).expect("read output");
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "torn line in {p:?}"
            );
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn offsets(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_in_order_and_resumes_from_the_checkpoint() {
    let relay = Relay::start().await;
    relay.publish(1..=60, 20).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out").join("a.jsonl");
    let sink = JsonlConfig::new(&out);

    let stats = apply_until(applier_config(&relay), sink.clone(), 60).await;
    assert_eq!(stats.transactions, 60);
    assert_eq!(stats.rows, 60);
    assert_eq!(stats.last_offset, 60);
    assert!(stats.batches >= 1);
    let got = lines(std::slice::from_ref(&out));
    assert_eq!(offsets(&got), (1..=60).collect::<Vec<_>>());
    for (i, l) in got.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(l["stream"], STREAM);
        assert_eq!(l["gtid"], format!("0-1-{seq}"));
        assert_eq!(l["pos"], 1000 + seq * 100);
        let change = &l["changes"][0];
        assert_eq!(change["op"], "insert");
        assert_eq!(change["db"], "shop");
        assert_eq!(change["after"]["id"], seq);
        assert_eq!(
            change["after"]["note"],
            format!("note {seq} {}", "x".repeat(20))
        );
    }
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/a.jsonl.checkpoint.json")).expect("checkpoint"),
    )
    .expect("checkpoint JSON");
    assert_eq!(cp["stream"], STREAM);
    assert_eq!(cp["offset"], 60);
    assert_eq!(cp["position"]["gtid"], "0-1-60");

    // A restart resumes after the checkpoint: nothing is written again.
    let stats = apply_for(
        applier_config(&relay),
        sink.clone(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(stats.transactions, 0);
    assert_eq!(lines(std::slice::from_ref(&out)).len(), 60);

    // New transactions continue the sequence.
    relay.publish(61..=75, 20).await;
    let stats = apply_until(applier_config(&relay), sink, 75).await;
    assert_eq!(stats.transactions, 15);
    assert_eq!(
        offsets(&lines(std::slice::from_ref(&out))),
        (1..=75).collect::<Vec<_>>()
    );

    // The relay knows how far the applier got.
    let client = RelayClient::connect(relay.client.clone())
        .await
        .expect("connect");
    let status = client.status(STREAM).await.expect("status");
    let sub = status.streams[0]
        .subscribers
        .iter()
        .find(|s| s.name == "apply-test")
        .expect("subscriber registered");
    assert_eq!(sub.confirmed_offset, 75);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_checkpoint_repeats_lines_with_the_same_ids() {
    let relay = Relay::start().await;
    relay.publish(1..=30, 10).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a.jsonl");
    let sink = JsonlConfig::new(&out);
    apply_until(applier_config(&relay), sink.clone(), 30).await;
    let first = std::fs::read_to_string(&out).expect("output");

    std::fs::remove_file(sink.checkpoint_path().expect("path")).expect("remove checkpoint");
    // And a crash left a torn line behind: it is cut before appending.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&out)
            .expect("open output");
        f.write_all(b"{\"stream\":\"a.shop\",\"offset\":1,\"gt")
            .expect("torn write");
    }
    apply_until(applier_config(&relay), sink, 30).await;
    let both = std::fs::read_to_string(&out).expect("output");
    assert_eq!(both, format!("{first}{first}"), "the repeat is identical");
    let got = lines(std::slice::from_ref(&out));
    let mut ids: Vec<_> = got
        .iter()
        .map(|l| {
            (
                l["stream"].to_string(),
                l["offset"].as_u64().expect("offset"),
            )
        })
        .collect();
    assert_eq!(ids.len(), 60);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "dedup by (stream, offset) leaves each once");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_offsets_are_covered_by_the_checkpoint() {
    let relay = Relay::start().await;
    // Odd transactions touch shop.audit_log; the last one (41) is filtered.
    relay.publish(1..=41, 10).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("orders.jsonl");
    let sink = JsonlConfig::new(&out);
    let mut cfg = applier_config(&relay);
    cfg.include = vec!["shop.orders".into()];
    let stats = apply_until(cfg.clone(), sink.clone(), 41).await;
    assert_eq!(stats.last_offset, 41);
    assert_eq!(stats.transactions, 20);
    let got = lines(std::slice::from_ref(&out));
    assert_eq!(offsets(&got), (2..=40).step_by(2).collect::<Vec<_>>());
    assert!(got.iter().all(|l| l["changes"][0]["table"] == "orders"));

    // Filtered-only traffic still moves the checkpoint.
    relay.publish(42..=42, 10).await;
    relay.publish(43..=43, 10).await;
    apply_until(cfg, sink, 43).await;
    assert_eq!(
        offsets(&lines(std::slice::from_ref(&out))).last(),
        Some(&42)
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_size_keeps_the_whole_sequence() {
    let relay = Relay::start().await;
    relay.publish(1..=80, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a.jsonl");
    let mut sink = JsonlConfig::new(&out);
    sink.max_file_bytes = 4096;
    let mut cfg = applier_config(&relay);
    cfg.max_batch_rows = 7;
    apply_until(cfg.clone(), sink.clone(), 40).await;
    relay.publish(81..=100, 200).await;
    apply_until(cfg, sink, 100).await;

    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 5, "only {} rotated files", rotated.len());
    for p in &rotated {
        let len = std::fs::metadata(p).expect("stat").len();
        assert!(len <= 4096, "{p:?} holds {len} bytes");
    }
    rotated.push(out);
    assert_eq!(offsets(&lines(&rotated)), (1..=100).collect::<Vec<_>>());
    relay.stop().await;
}

/// `(offsets, last_offset)` of each batch a sink got.
type Seen = Arc<Mutex<Vec<(Vec<u64>, u64)>>>;

/// Records the batches it gets; fails the first `fail` applies with a
/// transient error.
struct Recording {
    checkpoint: u64,
    batches: Seen,
    fail: usize,
}

impl Sink for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    fn guarantees(&self) -> SinkGuarantees {
        SinkGuarantees {
            atomic: true,
            durable: true,
            idempotent: true,
        }
    }

    async fn checkpoint(&mut self, stream: &str) -> drc_apply::Result<Checkpoint> {
        Ok(Checkpoint {
            stream: stream.to_string(),
            offset: self.checkpoint,
            position: None,
        })
    }

    async fn apply(&mut self, batch: &Batch) -> drc_apply::Result<()> {
        if self.fail > 0 {
            self.fail -= 1;
            return Err(ApplyError::Transient {
                sink: "recording".into(),
                message: "injected".into(),
            });
        }
        assert_eq!(batch.stream, STREAM);
        assert_eq!(batch.offsets.len(), batch.transactions.len());
        self.checkpoint = batch.last_offset;
        self.batches
            .lock()
            .expect("lock")
            .push((batch.offsets.clone(), batch.last_offset));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_contiguous_and_retried() {
    let relay = Relay::start().await;
    relay.publish(1..=50, 10).await;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let mut sink = Recording {
        checkpoint: 0,
        batches: batches.clone(),
        fail: 2,
    };
    let mut cfg = applier_config(&relay);
    cfg.max_batch_rows = 8;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let r = applier::run(cfg, &mut sink, stop_rx).await;
        (r, sink)
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while batches.lock().expect("lock").last().map(|b| b.1) != Some(50) {
        assert!(tokio::time::Instant::now() < deadline, "applier stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).expect("stop");
    let (r, sink) = task.await.expect("task");
    let stats = r.expect("applier");
    assert_eq!(sink.checkpoint, 50);
    assert_eq!(stats.transactions, 50);
    let got = batches.lock().expect("lock").clone();
    let mut prev = 0;
    for (offs, last) in &got {
        assert!(offs.len() <= 8, "batch of {} transactions", offs.len());
        assert_eq!(offs.first(), Some(&(prev + 1)), "contiguous");
        assert_eq!(offs.last(), Some(last));
        prev = *last;
    }
    assert_eq!(stats.batches as usize, got.len());
    relay.stop().await;
}

/// A stream that goes quiet is applied at once, not after `max_batch_delay`;
/// a backlog still comes in batches of many transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_is_applied_without_waiting_for_the_delay() {
    let relay = Relay::start().await;
    relay.publish(1..=40, 10).await;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let mut sink = Recording {
        checkpoint: 0,
        batches: batches.clone(),
        fail: 0,
    };
    let mut cfg = applier_config(&relay);
    cfg.max_batch_delay = Duration::from_secs(60);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let r = applier::run(cfg, &mut sink, stop_rx).await;
        (r, sink)
    });
    let reached = |want: u64| {
        let batches = batches.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while batches.lock().expect("lock").last().map(|b| b.1) != Some(want) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "offset {want} not applied in 10 s (the batch waits for its delay)"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    reached(40).await;
    let backlog = batches.lock().expect("lock").len();
    assert!(backlog < 10, "a backlog of 40 took {backlog} batches");
    // The stream goes on in small pieces, each applied as it comes.
    relay.publish(41..=41, 10).await;
    reached(41).await;
    relay.publish(42..=45, 10).await;
    reached(45).await;
    stop_tx.send(true).expect("stop");
    let (r, sink) = task.await.expect("task");
    let stats = r.expect("applier");
    assert_eq!(sink.checkpoint, 45);
    assert_eq!(stats.transactions, 45);
    relay.stop().await;
}

#[tokio::test]
async fn config_is_checked() {
    let mut c = ApplierConfig::new(STREAM, ClientConfig::new("http://10.1.2.3:7400"));
    assert!(c.validate().is_err(), "plaintext off loopback");
    c.relay = ClientConfig::new("http://127.0.0.1:7400");
    c.relay.insecure_plaintext = true;
    c.validate().expect("valid");
    c.max_batch_rows = 0;
    assert!(c.validate().is_err());

    let j: JsonlConfig = toml_like(r#"{"path":"out.jsonl"}"#);
    assert_eq!(
        j.max_file_bytes,
        drc_apply::sink::jsonl::config::DEFAULT_MAX_FILE_BYTES
    );
    assert_eq!(
        j.checkpoint_path(),
        Some(PathBuf::from("out.jsonl.checkpoint.json"))
    );
    let stdout: JsonlConfig = toml_like(r#"{"path":"-"}"#);
    assert!(stdout.checkpoint_path().is_none());
    assert!(!JsonlSink::new(stdout).expect("sink").guarantees().durable);
    assert!(
        serde_json::from_str::<JsonlConfig>(r#"{"path":"x","max_bytes":1}"#).is_err(),
        "unknown keys are refused"
    );
    assert!(JsonlSink::new(JsonlConfig::new("")).is_err());
}

fn toml_like(json: &str) -> JsonlConfig {
    serde_json::from_str(json).expect("config")
}
