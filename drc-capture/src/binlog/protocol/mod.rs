//! A small MySQL/MariaDB client for the replication connection.
//!
//! DRC runs ordinary queries through `mysql_async`, but reads the binlog over
//! its own connection: it needs the raw event bytes, MariaDB's ANNOTATE_ROWS
//! request flag, and every error surfaced rather than swallowed.
//!
//! [`ReplicationConn`] speaks just enough of the protocol for that:
//! the connection phase (`mysql_native_password`, the fast path of
//! `caching_sha2_password`, auth switch), COM_QUERY with text result sets (for
//! `SET @...`, `SELECT @@...`, `SHOW BINARY LOGS`), COM_REGISTER_SLAVE,
//! COM_BINLOG_DUMP and COM_BINLOG_DUMP_GTID, and then the event stream.
//!
//! A typical MariaDB GTID session:
//!
//! ```text
//! SET @master_binlog_checksum=@@global.binlog_checksum
//! SET @master_heartbeat_period=<ns>          -- keep it well under read_timeout
//! SET @mariadb_slave_capability=4            -- else GTID events are replaced
//! SET @slave_connect_state='<gtid list>'
//! register_replica(); dump_file_pos("", 4, flags); next_event() ...
//! ```
//!
//! After a dump starts the connection only streams events; the server closes it
//! when the dump ends (EOF of a non-blocking dump, or an error).
//!
//! There is no TLS yet: TLS to the source is future work, so the replication
//! user should use `mysql_native_password` (or `caching_sha2_password` with
//! its password already cached by the server).

mod auth;
mod packet;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::position::MysqlGtidSet;
use packet::{parse_eof_status, parse_err, parse_ok, PacketIo, Reader};

pub use auth::{scramble_caching_sha2, scramble_native};

/// COM_BINLOG_DUMP flag: at the end of the binlog the server sends EOF (and
/// closes the connection) instead of waiting for new events.
pub const BINLOG_DUMP_NON_BLOCK: u16 = 1;
/// MariaDB COM_BINLOG_DUMP flag: also send ANNOTATE_ROWS events (the SQL text
/// of row events).
pub const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 2;
/// MySQL COM_BINLOG_DUMP_GTID flag: start from the file/position given too.
pub const BINLOG_THROUGH_POSITION: u16 = 2;
/// MySQL COM_BINLOG_DUMP_GTID flag: the request carries a GTID set (always set
/// by [`ReplicationConn::dump_mysql_gtid`]).
pub const BINLOG_THROUGH_GTID: u16 = 4;

/// Replica server id used when the URL does not name one. Every concurrent
/// replica of a source needs its own id; set [`ConnectOptions::server_id`].
pub const DEFAULT_SERVER_ID: u32 = 1_000_001;

const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_BINLOG_DUMP: u8 = 0x12;
const COM_REGISTER_SLAVE: u8 = 0x15;
const COM_BINLOG_DUMP_GTID: u8 = 0x1e;

const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// Errors of the replication connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("I/O error on the replication connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data from the source within the read timeout (dead connection?)")]
    Timeout,
    #[error("source error {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("authentication failed: {0}")]
    Auth(String),
}

impl ProtocolError {
    /// True when reconnecting later may help: network trouble, timeouts, a
    /// server shutting down or out of connections. Authentication failures,
    /// protocol violations and a purged resume point (1236) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout => true,
            // 1040 too many connections, 1053 shutdown in progress, 1152 aborted
            // connection, 1158-1161 network read/write errors, 1927 connection
            // killed (MariaDB), 2006 gone away, 2013 lost connection.
            Self::Server { code, .. } => {
                matches!(code, 1040 | 1053 | 1152 | 1158..=1161 | 1927 | 2006 | 2013)
            }
            Self::Protocol(_) | Self::Auth(_) => false,
        }
    }

    /// The server's error code, if the server sent one.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How to reach the source as a replica.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Our server id as a replica; must differ from the source's and from every
    /// other replica's, or the source drops one of the two connections.
    pub server_id: u32,
    /// Limit on TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Longest wait for data from the server before the connection is declared
    /// dead ([`ProtocolError::Timeout`]); `Duration::ZERO` waits forever. While
    /// streaming, set `@master_heartbeat_period` well below it.
    pub read_timeout: Duration,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("server_id", &self.server_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl ConnectOptions {
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            server_id: DEFAULT_SERVER_ID,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// Parses `mysql://user:password@host:port` (also `mariadb://`). User and
    /// password are percent-decoded; the port defaults to 3306. A database
    /// path is ignored. Optional query parameters: `server_id`,
    /// `connect_timeout` and `read_timeout` (seconds); others are ignored so
    /// that one URL can serve `mysql_async` too.
    pub fn from_url(s: &str) -> Result<Self, ProtocolError> {
        let bad = |why: String| ProtocolError::Protocol(format!("invalid source URL: {why}"));
        let url = url::Url::parse(s)
            .map_err(|e| bad(format!("{e} (expected mysql://user:password@host:port)")))?;
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return Err(bad(format!("scheme {:?}, expected mysql://", url.scheme())));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => {
                return Err(bad(
                    "no host (expected mysql://user:password@host:port)".into()
                ))
            }
        };
        let user = percent_decode(url.username()).map_err(|e| bad(format!("user name: {e}")))?;
        if user.is_empty() {
            return Err(bad(
                "no user name (expected mysql://user:password@host:port)".into(),
            ));
        }
        let password = percent_decode(url.password().unwrap_or(""))
            .map_err(|e| bad(format!("password: {e}")))?;
        let mut o = Self::new(host, url.port().unwrap_or(3306), user, password);
        for (k, v) in url.query_pairs() {
            let secs = || {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| bad(format!("{k}={v:?} is not a number of seconds")))
            };
            match &*k {
                "server_id" => {
                    o.server_id = v
                        .parse()
                        .map_err(|_| bad(format!("server_id={v:?} is not a 32-bit number")))?
                }
                "connect_timeout" => o.connect_timeout = secs()?,
                "read_timeout" => o.read_timeout = secs()?,
                _ => {}
            }
        }
        Ok(o)
    }
}

