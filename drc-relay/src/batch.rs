//! The `Batch` message: how a range of offsets travels to a subscriber, and
//! how it is read back.
//!
//! A batch covers offsets `[first_offset, first_offset + count)`. Delivered
//! records are listed with their offsets when some of the range was filtered
//! out, and densely otherwise. Compressed, the records form one zstd frame of
//! `varint(len) ‖ bytes` entries: one frame per batch compresses far better
//! than records one by one, which is what a cross-region link needs.
//!
//! Reading a batch checks everything a peer could get wrong (counts, offsets
//! out of range or out of order, lengths past the end, a frame that
//! decompresses past the limit) and answers with [`RelayError::Corrupt`], never
//! a panic.

use std::io::Read;

use zstd::stream::raw::{CParameter, DParameter, InBuffer, Operation, OutBuffer};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use drc_proto::v1 as pb;

use crate::error::{RelayError, Result};

/// zstd level for batches: fast, and most of the gain on row data. Level 5
/// was tried for the cross-region link: ~5% fewer bytes on 4 MiB batches of
/// sysbench rows, ~0.1 s of a 4.4 s transfer with the CPU idle, at ~1.5x
/// the CPU, which on a busy 2-core host is taken from the capture feeding
/// the same relay; not worth it there.
pub const ZSTD_LEVEL: i32 = 3;

/// Records gathered for one batch.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    first: u64,
    next: u64,
    offsets: Vec<u64>,
    records: Vec<Bytes>,
    bytes: usize,
    filtered: bool,
}

impl BatchBuilder {
    /// A batch whose range starts at `first`.
    pub fn new(first: u64) -> Self {
        Self {
            first,
            next: first,
            ..Default::default()
        }
    }

    /// Offsets covered so far.
    pub fn count(&self) -> u64 {
        self.next - self.first
    }

    /// Record bytes gathered so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The next offset this batch expects.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Adds the record at the next offset.
    pub fn push(&mut self, offset: u64, record: Bytes) {
        debug_assert_eq!(offset, self.next);
        self.bytes += record.len();
        self.offsets.push(offset);
        self.records.push(record);
        self.next = offset + 1;
    }

    /// Covers the next offset without delivering it (filtered out).
    pub fn skip(&mut self, offset: u64) {
        debug_assert_eq!(offset, self.next);
        self.filtered = true;
        self.next = offset + 1;
    }

    /// The message. Compression runs here: call it off the async threads for
    /// large batches. A streaming encoding carries its state on to the next
    /// batch of the same subscription.
    pub fn finish(self, encoding: &mut Encoding, last_offset: u64) -> Result<pb::Batch> {
        let record_count = u32::try_from(self.records.len())
            .map_err(|_| RelayError::InvalidRequest("too many records for one batch".into()))?;
        let offsets = if self.filtered {
            self.offsets
        } else {
            Vec::new()
        };
        let mut batch = pb::Batch {
            first_offset: self.first,
            count: self.next - self.first,
            offsets,
            compression: encoding.compression() as i32,
            records: Vec::new(),
            zstd_records: Bytes::new(),
            record_count,
            last_offset,
        };
        let framed = || {
            let mut plain = BytesMut::with_capacity(self.bytes + 5 * self.records.len());
            for r in &self.records {
                prost::encoding::encode_varint(r.len() as u64, &mut plain);
                plain.put_slice(r);
            }
            plain
        };
        match encoding {
            Encoding::None => batch.records = self.records,
            Encoding::Zstd => {
                let z = zstd::bulk::compress(&framed(), ZSTD_LEVEL)
                    .map_err(|e| RelayError::Corrupt(format!("zstd compression failed: {e}")))?;
                batch.zstd_records = Bytes::from(z);
            }
            Encoding::ZstdStream(enc) => {
                batch.zstd_records = Bytes::from(enc.compress(&framed())?);
            }
        }
        Ok(batch)
    }
}

/// How a subscription's batches are compressed, with the state a streaming
/// compression keeps from one batch to the next.
#[derive(Default)]
pub enum Encoding {
    #[default]
    None,
    Zstd,
    ZstdStream(Box<StreamEncoder>),
}

impl Encoding {
    /// The encoding a subscriber asked for, with fresh state.
    pub fn new(compression: pb::Compression) -> Result<Self> {
        Ok(match compression {
            pb::Compression::None => Encoding::None,
            pb::Compression::Zstd => Encoding::Zstd,
            pb::Compression::ZstdStream => Encoding::ZstdStream(Box::new(StreamEncoder::new()?)),
        })
    }

