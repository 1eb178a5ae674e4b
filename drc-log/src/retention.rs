//! Retention: which old segments to delete, and the subscriber positions
//! that hold them back.
//!
//! Only whole segments are deleted, oldest first, and never the segment
//! being written, so the log stays one contiguous run of offsets. A sealed
//! segment goes when the log is over `max_bytes` or the segment's newest
//! record (its file's modification time) is older than `max_age`, *and*
//! every registered subscriber has confirmed its last offset. Over
//! `hard_cap_bytes` segments go regardless of subscribers, with a warning
//! naming the subscribers that lose records: a full disk would stop every
//! stream, a lagging subscriber only itself.
//!
//! Subscriber positions live in `subscribers.json` in the log directory,
//! replaced atomically (temp file, fsync, rename, directory fsync). A
//! registration is saved before it returns; confirmations are saved by the
//! next retention pass (before it deletes anything) or on close. After a
//! crash a subscriber's saved position can only be older than the real one,
//! so retention keeps more, never less.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{LogError, Result};
use crate::log::{lock, Shared};
use crate::Offset;

/// The subscriber positions file in the log directory.
pub(crate) const SUBSCRIBERS_FILE: &str = "subscribers.json";
const SUBSCRIBERS_VERSION: u32 = 1;
/// Subscriber names longer than this are refused.
const MAX_NAME_LEN: usize = 256;

/// What to keep. Every limit is optional; with none set the log keeps
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete old segments while the log is larger than this, as far as
    /// subscribers allow.
    pub max_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this, as far as
    /// subscribers allow.
    pub max_age: Option<Duration>,
    /// Delete old segments while the log is larger than this even if a
    /// subscriber has not confirmed them (with a warning). Must be at least
    /// `max_bytes`.
    pub hard_cap_bytes: Option<u64>,
}

impl Retention {
    /// Checks the values; the message names the setting and the fix.
    pub fn validate(&self) -> Result<()> {
        if let (Some(max), Some(cap)) = (self.max_bytes, self.hard_cap_bytes) {
            if cap < max {
                return Err(LogError::Config(format!(
                    "retention hard_cap_bytes = {cap} is below max_bytes = {max}: raise the cap or lower max_bytes"
                )));
            }
        }
        Ok(())
    }

    fn is_unlimited(&self) -> bool {
        self.max_bytes.is_none() && self.max_age.is_none() && self.hard_cap_bytes.is_none()
    }
}

/// What one retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// The first offset the log holds now.
    pub first_offset: Offset,
    /// Subscribers whose unconfirmed records the hard cap deleted, with
    /// their confirmed positions.
    pub overridden: Vec<(String, Offset)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribersFile {
    version: u32,
    subscribers: BTreeMap<String, Offset>,
}

#[derive(Default)]
struct Book {
    positions: BTreeMap<String, Offset>,
    /// Positions changed since the last save.
    dirty: bool,
}

/// The registered subscribers and their confirmed positions.
pub(crate) struct Subscribers {
    book: Mutex<Book>,
    /// One save at a time, so an older snapshot never overwrites a newer.
    save_lock: Mutex<()>,
}

impl Subscribers {
    pub fn new(positions: BTreeMap<String, Offset>) -> Self {
        Subscribers {
            book: Mutex::new(Book {
                positions,
                dirty: false,
            }),
            save_lock: Mutex::new(()),
        }
    }

    /// Moves `name` forward to `offset` (never backward); returns its
    /// position after.
    pub fn confirm(&self, name: &str, offset: Offset) -> Result<Offset> {
        let mut b = lock(&self.book);
        let Some(pos) = b.positions.get_mut(name) else {
            return Err(LogError::UnknownSubscriber { name: name.into() });
        };
        if offset > *pos {
            *pos = offset;
            let now = *pos;
            b.dirty = true;
            return Ok(now);
        }
        Ok(*pos)
    }

    pub fn list(&self) -> Vec<(String, Offset)> {
        lock(&self.book)
            .positions
            .iter()
            .map(|(n, o)| (n.clone(), *o))
            .collect()
    }

    /// The lowest confirmed position; `None` with no subscribers.
    fn min(&self) -> Option<Offset> {
        lock(&self.book).positions.values().min().copied()
    }
}