impl FromStr for ConnectOptions {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, ProtocolError> {
        Self::from_url(s)
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_string())
}

/// The answer to a COM_QUERY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// A statement without a result set.
    Ok {
        affected_rows: u64,
        last_insert_id: u64,
        warnings: u16,
        info: String,
    },
    /// A result set in the text protocol; values are lossily UTF-8-decoded,
    /// `None` is SQL NULL.
    ResultSet {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
}

impl QueryResult {
    pub fn columns(&self) -> &[String] {
        match self {
            Self::ResultSet { columns, .. } => columns,
            Self::Ok { .. } => &[],
        }
    }

    pub fn rows(&self) -> &[Vec<Option<String>>] {
        match self {
            Self::ResultSet { rows, .. } => rows,
            Self::Ok { .. } => &[],
        }
    }

    pub fn affected_rows(&self) -> u64 {
        match self {
            Self::Ok { affected_rows, .. } => *affected_rows,
            Self::ResultSet { .. } => 0,
        }
    }

    /// Index of the column called `name` (ASCII case-insensitive).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns()
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The first column of the first row (`None` if no row or NULL).
    pub fn first_value(&self) -> Option<&str> {
        self.rows().first()?.first()?.as_deref()
    }

    /// Column `name` of row `row` (`None` if absent or NULL).
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let i = self.column_index(name)?;
        self.rows().get(row)?.get(i)?.as_deref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    Dumping,
    Ended,
}

/// A connection to the source acting as a replica.
pub struct ReplicationConn {
    io: PacketIo,
    caps: u32,
    server_version: String,
    connection_id: u32,
    server_id: u32,
    state: State,
}

