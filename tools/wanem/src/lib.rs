//! WAN emulator for tests and benchmarks.
//!
//! A [`Link`] joins two network namespaces, `NAME-a` and `NAME-b`, through a
//! user-space forwarder: each namespace gets a tun device (`tun0`), and one
//! thread per direction reads IP packets from one tun and writes them to the
//! other after applying random loss, a rate cap with a one-BDP tail-drop queue
//! and a one-way delay with optional jitter (see [`shaper`]). To TCP this is a
//! real lossy path: packets are dropped and delayed, connections are not.
//!
//! ```no_run
//! use std::time::Duration;
//! use drc_wanem::{Link, LinkConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let link = Link::up(
//!     LinkConfig::new("demo")
//!         .delay_ms(50)
//!         .loss_pct(1.0)
//!         .rate_mbit(100.0)
//!         .congctl("cubic"),
//! )?;
//! link.wait_ready(Duration::from_secs(10))?;
//! let b = link.b_ip();
//! let listener = link.run_in_b(move || std::net::TcpListener::bind((b, 5000)))??;
//! // ... connect from namespace a with link.run_in_a(...), or run a program
//! // there with link.command_a("prog") ...
//! link.cut(Duration::from_secs(3));
//! println!("{}", link.stats());
//! # drop(listener);
//! # Ok(())
//! # }
//! // Dropping the link stops the forwarder and deletes both namespaces.
//! ```

pub mod control;
mod forward;
pub mod netns;
pub mod rng;
pub mod shaper;
pub mod tun;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub use forward::{Dir, DirStats, LinkStats};
pub use netns::NsThread;
pub use shaper::Shaping;

use control::ControlServer;
use forward::Shared;

/// Name of the tun device in each namespace.
pub const IFNAME: &str = "tun0";

/// Directory of the default control sockets.
pub const CONTROL_DIR: &str = "/run/wanem";

/// The control socket a link named `name` uses unless told otherwise.
pub fn default_control_path(name: &str) -> PathBuf {
    PathBuf::from(CONTROL_DIR).join(format!("{name}.sock"))
}

/// The namespace names of link `name`: `(NAME-a, NAME-b)`.
pub fn namespace_names(name: &str) -> (String, String) {
    (format!("{name}-a"), format!("{name}-b"))
}

