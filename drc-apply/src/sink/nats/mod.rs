//! The NATS JetStream sink: publishes every row change of a stream as a
//! Debezium-compatible JSON message (see [`envelope`]) into a JetStream
//! stream, one subject per table, with the checkpoint in a JetStream
//! key-value bucket (see [`checkpoint`]).
//!
//! # Subjects
//!
//! Row changes go to `subject` (default `drc.{stream}.{db}.{table}`), DDL
//! schema-change messages to `ddl_subject` (default `drc.{stream}._schema`),
//! a TRUNCATE also as an `op: "t"` message on its table's subject. Each
//! placeholder is one subject token: bytes other than `A-Z a-z 0-9 _ -`
//! are written `%XX`, so stream `a.shop`, table `orders` is
//! `drc.a%2Eshop.shop.orders` (see [`subject`]). The JetStream stream
//! (default `DRC_{stream}`, e.g. `DRC_a_shop`, subjects `drc.{stream}.>`)
//! and the bucket (default `drc_checkpoints`) are created when missing;
//! an existing stream must cover every subject the sink publishes to and
//! have a duplicate window, or the sink stops with an error saying so.
//!
//! # Delivery
//!
//! **At-least-once with stable message ids; in practice each message is
//! stored once, in order.**
//!
//! - Every message carries `Nats-Msg-Id: <stream>:<offset>:<index>`
//!   (`index` counts the messages of one source transaction from 0). The
//!   same change always gets the same id and the same bytes, so JetStream's
//!   duplicate window (`duplicate_window_secs`) drops a repeat published
//!   within it, and a consumer can drop any repeat by its id: ids only grow
//!   within a stream, so remembering the highest `(offset, index)` per
//!   stream is enough.
//! - A batch's publishes are pipelined (up to `max_in_flight` awaiting
//!   their acks) and **the checkpoint in the bucket is written only after
//!   every publish of the batch is acknowledged** by JetStream (stored, and
//!   replicated when the stream has replicas). A crash between the acks and
//!   the checkpoint makes the applier deliver the batch again.
//! - So that such a batch is not stored twice even past the duplicate
//!   window, the sink reads the last message of its JetStream stream at
//!   start (and after every error) and skips every message up to that
//!   message's id.
//! - Each publish says which sequence it expects to follow
//!   (`Nats-Expected-Last-Sequence`): a message lost on a broken connection
//!   makes every later one of the batch fail instead of landing after a gap
//!   or out of order; the sink then starts again from JetStream's last
//!   message. This is why **one JetStream stream holds one DRC stream and
//!   one writer**: the sink refuses a stream whose last message is not its
//!   own.
//!
//! Guarantees: `atomic = false` (a reader may see part of a batch),
//! `durable = true` (returns after JetStream's acks), `idempotent = true`.
//! Durable in JetStream's sense: a message is acknowledged once the stream
//! (and its replicas) took it; how often a single server fsyncs is the
//! server's `sync_interval`.
//!
//! # Errors
//!
//! A broker that cannot be reached, a lost connection, a timed-out ack or
//! an unexpected sequence are [`ApplyError::Transient`]: the applier
//! retries from the checkpoint. A missing stream (with `create = false`), a
//! stream that does not cover a subject, has no duplicate window or holds
//! another writer's messages, and a message larger than the server's
//! `max_payload` are [`ApplyError::Definite`] (with the offset where one is
//! known) and name the fix.
//!
//! Files: `config.rs` (settings), `subject.rs` (templates, escaping),
//! `envelope.rs` (the JSON messages), `checkpoint.rs` (the bucket).

pub mod checkpoint;
pub mod config;
pub mod envelope;
pub mod subject;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, kv, stream};
use async_nats::HeaderMap;

pub use config::NatsSinkConfig;
use envelope::{Place, Planned};
use subject::Template;

use crate::error::{ApplyError, Result};
use crate::sink::{Batch, Checkpoint, Sink, SinkGuarantees};

/// The sink's name in logs and errors.
pub const SINK_NAME: &str = "nats";

/// Bytes allowed for the headers of one message when checking it against
/// the server's `max_payload` (the id and the expected sequence).
const HEADER_ALLOWANCE: usize = 128;

/// Publishes a stream into NATS JetStream; see the module docs.
pub struct NatsSink {
    config: NatsSinkConfig,
    subject: Template,
    ddl_subject: Template,
    client: Option<async_nats::Client>,
    /// What the sink knows of its stream; `None` until loaded and after any
    /// error or cancelled call (then loaded again from JetStream).
    state: Option<State>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may name secrets' sources; keep it out of logs.
        f.debug_struct("NatsSink")
            .field("connected", &self.client.is_some())
            .field("stream", &self.state.as_ref().map(|s| s.stream.clone()))
            .finish_non_exhaustive()
    }
}

