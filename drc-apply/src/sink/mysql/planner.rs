//! Merging a group's row changes into few statements: which change may
//! join which statement without changing what the target ends with
//! ([`Planner`]), which changes wait for the earlier groups they depend on,
//! and the SQL of the merged statements (the fast path's `plan`). How the
//! statements are sent and checked is in [`super::write`].

use std::collections::{HashMap, HashSet};

use drc_proto::v1 as pb;

use super::parallel::ChangeKeys;
use super::sql::{self, ColVal, RowMatch};
use super::write::{
    definite, image, match_columns, no_op, same_insert_shape, Ctx, Planned, Writer,
    MAX_ROWS_PER_INSERT,
};
use super::{checkpoint, keys};
use crate::error::Result;

/// Most rows in one merged UPDATE or DELETE (each row is a `WHEN` of every
/// `CASE` and an `OR` of the `WHERE`).
pub const MAX_ROWS_PER_MERGE: usize = 100;

/// A row of a merged UPDATE or DELETE (a table with a primary key).
pub(super) struct MergedRow<'c> {
    pub(super) ctx: Ctx<'c>,
    pub(super) change: &'c pb::RowChange,
    pub(super) matched: Vec<ColVal<'c>>,
    pub(super) exact_from: usize,
    /// UPDATE: the columns set (the same for every row of a statement).
    pub(super) set: Vec<ColVal<'c>>,
}

impl MergedRow<'_> {
    pub(super) fn row_match(&self) -> RowMatch<'_, '_> {
        RowMatch {
            columns: &self.matched,
            exact_from: self.exact_from,
            limit_one: false,
        }
    }

    pub(super) fn key_match(&self) -> RowMatch<'_, '_> {
        RowMatch {
            columns: &self.matched[..self.exact_from],
            exact_from: self.exact_from,
            limit_one: false,
        }
    }

    fn same_columns(&self, other: &MergedRow<'_>) -> bool {
        self.set.len() == other.set.len()
            && self
                .set
                .iter()
                .zip(&other.set)
                .all(|(a, b)| a.name == b.name)
    }
}

