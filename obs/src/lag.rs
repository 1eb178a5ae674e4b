//! Lag clocks: the source commit time of the newest transaction each
//! component handled, and whether it has caught up since. [`refresh`] turns
//! them into `*_lag_seconds` gauges against the wall clock; the daemon calls
//! it right before rendering `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::gauge;

/// Which component a clock belongs to, with its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The gauge's name.
    metric: &'static str,
    labels: Vec<(&'static str, String)>,
}

impl Key {
    pub fn capture(stream: &str) -> Self {
        Self {
            metric: "drc_capture_lag_seconds",
            labels: vec![("stream", stream.to_string())],
        }
    }

    pub fn replication(stream: &str, upstream: &str) -> Self {
        Self {
            metric: "drc_replication_lag_seconds",
            labels: vec![
                ("stream", stream.to_string()),
                ("upstream", upstream.to_string()),
            ],
        }
    }

    pub fn apply(stream: &str, sink: &str, subscriber: &str) -> Self {
        Self {
            metric: "drc_apply_lag_seconds",
            labels: vec![
                ("stream", stream.to_string()),
                ("sink", sink.to_string()),
                ("subscriber", subscriber.to_string()),
            ],
        }
    }

    /// The gauge's name.
    pub fn metric(&self) -> &'static str {
        self.metric
    }

    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    last_commit_ts_us: i64,
    caught_up: bool,
}

static CLOCKS: Mutex<BTreeMap<Key, Clock>> = Mutex::new(BTreeMap::new());

fn clocks() -> MutexGuard<'static, BTreeMap<Key, Clock>> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    CLOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The component handled a transaction committed at `commit_ts_us` and may
/// have more to do.
pub fn observe(key: Key, commit_ts_us: i64) {
    clocks().insert(
        key,
        Clock {
            last_commit_ts_us: commit_ts_us,
            caught_up: false,
        },
    );
}

/// The component has nothing pending.
pub fn caught_up(key: &Key) {
    if let Some(c) = clocks().get_mut(key) {
        c.caught_up = true;
    }
}

/// Now, in microseconds since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The lag of each component now, in seconds (0 for one that caught up;
/// never negative, whatever the clocks of source and here say).
pub fn current() -> Vec<(Key, f64)> {
    let now = now_us();
    clocks()
        .iter()
        .map(|(k, c)| {
            let lag = if c.caught_up {
                0.0
            } else {
                (now - c.last_commit_ts_us).max(0) as f64 / 1e6
            };
            (k.clone(), lag)
        })
        .collect()
}

/// Sets every `*_lag_seconds` gauge from its clock.
pub fn refresh() {
    for (k, lag) in current() {
        gauge!(k.metric, &k.labels).set(lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_grows_until_caught_up() {
        let key = Key::capture("t.lag");
        observe(key.clone(), now_us() - 2_000_000);
        let lag = current()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l)
            .expect("clock");
        assert!((2.0..3.0).contains(&lag), "lag {lag}");
        caught_up(&key);
        let lag = current()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l)
            .expect("clock");
        assert_eq!(lag, 0.0);
    }
}
