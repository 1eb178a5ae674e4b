//! The control socket of a running link: a Unix stream socket taking one
//! text command per connection.
//!
//! | request                    | effect                                        |
//! |----------------------------|-----------------------------------------------|
//! | `cut SECONDS`              | drop everything both ways for SECONDS         |
//! | `restore`                  | end a cut now                                 |
//! | `set DIR KEY VALUE`        | change a setting; DIR is `a2b`, `b2a`, `both`; KEY is `loss-pct`, `delay-ms`, `jitter-ms`, `rate-mbit` (0 = unlimited) or `queue-ms` (0 = one BDP) |
//! | `stats`                    | the counters, one line per direction          |
//! | `show`                     | the current settings                          |
//!
//! The reply is zero or more lines followed by `ok`, or one `error: …` line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::forward::{Dir, Shared};
use crate::shaper::Shaping;

/// Applies `set KEY VALUE` to `s`.
pub(crate) fn apply_setting(s: &mut Shaping, key: &str, value: f64) -> Result<(), String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!("bad value {value} for {key}"));
    }
    match key {
        "loss-pct" | "loss" => {
            if value > 100.0 {
                return Err("loss-pct must be within 0..=100".into());
            }
            s.loss_pct = value;
        }
        "delay-ms" | "delay" => s.delay = Duration::from_secs_f64(value / 1e3),
        "jitter-ms" | "jitter" => s.jitter = Duration::from_secs_f64(value / 1e3),
        "rate-mbit" | "rate" => s.rate_bps = (value * 1e6) as u64,
        "queue-ms" | "queue" => {
            s.queue = (value > 0.0).then(|| Duration::from_secs_f64(value / 1e3));
        }
        _ => return Err(format!("unknown setting {key:?}")),
    }
    Ok(())
}

/// Renders the settings of one direction.
pub(crate) fn describe(s: &Shaping) -> String {
    format!(
        "delay_ms={} jitter_ms={} loss_pct={} rate_mbit={} queue_bytes={}",
        s.delay.as_secs_f64() * 1e3,
        s.jitter.as_secs_f64() * 1e3,
        s.loss_pct,
        s.rate_bps as f64 / 1e6,
        s.queue_bytes()
    )
}

fn parse_f64(s: Option<&str>, what: &str) -> Result<f64, String> {
    let s = s.ok_or_else(|| format!("missing {what}"))?;
    s.parse::<f64>().map_err(|_| format!("bad {what} {s:?}"))
}

fn execute(shared: &Shared, line: &str) -> Result<Vec<String>, String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("cut") => {
            let secs = parse_f64(words.next(), "seconds")?;
            if !secs.is_finite() || secs < 0.0 {
                return Err(format!("bad seconds {secs}"));
            }
            shared.cut(Duration::from_secs_f64(secs));
            Ok(vec![])
        }
        Some("restore") => {
            shared.restore();
            Ok(vec![])
        }
        Some("set") => {
            let dir: Dir = words.next().ok_or("missing direction")?.parse()?;
            let key = words.next().ok_or("missing setting")?;
            let value = parse_f64(words.next(), "value")?;
            let mut probe = shared.shaping(dir);
            apply_setting(&mut probe, key, value)?;
            shared.update(dir, &mut |s| {
                let _ = apply_setting(s, key, value);
            });
            Ok(vec![])
        }
        Some("stats") => {
            let mut out: Vec<String> = shared
                .stats()
                .to_string()
                .lines()
                .map(String::from)
                .collect();
            if let Some(left) = shared.cut_remaining() {
                out.push(format!("cut_remaining_s={:.3}", left.as_secs_f64()));
            }
            Ok(out)
        }
        Some("show") => Ok(vec![
            format!("a->b {}", describe(&shared.shaping(Dir::AtoB))),
            format!("b->a {}", describe(&shared.shaping(Dir::BtoA))),
        ]),
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("empty command".into()),
    }
}

fn serve_one(shared: &Shared, stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let reply = match execute(shared, line.trim()) {
        Ok(lines) => {
            let mut r = lines.join("\n");
            if !r.is_empty() {
                r.push('\n');
            }
            r + "ok\n"
        }
        Err(e) => format!("error: {e}\n"),
    };
    let _ = (&stream).write_all(reply.as_bytes());
}

/// A running control socket; removed when dropped.
#[derive(Debug)]
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub(crate) fn start(path: &Path, shared: Arc<Shared>) -> Result<Self> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {} is in use by a running link",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wanem-control".into())
            .spawn(move || {
                while !stop2.load(Relaxed) {
                    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                    if !matches!(poll(&mut fds, PollTimeout::from(100u8)), Ok(n) if n > 0) {
                        continue;
                    }
                    while let Ok((stream, _)) = listener.accept() {
                        serve_one(&shared, stream);
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends one command to the control socket at `path` and returns the reply
/// lines before the final `ok`.
pub fn request(path: &Path, command: &str) -> Result<String> {
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("connecting to control socket {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(command.trim().as_bytes())?;
    stream.write_all(b"\n")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let body = reply.trim_end();
    if let Some(e) = body.lines().last().and_then(|l| l.strip_prefix("error: ")) {
        bail!("{e}");
    }
    match body.strip_suffix("ok") {
        Some(rest) => Ok(rest.trim_end().to_owned()),
        None => bail!("unexpected reply from {}: {body:?}", path.display()),
    }
}
