//! Helpers shared by the relay's integration tests: transactions with
//! MariaDB GTIDs, relays started in this process on free loopback ports.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drc_proto::v1 as pb;
use drc_relay::registry::Registry;
use drc_relay::{ClientConfig, RelayClient, RelayConfig, RelayServer, ServerStats, TlsConfig};
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Transaction number `seq` of a MariaDB source (domain 0, server 1): one row
/// change in `shop.orders` (even seq) or `shop.audit_log` (odd seq), with
/// `payload` bytes of row data.
pub fn tx(seq: u64, payload: usize) -> pb::Transaction {
    let table = if seq & 1 == 0 { "orders" } else { "audit_log" };
    pb::Transaction {
        position: Some(pb::SourcePosition {
            gtid: format!("0-1-{seq}"),
            file: "mariadb-bin.000001".into(),
            pos: 1000 + seq * 100,
            gtid_set: format!("0-1-{seq}"),
        }),
        commit_ts_us: 1_700_000_000_000_000 + seq as i64,
        server_id: 1,
        origin: String::new(),
        changes: vec![pb::RowChange {
            op: pb::Op::Insert as i32,
            schema: "shop".into(),
            table: table.into(),
            columns: vec![
                pb::Column {
                    name: "id".into(),
                    sql_type: "bigint(20)".into(),
                    nullable: false,
                    charset: String::new(),
                },
                pb::Column {
                    name: "note".into(),
                    sql_type: "longblob".into(),
                    nullable: true,
                    charset: String::new(),
                },
            ],
            primary_key: vec![0],
            before: None,
            after: Some(pb::Row {
                values: vec![
                    pb::Value {
                        kind: Some(pb::value::Kind::Int(seq as i64)),
                    },
                    pb::Value {
                        kind: Some(pb::value::Kind::Bytes(noise(seq, payload))),
                    },
                ],
            }),
        }],
        ddl: None,
    }
}

/// Deterministic, somewhat compressible bytes.
fn noise(seq: u64, len: usize) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i % 4 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            b"abcdefghijklmnop"[(x >> ((i % 4) * 8)) as usize & 15]
        })
        .collect()
}

pub fn encoded(t: &pb::Transaction) -> Bytes {
    Bytes::from(t.encode_to_vec())
}

/// A plaintext loopback relay config.
pub fn plain_config(data: &Path) -> RelayConfig {
    let mut c = RelayConfig::new("127.0.0.1:0", data);
    c.insecure_plaintext = true;
    c
}

/// A TLS relay config on loopback.
pub fn tls_config(data: &Path, listen: &str, tls: TlsConfig) -> RelayConfig {
    let mut c = RelayConfig::new(listen, data);
    c.tls = Some(tls);
    c
}

pub fn plain_client_config(addr: SocketAddr) -> ClientConfig {
    let mut c = ClientConfig::new(format!("http://{addr}"));
    c.insecure_plaintext = true;
    c
}

pub fn tls_client_config(addr: SocketAddr, tls: TlsConfig) -> ClientConfig {
    let mut c = ClientConfig::new(format!("https://localhost:{}", addr.port()));
    c.tls = Some(tls);
    c
}

/// A relay serving in a task of this process.
pub struct Running {
    pub addr: SocketAddr,
    registry: Option<Arc<Registry>>,
    pub stats: Arc<ServerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<drc_relay::Result<()>>>,
}

impl Running {
    pub async fn start(config: RelayConfig) -> Running {
        let server = RelayServer::bind(config)
            .await
            .expect("bind relay")
            .with_shutdown_grace(Duration::from_secs(2));
        let addr = server.local_addr().expect("tcp address");
        let registry = server.registry();
        let stats = server.stats();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            registry: Some(registry),
            stats,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Shuts the relay down and waits until its logs are closed.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Stop being a user of the streams, so the server can close them.
        self.registry.take();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("relay stops within 30 s")
                .expect("relay task")
                .expect("relay serve");
        }
    }

    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("running relay")
    }

    /// Every record of `stream`, by offset.
    pub fn records(&self, stream: &str) -> Vec<(u64, Bytes)> {
        read_all(self.registry(), stream)
    }
}

pub fn read_all(registry: &Registry, stream: &str) -> Vec<(u64, Bytes)> {
    let Some(s) = registry.get(stream) else {
        return Vec::new();
    };
    let mut r = s.log().reader(drc_relay::Offset(0)).expect("reader");
    let mut out = Vec::new();
    while let Some((o, b)) = r.try_next().expect("read") {
        out.push((o.0, b));
    }
    out
}

pub async fn plain_client(addr: SocketAddr) -> RelayClient {
    RelayClient::connect(plain_client_config(addr))
        .await
        .expect("connect")
}

/// Polls `f` until it is true or `secs` pass.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Environment variable that turns a test binary into a child relay: it
/// holds the relay's config as JSON.
pub const CHILD_ENV: &str = "DRC_RELAY_TEST_CHILD";

/// Body of the `child_relay` entry test of a test binary: serves the relay
/// of [`CHILD_ENV`] until the process is killed. Does nothing without it.
pub fn child_main() {
    let Ok(cfg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cfg: RelayConfig = serde_json::from_str(&cfg).expect("child config");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        RelayServer::bind(cfg)
            .await
            .expect("child relay binds")
            .serve(std::future::pending())
            .await
            .expect("child relay serves");
    });
}

/// A relay in a child process (this test binary, re-run as `child_relay`).
pub struct ChildRelay {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl ChildRelay {
    /// Starts the child and waits until it accepts connections.
    pub async fn start(config: serde_json::Value, addr: SocketAddr) -> ChildRelay {
        let exe = std::env::current_exe().expect("test binary");
        let child = std::process::Command::new(exe)
            .args([
                "--exact",
                "child_relay",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, config.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn child relay");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "child relay did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ChildRelay { child, addr }
    }

    /// Resident memory of the child, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// kill -9, and reap.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for ChildRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
