//! Decoders for the bodies of the events that frame transactions: QUERY, XID,
//! ROTATE, GTIDs (MySQL, tagged MySQL, MariaDB), GTID_LIST, BINLOG_CHECKPOINT,
//! ANNOTATE_ROWS, TRANSACTION_PAYLOAD and MariaDB's compressed forms.
//!
//! Row and table-map events live in [`super::rows`] and [`super::table_map`].
//! Every decoder takes the body that [`super::event::RawEvent`] split off and
//! returns an error, never a panic, on malformed bytes.

use std::io::Read;

use super::cursor::Cursor;
use super::event::{types, FormatDescription};
use crate::position::MariaGtid;

/// A QUERY (or decompressed QUERY_COMPRESSED) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEvent {
    pub thread_id: u32,
    pub error_code: u16,
    pub db: String,
    pub query: String,
}

pub fn parse_query(
    body: &[u8],
    fde: &FormatDescription,
    compressed: bool,
) -> Result<QueryEvent, String> {
    let post = fde.post_header_len(types::QUERY, 13).max(13);
    let mut c = Cursor::new(body);
    let e = |x: super::cursor::Short| format!("QUERY: {x}");
    let thread_id = c.u32("thread id").map_err(e)?;
    c.skip(4, "exec time").map_err(e)?;
    let db_len = usize::from(c.u8("db length").map_err(e)?);
    let error_code = c.u16("error code").map_err(e)?;
    let status_len = usize::from(c.u16("status vars length").map_err(e)?);
    c.skip(post - 13, "post header").map_err(e)?;
    c.skip(status_len, "status vars").map_err(e)?;
    let db = c.take(db_len, "db name").map_err(e)?;
    c.skip(1, "db terminator").map_err(e)?;
    let raw = c.rest();
    let text = if compressed {
        let plain = mariadb_uncompress(raw).map_err(|x| format!("QUERY_COMPRESSED: {x}"))?;
        String::from_utf8(plain)
            .map_err(|_| "QUERY_COMPRESSED: statement is not UTF-8".to_string())?
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    Ok(QueryEvent {
        thread_id,
        error_code,
        db: String::from_utf8_lossy(db).into_owned(),
        query: text,
    })
}

/// A ROTATE event: the next file and the position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateEvent {
    pub pos: u64,
    pub file: String,
}

pub fn parse_rotate(body: &[u8]) -> Result<RotateEvent, String> {
    let mut c = Cursor::new(body);
    let pos = c.u64("position").map_err(|x| format!("ROTATE: {x}"))?;
    let name = c.rest();
    let file = String::from_utf8(name.to_vec())
        .map_err(|_| "ROTATE: file name is not UTF-8".to_string())?;
    if file.is_empty() {
        return Err("ROTATE: empty file name".into());
    }
    Ok(RotateEvent { pos, file })
}

pub fn parse_xid(body: &[u8]) -> Result<u64, String> {
    Cursor::new(body)
        .u64("xid")
        .map_err(|x| format!("XID: {x}"))
}

/// MariaDB GTID event flags.
pub mod maria_flags {
    pub const STANDALONE: u8 = 1;
    pub const GROUP_COMMIT_ID: u8 = 2;
    pub const TRANSACTIONAL: u8 = 4;
    pub const DDL: u8 = 32;
    pub const PREPARED_XA: u8 = 64;
    pub const COMPLETED_XA: u8 = 128;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtidEvent {
    pub gtid: MariaGtid,
    pub flags: u8,
}

impl MariaGtidEvent {
    pub fn standalone(&self) -> bool {
        self.flags & maria_flags::STANDALONE != 0
    }
}

pub fn parse_maria_gtid(body: &[u8], server_id: u32) -> Result<MariaGtidEvent, String> {
    let mut c = Cursor::new(body);
    let e = |x| format!("MariaDB GTID: {x}");
    let seq = c.u64("seq_no").map_err(e)?;
    let domain = c.u32("domain id").map_err(e)?;
    let flags = c.u8("flags").map_err(e)?;
    Ok(MariaGtidEvent {
        gtid: MariaGtid {
            domain,
            server_id,
            seq,
        },
        flags,
    })
}

pub fn parse_maria_gtid_list(body: &[u8]) -> Result<Vec<MariaGtid>, String> {
    let mut c = Cursor::new(body);
    let e = |x| format!("GTID_LIST: {x}");
    let count = c.u32("count").map_err(e)? & 0x0fff_ffff;
    let mut out = Vec::new();
    for _ in 0..count {
        let domain = c.u32("domain").map_err(e)?;
        let server_id = c.u32("server id").map_err(e)?;
        let seq = c.u64("seq").map_err(e)?;
        out.push(MariaGtid {
            domain,
            server_id,
            seq,
        });
    }
    Ok(out)
}

pub fn parse_binlog_checkpoint(body: &[u8]) -> Result<String, String> {
    let mut c = Cursor::new(body);
    let n = c
        .u32("name length")
        .map_err(|x| format!("BINLOG_CHECKPOINT: {x}"))? as usize;
    let name = c
        .take(n, "name")
        .map_err(|x| format!("BINLOG_CHECKPOINT: {x}"))?;
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// A MySQL GTID: source UUID, optional tag, transaction number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlGtid {
    pub uuid: String,
    pub tag: String,
    pub gno: u64,
}

impl std::fmt::Display for MysqlGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tag.is_empty() {
            write!(f, "{}:{}", self.uuid, self.gno)
        } else {
            write!(f, "{}:{}:{}", self.uuid, self.tag, self.gno)
        }
    }
}

