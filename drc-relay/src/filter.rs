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
//! - A transaction whose `origin` is listed among the stub origins is
//!   delivered as a stub ([`stub`]): what a replica needs to keep the offset
//!   (position, commit time, server id, origin), none of the changes.
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
    stub_origins: Vec<String>,
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
            stub_origins: Vec::new(),
        })
    }

    /// Delivers the transactions of these origins as stubs.
    pub fn with_stub_origins(mut self, origins: &[String]) -> Self {
        self.stub_origins = origins.iter().filter(|o| !o.is_empty()).cloned().collect();
        self
    }

    /// True when every record passes untouched.
    pub fn is_empty(&self) -> bool {
        self.include.is_none()
            && self.exclude.is_none()
            && self.exclude_origins.is_empty()
            && self.stub_origins.is_empty()
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
        if self.stub_origins.contains(&route.origin) {
            return stub(record).map(Verdict::Deliver);
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

/// The stub of a stored transaction: its position, commit time, server id
/// and origin, without changes or DDL (deterministic: the same record always
/// gives the same bytes).
pub fn stub(record: &Bytes) -> Result<Bytes> {
    let tx = pb::Transaction::decode(record.clone())
        .map_err(|e| RelayError::Corrupt(format!("undecodable transaction: {e}")))?;
    Ok(Bytes::from(
        pb::Transaction {
            position: tx.position,
            commit_ts_us: tx.commit_ts_us,
            server_id: tx.server_id,
            origin: tx.origin,
            changes: Vec::new(),
            ddl: None,
        }
        .encode_to_vec(),
    ))
}

/// Whether `a` and `b` are one transaction, the same bytes or one of them
/// the other's stub (a replica whose stub origins changed between runs).
pub fn same_transaction(a: &Bytes, b: &Bytes) -> bool {
    if a == b {
        return true;
    }
    match (stub(a), stub(b)) {
        (Ok(sa), Ok(sb)) => sa == sb && (sa == *a || sb == *b),
        _ => false,
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
    fn stub_origins_keep_the_offset_but_not_the_changes() {
        let full = tx(vec![change("shop", "t")], None, "a.shop");
        let f = Filter::new(&[], &[], &[])
            .expect("filter")
            .with_stub_origins(&["a.shop".into()]);
        assert!(!f.is_empty());
        let Verdict::Deliver(s) = f.apply(&full).expect("apply") else {
            panic!("a stub is delivered");
        };
        let decoded = pb::Transaction::decode(s.clone()).expect("decode");
        assert!(decoded.changes.is_empty() && decoded.ddl.is_none());
        assert_eq!(decoded.origin, "a.shop");
        assert!(same_transaction(&full, &s) && same_transaction(&s, &full));
        assert!(!same_transaction(
            &full,
            &tx(vec![change("shop", "u")], None, "a.shop")
        ));
        // Other origins pass whole.
        let other = tx(vec![change("shop", "t")], None, "");
        assert!(matches!(f.apply(&other).expect("apply"), Verdict::Deliver(b) if b == other));
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
