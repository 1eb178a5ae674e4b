//! The relay's gRPC server: Publish, Subscribe, Confirm and Status over the
//! streams of a [`Registry`], and the listener that serves them.
//!
//! What it guarantees:
//! - **Durable before acknowledged.** A publish ack is sent after the log's
//!   fsync; the first ack of a Publish call tells the capture where to resume.
//! - **Bounded memory per subscriber.** A subscription reads its log lazily:
//!   a batch is built only when the transport asks for the next message, which
//!   HTTP/2 flow control allows only while the subscriber keeps reading. So a
//!   subscriber holds at most one batch (plus one carried-over record) on the
//!   relay, however far behind it is; the backlog stays on disk.
//! - **Bad input is an error status, never a crash.** Oversized messages are
//!   refused by the decode limit, malformed ones by the decoders, bad names,
//!   offsets and filters with a message that says what to fix.
//!
//! Shutdown: streams end with UNAVAILABLE, connections get a GOAWAY; those
//! still open after the grace period are closed, the replication tasks are
//! awaited and every log is closed, so the data directory can be reopened at
//! once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drc_log::{LogReader, Offset};
use drc_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::batch::{BatchBuilder, Encoding};
use crate::config::{self, RelayConfig};
use crate::error::{RelayError, Result};
use crate::filter::{Filter, Verdict};
use crate::net::{self, Address, Listener, OpenConns};
use crate::registry::{check_stream_name, Registry};
use crate::replicate;
use crate::stream::{log_error, LiveGuard, Stream};

/// Acks queued for a publisher before the relay stops reading its requests.
const PUBLISH_ACK_QUEUE: usize = 4;

/// Counters of a running server (for tests and status).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Subscriptions being served now.
    pub subscriptions: AtomicU64,
    /// Batches handed to the transport since start. A subscriber that stops
    /// reading stops this count once its flow-control window is full.
    pub batches_sent: AtomicU64,
}

/// Limits and defaults of the service, from the config.
#[derive(Debug, Clone)]
struct Limits {
    max_batch_bytes: usize,
    max_batch_records: usize,
}

/// Keeps the server's `serve` waiting until every task that may hold a log
/// has ended.
#[derive(Clone)]
pub(crate) struct TaskToken(#[allow(dead_code)] mpsc::Sender<()>);

/// The gRPC service.
#[derive(Clone)]
pub struct RelayService {
    registry: Arc<Registry>,
    limits: Limits,
    stop: watch::Receiver<bool>,
    stats: Arc<ServerStats>,
    token: TaskToken,
}

/// Resolves when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl RelayService {
    fn stream(&self, name: &str) -> Result<Arc<Stream>> {
        check_stream_name(name)?;
        self.registry
            .get(name)
            .ok_or_else(|| RelayError::UnknownStream(name.to_string()))
    }
}

fn ack(p: &crate::stream::Published) -> pb::PublishAck {
    pb::PublishAck {
        last_offset: p.last_offset,
        position: p.position.clone(),
        appended: p.appended,
        duplicates: p.duplicates,
    }
}

