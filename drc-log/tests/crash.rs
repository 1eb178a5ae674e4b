//! Crash test: a child process appends from several tasks and prints every
//! acknowledged record; we kill it with SIGKILL at random moments, twenty
//! times over the same directory, and after each kill check that the log is
//! a gap-free run of offsets from 1 holding every acknowledged record byte
//! for byte. Records past the acknowledged ones (written, not yet answered)
//! are allowed.

#[path = "../src/bin/drc-log-crash-writer/payload.rs"]
mod payload;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drc_log::{check, Log, LogConfig, Offset};
use rand::{Rng, SeedableRng};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KILLS: u64 = 20;

/// Complete lines of `ack OFFSET KEY LEN`; a line cut by the kill is dropped.
fn read_acks(out: impl Read) -> Vec<(u64, u64, usize)> {
    let mut r = BufReader::new(out);
    let mut acks = Vec::new();
    let mut line = Vec::new();
    while let Ok(n) = r.read_until(b'\n', &mut line) {
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let parts: Vec<&str> = text.split_whitespace().collect();
        if let ["ack", o, k, l] = parts[..] {
            if let (Ok(o), Ok(k), Ok(l)) = (o.parse(), k.parse(), l.parse()) {
                acks.push((o, k, l));
            }
        }
        line.clear();
    }
    acks
}

#[test]
fn acknowledged_records_survive_kill_9() -> TestResult {
    let exe = env!("CARGO_BIN_EXE_drc-log-crash-writer");
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    // offset -> (key, len) of every acknowledged record so far.
    let mut acked: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    let mut torn_tails = 0;
    let mut last = 0;
    for round in 0..KILLS {
        let mut child = Command::new(exe)
            .arg(dir.path())
            .arg(round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let reader = std::thread::spawn(move || read_acks(stdout));
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..=200)));
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err)?;
            }
            return Err(format!("writer exited by itself ({status}): {err}").into());
        }
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        assert_eq!(status.signal(), Some(9), "round {round}: {status}");
        let acks = reader.join().map_err(|_| "ack reader panicked")?;
        for (o, k, l) in acks {
            if let Some(prev) = acked.insert(o, (k, l)) {
                assert_eq!(
                    prev,
                    (k, l),
                    "offset {o} acknowledged twice with different records"
                );
            }
        }

        // Offline check first: damage other than a torn tail fails here.
        let report = check(dir.path())?;
        torn_tails += usize::from(report.torn_tail.is_some());

        last = rt.block_on(async {
            let log = Log::open(dir.path(), LogConfig::default()).await?;
            let last = log.last_offset().map_or(0, |o| o.0);
            if let Some((&max_acked, _)) = acked.last_key_value() {
                assert!(
                    max_acked <= last,
                    "round {round}: acknowledged {max_acked} but the log ends at {last}"
                );
            }
            let mut r = log.reader(Offset(1))?;
            let mut expect = 1;
            while let Some((o, bytes)) = r.try_next()? {
                assert_eq!(o.0, expect, "round {round}: offsets not dense");
                if let Some(&(key, len)) = acked.get(&o.0) {
                    assert!(
                        bytes[..] == payload::payload(key, len)[..],
                        "round {round}: offset {} differs from what was acknowledged",
                        o.0
                    );
                }
                expect += 1;
            }
            assert_eq!(expect - 1, last, "round {round}: reader stopped early");
            log.close().await?;
            Ok::<_, Box<dyn std::error::Error>>(last)
        })?;
    }
    eprintln!(
        "{KILLS} kills in {:.1} s: {} records acknowledged, {last} in the log, {torn_tails} torn tails found",
        started.elapsed().as_secs_f64(),
        acked.len(),
    );
    assert!(
        acked.len() as u64 > KILLS,
        "the writer acknowledged almost nothing"
    );
    Ok(())
}
