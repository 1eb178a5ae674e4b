//! Throwaway-server harness for DRC's end-to-end tests.
//!
//! Tests talk to real servers, never mocks. Each server starts on a free port of
//! 127.0.0.1 in its own temp dir, and is killed and deleted when its handle is
//! dropped, including when the test panics. Children also die with the test
//! process (parent-death signal), so an aborted or killed test run leaves no
//! servers behind.
//!
//! - [`MariaDb`]: `mariadbd` with the binlog settings of [`MariaDbOptions`].
//! - [`Postgres`]: a PostgreSQL cluster run as the `postgres` OS user.
//! - [`Nats`]: `nats-server` with JetStream, its store in the temp dir.
//! - [`replay`]: reads a JetStream stream back and replays change messages
//!   into table state, to compare with a source's tables.
//! - [`ServerProcess`]: the spawn/wait/kill plumbing both use; a new server
//!   kind (NATS, MySQL) is a module that builds its command line, spawns it
//!   with [`ServerProcess::spawn`] and polls readiness with [`wait_until`].
//!
//! Tests that need a binary the machine lacks call [`skip!`], which prints
//! `SKIPPED: <test>: <reason>` to stderr and returns.

pub mod mariadb;
pub mod nats;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod replay;
pub mod torture;

use std::path::PathBuf;

pub use mariadb::{MariaDb, MariaDbOptions};
pub use nats::{Nats, NatsOptions};
pub use ports::{free_port, port_is_free};
pub use postgres::{Postgres, PostgresOptions};
pub use process::{wait_until, ServerProcess};

/// `<workspace root>/../shared/fixtures/binlogs` (binlog files captured from
/// other projects' test suites) when that directory exists.
pub fn shared_fixtures_dir() -> Option<PathBuf> {
    // CARGO_MANIFEST_DIR is this crate's folder, `tests/`, one level below the
    // workspace root.
    let workspace_root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    let dir = workspace_root
        .join("..")
        .join("shared")
        .join("fixtures")
        .join("binlogs");
    dir.is_dir().then_some(dir)
}

/// Environment variable naming a file that [`report_skip`] also appends its
/// line to, so a test runner that hides the output of passing tests can still
/// list the skipped ones (`scripts/test.sh` does).
pub const SKIP_LOG_ENV: &str = "DRC_TEST_SKIP_LOG";

/// Prints `SKIPPED: <test>: <reason>` to stderr, and appends it to the file
/// named by [`SKIP_LOG_ENV`] when that is set. `<test>` is the current thread's
/// name, which the test harness sets to the test's path, or `fallback` where
/// the thread has no name. Used by [`skip!`].
pub fn report_skip(fallback: &str, reason: &str) {
    let current = std::thread::current();
    let test = current.name().filter(|n| *n != "main").unwrap_or(fallback);
    let line = format!("SKIPPED: {test}: {reason}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        use std::io::Write;
        // One short append per line is atomic, so parallel test processes
        // do not interleave; a failure to log must not fail the test.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
        if let Err(err) = appended {
            eprintln!("cannot append to {}: {err}", PathBuf::from(path).display());
        }
    }
}

/// Skips the rest of the test: prints `SKIPPED: <test name>: <reason>` to
/// stderr and returns from the enclosing function.
///
/// `skip!("reason {}", x)` returns `()`; for a test that returns a `Result`,
/// give the value first: `skip!(Ok(()), "reason")`.
///
/// ```no_run
/// use drc_tests::{skip, MariaDb, MariaDbOptions};
///
/// fn needs_mariadb() {
///     if !MariaDb::available() {
///         skip!("mariadb-server is not installed");
///     }
///     let _db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
/// }
///
/// fn returns_result() -> anyhow::Result<()> {
///     if !MariaDb::available() {
///         skip!(Ok(()), "mariadb-server is not installed");
///     }
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! skip {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $crate::report_skip(module_path!(), &format!($fmt $(, $arg)*));
        return;
    }};
    ($ret:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        $crate::report_skip(module_path!(), &format!($fmt $(, $arg)*));
        return $ret;
    }};
}
