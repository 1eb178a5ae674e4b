//! Two regions joined by an emulated WAN link (`drc-wanem`): relay A runs in
//! namespace a, relay B in namespace b, 50 ms one way and 2% random loss in
//! each direction between them. A publisher in namespace a sends synthetic
//! MariaDB transactions to relay A while relay A is killed with SIGKILL,
//! relay B is killed with SIGKILL and the link is cut for 30 s. At the end
//! both logs hold the same records at the same offsets, byte-identical to
//! what was published, every transaction exactly once and in order.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drc_proto::v1 as pb;
use drc_relay::{ClientConfig, RelayClient, TlsConfig};
use drc_tests::skip;
use drc_wanem::{Link, LinkConfig};
use prost::Message;

mod common;
use common::{last_offset, link_name, records, tls_init, tls_table, Proc};

/// The replicated stream.
const STREAM: &str = "a.s";
/// Port of both relays, each inside its own namespace.
const PORT: u16 = 7400;
/// Transactions published in all.
const TOTAL: u64 = 3_000;
/// Transactions per Publish request.
const BATCH: u64 = 25;
/// Publish requests in flight before the publisher waits for an ack.
const IN_FLIGHT: usize = 4;
/// Publishing pace, in transactions per second, so that the kills and the
/// cut happen while transactions keep coming.
const RATE: f64 = 100.0;
/// Row changes per transaction, and row payload bytes per change.
const ROWS: usize = 3;
const ROW_BYTES: usize = 500;
/// How long the link is cut.
const CUT: Duration = Duration::from_secs(30);

/// What the publisher thread shares with the test.
#[derive(Default)]
struct Progress {
    /// Highest sequence number acknowledged by relay A.
    acked: AtomicU64,
    /// Publish calls opened.
    sessions: AtomicU64,
    /// Transactions relay A reported as already held (resent after a break).
    duplicates: AtomicU64,
    /// Set to make the publisher give up (the test failed or is done).
    stop: AtomicBool,
    /// Set when the publisher thread ends, by success, error or panic.
    done: AtomicBool,
    /// The first errors the publisher recovered from.
    errors: Mutex<Vec<String>>,
}

/// Stops the publisher when the test ends, also by a panic.
struct StopOnDrop(Arc<Progress>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// Marks the publisher done when its thread ends, also by a panic.
struct DoneOnDrop(Arc<Progress>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::SeqCst);
    }
}

/// Transaction number `seq` of a MariaDB source (domain 0, server 1):
/// `ROWS` inserts into `shop.orders`, each with `ROW_BYTES` of payload.
fn tx(seq: u64) -> pb::Transaction {
    let changes = (0..ROWS as u64)
        .map(|i| pb::RowChange {
            op: pb::Op::Insert as i32,
            schema: "shop".into(),
            table: "orders".into(),
            columns: vec![
                pb::Column {
                    name: "id".into(),
                    sql_type: "bigint(20)".into(),
                    nullable: false,
                    charset: String::new(),
                },
                pb::Column {
                    name: "note".into(),
                    sql_type: "longblob".into(),
                    nullable: true,
                    charset: String::new(),
                },
            ],
            primary_key: vec![0],
            before: None,
            after: Some(pb::Row {
                values: vec![
                    pb::Value {
                        kind: Some(pb::value::Kind::Int((seq * ROWS as u64 + i) as i64)),
                    },
                    pb::Value {
                        kind: Some(pb::value::Kind::Bytes(noise(
                            seq * ROWS as u64 + i,
                            ROW_BYTES,
                        ))),
                    },
                ],
            }),
        })
        .collect();
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
        changes,
        ddl: None,
    }
}

/// Deterministic, somewhat compressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i % 4 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            b"abcdefghijklmnop"[(x >> ((i % 4) * 8)) as usize & 15]
        })
        .collect()
}

/// The sequence number of a MariaDB GTID `0-1-SEQ`.
fn gtid_seq(gtid: &str) -> u64 {
    gtid.strip_prefix("0-1-")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected GTID {gtid:?}"))
}