struct State {
    /// The DRC stream.
    stream: String,
    js: jetstream::Context,
    /// The JetStream stream's name and subject filters.
    js_stream: String,
    filters: Vec<String>,
    kv: kv::Store,
    checkpoint: Checkpoint,
    /// JetStream's last sequence: the next publish expects it.
    last_seq: u64,
    /// `(offset, index)` of the last message JetStream holds for the stream.
    last_id: Option<(u64, usize)>,
    /// Subjects already checked against `filters`.
    covered: HashSet<String>,
    max_payload: usize,
}

fn transient(message: String) -> ApplyError {
    ApplyError::Transient {
        sink: SINK_NAME.into(),
        message,
    }
}

fn definite(offset: u64, message: String) -> ApplyError {
    ApplyError::Definite {
        sink: SINK_NAME.into(),
        offset,
        message,
    }
}

impl NatsSink {
    /// Checks the config; connects on first use.
    pub fn new(config: NatsSinkConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            subject: config.subject_template()?,
            ddl_subject: config.ddl_subject_template()?,
            config,
            client: None,
            state: None,
            buf: Vec::new(),
        })
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &NatsSinkConfig {
        &self.config
    }

    /// The JetStream stream a DRC stream is published into.
    pub fn jetstream_stream(&self, stream: &str) -> String {
        subject::stream_name(&self.config.jetstream_stream, stream)
    }

    /// The subject of row changes of `db.table` in `stream`.
    pub fn subject_for(&self, stream: &str, db: &str, table: &str) -> String {
        self.subject.render(stream, db, table)
    }

    async fn client(&mut self) -> Result<async_nats::Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = &self.config;
        let mut opts = async_nats::ConnectOptions::new()
            .name("drc-apply")
            .connection_timeout(c.connect_timeout())
            .request_timeout(Some(c.ack_timeout()))
            .require_tls(c.require_tls);
        if let Some(path) = &c.credentials_file {
            opts = opts.credentials_file(path).await.map_err(|e| {
                ApplyError::Config(format!(
                    "sink.credentials_file {}: {e}; name a NATS .creds file",
                    path.display()
                ))
            })?;
        }
        if let (Some(user), Some(var)) = (&c.user, &c.password_env) {
            let pass = std::env::var(var).map_err(|_| {
                ApplyError::Config(format!(
                    "sink.password_env: environment variable {var} is not set; export the password of {user:?} in it"
                ))
            })?;
            opts = opts.user_and_password(user.clone(), pass);
        }
        if let Some(var) = &c.token_env {
            let token = std::env::var(var).map_err(|_| {
                ApplyError::Config(format!(
                    "sink.token_env: environment variable {var} is not set; export the token in it"
                ))
            })?;
            opts = opts.token(token);
        }
        if let Some(ca) = &c.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&c.tls_cert_file, &c.tls_key_file) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let client = opts.connect(c.url.as_str()).await.map_err(|e| {
            use async_nats::ConnectErrorKind as K;
            match e.kind() {
                K::ServerParse => ApplyError::Config(format!(
                    "sink.url = {:?}: {e}; write nats://HOST:PORT",
                    c.url
                )),
                K::Authentication | K::AuthorizationViolation => ApplyError::Config(format!(
                    "NATS at {} refused the credentials: {e}; check sink.credentials_file, user/password_env or token_env",
                    c.url
                )),
                _ => transient(format!("connect to {}: {e}", c.url)),
            }
        })?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Connects, makes sure the JetStream stream and the bucket exist and
    /// fit, and reads the checkpoint and JetStream's last message.
    async fn load(&mut self, stream: &str) -> Result<State> {
        if !checkpoint::valid_key(stream) {
            return Err(ApplyError::Config(format!(
                "stream {stream:?} is not a valid key of the checkpoint bucket (no dot at either end, no two dots in a row); rename the stream"
            )));
        }
        let client = self.client().await?;
        let c = &self.config;
        let js = jetstream::ContextBuilder::new()
            .timeout(c.ack_timeout())
            .max_ack_inflight(c.max_in_flight.saturating_mul(2))
            .backpressure_on_inflight(true)
            .build(client.clone());
        let js_stream = self.jetstream_stream(stream);
        let info = self.ensure_stream(&js, &js_stream, stream).await?;
        if info.config.duplicate_window.is_zero() {
            return Err(definite(
                0,
                format!(
                    "JetStream stream {js_stream} has no duplicate window, so repeats are not dropped; set duplicate_window (e.g. `nats stream edit {js_stream} --dupe-window 2m`)"
                ),
            ));
        }
        let kv = self.ensure_bucket(&js).await?;
        let cp = checkpoint::read(&kv, &c.kv_bucket, stream).await?;
        let last_seq = info.state.last_sequence;
        let last_id = self
            .last_message_id(&js, &js_stream, stream, last_seq)
            .await?;
        tracing::info!(
            stream,
            jetstream_stream = %js_stream,
            checkpoint = cp.offset,
            last_sequence = last_seq,
            last_offset = last_id.map_or(0, |(o, _)| o),
            "nats sink ready"
        );
        Ok(State {
            stream: stream.into(),
            js,
            js_stream,
            filters: info.config.subjects.clone(),
            kv,
            checkpoint: cp,
            last_seq,
            last_id,
            covered: HashSet::new(),
            max_payload: client.server_info().max_payload,
        })
    }

    async fn ensure_stream(
        &self,
        js: &jetstream::Context,
        name: &str,
        drc_stream: &str,
    ) -> Result<stream::Info> {
        let c = &self.config;
        match js.get_stream(name).await {
            Ok(mut s) => {
                return s
                    .info()
                    .await
                    .cloned()
                    .map_err(|e| transient(format!("read JetStream stream {name}: {e}")))
            }
            Err(e) => {
                let missing = matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                );
                if !missing {
                    return Err(transient(format!("look up JetStream stream {name}: {e}")));
                }
                if !c.create {
                    return Err(definite(
                        0,
                        format!(
                            "JetStream stream {name} does not exist and sink.create is false; create it (subjects {:?}) or set create = true",
                            self.stream_subjects(drc_stream)
                        ),
                    ));
                }
            }
        }
        let config = stream::Config {
            name: name.into(),
            description: Some(format!("DRC stream {drc_stream}")),
            subjects: self.stream_subjects(drc_stream),
            duplicate_window: Duration::from_secs(c.duplicate_window_secs),
            num_replicas: c.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let mut s = js.create_stream(config).await.map_err(|e| {
            use jetstream::context::CreateStreamErrorKind as K;
            match e.kind() {
                K::JetStream(_) => definite(
                    0,
                    format!(
                        "create JetStream stream {name}: {e}; fix sink.jetstream_subjects (they may overlap another stream's) or create the stream yourself"
                    ),
                ),
                _ => transient(format!("create JetStream stream {name}: {e}")),
            }
        })?;
        tracing::info!(jetstream_stream = %name, "nats sink: created the JetStream stream");
        s.info()
            .await
            .cloned()
            .map_err(|e| transient(format!("read JetStream stream {name}: {e}")))
    }

    fn stream_subjects(&self, drc_stream: &str) -> Vec<String> {
        self.config
            .jetstream_subjects
            .iter()
            .map(|s| s.replace("{stream}", &subject::escape_token(drc_stream)))
            .collect()
    }

    async fn ensure_bucket(&self, js: &jetstream::Context) -> Result<kv::Store> {
        let c = &self.config;
        let bucket = c.kv_bucket.as_str();
        if let Ok(store) = js.get_key_value(bucket).await {
            return Ok(store);
        }
        if !c.create {
            return Err(definite(
                0,
                format!(
                    "key-value bucket {bucket} cannot be opened and sink.create is false; create it (`nats kv add {bucket}`) or set create = true"
                ),
            ));
        }
        // The bucket's backing stream, made as the key-value layout asks
        // (one value per key, rollups, direct gets). Made directly rather
        // than with the client's bucket call, which first reads account
        // details in a form servers before 2.10 do not send.
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("DRC apply checkpoints".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: c.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| transient(format!("create key-value bucket {bucket}: {e}")))?;
        js.get_key_value(bucket)
            .await
            .map_err(|e| transient(format!("open key-value bucket {bucket}: {e}")))
    }

    /// `(offset, index)` of the message at `last_seq`, when it is one of
    /// this stream's; an error when it is anyone else's.
    async fn last_message_id(
        &self,
        js: &jetstream::Context,
        js_stream: &str,
        stream: &str,
        last_seq: u64,
    ) -> Result<Option<(u64, usize)>> {
        if last_seq == 0 {
            return Ok(None);
        }
        let s = js
            .get_stream_no_info(js_stream)
            .await
            .map_err(|e| transient(format!("open JetStream stream {js_stream}: {e}")))?;
        let msg = match s.get_raw_message(last_seq).await {
            Ok(m) => m,
            Err(e) => {
                use jetstream::stream::RawMessageErrorKind as K;
                if matches!(e.kind(), K::NoMessageFound) {
                    // Purged or removed by a limit: nothing to skip by, the
                    // duplicate window still drops recent repeats.
                    tracing::warn!(
                        jetstream_stream = %js_stream,
                        last_sequence = last_seq,
                        "nats sink: the stream's last message is gone; repeats are dropped only within the duplicate window"
                    );
                    return Ok(None);
                }
                return Err(transient(format!(
                    "read message {last_seq} of JetStream stream {js_stream}: {e}"
                )));
            }
        };
        let id = msg
            .headers
            .get(NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        match envelope::parse_message_id(&id) {
            Some((s, offset, index)) if s == stream => Ok(Some((offset, index))),
            _ => Err(definite(
                0,
                format!(
                    "JetStream stream {js_stream} ends with a message that DRC stream {stream} did not write (subject {}, id {id:?}); give each DRC stream its own JetStream stream (sink.jetstream_stream)",
                    msg.subject
                ),
            )),
        }
    }

    /// The state for `stream`, loaded when missing or for another stream.
    async fn state_for(&mut self, stream: &str) -> Result<State> {
        match self.state.take() {
            Some(s) if s.stream == stream => Ok(s),
            _ => self.load(stream).await,
        }
    }

    async fn publish_batch(&mut self, st: &mut State, batch: &Batch) -> Result<()> {
        if batch.offsets.len() != batch.transactions.len() {
            return Err(definite(
                batch.offsets.first().copied().unwrap_or(batch.last_offset),
                format!(
                    "malformed batch: {} offsets for {} transactions",
                    batch.offsets.len(),
                    batch.transactions.len()
                ),
            ));
        }
        let mut pending: VecDeque<(PublishAckFuture, u64, u64)> = VecDeque::new();
        let mut expected = st.last_seq;
        let mut last_published: Option<(u64, usize)> = None;
        let mut buf = std::mem::take(&mut self.buf);
        for (&offset, txn) in batch.offsets.iter().zip(&batch.transactions) {
            if offset <= st.checkpoint.offset {
                continue;
            }
            let planned = envelope::plan(txn);
            let count = planned.len();
            let mut per_table: HashMap<(&str, &str), usize> = HashMap::new();
            for (index, p) in planned.iter().enumerate() {
                let (db, table): (&str, &str) = match p {
                    Planned::Row(i) => {
                        let c = &txn.changes[*i];
                        (&c.schema, &c.table)
                    }
                    Planned::Truncate(db, t) => (db, t),
                    Planned::Ddl => (txn.ddl.as_ref().map_or("", |d| d.database.as_str()), ""),
                };
                let order = per_table.entry((db, table)).or_insert(0);
                *order += 1;
                if st.last_id.is_some_and(|last| (offset, index) <= last) {
                    // JetStream holds it already (a batch delivered again).
                    continue;
                }
                let place = Place {
                    stream: &st.stream,
                    offset,
                    index,
                    table_order: *order,
                    count,
                };
                buf.clear();
                let subject = match p {
                    Planned::Row(i) => {
                        let c = &txn.changes[*i];
                        let Some(op) = envelope::op_code(c) else {
                            return Err(definite(
                                offset,
                                format!(
                                    "row change {index} on {}.{} has unknown operation {}; the stream is damaged or newer than this applier",
                                    c.schema, c.table, c.op
                                ),
                            ));
                        };
                        envelope::row_change(&mut buf, place, txn, c, op);
                        self.subject.render(&st.stream, db, table)
                    }
                    Planned::Truncate(..) => {
                        envelope::truncate(&mut buf, place, txn, db, table);
                        self.subject.render(&st.stream, db, table)
                    }
                    Planned::Ddl => {
                        let Some(ddl) = txn.ddl.as_ref() else {
                            continue;
                        };
                        envelope::schema_change(&mut buf, place, txn, ddl);
                        self.ddl_subject.render(&st.stream, db, "")
                    }
                };
                check_covered(st, &subject, offset)?;
                let id = envelope::message_id(&st.stream, offset, index);
                if buf.len() + id.len() + HEADER_ALLOWANCE > st.max_payload {
                    return Err(definite(
                        offset,
                        format!(
                            "message {id} ({}) is {} bytes, over the server's max_payload of {} bytes; raise max_payload in the nats-server config (at most 64 MiB) or exclude the table from this pipeline",
                            what(p, db, table),
                            buf.len(),
                            st.max_payload
                        ),
                    ));
                }
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, id.as_str());
                headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
                let payload = bytes::Bytes::copy_from_slice(&buf);
                let ack = st
                    .js
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|e| publish_error(&e, offset, &id))?;
                expected += 1;
                pending.push_back((ack, offset, expected));
                last_published = Some((offset, index));
                if pending.len() >= self.config.max_in_flight {
                    if let Some(p) = pending.pop_front() {
                        await_ack(st, p).await?;
                    }
                }
            }
        }
        self.buf = buf;
        while let Some(p) = pending.pop_front() {
            await_ack(st, p).await?;
        }
        if last_published.is_some() {
            st.last_id = last_published;
        }
        let next = Checkpoint {
            stream: batch.stream.clone(),
            offset: batch.last_offset,
            position: batch
                .transactions
                .last()
                .and_then(|t| t.position.clone())
                .or_else(|| st.checkpoint.position.clone()),
        };
        checkpoint::write(
            &st.kv,
            &self.config.kv_bucket,
            &next,
            &st.js_stream,
            st.last_seq,
        )
        .await?;
        st.checkpoint = next;
        Ok(())
    }
}

