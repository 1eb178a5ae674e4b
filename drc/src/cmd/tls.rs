//! `drc tls init DIR [--regions a,b]`: the certificates of mutual TLS
//! between relays and their clients.
//!
//! Writes `ca.pem`/`ca.key` (once; an existing CA in DIR is reused, so
//! regions can be added later) and, per region, `REGION.pem`/`REGION.key`,
//! valid as server and as client certificate for `localhost`, `127.0.0.1`,
//! `REGION` and `relay-REGION`. Keys are written with mode 0600; no existing
//! file is ever overwritten. The work is done by `drc_relay::tls::generate`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(Subcommand)]
pub enum TlsCommand {
    /// Create a CA in DIR (or reuse the one there) and a certificate and key
    /// for each region.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Directory for the PEM files (created if missing).
    pub dir: PathBuf,
    /// Regions to issue certificates for, comma-separated (e.g. `a,b`).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Another name or IP address a region's relay is reached by, as
    /// `REGION=NAME` (repeatable), e.g. `--san a=10.0.0.5 --san b=relay.b.example`.
    #[arg(long)]
    pub san: Vec<String>,
}

pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    match args.command {
        TlsCommand::Init(a) => init(a),
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let regions: Vec<String> = args
        .regions
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let mut sans = Vec::new();
    for s in &args.san {
        let Some((r, n)) = s.split_once('=') else {
            anyhow::bail!("--san {s:?}: write REGION=NAME, e.g. a=10.0.0.5");
        };
        sans.push((r.trim().to_string(), n.trim().to_string()));
    }
    let g = drc_relay::tls::generate_with_sans(&args.dir, &regions, &sans)
        .with_context(|| format!("create certificates in {}", args.dir.display()))?;
    if g.ca_created {
        println!(
            "created CA {}",
            args.dir.join(drc_relay::tls::CA_CERT_FILE).display()
        );
    } else {
        println!(
            "using existing CA {}",
            args.dir.join(drc_relay::tls::CA_CERT_FILE).display()
        );
    }
    for f in &g.written {
        println!("wrote {}", f.display());
    }
    if regions.is_empty() {
        println!("no regions given; add some with --regions a,b");
    } else {
        println!(
            "relay config of region R: tls = {{ ca = \"ca.pem\", cert = \"R.pem\", key = \"R.key\" }} (paths in {}); \
             keep ca.key offline once every region has its certificate",
            args.dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_ca_and_regions_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = |regions: &[&str]| TlsArgs {
            command: TlsCommand::Init(InitArgs {
                dir: dir.path().to_path_buf(),
                regions: regions.iter().map(|s| s.to_string()).collect(),
                san: if regions.contains(&"a") {
                    vec!["a=10.1.2.3".into()]
                } else {
                    Vec::new()
                },
            }),
        };
        run(args(&["a", "b"])).expect("init");
        for f in ["ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        run(args(&["c"])).expect("add a region");
        assert!(dir.path().join("c.pem").exists());
        let e = run(args(&["a"])).expect_err("a exists");
        assert!(format!("{e:#}").contains("already exists"), "{e:#}");
    }
}
