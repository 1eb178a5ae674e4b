//! What drc's process-level tests share: a `drc` child process killed on
//! drop, reading a stream's log back, and the TLS table of a region's config.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drc_log::{Log, LogConfig, Offset};

/// A `drc` process whose output goes to a log file; SIGKILLed on drop.
pub struct Proc {
    child: Child,
    name: &'static str,
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
        Proc { child, name }
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
                    "{} exits 0 on SIGTERM: {status}",
                    self.name
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
