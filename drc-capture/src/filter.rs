//! Include/exclude filters on `db.table`, with globs (`shop.*`, `*.audit_*`).
//!
//! A table passes when it matches an include pattern (or there are none) and
//! matches no exclude pattern. Patterns without a dot name a whole database.

use globset::{Glob, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn build(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = if p.contains('.') {
            p.clone()
        } else {
            format!("{p}.*")
        };
        let g = Glob::new(&p).map_err(|e| format!("bad table pattern {p:?}: {e}"))?;
        b.add(g);
    }
    b.build()
        .map(Some)
        .map_err(|e| format!("bad table patterns: {e}"))
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        Ok(Self {
            include: build(include)?,
            exclude: build(exclude)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub fn matches(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        self.include.as_ref().is_none_or(|s| s.is_match(&name))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude() {
        let f = Filter::new(
            &["shop.*".into(), "crm.users".into()],
            &["shop.audit_*".into()],
        )
        .expect("filter");
        assert!(f.matches("shop", "orders"));
        assert!(!f.matches("shop", "audit_log"));
        assert!(f.matches("crm", "users"));
        assert!(!f.matches("crm", "leads"));
        let db_only = Filter::new(&["shop".into()], &[]).expect("filter");
        assert!(db_only.matches("shop", "x"));
        assert!(!db_only.matches("shopx", "x"));
    }
}
