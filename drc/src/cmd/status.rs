//! `drc status`: a region at a glance, as tables with human units.
//!
//! - streams of the relay (Status call): offsets, size, age of the last
//!   transaction, role;
//! - subscribers of each stream: confirmed offset, how far behind, whether
//!   connected;
//! - with a `[metrics]` endpoint: each capture, upstream replication and
//!   apply pipeline of the daemon with its lag, last offset, transactions
//!   and conflicts.
//!
//! With `--config FILE` the relay is this region's own (`[relay] listen`,
//! dialled on loopback with the relay's TLS files as client identity) and
//! the metrics endpoint is `[metrics] listen`; `--relay`/`--metrics` point
//! elsewhere.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use drc_relay::config::ClientConfig;
use drc_relay::TlsConfig;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The region's TOML config (relay address, TLS files, metrics endpoint).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The relay to ask, `https://HOST:PORT` (or `http://127.0.0.1:PORT`
    /// with --insecure-plaintext).
    #[arg(long)]
    relay: Option<String>,
    /// CA, certificate and key for --relay (PEM files).
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    /// Talk to --relay without TLS (loopback only).
    #[arg(long)]
    insecure_plaintext: bool,
    /// The daemon's metrics endpoint, `HOST:PORT`.
    #[arg(long)]
    metrics: Option<String>,
}

