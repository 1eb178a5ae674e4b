//! Sockets: addresses, the options every relay connection gets, the
//! listener's accept loop (TLS handshakes included), and the client's
//! connector.
//!
//! Options, on both ends of every TCP connection:
//! - `TCP_NODELAY`: acks and small batches leave at once;
//! - TCP keepalive (5 s idle, 2 s interval, 3 probes) and `TCP_USER_TIMEOUT`
//!   (20 s), so a dead link is noticed within seconds, idle or not;
//! - `TCP_CONGESTION=bbr` where the kernel offers it (Linux with the
//!   `tcp_bbr` module); elsewhere the default stays, logged at debug level.
//!
//! HTTP/2 keepalive pings (see `server.rs` and `client.rs`) cover what TCP
//! cannot see (a stuck peer process).
//!
//! The accept loop never lets one connection stall or stop the listener: each
//! handshake runs in its own task under a timeout, and a failed handshake
//! (no client certificate, a certificate of another CA, plaintext or garbage
//! on a TLS port) only closes that connection.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;

use crate::error::{RelayError, Result};

/// TCP keepalive: idle time before the first probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// TCP keepalive: time between probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// TCP keepalive: unanswered probes before the connection is dropped.
pub const KEEPALIVE_PROBES: u32 = 3;
/// How long sent data may stay unacknowledged before the kernel gives up.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
/// Congestion control asked for on every socket.
pub const CONGESTION: &str = "bbr";
/// A TLS handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 64;

/// Where a relay listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Address {
    /// Parses `host:port`, `[v6]:port` or `unix:/path`.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.trim_start_matches("//");
            if path.is_empty() {
                return Err(RelayError::Config(format!(
                    "listen address {s:?} names no socket path; write unix:/run/drc/relay.sock"
                )));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(Address::Tcp).map_err(|_| {
            RelayError::Config(format!(
                "bad listen address {s:?}: write IP:PORT (0.0.0.0:7400, [::1]:7400) or unix:/path"
            ))
        })
    }

    /// Loopback addresses and unix sockets never leave the machine.
    pub fn is_local(&self) -> bool {
        match self {
            Address::Tcp(a) => is_loopback_ip(a.ip()),
            Address::Unix(_) => true,
        }
    }
}

/// Where a client dials: a host (name or IP, resolved at each connect) and
/// port, or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Dial {
    /// Loopback IP literals and unix sockets never leave the machine (a name
    /// such as `localhost` is not trusted: it is whatever the resolver says).
    pub fn is_local(&self) -> bool {
        match self {
            Dial::Tcp(host, _) => host.parse::<IpAddr>().is_ok_and(is_loopback_ip),
            Dial::Unix(_) => true,
        }
    }
}

/// True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback).
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Applies the relay's socket options to a TCP stream. Failures of the
/// optional ones are logged at debug level and otherwise ignored.
pub fn tune(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    if let Err(e) = sock.set_tcp_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let ka = ka.with_retries(KEEPALIVE_PROBES);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if let Err(e) = sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)) {
            tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
        }
        if let Err(e) = sock.set_tcp_congestion(CONGESTION.as_bytes()) {
            tracing::debug!(error = %e, "congestion control {CONGESTION} not available; keeping the kernel default");
        }
    }
}

/// The congestion control in use on a socket (Linux), for tests and status.
pub fn congestion(stream: &TcpStream) -> Option<String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let sock = socket2::SockRef::from(stream);
        sock.tcp_congestion().ok().map(|v| {
            String::from_utf8_lossy(&v)
                .trim_end_matches('\0')
                .to_string()
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = stream;
        None
    }
}

/// The transport under a connection.
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// One accepted or dialled connection, whatever its transport. Accepted ones
/// are tracked in their listener's [`OpenConns`] until dropped.
pub struct Conn {
    io: Io,
    _tracked: Option<Tracked>,
}

impl Conn {
    pub(crate) fn new(io: Io) -> Self {
        Self { io, _tracked: None }
    }
}

/// The accepted connections of a listener, so that a shutdown can close the
/// ones that do not finish in time (a peer that stopped reading keeps a
/// stream open forever otherwise).
#[derive(Clone, Default)]
pub struct OpenConns {
    inner: Arc<std::sync::Mutex<OpenInner>>,
}

#[derive(Default)]
struct OpenInner {
    next_id: u64,
    socks: std::collections::HashMap<u64, socket2::Socket>,
}

/// Removes its connection from the set when dropped.
struct Tracked {
    set: OpenConns,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.set.lock().socks.remove(&self.id);
    }
}

