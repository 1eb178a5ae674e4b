//! Row statements of the PostgreSQL sink: the target table's columns, runs
//! of inserts (COPY or multi-row INSERT), single-row INSERT/UPDATE/DELETE
//! and what the conflict policy does with a change that does not fit.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use drc_proto::v1 as pb;
use futures::SinkExt;
use pb::value::Kind;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::conflict::{self, conflict_error, ConflictKind};
use super::types::{ident, pg_type, push_copy_field, push_ident, push_literal, table_ref};
use super::{affected, definite, row_error, Ctx, COPY_CHUNK_BYTES, MAX_ROWS_PER_INSERT, SINK_NAME};
use crate::error::{ApplyError, Result};
use crate::sink::mysql::ConflictPolicy;

/// Most bytes of one multi-row INSERT statement.
const MAX_STATEMENT_BYTES: usize = 8 << 20;

/// A target table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct TargetTable {
    /// `"schema"."table"`.
    pub name: String,
    /// Column names, in table order, and whether each is generated.
    columns: Vec<(String, bool)>,
    /// Lowercase name → index into `columns`.
    by_lower: HashMap<String, usize>,
}

impl TargetTable {
    /// The target column for a source column: the same name, else the one
    /// that matches it case-insensitively (MySQL column names ignore case).
    fn column(&self, source: &str) -> Option<&(String, bool)> {
        self.columns.iter().find(|(n, _)| n == source).or_else(|| {
            self.by_lower
                .get(&source.to_lowercase())
                .and_then(|&i| self.columns.get(i))
        })
    }
}

/// Reads the columns of `schema.table`; `None` when the table does not
/// exist.
pub async fn read_table(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Option<TargetTable>, tokio_postgres::Error> {
    let name = table_ref(schema, table);
    let rows = client
        .query(
            "SELECT a.attname::text, a.attgenerated <> '' FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&name],
        )
        .await?;
    if rows.is_empty() {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await?
            .try_get(0)?;
        if !exists {
            return Ok(None);
        }
    }
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        columns.push((r.try_get::<_, String>(0)?, r.try_get::<_, bool>(1)?));
    }
    let by_lower = columns
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.to_lowercase(), i))
        .collect();
    Ok(Some(TargetTable {
        name,
        columns,
        by_lower,
    }))
}

/// Creates `schema.table` (and the schema when missing) from a change's
/// column list.
pub async fn create_table(
    client: &Client,
    ctx: Ctx<'_>,
    schema: &str,
    c: &pb::RowChange,
) -> Result<()> {
    let mut items = Vec::with_capacity(c.columns.len() + 1);
    for (i, col) in c.columns.iter().enumerate() {
        if col.name.is_empty() {
            return Err(definite(
                ctx,
                format!(
                    "cannot create {}.{}: column {} has no name (capture with \
                     binlog_row_metadata=FULL or a schema history)",
                    c.schema,
                    c.table,
                    i + 1
                ),
            ));
        }
        let ty = pg_type(&col.sql_type).map_err(|m| {
            definite(
                ctx,
                format!(
                    "cannot create {}.{}: column {}: {m}",
                    c.schema, c.table, col.name
                ),
            )
        })?;
        let mut item = format!("{} {ty}", ident(&col.name));
        if !col.nullable {
            item.push_str(" NOT NULL");
        }
        items.push(item);
    }
    if !c.primary_key.is_empty() {
        let mut key = Vec::new();
        for &i in &c.primary_key {
            match c.columns.get(i as usize) {
                Some(col) => key.push(ident(&col.name)),
                None => {
                    return Err(definite(
                        ctx,
                        format!(
                            "cannot create {}.{}: key column {} does not exist",
                            c.schema,
                            c.table,
                            i + 1
                        ),
                    ))
                }
            }
        }
        items.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    let map = |e| {
        super::classify_with_message(
            e,
            Some(ctx.offset),
            &format!("create table {schema}.{}", c.table),
        )
    };
    let has_schema: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(map)?
        .try_get(0)
        .map_err(map)?;
    if !has_schema {
        client
            .batch_execute(&format!("CREATE SCHEMA {}", ident(schema)))
            .await
            .map_err(map)?;
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE {} ({})",
            table_ref(schema, &c.table),
            items.join(", ")
        ))
        .await
        .map_err(map)
}