/// Publishes transactions `1..=TOTAL` to relay A, paced at `RATE`, until all
/// are acknowledged; after any error reconnects and resumes after the
/// position relay A reports. Runs on a thread inside namespace a.
fn publish_all(client: ClientConfig, progress: Arc<Progress>) -> Result<(), String> {
    let _done = DoneOnDrop(progress.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("publisher runtime: {e}"))?;
    rt.block_on(async {
        let started = Instant::now();
        loop {
            if progress.stop.load(Ordering::SeqCst) {
                return Err("publisher stopped before it finished".to_string());
            }
            match session(&client, &progress, started).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    {
                        let mut errors = progress.errors.lock().expect("errors lock");
                        if errors.len() < 10 {
                            errors.push(e);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    })
}

/// One Publish call: from relay A's resume point on, as far as it goes.
async fn session(
    client: &ClientConfig,
    progress: &Progress,
    started: Instant,
) -> Result<(), String> {
    let call = Duration::from_secs(20);
    let relay = tokio::time::timeout(call, RelayClient::connect(client.clone()))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut publisher = tokio::time::timeout(call, relay.publisher(STREAM, "wan-test"))
        .await
        .map_err(|_| "publisher hello timed out".to_string())?
        .map_err(|e| format!("publisher: {e}"))?;
    progress.sessions.fetch_add(1, Ordering::SeqCst);
    let resume = publisher.resume().clone();
    let held = resume.position.as_ref().map_or(0, |p| gtid_seq(&p.gtid));
    // Offsets are dense and every transaction is held once, so the last
    // offset is the last sequence number; an acknowledged transaction is
    // durable, so the relay holds at least what it acknowledged.
    assert_eq!(
        resume.last_offset, held,
        "relay A's last offset matches its last GTID: {resume:?}"
    );
    let acked = progress.acked.load(Ordering::SeqCst);
    assert!(
        held >= acked,
        "relay A lost acknowledged transactions: holds up to {held}, acknowledged {acked}"
    );
    // Like a capture that re-reads a little of the binlog, resend the last
    // batch the relay holds: its dedup must drop it.
    let mut next = held.saturating_sub(BATCH) + 1;
    // Requests sent and not acknowledged yet: (first, last) sequence numbers.
    let mut in_flight = std::collections::VecDeque::new();
    while next <= TOTAL || !in_flight.is_empty() {
        if progress.stop.load(Ordering::SeqCst) {
            return Err("stopped".to_string());
        }
        let due = (started.elapsed().as_secs_f64() * RATE) as u64;
        if next <= TOTAL && next <= due && in_flight.len() < IN_FLIGHT {
            let last = (next + BATCH - 1).min(TOTAL);
            let batch: Vec<pb::Transaction> = (next..=last).map(tx).collect();
            tokio::time::timeout(call, publisher.send(&batch))
                .await
                .map_err(|_| format!("send {next}..={last} timed out"))?
                .map_err(|e| format!("send {next}..={last}: {e}"))?;
            in_flight.push_back((next, last));
            next = last + 1;
            continue;
        }
        let Some(&(first, last)) = in_flight.front() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let ack = tokio::time::timeout(call, publisher.ack())
            .await
            .map_err(|_| format!("ack of {first}..={last} timed out"))?
            .map_err(|e| format!("ack of {first}..={last}: {e}"))?;
        in_flight.pop_front();
        assert_eq!(
            ack.last_offset,
            last.max(held),
            "relay A's ack of {first}..={last}: {ack:?}"
        );
        assert_eq!(
            u64::from(ack.appended + ack.duplicates),
            last - first + 1,
            "relay A's ack of {first}..={last} counts every transaction: {ack:?}"
        );
        assert_eq!(
            u64::from(ack.duplicates),
            (held.min(last) + 1).saturating_sub(first),
            "relay A drops exactly what it holds of {first}..={last}: {ack:?}"
        );
        progress
            .duplicates
            .fetch_add(u64::from(ack.duplicates), Ordering::SeqCst);
        progress.acked.fetch_max(last, Ordering::SeqCst);
    }
    tokio::time::timeout(call, publisher.finish())
        .await
        .map_err(|_| "finish timed out".to_string())?
        .map_err(|e| format!("finish: {e}"))?;
    Ok(())
}

fn relay_config(
    w: &Path,
    tls: &Path,
    region: &str,
    ip: Ipv4Addr,
    upstream: Option<Ipv4Addr>,
) -> std::path::PathBuf {
    let mut text = format!(
        "region = \"{region}\"\n[relay]\nlisten = \"{ip}:{PORT}\"\ndata_dir = {:?}\ntls = {}\n",
        w.join(format!("{region}-data")),
        tls_table(tls, region),
    );
    if let Some(up) = upstream {
        text.push_str(&format!(
            "\n[[relay.upstreams]]\nurl = \"https://{up}:{PORT}\"\ntls = {}\n\
             streams = [\"{STREAM}\"]\nsubscriber = \"relay-{region}\"\n",
            tls_table(tls, region),
        ));
    }
    let path = w.join(format!("{region}.toml"));
    std::fs::write(&path, text).expect("write relay config");
    path
}

#[test]
fn two_relays_over_a_lossy_link_survive_kill9_and_a_30s_cut() {
    if let Err(why) = drc_wanem::check_support() {
        skip!("no emulated WAN link here: {why}");
    }
    let t0 = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();

    // Declared first, so it is dropped last: every process and the
    // publisher in its namespaces is gone before they are deleted.
    let link = Link::up(LinkConfig::new(link_name("rw")).delay_ms(50).loss_pct(2.0))
        .expect("bring the link up");
    let rtt = link
        .wait_ready(Duration::from_secs(10))
        .expect("packets cross the link");
    let (a_ip, b_ip) = (link.a_ip(), link.b_ip());
    eprintln!("link up: a={a_ip} b={b_ip}, first round trip {rtt:?}");

    let tls = w.join("tls");
    tls_init(&tls, a_ip, b_ip);
    let a_cfg = relay_config(w, &tls, "a", a_ip, None);
    let b_cfg = relay_config(w, &tls, "b", b_ip, Some(a_ip));
    let a_dir = w.join("a-data").join("streams").join(STREAM);
    let b_dir = w.join("b-data").join("streams").join(STREAM);
    let (log_a, log_b) = (w.join("a.log"), w.join("b.log"));
    let drc = env!("CARGO_BIN_EXE_drc");
    let start_a = || {
        Proc::spawn(
            "relay A",
            link.command_a(drc),
            &["relay", "--config", &a_cfg.to_string_lossy()],
            &log_a,
        )
    };
    let start_b = || {
        Proc::spawn(
            "relay B",
            link.command_b(drc),
            &["relay", "--config", &b_cfg.to_string_lossy()],
            &log_b,
        )
    };
    let logs = || {
        format!(
            "relay A:\n{}\nrelay B:\n{}",
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        )
    };

    let mut a = start_a();
    let mut b = start_b();

    let progress = Arc::new(Progress::default());
    let _stop_publisher = StopOnDrop(progress.clone());
    let mut client = ClientConfig::new(format!("https://{a_ip}:{PORT}"));
    client.tls = Some(TlsConfig {
        ca: tls.join("ca.pem"),
        cert: tls.join("a.pem"),
        key: tls.join("a.key"),
    });
    client.connect_timeout = Duration::from_secs(2);
    let publisher = {
        let progress = progress.clone();
        link.spawn_in_a(move || publish_all(client, progress))
            .expect("start the publisher in namespace a")
    };

    let status = |what: &str| {
        eprintln!(
            "{:>5.1}s {what}: acked {} A {} B {}",
            t0.elapsed().as_secs_f64(),
            progress.acked.load(Ordering::SeqCst),
            last_offset(&a_dir),
            last_offset(&b_dir)
        );
    };
    let wait_for = |what: &str, secs: u64, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                !publisher_failed(&progress),
                "publisher ended early while waiting for {what}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: acked {} A {} B {}\n{}",
                progress.acked.load(Ordering::SeqCst),
                last_offset(&a_dir),
                last_offset(&b_dir),
                logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        status(what);
    };
    let acked = |n: u64| progress.acked.load(Ordering::SeqCst) >= n;

    // 1. kill -9 relay A while it takes transactions and serves B.
    wait_for("A publishing, B replicating", 30, &|| {
        acked(400) && last_offset(&b_dir) >= 100
    });
    a.kill9();
    status("relay A killed");
    std::thread::sleep(Duration::from_millis(500));
    a = start_a();

    // 2. kill -9 relay B once replication has resumed past A's restart.
    let a_at_restart = last_offset(&a_dir);
    wait_for("B replicating after A's restart", 30, &|| {
        acked(a_at_restart + 200) && last_offset(&b_dir) > a_at_restart
    });
    b.kill9();
    status("relay B killed");
    std::thread::sleep(Duration::from_millis(500));
    b = start_b();
    let b_at_restart = last_offset(&b_dir);
    wait_for("B replicating after its restart", 30, &|| {
        last_offset(&b_dir) > b_at_restart + 100
    });

    // 3. Cut the link for 30 s while publishing goes on.
    link.cut(CUT);
    let cut_at = Instant::now();
    let (a_at_cut, acked_at_cut) = (last_offset(&a_dir), progress.acked.load(Ordering::SeqCst));
    status("link cut");
    while link.cut_remaining().is_some() {
        assert!(
            !publisher_failed(&progress),
            "publisher ended early during the cut"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    status("link restored");
    let b_after_cut = last_offset(&b_dir);
    assert!(
        last_offset(&a_dir) > a_at_cut + 1000,
        "publishing to A went on during the cut: A {a_at_cut} -> {}",
        last_offset(&a_dir)
    );
    assert!(
        progress.acked.load(Ordering::SeqCst) > acked_at_cut,
        "acks went on during the cut"
    );

    // 4. Everything published; B catches up over the restored link.
    let result = publisher.join().expect("publisher thread panicked");
    let errors = progress.errors.lock().expect("errors lock").clone();
    assert!(
        result.is_ok(),
        "publisher: {result:?}, errors {errors:?}\n{}",
        logs()
    );
    status("all published");
    let restored = cut_at + CUT;
    wait_for("B to catch up after the cut", 40, &|| {
        last_offset(&b_dir) >= TOTAL
    });
    let catch_up = restored.elapsed();

    // 5. Stop both relays cleanly, then compare their logs.
    a.stop();
    b.stop();
    let stats = link.stats();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (ra, rb) = rt.block_on(async { (records(&a_dir).await, records(&b_dir).await) });
    assert_eq!(ra.len() as u64, TOTAL, "A holds every transaction once");
    assert!(
        ra == rb,
        "identical records at identical offsets in A and B"
    );
    let offsets: Vec<u64> = ra.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=TOTAL).collect::<Vec<u64>>(), "dense, no gap");
    for (o, bytes) in &ra {
        let t = pb::Transaction::decode(bytes.as_slice()).expect("decode a transaction");
        let gtid = t.position.as_ref().map(|p| p.gtid.as_str()).unwrap_or("");
        assert_eq!(
            gtid,
            format!("0-1-{o}"),
            "GTID at offset {o}: in order, once"
        );
        assert!(
            *bytes == tx(*o).encode_to_vec(),
            "record {o} is byte-identical to what was published"
        );
    }

    eprintln!(
        "published {TOTAL} transactions in {} Publish calls ({} resent as duplicates); \
         recovered errors: {errors:?}",
        progress.sessions.load(Ordering::SeqCst),
        progress.duplicates.load(Ordering::SeqCst),
    );
    eprintln!(
        "B before the cut ended at {b_after_cut}, caught up {catch_up:?} after the link came back; \
         total {:?}",
        t0.elapsed()
    );
    eprintln!(
        "link a->b: {} IP bytes in {} packets, {} dropped by loss, {} by the cut",
        stats.a_to_b.bytes,
        stats.a_to_b.packets,
        stats.a_to_b.dropped_loss,
        stats.a_to_b.dropped_cut
    );
    eprintln!(
        "link b->a: {} IP bytes in {} packets, {} dropped by loss, {} by the cut",
        stats.b_to_a.bytes,
        stats.b_to_a.packets,
        stats.b_to_a.dropped_loss,
        stats.b_to_a.dropped_cut
    );
    // Processes first, then the namespaces.
    drop((a, b));
    drop(link);
}

/// Whether the publisher ended before it had every transaction acknowledged.
fn publisher_failed(progress: &Progress) -> bool {
    progress.done.load(Ordering::SeqCst) && progress.acked.load(Ordering::SeqCst) < TOTAL
}
