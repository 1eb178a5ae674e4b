//! The relay client: what a capture, an applier, a consumer and a
//! downstream relay use to talk to a relay.
//!
//! - [`RelayClient::publisher`] opens a Publish call and returns the position
//!   the relay holds for the stream (where the capture resumes); the
//!   [`Publisher`] sends transactions and reads the acks that follow each
//!   durable append.
//! - [`RelayClient::subscribe`] returns a [`Subscription`]: batches, already
//!   decompressed and checked (contiguous ranges, offsets in range), or
//!   through [`Subscription::into_transactions`] a stream of
//!   `(Offset, Transaction)`.
//!
//! Connections use the relay's socket options (`net.rs`), TLS with a client
//! certificate when the URL is `https`, and HTTP/2 keepalive pings so that a
//! dead link fails calls within seconds instead of hanging them.

use std::time::Duration;

use bytes::Bytes;
use drc_log::Offset;
use drc_proto::v1 as pb;
use drc_proto::v1::relay_client::RelayClient as GrpcClient;
use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::batch::{Decoding, RecordBatch};
use crate::config::{self, ClientConfig};
use crate::error::{RelayError, Result};
use crate::net::{self, Dial};
use crate::tls;

/// Requests a publisher may have in flight before `send` waits.
const PUBLISH_QUEUE: usize = 8;

/// A connection to one relay. Cheap to clone; calls share one HTTP/2
/// connection, re-established on the next call after it breaks.
#[derive(Clone)]
pub struct RelayClient {
    grpc: GrpcClient<Channel>,
    max_message_bytes: usize,
}

