//! Settings of the NATS JetStream sink.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::subject::{self, Template, PLACEHOLDERS};
use crate::error::{ApplyError, Result};

/// JetStream stream the sink publishes into; `{stream}` is the DRC stream
/// with `.` (and anything else a stream name may not hold) as `_`.
pub const DEFAULT_JETSTREAM_STREAM: &str = "DRC_{stream}";
/// Subjects of the JetStream stream when the sink creates it.
pub const DEFAULT_JETSTREAM_SUBJECT: &str = "drc.{stream}.>";
/// Subject of row changes (and TRUNCATE).
pub const DEFAULT_SUBJECT: &str = "drc.{stream}.{db}.{table}";
/// Subject of schema-change (DDL) messages.
pub const DEFAULT_DDL_SUBJECT: &str = "drc.{stream}._schema";
/// Key-value bucket holding the checkpoints, one key per DRC stream.
pub const DEFAULT_KV_BUCKET: &str = "drc_checkpoints";
/// JetStream's duplicate window for a stream the sink creates (JetStream's
/// own default).
pub const DEFAULT_DUPLICATE_WINDOW_SECS: u64 = 120;
/// Replicas of the stream and bucket the sink creates.
pub const DEFAULT_REPLICAS: usize = 1;
/// Longest wait for a publish ack or an API reply.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 10_000;
/// Publishes sent before the oldest ack must have come back.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2048;
/// Longest wait for the first connection.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

fn default_jetstream_stream() -> String {
    DEFAULT_JETSTREAM_STREAM.into()
}
fn default_jetstream_subjects() -> Vec<String> {
    vec![DEFAULT_JETSTREAM_SUBJECT.into()]
}
fn default_subject() -> String {
    DEFAULT_SUBJECT.into()
}
fn default_ddl_subject() -> String {
    DEFAULT_DDL_SUBJECT.into()
}
fn default_kv_bucket() -> String {
    DEFAULT_KV_BUCKET.into()
}
fn default_true() -> bool {
    true
}
fn default_duplicate_window_secs() -> u64 {
    DEFAULT_DUPLICATE_WINDOW_SECS
}
fn default_replicas() -> usize {
    DEFAULT_REPLICAS
}
fn default_ack_timeout_ms() -> u64 {
    DEFAULT_ACK_TIMEOUT_MS
}
fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

/// Where and how the NATS sink publishes.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL, `nats://host:4222` (`tls://` for TLS); several
    /// comma-separated URLs of one cluster are allowed.
    pub url: String,
    /// JetStream stream to publish into; `{stream}` is the DRC stream name
    /// with characters other than letters, digits, `_` and `-` as `_`. One
    /// JetStream stream holds one DRC stream (the sink refuses to share).
    #[serde(default = "default_jetstream_stream")]
    pub jetstream_stream: String,
    /// Subject filters of the JetStream stream when the sink creates it
    /// (`{stream}` as in `subject`). An existing stream is used as it is,
    /// but must cover every subject the sink publishes to.
    #[serde(default = "default_jetstream_subjects")]
    pub jetstream_subjects: Vec<String>,
    /// Create the JetStream stream and the key-value bucket when missing;
    /// `false` stops with an error instead.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Subject of row changes: `{stream}`, `{db}` and `{table}`, each one
    /// escaped token (see the sink's docs).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Subject of schema-change (DDL) messages: `{stream}` and `{db}`.
    #[serde(default = "default_ddl_subject")]
    pub ddl_subject: String,
    /// Key-value bucket of the checkpoints (key: the DRC stream name).
    #[serde(default = "default_kv_bucket")]
    pub kv_bucket: String,
    /// JetStream duplicate window in seconds for a stream the sink creates:
    /// a message whose id JetStream has seen within the window is dropped.
    #[serde(default = "default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// Replicas of a stream or bucket the sink creates (1, 3 or 5 in a cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Longest wait for a publish ack or a JetStream API reply, in ms.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Longest wait for the connection at start, in ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Publishes sent before the oldest must be acknowledged.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// NATS credentials file (`.creds`: user JWT and NKey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// User name; its password is read from the environment variable named
    /// by `password_env`.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the password of `user`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding an authentication token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// PEM file of the CA certificates that sign the server's certificate.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for TLS client authentication (with `tls_key_file`).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    #[serde(default)]
    pub require_tls: bool,
}

