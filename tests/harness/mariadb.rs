//! Throwaway MariaDB servers for tests.
//!
//! [`MariaDb::start`] copies a pristine data directory into a fresh temp dir,
//! starts `mariadbd` on a free port of 127.0.0.1 with the binlog settings DRC
//! needs (or the wrong ones a test asks for), and waits until `SELECT 1` works.
//! Dropping the handle kills the server and removes the temp dir.
//!
//! The pristine data directory is made once by `mariadb-install-db` and cached
//! in the system temp dir under a name that carries the server version, so test
//! processes (nextest runs one per test) share it instead of paying for an
//! install each. It is published with an atomic rename, so a reader never sees
//! a half-made one. It has `root` with an empty password (for `localhost`,
//! `127.0.0.1`, `::1`), no anonymous users and no `test` database.
//!
//! With [`MariaDbOptions::netns`] the server runs inside a network namespace
//! (`ip netns exec`), listening on that namespace's 127.0.0.1: programs in the
//! namespace reach it at [`MariaDb::url`], and the harness itself (in any
//! namespace) talks to it through its unix socket ([`MariaDb::socket_url`]).
//!
//! Layout of a server's temp dir: `data/` (datadir, binlogs are
//! `data/binlog.NNNNNN`), `tmp/` (the server's tmpdir), `sock`,
//! `mariadbd.pid`, `error.log`, `stdout.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::Queryable;
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{
    copy_tree, find_binary, log_tail, run_checked, ServerProcess, LOG_TAIL_LINES,
};

/// How long [`MariaDb::start`] and [`MariaDb::restart`] wait for `SELECT 1`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a graceful stop may take before the server is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Start attempts when the chosen port turns out to be taken.
const PORT_ATTEMPTS: usize = 5;

/// Bumped when the pristine data directory's install options change, so an old
/// cached copy is not reused.
const PRISTINE_LAYOUT: &str = "v1";

/// InnoDB redo log size, the same at install and at start so the copied log
/// file is used as is.
const INNODB_LOG_FILE_SIZE: &str = "48M";

/// Directories searched for MariaDB binaries after `$PATH`.
const EXTRA_BIN_DIRS: [&str; 2] = ["/usr/sbin", "/usr/bin"];

/// How a throwaway MariaDB server is configured.
///
/// The defaults are what DRC requires of a source: binlog on, ROW format, FULL
/// row image and FULL row metadata, no binlog compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaDbOptions {
    /// `--server-id`.
    pub server_id: u32,
    /// Whether to pass `--log-bin=<datadir>/binlog`; `false` starts a server
    /// without a binlog (for testing the "binlog is off" error).
    pub log_bin: bool,
    /// `--binlog-format` (`ROW`, `STATEMENT`, `MIXED`).
    pub binlog_format: String,
    /// `--binlog-row-image` (`FULL`, `MINIMAL`, `NOBLOB`).
    pub row_image: String,
    /// `--binlog-row-metadata` (`FULL`, `MINIMAL`, `NO_LOG`).
    pub row_metadata: String,
    /// `--log-bin-compress`: MariaDB then writes compressed query/row events.
    pub log_bin_compress: bool,
    /// `--gtid-domain-id`, when set.
    pub gtid_domain_id: Option<u32>,
    /// Appended last, so they override the settings above
    /// (for example `--binlog-format=STATEMENT` or `--sync-binlog=1`).
    pub extra_args: Vec<String>,
    /// A network namespace to run the server in (`ip netns exec NAME`), for
    /// tests of regions joined by an emulated link; `None`: this process's.
    pub netns: Option<String>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        Self {
            server_id: 1,
            log_bin: true,
            binlog_format: "ROW".into(),
            row_image: "FULL".into(),
            row_metadata: "FULL".into(),
            log_bin_compress: false,
            gtid_domain_id: None,
            extra_args: Vec::new(),
            netns: None,
        }
    }
}

/// A running throwaway MariaDB server; killed and deleted on drop.
#[derive(Debug)]
pub struct MariaDb {
    options: MariaDbOptions,
    port: u16,
    /// `None` after [`MariaDb::kill9`] or [`MariaDb::stop`].
    process: Option<ServerProcess>,
    /// Dropped after the process has been killed (see `Drop`).
    dir: TempDir,
}

impl MariaDb {
    /// Whether `mariadbd`, `mariadb-install-db` and the `mariadb` client are
    /// installed. Tests call this to skip (with `skip!`) where they are not.
    pub fn available() -> bool {
        ["mariadbd", "mariadb-install-db", "mariadb"]
            .iter()
            .all(|name| binary(name).is_ok())
    }

