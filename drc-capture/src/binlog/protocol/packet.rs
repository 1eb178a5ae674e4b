//! Packet framing of the MySQL client/server protocol and the small parsers
//! shared by the handshake, COM_QUERY and the binlog stream.
//!
//! A packet on the wire is a 3-byte little-endian payload length, a 1-byte
//! sequence number and the payload. A payload of 16 MiB - 1 bytes or more is
//! sent as a run of `0xFFFFFF`-byte chunks ended by a shorter (possibly empty)
//! chunk; [`PacketIo::read_packet`] reassembles them.
//!
//! Reading is done into one [`BytesMut`] that the socket fills directly, in
//! reads of up to [`READ_CHUNK`] bytes. A complete single-chunk packet is split
//! off that buffer without copying, so an event handed to the caller shares its
//! allocation with its neighbours (a live event keeps its chunk of at most a few
//! MiB alive). Only multi-chunk packets (> 16 MiB) are copied once to drop the
//! inner headers. Nothing is consumed until a whole packet is buffered, so a
//! read that times out or is cancelled leaves the connection consistent.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ProtocolError;

/// Largest chunk payload; a chunk of exactly this size means "more follows".
pub(crate) const MAX_CHUNK: usize = 0xFF_FFFF;
/// Upper bound on one reassembled payload: a 1 GiB event (the servers' own
/// limit, `max_allowed_packet`) plus the status byte and some slack.
pub(crate) const MAX_PACKET: usize = (1 << 30) + (1 << 16);
/// Fresh read buffers are allocated this large.
pub(crate) const READ_CHUNK: usize = 1 << 20;
/// A read is never issued with less free space than this.
const MIN_READ_SPACE: usize = 64 << 10;

/// Anything the connection can run over: a TCP stream, an in-memory duplex in
/// tests, later a TLS stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Reads and writes whole packets, tracking the sequence number.
pub(crate) struct PacketIo {
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    seq: u8,
    read_timeout: Option<Duration>,
}

/// Where the next complete packet ends in the read buffer.
enum Scan {
    /// Need at least this many buffered bytes to make progress.
    Need(usize),
    /// A whole packet: `chunks` chunks spanning `end` buffered bytes, `total`
    /// payload bytes.
    Ready {
        chunks: usize,
        end: usize,
        total: usize,
    },
}

impl PacketIo {
    pub(crate) fn new(stream: Box<dyn Stream>, read_timeout: Option<Duration>) -> Self {
        Self {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(256),
            seq: 0,
            read_timeout,
        }
    }

    /// Starts a new command: the client's first packet has sequence 0.
    pub(crate) fn reset_seq(&mut self) {
        self.seq = 0;
    }

    /// Reads one logical packet (reassembling split ones) and returns its payload.
    pub(crate) async fn read_packet(&mut self) -> Result<Bytes, ProtocolError> {
        loop {
            match self.scan()? {
                Scan::Ready { chunks, end, total } => return self.take(chunks, end, total),
                Scan::Need(need) => self.fill(need).await?,
            }
        }
    }

    fn scan(&self) -> Result<Scan, ProtocolError> {
        let buf = &self.rbuf[..];
        let mut offset = 0usize;
        let mut total = 0usize;
        let mut chunks = 0usize;
        loop {
            let Some(h) = buf.get(offset..offset + 4) else {
                return Ok(Scan::Need(offset + 4));
            };
            let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
            total += len;
            if total > MAX_PACKET {
                return Err(ProtocolError::Protocol(format!(
                    "the source announced a packet of more than {total} bytes, over the {MAX_PACKET}-byte limit"
                )));
            }
            let end = offset + 4 + len;
            if buf.len() < end {
                return Ok(Scan::Need(end));
            }
            chunks += 1;
            if len < MAX_CHUNK {
                return Ok(Scan::Ready { chunks, end, total });
            }
            offset = end;
        }
    }

