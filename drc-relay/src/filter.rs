//! A subscription's filter: `db.table` include/exclude globs and origins to
//! leave out.
//!
//! - A row change passes when its `db.table` matches an include pattern (or
//!   there are none) and no exclude pattern. A pattern without a dot names a
//!   whole database (`shop` is `shop.*`).
//! - A transaction is delivered with the row changes that pass; untouched (the
//!   stored bytes) when all pass, re-encoded with the passing ones when some
//!   do, not at all when none do.
//! - A DDL statement is kept when its database could hold a table that
//!   passes: some include pattern's database part matches it (or there are no
//!   includes) and no exclude pattern covers the whole database (`db.*`).
//! - A transaction whose `origin` is listed is never delivered.
//!
//! Offsets of transactions left out still count as delivered-past: the batch
//! that skips them covers their offsets (see `Batch.count` in relay.proto).

use bytes::Bytes;
use drc_proto::v1 as pb;
use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use prost::Message;

use crate::error::{RelayError, Result};
use crate::record;

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    db: GlobMatcher,
    /// The table part is `*` (the pattern covers whole databases).
    whole_db: bool,
}

/// A compiled subscription filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<(GlobSet, Vec<Pattern>)>,
    exclude: Option<(GlobSet, Vec<Pattern>)>,
    exclude_origins: Vec<String>,
}

fn compile(patterns: &[String]) -> Result<Option<(GlobSet, Vec<Pattern>)>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let bad = |p: &str, e: globset::Error| {
        RelayError::InvalidRequest(format!("bad table pattern {p:?}: {e}"))
    };
    let mut set = GlobSetBuilder::new();
    let mut parts = Vec::with_capacity(patterns.len());
    for p in patterns {
        let full = if p.contains('.') {
            p.clone()
        } else {
            format!("{p}.*")
        };
        let (db, table) = full.split_once('.').unwrap_or((full.as_str(), "*"));
        if db.is_empty() || table.is_empty() {
            return Err(RelayError::InvalidRequest(format!(
                "bad table pattern {p:?}: write db.table, db.* or db"
            )));
        }
        set.add(Glob::new(&full).map_err(|e| bad(p, e))?);
        parts.push(Pattern {
            db: Glob::new(db).map_err(|e| bad(p, e))?.compile_matcher(),
            whole_db: table == "*",
        });
    }
    let set = set
        .build()
        .map_err(|e| RelayError::InvalidRequest(format!("bad table patterns: {e}")))?;
    Ok(Some((set, parts)))
}

/// What a filter makes of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Deliver these bytes (the stored record or a trimmed re-encoding).
    Deliver(Bytes),
    /// Leave the transaction out.
    Skip,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String], exclude_origins: &[String]) -> Result<Self> {
        Ok(Self {
            include: compile(include)?,
            exclude: compile(exclude)?,
            exclude_origins: exclude_origins
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
        })
    }

    /// True when every record passes untouched.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none() && self.exclude_origins.is_empty()
    }

    fn has_tables(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    /// True when a row change of `db.table` passes.
    pub fn table_passes(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        self.include.as_ref().is_none_or(|(s, _)| s.is_match(&name))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|(s, _)| s.is_match(&name))
    }

    /// True when a DDL in `db` passes.
    pub fn ddl_passes(&self, db: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|(_, ps)| ps.iter().any(|p| p.db.is_match(db)))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|(_, ps)| ps.iter().any(|p| p.whole_db && p.db.is_match(db)))
    }

    /// Applies the filter to one stored record.
    pub fn apply(&self, record: &Bytes) -> Result<Verdict> {
        if self.is_empty() {
            return Ok(Verdict::Deliver(record.clone()));
        }
        let route = record::route(record)?;
        if self.exclude_origins.contains(&route.origin) {
            return Ok(Verdict::Skip);
        }
        if !self.has_tables() {
            return Ok(Verdict::Deliver(record.clone()));
        }
        let ddl_kept = route
            .ddl
            .as_ref()
            .filter(|d| !d.statement.is_empty())
            .map(|d| self.ddl_passes(&d.database));
        let passing = route
            .changes
            .iter()
            .filter(|c| self.table_passes(&c.schema, &c.table))
            .count();
        let has_ddl = ddl_kept.is_some();
        let ddl_ok = ddl_kept.unwrap_or(false);
        if passing == 0 && !ddl_ok {
            return Ok(Verdict::Skip);
        }
        if passing == route.changes.len() && (ddl_ok || !has_ddl) {
            return Ok(Verdict::Deliver(record.clone()));
        }
        // Some changes pass, some do not: decode whole and keep the passing.
        let mut tx = pb::Transaction::decode(record.clone())
            .map_err(|e| RelayError::Corrupt(format!("undecodable transaction: {e}")))?;
        tx.changes
            .retain(|c| self.table_passes(&c.schema, &c.table));
        if !ddl_ok {
            tx.ddl = None;
        }
        Ok(Verdict::Deliver(Bytes::from(tx.encode_to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(db: &str, table: &str) -> pb::RowChange {
        pb::RowChange {
            op: pb::Op::Insert as i32,
            schema: db.into(),
            table: table.into(),
            ..Default::default()
        }
    }

    fn tx(changes: Vec<pb::RowChange>, ddl: Option<(&str, &str)>, origin: &str) -> Bytes {
        Bytes::from(
            pb::Transaction {
                origin: origin.into(),
                changes,
                ddl: ddl.map(|(db, s)| pb::Ddl {
                    statement: s.into(),
                    database: db.into(),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    }

    #[test]
    fn tables_ddl_and_origins() {
        let f = Filter::new(
            &["shop.*".into(), "crm.users".into()],
            &["shop.audit_*".into()],
            &["b".into()],
        )
        .expect("filter");
        let all = tx(vec![change("shop", "orders")], None, "");
        assert_eq!(f.apply(&all).expect("apply"), Verdict::Deliver(all.clone()));
        let none = tx(
            vec![change("shop", "audit_log"), change("crm", "leads")],
            None,
            "",
        );
        assert_eq!(f.apply(&none).expect("apply"), Verdict::Skip);
        let some = tx(
            vec![change("shop", "audit_log"), change("crm", "users")],
            None,
            "",
        );
        match f.apply(&some).expect("apply") {
            Verdict::Deliver(b) => {
                let t = pb::Transaction::decode(b).expect("decode");
                assert_eq!(t.changes.len(), 1);
                assert_eq!(t.changes[0].table, "users");
            }
            Verdict::Skip => panic!("should deliver"),
        }
        let from_b = tx(vec![change("shop", "orders")], None, "b");
        assert_eq!(f.apply(&from_b).expect("apply"), Verdict::Skip);
        let ddl_crm = tx(vec![], Some(("crm", "ALTER TABLE users ADD c INT")), "");
        assert_eq!(
            f.apply(&ddl_crm).expect("apply"),
            Verdict::Deliver(ddl_crm.clone())
        );
        let ddl_other = tx(vec![], Some(("hr", "ALTER TABLE x ADD c INT")), "");
        assert_eq!(f.apply(&ddl_other).expect("apply"), Verdict::Skip);
        let whole = Filter::new(&[], &["hr".into()], &[]).expect("filter");
        assert_eq!(whole.apply(&ddl_other).expect("apply"), Verdict::Skip);
        assert_eq!(
            whole.apply(&ddl_crm).expect("apply"),
            Verdict::Deliver(ddl_crm.clone())
        );
        assert!(Filter::new(&["[".into()], &[], &[]).is_err());
        assert!(Filter::new(&[".x".into()], &[], &[]).is_err());
    }
}
