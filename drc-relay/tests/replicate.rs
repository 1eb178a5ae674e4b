//! Cross-region replication A → B over mutual TLS on loopback: B's log ends
//! byte-identical to A's, offset by offset, although B and A are both
//! stopped and restarted while transactions are being published.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use drc_proto::v1 as pb;
use drc_relay::tls::{self, region_files};
use drc_relay::{RelayClient, RelayConfig, RelayError, UpstreamConfig};

const STREAM: &str = "a.orders";

fn relay_a(data: &Path, pki: &Path, listen: &str) -> RelayConfig {
    let mut c = tls_config(data, listen, region_files(pki, "a"));
    c.max_batch_bytes = 32 << 10;
    c
}

fn relay_b(data: &Path, pki: &Path, upstream: SocketAddr) -> RelayConfig {
    let mut c = tls_config(data, "127.0.0.1:0", region_files(pki, "b"));
    c.upstreams = vec![UpstreamConfig {
        url: format!("https://127.0.0.1:{}", upstream.port()),
        tls: Some(region_files(pki, "b")),
        insecure_plaintext: false,
        streams: vec![STREAM.into()],
        subscriber: Some("relay-b".into()),
        window_bytes: drc_relay::config::DEFAULT_UPSTREAM_WINDOW_BYTES,
        stub_origins: Vec::new(),
    }];
    c
}

