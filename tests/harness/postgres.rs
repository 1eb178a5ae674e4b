//! Throwaway PostgreSQL servers for tests (sink targets).
//!
//! Like [`crate::MariaDb`]: a pristine cluster made once by `initdb` and cached
//! in the system temp dir (keyed by the server version), copied per server into
//! a fresh temp dir, started on a free port of 127.0.0.1, killed and deleted on
//! drop. PostgreSQL refuses to run as root, so `initdb` and `postgres` run as
//! the `postgres` user (the child switches uid/gid itself before `exec`, which
//! keeps the parent-death signal working, unlike `runuser`, which forks) and the
//! temp dir is owned by that user.
//!
//! The cluster uses `trust` authentication (any user, no password), UTF8 and
//! the C locale, and `fsync=off`: killing the server still loses nothing the
//! kernel has, only a machine crash would.
//!
//! Layout of a server's temp dir: `data/`, the Unix socket, `postgres.log`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{
    child_pids, chown_tree, copy_tree, find_binary, run_checked, wait_pids_gone, wait_until,
    ServerProcess,
};

/// How long [`Postgres::start`] and [`Postgres::restart`] wait for `SELECT 1`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a graceful stop may take before the server is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long the backends of a killed postmaster get to exit.
const ORPHAN_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Start attempts when the chosen port turns out to be taken.
const PORT_ATTEMPTS: usize = 5;

/// Bumped when the pristine cluster's `initdb` options change.
const PRISTINE_LAYOUT: &str = "v1";

/// The unprivileged OS user that owns and runs the cluster.
const OS_USER: &str = "postgres";

/// How a throwaway PostgreSQL server is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Extra `postgres` arguments, appended last (for example
    /// `["-c", "wal_level=logical"]`).
    pub extra_args: Vec<String>,
}

/// A running throwaway PostgreSQL server; killed and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    options: PostgresOptions,
    port: u16,
    process: Option<ServerProcess>,
    dir: TempDir,
}

