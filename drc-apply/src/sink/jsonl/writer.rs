//! Where the lines go: standard output, or a file rotated by size.
//!
//! The file is appended to. When it is opened, a trailing line without its
//! newline (the unsynced end of a batch cut short by a crash) is cut off:
//! every checkpointed line was fsync'd whole before its checkpoint was
//! written, so what is cut is always repeated by the next run.
//!
//! Rotation renames the full file to `<path>.<NNNNNN>` (numbers increase, so
//! the rotated files in numeric order followed by `<path>` hold the whole
//! sequence) after syncing it, and syncs the directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{ApplyError, Result};

fn io(context: String) -> impl FnOnce(std::io::Error) -> ApplyError {
    move |source| ApplyError::Io { context, source }
}

/// Syncs the directory holding `path`, so a create or rename in it survives
/// a crash.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = parent(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync directory {}", dir.display())))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The output of the sink.
pub(crate) enum Output {
    Stdout,
    File(RotatingFile),
}

impl Output {
    /// Writes whole lines: `buf` holds them back to back, `ends[i]` is the
    /// end of line `i` in `buf`.
    pub(crate) fn write_lines(&mut self, buf: &[u8], ends: &[usize]) -> Result<()> {
        match self {
            Output::Stdout => std::io::stdout()
                .lock()
                .write_all(buf)
                .map_err(io("write to standard output".into())),
            Output::File(f) => f.write_lines(buf, ends),
        }
    }

    /// Makes what was written durable (files), or at least handed on
    /// (standard output).
    pub(crate) fn sync(&mut self) -> Result<()> {
        match self {
            Output::Stdout => std::io::stdout()
                .lock()
                .flush()
                .map_err(io("flush standard output".into())),
            Output::File(f) => f.sync(),
        }
    }
}

/// An append-only file, rotated by size.
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// Rotate before a line that would take the file past this (0: never).
    max: u64,
    /// Suffix of the next rotated file.
    next_suffix: u64,
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending; repairs a torn last line.
    pub(crate) fn open(path: &Path, max: u64) -> Result<Self> {
        let dir = parent(path);
        std::fs::create_dir_all(&dir).map_err(io(format!("create directory {}", dir.display())))?;
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io(format!("open {}", path.display())))?;
        if !existed {
            sync_dir(path)?;
        }
        let size = repair(&mut file, path)?;
        let next_suffix = last_suffix(path)? + 1;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max,
            next_suffix,
        })
    }

    fn write_lines(&mut self, buf: &[u8], ends: &[usize]) -> Result<()> {
        let mut from = 0;
        let mut start = 0;
        let mut size = self.size;
        for &end in ends {
            let len = (end - start) as u64;
            if self.max > 0 && size > 0 && size + len > self.max {
                self.append(&buf[from..start])?;
                self.rotate()?;
                from = start;
                size = 0;
            }
            size += len;
            start = end;
        }
        self.append(&buf[from..])
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .map_err(io(format!("write {}", self.path.display())))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(io(format!("fsync {}", self.path.display())))
    }

    /// Syncs the full file, moves it aside under the next number and starts
    /// an empty one.
    fn rotate(&mut self) -> Result<()> {
        self.sync()?;
        let to = suffixed(&self.path, self.next_suffix);
        if to.exists() {
            return Err(ApplyError::Definite {
                sink: "jsonl".into(),
                offset: 0,
                message: format!(
                    "cannot rotate {}: {} already exists",
                    self.path.display(),
                    to.display()
                ),
            });
        }
        std::fs::rename(&self.path, &to).map_err(io(format!(
            "rename {} to {}",
            self.path.display(),
            to.display()
        )))?;
        self.next_suffix += 1;
        self.file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io(format!("create {}", self.path.display())))?;
        sync_dir(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `<path>.<NNNNNN>`.
pub(crate) fn suffixed(path: &Path, n: u64) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n:06}"));
    PathBuf::from(s)
}

/// The highest rotation number present next to `path` (0: none).
fn last_suffix(path: &Path) -> Result<u64> {
    let dir = parent(path);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(0);
    };
    let prefix = format!("{name}.");
    let mut last = 0;
    let entries =
        std::fs::read_dir(&dir).map_err(io(format!("list directory {}", dir.display())))?;
    for e in entries {
        let e = e.map_err(io(format!("list directory {}", dir.display())))?;
        let file_name = e.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        last = last.max(n);
    }
    Ok(last)
}

/// Cuts a last line that lacks its newline; returns the file's size.
fn repair(file: &mut File, path: &Path) -> Result<u64> {
    let ctx = || format!("read the end of {}", path.display());
    let len = file.metadata().map_err(io(ctx()))?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 << 10];
    let mut first = true;
    while end > 0 {
        let n = chunk.len().min(end as usize);
        let at = end - n as u64;
        file.seek(SeekFrom::Start(at)).map_err(io(ctx()))?;
        file.read_exact(&mut chunk[..n]).map_err(io(ctx()))?;
        if first && chunk[n - 1] == b'\n' {
            return Ok(len);
        }
        first = false;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            end = at + i as u64 + 1;
            break;
        }
        end = at;
    }
    tracing::warn!(
        file = %path.display(),
        cut_bytes = len - end,
        "cutting a torn last line (it is written again)"
    );
    file.set_len(end)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("truncate {}", path.display())))?;
    Ok(end)
}
