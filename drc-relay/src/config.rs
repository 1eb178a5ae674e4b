//! The relay's configuration: where it listens and how it secures the port,
//! where it keeps its logs, the limits it enforces, and the upstream relays
//! (other regions) it replicates streams from.
//!
//! Every field has a default constant; [`RelayConfig::validate`] refuses what
//! cannot work with a message that names the key and the fix. TLS is the
//! default: plaintext needs both `insecure_plaintext = true` and a loopback
//! or unix-socket address, on the server and on the client side alike.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{RelayError, Result};
use crate::net::{Address, Dial};
use crate::tls::TlsConfig;

/// Largest gRPC message the relay decodes (a publish request, a batch).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Record bytes per subscription batch (before compression): large enough
/// that one zstd frame per batch compresses well, small enough that a
/// subscriber costs the relay a few MiB at most.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 << 20;
/// HTTP/2 receive window of each stream of a replication link, in bytes
/// (the connection's is twice this). It must exceed what the link holds in
/// flight, bandwidth x round trip (100 Mbit/s x 100 ms is 1.25 MB of
/// compressed batches), plus what arrives while an append waits on its
/// fsync; 16 MiB covers about 1 Gbit/s at 100 ms. A fixed window, because
/// the adaptive one (grown from a bandwidth-delay estimate) stayed well
/// below the link on a lossy 100 ms path. It bounds what one replicated
/// stream can have buffered at the receiver.
pub const DEFAULT_UPSTREAM_WINDOW_BYTES: u32 = 16 << 20;
/// Smallest HTTP/2 window (the protocol's initial window).
pub const MIN_WINDOW_BYTES: u32 = 65_535;
/// Largest stream window accepted: the connection's (twice this) must stay
/// under HTTP/2's 2^31 - 1.
pub const MAX_WINDOW_BYTES: u32 = 1 << 30;
/// Offsets per subscription batch.
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 10_000;
/// HTTP/2 keepalive: ping interval.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// HTTP/2 keepalive: a ping unanswered this long closes the connection.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for connections to finish before closing them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Client connect timeout (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Replication retry backoff: first wait and cap.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(3);

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}
fn default_max_batch_bytes() -> usize {
    DEFAULT_MAX_BATCH_BYTES
}
fn default_max_batch_records() -> usize {
    DEFAULT_MAX_BATCH_RECORDS
}
fn default_upstream_window_bytes() -> u32 {
    DEFAULT_UPSTREAM_WINDOW_BYTES
}
fn default_segment_bytes() -> u64 {
    drc_log::DEFAULT_SEGMENT_BYTES
}

/// A relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Listen address: `IP:PORT` (`0.0.0.0:7400`, `[::]:7400`) or `unix:/path`.
    pub listen: String,
    /// Directory of the relay's logs (one sub-directory per stream under
    /// `streams/`).
    pub data_dir: PathBuf,
    /// TLS of the listener: clients must present a certificate signed by `ca`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve without TLS. Allowed only on a loopback address or a unix socket.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Largest gRPC message decoded, in bytes (publish requests, batches).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Record bytes per subscription batch (a larger record travels alone).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Offsets per subscription batch.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// Log segment size in bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// What each stream's log keeps.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Streams created at start (others are created by their first publish).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Relays of other regions to replicate streams from.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
}