impl fmt::Debug for ReplicationConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConn")
            .field("server_version", &self.server_version)
            .field("connection_id", &self.connection_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Same as [`ReplicationConn::connect`].
pub async fn connect(opts: ConnectOptions) -> Result<ReplicationConn, ProtocolError> {
    ReplicationConn::connect(opts).await
}

async fn tcp_connect(opts: &ConnectOptions) -> Result<TcpStream, ProtocolError> {
    let target = format!("{}:{}", opts.host, opts.port);
    let addrs = tokio::net::lookup_host((opts.host.as_str(), opts.port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot resolve {target}: {e}")))?;
    let mut last: Option<std::io::Error> = None;
    for addr in addrs {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.set_keepalive(true)?;
        sock.set_nodelay(true)?;
        match sock.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"));
    Err(std::io::Error::new(e.kind(), format!("cannot connect to {target}: {e}")).into())
}

impl ReplicationConn {
    /// Opens a TCP connection and logs in.
    pub async fn connect(opts: ConnectOptions) -> Result<Self, ProtocolError> {
        let stream = tokio::time::timeout(opts.connect_timeout, tcp_connect(&opts))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connecting to {}:{} took longer than {:?}",
                        opts.host, opts.port, opts.connect_timeout
                    ),
                )
            })??;
        Self::connect_over(stream, opts).await
    }

    /// Logs in over an already open stream (for tunnels, tests, later TLS).
    pub async fn connect_over<S>(stream: S, opts: ConnectOptions) -> Result<Self, ProtocolError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let read_timeout = (!opts.read_timeout.is_zero()).then_some(opts.read_timeout);
        let mut io = PacketIo::new(Box::new(stream), read_timeout);
        let limit = opts.connect_timeout;
        let (hs, caps) = match tokio::time::timeout(limit, handshake(&mut io, &opts)).await {
            Ok(r) => r?,
            Err(_) => return Err(ProtocolError::Timeout),
        };
        tracing::debug!(
            server = %hs.server_version,
            connection_id = hs.connection_id,
            "replication connection established"
        );
        Ok(Self {
            io,
            caps,
            server_version: hs.server_version,
            connection_id: hs.connection_id,
            server_id: opts.server_id,
            state: State::Command,
        })
    }

    /// The server's version string from the handshake, as sent (MariaDB
    /// prefixes it with `5.5.5-`).
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// True when the server announced itself as MariaDB.
    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }

    /// The server's id for this connection (`CONNECTION_ID()`).
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    fn ensure_command(&self, what: &str) -> Result<(), ProtocolError> {
        match self.state {
            State::Command => Ok(()),
            _ => Err(ProtocolError::Protocol(format!(
                "cannot {what}: this connection has started a binlog dump and only streams events"
            ))),
        }
    }

    async fn send_command(&mut self, payload: &[u8]) -> Result<(), ProtocolError> {
        self.io.reset_seq();
        self.io.write_packet(payload).await
    }

    /// Runs `sql` (COM_QUERY, text protocol). With several results (a CALL),
    /// the first is returned and the others are read and dropped.
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, ProtocolError> {
        self.ensure_command("run a query")?;
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.push(COM_QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.send_command(&payload).await?;
        let (first, mut more) = self.read_result().await?;
        while more {
            more = self.read_result().await?.1;
        }
        Ok(first)
    }

    fn is_terminator(&self, p: &[u8]) -> bool {
        p.first() == Some(&0xFE)
            && (p.len() < 9
                || (self.caps & auth::caps::CLIENT_DEPRECATE_EOF != 0
                    && p.len() < packet::MAX_CHUNK))
    }

    /// One result of a query; the flag says whether another follows.
    async fn read_result(&mut self) -> Result<(QueryResult, bool), ProtocolError> {
        let p = self.io.read_packet().await?;
        match p.first() {
            Some(0x00) => {
                let ok = parse_ok(&p)?;
                let res = QueryResult::Ok {
                    affected_rows: ok.affected_rows,
                    last_insert_id: ok.last_insert_id,
                    warnings: ok.warnings,
                    info: ok.info,
                };
                return Ok((res, ok.status & SERVER_MORE_RESULTS_EXISTS != 0));
            }
            Some(0xFF) => return Err(parse_err(&p)),
            Some(0xFB) => {
                // LOCAL INFILE request: decline with an empty packet, then read the answer.
                self.io.write_packet(&[]).await?;
                let _ = self.io.read_packet().await?;
                return Err(ProtocolError::Protocol(
                    "LOAD DATA LOCAL INFILE is not supported".into(),
                ));
            }
            None => return Err(ProtocolError::Protocol("empty reply to a query".into())),
            Some(_) => {}
        }
        let ncols = Reader::new(&p)
            .lenenc_int("column count")?
            .filter(|&n| n > 0 && n <= 1 << 16)
            .ok_or_else(|| {
                ProtocolError::Protocol("malformed column count in a result set".into())
            })?;
        // ncols <= 65536: fits usize.
        let ncols = ncols as usize;
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let c = self.io.read_packet().await?;
            if c.first() == Some(&0xFF) {
                return Err(parse_err(&c));
            }
            let mut r = Reader::new(&c);
            for what in ["catalog", "schema", "table", "org_table"] {
                r.lenenc_bytes(what)?;
            }
            let name = r.lenenc_bytes("column name")?.unwrap_or_default();
            columns.push(String::from_utf8_lossy(name).into_owned());
        }
        if self.caps & auth::caps::CLIENT_DEPRECATE_EOF == 0 {
            let e = self.io.read_packet().await?;
            if e.first() == Some(&0xFF) {
                return Err(parse_err(&e));
            }
            if !self.is_terminator(&e) {
                return Err(ProtocolError::Protocol(
                    "missing EOF after column definitions".into(),
                ));
            }
        }
        let mut rows = Vec::new();
        loop {
            let p = self.io.read_packet().await?;
            if p.first() == Some(&0xFF) {
                return Err(parse_err(&p));
            }
            if self.is_terminator(&p) {
                let status = if self.caps & auth::caps::CLIENT_DEPRECATE_EOF != 0 {
                    parse_ok(&p)?.status
                } else {
                    parse_eof_status(&p)
                };
                let more = status & SERVER_MORE_RESULTS_EXISTS != 0;
                return Ok((QueryResult::ResultSet { columns, rows }, more));
            }
            let mut r = Reader::new(&p);
            let mut row = Vec::with_capacity(ncols);
            for _ in 0..ncols {
                row.push(
                    r.lenenc_bytes("row value")?
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                );
            }
            if r.remaining() != 0 {
                return Err(ProtocolError::Protocol(
                    "row longer than its columns in a result set".into(),
                ));
            }
            rows.push(row);
        }
    }

    async fn expect_ok(&mut self) -> Result<(), ProtocolError> {
        let p = self.io.read_packet().await?;
        match p.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(parse_err(&p)),
            _ => Err(ProtocolError::Protocol(
                "expected an OK packet from the source".into(),
            )),
        }
    }

    /// COM_REGISTER_SLAVE with our server id (empty host, user and password,
    /// port 0, rank 0, source id 0); shows us in `SHOW SLAVE HOSTS`.
    pub async fn register_replica(&mut self) -> Result<(), ProtocolError> {
        self.ensure_command("register as a replica")?;
        let mut p = Vec::with_capacity(18);
        p.push(COM_REGISTER_SLAVE);
        p.extend_from_slice(&self.server_id.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]); // host, user, password: empty
        p.extend_from_slice(&0u16.to_le_bytes()); // port
        p.extend_from_slice(&0u32.to_le_bytes()); // replication rank
        p.extend_from_slice(&0u32.to_le_bytes()); // source id
        self.send_command(&p).await?;
        self.expect_ok().await
    }

    /// COM_BINLOG_DUMP from `file` at `pos` (an empty file with pos 4 means
    /// "from the start", or, after `@slave_connect_state`, from that MariaDB
    /// GTID position). `flags`: [`BINLOG_DUMP_NON_BLOCK`],
    /// [`BINLOG_SEND_ANNOTATE_ROWS_EVENT`]. Events then come from
    /// [`next_event`](Self::next_event); an error such as a purged file
    /// (1236) arrives there too.
    pub async fn dump_file_pos(
        &mut self,
        file: &str,
        pos: u32,
        flags: u16,
    ) -> Result<(), ProtocolError> {
        self.ensure_command("start a binlog dump")?;
        let mut p = Vec::with_capacity(11 + file.len());
        p.push(COM_BINLOG_DUMP);
        p.extend_from_slice(&pos.to_le_bytes());
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&self.server_id.to_le_bytes());
        p.extend_from_slice(file.as_bytes());
        self.send_command(&p).await?;
        self.state = State::Dumping;
        Ok(())
    }

    /// MySQL COM_BINLOG_DUMP_GTID: stream every transaction not in the GTID set
    /// (encoded with [`encode_mysql_gtid_set`]). [`BINLOG_THROUGH_GTID`] is
    /// added to `flags`; `file`/`pos` are used with [`BINLOG_THROUGH_POSITION`]
    /// (usually `""` and 4). MariaDB answers this command with error 1047.
    pub async fn dump_mysql_gtid(
        &mut self,
        gtid_set_encoded: &[u8],
        flags: u16,
        file: &str,
        pos: u64,
    ) -> Result<(), ProtocolError> {
        self.ensure_command("start a binlog dump")?;
        let too_long = |what: &str| {
            ProtocolError::Protocol(format!("{what} too long for COM_BINLOG_DUMP_GTID"))
        };
        let name_len = u32::try_from(file.len()).map_err(|_| too_long("file name"))?;
        let data_len = u32::try_from(gtid_set_encoded.len()).map_err(|_| too_long("GTID set"))?;
        let mut p = Vec::with_capacity(27 + file.len() + gtid_set_encoded.len());
        p.push(COM_BINLOG_DUMP_GTID);
        p.extend_from_slice(&(flags | BINLOG_THROUGH_GTID).to_le_bytes());
        p.extend_from_slice(&self.server_id.to_le_bytes());
        p.extend_from_slice(&name_len.to_le_bytes());
        p.extend_from_slice(file.as_bytes());
        p.extend_from_slice(&pos.to_le_bytes());
        p.extend_from_slice(&data_len.to_le_bytes());
        p.extend_from_slice(gtid_set_encoded);
        self.send_command(&p).await?;
        self.state = State::Dumping;
        Ok(())
    }

    /// The next event of the dump, exactly as in the binlog file (header,
    /// body, checksum if any). `Ok(None)` at the end of a non-blocking dump.
    /// A server error (e.g. 1236, resume point purged) comes back as
    /// [`ProtocolError::Server`]; silence longer than the read timeout as
    /// [`ProtocolError::Timeout`]. Cancel-safe: dropping the future loses no
    /// data.
    ///
    /// The returned `Bytes` shares a read buffer (about 1 MiB) with the events
    /// around it; copy an event before keeping it for long, or the whole
    /// buffer stays allocated.
    pub async fn next_event(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        match self.state {
            State::Dumping => {}
            State::Ended => return Ok(None),
            State::Command => {
                return Err(ProtocolError::Protocol(
                    "next_event called before a binlog dump was requested".into(),
                ))
            }
        }
        let mut p = match self.io.read_packet().await {
            Ok(p) => p,
            Err(e) => {
                if !matches!(e, ProtocolError::Timeout) {
                    self.state = State::Ended;
                }
                return Err(e);
            }
        };
        match p.first() {
            Some(0x00) => {
                p.advance(1);
                Ok(Some(p))
            }
            Some(0xFE) if p.len() < packet::MAX_CHUNK => {
                self.state = State::Ended;
                Ok(None)
            }
            Some(0xFF) => {
                self.state = State::Ended;
                Err(parse_err(&p))
            }
            other => {
                self.state = State::Ended;
                Err(ProtocolError::Protocol(match other {
                    Some(b) => format!("unexpected packet type 0x{b:02x} in the binlog stream"),
                    None => "empty packet in the binlog stream".into(),
                }))
            }
        }
    }

    /// Says goodbye (COM_QUIT, unless a dump is running) and closes the socket.
    pub async fn close(mut self) -> Result<(), ProtocolError> {
        if self.state == State::Command {
            self.send_command(&[COM_QUIT]).await?;
        }
        self.io.shutdown().await
    }
}

