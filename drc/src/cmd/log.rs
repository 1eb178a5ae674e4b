//! `drc log`: offline tools for a relay's log directory (one stream's log).
//!
//! `drc log check DIR` reads every segment in full, verifies every header and
//! record CRC and that offsets run densely across segments, and prints what
//! it found. It changes nothing and takes no lock. Corruption makes it exit
//! non-zero with the file and byte; a torn tail (a write cut off by a crash,
//! never acknowledged) is only reported, since the relay cuts it off when it
//! next opens the log.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Verify a log directory offline and print its segments, records,
    /// offsets, size, torn tail and subscribers. Exits non-zero on corruption.
    Check {
        /// The log directory of one stream.
        dir: PathBuf,
    },
}

pub fn run(args: LogArgs) -> anyhow::Result<()> {
    match args.command {
        LogCommand::Check { dir } => {
            let report = drc_log::check(&dir)
                .with_context(|| format!("check log directory {}", dir.display()))?;
            print!("{report}");
            Ok(())
        }
    }
}
