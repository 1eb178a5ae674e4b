//! `drc config check FILE`: everything about a region's config that can be
//! known before starting it, each finding named by its key, with the fix.
//!
//! 1. The file parses (unknown keys are named) and passes the same
//!    validation the daemons run.
//! 2. Files: TLS material loads (certificate and key go together), the
//!    relay's data directory is writable or creatable, the parents of
//!    schema-history and JSONL files exist, password variables are set.
//! 3. Servers (unless `--offline`): each capture's source is reachable with
//!    its credentials and has the binlog settings and privileges capture
//!    needs; each sink's server accepts the credentials; each relay the
//!    config dials answers a status call over its TLS settings.
//!
//! An unreachable peer (connection refused, timeout) is a warning, not an
//! error: the daemons retry until it is reachable, and a unit must be able
//! to start while the other region is down. `--strict` makes warnings fail
//! too. Exit status 0 when no error was found, 1 otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use drc_relay::config::ClientConfig;
use drc_relay::TlsConfig;
use mysql_async::prelude::Queryable;

use crate::cmd::apply::SinkConfig;
use crate::config::Config;

/// How long one server check waits.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The region's TOML config.
    file: PathBuf,
    /// Check the file alone; connect to nothing.
    #[arg(long)]
    offline: bool,
    /// Fail on warnings (unreachable peers) too.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warning,
    Error,
}

#[derive(Default)]
struct Report {
    findings: Vec<(Level, String, String)>,
}

impl Report {
    fn add(&mut self, level: Level, key: impl Into<String>, text: impl Into<String>) {
        let (key, text) = (key.into(), text.into());
        let tag = match level {
            Level::Ok => "ok     ",
            Level::Warning => "warning",
            Level::Error => "error  ",
        };
        say!("{tag} {key}: {text}");
        self.findings.push((level, key, text));
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.0 == level).count()
    }
}

pub fn run(a: CheckArgs) -> anyhow::Result<()> {
    let mut report = Report::default();
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("read config {}: {e}", a.file.display()))?;
    let cfg: Config = match toml::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            // One line: the line number and serde's message (which names the key).
            let line = e
                .span()
                .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map_or(String::new(), |l| format!("line {l}: "));
            report.add(Level::Error, "file", format!("{at}{}", e.message()));
            anyhow::bail!("config check: {} does not parse", a.file.display());
        }
    };
    match cfg.validate() {
        Ok(()) => report.add(Level::Ok, "file", "parses and validates"),
        Err(e) => report.add(Level::Error, "file", format!("{e:#}")),
    }
    check_files(&cfg, &mut report);
    if !a.offline {
        let rt = crate::cmd::runtime()?;
        rt.block_on(check_servers(&cfg, &mut report));
    }
    let (errors, warnings) = (report.count(Level::Error), report.count(Level::Warning));
    say!(
        "config check: {errors} error{}, {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    );
    if errors > 0 || (a.strict && warnings > 0) {
        anyhow::bail!("config check of {} failed", a.file.display());
    }
    Ok(())
}

fn check_tls(key: &str, tls: &TlsConfig, server: bool, report: &mut Report) {
    let loaded = if server {
        tls.server_config().map(|_| ())
    } else {
        tls.client_config().map(|_| ())
    };
    match loaded {
        Ok(()) => report.add(Level::Ok, key, "CA, certificate and key load"),
        Err(e) => report.add(Level::Error, key, e.to_string()),
    }
}

fn check_client_tls(key: &str, c: &ClientConfig, report: &mut Report) {
    if let Some(tls) = &c.tls {
        check_tls(&format!("{key}.tls"), tls, false, report);
    }
}

/// The directory `path` is in exists (a file can be made there).
fn check_parent(key: &str, path: &Path, report: &mut Report) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if parent.is_dir() {
        report.add(Level::Ok, key, format!("{} can be written", path.display()));
    } else {
        report.add(
            Level::Error,
            key,
            format!(
                "directory {} does not exist: create it, owned by the user drc runs as",
                parent.display()
            ),
        );
    }
}

