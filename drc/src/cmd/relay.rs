//! `drc relay --config FILE`: runs the `[relay]` of a region's config (with
//! its upstream replication) until SIGINT/SIGTERM, then stops taking
//! requests, lets calls finish for a few seconds and exits 0.

use std::path::PathBuf;

use clap::Args;

use crate::config::Config;
use crate::daemon::{self, Roles};

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// The region's TOML config (its `[relay]` section).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(a: RelayArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&a.config)?;
    if cfg.relay.is_none() {
        anyhow::bail!("{} has no [relay] section", a.config.display());
    }
    let roles = Roles::Relay;
    daemon::run(cfg, roles, Vec::new())
}
