//! One bulk TCP stream across an emulated link for a fixed time; prints the
//! goodput, the IP bytes on the link and the forwarder's CPU use.
//!
//! ```text
//! tput [--delay-ms 50] [--loss-pct 1] [--rate-mbit 100] [--congctl cubic] [--secs 10]
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use drc_wanem::{Link, LinkConfig};

fn main() -> Result<()> {
    let mut delay_ms = 50u64;
    let mut loss = 1.0f64;
    let mut rate = 100.0f64;
    let mut congctl: Option<String> = None;
    let mut secs = 10.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--delay-ms" => delay_ms = v.parse()?,
            "--loss-pct" => loss = v.parse()?,
            "--rate-mbit" => rate = v.parse()?,
            "--congctl" => congctl = Some(v),
            "--secs" => secs = v.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    let mut cfg = LinkConfig::new(format!("tput{}", std::process::id()))
        .delay_ms(delay_ms)
        .loss_pct(loss)
        .rate_mbit(rate);
    if let Some(cc) = &congctl {
        cfg = cfg.congctl(cc);
    }
    let link = Link::up(cfg)?;
    link.wait_ready(Duration::from_secs(10))?;

    let b = link.b_ip();
    let listener = link.run_in_b(move || TcpListener::bind((b, 5001)))??;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut s = link.run_in_a(move || TcpStream::connect((b, 5001)))??;
    let before = link.stats();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let d = Duration::from_secs_f64(secs);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let chunk = vec![0x5au8; 64 * 1024];
    s.set_write_timeout(Some(Duration::from_millis(200)))?;
    while !stop.load(Ordering::Relaxed) {
        match s.write(&chunk) {
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = link.stats();
    s.shutdown(Shutdown::Write)?;
    drop(s);
    // Bytes delivered up to the stop, measured on the link (IP bytes).
    let ip_bytes = after.a_to_b.bytes - before.a_to_b.bytes;
    let cpu = (after.a_to_b.cpu_ns + after.b_to_a.cpu_ns) as f64 / 1e9;
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    println!(
        "congctl={} delay={}ms loss={}% rate={}Mbit: {:.2} Mbit/s IP on the link over {:.1} s \
         ({} bytes received in total); forwarder CPU {:.0}% of one core; {}",
        congctl.as_deref().unwrap_or("default"),
        delay_ms,
        loss,
        rate,
        ip_bytes as f64 * 8.0 / elapsed / 1e6,
        elapsed,
        received,
        cpu / elapsed * 100.0,
        after.a_to_b
    );
    let _ = std::io::stdout().flush();
    Ok(())
}
