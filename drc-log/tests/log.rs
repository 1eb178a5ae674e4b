//! The log through its public API on real files: appends and group commit,
//! segment roll, reopen, torn tails, corruption, readers, retention and
//! replication appends.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drc_log::segment::{file_name, HEADER_LEN};
use drc_log::{check, Log, LogConfig, LogError, Offset, Retention};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..LogConfig::default()
    }
}

/// Record `i`'s payload in these tests: 10 bytes, so every record takes 26.
fn rec(i: u64) -> Bytes {
    Bytes::from(format!("record{i:04}"))
}
const REC_LEN: u64 = 26;

async fn fill(log: &Log, n: u64) -> Result<Offset, LogError> {
    let mut last = Offset::ZERO;
    for i in 1..=n {
        last = log.append(vec![rec(i)]).await?;
    }
    Ok(last)
}

async fn read_all(log: &Log, from: Offset) -> Result<Vec<(Offset, Bytes)>, LogError> {
    let mut r = log.reader(from)?;
    let mut out = Vec::new();
    while let Some(x) = r.try_next()? {
        out.push(x);
    }
    Ok(out)
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(file_name(Offset(first)))
}

fn corrupt_byte(path: &Path, pos: u64) -> std::io::Result<()> {
    let mut b = fs::read(path)?;
    b[pos as usize] ^= 0x5a;
    fs::write(path, b)
}

#[tokio::test]
async fn appends_read_back_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(1 << 20)).await?;
    assert_eq!(log.last_offset(), None);
    assert_eq!(log.next_offset(), Offset(1));
    assert_eq!(log.append(vec![rec(1)]).await?, Offset(1));
    assert_eq!(log.append(vec![rec(2), rec(3), rec(4)]).await?, Offset(4));
    assert_eq!(fill(&log, 0).await?, Offset::ZERO);
    let all = read_all(&log, Offset(1)).await?;
    assert_eq!(all.len(), 4);
    for (i, (o, b)) in all.iter().enumerate() {
        assert_eq!(*o, Offset(i as u64 + 1));
        assert_eq!(*b, rec(i as u64 + 1));
    }
    let from3 = read_all(&log, Offset(3)).await?;
    assert_eq!(from3.first().map(|x| x.0), Some(Offset(3)));
    assert_eq!(log.first_offset(), Offset(1));
    assert_eq!(log.last_offset(), Some(Offset(4)));
    assert_eq!(log.size_bytes(), HEADER_LEN + 4 * REC_LEN);
    assert!(matches!(
        log.append(vec![]).await,
        Err(LogError::EmptyAppend)
    ));
    log.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Arc::new(Log::open(dir.path(), config(1 << 20)).await?);
    let n = 400u64;
    let mut tasks = Vec::new();
    for i in 0..n {
        let fut = log.append(vec![rec(i)]);
        tasks.push(tokio::spawn(fut));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        offsets.push(t.await??.0);
    }
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (1..=n).collect::<Vec<_>>(),
        "every append got its own offset"
    );
    let stats = log.stats();
    eprintln!("{n} concurrent appends: {stats:?}");
    assert_eq!(stats.appends, n);
    assert_eq!(stats.records, n);
    assert!(
        stats.batches < n / 4,
        "expected group commit, got {stats:?}"
    );
    assert!(
        stats.fsyncs < n / 4,
        "expected fewer fsyncs than appends, got {stats:?}"
    );
    // Each append's record is the one it wrote.
    let all = read_all(&log, Offset(1)).await?;
    assert_eq!(all.len() as u64, n);
    Ok(())
}

