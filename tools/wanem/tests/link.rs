//! End-to-end tests of the emulated link. They need root, `/dev/net/tun` and
//! `ip netns`; without them each test prints `SKIPPED: <test>: <reason>` to
//! stderr and passes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_wanem::rng::Rng;
use drc_wanem::{check_support, netns, Dir, Link, LinkConfig};

const PORT: u16 = 7000;

fn skip(test: &str) -> bool {
    match check_support() {
        Ok(()) => false,
        Err(reason) => {
            eprintln!("SKIPPED: {test}: {reason}");
            true
        }
    }
}

/// A link name unique to this process and test, so tests run in parallel.
fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wt{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn up(cfg: LinkConfig) -> Link {
    let link = Link::up(cfg).expect("link up");
    link.wait_ready(Duration::from_secs(10))
        .expect("link ready");
    link
}

fn assert_gone(name: &str) {
    let (a, b) = drc_wanem::namespace_names(name);
    assert!(!netns::exists(&a), "namespace {a} left behind");
    assert!(!netns::exists(&b), "namespace {b} left behind");
}

fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= b as u64;
        *hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
}
const FNV_INIT: u64 = 0xCBF2_9CE4_8422_2325;

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

fn listen_b(link: &Link) -> TcpListener {
    let b = link.b_ip();
    link.run_in_b(move || TcpListener::bind((b, PORT)))
        .expect("enter namespace b")
        .expect("bind in namespace b")
}

fn connect_a(link: &Link, to: Ipv4Addr) -> TcpStream {
    link.run_in_a(move || TcpStream::connect_timeout(&(to, PORT).into(), Duration::from_secs(10)))
        .expect("enter namespace a")
        .expect("connect across the link")
}

struct Received {
    len: usize,
    hash: u64,
    first_byte: Instant,
    last_byte: Instant,
}

/// Sends `data` from namespace a to namespace b over one TCP connection and
/// returns what b received. `progress` counts received bytes as they arrive.
fn bulk(link: &Link, data: Arc<Vec<u8>>, progress: Arc<AtomicU64>) -> Received {
    let listener = listen_b(link);
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let mut hash = FNV_INIT;
        let mut len = 0;
        let mut first = None;
        loop {
            let n = s.read(&mut buf).expect("read (timed out?)");
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            fnv1a(&mut hash, &buf[..n]);
            len += n;
            progress.store(len as u64, Ordering::Relaxed);
        }
        let last = Instant::now();
        Received {
            len,
            hash,
            first_byte: first.unwrap_or(last),
            last_byte: last,
        }
    });
    let mut s = connect_a(link, link.b_ip());
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(&data).expect("send");
    s.shutdown(Shutdown::Write).expect("shutdown");
    receiver.join().expect("receiver thread")
}

fn checksum(data: &[u8]) -> u64 {
    let mut h = FNV_INIT;
    fnv1a(&mut h, data);
    h
}

#[test]
fn tcp_round_trip_is_twice_the_delay() {
    if skip("tcp_round_trip_is_twice_the_delay") {
        return;
    }
    let name = unique_name("rtt");
    {
        let link = up(LinkConfig::new(&name).delay_ms(50));
        let listener = listen_b(&link);
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).is_ok() {
                s.write_all(&b).expect("echo");
            }
        });
        let t = Instant::now();
        let mut c = connect_a(&link, link.b_ip());
        let connect_rtt = t.elapsed();
        c.set_nodelay(true).expect("nodelay");
        let mut echoes = Vec::new();
        for i in 0..5u8 {
            let t = Instant::now();
            c.write_all(&[i]).expect("send");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("echo back");
            assert_eq!(b[0], i);
            echoes.push(t.elapsed());
        }
        drop(c);
        server.join().expect("server");
        eprintln!("rtt: connect {connect_rtt:?}, echoes {echoes:?}");
        let ok = Duration::from_millis(95)..Duration::from_millis(200);
        assert!(ok.contains(&connect_rtt), "connect RTT {connect_rtt:?}");
        for e in &echoes {
            assert!(ok.contains(e), "echo RTT {e:?}");
        }
        let st = link.stats();
        assert!(st.a_to_b.packets > 0 && st.b_to_a.packets > 0);
        assert!(st.a_to_b.bytes >= 40 * st.a_to_b.packets, "{st}");
    }
    assert_gone(&name);
}