    fn check_seq(&mut self, got: u8) -> Result<(), ProtocolError> {
        if got != self.seq {
            return Err(ProtocolError::Protocol(format!(
                "packets out of order: sequence number {got}, expected {}",
                self.seq
            )));
        }
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    fn take(&mut self, chunks: usize, end: usize, total: usize) -> Result<Bytes, ProtocolError> {
        if chunks == 1 {
            let seq = self.rbuf.get(3).copied().unwrap_or_default();
            self.check_seq(seq)?;
            let mut p = self.rbuf.split_to(end);
            p.advance(4);
            return Ok(p.freeze());
        }
        let mut out = BytesMut::with_capacity(total);
        let mut offset = 0usize;
        for _ in 0..chunks {
            let (len, seq) = match self.rbuf.get(offset..offset + 4) {
                Some(h) => (
                    usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16,
                    h[3],
                ),
                None => return Err(ProtocolError::Protocol("packet framing lost".into())),
            };
            self.check_seq(seq)?;
            let body = self
                .rbuf
                .get(offset + 4..offset + 4 + len)
                .ok_or_else(|| ProtocolError::Protocol("packet framing lost".into()))?;
            out.extend_from_slice(body);
            offset += 4 + len;
        }
        self.rbuf.advance(end);
        Ok(out.freeze())
    }

    /// One read from the socket, making room for at least `need` buffered bytes.
    async fn fill(&mut self, need: usize) -> Result<(), ProtocolError> {
        let len = self.rbuf.len();
        let want = need.saturating_sub(len).max(MIN_READ_SPACE);
        if self.rbuf.capacity() - len < want {
            self.rbuf.reserve(want.max(READ_CHUNK));
        }
        let read = self.stream.read_buf(&mut self.rbuf);
        let n = match self.read_timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| ProtocolError::Timeout)??,
            None => read.await?,
        };
        if n == 0 {
            return Err(ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the source closed the connection",
            )));
        }
        Ok(())
    }

    /// Writes `payload` as one logical packet (split into chunks if needed).
    pub(crate) async fn write_packet(&mut self, payload: &[u8]) -> Result<(), ProtocolError> {
        self.wbuf.clear();
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_CHUNK);
            let (chunk, tail) = rest.split_at(n);
            // n <= 0xFFFFFF: the cast keeps all bits.
            let len = (n as u32).to_le_bytes();
            self.wbuf
                .extend_from_slice(&[len[0], len[1], len[2], self.seq]);
            self.wbuf.extend_from_slice(chunk);
            self.seq = self.seq.wrapping_add(1);
            rest = tail;
            if n < MAX_CHUNK {
                break;
            }
        }
        self.stream.write_all(&self.wbuf).await?;
        self.stream.flush().await?;
        if self.wbuf.capacity() > 64 << 10 {
            self.wbuf = Vec::with_capacity(256);
        }
        Ok(())
    }

    pub(crate) async fn shutdown(&mut self) -> Result<(), ProtocolError> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

fn short(what: &str) -> ProtocolError {
    ProtocolError::Protocol(format!(
        "malformed packet from the source: truncated {what}"
    ))
}

/// A bounds-checked reader over one packet payload.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if n > self.buf.len() {
            return Err(short(what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, ProtocolError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, ProtocolError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn uint(&mut self, n: usize, what: &str) -> Result<u64, ProtocolError> {
        let b = self.take(n.min(8), what)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    }

    /// A length-encoded integer; `None` is the NULL marker `0xFB`.
    pub(crate) fn lenenc_int(&mut self, what: &str) -> Result<Option<u64>, ProtocolError> {
        match self.u8(what)? {
            b @ 0..=0xFA => Ok(Some(u64::from(b))),
            0xFB => Ok(None),
            0xFC => self.uint(2, what).map(Some),
            0xFD => self.uint(3, what).map(Some),
            0xFE => self.uint(8, what).map(Some),
            0xFF => Err(ProtocolError::Protocol(format!(
                "malformed packet from the source: 0xFF is not a length-encoded integer ({what})"
            ))),
        }
    }

    /// A length-encoded string; `None` is SQL NULL.
    pub(crate) fn lenenc_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, ProtocolError> {
        match self.lenenc_int(what)? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| short(what))?;
                self.take(n, what).map(Some)
            }
        }
    }

    /// Bytes up to a NUL (consumed, not returned); the rest if there is no NUL.
    pub(crate) fn null_terminated(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(i) => {
                let s = &self.buf[..i];
                self.buf = &self.buf[i + 1..];
                s
            }
            None => self.rest(),
        }
    }
}

