//! A bounds-checked little-endian reader over untrusted bytes.
//!
//! Every read either returns the value or a [`Short`] error naming what was
//! being read; nothing here can panic on malformed input.

use std::fmt;

/// A read went past the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Short {
    pub what: &'static str,
    pub need: usize,
    pub have: usize,
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "truncated {}: needs {} bytes, {} left",
            self.what, self.need, self.have
        )
    }
}

impl std::error::Error for Short {}

#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread rest of the buffer, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        r
    }

    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Short {
                what,
                need: n,
                have: self.remaining(),
            }),
        }
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), Short> {
        self.take(n, what).map(|_| ())
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(self.uint_le(2, what)? as u16)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Short> {
        Ok(self.uint_le(4, what)? as u32)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Short> {
        self.uint_le(8, what)
    }

    /// An unsigned little-endian integer of `n` (≤ 8) bytes.
    pub fn uint_le(&mut self, n: usize, what: &'static str) -> Result<u64, Short> {
        let b = self.take(n.min(8), what)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// An unsigned big-endian integer of `n` (≤ 8) bytes.
    pub fn uint_be(&mut self, n: usize, what: &'static str) -> Result<u64, Short> {
        let b = self.take(n.min(8), what)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// MySQL's length-encoded integer (`net_field_length`). `0xfb` (NULL) reads as 0.
    pub fn lenenc(&mut self, what: &'static str) -> Result<u64, Short> {
        match self.u8(what)? {
            x @ 0..=0xfa => Ok(u64::from(x)),
            0xfb => Ok(0),
            0xfc => self.uint_le(2, what),
            0xfd => self.uint_le(3, what),
            0xfe => self.uint_le(8, what),
            _ => Err(Short {
                what,
                need: 0,
                have: self.remaining(),
            }),
        }
    }

    /// A length-encoded integer used as a byte count, checked against what is left.
    pub fn lenenc_len(&mut self, what: &'static str) -> Result<usize, Short> {
        let n = self.lenenc(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(Short {
                what,
                need: usize::try_from(n).unwrap_or(usize::MAX),
                have: self.remaining(),
            }),
        }
    }

    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], Short> {
        let n = self.lenenc_len(what)?;
        self.take(n, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut c = Cursor::new(&[1, 2, 0, 0xfc, 3, 0]);
        assert_eq!(c.u8("a").expect("u8"), 1);
        assert_eq!(c.u16("b").expect("u16"), 2);
        assert_eq!(c.lenenc("c").expect("lenenc"), 3);
        assert!(c.u8("d").is_err());
        let mut c = Cursor::new(&[0xfe, 1]);
        assert!(c.lenenc("e").is_err());
    }
}
