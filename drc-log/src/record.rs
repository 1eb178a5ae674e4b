//! The record codec: how one record is laid out in a segment file.
//!
//! ```text
//! 0       4       8               16
//! +-------+-------+---------------+-----------------------+
//! | len   | crc   | offset        | payload (len bytes)   |
//! | u32le | u32le | u64le         |                       |
//! +-------+-------+---------------+-----------------------+
//! ```
//!
//! `len` is the payload length. `crc` is CRC32C (Castagnoli) over the eight
//! little-endian bytes of `offset` followed by the payload, so a record copied
//! to the wrong place, or a payload paired with the wrong header, fails its
//! check. The payload is opaque to the log.
//!
//! This module only encodes and decodes single records from bytes in memory;
//! it never panics on any input. Deciding whether a bad record is a torn tail
//! or corruption needs the rest of the file and lives in `segment.rs`.

use crate::Offset;

/// Bytes before the payload: len, crc, offset.
pub const RECORD_HEADER_LEN: usize = 16;

/// The largest payload the format can describe.
pub const MAX_PAYLOAD_LEN: u64 = u32::MAX as u64;

/// The fixed part of a record, as read from disk (not yet verified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// The stored CRC32C over offset and payload.
    pub crc: u32,
    /// The offset stored in the record.
    pub offset: Offset,
}

impl RecordHeader {
    /// Reads a header from the first [`RECORD_HEADER_LEN`] bytes of `b`;
    /// `None` when `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h = b.get(..RECORD_HEADER_LEN)?;
        let (len, rest) = h.split_at(4);
        let (crc, off) = rest.split_at(4);
        Some(RecordHeader {
            len: u32::from_le_bytes(len.try_into().ok()?),
            crc: u32::from_le_bytes(crc.try_into().ok()?),
            offset: Offset(u64::from_le_bytes(off.try_into().ok()?)),
        })
    }

    /// The record's whole size on disk: header plus payload.
    pub fn encoded_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Whether `payload` (which must be `len` bytes) matches the stored CRC.
    pub fn verify(&self, payload: &[u8]) -> bool {
        payload.len() as u64 == u64::from(self.len) && record_crc(self.offset, payload) == self.crc
    }
}

/// The CRC32C a record at `offset` with this payload carries.
pub fn record_crc(offset: Offset, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc_of_offset(offset), payload)
}

/// The CRC state after the offset bytes, for checking a payload in pieces
/// with [`crc32c::crc32c_append`].
pub fn crc_of_offset(offset: Offset) -> u32 {
    crc32c::crc32c(&offset.0.to_le_bytes())
}

/// The whole size on disk of a record with a payload of `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN as u64 + payload_len as u64
}

/// Appends the encoded record to `buf`. The caller has checked that the
/// payload fits in a u32 length.
pub fn encode_into(buf: &mut Vec<u8>, offset: Offset, payload: &[u8]) {
    debug_assert!(payload.len() as u64 <= MAX_PAYLOAD_LEN);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.reserve(RECORD_HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(offset, payload).to_le_bytes());
    buf.extend_from_slice(&offset.0.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record whose CRC verifies.
    Record {
        /// The offset stored in it.
        offset: Offset,
        /// Its payload.
        payload: &'a [u8],
        /// Bytes it takes, header included.
        encoded_len: u64,
    },
    /// The buffer ends inside the record (its header or payload): at the end
    /// of a file, a torn write.
    Incomplete,
    /// The record is whole but its CRC does not match.
    BadCrc {
        /// The offset stored in it (itself unverified).
        offset: Offset,
        /// Bytes it claims to take.
        encoded_len: u64,
    },
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(h) = RecordHeader::parse(buf) else {
        return Decoded::Incomplete;
    };
    let end = h.encoded_len();
    let Some(payload) = usize::try_from(end)
        .ok()
        .and_then(|end| buf.get(RECORD_HEADER_LEN..end))
    else {
        return Decoded::Incomplete;
    };
    if h.verify(payload) {
        Decoded::Record {
            offset: h.offset,
            payload,
            encoded_len: end,
        }
    } else {
        Decoded::BadCrc {
            offset: h.offset,
            encoded_len: end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(offset: u64, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        encode_into(&mut b, Offset(offset), payload);
        b
    }

    #[test]
    fn layout_is_as_documented() {
        let b = enc(7, b"abc");
        assert_eq!(b.len(), 19);
        assert_eq!(&b[0..4], &3u32.to_le_bytes());
        assert_eq!(&b[8..16], &7u64.to_le_bytes());
        let mut crc_input = 7u64.to_le_bytes().to_vec();
        crc_input.extend_from_slice(b"abc");
        assert_eq!(&b[4..8], &crc32c::crc32c(&crc_input).to_le_bytes());
        assert_eq!(&b[16..], b"abc");
    }

    #[test]
    fn empty_payload_round_trips() {
        let b = enc(1, b"");
        assert_eq!(
            decode(&b),
            Decoded::Record {
                offset: Offset(1),
                payload: b"",
                encoded_len: 16
            }
        );
    }

    #[test]
    fn the_offset_is_covered_by_the_crc() {
        let mut b = enc(9, b"payload");
        b[8] ^= 1;
        assert!(matches!(decode(&b), Decoded::BadCrc { .. }));
    }

    proptest! {
        #[test]
        fn round_trip(offset in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..2048), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = enc(offset, &payload);
            let n = b.len() as u64;
            b.extend_from_slice(&tail);
            match decode(&b) {
                Decoded::Record { offset: o, payload: p, encoded_len } => {
                    prop_assert_eq!(o, Offset(offset));
                    prop_assert_eq!(p, &payload[..]);
                    prop_assert_eq!(encoded_len, n);
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn every_truncation_is_incomplete(offset in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..512), cut in any::<prop::sample::Index>()) {
            let b = enc(offset, &payload);
            let cut = cut.index(b.len());
            prop_assert_eq!(decode(&b[..cut]), Decoded::Incomplete);
        }

        #[test]
        fn any_single_bit_flip_is_detected(offset in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<prop::sample::Index>()) {
            let mut b = enc(offset, &payload);
            let bit = bit.index(b.len() * 8);
            b[bit / 8] ^= 1 << (bit % 8);
            // A flipped length makes the record longer (incomplete) or
            // shorter (bad CRC); a flip anywhere else fails the CRC.
            let detected = !matches!(decode(&b), Decoded::Record { .. });
            prop_assert!(detected, "flip of bit {} not detected", bit);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            match decode(&b) {
                Decoded::Record { encoded_len, .. } | Decoded::BadCrc { encoded_len, .. } => {
                    prop_assert!(encoded_len <= b.len() as u64);
                    prop_assert!(encoded_len >= RECORD_HEADER_LEN as u64);
                }
                Decoded::Incomplete => {}
            }
        }
    }
}