/// The connection phase: handshake, response, auth switch / more data, OK.
async fn handshake(
    io: &mut PacketIo,
    opts: &ConnectOptions,
) -> Result<(auth::Handshake, u32), ProtocolError> {
    let first = io.read_packet().await?;
    if first.first() == Some(&0xFF) {
        return Err(auth_error(parse_err(&first), opts));
    }
    let hs = auth::parse_handshake(&first)?;
    let caps = auth::client_capabilities(hs.capabilities)?;
    let mut plugin = match hs.auth_plugin.as_str() {
        p @ (auth::NATIVE_PASSWORD | auth::CACHING_SHA2_PASSWORD)
            if caps & auth::caps::CLIENT_PLUGIN_AUTH != 0 =>
        {
            p.to_string()
        }
        // Anything else: answer as mysql_native_password; the server switches
        // us to the user's plugin if that differs.
        _ => auth::NATIVE_PASSWORD.to_string(),
    };
    let resp = auth::auth_response(&plugin, &opts.password, &hs.nonce)?;
    io.write_packet(&auth::handshake_response(caps, &opts.user, &resp, &plugin)?)
        .await?;
    for _ in 0..8 {
        let p = io.read_packet().await?;
        match p.first() {
            Some(0x00) => return Ok((hs, caps)),
            Some(0xFF) => return Err(auth_error(parse_err(&p), opts)),
            Some(0xFE) => {
                let mut r = Reader::new(&p);
                r.u8("auth switch")?;
                if r.remaining() == 0 {
                    return Err(ProtocolError::Auth(
                        "the source asked for the pre-4.1 password scheme, which DRC does not support".into(),
                    ));
                }
                plugin = String::from_utf8_lossy(r.null_terminated()).into_owned();
                let data = r.rest();
                let nonce = data.strip_suffix(&[0]).unwrap_or(data);
                let resp = auth::auth_response(&plugin, &opts.password, nonce)?;
                io.write_packet(&resp).await?;
            }
            Some(0x01) if plugin == auth::CACHING_SHA2_PASSWORD => match p.get(1) {
                Some(3) => {} // fast authentication succeeded; OK follows
                Some(4) => return Err(auth::full_auth_unsupported(&opts.user)),
                _ => {
                    return Err(ProtocolError::Protocol(
                        "unexpected caching_sha2_password message".into(),
                    ))
                }
            },
            Some(b) => {
                return Err(ProtocolError::Protocol(format!(
                    "unexpected packet 0x{b:02x} during authentication ({plugin})"
                )))
            }
            None => {
                return Err(ProtocolError::Protocol(
                    "empty packet during authentication".into(),
                ))
            }
        }
    }
    Err(ProtocolError::Protocol(
        "authentication did not finish after 8 rounds".into(),
    ))
}

