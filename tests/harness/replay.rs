//! Reading change messages back for tests: every message of a JetStream
//! stream in sequence order ([`read_jetstream`]), a replay of
//! Debezium-style envelopes into table state ([`TableState`]), and the
//! tables of a MariaDB server in the same form ([`mariadb_tables`]), so a
//! test can compare what a consumer rebuilds with the source, row by row.
//!
//! Rows are JSON objects (column name to value). Keyed tables are maps from
//! the key (the JSON array of the `source.pk` columns' values) to the row;
//! keyless tables are sorted lists of rows (a multiset). A column a row
//! lacks counts as `null`, as it does for a consumer that saw the row
//! before an `ALTER TABLE ... ADD` column.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use serde_json::{Map, Value};

/// One stored JetStream message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub sequence: u64,
    pub subject: String,
    /// `Nats-Msg-Id`, empty when absent.
    pub id: String,
    pub payload: Vec<u8>,
}

impl StoredMessage {
    /// The payload as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.payload)
            .with_context(|| format!("message {} is not JSON", self.sequence))
    }
}

/// Every message of JetStream stream `name` at `url`, read from the start
/// with an ordered consumer.
pub async fn read_jetstream(url: &str, name: &str) -> Result<Vec<StoredMessage>> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connect to {url}"))?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(name)
        .await
        .with_context(|| format!("get stream {name}"))?;
    let total = stream.info().await.context("stream info")?.state.messages;
    let mut out = Vec::new();
    if total == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("create ordered consumer")?;
    let mut messages = consumer.messages().await.context("consume")?;
    while (out.len() as u64) < total {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| anyhow!("no message after {} of {total}", out.len()))?;
        let Some(msg) = next else {
            bail!("consumer ended after {} of {total} messages", out.len());
        };
        let msg = msg.map_err(|e| anyhow!("consume: {e}"))?;
        let sequence = msg
            .info()
            .map_err(|e| anyhow!("message info: {e}"))?
            .stream_sequence;
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push(StoredMessage {
            sequence,
            subject: msg.subject.to_string(),
            id,
            payload: msg.payload.to_vec(),
        });
    }
    Ok(out)
}

/// One table's rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub keyed: BTreeMap<String, Value>,
    pub keyless: Vec<Value>,
}

/// Tables by `db.table`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableState {
    pub tables: BTreeMap<String, Table>,
}

fn key_of(pk: &[String], row: &Value) -> String {
    let vals: Vec<Value> = pk
        .iter()
        .map(|k| row.get(k).cloned().unwrap_or(Value::Null))
        .collect();
    Value::Array(vals).to_string()
}

impl TableState {
    /// Applies one envelope: `op` c/u/d/t changes rows; a schema-change
    /// message (no `op`) changes nothing.
    pub fn apply(&mut self, msg: &Value) -> Result<()> {
        let Some(op) = msg.get("op").and_then(Value::as_str) else {
            if msg.get("ddl").is_some() {
                return Ok(());
            }
            bail!("message without op or ddl: {msg}");
        };
        let src = &msg["source"];
        let name = format!(
            "{}.{}",
            src["db"].as_str().unwrap_or_default(),
            src["table"].as_str().unwrap_or_default()
        );
        let table = self.tables.entry(name.clone()).or_default();
        if op == "t" {
            *table = Table::default();
            return Ok(());
        }
        let pk: Vec<String> = src["pk"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let before = &msg["before"];
        let after = &msg["after"];
        if matches!(op, "u" | "d") {
            if pk.is_empty() {
                let at = table
                    .keyless
                    .iter()
                    .position(|r| same_row(r, before))
                    .ok_or_else(|| anyhow!("{op} of a row {name} does not hold: {before}"))?;
                table.keyless.remove(at);
            } else if table.keyed.remove(&key_of(&pk, before)).is_none() {
                bail!("{op} of a key {name} does not hold: {before}");
            }
        }
        if matches!(op, "c" | "u") {
            if !after.is_object() {
                bail!("{op} without an after image in {name}");
            }
            if pk.is_empty() {
                table.keyless.push(after.clone());
            } else {
                table.keyed.insert(key_of(&pk, after), after.clone());
            }
        }
        Ok(())
    }

    /// Sorts keyless rows, fills in absent columns as `null` from `like`'s
    /// rows and drops empty tables, so two states compare equal when they
    /// hold the same rows.
    pub fn normalized(&self) -> TableState {
        let mut out = TableState::default();
        for (name, t) in &self.tables {
            let mut keyless: Vec<Value> = t.keyless.iter().map(strip_nulls).collect();
            keyless.sort_by_key(|v| v.to_string());
            let keyed: BTreeMap<String, Value> = t
                .keyed
                .iter()
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect();
            if keyless.is_empty() && keyed.is_empty() {
                continue;
            }
            out.tables.insert(name.clone(), Table { keyed, keyless });
        }
        out
    }
}

/// A row without its `null` columns (absent and `null` mean the same).
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

fn same_row(a: &Value, b: &Value) -> bool {
    strip_nulls(a) == strip_nulls(b)
}

/// The rows of every table of `databases` on a MariaDB server at `url`, in
/// the JSON form of DRC's envelopes for the simple types tests use:
/// integers as numbers, everything else (text, DECIMAL, temporal) as the
/// server's text. `keys` gives the key columns of keyed tables (`db.table`
/// to column names); other tables are keyless.
pub async fn mariadb_tables(
    url: &str,
    databases: &[&str],
    keys: &BTreeMap<String, Vec<String>>,
) -> Result<TableState> {
    use mysql_async::consts::ColumnType as T;
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .with_context(|| format!("connect to {url}"))?;
    conn.query_drop("SET NAMES utf8mb4").await?;
    let mut state = TableState::default();
    for db in databases {
        let tables: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
                (db,),
            )
            .await?;
        for t in tables {
            let name = format!("{db}.{t}");
            let sql = format!(
                "SELECT * FROM `{}`.`{}`",
                db.replace('`', "``"),
                t.replace('`', "``")
            );
            let rows: Vec<mysql_async::Row> = conn.query(sql).await?;
            let mut table = Table::default();
            for row in rows {
                let mut obj = Map::new();
                for (i, col) in row.columns_ref().iter().enumerate() {
                    let v = match row.as_ref(i) {
                        None | Some(mysql_async::Value::NULL) => Value::Null,
                        Some(mysql_async::Value::Bytes(b)) => {
                            let text = String::from_utf8_lossy(b).into_owned();
                            let integer = matches!(
                                col.column_type(),
                                T::MYSQL_TYPE_TINY
                                    | T::MYSQL_TYPE_SHORT
                                    | T::MYSQL_TYPE_INT24
                                    | T::MYSQL_TYPE_LONG
                                    | T::MYSQL_TYPE_LONGLONG
                            );
                            match text.parse::<i64>() {
                                Ok(n) if integer => Value::from(n),
                                _ => Value::String(text),
                            }
                        }
                        Some(other) => bail!("unexpected value {other:?} in {name}"),
                    };
                    obj.insert(col.name_str().into_owned(), v);
                }
                let row = Value::Object(obj);
                match keys.get(&name) {
                    Some(pk) => {
                        table.keyed.insert(key_of(pk, &row), row);
                    }
                    None => table.keyless.push(row),
                }
            }
            state.tables.insert(name, table);
        }
    }
    conn.disconnect().await?;
    Ok(state.normalized())
}
