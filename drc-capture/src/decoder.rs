//! The stream decoder: whole binlog events in, whole transactions out.
//!
//! One state machine serves the live replication connection and offline
//! files. It tracks the format description, the current file and position,
//! table maps and their decode plans, GTID state, and the open transaction.
//! A transaction is handed out only when its commit (XID, COMMIT, or the end
//! of a standalone DDL group) has been seen, so a consumer never sees half of
//! one; events of a transaction cut off by a reconnect are dropped with
//! [`StreamDecoder::reset_open`] and arrive again after the resume.
//!
//! A stream read from before the schema history's oldest snapshot (a
//! capture without a history file restarts behind the head, where it takes
//! its snapshot) decodes rows from the binlog's own column metadata until it
//! reaches the snapshot; DDL met on the way is handed on but not applied, as
//! the snapshot already holds its result.
//!
//! Every event type is handled explicitly. An event the decoder does not know
//! stops the stream with [`CaptureError::Decode`] naming its position, unless
//! the server flagged it ignorable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use drc_proto::v1 as pb;

use crate::assemble::{AssembledTxn, TxnBuilder, DEFAULT_SPILL_THRESHOLD};
use crate::binlog::event::{
    self, types, Checksum, EventHeader, FormatDescription, RawEvent, TypeDisplay,
};
use crate::binlog::events::{self as ev, MysqlGtid};
use crate::binlog::rows::{self, RowsKind};
use crate::binlog::table_map::{self, TableMap};
use crate::decode::charset::Collations;
use crate::decode::plan::{build_plan, TablePlan};
use crate::error::{CaptureError, Result};
use crate::filter::Filter;
use crate::position::{BinlogPos, MariaGtid, MariaGtidList, MysqlGtidSet};
use crate::schema::history::SchemaHistory;

/// Largest uncompressed TRANSACTION_PAYLOAD accepted (MySQL caps it at 1 GiB).
pub const PAYLOAD_LIMIT: usize = 1 << 30;

/// What the decoder needs besides the events.
#[derive(Debug, Clone)]
pub struct DecoderOptions {
    pub filter: Filter,
    pub spill_threshold: usize,
    pub spill_dir: Option<PathBuf>,
    pub collations: Collations,
    /// Reading binlog files with no server to ask: the schema history starts
    /// empty and learns tables from the DDL in the files; tables it does not
    /// know decode from the binlog's own metadata (`@N` names without it),
    /// and a DDL it cannot follow makes it stop using the history.
    pub offline: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            spill_threshold: DEFAULT_SPILL_THRESHOLD,
            spill_dir: None,
            collations: Collations::builtin(),
            offline: false,
        }
    }
}

#[derive(Debug)]
struct Open {
    builder: TxnBuilder,
    /// A MariaDB standalone group (DDL): ends after its one statement.
    standalone: bool,
    began: bool,
    maria: Option<MariaGtid>,
    mysql: Option<MysqlGtid>,
    /// The server id of the GTID event (origin server).
    server_id: u32,
}

/// Turns events into transactions.
pub struct StreamDecoder {
    opts: DecoderOptions,
    fde: FormatDescription,
    fde_seen: bool,
    /// Checksum the server was asked for, used before its FDE arrives.
    expected_checksum: Option<Checksum>,
    file: String,
    next_pos: u64,
    plans: HashMap<u64, (TableMap, Arc<TablePlan>)>,
    history: Option<SchemaHistory>,
    /// Whether the history describes the stream at the current position
    /// (false when it could not be rewound to where reading started).
    history_trusted: bool,
    /// Where the history starts to describe the stream again, while reading
    /// from before its oldest snapshot (a restart behind the position the
    /// snapshot was taken at): DDL before it is already in the snapshot.
    history_from: Option<BinlogPos>,
    rewound: bool,
    maria_state: MariaGtidList,
    mysql_state: MysqlGtidSet,
    open: Option<Open>,
    /// Position after the last whole transaction handed out (or skipped).
    committed: BinlogPos,
    /// True while feeding the inner events of a TRANSACTION_PAYLOAD.
    in_payload: bool,
    payload_end: u64,
    /// Number of row changes decoded (before filtering), for statistics.
    pub rows_decoded: u64,
}

