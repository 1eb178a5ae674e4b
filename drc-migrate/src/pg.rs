//! A PostgreSQL target: tables translated by the PostgreSQL sink's DDL
//! translation and type mapping (source database `d` is schema `d`), loaded
//! with text-format `COPY` of the values the sink would write, indexes built
//! after the load, AUTO_INCREMENT columns turned into identity columns whose
//! sequence is set past the largest value.
//!
//! What PostgreSQL cannot take from MariaDB is reported, not guessed: views,
//! triggers and stored routines (their bodies are MariaDB SQL) and foreign
//! keys (the translation leaves them out) are listed in the report as not
//! created. Generated columns become ordinary columns holding the values the
//! source computed, as the sink does.

use bytes::{Bytes, BytesMut};
use drc_apply::sink::postgres::ddl::{self, Translation};
use drc_apply::sink::postgres::types::{self, ident, table_ref};
use drc_apply::sink::postgres::PostgresSinkConfig;
use drc_capture::position::BinlogPos;
use futures::SinkExt as _;
use mysql_async::Conn;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::Client;

use crate::error::{self, Error, Result};
use crate::plan::Chunk;
use crate::source::{SourceObject, SourceTable};
use crate::state::{ChunkState, Phase, State};
use drc_verify::Endpoint;

/// Session settings of every target connection: values are written as the
/// sink writes them (UTC, ISO dates, `postgres` intervals). A chunk's
/// commit need not wait for the WAL flush: the chunk and its done mark are
/// one transaction, so a crash loses both and the rerun loads it again.
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET client_encoding = 'UTF8'; \
     SET synchronous_commit = off; SET maintenance_work_mem = '256MB'";

pub struct PgTarget {
    config: tokio_postgres::Config,
    ddl: Client,
    idle: Mutex<Vec<Client>>,
    sink: PostgresSinkConfig,
}

/// What is added to a table after its load.
#[derive(Debug, Clone, Default)]
pub struct Deferred {
    pub table: String,
    /// `ALTER TABLE ... ADD PRIMARY KEY (...)`: a heap loads faster without
    /// an index, and the key is then built by one sort.
    pub primary_key: Option<String>,
    pub indexes: Vec<String>,
    /// The AUTO_INCREMENT column, made an identity column.
    pub identity: Option<String>,
    /// The source's foreign keys (reported as not created).
    pub foreign_keys: Vec<String>,
}

impl PgTarget {
    pub async fn connect(ep: &Endpoint) -> Result<Self> {
        let config = ep.pg_config("drc migrate");
        let ddl = open(&config)
            .await
            .map_err(|e| Error::Preflight(format!("target {}: cannot connect: {e}", ep.addr())))?;
        Ok(Self {
            config,
            ddl,
            idle: Mutex::new(Vec::new()),
            sink: PostgresSinkConfig::new(String::new()),
        })
    }

    async fn client(&self) -> Result<Client> {
        if let Some(c) = self.idle.lock().await.pop() {
            return Ok(c);
        }
        open(&self.config).await
    }

    async fn give_back(&self, c: Client) {
        self.idle.lock().await.push(c);
    }

    async fn exec(&self, sql: &str, what: &str) -> Result<()> {
        self.ddl
            .batch_execute(sql)
            .await
            .map_err(|e| error::pg(what, &e))
    }

    pub async fn existing(&self, tables: &[SourceTable]) -> Result<Vec<String>> {
        let rows = self
            .ddl
            .query(
                "SELECT table_schema, table_name FROM information_schema.tables",
                &[],
            )
            .await
            .map_err(|e| error::pg("list tables", &e))?;
        let have: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(tables
            .iter()
            .filter(|t| have.iter().any(|(s, n)| s == t.db() && n == t.name()))
            .map(SourceTable::full_name)
            .collect())
    }

