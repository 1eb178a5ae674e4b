//! The plan printed before anything is written, and the final report.

use std::time::Duration;

use drc_capture::position::BinlogPos;

use crate::source::SourcePlan;

/// What a migration did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The plan, one line per table plus a summary.
    pub plan: Vec<String>,
    /// Time of each phase, in order.
    pub phases: Vec<(String, Duration)>,
    pub tables: usize,
    /// Rows the target holds from the snapshot (all runs).
    pub rows: u64,
    /// Rows and bytes read by this run's snapshot.
    pub snapshot_rows: u64,
    pub snapshot_bytes: u64,
    pub catchup_transactions: u64,
    pub catchup_rows: u64,
    pub objects_created: Vec<String>,
    /// Objects the target cannot take, with why.
    pub objects_skipped: Vec<String>,
    /// Read-only on the source to caught up and verified.
    pub downtime: Option<Duration>,
    pub cutover_position: Option<BinlogPos>,
    pub total: Duration,
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl Report {
    pub fn phase(&mut self, name: &str, d: Duration) {
        self.phases.push((name.to_owned(), d));
    }

    pub fn plan_lines(&mut self, p: &SourcePlan) {
        let rows: u64 = p.tables.iter().map(|t| t.est_rows).sum();
        let bytes: u64 = p.tables.iter().map(|t| t.est_bytes).sum();
        self.plan.push(format!(
            "plan: {} tables, about {rows} rows, {} on the source ({})",
            p.tables.len(),
            mb(bytes),
            p.version
        ));
        for t in &p.tables {
            let how = if !t.has_key() {
                "no key: whole-table path (one consistent read, exact catch-up)".to_owned()
            } else if t.chunk_column().is_some() {
                "key chunks".to_owned()
            } else if t.keyset() {
                "key ranges in parallel, keyset chunks within each (key does not start with an integer)".to_owned()
            } else {
                "keyed, one chunk (key of a type without a usable order)".to_owned()
            };
            self.plan.push(format!(
                "  {:<40} ~{:>10} rows {:>10}  {how}",
                t.full_name(),
                t.est_rows,
                mb(t.est_bytes)
            ));
        }
        if !p.objects.is_empty() {
            self.plan.push(format!(
                "  and {} views, triggers and routines (created after the load)",
                p.objects.len()
            ));
        }
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "migrate: {} tables, {} rows from the snapshot ({} read this run, {}), {} catch-up transactions ({} rows)\n",
            self.tables,
            self.rows,
            self.snapshot_rows,
            mb(self.snapshot_bytes),
            self.catchup_transactions,
            self.catchup_rows
        ));
        for (name, d) in &self.phases {
            let s = d.as_secs_f64();
            let extra = if name == "snapshot" && s > 0.0 {
                format!(
                    "  ({:.0} rows/s, {:.1} MB/s)",
                    self.snapshot_rows as f64 / s,
                    self.snapshot_bytes as f64 / 1e6 / s
                )
            } else {
                String::new()
            };
            out.push_str(&format!("  {name:<10} {s:>8.2} s{extra}\n"));
        }
        out.push_str(&format!(
            "  total      {:>8.2} s\n",
            self.total.as_secs_f64()
        ));
        if !self.objects_created.is_empty() {
            out.push_str(&format!("  created: {}\n", self.objects_created.join(", ")));
        }
        for s in &self.objects_skipped {
            out.push_str(&format!("  not created: {s}\n"));
        }
        if let Some(d) = self.downtime {
            out.push_str(&format!(
                "  downtime (source read-only until caught up and verified): {:.3} s\n",
                d.as_secs_f64()
            ));
            if let Some(p) = &self.cutover_position {
                out.push_str(&format!(
                    "  cutover at source position {}:{}\n",
                    p.file, p.pos
                ));
            }
            out.push_str(
                "  roll back: run SET GLOBAL read_only = 0 on the source and point the \
                 applications back at it (the target keeps its copy; nothing was written to \
                 the source)\n",
            );
        }
        // A report exists only for a migration that verified identical.
        out.push_str("migrate: target identical to the source\n");
        out
    }
}
