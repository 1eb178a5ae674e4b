//! Slow subscribers cost the relay a bounded amount of memory: 50
//! subscribers that do not read, each on its own connection, while megabytes
//! are published. The relay reads the log for a subscription only when the
//! transport can take the next batch, so what it holds per subscriber is one
//! batch and a flow-control window, not the backlog.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use drc_proto::v1 as pb;
use drc_relay::{RelayClient, SubscribeOptions, Subscription};

const STREAM: &str = "a.big";
const SUBSCRIBERS: usize = 50;
const BATCH: usize = 64 << 10;
const RECORD: usize = 10_000;
const RECORDS: u64 = 1000;

#[test]
#[ignore = "entry point of the child relay process of other tests"]
fn child_relay() {
    child_main();
}

async fn idle_subscribers(addr: std::net::SocketAddr) -> Vec<Subscription> {
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        // One connection each: per-connection windows add up, so this is the
        // case where buffering per subscriber would show.
        let c = plain_client(addr).await;
        subs.push(
            c.subscribe(SubscribeOptions {
                subscriber: format!("slow-{i}"),
                ..SubscribeOptions::new(STREAM, 1)
            })
            .await
            .expect("subscribe"),
        );
    }
    subs
}

async fn publish(client: &RelayClient, from: u64, to: u64) {
    let mut p = client.publisher(STREAM, "bp").await.expect("publisher");
    let all: Vec<pb::Transaction> = (from..=to).map(|s| tx(s, RECORD)).collect();
    for chunk in all.chunks(50) {
        p.publish(chunk).await.expect("publish");
    }
}

async fn drain(sub: &mut Subscription, last: u64) {
    let mut next = 1;
    while next <= last {
        let b = tokio::time::timeout(Duration::from_secs(30), sub.next_batch())
            .await
            .expect("batch in time")
            .expect("batch")
            .expect("open");
        for (o, bytes) in &b.records {
            assert_eq!(*o, next);
            if *o % 97 == 0 {
                assert_eq!(bytes, &encoded(&tx(*o, RECORD)));
            }
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscribers_hold_at_most_a_window_of_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = plain_config(dir.path());
    cfg.max_batch_bytes = BATCH;
    cfg.streams = vec![STREAM.into()];
    let relay = Running::start(cfg).await;
    let mut subs = idle_subscribers(relay.addr).await;
    assert!(
        eventually(10, || relay.stats.subscriptions.load(Ordering::Relaxed)
            == SUBSCRIBERS as u64)
        .await
    );
    let client = plain_client(relay.addr).await;
    publish(&client, 1, RECORDS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Unbounded, each would have been sent the whole stream: RECORDS *
    // RECORD / BATCH ≈ 150 batches each. Bounded by flow control, a few.
    let sent = relay.stats.batches_sent.load(Ordering::Relaxed);
    let per_sub_unbounded = RECORDS * RECORD as u64 / BATCH as u64;
    eprintln!("{sent} batches sent to {SUBSCRIBERS} idle subscribers");
    assert!(
        sent <= SUBSCRIBERS as u64 * 8,
        "{sent} batches sent to {SUBSCRIBERS} idle subscribers (unbounded: {})",
        SUBSCRIBERS as u64 * per_sub_unbounded
    );
    // Once they read, they get everything, in order.
    for s in subs.iter_mut().take(3) {
        drain(s, RECORDS).await;
    }
    drop(subs);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_memory_stays_bounded_with_idle_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let cfg = serde_json::json!({
        "listen": addr.to_string(),
        "data_dir": dir.path(),
        "insecure_plaintext": true,
        "max_batch_bytes": BATCH,
        "streams": [STREAM],
    });
    let relay = ChildRelay::start(cfg, addr).await;
    let client = plain_client(addr).await;
    // Warm up: allocator arenas, the first batches.
    publish(&client, 1, 50).await;
    let mut s = client
        .subscribe(SubscribeOptions::new(STREAM, 1))
        .await
        .expect("subscribe");
    drain(&mut s, 50).await;
    drop(s);
    let mut subs = idle_subscribers(addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = relay.rss();
    publish(&client, 51, RECORDS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = relay.rss();
    let published = RECORDS * RECORD as u64;
    let growth = after.saturating_sub(before);
    eprintln!(
        "relay RSS {} MiB -> {} MiB while publishing {} MiB to {SUBSCRIBERS} idle subscribers",
        before >> 20,
        after >> 20,
        published >> 20
    );
    // Buffering the backlog per subscriber would need SUBSCRIBERS x 10 MB.
    assert!(growth < 48 << 20, "relay grew by {} MiB", growth >> 20);
    for s in subs.iter_mut().take(2) {
        drain(s, RECORDS).await;
    }
    drop(subs);
    relay.kill();
}
