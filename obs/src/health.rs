//! Readiness: each long-running part of a daemon (the relay's listener, a
//! capture, an upstream replication, an apply pipeline) registers here and
//! says whether it is doing its job. `/readyz` answers 200 only when every
//! registered part is ready, and lists the ones that are not, with why.
//!
//! A part is registered for as long as its [`Part`] lives; dropping it
//! removes the part (a role that stopped on purpose is not "not ready").

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

static PARTS: Mutex<BTreeMap<String, Option<String>>> = Mutex::new(BTreeMap::new());

fn parts() -> MutexGuard<'static, BTreeMap<String, Option<String>>> {
    PARTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A registered part; not ready ("starting") until it says so.
#[derive(Debug)]
pub struct Part {
    name: String,
}

impl Part {
    /// Registers `name` (e.g. `capture a.shop`). A second registration of
    /// the same name shares its state.
    pub fn register(name: impl Into<String>) -> Self {
        let name = name.into();
        parts().insert(name.clone(), Some("starting".into()));
        Self { name }
    }

    /// Cheap when nothing changes: callers say it on every batch.
    pub fn ready(&self) {
        self.set(None);
    }

    pub fn not_ready(&self, why: impl std::fmt::Display) {
        self.set(Some(why.to_string()));
    }

    fn set(&self, state: Option<String>) {
        let mut parts = parts();
        match parts.get_mut(&self.name) {
            Some(s) if *s == state => {}
            Some(s) => *s = state,
            None => {
                parts.insert(self.name.clone(), state);
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        parts().remove(&self.name);
    }
}

/// Every registered part and why it is not ready (`None`: ready).
pub fn snapshot() -> Vec<(String, Option<String>)> {
    parts()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_report_until_dropped() {
        let p = Part::register("test part");
        let find = || snapshot().into_iter().find(|(n, _)| n == "test part");
        assert_eq!(find(), Some(("test part".into(), Some("starting".into()))));
        p.ready();
        assert_eq!(find(), Some(("test part".into(), None)));
        p.not_ready("link down");
        assert_eq!(find(), Some(("test part".into(), Some("link down".into()))));
        drop(p);
        assert_eq!(find(), None);
    }
}