impl RelayConfig {
    /// A config with every default, listening on `listen`, storing under `data_dir`.
    pub fn new(listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: listen.into(),
            data_dir: data_dir.into(),
            tls: None,
            insecure_plaintext: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            segment_bytes: drc_log::DEFAULT_SEGMENT_BYTES,
            retention: RetentionConfig::default(),
            streams: Vec::new(),
            upstreams: Vec::new(),
        }
    }

    /// Checks the config; returns the parsed listen address.
    pub fn validate(&self) -> Result<Address> {
        let addr = Address::parse(&self.listen)?;
        check_security(
            "listen",
            &self.listen,
            addr.is_local(),
            self.tls.is_some(),
            self.insecure_plaintext,
        )?;
        if matches!(addr, Address::Unix(_)) && self.tls.is_some() {
            return Err(RelayError::Config(
                "tls is set for a unix socket listener; remove [tls] (a unix socket never leaves the machine) or listen on TCP".into(),
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(RelayError::Config(format!(
                "max_message_bytes = {} is too small; use at least 1024 (default {DEFAULT_MAX_MESSAGE_BYTES})",
                self.max_message_bytes
            )));
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > self.max_message_bytes {
            return Err(RelayError::Config(format!(
                "max_batch_bytes = {} must be between 1 and max_message_bytes ({})",
                self.max_batch_bytes, self.max_message_bytes
            )));
        }
        if self.max_batch_records == 0 {
            return Err(RelayError::Config(
                "max_batch_records must be at least 1".into(),
            ));
        }
        self.log_config()
            .validate()
            .map_err(|e| RelayError::Config(e.to_string()))?;
        for s in &self.streams {
            crate::registry::check_stream_name(s)
                .map_err(|e| RelayError::Config(format!("streams: {e}")))?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            u.client_config().validate().map_err(|e| match e {
                RelayError::Config(m) => RelayError::Config(format!("upstreams[{i}]: {m}")),
                other => other,
            })?;
            if u.streams.is_empty() {
                return Err(RelayError::Config(format!(
                    "upstreams[{i}] ({}) names no streams; list the streams to replicate",
                    u.url
                )));
            }
            for s in &u.streams {
                crate::registry::check_stream_name(s)
                    .map_err(|e| RelayError::Config(format!("upstreams[{i}].streams: {e}")))?;
                if !seen.insert(s.clone()) {
                    return Err(RelayError::Config(format!(
                        "stream {s:?} is replicated from two upstreams; a stream has one home region"
                    )));
                }
            }
        }
        Ok(addr)
    }

    pub(crate) fn log_config(&self) -> drc_log::LogConfig {
        drc_log::LogConfig {
            segment_bytes: self.segment_bytes,
            max_record_bytes: self.max_message_bytes as u64,
            retention: drc_log::Retention {
                max_bytes: self.retention.max_bytes,
                max_age: self.retention.max_age_secs.map(Duration::from_secs),
                hard_cap_bytes: self.retention.hard_cap_bytes,
            },
            ..drc_log::LogConfig::default()
        }
    }
}

/// What each stream's log keeps; with nothing set, everything. Segments a
/// registered subscriber has not confirmed are kept, up to `hard_cap_bytes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete old segments while a log is larger than this.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this many seconds.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// Delete old segments past this size even if subscribers have not
    /// confirmed them (a full disk would stop every stream).
    #[serde(default)]
    pub hard_cap_bytes: Option<u64>,
}

/// The rule of invariant 7, on either side of a connection.
pub(crate) fn check_security(
    key: &str,
    addr: &str,
    local: bool,
    tls: bool,
    insecure: bool,
) -> Result<()> {
    match (tls, insecure) {
        (true, true) => Err(RelayError::Config(format!(
            "both tls and insecure_plaintext = true are set for {key} = {addr:?}; remove one"
        ))),
        (true, false) => Ok(()),
        (false, false) => Err(RelayError::Config(format!(
            "{key} = {addr:?} has no tls; set tls (ca, cert, key — `drc tls init DIR` makes them), \
             or set insecure_plaintext = true on a loopback address or unix socket"
        ))),
        (false, true) if local => Ok(()),
        (false, true) => Err(RelayError::Config(format!(
            "insecure_plaintext = true is allowed only on loopback (127.0.0.0/8, ::1) or a unix socket, \
             not {key} = {addr:?}; set tls (ca, cert, key) instead"
        ))),
    }
}

/// A relay of another region to replicate from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `https://host:port` (TLS), `http://127.0.0.1:port` or `unix:/path`
    /// (plaintext, with `insecure_plaintext`).
    pub url: String,
    /// TLS files of this relay as a client of the upstream.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connect without TLS (loopback or unix socket only).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Streams to replicate; each is stored here at the upstream's offsets.
    pub streams: Vec<String>,
    /// Name this relay registers under at the upstream (e.g. `relay-b`), so
    /// the upstream's retention keeps what this region has not copied yet.
    #[serde(default)]
    pub subscriber: Option<String>,
    /// HTTP/2 receive window per replicated stream, in bytes (the
    /// connection's is twice this); raise it past 16 MiB only for links
    /// faster than ~1 Gbit/s at 100 ms round trip.
    #[serde(default = "default_upstream_window_bytes")]
    pub window_bytes: u32,
    /// Origins whose transactions the upstream sends as stubs (position and
    /// origin, no changes): this region's own, so a change made here never
    /// travels back across the link. `drc run` and `drc relay` add the
    /// streams of the file's `[[capture]]` entries and its `region`.
    #[serde(default)]
    pub stub_origins: Vec<String>,
}