type BoxStream<T> =
    Pin<Box<dyn futures::Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::relay_server::Relay for RelayService {
    type PublishStream = ReceiverStream<std::result::Result<pb::PublishAck, Status>>;

    async fn publish(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> std::result::Result<Response<Self::PublishStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("publish: no request; send hello first"))?;
        let hello = first.hello.clone().ok_or_else(|| {
            Status::invalid_argument(
                "publish: the first request must carry hello (stream, capture_id)",
            )
        })?;
        check_stream_name(&hello.stream)?;
        let stream = self.registry.get_or_create(&hello.stream).await?;
        if let crate::stream::Role::Replica { upstream } = stream.role() {
            return Err(RelayError::Precondition(format!(
                "stream {} is a replica of {upstream}; publish to it at its home relay",
                hello.stream
            ))
            .into());
        }
        tracing::info!(stream = %hello.stream, capture = %hello.capture_id, last_offset = stream.last_offset(), "publisher connected");
        let (tx, rx) = mpsc::channel(PUBLISH_ACK_QUEUE);
        let hello_ack = pb::PublishAck {
            last_offset: stream.last_offset(),
            position: stream.last_position(),
            appended: 0,
            duplicates: 0,
        };
        tx.send(Ok(hello_ack))
            .await
            .map_err(|_| Status::cancelled("publisher went away"))?;
        let mut stop = self.stop.clone();
        let token = self.token.clone();
        tokio::spawn(async move {
            let _token = token;
            let mut pending = (!first.transactions.is_empty()).then_some(first);
            loop {
                let req = match pending.take() {
                    Some(r) => r,
                    None => {
                        let next = tokio::select! {
                            m = inbound.message() => m,
                            () = stopped(&mut stop) => {
                                let _ = tx.send(Err(Status::unavailable("relay shutting down"))).await;
                                return;
                            }
                        };
                        match next {
                            Ok(Some(r)) => r,
                            Ok(None) => return,
                            Err(status) => {
                                tracing::debug!(stream = %hello.stream, error = %status, "publisher stream ended");
                                let _ = tx.send(Err(status)).await;
                                return;
                            }
                        }
                    }
                };
                if let Some(h) = &req.hello {
                    if h.stream != hello.stream {
                        let _ = tx
                            .send(Err(Status::invalid_argument(format!(
                                "publish: hello names stream {:?} on a call for {:?}",
                                h.stream, hello.stream
                            ))))
                            .await;
                        return;
                    }
                }
                let answer = stream.publish(req.transactions).await.map(|p| ack(&p));
                let failed = answer.is_err();
                if let Err(e) = &answer {
                    tracing::warn!(stream = %hello.stream, error = %e, "publish refused");
                }
                if tx.send(answer.map_err(Status::from)).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type SubscribeStream = BoxStream<pb::Batch>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        let stream = self.stream(&req.stream)?;
        let filter = Filter::new(&req.include, &req.exclude, &req.exclude_origins)?
            .with_stub_origins(&req.stub_origins);
        let compression = pb::Compression::try_from(req.compression).map_err(|_| {
            Status::invalid_argument(format!("unknown compression {}", req.compression))
        })?;
        let encoding = Encoding::new(compression).map_err(Status::from)?;
        // 0 asks for the oldest record still held.
        let from = match req.from_offset {
            0 => stream.log().first_offset(),
            n => Offset(n),
        };
        let reader = stream
            .log()
            .reader(from)
            .map_err(|e| log_error(&req.stream, e))?;
        let live = if req.subscriber.is_empty() {
            None
        } else {
            stream
                .log()
                .register_subscriber(&req.subscriber)
                .await
                .map_err(|e| log_error(&req.stream, e))?;
            Some(stream.attach(&req.subscriber))
        };
        let max_batch_bytes = match req.max_batch_bytes {
            0 => self.limits.max_batch_bytes,
            n => (n as usize).min(self.limits.max_batch_bytes),
        };
        tracing::info!(stream = %req.stream, subscriber = %req.subscriber, from = req.from_offset, "subscriber connected");
        self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        let sub = Subscription {
            stream,
            reader,
            pending: None,
            filter,
            encoding,
            max_batch_bytes,
            max_batch_records: self.limits.max_batch_records,
            stop: self.stop.clone(),
            live,
            stats: self.stats.clone(),
            done: false,
            _token: self.token.clone(),
        };
        Ok(Response::new(Box::pin(sub.into_stream())))
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> std::result::Result<Response<pb::ConfirmResponse>, Status> {
        let req = request.into_inner();
        let stream = self.stream(&req.stream)?;
        if req.subscriber.is_empty() {
            return Err(Status::invalid_argument(
                "confirm: subscriber is empty; name the subscriber",
            ));
        }
        let log = stream.log();
        if !log.subscribers().iter().any(|(n, _)| *n == req.subscriber) {
            log.register_subscriber(&req.subscriber)
                .await
                .map_err(|e| log_error(&req.stream, e))?;
        }
        log.confirm(&req.subscriber, Offset(req.offset))
            .map_err(|e| log_error(&req.stream, e))?;
        Ok(Response::new(pb::ConfirmResponse {}))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusResponse>, Status> {
        let req = request.into_inner();
        let streams = if req.stream.is_empty() {
            self.registry.list()
        } else {
            vec![self.stream(&req.stream)?]
        };
        let streams = streams
            .iter()
            .map(|s| {
                let log = s.log();
                let last = s.last_offset();
                pb::StreamStatus {
                    name: s.name().to_string(),
                    first_offset: if last == 0 { 0 } else { log.first_offset().0 },
                    last_offset: last,
                    size_bytes: log.size_bytes(),
                    last_position: s.last_position(),
                    role: s.role().name().to_string(),
                    last_commit_ts_us: s.last_commit_ts_us(),
                    subscribers: s
                        .subscribers()
                        .into_iter()
                        .map(|i| pb::SubscriberStatus {
                            name: i.name,
                            confirmed_offset: i.confirmed,
                            sent_offset: i.sent,
                            connected: i.connected,
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::StatusResponse { streams }))
    }
}

/// One subscription: reads its log only when the transport wants the next
/// batch.
struct Subscription {
    stream: Arc<Stream>,
    reader: LogReader,
    /// A record read but left for the next batch (it would have made this
    /// one too large).
    pending: Option<(Offset, Bytes)>,
    filter: Filter,
    encoding: Encoding,
    max_batch_bytes: usize,
    max_batch_records: usize,
    stop: watch::Receiver<bool>,
    live: Option<LiveGuard>,
    stats: Arc<ServerStats>,
    done: bool,
    _token: TaskToken,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Subscription {
    fn into_stream(
        self,
    ) -> impl futures::Stream<Item = std::result::Result<pb::Batch, Status>> + Send + 'static {
        futures::stream::unfold(self, |mut sub| async move {
            if sub.done {
                return None;
            }
            match sub.next_batch().await {
                Ok(batch) => {
                    sub.stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                    Some((Ok(batch), sub))
                }
                Err(e) => {
                    sub.done = true;
                    if !matches!(e, RelayError::Shutdown) {
                        tracing::warn!(stream = %sub.stream.name(), error = %e, "subscription failed");
                    }
                    let status = match e {
                        RelayError::Shutdown => Status::unavailable("relay shutting down"),
                        other => Status::from(other),
                    };
                    Some((Err(status), sub))
                }
            }
        })
    }

    async fn next_batch(&mut self) -> Result<pb::Batch> {
        let name = self.stream.name().to_string();
        let first = match self.pending.take() {
            Some(r) => r,
            None => {
                let mut stop = self.stop.clone();
                tokio::select! {
                    r = self.reader.next() => r.map_err(|e| log_error(&name, e))?,
                    () = stopped(&mut stop) => return Err(RelayError::Shutdown),
                }
            }
        };
        let mut b = BatchBuilder::new(first.0 .0);
        let mut scanned = first.1.len();
        self.add(&mut b, first)?;
        while (b.count() as usize) < self.max_batch_records && scanned < self.max_batch_bytes {
            match self.reader.try_next().map_err(|e| log_error(&name, e))? {
                None => break,
                Some((o, rec)) => {
                    if scanned + rec.len() > self.max_batch_bytes {
                        self.pending = Some((o, rec));
                        break;
                    }
                    scanned += rec.len();
                    self.add(&mut b, (o, rec))?;
                }
            }
        }
        let end = b.next_offset() - 1;
        let last = self.stream.last_offset();
        let batch = if matches!(self.encoding, Encoding::None) {
            b.finish(&mut self.encoding, last)?
        } else {
            // Compression off the async threads; a streaming encoder goes
            // with it and comes back for the next batch.
            let mut encoding = std::mem::take(&mut self.encoding);
            let (encoding, batch) = tokio::task::spawn_blocking(move || {
                let batch = b.finish(&mut encoding, last);
                (encoding, batch)
            })
            .await
            .map_err(|e| RelayError::Corrupt(format!("compression task: {e}")))?;
            self.encoding = encoding;
            batch?
        };
        if let Some(l) = &self.live {
            l.sent(end);
        }
        Ok(batch)
    }

    fn add(&self, b: &mut BatchBuilder, (o, rec): (Offset, Bytes)) -> Result<()> {
        if o.0 != b.next_offset() {
            return Err(RelayError::Log {
                stream: self.stream.name().to_string(),
                message: format!("reader returned offset {o}, expected {}", b.next_offset()),
                transient: false,
            });
        }
        match self.filter.apply(&rec) {
            Ok(Verdict::Deliver(bytes)) => b.push(o.0, bytes),
            Ok(Verdict::Skip) => b.skip(o.0),
            Err(e) => {
                return Err(RelayError::Log {
                    stream: self.stream.name().to_string(),
                    message: format!("record at offset {o}: {e}"),
                    transient: false,
                })
            }
        }
        Ok(())
    }
}

/// A relay bound to its address, ready to serve.
pub struct RelayServer {
    config: RelayConfig,
    listener: Listener,
    local: Address,
    registry: Arc<Registry>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stats: Arc<ServerStats>,
    conns: OpenConns,
    grace: Duration,
}

impl RelayServer {
    /// Validates the config, loads TLS, opens the logs and binds the port.
    pub async fn bind(config: RelayConfig) -> Result<Self> {
        let addr = config.validate()?;
        let tls = match &config.tls {
            Some(t) => Some(net::acceptor(t.server_config()?)),
            None => None,
        };
        let replicas: HashMap<String, String> = config
            .upstreams
            .iter()
            .flat_map(|u| u.streams.iter().map(move |s| (s.clone(), u.url.clone())))
            .collect();
        let registry = Registry::open(
            &config.data_dir,
            config.log_config(),
            &config.streams,
            replicas,
        )
        .await?;
        let listener = Listener::bind(&addr).await?;
        let local = listener.local_address()?;
        tracing::info!(address = ?local, tls = tls.is_some(), "relay listening");
        Ok(Self {
            config,
            listener,
            local,
            registry,
            tls,
            stats: Arc::new(ServerStats::default()),
            conns: OpenConns::default(),
            grace: config::DEFAULT_SHUTDOWN_GRACE,
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// The bound TCP address, if it is TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.local {
            Address::Tcp(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The streams.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Counters of this server.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> OpenConns {
        self.conns.clone()
    }

    /// How long shutdown waits before closing connections that are still
    /// open (default [`config::DEFAULT_SHUTDOWN_GRACE`]).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serves until `shutdown` resolves, then stops as the module docs say.
    /// Also runs the replication of every configured upstream.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let RelayServer {
            config,
            listener,
            registry,
            tls,
            stats,
            conns,
            grace,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (token_tx, mut token_rx) = mpsc::channel::<()>(1);
        let token = TaskToken(token_tx);
        let service = RelayService {
            registry: registry.clone(),
            limits: Limits {
                max_batch_bytes: config.max_batch_bytes,
                max_batch_records: config.max_batch_records,
            },
            stop: stop_rx.clone(),
            stats,
            token: token.clone(),
        };
        let replication = replicate::spawn(
            registry.clone(),
            &config.upstreams,
            config.max_message_bytes,
            stop_rx.clone(),
            token.clone(),
        )?;
        drop(token);
        let grpc = pb::relay_server::RelayServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes.saturating_add(1 << 20));
        let (incoming, accept_task) = listener.incoming(tls, conns.clone());
        let signal = {
            let mut stop = stop_rx.clone();
            async move { stopped(&mut stop).await }
        };
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(config::HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(config::HTTP2_KEEPALIVE_TIMEOUT))
            .add_service(grpc)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), signal);
        let mut serving = tokio::spawn(server);
        tokio::pin!(shutdown);
        let early = tokio::select! {
            r = &mut serving => Some(r),
            () = &mut shutdown => None,
        };
        let _ = stop_tx.send(true);
        let result = match early {
            Some(r) => flatten(r),
            None => match tokio::time::timeout(grace, &mut serving).await {
                Ok(r) => flatten(r),
                Err(_) => {
                    tracing::info!(
                        open = conns.len(),
                        "closing connections still open after the grace period"
                    );
                    conns.close_all();
                    match tokio::time::timeout(grace, &mut serving).await {
                        Ok(r) => flatten(r),
                        Err(_) => {
                            serving.abort();
                            Ok(())
                        }
                    }
                }
            },
        };
        accept_task.abort();
        let _ = accept_task.await;
        conns.close_all();
        for r in replication {
            if let Ok(Err(e)) = r.await {
                tracing::warn!(error = %e, "replication ended with an error");
            }
        }
        // Every task that may hold a stream has ended once the token's
        // receiver sees no sender left.
        if tokio::time::timeout(grace, token_rx.recv()).await.is_err() {
            tracing::warn!("tasks still running after shutdown");
        }
        registry.close().await;
        result
    }
}

fn flatten(
    r: std::result::Result<
        std::result::Result<(), tonic::transport::Error>,
        tokio::task::JoinError,
    >,
) -> Result<()> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RelayError::Transport(e)),
        Err(e) => Err(RelayError::Net {
            context: "server task".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}
