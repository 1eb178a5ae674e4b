//! Readers: sequential reads from any retained offset, then tailing.
//!
//! A reader reads the segment files itself (`pread` into a 64 KiB buffer),
//! so its memory is that buffer plus the record it returns, whatever the
//! backlog and however many readers there are. It returns only records the
//! writer has acknowledged (fsync'd): it reads record `n` only once the
//! published committed end is past `n`, and waits on that published value
//! (a `tokio::sync::watch`) when it has caught up, with no polling.
//!
//! Every record read is checked: its offset must be the next expected one
//! and its CRC must match; a segment must end exactly where the next one
//! starts. Anything else is [`LogError::Corrupt`] naming the file and byte.
//! Bytes past the committed end may still be being written, so a check that
//! fails on buffered bytes is retried once on bytes read afresh before it
//! counts as corruption.
//!
//! To start in the middle of a segment a reader jumps to the nearest entry
//! of the sparse index the writer keeps (one per ~1 MiB) and reads headers
//! forward from there; segments sealed before the log was opened have no
//! index, so the reader reads their headers from the start.
//!
//! Reads are plain blocking `pread`s of at most one buffer or one record per
//! call, normally served from the page cache; a reader that must not block
//! its runtime thread at all can be driven from `spawn_blocking` with
//! [`LogReader::try_next`].

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::{LogError, Result};
use crate::log::Shared;
use crate::record::{RecordHeader, RECORD_HEADER_LEN};
use crate::segment::{self, read_full_at, HEADER_LEN};
use crate::Offset;

/// Bytes a reader reads at a time; records up to this size are served from
/// its buffer, larger ones are read straight into their own allocation.
const READ_BUF: usize = 64 << 10;

/// One open segment and a buffered window over it.
struct Cursor {
    first: Offset,
    path: PathBuf,
    file: File,
    /// Byte position of the next record.
    pos: u64,
    win: Window,
}

/// The reader's buffer: bytes `[start, start + len)` of the segment.
struct Window {
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl Window {
    /// Up to `n` (<= READ_BUF) bytes at `pos`; fewer only at the end of
    /// the file.
    fn get(&mut self, file: &File, path: &Path, pos: u64, n: usize) -> Result<&[u8]> {
        let end = self.start + self.len as u64;
        if pos < self.start || pos + n as u64 > end {
            self.start = pos;
            self.len = read_full_at(file, &mut self.buf, pos)
                .map_err(|e| LogError::io("read segment", path, e))?;
        }
        let from = (pos - self.start) as usize;
        Ok(&self.buf[from..(from + n).min(self.len)])
    }
}

impl Cursor {
    fn open(first: Offset, path: PathBuf, pos: u64, buf: Vec<u8>) -> io::Result<Cursor> {
        let file = File::open(&path)?;
        Ok(Cursor {
            first,
            path,
            file,
            pos,
            win: Window {
                buf,
                start: 0,
                len: 0,
            },
        })
    }

    fn window(&mut self, pos: u64, n: usize) -> Result<&[u8]> {
        self.win.get(&self.file, &self.path, pos, n)
    }

    fn forget_buffer(&mut self) {
        self.win.len = 0;
    }
}

/// What one attempt at reading the next record found.
enum Step {
    Record(Offset, Bytes),
    /// No bytes left in this segment: the record is in the next one.
    EndOfSegment,
    /// A check failed; retried once with fresh bytes before it is final.
    Bad(LogError),
}

/// Reads a log in offset order from a starting offset; see the module docs.
pub struct LogReader {
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
    /// The offset the next call returns.
    next: Offset,
    cursor: Option<Cursor>,
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>, from: Offset) -> Result<LogReader> {
        let from = {
            let st = shared.state();
            let first = st.first_offset();
            let from = if from == Offset::ZERO { first } else { from };
            if from < first {
                return Err(LogError::Deleted {
                    requested: from,
                    first_available: first,
                });
            }
            if from > st.next {
                return Err(LogError::BeyondEnd {
                    requested: from,
                    next: st.next,
                });
            }
            from
        };
        Ok(LogReader {
            committed: shared.committed.clone(),
            shared,
            next: from,
            cursor: None,
        })
    }

