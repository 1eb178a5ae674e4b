//! Offline binlog files: the same decoder as the live stream, fed from disk.
//!
//! A file starts with the 4-byte magic `\xfebin`; each event's size is in its
//! header. A truncated last event (a file copied while the server wrote it, or
//! cut short) is an error naming the offset, never a silent end. Gzip files
//! (`.gz`) are read through a decompressor.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::event::{EventHeader, HEADER_LEN};
use crate::assemble::AssembledTxn;
use crate::decoder::StreamDecoder;
use crate::error::{CaptureError, Result};

pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
/// Largest event accepted from a file (MySQL's max_allowed_packet ceiling).
pub const MAX_EVENT: usize = 1 << 30;

/// Reads `path` to its end, feeding every event to `decoder`.
pub fn read_file(
    path: &Path,
    decoder: &mut StreamDecoder,
    emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
) -> Result<()> {
    let shown = path.display().to_string();
    let f =
        File::open(path).map_err(|e| CaptureError::io(format!("open binlog file {shown}"), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".gz").to_string())
        .unwrap_or_default();
    let reader: Box<dyn Read> = if shown.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        )))
    } else {
        Box::new(f)
    };
    read_stream(reader, &name, &shown, decoder, emit)
}

/// Reads a binlog file's bytes from any reader.
pub fn read_stream(
    reader: impl Read,
    name: &str,
    shown: &str,
    decoder: &mut StreamDecoder,
    emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let bad = |reason: String| CaptureError::File {
        path: shown.to_string(),
        reason,
    };
    let mut magic = [0u8; 4];
    read_full(&mut r, &mut magic).map_err(|e| bad(format!("cannot read the magic: {e}")))?;
    if magic != MAGIC {
        return Err(bad(
            "not a binlog file (the first 4 bytes are not \\xfebin)".into(),
        ));
    }
    decoder.set_file(name, 4);
    let mut offset: u64 = 4;
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        buf.resize(HEADER_LEN, 0);
        let got = read_some(&mut r, &mut buf[..HEADER_LEN])
            .map_err(|e| bad(format!("read at offset {offset}: {e}")))?;
        if got == 0 {
            return Ok(());
        }
        if got < HEADER_LEN {
            return Err(bad(format!(
                "truncated event header at offset {offset} ({got} of {HEADER_LEN} bytes): the file is cut short"
            )));
        }
        let h = EventHeader::parse(&buf).map_err(|e| bad(e.to_string()))?;
        let size = h.event_size as usize;
        if !(HEADER_LEN..=MAX_EVENT).contains(&size) {
            return Err(bad(format!(
                "event at offset {offset} claims an impossible size of {size} bytes"
            )));
        }
        // Grow with the bytes that arrive, not with what a (possibly garbage)
        // header claims.
        buf.truncate(HEADER_LEN);
        let got = (&mut r)
            .take((size - HEADER_LEN) as u64)
            .read_to_end(&mut buf)
            .map_err(|e| bad(format!("read at offset {offset}: {e}")))?;
        if got < size - HEADER_LEN {
            return Err(bad(format!(
                "truncated event at offset {offset}: {} of {size} bytes present; the file is cut short",
                got + HEADER_LEN
            )));
        }
        decoder.feed(&buf, emit)?;
        offset += size as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf)
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
