//! What a verification found: per table the rows and chunks compared and
//! each differing row, printable for people and as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// How a row differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// On both, with different values.
    Different,
}

impl std::fmt::Display for DiffKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Different => "different",
        })
    }
}

/// One differing row.
#[derive(Debug, Clone, Serialize)]
pub struct RowDiff {
    /// Missing, extra or different.
    pub kind: DiffKind,
    /// The key, column by column: `(name, normalized text)`.
    pub key: Vec<(String, String)>,
    /// For `different`: the columns whose values differ.
    pub columns: Vec<String>,
}

impl RowDiff {
    /// `id=5` or `a=1, b=x`.
    pub fn key_display(&self) -> String {
        self.key
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The outcome of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Same rows on both sides.
    Identical,
    /// Rows (or columns) differ.
    Different,
    /// The target has no such table.
    MissingOnTarget,
}

/// What one table's comparison found.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `db.table` on the source.
    pub table: String,
    /// The outcome.
    pub status: TableStatus,
    /// Rows counted on the source.
    pub source_rows: u64,
    /// Rows counted on the target.
    pub target_rows: u64,
    /// Chunk checksum queries (pairs) run, drill-down included.
    pub chunks: u64,
    /// Wall time of this table.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// Differing rows, up to the limit (see `diff_count`).
    pub diffs: Vec<RowDiff>,
    /// Differing rows found, listed or not.
    pub diff_count: u64,
    /// How it was compared and schema differences, in words.
    pub notes: Vec<String>,
    /// Repair statements for the target (when asked for).
    #[serde(skip)]
    pub repair: Vec<String>,
}

impl TableReport {
    /// A report with nothing found yet.
    pub fn new(table: String) -> Self {
        Self {
            table,
            status: TableStatus::Identical,
            source_rows: 0,
            target_rows: 0,
            chunks: 0,
            elapsed: Duration::ZERO,
            diffs: Vec::new(),
            diff_count: 0,
            notes: Vec::new(),
            repair: Vec::new(),
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// What a whole verification found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per table compared, in name order.
    pub tables: Vec<TableReport>,
    /// Wall time of the whole run.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
}

impl Report {
    /// Whether every table is identical.
    pub fn identical(&self) -> bool {
        self.tables
            .iter()
            .all(|t| t.status == TableStatus::Identical)
    }

    /// Differing rows over all tables.
    pub fn diff_count(&self) -> u64 {
        self.tables.iter().map(|t| t.diff_count).sum()
    }

    /// The report for people: one line per table, one per differing row, a
    /// summary line last.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let status = match t.status {
                TableStatus::Identical => "identical",
                TableStatus::Different => "DIFFERENT",
                TableStatus::MissingOnTarget => "MISSING ON TARGET",
            };
            let _ = writeln!(
                out,
                "{}: {status} (source {} rows, target {} rows, {} chunks, {:.2}s)",
                t.table,
                t.source_rows,
                t.target_rows,
                t.chunks,
                t.elapsed.as_secs_f64()
            );
            for n in &t.notes {
                let _ = writeln!(out, "  note: {n}");
            }
            for d in &t.diffs {
                let _ = write!(out, "  {:<9} {}", d.kind.to_string(), d.key_display());
                if !d.columns.is_empty() {
                    let _ = write!(out, "  columns: {}", d.columns.join(", "));
                }
                out.push('\n');
            }
            if t.diff_count > t.diffs.len() as u64 {
                let _ = writeln!(
                    out,
                    "  ... and {} more differing rows not listed",
                    t.diff_count - t.diffs.len() as u64
                );
            }
        }
        let differing = self
            .tables
            .iter()
            .filter(|t| t.status != TableStatus::Identical)
            .count();
        let _ = writeln!(
            out,
            "{} tables compared in {:.2}s: {}",
            self.tables.len(),
            self.elapsed.as_secs_f64(),
            if differing == 0 {
                "identical".to_owned()
            } else {
                format!("{differing} differ, {} differing rows", self.diff_count())
            }
        );
        out
    }
}
