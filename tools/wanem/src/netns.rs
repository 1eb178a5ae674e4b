//! Named network namespaces (as managed by `ip netns`) and running code in them.
//!
//! Namespace membership is per thread: [`spawn_in`] starts a fresh thread,
//! moves it into the namespace with `setns(2)` and runs a closure there, so
//! the caller's own thread never changes namespace. Sockets keep the
//! namespace they were created in, so a listener or stream created by
//! [`run_in`] can be handed back and used from any thread.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Path of the handle of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `ip ARGS…`, failing with its stderr if it exits non-zero.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates namespace `name` (`ip netns add`).
pub fn add(name: &str) -> Result<()> {
    ip(&["netns", "add", name])
}

/// Deletes namespace `name` (`ip netns del`); a missing one is not an error.
pub fn del(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    ip(&["netns", "del", name])
}

/// A `Command` that runs `program` inside namespace `ns`
/// (`ip netns exec NS PROGRAM`); add arguments with `.arg()`.
pub fn command(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// A thread running inside a network namespace.
#[derive(Debug)]
pub struct NsThread<T> {
    inner: JoinHandle<Option<T>>,
}

impl<T> NsThread<T> {
    /// Waits for the thread; a panic in it is returned as `Err`, like
    /// [`JoinHandle::join`].
    pub fn join(self) -> thread::Result<T> {
        match self.inner.join()? {
            Some(v) => Ok(v),
            // Only when setns failed, and then spawn_in returned an error
            // instead of this handle.
            None => Err(Box::new("namespace thread did not run")),
        }
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// Spawns a thread that enters namespace `ns` and runs `f` there.
///
/// Returns once the thread is inside the namespace (or with the error if it
/// could not enter it).
pub fn spawn_in<F, T>(ns: &str, f: F) -> io::Result<NsThread<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let handle = File::open(path(ns))
        .map_err(|e| io::Error::new(e.kind(), format!("namespace {ns}: {e}")))?;
    let (tx, rx) = mpsc::channel::<io::Result<()>>();
    let inner = thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            let entered = setns(&handle, CloneFlags::CLONE_NEWNET);
            drop(handle);
            match entered {
                Ok(()) => {
                    let _ = tx.send(Ok(()));
                    Some(f())
                }
                Err(e) => {
                    let _ = tx.send(Err(io::Error::from(e)));
                    None
                }
            }
        })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(NsThread { inner }),
        Ok(Err(e)) => {
            let _ = inner.join();
            Err(io::Error::new(e.kind(), format!("setns into {ns}: {e}")))
        }
        Err(_) => {
            let _ = inner.join();
            Err(io::Error::other(format!("thread for namespace {ns} died")))
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` and returns its result.
/// A panic in `f` is resumed on the calling thread.
pub fn run_in<F, T>(ns: &str, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match spawn_in(ns, f)?.join() {
        Ok(v) => Ok(v),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
