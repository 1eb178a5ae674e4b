//! The source position a stream has reached, and the dedup rule of Publish.
//!
//! A capture that restarts resends from the position its relay reported, and
//! may resend a little more (what it had in flight). The relay drops every
//! transaction it already holds:
//!
//! - MariaDB GTID `domain-server-seq`: held when the stream's GTID state has a
//!   seq at least as high in that domain (seqs grow within a domain);
//! - MySQL GTID `uuid[:tag]:gno`: held when the stream's executed set
//!   contains it;
//! - no GTID: held when binlog file/pos is not after the last one.
//!
//! The state is rebuilt at open from the last record: its `gtid_set` (the
//! source's whole GTID state after it) when present, else its own GTID.
//! A position the relay cannot read (a GTID of neither form, no GTID and no
//! file) is refused, never guessed at.

use drc_capture::position::{BinlogPos, MariaGtid, MariaGtidList, MysqlGtidSet};
use drc_proto::v1::SourcePosition;

use crate::error::{RelayError, Result};

/// What a stream holds, as far as dedup is concerned.
#[derive(Debug, Clone, Default)]
pub struct PositionState {
    last: Option<SourcePosition>,
    maria: MariaGtidList,
    mysql: MysqlGtidSet,
    binlog: Option<BinlogPos>,
}

/// A parsed GTID.
enum Gtid {
    Maria(MariaGtid),
    Mysql { uuid: String, tag: String, gno: u64 },
}

fn parse_gtid(s: &str) -> Result<Gtid> {
    let bad = |why: String| RelayError::InvalidRequest(format!("bad GTID {s:?}: {why}"));
    if s.contains(':') {
        let mut parts: Vec<&str> = s.split(':').collect();
        let gno = parts
            .pop()
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| bad("expected uuid[:tag]:number".into()))?;
        let (uuid, tag) = match parts.as_slice() {
            [uuid] => (*uuid, ""),
            [uuid, tag] => (*uuid, *tag),
            _ => return Err(bad("expected uuid[:tag]:number".into())),
        };
        // Let the set's own parser judge the uuid and tag.
        let text = if tag.is_empty() {
            format!("{uuid}:{gno}")
        } else {
            format!("{uuid}:{tag}:{gno}")
        };
        text.parse::<MysqlGtidSet>().map_err(bad)?;
        Ok(Gtid::Mysql {
            uuid: uuid.to_ascii_lowercase(),
            tag: tag.to_ascii_lowercase(),
            gno,
        })
    } else {
        s.parse::<MariaGtid>().map(Gtid::Maria).map_err(bad)
    }
}

impl PositionState {
    /// The state after the stream's last record (`None` for an empty stream).
    pub fn recover(last: Option<SourcePosition>) -> Self {
        let mut st = PositionState::default();
        let Some(pos) = last else {
            return st;
        };
        let set = pos.gtid_set.trim();
        if !set.is_empty() {
            if set.contains(':') {
                match set.parse::<MysqlGtidSet>() {
                    Ok(s) => st.mysql = s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the GTID set of the last record; using its GTID")
                    }
                }
            } else {
                match set.parse::<MariaGtidList>() {
                    Ok(l) => st.maria = l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the GTID list of the last record; using its GTID")
                    }
                }
            }
        }
        // Its own GTID is in the state whatever the set said.
        if let Err(e) = st.note(&pos) {
            tracing::warn!(error = %e, "cannot read the position of the last record");
        }
        st.last = Some(pos);
        st
    }

    /// The position of the last transaction the stream holds.
    pub fn last(&self) -> Option<&SourcePosition> {
        self.last.as_ref()
    }

    /// True when the stream already holds the transaction at `pos`.
    pub fn holds(&self, pos: &SourcePosition) -> Result<bool> {
        if !pos.gtid.is_empty() {
            return Ok(match parse_gtid(&pos.gtid)? {
                Gtid::Maria(g) => self.maria.contains(&g),
                Gtid::Mysql { uuid, tag, gno } => self.mysql.contains(&uuid, &tag, gno),
            });
        }
        if pos.file.is_empty() {
            return Err(RelayError::InvalidRequest(
                "transaction has no source position (neither GTID nor binlog file); the capture must set position".into(),
            ));
        }
        let p = BinlogPos::new(pos.file.clone(), pos.pos);
        Ok(self.binlog.as_ref().is_some_and(|last| p <= *last))
    }

    /// Records `pos` as the newest position.
    pub fn advance(&mut self, pos: &SourcePosition) -> Result<()> {
        self.note(pos)?;
        self.last = Some(pos.clone());
        Ok(())
    }

    fn note(&mut self, pos: &SourcePosition) -> Result<()> {
        if !pos.gtid.is_empty() {
            match parse_gtid(&pos.gtid)? {
                Gtid::Maria(g) => self.maria.update(g),
                Gtid::Mysql { uuid, tag, gno } => self.mysql.add(&uuid, &tag, gno),
            }
        } else if pos.file.is_empty() {
            return Err(RelayError::InvalidRequest(
                "transaction has no source position (neither GTID nor binlog file); the capture must set position".into(),
            ));
        }
        if !pos.file.is_empty() {
            self.binlog = Some(BinlogPos::new(pos.file.clone(), pos.pos));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maria(gtid: &str, set: &str) -> SourcePosition {
        SourcePosition {
            gtid: gtid.into(),
            file: "bin.000001".into(),
            pos: 100,
            gtid_set: set.into(),
        }
    }

    #[test]
    fn mariadb_domains() {
        let st = PositionState::recover(Some(maria("0-1-10", "0-1-10,1-2-5")));
        assert!(st.holds(&maria("0-1-9", "")).expect("holds"));
        assert!(st.holds(&maria("0-1-10", "")).expect("holds"));
        assert!(!st.holds(&maria("0-1-11", "")).expect("holds"));
        assert!(st.holds(&maria("1-2-5", "")).expect("holds"));
        assert!(!st.holds(&maria("2-1-1", "")).expect("holds"));
        assert!(st.holds(&maria("x-y", "")).is_err());
    }

    #[test]
    fn mysql_sets() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut st = PositionState::recover(Some(SourcePosition {
            gtid: format!("{u}:5"),
            gtid_set: format!("{u}:1-5"),
            ..Default::default()
        }));
        let p = |g: String| SourcePosition {
            gtid: g,
            ..Default::default()
        };
        assert!(st.holds(&p(format!("{u}:3"))).expect("holds"));
        assert!(!st.holds(&p(format!("{u}:6"))).expect("holds"));
        st.advance(&p(format!("{u}:tag_a:1"))).expect("advance");
        assert!(st.holds(&p(format!("{u}:TAG_A:1"))).expect("holds"));
        assert!(st.holds(&p("nope:1".into())).is_err());
    }

    #[test]
    fn file_positions() {
        let mut st = PositionState::default();
        let p = |f: &str, pos| SourcePosition {
            file: f.into(),
            pos,
            ..Default::default()
        };
        assert!(!st.holds(&p("b.000001", 500)).expect("holds"));
        st.advance(&p("b.000001", 500)).expect("advance");
        assert!(st.holds(&p("b.000001", 500)).expect("holds"));
        assert!(!st.holds(&p("b.000002", 4)).expect("holds"));
        assert!(st.holds(&SourcePosition::default()).is_err());
    }
}