/// A directory that exists and can be written, or whose nearest existing
/// ancestor can be (drc creates the rest).
fn check_dir(key: &str, dir: &Path, report: &mut Report) {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => {
                probe = PathBuf::from(".");
                break;
            }
        }
    }
    if !probe.is_dir() {
        report.add(
            Level::Error,
            key,
            format!("{} is not a directory", probe.display()),
        );
        return;
    }
    let test = probe.join(format!(".drc-config-check-{}", std::process::id()));
    match std::fs::write(&test, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&test);
            report.add(Level::Ok, key, format!("{} is writable", dir.display()));
        }
        Err(e) => report.add(
            Level::Error,
            key,
            format!(
                "cannot write in {} ({e}): give the user drc runs as write access",
                probe.display()
            ),
        ),
    }
}

fn check_files(cfg: &Config, report: &mut Report) {
    if let Some(r) = &cfg.relay {
        if let Some(tls) = &r.tls {
            check_tls("relay.tls", tls, true, report);
        }
        check_dir("relay.data_dir", &r.data_dir, report);
        for (i, u) in r.upstreams.iter().enumerate() {
            if let Some(tls) = &u.tls {
                check_tls(&format!("relay.upstreams[{i}].tls"), tls, false, report);
            }
        }
    }
    for (i, c) in cfg.capture.iter().enumerate() {
        check_client_tls(&format!("capture[{i}].relay"), &c.relay, report);
        if let Some(h) = &c.schema_history {
            check_parent(&format!("capture[{i}].schema_history"), h, report);
        }
        if let Some(var) = &c.source_password_env {
            if std::env::var_os(var).is_none() {
                report.add(
                    Level::Error,
                    format!("capture[{i}].source_password_env"),
                    format!("{var} is not set in this environment: set it (for systemd: EnvironmentFile=)"),
                );
            }
        }
    }
    for (i, a) in cfg.apply.iter().enumerate() {
        check_client_tls(&format!("apply[{i}].relay"), &a.relay, report);
        if let SinkConfig::Jsonl(j) = &a.sink {
            if !j.is_stdout() {
                check_parent(&format!("apply[{i}].sink.path"), &j.path, report);
            }
        }
    }
}

/// Whether an error means "could not reach it" (the daemons retry) rather
/// than "reached it and it said no".
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | NotFound
            ) {
                return true;
            }
        }
        cur = err.source();
    }
    let text = e.to_string().to_ascii_lowercase();
    text.contains("connection refused") || text.contains("timed out")
}

/// The innermost cause: "connection refused" rather than three wrappers
/// saying "I/O error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether `url` dials the relay of this same config (started by the same
/// daemon, so not up before it).
fn is_own_relay(cfg: &Config, url: &str) -> bool {
    let Some(r) = &cfg.relay else { return false };
    let port = |s: &str| {
        s.rsplit(':')
            .next()
            .map(|p| p.trim_end_matches('/').to_string())
    };
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    let local =
        host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
    local && port(host) == port(&r.listen)
}

/// What a probe of a server found.
enum Found {
    /// It answered: what it said (version, stream count).
    Answers(String),
    /// It could not be reached (the daemons retry): why.
    Unreachable(String),
    /// It was reached and said no, or the settings are wrong: why, and the fix.
    Refused(String),
}