    pub fn compression(&self) -> pb::Compression {
        match self {
            Encoding::None => pb::Compression::None,
            Encoding::Zstd => pb::Compression::Zstd,
            Encoding::ZstdStream(_) => pb::Compression::ZstdStream,
        }
    }
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.compression().as_str_name())
    }
}

/// zstd window of a streaming subscription: how far back a batch may refer
/// into earlier ones. Both ends hold this much per subscription. On sysbench
/// rows, one stream with long-distance matching at 16 MiB puts ~20% fewer
/// bytes on the link than a frame per 4 MiB batch (level 3), at less CPU:
/// later transactions touch rows that earlier ones wrote, and the matcher
/// finds them across batches. A larger window gains ~2% more.
pub const STREAM_WINDOW_LOG: u32 = 24;

/// zstd level of a streaming subscription: with long-distance matching,
/// level 1 compresses these streams as well as level 3, and faster. On the
/// wan benchmark's backlog, levels 4 and 5 put 4% and 5% fewer bytes on the
/// link for about twice the sender's CPU, and did not move the backlog
/// sooner (BENCHMARKS.md, wan); level 7 and up make the sender the limit.
pub const STREAM_LEVEL: i32 = 1;

/// The sending half of a streaming subscription: one zstd stream, flushed at
/// the end of every batch so that the batch can be read as soon as it
/// arrives.
pub struct StreamEncoder(zstd::stream::raw::Encoder<'static>);

impl StreamEncoder {
    pub fn new() -> Result<Self> {
        let err = |e: std::io::Error| RelayError::Corrupt(format!("zstd stream encoder: {e}"));
        let mut enc = zstd::stream::raw::Encoder::new(STREAM_LEVEL).map_err(err)?;
        enc.set_parameter(CParameter::WindowLog(STREAM_WINDOW_LOG))
            .map_err(err)?;
        enc.set_parameter(CParameter::EnableLongDistanceMatching(true))
            .map_err(err)?;
        Ok(StreamEncoder(enc))
    }

    /// The stream's bytes for `plain`, up to a flush point. Nothing for
    /// nothing: a batch whose offsets were all filtered out leaves the
    /// stream as it was.
    fn compress(&mut self, plain: &[u8]) -> Result<Vec<u8>> {
        if plain.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e: std::io::Error| RelayError::Corrupt(format!("zstd stream compression: {e}"));
        let mut out: Vec<u8> = Vec::with_capacity(plain.len() / 2 + 1024);
        let mut input = InBuffer::around(plain);
        loop {
            if out.capacity() - out.len() < 64 << 10 {
                out.reserve(1 << 20);
            }
            let pos = out.len();
            let mut ob = OutBuffer::around_pos(&mut out, pos);
            if input.pos() < plain.len() {
                self.0.run(&mut input, &mut ob).map_err(err)?;
            } else if self.0.flush(&mut ob).map_err(err)? == 0 {
                break;
            }
        }
        Ok(out)
    }
}

/// The receiving half of a streaming subscription.
pub struct StreamDecoder(zstd::stream::raw::Decoder<'static>);

impl StreamDecoder {
    pub fn new() -> Result<Self> {
        let err = |e: std::io::Error| RelayError::Corrupt(format!("zstd stream decoder: {e}"));
        let mut dec = zstd::stream::raw::Decoder::new().map_err(err)?;
        // A peer cannot make this end hold a larger window than agreed.
        dec.set_parameter(DParameter::WindowLogMax(STREAM_WINDOW_LOG))
            .map_err(err)?;
        Ok(StreamDecoder(dec))
    }

    /// The plain bytes of one batch's part of the stream, at most
    /// `max_bytes`. An empty part (a batch of filtered offsets only) is not
    /// handed to zstd: the library counts calls that make no progress and
    /// fails the stream after 16 of them in a row.
    fn decompress(&mut self, z: &[u8], max_bytes: usize) -> Result<Vec<u8>> {
        if z.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e: std::io::Error| RelayError::Corrupt(format!("zstd stream batch: {e}"));
        let mut out: Vec<u8> = Vec::new();
        let mut input = InBuffer::around(z);
        loop {
            if out.len() > max_bytes {
                return Err(RelayError::Corrupt(format!(
                    "zstd stream batch decompresses past {max_bytes} bytes"
                )));
            }
            if out.capacity() - out.len() < 64 << 10 {
                out.reserve(1 << 20);
            }
            let pos = out.len();
            let mut ob = OutBuffer::around_pos(&mut out, pos);
            self.0.run(&mut input, &mut ob).map_err(err)?;
            let full = ob.pos() == ob.capacity();
            // All input taken and room left over: the decoder has given
            // everything this batch holds (the sender flushed at its end).
            if input.pos() == z.len() && !full {
                break;
            }
        }
        if out.len() > max_bytes {
            return Err(RelayError::Corrupt(format!(
                "zstd stream batch decompresses past {max_bytes} bytes"
            )));
        }
        Ok(out)
    }
}

/// What a subscriber keeps from batch to batch to read them: the decoder
/// of a streaming subscription, made at its first batch.
#[derive(Default)]
pub struct Decoding {
    stream: Option<StreamDecoder>,
}

impl std::fmt::Debug for Decoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoding")
            .field("stream", &self.stream.is_some())
            .finish()
    }
}

