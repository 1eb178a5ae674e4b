//! `drc relay --config FILE`: runs the `[relay]` of a region's config until
//! SIGINT/SIGTERM, then stops taking requests, lets calls finish for a few
//! seconds and exits 0.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// The region's TOML config (its `[relay]` section).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(a: RelayArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&a.config)?;
    let relay = cfg
        .relay
        .with_context(|| format!("{} has no [relay] section", a.config.display()))?;
    let rt = crate::cmd::runtime()?;
    rt.block_on(async move {
        let server = drc_relay::server::RelayServer::bind(relay)
            .await
            .context("start the relay")?;
        tracing::info!(listen = ?server.local_address(), "relay listening");
        server
            .serve(crate::cmd::shutdown_signal())
            .await
            .context("relay")?;
        Ok(())
    })
}
