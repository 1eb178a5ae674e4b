//! The persisted schema history: which tables looked how, at which binlog
//! position.
//!
//! When the server does not send column metadata with its row events, the
//! capture decodes them with the schema the table had at that point of the
//! stream. This history provides it: a snapshot of `information_schema`
//! taken at a known position, plus every DDL statement since, each stored
//! with its position and with the *resulting* state of the tables it touched.
//! Replaying history therefore never depends on parsing a statement again.
//!
//! The file is JSON lines, one entry per line, appended and fsync'd before
//! [`SchemaHistory::apply_ddl`], [`SchemaHistory::record_snapshot`] or
//! [`SchemaHistory::confirm_from_server`] return, so a DDL is durable in the
//! history before the capture emits anything decoded with its result:
//!
//! ```text
//! {"kind":"snapshot","at":{"file":"binlog.000003","pos":4},"tables":[...],"meta":[...],"db_charsets":{...}}
//! {"kind":"ddl","at":{"file":"binlog.000003","pos":912},"db":"shop","statement":"ALTER TABLE ...",
//!  "tables":[...resulting schemas...],"dropped":[["shop","old"]],"meta":[...],"effect":{...}}
//! ```
//!
//! Guarantees:
//!
//! - A torn last line (a crash in the middle of an append) is dropped with a
//!   warning and cut off the file, so the next append starts on a clean line.
//!   Any other unreadable line is [`SchemaError::Corrupt`], naming the file and
//!   the line: the history is never silently shortened in the middle.
//! - Entries are ordered by binlog position ([`BinlogPos`]'s order: file index,
//!   then offset), whatever the order they were written in.
//! - [`SchemaHistory::rewind_to`] gives the schema as of any position at or
//!   after the oldest snapshot; earlier positions are an error, never a guess.
//! - A DDL met again after a rewind (same position) is not parsed again: its
//!   recorded result is applied. A different statement at a recorded position
//!   means the history and the stream diverged, and is an error.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ddl::{DdlEffect, DdlPlan, SchemaSet, TableChanges, TableKey, TableMeta};
use super::snapshot::SchemaSnapshot;
use super::TableSchema;
use crate::position::BinlogPos;

/// Errors of the schema module.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema history {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    /// A statement that may change tables but that could not be understood:
    /// confirm its effect from the server, or stop.
    #[error("DDL not understood ({reason}): {}", short(statement))]
    UnknownDdl { statement: String, reason: String },
    #[error("reading the schema from the server: {0}")]
    Server(String),
    #[error("schema history {path} is corrupt at line {line}: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    #[error(
        "no schema known as early as {at}: take a new snapshot by starting from now, \
         or use binlog_row_metadata=FULL"
    )]
    NoSchemaAt { at: String },
    #[error(
        "schema history diverged from the binlog at {at}: the history recorded {}, the binlog now has {}",
        short(recorded),
        short(statement)
    )]
    Diverged {
        at: String,
        recorded: String,
        statement: String,
    },
}

