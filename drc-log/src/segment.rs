//! Segment files: naming, the header, creation, and scanning a segment's
//! records with the torn-tail rule.
//!
//! A segment is `NNNNNNNNNNNNNNNNNNNN.seg`, named by the offset of its first
//! record, zero-padded to 20 digits so names sort like offsets. It starts with
//! a 24-byte header, then records (see `record.rs`) back to back:
//!
//! ```text
//! 0         8          12             20         24
//! +---------+----------+--------------+----------+------------------
//! | magic   | version  | first offset | crc      | records ...
//! | 8 bytes | u32le    | u64le        | u32le    |
//! +---------+----------+--------------+----------+------------------
//! ```
//!
//! `magic` is `DRCLOG\0\x01`, `version` is [`FORMAT_VERSION`], and `crc` is
//! CRC32C over the 20 bytes before it. The first offset is stored both in the
//! name and in the header; they must agree.
//!
//! **Torn tail versus corruption.** A crash can leave the end of the last
//! segment with a partial record, or a whole-length record whose bytes did not
//! all reach the disk (bad CRC). Neither was ever acknowledged, because the
//! writer acknowledges only after fsync. So in the last segment a bad record
//! *that no valid record follows* is a torn tail and is cut off. A bad record
//! followed by any valid record is corruption: a record is valid if it parses
//! at some later byte position, its offset is at or after the bad record's
//! expected offset (and small enough to fit in the bytes left), and its CRC
//! verifies. In a sealed (not last) segment every bad record is corruption, as
//! is a CRC-valid record with the wrong offset anywhere.
//!
//! What this cannot tell apart: after a *power loss* (not a process crash) a
//! file system may persist the pages of the last, unacknowledged batch out of
//! order, leaving a hole followed by valid records. That case is reported as
//! corruption rather than guessed at, because guessing wrong would drop
//! acknowledged records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::durable;
use crate::error::{LogError, Result};
use crate::record::{crc_of_offset, RecordHeader, RECORD_HEADER_LEN};
use crate::Offset;

/// The first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"DRCLOG\0\x01";
/// The on-disk format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const HEADER_LEN: u64 = 24;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Readers jump into a segment through a sparse in-memory index with about
/// one entry per this many bytes.
pub(crate) const INDEX_INTERVAL: u64 = 1 << 20;
/// Bytes read at a time while scanning forward.
const SCAN_CHUNK: usize = 1 << 20;
/// Bytes read at a time while looking backward for a sealed segment's last
/// record, which is usually small: open reads this much per segment.
const TAIL_CHUNK: usize = 64 << 10;

