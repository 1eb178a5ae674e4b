//! The two ends of a verification: URL parsing, connections, and one query
//! call that returns every value as text.
//!
//! Every query this crate runs returns text (checksums, counts, normalized
//! column text, repair literals), so both servers are read through one call,
//! [`Db::query`], that hands back rows of `Option<String>`: MariaDB over the
//! text protocol, PostgreSQL over the simple-query protocol. Sessions are set
//! up so both print values the same way: UTF-8 (`utf8mb4`), UTC time zone,
//! ISO dates.
//!
//! Passwords come from the URL or from an environment variable named on the
//! command line; they are never logged or put in an error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mysql_async::prelude::Queryable;

use crate::error::{Error, Result};

/// Which SQL the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL or MariaDB.
    Maria,
    /// PostgreSQL.
    Postgres,
}

/// A parsed `mysql://` or `postgres://` URL.
#[derive(Clone)]
pub struct Endpoint {
    /// The server's kind.
    pub dialect: Dialect,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, if any (never printed: see the `Debug` impl).
    pub password: Option<String>,
    /// The database named in the path: optional for MariaDB (it limits the
    /// default table list), required for PostgreSQL.
    pub database: Option<String>,
    /// MariaDB: a unix socket to connect by instead of TCP (`?socket=PATH`).
    pub socket: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("dialect", &self.dialect)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("database", &self.database)
            .field("socket", &self.socket)
            .finish()
    }
}

impl Endpoint {
    /// Parses `mysql://user[:pass]@host[:port][/db][?socket=PATH]` or
    /// `postgres://user[:pass]@host[:port]/db`; `side` names the flag in errors.
    pub fn parse(side: &'static str, raw: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadUrl { side, reason };
        let url = url::Url::parse(raw).map_err(|e| {
            bad(format!(
                "{e}; expected mysql://USER:PASS@HOST:PORT[/DB] or postgres://USER:PASS@HOST:PORT/DB"
            ))
        })?;
        let (dialect, default_port) = match url.scheme() {
            "mysql" | "mariadb" => (Dialect::Maria, 3306),
            "postgres" | "postgresql" => (Dialect::Postgres, 5432),
            other => {
                return Err(bad(format!(
                    "unknown scheme {other:?}; use mysql:// (MySQL/MariaDB) or postgres://"
                )))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host; write mysql://USER@HOST:PORT".into()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = decode(url.username());
        if user.is_empty() {
            return Err(bad("no user name; write mysql://USER@HOST:PORT".into()));
        }
        let password = url.password().map(decode);
        let database = url
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|d| !d.is_empty())
            .map(decode);
        if dialect == Dialect::Postgres && database.is_none() {
            return Err(bad(
                "a postgres:// URL needs the database: postgres://USER@HOST:PORT/DB".into(),
            ));
        }
        let socket = url
            .query_pairs()
            .find(|(k, _)| k == "socket")
            .map(|(_, v)| v.into_owned());
        Ok(Self {
            dialect,
            host,
            port: url.port().unwrap_or(default_port),
            user,
            password,
            database,
            socket,
        })
    }

    /// A MariaDB pool of up to `size` connections, each set up by `init`;
    /// pooled connections keep their session (a reset would undo `init`).
    pub fn maria_pool(&self, init: Vec<String>, size: usize) -> Option<mysql_async::Pool> {
        let constraints = mysql_async::PoolConstraints::new(1, size.max(1))?;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .db_name(None::<String>)
            .prefer_socket(false)
            .socket(self.socket.clone())
            .init(init)
            .pool_opts(
                mysql_async::PoolOpts::default()
                    .with_constraints(constraints)
                    .with_reset_connection(false),
            );
        Some(mysql_async::Pool::new(opts))
    }

    /// The tokio-postgres settings of a PostgreSQL endpoint.
    pub fn pg_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(self.database.as_deref().unwrap_or("postgres"))
            .application_name(application_name);
        if let Some(p) = &self.password {
            config.password(p);
        }
        config
    }

