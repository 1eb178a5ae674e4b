//! Test helper for the crash test (`tests/crash.rs`), not a tool: opens the
//! log in DIR and appends records from several tasks at once, forever. After
//! each append is acknowledged it prints one line per record,
//! `ack OFFSET KEY LEN`, from which the test rebuilds the exact bytes. The
//! test kills it with SIGKILL at random moments and checks the log.
//!
//! Usage: drc-log-crash-writer DIR SEED

mod payload;

use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use drc_log::{Log, LogConfig};

/// Small segments, so kills land during segment rolls too.
const SEGMENT_BYTES: u64 = 64 << 10;
/// Concurrent appenders, so kills land inside group commits.
const TASKS: u64 = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: drc-log-crash-writer DIR SEED");
        return ExitCode::from(2);
    };
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    let log = match Log::open(dir, config).await {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("open log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = payload::mix(seed ^ (t << 56));
            for n in 0u64.. {
                rng = payload::mix(rng);
                let count = 1 + rng % 4;
                let mut keys = Vec::new();
                let mut records = Vec::new();
                for i in 0..count {
                    let key = (seed << 40) ^ (t << 32) ^ (n << 3) ^ i;
                    let r = payload::mix(key);
                    // Mostly small records, now and then one that fills a
                    // good part of a segment.
                    let len = if r.is_multiple_of(50) {
                        (r >> 8) % 40_000
                    } else {
                        (r >> 8) % 2_000
                    } as usize;
                    keys.push((key, len));
                    records.push(Bytes::from(payload::payload(key, len)));
                }
                let last = match log.append(records).await {
                    Ok(o) => o.0,
                    Err(e) => {
                        eprintln!("append: {e}");
                        std::process::exit(1);
                    }
                };
                let first = last + 1 - count;
                for (i, (key, len)) in keys.iter().enumerate() {
                    println!("ack {} {key} {len}", first + i as u64);
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            eprintln!("appender task: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