/// Reads `subscribers.json`; none yet is an empty set.
pub(crate) fn load_subscribers(dir: &Path) -> Result<BTreeMap<String, Offset>> {
    let path = dir.join(SUBSCRIBERS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(LogError::io("read subscriber positions", &path, e)),
    };
    let file: SubscribersFile = serde_json::from_slice(&bytes).map_err(|e| {
        LogError::corrupt(
            &path,
            e.column() as u64,
            format!("subscriber positions file: {e}"),
        )
    })?;
    if file.version != SUBSCRIBERS_VERSION {
        return Err(LogError::corrupt(
            &path,
            0,
            format!("unsupported subscriber positions version {}", file.version),
        ));
    }
    Ok(file.subscribers)
}

fn save(shared: &Shared, even_if_clean: bool) -> Result<()> {
    let subs = &shared.subscribers;
    let _one_at_a_time = lock(&subs.save_lock);
    let positions = {
        let mut b = lock(&subs.book);
        if !b.dirty && !even_if_clean {
            return Ok(());
        }
        b.dirty = false;
        b.positions.clone()
    };
    let file = SubscribersFile {
        version: SUBSCRIBERS_VERSION,
        subscribers: positions,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| LogError::Failed {
        cause: format!("encode subscriber positions: {e}"),
    })?;
    durable::replace_file(&shared.dir, SUBSCRIBERS_FILE, &json).inspect_err(|_| {
        lock(&subs.book).dirty = true;
    })
}

/// Saves subscriber positions if any changed since the last save.
pub(crate) fn save_subscribers(shared: &Shared) -> Result<()> {
    save(shared, false)
}

pub(crate) fn register(shared: &Shared, name: &str) -> Result<Offset> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(LogError::Config(format!(
            "subscriber name {name:?} must be 1 to {MAX_NAME_LEN} characters without control characters"
        )));
    }
    // Hold retention off while the new subscriber takes its place, so a
    // pass that started before cannot delete what it now holds.
    let _no_retention = lock(&shared.retention_lock);
    let pos = {
        let first = shared.state().first_offset();
        let mut b = lock(&shared.subscribers.book);
        let pos = *b
            .positions
            .entry(name.to_owned())
            .or_insert_with(|| first.prev());
        b.dirty = true;
        pos
    };
    save(shared, true)?;
    tracing::info!(
        subscriber = name,
        confirmed = pos.0,
        "log subscriber registered"
    );
    Ok(pos)
}

pub(crate) fn unregister(shared: &Shared, name: &str) -> Result<bool> {
    let existed = {
        let mut b = lock(&shared.subscribers.book);
        let existed = b.positions.remove(name).is_some();
        b.dirty |= existed;
        existed
    };
    if existed {
        save(shared, true)?;
        tracing::info!(subscriber = name, "log subscriber unregistered");
    }
    Ok(existed)
}

/// A sealed segment as retention sees it.
#[derive(Clone, Debug)]
pub(crate) struct SegFacts {
    /// Its last offset.
    pub last: Offset,
    pub bytes: u64,
    /// When its newest record was written.
    pub modified: SystemTime,
}

/// How many of the oldest sealed segments to delete, and whether the hard
/// cap overrode a subscriber. `total` is the whole log's size.
pub(crate) fn plan(
    sealed: &[SegFacts],
    total: u64,
    policy: &Retention,
    min_confirmed: Option<Offset>,
    now: SystemTime,
) -> (usize, bool) {
    let mut remaining = total;
    let mut delete = 0;
    let mut forced = false;
    for seg in sealed {
        let over_cap = policy.hard_cap_bytes.is_some_and(|c| remaining > c);
        let over_size = policy.max_bytes.is_some_and(|m| remaining > m);
        let too_old = policy
            .max_age
            .is_some_and(|a| now.duration_since(seg.modified).is_ok_and(|age| age > a));
        let confirmed = min_confirmed.is_none_or(|m| seg.last <= m);
        if !(over_cap || (confirmed && (over_size || too_old))) {
            break;
        }
        forced |= !confirmed;
        delete += 1;
        remaining = remaining.saturating_sub(seg.bytes);
    }
    (delete, forced)
}