pub fn format_uuid(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Parses GTID (33) and ANONYMOUS_GTID (34); anonymous gives `None`.
pub fn parse_mysql_gtid(body: &[u8], type_code: u8) -> Result<Option<MysqlGtid>, String> {
    let mut c = Cursor::new(body);
    let e = |x| format!("GTID: {x}");
    c.skip(1, "flags").map_err(e)?;
    let sid = c.take(16, "source uuid").map_err(e)?;
    let gno = c.u64("gno").map_err(e)?;
    if type_code == types::ANONYMOUS_GTID {
        return Ok(None);
    }
    Ok(Some(MysqlGtid {
        uuid: format_uuid(sid),
        tag: String::new(),
        gno,
    }))
}

/// Reads MySQL's serialization-framework variable-length unsigned integer: the
/// number of trailing one bits of the first byte is the number of extra bytes.
fn read_varlen_u64(c: &mut Cursor<'_>) -> Result<u64, String> {
    let first = c.u8("varlen integer").map_err(|x| x.to_string())?;
    let extra = (first.trailing_ones() as usize).min(8);
    let rest = c.take(extra, "varlen integer").map_err(|x| x.to_string())?;
    let mut v: u64 = 0;
    for (i, b) in rest.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    if extra >= 8 {
        return Ok(v);
    }
    // The first byte holds `extra` one bits and a zero, then the low bits.
    Ok((v << (7 - extra)) | (u64::from(first) >> (extra + 1)))
}

fn read_varlen_i64(c: &mut Cursor<'_>) -> Result<i64, String> {
    let u = read_varlen_u64(c)?;
    // zig-zag style: sign in the lowest bit
    Ok(if u & 1 == 1 {
        -((u >> 1) as i64) - 1
    } else {
        (u >> 1) as i64
    })
}

/// Parses GTID_TAGGED (42), written by MySQL 8.4+ in its field-id
/// serialization: format version, message size, last non-ignorable field id,
/// then (field id, value) pairs, every number a varlen integer. Field 0 is the
/// flags, 1 the source UUID (16 varlen bytes), 2 the transaction number
/// (signed varlen), 3 the tag (length, bytes); later fields (commit
/// timestamps, lengths) are not needed here.
pub fn parse_mysql_gtid_tagged(body: &[u8]) -> Result<MysqlGtid, String> {
    let mut c = Cursor::new(body);
    let e = |x: String| format!("GTID_TAGGED: {x}");
    let _version = read_varlen_u64(&mut c).map_err(e)?;
    let _size = read_varlen_u64(&mut c).map_err(e)?;
    let _last_non_ignorable = read_varlen_u64(&mut c).map_err(e)?;
    let mut uuid = None;
    let mut gno = None;
    let mut tag = String::new();
    while !c.is_empty() {
        let field = read_varlen_u64(&mut c).map_err(e)?;
        match field {
            0 => {
                read_varlen_u64(&mut c).map_err(e)?;
            }
            1 => {
                let mut b = [0u8; 16];
                for x in b.iter_mut() {
                    *x = read_varlen_u64(&mut c).map_err(e)? as u8;
                }
                uuid = Some(format_uuid(&b));
            }
            2 => gno = Some(read_varlen_i64(&mut c).map_err(e)?),
            3 => {
                let n = read_varlen_u64(&mut c).map_err(e)? as usize;
                let t = c.take(n, "tag").map_err(|x| e(x.to_string()))?;
                tag = String::from_utf8_lossy(t).into_owned();
                break;
            }
            _ => break,
        }
    }
    match (uuid, gno) {
        (Some(uuid), Some(gno)) if gno > 0 => Ok(MysqlGtid {
            uuid,
            tag,
            gno: gno as u64,
        }),
        _ => Err("GTID_TAGGED: uuid or transaction number missing".into()),
    }
}

/// Compression of a TRANSACTION_PAYLOAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadCompression {
    Zstd,
    None,
}