#[tokio::test]
async fn segments_roll_and_reads_cross_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Room for 3 records after the header.
    let seg = HEADER_LEN + 3 * REC_LEN;
    let log = Log::open(dir.path(), config(seg)).await?;
    fill(&log, 10).await?;
    // A batch that itself spans segments.
    log.append((11..=17).map(rec).collect()).await?;
    // A record larger than a segment gets one of its own.
    let big = Bytes::from(vec![7u8; 500]);
    assert_eq!(log.append(vec![big.clone()]).await?, Offset(18));
    fill(&log, 1).await?;
    let segs = log.segments();
    let firsts: Vec<u64> = segs.iter().map(|s| s.first.0).collect();
    assert_eq!(firsts, vec![1, 4, 7, 10, 13, 16, 18, 19]);
    for s in &segs {
        assert!(s.bytes <= seg || s.first == Offset(18), "{s:?}");
        assert_eq!(fs::metadata(&s.path)?.len(), s.bytes);
    }
    assert_eq!(segs[6].last, Some(Offset(18)));
    let all = read_all(&log, Offset(1)).await?;
    assert_eq!(all.len(), 19);
    assert_eq!(all[17].1, big);
    // Start in the middle of a segment and at a segment's first record.
    assert_eq!(read_all(&log, Offset(5)).await?.len(), 15);
    assert_eq!(read_all(&log, Offset(7)).await?.len(), 13);
    log.close().await?;
    let report = check(dir.path())?;
    assert_eq!(report.records, 19);
    assert_eq!(report.segments.len(), 8);
    assert_eq!(report.last_offset, Some(Offset(19)));
    assert!(report.torn_tail.is_none());
    Ok(())
}

#[tokio::test]
async fn reopen_continues_where_it_stopped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(200)).await?;
    fill(&log, 20).await?;
    log.close().await?;
    let log = Log::open(dir.path(), config(200)).await?;
    assert_eq!(log.next_offset(), Offset(21));
    assert_eq!(log.append(vec![rec(21)]).await?, Offset(21));
    let all = read_all(&log, Offset(1)).await?;
    assert_eq!(all.len(), 21);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, (o, b))| o.0 == i as u64 + 1 && *b == rec(i as u64 + 1)));
    Ok(())
}

#[tokio::test]
async fn a_second_open_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(1 << 20)).await?;
    let again = Log::open(dir.path(), config(1 << 20)).await;
    assert!(matches!(again, Err(LogError::Locked { .. })));
    log.close().await?;
    Log::open(dir.path(), config(1 << 20))
        .await?
        .close()
        .await?;
    Ok(())
}

#[tokio::test]
async fn torn_tails_are_cut_off_on_open() -> TestResult {
    // Three kinds of torn write at the end of the last segment.
    type Tear = fn(&mut Vec<u8>);
    let tails: [(&str, Tear); 3] = [
        ("partial header", |b| b.extend_from_slice(&[1, 2, 3, 4, 5])),
        ("partial payload", |b| {
            let mut r = Vec::new();
            drc_log::record::encode_into(&mut r, Offset(6), b"0123456789");
            b.extend_from_slice(&r[..20]);
        }),
        ("whole length, bad crc", |b| {
            let mut r = Vec::new();
            drc_log::record::encode_into(&mut r, Offset(6), b"0123456789");
            let n = r.len();
            r[n - 1] ^= 1;
            b.extend_from_slice(&r);
        }),
    ];
    for (what, tear) in tails {
        let dir = tempfile::tempdir()?;
        let log = Log::open(dir.path(), config(1 << 20)).await?;
        fill(&log, 5).await?;
        log.close().await?;
        let path = seg_path(dir.path(), 1);
        let clean = fs::metadata(&path)?.len();
        let mut b = fs::read(&path)?;
        tear(&mut b);
        fs::write(&path, &b)?;

        let report = check(dir.path())?;
        let (torn_file, torn) = report
            .torn_tail
            .clone()
            .ok_or(format!("{what}: no torn tail reported"))?;
        assert_eq!(torn_file, path, "{what}");
        assert_eq!(torn.pos, clean, "{what}");
        assert_eq!(report.last_offset, Some(Offset(5)), "{what}");

        let log = Log::open(dir.path(), config(1 << 20)).await?;
        assert_eq!(log.next_offset(), Offset(6), "{what}");
        assert_eq!(fs::metadata(&path)?.len(), clean, "{what}: truncated");
        assert_eq!(log.append(vec![rec(6)]).await?, Offset(6));
        assert_eq!(read_all(&log, Offset(1)).await?.len(), 6, "{what}");
        log.close().await?;
        assert!(check(dir.path())?.torn_tail.is_none(), "{what}");
    }
    Ok(())
}