/// One retention pass: decide, save subscriber positions, forget the
/// segments in memory (new readers get `Deleted`), remove the files oldest
/// first, fsync the directory. Readers already inside a deleted segment
/// finish it from their open file.
pub(crate) fn enforce(shared: &Shared) -> Result<RetentionReport> {
    let _one_pass = lock(&shared.retention_lock);
    let policy = &shared.config.retention;
    let (sealed, total) = {
        let st = shared.state();
        let sealed: Vec<_> = st
            .segments
            .windows(2)
            .map(|w| (w[1].first.prev(), w[0].bytes, w[0].path.clone()))
            .collect();
        (sealed, st.segments.iter().map(|s| s.bytes).sum::<u64>())
    };
    let mut report = RetentionReport {
        first_offset: shared.state().first_offset(),
        ..RetentionReport::default()
    };
    if policy.is_unlimited() || sealed.is_empty() {
        return Ok(report);
    }
    let mut facts = Vec::with_capacity(sealed.len());
    for (last, bytes, path) in &sealed {
        let modified = fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| LogError::io("stat segment", path, e))?;
        facts.push(SegFacts {
            last: *last,
            bytes: *bytes,
            modified,
        });
    }
    let min = shared.subscribers.min();
    let (delete, forced) = plan(&facts, total, policy, min, SystemTime::now());
    if delete == 0 {
        return Ok(report);
    }
    let last_deleted = facts[delete - 1].last;
    if forced {
        report.overridden = shared
            .subscribers
            .list()
            .into_iter()
            .filter(|(_, pos)| *pos < last_deleted)
            .collect();
        for (name, pos) in &report.overridden {
            tracing::warn!(
                subscriber = %name,
                confirmed = pos.0,
                deleting_through = last_deleted.0,
                hard_cap_bytes = policy.hard_cap_bytes.unwrap_or(0),
                "log over its hard size cap: deleting records a subscriber has not confirmed"
            );
        }
    }
    save_subscribers(shared)?;
    let removed: Vec<_> = {
        let mut st = shared.state();
        st.segments.drain(..delete).collect()
    };
    report.first_offset = shared.state().first_offset();
    for seg in &removed {
        match fs::remove_file(&seg.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("delete old segment", &seg.path, e)),
        }
        report.deleted_segments += 1;
        report.deleted_bytes += seg.bytes;
    }
    durable::sync_dir(&shared.dir)?;
    tracing::info!(
        dir = %shared.dir.display(),
        segments = report.deleted_segments,
        bytes = report.deleted_bytes,
        first_offset = report.first_offset.0,
        "log retention deleted old segments"
    );
    Ok(report)
}

/// The writer's periodic pass: save positions, enforce, log what failed.
pub(crate) fn run_periodic(shared: &Shared) {
    if let Err(e) = save_subscribers(shared) {
        tracing::warn!(error = %e, "could not save log subscriber positions");
    }
    if let Err(e) = enforce(shared) {
        tracing::warn!(dir = %shared.dir.display(), error = %e, "log retention failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn segs(n: u64, bytes: u64, age: Duration, now: SystemTime) -> Vec<SegFacts> {
        (1..=n)
            .map(|i| SegFacts {
                last: Offset(i * 10),
                bytes,
                modified: now - age,
            })
            .collect()
    }

    #[test]
    fn size_limit_deletes_oldest_until_under() {
        let now = SystemTime::now();
        let s = segs(5, MIB, Duration::ZERO, now);
        let p = Retention {
            max_bytes: Some(3 * MIB),
            ..Retention::default()
        };
        // 5 sealed + 1 MiB active = 6 MiB; down to 3 MiB means 3 go.
        assert_eq!(plan(&s, 6 * MIB, &p, None, now), (3, false));
    }

    #[test]
    fn subscribers_hold_segments_back() {
        let now = SystemTime::now();
        let s = segs(5, MIB, Duration::ZERO, now);
        let p = Retention {
            max_bytes: Some(MIB),
            ..Retention::default()
        };
        // Confirmed through 25: segments ending at 10 and 20 may go.
        assert_eq!(plan(&s, 6 * MIB, &p, Some(Offset(25)), now), (2, false));
        assert_eq!(plan(&s, 6 * MIB, &p, Some(Offset(0)), now), (0, false));
    }

    #[test]
    fn hard_cap_overrides_subscribers() {
        let now = SystemTime::now();
        let s = segs(5, MIB, Duration::ZERO, now);
        let p = Retention {
            max_bytes: Some(MIB),
            hard_cap_bytes: Some(4 * MIB),
            ..Retention::default()
        };
        assert_eq!(plan(&s, 6 * MIB, &p, Some(Offset(0)), now), (2, true));
    }

    #[test]
    fn age_limit() {
        let now = SystemTime::now();
        let mut s = segs(3, MIB, Duration::from_secs(3600), now);
        s[2].modified = now;
        let p = Retention {
            max_age: Some(Duration::from_secs(60)),
            ..Retention::default()
        };
        assert_eq!(plan(&s, 4 * MIB, &p, None, now), (2, false));
    }

    #[test]
    fn hard_cap_below_max_bytes_is_refused() {
        let r = Retention {
            max_bytes: Some(10),
            hard_cap_bytes: Some(5),
            ..Retention::default()
        };
        assert!(r.validate().is_err());
    }
}