/// The relay client settings from the arguments or the config.
fn relay_client(a: &StatusArgs, cfg: Option<&Config>) -> anyhow::Result<Option<ClientConfig>> {
    if let Some(url) = &a.relay {
        let mut c = ClientConfig::new(url.clone());
        c.insecure_plaintext = a.insecure_plaintext;
        if let (Some(ca), Some(cert), Some(key)) = (&a.ca, &a.cert, &a.key) {
            c.tls = Some(TlsConfig {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        return Ok(Some(c));
    }
    let Some(relay) = cfg.and_then(|c| c.relay.as_ref()) else {
        return Ok(None);
    };
    let (host, port) = relay
        .listen
        .rsplit_once(':')
        .context("[relay] listen has no port")?;
    // A wildcard listener is reached on loopback; a specific address as is.
    let host = match host.trim_matches(|c| c == '[' || c == ']') {
        "0.0.0.0" | "::" | "" => "127.0.0.1",
        _ => host,
    };
    let scheme = if relay.tls.is_some() { "https" } else { "http" };
    let mut c = ClientConfig::new(format!("{scheme}://{host}:{port}"));
    c.tls = relay.tls.clone();
    c.insecure_plaintext = relay.insecure_plaintext;
    Ok(Some(c))
}

pub fn run(a: StatusArgs) -> anyhow::Result<()> {
    let cfg = a.config.as_deref().map(Config::load).transpose()?;
    let relay = relay_client(&a, cfg.as_ref())?;
    // Every endpoint the config names (`drc run`'s, or each role unit's).
    let metrics: Vec<String> = match (&a.metrics, cfg.as_ref().and_then(|c| c.metrics.as_ref())) {
        (Some(m), _) => vec![m.clone()],
        (None, Some(m)) => [m.listen, m.relay_listen, m.capture_listen, m.apply_listen]
            .into_iter()
            .flatten()
            .map(|a| a.to_string())
            .collect(),
        (None, None) => Vec::new(),
    };
    if relay.is_none() && metrics.is_empty() {
        bail!("nothing to ask: give --config FILE (with [relay] or [metrics]), --relay URL or --metrics HOST:PORT");
    }
    let now = drc_obs::lag::now_us();
    if let Some(c) = relay {
        let url = c.url.clone();
        let rt = crate::cmd::runtime()?;
        let status = rt
            .block_on(async {
                let client = drc_relay::RelayClient::connect(c).await?;
                client.status("").await
            })
            .with_context(|| format!("ask the relay at {url} for its status"))?;
        print_streams(&url, &status, now);
    }
    for m in metrics {
        match fetch_metrics(&m) {
            Ok(text) => print_pipelines(&m, &parse_metrics(&text)),
            // With role units, one of them may be down; say so, go on.
            Err(e) => say!("\ndaemon http://{m}/metrics: not answering ({e:#})"),
        }
    }
    Ok(())
}

fn print_streams(url: &str, s: &drc_proto::v1::StatusResponse, now_us: i64) {
    say!("relay {url}");
    let mut rows = vec![vec![
        "STREAM".to_string(),
        "ROLE".into(),
        "OFFSETS".into(),
        "SIZE".into(),
        "LAST TXN".into(),
        "POSITION".into(),
    ]];
    for st in &s.streams {
        let offsets = if st.last_offset == 0 {
            "empty".to_string()
        } else {
            format!("{}..{}", count(st.first_offset), count(st.last_offset))
        };
        let age = if st.last_commit_ts_us > 0 {
            format!(
                "{} ago",
                duration((now_us - st.last_commit_ts_us).max(0) as f64 / 1e6)
            )
        } else {
            "-".into()
        };
        let pos = st.last_position.as_ref().map_or("-".to_string(), |p| {
            if p.gtid.is_empty() {
                format!("{}:{}", p.file, p.pos)
            } else {
                p.gtid.clone()
            }
        });
        rows.push(vec![
            st.name.clone(),
            st.role.clone(),
            offsets,
            bytes(st.size_bytes),
            age,
            pos,
        ]);
    }
    table(&rows);
    let mut subs = vec![vec![
        "SUBSCRIBER".to_string(),
        "STREAM".into(),
        "CONFIRMED".into(),
        "BEHIND".into(),
        "CONNECTED".into(),
    ]];
    for st in &s.streams {
        for sub in &st.subscribers {
            subs.push(vec![
                sub.name.clone(),
                st.name.clone(),
                count(sub.confirmed_offset),
                format!(
                    "{} txns",
                    count(st.last_offset.saturating_sub(sub.confirmed_offset))
                ),
                if sub.connected { "yes" } else { "no" }.into(),
            ]);
        }
    }
    if subs.len() > 1 {
        say!();
        table(&subs);
    }
}

/// One sample: labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Reads `GET /metrics` with plain HTTP/1.0 (the daemon's endpoint).
fn fetch_metrics(addr: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("answer: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Prometheus text format, the subset the daemon writes.
fn parse_metrics(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in split_labels(labels) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.to_string(), v.trim_matches('"').replace("\\\"", "\""));
            }
        }
        out.entry(name.to_string()).or_default().push((map, value));
    }
    out
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            '\\' if quoted => escaped = !escaped,
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    if start < s.len() {
        parts.push(&s[start..]);
    }
    parts
}

/// The value of `metric` whose labels include all of `want`.
fn value(m: &Samples, metric: &str, want: &BTreeMap<String, String>) -> Option<f64> {
    m.get(metric)?
        .iter()
        .filter(|(l, _)| want.iter().all(|(k, v)| l.get(k) == Some(v)))
        .map(|(_, v)| *v)
        .reduce(|a, b| a + b)
}

fn print_pipelines(addr: &str, m: &Samples) {
    say!();
    say!("daemon http://{addr}/metrics");
    let mut rows = vec![vec![
        "PART".to_string(),
        "LAG".into(),
        "LAST OFFSET".into(),
        "TXNS".into(),
        "CONFLICTS".into(),
        "RECONNECTS".into(),
    ]];
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
    for (labels, lag) in m.get("drc_capture_lag_seconds").into_iter().flatten() {
        rows.push(vec![
            format!("capture {}", labels.get("stream").map_or("", |s| s)),
            duration(*lag),
            "-".into(),
            opt(value(m, "drc_capture_transactions_total", labels), &|v| {
                count(v as u64)
            }),
            "-".into(),
            opt(value(m, "drc_capture_reconnects_total", labels), &|v| {
                count(v as u64)
            }),
        ]);
    }
    for (labels, lag) in m.get("drc_replication_lag_seconds").into_iter().flatten() {
        rows.push(vec![
            format!(
                "replicate {} from {}",
                labels.get("stream").map_or("", |s| s),
                labels.get("upstream").map_or("", |s| s)
            ),
            duration(*lag),
            opt(value(m, "drc_replication_last_offset", labels), &|v| {
                count(v as u64)
            }),
            "-".into(),
            "-".into(),
            opt(value(m, "drc_replication_reconnects_total", labels), &|v| {
                count(v as u64)
            }),
        ]);
    }
    for (labels, lag) in m.get("drc_apply_lag_seconds").into_iter().flatten() {
        let by_stream: BTreeMap<String, String> = labels
            .iter()
            .filter(|(k, _)| *k == "stream" || *k == "sink")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        rows.push(vec![
            format!(
                "apply {} -> {} ({})",
                labels.get("stream").map_or("", |s| s),
                labels.get("sink").map_or("", |s| s),
                labels.get("subscriber").map_or("", |s| s)
            ),
            duration(*lag),
            opt(value(m, "drc_apply_last_offset", labels), &|v| {
                count(v as u64)
            }),
            opt(value(m, "drc_apply_transactions_total", labels), &|v| {
                count(v as u64)
            }),
            count(value(m, "drc_apply_conflicts_total", &by_stream).unwrap_or(0.0) as u64),
            opt(value(m, "drc_apply_reconnects_total", labels), &|v| {
                count(v as u64)
            }),
        ]);
    }
    if rows.len() == 1 {
        say!("(no capture, replication or apply has handled a transaction yet)");
    } else {
        table(&rows);
    }
}

/// Prints rows as left-aligned columns.
fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        say!("{}", line.join("  ").trim_end());
    }
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds as ms, s, min, h or d.
pub fn duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1e3)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{:.1} min", secs / 60.0)
    } else if secs < 86400.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} d", secs / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(90.0), "1.5 min");
    }

    #[test]
    fn metrics_text_parses_with_commas_in_labels() {
        let m = parse_metrics(
            "# TYPE x gauge\nx{stream=\"a.s\",upstream=\"https://h:1,2\"} 4.5\ny 3\n",
        );
        let x = &m["x"][0];
        assert_eq!(x.0["upstream"], "https://h:1,2");
        assert_eq!(x.1, 4.5);
        assert_eq!(m["y"][0].1, 3.0);
    }
}
