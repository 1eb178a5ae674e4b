//! The target, whichever kind it is: one enum so the phases in
//! [`crate::run`] read the same for MariaDB/MySQL and PostgreSQL.

use bytes::{Bytes, BytesMut};
use drc_capture::position::BinlogPos;
use mysql_async::Conn;
use tokio::sync::{mpsc, oneshot};

use crate::error::Result;
use crate::maria::{self, MariaTarget};
use crate::pg::{self, PgTarget};
use crate::plan::Chunk;
use crate::source::{SourceObject, SourceTable};
use crate::state::{self, ChunkState, Phase, State};
use drc_verify::Endpoint;

pub enum Target {
    Maria(MariaTarget),
    Pg(Box<PgTarget>),
}

/// What is added to the tables after the load.
pub enum Deferred {
    Maria(Vec<maria::Deferred>),
    Pg(Vec<pg::Deferred>),
}

impl Target {
    pub async fn connect(ep: &Endpoint, parallel: usize) -> Result<Self> {
        match ep.dialect {
            drc_verify::Dialect::Maria => {
                Ok(Target::Maria(MariaTarget::connect(ep, parallel).await?))
            }
            drc_verify::Dialect::Postgres => Ok(Target::Pg(Box::new(PgTarget::connect(ep).await?))),
        }
    }

    /// The source charset the loads need.
    pub fn source_charset(&self) -> crate::source::Charset {
        match self {
            Target::Maria(_) => crate::source::Charset::Binary,
            Target::Pg(_) => crate::source::Charset::Utf8,
        }
    }

    /// The columns copied: all but generated ones into MariaDB (it computes
    /// them); all into PostgreSQL (they are ordinary columns there).
    pub fn copied(&self, t: &SourceTable) -> Vec<usize> {
        (0..t.schema.columns.len())
            .filter(|&i| matches!(self, Target::Pg(_)) || !t.schema.columns[i].generated)
            .collect()
    }

    /// Tables of `tables` the target already has.
    pub async fn existing(&self, tables: &[SourceTable]) -> Result<Vec<String>> {
        match self {
            Target::Maria(m) => m.existing(tables).await,
            Target::Pg(p) => p.existing(tables).await,
        }
    }

    /// Checks that the target can hold every table (before anything is
    /// written); returns the problems found.
    pub async fn representable(
        &self,
        src: &mut Conn,
        tables: &[SourceTable],
    ) -> Result<Vec<String>> {
        match self {
            Target::Maria(_) => Ok(Vec::new()),
            Target::Pg(p) => p.representable(src, tables).await,
        }
    }

    pub async fn state(&self) -> Result<Option<State>> {
        match self {
            Target::Maria(m) => m.state().await,
            Target::Pg(p) => p.state().await,
        }
    }

    pub async fn init_state(&self, source: &str, start: &BinlogPos) -> Result<()> {
        match self {
            Target::Maria(m) => state::maria_init(&mut m.conn().await?, source, start).await,
            Target::Pg(p) => p.init_state(source, start).await,
        }
    }

    pub async fn record_plan(&self, chunks: &[ChunkState]) -> Result<()> {
        match self {
            Target::Maria(m) => state::maria_plan(&mut m.conn().await?, chunks).await,
            Target::Pg(p) => p.record_plan(chunks).await,
        }
    }

    pub async fn set_phase(&self, phase: Phase) -> Result<()> {
        match self {
            Target::Maria(m) => state::maria_phase(&mut m.conn().await?, phase).await,
            Target::Pg(p) => p.set_phase(phase).await,
        }
    }

    pub async fn create_tables(
        &self,
        src: &mut Conn,
        tables: &[SourceTable],
        dbs: &[String],
    ) -> Result<Deferred> {
        match self {
            Target::Maria(m) => Ok(Deferred::Maria(m.create_tables(src, tables, dbs).await?)),
            Target::Pg(p) => Ok(Deferred::Pg(p.create_tables(src, tables, dbs).await?)),
        }
    }

    /// The deferred parts of tables created by an earlier run.
    pub async fn deferred(&self, src: &mut Conn, tables: &[SourceTable]) -> Result<Deferred> {
        match self {
            Target::Maria(_) => {
                let mut out = Vec::new();
                for t in tables {
                    let show =
                        crate::source::show_create(src, "TABLE", t.db(), t.name(), 1).await?;
                    out.push(maria::split_create(t, &show)?.1);
                }
                Ok(Deferred::Maria(out))
            }
            Target::Pg(p) => Ok(Deferred::Pg(p.deferred(src, tables).await?)),
        }
    }

    /// Finishes table `i` of the plan once its rows are loaded: its
    /// deferred indexes (PostgreSQL: also its primary key and identity).
    pub async fn finish_table(&self, d: &Deferred, i: usize) -> Result<()> {
        match (self, d) {
            (Target::Maria(m), Deferred::Maria(d)) => match d.get(i) {
                Some(d) => m.finish_table(d).await,
                None => Ok(()),
            },
            (Target::Pg(p), Deferred::Pg(d)) => match d.get(i) {
                Some(d) => p.finish_table(d).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// After every table is finished: the foreign keys (MariaDB).
    pub async fn finish_all(&self, d: &Deferred) -> Result<()> {
        match (self, d) {
            (Target::Maria(m), Deferred::Maria(d)) => m.add_foreign_keys(d).await,
            _ => Ok(()),
        }
    }

    /// Work after the catch-up (PostgreSQL: identity sequences past the
    /// largest value).
    pub async fn finalize(&self, d: &Deferred) -> Result<()> {
        match (self, d) {
            (Target::Pg(p), Deferred::Pg(d)) => p.sync_sequences(d).await,
            _ => Ok(()),
        }
    }

    /// Creates views, routines and triggers; returns what was created and
    /// what the target cannot take (reported, not created).
    pub async fn create_objects(
        &self,
        src: &mut Conn,
        objects: &[SourceObject],
        d: &Deferred,
    ) -> Result<(Vec<String>, Vec<String>)> {
        match (self, d) {
            (Target::Pg(p), Deferred::Pg(d)) => Ok((Vec::new(), p.not_created(objects, d))),
            (Target::Pg(p), _) => Ok((Vec::new(), p.not_created(objects, &[]))),
            (Target::Maria(m), _) => Ok((m.create_objects(src, objects).await?, Vec::new())),
        }
    }

    pub fn select_list(&self, t: &SourceTable) -> String {
        match self {
            Target::Maria(_) => maria::select_list(t),
            Target::Pg(_) => PgTarget::select_list(t),
        }
    }

    pub fn encode_row(
        &self,
        t: &SourceTable,
        out: &mut BytesMut,
        row: Vec<mysql_async::Value>,
        scratch: &mut String,
    ) -> Result<()> {
        match self {
            Target::Maria(_) => {
                maria::encode_row(out, row);
                Ok(())
            }
            Target::Pg(_) => PgTarget::encode_row(t, out, row, scratch),
        }
    }

    pub async fn load_chunk(
        &self,
        t: &SourceTable,
        chunk: &Chunk,
        snap: &BinlogPos,
        rx: mpsc::Receiver<Bytes>,
        rows_sent: oneshot::Receiver<crate::plan::ChunkEnd>,
    ) -> Result<u64> {
        match self {
            Target::Maria(m) => m.load_chunk(t, chunk, snap, rx, rows_sent).await,
            Target::Pg(p) => p.load_chunk(t, chunk, snap, rx, rows_sent).await,
        }
    }
}