fn auth_error(e: ProtocolError, opts: &ConnectOptions) -> ProtocolError {
    match e {
        // 1045 access denied, 1698 access denied without password, 1044 no access to database.
        ProtocolError::Server { code: code @ (1044 | 1045 | 1698), message, .. } => ProtocolError::Auth(format!(
            "access denied for user '{}' at {}:{} (error {code}: {message}); check the replication user's name, password and host grants",
            opts.user, opts.host, opts.port
        )),
        other => other,
    }
}

/// Encodes a MySQL GTID set for COM_BINLOG_DUMP_GTID.
///
/// Untagged sets use the classic layout: `n_sids: u64`, then per UUID its 16
/// bytes, `n_intervals: u64` and the intervals as `[start, end + 1)` pairs of
/// `i64`. A set with any tagged GTID (MySQL 8.3+) uses the tagged layout: the
/// first u64 is `1 << 56 | n_entries << 8 | 1` (format byte 1 at both ends)
/// and each (UUID, tag) entry carries, between UUID and interval count, its
/// tag as a one-byte varint length (`len << 1`) and the lowercase tag bytes
/// (length 0 for untagged). Servers before 8.3 reject tagged sets.
pub fn encode_mysql_gtid_set(set: &MysqlGtidSet) -> Result<Vec<u8>, ProtocolError> {
    let bad = |why: String| ProtocolError::Protocol(format!("cannot encode GTID set: {why}"));
    let tagged = set
        .0
        .iter()
        .any(|((_, tag), ivs)| !tag.is_empty() && !ivs.is_empty());
    let mut out = vec![0u8; 8];
    let mut n: u64 = 0;
    for ((uuid, tag), ivs) in &set.0 {
        if ivs.is_empty() {
            continue;
        }
        n += 1;
        out.extend_from_slice(
            &parse_uuid(uuid).ok_or_else(|| bad(format!("{uuid:?} is not a UUID")))?,
        );
        if tagged {
            if tag.len() > 32 || !tag.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(bad(format!("{tag:?} is not a GTID tag")));
            }
            // tag.len() <= 32: the one-byte varint holds len << 1.
            out.push((tag.len() as u8) << 1);
            out.extend(tag.bytes().map(|c| c.to_ascii_lowercase()));
        }
        out.extend_from_slice(&(ivs.len() as u64).to_le_bytes());
        for &(a, b) in ivs {
            if a == 0 || a > b || b >= i64::MAX as u64 {
                return Err(bad(format!("interval {a}-{b} of {uuid}")));
            }
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&(b + 1).to_le_bytes());
        }
    }
    let head = if tagged { 1u64 << 56 | n << 8 | 1 } else { n };
    out[..8].copy_from_slice(&head.to_le_bytes());
    Ok(out)
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let h = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(h, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";
    const SERVER_CAPS: u32 = 0xF7FE | (0x81BF << 16);

    fn handshake_packet(plugin: &str, caps: u32) -> Vec<u8> {
        let mut p = vec![10u8];
        p.extend_from_slice(b"10.11.6-MariaDB-log\0");
        p.extend_from_slice(&42u32.to_le_bytes());
        p.extend_from_slice(&NONCE[..8]);
        p.push(0);
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(8);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0u8; 10]);
        p.extend_from_slice(&NONCE[8..]);
        p.push(0);
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        p
    }

    fn opts() -> ConnectOptions {
        let mut o = ConnectOptions::new("fake", 3306, "repl", "p");
        o.read_timeout = Duration::from_secs(10);
        o.server_id = 77;
        o
    }

    fn server(s: DuplexStream) -> PacketIo {
        PacketIo::new(Box::new(s), Some(Duration::from_secs(10)))
    }

    const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];

    /// Parsed HandshakeResponse41: (capabilities, user, auth response, plugin).
    fn parse_response(p: &[u8]) -> (u32, String, Vec<u8>, String) {
        let mut r = Reader::new(p);
        let caps = r.u32("caps").expect("caps");
        r.take(4 + 1 + 23, "fixed").expect("fixed");
        let user = String::from_utf8(r.null_terminated().to_vec()).expect("user");
        let n = r.u8("len").expect("len") as usize;
        let auth = r.take(n, "auth").expect("auth").to_vec();
        let plugin = String::from_utf8(r.null_terminated().to_vec()).expect("plugin");
        (caps, user, auth, plugin)
    }

    /// Sends the handshake, checks a native-password login and accepts it.
    async fn accept_native(srv: &mut PacketIo) {
        srv.write_packet(&handshake_packet("mysql_native_password", SERVER_CAPS))
            .await
            .expect("hs");
        let (caps, user, auth, plugin) = parse_response(&srv.read_packet().await.expect("resp"));
        assert_eq!(user, "repl");
        assert_eq!(plugin, "mysql_native_password");
        assert_eq!(auth, scramble_native(b"p", NONCE));
        assert_ne!(caps & auth::caps::CLIENT_PROTOCOL_41, 0);
        assert_eq!(caps & auth::caps::CLIENT_DEPRECATE_EOF, 0);
        srv.write_packet(OK).await.expect("ok");
    }

    async fn connected() -> (ReplicationConn, PacketIo) {
        let (a, b) = duplex(1 << 20);
        let mut srv = server(b);
        let (conn, ()) = tokio::join!(
            ReplicationConn::connect_over(a, opts()),
            accept_native(&mut srv)
        );
        (conn.expect("connect"), srv)
    }

    fn column_def(name: &str) -> Vec<u8> {
        let mut c = Vec::new();
        for s in ["def", "", "", "", name, ""] {
            packet::put_lenenc_int(&mut c, s.len() as u64);
            c.extend_from_slice(s.as_bytes());
        }
        c.extend_from_slice(&[0x0c, 45, 0, 0, 1, 0, 0, 253, 0, 0, 0, 0, 0]);
        c
    }

    fn row(values: &[Option<&str>]) -> Vec<u8> {
        let mut r = Vec::new();
        for v in values {
            match v {
                Some(s) => {
                    packet::put_lenenc_int(&mut r, s.len() as u64);
                    r.extend_from_slice(s.as_bytes());
                }
                None => r.push(0xFB),
            }
        }
        r
    }

    const EOF: &[u8] = &[0xFE, 0, 0, 2, 0];

    #[tokio::test]
    async fn login_and_queries() {
        let (mut conn, mut srv) = connected().await;
        assert_eq!(conn.server_version(), "10.11.6-MariaDB-log");
        assert!(conn.is_mariadb());
        assert_eq!(conn.connection_id(), 42);

        let server_side = async {
            srv.reset_seq();
            let q = srv.read_packet().await.expect("query");
            assert_eq!(&q[..], b"\x03SHOW BINARY LOGS");
            srv.write_packet(&[2]).await.expect("count");
            srv.write_packet(&column_def("Log_name"))
                .await
                .expect("col");
            srv.write_packet(&column_def("File_size"))
                .await
                .expect("col");
            srv.write_packet(EOF).await.expect("eof");
            srv.write_packet(&row(&[Some("binlog.000001"), Some("1234")]))
                .await
                .expect("row");
            srv.write_packet(&row(&[Some("binlog.000002"), None]))
                .await
                .expect("row");
            srv.write_packet(EOF).await.expect("eof");

            srv.reset_seq();
            let q = srv.read_packet().await.expect("query");
            assert_eq!(&q[..], b"\x03SET @a=1");
            srv.write_packet(&[0, 1, 0, 2, 0, 0, 0]).await.expect("ok");

            srv.reset_seq();
            srv.read_packet().await.expect("query");
            srv.write_packet(b"\xFF\x7a\x04#42000You have an error")
                .await
                .expect("err");
        };
        let client_side = async {
            let r = conn.query("SHOW BINARY LOGS").await.expect("show");
            assert_eq!(
                r.columns(),
                &["Log_name".to_string(), "File_size".to_string()]
            );
            assert_eq!(r.rows().len(), 2);
            assert_eq!(r.first_value(), Some("binlog.000001"));
            assert_eq!(r.get(0, "file_size"), Some("1234"));
            assert_eq!(r.get(1, "File_size"), None);
            let r = conn.query("SET @a=1").await.expect("set");
            assert_eq!(r.affected_rows(), 1);
            let e = conn.query("bad").await.expect_err("error");
            assert_eq!(e.server_code(), Some(1146));
            assert!(!e.is_transient());
        };
        tokio::join!(server_side, client_side);
    }

    #[tokio::test]
    async fn result_set_with_deprecate_eof() {
        let (mut conn, mut srv) = connected().await;
        conn.caps |= auth::caps::CLIENT_DEPRECATE_EOF;
        let server_side = async {
            srv.reset_seq();
            srv.read_packet().await.expect("query");
            srv.write_packet(&[1]).await.expect("count");
            srv.write_packet(&column_def("@@server_id"))
                .await
                .expect("col");
            srv.write_packet(&row(&[Some("1")])).await.expect("row");
            srv.write_packet(&[0xFE, 0, 0, 2, 0, 0, 0])
                .await
                .expect("ok");
        };
        let (r, ()) = tokio::join!(conn.query("SELECT @@server_id"), server_side);
        let r = r.expect("query");
        assert_eq!(r.columns(), &["@@server_id".to_string()]);
        assert_eq!(r.first_value(), Some("1"));
    }

    async fn login_with(
        script: impl std::future::Future<Output = ()>,
        a: DuplexStream,
    ) -> Result<ReplicationConn, ProtocolError> {
        let (conn, ()) = tokio::join!(ReplicationConn::connect_over(a, opts()), script);
        conn
    }

    #[tokio::test]
    async fn auth_switch_to_native() {
        let (a, b) = duplex(1 << 16);
        let mut srv = server(b);
        let script = async {
            srv.write_packet(&handshake_packet("caching_sha2_password", SERVER_CAPS))
                .await
                .expect("hs");
            let (_, _, auth, plugin) = parse_response(&srv.read_packet().await.expect("resp"));
            assert_eq!(plugin, "caching_sha2_password");
            assert_eq!(auth, scramble_caching_sha2(b"p", NONCE));
            let nonce2 = b"ZYXWVUTSRQPONMLKJIHG";
            let mut sw = vec![0xFE];
            sw.extend_from_slice(b"mysql_native_password\0");
            sw.extend_from_slice(nonce2);
            sw.push(0);
            srv.write_packet(&sw).await.expect("switch");
            let resp = srv.read_packet().await.expect("resp2");
            assert_eq!(&resp[..], &scramble_native(b"p", nonce2)[..]);
            srv.write_packet(OK).await.expect("ok");
        };
        login_with(script, a).await.expect("login");
    }

    #[tokio::test]
    async fn caching_sha2_fast_and_full() {
        let (a, b) = duplex(1 << 16);
        let mut srv = server(b);
        let script = async {
            srv.write_packet(&handshake_packet("caching_sha2_password", SERVER_CAPS))
                .await
                .expect("hs");
            srv.read_packet().await.expect("resp");
            srv.write_packet(&[1, 3]).await.expect("fast");
            srv.write_packet(OK).await.expect("ok");
        };
        login_with(script, a).await.expect("fast path");

        let (a, b) = duplex(1 << 16);
        let mut srv = server(b);
        let script = async {
            srv.write_packet(&handshake_packet("caching_sha2_password", SERVER_CAPS))
                .await
                .expect("hs");
            srv.read_packet().await.expect("resp");
            srv.write_packet(&[1, 4]).await.expect("full");
        };
        let e = login_with(script, a).await.expect_err("full auth");
        assert!(matches!(e, ProtocolError::Auth(_)));
        let msg = e.to_string();
        assert!(
            msg.contains("mysql_native_password") && msg.contains("TLS"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn access_denied_and_ed25519() {
        let (a, b) = duplex(1 << 16);
        let mut srv = server(b);
        let script = async {
            srv.write_packet(&handshake_packet("mysql_native_password", SERVER_CAPS))
                .await
                .expect("hs");
            srv.read_packet().await.expect("resp");
            srv.write_packet(b"\xFF\x15\x04#28000Access denied for user 'repl'@'localhost' (using password: YES)")
                .await
                .expect("err");
        };
        let e = login_with(script, a).await.expect_err("denied");
        assert!(matches!(e, ProtocolError::Auth(_)));
        assert!(e.to_string().contains("access denied"), "{e}");
        assert!(!e.is_transient());

        let (a, b) = duplex(1 << 16);
        let mut srv = server(b);
        let script = async {
            srv.write_packet(&handshake_packet("mysql_native_password", SERVER_CAPS))
                .await
                .expect("hs");
            srv.read_packet().await.expect("resp");
            srv.write_packet(b"\xFEclient_ed25519\0abcdefghijklmnopqrstuvwxyzabcdef")
                .await
                .expect("switch");
        };
        let e = login_with(script, a).await.expect_err("ed25519");
        assert!(e.to_string().contains("ed25519"), "{e}");
    }

    #[tokio::test]
    async fn garbage_handshakes_do_not_panic() {
        let mut seed = 0x1234_5678_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let good = handshake_packet("mysql_native_password", SERVER_CAPS);
        for i in 0..200 {
            let mut p = good.clone();
            let n = (next() as usize) % (p.len() + 1);
            p.truncate(n);
            if i % 2 == 0 {
                for _ in 0..4 {
                    let at = next() as usize % p.len().max(1);
                    if let Some(b) = p.get_mut(at) {
                        *b = next() as u8;
                    }
                }
            }
            let (a, b) = duplex(1 << 16);
            let mut srv = server(b);
            let script = async {
                let _ = srv.write_packet(&p).await;
                let _ = srv.read_packet().await;
                drop(srv);
            };
            let _ = login_with(script, a).await;
        }
    }

    #[tokio::test]
    async fn binlog_dump_stream() {
        let (mut conn, mut srv) = connected().await;
        let big = 2 * packet::MAX_CHUNK + 100;
        let server_side = async {
            srv.reset_seq();
            let reg = srv.read_packet().await.expect("register");
            let mut want = vec![0x15, 77, 0, 0, 0, 0, 0, 0, 0, 0];
            want.extend_from_slice(&[0; 8]);
            assert_eq!(&reg[..], &want[..]);
            srv.write_packet(OK).await.expect("ok");

            srv.reset_seq();
            let dump = srv.read_packet().await.expect("dump");
            let mut want = vec![0x12, 4, 0, 0, 0, 3, 0, 77, 0, 0, 0];
            want.extend_from_slice(b"binlog.000001");
            assert_eq!(&dump[..], &want[..]);
            for i in 0..3u8 {
                srv.write_packet(&[0, i, 15, 1, 2, 3]).await.expect("event");
            }
            let mut ev = vec![0u8; big + 1];
            ev[1] = 0xAB;
            if let Some(last) = ev.last_mut() {
                *last = 0xCD;
            }
            srv.write_packet(&ev).await.expect("big event");
            srv.write_packet(
                b"\xFF\xd4\x04#HY000Could not find first log file name in binary log index file",
            )
            .await
            .expect("err");
        };
        let client_side = async {
            conn.register_replica().await.expect("register");
            conn.dump_file_pos(
                "binlog.000001",
                4,
                BINLOG_DUMP_NON_BLOCK | BINLOG_SEND_ANNOTATE_ROWS_EVENT,
            )
            .await
            .expect("dump");
            for i in 0..3u8 {
                let ev = conn.next_event().await.expect("event").expect("some");
                assert_eq!(&ev[..], &[i, 15, 1, 2, 3]);
            }
            let ev = conn.next_event().await.expect("big").expect("some");
            assert_eq!(ev.len(), big);
            assert_eq!(ev.first(), Some(&0xAB));
            assert_eq!(ev.last(), Some(&0xCD));
            let e = conn.next_event().await.expect_err("purged");
            assert_eq!(e.server_code(), Some(1236));
            assert!(!e.is_transient());
            assert!(e.to_string().contains("Could not find first log"), "{e}");
            assert!(conn.query("SELECT 1").await.is_err());
        };
        tokio::join!(server_side, client_side);
    }

    #[tokio::test]
    async fn gtid_dump_eof_and_timeout() {
        let (mut conn, mut srv) = connected().await;
        let set: MysqlGtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
            .parse()
            .expect("set");
        let enc = encode_mysql_gtid_set(&set).expect("encode");
        let server_side = async {
            srv.reset_seq();
            let d = srv.read_packet().await.expect("dump");
            let mut want = vec![0x1e, 5, 0, 77, 0, 0, 0, 0, 0, 0, 0];
            want.extend_from_slice(&4u64.to_le_bytes());
            want.extend_from_slice(&(enc.len() as u32).to_le_bytes());
            want.extend_from_slice(&enc);
            assert_eq!(&d[..], &want[..]);
            srv.write_packet(&[0, 1, 2, 3]).await.expect("event");
            srv.write_packet(EOF).await.expect("eof");
        };
        let client_side = async {
            conn.dump_mysql_gtid(&enc, BINLOG_DUMP_NON_BLOCK, "", 4)
                .await
                .expect("dump");
            assert!(conn.next_event().await.expect("ev").is_some());
            assert!(conn.next_event().await.expect("eof").is_none());
            assert!(conn.next_event().await.expect("after eof").is_none());
        };
        tokio::join!(server_side, client_side);

        let (a, b) = duplex(1 << 16);
        let mut srv = server(b);
        let mut o = opts();
        o.read_timeout = Duration::from_millis(100);
        let (conn, ()) = tokio::join!(ReplicationConn::connect_over(a, o), accept_native(&mut srv));
        let mut conn = conn.expect("connect");
        conn.dump_file_pos("", 4, 0).await.expect("dump");
        let e = conn.next_event().await.expect_err("timeout");
        assert!(matches!(e, ProtocolError::Timeout));
        assert!(e.is_transient());
        drop(srv);
    }

    #[test]
    fn gtid_set_encoding_untagged() {
        let set: MysqlGtidSet =
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,00000000-0000-0000-0000-000000000001:3"
                .parse()
                .expect("set");
        let enc = encode_mysql_gtid_set(&set).expect("encode");
        let mut want = Vec::new();
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&[0; 15]);
        want.push(1);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(&4u64.to_le_bytes());
        want.extend_from_slice(&[
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ]);
        want.extend_from_slice(&2u64.to_le_bytes());
        for v in [1u64, 6, 7, 8] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(enc, want);
        assert_eq!(
            encode_mysql_gtid_set(&MysqlGtidSet::default()).expect("empty"),
            vec![0; 8]
        );
    }

    #[test]
    fn gtid_set_encoding_tagged() {
        let set: MysqlGtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-2:tag_a:1"
            .parse()
            .expect("set");
        let enc = encode_mysql_gtid_set(&set).expect("encode");
        let uuid = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        let mut want = vec![1, 2, 0, 0, 0, 0, 0, 1];
        want.extend_from_slice(&uuid);
        want.push(0);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(&uuid);
        want.push(5 << 1);
        want.extend_from_slice(b"tag_a");
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        assert_eq!(enc, want);
    }

    #[test]
    fn url_parsing() {
        let o = ConnectOptions::from_url("mysql://re%40pl:p%3Aw%2Fd@db.example:3307").expect("url");
        assert_eq!(
            (
                o.host.as_str(),
                o.port,
                o.user.as_str(),
                o.password.as_str()
            ),
            ("db.example", 3307, "re@pl", "p:w/d")
        );
        let o = ConnectOptions::from_url("mysql://u@[::1]/?server_id=9&read_timeout=2.5&other=x")
            .expect("url");
        assert_eq!((o.host.as_str(), o.port, o.server_id), ("::1", 3306, 9));
        assert_eq!(o.read_timeout, Duration::from_millis(2500));
        assert_eq!(o.password, "");
        assert!(!format!("{o:?}").contains("secret"));
        for bad in [
            "http://u:p@h",
            "mysql://h:3306",
            "mysql://u:p@h:99999",
            "mysql://u:%zz@h",
            "nope",
            "mysql://u@h?server_id=-1",
        ] {
            let e = ConnectOptions::from_url(bad).expect_err(bad).to_string();
            assert!(e.contains("invalid source URL"), "{bad}: {e}");
        }
        let o: ConnectOptions = "mariadb://u:secret@h".parse().expect("parse");
        assert!(!format!("{o:?}").contains("secret"));
    }
}
