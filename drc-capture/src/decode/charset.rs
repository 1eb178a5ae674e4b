//! Column character sets: collation id → charset, and charset → UTF-8.
//!
//! Live captures load the server's whole collation table
//! (`information_schema.COLLATIONS`) at start; offline reading falls back on
//! the built-in table of the ids MySQL and MariaDB ship. Text that is not valid
//! in its declared charset is an error, never replaced by U+FFFD.

use std::collections::HashMap;
use std::sync::Arc;

/// How to turn a column's bytes into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Binary strings: the bytes are the value.
    Binary,
    /// utf8mb4, utf8mb3 and ascii (a subset).
    Utf8,
    /// MySQL's latin1 is Windows-1252 with the five undefined bytes mapped to C1 controls.
    Latin1,
    Ucs2,
    Utf16,
    Utf16le,
    Utf32,
    Other(&'static encoding_rs::Encoding),
    /// Nothing tells the charset (binlog files of old servers without row
    /// metadata, for tables the file does not create): UTF-8 text when the
    /// bytes are valid UTF-8, else bytes.
    Unknown,
}

impl Charset {
    /// Maps a MySQL/MariaDB charset name; `None` for one we cannot decode.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        Some(match n.as_str() {
            "binary" => Charset::Binary,
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
            "latin1" => Charset::Latin1,
            "ucs2" => Charset::Ucs2,
            "utf16" => Charset::Utf16,
            "utf16le" => Charset::Utf16le,
            "utf32" => Charset::Utf32,
            "latin2" => Charset::Other(encoding_rs::ISO_8859_2),
            "cp1250" => Charset::Other(encoding_rs::WINDOWS_1250),
            "cp1251" => Charset::Other(encoding_rs::WINDOWS_1251),
            "cp1256" => Charset::Other(encoding_rs::WINDOWS_1256),
            "cp1257" => Charset::Other(encoding_rs::WINDOWS_1257),
            "greek" => Charset::Other(encoding_rs::ISO_8859_7),
            "hebrew" => Charset::Other(encoding_rs::ISO_8859_8),
            "latin5" => Charset::Other(encoding_rs::WINDOWS_1254),
            "latin7" => Charset::Other(encoding_rs::ISO_8859_13),
            "koi8r" => Charset::Other(encoding_rs::KOI8_R),
            "koi8u" => Charset::Other(encoding_rs::KOI8_U),
            "cp866" => Charset::Other(encoding_rs::IBM866),
            "macroman" => Charset::Other(encoding_rs::MACINTOSH),
            "tis620" => Charset::Other(encoding_rs::WINDOWS_874),
            "gbk" | "gb2312" => Charset::Other(encoding_rs::GBK),
            "gb18030" => Charset::Other(encoding_rs::GB18030),
            "big5" => Charset::Other(encoding_rs::BIG5),
            "sjis" | "cp932" => Charset::Other(encoding_rs::SHIFT_JIS),
            "ujis" | "eucjpms" => Charset::Other(encoding_rs::EUC_JP),
            "euckr" => Charset::Other(encoding_rs::EUC_KR),
            _ => return None,
        })
    }

    /// Decodes `bytes` to a string, or says why it cannot.
    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        match self {
            Charset::Binary | Charset::Unknown => Err("binary string has no text form".into()),
            Charset::Utf8 => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to())),
            Charset::Latin1 => Ok(bytes
                .iter()
                .map(|&b| match b {
                    0x81 | 0x8d | 0x8f | 0x90 | 0x9d => char::from(b),
                    _ => {
                        let one = [b];
                        let (c, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&one);
                        c.chars().next().unwrap_or(char::from(b))
                    }
                })
                .collect()),
            Charset::Ucs2 | Charset::Utf16 => {
                if !bytes.len().is_multiple_of(2) {
                    return Err("odd byte count in UTF-16 text".into());
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
                String::from_utf16(&units).map_err(|_| "invalid UTF-16".into())
            }
            Charset::Utf16le => {
                if !bytes.len().is_multiple_of(2) {
                    return Err("odd byte count in UTF-16LE text".into());
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]]))
                    .collect();
                String::from_utf16(&units).map_err(|_| "invalid UTF-16LE".into())
            }
            Charset::Utf32 => {
                if !bytes.len().is_multiple_of(4) {
                    return Err("byte count in UTF-32 text not a multiple of 4".into());
                }
                bytes
                    .chunks_exact(4)
                    .map(|p| {
                        char::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                            .ok_or_else(|| "invalid UTF-32 code point".to_string())
                    })
                    .collect()
            }
            Charset::Other(enc) => {
                let (s, had_errors) = enc.decode_without_bom_handling(bytes);
                if had_errors {
                    Err(format!("invalid {} text", enc.name()))
                } else {
                    Ok(s.into_owned())
                }
            }
        }
    }
}

