//! The per-direction link model, independent of any I/O.
//!
//! A packet offered to a [`Shaper`] goes through, in order:
//!
//! 1. random loss (probability `loss_pct / 100`, from a seeded generator);
//! 2. the rate cap: a serializer that sends one packet at a time at `rate`
//!    (a token bucket one packet deep), fed by a tail-drop FIFO bounded in
//!    bytes (one bandwidth-delay product, `rate × 2 × delay`, unless set);
//! 3. propagation delay: it leaves the link at
//!    `serialization end + delay ± jitter`.
//!
//! Without jitter the release times are non-decreasing, so packets keep their
//! order; with jitter they may be reordered, as on a real path with jitter.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Smallest queue the rate cap gets, whatever the BDP: 16 full-size packets.
pub const MIN_QUEUE_BYTES: u64 = 16 * 1500;

/// How one direction of the link treats packets.
#[derive(Debug, Clone, PartialEq)]
pub struct Shaping {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Each packet's delay is `delay` plus a uniform draw in `[-jitter, +jitter]`
    /// (never less than zero).
    pub jitter: Duration,
    /// Random loss, in percent (0–100).
    pub loss_pct: f64,
    /// Rate cap in bits per second; 0 means unlimited (and no queue).
    pub rate_bps: u64,
    /// Bound of the rate cap's queue expressed as time at `rate_bps`;
    /// `None` means one bandwidth-delay product (`rate × 2 × delay`).
    pub queue: Option<Duration>,
}

impl Default for Shaping {
    fn default() -> Self {
        Shaping {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_pct: 0.0,
            rate_bps: 0,
            queue: None,
        }
    }
}

impl Shaping {
    /// The rate cap's queue limit in bytes (0 when there is no rate cap).
    pub fn queue_bytes(&self) -> u64 {
        if self.rate_bps == 0 {
            return 0;
        }
        let span = self.queue.unwrap_or(self.delay * 2);
        let bytes = (self.rate_bps as u128 * span.as_nanos() / 8 / 1_000_000_000) as u64;
        bytes.max(MIN_QUEUE_BYTES)
    }
}

/// What became of an offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; it will come out of [`Shaper::pop_due`] later.
    Queued,
    /// Dropped by random loss.
    DroppedLoss,
    /// Dropped because the rate cap's queue was full.
    DroppedQueue,
}

#[derive(Debug)]
struct Pending {
    release: Instant,
    seq: u64,
    packet: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.release == other.release && self.seq == other.seq
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    // Reversed, so that `BinaryHeap` (a max-heap) yields the earliest release
    // first, and among equal releases the earliest arrival.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .release
            .cmp(&self.release)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// One direction's link state: serializer clock and packets in flight.
#[derive(Debug)]
pub struct Shaper {
    rng: Rng,
    /// When the serializer finishes the last accepted packet.
    busy_until: Option<Instant>,
    in_flight: BinaryHeap<Pending>,
    in_flight_bytes: u64,
    seq: u64,
}

impl Shaper {
    /// An idle link whose loss and jitter draws come from `seed`.
    pub fn new(seed: u64) -> Self {
        Shaper {
            rng: Rng::new(seed),
            busy_until: None,
            in_flight: BinaryHeap::new(),
            in_flight_bytes: 0,
            seq: 0,
        }
    }

    /// Bytes waiting in the rate cap's queue at `now` (including the packet
    /// being serialized).
    pub fn backlog_bytes(&self, shaping: &Shaping, now: Instant) -> u64 {
        match self.busy_until {
            Some(t) if t > now && shaping.rate_bps > 0 => {
                let ns = (t - now).as_nanos();
                (ns * shaping.rate_bps as u128 / 8 / 1_000_000_000) as u64
            }
            _ => 0,
        }
    }

    /// Offers a packet that arrived at `now`.
    pub fn offer(&mut self, shaping: &Shaping, now: Instant, packet: Vec<u8>) -> Verdict {
        if shaping.loss_pct > 0.0 && self.rng.next_f64() * 100.0 < shaping.loss_pct {
            return Verdict::DroppedLoss;
        }
        let len = packet.len() as u64;
        let sent = if shaping.rate_bps > 0 {
            if self.backlog_bytes(shaping, now) + len > shaping.queue_bytes() {
                return Verdict::DroppedQueue;
            }
            let start = match self.busy_until {
                Some(t) if t > now => t,
                _ => now,
            };
            let tx = Duration::from_nanos(
                (len as u128 * 8 * 1_000_000_000 / shaping.rate_bps as u128) as u64,
            );
            let end = start + tx;
            self.busy_until = Some(end);
            end
        } else {
            now
        };
        let mut release = sent + shaping.delay;
        if !shaping.jitter.is_zero() {
            let j = shaping.jitter.as_secs_f64() * (2.0 * self.rng.next_f64() - 1.0);
            if j >= 0.0 {
                release += Duration::from_secs_f64(j);
            } else {
                let back = Duration::from_secs_f64(-j).min(shaping.delay);
                release -= back;
            }
        }
        self.seq += 1;
        self.in_flight_bytes += len;
        self.in_flight.push(Pending {
            release,
            seq: self.seq,
            packet,
        });
        Verdict::Queued
    }

