//! The long-running roles of a region, in one process: `drc run` (every
//! role its config names), `drc relay`, `drc capture --config` and
//! `drc apply` (one role each, from the same file).
//!
//! Start: the metrics endpoint first (so nothing recorded is lost), then the
//! relay (it binds before anything needs it), then the captures and the
//! apply pipelines; then `READY=1` to systemd.
//!
//! Stop (SIGTERM or SIGINT): captures stop reading and flush what they hold
//! to the relay; apply pipelines apply what they received and write their
//! checkpoints; then the relay stops taking calls. Every step is bounded
//! ([`STOP_TIMEOUT`] in all): a restart resumes from the relay's log and the
//! sinks' checkpoints, so nothing is lost or repeated even when a step is
//! cut short. A second signal exits at once.

pub mod http;
pub mod notify;

use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;

/// The longest a graceful stop waits for the roles before exiting anyway.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Which roles of the config a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// `drc run`: everything the config names.
    All,
    /// `drc relay`: the `[relay]` section.
    Relay,
    /// `drc capture --config`: the `[[capture]]` entries.
    Capture,
    /// `drc apply`: the `[[apply]]` entries.
    Apply,
}

impl Roles {
    fn relay(self) -> bool {
        matches!(self, Roles::All | Roles::Relay)
    }

    fn capture(self) -> bool {
        matches!(self, Roles::All | Roles::Capture)
    }

    /// Where this process serves `/metrics`: `[metrics] listen` for
    /// `drc run`, the role's own key for a one-role process (several of
    /// them, started from one file, cannot share a port).
    fn metrics_listen(self, m: &crate::config::MetricsConfig) -> Option<std::net::SocketAddr> {
        match self {
            Roles::All => m.listen,
            Roles::Relay => m.relay_listen,
            Roles::Capture => m.capture_listen,
            Roles::Apply => m.apply_listen,
        }
    }
}

/// Runs `roles` of `cfg` and the pipelines of `apply` (taken from its
/// `[[apply]]` entries by the caller) until SIGTERM/SIGINT, then stops them
/// gracefully.
pub fn run(
    cfg: Config,
    roles: Roles,
    apply: Vec<crate::cmd::apply::ApplyConfig>,
) -> anyhow::Result<()> {
    let rt = crate::cmd::runtime()?;
    rt.block_on(run_async(cfg, roles, apply))
}

async fn run_async(
    cfg: Config,
    roles: Roles,
    apply: Vec<crate::cmd::apply::ApplyConfig>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut metrics_task = None;
    if let Some(listen) = cfg.metrics.as_ref().and_then(|m| roles.metrics_listen(m)) {
        let handle = http::install_recorder()?;
        metrics_task = Some(http::serve(listen, handle, stop_rx.clone()).await?);
    } else if cfg.metrics.is_some() {
        tracing::info!(
            ?roles,
            "no metrics endpoint for this role: [metrics] has no address for it"
        );
    }
    tracing::info!(
        region = cfg.region.as_deref().unwrap_or("-"),
        relay = roles.relay() && cfg.relay.is_some(),
        captures = if roles.capture() {
            cfg.capture.len()
        } else {
            0
        },
        appliers = apply.len(),
        "starting"
    );
    let mut relay_task = None;
    let (relay_stop_tx, relay_stop_rx) = watch::channel(false);
    // Registered for as long as the relay serves (dropped at return).
    let mut _relay_part = None;
    if let (Some(relay), true) = (cfg.relay_config(), roles.relay()) {
        let part = drc_obs::health::Part::register("relay listener");
        let server = drc_relay::server::RelayServer::bind(relay)
            .await
            .context("start the relay")?;
        tracing::info!(listen = ?server.local_address(), "relay listening");
        part.ready();
        _relay_part = Some(part);
        let mut rx = relay_stop_rx.clone();
        relay_task = Some(tokio::spawn(server.serve(async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
    }
    let mut captures = Vec::new();
    if roles.capture() {
        for c in &cfg.capture {
            let (opts, fallback) = crate::cmd::run::capture_options(c)?;
            let stream = c.stream.clone();
            let relay = c.relay.clone();
            let rx = stop_rx.clone();
            captures.push(tokio::spawn(async move {
                let r = crate::publish::capture_to_relay(&stream, opts, relay, fallback, rx).await;
                if let Err(e) = &r {
                    // Said now, not at shutdown: the relay and the appliers
                    // keep running, so nothing else shows that this stream
                    // has stopped growing.
                    tracing::error!(stream, error = %format!("{e:#}"), "capture failed; this stream gets no new transactions until the cause is fixed and drc is restarted");
                }
                (stream, r)
            }));
        }
    }
    let appliers = (!apply.is_empty())
        .then(|| tokio::spawn(crate::cmd::apply::run_pipelines(apply, stop_rx.clone())));
    notify::ready(stop_rx.clone());

    // Runs until a signal, or until every role of this process has ended on
    // its own (a relay never does; captures and pipelines only on definite
    // errors, which they logged): then nothing is left to serve.
    let serving_relay = relay_task.is_some();
    let all_ended = async {
        if serving_relay {
            return std::future::pending().await;
        }
        loop {
            let ended = captures.iter().all(|t| t.is_finished())
                && appliers.as_ref().is_none_or(|t| t.is_finished());
            if ended {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        () = crate::cmd::shutdown_signal() => tracing::info!("stopping"),
        () = all_ended => tracing::warn!("every role has ended; stopping"),
    }
    notify::stopping();
    tokio::spawn(async {
        crate::cmd::shutdown_signal().await;
        tracing::warn!("second signal: exiting at once; a restart resumes from the relay's log and the checkpoints");
        std::process::exit(130);
    });
    let _ = stop_tx.send(true);
    let stopping = async {
        let mut failed = None;
        for t in captures {
            match t.await {
                Ok((_, Err(e))) => failed = Some(e),
                Ok((_, Ok(()))) => {}
                Err(e) => failed = Some(anyhow::anyhow!("capture task: {e}")),
            }
        }
        if let Some(t) = appliers {
            match t.await {
                Ok(Err(e)) => failed = Some(e),
                Ok(Ok(())) => {}
                Err(e) => failed = Some(anyhow::anyhow!("apply task: {e}")),
            }
        }
        // The relay goes last: captures flushed into it, and pipelines
        // confirmed to it, through it.
        let _ = relay_stop_tx.send(true);
        if let Some(t) = relay_task {
            if let Err(e) = t
                .await
                .context("relay task")
                .and_then(|r| r.context("relay"))
            {
                failed = Some(e);
            }
        }
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
        failed
    };
    match tokio::time::timeout(STOP_TIMEOUT, stopping).await {
        Ok(None) => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(Some(e)) => Err(e),
        Err(_) => anyhow::bail!(
            "the roles did not stop within {} s; exiting anyway (a restart resumes from the relay's log and the sinks' checkpoints)",
            STOP_TIMEOUT.as_secs()
        ),
    }
}