impl UpstreamConfig {
    /// The client settings of the link.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            url: self.url.clone(),
            tls: self.tls.clone(),
            insecure_plaintext: self.insecure_plaintext,
            window_bytes: Some(self.window_bytes),
            ..ClientConfig::new(self.url.clone())
        }
    }
}

/// How a client reaches a relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://host:port` (TLS), `http://127.0.0.1:port` or `unix:/path`.
    pub url: String,
    /// CA to verify the relay with, and our client certificate and key.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connect without TLS (loopback or unix socket only).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Largest message decoded (batches, acks).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// TCP + TLS connect timeout.
    #[serde(default = "default_connect_timeout", with = "secs")]
    pub connect_timeout: Duration,
    /// Fixed HTTP/2 receive window per call, in bytes (the connection's is
    /// twice this). Unset: adaptive, grown with the measured path, which
    /// keeps what a slow subscriber is sent small. Replication links set it
    /// (see [`DEFAULT_UPSTREAM_WINDOW_BYTES`]).
    #[serde(default)]
    pub window_bytes: Option<u32>,
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d)
            .and_then(|s| Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom))
    }
}

/// Where a client connects, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub dial: Dial,
    /// Host name (or IP) for certificate verification.
    pub host: String,
    /// The URL says `https`.
    pub tls: bool,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: None,
            insecure_plaintext: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            window_bytes: None,
        }
    }

    /// Parses the URL and checks TLS against it.
    pub fn validate(&self) -> Result<Target> {
        let t = parse_url(&self.url)?;
        if t.tls && self.tls.is_none() {
            return Err(RelayError::Config(format!(
                "url = {:?} is https but tls (ca, cert, key) is not set",
                self.url
            )));
        }
        if !t.tls && self.tls.is_some() {
            return Err(RelayError::Config(format!(
                "tls is set but url = {:?} is not https; write https://HOST:PORT",
                self.url
            )));
        }
        if let Some(w) = self.window_bytes {
            if !(MIN_WINDOW_BYTES..=MAX_WINDOW_BYTES).contains(&w) {
                return Err(RelayError::Config(format!(
                    "window_bytes = {w} is out of range; use {MIN_WINDOW_BYTES} to {MAX_WINDOW_BYTES} (default {DEFAULT_UPSTREAM_WINDOW_BYTES} for a replication link)"
                )));
            }
        }
        check_security(
            "url",
            &self.url,
            t.dial.is_local(),
            self.tls.is_some(),
            self.insecure_plaintext,
        )?;
        Ok(t)
    }
}