/// An IPv4 address with a prefix length, as in `10.77.0.1/30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length (0–32).
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix`.
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        Ipv4Cidr { addr, prefix }
    }
}

impl FromStr for Ipv4Cidr {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a
            .parse()
            .with_context(|| format!("bad IPv4 address {a:?}"))?;
        let prefix: u8 = p
            .parse()
            .with_context(|| format!("bad prefix length {p:?}"))?;
        if prefix > 32 {
            bail!("prefix length {prefix} > 32");
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Everything needed to bring a link up. Setters apply to both directions;
/// set [`LinkConfig::a_to_b`] / [`LinkConfig::b_to_a`] directly for
/// asymmetric links.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Link name; the namespaces are `NAME-a` and `NAME-b`.
    pub name: String,
    /// Address of `tun0` in namespace a (default `10.77.0.1/30`).
    pub a_addr: Ipv4Cidr,
    /// Address of `tun0` in namespace b (default `10.77.0.2/30`).
    pub b_addr: Ipv4Cidr,
    /// MTU of both tuns (default 1500).
    pub mtu: u32,
    /// Shaping of packets from a to b.
    pub a_to_b: Shaping,
    /// Shaping of packets from b to a.
    pub b_to_a: Shaping,
    /// TCP congestion control for connections over the link, set per route
    /// (`ip route replace PEER/32 dev tun0 congctl NAME`) in both namespaces.
    /// `None` keeps the system default.
    pub congctl: Option<String>,
    /// Seed of the loss and jitter draws (each direction derives its own).
    pub seed: u64,
    /// Where to serve the control socket, if anywhere (see [`control`]).
    pub control: Option<PathBuf>,
}

impl LinkConfig {
    /// A transparent link (no delay, loss or rate cap) named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        LinkConfig {
            name: name.into(),
            a_addr: Ipv4Cidr::new(Ipv4Addr::new(10, 77, 0, 1), 30),
            b_addr: Ipv4Cidr::new(Ipv4Addr::new(10, 77, 0, 2), 30),
            mtu: 1500,
            a_to_b: Shaping::default(),
            b_to_a: Shaping::default(),
            congctl: None,
            seed: 1,
            control: None,
        }
    }

    fn both(mut self, f: impl Fn(&mut Shaping)) -> Self {
        f(&mut self.a_to_b);
        f(&mut self.b_to_a);
        self
    }

    /// Addresses of the two ends.
    pub fn addrs(mut self, a: Ipv4Cidr, b: Ipv4Cidr) -> Self {
        self.a_addr = a;
        self.b_addr = b;
        self
    }

    /// One-way delay, each direction.
    pub fn delay(self, d: Duration) -> Self {
        self.both(|s| s.delay = d)
    }

    /// One-way delay in milliseconds, each direction.
    pub fn delay_ms(self, ms: u64) -> Self {
        self.delay(Duration::from_millis(ms))
    }

    /// Jitter (± around the delay), each direction.
    pub fn jitter(self, j: Duration) -> Self {
        self.both(|s| s.jitter = j)
    }

    /// Random loss in percent, each direction.
    pub fn loss_pct(self, pct: f64) -> Self {
        self.both(|s| s.loss_pct = pct)
    }

    /// Rate cap in Mbit/s, each direction (0 = unlimited).
    pub fn rate_mbit(self, mbit: f64) -> Self {
        self.both(|s| s.rate_bps = (mbit * 1e6) as u64)
    }

    /// Queue bound of the rate cap, as time at the rate (default one BDP).
    pub fn queue(self, q: Duration) -> Self {
        self.both(|s| s.queue = Some(q))
    }

    /// Per-route TCP congestion control (`cubic`, `bbr`, `reno`, …).
    pub fn congctl(mut self, name: impl Into<String>) -> Self {
        self.congctl = Some(name.into());
        self
    }

    /// Seed of the loss and jitter draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Serve a control socket at `path`.
    pub fn control(mut self, path: impl Into<PathBuf>) -> Self {
        self.control = Some(path.into());
        self
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            bail!(
                "bad link name {:?} (use letters, digits, '-', '_', '.')",
                self.name
            );
        }
        if self.a_addr.addr == self.b_addr.addr {
            bail!("both ends have address {}", self.a_addr.addr);
        }
        if !(68..=65535).contains(&self.mtu) {
            bail!("bad MTU {}", self.mtu);
        }
        for s in [&self.a_to_b, &self.b_to_a] {
            if !(0.0..=100.0).contains(&s.loss_pct) {
                bail!("loss must be within 0..=100 percent, not {}", s.loss_pct);
            }
        }
        if let Some(cc) = &self.congctl {
            if cc.is_empty() || !cc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("bad congestion control name {cc:?}");
            }
        }
        Ok(())
    }
}

/// Why a link cannot be built here, if it cannot: not root, no usable
/// `/dev/net/tun`, or no working `ip netns`.
pub fn check_support() -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)".into());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tun::TUN_CLONE_DEV)
    {
        return Err(format!("cannot open {}: {e}", tun::TUN_CLONE_DEV));
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip` (iproute2): {e}")),
    }
}

/// Checks that packets cross the link from namespace `ns` to `peer`: a TCP
/// connection attempt to port 9 of `peer` must be answered (refused or
/// accepted). Retries until `timeout`; returns the round-trip time of the
/// attempt that got through.
pub fn probe(ns: &str, peer: Ipv4Addr, timeout: Duration) -> Result<Duration> {
    let deadline = Instant::now() + timeout;
    let mut last_err: Option<io::Error> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(anyhow!(
                "no answer from {peer} across the link within {timeout:?} (last error: {})",
                last_err.map_or_else(|| "none".into(), |e| e.to_string())
            ));
        }
        let attempt = left.min(Duration::from_secs(1));
        let addr = SocketAddr::from((peer, 9));
        let (res, rtt) = netns::run_in(ns, move || {
            let started = Instant::now();
            let res = TcpStream::connect_timeout(&addr, attempt);
            (res, started.elapsed())
        })?;
        match res {
            Ok(_) => return Ok(rtt),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(rtt),
            Err(e) => {
                if e.kind() != io::ErrorKind::TimedOut {
                    std::thread::sleep(Duration::from_millis(20));
                }
                last_err = Some(e);
            }
        }
    }
}

