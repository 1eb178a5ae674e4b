//! Source positions: binlog file/offset, MariaDB GTIDs and GTID lists, MySQL GTID sets.
//!
//! All of them parse from and print to the text forms the servers use
//! (`mariadb-bin.000042:1234`, `0-1-100,1-2-7`, `uuid:1-5:7,uuid:tag:1-3`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A binlog file name and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPos {
    pub file: String,
    pub pos: u64,
}

impl BinlogPos {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Self {
            file: file.into(),
            pos,
        }
    }

    /// The numeric suffix of the file name (`binlog.000042` → 42), which orders
    /// files of one server.
    pub fn file_index(&self) -> Option<u64> {
        file_index(&self.file)
    }
}

/// The numeric extension of a binlog file name.
pub fn file_index(file: &str) -> Option<u64> {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

impl PartialOrd for BinlogPos {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BinlogPos {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = (self.file_index(), &self.file, self.pos);
        let b = (other.file_index(), &other.file, other.pos);
        a.cmp(&b)
    }
}

impl fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MariaGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for MariaGtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.trim().splitn(3, '-');
        let bad = || format!("bad MariaDB GTID {s:?}: expected domain-server-seq, e.g. 0-1-42");
        let domain = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let server_id = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let seq = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        Ok(Self {
            domain,
            server_id,
            seq,
        })
    }
}

/// A MariaDB GTID position: the last GTID of each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MariaGtidList(pub BTreeMap<u32, MariaGtid>);

impl MariaGtidList {
    /// Records `gtid` as the newest of its domain.
    pub fn update(&mut self, gtid: MariaGtid) {
        self.0.insert(gtid.domain, gtid);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `gtid` is already covered by this position (same domain, seq not newer).
    pub fn contains(&self, gtid: &MariaGtid) -> bool {
        self.0.get(&gtid.domain).is_some_and(|g| g.seq >= gtid.seq)
    }
}

impl fmt::Display for MariaGtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for g in self.0.values() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaGtidList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut list = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: MariaGtid = part.parse()?;
            if list.0.contains_key(&g.domain) {
                return Err(format!("GTID list {s:?} names domain {} twice", g.domain));
            }
            list.update(g);
        }
        Ok(list)
    }
}

/// A MySQL GTID set: per source UUID (and optional tag), a list of closed
/// intervals of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MysqlGtidSet(pub BTreeMap<(String, String), Vec<(u64, u64)>>);

impl MysqlGtidSet {
    /// Adds transaction `gno` of `uuid` (with `tag`, empty for untagged).
    pub fn add(&mut self, uuid: &str, tag: &str, gno: u64) {
        let ivs = self
            .0
            .entry((uuid.to_ascii_lowercase(), tag.to_ascii_lowercase()))
            .or_default();
        ivs.push((gno, gno));
        normalize(ivs);
    }

    pub fn contains(&self, uuid: &str, tag: &str, gno: u64) -> bool {
        self.0
            .get(&(uuid.to_ascii_lowercase(), tag.to_ascii_lowercase()))
            .is_some_and(|ivs| ivs.iter().any(|&(a, b)| a <= gno && gno <= b))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every transaction of `other` is in `self`.
    pub fn is_superset_of(&self, other: &MysqlGtidSet) -> bool {
        other.0.iter().all(|(k, ivs)| {
            let mine = self.0.get(k).map(Vec::as_slice).unwrap_or(&[]);
            ivs.iter()
                .all(|&(a, b)| mine.iter().any(|&(x, y)| x <= a && b <= y))
        })
    }
}

fn normalize(ivs: &mut Vec<(u64, u64)>) {
    ivs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
    for &(a, b) in ivs.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *ivs = out;
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first_uuid = true;
        let mut last_uuid: Option<&str> = None;
        for ((uuid, tag), ivs) in &self.0 {
            if last_uuid != Some(uuid.as_str()) {
                if !first_uuid {
                    f.write_str(",")?;
                }
                first_uuid = false;
                f.write_str(uuid)?;
                last_uuid = Some(uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(a, b) in ivs {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut set = Self::default();
        let bad = |why: &str| format!("bad MySQL GTID set {s:?}: {why}");
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = it.next().unwrap_or_default().trim().to_ascii_lowercase();
            if uuid.len() != 36 || uuid.chars().filter(|&c| c == '-').count() != 4 {
                return Err(bad(&format!("{uuid:?} is not a UUID")));
            }
            let mut tag = String::new();
            let mut any = false;
            for piece in it {
                let piece = piece.trim();
                if piece.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    let (a, b) = match piece.split_once('-') {
                        Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                        None => (piece.parse::<u64>(), piece.parse::<u64>()),
                    };
                    let (a, b) = match (a, b) {
                        (Ok(a), Ok(b)) if a >= 1 && a <= b => (a, b),
                        _ => return Err(bad(&format!("interval {piece:?}"))),
                    };
                    let ivs = set.0.entry((uuid.clone(), tag.clone())).or_default();
                    ivs.push((a, b));
                    normalize(ivs);
                    any = true;
                } else if !piece.is_empty()
                    && piece.len() <= 32
                    && piece.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    tag = piece.to_ascii_lowercase();
                } else {
                    return Err(bad(&format!("tag {piece:?}")));
                }
            }
            if !any {
                return Err(bad("a UUID without intervals"));
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_pos_orders_by_file_index() {
        let a = BinlogPos::new("b.000009", 900);
        let b = BinlogPos::new("b.000010", 4);
        assert!(a < b);
    }

    #[test]
    fn maria_list_round_trip() {
        let l: MariaGtidList = "0-1-100, 2-5-7".parse().expect("parse");
        assert_eq!(l.to_string(), "0-1-100,2-5-7");
        assert!(l.contains(&MariaGtid {
            domain: 0,
            server_id: 9,
            seq: 99
        }));
        assert!(!l.contains(&MariaGtid {
            domain: 1,
            server_id: 1,
            seq: 1
        }));
        assert!("0-1-1,0-2-3".parse::<MariaGtidList>().is_err());
    }

    #[test]
    fn mysql_set_round_trip_with_tags() {
        let s: MysqlGtidSet = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7:6,3e11fa47-71ca-11e1-9e33-c80aa9429562:tag_a:1-3"
            .parse()
            .expect("parse");
        assert_eq!(
            s.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7:tag_a:1-3"
        );
        assert!(s.contains("3e11fa47-71ca-11e1-9e33-c80aa9429562", "", 6));
        assert!(s.contains("3e11fa47-71ca-11e1-9e33-c80aa9429562", "TAG_A", 2));
        assert!(!s.contains("3e11fa47-71ca-11e1-9e33-c80aa9429562", "tag_a", 4));
        assert!("nope:1-2".parse::<MysqlGtidSet>().is_err());
    }
}
