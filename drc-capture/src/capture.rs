//! The live capture: checks the source, takes a schema snapshot, connects as a
//! replica, decodes the binlog into whole transactions, and survives lost
//! connections.
//!
//! Resumption: after any transient failure (connection reset, server restart,
//! no packet within the read timeout although heartbeats were requested) the
//! capture reconnects with backoff and asks for the stream right after the
//! last *whole* transaction it handed out — by GTID state where the server has
//! GTIDs, else by file/position. Events of a transaction cut off by the
//! failure are dropped and arrive again, so nothing is lost or repeated.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::assemble::AssembledTxn;
use crate::binlog::event::Checksum;
use crate::binlog::protocol::{self, ConnectOptions, ProtocolError, ReplicationConn};
use crate::checks::{self, SourceInfo};
use crate::decode::charset::Collations;
use crate::decoder::{DecoderOptions, StreamDecoder};
use crate::error::{CaptureError, Result};
use crate::position::{BinlogPos, MariaGtidList, MysqlGtidSet};
use crate::schema::history::SchemaHistory;
use crate::schema::snapshot;

/// Where a capture starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest binlog the server has.
    FromStart,
    /// The server's current position: only new transactions.
    FromNow,
    /// After the transactions of a GTID set (MariaDB list or MySQL set, as text).
    Gtid(String),
    /// A binlog file and offset (the start of an event).
    FilePos(BinlogPos),
}

/// Settings of a live capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// `mysql://user:pass@host:port`.
    pub url: String,
    /// The server id the capture registers with (must differ from every
    /// server and replica of the topology).
    pub replica_server_id: u32,
    pub start: StartAt,
    /// Exit after the last event the server has (non-blocking dump).
    pub stop_at_end: bool,
    /// How often the server sends a heartbeat while idle.
    pub heartbeat: Duration,
    /// Persisted schema history; in memory when `None`.
    pub schema_history: Option<PathBuf>,
    pub decoder: DecoderOptions,
    /// Most reconnect attempts in a row before giving up (0 = forever).
    pub max_reconnects: u32,
}

/// Default replica server id: "DRC" in ASCII, unlikely to clash.
pub const DEFAULT_REPLICA_SERVER_ID: u32 = 0x0044_5243;
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

impl CaptureOptions {
    pub fn new(url: impl Into<String>, start: StartAt) -> Self {
        Self {
            url: url.into(),
            replica_server_id: DEFAULT_REPLICA_SERVER_ID,
            start,
            stop_at_end: false,
            heartbeat: DEFAULT_HEARTBEAT,
            schema_history: None,
            decoder: DecoderOptions::default(),
            max_reconnects: 0,
        }
    }
}

/// Statistics of a finished capture.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    pub transactions: u64,
    pub rows: u64,
    pub reconnects: u64,
}

/// The resume point, updated after each whole transaction.
#[derive(Debug, Clone)]
enum Resume {
    Maria(MariaGtidList),
    Mysql(MysqlGtidSet),
    FilePos(BinlogPos),
}

/// Runs a capture until the end of the binlog (`stop_at_end`), a definite
/// error, or until `emit` fails; `emit` returning [`CaptureError::Stop`] ends
/// it cleanly.
pub async fn run(
    opts: CaptureOptions,
    mut emit: impl FnMut(AssembledTxn) -> Result<()> + Send,
) -> Result<CaptureStats> {
    run_with(opts, &mut SyncSink(&mut emit)).await
}

/// Where a capture hands its transactions.
pub trait TxnSink: Send {
    /// Takes one whole transaction. The next event is read only after this
    /// returns, so a slow sink slows the capture; an error ends the capture
    /// ([`CaptureError::Stop`] cleanly).
    fn accept(&mut self, txn: AssembledTxn)
        -> impl std::future::Future<Output = Result<()>> + Send;

    /// Called when the source has nothing more to send right now (and at the
    /// end of the binlog): a sink that batches transactions flushes here.
    fn idle(&mut self) -> impl std::future::Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

struct SyncSink<'a, F>(&'a mut F);