impl RelayClient {
    /// Connects now: fails if the relay cannot be reached or refuses the
    /// handshake.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let (endpoint, connector, max) = prepare(&config)?;
        let channel = endpoint.connect_with_connector(connector).await?;
        Ok(Self::from_channel(channel, max))
    }

    /// Connects on the first call (and again after any break).
    pub fn connect_lazy(config: ClientConfig) -> Result<Self> {
        let (endpoint, connector, max) = prepare(&config)?;
        let channel = endpoint.connect_with_connector_lazy(connector);
        Ok(Self::from_channel(channel, max))
    }

    fn from_channel(channel: Channel, max_message_bytes: usize) -> Self {
        let grpc = GrpcClient::new(channel)
            .max_decoding_message_size(max_message_bytes.saturating_add(1 << 20))
            .max_encoding_message_size(max_message_bytes);
        Self {
            grpc,
            max_message_bytes,
        }
    }

    /// The generated gRPC client, for calls this API does not wrap.
    pub fn grpc(&self) -> GrpcClient<Channel> {
        self.grpc.clone()
    }

    /// Opens a Publish call for `stream`. The returned publisher knows the
    /// position the relay holds ([`Publisher::resume`]).
    pub async fn publisher(&self, stream: &str, capture_id: &str) -> Result<Publisher> {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let hello = pb::PublishRequest {
            hello: Some(pb::PublishHello {
                stream: stream.to_string(),
                capture_id: capture_id.to_string(),
            }),
            transactions: Vec::new(),
        };
        tx.send(hello).await.map_err(|_| RelayError::Shutdown)?;
        let mut acks = self
            .grpc
            .clone()
            .publish(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let resume = acks
            .message()
            .await?
            .ok_or_else(|| RelayError::Corrupt("publish call ended before its first ack".into()))?;
        Ok(Publisher {
            tx,
            acks,
            resume,
            in_flight: 0,
        })
    }

    /// Subscribes to a stream.
    pub async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        let from = options.from_offset;
        let req = pb::SubscribeRequest {
            stream: options.stream,
            from_offset: options.from_offset,
            include: options.include,
            exclude: options.exclude,
            exclude_origins: options.exclude_origins,
            stub_origins: options.stub_origins,
            subscriber: options.subscriber,
            compression: options.compression as i32,
            max_batch_bytes: options.max_batch_bytes,
        };
        let inner = self.grpc.clone().subscribe(req).await?.into_inner();
        Ok(Subscription {
            inner,
            next: (from > 0).then_some(from),
            max_bytes: self.max_message_bytes.saturating_add(1 << 20),
            decoding: Decoding::default(),
        })
    }

    /// Streams, offsets and subscribers (`stream` empty: all).
    pub async fn status(&self, stream: &str) -> Result<pb::StatusResponse> {
        Ok(self
            .grpc
            .clone()
            .status(pb::StatusRequest {
                stream: stream.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Reports that `subscriber` has durably processed `stream` up to
    /// `offset` (retention keeps what it has not confirmed).
    pub async fn confirm(&self, stream: &str, subscriber: &str, offset: u64) -> Result<()> {
        self.grpc
            .clone()
            .confirm(pb::ConfirmRequest {
                stream: stream.to_string(),
                subscriber: subscriber.to_string(),
                offset,
            })
            .await?;
        Ok(())
    }
}

/// The endpoint (keepalive, windows) and our connector (socket options,
/// TLS) for a client config.
fn prepare(config: &ClientConfig) -> Result<(Endpoint, SyncConnector, usize)> {
    let target = config.validate()?;
    let tls = match &config.tls {
        Some(t) => Some((
            tokio_rustls::TlsConnector::from(t.client_config()?),
            tls::server_name(&target.host)?,
        )),
        None => None,
    };
    let authority = match &target.dial {
        Dial::Tcp(host, port) if host.contains(':') => format!("[{host}]:{port}"),
        Dial::Tcp(host, port) => format!("{host}:{port}"),
        Dial::Unix(_) => "localhost".to_string(),
    };
    let scheme = if target.tls { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|e| RelayError::Config(format!("bad url {:?}: {e}", config.url)))?
        .http2_keep_alive_interval(config::HTTP2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(config::HTTP2_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let endpoint = match config.window_bytes {
        // Fixed windows for a long link: the sender never waits on a window
        // update, whatever the receiver's estimate of the path would be.
        Some(w) => endpoint
            .http2_adaptive_window(false)
            .initial_stream_window_size(w)
            .initial_connection_window_size(w.saturating_mul(2)),
        // Grow the receive window with the measured bandwidth-delay
        // product: small while a subscriber is slow or idle.
        None => endpoint.http2_adaptive_window(true),
    };
    let dial = target.dial.clone();
    let timeout = config.connect_timeout;
    let connector = SyncConnector::new(dial, tls, timeout);
    Ok((endpoint, connector, config.max_message_bytes))
}

/// Dials with our socket options and TLS. Cloneable and `Sync`, as tonic's
/// reconnecting channel wants.
#[derive(Clone)]
struct SyncConnector {
    dial: Dial,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    timeout: Duration,
}

impl SyncConnector {
    fn new(
        dial: Dial,
        tls: Option<(
            tokio_rustls::TlsConnector,
            rustls::pki_types::ServerName<'static>,
        )>,
        timeout: Duration,
    ) -> Self {
        Self { dial, tls, timeout }
    }
}

impl tower::Service<Uri> for SyncConnector {
    type Response = hyper_util::rt::TokioIo<net::Conn>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let dial = self.dial.clone();
        let tls = self.tls.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let conn = tokio::time::timeout(timeout, net::dial(&dial, tls))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            Ok(hyper_util::rt::TokioIo::new(conn))
        })
    }
}

/// An open Publish call.
pub struct Publisher {
    tx: mpsc::Sender<pb::PublishRequest>,
    acks: tonic::Streaming<pb::PublishAck>,
    resume: pb::PublishAck,
    in_flight: usize,
}

impl Publisher {
    /// What the relay held when the call opened: its last offset and source
    /// position. A capture resumes after this position.
    pub fn resume(&self) -> &pb::PublishAck {
        &self.resume
    }

    /// Requests sent whose ack has not been read yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Sends one request of transactions (encoded). Waits only when
    /// `PUBLISH_QUEUE` requests are already queued.
    pub async fn send_encoded(&mut self, transactions: Vec<Bytes>) -> Result<()> {
        let req = pb::PublishRequest {
            hello: None,
            transactions,
        };
        self.tx.send(req).await.map_err(|_| RelayError::Net {
            context: "publish".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the publish call has ended",
            ),
        })?;
        self.in_flight += 1;
        Ok(())
    }

    /// Sends one request of transactions.
    pub async fn send(&mut self, transactions: &[pb::Transaction]) -> Result<()> {
        self.send_encoded(
            transactions
                .iter()
                .map(|t| Bytes::from(t.encode_to_vec()))
                .collect(),
        )
        .await
    }

    /// The ack of the oldest request in flight: sent once its transactions
    /// are durable (or known duplicates).
    pub async fn ack(&mut self) -> Result<pb::PublishAck> {
        let ack = self.acks.message().await?.ok_or_else(|| RelayError::Net {
            context: "publish".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the relay ended the publish call",
            ),
        })?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Ok(ack)
    }

    /// Sends one request and waits for its ack.
    pub async fn publish(&mut self, transactions: &[pb::Transaction]) -> Result<pb::PublishAck> {
        self.send(transactions).await?;
        let mut last = None;
        while self.in_flight > 0 {
            last = Some(self.ack().await?);
        }
        last.ok_or_else(|| RelayError::Corrupt("no ack".into()))
    }

    /// Ends the call after reading the acks of every request in flight;
    /// returns the last one.
    pub async fn finish(mut self) -> Result<Option<pb::PublishAck>> {
        let mut last = None;
        while self.in_flight > 0 {
            last = Some(self.ack().await?);
        }
        drop(self.tx);
        Ok(last)
    }
}