/// A batch as the subscriber sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordBatch {
    /// First offset of the covered range.
    pub first_offset: u64,
    /// Offsets covered (delivered or filtered out).
    pub count: u64,
    /// Delivered records with their offsets, ascending.
    pub records: Vec<(u64, Bytes)>,
    /// The stream's last offset when the batch was made.
    pub last_offset: u64,
}

impl RecordBatch {
    /// The offset after this batch: where a subscriber resumes once it has
    /// processed the batch.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.count
    }

    /// True when every offset of the range is delivered, in order.
    pub fn is_dense(&self) -> bool {
        self.records.len() as u64 == self.count
    }
}

/// Reads a batch that needs no state from earlier ones (not a streaming
/// subscription's); `max_bytes` bounds the decompressed size.
pub fn decode(batch: pb::Batch, max_bytes: usize) -> Result<RecordBatch> {
    Decoding::default().decode(batch, max_bytes)
}

impl Decoding {
    /// Reads the next batch of a subscription; `max_bytes` bounds the
    /// decompressed size. After an error the subscription cannot go on
    /// (a streaming decoder's state is lost).
    pub fn decode(&mut self, batch: pb::Batch, max_bytes: usize) -> Result<RecordBatch> {
        let bad = |why: String| Err(RelayError::Corrupt(why));
        if batch.first_offset == 0 {
            return bad("batch starts at offset 0".into());
        }
        let end = batch
            .first_offset
            .checked_add(batch.count)
            .ok_or_else(|| RelayError::Corrupt("batch range overflows".into()))?;
        let n = batch.record_count as usize;
        if n as u64 > batch.count {
            return bad(format!(
                "batch of {} offsets holds {n} records",
                batch.count
            ));
        }
        let records: Vec<Bytes> = match pb::Compression::try_from(batch.compression) {
            Ok(pb::Compression::None) => {
                if batch.records.len() != n {
                    return bad(format!(
                        "batch says {n} records, holds {}",
                        batch.records.len()
                    ));
                }
                batch.records
            }
            Ok(pb::Compression::Zstd) => unframe(zstd_frame(&batch.zstd_records, max_bytes)?, n)?,
            Ok(pb::Compression::ZstdStream) => {
                let dec = match &mut self.stream {
                    Some(d) => d,
                    None => self.stream.insert(StreamDecoder::new()?),
                };
                unframe(dec.decompress(&batch.zstd_records, max_bytes)?, n)?
            }
            Err(_) => return bad(format!("unknown compression {}", batch.compression)),
        };
        let offsets: Vec<u64> = if batch.offsets.is_empty() && n == 0 {
            // Every offset of the range was filtered out.
            Vec::new()
        } else if batch.offsets.is_empty() {
            if n as u64 != batch.count {
                return bad(format!(
                    "dense batch of {} offsets holds {n} records",
                    batch.count
                ));
            }
            (batch.first_offset..end).collect()
        } else {
            if batch.offsets.len() != n {
                return bad(format!(
                    "batch lists {} offsets for {n} records",
                    batch.offsets.len()
                ));
            }
            let mut prev = batch.first_offset.saturating_sub(1);
            for &o in &batch.offsets {
                if o <= prev || o >= end {
                    return bad(format!(
                        "record offset {o} out of order or outside [{}, {end})",
                        batch.first_offset
                    ));
                }
                prev = o;
            }
            batch.offsets
        };
        Ok(RecordBatch {
            first_offset: batch.first_offset,
            count: batch.count,
            records: offsets.into_iter().zip(records).collect(),
            last_offset: batch.last_offset,
        })
    }
}

