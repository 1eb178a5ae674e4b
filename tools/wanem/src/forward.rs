//! The forwarder: one thread per direction moving packets from one tun to the
//! other through a [`Shaper`], and the state those threads share with the
//! controlling [`Link`](crate::Link) handle.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, ClockId};

use crate::shaper::{Shaper, Shaping, Verdict};

/// Longest a forwarder sleeps before rechecking the stop flag and settings.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Most packets read in one go before releasing due packets again.
const READ_BATCH: usize = 64;
/// Largest packet a tun can hand us.
const BUF_LEN: usize = 65536;

/// A direction of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From namespace a to namespace b.
    AtoB,
    /// From namespace b to namespace a.
    BtoA,
    /// Both directions (for settings).
    Both,
}

impl Dir {
    fn indices(self) -> &'static [usize] {
        match self {
            Dir::AtoB => &[0],
            Dir::BtoA => &[1],
            Dir::Both => &[0, 1],
        }
    }
}

impl std::str::FromStr for Dir {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "a2b" | "a->b" | "ab" => Ok(Dir::AtoB),
            "b2a" | "b->a" | "ba" => Ok(Dir::BtoA),
            "both" => Ok(Dir::Both),
            _ => Err(format!("unknown direction {s:?} (a2b, b2a or both)")),
        }
    }
}

/// Counters of one direction, since the link came up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Packets read from the sending side's tun.
    pub rx_packets: u64,
    /// IP bytes read from the sending side's tun.
    pub rx_bytes: u64,
    /// Packets delivered to the receiving side's tun.
    pub packets: u64,
    /// IP bytes delivered (sum of the delivered packets' lengths): the bytes
    /// that crossed the link.
    pub bytes: u64,
    /// Packets dropped by random loss.
    pub dropped_loss: u64,
    /// Packets dropped because the rate cap's queue was full.
    pub dropped_queue: u64,
    /// Packets dropped because the link was cut (on entry, or in flight).
    pub dropped_cut: u64,
    /// Packets the receiving tun refused.
    pub dropped_error: u64,
    /// Packets on the link now (queued or propagating).
    pub in_flight: u64,
    /// CPU time used by this direction's forwarder thread, in nanoseconds
    /// (includes kernel work done on its behalf, such as delivering the
    /// packets to the receiving stack).
    pub cpu_ns: u64,
}

impl fmt::Display for DirStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx_packets={} rx_bytes={} packets={} bytes={} dropped_loss={} dropped_queue={} \
             dropped_cut={} dropped_error={} in_flight={} cpu_ms={}",
            self.rx_packets,
            self.rx_bytes,
            self.packets,
            self.bytes,
            self.dropped_loss,
            self.dropped_queue,
            self.dropped_cut,
            self.dropped_error,
            self.in_flight,
            self.cpu_ns / 1_000_000
        )
    }
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Traffic from a to b.
    pub a_to_b: DirStats,
    /// Traffic from b to a.
    pub b_to_a: DirStats,
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "a->b {}", self.a_to_b)?;
        write!(f, "b->a {}", self.b_to_a)
    }
}

#[derive(Debug, Default)]
struct Counters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_cut: AtomicU64,
    dropped_error: AtomicU64,
    in_flight: AtomicU64,
    cpu_ns: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            dropped_loss: self.dropped_loss.load(Relaxed),
            dropped_queue: self.dropped_queue.load(Relaxed),
            dropped_cut: self.dropped_cut.load(Relaxed),
            dropped_error: self.dropped_error.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            cpu_ns: self.cpu_ns.load(Relaxed),
        }
    }
}

#[derive(Debug)]
struct DirState {
    counters: Counters,
    shaping: Mutex<Shaping>,
    /// Bumped on every settings change, so forwarders reload cheaply.
    version: AtomicU64,
}

