//! `demo-load`: the write load of the two-region demo, and its lag probe.
//!
//! Both regions take writes at once. Each writes its own key range of
//! `shop.orders` (region a from 1, region b from 1,000,000,000), and every
//! fourth transaction also updates a row of `shop.stock`, which both regions
//! share: concurrent updates of one row there are conflicts, settled by the
//! appliers' conflict policies (the demo gives region a precedence).
//!
//! Lag: every order row carries `created_at = NOW(6)` from its source
//! transaction. A poller per direction asks the other region every
//! [`POLL_EVERY`] for the rows that arrived since, and the server computes
//! `NOW(6) - created_at` for each (both servers share this machine's
//! clock), so a row's lag is source commit to target visibility, within the
//! polling interval.
//!
//! Prints one line a second (transactions/s and lag each way), then, after
//! the writes stop, waits until every row has arrived and both regions' stock
//! rows are equal, and prints the summary; its last line is
//! `load: a_to_b=N b_to_a=M p50_ms=X p99_ms=Y max_ms=Z converged=yes|no`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

/// How often a poller looks for new rows.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// First order id of region b.
const B_BASE: u64 = 1_000_000_000;
/// Rows of the shared table.
const STOCK_ROWS: u64 = 20;

/// The demo's tables and the shared rows.
const SCHEMA: &str = "CREATE DATABASE IF NOT EXISTS shop; \
    CREATE TABLE IF NOT EXISTS shop.orders (id BIGINT UNSIGNED PRIMARY KEY, region CHAR(1) NOT NULL, \
      qty INT NOT NULL, created_at DATETIME(6) NOT NULL); \
    CREATE TABLE IF NOT EXISTS shop.stock (sku INT PRIMARY KEY, qty INT NOT NULL, updated_by CHAR(1)); \
    INSERT IGNORE INTO shop.stock (sku, qty) VALUES (1, 1000), (2, 1000), (3, 1000), (4, 1000), (5, 1000), (6, 1000), (7, 1000), (8, 1000), (9, 1000), (10, 1000), (11, 1000), (12, 1000), (13, 1000), (14, 1000), (15, 1000), (16, 1000), (17, 1000), (18, 1000), (19, 1000), (20, 1000)";

#[derive(Parser)]
struct Args {
    /// Region a's database, mysql://USER:PASS@HOST:PORT (or ?socket=PATH).
    #[arg(long)]
    a: String,
    /// Region b's database.
    #[arg(long)]
    b: String,
    /// Seconds of writes.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Transactions per second per region.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Print the schema's SQL and exit (to create it in both regions first).
    #[arg(long)]
    print_schema: bool,
    /// Seconds to wait for convergence after the writes stop.
    #[arg(long, default_value_t = 120)]
    settle_timeout: u64,
}

async fn connect(url: &str) -> anyhow::Result<Conn> {
    let opts = Opts::from_url(url).with_context(|| format!("bad URL {url}"))?;
    Conn::new(opts)
        .await
        .with_context(|| format!("connect to {url}"))
}

/// Lags (ms) of the rows seen so far, and the last id seen.
#[derive(Default)]
struct Seen {
    lags_ms: Vec<f64>,
    /// Lags of the rows seen since the last report.
    recent_ms: Vec<f64>,
    last_id: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Writes region `name`'s transactions at `rate` per second until `stop`.
async fn writer(
    url: String,
    name: &'static str,
    base: u64,
    rate: u64,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut conn = connect(&url).await?;
    let every = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let id = base + n;
        let mut sql = format!(
            "BEGIN; INSERT INTO shop.orders (id, region, qty, created_at) VALUES ({id}, '{name}', {}, NOW(6));",
            n % 9 + 1
        );
        if n.is_multiple_of(4) {
            let sku = (n / 4 * 7 + base % 13) % STOCK_ROWS + 1;
            let delta = if name == "a" { -1 } else { 1 };
            sql.push_str(&format!(
                "UPDATE shop.stock SET qty = qty + ({delta}), updated_by = '{name}' WHERE sku = {sku};"
            ));
        }
        sql.push_str("COMMIT");
        conn.query_drop(sql)
            .await
            .with_context(|| format!("write in region {name}"))?;
        written.store(n, Ordering::Relaxed);
    }
    Ok(())
}