/// Collation id → charset name.
#[derive(Debug, Clone)]
pub struct Collations(Arc<HashMap<u16, String>>);

impl Default for Collations {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Collations {
    /// The ids MySQL 8 and MariaDB 10.x/11.x ship.
    pub fn builtin() -> Self {
        let mut m = HashMap::new();
        let mut put = |name: &str, ids: &[u16]| {
            for &id in ids {
                m.insert(id, name.to_string());
            }
        };
        put("big5", &[1, 84]);
        put("latin2", &[2, 9, 21, 27, 77]);
        put("latin1", &[5, 8, 15, 31, 47, 48, 49, 94]);
        put("koi8r", &[7, 74]);
        put("ascii", &[11, 65]);
        put("ujis", &[12, 91]);
        put("sjis", &[13, 88]);
        put("cp1251", &[14, 23, 50, 51, 52]);
        put("hebrew", &[16, 71]);
        put("tis620", &[18, 89]);
        put("euckr", &[19, 85]);
        put("latin7", &[20, 41, 42, 79]);
        put("koi8u", &[22, 75]);
        put("gb2312", &[24, 86]);
        put("greek", &[25, 70]);
        put("cp1250", &[26, 34, 44, 66, 99]);
        put("gbk", &[28, 87]);
        put("cp1257", &[29, 58, 59]);
        put("latin5", &[30, 78]);
        put("utf8mb3", &[33, 76, 83, 223]);
        put("ucs2", &[35, 90]);
        put("cp866", &[36, 68]);
        put("macroman", &[39, 53]);
        put("utf8mb4", &[45, 46]);
        put("cp1256", &[57, 67]);
        put("utf16", &[54, 55]);
        put("utf16le", &[56, 62]);
        put("binary", &[63]);
        put("utf32", &[60, 61]);
        put("cp932", &[95, 96]);
        put("eucjpms", &[97, 98]);
        put("gb18030", &[248, 249, 250]);
        let mut put_range = |name: &str, lo: u16, hi: u16| {
            for id in lo..=hi {
                m.insert(id, name.to_string());
            }
        };
        put_range("utf16", 101, 124);
        put_range("ucs2", 128, 151);
        put_range("utf32", 160, 183);
        put_range("utf8mb3", 192, 215);
        put_range("utf8mb4", 224, 247);
        put_range("utf8mb4", 255, 323);
        // MariaDB: *_mysql561 collations and NO PAD variants (base id + 1024).
        put_range("utf8mb3", 576, 607);
        put_range("utf8mb4", 608, 639);
        put_range("ucs2", 640, 671);
        put_range("utf16", 672, 703);
        put_range("utf32", 736, 767);
        let base: Vec<(u16, String)> = m.iter().map(|(&k, v)| (k, v.clone())).collect();
        for (id, name) in base {
            if id < 1024 {
                m.entry(id + 1024).or_insert(name);
            }
        }
        Self(Arc::new(m))
    }

    /// A table read from the server (`SELECT ID, CHARACTER_SET_NAME FROM
    /// information_schema.COLLATIONS`), on top of the built-in one.
    pub fn with_server(pairs: impl IntoIterator<Item = (u16, String)>) -> Self {
        let mut m = (*Self::builtin().0).clone();
        for (id, name) in pairs {
            m.insert(id, name);
        }
        Self(Arc::new(m))
    }

    pub fn charset_name(&self, collation_id: u16) -> Option<&str> {
        self.0.get(&collation_id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252_with_c1_controls() {
        assert_eq!(
            Charset::Latin1.decode(&[0x80, 0x81, 0xe9]).expect("latin1"),
            "\u{20ac}\u{81}é"
        );
        assert!(Charset::Utf8.decode(&[0xff]).is_err());
        assert_eq!(Collations::builtin().charset_name(1069), Some("utf8mb4"));
    }
}