/// State shared by the forwarder threads, the control socket and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    base: Instant,
    /// Nanoseconds after `base` until which the link is cut; 0 = not cut.
    cut_until: AtomicU64,
    stop: AtomicBool,
    dirs: [DirState; 2],
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(a_to_b: Shaping, b_to_a: Shaping) -> Self {
        let dir = |s| DirState {
            counters: Counters::default(),
            shaping: Mutex::new(s),
            version: AtomicU64::new(0),
        };
        Shared {
            base: Instant::now(),
            cut_until: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            dirs: [dir(a_to_b), dir(b_to_a)],
        }
    }

    fn offset(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Drops everything, both ways, for `d` from now (replacing any earlier cut).
    pub(crate) fn cut(&self, d: Duration) {
        let until = self.offset(Instant::now()) + d.as_nanos() as u64;
        self.cut_until.store(until.max(1), Relaxed);
    }

    /// Ends a cut early.
    pub(crate) fn restore(&self) {
        self.cut_until.store(0, Relaxed);
    }

    /// How much longer the link stays cut.
    pub(crate) fn cut_remaining(&self) -> Option<Duration> {
        let until = self.cut_until.load(Relaxed);
        let now = self.offset(Instant::now());
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    fn is_cut(&self, now: Instant) -> bool {
        self.offset(now) < self.cut_until.load(Relaxed)
    }

    pub(crate) fn update(&self, dir: Dir, f: &mut dyn FnMut(&mut Shaping)) {
        for &i in dir.indices() {
            let d = &self.dirs[i];
            f(&mut lock(&d.shaping));
            d.version.fetch_add(1, Release);
        }
    }

    pub(crate) fn shaping(&self, dir: Dir) -> Shaping {
        let i = dir.indices()[0];
        lock(&self.dirs[i].shaping).clone()
    }

    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            a_to_b: self.dirs[0].counters.snapshot(),
            b_to_a: self.dirs[1].counters.snapshot(),
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Relaxed);
    }
}

fn thread_cpu_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| Duration::from(t).as_nanos() as u64)
        .unwrap_or(0)
}

/// Forwards packets read from `input` to `output` through direction `index`
/// (0 = a→b, 1 = b→a) of `shared`, until `shared` is stopped.
pub(crate) fn run(shared: Arc<Shared>, index: usize, input: File, output: File, seed: u64) {
    let dir = &shared.dirs[index];
    let c = &dir.counters;
    let mut version = dir.version.load(Acquire);
    let mut shaping = lock(&dir.shaping).clone();
    let mut shaper = Shaper::new(seed);
    let mut buf = vec![0u8; BUF_LEN];
    let mut last_cpu = Instant::now();

    while !shared.stop.load(Relaxed) {
        // Release every packet that is due.
        let now = Instant::now();
        let cut = shared.is_cut(now);
        while let Some(pkt) = shaper.pop_due(now) {
            if cut {
                c.dropped_cut.fetch_add(1, Relaxed);
                continue;
            }
            // A tun write takes one whole packet or fails.
            match (&output).write(&pkt) {
                Ok(n) if n == pkt.len() => {
                    c.packets.fetch_add(1, Relaxed);
                    c.bytes.fetch_add(pkt.len() as u64, Relaxed);
                }
                Ok(_) | Err(_) => {
                    c.dropped_error.fetch_add(1, Relaxed);
                }
            }
        }
        c.in_flight.store(shaper.in_flight() as u64, Relaxed);
        if now.duration_since(last_cpu) >= Duration::from_millis(100) {
            last_cpu = now;
            c.cpu_ns.store(thread_cpu_ns(), Relaxed);
        }

        // Sleep until the next release, a packet to read, or MAX_WAIT.
        let wait = shaper
            .next_release()
            .map_or(MAX_WAIT, |t| t.saturating_duration_since(now))
            .min(MAX_WAIT);
        let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }

        // Settings changes apply to every packet read after they were made.
        let v = dir.version.load(Acquire);
        if v != version {
            version = v;
            shaping = lock(&dir.shaping).clone();
        }
        for _ in 0..READ_BATCH {
            let n = match (&input).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // E.g. the interface is going away; avoid spinning.
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
            };
            let now = Instant::now();
            c.rx_packets.fetch_add(1, Relaxed);
            c.rx_bytes.fetch_add(n as u64, Relaxed);
            if shared.is_cut(now) {
                c.dropped_cut.fetch_add(1, Relaxed);
                continue;
            }
            match shaper.offer(&shaping, now, buf[..n].to_vec()) {
                Verdict::Queued => {}
                Verdict::DroppedLoss => {
                    c.dropped_loss.fetch_add(1, Relaxed);
                }
                Verdict::DroppedQueue => {
                    c.dropped_queue.fetch_add(1, Relaxed);
                }
            }
        }
    }
    c.in_flight.store(0, Relaxed);
    c.cpu_ns.store(thread_cpu_ns(), Relaxed);
}