#[tokio::test]
async fn a_segment_cut_off_while_being_created_is_repaired() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(1 << 20)).await?;
    fill(&log, 3).await?;
    log.close().await?;
    // A crash after the new file's name reached the disk but not its header.
    let torn = seg_path(dir.path(), 4);
    fs::write(&torn, [b'D', b'R', b'C'])?;
    let report = check(dir.path())?;
    assert_eq!(report.torn_tail.map(|t| t.0), Some(torn.clone()));
    let log = Log::open(dir.path(), config(1 << 20)).await?;
    assert_eq!(log.append(vec![rec(4)]).await?, Offset(4));
    assert_eq!(log.segments().len(), 2);
    assert_eq!(read_all(&log, Offset(1)).await?.len(), 4);
    log.close().await?;
    assert_eq!(check(dir.path())?.records, 4);
    Ok(())
}

#[test]
fn check_refuses_what_is_not_a_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    assert!(matches!(check(dir.path()), Err(LogError::NotALog { .. })));
    let file = dir.path().join("file");
    fs::write(&file, b"x")?;
    assert!(matches!(check(&file), Err(LogError::NotALog { .. })));
    assert!(matches!(
        check(&dir.path().join("missing")),
        Err(LogError::Io { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn corruption_before_the_tail_is_an_error_naming_file_and_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(1 << 20)).await?;
    fill(&log, 5).await?;
    log.close().await?;
    let path = seg_path(dir.path(), 1);
    let third = HEADER_LEN + 2 * REC_LEN;
    corrupt_byte(&path, third + 20)?; // payload of record 3; 4 and 5 are fine

    let err = Log::open(dir.path(), config(1 << 20))
        .await
        .err()
        .ok_or("open succeeded")?;
    match &err {
        LogError::Corrupt { path: p, pos, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*pos, third);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("00000000000000000001.seg") && msg.contains(&format!("byte {third}")),
        "{msg}"
    );
    assert!(!err.is_transient());
    assert!(matches!(check(dir.path()), Err(LogError::Corrupt { pos, .. }) if pos == third));
    // The file was not changed.
    assert_eq!(fs::metadata(&path)?.len(), HEADER_LEN + 5 * REC_LEN);
    Ok(())
}

#[tokio::test]
async fn corruption_inside_a_sealed_segment_stops_readers_and_check() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = HEADER_LEN + 3 * REC_LEN;
    let log = Log::open(dir.path(), config(seg)).await?;
    fill(&log, 9).await?;
    log.close().await?;
    let sealed = seg_path(dir.path(), 4);
    let second = HEADER_LEN + REC_LEN; // record 5
    corrupt_byte(&sealed, second + 18)?;

    // Open reads only the ends of sealed segments: this one's end is fine.
    let log = Log::open(dir.path(), config(seg)).await?;
    let mut r = log.reader(Offset(1))?;
    for want in 1..=4 {
        assert_eq!(r.try_next()?.map(|x| x.0), Some(Offset(want)));
    }
    match r.try_next() {
        Err(LogError::Corrupt { path, pos, reason }) => {
            assert_eq!((path, pos), (sealed.clone(), second), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    log.close().await?;
    assert!(
        matches!(check(dir.path()), Err(LogError::Corrupt { path, pos, .. }) if path == sealed && pos == second)
    );
    Ok(())
}

#[tokio::test]
async fn damaged_segment_ends_headers_and_gaps_fail_open() -> TestResult {
    let seg = HEADER_LEN + 3 * REC_LEN;
    let setup = || async {
        let dir = tempfile::tempdir()?;
        let log = Log::open(dir.path(), config(seg)).await?;
        fill(&log, 10).await?;
        log.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(dir)
    };

    // The last record of a sealed segment.
    let dir = setup().await?;
    let p = seg_path(dir.path(), 4);
    corrupt_byte(&p, seg - 1)?;
    let e = Log::open(dir.path(), config(seg))
        .await
        .err()
        .ok_or("open succeeded")?;
    assert!(
        matches!(&e, LogError::Corrupt { path, .. } if *path == p),
        "{e}"
    );

    // A header.
    let dir = setup().await?;
    let p = seg_path(dir.path(), 7);
    corrupt_byte(&p, 2)?;
    let e = Log::open(dir.path(), config(seg))
        .await
        .err()
        .ok_or("open succeeded")?;
    assert!(
        matches!(&e, LogError::Corrupt { path, pos: 0, .. } if *path == p),
        "{e}"
    );
    assert!(e.to_string().contains("magic"), "{e}");

    // A missing segment in the middle: a gap.
    let dir = setup().await?;
    fs::remove_file(seg_path(dir.path(), 4))?;
    let e = Log::open(dir.path(), config(seg))
        .await
        .err()
        .ok_or("open succeeded")?;
    let before = seg_path(dir.path(), 1);
    assert!(
        matches!(&e, LogError::Corrupt { path, .. } if *path == before),
        "{e}"
    );
    let e = check(dir.path()).err().ok_or("check passed")?;
    assert!(e.to_string().contains("records are missing"), "{e}");
    Ok(())
}

#[tokio::test]
async fn a_waiting_reader_wakes_when_a_record_is_appended() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(200)).await?;
    fill(&log, 3).await?;
    let mut r = log.reader(Offset(4))?;
    assert!(r.try_next()?.is_none());
    let waiting = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..12 {
            got.push(r.next().await?);
        }
        Ok::<_, LogError>(got)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "reader returned before anything was appended"
    );
    // Appends that roll segments while the reader waits.
    for i in 4..=15 {
        log.append(vec![rec(i)]).await?;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), waiting).await???;
    let offsets: Vec<u64> = got.iter().map(|x| x.0 .0).collect();
    assert_eq!(offsets, (4..=15).collect::<Vec<_>>());
    assert!(got.iter().all(|(o, b)| *b == rec(o.0)));

    // A reader at the end learns that the log closed.
    let mut r = log.reader(Offset(16))?;
    let waiting = tokio::spawn(async move { r.next().await });
    log.close().await?;
    let res = tokio::time::timeout(Duration::from_secs(5), waiting).await??;
    assert!(matches!(res, Err(LogError::Closed)));
    Ok(())
}