/// A statement cut to a readable length for messages.
fn short(s: &str) -> String {
    const MAX: usize = 300;
    let s = s.trim();
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let cut: String = s.chars().take(MAX).collect();
    format!("{cut}...")
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MetaRecord {
    db: String,
    table: String,
    #[serde(flatten)]
    meta: TableMeta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotEntry {
    at: BinlogPos,
    tables: Vec<TableSchema>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    meta: Vec<MetaRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    db_charsets: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_charset: Option<String>,
    /// The databases the snapshot covers; absent for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dbs: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DdlEntry {
    at: BinlogPos,
    db: String,
    statement: String,
    /// Resulting schemas of the tables the statement created or changed.
    tables: Vec<TableSchema>,
    dropped: Vec<TableKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    meta: Vec<MetaRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    db_charsets: Vec<(String, Option<String>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    effect: Option<DdlEffect>,
    /// The result was read from the server, not derived from the statement.
    #[serde(default, skip_serializing_if = "is_false")]
    from_server: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Snapshot(SnapshotEntry),
    Ddl(DdlEntry),
}

impl Entry {
    fn at(&self) -> &BinlogPos {
        match self {
            Entry::Snapshot(s) => &s.at,
            Entry::Ddl(d) => &d.at,
        }
    }
}

fn meta_records(tables: &[(TableSchema, TableMeta)]) -> Vec<MetaRecord> {
    tables
        .iter()
        .map(|(t, m)| MetaRecord {
            db: t.db.clone(),
            table: t.table.clone(),
            meta: m.clone(),
        })
        .collect()
}

fn with_meta(tables: &[TableSchema], meta: &[MetaRecord]) -> Vec<(TableSchema, TableMeta)> {
    tables
        .iter()
        .map(|t| {
            let m = meta
                .iter()
                .find(|r| r.db == t.db && r.table == t.table)
                .map(|r| r.meta.clone())
                .unwrap_or_else(|| TableMeta::from_schema(t));
            (t.clone(), m)
        })
        .collect()
}

impl SnapshotEntry {
    fn to_set(&self) -> SchemaSet {
        let mut set = SchemaSet::new();
        for (t, m) in with_meta(&self.tables, &self.meta) {
            set.insert(t, m);
        }
        set.db_charsets = self.db_charsets.clone();
        set.server_charset = self.server_charset.clone();
        set.scope = self.dbs.as_ref().map(|d| d.iter().cloned().collect());
        set
    }
}

impl DdlEntry {
    fn new(at: &BinlogPos, db: &str, statement: &str, plan: &DdlPlan, from_server: bool) -> Self {
        Self {
            at: at.clone(),
            db: db.to_string(),
            statement: statement.to_string(),
            tables: plan.tables.iter().map(|(t, _)| t.clone()).collect(),
            dropped: plan.dropped.clone(),
            meta: meta_records(&plan.tables),
            db_charsets: plan.db_charsets.clone(),
            effect: Some(plan.effect.clone()),
            from_server,
        }
    }

    /// The recorded result as a plan; `state` (before the statement) is used
    /// only to describe the effect when none was recorded.
    fn to_plan(&self, state: &SchemaSet) -> DdlPlan {
        let effect = match &self.effect {
            Some(e) => e.clone(),
            None => effect_from_result(state, &self.tables, &self.dropped),
        };
        DdlPlan {
            effect,
            tables: with_meta(&self.tables, &self.meta),
            dropped: self.dropped.clone(),
            db_charsets: self.db_charsets.clone(),
        }
    }
}

fn effect_from_result(
    state: &SchemaSet,
    tables: &[TableSchema],
    dropped: &[TableKey],
) -> DdlEffect {
    let mut changes = TableChanges::default();
    for t in tables {
        let key = (t.db.clone(), t.table.clone());
        if state.tables.contains_key(&key) {
            changes.altered.push(key);
        } else {
            changes.created.push(key);
        }
    }
    changes.dropped = dropped.to_vec();
    if changes.is_empty() {
        DdlEffect::NotTableDdl
    } else {
        DdlEffect::Tables(changes)
    }
}

/// The schema history of one source server (see the module docs).
#[derive(Debug)]
pub struct SchemaHistory {
    path: Option<PathBuf>,
    file: Option<File>,
    /// Length of the file's good content: where the next entry goes.
    len: u64,
    /// Ordered by position; equal positions in the order recorded.
    entries: Vec<Entry>,
    /// The current state.
    state: SchemaSet,
}

impl SchemaHistory {
    /// Opens (or creates) the history file at `path` and sets the current
    /// state to the newest one it records.
    pub fn open(path: &Path) -> Result<Self, SchemaError> {
        let shown = path.display().to_string();
        let io = |source: std::io::Error| SchemaError::Io {
            path: shown.clone(),
            source,
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        if !existed {
            file.sync_all().map_err(io)?;
            if let Some(parent) = parent {
                File::open(parent).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (parsed, good_len) = parse_lines(&bytes, &shown)?;
        if good_len < bytes.len() {
            tracing::warn!(
                path = %shown,
                dropped_bytes = bytes.len() - good_len,
                "schema history ends with a torn entry (interrupted write); dropping it"
            );
            file.set_len(good_len as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mut entries = Vec::new();
        for e in parsed {
            insert_entry(&mut entries, e);
        }
        let mut h = Self {
            path: Some(path.to_path_buf()),
            file: Some(file),
            len: good_len as u64,
            entries,
            state: SchemaSet::new(),
        };
        h.state = h.build(None)?;
        Ok(h)
    }

    /// A history kept in memory only (tests, one-shot tools).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            file: None,
            len: 0,
            entries: Vec::new(),
            state: SchemaSet::new(),
        }
    }

    /// The file behind this history, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records a snapshot of `tables` taken at `at` and makes it the current
    /// state. Keys and charsets are derived from the schemas; prefer
    /// [`Self::record_full_snapshot`] with what
    /// [`super::snapshot::load_snapshot`] read.
    pub fn record_snapshot(
        &mut self,
        at: BinlogPos,
        tables: Vec<TableSchema>,
    ) -> Result<(), SchemaError> {
        let tables = tables
            .into_iter()
            .map(|t| {
                let m = TableMeta::from_schema(&t);
                (t, m)
            })
            .collect();
        self.record_full_snapshot(
            at,
            SchemaSnapshot {
                tables,
                ..SchemaSnapshot::default()
            },
        )
    }

    /// Records a snapshot with indexes, charsets and the databases it covers,
    /// and makes it the current state.
    pub fn record_full_snapshot(
        &mut self,
        at: BinlogPos,
        snapshot: SchemaSnapshot,
    ) -> Result<(), SchemaError> {
        let entry = Entry::Snapshot(SnapshotEntry {
            at,
            meta: meta_records(&snapshot.tables),
            tables: snapshot.tables.into_iter().map(|(t, _)| t).collect(),
            db_charsets: snapshot.db_charsets,
            server_charset: snapshot.server_charset,
            dbs: snapshot.dbs,
        });
        self.append(&entry)?;
        insert_entry(&mut self.entries, entry);
        self.state = self.build(None)?;
        Ok(())
    }

    /// Applies the DDL `statement`, found in the binlog at `at` and run with
    /// `default_db` as the current database.
    ///
    /// If the history already has an entry at `at` (the stream is read again
    /// after a rewind) its recorded result is applied, without parsing or
    /// writing. Otherwise the statement is applied to the current state and,
    /// when it changed anything, recorded durably before this returns. On
    /// error nothing changes: an [`SchemaError::UnknownDdl`] is for the caller
    /// to resolve with [`Self::confirm_from_server`] or by stopping.
    pub fn apply_ddl(
        &mut self,
        at: &BinlogPos,
        default_db: &str,
        statement: &str,
    ) -> Result<DdlEffect, SchemaError> {
        if let Some(d) = self.ddl_at(at) {
            if d.statement.trim() != statement.trim() {
                return Err(SchemaError::Diverged {
                    at: at.to_string(),
                    recorded: d.statement.clone(),
                    statement: statement.to_string(),
                });
            }
            let plan = d.to_plan(&self.state);
            self.state.commit(&plan);
            return Ok(plan.effect);
        }
        let plan = self.state.plan_ddl(default_db, statement)?;
        if !plan.is_empty() {
            let entry = Entry::Ddl(DdlEntry::new(at, default_db, statement, &plan, false));
            self.append(&entry)?;
            if self.entries.last().is_some_and(|e| e.at() > at) {
                tracing::warn!(%at, "recording a DDL older than the newest schema history entry");
            }
            insert_entry(&mut self.entries, entry);
        }
        self.state.commit(&plan);
        Ok(plan.effect)
    }

    /// Records the DDL at `at` with its effect read from the server
    /// (`information_schema`, see [`super::snapshot::load_table`]): the new
    /// schemas of the tables it created or changed, and the tables it dropped.
    /// Keys are derived from the schemas; the tables' default charsets are
    /// kept. Replaces any entry already recorded at `at`.
    pub fn confirm_from_server(
        &mut self,
        at: &BinlogPos,
        default_db: &str,
        statement: &str,
        tables: Vec<TableSchema>,
        dropped: Vec<(String, String)>,
    ) -> Result<(), SchemaError> {
        let tables = tables
            .into_iter()
            .map(|t| {
                let mut m = TableMeta::from_schema(&t);
                m.charset = self
                    .state
                    .meta_of(&t.db, &t.table)
                    .and_then(|old| old.charset);
                (t, m)
            })
            .collect();
        self.confirm_from_server_full(at, default_db, statement, tables, dropped)
    }

    /// [`Self::confirm_from_server`] with each table's indexes and charset, as
    /// [`super::snapshot::load_table_full`] reads them.
    pub fn confirm_from_server_full(
        &mut self,
        at: &BinlogPos,
        default_db: &str,
        statement: &str,
        tables: Vec<(TableSchema, TableMeta)>,
        dropped: Vec<(String, String)>,
    ) -> Result<(), SchemaError> {
        let schemas: Vec<TableSchema> = tables.iter().map(|(t, _)| t.clone()).collect();
        let plan = DdlPlan {
            effect: effect_from_result(&self.state, &schemas, &dropped),
            tables,
            dropped,
            db_charsets: Vec::new(),
        };
        let entry = Entry::Ddl(DdlEntry::new(at, default_db, statement, &plan, true));
        self.append(&entry)?;
        insert_entry(&mut self.entries, entry);
        self.state.commit(&plan);
        Ok(())
    }

    /// The current schema of a table (exact name, else the only
    /// case-insensitive match).
    pub fn table(&self, db: &str, table: &str) -> Option<&TableSchema> {
        self.state.table(db, table)
    }

    /// Every table of the current state, ordered by (database, table).
    pub fn tables(&self) -> impl Iterator<Item = &TableSchema> {
        self.state.tables.values()
    }

    /// The current state, with keys and charsets.
    pub fn state(&self) -> &SchemaSet {
        &self.state
    }

    /// Sets the current state to the schema as of position `at`, that is
    /// before the event at `at`: the newest snapshot taken at or before `at`,
    /// then every recorded DDL from that snapshot up to, not including, `at`.
    pub fn rewind_to(&mut self, at: &BinlogPos) -> Result<(), SchemaError> {
        self.state = self.build(Some(at))?;
        Ok(())
    }

    /// Whether any snapshot is recorded.
    pub fn has_snapshot(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::Snapshot(_)))
    }

    /// The position of the newest entry.
    pub fn latest_position(&self) -> Option<&BinlogPos> {
        self.entries.last().map(Entry::at)
    }

    /// The position of the oldest snapshot: the earliest position
    /// [`Self::rewind_to`] accepts.
    pub fn earliest_position(&self) -> Option<&BinlogPos> {
        self.entries.iter().find_map(|e| match e {
            Entry::Snapshot(s) => Some(&s.at),
            Entry::Ddl(_) => None,
        })
    }

    fn ddl_at(&self, at: &BinlogPos) -> Option<&DdlEntry> {
        let start = self.entries.partition_point(|e| e.at() < at);
        self.entries[start..]
            .iter()
            .take_while(|e| e.at() == at)
            .find_map(|e| match e {
                Entry::Ddl(d) => Some(d),
                Entry::Snapshot(_) => None,
            })
    }

    /// The state as of `upto` (before the event there), or the newest state.
    fn build(&self, upto: Option<&BinlogPos>) -> Result<SchemaSet, SchemaError> {
        let snap = self.entries.iter().rev().find_map(|e| match e {
            Entry::Snapshot(s) if upto.is_none_or(|u| s.at <= *u) => Some(s),
            _ => None,
        });
        let (mut set, from) = match (snap, upto) {
            (Some(s), _) => (s.to_set(), Some(&s.at)),
            (None, Some(u)) => return Err(SchemaError::NoSchemaAt { at: u.to_string() }),
            (None, None) => (SchemaSet::new(), None),
        };
        for e in &self.entries {
            if let Entry::Ddl(d) = e {
                let after_snapshot = from.is_none_or(|f| d.at >= *f);
                let before_target = upto.is_none_or(|u| d.at < *u);
                if after_snapshot && before_target {
                    let plan = d.to_plan(&set);
                    set.commit(&plan);
                }
            }
        }
        Ok(set)
    }

    /// Appends one entry to the file and fsyncs it. On failure the file is
    /// cut back to its previous length.
    fn append(&mut self, entry: &Entry) -> Result<(), SchemaError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let shown = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| SchemaError::Parse(format!("encoding a schema history entry: {e}")))?;
        line.push(b'\n');
        match file.write_all(&line).and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(source) => {
                let _ = file.set_len(self.len);
                Err(SchemaError::Io {
                    path: shown,
                    source,
                })
            }
        }
    }
}

/// Inserts `e` in position order; a DDL entry replaces one at the same position.
fn insert_entry(entries: &mut Vec<Entry>, e: Entry) {
    if let Entry::Ddl(d) = &e {
        let start = entries.partition_point(|x| x.at() < &d.at);
        let same = entries[start..]
            .iter()
            .take_while(|x| x.at() == &d.at)
            .position(|x| matches!(x, Entry::Ddl(_)));
        if let Some(i) = same {
            entries[start + i] = e;
            return;
        }
    }
    let at = e.at().clone();
    let idx = entries.partition_point(|x| x.at() <= &at);
    entries.insert(idx, e);
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace() || *b == 0)
}

