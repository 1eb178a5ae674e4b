//! What DRC's daemons tell their operators while they run: the metric names
//! every role records (one place, so `/metrics`, the README and `drc status`
//! agree), the lag clocks behind the `*_lag_seconds` gauges, and the
//! readiness registry behind `/readyz`.
//!
//! Metrics go through the `metrics` facade: a library records them whether
//! or not anything listens (without an installed recorder a call costs a
//! branch), and the `drc` binary installs the Prometheus recorder and serves
//! it. Callers record per batch or per request, not per row.
//!
//! Lag is "now minus the source commit time of the newest transaction this
//! component has handled", as long as it has more to handle; a component that
//! has caught up (nothing pending: the binlog read to its end, every received
//! batch applied) reports 0, so a quiet source does not look like a stalled
//! pipeline. The clock is read when `/metrics` is rendered
//! ([`lag::refresh`]), so a stalled component's lag keeps growing between
//! its updates.

pub mod health;
pub mod lag;

use metrics::{counter, gauge};

/// Labels of a capture's metrics.
fn stream_labels(stream: &str) -> [(&'static str, String); 1] {
    [("stream", stream.to_string())]
}

/// A capture published `txns` transactions to its relay; the newest was
/// committed at `last_commit_ts_us` (microseconds since the epoch).
pub fn capture_published(stream: &str, txns: u64, last_commit_ts_us: i64) {
    counter!("drc_capture_transactions_total", &stream_labels(stream)).increment(txns);
    lag::observe(lag::Key::capture(stream), last_commit_ts_us);
}

/// A capture read its source's binlog to the end for now.
pub fn capture_caught_up(stream: &str) {
    lag::caught_up(&lag::Key::capture(stream));
}

/// A capture lost its source or relay and reconnects.
pub fn capture_reconnect(stream: &str) {
    counter!("drc_capture_reconnects_total", &stream_labels(stream)).increment(1);
}

/// A capture stopped with an error (transient or not).
pub fn capture_error(stream: &str) {
    counter!("drc_capture_errors_total", &stream_labels(stream)).increment(1);
}

/// A relay's log of `stream` grew: its last offset and its size on disk.
pub fn stream_appended(stream: &str, role: &str, last_offset: u64, log_bytes: u64) {
    let labels = [("stream", stream.to_string()), ("role", role.to_string())];
    gauge!("drc_stream_last_offset", &labels).set(last_offset as f64);
    gauge!("drc_stream_log_bytes", &labels).set(log_bytes as f64);
}

/// Labels of one upstream replication.
fn upstream_labels(stream: &str, upstream: &str) -> [(&'static str, String); 2] {
    [
        ("stream", stream.to_string()),
        ("upstream", upstream.to_string()),
    ]
}

/// A relay stored replicated records of `stream` from `upstream` up to
/// `last_offset`; the newest was committed at `last_commit_ts_us`.
pub fn replication_progress(
    stream: &str,
    upstream: &str,
    last_offset: u64,
    last_commit_ts_us: i64,
) {
    let labels = upstream_labels(stream, upstream);
    gauge!("drc_replication_last_offset", &labels).set(last_offset as f64);
    counter!("drc_replication_batches_total", &labels).increment(1);
    lag::observe(lag::Key::replication(stream, upstream), last_commit_ts_us);
}

/// A relay holds everything its upstream has of `stream` for now.
pub fn replication_caught_up(stream: &str, upstream: &str) {
    lag::caught_up(&lag::Key::replication(stream, upstream));
}

/// A replication from `upstream` was interrupted and reconnects.
pub fn replication_reconnect(stream: &str, upstream: &str) {
    counter!(
        "drc_replication_reconnects_total",
        &upstream_labels(stream, upstream)
    )
    .increment(1);
}

/// A sink recorded a conflict of `kind` on `stream` (and handled it by its
/// policy). Counted when the record is written: a target transaction rolled
/// back and retried after that counts it again.
pub fn apply_conflict(stream: &str, sink: &str, kind: &str) {
    counter!(
        "drc_apply_conflicts_total",
        &[
            ("stream", stream.to_string()),
            ("sink", sink.to_string()),
            ("kind", kind.to_string()),
        ]
    )
    .increment(1);
}

/// Identifies one apply pipeline in the metrics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pipeline {
    pub stream: String,
    pub sink: String,
    pub subscriber: String,
}

impl Pipeline {
    pub fn new(stream: &str, sink: &str, subscriber: &str) -> Self {
        Self {
            stream: stream.to_string(),
            sink: sink.to_string(),
            subscriber: subscriber.to_string(),
        }
    }

    fn labels(&self) -> [(&'static str, String); 3] {
        [
            ("stream", self.stream.clone()),
            ("sink", self.sink.clone()),
            ("subscriber", self.subscriber.clone()),
        ]
    }

    fn lag_key(&self) -> lag::Key {
        lag::Key::apply(&self.stream, &self.sink, &self.subscriber)
    }

    /// A batch was applied: its transactions and rows, the checkpoint after
    /// it, and the commit time of its newest transaction (0 when it held
    /// only filtered-out offsets).
    pub fn applied(&self, txns: u64, rows: u64, last_offset: u64, last_commit_ts_us: i64) {
        let labels = self.labels();
        counter!("drc_apply_transactions_total", &labels).increment(txns);
        counter!("drc_apply_rows_total", &labels).increment(rows);
        counter!("drc_apply_batches_total", &labels).increment(1);
        gauge!("drc_apply_last_offset", &labels).set(last_offset as f64);
        if last_commit_ts_us > 0 {
            lag::observe(self.lag_key(), last_commit_ts_us);
        }
    }

    /// Everything received is applied.
    pub fn caught_up(&self) {
        lag::caught_up(&self.lag_key());
    }

    /// A session of the pipeline ended with an error; `transient` ones retry.
    pub fn error(&self, transient: bool) {
        let [a, b, c] = self.labels();
        let class = if transient { "transient" } else { "definite" };
        counter!(
            "drc_apply_errors_total",
            &[a, b, c, ("class", class.to_string())]
        )
        .increment(1);
        if transient {
            counter!("drc_apply_reconnects_total", &self.labels()).increment(1);
        }
    }
}