fn what(p: &Planned, db: &str, table: &str) -> String {
    match p {
        Planned::Row(_) => format!("a row of {db}.{table}"),
        Planned::Truncate(..) => format!("the truncate of {db}.{table}"),
        Planned::Ddl => "a DDL statement".into(),
    }
}

/// Checks once per subject that the JetStream stream takes `subject`.
fn check_covered(st: &mut State, subject: &str, offset: u64) -> Result<()> {
    if st.covered.contains(subject) {
        return Ok(());
    }
    if !st.filters.iter().any(|f| subject::matches(f, subject)) {
        return Err(definite(
            offset,
            format!(
                "subject {subject} is not among the subjects of JetStream stream {} ({:?}); add it to the stream's subjects or change sink.subject / sink.ddl_subject",
                st.js_stream, st.filters
            ),
        ));
    }
    st.covered.insert(subject.to_owned());
    Ok(())
}

/// Waits for one ack and checks it is the sequence the sink expected.
async fn await_ack(
    st: &mut State,
    (ack, offset, want_seq): (PublishAckFuture, u64, u64),
) -> Result<()> {
    let ack = ack
        .await
        .map_err(|e| publish_error(&e, offset, &format!("at offset {offset}")))?;
    if ack.duplicate {
        // Stored before (a publish racing a previous run); the sequences the
        // later publishes expect are then off by one, and they fail with a
        // wrong-sequence error that restarts from JetStream's last message.
        tracing::debug!(
            offset,
            sequence = ack.sequence,
            "nats sink: duplicate dropped by JetStream"
        );
    } else if ack.sequence != want_seq {
        return Err(transient(format!(
            "JetStream stored offset {offset} at sequence {} instead of {want_seq}; another writer? resuming from the stream's last message",
            ack.sequence
        )));
    } else {
        st.last_seq = ack.sequence;
    }
    Ok(())
}

