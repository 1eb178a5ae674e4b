//! DDL of the MySQL/MariaDB sink: run alone, with its default database and
//! an origin comment, once every earlier group has committed, with its own
//! checkpoint; "already exists" errors are accepted only where a replay can
//! happen (the first transaction after the checkpoint).

use drc_proto::v1 as pb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::errors::{classify, classify_with_message};
use super::parallel::{begin, commit};
use super::write::Ctx;
use super::{checkpoint, sql, MySqlSink};
use crate::error::Result;

/// `ER_BAD_DB_ERROR`: unknown database.
const ER_BAD_DB_ERROR: u16 = 1049;

/// DDL errors meaning the DDL has been applied already: database exists
/// (1007), database does not exist (1008), table exists (1050), unknown table
/// (1051), duplicate column (1060), duplicate key name (1061), cannot drop
/// column or key (1091).
const DDL_ALREADY_APPLIED: [u16; 7] = [1007, 1008, 1050, 1051, 1060, 1061, 1091];

impl MySqlSink {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_ddl(
        &mut self,
        conn: &mut Conn,
        stream: &str,
        offset: u64,
        txn: &pb::Transaction,
        ddl: &pb::Ddl,
        stored: u64,
        checkpoint_offset: u64,
        may_be_replay: bool,
    ) -> Result<()> {
        self.exec_ddl(
            conn,
            (stream, txn.origin.as_str()),
            ddl,
            offset,
            may_be_replay,
        )
        .await?;
        self.meta.clear();
        let origin = self.origin(stream);
        begin(conn).await?;
        if !txn.changes.is_empty() {
            self.resolve_tables(conn, &[(offset, txn)]).await?;
            self.writer()
                .apply_slow(conn, Ctx::of(stream, offset, txn), &txn.changes)
                .await?;
        }
        checkpoint::cas(conn, stream, stored).await?;
        checkpoint::write(
            conn,
            stream,
            checkpoint_offset,
            txn.position.as_ref(),
            &origin,
        )
        .await
        .map_err(|e| classify(e, None, "drc.checkpoints"))?;
        commit(conn).await
    }

    async fn exec_ddl(
        &mut self,
        conn: &mut Conn,
        (stream_name, origin): (&str, &str),
        ddl: &pb::Ddl,
        offset: u64,
        may_be_replay: bool,
    ) -> Result<()> {
        let shown = crate::sink::abbreviate(&ddl.statement);
        if !ddl.database.is_empty() {
            let mut use_db = String::from("USE ");
            sql::push_ident(&mut use_db, &ddl.database);
            match conn.query_drop(use_db).await {
                Ok(()) => {}
                // The server names the database a CREATE/DROP DATABASE is
                // about as its default database; such a statement (and any
                // that ran on the source without it existing) does not
                // depend on it.
                Err(mysql_async::Error::Server(e)) if e.code == ER_BAD_DB_ERROR => {}
                Err(e) => {
                    return Err(classify(
                        e,
                        Some(offset),
                        &format!("USE {} for DDL {shown}", ddl.database),
                    ))
                }
            }
        }
        // The comment names the DDL's origin for the target's own capture
        // (the server keeps it in its binlog).
        let origin = if origin.is_empty() {
            self.origin(stream_name)
        } else {
            origin.to_owned()
        };
        let statement = format!(
            "{}{}",
            drc_capture::origin::ddl_comment(&origin),
            ddl.statement
        );
        match conn.query_drop(statement).await {
            Ok(()) => Ok(()),
            Err(mysql_async::Error::Server(e))
                if may_be_replay && DDL_ALREADY_APPLIED.contains(&e.code) =>
            {
                tracing::warn!(
                    offset,
                    code = e.code,
                    "mysql sink: DDL already applied (replayed after a stop between the DDL \
                     and its checkpoint): {shown}"
                );
                Ok(())
            }
            Err(e) => Err(classify_with_message(
                e,
                Some(offset),
                &format!("DDL {shown}"),
            )),
        }
    }
}