    /// Starts a server with `options` on a free port and waits until it
    /// answers `SELECT 1` (up to [`STARTUP_TIMEOUT`]).
    pub fn start(options: MariaDbOptions) -> Result<Self> {
        let pristine = pristine_datadir()?;
        let dir = tempfile::Builder::new()
            .prefix("drc-mariadb-")
            .tempdir()
            .context("create temp dir for mariadb")?;
        copy_tree(&pristine, &dir.path().join("data"))?;

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
                    });
                }
                Err(LaunchError::PortTaken(err)) => last_err = Some(err),
                Err(LaunchError::Other(err)) => return Err(err),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no start attempt was made"))
            .context(format!("start mariadbd ({PORT_ATTEMPTS} ports were taken)")))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT` (root has an empty password); with
    /// [`MariaDbOptions::netns`], the address inside that namespace.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// The server's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// `mysql://root@localhost/?socket=PATH`: the server's unix socket, which
    /// works from every network namespace.
    pub fn socket_url(&self) -> String {
        format!("mysql://root@localhost/?socket={}", self.socket().display())
    }

    /// The URL this process reaches the server by: [`MariaDb::url`], or
    /// [`MariaDb::socket_url`] for a server in another namespace.
    fn own_url(&self) -> String {
        if self.options.netns.is_some() {
            self.socket_url()
        } else {
            self.url()
        }
    }

    /// `mysql://USER:PASS@127.0.0.1:PORT`, with both parts percent-encoded.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}",
            percent_encode(user),
            percent_encode(password),
            self.port
        )
    }

    /// Connection options for root over TCP. `prefer_socket` is off so tests
    /// talk TCP like production does, not the Unix socket mysql_async would
    /// otherwise switch to on 127.0.0.1. A server in another namespace is
    /// reached through its socket.
    pub fn opts(&self) -> Result<mysql_async::Opts> {
        opts_for_url(&self.own_url())
    }

    /// A new connection as root.
    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        mysql_async::Conn::new(self.opts()?)
            .await
            .with_context(|| format!("connect to mariadb on port {}", self.port))
    }

    /// Runs `sql` (one or more `;`-separated statements) on a new root
    /// connection and discards any result.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        let result = conn.query_drop(sql).await;
        let disconnected = conn.disconnect().await;
        result.with_context(|| format!("run on mariadb: {}", abbreviate(sql)))?;
        disconnected.context("disconnect from mariadb")?;
        Ok(())
    }

    /// Runs `sql` as root with the `mariadb` command-line client (for tests
    /// without an async runtime) and returns its output: no column names,
    /// tab-separated columns, one line per row, `NULL` for null, the final
    /// newline removed. Uses utf8mb4 as the connection character set.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let mut cmd = Command::new(binary("mariadb")?);
        cmd.args(["--no-defaults", "-uroot"]);
        if self.options.netns.is_some() {
            cmd.arg(format!("--socket={}", self.socket().display()));
        } else {
            cmd.arg("-h127.0.0.1").arg(format!("-P{}", self.port));
        }
        cmd.args(["--default-character-set=utf8mb4", "-N", "-B", "-e"])
            .arg(sql);
        let out = run_checked(&format!("mariadb -e {}", abbreviate(sql)), &mut cmd)?;
        Ok(out.strip_suffix('\n').unwrap_or(&out).to_owned())
    }

    /// The server's data directory (binlogs are `binlog.NNNNNN` in it).
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir that holds the datadir, socket, pid file and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's error log.
    pub fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// The last lines of the error log, for assertion messages.
    pub fn error_log_tail(&self) -> String {
        log_tail(&self.error_log(), LOG_TAIL_LINES)
    }

    /// The options the server was started with.
    pub fn options(&self) -> &MariaDbOptions {
        &self.options
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ServerProcess::pid)
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Kills the server with SIGKILL (a crash: no flush, no clean shutdown)
    /// and reaps it. The datadir is kept; [`MariaDb::restart`] starts it again.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Stops the server cleanly (SIGTERM, as `mariadb-admin shutdown` would),
    /// killing it if it takes longer than a minute. The datadir is kept.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.terminate(SHUTDOWN_GRACE)?;
        }
        Ok(())
    }

    /// Stops the server cleanly if it runs, then starts it again on the same
    /// datadir, port and options and waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        match launch(self.dir.path(), self.port, &self.options) {
            Ok(process) => {
                self.process = Some(process);
                Ok(())
            }
            Err(LaunchError::PortTaken(err) | LaunchError::Other(err)) => {
                Err(err.context(format!("restart mariadbd on port {}", self.port)))
            }
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // Kill before the temp dir (a field) is removed; errors cannot be
        // reported from a destructor.
        let _ = self.kill9();
    }
}

