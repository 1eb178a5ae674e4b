//! The configuration file of `drc relay`, `drc capture --config` and
//! `drc run`: one TOML file per region.
//!
//! ```toml
//! region = "a"
//!
//! [relay]                       # the relay of this region (see drc-relay's RelayConfig)
//! listen = "0.0.0.0:7400"
//! data_dir = "/var/lib/drc/relay"
//! tls = { ca = "tls/ca.pem", cert = "tls/a.pem", key = "tls/a.key" }
//!
//! [[relay.upstreams]]           # streams of other regions to replicate here
//! url = "https://relay-b:7400"
//! tls = { ca = "tls/ca.pem", cert = "tls/a.pem", key = "tls/a.key" }
//! streams = ["b.shop"]
//!
//! [[capture]]                   # one per source database
//! stream = "a.shop"
//! source = "mysql://repl@db-a:3306"
//! source_password_env = "DRC_SOURCE_PASSWORD"
//! relay = { url = "http://127.0.0.1:7400", insecure_plaintext = true }
//! include = ["shop.*"]
//! ```
//!
//! Unknown keys are refused with their name; every problem found by
//! [`Config::validate`] names the key and the fix. Passwords come from the
//! environment (`source_password_env`), never from the file or the logs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use drc_relay::config::{ClientConfig, RelayConfig};
use serde::Deserialize;

/// Default server id a capture registers with.
pub const DEFAULT_CAPTURE_SERVER_ID: u32 = drc_capture::capture::DEFAULT_REPLICA_SERVER_ID;

fn default_server_id() -> u32 {
    DEFAULT_CAPTURE_SERVER_ID
}

fn default_start() -> String {
    "now".into()
}

/// A region's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the region (tags logs).
    #[serde(default)]
    pub region: Option<String>,
    /// The relay of this region.
    #[serde(default)]
    pub relay: Option<RelayConfig>,
    /// Captures, one per source database.
    #[serde(default)]
    pub capture: Vec<CaptureConfig>,
    /// Appliers: a stream from a relay into a sink.
    #[serde(default)]
    pub apply: Vec<crate::cmd::apply::ApplyConfig>,
    /// The HTTP endpoint for `/metrics`, `/healthz` and `/readyz`; none
    /// when absent.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics]`: where the daemons serve `/metrics`, `/healthz` and
/// `/readyz` (plain HTTP: keep them on loopback or a private network).
/// `drc run` uses `listen`; a one-role process (`drc relay`,
/// `drc capture --config`, `drc apply`) its role's key, so the role units of
/// one region can run from the same file side by side. A process without an
/// address serves no endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT` of `drc run`, e.g. `127.0.0.1:9400`.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// `HOST:PORT` of `drc relay`.
    #[serde(default)]
    pub relay_listen: Option<std::net::SocketAddr>,
    /// `HOST:PORT` of `drc capture --config`.
    #[serde(default)]
    pub capture_listen: Option<std::net::SocketAddr>,
    /// `HOST:PORT` of `drc apply`.
    #[serde(default)]
    pub apply_listen: Option<std::net::SocketAddr>,
}

/// One capture: a source database feeding one stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Stream name, e.g. `a.shop` (letters, digits, `.`, `_`, `-`).
    pub stream: String,
    /// `mysql://USER@HOST:PORT` (a password here works but is discouraged).
    pub source: String,
    /// Environment variable holding the source password.
    #[serde(default)]
    pub source_password_env: Option<String>,
    /// The relay to publish to.
    pub relay: ClientConfig,
    /// Where to start when the relay holds nothing of the stream yet:
    /// `now` (default) or `start` (the oldest binlog).
    #[serde(default = "default_start")]
    pub start: String,
    /// Tables to capture (`db.table` globs); all when empty.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables never captured.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Server id the capture registers with as a replica.
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// Persisted schema history (recommended; required to resume at an old
    /// position with binlog_row_metadata=MINIMAL).
    #[serde(default)]
    pub schema_history: Option<PathBuf>,
}

impl CaptureConfig {
    /// The source URL with the password from the environment filled in.
    pub fn source_url(&self) -> anyhow::Result<String> {
        let Some(var) = &self.source_password_env else {
            return Ok(self.source.clone());
        };
        let pw = std::env::var(var).with_context(|| {
            format!(
                "capture {}: source_password_env names {var}, which is not set",
                self.stream
            )
        })?;
        let Some((scheme, rest)) = self.source.split_once("://") else {
            bail!(
                "capture {}: source must look like mysql://USER@HOST:PORT",
                self.stream
            );
        };
        let Some((user, host)) = rest.split_once('@') else {
            bail!(
                "capture {}: source must name a user (mysql://USER@HOST:PORT)",
                self.stream
            );
        };
        let user = user.split(':').next().unwrap_or(user);
        Ok(format!("{scheme}://{user}:{}@{host}", percent_encode(&pw)))
    }
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

pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !s.starts_with('.')
}

