//! What drc's process-level tests share: a `drc` child process killed on
//! drop, reading a stream's log back, certificates for two regions and the
//! TLS table of a region's config, a name for an emulated link, and a plain
//! HTTP GET of a daemon's endpoint.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drc_log::{Log, LogConfig, Offset};

/// A `drc` process whose output goes to a log file; SIGKILLed on drop.
pub struct Proc {
    child: Child,
    name: &'static str,
    log: std::path::PathBuf,
}

impl Proc {
    /// Spawns `cmd` (a `drc` command, possibly behind `ip netns exec`, which
    /// execs in place so the child's pid is drc's) with `args`.
    pub fn spawn(name: &'static str, mut cmd: Command, args: &[&str], log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open process log file");
        let child = cmd
            .args(args)
            .env("DRC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone log file")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn drc");
        Proc {
            child,
            name,
            log: log.to_path_buf(),
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the process must exit 0 within a few seconds.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "{} exits 0 on SIGTERM: {status}; the end of its log:\n{}",
                    self.name,
                    self.log_tail()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM; the end of its log:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Proc {
    /// The last lines of the process's log file, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every record of a stopped stream's log, with its offset.
pub async fn records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let log = Log::open(dir, LogConfig::default())
        .await
        .expect("open log");
    let mut r = log.reader(Offset(1)).expect("reader");
    let mut out = Vec::new();
    while let Some((o, b)) = r.try_next().expect("read") {
        out.push((o.0, b.to_vec()));
    }
    out
}

/// The last offset of a log another process may be writing (read-only check).
pub fn last_offset(dir: &Path) -> u64 {
    drc_log::check(dir)
        .ok()
        .and_then(|r| r.last_offset)
        .map_or(0, |o| o.0)
}

/// `{ ca = ..., cert = ..., key = ... }` of `region` in a `drc tls init` directory.
pub fn tls_table(dir: &Path, region: &str) -> String {
    format!(
        "{{ ca = {:?}, cert = {:?}, key = {:?} }}",
        dir.join("ca.pem"),
        dir.join(format!("{region}.pem")),
        dir.join(format!("{region}.key"))
    )
}

/// `drc tls init DIR` for regions a and b, each certificate valid for its
/// region's address (on an emulated link, the ends' addresses).
pub fn tls_init(dir: &Path, a_ip: Ipv4Addr, b_ip: Ipv4Addr) {
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["tls", "init"])
        .arg(dir)
        .args(["--regions", "a,b"])
        .args(["--san", &format!("a={a_ip}"), "--san", &format!("b={b_ip}")])
        .output()
        .expect("run drc tls init");
    assert!(
        out.status.success(),
        "drc tls init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A name for an emulated link (`drc_wanem::Link`) that no concurrent test
/// process uses: `prefix` and this process's id.
pub fn link_name(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.0: (status code, body), or
/// `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}