    /// The translated statements of a table: (create, deferred indexes), or
    /// why it cannot be translated.
    async fn translate(
        &self,
        src: &mut Conn,
        t: &SourceTable,
    ) -> Result<std::result::Result<Translated, String>> {
        let show = crate::source::show_create(src, "TABLE", t.db(), t.name(), 1).await?;
        // Qualify the name: the statement is translated outside its database.
        let qualified = show.replacen(
            &format!("CREATE TABLE {}", crate::source::quote_ident(t.name())),
            &format!(
                "CREATE TABLE {}",
                crate::source::table_ref(t.db(), t.name())
            ),
            1,
        );
        Ok(match ddl::translate(&qualified, t.db(), &self.sink) {
            Translation::Statements(stmts) => {
                let (idx, create): (Vec<String>, Vec<String>) = stmts.into_iter().partition(|s| {
                    let u = s.trim_start().to_ascii_uppercase();
                    u.starts_with("CREATE INDEX") || u.starts_with("CREATE UNIQUE INDEX")
                });
                let name = table_ref(t.db(), t.name());
                let mut pk = None;
                let create = create
                    .into_iter()
                    .map(|s| match split_primary_key(&s) {
                        Some((without, cols)) if s.starts_with("CREATE TABLE") && pk.is_none() => {
                            pk = Some(format!("ALTER TABLE {name} ADD PRIMARY KEY ({cols})"));
                            without
                        }
                        _ => s,
                    })
                    .collect();
                Ok((create, pk, idx))
            }
            Translation::NoOp(why) | Translation::Unsupported(why) => Err(why),
        })
    }

    pub async fn representable(
        &self,
        src: &mut Conn,
        tables: &[SourceTable],
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for t in tables {
            if let Err(why) = self.translate(src, t).await? {
                out.push(format!("{}: {why}", t.full_name()));
            }
        }
        Ok(out)
    }

    pub async fn create_tables(
        &self,
        src: &mut Conn,
        tables: &[SourceTable],
        dbs: &[String],
    ) -> Result<Vec<Deferred>> {
        for db in dbs {
            self.exec(
                &format!("CREATE SCHEMA IF NOT EXISTS {}", ident(db)),
                &format!("create schema {db}"),
            )
            .await?;
        }
        let mut out = Vec::new();
        for t in tables {
            let (create, pk, indexes) = self
                .translate(src, t)
                .await?
                .map_err(|why| Error::Preflight(format!("{}: {why}", t.full_name())))?;
            let name = table_ref(t.db(), t.name());
            self.exec(
                &format!("DROP TABLE IF EXISTS {name}"),
                &format!("drop the half-made {name}"),
            )
            .await?;
            for s in create {
                self.exec(&s, &format!("create {name}")).await?;
            }
            out.push(self.deferred_of(src, t, pk, indexes).await?);
        }
        Ok(out)
    }

    async fn deferred_of(
        &self,
        src: &mut Conn,
        t: &SourceTable,
        primary_key: Option<String>,
        indexes: Vec<String>,
    ) -> Result<Deferred> {
        let show = crate::source::show_create(src, "TABLE", t.db(), t.name(), 1).await?;
        let fks = crate::maria::split_create(t, &show)?.1.foreign_keys;
        Ok(Deferred {
            table: table_ref(t.db(), t.name()),
            primary_key,
            indexes,
            identity: t.auto_increment.clone(),
            foreign_keys: fks,
        })
    }

    pub async fn deferred(&self, src: &mut Conn, tables: &[SourceTable]) -> Result<Vec<Deferred>> {
        let mut out = Vec::new();
        for t in tables {
            let (_, pk, indexes) = self
                .translate(src, t)
                .await?
                .map_err(|why| Error::Preflight(format!("{}: {why}", t.full_name())))?;
            out.push(self.deferred_of(src, t, pk, indexes).await?);
        }
        Ok(out)
    }