static ABSENT: Kind = Kind::Null(true);

/// The value of column `i` of `row` (absent values read as NULL; callers
/// only ask for present ones).
fn value(row: &pb::Row, i: usize) -> &Kind {
    row.values
        .get(i)
        .and_then(|v| v.kind.as_ref())
        .unwrap_or(&ABSENT)
}

pub(super) fn image<'a>(
    ctx: Ctx<'_>,
    c: &pb::RowChange,
    row: Option<&'a pb::Row>,
    which: &str,
) -> Result<&'a pb::Row> {
    row.ok_or_else(|| {
        definite(
            ctx,
            format!(
                "{} on {}.{} has no {which} image",
                conflict::op_name(c.op()),
                c.schema,
                c.table
            ),
        )
    })
}

/// The columns of `row` to write: present in the image and not generated in
/// the target, as (source index, target name).
pub(super) fn written(
    ctx: Ctx<'_>,
    c: &pb::RowChange,
    row: &pb::Row,
    table: &TargetTable,
) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::with_capacity(c.columns.len());
    let mut missing = Vec::new();
    for (i, col) in c.columns.iter().enumerate() {
        if row.values.get(i).and_then(|v| v.kind.as_ref()).is_none() {
            continue;
        }
        if col.name.is_empty() {
            return Err(definite(
                ctx,
                format!(
                    "column {} of {}.{} has no name (capture with binlog_row_metadata=FULL \
                     or a schema history)",
                    i + 1,
                    c.schema,
                    c.table
                ),
            ));
        }
        match table.column(&col.name) {
            Some((_, true)) => {}
            Some((name, false)) => out.push((i, name.clone())),
            None => missing.push(col.name.as_str()),
        }
    }
    if !missing.is_empty() {
        let have: Vec<&str> = table.columns.iter().map(|(n, _)| n.as_str()).collect();
        return Err(definite(
            ctx,
            format!(
                "{}.{}: column(s) {} missing in the target table {} (it has: {}); make the \
                 target table match the source",
                c.schema,
                c.table,
                missing.join(", "),
                table.name,
                have.join(", ")
            ),
        ));
    }
    if out.is_empty() {
        return Err(definite(
            ctx,
            format!(
                "{} on {}.{}: no column to write",
                conflict::op_name(c.op()),
                c.schema,
                c.table
            ),
        ));
    }
    Ok(out)
}

fn encode_err(ctx: Ctx<'_>, c: &pb::RowChange, col: usize, m: String) -> ApplyError {
    let name = c.columns.get(col).map_or("?", |x| x.name.as_str());
    definite(
        ctx,
        format!(
            "{} on {}.{}, column {name}: {m}; PostgreSQL cannot store this value (see the sink's \
             type mapping)",
            conflict::op_name(c.op()),
            c.schema,
            c.table
        ),
    )
}

/// `(v1, v2, ...)` of the written columns.
fn push_values(
    out: &mut String,
    ctx: Ctx<'_>,
    c: &pb::RowChange,
    row: &pb::Row,
    cols: &[(usize, String)],
) -> Result<()> {
    out.push('(');
    for (k, (i, _)) in cols.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        push_literal(out, value(row, *i)).map_err(|m| encode_err(ctx, c, *i, m))?;
    }
    out.push(')');
    Ok(())
}

fn insert_head(table: &str, cols: &[(usize, String)]) -> String {
    let mut s = format!("INSERT INTO {table} (");
    for (k, (_, n)) in cols.iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        push_ident(&mut s, n);
    }
    s.push_str(") VALUES ");
    s
}

