//! `drc`: DRC's one binary. Each subcommand is one role or one-shot job.

mod cmd;
mod config;
mod daemon;
mod publish;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "drc",
    version,
    about = "DRC: cross-region change-data-capture replication for MySQL and MariaDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a MySQL/MariaDB binlog (live as a replica, or from files) and print
    /// whole transactions.
    Capture(Box<cmd::capture::CaptureArgs>),
    /// Run a region's relay (`[relay]` of the config): the durable change log,
    /// publish/subscribe, and replication from upstream regions.
    Relay(cmd::relay::RelayArgs),
    /// Apply streams from a relay into sinks (`[[apply]]` of the config).
    Apply(cmd::apply::ApplyArgs),
    /// Run every role a region's config names in one process.
    Run(cmd::run::RunArgs),
    /// Durable log tools.
    Log(cmd::log::LogArgs),
    /// TLS certificates for relays and clients.
    Tls(cmd::tls::TlsArgs),
    /// Compare a source and a target database by chunk checksums and report
    /// every differing row (exit 0 identical, 1 different, 2 error).
    Verify(Box<cmd::verify::VerifyArgs>),
    /// Migrate a MariaDB database into MariaDB or PostgreSQL once: lock-free
    /// parallel snapshot, catch-up, verify, optional cutover (exit 0
    /// identical, 1 different, 2 error).
    Migrate(Box<cmd::migrate::MigrateArgs>),
    /// Region config tools.
    Config(ConfigArgs),
    /// Streams, offsets, lags and subscribers of a region, as tables.
    Status(cmd::status::StatusArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a region config: keys, files, and (unless --offline) the
    /// servers and relays it names.
    Check(cmd::check::CheckArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not for journald or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Capture(args) => cmd::capture::run(*args),
        Command::Relay(args) => cmd::relay::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Log(args) => cmd::log::run(args),
        Command::Tls(args) => cmd::tls::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Config(ConfigArgs {
            command: ConfigCommand::Check(args),
        }) => cmd::check::run(args),
        Command::Verify(args) => return cmd::verify::run(*args),
        Command::Migrate(args) => return cmd::migrate::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}