    /// The offset the next record returned will have.
    pub fn position(&self) -> Offset {
        self.next
    }

    /// The next record if one is acknowledged already; `None` at the end.
    pub fn try_next(&mut self) -> Result<Option<(Offset, Bytes)>> {
        if self.next.0 >= *self.committed.borrow() {
            return Ok(None);
        }
        self.read_one().map(Some)
    }

    /// The next record, waiting for it to be appended if the reader is at
    /// the end. [`LogError::Closed`] once the log is closed and everything
    /// acknowledged has been read. Cancel-safe: dropping the future loses
    /// nothing.
    pub async fn next(&mut self) -> Result<(Offset, Bytes)> {
        loop {
            if let Some(r) = self.try_next()? {
                return Ok(r);
            }
            let want = self.next.0;
            if self.committed.wait_for(|&c| c > want).await.is_err() {
                return self.try_next()?.ok_or(LogError::Closed);
            }
        }
    }

    fn read_one(&mut self) -> Result<(Offset, Bytes)> {
        if self.cursor.is_none() {
            self.seek()?;
        }
        let mut retried = false;
        loop {
            match self.attempt()? {
                Step::Record(o, b) => return Ok((o, b)),
                Step::EndOfSegment => {
                    self.switch_segment()?;
                    retried = false;
                }
                Step::Bad(e) if retried => return Err(e),
                Step::Bad(_) => {
                    if let Some(c) = self.cursor.as_mut() {
                        c.forget_buffer();
                    }
                    retried = true;
                }
            }
        }
    }

    /// Reads the record at the cursor, which must be `self.next`.
    fn attempt(&mut self) -> Result<Step> {
        let expected = self.next;
        let Some(c) = self.cursor.as_mut() else {
            return Err(LogError::Closed);
        };
        let pos = c.pos;
        let head = c.window(pos, RECORD_HEADER_LEN)?;
        if head.is_empty() {
            return Ok(Step::EndOfSegment);
        }
        let Some(h) = RecordHeader::parse(head) else {
            return Ok(Step::Bad(LogError::corrupt(
                &c.path,
                pos,
                format!("segment ends inside the header of record {expected}"),
            )));
        };
        if h.offset != expected {
            return Ok(Step::Bad(LogError::corrupt(
                &c.path,
                pos,
                format!("record has offset {}, expected {expected}", h.offset),
            )));
        }
        let total = h.encoded_len();
        let payload = if total <= READ_BUF as u64 {
            let verdict = match c
                .win
                .get(&c.file, &c.path, pos, total as usize)?
                .get(RECORD_HEADER_LEN..)
            {
                Some(p) if p.len() as u64 + RECORD_HEADER_LEN as u64 == total => {
                    if h.verify(p) {
                        Ok(Bytes::copy_from_slice(p))
                    } else {
                        Err(crc_mismatch(&c.path, pos, expected))
                    }
                }
                _ => Err(cut_short(&c.path, pos, expected)),
            };
            match verdict {
                Ok(b) => b,
                Err(e) => return Ok(Step::Bad(e)),
            }
        } else {
            let size = c
                .file
                .metadata()
                .map_err(|e| LogError::io("stat segment", &c.path, e))?
                .len();
            if pos + total > size {
                return Ok(Step::Bad(cut_short(&c.path, pos, expected)));
            }
            let mut v = vec![0u8; h.len as usize];
            let n = read_full_at(&c.file, &mut v, pos + RECORD_HEADER_LEN as u64)
                .map_err(|e| LogError::io("read segment", &c.path, e))?;
            if n < v.len() {
                return Ok(Step::Bad(cut_short(&c.path, pos, expected)));
            }
            if !h.verify(&v) {
                return Ok(Step::Bad(crc_mismatch(&c.path, pos, expected)));
            }
            Bytes::from(v)
        };
        c.pos = pos + total;
        self.next = expected.next();
        Ok(Step::Record(expected, payload))
    }