/// A pending run of inserts into one table with the same columns.
#[derive(Default)]
pub struct InsertRun<'a> {
    table: Option<Arc<TargetTable>>,
    cols: Vec<(usize, String)>,
    rows: Vec<(Ctx<'a>, &'a pb::RowChange)>,
}

fn present(c: &pb::RowChange) -> impl Iterator<Item = bool> + '_ {
    c.after
        .iter()
        .flat_map(|r| r.values.iter().map(|v| v.kind.is_some()))
}

impl<'a> InsertRun<'a> {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.cols.clear();
        self.table = None;
    }

    /// Whether `c` can join the run: same table, columns and present values.
    pub fn fits(&self, c: &pb::RowChange) -> bool {
        let Some((_, first)) = self.rows.first() else {
            return true;
        };
        c.schema == first.schema
            && c.table == first.table
            && c.columns.len() == first.columns.len()
            && c.columns
                .iter()
                .zip(&first.columns)
                .all(|(a, b)| a.name == b.name)
            && present(c).eq(present(first))
    }

    pub fn start(
        &mut self,
        ctx: Ctx<'a>,
        c: &'a pb::RowChange,
        table: Arc<TargetTable>,
    ) -> Result<()> {
        let after = image(ctx, c, c.after.as_ref(), "after")?;
        self.cols = written(ctx, c, after, &table)?;
        self.table = Some(table);
        self.rows.push((ctx, c));
        Ok(())
    }

    pub fn push(&mut self, ctx: Ctx<'a>, c: &'a pb::RowChange) -> Result<()> {
        image(ctx, c, c.after.as_ref(), "after")?;
        self.rows.push((ctx, c));
        Ok(())
    }

    fn parts(&self) -> Option<(&TargetTable, Ctx<'a>, &'a pb::RowChange)> {
        let table = self.table.as_deref()?;
        let &(ctx, first) = self.rows.first()?;
        Some((table, ctx, first))
    }

    fn failed(&self, e: tokio_postgres::Error, what: &str) -> ApplyError {
        let Some((table, ctx, first)) = self.parts() else {
            return ApplyError::Definite {
                sink: SINK_NAME.into(),
                offset: 0,
                message: format!("{what}: {e}"),
            };
        };
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            return conflict_error(ctx, first, ConflictKind::Duplicate);
        }
        row_error(e, ctx, what, &table.name)
    }

    /// Writes the run with multi-row INSERT statements.
    pub async fn insert(&self, client: &Client) -> Result<()> {
        let Some((table, _, _)) = self.parts() else {
            return Ok(());
        };
        let head = insert_head(&table.name, &self.cols);
        let mut stmt = head.clone();
        let mut n = 0;
        let mut row = String::new();
        for &(ctx, c) in &self.rows {
            row.clear();
            let after = image(ctx, c, c.after.as_ref(), "after")?;
            push_values(&mut row, ctx, c, after, &self.cols)?;
            if n > 0 && (n >= MAX_ROWS_PER_INSERT || stmt.len() + row.len() > MAX_STATEMENT_BYTES) {
                client
                    .simple_query(&stmt)
                    .await
                    .map_err(|e| self.failed(e, "insert into"))?;
                stmt.truncate(head.len());
                n = 0;
            }
            if n > 0 {
                stmt.push_str(", ");
            }
            stmt.push_str(&row);
            n += 1;
        }
        if n > 0 {
            client
                .simple_query(&stmt)
                .await
                .map_err(|e| self.failed(e, "insert into"))?;
        }
        Ok(())
    }

    /// Writes the run with one text-format COPY.
    pub async fn copy(&self, client: &Client) -> Result<()> {
        let Some((table, _, _)) = self.parts() else {
            return Ok(());
        };
        let mut stmt = format!("COPY {} (", table.name);
        for (k, (_, n)) in self.cols.iter().enumerate() {
            if k > 0 {
                stmt.push_str(", ");
            }
            push_ident(&mut stmt, n);
        }
        stmt.push_str(") FROM STDIN");
        let sink = client
            .copy_in::<_, Bytes>(stmt.as_str())
            .await
            .map_err(|e| self.failed(e, "copy into"))?;
        futures::pin_mut!(sink);
        // Rows are encoded as they are sent, a chunk at a time, so memory
        // stays at one chunk. A value PostgreSQL cannot hold is refused
        // with its own offset; dropping the sink then aborts the COPY (and
        // the batch's transaction with it).
        let mut buf = String::with_capacity(COPY_CHUNK_BYTES.min(1 << 16));
        for &(ctx, c) in &self.rows {
            let after = image(ctx, c, c.after.as_ref(), "after")?;
            for (k, (i, _)) in self.cols.iter().enumerate() {
                if k > 0 {
                    buf.push('\t');
                }
                push_copy_field(&mut buf, value(after, *i))
                    .map_err(|m| encode_err(ctx, c, *i, m))?;
            }
            buf.push('\n');
            if buf.len() >= COPY_CHUNK_BYTES {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                sink.send(chunk)
                    .await
                    .map_err(|e| self.failed(e, "copy into"))?;
            }
        }
        if !buf.is_empty() {
            sink.send(Bytes::from(buf))
                .await
                .map_err(|e| self.failed(e, "copy into"))?;
        }
        sink.finish()
            .await
            .map_err(|e| self.failed(e, "copy into"))?;
        Ok(())
    }
}