/// Where a segment's records can be read from: a file, or bytes in memory
/// (for tests of the scanning rules).
pub trait ReadAt {
    /// Reads into `buf` from byte `pos`; fewer bytes only at the end.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, pos)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let start = usize::try_from(pos).unwrap_or(usize::MAX).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
pub(crate) fn read_full_at<R: ReadAt + ?Sized>(
    src: &R,
    buf: &mut [u8],
    pos: u64,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match src.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The file name of the segment whose first record is `first`.
pub fn file_name(first: Offset) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", first.0)
}

/// The first offset a segment file name stands for; `None` if it is not a
/// segment name.
pub fn parse_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

/// The segment files in `dir`, oldest first. A `.seg` file whose name is not
/// a segment name is an error, not something to skip.
pub(crate) fn list(dir: &Path) -> Result<Vec<(Offset, PathBuf)>> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list log directory", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list log directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        match parse_file_name(name) {
            Some(first) if first.0 >= 1 => out.push((first, entry.path())),
            _ => {
                return Err(LogError::corrupt(
                    entry.path(),
                    0,
                    "a .seg file whose name is not a 20-digit first offset (>= 1); move it out of the log directory",
                ))
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Encodes a segment header.
pub fn encode_header(first: Offset) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first.0.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Reads and checks the header of the segment at `path`, which its name says
/// starts at `first`.
pub(crate) fn check_header<R: ReadAt + ?Sized>(src: &R, path: &Path, first: Offset) -> Result<()> {
    let mut h = [0u8; HEADER_LEN as usize];
    let n =
        read_full_at(src, &mut h, 0).map_err(|e| LogError::io("read segment header", path, e))?;
    if n < h.len() {
        return Err(LogError::corrupt(
            path,
            n as u64,
            format!("segment header is {n} bytes, expected {HEADER_LEN}"),
        ));
    }
    if h[0..8] != MAGIC {
        return Err(LogError::corrupt(
            path,
            0,
            "not a DRC log segment (bad magic)",
        ));
    }
    let stored_crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc32c::crc32c(&h[0..20]) != stored_crc {
        return Err(LogError::corrupt(path, 20, "segment header CRC mismatch"));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != FORMAT_VERSION {
        return Err(LogError::corrupt(
            path,
            8,
            format!(
                "unsupported segment format version {version} (this build reads {FORMAT_VERSION})"
            ),
        ));
    }
    let mut off = [0u8; 8];
    off.copy_from_slice(&h[12..20]);
    let stored_first = Offset(u64::from_le_bytes(off));
    if stored_first != first {
        return Err(LogError::corrupt(
            path,
            12,
            format!("header says the first offset is {stored_first}, the file name says {first}"),
        ));
    }
    Ok(())
}

/// Creates a new, empty segment: header written and fsync'd, and the new
/// name made durable in the directory. Returns the file open for writing.
pub(crate) fn create(dir: &Path, first: Offset) -> Result<(File, PathBuf)> {
    let path = dir.join(file_name(first));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| LogError::io("create segment", &path, e))?;
    f.write_all(&encode_header(first))
        .map_err(|e| LogError::io("write segment header", &path, e))?;
    f.sync_all()
        .map_err(|e| LogError::io("fsync new segment", &path, e))?;
    durable::sync_dir(dir)?;
    Ok((f, path))
}

/// Rewrites the header of an existing segment that holds no records (a crash
/// between creating it and its header reaching the disk).
pub(crate) fn rewrite_empty(path: &Path, first: Offset) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io("open segment", path, e))?;
    f.set_len(0)
        .map_err(|e| LogError::io("truncate segment", path, e))?;
    f.write_all_at(&encode_header(first), 0)
        .map_err(|e| LogError::io("write segment header", path, e))?;
    f.sync_all()
        .map_err(|e| LogError::io("fsync segment", path, e))
}

/// A torn tail found at the end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Byte position where the torn record starts (the clean end).
    pub pos: u64,
    /// Bytes from there to the end of the file.
    pub bytes: u64,
    /// What is wrong with the record there.
    pub reason: String,
}

/// What scanning a segment found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scan {
    /// Whole, valid records.
    pub records: u64,
    /// The offset after the last valid record.
    pub next: Offset,
    /// The byte position after the last valid record.
    pub end: u64,
    /// The torn tail after `end`, if any (only when the scan allowed one).
    pub torn: Option<TornTail>,
    /// Sparse index: (offset, byte position) of some records.
    pub index: Vec<(Offset, u64)>,
}

/// A forward-only window over a source, so scanning reads big chunks.
struct Window<'a, R: ?Sized> {
    src: &'a R,
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl<'a, R: ReadAt + ?Sized> Window<'a, R> {
    fn new(src: &'a R, chunk: usize) -> Self {
        Window {
            src,
            buf: vec![0; chunk],
            start: 0,
            len: 0,
        }
    }

    /// Up to `n` (<= the chunk size) bytes at `pos`, fewer only at the end.
    fn get(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let in_window = pos >= self.start && pos + n as u64 <= self.start + self.len as u64;
        if !in_window {
            self.start = pos;
            self.len = read_full_at(self.src, &mut self.buf, pos)?;
        }
        let from = (pos - self.start) as usize;
        let to = (from + n).min(self.len);
        Ok(&self.buf[from..to])
    }

    /// Whether the payload of the record with header `h` at `pos` matches
    /// its CRC. The caller knows the payload is inside the source.
    fn payload_ok(&mut self, pos: u64, h: &RecordHeader) -> io::Result<bool> {
        let mut crc = crc_of_offset(h.offset);
        let mut at = pos + RECORD_HEADER_LEN as u64;
        let end = pos + h.encoded_len();
        while at < end {
            let want = ((end - at) as usize).min(self.buf.len());
            let piece = self.get(at, want)?;
            if piece.is_empty() {
                return Ok(false);
            }
            crc = crc32c::crc32c_append(crc, piece);
            at += piece.len() as u64;
        }
        Ok(crc == h.crc)
    }
}