/// Runs `probe` within [`CHECK_TIMEOUT`] and reports it under `key`: ok,
/// a warning when `who` is unreachable or silent, an error when it refused.
async fn report_probe(
    report: &mut Report,
    key: &str,
    who: &str,
    probe: impl std::future::Future<Output = Found>,
) {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Found::Answers(what)) => report.add(Level::Ok, key, format!("{who} answers ({what})")),
        Ok(Found::Unreachable(why)) => report.add(
            Level::Warning,
            key,
            format!("{who} is not reachable now ({why}); drc retries until it is"),
        ),
        Ok(Found::Refused(why)) => report.add(Level::Error, key, format!("{who}: {why}")),
        Err(_) => report.add(
            Level::Warning,
            key,
            format!(
                "{who} did not answer within {} s; drc retries until it does",
                CHECK_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// `host:port` of a server URL, for messages (never the credentials).
fn host_of(url: &str) -> &str {
    url.rsplit('@').next().unwrap_or(url)
}

async fn check_relay(cfg: &Config, key: &str, c: &ClientConfig, report: &mut Report) {
    if is_own_relay(cfg, &c.url) {
        report.add(
            Level::Ok,
            key,
            format!("{} is this config's own relay", c.url),
        );
        return;
    }
    let probe = async {
        let answer = match drc_relay::RelayClient::connect(c.clone()).await {
            Ok(client) => client.status("").await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(s) => Found::Answers(format!("{} streams", s.streams.len())),
            Err(e) if e.is_transient() || unreachable(&e) => Found::Unreachable(root_cause(&e)),
            Err(e) => Found::Refused(format!(
                "{e}; check the TLS files (same CA on both sides) and the URL"
            )),
        }
    };
    report_probe(report, key, &c.url, probe).await;
}

/// Connects to a MySQL/MariaDB server; with `capture`, runs capture's
/// start-up checks on it.
async fn check_mysql(key: &str, url: &str, capture: bool, report: &mut Report) {
    let probe = async {
        let opts = mysql_async::Opts::from_url(url).map_err(|e| anyhow::anyhow!("bad URL: {e}"))?;
        let mut conn = mysql_async::Conn::new(opts).await?;
        let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
        if capture {
            drc_capture::checks::check_source(&mut conn)
                .await
                .map_err(anyhow::Error::new)?;
        }
        let _ = conn.disconnect().await;
        anyhow::Ok(version.unwrap_or_default())
    };
    let found = async {
        match probe.await {
            Ok(v) if capture => Found::Answers(format!(
                "server {v}, binlog settings and privileges fit capture"
            )),
            Ok(v) => Found::Answers(format!("server {v}")),
            Err(e) if unreachable(e.as_ref()) => Found::Unreachable(e.root_cause().to_string()),
            Err(e) => Found::Refused(format!("{e:#}")),
        }
    };
    report_probe(report, key, host_of(url), found).await;
}

async fn check_postgres(key: &str, url: &str, report: &mut Report) {
    let probe = async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        let row = client.query_one("SELECT version()", &[]).await?;
        let v: String = row.try_get(0)?;
        drop(client);
        task.abort();
        Ok::<_, tokio_postgres::Error>(v)
    };
    let found = async {
        match probe.await {
            Ok(v) => Found::Answers(v.split(" on ").next().unwrap_or(&v).to_string()),
            Err(e) if unreachable(&e) => Found::Unreachable(root_cause(&e)),
            Err(e) => Found::Refused(e.to_string()),
        }
    };
    report_probe(report, key, host_of(url), found).await;
}

/// NATS: any failure to connect counts as unreachable (the sink retries).
async fn check_nats(key: &str, url: &str, report: &mut Report) {
    let found = async {
        match async_nats::connect(url).await {
            Ok(_) => Found::Answers("NATS".into()),
            Err(e) => Found::Unreachable(e.to_string()),
        }
    };
    report_probe(report, key, url, found).await;
}

async fn check_servers(cfg: &Config, report: &mut Report) {
    if let Some(r) = &cfg.relay {
        for (i, u) in r.upstreams.iter().enumerate() {
            let key = format!("relay.upstreams[{i}]");
            check_relay(cfg, &key, &u.client_config(), report).await;
        }
    }
    for (i, c) in cfg.capture.iter().enumerate() {
        match c.source_url() {
            Ok(url) => check_mysql(&format!("capture[{i}].source"), &url, true, report).await,
            Err(e) => report.add(
                Level::Error,
                format!("capture[{i}].source"),
                format!("{e:#}"),
            ),
        }
        check_relay(cfg, &format!("capture[{i}].relay"), &c.relay, report).await;
    }
    for (i, a) in cfg.apply.iter().enumerate() {
        check_relay(cfg, &format!("apply[{i}].relay"), &a.relay, report).await;
        let key = format!("apply[{i}].sink.url");
        match &a.sink {
            SinkConfig::Mysql(m) => check_mysql(&key, &m.url, false, report).await,
            SinkConfig::Postgres(p) => check_postgres(&key, &p.url, report).await,
            SinkConfig::Nats(n) => check_nats(&key, &n.url, report).await,
            SinkConfig::Jsonl(_) => {}
        }
    }
}
