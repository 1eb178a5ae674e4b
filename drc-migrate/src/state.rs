//! A migration's progress, kept on the target in the `drc` schema so that a
//! rerun (`--resume`) continues where the last one stopped:
//!
//! - `drc.migrate`: one row — the source, the binlog position the catch-up
//!   starts from (read before any chunk), and the phase reached.
//! - `drc.migrate_chunks`: the chunk plan; a chunk is marked done in the
//!   same target transaction that loads its rows, so after a kill -9 a
//!   chunk is either wholly loaded and marked, or absent and redone.
//!
//! The catch-up's own progress is the apply sink's checkpoint
//! (`drc.checkpoints`, stream [`crate::STREAM`]).

use drc_capture::position::BinlogPos;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::error::{self, Result};
use crate::plan::Chunk;
use crate::source::SourceTable;

/// How far a migration got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Creating tables (none loaded yet).
    Schema,
    /// Loading chunks.
    Snapshot,
    /// Indexes, foreign keys and other objects made.
    Finished,
    /// Verified identical.
    Verified,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Schema => "schema",
            Phase::Snapshot => "snapshot",
            Phase::Finished => "finished",
            Phase::Verified => "verified",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "schema" => Phase::Schema,
            "snapshot" => Phase::Snapshot,
            "finished" => Phase::Finished,
            "verified" => Phase::Verified,
            _ => return None,
        })
    }
}

/// One chunk as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkState {
    pub db: String,
    pub table: String,
    pub seq: u32,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    pub est_rows: u64,
    pub done: bool,
    pub rows: u64,
    pub snapshot: Option<BinlogPos>,
    /// Keyset chunks: the exclusive lower bound and, once loaded, the key
    /// of the last row read (key literals, JSON arrays).
    pub lo_key: Option<String>,
    pub hi_key: Option<String>,
    /// Keyset chunks: the inclusive end of the chunk's key range (`None`:
    /// open above).
    pub range_hi: Option<String>,
}

impl ChunkState {
    pub fn of(t: &SourceTable, c: &Chunk, rows: u64, snap: &BinlogPos) -> Self {
        Self {
            db: t.db().to_owned(),
            table: t.name().to_owned(),
            seq: c.seq,
            lo: c.lo,
            hi: c.hi,
            est_rows: c.est_rows,
            done: true,
            rows,
            snapshot: Some(snap.clone()),
            lo_key: c.lo_key.clone(),
            hi_key: None,
            range_hi: c.hi_key.clone(),
        }
    }

    pub fn planned(t: &SourceTable, c: &Chunk) -> Self {
        Self {
            db: t.db().to_owned(),
            table: t.name().to_owned(),
            seq: c.seq,
            lo: c.lo,
            hi: c.hi,
            est_rows: c.est_rows,
            done: false,
            rows: 0,
            snapshot: None,
            lo_key: c.lo_key.clone(),
            hi_key: None,
            range_hi: c.hi_key.clone(),
        }
    }
}

/// The whole recorded state.
#[derive(Debug, Clone)]
pub struct State {
    pub source: String,
    pub start: BinlogPos,
    pub phase: Phase,
    pub chunks: Vec<ChunkState>,
}