/// Scans the records of a segment from just after its header up to `size`
/// bytes, checking every CRC and that offsets run densely from `first`.
///
/// With `allow_torn_tail` (the last segment), a bad record at the end that no
/// valid record follows is returned as `torn`; otherwise it is an error.
pub(crate) fn scan<R: ReadAt + ?Sized>(
    src: &R,
    path: &Path,
    first: Offset,
    size: u64,
    allow_torn_tail: bool,
) -> Result<Scan> {
    let io_err = |e| LogError::io("read segment", path, e);
    let mut w = Window::new(src, SCAN_CHUNK);
    let mut out = Scan {
        next: first,
        end: HEADER_LEN,
        ..Scan::default()
    };
    let mut last_indexed = HEADER_LEN;
    let mut pos = HEADER_LEN;
    while pos < size {
        let expected = out.next;
        let head = w.get(pos, RECORD_HEADER_LEN).map_err(io_err)?;
        let bad = match RecordHeader::parse(head) {
            None => format!(
                "partial record header ({} of {RECORD_HEADER_LEN} bytes)",
                size - pos
            ),
            Some(h) if pos + h.encoded_len() > size => format!(
                "record of {} bytes runs past the end of the file ({} bytes left)",
                h.encoded_len(),
                size - pos
            ),
            Some(h) => {
                if w.payload_ok(pos, &h).map_err(io_err)? {
                    if h.offset != expected {
                        return Err(LogError::corrupt(
                            path,
                            pos,
                            format!("record has offset {}, expected {expected}", h.offset),
                        ));
                    }
                    if pos - last_indexed >= INDEX_INTERVAL {
                        out.index.push((h.offset, pos));
                        last_indexed = pos;
                    }
                    out.records += 1;
                    out.next = Offset(expected.0 + 1);
                    pos += h.encoded_len();
                    out.end = pos;
                    continue;
                }
                format!("record CRC mismatch (expected offset {expected})")
            }
        };
        if !allow_torn_tail {
            return Err(LogError::corrupt(path, pos, bad));
        }
        if let Some(valid) = find_valid_record(&mut w, pos + 1, size, expected).map_err(io_err)? {
            return Err(LogError::corrupt(
                path,
                pos,
                format!("{bad}, and a valid record follows at byte {valid}: not a torn tail"),
            ));
        }
        out.torn = Some(TornTail {
            pos,
            bytes: size - pos,
            reason: bad,
        });
        break;
    }
    Ok(out)
}

/// The first byte position in `[from, size)` where a valid record starts
/// whose offset is `expected` or later; see the module docs.
fn find_valid_record<R: ReadAt + ?Sized>(
    w: &mut Window<'_, R>,
    from: u64,
    size: u64,
    expected: Offset,
) -> io::Result<Option<u64>> {
    let mut pos = from;
    while pos + RECORD_HEADER_LEN as u64 <= size {
        // Look at a chunk of candidate positions at a time.
        let chunk_end = (pos + (SCAN_CHUNK - RECORD_HEADER_LEN) as u64)
            .min(size - RECORD_HEADER_LEN as u64 + 1);
        let mut candidates = Vec::new();
        {
            let bytes = w.get(pos, (chunk_end - pos) as usize + RECORD_HEADER_LEN - 1)?;
            let mut p = 0usize;
            while p + RECORD_HEADER_LEN <= bytes.len() {
                if let Some(h) = RecordHeader::parse(&bytes[p..]) {
                    let at = pos + p as u64;
                    let left = size - at;
                    let max_offset = expected.0.saturating_add(left / RECORD_HEADER_LEN as u64);
                    if h.offset >= expected && h.offset.0 <= max_offset && h.encoded_len() <= left {
                        candidates.push((at, h));
                    }
                }
                p += 1;
            }
        }
        for (at, h) in candidates {
            if w.payload_ok(at, &h)? {
                return Ok(Some(at));
            }
        }
        pos = chunk_end;
    }
    Ok(None)
}

