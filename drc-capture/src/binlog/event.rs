//! Binlog event framing: the common header, event type codes, the
//! FORMAT_DESCRIPTION event and checksums.
//!
//! An event is `header (19 bytes) + body [+ CRC32 (4 bytes)]`, the same on disk
//! and on the replication wire. [`RawEvent::split`] validates the header and the
//! checksum and hands out the body; it never panics on malformed bytes.

use std::fmt;

use super::cursor::{Cursor, Short};

pub const HEADER_LEN: usize = 19;
/// Flag in the header: a reader that does not know the event may skip it.
pub const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

/// Event type codes, MySQL and MariaDB.
pub mod types {
    pub const START_V3: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const INTVAR: u8 = 5;
    pub const SLAVE: u8 = 7;
    pub const RAND: u8 = 13;
    pub const USER_VAR: u8 = 14;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const IGNORABLE: u8 = 28;
    pub const ROWS_QUERY: u8 = 29;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    pub const GTID: u8 = 33;
    pub const ANONYMOUS_GTID: u8 = 34;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const TRANSACTION_CONTEXT: u8 = 36;
    pub const VIEW_CHANGE: u8 = 37;
    pub const XA_PREPARE: u8 = 38;
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    pub const HEARTBEAT_V2: u8 = 41;
    pub const GTID_TAGGED: u8 = 42;
    pub const MARIA_ANNOTATE_ROWS: u8 = 160;
    pub const MARIA_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIA_GTID: u8 = 162;
    pub const MARIA_GTID_LIST: u8 = 163;
    pub const MARIA_START_ENCRYPTION: u8 = 164;
    pub const MARIA_QUERY_COMPRESSED: u8 = 165;
    pub const MARIA_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    pub const MARIA_UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    pub const MARIA_DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    pub const MARIA_WRITE_ROWS_COMPRESSED: u8 = 169;
    pub const MARIA_UPDATE_ROWS_COMPRESSED: u8 = 170;
    pub const MARIA_DELETE_ROWS_COMPRESSED: u8 = 171;
}

/// The 19-byte common header of every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub type_code: u8,
    pub server_id: u32,
    pub event_size: u32,
    /// Position of the next event in the file (0 for artificial events).
    pub log_pos: u32,
    pub flags: u16,
}

impl EventHeader {
    pub fn parse(buf: &[u8]) -> Result<Self, Short> {
        let mut c = Cursor::new(buf);
        Ok(Self {
            timestamp: c.u32("event header")?,
            type_code: c.u8("event header")?,
            server_id: c.u32("event header")?,
            event_size: c.u32("event header")?,
            log_pos: c.u32("event header")?,
            flags: c.u16("event header")?,
        })
    }

    pub fn ignorable(&self) -> bool {
        self.flags & LOG_EVENT_IGNORABLE_F != 0
    }
}

/// Event checksum algorithm announced by the FORMAT_DESCRIPTION event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    None,
    Crc32,
}

/// What a FORMAT_DESCRIPTION event tells about the events after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    pub binlog_version: u16,
    pub server_version: String,
    pub header_len: u8,
    /// Post-header length per event type (index = type code - 1).
    pub post_header_lens: Vec<u8>,
    pub checksum: Checksum,
}

impl FormatDescription {
    /// The format a reader assumes before it has seen the first FDE: v4, no checksum.
    pub fn assumed() -> Self {
        Self {
            binlog_version: 4,
            server_version: String::new(),
            header_len: HEADER_LEN as u8,
            post_header_lens: Vec::new(),
            checksum: Checksum::None,
        }
    }

    /// Parses a whole FDE (header included, checksum included if any).
    pub fn parse(event: &[u8]) -> Result<Self, String> {
        let body = event
            .get(HEADER_LEN..)
            .ok_or_else(|| "truncated FORMAT_DESCRIPTION event".to_string())?;
        let mut c = Cursor::new(body);
        let short = |e: Short| format!("FORMAT_DESCRIPTION: {e}");
        let binlog_version = c.u16("binlog version").map_err(short)?;
        if binlog_version != 4 {
            return Err(format!(
                "binlog format version {binlog_version} is not supported (only v4, MySQL 5.0+ / MariaDB)"
            ));
        }
        let ver = c.take(50, "server version").map_err(short)?;
        let server_version = String::from_utf8_lossy(ver)
            .trim_end_matches('\0')
            .to_string();
        c.skip(4, "create timestamp").map_err(short)?;
        let header_len = c.u8("header length").map_err(short)?;
        if usize::from(header_len) < HEADER_LEN {
            return Err(format!(
                "FORMAT_DESCRIPTION: header length {header_len} < 19"
            ));
        }
        let rest = c.rest();
        // Servers that know checksums (MySQL 5.6.1+, MariaDB 5.3+) end the FDE
        // with the algorithm byte and a 4-byte checksum field, always.
        let (lens, checksum) = if has_checksum_alg(&server_version) && rest.len() >= 5 {
            let alg = rest[rest.len() - 5];
            let checksum = match alg {
                0 => Checksum::None,
                1 => Checksum::Crc32,
                other => return Err(format!("unknown binlog checksum algorithm {other}")),
            };
            (&rest[..rest.len() - 5], checksum)
        } else {
            (rest, Checksum::None)
        };
        let fde = Self {
            binlog_version,
            server_version,
            header_len,
            post_header_lens: lens.to_vec(),
            checksum,
        };
        if fde.checksum == Checksum::Crc32 {
            // The server computes the FDE's checksum with the "binlog in use"
            // flag (0x1) clear, then sets the flag while the file is open.
            let mut copy = event.to_vec();
            if let Some(f) = copy.get_mut(17) {
                *f &= !0x01;
            }
            verify_crc(&copy).map_err(|e| format!("FORMAT_DESCRIPTION: {e}"))?;
        }
        Ok(fde)
    }

