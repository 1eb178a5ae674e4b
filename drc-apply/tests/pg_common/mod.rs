//! What the PostgreSQL sink's test files share: a throwaway server, the
//! sink's config for it, and a plain client.

#![allow(dead_code)]

use drc_apply::sink::postgres::{ConflictPolicy, PostgresSinkConfig};
use drc_tests::{Postgres, PostgresOptions};

/// A throwaway PostgreSQL server.
pub fn start_pg() -> Postgres {
    Postgres::start(PostgresOptions::default()).expect("start postgres")
}

/// The sink's config for `pg`, origin `region-a`.
pub fn config(pg: &Postgres, policy: ConflictPolicy) -> PostgresSinkConfig {
    PostgresSinkConfig {
        conflict_policy: policy,
        origin: Some("region-a".into()),
        ..PostgresSinkConfig::new(pg.url())
    }
}

/// A client of `pg` (session in UTC), its connection driven by a task.
pub async fn pg_client(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(conn);
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("tz");
    client
}

/// The rows of a simple query's answer, as text.
pub fn rows_text(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}