/// Checks that a sealed segment of `size` bytes ends exactly with the record
/// `last` (the offset before the next segment's first), so there is no gap
/// between segments and no damage at its end. Reads backward from the end
/// only as far as that last record, not the whole segment.
pub(crate) fn check_sealed_end<R: ReadAt + ?Sized>(
    src: &R,
    path: &Path,
    size: u64,
    last: Offset,
) -> Result<()> {
    let io_err = |e| LogError::io("read segment", path, e);
    let mut w = Window::new(src, TAIL_CHUNK);
    let hl = RECORD_HEADER_LEN as u64;
    if size >= HEADER_LEN + hl {
        // Candidate start positions, from the end backward, a chunk at a time.
        let mut hi = size - hl; // highest candidate position
        loop {
            let lo = hi
                .saturating_sub((TAIL_CHUNK - RECORD_HEADER_LEN) as u64)
                .max(HEADER_LEN);
            let mut found = None;
            {
                let bytes = w
                    .get(lo, (hi - lo) as usize + RECORD_HEADER_LEN)
                    .map_err(io_err)?;
                let mut p = (hi - lo) as usize;
                loop {
                    if let Some(h) = bytes.get(p..).and_then(RecordHeader::parse) {
                        let at = lo + p as u64;
                        if h.offset == last && at + h.encoded_len() == size {
                            found = Some((at, h));
                            break;
                        }
                    }
                    if p == 0 {
                        break;
                    }
                    p -= 1;
                }
            }
            if let Some((at, h)) = found {
                if w.payload_ok(at, &h).map_err(io_err)? {
                    return Ok(());
                }
                // A look-alike inside a payload, or a damaged last record:
                // keep looking further back.
                if at == HEADER_LEN {
                    break;
                }
                hi = at - 1;
                continue;
            }
            if lo == HEADER_LEN {
                break;
            }
            hi = lo - 1;
        }
    }
    Err(LogError::corrupt(
        path,
        size,
        format!(
            "sealed segment does not end with record {last} (the next segment starts at {}): \
             records are missing between segments or the segment's end is damaged",
            Offset(last.0 + 1)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_into;
    use proptest::prelude::*;

    fn segment(first: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = encode_header(Offset(first)).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_into(&mut b, Offset(first + i as u64), p);
        }
        b
    }

    fn p() -> &'static Path {
        Path::new("00000000000000000001.seg")
    }

    #[test]
    fn names_sort_like_offsets() {
        assert_eq!(file_name(Offset(42)), "00000000000000000042.seg");
        assert_eq!(
            parse_file_name("00000000000000000042.seg"),
            Some(Offset(42))
        );
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
        assert!(file_name(Offset(9)) < file_name(Offset(10)));
    }

    #[test]
    fn header_checks() {
        let h = encode_header(Offset(5));
        assert!(check_header(&h[..], p(), Offset(5)).is_ok());
        let e = check_header(&h[..], p(), Offset(6))
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("file name says 6")));
        let mut bad = h;
        bad[13] ^= 1;
        assert!(matches!(
            check_header(&bad[..], p(), Offset(5)),
            Err(LogError::Corrupt { pos: 20, .. })
        ));
        assert!(matches!(
            check_header(&h[..10], p(), Offset(5)),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[test]
    fn clean_segment_scans() -> Result<()> {
        let b = segment(10, &[b"a", b"bb", b""]);
        let s = scan(&b[..], p(), Offset(10), b.len() as u64, false)?;
        assert_eq!(
            (s.records, s.next, s.end, s.torn),
            (3, Offset(13), b.len() as u64, None)
        );
        check_sealed_end(&b[..], p(), b.len() as u64, Offset(12))?;
        assert!(check_sealed_end(&b[..], p(), b.len() as u64, Offset(13)).is_err());
        Ok(())
    }

    #[test]
    fn partial_last_record_is_a_torn_tail() -> Result<()> {
        let whole = segment(1, &[b"one", b"two", b"three"]);
        let clean_end = segment(1, &[b"one", b"two"]).len() as u64;
        let cut = &whole[..whole.len() - 2];
        let s = scan(cut, p(), Offset(1), cut.len() as u64, true)?;
        assert_eq!(s.records, 2);
        assert_eq!(s.end, clean_end);
        assert_eq!(s.torn.map(|t| t.pos), Some(clean_end));
        // Not allowed in a sealed segment.
        let e = scan(cut, p(), Offset(1), cut.len() as u64, false);
        assert!(matches!(e, Err(LogError::Corrupt { pos, .. }) if pos == clean_end));
        Ok(())
    }

    #[test]
    fn bad_record_followed_by_a_valid_one_is_corruption() {
        let mut b = segment(1, &[b"one", b"two", b"three"]);
        let second = segment(1, &[b"one"]).len();
        b[second + RECORD_HEADER_LEN] ^= 0xff; // payload of record 2
        match scan(&b[..], p(), Offset(1), b.len() as u64, true) {
            Err(LogError::Corrupt { pos, reason, .. }) => {
                assert_eq!(pos, second as u64);
                assert!(reason.contains("valid record follows"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_length_mid_file_is_not_taken_for_a_torn_tail() {
        let mut b = segment(1, &[b"one", b"two", b"three"]);
        let second = segment(1, &[b"one"]).len();
        b[second + 3] = 0x7f; // length of record 2 now runs past the end
        assert!(matches!(
            scan(&b[..], p(), Offset(1), b.len() as u64, true),
            Err(LogError::Corrupt { pos, .. }) if pos == second as u64
        ));
    }

    #[test]
    fn valid_crc_with_wrong_offset_is_corruption() {
        let mut b = encode_header(Offset(1)).to_vec();
        encode_into(&mut b, Offset(1), b"a");
        encode_into(&mut b, Offset(3), b"c");
        assert!(matches!(
            scan(&b[..], p(), Offset(1), b.len() as u64, true),
            Err(LogError::Corrupt { reason, .. }) if reason.contains("offset 3, expected 2")
        ));
    }

    #[test]
    fn zero_filled_tail_is_torn() -> Result<()> {
        let mut b = segment(1, &[b"one"]);
        let end = b.len() as u64;
        b.extend_from_slice(&[0u8; 4096]);
        let s = scan(&b[..], p(), Offset(1), b.len() as u64, true)?;
        assert_eq!((s.records, s.end), (1, end));
        assert_eq!(s.torn.map(|t| t.bytes), Some(4096));
        Ok(())
    }

    proptest! {
        /// Any truncation of a valid segment scans to a clean prefix: never
        /// an error, never a panic.
        #[test]
        fn truncations_are_clean_prefixes(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20), cut in any::<prop::sample::Index>()) {
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let b = segment(1, &refs);
            let cut = HEADER_LEN as usize + cut.index(b.len() - HEADER_LEN as usize + 1);
            let s = scan(&b[..cut], p(), Offset(1), cut as u64, true);
            let s = match s { Ok(s) => s, Err(e) => return Err(TestCaseError::fail(e.to_string())) };
            let whole = segment(1, &refs[..s.records as usize]);
            prop_assert_eq!(s.end, whole.len() as u64);
            prop_assert!(s.end <= cut as u64);
            prop_assert_eq!(s.torn.is_some(), s.end < cut as u64);
        }

        /// Arbitrary bytes after a header: an error or a clean torn tail,
        /// never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = encode_header(Offset(1)).to_vec();
            b.extend_from_slice(&tail);
            match scan(&b[..], p(), Offset(1), b.len() as u64, true) {
                Ok(s) => prop_assert!(s.end <= b.len() as u64),
                Err(LogError::Corrupt { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
            let _ = check_sealed_end(&b[..], p(), b.len() as u64, Offset(3));
        }
    }
}
