//! The relay's port under attack: TLS refusals (no client certificate, a
//! certificate of another CA, plaintext on the TLS port), garbage bytes,
//! silent connections, an oversized message, and the plaintext rules of the
//! config, while a well-behaved client keeps publishing and reading.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use drc_relay::tls::{self, region_files};
use drc_relay::{RelayClient, RelayConfig, RelayError, RelayServer, SubscribeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STREAM: &str = "a.sec";

/// Reads until the peer closes or errors; true when it did within `secs`
/// without sending an HTTP/2 frame's worth of plaintext.
async fn closed_within(mut s: impl tokio::io::AsyncRead + Unpin, secs: u64) -> bool {
    let mut buf = vec![0u8; 4096];
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_good_clients_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let other = dir.path().join("other");
    tls::generate(&pki, &["a".into(), "client".into()]).expect("pki");
    tls::generate(&other, &["a".into()]).expect("other ca");
    // A region added later is issued by the same CA, rebuilt from its key.
    tls::generate(&pki, &["late".into()]).expect("late region");

    let mut cfg = tls_config(
        &dir.path().join("data"),
        "127.0.0.1:0",
        region_files(&pki, "a"),
    );
    cfg.max_message_bytes = 1 << 20;
    cfg.max_batch_bytes = 256 << 10;
    let relay = Running::start(cfg).await;
    let addr = relay.addr;

    // The well-behaved client publishes and reads back all along.
    let good = RelayClient::connect(tls_client_config(addr, region_files(&pki, "client")))
        .await
        .expect("good client connects");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let worker = {
        let (good, stop, done) = (good.clone(), stop.clone(), done.clone());
        tokio::spawn(async move {
            let mut p = good.publisher(STREAM, "good").await.expect("publisher");
            let mut seq = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let ack = p
                    .publish(&[tx(seq, 100)])
                    .await
                    .expect("good publish keeps working");
                assert_eq!(ack.last_offset, seq);
                let mut sub = good
                    .subscribe(SubscribeOptions::new(STREAM, seq))
                    .await
                    .expect("good subscribe keeps working");
                let b = sub.next_batch().await.expect("batch").expect("open");
                assert_eq!(b.records[0].1, encoded(&tx(seq, 100)));
                done.store(seq, Ordering::Relaxed);
                seq += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    assert!(eventually(10, || done.load(Ordering::Relaxed) >= 3).await);

    // Silent connections (never start a handshake) do not block anyone.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr).await.expect("tcp"));
    }

    // 1. No client certificate: the server refuses at the handshake.
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(pki.join("ca.pem")).expect("ca");
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca_pem) {
        roots.add(c.expect("pem")).expect("root");
    }
    let no_cert = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(no_cert));
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    // TLS 1.3: the client may finish its side first; the server's refusal
    // then arrives as an alert on the first read.
    if let Ok(mut s) = connector.connect(name, tcp).await {
        let _ = s
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await;
        assert!(closed_within(s, 10).await, "no-cert connection is closed");
    }

    // 2. A certificate from another CA (the client trusts our CA, so only the
    // server's check can refuse it).
    let foreign = drc_relay::TlsConfig {
        ca: pki.join("ca.pem"),
        cert: other.join("a.pem"),
        key: other.join("a.key"),
    };
    let r = match RelayClient::connect(tls_client_config(addr, foreign)).await {
        Ok(c) => c.status("").await.map(|_| ()),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => panic!("a certificate from another CA is refused: it was accepted"),
        Err(e) => eprintln!("a certificate from another CA is refused: {e}"),
    }

    // A client that does not trust the server's CA refuses the server.
    let r = match RelayClient::connect(tls_client_config(addr, region_files(&other, "a"))).await {
        Ok(c) => c.status("").await.map(|_| ()),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => panic!("a server from another CA is refused: it was accepted"),
        Err(e) => eprintln!("a server from another CA is refused: {e}"),
    }

    // 3. Plaintext gRPC to the TLS port.
    let r = match RelayClient::connect(plain_client_config(addr)).await {
        Ok(c) => c.status("").await.map(|_| ()),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => panic!("plaintext to the TLS port is refused: it was accepted"),
        Err(e) => eprintln!("plaintext to the TLS port is refused: {e}"),
    }

    // 4. Garbage bytes: the connection is closed.
    for len in [1usize, 5, 300, 70_000] {
        let mut s = TcpStream::connect(addr).await.expect("tcp");
        let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = s.write_all(&junk).await;
        assert!(
            closed_within(s, 10).await,
            "garbage of {len} bytes closes the connection"
        );
    }

    // 5. An oversized message: an error status, and the relay stays up.
    let late = RelayClient::connect(tls_client_config(addr, region_files(&pki, "late")))
        .await
        .expect("a region added later is trusted");
    let mut p = late.publisher("a.big", "late").await.expect("publisher");
    let big = tx(1, 2 << 20);
    let e = p
        .publish(&[big])
        .await
        .expect_err("oversized publish is refused");
    match &e {
        RelayError::Status(s) => assert!(
            matches!(
                s.code(),
                tonic::Code::OutOfRange
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::InvalidArgument
            ),
            "{s:?}"
        ),
        other => panic!("unexpected error {other}"),
    }
    assert!(!late
        .status("")
        .await
        .expect("status after oversize")
        .streams
        .is_empty());

    // The good client never failed and kept going through all of it.
    let before = done.load(Ordering::Relaxed);
    assert!(eventually(10, || done.load(Ordering::Relaxed) >= before + 5).await);
    stop.store(true, Ordering::Relaxed);
    worker.await.expect("good client had no error");
    drop(silent);
    relay.stop().await;
}

#[tokio::test]
async fn plaintext_needs_loopback_and_consent() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No TLS and no consent.
    let e = RelayServer::bind(RelayConfig::new("127.0.0.1:0", dir.path()))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, RelayError::Config(m) if m.contains("insecure_plaintext") && m.contains("tls")),
        "{e}"
    );
    // Consent, but not on loopback.
    let mut c = RelayConfig::new("0.0.0.0:0", dir.path());
    c.insecure_plaintext = true;
    let e = RelayServer::bind(c).await.err().expect("refused");
    assert!(
        matches!(&e, RelayError::Config(m) if m.contains("loopback")),
        "{e}"
    );
    // A unix socket with consent is fine.
    let mut c = RelayConfig::new(
        format!("unix:{}", dir.path().join("r.sock").display()),
        dir.path().join("d"),
    );
    c.insecure_plaintext = true;
    let server = RelayServer::bind(c).await.expect("unix socket relay");
    let (stop_tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    let mut cc =
        drc_relay::ClientConfig::new(format!("unix:{}", dir.path().join("r.sock").display()));
    cc.insecure_plaintext = true;
    let client = RelayClient::connect(cc)
        .await
        .expect("connect over unix socket");
    let mut p = client.publisher("u.s", "unix").await.expect("publisher");
    assert_eq!(
        p.publish(&[tx(1, 10)]).await.expect("publish").last_offset,
        1
    );
    drop(p);
    let _ = stop_tx.send(());
    task.await.expect("task").expect("serve");
    // Client side: plaintext to a non-loopback address is refused before
    // any connection is made.
    let mut cc = drc_relay::ClientConfig::new("http://192.0.2.1:7400");
    cc.insecure_plaintext = true;
    assert!(matches!(
        RelayClient::connect_lazy(cc),
        Err(RelayError::Config(_))
    ));
}