impl NatsSinkConfig {
    /// A config with the defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            jetstream_stream: default_jetstream_stream(),
            jetstream_subjects: default_jetstream_subjects(),
            create: true,
            subject: default_subject(),
            ddl_subject: default_ddl_subject(),
            kv_bucket: default_kv_bucket(),
            duplicate_window_secs: DEFAULT_DUPLICATE_WINDOW_SECS,
            replicas: DEFAULT_REPLICAS,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            credentials_file: None,
            user: None,
            password_env: None,
            token_env: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            require_tls: false,
        }
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The row-change subject template.
    pub fn subject_template(&self) -> Result<Template> {
        Template::parse("sink.subject", &self.subject, &PLACEHOLDERS)
    }

    /// The DDL subject template.
    pub fn ddl_subject_template(&self) -> Result<Template> {
        Template::parse("sink.ddl_subject", &self.ddl_subject, &["{stream}", "{db}"])
    }

    /// Refuses what cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<()> {
        let cfg = |m: String| Err(ApplyError::Config(m));
        if self.url.trim().is_empty() {
            return cfg(
                "sink.url is empty; name the NATS server, e.g. \"nats://127.0.0.1:4222\"".into(),
            );
        }
        let probe = subject::stream_name(&self.jetstream_stream, "s");
        if probe.is_empty()
            || probe
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return cfg(format!(
                "sink.jetstream_stream = {:?}: use letters, digits, '_', '-' and {{stream}}",
                self.jetstream_stream
            ));
        }
        if self.jetstream_subjects.is_empty() {
            return cfg(format!(
                "sink.jetstream_subjects is empty; give the stream's subject filters, e.g. [{DEFAULT_JETSTREAM_SUBJECT:?}]"
            ));
        }
        for s in &self.jetstream_subjects {
            let rendered = s.replace("{stream}", "s");
            subject::check_filter("sink.jetstream_subjects", &rendered)?;
        }
        self.subject_template()?;
        self.ddl_subject_template()?;
        if self.kv_bucket.is_empty()
            || !self
                .kv_bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return cfg(format!(
                "sink.kv_bucket = {:?}: use letters, digits, '_' and '-' (default {DEFAULT_KV_BUCKET:?})",
                self.kv_bucket
            ));
        }
        if self.duplicate_window_secs == 0 {
            return cfg(format!(
                "sink.duplicate_window_secs must be at least 1 (default {DEFAULT_DUPLICATE_WINDOW_SECS}): JetStream drops repeats only within it"
            ));
        }
        if !matches!(self.replicas, 1..=5) {
            return cfg(format!(
                "sink.replicas = {}: use 1 to 5 (default {DEFAULT_REPLICAS})",
                self.replicas
            ));
        }
        if self.ack_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return cfg(format!(
                "sink.ack_timeout_ms and sink.connect_timeout_ms must be at least 1 (defaults {DEFAULT_ACK_TIMEOUT_MS} and {DEFAULT_CONNECT_TIMEOUT_MS})"
            ));
        }
        if self.max_in_flight == 0 {
            return cfg(format!(
                "sink.max_in_flight must be at least 1 (default {DEFAULT_MAX_IN_FLIGHT})"
            ));
        }
        if self.password_env.is_some() != self.user.is_some() {
            return cfg("sink.user and sink.password_env go together; set both or neither".into());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return cfg(
                "sink.tls_cert_file and sink.tls_key_file go together; set both or neither".into(),
            );
        }
        let auth = [
            self.credentials_file.is_some(),
            self.user.is_some(),
            self.token_env.is_some(),
        ];
        if auth.iter().filter(|a| **a).count() > 1 {
            return cfg(
                "sink: choose one of credentials_file, user/password_env and token_env".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_keys_are_named() {
        let c = NatsSinkConfig::new("nats://127.0.0.1:4222");
        c.validate().expect("defaults are valid");
        let parsed: NatsSinkConfig =
            toml::from_str("url = \"nats://x:4222\"").expect("minimal config");
        assert_eq!(parsed, NatsSinkConfig::new("nats://x:4222"));
        assert!(toml::from_str::<NatsSinkConfig>("url = \"x\"\nnope = 1").is_err());

        let bad = |f: fn(&mut NatsSinkConfig), key: &str| {
            let mut c = NatsSinkConfig::new("nats://127.0.0.1:4222");
            f(&mut c);
            let e = c.validate().expect_err(key).to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(|c| c.url.clear(), "sink.url");
        bad(
            |c| c.jetstream_stream = "a.b".into(),
            "sink.jetstream_stream",
        );
        bad(|c| c.subject = "drc.{x}".into(), "sink.subject");
        bad(|c| c.ddl_subject = "drc.{table}".into(), "sink.ddl_subject");
        bad(|c| c.kv_bucket = "a.b".into(), "sink.kv_bucket");
        bad(
            |c| c.duplicate_window_secs = 0,
            "sink.duplicate_window_secs",
        );
        bad(|c| c.max_in_flight = 0, "sink.max_in_flight");
        bad(|c| c.user = Some("u".into()), "sink.user");
        bad(
            |c| c.jetstream_subjects = vec!["a.>.b".into()],
            "sink.jetstream_subjects",
        );
    }
}