    /// Opens the segment holding `self.next` and moves to its record.
    fn seek(&mut self) -> Result<()> {
        let from = self.next;
        let (first, path, mut at, mut pos) = {
            let st = self.shared.state();
            let first_available = st.first_offset();
            if from < first_available {
                return Err(LogError::Deleted {
                    requested: from,
                    first_available,
                });
            }
            let i = st.segments.partition_point(|s| s.first <= from);
            let Some(seg) = i.checked_sub(1).and_then(|i| st.segments.get(i)) else {
                return Err(LogError::Deleted {
                    requested: from,
                    first_available,
                });
            };
            let (at, pos) = seg
                .index
                .iter()
                .rev()
                .find(|(o, _)| *o <= from)
                .copied()
                .unwrap_or((seg.first, HEADER_LEN));
            (seg.first, seg.path.clone(), at, pos)
        };
        let mut c = self.open_cursor(first, path, pos, vec![0; READ_BUF])?;
        while at < from {
            let h = RecordHeader::parse(c.window(pos, RECORD_HEADER_LEN)?);
            let Some(h) = h.filter(|h| h.offset == at) else {
                return Err(LogError::corrupt(
                    &c.path,
                    pos,
                    format!("expected record {at} here while seeking to {from}"),
                ));
            };
            pos += h.encoded_len();
            at = at.next();
        }
        c.pos = pos;
        self.cursor = Some(c);
        Ok(())
    }

    /// At the end of a segment: move to the next one, which must start at
    /// `self.next`.
    fn switch_segment(&mut self) -> Result<()> {
        let Some(old) = self.cursor.take() else {
            return self.seek();
        };
        let target = {
            let st = self.shared.state();
            let first_available = st.first_offset();
            if first_available > self.next {
                return Err(LogError::Deleted {
                    requested: self.next,
                    first_available,
                });
            }
            st.segments
                .iter()
                .find(|s| s.first > old.first)
                .map(|s| (s.first, s.path.clone()))
        };
        match target {
            Some((first, path)) if first == self.next => {
                let c = self.open_cursor(first, path, HEADER_LEN, old.win.buf)?;
                self.cursor = Some(c);
                Ok(())
            }
            Some((first, _)) => Err(LogError::corrupt(
                &old.path,
                old.pos,
                format!(
                    "segment ends before record {}, but the next segment starts at {first}",
                    self.next
                ),
            )),
            None => Err(LogError::corrupt(
                &old.path,
                old.pos,
                format!(
                    "segment ends before record {}, which the log has acknowledged",
                    self.next
                ),
            )),
        }
    }

    fn open_cursor(&self, first: Offset, path: PathBuf, pos: u64, buf: Vec<u8>) -> Result<Cursor> {
        match Cursor::open(first, path.clone(), pos, buf) {
            Ok(c) => {
                segment::check_header(&c.file, &c.path, first)?;
                Ok(c)
            }
            // Retention removed it between the lookup and the open.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LogError::Deleted {
                requested: self.next,
                first_available: self.shared.state().first_offset(),
            }),
            Err(e) => Err(LogError::io("open segment", path, e)),
        }
    }
}

fn crc_mismatch(path: &Path, pos: u64, offset: Offset) -> LogError {
    LogError::corrupt(path, pos, format!("record {offset} fails its CRC check"))
}

fn cut_short(path: &Path, pos: u64, offset: Offset) -> LogError {
    LogError::corrupt(
        path,
        pos,
        format!("record {offset} is cut short by the end of the segment"),
    )
}