impl OpenConns {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks a socket through a duplicate of its descriptor.
    fn track<S: std::os::fd::AsFd>(&self, s: &S) -> Option<Tracked> {
        let dup = socket2::SockRef::from(s).try_clone().ok()?;
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        g.socks.insert(id, dup);
        Some(Tracked {
            set: self.clone(),
            id,
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().socks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts every tracked socket down in both directions: their readers see
    /// end of file and their writers an error, so their tasks end.
    pub fn close_all(&self) {
        for s in self.lock().socks.values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What the service can learn about a connection's peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// TCP peer address; `None` on a unix socket.
    pub addr: Option<SocketAddr>,
    /// True when the peer presented a verified client certificate.
    pub authenticated: bool,
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match &self.io {
            Io::Tcp(s) => PeerInfo {
                addr: s.peer_addr().ok(),
                authenticated: false,
            },
            Io::Tls(s) => {
                let (tcp, session) = s.get_ref();
                PeerInfo {
                    addr: tcp.peer_addr().ok(),
                    authenticated: session.peer_certificates().is_some_and(|c| !c.is_empty()),
                }
            }
            Io::ClientTls(s) => PeerInfo {
                addr: s.get_ref().0.peer_addr().ok(),
                authenticated: true,
            },
            Io::Unix(_) => PeerInfo {
                addr: None,
                authenticated: false,
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
            Io::ClientTls(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A bound listener, TCP or unix.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A stale unix socket file is replaced.
    pub async fn bind(addr: &Address) -> Result<Self> {
        match addr {
            Address::Tcp(a) => TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|e| RelayError::net(format!("listen on {a}"), e)),
            Address::Unix(p) => {
                if p.exists() {
                    // A socket someone still answers on is not stale.
                    if std::os::unix::net::UnixStream::connect(p).is_ok() {
                        return Err(RelayError::Config(format!(
                            "unix socket {} is in use by another process; stop it or listen elsewhere",
                            p.display()
                        )));
                    }
                    std::fs::remove_file(p)
                        .map_err(|e| RelayError::io("remove stale socket", p, e))?;
                }
                UnixListener::bind(p)
                    .map(|l| Listener::Unix(l, p.clone()))
                    .map_err(|e| RelayError::net(format!("listen on unix:{}", p.display()), e))
            }
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_address(&self) -> Result<Address> {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(Address::Tcp)
                .map_err(|e| RelayError::net("read listener address", e)),
            Listener::Unix(_, p) => Ok(Address::Unix(p.clone())),
        }
    }

    /// Starts the accept loop. Connections come out of the returned receiver
    /// after their socket options are set and, with `tls`, after a
    /// successful handshake; every one is tracked in `conns`. The loop ends
    /// when the receiver is dropped or the task is aborted.
    pub fn incoming(
        self,
        tls: Option<TlsAcceptor>,
        conns: OpenConns,
    ) -> (
        mpsc::Receiver<io::Result<Conn>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let task = tokio::spawn(accept_loop(self, tls, tx, conns));
        (rx, task)
    }
}

async fn accept_loop(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<Conn>>,
    conns: OpenConns,
) {
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            a = accept_one(&listener) => a,
        };
        let io = match accepted {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather
                // than spin, and keep listening.
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(failures.min(100)))).await;
                continue;
            }
        };
        let tracked = match &io {
            Io::Tcp(s) => conns.track(s),
            Io::Unix(s) => conns.track(s),
            Io::Tls(_) | Io::ClientTls(_) => None,
        };
        match (io, &tls) {
            (Io::Tcp(tcp), Some(acceptor)) => {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let peer = tcp.peer_addr().ok();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let conn = Conn {
                                io: Io::Tls(Box::new(s)),
                                _tracked: tracked,
                            };
                            let _ = tx.send(Ok(conn)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(peer = ?peer, error = %e, "tls handshake refused");
                        }
                        Err(_) => {
                            tracing::info!(peer = ?peer, "tls handshake timed out");
                        }
                    }
                });
            }
            (io, _) => {
                let conn = Conn {
                    io,
                    _tracked: tracked,
                };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn accept_one(listener: &Listener) -> io::Result<Io> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            tune(&s);
            Ok(Io::Tcp(s))
        }
        Listener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            Ok(Io::Unix(s))
        }
    }
}

/// Dials a relay: TCP with the relay's socket options (and TLS when given),
/// or a unix socket.
pub(crate) async fn dial(
    target: &Dial,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
) -> io::Result<Conn> {
    match target {
        Dial::Unix(p) => Ok(Conn::new(Io::Unix(UnixStream::connect(p).await?))),
        Dial::Tcp(host, port) => {
            let tcp = TcpStream::connect((host.as_str(), *port)).await?;
            tune(&tcp);
            match tls {
                None => Ok(Conn::new(Io::Tcp(tcp))),
                Some((connector, name)) => {
                    let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out")
                        })??;
                    Ok(Conn::new(Io::ClientTls(Box::new(s))))
                }
            }
        }
    }
}

/// Holds the acceptor's config so that the server can build it once.
pub(crate) fn acceptor(cfg: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(Address::parse("127.0.0.1:7400").expect("v4").is_local());
        assert!(Address::parse("127.8.9.1:7400").expect("v4").is_local());
        assert!(Address::parse("[::1]:7400").expect("v6").is_local());
        assert!(!Address::parse("0.0.0.0:7400").expect("any").is_local());
        assert!(!Address::parse("10.1.2.3:7400").expect("private").is_local());
        assert!(Address::parse("unix:/run/drc.sock")
            .expect("unix")
            .is_local());
        assert!(Address::parse("unix:").is_err());
        assert!(Address::parse("relay:7400").is_err());
        assert!(is_loopback_ip("::ffff:127.0.0.1".parse().expect("ip")));
    }

    #[tokio::test]
    async fn tuned_socket_keeps_working() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let c = TcpStream::connect(addr).await.expect("connect");
        tune(&c);
        let cc = congestion(&c);
        // Where the kernel lets us use bbr we get it; elsewhere the default
        // stays and the socket works all the same.
        let allowed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
            .unwrap_or_default();
        if allowed.split_whitespace().any(|c| c == CONGESTION) {
            assert_eq!(cc.as_deref(), Some(CONGESTION));
        } else if let Some(cc) = cc {
            assert!(!cc.is_empty());
        }
        let (_s, _) = l.accept().await.expect("accept");
    }
}
