//! `drc run --config FILE`: every role a region's config names, in one
//! process: the relay (with its upstream replication), the captures and the
//! apply pipelines (see `crate::daemon` for start and stop).

use std::path::PathBuf;

use clap::Args;
use drc_capture::capture::{CaptureOptions, StartAt};
use drc_capture::decoder::DecoderOptions;
use drc_capture::filter::Filter;

use crate::config::{CaptureConfig, Config};
use crate::daemon::{self, Roles};

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
    if cfg.relay.is_none() && cfg.capture.is_empty() && cfg.apply.is_empty() {
        anyhow::bail!(
            "{} names no role: add a [relay] section, [[capture]] or [[apply]] entries",
            a.config.display()
        );
    }
    let apply = cfg.appliers();
    daemon::run(cfg, Roles::All, apply)
}