/// The plain bytes of one zstd frame, at most `max_bytes`.
fn zstd_frame(z: &[u8], max_bytes: usize) -> Result<Vec<u8>> {
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(z)
        .and_then(|d| d.take(max_bytes as u64 + 1).read_to_end(&mut plain))
        .map_err(|e| RelayError::Corrupt(format!("zstd batch: {e}")))?;
    if plain.len() > max_bytes {
        return Err(RelayError::Corrupt(format!(
            "zstd batch decompresses past {max_bytes} bytes"
        )));
    }
    Ok(plain)
}

/// The records of a compressed batch's plain bytes.
fn unframe(plain: Vec<u8>, n: usize) -> Result<Vec<Bytes>> {
    let mut buf = Bytes::from(plain);
    let mut out = Vec::with_capacity(n.min(1 << 16));
    while buf.has_remaining() {
        let len = prost::encoding::decode_varint(&mut buf)
            .map_err(|e| RelayError::Corrupt(format!("zstd batch: record length: {e}")))?;
        if len > buf.remaining() as u64 {
            return Err(RelayError::Corrupt(format!(
                "zstd batch: record of {len} bytes with {} left",
                buf.remaining()
            )));
        }
        out.push(buf.split_to(len as usize));
    }
    if out.len() != n {
        return Err(RelayError::Corrupt(format!(
            "zstd batch says {n} records, holds {}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(filtered: bool, c: pb::Compression) -> pb::Batch {
        let mut b = BatchBuilder::new(5);
        b.push(5, Bytes::from_static(b"five"));
        if filtered {
            b.skip(6);
        } else {
            b.push(6, Bytes::from_static(b""));
        }
        b.push(7, Bytes::from(vec![7u8; 1000]));
        b.finish(&mut Encoding::new(c).expect("encoding"), 9)
            .expect("finish")
    }

    #[test]
    fn round_trips() {
        for c in [pb::Compression::None, pb::Compression::Zstd] {
            for filtered in [false, true] {
                let rb = decode(build(filtered, c), 1 << 20).expect("decode");
                assert_eq!(rb.first_offset, 5);
                assert_eq!(rb.count, 3);
                assert_eq!(rb.end_offset(), 8);
                assert_eq!(rb.last_offset, 9);
                let offs: Vec<u64> = rb.records.iter().map(|r| r.0).collect();
                if filtered {
                    assert_eq!(offs, vec![5, 7]);
                } else {
                    assert_eq!(offs, vec![5, 6, 7]);
                    assert!(rb.is_dense());
                }
                assert_eq!(&rb.records[0].1[..], b"five");
                assert_eq!(rb.records.last().expect("last").1.len(), 1000);
            }
        }
    }

    #[test]
    fn a_batch_of_only_filtered_offsets_round_trips() {
        for compression in [pb::Compression::None, pb::Compression::Zstd] {
            let mut b = BatchBuilder::new(5);
            b.skip(5);
            b.skip(6);
            let got = decode(
                b.finish(&mut Encoding::new(compression).expect("encoding"), 9)
                    .expect("finish"),
                1 << 20,
            )
            .expect("decode");
            assert!(got.records.is_empty());
            assert_eq!((got.first_offset, got.count), (5, 2));
        }
    }

    #[test]
    fn refuses_bad_batches() {
        let mut b = build(true, pb::Compression::None);
        b.offsets = vec![7, 5];
        assert!(decode(b, 1 << 20).is_err());
        let mut b = build(false, pb::Compression::None);
        b.count = 2;
        assert!(decode(b, 1 << 20).is_err());
        let mut b = build(false, pb::Compression::Zstd);
        b.zstd_records = Bytes::from_static(b"not zstd");
        assert!(decode(b, 1 << 20).is_err());
        // Decompression past the limit.
        assert!(decode(build(false, pb::Compression::Zstd), 100).is_err());
        let mut b = build(false, pb::Compression::None);
        b.compression = 42;
        assert!(decode(b, 1 << 20).is_err());
        let mut b = build(false, pb::Compression::None);
        b.first_offset = u64::MAX;
        assert!(decode(b, 1 << 20).is_err());
    }

    /// Rows that come back later in the stream, as updated rows do.
    fn records(seed: u64, n: usize) -> Vec<Bytes> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let row: Vec<u8> = (0..200)
                    .map(|i| b'0' + ((x >> (i % 60)) % 10) as u8)
                    .collect();
                Bytes::from(row)
            })
            .collect()
    }

    #[test]
    fn a_streaming_subscription_reads_its_batches_in_order() {
        let rows = records(7, 300);
        let mut enc = Encoding::new(pb::Compression::ZstdStream).expect("encoder");
        let mut dec = Decoding::default();
        let mut next = 1u64;
        let mut sent = Vec::new();
        let mut stream_bytes = 0;
        let mut frame_bytes = 0;
        for round in 0..6 {
            let mut b = BatchBuilder::new(next);
            // Later batches repeat rows of earlier ones.
            for r in rows.iter().skip(round * 20).take(100) {
                b.push(next, r.clone());
                sent.push((next, r.clone()));
                next += 1;
            }
            if round == 3 {
                b.skip(next);
                next += 1;
            }
            let mut plain = BatchBuilder::new(b.first);
            for (o, r) in b.offsets.iter().zip(&b.records) {
                plain.push(*o, r.clone());
            }
            frame_bytes += plain
                .finish(&mut Encoding::Zstd, 0)
                .expect("frame")
                .zstd_records
                .len();
            let batch = b.finish(&mut enc, next - 1).expect("finish");
            assert_eq!(batch.compression, pb::Compression::ZstdStream as i32);
            stream_bytes += batch.zstd_records.len();
            let got = dec.decode(batch, 1 << 20).expect("decode");
            let want: Vec<(u64, Bytes)> = sent
                .iter()
                .filter(|(o, _)| *o >= got.first_offset)
                .cloned()
                .collect();
            assert_eq!(got.records, want);
            sent.clear();
        }
        assert!(
            stream_bytes < frame_bytes,
            "the stream refers back across batches: {stream_bytes} vs {frame_bytes} bytes"
        );
    }

    /// Active-active subscriptions filter out whole runs of batches: their
    /// empty parts must leave the stream readable, however many in a row.
    #[test]
    fn a_streaming_subscription_survives_long_runs_of_filtered_batches() {
        let rows = records(11, 40);
        let mut enc = Encoding::new(pb::Compression::ZstdStream).expect("encoder");
        let mut dec = Decoding::default();
        let mut next = 1u64;
        for round in 0..3 {
            for _ in 0..40 {
                let mut b = BatchBuilder::new(next);
                b.skip(next);
                next += 1;
                let batch = b.finish(&mut enc, next - 1).expect("finish");
                assert!(batch.zstd_records.is_empty());
                let got = dec.decode(batch, 1 << 20).expect("filtered batch");
                assert!(got.records.is_empty());
            }
            let mut b = BatchBuilder::new(next);
            let mut want = Vec::new();
            for r in rows.iter().skip(round * 10).take(20) {
                b.push(next, r.clone());
                want.push((next, r.clone()));
                next += 1;
            }
            let got = dec
                .decode(b.finish(&mut enc, next - 1).expect("finish"), 1 << 20)
                .expect("batch after the filtered run");
            assert_eq!(got.records, want);
        }
    }

    #[test]
    fn a_streaming_batch_out_of_order_or_too_large_is_refused() {
        let rows = records(9, 50);
        let mut enc = Encoding::new(pb::Compression::ZstdStream).expect("encoder");
        let mut batches = Vec::new();
        let mut next = 1;
        for _ in 0..2 {
            let mut b = BatchBuilder::new(next);
            for r in &rows {
                b.push(next, r.clone());
                next += 1;
            }
            batches.push(b.finish(&mut enc, 0).expect("finish"));
        }
        // The second batch alone, without the first: its back references
        // cannot be read.
        let mut dec = Decoding::default();
        assert!(dec.decode(batches[1].clone(), 1 << 20).is_err());
        // Past the size limit.
        let mut dec = Decoding::default();
        assert!(dec.decode(batches[0].clone(), 1000).is_err());
        // Garbage.
        let mut bad = batches[0].clone();
        bad.zstd_records = Bytes::from_static(b"not a zstd stream");
        assert!(Decoding::default().decode(bad, 1 << 20).is_err());
    }
}