impl Postgres {
    /// Whether `initdb`, `postgres` and `psql` are installed and the
    /// `postgres` OS user exists.
    pub fn available() -> bool {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|name| pg_binary(name).is_ok())
            && os_user_ids(OS_USER).is_ok()
    }

    /// Starts a server on a free port and waits until it answers `SELECT 1`.
    pub fn start(options: PostgresOptions) -> Result<Self> {
        let pristine = pristine_cluster()?;
        let dir = tempfile::Builder::new()
            .prefix("drc-postgres-")
            .tempdir()
            .context("create temp dir for postgres")?;
        copy_tree(&pristine, &dir.path().join("data"))?;
        chown_tree(dir.path(), OS_USER)?;

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
            .context(format!("start postgres ({PORT_ATTEMPTS} ports were taken)")))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `postgres://USER@127.0.0.1:PORT/DATABASE` (trust authentication: no
    /// password is needed).
    pub fn url_for(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` as `postgres` on database `postgres` with `psql` and returns
    /// unaligned, tuples-only output (`|` between columns, one line per row),
    /// the final newline removed. Stops at the first error.
    pub fn sql(&self, sql: &str) -> Result<String> {
        psql(self.port, sql)
    }

    /// The cluster's data directory.
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir that holds the data directory, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log (stdout and stderr of `postgres`).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The options the server was started with.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ServerProcess::pid)
    }

    /// Whether the postmaster is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Kills the postmaster with SIGKILL and waits (up to 10 s) for its
    /// backends, which exit when they notice; a new postmaster refuses to start
    /// while they still hold the old shared memory. The data directory is kept.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            let children = process.pid().map(child_pids).unwrap_or_default();
            process.kill()?;
            wait_pids_gone(&children, ORPHAN_EXIT_TIMEOUT)?;
        }
        Ok(())
    }

    /// Stops the server with a fast shutdown (SIGINT). The data directory is kept.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.signal("INT")?;
            if process.wait_exit(SHUTDOWN_GRACE)?.is_none() {
                process.kill()?;
            }
        }
        Ok(())
    }

    /// Stops the server if it runs, then starts it again on the same data
    /// directory, port and options.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let process = launch(self.dir.path(), self.port, &self.options)
            .map_err(|(_, err)| err.context(format!("restart postgres on port {}", self.port)))?;
        self.process = Some(process);
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Starts `postgres` and waits until it answers; the flag in the error says
/// whether the port was taken (worth a retry on another port).
fn launch(
    dir: &Path,
    port: u16,
    options: &PostgresOptions,
) -> Result<ServerProcess, (bool, anyhow::Error)> {
    let other = |err: anyhow::Error| (false, err);
    let (uid, gid) = os_user_ids(OS_USER).map_err(other)?;
    let log = dir.join("postgres.log");
    let log_len_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);

    let mut cmd = Command::new(pg_binary("postgres").map_err(other)?);
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args([
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "logging_collector=off",
        ])
        .args(&options.extra_args)
        .uid(uid)
        .gid(gid)
        .current_dir(dir);
    let mut process = ServerProcess::spawn("postgres", cmd, &log).map_err(other)?;
    // The log file is created by root before the switch; postgres only
    // inherits the open descriptor, so ownership does not matter.

    let ready = wait_until("postgres to answer SELECT 1", STARTUP_TIMEOUT, || {
        if let Some(status) = process.try_wait()? {
            bail!("postgres exited during startup with {status}");
        }
        Ok(psql(port, "SELECT 1").is_ok_and(|out| out == "1"))
    });
    match ready {
        Ok(()) => Ok(process),
        Err(err) => {
            let _ = process.kill();
            let text = std::fs::read(&log).unwrap_or_default();
            let new_part =
                String::from_utf8_lossy(text.get(log_len_before as usize..).unwrap_or_default())
                    .into_owned();
            let port_taken = new_part.contains("Address already in use");
            Err((
                port_taken,
                err.context(format!(
                    "postgres on port {port} did not become ready; its log ends with:\n{}",
                    process.log_tail()
                )),
            ))
        }
    }
}

fn psql(port: u16, sql: &str) -> Result<String> {
    let mut cmd = Command::new(pg_binary("psql")?);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
    ])
    .arg("-p")
    .arg(port.to_string())
    .arg("-c")
    .arg(sql);
    let out = run_checked("psql", &mut cmd)?;
    Ok(out.strip_suffix('\n').unwrap_or(&out).to_owned())
}

/// The pristine cluster, made on first use (see the module docs).
fn pristine_cluster() -> Result<PathBuf> {
    static PRISTINE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PRISTINE
        .get_or_init(|| install_pristine().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!("initdb a pristine postgres cluster: {err}"))
}

fn install_pristine() -> Result<PathBuf> {
    let version = run_checked(
        "postgres --version",
        Command::new(pg_binary("postgres")?).arg("--version"),
    )?;
    let key: String = version
        .split_whitespace()
        .last()
        .unwrap_or("unknown")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = std::env::temp_dir();
    let target = tmp.join(format!(
        "drc-tests-postgres-pristine-{PRISTINE_LAYOUT}-{key}"
    ));
    if is_cluster(&target) {
        return Ok(target);
    }

    let (uid, gid) = os_user_ids(OS_USER)?;
    let staging = tempfile::Builder::new()
        .prefix("drc-tests-postgres-initdb-")
        .tempdir_in(&tmp)
        .context("create staging dir for initdb")?;
    chown_tree(staging.path(), OS_USER)?;
    let data = staging.path().join("data");
    let mut cmd = Command::new(pg_binary("initdb")?);
    cmd.arg("-D")
        .arg(&data)
        .args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .uid(uid)
        .gid(gid)
        .current_dir(staging.path());
    run_checked("initdb", &mut cmd)?;

    match std::fs::rename(&data, &target) {
        Ok(()) => Ok(target),
        Err(_) if is_cluster(&target) => Ok(target),
        Err(err) => {
            Err(err).with_context(|| format!("publish pristine cluster at {}", target.display()))
        }
    }
}

fn is_cluster(path: &Path) -> bool {
    path.join("PG_VERSION").is_file() && path.join("global").is_dir()
}

/// A PostgreSQL binary: from the newest `/usr/lib/postgresql/<major>/bin`
/// (Debian keeps server binaries off `$PATH`), else from `$PATH`.
fn pg_binary(name: &str) -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    let dirs: Vec<PathBuf> = versions.into_iter().rev().map(|(_, dir)| dir).collect();
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Ok(found);
    }
    find_binary(name, &[]).ok_or_else(|| anyhow!("{name} not found (install postgresql)"))
}

/// The uid and gid of OS user `name`, from /etc/passwd.
fn os_user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&name) && fields.len() > 3 {
            let uid = fields[2]
                .parse()
                .with_context(|| format!("uid of {name} in /etc/passwd"))?;
            let gid = fields[3]
                .parse()
                .with_context(|| format!("gid of {name} in /etc/passwd"))?;
            return Ok((uid, gid));
        }
    }
    bail!("OS user {name} does not exist (installing postgresql creates it)")
}
