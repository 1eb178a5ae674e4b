//! `wanem`: bring up, control and tear down an emulated WAN link between two
//! network namespaces. See the crate README.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};

use drc_wanem::{control, default_control_path, Ipv4Cidr, Link, LinkConfig, LinkStats};

#[derive(Parser)]
#[command(
    name = "wanem",
    version,
    about = "WAN emulator: two network namespaces joined by a shaping tun forwarder"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create namespaces NAME-a and NAME-b joined by the emulated link and
    /// forward until SIGINT/SIGTERM, then delete them.
    Up(UpArgs),
    /// Delete the namespaces of a link (leftovers of a killed run).
    Down {
        /// Link name.
        #[arg(long)]
        name: String,
    },
    /// Cut a running link (drop everything both ways) for some seconds.
    Cut {
        #[command(flatten)]
        ctl: Ctl,
        /// How long the link stays cut.
        #[arg(long)]
        seconds: f64,
    },
    /// End a cut now.
    Restore {
        #[command(flatten)]
        ctl: Ctl,
    },
    /// Change settings of a running link.
    Set(SetArgs),
    /// Print the counters of a running link.
    Stats {
        #[command(flatten)]
        ctl: Ctl,
    },
    /// Print the settings of a running link.
    Show {
        #[command(flatten)]
        ctl: Ctl,
    },
}

/// How to reach a running link: its name (default control socket) or the
/// socket path.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Ctl {
    /// Link name (uses its default control socket).
    #[arg(long)]
    name: Option<String>,
    /// Control socket path given to `wanem up --control`.
    #[arg(long)]
    control: Option<PathBuf>,
}

impl Ctl {
    fn path(&self) -> PathBuf {
        match (&self.control, &self.name) {
            (Some(p), _) => p.clone(),
            (None, Some(n)) => default_control_path(n),
            // clap's group makes one of them required.
            (None, None) => PathBuf::new(),
        }
    }
}

#[derive(Args)]
struct UpArgs {
    /// Link name: the namespaces are NAME-a and NAME-b.
    #[arg(long)]
    name: String,
    /// Address of tun0 in NAME-a.
    #[arg(long, default_value = "10.77.0.1/30")]
    a_addr: Ipv4Cidr,
    /// Address of tun0 in NAME-b.
    #[arg(long, default_value = "10.77.0.2/30")]
    b_addr: Ipv4Cidr,
    /// One-way delay in milliseconds, each direction.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Jitter in milliseconds (each packet's delay is delay ± a uniform draw).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Random loss in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss_pct: f64,
    /// Rate cap in Mbit/s, each direction (0 = unlimited).
    #[arg(long, default_value_t = 0.0)]
    rate_mbit: f64,
    /// Bound of the rate cap's tail-drop queue in milliseconds at the rate
    /// (0 = one bandwidth-delay product, rate × 2 × delay).
    #[arg(long, default_value_t = 0.0)]
    queue_ms: f64,
    /// TCP congestion control for the link, set per route in both namespaces.
    #[arg(long)]
    congctl: Option<String>,
    /// Seed of the loss and jitter draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// MTU of the tun devices.
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Control socket path (default: /run/wanem/NAME.sock).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Print the counters every this many seconds.
    #[arg(long)]
    stats_every: Option<f64>,
    /// How long to wait for the link to answer before printing `wanem: ready`
    /// anyway (with a warning).
    #[arg(long, default_value_t = 30.0)]
    ready_timeout_s: f64,
}

#[derive(Args)]
struct SetArgs {
    #[command(flatten)]
    ctl: Ctl,
    /// Direction to change: a2b, b2a or both.
    #[arg(long, default_value = "both")]
    dir: String,
    /// Random loss in percent.
    #[arg(long)]
    loss_pct: Option<f64>,
    /// One-way delay in milliseconds.
    #[arg(long)]
    delay_ms: Option<f64>,
    /// Jitter in milliseconds.
    #[arg(long)]
    jitter_ms: Option<f64>,
    /// Rate cap in Mbit/s (0 = unlimited).
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Queue bound in milliseconds at the rate (0 = one BDP).
    #[arg(long)]
    queue_ms: Option<f64>,
}

fn ms(v: f64, what: &str) -> Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{what} must be a non-negative number");
    }
    Ok(Duration::from_secs_f64(v / 1e3))
}

fn print_stats(label: &str, stats: &LinkStats) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "wanem: {label} a->b {}", stats.a_to_b);
    let _ = writeln!(out, "wanem: {label} b->a {}", stats.b_to_a);
    let _ = out.flush();
}

enum Event {
    Ready(Result<Duration>),
    Signal(Signal),
}