impl<F: FnMut(AssembledTxn) -> Result<()> + Send> TxnSink for SyncSink<'_, F> {
    fn accept(
        &mut self,
        txn: AssembledTxn,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        std::future::ready((self.0)(txn))
    }
}

/// [`run`] with an asynchronous consumer (e.g. one that publishes to a relay
/// and waits for its acknowledgement). A transaction is handed over only after
/// the decoder has seen its commit.
pub async fn run_with(opts: CaptureOptions, emit: &mut impl TxnSink) -> Result<CaptureStats> {
    let mut conn = control_conn(&opts.url).await?;
    let info = checks::check_source(&mut conn).await?;
    tracing::info!(version = %info.version, server_id = info.server_id, row_metadata = %info.row_metadata, "source checked");

    let collations = load_collations(&mut conn).await?;
    let mut history = match &opts.schema_history {
        Some(p) => SchemaHistory::open(p)?,
        None => SchemaHistory::in_memory(),
    };
    let head = checks::master_position(&mut conn).await?;
    let mut resume = resolve_start(&mut conn, &info, &opts.start, &head).await?;
    if opts.start == StartAt::FromNow || !history.has_snapshot() {
        let snap = snapshot::load_snapshot(&mut conn, None)
            .await
            .map_err(CaptureError::Schema)?;
        history.record_full_snapshot(head.clone(), snap)?;
    }
    let mut decoder_opts = opts.decoder.clone();
    decoder_opts.collations = collations;
    let mut decoder = StreamDecoder::new(decoder_opts, Some(history));
    decoder.expect_checksum(if info.checksum_crc32 {
        Checksum::Crc32
    } else {
        Checksum::None
    });
    if let Resume::FilePos(p) = &resume {
        decoder.set_file(&p.file, p.pos);
    }
    if let Resume::Maria(s) = &resume {
        decoder.set_maria_state(s.clone());
    }
    if let Resume::Mysql(s) = &resume {
        decoder.set_mysql_state(s.clone());
    }

    let mut stats = CaptureStats::default();
    let mut failures = 0u32;
    loop {
        let r = stream_once(
            &opts,
            &info,
            &mut conn,
            &mut decoder,
            &resume,
            &mut stats,
            emit,
        )
        .await;
        resume = match &resume {
            Resume::Maria(_) => Resume::Maria(decoder.maria_state().clone()),
            Resume::Mysql(_) => Resume::Mysql(decoder.mysql_state().clone()),
            Resume::FilePos(_) => Resume::FilePos(decoder.committed().clone()),
        };
        match r {
            Ok(progress) => {
                if opts.stop_at_end {
                    stats.rows = decoder.rows_decoded;
                    return Ok(stats);
                }
                if progress {
                    failures = 0;
                }
            }
            Err(CaptureError::Stop) => {
                stats.rows = decoder.rows_decoded;
                return Ok(stats);
            }
            Err(e) if e.is_transient() => {
                failures = failures.saturating_add(1);
                if opts.max_reconnects > 0 && failures >= opts.max_reconnects {
                    return Err(e);
                }
                let delay = backoff(failures);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "lost the source; reconnecting");
                tokio::time::sleep(delay).await;
                stats.reconnects += 1;
                decoder.reset_open();
                // The control connection may be gone too.
                if let Ok(c) = control_conn(&opts.url).await {
                    conn = c;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A query connection to the source (TCP as given, never a local socket).
async fn control_conn(url: &str) -> Result<mysql_async::Conn> {
    let o = mysql_async::Opts::from_url(url).map_err(|e| {
        CaptureError::Config(format!(
            "bad source URL: {e} (expected mysql://user:pass@host:port)"
        ))
    })?;
    let o = mysql_async::OptsBuilder::from_opts(o).prefer_socket(false);
    Ok(mysql_async::Conn::new(o).await?)
}

fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << failures.min(6));
    Duration::from_millis(ms.min(5_000))
}

async fn load_collations(conn: &mut mysql_async::Conn) -> Result<Collations> {
    let rows: Vec<(u16, String)> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
        )
        .await?;
    Ok(Collations::with_server(rows))
}

async fn resolve_start(
    conn: &mut mysql_async::Conn,
    info: &SourceInfo,
    start: &StartAt,
    head: &BinlogPos,
) -> Result<Resume> {
    Ok(match start {
        StartAt::FromNow => {
            if info.is_mariadb {
                let pos: Option<String> =
                    conn.query_first("SELECT @@global.gtid_binlog_pos").await?;
                Resume::Maria(
                    pos.unwrap_or_default()
                        .parse()
                        .map_err(CaptureError::Source)?,
                )
            } else if info.gtid_mode_on {
                let set: Option<String> = conn.query_first("SELECT @@global.gtid_executed").await?;
                Resume::Mysql(
                    set.unwrap_or_default()
                        .replace('\n', "")
                        .parse()
                        .map_err(CaptureError::Source)?,
                )
            } else {
                Resume::FilePos(head.clone())
            }
        }
        StartAt::FromStart => {
            if info.is_mariadb {
                // The GTID state where the oldest binlog begins: an empty
                // state is refused once older binlogs have been purged.
                let logs = checks::binary_logs(conn).await?;
                let state = match logs.first() {
                    Some(oldest) => conn
                        .exec_first::<Option<String>, _, _>(
                            "SELECT BINLOG_GTID_POS(?, 4)",
                            (oldest.as_str(),),
                        )
                        .await?
                        .flatten()
                        .unwrap_or_default(),
                    None => String::new(),
                };
                Resume::Maria(state.parse().map_err(CaptureError::Source)?)
            } else if info.gtid_mode_on {
                Resume::Mysql(MysqlGtidSet::default())
            } else {
                let logs = checks::binary_logs(conn).await?;
                Resume::FilePos(BinlogPos::new(logs.first().cloned().unwrap_or_default(), 4))
            }
        }
        StartAt::Gtid(text) => {
            if info.is_mariadb {
                let list: MariaGtidList = text.parse().map_err(CaptureError::Config)?;
                checks::check_maria_gtid(conn, &list).await?;
                Resume::Maria(list)
            } else {
                let set: MysqlGtidSet = text.parse().map_err(CaptureError::Config)?;
                checks::check_mysql_gtid(conn, &set).await?;
                Resume::Mysql(set)
            }
        }
        StartAt::FilePos(p) => {
            checks::check_file_pos(conn, p).await?;
            Resume::FilePos(p.clone())
        }
    })
}

fn map_dump_error(e: ProtocolError) -> CaptureError {
    if let ProtocolError::Server { code, message, .. } = &e {
        // 1236: ER_MASTER_FATAL_ERROR_READING_BINLOG (purged file/GTID, bad position).
        if *code == 1236 {
            return CaptureError::Purged(format!(
                "the server cannot send the binlog from the resume point: {message}; if it was purged, re-seed the target and start from now"
            ));
        }
    }
    CaptureError::Protocol(e)
}

/// One replication connection, until EOF (Ok(true/false) = made progress) or an error.
async fn stream_once(
    opts: &CaptureOptions,
    info: &SourceInfo,
    control: &mut mysql_async::Conn,
    decoder: &mut StreamDecoder,
    resume: &Resume,
    stats: &mut CaptureStats,
    emit: &mut impl TxnSink,
) -> Result<bool> {
    let mut copts = ConnectOptions::from_url(&opts.url).map_err(CaptureError::Protocol)?;
    copts.server_id = opts.replica_server_id;
    copts.read_timeout = opts.heartbeat * 3 + Duration::from_secs(1);
    let mut rc = ReplicationConn::connect(copts).await?;
    let checksum = if info.checksum_crc32 { "CRC32" } else { "NONE" };
    rc.query(&format!("SET @master_binlog_checksum='{checksum}'"))
        .await?;
    rc.query(&format!(
        "SET @master_heartbeat_period={}",
        opts.heartbeat.as_nanos()
    ))
    .await?;
    let flags = if opts.stop_at_end {
        protocol::BINLOG_DUMP_NON_BLOCK
    } else {
        0
    };
    if info.is_mariadb {
        // Without it MariaDB replaces GTID events with BEGIN/dummy queries.
        rc.query("SET @mariadb_slave_capability=4").await?;
    }
    match resume {
        Resume::Maria(state) => {
            rc.query(&format!("SET @slave_connect_state='{state}'"))
                .await?;
            rc.query("SET @slave_gtid_strict_mode=0").await?;
            rc.query("SET @slave_gtid_ignore_duplicates=0").await?;
            rc.register_replica().await?;
            rc.dump_file_pos("", 4, flags)
                .await
                .map_err(map_dump_error)?;
        }
        Resume::Mysql(set) => {
            rc.register_replica().await?;
            let enc = protocol::encode_mysql_gtid_set(set).map_err(CaptureError::Protocol)?;
            rc.dump_mysql_gtid(&enc, flags, "", 4)
                .await
                .map_err(map_dump_error)?;
        }
        Resume::FilePos(p) => {
            rc.register_replica().await?;
            let pos = u32::try_from(p.pos)
                .map_err(|_| CaptureError::Config(format!("position {} too large", p.pos)))?;
            rc.dump_file_pos(&p.file, pos.max(4), flags)
                .await
                .map_err(map_dump_error)?;
        }
    }
    let mut progress = false;
    let mut ready: Vec<AssembledTxn> = Vec::new();
    loop {
        // When the next event is not already buffered, let the sink flush
        // what it batches before waiting (next_event is cancel-safe).
        let ev = match futures::FutureExt::now_or_never(rc.next_event()) {
            Some(r) => r,
            None => {
                emit.idle().await?;
                rc.next_event().await
            }
        }
        .map_err(map_dump_error)?;
        let Some(ev) = ev else {
            emit.idle().await?;
            return Ok(progress);
        };
        let r = decoder.feed(&ev, &mut |t| {
            ready.push(t);
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(CaptureError::UnknownDdl {
                pos,
                db,
                statement,
                reason,
            }) => {
                ready.clear();
                confirm_ddl_from_server(control, decoder, &pos, &db, &statement, &reason).await?;
                decoder.feed(&ev, &mut |t| {
                    ready.push(t);
                    Ok(())
                })?;
            }
            Err(e) => return Err(e),
        }
        for t in ready.drain(..) {
            stats.transactions += 1;
            progress = true;
            emit.accept(t).await?;
        }
    }
}

/// A DDL the parser cannot follow is accepted only when the capture is at the
/// head of the binlog, so that information_schema shows the table as the DDL
/// left it.
async fn confirm_ddl_from_server(
    control: &mut mysql_async::Conn,
    decoder: &mut StreamDecoder,
    pos: &BinlogPos,
    db: &str,
    statement: &str,
    reason: &str,
) -> Result<()> {
    let head = checks::master_position(control).await?;
    let here = decoder.position();
    if head != here {
        return Err(CaptureError::UnknownDdl {
            pos: pos.clone(),
            db: db.to_string(),
            statement: statement.to_string(),
            reason: format!("{reason} (and the capture is behind the head at {head}, so the server cannot confirm the new definition)"),
        });
    }
    let dbs = vec![db.to_string()];
    let snap = snapshot::load_snapshot(control, Some(&dbs))
        .await
        .map_err(CaptureError::Schema)?;
    let tables: Vec<_> = snap.tables;
    let hist = decoder
        .history_mut()
        .ok_or_else(|| CaptureError::Config("no schema history".into()))?;
    let known: Vec<(String, String)> = hist
        .tables()
        .filter(|t| t.db == db)
        .map(|t| (t.db.clone(), t.table.clone()))
        .collect();
    let dropped: Vec<(String, String)> = known
        .into_iter()
        .filter(|(d, t)| !tables.iter().any(|(x, _)| &x.db == d && &x.table == t))
        .collect();
    hist.confirm_from_server_full(pos, db, statement, tables, dropped)?;
    tracing::warn!(pos = %pos, "DDL not understood by the parser; took the new definition from the server");
    Ok(())
}