#[test]
fn lossy_link_drops_packets_not_the_connection() {
    if skip("lossy_link_drops_packets_not_the_connection") {
        return;
    }
    let name = unique_name("loss");
    {
        let link = up(LinkConfig::new(&name)
            .delay_ms(5)
            .loss_pct(2.0)
            .rate_mbit(100.0)
            .seed(7));
        let data = Arc::new(payload(4 << 20, 11));
        let got = bulk(&link, data.clone(), Arc::new(AtomicU64::new(0)));
        let st = link.stats();
        eprintln!("loss: {st}");
        assert_eq!(got.len, data.len());
        assert_eq!(got.hash, checksum(&data), "payload corrupted");
        assert!(st.a_to_b.dropped_loss > 0, "no packet was dropped: {st}");
        // 2% of the data packets, give or take.
        let rate = st.a_to_b.dropped_loss as f64 / st.a_to_b.rx_packets as f64;
        assert!((0.005..0.05).contains(&rate), "loss rate {rate}");
        // Every payload byte crossed the link at least once.
        assert!(st.a_to_b.bytes > data.len() as u64);
    }
    assert_gone(&name);
}

#[test]
fn rate_cap_limits_throughput() {
    if skip("rate_cap_limits_throughput") {
        return;
    }
    let name = unique_name("rate");
    {
        let link = up(LinkConfig::new(&name).delay_ms(5).rate_mbit(20.0));
        let data = Arc::new(payload(6 << 20, 3));
        let got = bulk(&link, data.clone(), Arc::new(AtomicU64::new(0)));
        assert_eq!(got.hash, checksum(&data));
        let secs = (got.last_byte - got.first_byte).as_secs_f64();
        let mbit = got.len as f64 * 8.0 / secs / 1e6;
        let st = link.stats();
        eprintln!("rate: {mbit:.2} Mbit/s goodput over {secs:.2} s; {st}");
        assert!((12.0..21.0).contains(&mbit), "throughput {mbit:.2} Mbit/s");
        assert_eq!(st.a_to_b.dropped_loss, 0);
    }
    assert_gone(&name);
}

#[test]
fn cut_link_stalls_then_resumes() {
    if skip("cut_link_stalls_then_resumes") {
        return;
    }
    let name = unique_name("cut");
    let control = std::env::temp_dir().join(format!("{name}.sock"));
    {
        let link = up(LinkConfig::new(&name)
            .delay_ms(5)
            .rate_mbit(20.0)
            .control(&control));
        let data = Arc::new(payload(6 << 20, 5));
        let progress = Arc::new(AtomicU64::new(0));
        let watcher = {
            let progress = progress.clone();
            let control = control.clone();
            std::thread::spawn(move || {
                while progress.load(Ordering::Relaxed) < 1 << 20 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                drc_wanem::control::request(&control, "cut 3").expect("cut via control socket");
                let cut_at = Instant::now();
                std::thread::sleep(Duration::from_millis(500));
                let early = progress.load(Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2300));
                let late = progress.load(Ordering::Relaxed);
                (cut_at, early, late)
            })
        };
        let started = Instant::now();
        let got = bulk(&link, data.clone(), progress);
        let total = started.elapsed();
        let (cut_at, early, late) = watcher.join().expect("watcher");
        let st = link.stats();
        eprintln!("cut: total {total:?}, bytes during cut {early}->{late}; {st}");
        assert_eq!(early, late, "data kept flowing while the link was cut");
        assert!(got.last_byte > cut_at + Duration::from_secs(3));
        assert_eq!(got.len, data.len());
        assert_eq!(got.hash, checksum(&data), "payload corrupted");
        assert!(st.a_to_b.dropped_cut + st.b_to_a.dropped_cut > 0, "{st}");
        assert!(link.cut_remaining().is_none());
    }
    assert_gone(&name);
    assert!(!control.exists(), "control socket left behind");
}

#[test]
fn live_settings_and_restore() {
    if skip("live_settings_and_restore") {
        return;
    }
    let name = unique_name("set");
    {
        let link = up(LinkConfig::new(&name).delay_ms(10));
        link.set_loss_pct(Dir::AtoB, 100.0);
        assert!(link.wait_ready(Duration::from_millis(1500)).is_err());
        assert!(link.stats().a_to_b.dropped_loss > 0);
        link.set_loss_pct(Dir::AtoB, 0.0);
        link.cut(Duration::from_secs(60));
        assert!(link.cut_remaining().is_some());
        link.restore();
        let rtt = link.wait_ready(Duration::from_secs(5)).expect("link back");
        assert!(rtt >= Duration::from_millis(19), "{rtt:?}");
        link.update(Dir::Both, |s| s.delay = Duration::from_millis(40));
        let rtt = link.wait_ready(Duration::from_secs(5)).expect("link back");
        assert!(rtt >= Duration::from_millis(79), "{rtt:?}");
    }
    assert_gone(&name);
}

#[test]
fn namespaces_removed_on_panic() {
    if skip("namespaces_removed_on_panic") {
        return;
    }
    let name = unique_name("panic");
    let n = name.clone();
    let res = std::panic::catch_unwind(move || {
        let link = up(LinkConfig::new(&n));
        assert!(netns::exists(link.ns_a()) && netns::exists(link.ns_b()));
        panic!("test panic while the link is up");
    });
    assert!(res.is_err());
    assert_gone(&name);
}