const MARIA_DDL: [&str; 4] = [
    "CREATE DATABASE IF NOT EXISTS drc",
    "CREATE TABLE IF NOT EXISTS drc.migrate (
        id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
        source VARCHAR(512) NOT NULL,
        start_file VARCHAR(255) NOT NULL,
        start_pos BIGINT UNSIGNED NOT NULL,
        phase VARCHAR(16) NOT NULL,
        started_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL
     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS drc.migrate_chunks (
        db VARCHAR(64) NOT NULL,
        tbl VARCHAR(64) NOT NULL,
        seq INT UNSIGNED NOT NULL,
        lo BIGINT NULL,
        hi BIGINT NULL,
        est_rows BIGINT UNSIGNED NOT NULL,
        done TINYINT NOT NULL DEFAULT 0,
        rows_loaded BIGINT UNSIGNED NOT NULL DEFAULT 0,
        snap_file VARCHAR(255) NULL,
        snap_pos BIGINT UNSIGNED NULL,
        lo_key MEDIUMTEXT NULL,
        hi_key MEDIUMTEXT NULL,
        range_hi MEDIUMTEXT NULL,
        PRIMARY KEY (db, tbl, seq)
     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    // State tables of a version before key ranges.
    "ALTER TABLE drc.migrate_chunks ADD COLUMN IF NOT EXISTS range_hi MEDIUMTEXT NULL",
];

/// Creates the state tables and records a new migration from `start`.
pub async fn maria_init(c: &mut Conn, source: &str, start: &BinlogPos) -> Result<()> {
    for sql in MARIA_DDL {
        c.query_drop(sql)
            .await
            .map_err(|e| error::target("create the drc.migrate state tables", e))?;
    }
    c.exec_drop(
        "REPLACE INTO drc.migrate VALUES (1, ?, ?, ?, 'schema', NOW(6), NOW(6))",
        (source, &start.file, start.pos),
    )
    .await
    .map_err(|e| error::target("record the migration in drc.migrate", e))?;
    c.query_drop("DELETE FROM drc.migrate_chunks")
        .await
        .map_err(|e| error::target("clear drc.migrate_chunks", e))
}

/// Records the chunk plan and moves to the snapshot phase.
pub async fn maria_plan(c: &mut Conn, chunks: &[ChunkState]) -> Result<()> {
    let mut tx = c
        .start_transaction(Default::default())
        .await
        .map_err(|e| error::target("begin", e))?;
    for ch in chunks.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO drc.migrate_chunks (db, tbl, seq, lo, hi, est_rows, lo_key, range_hi) VALUES ",
        );
        let mut params: Vec<mysql_async::Value> = Vec::new();
        for (i, s) in ch.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?)");
            params.extend([
                s.db.clone().into(),
                s.table.clone().into(),
                s.seq.into(),
                s.lo.into(),
                s.hi.into(),
                s.est_rows.into(),
                s.lo_key.clone().into(),
                s.range_hi.clone().into(),
            ]);
        }
        tx.exec_drop(sql, params)
            .await
            .map_err(|e| error::target("record the chunk plan", e))?;
    }
    tx.query_drop("UPDATE drc.migrate SET phase = 'snapshot', updated_at = NOW(6) WHERE id = 1")
        .await
        .map_err(|e| error::target("record the phase", e))?;
    tx.commit()
        .await
        .map_err(|e| error::target("commit the chunk plan", e))
}

/// Marks a chunk loaded (in the caller's transaction).
pub async fn maria_chunk_done(c: &mut Conn, s: &ChunkState) -> Result<()> {
    let snap = s.snapshot.clone().unwrap_or_else(|| BinlogPos::new("", 0));
    c.exec_drop(
        "UPDATE drc.migrate_chunks SET done = 1, rows_loaded = ?, snap_file = ?, snap_pos = ?, \
         hi_key = ? WHERE db = ? AND tbl = ? AND seq = ?",
        (
            s.rows, &snap.file, snap.pos, &s.hi_key, &s.db, &s.table, s.seq,
        ),
    )
    .await
    .map_err(|e| error::target("mark a chunk done in drc.migrate_chunks", e))
}

/// Records the keyset chunk after `s` (in the caller's transaction).
pub async fn maria_chunk_next(c: &mut Conn, s: &ChunkState, lo_key: &str) -> Result<()> {
    c.exec_drop(
        "INSERT INTO drc.migrate_chunks (db, tbl, seq, lo, hi, est_rows, lo_key, range_hi) \
         VALUES (?, ?, ?, NULL, NULL, ?, ?, ?)",
        (&s.db, &s.table, s.seq + 1, s.est_rows, lo_key, &s.range_hi),
    )
    .await
    .map_err(|e| error::target("record the next chunk in drc.migrate_chunks", e))
}

pub async fn maria_phase(c: &mut Conn, phase: Phase) -> Result<()> {
    c.exec_drop(
        "UPDATE drc.migrate SET phase = ?, updated_at = NOW(6) WHERE id = 1",
        (phase.as_str(),),
    )
    .await
    .map_err(|e| error::target("record the phase in drc.migrate", e))
}