/// What a single-row statement found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Conflict(ConflictKind),
}

/// One change to write.
pub struct Writer<'a> {
    pub client: &'a Client,
    pub ctx: Ctx<'a>,
    pub change: &'a pb::RowChange,
    pub table: &'a TargetTable,
    pub policy: ConflictPolicy,
    /// Whether conflicts are logged and recorded.
    pub record: bool,
}

const SAVEPOINT: &str = "SAVEPOINT drc_row";
const RELEASE: &str = "RELEASE SAVEPOINT drc_row";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT drc_row";

impl Writer<'_> {
    pub(super) fn err(&self, e: tokio_postgres::Error, what: &str) -> ApplyError {
        row_error(e, self.ctx, what, &self.table.name)
    }

    pub(super) async fn exec(&self, sql: &str, what: &str) -> Result<u64> {
        self.client
            .simple_query(sql)
            .await
            .map(|m| affected(&m))
            .map_err(|e| self.err(e, what))
    }

    /// Runs `sql` inside a savepoint; a unique violation (or `also`) rolls
    /// back to it and gives `None`.
    pub(super) async fn guarded(
        &self,
        sql: &str,
        what: &str,
        also: Option<&SqlState>,
    ) -> Result<Option<u64>> {
        self.exec(SAVEPOINT, "savepoint").await?;
        match self.client.simple_query(sql).await {
            Ok(m) => {
                self.exec(RELEASE, "release savepoint").await?;
                Ok(Some(affected(&m)))
            }
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || (also.is_some() && e.code() == also) =>
            {
                self.exec(ROLLBACK_TO, "rollback to savepoint").await?;
                Ok(None)
            }
            Err(e) => Err(self.err(e, what)),
        }
    }

    /// ` WHERE ...` identifying the before image's row: its primary key, or
    /// (no key) the first row equal to the whole image.
    pub(super) fn where_clause(&self, row: &pb::Row) -> Result<String> {
        let c = self.change;
        let mut s = String::from(" WHERE ");
        if !c.primary_key.is_empty() {
            for (k, &i) in c.primary_key.iter().enumerate() {
                let i = i as usize;
                let kind = row.values.get(i).and_then(|v| v.kind.as_ref());
                let (Some(col), Some(kind)) = (c.columns.get(i), kind) else {
                    return Err(definite(
                        self.ctx,
                        format!(
                            "{} on {}.{}: primary key column {} is missing from the image",
                            conflict::op_name(c.op()),
                            c.schema,
                            c.table,
                            i + 1
                        ),
                    ));
                };
                let name = match self.table.column(&col.name) {
                    Some((n, _)) => n.clone(),
                    None => {
                        return Err(definite(
                            self.ctx,
                            format!(
                                "{}.{}: key column {} is missing in the target table {}; make \
                                 the target table match the source",
                                c.schema, c.table, col.name, self.table.name
                            ),
                        ))
                    }
                };
                if k > 0 {
                    s.push_str(" AND ");
                }
                push_ident(&mut s, &name);
                if matches!(kind, Kind::Null(_)) {
                    s.push_str(" IS NULL");
                } else {
                    s.push_str(" = ");
                    push_literal(&mut s, kind).map_err(|m| encode_err(self.ctx, c, i, m))?;
                }
            }
            return Ok(s);
        }
        let cols = written(self.ctx, c, row, self.table)?;
        let _ = write!(s, "ctid = (SELECT ctid FROM {} WHERE ", self.table.name);
        for (k, (i, name)) in cols.iter().enumerate() {
            if k > 0 {
                s.push_str(" AND ");
            }
            push_ident(&mut s, name);
            s.push_str(" IS NOT DISTINCT FROM ");
            push_literal(&mut s, value(row, *i)).map_err(|m| encode_err(self.ctx, c, *i, m))?;
        }
        s.push_str(" LIMIT 1)");
        Ok(s)
    }

    pub(super) fn insert_sql(&self, tail: &str) -> Result<String> {
        let c = self.change;
        let after = image(self.ctx, c, c.after.as_ref(), "after")?;
        let cols = written(self.ctx, c, after, self.table)?;
        let mut s = insert_head(&self.table.name, &cols);
        push_values(&mut s, self.ctx, c, after, &cols)?;
        s.push_str(tail);
        Ok(s)
    }

    /// One INSERT that reports a taken key instead of failing (the
    /// `ignore` and `overwrite` policies).
    pub async fn insert_one(&self) -> Result<Outcome> {
        let sql = self.insert_sql(" ON CONFLICT DO NOTHING")?;
        Ok(match self.exec(&sql, "insert into").await? {
            0 => Outcome::Conflict(ConflictKind::Duplicate),
            _ => Outcome::Done,
        })
    }

    pub async fn update(&self) -> Result<Outcome> {
        let c = self.change;
        let before = image(self.ctx, c, c.before.as_ref(), "before")?;
        let after = image(self.ctx, c, c.after.as_ref(), "after")?;
        let cols = written(self.ctx, c, after, self.table)?;
        let mut sql = format!("UPDATE {} SET ", self.table.name);
        for (k, (i, name)) in cols.iter().enumerate() {
            if k > 0 {
                sql.push_str(", ");
            }
            push_ident(&mut sql, name);
            sql.push_str(" = ");
            push_literal(&mut sql, value(after, *i)).map_err(|m| encode_err(self.ctx, c, *i, m))?;
        }
        sql.push_str(&self.where_clause(before)?);
        let n = if self.policy == ConflictPolicy::Fail {
            match self.client.simple_query(&sql).await {
                Ok(m) => Some(affected(&m)),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => None,
                Err(e) => return Err(self.err(e, "update")),
            }
        } else {
            self.guarded(&sql, "update", None).await?
        };
        Ok(match n {
            None => Outcome::Conflict(ConflictKind::Duplicate),
            Some(0) => Outcome::Conflict(ConflictKind::Missing),
            Some(_) => Outcome::Done,
        })
    }

    pub async fn delete(&self) -> Result<Outcome> {
        let c = self.change;
        let before = image(self.ctx, c, c.before.as_ref(), "before")?;
        let sql = format!(
            "DELETE FROM {}{}",
            self.table.name,
            self.where_clause(before)?
        );
        Ok(match self.exec(&sql, "delete from").await? {
            0 => Outcome::Conflict(ConflictKind::Missing),
            _ => Outcome::Done,
        })
    }
}
