//! Throwaway NATS servers with JetStream for tests (sink targets).
//!
//! [`Nats::start`] writes a small config file into a fresh temp dir, starts
//! `nats-server` on a free port of 127.0.0.1 with JetStream storing into
//! `store/` of that dir, and waits until the port greets with `INFO` (the
//! server enables JetStream before it accepts clients). Dropping the handle
//! kills the server and removes the temp dir.
//!
//! [`Nats::kill9`] and [`Nats::restart`] keep the store, so a test can crash
//! the broker and check what JetStream kept.
//!
//! Layout of a server's temp dir: `nats.conf`, `store/` (JetStream),
//! `nats.log` (stdout and stderr of the server).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{find_binary, wait_until, ServerProcess};

/// How long [`Nats::start`] and [`Nats::restart`] wait for the server to greet.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop may take before the server is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Start attempts when the chosen port turns out to be taken.
const PORT_ATTEMPTS: usize = 5;

/// Directories searched for `nats-server` after `$PATH`.
const EXTRA_BIN_DIRS: [&str; 2] = ["/usr/sbin", "/usr/bin"];

/// How a throwaway NATS server is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// `max_payload` in bytes (the server's default, 1 MiB, when `None`).
    pub max_payload: Option<u32>,
    /// Extra lines appended to the config file.
    pub extra_config: Vec<String>,
}

/// A running throwaway `nats-server -js`; killed and deleted on drop.
#[derive(Debug)]
pub struct Nats {
    options: NatsOptions,
    port: u16,
    process: Option<ServerProcess>,
    dir: TempDir,
}

impl Nats {
    /// Whether `nats-server` is installed.
    pub fn available() -> bool {
        nats_binary().is_ok()
    }

    /// Starts a server on a free port and waits until it greets.
    pub fn start(options: NatsOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("drc-nats-")
            .tempdir()
            .context("create temp dir for nats-server")?;
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match launch(dir.path(), port, &options) {
                Ok(process) => {
                    return Ok(Self {
                        options,
                        port,
                        process: Some(process),
                        dir,
                    })
                }
                Err((true, err)) => last_err = Some(err),
                Err((false, err)) => return Err(err),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no start attempt was made"))
            .context(format!(
                "start nats-server ({PORT_ATTEMPTS} ports were taken)"
            )))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The temp dir holding the config, store and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// The options the server was started with.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ServerProcess::pid)
    }

    /// Whether the server is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Kills the server with SIGKILL. The store is kept.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Stops the server gracefully (SIGTERM), SIGKILL after a grace period.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.terminate(SHUTDOWN_GRACE)?;
        }
        Ok(())
    }

    /// Stops the server if it runs, then starts it again on the same port,
    /// store and options.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let process = launch(self.dir.path(), self.port, &self.options).map_err(|(_, err)| {
            err.context(format!("restart nats-server on port {}", self.port))
        })?;
        self.process = Some(process);
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

fn nats_binary() -> Result<PathBuf> {
    let extra: Vec<&Path> = EXTRA_BIN_DIRS.iter().map(Path::new).collect();
    find_binary("nats-server", &extra)
        .ok_or_else(|| anyhow!("nats-server is not installed (apt-get install nats-server)"))
}

/// The config file's text. Paths are quoted: a temp dir may hold any byte.
fn config_text(dir: &Path, port: u16, options: &NatsOptions) -> String {
    let store = dir.join("store");
    let mut text = format!(
        "listen: \"127.0.0.1:{port}\"\n\
         server_name: \"drc_test_{port}\"\n\
         jetstream {{\n  store_dir: {:?}\n}}\n",
        store.display().to_string()
    );
    if let Some(max) = options.max_payload {
        text.push_str(&format!("max_payload: {max}\n"));
    }
    for line in &options.extra_config {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Whether 127.0.0.1:`port` answers with a NATS `INFO` line.
fn greets(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut head = [0u8; 5];
    conn.read_exact(&mut head).is_ok() && &head == b"INFO "
}

/// Starts `nats-server` and waits until it greets; the flag in the error
/// says whether the port was taken (worth a retry on another port).
fn launch(
    dir: &Path,
    port: u16,
    options: &NatsOptions,
) -> Result<ServerProcess, (bool, anyhow::Error)> {
    let other = |err: anyhow::Error| (false, err);
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, config_text(dir, port, options))
        .with_context(|| format!("write {}", conf.display()))
        .map_err(other)?;
    let log = dir.join("nats.log");
    let log_len_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(nats_binary().map_err(other)?);
    cmd.arg("-c").arg(&conf).current_dir(dir);
    let mut process = ServerProcess::spawn("nats-server", cmd, &log).map_err(other)?;
    let ready = wait_until("nats-server to greet", STARTUP_TIMEOUT, || {
        if let Some(status) = process.try_wait()? {
            bail!("nats-server exited during startup with {status}");
        }
        Ok(greets(port))
    });
    match ready {
        Ok(()) => Ok(process),
        Err(err) => {
            let _ = process.kill();
            let text = std::fs::read(&log).unwrap_or_default();
            let new_part =
                String::from_utf8_lossy(text.get(log_len_before as usize..).unwrap_or_default())
                    .to_ascii_lowercase();
            let port_taken = new_part.contains("address already in use");
            Err((
                port_taken,
                err.context(format!(
                    "nats-server on port {port} did not become ready; its log ends with:\n{}",
                    process.log_tail()
                )),
            ))
        }
    }
}