impl StreamDecoder {
    /// A decoder for binlog files (see [`DecoderOptions::offline`]).
    pub fn offline(mut opts: DecoderOptions) -> Self {
        opts.offline = true;
        let mut d = Self::new(opts, Some(SchemaHistory::in_memory()));
        d.rewound = true;
        d
    }

    pub fn new(opts: DecoderOptions, history: Option<SchemaHistory>) -> Self {
        Self {
            opts,
            fde: FormatDescription::assumed(),
            fde_seen: false,
            expected_checksum: None,
            file: String::new(),
            next_pos: 4,
            plans: HashMap::new(),
            history,
            history_trusted: true,
            history_from: None,
            rewound: false,
            maria_state: MariaGtidList::default(),
            mysql_state: MysqlGtidSet::default(),
            open: None,
            committed: BinlogPos::new("", 4),
            in_payload: false,
            payload_end: 0,
            rows_decoded: 0,
        }
    }

    /// Tells the decoder which checksum the server will use (live connections).
    pub fn expect_checksum(&mut self, c: Checksum) {
        self.expected_checksum = Some(c);
    }

    /// Sets the starting file name (offline files, file/pos resume).
    pub fn set_file(&mut self, file: &str, pos: u64) {
        self.file = file.to_string();
        self.next_pos = pos;
        self.committed = BinlogPos::new(file, pos);
    }

    pub fn set_maria_state(&mut self, s: MariaGtidList) {
        self.maria_state = s;
    }

    pub fn set_mysql_state(&mut self, s: MysqlGtidSet) {
        self.mysql_state = s;
    }

    pub fn maria_state(&self) -> &MariaGtidList {
        &self.maria_state
    }

    pub fn mysql_state(&self) -> &MysqlGtidSet {
        &self.mysql_state
    }

    /// Position after the last whole transaction.
    pub fn committed(&self) -> &BinlogPos {
        &self.committed
    }

    /// Position after the last event read.
    pub fn position(&self) -> BinlogPos {
        BinlogPos::new(self.file.clone(), self.next_pos)
    }

    pub fn history(&self) -> Option<&SchemaHistory> {
        self.history.as_ref()
    }

    pub fn history_mut(&mut self) -> Option<&mut SchemaHistory> {
        self.history.as_mut()
    }

    pub fn is_mariadb(&self) -> bool {
        self.fde.is_mariadb()
    }

    /// True while a transaction is open (its commit not yet seen).
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Drops a transaction cut off by a lost connection; the resume re-reads it.
    pub fn reset_open(&mut self) {
        self.open = None;
        self.in_payload = false;
    }

    fn err(&self, header: &EventHeader, reason: impl Into<String>) -> CaptureError {
        let start = u64::from(header.log_pos).saturating_sub(u64::from(header.event_size));
        let pos = if header.log_pos == 0 || self.in_payload {
            BinlogPos::new(self.file.clone(), self.next_pos)
        } else {
            BinlogPos::new(self.file.clone(), start)
        };
        CaptureError::Decode {
            pos,
            event: TypeDisplay(header.type_code).to_string(),
            reason: reason.into(),
        }
    }

    /// Feeds one whole event (header, body and checksum as on disk). Whole
    /// transactions are passed to `emit` as soon as they commit.
    pub fn feed(
        &mut self,
        event: &[u8],
        emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
    ) -> Result<()> {
        let header = EventHeader::parse(event).map_err(|e| CaptureError::Decode {
            pos: self.position(),
            event: "event header".into(),
            reason: e.to_string(),
        })?;
        if header.type_code == types::FORMAT_DESCRIPTION {
            let fde = FormatDescription::parse(event).map_err(|e| self.err(&header, e))?;
            self.fde = fde;
            self.fde_seen = true;
            if header.log_pos != 0 {
                self.next_pos = u64::from(header.log_pos);
            }
            return Ok(());
        }
        let fde_for_split;
        let fde = if !self.fde_seen && !self.in_payload {
            let mut f = FormatDescription::assumed();
            f.checksum = self.expected_checksum.unwrap_or_else(|| {
                // Before any FDE (a live stream's fake ROTATE): trust a valid CRC.
                if event::verify_crc(event).is_ok() {
                    Checksum::Crc32
                } else {
                    Checksum::None
                }
            });
            fde_for_split = f;
            &fde_for_split
        } else if self.in_payload {
            // Events inside a TRANSACTION_PAYLOAD carry no checksum of their own.
            fde_for_split = FormatDescription {
                checksum: Checksum::None,
                ..self.fde.clone()
            };
            &fde_for_split
        } else {
            &self.fde
        };
        let raw = RawEvent::split(event, fde).map_err(|e| self.err(&header, e))?;
        let r = self.handle(&raw, emit);
        if header.log_pos != 0 && !self.in_payload && header.type_code != types::ROTATE {
            self.next_pos = u64::from(header.log_pos);
        }
        r
    }