/// The recorded state; `None` when the target holds no migration.
pub async fn maria_read(c: &mut Conn) -> Result<Option<State>> {
    let exists: Option<u8> = c
        .query_first(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'drc' AND TABLE_NAME = 'migrate'",
        )
        .await
        .map_err(|e| error::target("look for drc.migrate", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let row: Option<(String, String, u64, String)> = c
        .query_first("SELECT source, start_file, start_pos, phase FROM drc.migrate WHERE id = 1")
        .await
        .map_err(|e| error::target("read drc.migrate", e))?;
    let Some((source, file, pos, phase)) = row else {
        return Ok(None);
    };
    let rows: Vec<Option<ChunkState>> = c
        .query_map(
            "SELECT db, tbl, seq, lo, hi, est_rows, done, rows_loaded, snap_file, snap_pos, \
             lo_key, hi_key, range_hi FROM drc.migrate_chunks ORDER BY db, tbl, seq",
            |mut r: mysql_async::Row| {
                let snap_file: Option<String> = r.take_opt(8)?.ok()?;
                let snap_pos: Option<u64> = r.take_opt(9)?.ok()?;
                Some(ChunkState {
                    db: r.take_opt(0)?.ok()?,
                    table: r.take_opt(1)?.ok()?,
                    seq: r.take_opt(2)?.ok()?,
                    lo: r.take_opt(3)?.ok()?,
                    hi: r.take_opt(4)?.ok()?,
                    est_rows: r.take_opt(5)?.ok()?,
                    done: r.take_opt::<i8, _>(6)?.ok()? != 0,
                    rows: r.take_opt(7)?.ok()?,
                    snapshot: match (snap_file, snap_pos) {
                        (Some(f), Some(p)) if !f.is_empty() => Some(BinlogPos::new(f, p)),
                        _ => None,
                    },
                    lo_key: r.take_opt(10)?.ok()?,
                    hi_key: r.take_opt(11)?.ok()?,
                    range_hi: r.take_opt(12)?.ok()?,
                })
            },
        )
        .await
        .map_err(|e| error::target("read drc.migrate_chunks", e))?;
    let chunks = rows
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            error::target(
            "read drc.migrate_chunks",
            "a row does not have the expected columns; was the state written by another version?",
        )
        })?;
    Ok(Some(State {
        source,
        start: BinlogPos::new(file, pos),
        phase: Phase::parse(&phase)
            .ok_or_else(|| error::target("read drc.migrate", format!("unknown phase {phase:?}")))?,
        chunks,
    }))
}

const PG_DDL: &str = "CREATE SCHEMA IF NOT EXISTS drc;
    CREATE TABLE IF NOT EXISTS drc.migrate (
        id smallint PRIMARY KEY,
        source text NOT NULL,
        start_file text NOT NULL,
        start_pos bigint NOT NULL,
        phase text NOT NULL,
        started_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL);
    CREATE TABLE IF NOT EXISTS drc.migrate_chunks (
        db text NOT NULL,
        tbl text NOT NULL,
        seq integer NOT NULL,
        lo bigint,
        hi bigint,
        est_rows bigint NOT NULL,
        done boolean NOT NULL DEFAULT false,
        rows_loaded bigint NOT NULL DEFAULT 0,
        snap_file text,
        snap_pos bigint,
        lo_key text,
        hi_key text,
        range_hi text,
        PRIMARY KEY (db, tbl, seq));
    ALTER TABLE drc.migrate_chunks ADD COLUMN IF NOT EXISTS range_hi text";

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// [`maria_init`] for a PostgreSQL target.
pub async fn pg_init(c: &tokio_postgres::Client, source: &str, start: &BinlogPos) -> Result<()> {
    c.batch_execute(PG_DDL)
        .await
        .map_err(|e| error::pg("create the drc.migrate state tables", &e))?;
    c.execute(
        "INSERT INTO drc.migrate VALUES (1, $1, $2, $3, 'schema', now(), now())
         ON CONFLICT (id) DO UPDATE SET source = $1, start_file = $2, start_pos = $3,
           phase = 'schema', started_at = now(), updated_at = now()",
        &[&source, &start.file, &i64_of(start.pos)],
    )
    .await
    .map_err(|e| error::pg("record the migration in drc.migrate", &e))?;
    c.batch_execute("DELETE FROM drc.migrate_chunks")
        .await
        .map_err(|e| error::pg("clear drc.migrate_chunks", &e))
}

/// [`maria_plan`] for a PostgreSQL target.
pub async fn pg_plan(c: &tokio_postgres::Client, chunks: &[ChunkState]) -> Result<()> {
    let mut sql = String::from("BEGIN;");
    for ch in chunks.chunks(500) {
        sql.push_str(
            "INSERT INTO drc.migrate_chunks (db, tbl, seq, lo, hi, est_rows, lo_key, range_hi) VALUES ",
        );
        for (i, s) in ch.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let n = |v: Option<i64>| v.map_or("NULL".to_owned(), |v| v.to_string());
            sql.push_str(&format!(
                "({}, {}, {}, {}, {}, {}, {}, {})",
                pg_literal(&s.db),
                pg_literal(&s.table),
                s.seq,
                n(s.lo),
                n(s.hi),
                i64_of(s.est_rows),
                s.lo_key.as_deref().map_or("NULL".to_owned(), pg_literal),
                s.range_hi.as_deref().map_or("NULL".to_owned(), pg_literal)
            ));
        }
        sql.push(';');
    }
    sql.push_str(
        "UPDATE drc.migrate SET phase = 'snapshot', updated_at = now() WHERE id = 1; COMMIT",
    );
    c.batch_execute(&sql)
        .await
        .map_err(|e| error::pg("record the chunk plan", &e))
}