/// Deletes the namespaces of link `name` (for leftovers of a killed run).
pub fn down(name: &str) -> Result<()> {
    let (a, b) = namespace_names(name);
    let ra = netns::del(&a);
    let rb = netns::del(&b);
    ra.and(rb)
}

/// Deletes namespaces on drop unless disarmed.
struct NsGuard {
    names: Vec<String>,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        for n in self.names.drain(..).rev() {
            if let Err(e) = netns::del(&n) {
                eprintln!("wanem: deleting namespace {n}: {e:#}");
            }
        }
    }
}

/// A running emulated link. Dropping it (also while unwinding from a panic)
/// stops the forwarder and deletes both namespaces.
pub struct Link {
    name: String,
    ns_a: String,
    ns_b: String,
    a_addr: Ipv4Cidr,
    b_addr: Ipv4Cidr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    control: Option<ControlServer>,
    control_path: Option<PathBuf>,
    namespaces: Option<NsGuard>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("name", &self.name)
            .field("a", &self.a_addr)
            .field("b", &self.b_addr)
            .finish_non_exhaustive()
    }
}

fn configure_end(ns: &str, cfg: &LinkConfig, own: Ipv4Cidr, peer: Ipv4Cidr) -> Result<()> {
    let mtu = cfg.mtu.to_string();
    let own_s = own.to_string();
    netns::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    // No IPv6 link-local address: keeps router/neighbour chatter off the link.
    netns::ip(&[
        "-n",
        ns,
        "link",
        "set",
        IFNAME,
        "mtu",
        &mtu,
        "addrgenmode",
        "none",
    ])?;
    netns::ip(&["-n", ns, "addr", "add", &own_s, "dev", IFNAME])?;
    netns::ip(&["-n", ns, "link", "set", IFNAME, "up"])?;
    let peer_s = format!("{}/32", peer.addr);
    match &cfg.congctl {
        Some(cc) => netns::ip(&[
            "-n", ns, "route", "replace", &peer_s, "dev", IFNAME, "congctl", cc,
        ])
        .with_context(|| format!("setting congestion control {cc:?} (is the module available?)")),
        // A prefix that does not cover the peer still gets a route to it.
        None => netns::ip(&["-n", ns, "route", "replace", &peer_s, "dev", IFNAME]),
    }
}

impl Link {
    /// Creates the namespaces and tun devices, configures them and starts the
    /// forwarder threads. Fails if either namespace already exists.
    pub fn up(cfg: LinkConfig) -> Result<Link> {
        cfg.validate()?;
        let (ns_a, ns_b) = namespace_names(&cfg.name);
        for ns in [&ns_a, &ns_b] {
            if netns::exists(ns) {
                bail!(
                    "namespace {ns} already exists (left over? remove it with `wanem down --name {}`)",
                    cfg.name
                );
            }
        }
        let mut guard = NsGuard { names: Vec::new() };
        for ns in [&ns_a, &ns_b] {
            netns::add(ns)?;
            guard.names.push(ns.clone());
        }

        let tun_a = netns::run_in(&ns_a, || tun::open_tun(IFNAME))?
            .with_context(|| format!("creating {IFNAME} in {ns_a}"))?;
        let tun_b = netns::run_in(&ns_b, || tun::open_tun(IFNAME))?
            .with_context(|| format!("creating {IFNAME} in {ns_b}"))?;
        configure_end(&ns_a, &cfg, cfg.a_addr, cfg.b_addr)?;
        configure_end(&ns_b, &cfg, cfg.b_addr, cfg.a_addr)?;

        let shared = Arc::new(Shared::new(cfg.a_to_b.clone(), cfg.b_to_a.clone()));
        let control = match &cfg.control {
            Some(p) => Some(ControlServer::start(p, shared.clone())?),
            None => None,
        };
        let mut threads = Vec::new();
        let spawn = |index: usize, input: &std::fs::File, output: &std::fs::File, label: &str| {
            let (input, output) = (input.try_clone()?, output.try_clone()?);
            let shared = shared.clone();
            let seed = cfg.seed ^ (index as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
            std::thread::Builder::new()
                .name(format!("wanem-{label}"))
                .spawn(move || forward::run(shared, index, input, output, seed))
        };
        let started = spawn(0, &tun_a, &tun_b, "a2b").and_then(|t| {
            threads.push(t);
            spawn(1, &tun_b, &tun_a, "b2a").map(|t| threads.push(t))
        });
        drop((tun_a, tun_b));
        let link = Link {
            name: cfg.name.clone(),
            ns_a,
            ns_b,
            a_addr: cfg.a_addr,
            b_addr: cfg.b_addr,
            shared,
            threads,
            control,
            control_path: cfg.control.clone(),
            namespaces: Some(guard),
        };
        started.context("starting forwarder threads")?;
        Ok(link)
    }

    /// The link's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of namespace a (`NAME-a`).
    pub fn ns_a(&self) -> &str {
        &self.ns_a
    }

    /// Name of namespace b (`NAME-b`).
    pub fn ns_b(&self) -> &str {
        &self.ns_b
    }

    /// Address of end a.
    pub fn a_ip(&self) -> Ipv4Addr {
        self.a_addr.addr
    }

    /// Address of end b.
    pub fn b_ip(&self) -> Ipv4Addr {
        self.b_addr.addr
    }

    /// The control socket path, if one is served.
    pub fn control_path(&self) -> Option<&Path> {
        self.control_path.as_deref()
    }

    /// Waits until a TCP connection attempt from a to b gets an answer (see
    /// [`probe`]); returns that attempt's round-trip time.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Duration> {
        probe(&self.ns_a, self.b_ip(), timeout)
    }