/// Parses the file's lines: the entries, and the length of the content that
/// is good (shorter than the file when the last entry is torn).
fn parse_lines(bytes: &[u8], path: &str) -> Result<(Vec<Entry>, usize), SchemaError> {
    // (start, end excluding the newline, terminated)
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            lines.push((start, i, true));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        lines.push((start, bytes.len(), false));
    }
    let last_content = lines.iter().rposition(|&(s, e, _)| !is_blank(&bytes[s..e]));
    let mut entries = Vec::new();
    let mut good = bytes.len();
    for (n, &(s, e, terminated)) in lines.iter().enumerate() {
        let line = &bytes[s..e];
        if !terminated {
            // Only the last piece can be unterminated: an append that did not finish.
            good = s;
            break;
        }
        if is_blank(line) {
            continue;
        }
        let is_last = Some(n) == last_content;
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) => entries.push(entry),
            Err(err) if is_last => {
                tracing::debug!(%err, line = n + 1, "unreadable last schema history line");
                good = s;
                break;
            }
            Err(err) => {
                return Err(SchemaError::Corrupt {
                    path: path.to_string(),
                    line: n + 1,
                    reason: err.to_string(),
                });
            }
        }
    }
    Ok((entries, good))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnDef;

    fn pos(n: u64) -> BinlogPos {
        BinlogPos::new("binlog.000001", n)
    }

    fn int_col(name: &str) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            data_type: "int".into(),
            column_type: "int".into(),
            unsigned: false,
            nullable: false,
            charset: None,
            labels: Vec::new(),
            generated: false,
            invisible: false,
        }
    }

    fn table(name: &str, cols: &[&str]) -> TableSchema {
        TableSchema {
            db: "shop".into(),
            table: name.into(),
            columns: cols.iter().map(|c| int_col(c)).collect(),
            primary_key: vec![0],
        }
    }

    fn names(h: &SchemaHistory, t: &str) -> Vec<String> {
        h.table("shop", t)
            .map(|t| t.columns.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn persists_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("schema.jsonl");
        {
            let mut h = SchemaHistory::open(&path).expect("open");
            assert!(!h.has_snapshot());
            h.record_snapshot(pos(100), vec![table("orders", &["id", "total"])])
                .expect("snapshot");
            let e = h
                .apply_ddl(
                    &pos(200),
                    "shop",
                    "ALTER TABLE orders ADD COLUMN note varchar(10) AFTER id",
                )
                .expect("ddl");
            assert!(e.is_table_ddl());
            h.apply_ddl(
                &pos(300),
                "shop",
                "CREATE TABLE items (id int primary key, sku varchar(5))",
            )
            .expect("create");
            h.apply_ddl(&pos(350), "shop", "BEGIN").expect("begin");
            h.apply_ddl(
                &pos(400),
                "shop",
                "DROP TABLE items /* generated by server */",
            )
            .expect("drop");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text.lines().count(),
            4,
            "snapshot + 3 changing DDLs: {text}"
        );
        assert!(text.starts_with("{\"kind\":\"snapshot\""));
        let h = SchemaHistory::open(&path).expect("reopen");
        assert!(h.has_snapshot());
        assert_eq!(h.latest_position(), Some(&pos(400)));
        assert_eq!(h.earliest_position(), Some(&pos(100)));
        assert_eq!(names(&h, "orders"), vec!["id", "note", "total"]);
        assert!(h.table("shop", "items").is_none());
        assert_eq!(h.tables().count(), 1);
    }

    #[test]
    fn rewind_gives_the_old_schema() {
        let mut h = SchemaHistory::in_memory();
        assert!(matches!(
            h.rewind_to(&pos(1)),
            Err(SchemaError::NoSchemaAt { .. })
        ));
        h.record_snapshot(pos(100), vec![table("t", &["a"])])
            .expect("snapshot");
        h.apply_ddl(&pos(200), "shop", "ALTER TABLE t ADD b int")
            .expect("b");
        h.apply_ddl(&pos(300), "shop", "ALTER TABLE t ADD c int FIRST")
            .expect("c");
        h.apply_ddl(&pos(400), "shop", "RENAME TABLE t TO u")
            .expect("rename");
        assert_eq!(names(&h, "u"), vec!["c", "a", "b"]);

        h.rewind_to(&pos(300)).expect("rewind");
        assert_eq!(
            names(&h, "t"),
            vec!["a", "b"],
            "the DDL at 300 is not yet applied"
        );
        assert!(h.table("shop", "u").is_none());
        h.rewind_to(&pos(100)).expect("rewind to snapshot");
        assert_eq!(names(&h, "t"), vec!["a"]);
        h.rewind_to(&pos(150)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a"]);
        let err = h.rewind_to(&pos(99)).expect_err("too early");
        assert!(
            err.to_string().contains("binlog_row_metadata=FULL"),
            "{err}"
        );
        assert!(matches!(err, SchemaError::NoSchemaAt { .. }));
        // A later file is later, whatever its offset.
        h.rewind_to(&BinlogPos::new("binlog.000002", 4))
            .expect("next file");
        assert_eq!(names(&h, "u"), vec!["c", "a", "b"]);
    }

    #[test]
    fn replay_after_rewind_uses_recorded_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        let mut h = SchemaHistory::open(&path).expect("open");
        h.record_snapshot(pos(100), vec![table("t", &["a"])])
            .expect("snapshot");
        h.apply_ddl(&pos(200), "shop", "ALTER TABLE t ADD b int")
            .expect("b");
        h.apply_ddl(&pos(300), "shop", "ALTER TABLE t DROP COLUMN a")
            .expect("drop a");
        let lines_before = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();

        h.rewind_to(&pos(200)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a"]);
        let e = h
            .apply_ddl(&pos(200), "shop", "ALTER TABLE t ADD b int")
            .expect("replay b");
        assert_eq!(
            e.changes().altered,
            vec![("shop".to_string(), "t".to_string())]
        );
        assert_eq!(names(&h, "t"), vec!["a", "b"]);
        h.apply_ddl(&pos(300), "shop", "ALTER TABLE t DROP COLUMN a")
            .expect("replay drop");
        assert_eq!(names(&h, "t"), vec!["b"]);
        let lines_after = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();
        assert_eq!(lines_before, lines_after, "replay writes nothing");

        h.rewind_to(&pos(300)).expect("rewind");
        let err = h
            .apply_ddl(&pos(300), "shop", "ALTER TABLE t DROP COLUMN b")
            .expect_err("different statement at a recorded position");
        assert!(matches!(err, SchemaError::Diverged { .. }));
    }

    #[test]
    fn replay_does_not_parse_again() {
        // A confirmed-from-server entry for a statement the parser rejects.
        let mut h = SchemaHistory::in_memory();
        h.record_snapshot(pos(100), vec![table("t", &["a"])])
            .expect("snapshot");
        let stmt = "ALTER TABLE t FROBNICATE";
        let err = h.apply_ddl(&pos(200), "shop", stmt).expect_err("unknown");
        assert!(matches!(err, SchemaError::UnknownDdl { .. }));
        assert_eq!(names(&h, "t"), vec!["a"], "unchanged after an error");
        h.confirm_from_server(
            &pos(200),
            "shop",
            stmt,
            vec![table("t", &["a", "z"])],
            vec![],
        )
        .expect("confirm");
        assert_eq!(names(&h, "t"), vec!["a", "z"]);
        h.rewind_to(&pos(150)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a"]);
        let e = h
            .apply_ddl(&pos(200), "shop", stmt)
            .expect("replayed from record");
        assert_eq!(
            e.changes().altered,
            vec![("shop".to_string(), "t".to_string())]
        );
        assert_eq!(names(&h, "t"), vec!["a", "z"]);
    }

    #[test]
    fn torn_tail_is_dropped_and_later_appends_are_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        {
            let mut h = SchemaHistory::open(&path).expect("open");
            h.record_snapshot(pos(100), vec![table("t", &["a"])])
                .expect("snapshot");
            h.apply_ddl(&pos(200), "shop", "ALTER TABLE t ADD b int")
                .expect("b");
        }
        let good = std::fs::read(&path).expect("read");
        for tail in [
            &b"{\"kind\":\"ddl\",\"at\":{\"file\":\"binlog.0"[..],
            b"\0\0\0\0",
            b"{\"kind\":\"ddl\"}\n",
        ] {
            let mut bytes = good.clone();
            bytes.extend_from_slice(tail);
            std::fs::write(&path, &bytes).expect("write");
            let mut h = SchemaHistory::open(&path).expect("torn tail tolerated");
            assert_eq!(names(&h, "t"), vec!["a", "b"]);
            assert_eq!(std::fs::read(&path).expect("read"), good, "tail cut off");
            h.apply_ddl(&pos(300), "shop", "ALTER TABLE t ADD c int")
                .expect("c");
            drop(h);
            let h = SchemaHistory::open(&path).expect("reopen");
            assert_eq!(names(&h, "t"), vec!["a", "b", "c"]);
            std::fs::write(&path, &good).expect("restore");
        }
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        {
            let mut h = SchemaHistory::open(&path).expect("open");
            h.record_snapshot(pos(100), vec![table("t", &["a"])])
                .expect("snapshot");
            h.apply_ddl(&pos(200), "shop", "ALTER TABLE t ADD b int")
                .expect("b");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(1, "{not json");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let err = SchemaHistory::open(&path).expect_err("corrupt");
        match &err {
            SchemaError::Corrupt { path: p, line, .. } => {
                assert_eq!(*line, 2);
                assert!(p.ends_with("h.jsonl"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("line 2"));
    }

    #[test]
    fn entries_are_ordered_by_binlog_position() {
        let p = |f: &str, n: u64| BinlogPos::new(f, n);
        let mut h = SchemaHistory::in_memory();
        h.record_snapshot(p("b.1", 4), vec![table("t", &["a"])])
            .expect("snapshot");
        h.apply_ddl(&p("b.9", 500), "shop", "ALTER TABLE t ADD early int")
            .expect("early");
        h.apply_ddl(&p("b.10", 4), "shop", "ALTER TABLE t ADD late int")
            .expect("late");
        assert_eq!(h.latest_position(), Some(&p("b.10", 4)));
        h.rewind_to(&p("b.9", 600)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a", "early"]);
        h.rewind_to(&p("b.10", 4)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a", "early"]);
        h.rewind_to(&p("b.10", 5)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a", "early", "late"]);
    }

    #[test]
    fn file_order_does_not_matter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        {
            let mut h = SchemaHistory::open(&path).expect("open");
            h.record_snapshot(pos(100), vec![table("t", &["a"])])
                .expect("snapshot");
            h.apply_ddl(&pos(200), "shop", "ALTER TABLE t ADD b int")
                .expect("b");
            h.apply_ddl(&pos(300), "shop", "ALTER TABLE t ADD c int")
                .expect("c");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.reverse();
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let mut h = SchemaHistory::open(&path).expect("reopen");
        assert_eq!(names(&h, "t"), vec!["a", "b", "c"]);
        assert_eq!(h.latest_position(), Some(&pos(300)));
        h.rewind_to(&pos(250)).expect("rewind");
        assert_eq!(names(&h, "t"), vec!["a", "b"]);
    }

    #[test]
    fn newer_snapshot_wins_and_keeps_charsets_and_keys() {
        let mut h = SchemaHistory::in_memory();
        h.record_snapshot(pos(100), vec![table("t", &["a"])])
            .expect("old snapshot");
        h.apply_ddl(&pos(150), "shop", "ALTER TABLE t ADD x int")
            .expect("x");
        let t = TableSchema {
            db: "shop".into(),
            table: "t".into(),
            columns: vec![int_col("a"), int_col("b")],
            primary_key: vec![],
        };
        let meta = TableMeta {
            charset: Some("latin1".into()),
            indexes: vec![super::super::ddl::IndexDef {
                name: "ub".into(),
                primary: false,
                unique: true,
                columns: vec!["b".into()],
                has_expression: false,
            }],
        };
        let snap = SchemaSnapshot {
            tables: vec![(t, meta)],
            db_charsets: [("shop".to_string(), "latin1".to_string())]
                .into_iter()
                .collect(),
            server_charset: Some("utf8mb4".into()),
            dbs: Some(vec!["shop".into()]),
        };
        h.record_full_snapshot(pos(200), snap)
            .expect("new snapshot");
        assert_eq!(names(&h, "t"), vec!["a", "b"]);
        h.apply_ddl(
            &pos(300),
            "shop",
            "ALTER TABLE t ADD s varchar(3), DROP COLUMN a",
        )
        .expect("s");
        let t = h.table("shop", "t").expect("t");
        assert_eq!(t.columns[1].charset.as_deref(), Some("latin1"));
        assert_eq!(
            t.primary_key,
            vec![0],
            "unique key on b known from the snapshot"
        );
        h.apply_ddl(&pos(400), "other", "CREATE TABLE o (a int)")
            .expect("out of scope");
        assert!(h.table("other", "o").is_none());
        h.rewind_to(&pos(199)).expect("rewind before new snapshot");
        assert_eq!(names(&h, "t"), vec!["a", "x"]);
    }

    #[test]
    fn error_messages_are_short() {
        let long = format!("ALTER TABLE t {}", "x ".repeat(1000));
        let e = SchemaError::UnknownDdl {
            statement: long,
            reason: "r".into(),
        };
        assert!(e.to_string().len() < 400);
    }
}
