//! Two regions, both taking writes, joined by an emulated WAN link
//! (`drc-wanem`: 50 ms each way, 1% loss each way). Region a is network
//! namespace a with MariaDB A and `drc run` (relay, capture of A into stream
//! `a.shop`, replication of `b.shop` from region b over mutual TLS, MySQL
//! applier of `b.shop` into A); region b the same the other way round. Each
//! MariaDB listens on its namespace's loopback; the test reaches both through
//! their unix sockets.
//!
//! A writer per region commits transactions into its own key range the whole
//! time: a row of `shop.log` (no primary key, so a change applied twice is a
//! second row) and an upsert (now and then a delete) of `shop.kv`. Meanwhile
//! the `drc run` of each region is killed with SIGKILL at random moments and
//! restarted after a short random pause (twice each in random order, one
//! region once more early in the cut, both at once after it), and the link
//! is cut for 30 s while the writes go on; during the cut each region's log
//! must warn again and again that it cannot reach the other region. Then the writers stop and
//! both databases must converge. What is checked, from the data:
//!
//! - `drc verify` finds A and B identical, both ways;
//! - each writer's rows are in both databases exactly once;
//! - each region's stream holds one record per transaction of its server's
//!   binlog (the GTIDs of the server's domain, each once, in order, none
//!   missing), identical at identical offsets in the other region's relay;
//!   each writer transaction is there once, by its GTID, as a local one;
//! - every local transaction of one region's stream was applied exactly once
//!   in the other: the `drc.applied` rows the other region's applier wrote
//!   (its own capture holds every one of them) cover it exactly once, and
//!   that applier's checkpoint reached the stream's last record it must
//!   apply (only records it leaves out, of its own origin, may follow);
//! - nothing came back: no record of a region's stream carries its own
//!   origin, every `drc.applied` row written in a region names the other
//!   region's stream, and once the writers stop the streams stop growing.
//!
//! A seed drawn from the clock picks the kill moments; it is printed, and
//! `DRC_TEST_SEED=N` replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drc_proto::v1 as pb;
use drc_tests::{skip, MariaDb, MariaDbOptions};
use drc_wanem::{Link, LinkConfig};
use prost::Message;

mod common;
use common::{http_get, last_offset, link_name, records, tls_init, tls_table, Proc};

/// Port of each region's relay, on its end of the link.
const RELAY_PORT: u16 = 7400;
/// Port of each region's `/readyz`, on its namespace's loopback.
const METRICS_PORT: u16 = 9400;
/// How long the link is cut.
const CUT: Duration = Duration::from_secs(30);
/// Rows of `shop.kv` per region (its keys are `base + 0..KEYS`).
const KEYS: u64 = 50;
/// Pause of a writer between two transactions.
const WRITE_PAUSE: Duration = Duration::from_millis(5);
/// How long both databases may take to converge once the writers stop
/// (generous: a loaded 2-core machine, the backlog of a restart).
const CONVERGE: Duration = Duration::from_secs(180);
/// How long a restarted region may take to answer `/readyz` with 200.
const READY: Duration = Duration::from_secs(90);
/// Warnings about the unreachable region each log must show during the cut.
const CUT_WARNINGS: usize = 2;

/// A small xorshift generator: the kill moments, replayable by seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration in `lo_ms..hi_ms`.
    fn ms(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.next() % (hi_ms - lo_ms))
    }
}

/// One region: its database, its config, its log and its `drc run`.
struct Region {
    name: &'static str,
    other: &'static str,
    /// `drc run (a)`, for messages.
    label: &'static str,
    ns: String,
    ip: Ipv4Addr,
    db: MariaDb,
    cfg: PathBuf,
    log: PathBuf,
    data: PathBuf,
    run: Option<Proc>,
    kills: u32,
}

impl Region {
    fn stream(&self) -> String {
        format!("{}.shop", self.name)
    }

    fn other_stream(&self) -> String {
        format!("{}.shop", self.other)
    }

    /// The directory of `stream`'s log in this region's relay.
    fn log_dir(&self, stream: &str) -> PathBuf {
        self.data.join("streams").join(stream)
    }

    fn start(&mut self) {
        self.run = Some(Proc::spawn(
            self.label,
            drc_wanem::netns::command(&self.ns, env!("CARGO_BIN_EXE_drc")),
            &["run", "--config", &self.cfg.to_string_lossy()],
            &self.log,
        ));
    }

