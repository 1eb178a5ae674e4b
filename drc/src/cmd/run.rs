//! `drc run --config FILE`: every role a region's config names, in one
//! process: the relay (with its upstream replication) and the captures.
//! SIGINT/SIGTERM stops the captures, then the relay.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use drc_capture::capture::{CaptureOptions, StartAt};
use drc_capture::decoder::DecoderOptions;
use drc_capture::filter::Filter;
use tokio::sync::watch;

use crate::config::{CaptureConfig, Config};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The region's TOML config.
    #[arg(long)]
    config: PathBuf,
}

/// Capture options from a `[[capture]]` entry.
pub fn capture_options(c: &CaptureConfig) -> anyhow::Result<(CaptureOptions, StartAt)> {
    let fallback = if c.start == "start" {
        StartAt::FromStart
    } else {
        StartAt::FromNow
    };
    let mut opts = CaptureOptions::new(c.source_url()?, fallback.clone());
    opts.replica_server_id = c.server_id;
    opts.schema_history = c.schema_history.clone();
    opts.decoder = DecoderOptions {
        filter: Filter::new(&c.include, &c.exclude).map_err(anyhow::Error::msg)?,
        ..DecoderOptions::default()
    };
    Ok((opts, fallback))
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&a.config)?;
    if cfg.relay.is_none() && cfg.capture.is_empty() {
        anyhow::bail!(
            "{} names no role: add a [relay] section or [[capture]] entries",
            a.config.display()
        );
    }
    let rt = crate::cmd::runtime()?;
    rt.block_on(async move {
        tracing::info!(
            region = cfg.region.as_deref().unwrap_or("-"),
            relay = cfg.relay.is_some(),
            captures = cfg.capture.len(),
            "starting"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut relay_task = None;
        let (relay_stop_tx, relay_stop_rx) = watch::channel(false);
        if let Some(relay) = cfg.relay.clone() {
            let server = drc_relay::server::RelayServer::bind(relay)
                .await
                .context("start the relay")?;
            tracing::info!(listen = ?server.local_address(), "relay listening");
            let mut rx = relay_stop_rx.clone();
            relay_task = Some(tokio::spawn(server.serve(async move {
                let _ = rx.wait_for(|s| *s).await;
            })));
        }
        let mut captures = Vec::new();
        for c in &cfg.capture {
            let (opts, fallback) = capture_options(c)?;
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
        let appliers = (!cfg.apply.is_empty()).then(|| {
            tokio::spawn(crate::cmd::apply::run_pipelines(
                cfg.appliers(),
                stop_rx.clone(),
            ))
        });
        crate::cmd::shutdown_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
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
        let _ = relay_stop_tx.send(true);
        if let Some(t) = relay_task {
            t.await.context("relay task")?.context("relay")?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}