/// Why a start attempt failed: a taken port is worth a retry on another one.
enum LaunchError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

/// Starts `mariadbd` on the datadir in `dir` and waits until it answers.
fn launch(dir: &Path, port: u16, options: &MariaDbOptions) -> Result<ServerProcess, LaunchError> {
    let error_log = dir.join("error.log");
    // Keep earlier attempts' messages out of the port-taken check below.
    let log_len_before = std::fs::metadata(&error_log).map(|m| m.len()).unwrap_or(0);

    let tmpdir = dir.join("tmp");
    std::fs::create_dir_all(&tmpdir)
        .with_context(|| format!("create {}", tmpdir.display()))
        .map_err(LaunchError::Other)?;
    let mariadbd = binary("mariadbd").map_err(LaunchError::Other)?;
    let mut cmd = match &options.netns {
        // `ip netns exec` execs mariadbd in place: the child's pid is its.
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(mariadbd);
            cmd
        }
        None => Command::new(mariadbd),
    };
    cmd.args(server_args(dir, port, options));
    let mut process = ServerProcess::spawn("mariadbd", cmd, &dir.join("stdout.log"))
        .map_err(LaunchError::Other)?;

    let socket = options.netns.as_ref().map(|_| dir.join("sock"));
    match wait_ready(&mut process, port, socket.as_deref()) {
        Ok(()) => Ok(process),
        Err(err) => {
            let _ = process.kill();
            let log = std::fs::read(&error_log).unwrap_or_default();
            let new_part = log.get(log_len_before as usize..).unwrap_or_default();
            let new_part = String::from_utf8_lossy(new_part);
            let err = err.context(format!(
                "mariadbd on port {port} did not become ready; error.log ends with:\n{}\n\
                 stdout/stderr ends with:\n{}",
                log_tail(&error_log, LOG_TAIL_LINES),
                process.log_tail()
            ));
            if new_part.contains("Address already in use")
                || new_part.contains("Bind on TCP/IP port")
            {
                Err(LaunchError::PortTaken(err))
            } else {
                Err(LaunchError::Other(err))
            }
        }
    }
}

/// The `mariadbd` command line for a server in `dir`.
fn server_args(dir: &Path, port: u16, o: &MariaDbOptions) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "--no-defaults".to_owned(),
        "--user=root".to_owned(),
        format!("--datadir={}", path("data")),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--socket={}", path("sock")),
        format!("--pid-file={}", path("mariadbd.pid")),
        format!("--log-error={}", path("error.log")),
        // Never the shared /tmp: at startup mariadbd deletes every `#sql*`
        // file in its tmpdir, which breaks other servers' temporary tables.
        format!("--tmpdir={}", path("tmp")),
        format!("--server-id={}", o.server_id),
    ];
    if o.log_bin {
        args.push(format!(
            "--log-bin={}",
            dir.join("data").join("binlog").display()
        ));
    }
    args.extend([
        format!("--binlog-format={}", o.binlog_format),
        format!("--binlog-row-image={}", o.row_image),
        format!("--binlog-row-metadata={}", o.row_metadata),
        format!(
            "--log-bin-compress={}",
            if o.log_bin_compress { "ON" } else { "OFF" }
        ),
    ]);
    if let Some(domain) = o.gtid_domain_id {
        args.push(format!("--gtid-domain-id={domain}"));
    }
    args.extend(
        [
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--max-allowed-packet=1G",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ]
        .map(str::to_owned),
    );
    args.push(format!("--innodb-log-file-size={INNODB_LOG_FILE_SIZE}"));
    args.extend(o.extra_args.iter().cloned());
    args
}