fn publish_error(
    e: &async_nats::jetstream::context::PublishError,
    offset: u64,
    what: &str,
) -> ApplyError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => definite(
            offset,
            format!("publish {what}: {e}; raise max_payload in the nats-server config or exclude the table"),
        ),
        PublishErrorKind::WrongLastSequence => transient(format!(
            "publish {what}: JetStream's last sequence is not the one expected (a lost publish or another writer); resuming from the stream's last message"
        )),
        PublishErrorKind::Other => {
            // A JetStream API error: 4xx is a refusal of this message,
            // anything else (503: no quorum, storage trouble) may pass.
            let code = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
                .map(|j| j.code());
            match code {
                Some(c) if (400..500).contains(&c) => definite(offset, format!("publish {what}: {e}")),
                _ => transient(format!("publish {what}: {e}")),
            }
        }
        _ => transient(format!("publish {what}: {e}")),
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    fn guarantees(&self) -> SinkGuarantees {
        SinkGuarantees {
            atomic: false,
            durable: true,
            idempotent: true,
        }
    }

    async fn checkpoint(&mut self, stream: &str) -> Result<Checkpoint> {
        // Always from JetStream: the applier asks after every failure.
        self.state = None;
        let st = self.load(stream).await?;
        let cp = st.checkpoint.clone();
        self.state = Some(st);
        Ok(cp)
    }

    async fn apply(&mut self, batch: &Batch) -> Result<()> {
        // Taken out for the call: after an error or a cancelled call the
        // next one reloads what JetStream holds.
        let mut st = self.state_for(&batch.stream).await?;
        if batch.last_offset <= st.checkpoint.offset {
            self.state = Some(st);
            return Ok(());
        }
        self.publish_batch(&mut st, batch).await?;
        self.state = Some(st);
        Ok(())
    }
}