    /// Builds one table's deferred primary key and indexes (each only if
    /// missing: a rerun after a crash midway goes on) and its identity
    /// column. Tables are finished one by one as their loads end.
    pub async fn finish_table(&self, d: &Deferred) -> Result<()> {
        let client = self.client().await?;
        let table = &d.table;
        if let Some(pk) = &d.primary_key {
            let has = client
                .query_one(
                    "SELECT count(*) > 0 FROM pg_index WHERE indrelid = $1::text::regclass AND indisprimary",
                    &[table],
                )
                .await
                .map_err(|e| error::pg(format!("read the keys of {table}"), &e))?;
            if !has.get::<_, bool>(0) {
                client
                    .batch_execute(pk)
                    .await
                    .map_err(|e| error::pg(format!("add the primary key of {table}"), &e))?;
            }
        }
        for s in &d.indexes {
            let s = s.replacen("INDEX ", "INDEX IF NOT EXISTS ", 1);
            client
                .batch_execute(&s)
                .await
                .map_err(|e| error::pg(format!("build an index of {table}"), &e))?;
        }
        if let Some(col) = &d.identity {
            let has = client
                .query_one(
                    "SELECT a.attidentity <> '' FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attname::text = $2",
                    &[table, col],
                )
                .await
                .map_err(|e| error::pg(format!("read {table}.{col}"), &e))?;
            if !has.get::<_, bool>(0) {
                let next = self.max_of(table, col).await? + 1;
                client
                    .batch_execute(&format!(
                        "ALTER TABLE {table} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY (START WITH {next})",
                        ident(col)
                    ))
                    .await
                    .map_err(|e| error::pg(format!("make {table}.{col} an identity column"), &e))?;
            }
        }
        self.give_back(client).await;
        Ok(())
    }

    async fn max_of(&self, table: &str, col: &str) -> Result<i64> {
        let row = self
            .ddl
            .query_one(
                &format!(
                    "SELECT COALESCE(MAX({})::bigint, 0) FROM {table}",
                    ident(col)
                ),
                &[],
            )
            .await
            .map_err(|e| error::pg(format!("read the largest {table}.{col}"), &e))?;
        Ok(row.get(0))
    }

    /// Sets each identity sequence past the largest value (after the
    /// catch-up, which inserts explicit values).
    pub async fn sync_sequences(&self, deferred: &[Deferred]) -> Result<()> {
        for d in deferred {
            let Some(col) = &d.identity else { continue };
            let max = self.max_of(&d.table, col).await?;
            if max < 1 {
                continue;
            }
            let sql = format!("SELECT setval(pg_get_serial_sequence($1::text, $2::text), {max})");
            self.ddl
                .execute(&sql, &[&d.table, col])
                .await
                .map_err(|e| error::pg(format!("set the sequence of {}.{col}", d.table), &e))?;
        }
        Ok(())
    }

    /// What PostgreSQL cannot take: every view, trigger and routine, and the
    /// foreign keys.
    pub fn not_created(&self, objects: &[SourceObject], deferred: &[Deferred]) -> Vec<String> {
        let mut out: Vec<String> = objects
            .iter()
            .map(|o| {
                format!(
                    "{} {}.{} (MariaDB SQL; write it for PostgreSQL by hand)",
                    o.kind.as_str(),
                    o.db,
                    o.name
                )
            })
            .collect();
        for d in deferred {
            for fk in &d.foreign_keys {
                out.push(format!(
                    "foreign key of {}: {fk} (add it by hand after the cutover)",
                    d.table
                ));
            }
        }
        out
    }