    fn handle(
        &mut self,
        raw: &RawEvent<'_>,
        emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
    ) -> Result<()> {
        let h = raw.header;
        let body = raw.body;
        match h.type_code {
            types::ROTATE => {
                let r = ev::parse_rotate(body).map_err(|e| self.err(&h, e))?;
                if self.open.is_some() && h.log_pos != 0 {
                    return Err(self.err(&h, "binlog rotated inside an open transaction"));
                }
                self.file = r.file;
                self.next_pos = r.pos;
                if self.open.is_none() {
                    self.committed = BinlogPos::new(self.file.clone(), r.pos.max(4));
                }
                // Table ids are only valid within one file.
                if h.log_pos != 0 {
                    self.plans.clear();
                }
                Ok(())
            }
            types::MARIA_GTID => {
                let g = ev::parse_maria_gtid(body, h.server_id).map_err(|e| self.err(&h, e))?;
                if g.flags & ev::maria_flags::PREPARED_XA != 0 || g.flags & ev::maria_flags::COMPLETED_XA != 0 {
                    return Err(self.err(&h, "XA transactions are not supported yet; do not use XA on replicated tables"));
                }
                self.begin(&h, Some(g.gtid), None, g.standalone())?;
                Ok(())
            }
            types::GTID => {
                let g = ev::parse_mysql_gtid(body, h.type_code).map_err(|e| self.err(&h, e))?;
                self.begin(&h, None, g, false)
            }
            types::GTID_TAGGED => {
                let g = ev::parse_mysql_gtid_tagged(body).map_err(|e| self.err(&h, e))?;
                self.begin(&h, None, Some(g), false)
            }
            types::ANONYMOUS_GTID => self.begin(&h, None, None, false),
            types::QUERY | types::MARIA_QUERY_COMPRESSED => {
                let q = ev::parse_query(body, &self.fde, h.type_code == types::MARIA_QUERY_COMPRESSED)
                    .map_err(|e| self.err(&h, e))?;
                self.query(&h, q, emit)
            }
            types::XID => {
                ev::parse_xid(body).map_err(|e| self.err(&h, e))?;
                if self.open.is_none() {
                    return Err(self.err(&h, "XID without an open transaction"));
                }
                self.commit(&h, emit)
            }
            types::TABLE_MAP => {
                let map = table_map::parse_table_map(body, &self.fde).map_err(|e| self.err(&h, e))?;
                self.table_map(&h, map)
            }
            code if rows::rows_type(code).is_some() => self.rows(&h, code, body, emit),
            types::TRANSACTION_PAYLOAD => {
                if self.in_payload {
                    return Err(self.err(&h, "nested TRANSACTION_PAYLOAD"));
                }
                let inner = ev::parse_transaction_payload(body, PAYLOAD_LIMIT).map_err(|e| self.err(&h, e))?;
                self.in_payload = true;
                self.payload_end = u64::from(h.log_pos);
                let r = self.feed_payload(&inner, emit);
                self.in_payload = false;
                r?;
                if self.open.is_some() {
                    return Err(self.err(&h, "TRANSACTION_PAYLOAD ended inside its transaction"));
                }
                Ok(())
            }
            types::MARIA_GTID_LIST => {
                let list = ev::parse_maria_gtid_list(body).map_err(|e| self.err(&h, e))?;
                if self.maria_state.is_empty() {
                    for g in list {
                        self.maria_state.update(g);
                    }
                }
                Ok(())
            }
            types::PREVIOUS_GTIDS => {
                if self.mysql_state.is_empty() {
                    if let Ok(set) = parse_previous_gtids(body) {
                        self.mysql_state = set;
                    }
                }
                Ok(())
            }
            types::MARIA_START_ENCRYPTION => Err(self.err(
                &h,
                "the binlog is encrypted (encrypt_binlog=ON); read it through the server (live capture), which decrypts it",
            )),
            types::INCIDENT => Err(self.err(
                &h,
                "the source logged an INCIDENT (it lost events); re-seed the target with drc migrate and restart capture",
            )),
            types::XA_PREPARE => Err(self.err(&h, "XA transactions are not supported yet")),
            // Events that carry no row data: annotations, statement context that
            // row-based logging ignores, checkpoints, heartbeats, group
            // replication bookkeeping, the end of a file.
            types::MARIA_ANNOTATE_ROWS
            | types::ROWS_QUERY
            | types::INTVAR
            | types::RAND
            | types::USER_VAR
            | types::MARIA_BINLOG_CHECKPOINT
            | types::HEARTBEAT
            | types::HEARTBEAT_V2
            | types::STOP
            | types::TRANSACTION_CONTEXT
            | types::VIEW_CHANGE
            | types::IGNORABLE => Ok(()),
            other if h.ignorable() => {
                tracing::warn!(event_type = other, pos = %self.position(), "skipping event the server marked ignorable");
                Ok(())
            }
            other => Err(self.err(&h, format!("unknown event type {other}: this server version writes events DRC does not know"))),
        }
    }