/// One row change as the planner takes it.
pub(super) enum Item<'c> {
    Insert(Ctx<'c>, &'c pb::RowChange),
    Update(MergedRow<'c>),
    Delete(MergedRow<'c>),
    /// A statement that takes no other row.
    One(Planned),
}

/// A statement the planner gathers rows into.
pub(super) enum Gather<'c> {
    Insert(Vec<(Ctx<'c>, &'c pb::RowChange)>),
    Update(Vec<MergedRow<'c>>),
    Delete(Vec<MergedRow<'c>>),
    One(Planned),
}

/// Orders the row changes of a group (one target transaction) into merged
/// statements.
///
/// A row change joins the latest statement of its kind (same table and
/// operation; same columns for inserts and for the columns an update sets)
/// when no statement after that one shares a dependency key with it
/// ([`super::keys`]: primary and unique keys, foreign-key references). It then
/// runs before those statements, and that changes nothing: they touch
/// other rows, and no row it needs or that needs it. Otherwise it starts a
/// new statement at the end. So, per row and per parent and child, changes
/// keep their source order, and a group of sysbench-like transactions
/// becomes a few statements per table instead of four per transaction.
/// A change the keys cannot place (its table's key: no key known, a key
/// column missing from the image) joins nothing and orders after every
/// earlier statement of its table, and every later change of the table
/// after it.
#[derive(Default)]
pub(super) struct Planner<'c> {
    pub(super) statements: Vec<Gather<'c>>,
    /// The latest statement of each kind: operation, schema, table and
    /// [`shape`].
    open: HashMap<(i32, &'c str, &'c str, u64), usize>,
    /// The latest statement holding a change with the key.
    last_key: HashMap<u64, usize>,
    /// The latest statement holding a change of the table (by its table key).
    last_table: HashMap<u64, usize>,
}

impl<'c> Planner<'c> {
    /// Adds a row change with its dependency keys and its table's key.
    pub(super) fn add(&mut self, c: &'c pb::RowChange, own: u64, keys: &[u64], item: Item<'c>) {
        let whole_table = keys.contains(&own);
        // The latest statement this change must come after.
        let mut after = self.last_key.get(&own).copied();
        for k in keys {
            after = after.max(self.last_key.get(k).copied());
            after = after.max(self.last_table.get(k).copied());
        }
        let kind = (c.op, c.schema.as_str(), c.table.as_str(), shape(c, &item));
        let open = self.open.get(&kind).copied();
        let last = self.statements.len().checked_sub(1);
        let free = |i: usize| !whole_table && after.is_none_or(|a| a < i);
        let joined = match (&item, open) {
            (Item::Insert(_, _), Some(i)) => match &self.statements[i] {
                // A run of inserts at the end joins as before; earlier
                // ones only when nothing after them shares a key.
                Gather::Insert(rows)
                    if rows.len() < MAX_ROWS_PER_INSERT
                        && same_insert_shape(rows[0].1, c)
                        && (Some(i) == last || free(i)) =>
                {
                    Some(i)
                }
                _ => None,
            },
            (Item::Update(r), Some(i)) => match &self.statements[i] {
                Gather::Update(rows)
                    if rows.len() < MAX_ROWS_PER_MERGE && free(i) && rows[0].same_columns(r) =>
                {
                    Some(i)
                }
                _ => None,
            },
            (Item::Delete(_), Some(i)) => match &self.statements[i] {
                Gather::Delete(rows) if rows.len() < MAX_ROWS_PER_MERGE && free(i) => Some(i),
                _ => None,
            },
            _ => None,
        };
        let idx = match joined {
            Some(i) => {
                match (&mut self.statements[i], item) {
                    (Gather::Insert(rows), Item::Insert(ctx, c)) => rows.push((ctx, c)),
                    (Gather::Update(rows), Item::Update(r))
                    | (Gather::Delete(rows), Item::Delete(r)) => rows.push(r),
                    _ => unreachable!("joined statements are of the item's kind"),
                }
                i
            }
            None => {
                // A statement of its own takes no other row; the kind's
                // latest statement stays open past it (its keys order
                // what must come after it).
                let one = matches!(item, Item::One(_));
                self.statements.push(match item {
                    Item::Insert(ctx, c) => Gather::Insert(vec![(ctx, c)]),
                    Item::Update(r) => Gather::Update(vec![r]),
                    Item::Delete(r) => Gather::Delete(vec![r]),
                    Item::One(p) => Gather::One(p),
                });
                let i = self.statements.len() - 1;
                if !one {
                    self.open.insert(kind, i);
                }
                i
            }
        };
        for k in keys {
            let e = self.last_key.entry(*k).or_insert(idx);
            *e = (*e).max(idx);
        }
        let e = self.last_table.entry(own).or_insert(idx);
        *e = (*e).max(idx);
    }
}

/// A hash of what rows of one statement must share beyond table and
/// operation: the columns an insert writes, the columns an update sets.
/// (Equal hashes are checked again before rows join.)
fn shape(c: &pb::RowChange, item: &Item<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    match item {
        Item::Insert(..) => {
            for (col, v) in c.columns.iter().zip(c.after.iter().flat_map(|r| &r.values)) {
                (&col.name, v.kind.is_some()).hash(&mut h);
            }
        }
        Item::Update(r) => {
            for v in &r.set {
                v.name.hash(&mut h);
            }
        }
        Item::Delete(_) | Item::One(_) => {}
    }
    h.finish()
}

impl Writer<'_> {
    /// The statements of the fast path, merged across the run's
    /// transactions (see [`Planner`]): inserts into one table with the same
    /// columns become multi-row INSERTs, updates of one table that set the
    /// same columns one UPDATE with a `CASE` per column, deletes from one
    /// table one DELETE, each row still found by its own match.
    ///
    /// Returns the statements and where the ones that wait for the earlier
    /// groups start: the row changes that touch a key of `shared` (rows of
    /// earlier groups), and every later one that shares a key with those,
    /// are planned after the others.
    pub(super) fn plan(
        &self,
        stream: &str,
        txns: &[(u64, &pb::Transaction)],
        change_keys: &ChangeKeys,
        shared: &[u64],
    ) -> Result<(Vec<Planned>, usize)> {
        // Changes that touch rows of the earlier groups (the keys `shared`),
        // and, in order, every change sharing a key with one of those, wait;
        // the others go first. A table's key counts for every change of
        // the table.
        let mut first = Planner::default();
        let mut then = Planner::default();
        let mut tainted: HashSet<u64> = shared.iter().copied().collect();
        let mut tainted_tables: HashSet<u64> = HashSet::new();
        let mut n = 0;
        for (offset, txn) in txns {
            let ctx = Ctx::of(stream, *offset, txn);
            for c in &txn.changes {
                let keys = change_keys.of(n);
                n += 1;
                if c.schema.eq_ignore_ascii_case(checkpoint::SCHEMA) {
                    continue;
                }
                let own = keys::table_key(&c.schema.to_lowercase(), &c.table.to_lowercase());
                let item = match c.op() {
                    pb::Op::Insert => Item::Insert(ctx, c),
                    pb::Op::Update => self.update_item(ctx, c)?,
                    pb::Op::Delete => self.delete_item(ctx, c)?,
                    pb::Op::Unspecified => return Err(no_op(ctx, c)),
                };
                // A unique key besides the primary key: its duplicate checks
                // take gap locks on rows the keys do not name, which an
                // earlier group may need; such changes wait too.
                let gap_locks = self
                    .meta
                    .get(&c.schema, &c.table)
                    .is_none_or(|m| m.key_lists.len() > 1);
                let waits = !tainted.is_empty()
                    && (gap_locks
                        || keys
                            .iter()
                            .any(|k| tainted.contains(k) || tainted_tables.contains(k))
                        || tainted.contains(&own)
                        || (keys.contains(&own) && tainted_tables.contains(&own)));
                if waits {
                    tainted.extend(keys.iter().copied());
                    tainted_tables.insert(own);
                    then.add(c, own, keys, item);
                } else {
                    first.add(c, own, keys, item);
                }
            }
        }
        let mut out = Vec::with_capacity(first.statements.len() + then.statements.len());
        let mut split = 0;
        for (n, planner) in [first, then].into_iter().enumerate() {
            for g in planner.statements {
                match g {
                    Gather::Insert(rows) => self.plan_inserts(&rows, &mut out)?,
                    Gather::Update(rows) => self.plan_merged(&rows, true, &mut out)?,
                    Gather::Delete(rows) => self.plan_merged(&rows, false, &mut out)?,
                    Gather::One(p) => out.push(p),
                }
            }
            if n == 0 {
                split = out.len();
            }
        }
        Ok((out, split))
    }

    /// An UPDATE as the planner takes it: a row that may join others, or a
    /// statement of its own (no primary key, a key column set, a value a
    /// `CASE` could change).
    fn update_item<'c>(&self, ctx: Ctx<'c>, c: &'c pb::RowChange) -> Result<Item<'c>> {
        let with_image = self.config.check_before_image;
        let parts = self.update_parts(ctx, c, with_image)?;
        let key_set = parts
            .set_index
            .iter()
            .any(|&i| c.primary_key.contains(&(i as u32)));
        if parts.limit_one || key_set || !parts.set.iter().all(|v| sql::case_safe(v.kind)) {
            let table = sql::table_ref(&c.schema, &c.table);
            let sql = sql::update(&table, &parts.set, parts.row_match(), self.flavor)
                .map_err(|m| definite(ctx, format!("update {table}: {m}")))?;
            return Ok(Item::One(Planned { sql, expect: 1 }));
        }
        Ok(Item::Update(MergedRow {
            ctx,
            change: c,
            matched: parts.matched,
            exact_from: parts.exact_from,
            set: parts.set,
        }))
    }

    /// A DELETE as the planner takes it (see [`Self::update_item`]).
    fn delete_item<'c>(&self, ctx: Ctx<'c>, c: &'c pb::RowChange) -> Result<Item<'c>> {
        let before = image(ctx, c, c.before.as_ref(), "before")?;
        let (matched, exact_from, limit_one) = match_columns(
            ctx,
            c,
            before,
            self.generated(c),
            self.config.check_before_image,
        )?;
        if limit_one {
            let sql = self.delete_sql(ctx, c, self.config.check_before_image)?;
            return Ok(Item::One(Planned { sql, expect: 1 }));
        }
        Ok(Item::Delete(MergedRow {
            ctx,
            change: c,
            matched,
            exact_from,
            set: Vec::new(),
        }))
    }

    /// Merged UPDATEs (`update`) or DELETEs of `rows`, one table, split
    /// where a statement would pass `max_statement_bytes`.
    fn plan_merged(
        &self,
        rows: &[MergedRow<'_>],
        update: bool,
        out: &mut Vec<Planned>,
    ) -> Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let c = first.change;
        let table = sql::table_ref(&c.schema, &c.table);
        let what = if update { "update" } else { "delete from" };
        let sql = if rows.len() == 1 {
            let m = first.row_match();
            if update {
                sql::update(&table, &first.set, m, self.flavor)
            } else {
                sql::delete(&table, m, self.flavor)
            }
        } else if update {
            let many: Vec<sql::UpdateRow<'_, '_>> = rows
                .iter()
                .map(|r| sql::UpdateRow {
                    key: r.key_match(),
                    full: r.row_match(),
                    set: &r.set,
                })
                .collect();
            sql::update_many(&table, &many, self.flavor)
        } else {
            let many: Vec<RowMatch<'_, '_>> = rows.iter().map(MergedRow::row_match).collect();
            sql::delete_many(&table, &many, self.flavor)
        }
        .map_err(|m| definite(first.ctx, format!("{what} {table}: {m}")))?;
        if sql.len() > self.max_statement_bytes && rows.len() > 1 {
            let (a, b) = rows.split_at(rows.len() / 2);
            self.plan_merged(a, update, out)?;
            return self.plan_merged(b, update, out);
        }
        out.push(Planned {
            sql,
            expect: rows.len() as u64,
        });
        Ok(())
    }
}