/// Appends a length-encoded integer (tests build server packets with it).
#[cfg(test)]
pub(crate) fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    if v < 0xFB {
        out.push(v as u8);
    } else if v <= 0xFFFF {
        out.push(0xFC);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= 0xFF_FFFF {
        out.push(0xFD);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// An OK packet (header 0x00, or 0xFE when it ends a result set under
/// CLIENT_DEPRECATE_EOF).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: String,
}

pub(crate) fn parse_ok(payload: &[u8]) -> Result<OkPacket, ProtocolError> {
    let mut r = Reader::new(payload);
    r.u8("OK packet")?;
    let affected_rows = r.lenenc_int("OK packet")?.unwrap_or(0);
    let last_insert_id = r.lenenc_int("OK packet")?.unwrap_or(0);
    // Status and warnings are present with CLIENT_PROTOCOL_41, which we require.
    let status = if r.remaining() >= 2 {
        r.u16("OK packet")?
    } else {
        0
    };
    let warnings = if r.remaining() >= 2 {
        r.u16("OK packet")?
    } else {
        0
    };
    let info = String::from_utf8_lossy(r.rest()).into_owned();
    Ok(OkPacket {
        affected_rows,
        last_insert_id,
        status,
        warnings,
        info,
    })
}

/// An ERR packet as a [`ProtocolError::Server`].
pub(crate) fn parse_err(payload: &[u8]) -> ProtocolError {
    let mut r = Reader::new(payload);
    let _ = r.u8("ERR packet");
    let Ok(code) = r.u16("ERR packet") else {
        return ProtocolError::Protocol("malformed ERR packet from the source".into());
    };
    let mut state = String::new();
    if r.peek() == Some(b'#') && r.remaining() >= 6 {
        if let Ok(s) = r.take(6, "ERR packet") {
            state = String::from_utf8_lossy(&s[1..]).into_owned();
        }
    }
    let message = String::from_utf8_lossy(r.rest()).into_owned();
    ProtocolError::Server {
        code,
        state,
        message,
    }
}

/// Status flags carried by a classic EOF packet (0xFE, warnings, status).
pub(crate) fn parse_eof_status(payload: &[u8]) -> u16 {
    let mut r = Reader::new(payload);
    let _ = r.u8("EOF packet");
    let _ = r.u16("EOF packet");
    r.u16("EOF packet").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncWriteExt};

    fn pair(cap: usize) -> (PacketIo, PacketIo) {
        let (a, b) = duplex(cap);
        let t = Some(Duration::from_secs(20));
        (PacketIo::new(Box::new(a), t), PacketIo::new(Box::new(b), t))
    }

    fn payload(n: usize, salt: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect()
    }

    #[tokio::test]
    async fn split_packets_reassemble() {
        let sizes = [
            0,
            1,
            250,
            MAX_CHUNK - 1,
            MAX_CHUNK,
            MAX_CHUNK + 1,
            2 * MAX_CHUNK,
            2 * MAX_CHUNK + 5,
            7,
        ];
        let (mut w, mut r) = pair(64 << 10);
        let writer = tokio::spawn(async move {
            for (i, &n) in sizes.iter().enumerate() {
                w.write_packet(&payload(n, i as u8)).await.expect("write");
            }
            w
        });
        for (i, &n) in sizes.iter().enumerate() {
            let p = r.read_packet().await.expect("read");
            assert_eq!(p.len(), n, "packet {i}");
            assert!(p[..] == payload(n, i as u8)[..], "packet {i} content");
        }
        let _w = writer.await.expect("join");
    }

    #[tokio::test]
    async fn chunk_headers_on_the_wire() {
        let (a, mut b) = duplex(1 << 26);
        let mut w = PacketIo::new(Box::new(a), None);
        w.write_packet(&payload(MAX_CHUNK, 0)).await.expect("write");
        drop(w);
        let mut raw = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut raw)
            .await
            .expect("read");
        // One full chunk (seq 0) and an empty terminating chunk (seq 1).
        assert_eq!(raw.len(), 4 + MAX_CHUNK + 4);
        assert_eq!(&raw[..4], &[0xFF, 0xFF, 0xFF, 0]);
        assert_eq!(&raw[4 + MAX_CHUNK..], &[0, 0, 0, 1]);
    }

    #[tokio::test]
    async fn many_small_packets_in_one_read() {
        let (a, b) = duplex(1 << 20);
        let mut r = PacketIo::new(Box::new(b), None);
        let mut raw = Vec::new();
        for i in 0..1000u32 {
            let body = payload((i % 300) as usize, i as u8);
            raw.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
            raw.push(i as u8);
            raw.extend_from_slice(&body);
        }
        let mut a = a;
        a.write_all(&raw).await.expect("write");
        for i in 0..1000u32 {
            let p = r.read_packet().await.expect("read");
            assert!(p[..] == payload((i % 300) as usize, i as u8)[..]);
        }
    }

    #[tokio::test]
    async fn out_of_order_and_eof_are_errors() {
        let (mut a, b) = duplex(1024);
        let mut r = PacketIo::new(Box::new(b), None);
        a.write_all(&[1, 0, 0, 5, 0xAA]).await.expect("write");
        let e = r.read_packet().await.expect_err("bad seq");
        assert!(e.to_string().contains("out of order"), "{e}");

        let (mut a, b) = duplex(1024);
        let mut r = PacketIo::new(Box::new(b), None);
        a.write_all(&[10, 0, 0, 0, 1, 2]).await.expect("write");
        drop(a);
        match r.read_packet().await {
            Err(ProtocolError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("expected EOF error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn silence_times_out_and_keeps_state() {
        let (mut a, b) = duplex(1024);
        let mut r = PacketIo::new(Box::new(b), Some(Duration::from_millis(50)));
        a.write_all(&[3, 0, 0, 0, 1]).await.expect("write");
        assert!(matches!(r.read_packet().await, Err(ProtocolError::Timeout)));
        a.write_all(&[2, 3]).await.expect("write");
        assert_eq!(&r.read_packet().await.expect("read")[..], &[1, 2, 3]);
    }

    #[test]
    fn lenenc_parsing() {
        let mut buf = Vec::new();
        let values = [
            0u64,
            1,
            0xFA,
            0xFB,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ];
        for v in values {
            put_lenenc_int(&mut buf, v);
        }
        buf.push(0xFB);
        let mut r = Reader::new(&buf);
        for v in values {
            assert_eq!(r.lenenc_int("test").expect("int"), Some(v));
        }
        assert_eq!(r.lenenc_int("test").expect("null"), None);
        assert_eq!(r.remaining(), 0);
        assert!(r.lenenc_int("test").is_err());

        assert!(Reader::new(&[0xFF]).lenenc_int("t").is_err());
        assert!(Reader::new(&[0xFC, 1]).lenenc_int("t").is_err());
        assert!(Reader::new(&[0xFE, 1, 2, 3]).lenenc_int("t").is_err());

        let mut r = Reader::new(&[3, b'a', b'b', b'c', 0xFB, 0, 5, b'x']);
        assert_eq!(r.lenenc_bytes("s").expect("s"), Some(&b"abc"[..]));
        assert_eq!(r.lenenc_bytes("s").expect("null"), None);
        assert_eq!(r.lenenc_bytes("s").expect("empty"), Some(&b""[..]));
        assert!(r.lenenc_bytes("s").is_err(), "length past the end");
        // A huge announced length is an error, not an allocation or a panic.
        let mut huge = vec![0xFE];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Reader::new(&huge).lenenc_bytes("s").is_err());
    }

    #[test]
    fn ok_and_err_packets() {
        let ok = parse_ok(&[0, 3, 0xFC, 0x10, 0x27, 2, 0, 1, 0, b'h', b'i']).expect("ok");
        assert_eq!(
            ok,
            OkPacket {
                affected_rows: 3,
                last_insert_id: 10000,
                status: 2,
                warnings: 1,
                info: "hi".into()
            }
        );
        let mut e = vec![0xFF, 0xD4, 0x04, b'#'];
        e.extend_from_slice(b"HY000Could not find first log file name in binary log index file");
        match parse_err(&e) {
            ProtocolError::Server {
                code,
                state,
                message,
            } => {
                assert_eq!(code, 1236);
                assert_eq!(state, "HY000");
                assert!(message.starts_with("Could not find first log"));
            }
            other => panic!("{other:?}"),
        }
        // Truncated packets never panic.
        for n in 0..e.len() {
            let _ = parse_err(&e[..n]);
            let _ = parse_ok(&e[..n]);
            let _ = parse_eof_status(&e[..n]);
        }
    }
}