#[tokio::test]
async fn readers_outside_the_log_get_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = HEADER_LEN + 3 * REC_LEN;
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(2 * seg),
            ..Retention::default()
        },
        ..config(seg)
    };
    let log = Log::open(dir.path(), cfg).await?;
    fill(&log, 12).await?;
    let report = log.enforce_retention().await?;
    assert!(report.deleted_segments > 0);
    let first = log.first_offset();
    assert!(first > Offset(1));
    match log.reader(Offset(1)) {
        Err(e @ LogError::Deleted { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("offset 1 is no longer in the log"), "{msg}");
            assert!(
                msg.contains(&format!("first available offset is {first}")),
                "{msg}"
            );
        }
        other => panic!("expected Deleted, got {:?}", other.err()),
    }
    assert!(log.reader(first).is_ok());
    assert_eq!(
        log.reader(Offset::ZERO)?.position(),
        first,
        "0 means the first available"
    );
    assert!(log.reader(Offset(13)).is_ok()); // the next offset: wait for it
    assert!(matches!(
        log.reader(Offset(14)),
        Err(LogError::BeyondEnd {
            requested: Offset(14),
            next: Offset(13)
        })
    ));
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_reader_inside_a_deleted_segment_finishes_it_then_gets_deleted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = HEADER_LEN + 3 * REC_LEN;
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(1),
            ..Retention::default()
        },
        ..config(seg)
    };
    let log = Log::open(dir.path(), cfg).await?;
    fill(&log, 9).await?;
    let mut r = log.reader(Offset(1))?;
    assert_eq!(r.try_next()?.map(|x| x.0), Some(Offset(1)));
    log.enforce_retention().await?;
    assert_eq!(log.first_offset(), Offset(7));
    // Its open file still holds 2 and 3.
    assert_eq!(r.try_next()?.map(|x| x.0), Some(Offset(2)));
    assert_eq!(r.try_next()?.map(|x| x.0), Some(Offset(3)));
    assert!(matches!(
        r.try_next(),
        Err(LogError::Deleted {
            requested: Offset(4),
            first_available: Offset(7)
        })
    ));
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn retention_honours_subscribers_and_the_hard_cap() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = HEADER_LEN + 3 * REC_LEN;
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(seg),
            ..Retention::default()
        },
        ..config(seg)
    };
    let log = Log::open(dir.path(), cfg.clone()).await?;
    assert_eq!(log.register_subscriber("apply-b").await?, Offset::ZERO);
    fill(&log, 12).await?; // segments 1, 4, 7, 10
    assert_eq!(
        log.enforce_retention().await?.deleted_segments,
        0,
        "nothing confirmed"
    );
    assert_eq!(log.first_offset(), Offset(1));

    // Confirmed through 5: only the segment 1..3 is wholly confirmed.
    assert_eq!(log.confirm("apply-b", Offset(5))?, Offset(5));
    assert_eq!(
        log.confirm("apply-b", Offset(2))?,
        Offset(5),
        "never backward"
    );
    let r = log.enforce_retention().await?;
    assert_eq!((r.deleted_segments, r.first_offset), (1, Offset(4)));
    assert!(!seg_path(dir.path(), 1).exists());

    assert!(matches!(
        log.confirm("nobody", Offset(1)),
        Err(LogError::UnknownSubscriber { .. })
    ));
    assert!(matches!(
        log.confirm("apply-b", Offset(13)),
        Err(LogError::BeyondEnd { .. })
    ));

    // A second subscriber joins holding everything still there.
    assert_eq!(log.register_subscriber("relay-c").await?, Offset(3));
    log.confirm("apply-b", Offset(9))?;
    assert_eq!(
        log.enforce_retention().await?.deleted_segments,
        0,
        "relay-c holds 4.."
    );
    assert_eq!(
        log.subscribers(),
        vec![
            ("apply-b".to_string(), Offset(9)),
            ("relay-c".to_string(), Offset(3))
        ]
    );
    assert!(log.unregister("relay-c").await?);
    assert!(!log.unregister("relay-c").await?);
    let r = log.enforce_retention().await?;
    assert_eq!((r.deleted_segments, r.first_offset), (2, Offset(10)));
    log.close().await?;

    // Positions survive a reopen.
    let log = Log::open(dir.path(), cfg).await?;
    assert_eq!(log.subscribers(), vec![("apply-b".to_string(), Offset(9))]);
    log.close().await?;

    // The hard cap deletes what a subscriber has not confirmed.
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(seg),
            hard_cap_bytes: Some(2 * seg),
            ..Retention::default()
        },
        ..config(seg)
    };
    let log = Log::open(dir.path(), cfg).await?;
    log.register_subscriber("slow").await?;
    fill(&log, 12).await?; // 4 segments, 4 * seg bytes
    let r = log.enforce_retention().await?;
    assert_eq!(r.deleted_segments, 2);
    assert_eq!(r.overridden, vec![("slow".to_string(), Offset::ZERO)]);
    assert!(log.size_bytes() <= 2 * seg);
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn the_writer_runs_retention_periodically() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = HEADER_LEN + 3 * REC_LEN;
    let cfg = LogConfig {
        retention: Retention {
            max_bytes: Some(seg),
            ..Retention::default()
        },
        retention_interval: Duration::from_millis(50),
        ..config(seg)
    };
    let log = Log::open(dir.path(), cfg).await?;
    log.register_subscriber("a").await?;
    fill(&log, 9).await?;
    log.confirm("a", Offset(9))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.first_offset() != Offset(7) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.first_offset(), Offset(7));
    log.close().await?;
    // The confirmation was saved by the pass (or on close).
    let log = Log::open(dir.path(), config(seg)).await?;
    assert_eq!(log.subscribers(), vec![("a".to_string(), Offset(9))]);
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn retention_by_age() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seg = HEADER_LEN + 3 * REC_LEN;
    let cfg = LogConfig {
        retention: Retention {
            max_age: Some(Duration::from_millis(200)),
            ..Retention::default()
        },
        ..config(seg)
    };
    let log = Log::open(dir.path(), cfg).await?;
    fill(&log, 6).await?; // segments 1 and 4
    tokio::time::sleep(Duration::from_millis(400)).await;
    fill(&log, 6).await?; // segments 7 and 10, fresh
    let r = log.enforce_retention().await?;
    // 1 and 4 are old; 4 was sealed by the first write of 7, its newest
    // record is old too.
    assert_eq!(r.first_offset, Offset(7), "{r:?}");
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn append_at_requires_the_next_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), config(1 << 20)).await?;
    assert_eq!(
        log.append_at(Offset(1), vec![rec(1), rec(2)]).await?,
        Offset(2)
    );
    match log.append_at(Offset(5), vec![rec(5)]).await {
        Err(LogError::OffsetMismatch { expected, got }) => {
            assert_eq!((expected, got), (Offset(3), Offset(5)));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(matches!(
        log.append_at(Offset(2), vec![rec(2)]).await,
        Err(LogError::OffsetMismatch {
            expected: Offset(3),
            got: Offset(2)
        })
    ));
    assert_eq!(
        log.next_offset(),
        Offset(3),
        "a refused append writes nothing"
    );
    assert_eq!(log.append_at(Offset(3), vec![rec(3)]).await?, Offset(3));
    assert_eq!(read_all(&log, Offset(1)).await?.len(), 3);
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn oversized_records_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        max_record_bytes: 100,
        ..config(1 << 20)
    };
    let log = Log::open(dir.path(), cfg).await?;
    let res = log.append(vec![rec(1), Bytes::from(vec![0u8; 101])]).await;
    assert!(matches!(
        res,
        Err(LogError::RecordTooLarge { len: 101, max: 100 })
    ));
    assert_eq!(log.next_offset(), Offset(1));
    log.close().await?;
    Ok(())
}

/// A rough rate, not an assertion: `cargo test -p drc-log --release --test
/// log -- --ignored --nocapture append_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn append_rate() -> TestResult {
    for (appenders, size) in [
        (1usize, 200usize),
        (16, 200),
        (64, 200),
        (256, 200),
        (64, 4096),
    ] {
        let dir = tempfile::tempdir()?;
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).await?);
        let started = Instant::now();
        let run_for = Duration::from_secs(2);
        let mut tasks = Vec::new();
        for _ in 0..appenders {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let payload = Bytes::from(vec![1u8; size]);
                let mut n = 0u64;
                while started.elapsed() < run_for {
                    log.append(vec![payload.clone()]).await?;
                    n += 1;
                }
                Ok::<_, LogError>(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        let s = log.stats();
        eprintln!(
            "{appenders:>4} appenders, {size:>5} B records: {:>8.0} appends/s, {:>6.0} fsyncs/s, {:.1} appends per batch",
            total as f64 / secs,
            s.fsyncs as f64 / secs,
            s.appends as f64 / s.batches.max(1) as f64
        );
    }
    Ok(())
}