    pub fn select_list(t: &SourceTable) -> String {
        t.copied_columns()
            .map(|c| {
                let q = crate::source::quote_ident(&c.name);
                if c.data_type == "float" {
                    format!("CAST({q} AS DOUBLE)")
                } else {
                    q
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Appends one row of text-format COPY.
    pub fn encode_row(
        t: &SourceTable,
        out: &mut BytesMut,
        row: Vec<mysql_async::Value>,
        scratch: &mut String,
    ) -> Result<()> {
        scratch.clear();
        for (i, (v, col)) in row.into_iter().zip(t.copied_columns()).enumerate() {
            if i > 0 {
                scratch.push('\t');
            }
            if let mysql_async::Value::Bytes(b) = &v {
                if let Some(r) = crate::pgvalue::push_fast(col, b, scratch) {
                    r.map_err(|e| error::source(format!("read {}", t.full_name()), e))?;
                    continue;
                }
            }
            let kind = match v {
                mysql_async::Value::NULL => drc_proto::v1::value::Kind::Null(true),
                mysql_async::Value::Bytes(b) => crate::pgvalue::kind_of(col, b)
                    .map_err(|e| error::source(format!("read {}", t.full_name()), e))?,
                other => crate::pgvalue::kind_of(
                    col,
                    other.as_sql(true).trim_matches('\'').as_bytes().to_vec(),
                )
                .map_err(|e| error::source(format!("read {}", t.full_name()), e))?,
            };
            types::push_copy_field(scratch, &kind).map_err(|e| {
                error::target(
                    format!(
                        "write a value of {}.{} to PostgreSQL",
                        t.full_name(),
                        col.name
                    ),
                    e,
                )
            })?;
        }
        scratch.push('\n');
        out.extend_from_slice(scratch.as_bytes());
        Ok(())
    }

    pub async fn load_chunk(
        &self,
        t: &SourceTable,
        chunk: &Chunk,
        snap: &BinlogPos,
        mut rx: mpsc::Receiver<Bytes>,
        rows_sent: oneshot::Receiver<crate::plan::ChunkEnd>,
    ) -> Result<u64> {
        let client = self.client().await?;
        let name = t.full_name();
        let what = |w: &str| format!("{w} chunk {} of {name}", chunk.seq);
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| error::pg(what("begin"), &e))?;
        let cols: Vec<String> = t.copied_columns().map(|c| ident(&c.name)).collect();
        let stmt = format!(
            "COPY {} ({}) FROM STDIN",
            table_ref(t.db(), t.name()),
            cols.join(", ")
        );
        let sink = client
            .copy_in::<_, Bytes>(stmt.as_str())
            .await
            .map_err(|e| error::pg(what("start the COPY of"), &e))?;
        let mut sink = std::pin::pin!(sink);
        while let Some(b) = rx.recv().await {
            sink.send(b)
                .await
                .map_err(|e| error::pg(what("copy"), &e))?;
        }
        let end = rows_sent
            .await
            .map_err(|_| error::source(what("read"), "the read stopped"))?;
        let sent = end.rows;
        let loaded = sink
            .finish()
            .await
            .map_err(|e| error::pg(what("copy"), &e))?;
        if loaded != sent {
            return Err(error::target(
                what("load"),
                format!("{sent} rows sent but {loaded} loaded"),
            ));
        }
        let mut st = ChunkState::of(t, chunk, loaded, snap);
        st.hi_key = end.last_key.clone();
        crate::state::pg_chunk_done(&client, &st).await?;
        if let (true, Some(next)) = (end.more, &end.last_key) {
            crate::state::pg_chunk_next(&client, &st, next).await?;
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| error::pg(what("commit"), &e))?;
        self.give_back(client).await;
        Ok(loaded)
    }

    pub async fn state(&self) -> Result<Option<State>> {
        crate::state::pg_read(&self.ddl).await
    }

    pub async fn init_state(&self, source: &str, start: &BinlogPos) -> Result<()> {
        crate::state::pg_init(&self.ddl, source, start).await
    }

    pub async fn record_plan(&self, chunks: &[ChunkState]) -> Result<()> {
        crate::state::pg_plan(&self.ddl, chunks).await
    }

    pub async fn set_phase(&self, phase: Phase) -> Result<()> {
        crate::state::pg_phase(&self.ddl, phase).await
    }
}

type Translated = (Vec<String>, Option<String>, Vec<String>);

/// `CREATE TABLE t (cols, PRIMARY KEY (k))` → (`CREATE TABLE t (cols)`,
/// `k`), when the statement ends with the key as the translation writes it.
fn split_primary_key(create: &str) -> Option<(String, String)> {
    let at = create.rfind(", PRIMARY KEY (")?;
    let cols = create[at + ", PRIMARY KEY (".len()..].strip_suffix("))")?;
    Some((format!("{})", &create[..at]), cols.to_owned()))
}

async fn open(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| error::pg("connect", &e))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "postgres connection ended");
        }
    });
    client
        .batch_execute(SESSION)
        .await
        .map_err(|e| error::pg("set up the session", &e))?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_primary_key_off() {
        let (t, k) = split_primary_key(
            r#"CREATE TABLE "d"."t" ("id" integer NOT NULL, "v" text, PRIMARY KEY ("id"))"#,
        )
        .expect("split");
        assert_eq!(
            t,
            r#"CREATE TABLE "d"."t" ("id" integer NOT NULL, "v" text)"#
        );
        assert_eq!(k, r#""id""#);
        assert!(split_primary_key(r#"CREATE TABLE "d"."t" ("id" integer)"#).is_none());
    }
}