/// Publishes tx(1..=total) to A through restarts of A: after every break it
/// reconnects, asks A where it is, and resends from a little before that
/// (A drops the repeats).
async fn capture(
    addr: SocketAddr,
    pki: std::path::PathBuf,
    total: u64,
    progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let cfg = tls_client_config(addr, region_files(&pki, "a"));
    'outer: while !stop.load(Ordering::Relaxed) {
        let Ok(client) = RelayClient::connect(cfg.clone()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(mut p) = client.publisher(STREAM, "capture-a").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let held = p
            .resume()
            .position
            .as_ref()
            .map(|pos| {
                pos.gtid
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        // Resend a few already held ones, as a restarting capture may.
        let mut seq = held.saturating_sub(3) + 1;
        while seq <= total {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            let chunk: Vec<pb::Transaction> = (seq..(seq + 7).min(total + 1))
                .map(|s| tx(s, 700))
                .collect();
            match p.publish(&chunk).await {
                Ok(ack) => {
                    progress.store(ack.last_offset, Ordering::Relaxed);
                    seq += chunk.len() as u64;
                }
                Err(_) => continue 'outer,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_is_identical_through_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    tls::generate(&pki, &["a".into(), "b".into()]).expect("pki");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));

    let a = Running::start(relay_a(&data_a, &pki, "127.0.0.1:0")).await;
    let addr_a = a.addr;
    let mut b = Running::start(relay_b(&data_b, &pki, addr_a)).await;

    let total = 3000u64;
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cap = tokio::spawn(capture(
        addr_a,
        pki.clone(),
        total,
        progress.clone(),
        stop.clone(),
    ));

    // B goes away mid-stream and comes back.
    assert!(
        eventually(60, || progress.load(Ordering::Relaxed) >= 500).await,
        "capture progresses"
    );
    let b_before = b.records(STREAM).len();
    assert!(b_before > 0, "B replicates");
    b.stop().await;
    assert!(
        progress.load(Ordering::Relaxed) < total,
        "B stopped mid-stream"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    b = Running::start(relay_b(&data_b, &pki, addr_a)).await;

    // A goes away mid-stream and comes back on the same port.
    assert!(
        eventually(60, || progress.load(Ordering::Relaxed) >= 1500).await,
        "capture progresses"
    );
    a.stop().await;
    assert!(
        progress.load(Ordering::Relaxed) < total,
        "A stopped mid-stream"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = Running::start(relay_a(&data_a, &pki, &addr_a.to_string())).await;

    // Everything arrives, identically.
    assert!(
        eventually(120, || progress.load(Ordering::Relaxed) >= total).await,
        "capture finishes ({} of {total})",
        progress.load(Ordering::Relaxed)
    );
    stop.store(true, Ordering::Relaxed);
    cap.await.expect("capture task");
    let a_stream = a.registry().get(STREAM).expect("stream on A");
    assert!(
        eventually(60, || b
            .registry()
            .get(STREAM)
            .is_some_and(|s| s.last_offset() >= total))
        .await
    );
    assert_eq!(a_stream.last_offset(), total, "A deduped the resends");
    drop(a_stream);
    let ra = a.records(STREAM);
    let rb = b.records(STREAM);
    assert_eq!(ra.len() as u64, total);
    assert_eq!(rb.len(), ra.len());
    for ((oa, ba), (ob, bb)) in ra.iter().zip(rb.iter()) {
        assert_eq!(oa, ob);
        assert_eq!(ba, bb, "record {oa} differs");
        assert_eq!(ba, &encoded(&tx(*oa, 700)), "offset {oa} holds seq {oa}");
    }

    // B is a replica: its status says so and it refuses publishers.
    let bc = RelayClient::connect(tls_client_config(b.addr, region_files(&pki, "a")))
        .await
        .expect("connect to B");
    let st = bc.status(STREAM).await.expect("status B");
    assert_eq!(st.streams[0].role, "replica");
    assert_eq!(st.streams[0].last_offset, total);
    assert_eq!(st.streams[0].last_position, tx(total, 0).position);
    let e = match bc.publisher(STREAM, "intruder").await {
        Ok(mut p) => p.publish(&[tx(total + 1, 10)]).await.err(),
        Err(e) => Some(e),
    }
    .expect("publishing to a replica is refused");
    assert!(
        matches!(&e, RelayError::Status(s) if s.code() == tonic::Code::FailedPrecondition),
        "{e}"
    );

    // A knows B as a subscriber, and B, caught up and quiet, has confirmed
    // its whole copy.
    let ac = RelayClient::connect(tls_client_config(a.addr, region_files(&pki, "b")))
        .await
        .expect("connect to A");
    assert!(
        eventually_async(20, || {
            let ac = ac.clone();
            async move {
                ac.status(STREAM).await.ok().is_some_and(|st| {
                    st.streams[0]
                        .subscribers
                        .iter()
                        .any(|s| s.name == "relay-b" && s.connected && s.confirmed_offset >= total)
                })
            }
        })
        .await
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_replica_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    tls::generate(&pki, &["a".into(), "b".into()]).expect("pki");
    let a = Running::start(relay_a(&dir.path().join("a"), &pki, "127.0.0.1:0")).await;
    let client = RelayClient::connect(tls_client_config(a.addr, region_files(&pki, "a")))
        .await
        .expect("connect");
    let mut p = client.publisher(STREAM, "c").await.expect("publisher");
    p.publish(&(1..=5).map(|s| tx(s, 10)).collect::<Vec<_>>())
        .await
        .expect("publish");
    // B holds a different history at the same offsets.
    let other = tempfile::tempdir().expect("tempdir");
    let b_dir = other.path().join("b");
    {
        let solo = Running::start(plain_config(&b_dir)).await;
        let c = plain_client(solo.addr).await;
        let mut p = c.publisher(STREAM, "other").await.expect("publisher");
        p.publish(&(1..=3).map(|s| tx(s + 100, 10)).collect::<Vec<_>>())
            .await
            .expect("publish");
        drop(p);
        solo.stop().await;
    }
    let b_cfg = relay_b(&b_dir, &pki, a.addr);
    let registry = drc_relay::registry::Registry::open(
        &b_dir,
        drc_log::LogConfig::default(),
        &[],
        [(STREAM.to_string(), "a".to_string())]
            .into_iter()
            .collect(),
    )
    .await
    .expect("open B's registry");
    let link = drc_relay::replicate::Link {
        client: RelayClient::connect_lazy(b_cfg.upstreams[0].client_config()).expect("client"),
        stream: registry.get(STREAM).expect("stream"),
        upstream: "relay-a".into(),
        subscriber: String::new(),
        stub_origins: Vec::new(),
    };
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let r = tokio::time::timeout(Duration::from_secs(20), link.run(stop_rx))
        .await
        .expect("stops by itself");
    let e = r.expect_err("divergence is an error");
    assert!(!e.is_transient());
    assert!(e.to_string().contains("diverged"), "{e}");
    // Nothing was appended to B.
    assert_eq!(read_all(&registry, STREAM).len(), 3);
    a.stop().await;
}

async fn eventually_async<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[test]
#[ignore = "entry point of the child relay process of other tests"]
fn child_relay() {
    child_main();
}

fn sent_to(st: &pb::StatusResponse, name: &str) -> u64 {
    st.streams
        .first()
        .and_then(|s| s.subscribers.iter().find(|x| x.name == name))
        .map_or(0, |x| x.sent_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    tls::generate(&pki, &["a".into(), "b".into()]).expect("pki");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = Running::start(relay_a(&data_a, &pki, "127.0.0.1:0")).await;
    let addr_b = free_port();
    let b_files = region_files(&pki, "b");
    let tls_json = serde_json::json!({"ca": b_files.ca, "cert": b_files.cert, "key": b_files.key});
    let b_cfg = serde_json::json!({
        "listen": addr_b.to_string(),
        "data_dir": data_b,
        "tls": tls_json,
        "upstreams": [{
            "url": format!("https://127.0.0.1:{}", a.addr.port()),
            "tls": tls_json,
            "streams": [STREAM],
            "subscriber": "relay-b",
        }],
    });
    let total = 3000u64;
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cap = tokio::spawn(capture(
        a.addr,
        pki.clone(),
        total,
        progress.clone(),
        stop.clone(),
    ));
    let watcher = RelayClient::connect(tls_client_config(a.addr, region_files(&pki, "b")))
        .await
        .expect("connect to A");

    let mut b = ChildRelay::start(b_cfg.clone(), addr_b).await;
    let mut kills = 0;
    let mut seen = 0;
    while kills < 3 {
        // Kill B while it is receiving.
        let target = seen + 300;
        let got = eventually_async(60, || {
            let w = watcher.clone();
            async move {
                w.status(STREAM)
                    .await
                    .ok()
                    .is_some_and(|st| sent_to(&st, "relay-b") >= target)
            }
        })
        .await;
        assert!(got, "B receives");
        seen = sent_to(&watcher.status(STREAM).await.expect("status"), "relay-b");
        b.kill();
        kills += 1;
        b = ChildRelay::start(b_cfg.clone(), addr_b).await;
    }
    assert!(
        progress.load(Ordering::Relaxed) < total,
        "B was killed mid-stream"
    );
    assert!(eventually(120, || progress.load(Ordering::Relaxed) >= total).await);
    stop.store(true, Ordering::Relaxed);
    cap.await.expect("capture");
    let bc = RelayClient::connect(tls_client_config(addr_b, region_files(&pki, "a")))
        .await
        .expect("connect to B");
    assert!(
        eventually_async(60, || {
            let bc = bc.clone();
            async move {
                bc.status(STREAM)
                    .await
                    .ok()
                    .is_some_and(|st| st.streams[0].last_offset >= total)
            }
        })
        .await,
        "B catches up"
    );
    b.kill();
    // B's log, reopened from disk after kill -9, equals A's record by record.
    let registry = drc_relay::registry::Registry::open(
        &data_b,
        drc_log::LogConfig::default(),
        &[],
        [(STREAM.to_string(), "a".to_string())]
            .into_iter()
            .collect(),
    )
    .await
    .expect("reopen B");
    let rb = read_all(&registry, STREAM);
    let ra = a.records(STREAM);
    assert_eq!(ra.len() as u64, total);
    assert_eq!(ra, rb);
    drop(registry);
    a.stop().await;
}