    pub fn is_mariadb(&self) -> bool {
        self.server_version.to_ascii_lowercase().contains("mariadb")
    }

    /// Post-header length of an event type, or `default` when the FDE does not list it.
    pub fn post_header_len(&self, type_code: u8, default: usize) -> usize {
        usize::from(type_code)
            .checked_sub(1)
            .and_then(|i| self.post_header_lens.get(i))
            .map(|&l| usize::from(l))
            .unwrap_or(default)
    }
}

fn has_checksum_alg(version: &str) -> bool {
    let nums: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    let v = (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
        nums.get(2).copied().unwrap_or(0),
    );
    if version.to_ascii_lowercase().contains("mariadb") {
        v >= (5, 3, 0)
    } else {
        v >= (5, 6, 1)
    }
}

/// Checks the trailing CRC32 of a whole event.
pub fn verify_crc(event: &[u8]) -> Result<(), String> {
    if event.len() < HEADER_LEN + 4 {
        return Err("event too short to carry a checksum".into());
    }
    let (data, tail) = event.split_at(event.len() - 4);
    let want = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let got = crc32fast::hash(data);
    if want != got {
        return Err(format!(
            "checksum mismatch (stored {want:#010x}, computed {got:#010x}): the event is corrupt"
        ));
    }
    Ok(())
}

/// One event split into its header and body, checksum verified and removed.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    pub header: EventHeader,
    pub body: &'a [u8],
}

impl<'a> RawEvent<'a> {
    /// Splits a whole event. `fde` decides whether a checksum trails it; the
    /// FDE itself is always parsed on its own terms.
    pub fn split(event: &'a [u8], fde: &FormatDescription) -> Result<Self, String> {
        let header = EventHeader::parse(event).map_err(|e| e.to_string())?;
        if header.event_size as usize != event.len() {
            return Err(format!(
                "event size field says {} bytes but {} arrived",
                header.event_size,
                event.len()
            ));
        }
        let header_len = usize::from(fde.header_len).max(HEADER_LEN);
        let mut end = event.len();
        let checksummed = match header.type_code {
            types::FORMAT_DESCRIPTION => false,
            _ => fde.checksum == Checksum::Crc32,
        };
        if checksummed {
            verify_crc(event)?;
            end -= 4;
        }
        let body = event
            .get(header_len..end)
            .ok_or_else(|| format!("event of {} bytes is shorter than its header", event.len()))?;
        Ok(Self { header, body })
    }
}

/// Name of an event type for messages.
pub fn type_name(code: u8) -> &'static str {
    use types::*;
    match code {
        QUERY => "QUERY",
        STOP => "STOP",
        ROTATE => "ROTATE",
        INTVAR => "INTVAR",
        RAND => "RAND",
        USER_VAR => "USER_VAR",
        FORMAT_DESCRIPTION => "FORMAT_DESCRIPTION",
        XID => "XID",
        TABLE_MAP => "TABLE_MAP",
        WRITE_ROWS_V1 => "WRITE_ROWS_V1",
        UPDATE_ROWS_V1 => "UPDATE_ROWS_V1",
        DELETE_ROWS_V1 => "DELETE_ROWS_V1",
        INCIDENT => "INCIDENT",
        HEARTBEAT => "HEARTBEAT",
        ROWS_QUERY => "ROWS_QUERY",
        WRITE_ROWS_V2 => "WRITE_ROWS",
        UPDATE_ROWS_V2 => "UPDATE_ROWS",
        DELETE_ROWS_V2 => "DELETE_ROWS",
        GTID => "GTID",
        ANONYMOUS_GTID => "ANONYMOUS_GTID",
        PREVIOUS_GTIDS => "PREVIOUS_GTIDS",
        TRANSACTION_CONTEXT => "TRANSACTION_CONTEXT",
        VIEW_CHANGE => "VIEW_CHANGE",
        XA_PREPARE => "XA_PREPARE",
        PARTIAL_UPDATE_ROWS => "PARTIAL_UPDATE_ROWS",
        TRANSACTION_PAYLOAD => "TRANSACTION_PAYLOAD",
        HEARTBEAT_V2 => "HEARTBEAT_V2",
        GTID_TAGGED => "GTID_TAGGED",
        MARIA_ANNOTATE_ROWS => "ANNOTATE_ROWS",
        MARIA_BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT",
        MARIA_GTID => "MARIADB_GTID",
        MARIA_GTID_LIST => "GTID_LIST",
        MARIA_START_ENCRYPTION => "START_ENCRYPTION",
        MARIA_QUERY_COMPRESSED => "QUERY_COMPRESSED",
        MARIA_WRITE_ROWS_COMPRESSED_V1 | MARIA_WRITE_ROWS_COMPRESSED => "WRITE_ROWS_COMPRESSED",
        MARIA_UPDATE_ROWS_COMPRESSED_V1 | MARIA_UPDATE_ROWS_COMPRESSED => "UPDATE_ROWS_COMPRESSED",
        MARIA_DELETE_ROWS_COMPRESSED_V1 | MARIA_DELETE_ROWS_COMPRESSED => "DELETE_ROWS_COMPRESSED",
        _ => "UNKNOWN",
    }
}

/// Displays an event type as `NAME (code)`.
pub struct TypeDisplay(pub u8);

impl fmt::Display for TypeDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", type_name(self.0), self.0)
    }
}