    fn feed_payload(
        &mut self,
        inner: &[u8],
        emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
    ) -> Result<()> {
        let mut rest = inner;
        while !rest.is_empty() {
            let h = EventHeader::parse(rest).map_err(|e| CaptureError::Decode {
                pos: self.position(),
                event: "TRANSACTION_PAYLOAD inner event".into(),
                reason: e.to_string(),
            })?;
            let n = h.event_size as usize;
            if n < event::HEADER_LEN || n > rest.len() {
                return Err(self.err(&h, format!("inner event size {n} does not fit the payload")));
            }
            let (one, tail) = rest.split_at(n);
            self.feed(one, emit)?;
            rest = tail;
        }
        Ok(())
    }

    /// At the start of a transaction (or of a statement outside one): on the
    /// first, sets the history to the schema as of this position; later,
    /// notices when the stream reaches the history's oldest snapshot.
    fn maybe_rewind(&mut self, h: &EventHeader) {
        let start = if self.in_payload {
            self.next_pos
        } else {
            u64::from(h.log_pos).saturating_sub(u64::from(h.event_size))
        };
        let at = BinlogPos::new(self.file.clone(), start);
        if !self.rewound {
            self.rewound = true;
            if let Some(hist) = self.history.as_mut() {
                if let Err(e) = hist.rewind_to(&at) {
                    tracing::info!(error = %e, at = %at, "schema history does not reach back to the start; decoding from the binlog's own column metadata, with the snapshot's schema only where its column names match, until the stream reaches the snapshot");
                    self.history_trusted = false;
                    // Start from the oldest snapshot, so that the DDL recorded
                    // after it replays in order once the stream gets there.
                    if let Some(first) = hist.earliest_position().cloned() {
                        if hist.rewind_to(&first).is_ok() {
                            self.history_from = Some(first);
                        }
                    }
                }
            }
        }
        if self.history_from.as_ref().is_some_and(|from| at >= *from) {
            tracing::info!(at = %at, "reached the schema snapshot; decoding with the schema history again");
            self.history_from = None;
            self.history_trusted = true;
        }
    }

    /// The tables a DDL read before the oldest snapshot touches, for the
    /// filter. The snapshot already shows its result, so it is not applied;
    /// planning it against the snapshot names its tables when that works
    /// (a CREATE of a table dropped later, an ALTER that still fits). `None`
    /// when it does not: the statement's effect cannot be known here.
    fn tables_of_covered_ddl(
        &self,
        at: &BinlogPos,
        db: &str,
        stmt: &str,
    ) -> Option<Vec<(String, String)>> {
        let hist = self.history.as_ref()?;
        match hist.state().plan_ddl(db, stmt) {
            Ok(plan) => Some(plan.effect.named()),
            Err(e) if self.opts.filter.is_empty() => {
                tracing::info!(pos = %at, error = %e, "a DDL older than the schema snapshot does not apply to it (the snapshot already holds its result); passing it on");
                None
            }
            Err(e) => {
                tracing::warn!(pos = %at, error = %e, "a DDL older than the schema snapshot does not apply to it (the snapshot already holds its result), so the tables it touches are unknown; passing it on whatever the table filter says");
                None
            }
        }
    }