fn up(args: UpArgs) -> Result<()> {
    // Block the termination signals in this thread before any other thread
    // exists, so all threads inherit the mask and one thread takes them with
    // sigwait; the link is then always torn down cleanly.
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGINT);
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGHUP);
    sigs.thread_block().context("blocking signals")?;

    let mut cfg = LinkConfig::new(&args.name)
        .addrs(args.a_addr, args.b_addr)
        .delay(ms(args.delay_ms, "delay-ms")?)
        .jitter(ms(args.jitter_ms, "jitter-ms")?)
        .loss_pct(args.loss_pct)
        .rate_mbit(args.rate_mbit)
        .seed(args.seed)
        .control(
            args.control
                .clone()
                .unwrap_or_else(|| default_control_path(&args.name)),
        );
    if args.queue_ms > 0.0 {
        cfg = cfg.queue(ms(args.queue_ms, "queue-ms")?);
    }
    if let Some(cc) = &args.congctl {
        cfg = cfg.congctl(cc);
    }
    cfg.mtu = args.mtu;
    let link = Link::up(cfg)?;
    eprintln!(
        "wanem: link {} up: {} {} <-> {} {} (control {})",
        link.name(),
        link.ns_a(),
        args.a_addr,
        link.ns_b(),
        args.b_addr,
        link.control_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );

    let (tx, rx) = mpsc::channel();
    let sig_tx = tx.clone();
    std::thread::Builder::new()
        .name("wanem-signals".into())
        .spawn(move || loop {
            if let Ok(sig) = sigs.wait() {
                if sig_tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })?;
    let (ns_a, peer) = (link.ns_a().to_owned(), link.b_ip());
    let ready_timeout = Duration::from_secs_f64(args.ready_timeout_s.max(0.1));
    std::thread::Builder::new()
        .name("wanem-probe".into())
        .spawn(move || {
            let _ = tx.send(Event::Ready(drc_wanem::probe(&ns_a, peer, ready_timeout)));
        })?;

    let every = args
        .stats_every
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64);
    let mut next_stats = every.map(|e| Instant::now() + e);
    loop {
        let wait = next_stats.map_or(Duration::from_secs(3600), |t| {
            t.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Event::Ready(res)) => {
                match res {
                    Ok(rtt) => {
                        eprintln!("wanem: probe round trip {:.1} ms", rtt.as_secs_f64() * 1e3)
                    }
                    Err(e) => eprintln!("wanem: warning: {e:#}"),
                }
                println!("wanem: ready");
                let _ = std::io::stdout().flush();
            }
            Ok(Event::Signal(sig)) => {
                eprintln!("wanem: {sig}, shutting down");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let (Some(e), Some(t)) = (every, next_stats.as_mut()) {
                    print_stats("stats", &link.stats());
                    *t += e;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let stats = link.down()?;
    print_stats("final", &stats);
    Ok(())
}

fn set(args: SetArgs) -> Result<()> {
    let path = args.ctl.path();
    let dir: drc_wanem::Dir = args.dir.parse().map_err(anyhow::Error::msg)?;
    let dir = match dir {
        drc_wanem::Dir::AtoB => "a2b",
        drc_wanem::Dir::BtoA => "b2a",
        drc_wanem::Dir::Both => "both",
    };
    let changes = [
        ("loss-pct", args.loss_pct),
        ("delay-ms", args.delay_ms),
        ("jitter-ms", args.jitter_ms),
        ("rate-mbit", args.rate_mbit),
        ("queue-ms", args.queue_ms),
    ];
    let mut any = false;
    for (key, value) in changes {
        if let Some(v) = value {
            control::request(&path, &format!("set {dir} {key} {v}"))?;
            any = true;
        }
    }
    if !any {
        bail!(
            "nothing to set (give --loss-pct, --delay-ms, --jitter-ms, --rate-mbit or --queue-ms)"
        );
    }
    println!("{}", control::request(&path, "show")?);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Up(args) => up(args),
        Cmd::Down { name } => {
            drc_wanem::down(&name)?;
            let _ = std::fs::remove_file(default_control_path(&name));
            Ok(())
        }
        Cmd::Cut { ctl, seconds } => {
            if !seconds.is_finite() || seconds < 0.0 {
                bail!("--seconds must be a non-negative number");
            }
            control::request(&ctl.path(), &format!("cut {seconds}")).map(drop)
        }
        Cmd::Restore { ctl } => control::request(&ctl.path(), "restore").map(drop),
        Cmd::Set(args) => set(args),
        Cmd::Stats { ctl } => {
            println!("{}", control::request(&ctl.path(), "stats")?);
            Ok(())
        }
        Cmd::Show { ctl } => {
            println!("{}", control::request(&ctl.path(), "show")?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wanem: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