/// Polls `url` for the order rows of id range (base, base + 1e9) that
/// arrived, recording each one's lag.
async fn poller(
    url: String,
    base: u64,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut conn = connect(&url).await?;
    while !stop.load(Ordering::Relaxed) {
        let last = seen.lock().map(|s| s.last_id).unwrap_or(0).max(base);
        let rows: Vec<(u64, i64)> = conn
            .query(format!(
                "SELECT id, TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) FROM shop.orders \
                 WHERE id > {last} AND id < {} ORDER BY id LIMIT 20000",
                base + B_BASE
            ))
            .await
            .unwrap_or_default();
        if let Ok(mut s) = seen.lock() {
            for (id, us) in rows {
                let ms = us.max(0) as f64 / 1e3;
                s.lags_ms.push(ms);
                s.recent_ms.push(ms);
                s.last_id = id;
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    Ok(())
}

async fn wait_for_tables(b: &str) -> anyhow::Result<()> {
    let mut conn = connect(b).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM shop.stock")
            .await
            .unwrap_or(None);
        if n == Some(STOCK_ROWS) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the schema made in region a did not reach region b within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stock(url: &str) -> anyhow::Result<Vec<(u64, i64)>> {
    let mut conn = connect(url).await?;
    Ok(conn
        .query("SELECT sku, qty FROM shop.stock ORDER BY sku")
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.print_schema {
        println!("{SCHEMA}");
        return Ok(());
    }
    // The schema: made here when the caller has not made it in both
    // regions beforehand (then it reaches region b through DRC).
    let mut setup = connect(&a.a).await?;
    let have: Option<u64> = setup
        .query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME IN ('orders', 'stock')")
        .await
        .context("look for the demo schema in region a")?;
    if have != Some(2) {
        setup
            .query_drop(SCHEMA)
            .await
            .context("create the demo schema in region a")?;
    }
    wait_for_tables(&a.b).await?;
    println!(
        "load: schema replicated to region b; writing {} txn/s in each region for {} s",
        a.rate, a.seconds
    );

    let stop_writes = Arc::new(AtomicBool::new(false));
    let stop_polls = Arc::new(AtomicBool::new(false));
    let (wa, wb) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (to_b, to_a) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    let writers = [
        tokio::spawn(writer(
            a.a.clone(),
            "a",
            0,
            a.rate,
            stop_writes.clone(),
            wa.clone(),
        )),
        tokio::spawn(writer(
            a.b.clone(),
            "b",
            B_BASE,
            a.rate,
            stop_writes.clone(),
            wb.clone(),
        )),
    ];
    let pollers = [
        tokio::spawn(poller(a.b.clone(), 0, to_b.clone(), stop_polls.clone())),
        tokio::spawn(poller(
            a.a.clone(),
            B_BASE,
            to_a.clone(),
            stop_polls.clone(),
        )),
    ];
    let started = Instant::now();
    let mut last = (0u64, 0u64);
    let report = |secs: u64, last: &mut (u64, u64)| {
        let (na, nb) = (wa.load(Ordering::Relaxed), wb.load(Ordering::Relaxed));
        let line = |seen: &Arc<Mutex<Seen>>| {
            let mut s = seen
                .lock()
                .map(|mut s| std::mem::take(&mut s.recent_ms))
                .unwrap_or_default();
            s.sort_by(f64::total_cmp);
            if s.is_empty() {
                "lag -".to_string()
            } else {
                format!(
                    "lag p50 {:>5.0} ms p99 {:>5.0} ms",
                    percentile(&s, 0.5),
                    percentile(&s, 0.99)
                )
            }
        };
        println!(
            "t={secs:>3}s  a->b {:>4} txn/s {}  |  b->a {:>4} txn/s {}",
            na - last.0,
            line(&to_b),
            nb - last.1,
            line(&to_a)
        );
        *last = (na, nb);
    };
    for secs in 1..=a.seconds {
        tokio::time::sleep_until((started + Duration::from_secs(secs)).into()).await;
        for w in &writers {
            if w.is_finished() {
                bail!("a writer stopped early");
            }
        }
        report(secs, &mut last);
    }
    stop_writes.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.context("writer task")??;
    }
    let (na, nb) = (wa.load(Ordering::Relaxed), wb.load(Ordering::Relaxed));
    println!("load: writes stopped ({na} transactions in a, {nb} in b); waiting for convergence");

    let deadline = Instant::now() + Duration::from_secs(a.settle_timeout);
    let mut converged = false;
    while Instant::now() < deadline {
        let got_b = to_b.lock().map(|s| s.last_id).unwrap_or(0);
        let got_a = to_a.lock().map(|s| s.last_id).unwrap_or(0);
        if got_b >= na && got_a >= B_BASE + nb {
            let (sa, sb) = (stock(&a.a).await?, stock(&a.b).await?);
            if sa == sb {
                converged = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_polls.store(true, Ordering::Relaxed);
    for p in pollers {
        p.await.context("poller task")??;
    }
    let all: Vec<f64> = [&to_b, &to_a]
        .iter()
        .flat_map(|s| s.lock().map(|s| s.lags_ms.clone()).unwrap_or_default())
        .collect();
    let all = sorted(&all);
    let (ab, ba) = (
        to_b.lock().map(|s| s.lags_ms.len()).unwrap_or(0),
        to_a.lock().map(|s| s.lags_ms.len()).unwrap_or(0),
    );
    println!(
        "load: a_to_b={ab} b_to_a={ba} p50_ms={:.0} p99_ms={:.0} max_ms={:.0} converged={}",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0.0),
        if converged { "yes" } else { "no" }
    );
    if !converged {
        bail!(
            "the regions did not converge within {} s of the writes stopping",
            a.settle_timeout
        );
    }
    Ok(())
}
