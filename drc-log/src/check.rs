//! Offline verification of a log directory (`drc log check`).
//!
//! Reads every segment in full: every header, every record's CRC, offsets
//! dense within and across segments, no empty sealed segment. A torn tail at
//! the end of the last segment is reported, not fixed (opening the log cuts
//! it off). Any other damage is an error naming the file and byte.
//!
//! It takes no lock and changes nothing, so it can run beside a live relay;
//! then a write in progress at the very end may show up as a torn tail.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{LogError, Result};
use crate::retention::load_subscribers;
use crate::segment::{self, TornTail, HEADER_LEN};
use crate::Offset;

/// One segment as `check` found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// The segment file.
    pub path: PathBuf,
    /// Its first offset.
    pub first: Offset,
    /// Its last valid offset; `None` if it holds no records.
    pub last: Option<Offset>,
    /// Whole, valid records in it.
    pub records: u64,
    /// File size in bytes.
    pub bytes: u64,
}

/// What `check` found in a log directory that is not corrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The directory checked.
    pub dir: PathBuf,
    /// Every segment, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Records in all segments.
    pub records: u64,
    /// The first offset held.
    pub first_offset: Offset,
    /// The last valid offset; `None` if there are no records.
    pub last_offset: Option<Offset>,
    /// Bytes in all segment files.
    pub bytes: u64,
    /// A torn tail at the end of the last segment (its file and where).
    pub torn_tail: Option<(PathBuf, TornTail)>,
    /// Registered subscribers and their confirmed positions.
    pub subscribers: Vec<(String, Offset)>,
}

/// Verifies the log in `dir` without changing it; see the module docs.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let meta = std::fs::metadata(dir).map_err(|e| LogError::io("open log directory", dir, e))?;
    if !meta.is_dir() {
        return Err(LogError::NotALog { path: dir.into() });
    }
    let list = segment::list(dir)?;
    let Some((first_offset, _)) = list.first().cloned() else {
        return Err(LogError::NotALog { path: dir.into() });
    };
    let mut report = CheckReport {
        dir: dir.into(),
        segments: Vec::with_capacity(list.len()),
        records: 0,
        first_offset,
        last_offset: None,
        bytes: 0,
        torn_tail: None,
        subscribers: load_subscribers(dir)?.into_iter().collect(),
    };
    let mut expected = first_offset;
    let last_i = list.len() - 1;
    for (i, (first, path)) in list.iter().enumerate() {
        let is_last = i == last_i;
        let f = File::open(path).map_err(|e| LogError::io("open segment", path, e))?;
        let size = f
            .metadata()
            .map_err(|e| LogError::io("stat segment", path, e))?
            .len();
        report.bytes += size;
        if *first != expected {
            return Err(LogError::corrupt(
                path,
                0,
                format!(
                    "segment starts at offset {first} but the previous segment ends at {}: {}",
                    expected.prev(),
                    if *first > expected {
                        "records are missing"
                    } else {
                        "segments overlap"
                    }
                ),
            ));
        }
        if let Err(e) = segment::check_header(&f, path, *first) {
            if is_last && size <= HEADER_LEN {
                // A crash while creating the segment: nothing in it to lose.
                report.torn_tail = Some((
                    path.clone(),
                    TornTail {
                        pos: 0,
                        bytes: size,
                        reason: format!("incomplete header of an empty segment ({e})"),
                    },
                ));
                report.segments.push(SegmentReport {
                    path: path.clone(),
                    first: *first,
                    last: None,
                    records: 0,
                    bytes: size,
                });
                continue;
            }
            return Err(e);
        }
        let scan = segment::scan(&f, path, *first, size, is_last)?;
        if !is_last && scan.records == 0 {
            return Err(LogError::corrupt(
                path,
                HEADER_LEN,
                "a sealed segment with no records",
            ));
        }
        if let Some(t) = scan.torn {
            report.torn_tail = Some((path.clone(), t));
        }
        report.records += scan.records;
        report.segments.push(SegmentReport {
            path: path.clone(),
            first: *first,
            last: (scan.records > 0).then(|| scan.next.prev()),
            records: scan.records,
            bytes: size,
        });
        expected = scan.next;
    }
    report.last_offset = (expected > first_offset).then(|| expected.prev());
    Ok(report)
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "log {}: OK", self.dir.display())?;
        match self.last_offset {
            Some(last) => writeln!(
                f,
                "  records: {} (offsets {} to {})",
                self.records, self.first_offset, last
            )?,
            None => writeln!(f, "  records: 0 (next offset {})", self.first_offset)?,
        }
        writeln!(
            f,
            "  bytes: {} in {} segments",
            self.bytes,
            self.segments.len()
        )?;
        for s in &self.segments {
            let name = s
                .path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            match s.last {
                Some(last) => writeln!(
                    f,
                    "    {name}: {} records, offsets {} to {last}, {} bytes",
                    s.records, s.first, s.bytes
                )?,
                None => writeln!(f, "    {name}: empty, {} bytes", s.bytes)?,
            }
        }
        match &self.torn_tail {
            Some((path, t)) => writeln!(
                f,
                "  torn tail: {} bytes at byte {} of {} ({}); never acknowledged, cut off when the log is next opened",
                t.bytes,
                t.pos,
                path.display(),
                t.reason
            )?,
            None => writeln!(f, "  torn tail: none")?,
        }
        if self.subscribers.is_empty() {
            writeln!(f, "  subscribers: none")?;
        } else {
            writeln!(f, "  subscribers:")?;
            for (name, pos) in &self.subscribers {
                writeln!(f, "    {name}: confirmed through {pos}")?;
            }
        }
        Ok(())
    }
}
