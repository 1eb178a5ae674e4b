//! Opening a log directory after a clean stop or a crash.
//!
//! In order: create the directory if missing, take the `LOCK` file lock,
//! remove left-over temp files, list the segments (creating the first one,
//! at offset 1, for a new log), check every header, check that every sealed
//! segment ends exactly where the next one starts (reading backward only over
//! its last record), then scan the last segment record by record. A torn tail
//! there is truncated and fsync'd, with a warning naming the file and byte.
//!
//! A last segment that holds no records and whose header is damaged is a
//! crash between creating the file and its header reaching the disk: its
//! header is rewritten from its name. Every other problem is an error.
//!
//! Sealed segments are not read in full on open (that would read the whole
//! log); their records are checked by readers as they read them, and all of
//! them by [`crate::check`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::durable::{self, TEMP_SUFFIX};
use crate::error::{LogError, Result};
use crate::log::SegmentMeta;
use crate::retention;
use crate::segment::{self, HEADER_LEN};
use crate::Offset;

/// Name of the lock file in the log directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The segment being written, as recovery left it.
pub(crate) struct Active {
    pub file: File,
    pub path: PathBuf,
    /// Byte position after the last whole record.
    pub end: u64,
    /// Byte position of the last index entry (or the header end).
    pub last_indexed: u64,
}

/// A log directory, checked and ready for the writer.
pub(crate) struct Recovered {
    pub dir: PathBuf,
    pub lock: File,
    pub segments: Vec<SegmentMeta>,
    pub next: Offset,
    pub active: Active,
    pub subscribers: BTreeMap<String, Offset>,
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered> {
    durable::create_dir(dir)?;
    let lock = take_lock(dir)?;
    remove_temp_files(dir)?;
    let subscribers = retention::load_subscribers(dir)?;

    let mut list = segment::list(dir)?;
    if list.is_empty() {
        let (_, path) = segment::create(dir, Offset::FIRST)?;
        list.push((Offset::FIRST, path));
    }

    let mut segments = Vec::with_capacity(list.len());
    let last_i = list.len() - 1;
    for (i, (first, path)) in list.iter().enumerate() {
        let f = File::open(path).map_err(|e| LogError::io("open segment", path, e))?;
        let size = f
            .metadata()
            .map_err(|e| LogError::io("stat segment", path, e))?
            .len();
        if let Err(e) = segment::check_header(&f, path, *first) {
            if i == last_i && size <= HEADER_LEN {
                tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "last log segment holds no records and its header is incomplete (crash while creating it); rewriting the header"
                );
                segment::rewrite_empty(path, *first)?;
            } else {
                return Err(e);
            }
        }
        if let Some((next_first, _)) = list.get(i + 1) {
            segment::check_sealed_end(&f, path, size, next_first.prev())?;
        }
        segments.push(SegmentMeta {
            first: *first,
            path: path.clone(),
            bytes: size.max(HEADER_LEN),
            index: Vec::new(),
        });
    }

    let (first, path) = list[last_i].clone();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io("open segment", &path, e))?;
    let size = file
        .metadata()
        .map_err(|e| LogError::io("stat segment", &path, e))?
        .len();
    let scan = segment::scan(&file, &path, first, size, true)?;
    if let Some(torn) = &scan.torn {
        tracing::warn!(
            file = %path.display(),
            pos = torn.pos,
            bytes = torn.bytes,
            next_offset = scan.next.0,
            reason = %torn.reason,
            "log ends with a torn (never acknowledged) write; truncating it"
        );
        file.set_len(scan.end)
            .map_err(|e| LogError::io("truncate torn tail of segment", &path, e))?;
        file.sync_all()
            .map_err(|e| LogError::io("fsync segment after truncation", &path, e))?;
    }
    let last_indexed = scan.index.last().map_or(HEADER_LEN, |&(_, pos)| pos);
    if let Some(meta) = segments.last_mut() {
        meta.bytes = scan.end;
        meta.index = scan.index;
    }
    tracing::debug!(
        dir = %dir.display(),
        segments = segments.len(),
        next_offset = scan.next.0,
        "log opened"
    );
    Ok(Recovered {
        dir: dir.to_path_buf(),
        lock,
        segments,
        next: scan.next,
        active: Active {
            file,
            path,
            end: scan.end,
            last_indexed,
        },
        subscribers,
    })
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LogError::io("open lock file", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(LogError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(LogError::io("lock", &path, e)),
    }
}

fn remove_temp_files(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list log directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list log directory", dir, e))?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            let p = entry.path();
            fs::remove_file(&p).map_err(|e| LogError::io("remove left-over temp file", &p, e))?;
        }
    }
    Ok(())
}