    /// When the next packet is due to leave the link, if any is in flight.
    pub fn next_release(&self) -> Option<Instant> {
        self.in_flight.peek().map(|p| p.release)
    }

    /// Takes the next packet whose release time is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.in_flight.peek()?.release > now {
            return None;
        }
        let p = self.in_flight.pop()?;
        self.in_flight_bytes -= p.packet.len() as u64;
        Some(p.packet)
    }

    /// Packets accepted and not yet released.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes accepted and not yet released.
    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_only_keeps_order() {
        let sh = Shaping {
            delay: ms(50),
            ..Shaping::default()
        };
        let mut s = Shaper::new(1);
        let t0 = Instant::now();
        for i in 0..10u8 {
            assert_eq!(
                s.offer(&sh, t0 + ms(i as u64), vec![i; 100]),
                Verdict::Queued
            );
        }
        assert_eq!(s.next_release(), Some(t0 + ms(50)));
        assert!(s.pop_due(t0 + ms(49)).is_none());
        let got: Vec<u8> = std::iter::from_fn(|| s.pop_due(t0 + ms(100)))
            .map(|p| p[0])
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.in_flight_bytes(), 0);
    }

    #[test]
    fn rate_cap_serializes() {
        // 8 Mbit/s: a 1000-byte packet takes 1 ms.
        let sh = Shaping {
            rate_bps: 8_000_000,
            delay: ms(10),
            ..Shaping::default()
        };
        let mut s = Shaper::new(1);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(s.offer(&sh, t0, vec![0; 1000]), Verdict::Queued);
        }
        // Releases at 11, 12, 13, 14, 15 ms.
        for k in 1..=5u64 {
            assert!(s
                .pop_due(t0 + ms(10 + k) - Duration::from_micros(1))
                .is_none());
            assert!(s.pop_due(t0 + ms(10 + k)).is_some());
        }
    }

    #[test]
    fn queue_tail_drops_at_bdp() {
        // 8 Mbit/s, 10 ms delay: BDP = 8e6 * 0.02 / 8 = 20000 bytes, below the
        // 24000-byte floor, so 24 packets of 1000 bytes fit at once.
        let sh = Shaping {
            rate_bps: 8_000_000,
            delay: ms(10),
            ..Shaping::default()
        };
        assert_eq!(sh.queue_bytes(), MIN_QUEUE_BYTES);
        let mut s = Shaper::new(1);
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> = (0..30).map(|_| s.offer(&sh, t0, vec![0; 1000])).collect();
        let queued = verdicts.iter().filter(|v| **v == Verdict::Queued).count();
        assert_eq!(queued, 24);
        assert_eq!(verdicts[29], Verdict::DroppedQueue);
        // After 5 ms, five packets have been serialized: room for five more.
        let later = t0 + ms(5);
        let more = (0..10)
            .filter(|_| s.offer(&sh, later, vec![0; 1000]) == Verdict::Queued)
            .count();
        assert_eq!(more, 5);
        // An explicit queue bound wins over the BDP.
        let big = Shaping {
            queue: Some(ms(100)),
            ..sh
        };
        assert_eq!(big.queue_bytes(), 100_000);
    }

    #[test]
    fn loss_rate_is_respected() {
        let sh = Shaping {
            loss_pct: 2.0,
            ..Shaping::default()
        };
        let mut s = Shaper::new(42);
        let t0 = Instant::now();
        let n = 100_000;
        let lost = (0..n)
            .filter(|_| s.offer(&sh, t0, vec![0; 1]) == Verdict::DroppedLoss)
            .count();
        assert!((1800..2200).contains(&lost), "{lost}");
    }

    #[test]
    fn jitter_bounds() {
        let sh = Shaping {
            delay: ms(20),
            jitter: ms(5),
            ..Shaping::default()
        };
        let mut s = Shaper::new(3);
        let t0 = Instant::now();
        for _ in 0..1000 {
            s.offer(&sh, t0, vec![0; 10]);
        }
        assert!(s.pop_due(t0 + ms(15) - Duration::from_micros(1)).is_none());
        let mut n = 0;
        while s.pop_due(t0 + ms(25)).is_some() {
            n += 1;
        }
        assert_eq!(n, 1000);
    }
}