fn pg_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// [`maria_chunk_done`] for a PostgreSQL target.
pub async fn pg_chunk_done(c: &tokio_postgres::Client, s: &ChunkState) -> Result<()> {
    let snap = s.snapshot.clone().unwrap_or_else(|| BinlogPos::new("", 0));
    c.execute(
        "UPDATE drc.migrate_chunks SET done = true, rows_loaded = $1, snap_file = $2, snap_pos = $3,
           hi_key = $7
         WHERE db = $4 AND tbl = $5 AND seq = $6",
        &[
            &i64_of(s.rows),
            &snap.file,
            &i64_of(snap.pos),
            &s.db,
            &s.table,
            &i32::try_from(s.seq).unwrap_or(i32::MAX),
            &s.hi_key,
        ],
    )
    .await
    .map_err(|e| error::pg("mark a chunk done in drc.migrate_chunks", &e))?;
    Ok(())
}

/// [`maria_chunk_next`] for a PostgreSQL target.
pub async fn pg_chunk_next(c: &tokio_postgres::Client, s: &ChunkState, lo_key: &str) -> Result<()> {
    c.execute(
        "INSERT INTO drc.migrate_chunks (db, tbl, seq, est_rows, lo_key, range_hi) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &s.db,
            &s.table,
            &i32::try_from(s.seq + 1).unwrap_or(i32::MAX),
            &i64_of(s.est_rows),
            &lo_key,
            &s.range_hi,
        ],
    )
    .await
    .map_err(|e| error::pg("record the next chunk in drc.migrate_chunks", &e))?;
    Ok(())
}

pub async fn pg_phase(c: &tokio_postgres::Client, phase: Phase) -> Result<()> {
    c.execute(
        "UPDATE drc.migrate SET phase = $1, updated_at = now() WHERE id = 1",
        &[&phase.as_str()],
    )
    .await
    .map_err(|e| error::pg("record the phase in drc.migrate", &e))?;
    Ok(())
}

/// [`maria_read`] for a PostgreSQL target.
pub async fn pg_read(c: &tokio_postgres::Client) -> Result<Option<State>> {
    let exists = c
        .query_opt("SELECT 1 FROM information_schema.tables WHERE table_schema = 'drc' AND table_name = 'migrate'", &[])
        .await
        .map_err(|e| error::pg("look for drc.migrate", &e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let Some(row) = c
        .query_opt(
            "SELECT source, start_file, start_pos, phase FROM drc.migrate WHERE id = 1",
            &[],
        )
        .await
        .map_err(|e| error::pg("read drc.migrate", &e))?
    else {
        return Ok(None);
    };
    let phase: String = row.get(3);
    let rows = c
        .query(
            "SELECT db, tbl, seq, lo, hi, est_rows, done, rows_loaded, snap_file, snap_pos,
               lo_key, hi_key, range_hi
             FROM drc.migrate_chunks ORDER BY db, tbl, seq",
            &[],
        )
        .await
        .map_err(|e| error::pg("read drc.migrate_chunks", &e))?;
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    let chunks = rows
        .iter()
        .map(|r| {
            let file: Option<String> = r.get(8);
            let pos: Option<i64> = r.get(9);
            ChunkState {
                db: r.get(0),
                table: r.get(1),
                seq: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                lo: r.get(3),
                hi: r.get(4),
                est_rows: u(r.get(5)),
                done: r.get(6),
                rows: u(r.get(7)),
                snapshot: match (file, pos) {
                    (Some(f), Some(p)) if !f.is_empty() => Some(BinlogPos::new(f, u(p))),
                    _ => None,
                },
                lo_key: r.get(10),
                hi_key: r.get(11),
                range_hi: r.get(12),
            }
        })
        .collect();
    Ok(Some(State {
        source: row.get(0),
        start: BinlogPos::new(row.get::<_, String>(1), u(row.get(2))),
        phase: Phase::parse(&phase)
            .ok_or_else(|| error::target("read drc.migrate", format!("unknown phase {phase:?}")))?,
        chunks,
    }))
}