/// Waits until the server answers `SELECT 1` over TCP (or over `socket`, for
/// a server in another namespace), failing early if the process exits.
fn wait_ready(process: &mut ServerProcess, port: u16, socket: Option<&Path>) -> Result<()> {
    let url = match socket {
        Some(path) => format!("mysql://root@localhost/?socket={}", path.display()),
        None => format!("mysql://root@127.0.0.1:{port}"),
    };
    let opts = opts_for_url(&url)?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_err = anyhow!("no connection attempt was made");
    while Instant::now() < deadline {
        if let Some(status) = process.try_wait()? {
            bail!("mariadbd exited during startup with {status}");
        }
        let listening = match socket {
            Some(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            None => std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(1),
            )
            .is_ok(),
        };
        if listening {
            match select_one(&opts) {
                Ok(()) => return Ok(()),
                Err(err) => last_err = err,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last_err.context(format!("timed out after {STARTUP_TIMEOUT:?}")))
}

/// Connects with mysql_async and runs `SELECT 1`, on a private runtime in its
/// own thread so that it works whether or not the caller is inside a runtime.
fn select_one(opts: &mysql_async::Opts) -> Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("build tokio runtime for the readiness check")?;
                runtime.block_on(async {
                    let check = async {
                        let mut conn = mysql_async::Conn::new(opts.clone()).await?;
                        let one: Option<i64> = conn.query_first("SELECT 1").await?;
                        conn.disconnect().await?;
                        Ok::<_, mysql_async::Error>(one)
                    };
                    match tokio::time::timeout(Duration::from_secs(5), check).await {
                        Ok(Ok(Some(1))) => Ok(()),
                        Ok(Ok(other)) => bail!("SELECT 1 returned {other:?}"),
                        Ok(Err(err)) => Err(anyhow::Error::new(err).context("SELECT 1")),
                        Err(_) => bail!("SELECT 1 took longer than 5 s"),
                    }
                })
            })
            .join()
            .map_err(|_| anyhow!("readiness check thread panicked"))?
    })
}

fn opts_for_url(url: &str) -> Result<mysql_async::Opts> {
    let opts = mysql_async::Opts::from_url(url).with_context(|| format!("parse url {url}"))?;
    Ok(mysql_async::OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .into())
}

/// The pristine data directory, installed on first use (see the module docs).
fn pristine_datadir() -> Result<PathBuf> {
    static PRISTINE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PRISTINE
        .get_or_init(|| install_pristine().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!("install a pristine mariadb datadir: {err}"))
}

fn install_pristine() -> Result<PathBuf> {
    let version = run_checked(
        "mariadbd --version",
        Command::new(binary("mariadbd")?).arg("--version"),
    )?;
    let key: String = version
        .split_whitespace()
        .nth(2)
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
        "drc-tests-mariadb-pristine-{PRISTINE_LAYOUT}-{key}"
    ));
    if is_datadir(&target) {
        return Ok(target);
    }

    let staging = tempfile::Builder::new()
        .prefix("drc-tests-mariadb-install-")
        .tempdir_in(&tmp)
        .context("create staging dir for mariadb-install-db")?;
    let data = staging.path().join("data");
    // A private tmpdir: the bootstrap server deletes `#sql*` files in its
    // tmpdir at startup, so concurrent installs in /tmp break each other.
    let tmpdir = staging.path().join("tmp");
    std::fs::create_dir(&tmpdir).with_context(|| format!("create {}", tmpdir.display()))?;
    let mut cmd = Command::new(binary("mariadb-install-db")?);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmpdir.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--innodb-log-file-size={INNODB_LOG_FILE_SIZE}"));
    if let Some(sbin) = binary("mariadbd")?.parent() {
        // mariadb-install-db finds mariadbd through --basedir or $PATH; make
        // sure /usr/sbin is on it even for users whose $PATH lacks it.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(sbin.to_owned()).chain(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    run_checked("mariadb-install-db", &mut cmd)?;

    // Publish atomically; if another process won the race, use its copy.
    match std::fs::rename(&data, &target) {
        Ok(()) => Ok(target),
        Err(_) if is_datadir(&target) => Ok(target),
        Err(err) => {
            Err(err).with_context(|| format!("publish pristine datadir at {}", target.display()))
        }
    }
}

fn is_datadir(path: &Path) -> bool {
    path.join("mysql").is_dir() && path.join("ibdata1").is_file()
}

fn binary(name: &str) -> Result<PathBuf> {
    let extra: Vec<&Path> = EXTRA_BIN_DIRS.iter().map(Path::new).collect();
    find_binary(name, &extra)
        .ok_or_else(|| anyhow!("{name} not found (install mariadb-server and mariadb-client)"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first line of `sql`, cut to 80 characters, for error messages.
fn abbreviate(sql: &str) -> String {
    let first = sql.lines().next().unwrap_or_default();
    let cut: String = first.chars().take(80).collect();
    if cut.len() < sql.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