/// `https://host:port`, `http://host:port` or `unix:/path`. Host names are
/// resolved at each connect, so a relay that moves is found again.
fn parse_url(url: &str) -> Result<Target> {
    if url.starts_with("unix:") {
        let Address::Unix(path) = Address::parse(url)? else {
            return Err(RelayError::Config(format!("bad url {url:?}")));
        };
        return Ok(Target {
            dial: Dial::Unix(path),
            host: "localhost".into(),
            tls: false,
        });
    }
    let bad = || {
        RelayError::Config(format!(
            "bad url {url:?}: write https://HOST:PORT, http://127.0.0.1:PORT or unix:/path"
        ))
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(bad());
    }
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err(bad());
    }
    Ok(Target {
        dial: Dial::Tcp(bare.to_string(), port),
        host: bare.to_string(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsConfig {
        TlsConfig {
            ca: "ca.pem".into(),
            cert: "a.pem".into(),
            key: "a.key".into(),
        }
    }

    #[test]
    fn plaintext_only_on_loopback_and_when_asked() {
        let mut c = RelayConfig::new("127.0.0.1:7400", "relay-data");
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("insecure_plaintext"), "{e}");
        c.insecure_plaintext = true;
        assert!(c.validate().is_ok());
        c.listen = "0.0.0.0:7400".into();
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("loopback"), "{e}");
        c.insecure_plaintext = false;
        c.tls = Some(tls());
        assert!(c.validate().is_ok());
        c.listen = "unix:/run/r.sock".into();
        c.tls = None;
        c.insecure_plaintext = true;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn client_urls() {
        let mut c = ClientConfig::new("http://127.0.0.1:7400");
        assert!(c.validate().is_err());
        c.insecure_plaintext = true;
        assert!(c.validate().is_ok());
        c.url = "http://10.0.0.1:7400".into();
        assert!(c.validate().is_err());
        c.url = "https://localhost:7400".into();
        c.insecure_plaintext = false;
        assert!(c.validate().is_err());
        c.tls = Some(tls());
        let t = c.validate().expect("valid");
        assert!(t.tls);
        assert_eq!(t.host, "localhost");
        assert!(ClientConfig::new("ftp://x:1").validate().is_err());
    }

    #[test]
    fn upstream_windows() {
        let mut c: RelayConfig = serde_json::from_str(
            r#"{"listen":"0.0.0.0:7400","data_dir":"d",
                "tls":{"ca":"ca.pem","cert":"b.pem","key":"b.key"},
                "upstreams":[{"url":"https://relay-a:7400","tls":{"ca":"ca.pem","cert":"b.pem","key":"b.key"},"streams":["a.orders"]}]}"#,
        )
        .expect("parse");
        assert_eq!(c.upstreams[0].window_bytes, DEFAULT_UPSTREAM_WINDOW_BYTES);
        assert_eq!(
            c.upstreams[0].client_config().window_bytes,
            Some(DEFAULT_UPSTREAM_WINDOW_BYTES)
        );
        // Other clients keep the adaptive window.
        assert_eq!(ClientConfig::new("https://relay-a:7400").window_bytes, None);
        assert!(c.validate().is_ok());
        c.upstreams[0].window_bytes = 1000;
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("upstreams[0]") && e.contains("window_bytes"),
            "{e}"
        );
        c.upstreams[0].window_bytes = u32::MAX;
        assert!(c.validate().is_err());
    }

    #[test]
    fn parses_toml_shape() {
        let c: RelayConfig = serde_json::from_str(
            r#"{"listen":"0.0.0.0:7400","data_dir":"/var/lib/drc/relay",
                "tls":{"ca":"ca.pem","cert":"a.pem","key":"a.key"},
                "upstreams":[{"url":"https://relay-b:7400","tls":{"ca":"ca.pem","cert":"a.pem","key":"a.key"},"streams":["b.orders"]}]}"#,
        )
        .expect("parse");
        assert_eq!(c.max_batch_bytes, DEFAULT_MAX_BATCH_BYTES);
        assert!(
            serde_json::from_str::<RelayConfig>(r#"{"listen":"x","data_dir":"y","bogus":1}"#)
                .is_err()
        );
    }
}