    /// Cuts the link: everything is dropped, both ways (including packets
    /// already in flight), for `d` from now. Replaces an earlier cut.
    pub fn cut(&self, d: Duration) {
        self.shared.cut(d);
    }

    /// Ends a cut now.
    pub fn restore(&self) {
        self.shared.restore();
    }

    /// How much longer the link stays cut, if it is cut.
    pub fn cut_remaining(&self) -> Option<Duration> {
        self.shared.cut_remaining()
    }

    /// Changes the shaping of `dir` while the link runs.
    pub fn update(&self, dir: Dir, mut f: impl FnMut(&mut Shaping)) {
        self.shared.update(dir, &mut f);
    }

    /// Sets the random loss of `dir`, in percent.
    pub fn set_loss_pct(&self, dir: Dir, pct: f64) {
        self.update(dir, |s| s.loss_pct = pct.clamp(0.0, 100.0));
    }

    /// The current shaping of `dir` (of a→b for [`Dir::Both`]).
    pub fn shaping(&self, dir: Dir) -> Shaping {
        self.shared.shaping(dir)
    }

    /// The counters of both directions.
    pub fn stats(&self) -> LinkStats {
        self.shared.stats()
    }

    /// Runs `f` on a thread inside namespace a and returns its result.
    /// Sockets created there stay in namespace a wherever they are used.
    pub fn run_in_a<F, T>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        netns::run_in(&self.ns_a, f)
    }

    /// Runs `f` on a thread inside namespace b and returns its result.
    pub fn run_in_b<F, T>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        netns::run_in(&self.ns_b, f)
    }

    /// Starts a thread inside namespace a.
    pub fn spawn_in_a<F, T>(&self, f: F) -> io::Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        netns::spawn_in(&self.ns_a, f)
    }

    /// Starts a thread inside namespace b.
    pub fn spawn_in_b<F, T>(&self, f: F) -> io::Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        netns::spawn_in(&self.ns_b, f)
    }

    /// A command that runs `program` in namespace a (`ip netns exec NAME-a`).
    pub fn command_a(&self, program: &str) -> Command {
        netns::command(&self.ns_a, program)
    }

    /// A command that runs `program` in namespace b (`ip netns exec NAME-b`).
    pub fn command_b(&self, program: &str) -> Command {
        netns::command(&self.ns_b, program)
    }

    /// Stops the forwarder and deletes the namespaces, reporting errors
    /// (dropping the link does the same, printing errors instead).
    pub fn down(mut self) -> Result<LinkStats> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<LinkStats> {
        self.shared.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let stats = self.shared.stats();
        self.control = None;
        if let Some(mut guard) = self.namespaces.take() {
            let names = std::mem::take(&mut guard.names);
            let mut first_err = None;
            for n in names.iter().rev() {
                if let Err(e) = netns::del(n) {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(stats)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("wanem: tearing down link {}: {e:#}", self.name);
        }
    }
}