impl Config {
    /// The `[[apply]]` entries, each also leaving out the transactions whose
    /// origin is this region: the streams its own captures write, and the
    /// region's name. A change made here and applied in another region comes
    /// back through that region's stream marked with its origin (the other
    /// region's applier writes it into `drc.applied`); applying it here again
    /// would loop.
    pub fn appliers(&self) -> Vec<crate::cmd::apply::ApplyConfig> {
        let local = self.local_origins();
        self.apply
            .iter()
            .cloned()
            .map(|mut a| {
                for o in &local {
                    if !a.exclude_origins.contains(o) {
                        a.exclude_origins.push(o.clone());
                    }
                }
                a
            })
            .collect()
    }

    /// The origins of this region: the streams its own captures write, and
    /// the region's name.
    fn local_origins(&self) -> Vec<String> {
        let mut local: Vec<String> = self.capture.iter().map(|c| c.stream.clone()).collect();
        local.extend(self.region.iter().cloned());
        local
    }

    /// The `[relay]` section, each upstream also asked to send this region's
    /// own transactions as stubs (see drc-relay's `replicate`): a change made
    /// here and applied in another region comes back in that region's stream
    /// marked with its origin, and must not cross the link again. The stub
    /// keeps the offset, so the copy keeps the upstream's offsets.
    pub fn relay_config(&self) -> Option<drc_relay::config::RelayConfig> {
        let local = self.local_origins();
        self.relay.clone().map(|mut r| {
            for u in &mut r.upstreams {
                for o in &local {
                    if !u.stub_origins.contains(o) {
                        u.stub_origins.push(o.clone());
                    }
                }
            }
            r
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config {}", path.display()))?;
        let cfg: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(m) = &self.metrics {
            let all = [m.listen, m.relay_listen, m.capture_listen, m.apply_listen];
            if all.iter().all(Option::is_none) {
                bail!("[metrics] names no address: set listen = \"127.0.0.1:9400\" (and relay_listen, capture_listen, apply_listen for one-role processes), or remove the section");
            }
            let set: Vec<_> = all.iter().flatten().collect();
            let distinct: std::collections::HashSet<_> = set.iter().collect();
            if distinct.len() != set.len() {
                bail!("[metrics]: two keys name the same address; each process needs its own port");
            }
        }
        if let Some(r) = &self.relay {
            r.validate().map_err(|e| anyhow::anyhow!("[relay]: {e}"))?;
        }
        crate::cmd::apply::validate(&self.apply)?;
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.capture.iter().enumerate() {
            if !valid_stream_name(&c.stream) {
                bail!(
                    "capture[{i}].stream = {:?}: use letters, digits, '.', '_' and '-'",
                    c.stream
                );
            }
            if !seen.insert(&c.stream) {
                bail!(
                    "capture[{i}].stream = {:?} is configured twice; a stream has one capture",
                    c.stream
                );
            }
            if !matches!(c.start.as_str(), "now" | "start") {
                bail!(
                    "capture[{i}].start = {:?}: use \"now\" or \"start\"",
                    c.start
                );
            }
            drc_capture::filter::Filter::new(&c.include, &c.exclude)
                .map_err(|e| anyhow::anyhow!("capture[{i}].include/exclude: {e}"))?;
            c.relay
                .validate()
                .map_err(|e| anyhow::anyhow!("capture[{i}].relay: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_region_configs_parse_and_validate() {
        for (name, text) in [
            (
                "region-a",
                include_str!("../../deploy/examples/region-a.toml"),
            ),
            (
                "region-b",
                include_str!("../../deploy/examples/region-b.toml"),
            ),
            (
                "compose a",
                include_str!("../../deploy/compose/region-a.toml"),
            ),
            (
                "compose b",
                include_str!("../../deploy/compose/region-b.toml"),
            ),
        ] {
            let cfg: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(cfg.capture.len(), 1, "{name}");
            assert_eq!(cfg.apply.len(), 1, "{name}");
            // The applier leaves out this region's own changes.
            let own = &cfg.capture[0].stream;
            assert!(cfg.appliers()[0].exclude_origins.contains(own), "{name}");
        }
    }

    #[test]
    fn appliers_leave_out_this_regions_own_origins() {
        let cfg: Config = toml::from_str(
            r#"
            region = "a"
            [[capture]]
            stream = "a.shop"
            source = "mysql://drc@127.0.0.1:3306"
            relay = { url = "http://127.0.0.1:7400", insecure_plaintext = true }
            [[apply]]
            stream = "b.shop"
            subscriber = "apply-a"
            relay = { url = "http://127.0.0.1:7400", insecure_plaintext = true }
            exclude_origins = ["c.shop", "a.shop"]
            sink = { kind = "jsonl", path = "-" }
            "#,
        )
        .expect("config");
        let a = cfg.appliers();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].exclude_origins, ["c.shop", "a.shop", "a"]);
    }
}