    /// `host:port` (or the socket), for messages.
    pub fn addr(&self) -> String {
        match &self.socket {
            Some(s) => s.clone(),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// A connected server: a pool of `parallel` connections.
#[derive(Clone)]
pub struct Db {
    side: &'static str,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Maria(mysql_async::Pool),
    Postgres(Arc<PgPool>),
}

struct PgPool {
    clients: Vec<tokio_postgres::Client>,
    next: AtomicUsize,
}

/// Session settings that make both servers print values the same way.
const MARIA_SESSION: &str =
    "SET NAMES utf8mb4, time_zone = '+00:00', SESSION group_concat_max_len = 1048576";
const PG_SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
                          SET client_encoding = 'UTF8'; SET IntervalStyle = 'postgres'";

impl Db {
    /// Connects `parallel` sessions (at least one) and checks that they work.
    pub async fn connect(side: &'static str, ep: &Endpoint, parallel: usize) -> Result<Self> {
        let parallel = parallel.max(1);
        let connect_err = |reason: String| Error::Connect {
            side,
            addr: ep.addr(),
            reason,
        };
        let inner = match ep.dialect {
            Dialect::Maria => {
                let pool = ep
                    .maria_pool(vec![MARIA_SESSION.to_owned()], parallel + 1)
                    .ok_or_else(|| connect_err("bad pool size".into()))?;
                // Fail here, with a clear message, rather than at the first chunk.
                let mut conn = pool
                    .get_conn()
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                conn.query_drop("SELECT 1")
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                drop(conn);
                Inner::Maria(pool)
            }
            Dialect::Postgres => {
                let config = ep.pg_config("drc verify");
                let mut clients = Vec::with_capacity(parallel);
                for _ in 0..parallel {
                    let (client, connection) = config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(|e| connect_err(pg_message(&e)))?;
                    tokio::spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::warn!(error = %err, "postgres connection ended");
                        }
                    });
                    client
                        .batch_execute(PG_SESSION)
                        .await
                        .map_err(|e| connect_err(pg_message(&e)))?;
                    clients.push(client);
                }
                Inner::Postgres(Arc::new(PgPool {
                    clients,
                    next: AtomicUsize::new(0),
                }))
            }
        };
        Ok(Self { side, inner })
    }

    /// The server's kind.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Maria(_) => Dialect::Maria,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `source` or `target`.
    pub fn side(&self) -> &'static str {
        self.side
    }

    /// Runs one statement and returns its rows, every value as text (`None`
    /// for NULL). `what` says what the query is for, in errors.
    pub async fn query(&self, sql: &str, what: &str) -> Result<Vec<Vec<Option<String>>>> {
        let err = |reason: String| Error::Query {
            side: self.side,
            what: what.to_owned(),
            reason,
        };
        tracing::trace!(side = self.side, what, "query");
        match &self.inner {
            Inner::Maria(pool) => {
                let mut conn = pool.get_conn().await.map_err(|e| err(e.to_string()))?;
                let rows: Vec<mysql_async::Row> =
                    conn.query(sql).await.map_err(|e| err(e.to_string()))?;
                Ok(rows
                    .into_iter()
                    .map(|row| row.unwrap().into_iter().map(maria_text).collect())
                    .collect())
            }
            Inner::Postgres(pool) => {
                let i = pool.next.fetch_add(1, Ordering::Relaxed) % pool.clients.len();
                let messages = pool.clients[i]
                    .simple_query(sql)
                    .await
                    .map_err(|e| err(pg_message(&e)))?;
                let mut out = Vec::new();
                for m in messages {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
                        out.push(
                            (0..row.len())
                                .map(|j| row.get(j).map(str::to_owned))
                                .collect(),
                        );
                    }
                }
                Ok(out)
            }
        }
    }

    /// Closes the connections.
    pub async fn close(self) {
        if let Inner::Maria(pool) = self.inner {
            let _ = pool.disconnect().await;
        }
    }
}

/// A MariaDB value as text (the text protocol sends bytes; a binary value
/// this crate reads is always hex, so lossy decoding never matters).
fn maria_text(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// A PostgreSQL error with the server's message when there is one.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