/// What to subscribe to.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    pub stream: String,
    /// First offset wanted; 0 for the first the relay holds.
    pub from_offset: u64,
    /// `db.table` globs to include (empty: all).
    pub include: Vec<String>,
    /// `db.table` globs to exclude.
    pub exclude: Vec<String>,
    /// Origins whose transactions are left out.
    pub exclude_origins: Vec<String>,
    /// Origins whose transactions come as stubs (position and origin only).
    pub stub_origins: Vec<String>,
    /// Name for status and retention; empty for anonymous.
    pub subscriber: String,
    pub compression: pb::Compression,
    /// 0 for the server's default.
    pub max_batch_bytes: u32,
}

impl SubscribeOptions {
    pub fn new(stream: impl Into<String>, from_offset: u64) -> Self {
        Self {
            stream: stream.into(),
            from_offset,
            ..Default::default()
        }
    }
}

/// An open subscription.
pub struct Subscription {
    inner: tonic::Streaming<pb::Batch>,
    /// The offset the next batch must start at (unknown before the first
    /// batch of a `from_offset = 0` subscription).
    next: Option<u64>,
    max_bytes: usize,
    /// What reading the next batch needs from earlier ones.
    decoding: Decoding,
}

impl Subscription {
    /// The next batch; `None` when the relay ended the stream cleanly.
    /// Checks that batches are contiguous: a gap is an error, never a skip.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(b) = self.inner.message().await? else {
            return Ok(None);
        };
        let b = self.decoding.decode(b, self.max_bytes)?;
        if let Some(n) = self.next {
            if b.first_offset != n {
                return Err(RelayError::Corrupt(format!(
                    "batch starts at offset {}, expected {n}",
                    b.first_offset
                )));
            }
        }
        self.next = Some(b.end_offset());
        Ok(Some(b))
    }

    /// The offset the next batch starts at, once known.
    pub fn next_offset(&self) -> Option<u64> {
        self.next
    }

    /// The delivered transactions, decoded, with their offsets.
    pub fn into_transactions(self) -> impl Stream<Item = Result<(Offset, pb::Transaction)>> + Send {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new(), false),
            |(mut sub, mut queue, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some((o, bytes)) = queue.pop_front() {
                        let item = pb::Transaction::decode(bytes)
                            .map(|t| (Offset(o), t))
                            .map_err(|e| {
                                RelayError::Corrupt(format!("transaction at offset {o}: {e}"))
                            });
                        let failed = item.is_err();
                        return Some((item, (sub, queue, failed)));
                    }
                    match sub.next_batch().await {
                        Ok(Some(b)) => queue.extend(b.records),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(e), (sub, queue, true))),
                    }
                }
            },
        )
    }
}