    fn kill9(&mut self) {
        if let Some(mut run) = self.run.take() {
            run.kill9();
            self.kills += 1;
        }
    }

    /// SIGTERM; `drc run` must exit 0 within a few seconds.
    fn stop(&mut self) {
        if let Some(mut run) = self.run.take() {
            run.stop();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_len(&self) -> usize {
        std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    /// Whether `/readyz` in this region's namespace answers 200.
    fn ready(&self) -> bool {
        drc_wanem::netns::run_in(&self.ns, || {
            http_get(METRICS_PORT, "/readyz").is_some_and(|(code, _)| code == 200)
        })
        .unwrap_or(false)
    }

    /// `SELECT COUNT(*) FROM shop.log WHERE w = writer` (0 before the table).
    fn log_rows(&self, writer: &str) -> u64 {
        self.db
            .sql(&format!(
                "SELECT COUNT(*) FROM shop.log WHERE w = '{writer}'"
            ))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The sequence number of the server's own GTID domain in
    /// `@@gtid_binlog_pos`: how many transactions its binlog holds.
    fn binlog_seq(&self, domain: u32) -> u64 {
        let pos = self
            .db
            .sql("SELECT @@gtid_binlog_pos")
            .expect("read @@gtid_binlog_pos");
        pos.split(',')
            .filter_map(|g| parse_gtid(g.trim()))
            .find(|g| g.0 == domain)
            .map_or(0, |g| g.2)
    }
}

fn region_config(r: &Region, other_ip: Ipv4Addr, tls: &Path) -> String {
    let tls = tls_table(tls, r.name);
    format!(
        "region = \"{name}\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n\n\
         [relay]\nlisten = \"{ip}:{RELAY_PORT}\"\ndata_dir = {data:?}\ntls = {tls}\n\n\
         [[relay.upstreams]]\nurl = \"https://{other_ip}:{RELAY_PORT}\"\ntls = {tls}\n\
         streams = [\"{other}.shop\"]\nsubscriber = \"relay-{name}\"\n\n\
         [[capture]]\nstream = \"{name}.shop\"\nsource = \"{url}\"\nstart = \"start\"\n\
         relay = {{ url = \"https://{ip}:{RELAY_PORT}\", tls = {tls} }}\n\n\
         [[apply]]\nstream = \"{other}.shop\"\nsubscriber = \"apply-{name}\"\n\
         relay = {{ url = \"https://{ip}:{RELAY_PORT}\", tls = {tls} }}\n\
         max_batch_delay_ms = 20\n\
         sink = {{ kind = \"mysql\", url = \"{url}\" }}\n",
        name = r.name,
        other = r.other,
        ip = r.ip,
        data = r.data,
        // The server's address inside the region's namespace.
        url = r.db.url(),
    )
}

/// What a writer shares with the test.
#[derive(Default)]
struct Writes {
    /// Transactions committed so far.
    committed: AtomicU64,
    /// The GTID of each committed transaction, in order (`n` is index + 1).
    gtids: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Stops the writers when the test ends, also by a panic.
struct StopOnDrop(Vec<Arc<Writes>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for w in &self.0 {
            w.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Commits transactions into region `w`'s key range of `url` until told to
/// stop: transaction `n` inserts `(w, n)` into `shop.log`, upserts row
/// `base + n % KEYS` of `shop.kv` and, every seventh, deletes another row of
/// the range. Records each transaction's GTID.
fn write(url: String, w: &'static str, base: u64, writes: Arc<Writes>) -> Result<(), String> {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("writer runtime: {e}"))?;
    rt.block_on(async move {
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .map_err(|e| format!("writer {w}: connect: {e}"))?;
        let mut n = 0u64;
        while !writes.stop.load(Ordering::SeqCst) {
            n += 1;
            let mut sql = format!(
                "BEGIN; INSERT INTO shop.log (w, n, note) VALUES ('{w}', {n}, 'row {n} of {w}'); \
                 INSERT INTO shop.kv (id, w, qty) VALUES ({id}, '{w}', 1) \
                 ON DUPLICATE KEY UPDATE qty = qty + 1; ",
                id = base + n % KEYS
            );
            if n.is_multiple_of(7) {
                sql.push_str(&format!(
                    "DELETE FROM shop.kv WHERE id = {}; ",
                    base + (n * 3 + 1) % KEYS
                ));
            }
            sql.push_str("COMMIT");
            conn.query_drop(sql)
                .await
                .map_err(|e| format!("writer {w}: transaction {n}: {e}"))?;
            let gtid: Option<String> = conn
                .query_first("SELECT @@last_gtid")
                .await
                .map_err(|e| format!("writer {w}: @@last_gtid of {n}: {e}"))?;
            writes
                .gtids
                .lock()
                .expect("gtids lock")
                .push(gtid.unwrap_or_default());
            writes.committed.store(n, Ordering::SeqCst);
            tokio::time::sleep(WRITE_PAUSE).await;
        }
        let _ = conn.disconnect().await;
        Ok(())
    })
}

/// `D-S-N` as (domain, server, sequence number).
fn parse_gtid(g: &str) -> Option<(u32, u32, u64)> {
    let mut it = g.split('-');
    let d = it.next()?.parse().ok()?;
    let s = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    it.next().is_none().then_some((d, s, n))
}

/// The value of column `name` in a row image.
fn value<'a>(
    change: &'a pb::RowChange,
    row: &'a pb::Row,
    name: &str,
) -> Option<&'a pb::value::Kind> {
    let i = change.columns.iter().position(|c| c.name == name)?;
    row.values.get(i)?.kind.as_ref()
}

fn text(v: Option<&pb::value::Kind>) -> String {
    match v {
        Some(pb::value::Kind::Text(s)) => s.clone(),
        Some(pb::value::Kind::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

fn uint(v: Option<&pb::value::Kind>) -> Option<u64> {
    match v {
        Some(pb::value::Kind::Uint(u)) => Some(*u),
        Some(pb::value::Kind::Int(i)) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// A stream read back from a stopped relay, decoded.
struct Stream {
    name: String,
    /// (offset, transaction), offsets dense from 1.
    txns: Vec<(u64, pb::Transaction)>,
}

impl Stream {
    fn last(&self) -> u64 {
        self.txns.last().map_or(0, |(o, _)| *o)
    }

    /// `(from_offset, to_offset, stream, origin)` of every row inserted into
    /// `drc.applied` by the transactions of this stream.
    fn applied_rows(&self) -> Vec<(u64, u64, String, String)> {
        let mut out = Vec::new();
        for (o, t) in &self.txns {
            for c in &t.changes {
                if c.schema != "drc" || c.table != "applied" || c.op != pb::Op::Insert as i32 {
                    continue;
                }
                let row = c.after.as_ref().unwrap_or_else(|| {
                    panic!("{} offset {o}: drc.applied insert without a row", self.name)
                });
                let from = uint(value(c, row, "from_offset"));
                let to = uint(value(c, row, "to_offset"));
                let (Some(from), Some(to)) = (from, to) else {
                    panic!(
                        "{} offset {o}: drc.applied offsets unreadable: {row:?}",
                        self.name
                    );
                };
                out.push((
                    from,
                    to,
                    text(value(c, row, "stream")),
                    text(value(c, row, "origin")),
                ));
            }
        }
        out
    }
}

/// Reads `stream` back from both relays (stopped), checks that the replica
/// holds the same records at the same offsets as the home relay, and that
/// the offsets are dense from 1.
fn read_stream(home: &Region, replica: &Region) -> Stream {
    let name = home.stream();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (h, r) = rt.block_on(async {
        (
            records(&home.log_dir(&name)).await,
            records(&replica.log_dir(&name)).await,
        )
    });
    assert!(!h.is_empty(), "stream {name} holds records");
    assert_eq!(
        h.len(),
        r.len(),
        "region {} holds as many records of {name} as its home region {}",
        replica.name,
        home.name
    );
    // Identical records at identical offsets, except the replica region's
    // own changes (applied in the home region, captured there with the
    // replica's origin): those cross the link as stubs and never return.
    let own = replica.stream();
    let mut stubs = 0;
    for ((oh, bh), (or, br)) in h.iter().zip(&r) {
        assert_eq!(oh, or, "offsets of {name}");
        if bh == br {
            continue;
        }
        let th = pb::Transaction::decode(bh.as_slice()).expect("decode home record");
        let tr = pb::Transaction::decode(br.as_slice()).expect("decode replica record");
        assert_eq!(
            th.origin, own,
            "offset {oh} of {name} differs between the regions but is not {own}'s own change"
        );
        assert!(
            tr.changes.is_empty() && tr.ddl.is_none(),
            "offset {oh} of {name}: {}'s copy of its own change carries rows",
            replica.name
        );
        assert_eq!(
            (&th.position, th.commit_ts_us, th.server_id, &th.origin),
            (&tr.position, tr.commit_ts_us, tr.server_id, &tr.origin),
            "offset {oh} of {name}: the stub names the transaction"
        );
        stubs += 1;
    }
    assert!(
        stubs > 0,
        "{name} holds {own}'s changes, which {} keeps as stubs",
        replica.name
    );
    let offsets: Vec<u64> = h.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (1..=h.len() as u64).collect::<Vec<u64>>(),
        "offsets of {name} dense from 1"
    );
    let txns = h
        .into_iter()
        .map(|(o, b)| {
            let t = pb::Transaction::decode(b.as_slice())
                .unwrap_or_else(|e| panic!("{name} offset {o}: decode: {e}"));
            (o, t)
        })
        .collect();
    Stream { name, txns }
}

/// The checkpoint of `stream` in `db`: `drc.checkpoints` extended by the
/// `drc.applied` ranges that follow it without a gap.
fn checkpoint(db: &MariaDb, stream: &str) -> u64 {
    let mut cp: u64 = db
        .sql(&format!(
            "SELECT `offset` FROM drc.checkpoints WHERE stream = '{stream}'"
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let ranges = db
        .sql(&format!(
            "SELECT from_offset, to_offset FROM drc.applied WHERE stream = '{stream}' \
             ORDER BY from_offset"
        ))
        .unwrap_or_default();
    for line in ranges.lines() {
        let mut it = line.split('\t').map(|v| v.parse::<u64>().unwrap_or(0));
        let (from, to) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        if from > cp + 1 {
            break;
        }
        cp = cp.max(to);
    }
    cp
}

/// Lines of `text` that are warnings of a region's relay that it cannot
/// reach the other region's relay (which listens at `other_ip`).
fn unreachable_warnings(text: &str, other_ip: Ipv4Addr) -> Vec<String> {
    let upstream = format!("upstream=https://{other_ip}:{RELAY_PORT}");
    text.lines()
        .filter(|l| {
            l.contains(" WARN ")
                && l.contains("replication interrupted")
                && l.contains(&upstream)
                && (l.contains("cannot reach the relay")
                    || l.contains("lost the connection to the relay"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_regions_over_the_wan_survive_kill9_and_a_30s_cut_and_converge_exactly_once() {
    if let Err(why) = drc_wanem::check_support() {
        skip!("no emulated WAN link here: {why}");
    }
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let t0 = Instant::now();
    let seed = std::env::var("DRC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("seed {seed} (DRC_TEST_SEED={seed} replays the kill moments)");
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();

    // Declared first, so it is dropped last: every process in the
    // namespaces is gone before they are deleted.
    let link = Link::up(
        LinkConfig::new(link_name("aa"))
            .delay_ms(50)
            .loss_pct(1.0)
            .seed(seed),
    )
    .expect("bring the link up");
    let rtt = link
        .wait_ready(Duration::from_secs(10))
        .expect("packets cross the link");
    let (a_ip, b_ip) = (link.a_ip(), link.b_ip());
    eprintln!("link up: a={a_ip} b={b_ip}, first round trip {rtt:?}");

    let db = |ns: &str, id: u32| {
        MariaDb::start(MariaDbOptions {
            server_id: id,
            gtid_domain_id: Some(id),
            netns: Some(ns.to_string()),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("database of namespace {ns}: {e:#}"))
    };
    let tls = w.join("tls");
    tls_init(&tls, a_ip, b_ip);
    let mut a = Region {
        name: "a",
        other: "b",
        label: "drc run (a)",
        ns: link.ns_a().to_string(),
        ip: a_ip,
        db: db(link.ns_a(), 1),
        cfg: w.join("a.toml"),
        log: w.join("a.log"),
        data: w.join("relay-a"),
        run: None,
        kills: 0,
    };
    let mut b = Region {
        name: "b",
        other: "a",
        label: "drc run (b)",
        ns: link.ns_b().to_string(),
        ip: b_ip,
        db: db(link.ns_b(), 2),
        cfg: w.join("b.toml"),
        log: w.join("b.log"),
        data: w.join("relay-b"),
        run: None,
        kills: 0,
    };
    std::fs::write(&a.cfg, region_config(&a, b_ip, &tls)).expect("a.toml");
    std::fs::write(&b.cfg, region_config(&b, a_ip, &tls)).expect("b.toml");

    // The schema is made in region a only; region b gets it replicated.
    a.db.sql(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.log (w CHAR(1) NOT NULL, n BIGINT NOT NULL, note VARCHAR(40)); \
         CREATE TABLE shop.kv (id BIGINT PRIMARY KEY, w CHAR(1) NOT NULL, qty INT NOT NULL)",
    )
    .expect("schema");
    a.start();
    b.start();

    let logs = |a: &Region, b: &Region| {
        let tail = |r: &Region| {
            let text = r.log_text();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!(
            "--- {} (last 60 lines)\n{}\n--- {} (last 60 lines)\n{}",
            a.log.display(),
            tail(a),
            b.log.display(),
            tail(b)
        )
    };
    let wait = |what: &str, timeout: Duration, a: &Region, b: &Region, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n{}",
                logs(a, b)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{:>6.1}s {what}", t0.elapsed().as_secs_f64());
    };
    wait("both regions ready", READY, &a, &b, &|| {
        a.ready() && b.ready()
    });
    wait("the schema reaches region b", READY, &a, &b, &|| {
        b.db.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'")
            .is_ok_and(|s| s == "2")
    });

    // Both writers, each into its own key range.
    let (wa, wb) = (Arc::new(Writes::default()), Arc::new(Writes::default()));
    let _stop_writers = StopOnDrop(vec![wa.clone(), wb.clone()]);
    let writer_a = {
        let (url, wa) = (a.db.socket_url(), wa.clone());
        std::thread::spawn(move || write(url, "a", 1_000, wa))
    };
    let writer_b = {
        let (url, wb) = (b.db.socket_url(), wb.clone());
        std::thread::spawn(move || write(url, "b", 2_000, wb))
    };
    let status = |what: &str, a: &Region, b: &Region| {
        eprintln!(
            "{:>6.1}s {what}: written a {} b {}; a's rows in b {}, b's rows in a {}",
            t0.elapsed().as_secs_f64(),
            wa.committed.load(Ordering::SeqCst),
            wb.committed.load(Ordering::SeqCst),
            b.log_rows("a"),
            a.log_rows("b"),
        );
    };
    wait("both directions carry writes", READY, &a, &b, &|| {
        b.log_rows("a") >= 50 && a.log_rows("b") >= 50
    });

    // 1. kill -9 each region's drc run twice, in random order, at random
    // moments under load; each restart is ready before the next kill.
    let mut order = [true, false, true, false];
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    for kill_a in order {
        std::thread::sleep(rng.ms(1_000, 4_000));
        let r = if kill_a { &mut a } else { &mut b };
        r.kill9();
        let pause = rng.ms(100, 1_500);
        std::thread::sleep(pause);
        r.start();
        status(
            &format!("killed region {} (restarted after {pause:?})", r.name),
            &a,
            &b,
        );
        wait("both regions ready again", READY, &a, &b, &|| {
            a.ready() && b.ready()
        });
    }

    // 2. Cut the link for 30 s while both keep writing, and kill one region
    // early in the cut too. A region notices a silent link within ~10 s
    // (HTTP/2 pings), and each attempt to reconnect waits out the connect
    // timeout (10 s): the early kill leaves room for two warnings in each.
    let (len_a, len_b) = (a.log_len(), b.log_len());
    let written_at_cut = (
        wa.committed.load(Ordering::SeqCst),
        wb.committed.load(Ordering::SeqCst),
    );
    link.cut(CUT);
    let cut_at = Instant::now();
    status("link cut", &a, &b);
    {
        std::thread::sleep(rng.ms(1_000, 5_000));
        let r = if rng.next().is_multiple_of(2) {
            &mut a
        } else {
            &mut b
        };
        r.kill9();
        let pause = rng.ms(100, 1_500);
        std::thread::sleep(pause);
        r.start();
        status(
            &format!(
                "killed region {} during the cut (restarted after {pause:?})",
                r.name
            ),
            &a,
            &b,
        );
    }
    while link.cut_remaining().is_some() {
        std::thread::sleep(Duration::from_millis(100));
    }
    status("link restored", &a, &b);
    let written_after_cut = (
        wa.committed.load(Ordering::SeqCst),
        wb.committed.load(Ordering::SeqCst),
    );
    assert!(
        written_after_cut.0 > written_at_cut.0 && written_after_cut.1 > written_at_cut.1,
        "both regions kept writing during the cut: {written_at_cut:?} -> {written_after_cut:?}"
    );
    // Each region said, again and again, that it cannot reach the other.
    for (r, other_ip, from) in [(&a, b_ip, len_a), (&b, a_ip, len_b)] {
        let text = r.log_text();
        let during = text.get(from..).unwrap_or_default();
        let warnings = unreachable_warnings(during, other_ip);
        assert!(
            warnings.len() >= CUT_WARNINGS,
            "region {} warned {} times during the cut that it cannot reach region {} \
             (want at least {CUT_WARNINGS}):\n{during}",
            r.name,
            warnings.len(),
            r.other
        );
        eprintln!(
            "region {} warned {} times during the cut:\n  {}",
            r.name,
            warnings.len(),
            warnings.join("\n  ")
        );
    }

    // 3. Once more after the cut, both regions at once, then stop writing.
    std::thread::sleep(rng.ms(500, 3_000));
    a.kill9();
    b.kill9();
    std::thread::sleep(rng.ms(100, 1_500));
    a.start();
    b.start();
    status("killed both regions after the cut", &a, &b);
    std::thread::sleep(rng.ms(2_000, 5_000));
    wa.stop.store(true, Ordering::SeqCst);
    wb.stop.store(true, Ordering::SeqCst);
    let ra = writer_a.join().expect("writer a panicked");
    let rb = writer_b.join().expect("writer b panicked");
    assert!(ra.is_ok() && rb.is_ok(), "writers: a {ra:?}, b {rb:?}");
    let (na, nb) = (
        wa.committed.load(Ordering::SeqCst),
        wb.committed.load(Ordering::SeqCst),
    );
    status("writers stopped", &a, &b);
    let restored = cut_at + CUT;

    // 4. Convergence: every row of each writer in the other region.
    wait("both databases converge", CONVERGE, &a, &b, &|| {
        b.log_rows("a") >= na && a.log_rows("b") >= nb && {
            let kv = "SELECT id, w, qty FROM shop.kv ORDER BY id";
            let (ka, kb) = (a.db.sql(kv), b.db.sql(kv));
            ka.is_ok() && ka.ok() == kb.ok()
        }
    });
    eprintln!(
        "caught up {:.1}s after the link came back",
        restored.elapsed().as_secs_f64()
    );
    wait("both regions ready", READY, &a, &b, &|| {
        a.ready() && b.ready()
    });

    // Nothing comes back: with no writes the streams stop growing (a change
    // that came back would be applied again and grow the other stream).
    let ends = |a: &Region, b: &Region| {
        [
            last_offset(&a.log_dir("a.shop")),
            last_offset(&b.log_dir("a.shop")),
            last_offset(&b.log_dir("b.shop")),
            last_offset(&a.log_dir("b.shop")),
        ]
    };
    let mut settled = ends(&a, &b);
    let quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while quiet_since.elapsed() < Duration::from_secs(5) || ends(&a, &b) != settled {
        std::thread::sleep(Duration::from_millis(500));
        let now = ends(&a, &b);
        if now != settled {
            assert!(
                Instant::now() < deadline,
                "the streams keep growing with no writes: {settled:?} -> {now:?}\n{}",
                logs(&a, &b)
            );
            settled = now;
        }
    }
    eprintln!(
        "{:>6.1}s streams settled: a.shop {} (replica {}), b.shop {} (replica {})",
        t0.elapsed().as_secs_f64(),
        settled[0],
        settled[1],
        settled[2],
        settled[3]
    );

    // 5. drc verify: identical, both ways.
    for (src, dst) in [(&a, &b), (&b, &a)] {
        let out = Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(["verify", "--source", &src.db.socket_url()])
            .args(["--target", &dst.db.socket_url(), "--tables", "shop.*"])
            .output()
            .expect("run drc verify");
        assert!(
            out.status.success(),
            "drc verify --source {} --target {}: {}\n{}{}",
            src.name,
            dst.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "drc verify {} -> {}: {}",
            src.name,
            dst.name,
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }

    // 6. Each writer's rows in both databases, each exactly once.
    for r in [&a, &b] {
        for (writer, n) in [("a", na), ("b", nb)] {
            assert_eq!(
                r.db.sql(&format!(
                    "SELECT COUNT(*), COUNT(DISTINCT n), MIN(n), MAX(n) FROM shop.log \
                     WHERE w = '{writer}'"
                ))
                .expect("shop.log rows"),
                format!("{n}\t{n}\t1\t{n}"),
                "region {} holds each of writer {writer}'s {n} rows exactly once",
                r.name
            );
        }
        assert_eq!(
            r.db.sql("SELECT COUNT(*) FROM shop.log WHERE w NOT IN ('a', 'b')")
                .expect("shop.log rows"),
            "0"
        );
        assert_eq!(
            r.db.sql("SELECT COUNT(*) FROM drc.conflicts")
                .expect("conflicts"),
            "0",
            "no conflict in region {}",
            r.name
        );
    }
    let kv =
        a.db.sql("SELECT COUNT(*), SUM(qty) FROM shop.kv")
            .expect("kv");
    eprintln!("shop.kv rows and total qty in both: {kv}");

    // 7. The streams, from the relays' logs, both daemons stopped.
    a.stop();
    b.stop();
    let domain_seq = [a.binlog_seq(1), b.binlog_seq(2)];
    let checkpoints = [checkpoint(&b.db, "a.shop"), checkpoint(&a.db, "b.shop")];
    let checkpoint_origins = [
        b.db.sql("SELECT stream, origin FROM drc.checkpoints")
            .expect("checkpoints of b"),
        a.db.sql("SELECT stream, origin FROM drc.checkpoints")
            .expect("checkpoints of a"),
    ];
    let sa = read_stream(&a, &b);
    let sb = read_stream(&b, &a);
    let gtids_a = wa.gtids.lock().expect("gtids").clone();
    let gtids_b = wb.gtids.lock().expect("gtids").clone();
    for (k, (home, s, other_stream, domain, server, gtids, applied_in)) in [
        (&a, &sa, &sb, 1u32, 1u32, &gtids_a, &b),
        (&b, &sb, &sa, 2, 2, &gtids_b, &a),
    ]
    .into_iter()
    .enumerate()
    {
        let name = home.stream();
        let own_origins = [home.stream(), home.name.to_string()];

        // One record per transaction of the home server's binlog: its GTIDs
        // are exactly D-S-1 ..= D-S-N, in order.
        let seqs: Vec<u64> = s
            .txns
            .iter()
            .map(|(o, t)| {
                let g = t.position.as_ref().map_or("", |p| p.gtid.as_str());
                match parse_gtid(g) {
                    Some((d, sv, n)) if d == domain && sv == server => n,
                    _ => panic!("{name} offset {o}: GTID {g:?} is not of domain {domain}"),
                }
            })
            .collect();
        assert_eq!(
            seqs,
            (1..=domain_seq[k]).collect::<Vec<u64>>(),
            "{name} holds each transaction of {}'s binlog once, in order ({} records, \
             @@gtid_binlog_pos sequence {})",
            home.name,
            s.txns.len(),
            domain_seq[k]
        );

        // Each writer transaction once, by its GTID, as a local one with
        // the writer's row.
        let by_gtid: BTreeMap<&str, (u64, &pb::Transaction)> = s
            .txns
            .iter()
            .filter_map(|(o, t)| t.position.as_ref().map(|p| (p.gtid.as_str(), (*o, t))))
            .collect();
        assert_eq!(gtids.len() as u64, if k == 0 { na } else { nb });
        for (i, g) in gtids.iter().enumerate() {
            let n = i as u64 + 1;
            let Some((o, t)) = by_gtid.get(g.as_str()) else {
                panic!("{name} holds writer {}'s transaction {n} ({g})", home.name);
            };
            assert_eq!(
                t.origin, "",
                "{name} offset {o}: writer transaction {n} is local"
            );
            let row = t.changes.iter().find(|c| c.table == "log").and_then(|c| {
                let r = c.after.as_ref()?;
                Some((text(value(c, r, "w")), value(c, r, "n").cloned()))
            });
            assert_eq!(
                row,
                Some((home.name.to_string(), Some(pb::value::Kind::Int(n as i64)))),
                "{name} offset {o} ({g}) holds writer {}'s row {n}",
                home.name
            );
        }

        // Nothing came back: no record carries this region's own origin;
        // every applied one names the other region's stream.
        for (o, t) in &s.txns {
            assert!(
                !own_origins.contains(&t.origin),
                "{name} offset {o}: a transaction of origin {:?} came back to its region",
                t.origin
            );
            assert!(
                t.origin.is_empty() || t.origin == home.other_stream(),
                "{name} offset {o}: unexpected origin {:?}",
                t.origin
            );
        }
        let local_rows: BTreeSet<u64> = s
            .txns
            .iter()
            .filter(|(_, t)| t.origin.is_empty() && t.ddl.is_none())
            .map(|(o, _)| *o)
            .collect();
        assert_eq!(
            local_rows.len(),
            gtids.len(),
            "the local row transactions of {name} are the writer's"
        );
        for (from, to, stream, origin) in s.applied_rows() {
            assert!(
                stream == home.other_stream() && origin == home.other_stream(),
                "region {} applied only {}: drc.applied row {from}..={to} of {stream} \
                 with origin {origin}",
                home.name,
                home.other_stream()
            );
        }

        // Applied exactly once in the other region: the drc.applied rows its
        // applier wrote (every one is in its own stream) cover each local
        // row transaction of this stream exactly once, and never overlap.
        let ranges: Vec<(u64, u64)> = other_stream
            .applied_rows()
            .into_iter()
            .filter(|(_, _, st, _)| *st == name)
            .map(|(f, t, _, _)| (f, t))
            .collect();
        let mut sorted = ranges.clone();
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "region {} applied offsets of {name} twice: ranges {:?} and {:?}",
                applied_in.name,
                pair[0],
                pair[1]
            );
        }
        for o in &local_rows {
            let covering = sorted.iter().filter(|(f, t)| f <= o && o <= t).count();
            assert_eq!(
                covering, 1,
                "{name} offset {o} applied in region {} by {covering} groups",
                applied_in.name
            );
        }
        // The applier's checkpoint reached the end of what it applies (the
        // records it leaves out, of its own origin, may follow it: it does
        // not write a checkpoint for those alone, or the two regions would
        // bounce bookkeeping back and forth for ever).
        let must_apply = s
            .txns
            .iter()
            .filter(|(_, t)| t.origin != home.other_stream())
            .map(|(o, _)| *o)
            .max()
            .unwrap_or(0);
        assert!(
            (must_apply..=s.last()).contains(&checkpoints[k]),
            "region {}'s checkpoint of {name} is {}: between its last record to apply \
             ({must_apply}) and the stream's end ({})",
            applied_in.name,
            checkpoints[k],
            s.last()
        );
        assert_eq!(
            checkpoint_origins[k],
            format!("{name}\t{name}"),
            "region {} keeps one checkpoint, of {name}, with its origin",
            applied_in.name
        );
        eprintln!(
            "{name}: {} records ({} local row transactions, {} of origin {}), applied in \
             region {} by {} groups, checkpoint {}",
            s.txns.len(),
            local_rows.len(),
            s.txns.iter().filter(|(_, t)| !t.origin.is_empty()).count(),
            home.other_stream(),
            applied_in.name,
            ranges.len(),
            checkpoints[k]
        );
    }

    let errors: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|r| {
            r.log_text()
                .lines()
                .filter(|l| l.contains(" ERROR "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
    eprintln!(
        "written: a {na}, b {nb}; kills: a {}, b {}; total {:.1}s",
        a.kills,
        b.kills,
        t0.elapsed().as_secs_f64()
    );
    let stats = link.stats();
    eprintln!(
        "link a->b: {} IP bytes, {} dropped by loss, {} by the cut; b->a: {} IP bytes, {} dropped by loss, {} by the cut",
        stats.a_to_b.bytes,
        stats.a_to_b.dropped_loss,
        stats.a_to_b.dropped_cut,
        stats.b_to_a.bytes,
        stats.b_to_a.dropped_loss,
        stats.b_to_a.dropped_cut
    );
    // Processes first, then the namespaces.
    drop((a, b));
    drop(link);
}