    fn new_txn(&self, h: &EventHeader) -> pb::Transaction {
        pb::Transaction {
            position: None,
            commit_ts_us: i64::from(h.timestamp) * 1_000_000,
            server_id: h.server_id,
            origin: String::new(),
            changes: Vec::new(),
            ddl: None,
        }
    }

    fn begin(
        &mut self,
        h: &EventHeader,
        maria: Option<MariaGtid>,
        mysql: Option<MysqlGtid>,
        standalone: bool,
    ) -> Result<()> {
        if self.open.is_some() {
            return Err(self.err(
                h,
                "a new transaction began before the previous one committed",
            ));
        }
        self.maybe_rewind(h);
        let txn = self.new_txn(h);
        self.open = Some(Open {
            builder: TxnBuilder::new(txn, self.opts.spill_threshold, self.opts.spill_dir.clone()),
            standalone,
            began: false,
            maria,
            mysql,
            server_id: h.server_id,
        });
        Ok(())
    }

    fn query(
        &mut self,
        h: &EventHeader,
        q: ev::QueryEvent,
        emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
    ) -> Result<()> {
        // An applier's DDL names its origin in a leading comment.
        let (ddl_origin, stmt) = crate::origin::of_ddl(q.query.trim());
        let stmt = stmt.trim();
        let upper: String = stmt
            .chars()
            .take(24)
            .collect::<String>()
            .to_ascii_uppercase();
        let first = upper
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches(';')
            .to_string();
        match first.as_str() {
            "BEGIN" => {
                if self.open.is_none() {
                    self.begin(h, None, None, false)?;
                }
                if let Some(o) = self.open.as_mut() {
                    o.began = true;
                }
                return Ok(());
            }
            "COMMIT" => {
                if self.open.is_none() {
                    return Err(self.err(h, "COMMIT without an open transaction"));
                }
                return self.commit(h, emit);
            }
            "ROLLBACK" if !upper.contains(" TO ") => {
                // A transaction that mixed non-transactional tables and rolled
                // back: its transactional changes did not happen.
                self.open = None;
                self.committed = self.end_pos(h);
                return Ok(());
            }
            "SAVEPOINT" | "ROLLBACK" | "RELEASE" => return Ok(()),
            "XA" => return Err(self.err(h, "XA transactions are not supported yet")),
            "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" => {
                return Err(self.err(
                    h,
                    "statement-based DML in the binlog: set binlog_format=ROW on the source (and restart its sessions)",
                ))
            }
            _ => {}
        }
        self.maybe_rewind(h);
        // A DDL (or other statement) is its own transaction in the stream.
        let start = u64::from(h.log_pos).saturating_sub(u64::from(h.event_size));
        let at = BinlogPos::new(
            self.file.clone(),
            if self.in_payload {
                self.next_pos
            } else {
                start
            },
        );
        let mut tables: Vec<(String, String)> = Vec::new();
        let mut force_pass = false;
        let covered = self.history_from.as_ref().is_some_and(|from| at < *from);
        if covered {
            // Read again from before the oldest snapshot: the snapshot, taken
            // later, already holds this statement's result; applying it again
            // would fail (ADD COLUMN of a column the table has) or be wrong.
            match self.tables_of_covered_ddl(&at, &q.db, stmt) {
                Some(t) => tables = t,
                None => force_pass = true,
            }
        } else if let Some(hist) = self.history.as_mut() {
            match hist.apply_ddl(&at, &q.db, stmt) {
                Ok(effect) => tables = effect.named(),
                Err(crate::schema::history::SchemaError::UnknownDdl { reason, .. })
                    if self.opts.offline =>
                {
                    tracing::warn!(pos = %at, reason = %reason, "cannot follow a DDL in the file; decoding from binlog metadata only from here on");
                    self.history_trusted = false;
                }
                Err(crate::schema::history::SchemaError::UnknownDdl { reason, .. }) => {
                    return Err(CaptureError::UnknownDdl {
                        pos: at,
                        db: q.db.clone(),
                        statement: stmt.to_string(),
                        reason,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.plans.clear();
        let passes = if force_pass {
            true
        } else if tables.is_empty() {
            self.opts.filter.matches(&q.db, "")
        } else {
            tables.iter().any(|(d, t)| self.opts.filter.matches(d, t))
        };
        let (maria, mysql, server_id, standalone, began) = match self.open.take() {
            Some(o) => (o.maria, o.mysql, o.server_id, o.standalone, o.began),
            None => (None, None, h.server_id, true, false),
        };
        if let Some(g) = maria {
            self.maria_state.update(g);
        }
        if let Some(g) = &mysql {
            self.mysql_state.add(&g.uuid, &g.tag, g.gno);
        }
        let mut txn = self.new_txn(h);
        txn.server_id = server_id;
        txn.origin = ddl_origin.unwrap_or_default();
        txn.ddl = Some(pb::Ddl {
            statement: stmt.to_string(),
            database: q.db.clone(),
        });
        txn.position = Some(self.position_msg(h, maria, mysql.as_ref()));
        if began && !standalone {
            // DDL inside BEGIN … COMMIT (rare): keep the group open for the rest.
            self.open = Some(Open {
                builder: TxnBuilder::new(
                    self.new_txn(h),
                    self.opts.spill_threshold,
                    self.opts.spill_dir.clone(),
                ),
                standalone: false,
                began: true,
                maria: None,
                mysql: None,
                server_id,
            });
        } else {
            self.committed = self.end_pos(h);
        }
        if passes {
            emit(AssembledTxn::in_memory(txn))?;
        }
        Ok(())
    }

    fn end_pos(&self, h: &EventHeader) -> BinlogPos {
        let pos = if self.in_payload {
            self.payload_end
        } else if h.log_pos != 0 {
            u64::from(h.log_pos)
        } else {
            self.next_pos
        };
        BinlogPos::new(self.file.clone(), pos)
    }

    fn position_msg(
        &self,
        h: &EventHeader,
        maria: Option<MariaGtid>,
        mysql: Option<&MysqlGtid>,
    ) -> pb::SourcePosition {
        let end = self.end_pos(h);
        let (gtid, gtid_set) = if let Some(g) = maria {
            (g.to_string(), self.maria_state.to_string())
        } else if let Some(g) = mysql {
            (g.to_string(), self.mysql_state.to_string())
        } else if !self.maria_state.is_empty() {
            (String::new(), self.maria_state.to_string())
        } else {
            (String::new(), self.mysql_state.to_string())
        };
        pb::SourcePosition {
            gtid,
            file: end.file,
            pos: end.pos,
            gtid_set,
        }
    }

    fn commit(
        &mut self,
        h: &EventHeader,
        emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
    ) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if let Some(g) = open.maria {
            self.maria_state.update(g);
        }
        if let Some(g) = &open.mysql {
            self.mysql_state.add(&g.uuid, &g.tag, g.gno);
        }
        let position = self.position_msg(h, open.maria, open.mysql.as_ref());
        self.committed = self.end_pos(h);
        if open.builder.is_empty() {
            return Ok(());
        }
        let mut done = open.builder.finish();
        done.txn.position = Some(position);
        done.txn.commit_ts_us = i64::from(h.timestamp) * 1_000_000;
        done.txn.server_id = open.server_id;
        emit(done)
    }

    fn table_map(&mut self, h: &EventHeader, map: TableMap) -> Result<()> {
        if let Some((old, _)) = self.plans.get(&map.table_id) {
            if *old == map {
                return Ok(());
            }
        }
        let schema = self
            .history
            .as_ref()
            .and_then(|hist| hist.table(&map.db, &map.table))
            .filter(|s| {
                // An untrusted (newer) schema still tells MariaDB's INET6,
                // UUID and JSON apart when its columns are exactly the ones
                // the binlog names.
                self.history_trusted
                    || (map.opt.column_names.len() == s.columns.len()
                        && map
                            .opt
                            .column_names
                            .iter()
                            .zip(&s.columns)
                            .all(|(a, b)| *a == b.name))
            });
        let n = map.column_types.len();
        if map.opt.column_names.len() != n {
            if let Some(s) = schema {
                if s.columns.len() != n {
                    return Err(self.err(
                        h,
                        format!(
                            "schema history has {} columns for {}.{} but the binlog {}: the history is out of step; set binlog_row_metadata=FULL or restart capture from now",
                            s.columns.len(),
                            map.db,
                            map.table,
                            n
                        ),
                    ));
                }
            } else if self.history.is_some()
                && !self.opts.offline
                && self.opts.filter.matches(&map.db, &map.table)
            {
                return Err(self.err(
                    h,
                    format!(
                        "no schema known for {}.{} at this position and the binlog carries no column names: set binlog_row_metadata=FULL, or start the capture from now so a schema snapshot can be taken",
                        map.db, map.table
                    ),
                ));
            }
        }
        let plan = build_plan(&map, schema, &self.opts.collations).map_err(|e| self.err(h, e))?;
        self.plans.insert(map.table_id, (map, Arc::new(plan)));
        Ok(())
    }

    fn rows(
        &mut self,
        h: &EventHeader,
        code: u8,
        body: &[u8],
        emit: &mut dyn FnMut(AssembledTxn) -> Result<()>,
    ) -> Result<()> {
        let ev = rows::parse_rows(code, body, &self.fde).map_err(|e| self.err(h, e))?;
        let Some((_, plan)) = self.plans.get(&ev.header.table_id) else {
            return Err(self.err(
                h,
                format!(
                    "rows event for table id {} without its TABLE_MAP",
                    ev.header.table_id
                ),
            ));
        };
        let plan = Arc::clone(plan);
        if self.open.is_none() {
            // Row events outside BEGIN (old servers, non-transactional engines
            // without GTIDs): the statement is its own transaction.
            self.begin(h, None, None, true)?;
        }
        let wanted = self.opts.filter.is_empty() || self.opts.filter.matches(&plan.db, &plan.table);
        let op = match ev.header.kind {
            RowsKind::Write => pb::Op::Insert,
            RowsKind::Update => pb::Op::Update,
            RowsKind::Delete => pb::Op::Delete,
        };
        let mut count = 0u64;
        let mut err: Option<CaptureError> = None;
        let open = self.open.as_mut();
        let Some(open) = open else {
            return Err(self.err(h, "rows event outside a transaction"));
        };
        let res = ev.decode(&plan, |(before, after)| {
            count += 1;
            // An applier's bookkeeping row marks the whole transaction with
            // its origin, whether or not the filter keeps the row.
            if let Some(origin) =
                crate::origin::of_row(&plan.db, &plan.table, &plan.columns, after.as_ref())
            {
                open.builder.txn.origin = origin;
            }
            if !wanted {
                return Ok(());
            }
            let change = pb::RowChange {
                op: op as i32,
                schema: plan.db.clone(),
                table: plan.table.clone(),
                columns: plan.columns.clone(),
                primary_key: plan.primary_key.clone(),
                before,
                after,
            };
            open.builder.push(change);
            Ok(())
        });
        if wanted {
            // Decoded changes take roughly four times their binlog bytes.
            if let Err(e) = open.builder.add_bytes(body.len() * 4) {
                err = Some(e);
            }
        }
        self.rows_decoded += count;
        if let Some(e) = err {
            return Err(e);
        }
        res.map_err(|e| self.err(h, e))?;
        let implicit_stmt_end = ev.header.flags & 1 != 0
            && self.open.as_ref().is_some_and(|o| {
                o.standalone && !o.began && o.maria.is_none() && o.mysql.is_none()
            });
        if implicit_stmt_end {
            self.commit(h, emit)?;
        }
        Ok(())
    }
}

/// PREVIOUS_GTIDS body: the executed set before this file (untagged format).
fn parse_previous_gtids(body: &[u8]) -> std::result::Result<MysqlGtidSet, String> {
    let mut c = crate::binlog::cursor::Cursor::new(body);
    let e = |x: crate::binlog::cursor::Short| x.to_string();
    let n = c.u64("sid count").map_err(e)?;
    let mut set = MysqlGtidSet::default();
    for _ in 0..n.min(1 << 16) {
        let sid = ev::format_uuid(c.take(16, "sid").map_err(e)?);
        let k = c.u64("interval count").map_err(e)?;
        for _ in 0..k.min(1 << 20) {
            let a = c.u64("interval start").map_err(e)?;
            let b = c.u64("interval end").map_err(e)?;
            if a >= 1 && b > a {
                // Add endpoints; `add` merges adjacent numbers, so add the range piecewise.
                let ivs = set.0.entry((sid.clone(), String::new())).or_default();
                ivs.push((a, b - 1));
            }
        }
    }
    Ok(set)
}
