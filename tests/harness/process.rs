//! Child-process plumbing shared by every throwaway server (MariaDB, PostgreSQL,
//! and later NATS): spawn with output captured to a log file, wait for
//! readiness, stop gracefully or with SIGKILL, and read the log's tail for
//! error messages.
//!
//! Guarantees:
//! - A [`ServerProcess`] is killed (SIGKILL) and reaped when it is dropped, so a
//!   panicking test does not leak servers.
//! - Every child is spawned with `PR_SET_PDEATHSIG = SIGKILL`, so it also dies
//!   when the test process dies without unwinding (abort, SIGKILL, timeout).
//!
//! Linux delivers the parent-death signal when the *thread* that forked the
//! child exits, not the process. Children are therefore forked from one
//! long-lived spawner thread, so a server started from a short-lived thread (a
//! `spawn_blocking` worker, a scoped thread) is not killed when that thread ends.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How often [`ServerProcess::wait_exit`] and [`wait_until`] poll.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Lines of a server log quoted in error messages.
pub const LOG_TAIL_LINES: usize = 40;

/// A running server child process, killed and reaped on drop.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to `log`.
    ///
    /// `name` is used in error messages ("mariadbd", "postgres").
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = open_append(log)?;
        let err = out
            .try_clone()
            .with_context(|| format!("clone handle of {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = spawn_from_spawner(cmd).with_context(|| format!("spawn {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The process id, while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file that receives the child's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has exited (it is then reaped), `None`
    /// while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            None => bail!("{} was already stopped", self.name),
            Some(child) => {
                let status = child
                    .try_wait()
                    .with_context(|| format!("wait for {}", self.name))?;
                if status.is_some() {
                    self.child = None;
                }
                Ok(status)
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Sends SIGKILL and reaps the process. Does nothing if it already exited.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if the process was already reaped, which we
            // never do behind the handle's back; `wait` reports real errors.
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("reap {} after SIGKILL", self.name))?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit, then
    /// falls back to SIGKILL. Returns the exit status when it exited on its own.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        self.signal("TERM")?;
        if let Some(status) = self.wait_exit(grace)? {
            return Ok(Some(status));
        }
        self.kill()?;
        Ok(None)
    }

    /// Sends a signal by name ("TERM", "INT", "HUP", "STOP", "CONT") with the
    /// `kill` utility, which keeps this crate free of `unsafe` signal calls.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running", self.name)
        };
        let status = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill -s {signal} {pid} ({}) failed: {status}", self.name);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.is_none() {
                bail!("{} was already stopped", self.name);
            }
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines of the child's stdout/stderr log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Nothing useful can be done with an error while dropping.
        let _ = self.kill();
    }
}

/// The last `lines` lines of the file at `path`, or a note saying why it could
/// not be read. For quoting server logs in error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// Polls `check` every 50 ms until it returns `Ok(true)`, returns an error, or
/// `timeout` passes (then an error naming `what`).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `cmd` to completion and returns its stdout; a non-zero exit becomes an
/// error that quotes stderr (and stdout's tail).
pub fn run_checked(what: &str, cmd: &mut Command) -> Result<String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stdout.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(anyhow!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            stderr.trim_end(),
            tail.join("\n")
        ));
    }
    Ok(stdout)
}

/// Finds an executable: first in `$PATH`, then in `extra_dirs` (for example
/// `/usr/sbin`, which is not on every user's `$PATH`).
pub fn find_binary(name: &str, extra_dirs: &[&Path]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .iter()
        .map(PathBuf::as_path)
        .chain(extra_dirs.iter().copied())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The ids of the live processes whose parent is `pid` (from /proc).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// Waits up to `timeout` until none of `pids` exists any more (they need not
/// be our children, so they are watched through /proc, not reaped).
pub fn wait_pids_gone(pids: &[u32], timeout: Duration) -> Result<()> {
    wait_until("processes to exit", timeout, || {
        Ok(pids
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists()))
    })
    .with_context(|| format!("processes {pids:?} are still alive"))
}

/// Copies a directory tree with `cp -a` (ownership, modes and sparseness kept).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    run_checked(
        "cp -a",
        Command::new("cp")
            .arg("-a")
            .arg("--sparse=always")
            .arg(from)
            .arg(to),
    )
    .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Changes the owner of `path` (recursively) with `chown -R`.
pub fn chown_tree(path: &Path, user: &str) -> Result<()> {
    run_checked(
        "chown -R",
        Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:"))
            .arg(path),
    )
    .with_context(|| format!("chown {} to {user}", path.display()))?;
    Ok(())
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log {}", path.display()))
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `cmd` from the process-wide spawner thread (see the module docs);
/// falls back to the calling thread if that thread cannot be started.
fn spawn_from_spawner(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("drc-tests-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // The requester may have gone away; then the child is
                    // dropped (not killed) like any unowned `Child`.
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(spawner) = spawner else {
        return cmd.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    if let Err(mpsc::SendError((mut cmd, _))) = spawner.send((cmd, reply_tx)) {
        return cmd.spawn();
    }
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread went away"))?
}

/// Makes the kernel SIGKILL the child when the thread that forked it exits, so
/// servers never outlive a test process that died without running destructors.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: `pre_exec` runs the closure in the forked child before `exec`,
    // where only async-signal-safe operations are allowed. The closure only
    // calls `prctl(2)` (a raw system call: no allocation, no locks) and reads
    // `errno` through `last_os_error`, both async-signal-safe; it touches no
    // state shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
