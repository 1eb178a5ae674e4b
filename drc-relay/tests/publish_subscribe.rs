//! Publish and subscribe against a real relay (plaintext on loopback):
//! order, byte-identical records, dedup of resent transactions, filters,
//! compression, and clear errors for offsets the stream does not hold.

mod common;

use common::*;
use drc_proto::v1 as pb;
use drc_relay::{RelayError, SubscribeOptions};
use futures::StreamExt;
use prost::Message;

const STREAM: &str = "a.shop";

async fn publish_all(client: &drc_relay::RelayClient, txs: &[pb::Transaction]) -> pb::PublishAck {
    let mut p = client
        .publisher(STREAM, "test-capture")
        .await
        .expect("publisher");
    let mut last = None;
    for chunk in txs.chunks(20) {
        last = Some(p.publish(chunk).await.expect("publish"));
    }
    p.finish().await.expect("finish");
    last.expect("at least one chunk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_dedup_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Running::start(plain_config(dir.path())).await;
    let client = plain_client(relay.addr).await;
    let n = 300u64;
    let txs: Vec<pb::Transaction> = (1..=n).map(|s| tx(s, 200)).collect();

    // A fresh stream: the hello ack says there is nothing to resume from.
    let p = client
        .publisher(STREAM, "test-capture")
        .await
        .expect("publisher");
    assert_eq!(p.resume().last_offset, 0);
    assert!(p.resume().position.is_none());
    drop(p);

    let ack = publish_all(&client, &txs).await;
    assert_eq!(ack.last_offset, n);
    assert_eq!(ack.position, txs[n as usize - 1].position);

    // Every record is the capture's bytes, in order, at dense offsets.
    let stored = relay.records(STREAM);
    assert_eq!(stored.len() as u64, n);
    for (i, (o, bytes)) in stored.iter().enumerate() {
        assert_eq!(*o, i as u64 + 1);
        assert_eq!(bytes, &encoded(&txs[i]));
    }

    // Subscribe from 1, plain, zstd and a zstd stream: the same
    // transactions, byte-identical.
    for compression in [
        pb::Compression::None,
        pb::Compression::Zstd,
        pb::Compression::ZstdStream,
    ] {
        let mut sub = client
            .subscribe(SubscribeOptions {
                compression,
                max_batch_bytes: 8 << 10,
                ..SubscribeOptions::new(STREAM, 1)
            })
            .await
            .expect("subscribe");
        let mut got = Vec::new();
        let mut batches = 0;
        while got.len() < n as usize {
            let b = sub.next_batch().await.expect("batch").expect("open stream");
            assert!(b.is_dense());
            assert!(
                b.records.iter().map(|r| r.1.len()).sum::<usize>() <= 8 << 10
                    || b.records.len() == 1
            );
            got.extend(b.records);
            batches += 1;
        }
        assert!(batches > 1, "8 KiB batches split the stream");
        assert_eq!(got, stored, "compression {compression:?}");
    }

    // The decoded view.
    let sub = client
        .subscribe(SubscribeOptions::new(STREAM, 1))
        .await
        .expect("subscribe");
    let decoded: Vec<_> = sub
        .into_transactions()
        .take(n as usize)
        .map(|r| r.expect("transaction"))
        .collect()
        .await;
    for (i, (o, t)) in decoded.iter().enumerate() {
        assert_eq!(o.0, i as u64 + 1);
        assert_eq!(t, &txs[i]);
    }

    // A capture that restarts and resends its last 10: the relay says where
    // it is, keeps the offsets, and acks the resent ones as duplicates.
    let mut p = client
        .publisher(STREAM, "test-capture")
        .await
        .expect("publisher");
    assert_eq!(p.resume().last_offset, n);
    assert_eq!(p.resume().position, txs[n as usize - 1].position);
    let ack = p.publish(&txs[(n - 10) as usize..]).await.expect("resend");
    assert_eq!((ack.appended, ack.duplicates), (0, 10));
    assert_eq!(ack.last_offset, n);
    assert_eq!(ack.position, txs[n as usize - 1].position);
    // Resent and new in one request: only the new ones are appended.
    let more: Vec<pb::Transaction> = (n - 4..=n + 5).map(|s| tx(s, 200)).collect();
    let ack = p.publish(&more).await.expect("mixed");
    assert_eq!((ack.appended, ack.duplicates), (5, 5));
    assert_eq!(ack.last_offset, n + 5);
    p.finish().await.expect("finish");
    let stored = relay.records(STREAM);
    assert_eq!(stored.len() as u64, n + 5);
    assert_eq!(stored[n as usize].1, encoded(&tx(n + 1, 200)));
    let n = n + 5;

    // Filters: only shop.orders (even seqs). Batches still cover every
    // offset, so a consumer's position moves past the filtered ones.
    let mut sub = client
        .subscribe(SubscribeOptions {
            include: vec!["shop.orders".into()],
            compression: pb::Compression::Zstd,
            ..SubscribeOptions::new(STREAM, 1)
        })
        .await
        .expect("subscribe filtered");
    let mut got = Vec::new();
    let mut end = 1;
    while end <= n {
        let b = sub.next_batch().await.expect("batch").expect("open");
        assert_eq!(b.first_offset, end);
        end = b.end_offset();
        got.extend(b.records);
    }
    assert_eq!(end, n + 1);
    assert_eq!(got.len() as u64, n / 2);
    for (o, bytes) in &got {
        let t = pb::Transaction::decode(bytes.clone()).expect("decode");
        assert_eq!(t.changes[0].table, "orders");
        // Offset o holds seq o (one transaction per seq, from 1).
        assert_eq!(bytes, &encoded(&tx(*o, 200)));
    }
    // Exclude works the other way round.
    let mut sub = client
        .subscribe(SubscribeOptions {
            exclude: vec!["shop.orders".into()],
            ..SubscribeOptions::new(STREAM, 1)
        })
        .await
        .expect("subscribe excluded");
    let b = sub.next_batch().await.expect("batch").expect("open");
    assert!(b.records.iter().all(|(o, _)| o % 2 == 1));

    // Offsets the stream does not hold: a clear, definite error.
    let err = match client.subscribe(SubscribeOptions::new(STREAM, n + 2)).await {
        Ok(mut s) => s.next_batch().await.err(),
        Err(e) => Some(e),
    }
    .expect("beyond the end is refused");
    assert!(!err.is_transient());
    match &err {
        RelayError::Status(s) => {
            assert_eq!(s.code(), tonic::Code::OutOfRange);
            assert!(s.message().contains("beyond the end"), "{}", s.message());
        }
        other => panic!("unexpected error {other}"),
    }
    // The tail itself is fine: it waits for the next record.
    let mut tail = client
        .subscribe(SubscribeOptions::new(STREAM, n + 1))
        .await
        .expect("subscribe at the tail");
    let waiting =
        tokio::time::timeout(std::time::Duration::from_millis(300), tail.next_batch()).await;
    assert!(waiting.is_err(), "no batch before the next publish");
    let mut p = client
        .publisher(STREAM, "test-capture")
        .await
        .expect("publisher");
    p.publish(&[tx(n + 1, 10)]).await.expect("publish one");
    let b = tail.next_batch().await.expect("batch").expect("open");
    assert_eq!(b.first_offset, n + 1);
    assert_eq!(b.records[0].1, encoded(&tx(n + 1, 10)));

    // Unknown stream and bad names.
    let e = client
        .subscribe(SubscribeOptions::new("no.such", 1))
        .await
        .err()
        .expect("unknown stream");
    assert!(
        matches!(&e, RelayError::Status(s) if s.code() == tonic::Code::NotFound),
        "{e}"
    );
    let e = client
        .subscribe(SubscribeOptions::new("../etc", 1))
        .await
        .err()
        .expect("bad name");
    assert!(
        matches!(&e, RelayError::Status(s) if s.code() == tonic::Code::InvalidArgument),
        "{e}"
    );
    let e = client
        .subscribe(SubscribeOptions {
            include: vec!["[".into()],
            ..SubscribeOptions::new(STREAM, 1)
        })
        .await
        .err()
        .expect("bad glob");
    assert!(
        matches!(&e, RelayError::Status(s) if s.code() == tonic::Code::InvalidArgument),
        "{e}"
    );

    // A transaction without a position is refused whole: nothing appended.
    let mut bad = tx(n + 2, 10);
    bad.position = None;
    let e = p
        .publish(&[tx(n + 2, 10), bad])
        .await
        .expect_err("no position");
    assert!(
        matches!(&e, RelayError::Status(s) if s.code() == tonic::Code::InvalidArgument),
        "{e}"
    );
    assert_eq!(relay.records(STREAM).len() as u64, n + 1);

    relay.stop().await;

    // Reopened: the relay recovers its last position from the log.
    let relay = Running::start(plain_config(dir.path())).await;
    let client = plain_client(relay.addr).await;
    let p = client
        .publisher(STREAM, "test-capture")
        .await
        .expect("publisher");
    assert_eq!(p.resume().last_offset, n + 1);
    assert_eq!(p.resume().position, tx(n + 1, 10).position);
    drop(p);
    let status = client.status("").await.expect("status");
    assert_eq!(status.streams.len(), 1);
    let s = &status.streams[0];
    assert_eq!((s.first_offset, s.last_offset), (1, n + 1));
    assert!(s.size_bytes > 0);
    assert_eq!(s.role, "local");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_offsets_and_subscriber_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = plain_config(dir.path());
    cfg.segment_bytes = 4096;
    cfg.retention.max_bytes = Some(8192);
    let relay = Running::start(cfg).await;
    let client = plain_client(relay.addr).await;
    let txs: Vec<pb::Transaction> = (1..=200).map(|s| tx(s, 300)).collect();
    publish_all(&client, &txs).await;
    let stream = relay.registry().get(STREAM).expect("stream");
    let report = stream.log().enforce_retention().await.expect("retention");
    assert!(report.deleted_segments > 0);
    let first = stream.log().first_offset().0;
    assert!(first > 1);
    drop(stream);

    let err = match client.subscribe(SubscribeOptions::new(STREAM, 1)).await {
        Ok(mut s) => s.next_batch().await.err(),
        Err(e) => Some(e),
    }
    .expect("deleted offset is refused");
    assert!(!err.is_transient());
    match &err {
        RelayError::Status(s) => {
            assert_eq!(s.code(), tonic::Code::OutOfRange);
            assert!(
                s.message().contains("no longer in the log"),
                "{}",
                s.message()
            );
            assert!(
                s.message()
                    .contains(&format!("first available offset is {first}")),
                "{}",
                s.message()
            );
        }
        other => panic!("unexpected error {other}"),
    }
    // From 0: the first the relay holds.
    let mut sub = client
        .subscribe(SubscribeOptions::new(STREAM, 0))
        .await
        .expect("subscribe from 0");
    let b = sub.next_batch().await.expect("batch").expect("open");
    assert_eq!(b.first_offset, first);

    // A named subscriber shows in status with what was sent and confirmed.
    let mut named = client
        .subscribe(SubscribeOptions {
            subscriber: "apply-b".into(),
            max_batch_bytes: 1024,
            ..SubscribeOptions::new(STREAM, first)
        })
        .await
        .expect("subscribe named");
    let b = named.next_batch().await.expect("batch").expect("open");
    client
        .confirm(STREAM, "apply-b", b.end_offset() - 1)
        .await
        .expect("confirm");
    let status = client.status(STREAM).await.expect("status");
    let subs = &status.streams[0].subscribers;
    let me = subs.iter().find(|s| s.name == "apply-b").expect("listed");
    assert!(me.connected);
    assert_eq!(me.confirmed_offset, b.end_offset() - 1);
    assert!(me.sent_offset >= b.end_offset() - 1);
    assert_eq!(status.streams[0].first_offset, first);
    assert_eq!(status.streams[0].last_offset, 200);
    drop(named);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_tell_an_unreachable_relay_from_its_answer() {
    // Nothing listens on a port that was free a moment ago.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut cc = plain_client_config(addr);
    cc.connect_timeout = std::time::Duration::from_secs(2);
    let client = drc_relay::RelayClient::connect_lazy(cc).expect("lazy client");
    let err = client.status(STREAM).await.expect_err("nothing listens");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().starts_with("cannot reach the relay: "),
        "an unreachable relay reads as one: {err}"
    );

    // A relay that answers with an error is quoted as answering.
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Running::start(plain_config(dir.path())).await;
    let client = plain_client(relay.addr).await;
    let err = client
        .subscribe(SubscribeOptions {
            stream: "no.such".into(),
            from_offset: 1,
            ..Default::default()
        })
        .await
        .err()
        .expect("an unknown stream is refused");
    assert!(
        err.to_string().starts_with("relay answered "),
        "the relay's own answer: {err}"
    );
}