/// Parses a TRANSACTION_PAYLOAD body and returns the uncompressed inner events.
/// A failed decompression or a size that does not match is an error (never an
/// empty list).
pub fn parse_transaction_payload(body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut c = Cursor::new(body);
    let e = |x| format!("TRANSACTION_PAYLOAD: {x}");
    let mut compression = None;
    let mut uncompressed_size = None;
    let mut payload_size = None;
    loop {
        let field = c.lenenc("field type").map_err(e)?;
        if field == 0 {
            break;
        }
        let len = c.lenenc_len("field length").map_err(e)?;
        let mut v = Cursor::new(c.take(len, "field value").map_err(e)?);
        let val = v.lenenc("field value").map_err(e)?;
        match field {
            1 => payload_size = Some(val),
            2 => {
                compression = Some(match val {
                    0 => PayloadCompression::Zstd,
                    255 => PayloadCompression::None,
                    other => {
                        return Err(format!(
                            "TRANSACTION_PAYLOAD: unknown compression type {other}"
                        ))
                    }
                })
            }
            3 => uncompressed_size = Some(val),
            _ => {}
        }
    }
    let data = c.rest();
    if let Some(p) = payload_size {
        if p as usize != data.len() {
            return Err(format!(
                "TRANSACTION_PAYLOAD: payload size says {p} bytes, {} present",
                data.len()
            ));
        }
    }
    let out = match compression.unwrap_or(PayloadCompression::None) {
        PayloadCompression::None => data.to_vec(),
        PayloadCompression::Zstd => {
            let cap = uncompressed_size
                .map(|s| s as usize)
                .unwrap_or(data.len() * 4);
            if cap > limit {
                return Err(format!(
                    "TRANSACTION_PAYLOAD: uncompressed size {cap} exceeds the limit of {limit} bytes"
                ));
            }
            // Capacity from a size field is only a hint: never trust it for a large allocation.
            let mut out = Vec::with_capacity(cap.min(16 << 20));
            let mut dec = zstd::stream::read::Decoder::new(data)
                .map_err(|x| format!("TRANSACTION_PAYLOAD: zstd: {x}"))?;
            (&mut dec)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|x| format!("TRANSACTION_PAYLOAD: zstd decompression failed: {x}"))?;
            if out.len() > limit {
                return Err("TRANSACTION_PAYLOAD: uncompressed payload exceeds the limit".into());
            }
            out
        }
    };
    if let Some(u) = uncompressed_size {
        if u as usize != out.len() {
            return Err(format!(
                "TRANSACTION_PAYLOAD: uncompressed size says {u} bytes, decompression gave {}",
                out.len()
            ));
        }
    }
    Ok(out)
}

/// Decompresses MariaDB's compressed-event format: one header byte
/// `0x80 | n` with `n` (1–4) the byte count of the big-endian uncompressed
/// length that follows, then a zlib stream.
pub fn mariadb_uncompress(buf: &[u8]) -> Result<Vec<u8>, String> {
    let mut c = Cursor::new(buf);
    let head = c.u8("compression header").map_err(|x| x.to_string())?;
    let lenlen = usize::from(head & 0x07);
    if head & 0x80 == 0 || !(1..=4).contains(&lenlen) {
        return Err(format!("bad compression header byte {head:#04x}"));
    }
    let len = c
        .uint_be(lenlen, "uncompressed length")
        .map_err(|x| x.to_string())? as usize;
    let mut out = Vec::with_capacity(len.min(16 << 20));
    let mut dec = flate2::read::ZlibDecoder::new(c.rest());
    (&mut dec)
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|x| format!("zlib decompression failed: {x}"))?;
    if out.len() != len {
        return Err(format!(
            "decompressed {} bytes, header says {len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maria_uncompress_round_trip() {
        let plain = b"INSERT INTO t VALUES (1), (2), (3)".repeat(20);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).expect("compress");
        let zdata = z.finish().expect("finish");
        let len = plain.len() as u32;
        let mut buf = vec![0x82, (len >> 8) as u8, len as u8];
        buf.extend_from_slice(&zdata);
        assert_eq!(mariadb_uncompress(&buf).expect("uncompress"), plain);
        buf[2] ^= 1;
        assert!(mariadb_uncompress(&buf).is_err());
        assert!(mariadb_uncompress(&[0x85]).is_err());
    }

    #[test]
    fn payload_failure_is_an_error() {
        // field 2 = compression zstd, end mark, then garbage data
        let body = [2u8, 1, 0, 0, 1, 2, 3, 4];
        assert!(parse_transaction_payload(&body, 1 << 20).is_err());
    }
}
