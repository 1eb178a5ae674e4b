//! The PostgreSQL sink against real servers: a workload captured from
//! MariaDB (the capture's type-torture table, tables without a key, DDL of
//! every translated kind, a random mix of inserts, updates, deletes and
//! multi-row transactions) applied in batches gives target tables equal to
//! the source, row by row, per the documented type mapping; batches
//! delivered again and a new sink resuming from its checkpoint apply
//! nothing twice; conflict policies and their records; bad input (missing
//! privileges, missing or different tables, values PostgreSQL refuses,
//! untranslatable DDL) stops at the right offset with nothing committed; a
//! lost connection or a killed server mid-batch leaves all or nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drc_apply::sink::postgres::{ConflictPolicy, PostgresSink, PostgresSinkConfig, UnsupportedDdl};
use drc_apply::{ApplyError, Batch, Sink};
use drc_capture::capture::{self, CaptureOptions, StartAt};
use drc_proto::v1 as pb;
use drc_tests::{skip, MariaDb, MariaDbOptions, Postgres, PostgresOptions};
use mysql_async::prelude::Queryable;
use pb::value::Kind;
use rand::{Rng, SeedableRng};

fn servers_available() -> bool {
    MariaDb::available() && Postgres::available()
}

fn start_pg() -> Postgres {
    Postgres::start(PostgresOptions::default()).expect("start postgres")
}

fn config(pg: &Postgres, policy: ConflictPolicy) -> PostgresSinkConfig {
    PostgresSinkConfig {
        conflict_policy: policy,
        origin: Some("region-a".into()),
        ..PostgresSinkConfig::new(pg.url())
    }
}

/// Every transaction of the source's binlog, spilled changes included.
async fn capture_all(src: &MariaDb) -> Vec<pb::Transaction> {
    let mut opts = CaptureOptions::new(src.url(), StartAt::FromStart);
    opts.stop_at_end = true;
    let mut out = Vec::new();
    capture::run(opts, |mut t| {
        let mut changes = Vec::new();
        t.for_each_change(|c| {
            changes.push(c.clone());
            Ok(())
        })?;
        let mut txn = t.txn;
        txn.changes = changes;
        out.push(txn);
        Ok(())
    })
    .await
    .expect("capture");
    out
}

/// Batches of `size` transactions at offsets 1, 2, ...
fn batches(stream: &str, txns: &[pb::Transaction], size: usize) -> Vec<Batch> {
    txns.chunks(size)
        .enumerate()
        .map(|(n, chunk)| {
            let first = (n * size) as u64 + 1;
            let offsets: Vec<u64> = (first..first + chunk.len() as u64).collect();
            Batch {
                stream: stream.into(),
                last_offset: *offsets.last().expect("non-empty chunk"),
                offsets,
                transactions: chunk.to_vec(),
            }
        })
        .collect()
}

// ---- comparing a MariaDB source with its PostgreSQL target ----

/// How a column's values are compared (from the source's DATA_TYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    Binary,
    Bit,
    Float,
    Json,
    Date,
    DateTime,
    Time,
    Year,
    Inet,
}

fn class_of(name: &str, data_type: &str) -> Class {
    match data_type {
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" => Class::Binary,
        "bit" => Class::Bit,
        "float" | "double" => Class::Float,
        "json" => Class::Json,
        "longtext" if name == "j" => Class::Json,
        "date" => Class::Date,
        "datetime" | "timestamp" => Class::DateTime,
        "time" => Class::Time,
        "year" => Class::Year,
        "inet6" | "inet4" => Class::Inet,
        _ => Class::Plain,
    }
}

fn canonical_json(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k, canonical_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(canonical_json).collect())
        }
        other => other,
    }
}

fn strip_fraction_zeros(s: &str) -> String {
    match s.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => s.to_owned(),
    }
}

/// One value as text that both sides agree on, per the type mapping.
fn normalize(class: Class, v: Option<String>) -> Option<String> {
    let v = v?;
    Some(match class {
        Class::Plain | Class::Binary | Class::Inet => v,
        Class::Bit => {
            let t = v.trim_start_matches('0');
            if t.is_empty() {
                "0".into()
            } else {
                t.into()
            }
        }
        Class::Float => match v.parse::<f64>() {
            Ok(f) => format!("{f:e}"),
            Err(_) => v,
        },
        Class::Json => match serde_json::from_str::<serde_json::Value>(&v) {
            Ok(j) => canonical_json(j).to_string(),
            Err(_) => v,
        },
        Class::Date => {
            if v == "-infinity" {
                "0000-00-00".into()
            } else {
                v
            }
        }
        Class::DateTime => {
            let v = v.strip_suffix("+00").unwrap_or(&v).to_owned();
            if v == "-infinity" {
                "0000-00-00 00:00:00".into()
            } else {
                strip_fraction_zeros(&v)
            }
        }
        Class::Time => strip_fraction_zeros(&v),
        Class::Year => v.parse::<i64>().map_or(v, |y| y.to_string()),
    })
}

type Dump = BTreeMap<String, (Vec<String>, Vec<Vec<Option<String>>>)>;

/// Every user table of the source: column names and sorted normalized rows.
async fn dump_source(src: &MariaDb) -> Dump {
    let mut conn = src.conn().await.expect("source connection");
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .expect("tz");
    let tables: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
             WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'drc')
               AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1, 2",
        )
        .await
        .expect("list tables");
    let mut out = Dump::new();
    for (schema, table) in tables {
        let cols: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&schema, &table),
            )
            .await
            .expect("columns");
        let classes: Vec<Class> = cols.iter().map(|(n, t)| class_of(n, t)).collect();
        let exprs: Vec<String> = cols
            .iter()
            .zip(&classes)
            .map(|((n, _), class)| match class {
                Class::Binary => format!("HEX(`{n}`)"),
                Class::Bit => format!("BIN(`{n}`)"),
                Class::Float => format!("CAST(`{n}` AS DOUBLE)"),
                Class::Json => format!("JSON_COMPACT(`{n}`)"),
                _ => format!("`{n}`"),
            })
            .collect();
        let rows: Vec<mysql_async::Row> = conn
            .query(format!(
                "SELECT {} FROM `{schema}`.`{table}`",
                exprs.join(", ")
            ))
            .await
            .expect("rows");
        let mut values: Vec<Vec<Option<String>>> = rows
            .into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .zip(&classes)
                    .map(|(v, class)| {
                        let text = match v {
                            mysql_async::Value::NULL => None,
                            mysql_async::Value::Bytes(b) => {
                                Some(String::from_utf8_lossy(&b).into_owned())
                            }
                            other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
                        };
                        normalize(*class, text)
                    })
                    .collect()
            })
            .collect();
        values.sort();
        out.insert(
            format!("{schema}.{table}"),
            (cols.into_iter().map(|(n, _)| n).collect(), values),
        );
    }
    out
}

/// The same tables in the target, read with the source's column classes.
async fn dump_target(pg: &Postgres, like: &Dump, classes: &BTreeMap<String, Vec<Class>>) -> Dump {
    let client = pg_client(pg).await;
    let listed = client
        .simple_query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'drc', 'public')
             ORDER BY 1",
        )
        .await
        .expect("list target tables");
    let mut out = Dump::new();
    for name in rows_text(&listed)
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
    {
        let Some((cols, _)) = like.get(&name) else {
            out.insert(name, (Vec::new(), Vec::new()));
            continue;
        };
        let cls = &classes[&name];
        let (schema, table) = name.split_once('.').expect("schema.table");
        let exprs: Vec<String> = cols
            .iter()
            .zip(cls)
            .map(|(n, class)| match class {
                Class::Binary => format!("upper(encode(\"{n}\", 'hex'))"),
                Class::Float => format!("\"{n}\"::float8::text"),
                // inet's text form carries the netmask; host() is the address.
                Class::Inet => format!("host(\"{n}\")"),
                _ => format!("\"{n}\"::text"),
            })
            .collect();
        let msgs = client
            .simple_query(&format!(
                "SELECT {} FROM \"{schema}\".\"{table}\"",
                exprs.join(", ")
            ))
            .await
            .unwrap_or_else(|e| panic!("read target {name}: {e}"));
        let mut values: Vec<Vec<Option<String>>> = rows_text(&msgs)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .zip(cls)
                    .map(|(v, c)| normalize(*c, v))
                    .collect()
            })
            .collect();
        values.sort();
        out.insert(name, (cols.clone(), values));
    }
    out
}

async fn source_classes(src: &MariaDb) -> BTreeMap<String, Vec<Class>> {
    let mut conn = src.conn().await.expect("source connection");
    let cols: Vec<(String, String, String)> = conn
        .query(
            "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'drc')
             ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        )
        .await
        .expect("columns");
    let mut out: BTreeMap<String, Vec<Class>> = BTreeMap::new();
    for (t, n, ty) in cols {
        out.entry(t).or_default().push(class_of(&n, &ty));
    }
    out
}

async fn assert_same(src: &MariaDb, pg: &Postgres) {
    let want = dump_source(src).await;
    let classes = source_classes(src).await;
    let got = dump_target(pg, &want, &classes).await;
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "same tables"
    );
    for (table, (cols, rows)) in &want {
        let (_, got_rows) = &got[table];
        assert_eq!(rows.len(), got_rows.len(), "row count of {table}");
        for (i, (a, b)) in rows.iter().zip(got_rows).enumerate() {
            for (k, col) in cols.iter().enumerate() {
                assert_eq!(
                    a[k], b[k],
                    "{table} row {i} column {col}: source {a:?} target {b:?}"
                );
            }
        }
    }
}

async fn pg_client(pg: &Postgres) -> tokio_postgres::Client {
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

fn rows_text(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

const TYPES_TABLE: &str = "CREATE TABLE w.types (
      id INT PRIMARY KEY,
      ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, miu MEDIUMINT UNSIGNED,
      i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, d DECIMAL(65,30), d2 DECIMAL(10,2),
      f FLOAT, db DOUBLE, b BIT(64), b3 BIT(3), dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME,
      dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL,
      ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR, c CHAR(10), vc VARCHAR(300), tx TEXT,
      cl VARCHAR(20) CHARACTER SET latin1, c3 VARCHAR(20) CHARACTER SET utf8mb3, bn BINARY(4),
      vb VARBINARY(10), bl BLOB, e ENUM('a','b','c'), s SET('x','y','z'), j JSON, g GEOMETRY,
      p POINT, ip INET6, u UUID, gens INT AS (i * 2) STORED, inv INT INVISIBLE DEFAULT 7
    ) DEFAULT CHARSET=utf8mb4";

const TYPES_ROWS: &str = "SET time_zone = '+00:00'; SET sql_mode = '';
     INSERT INTO w.types (id, ti, tiu, si, siu, miu, i, iu, bi, biu, d, d2, f, db, b, b3, dt, tm, tm6, dtm, dtm3,
       dtm6, ts, ts6, y, c, vc, tx, cl, c3, bn, vb, bl, e, s, j, g, p, ip, u) VALUES
     (1, 127, 255, 32767, 65535, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
      '99999999999999999999999999999999999.999999999999999999999999999999', 12345678.90, 3.4028235e38,
      1.7976931348623157e308, b'1111111111111111111111111111111111111111111111111111111111111111', b'101',
      '9999-12-31', '838:59:59', '-838:59:59.000000', '9999-12-31 23:59:59', '2026-11-27 12:34:56.789',
      '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999', 2155,
      'héllo', 'emoji 😀 and ñ \\\\ '' \"', 'line\\nbreak\\ttab', 'café €', '日本語', X'0102', X'00FF', X'DEADBEEF',
      'c', 'x,z', '{\"a\": [1, 2.5, \"x\"],\\n \"b\": null}', ST_GeomFromText('LINESTRING(0 0,1 1)'),
      POINT(1, 2), '2001:db8::1', '123e4567-e89b-12d3-a456-426614174000'),
     (2, -128, 0, -32768, 0, 0, -2147483648, 0, -9223372036854775808, 0,
      '-99999999999999999999999999999999999.999999999999999999999999999999', -0.01, 0.1, -2.5e-300,
      b'0', b'000', '0000-00-00', '-00:00:01', '00:00:00.000001', '0000-00-00 00:00:00',
      '1000-01-01 00:00:00.001', '1970-01-01 00:00:00.000001', '0000-00-00 00:00:00',
      '1970-01-01 00:00:01.000001', 0, '', '', '', '', '', X'', X'', X'', '', '', '[]',
      ST_GeomFromText('POINT(0 0)'), POINT(-1.5, 0), '::ffff:1.2.3.4', '00000000-0000-0000-0000-000000000000'),
     (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL)";

/// The fixed part of the workload: every translated DDL kind.
const WORKLOAD: &[&str] = &[
    "CREATE DATABASE w",
    TYPES_TABLE,
    TYPES_ROWS,
    // Long enough for the capture's rows event parser (see tests/mysql.rs).
    "INSERT INTO w.types (id, i, vc) VALUES (4, 4, REPEAT('four', 20))",
    "CREATE TABLE w.nopk (a INT, b VARCHAR(20), c DOUBLE, f FLOAT, t DATETIME(6), j JSON) DEFAULT CHARSET=utf8mb4",
    "INSERT INTO w.nopk VALUES (1, 'x', 0.5, 0.1, '2020-01-01 00:00:00.5', '{\"k\":  [1,  2]}'),
       (1, 'x', 0.5, 0.1, '2020-01-01 00:00:00.5', '{\"k\":  [1,  2]}'),
       (2, NULL, NULL, NULL, NULL, NULL), (3, 'Abc', 1e-10, 3.3, NULL, '1'), (3, 'abc', 1e-10, 3.3, NULL, '1')",
    "CREATE TABLE w.parent (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB",
    "CREATE TABLE w.child (id INT PRIMARY KEY, parent_id INT NOT NULL, v INT,
       FOREIGN KEY (parent_id) REFERENCES w.parent (id)) ENGINE=InnoDB",
    "BEGIN; INSERT INTO w.parent VALUES (1, 'one'), (2, 'two');
     INSERT INTO w.child VALUES (10, 1, 0), (11, 1, 0), (20, 2, 0); COMMIT",
    "SET sql_mode = ''; BEGIN; UPDATE w.types SET i = i - 1, vc = 'changed', f = 1.5 WHERE id = 1;
     UPDATE w.types SET id = 20 WHERE id = 2; DELETE FROM w.types WHERE id = 4; COMMIT",
    "UPDATE w.nopk SET b = 'y' WHERE a = 1 LIMIT 1",
    "DELETE FROM w.nopk WHERE a = 3 AND b = 'abc' COLLATE utf8mb4_bin",
    "UPDATE w.nopk SET c = NULL WHERE a = 2",
    "ALTER TABLE w.child ADD COLUMN note VARCHAR(30) NOT NULL DEFAULT 'n/a'",
    "INSERT INTO w.child VALUES (31, 1, 2, 'new column')",
    "UPDATE w.child SET note = 'set later' WHERE id = 10",
    "BEGIN; INSERT INTO w.parent VALUES (4, 'four'); UPDATE w.parent SET name = 'FOUR' WHERE id = 4;
     INSERT INTO w.parent SELECT seq, CONCAT('p', seq) FROM w.seq_100_to_1299; COMMIT",
    "ALTER TABLE w.nopk ADD INDEX (a)",
    "DELETE FROM w.parent WHERE id BETWEEN 500 AND 700",
    "ALTER TABLE w.child RENAME COLUMN v TO val, MODIFY note VARCHAR(40) NULL",
    "ALTER TABLE w.child CHANGE val amount BIGINT NOT NULL DEFAULT 0, ALGORITHM=COPY",
    "INSERT INTO w.child (id, parent_id, amount) VALUES (40, 1, 9000000000)",
    "CREATE TABLE w.tmp (id INT PRIMARY KEY, x TEXT, drop_me INT)",
    "INSERT INTO w.tmp VALUES (1, 'a', 1), (2, 'b', 2)",
    "ALTER TABLE w.tmp DROP COLUMN drop_me",
    "RENAME TABLE w.tmp TO w.renamed",
    "INSERT INTO w.renamed VALUES (3, 'c')",
    "CREATE TABLE w.gone (id INT PRIMARY KEY)",
    "INSERT INTO w.gone VALUES (1)",
    "DROP TABLE w.gone",
    "CREATE TABLE w.trunc (id INT PRIMARY KEY, v INT)",
    "INSERT INTO w.trunc VALUES (1, 1), (2, 2)",
    "TRUNCATE TABLE w.trunc",
    "INSERT INTO w.trunc VALUES (3, 3)",
    "CREATE TABLE w.r (id INT PRIMARY KEY, k INT, v VARCHAR(40), UNIQUE KEY uk (k))",
];

/// A random mix on `w.r` and `w.nopk` (seeded: the same run every time):
/// single-row and multi-row transactions of inserts, updates (key changes
/// included), deletes, and some DDL in between.
fn random_workload(seed: u64, n: usize) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut next_id = 1;
    let mut extra_column = false;
    for step in 0..n {
        if step % 60 == 59 {
            out.push(if extra_column {
                "ALTER TABLE w.r DROP COLUMN extra".to_owned()
            } else {
                "ALTER TABLE w.r ADD COLUMN extra INT NULL".to_owned()
            });
            extra_column = !extra_column;
            continue;
        }
        let statements = rng.gen_range(1..=4);
        let mut txn = vec!["BEGIN".to_owned()];
        for _ in 0..statements {
            let id = rng.gen_range(1..next_id + 3);
            match rng.gen_range(0..10) {
                0..=3 => {
                    let rows: Vec<String> = (0..rng.gen_range(1..4))
                        .map(|_| {
                            next_id += 1;
                            format!(
                                "({next_id}, {}, 'v{}')",
                                next_id * 10,
                                rng.gen_range(0..1000)
                            )
                        })
                        .collect();
                    txn.push(format!(
                        "INSERT INTO w.r (id, k, v) VALUES {}",
                        rows.join(", ")
                    ));
                }
                4 | 5 => txn.push(format!(
                    "UPDATE w.r SET v = CONCAT(v, '+'), k = k + 1 WHERE id = {id}"
                )),
                6 => txn.push(format!("UPDATE w.r SET id = id + 100000 WHERE id = {id}")),
                7 => txn.push(format!("DELETE FROM w.r WHERE id = {id}")),
                8 => txn.push(format!(
                    "INSERT INTO w.nopk (a, b) VALUES ({}, 'r{}')",
                    rng.gen_range(0..5),
                    rng.gen_range(0..3)
                )),
                _ => txn.push(format!(
                    "DELETE FROM w.nopk WHERE a = {} AND b = 'r{}' LIMIT 1",
                    rng.gen_range(0..5),
                    rng.gen_range(0..3)
                )),
            }
        }
        txn.push("COMMIT".to_owned());
        out.push(txn.join("; "));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_a_captured_workload_exactly_once() {
    if !servers_available() {
        skip!("mariadbd or postgres is not installed");
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    let pg = start_pg();
    for stmt in WORKLOAD {
        if let Err(e) = src.exec(stmt).await {
            panic!("{stmt}: {e:#}");
        }
    }
    let mut refused = 0;
    for stmt in random_workload(7, 300) {
        // A random key change may collide with the unique key: the source
        // refuses it, and so it never reaches the stream.
        if src.exec(&stmt).await.is_err() {
            refused += 1;
        }
    }
    assert!(
        refused < 30,
        "{refused} random transactions refused by the source"
    );
    let r_rows = src.sql("SELECT COUNT(*) FROM w.r").expect("count");
    assert!(
        r_rows.parse::<u32>().unwrap_or(0) > 100,
        "w.r has {r_rows} rows"
    );
    let txns = capture_all(&src).await;
    assert!(
        txns.iter().filter(|t| t.ddl.is_some()).count() >= 20,
        "DDL captured: {}",
        txns.len()
    );
    let stream = "a.w";
    let all = batches(stream, &txns, 7);
    let half = all.len() / 2;

    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    assert_eq!(sink.name(), "postgres");
    assert!(sink.guarantees().atomic && sink.guarantees().durable);
    assert_eq!(sink.checkpoint(stream).await.expect("checkpoint").offset, 0);
    for b in &all[..half] {
        sink.apply(b).await.expect("apply first half");
    }
    let at = all[half - 1].last_offset;
    drop(sink);

    // A new sink resumes from its checkpoint, position included.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("reconnect");
    let cp = sink.checkpoint(stream).await.expect("checkpoint");
    assert_eq!(cp.offset, at);
    let want = txns[at as usize - 1]
        .position
        .as_ref()
        .expect("captured position");
    let got = cp.position.as_ref().expect("stored position");
    assert_eq!(
        (&got.gtid, &got.file, got.pos, &got.gtid_set),
        (&want.gtid, &want.file, want.pos, &want.gtid_set)
    );
    for b in all.iter().filter(|b| b.last_offset > cp.offset) {
        sink.apply(b).await.expect("apply second half");
    }
    let n = txns.len() as u64;
    assert_eq!(sink.checkpoint(stream).await.expect("checkpoint").offset, n);
    assert_same(&src, &pg).await;
    assert_eq!(
        pg.sql("SELECT \"offset\", origin FROM drc.checkpoints WHERE stream = 'a.w'")
            .expect("checkpoint row"),
        format!("{n}|region-a")
    );

    // Everything delivered again: nothing applied twice, no DDL run again.
    for b in &all {
        sink.apply(b).await.expect("apply again");
    }
    assert_same(&src, &pg).await;

    // One batch of everything into a fresh target: DDL mid-batch, long
    // insert runs through COPY.
    let pg2 = start_pg();
    let mut sink2 = PostgresSink::connect(config(&pg2, ConflictPolicy::Fail))
        .await
        .expect("connect 2");
    sink2
        .apply(&batches(stream, &txns, txns.len())[0])
        .await
        .expect("one big batch");
    assert_same(&src, &pg2).await;
    assert_eq!(sink2.checkpoint(stream).await.expect("cp").offset, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_torture_table_follows_the_documented_mapping() {
    if !servers_available() {
        skip!("mariadbd or postgres is not installed");
    }
    let src = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    let pg = start_pg();
    for stmt in ["CREATE DATABASE w", TYPES_TABLE, TYPES_ROWS] {
        src.exec(stmt)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e:#}"));
    }
    let txns = capture_all(&src).await;
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    for b in batches("t", &txns, 1) {
        sink.apply(&b).await.expect("apply");
    }
    // Column types per the mapping table of the sink's docs.
    let types = pg
        .sql(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'w.types'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .expect("types");
    let want = "id integer|ti smallint|tiu smallint|si smallint|siu integer|miu integer|i integer|\
        iu bigint|bi bigint|biu numeric(20,0)|d numeric(65,30)|d2 numeric(10,2)|f real|\
        db double precision|b bit(64)|b3 bit(3)|dt date|tm interval|tm6 interval|\
        dtm timestamp(0) without time zone|dtm3 timestamp(3) without time zone|\
        dtm6 timestamp(6) without time zone|ts timestamp(0) with time zone|\
        ts6 timestamp(6) with time zone|y smallint|c character varying(10)|\
        vc character varying(300)|tx text|cl character varying(20)|c3 character varying(20)|\
        bn bytea|vb bytea|bl bytea|e text|s text|j jsonb|g bytea|p bytea|ip inet|u uuid|\
        gens integer|inv integer";
    assert_eq!(types.replace('\n', "|"), want);
    // Values, row by row, normalized per the mapping.
    assert_same(&src, &pg).await;
    // A few values spelled out, as PostgreSQL shows them.
    assert_eq!(
        pg.sql("SET TimeZone = 'UTC'; SELECT dt, dtm, ts, tm, b3, biu, encode(p, 'hex') FROM w.types WHERE id = 2")
            .expect("row 2"),
        "-infinity|-infinity|-infinity|-00:00:01|000|0|000000000101000000000000000000f8bf0000000000000000"
    );
    assert_eq!(
        pg.sql("SELECT tm, f, b3, biu, ip, u FROM w.types WHERE id = 1").expect("row 1"),
        "838:59:59|3.4028235e+38|101|18446744073709551615|2001:db8::1|123e4567-e89b-12d3-a456-426614174000"
    );
}

// ---- hand-built transactions ----

fn col(name: &str, sql_type: &str) -> pb::Column {
    pb::Column {
        name: name.into(),
        sql_type: sql_type.into(),
        nullable: true,
        charset: String::new(),
    }
}

fn val(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

fn row(id: i64, v: &str) -> Option<pb::Row> {
    Some(pb::Row {
        values: vec![val(Kind::Int(id)), val(Kind::Text(v.into()))],
    })
}

/// A change of table `d.<table> (id INT PRIMARY KEY, v VARCHAR(20))`.
fn change(
    op: pb::Op,
    table: &str,
    before: Option<(i64, &str)>,
    after: Option<(i64, &str)>,
) -> pb::RowChange {
    pb::RowChange {
        op: op as i32,
        schema: "d".into(),
        table: table.into(),
        columns: vec![col("id", "int(11)"), col("v", "varchar(20)")],
        primary_key: vec![0],
        before: before.and_then(|(i, v)| row(i, v)),
        after: after.and_then(|(i, v)| row(i, v)),
    }
}

fn ins(table: &str, id: i64, v: &str) -> pb::RowChange {
    change(pb::Op::Insert, table, None, Some((id, v)))
}

fn upd(table: &str, id: i64, old: &str, new: &str) -> pb::RowChange {
    change(pb::Op::Update, table, Some((id, old)), Some((id, new)))
}

fn del(table: &str, id: i64, old: &str) -> pb::RowChange {
    change(pb::Op::Delete, table, Some((id, old)), None)
}

fn txn(seq: u64, changes: Vec<pb::RowChange>) -> pb::Transaction {
    pb::Transaction {
        position: Some(pb::SourcePosition {
            gtid: format!("0-1-{seq}"),
            file: "binlog.000001".into(),
            pos: 100 + seq,
            gtid_set: format!("0-1-{seq}"),
        }),
        changes,
        ..Default::default()
    }
}

fn ddl_txn(seq: u64, db: &str, statement: &str) -> pb::Transaction {
    pb::Transaction {
        ddl: Some(pb::Ddl {
            statement: statement.into(),
            database: db.into(),
        }),
        ..txn(seq, Vec::new())
    }
}

fn batch(stream: &str, first: u64, txns: Vec<pb::Transaction>) -> Batch {
    let offsets: Vec<u64> = (first..first + txns.len() as u64).collect();
    Batch {
        stream: stream.into(),
        last_offset: first + txns.len() as u64 - 1,
        offsets,
        transactions: txns,
    }
}

fn rows_of(pg: &Postgres, table: &str) -> String {
    pg.sql(&format!("SELECT id, v FROM d.{table} ORDER BY id"))
        .expect("rows")
        .replace('\n', " ; ")
}

fn offset_of(pg: &Postgres, stream: &str) -> String {
    pg.sql(&format!(
        "SELECT \"offset\" FROM drc.checkpoints WHERE stream = '{stream}'"
    ))
    .expect("checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policies() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    pg.sql(
        "CREATE SCHEMA d;
         CREATE TABLE d.f (id int PRIMARY KEY, v varchar(20));
         CREATE TABLE d.i (id int PRIMARY KEY, v varchar(20));
         CREATE TABLE d.o (id int PRIMARY KEY, v varchar(20));
         INSERT INTO d.f VALUES (1, 'target'); INSERT INTO d.i VALUES (1, 'target');
         INSERT INTO d.o VALUES (1, 'target');",
    )
    .expect("tables");
    let conflicting = |t: &str| {
        vec![
            txn(1, vec![ins(t, 5, "five")]),
            // a taken key inside a run of inserts
            txn(
                2,
                vec![ins(t, 6, "six"), ins(t, 1, "source"), ins(t, 7, "seven")],
            ),
            // missing rows
            txn(3, vec![upd(t, 2, "old", "new"), del(t, 3, "gone")]),
            txn(4, vec![upd(t, 5, "five", "FIVE")]),
        ]
    };

    // fail: the error names the exact offset and table; nothing of the
    // batch is visible; the checkpoint did not move.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    let err = sink
        .apply(&batch("f", 1, conflicting("f")))
        .await
        .expect_err("conflict");
    match &err {
        ApplyError::Conflict { offset, table, .. } => {
            assert_eq!((*offset, table.as_str()), (2, "d.f"), "{err}");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(!err.is_transient());
    assert_eq!(rows_of(&pg, "f"), "1|target");
    assert_eq!(sink.checkpoint("f").await.expect("cp").offset, 0);
    // A missing row under fail, after a good batch; the sink goes on after.
    sink.apply(&batch("f", 1, vec![txn(1, vec![ins("f", 5, "five")])]))
        .await
        .expect("good batch");
    let err = sink
        .apply(&batch(
            "f",
            2,
            vec![
                txn(2, vec![ins("f", 8, "eight")]),
                txn(3, vec![del("f", 3, "gone")]),
            ],
        ))
        .await
        .expect_err("missing row");
    assert!(
        matches!(err, ApplyError::Conflict { offset: 3, .. }),
        "{err}"
    );
    assert_eq!(rows_of(&pg, "f"), "1|target ; 5|five");
    assert_eq!(sink.checkpoint("f").await.expect("cp").offset, 1);
    sink.apply(&batch("f", 2, vec![txn(2, vec![ins("f", 8, "eight")])]))
        .await
        .expect("after a failure");
    assert_eq!(rows_of(&pg, "f"), "1|target ; 5|five ; 8|eight");
    assert_eq!(
        pg.sql("SELECT count(*) FROM drc.conflicts").expect("n"),
        "0"
    );

    // ignore: target rows stay, every conflict recorded with both images.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Ignore))
        .await
        .expect("connect");
    sink.apply(&batch("i", 1, conflicting("i")))
        .await
        .expect("ignore");
    assert_eq!(rows_of(&pg, "i"), "1|target ; 5|FIVE ; 6|six ; 7|seven");
    assert_eq!(
        pg.sql(
            "SELECT \"offset\", gtid, db, tbl, op, kind, policy FROM drc.conflicts
             WHERE stream = 'i' ORDER BY id"
        )
        .expect("conflicts"),
        "2|0-1-2|d|i|insert|duplicate|ignore\n3|0-1-3|d|i|update|missing|ignore\n\
         3|0-1-3|d|i|delete|missing|ignore"
    );
    assert_eq!(
        pg.sql(
            "SELECT before_image, after_image, target_image FROM drc.conflicts
             WHERE stream = 'i' ORDER BY id"
        )
        .expect("images"),
        "|{\"v\": \"source\", \"id\": 1}|{\"v\": \"target\", \"id\": 1}\n\
         {\"v\": \"old\", \"id\": 2}|{\"v\": \"new\", \"id\": 2}|\n\
         {\"v\": \"gone\", \"id\": 3}||"
    );
    assert_eq!(offset_of(&pg, "i"), "4");

    // overwrite: the source's image wins; conflicts recorded.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Overwrite))
        .await
        .expect("connect");
    sink.apply(&batch("o", 1, conflicting("o")))
        .await
        .expect("overwrite");
    assert_eq!(
        rows_of(&pg, "o"),
        "1|source ; 2|new ; 5|FIVE ; 6|six ; 7|seven"
    );
    assert_eq!(
        pg.sql("SELECT \"offset\", kind, policy, message FROM drc.conflicts WHERE stream = 'o' ORDER BY id")
            .expect("conflicts"),
        "2|duplicate|overwrite|insert duplicate on d.o: after image written\n\
         3|missing|overwrite|update missing on d.o: after image written\n\
         3|missing|overwrite|delete missing on d.o: nothing to do"
    );
    // An UPDATE onto a taken key under overwrite: recorded, skipped.
    sink.apply(&batch(
        "o",
        5,
        vec![txn(
            5,
            vec![change(
                pb::Op::Update,
                "o",
                Some((6, "six")),
                Some((7, "six")),
            )],
        )],
    ))
    .await
    .expect("update onto a taken key");
    assert_eq!(
        rows_of(&pg, "o"),
        "1|source ; 2|new ; 5|FIVE ; 6|six ; 7|seven"
    );
    assert_eq!(
        pg.sql("SELECT kind, message FROM drc.conflicts WHERE stream = 'o' AND \"offset\" = 5")
            .expect("conflict"),
        "duplicate|update duplicate on d.o: update skipped (another row holds the key)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_stops_at_its_offset_with_nothing_committed() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    pg.sql("CREATE ROLE weak LOGIN").expect("role");

    // No privilege to create the sink's schema.
    let weak = PostgresSinkConfig::new(pg.url_for("weak", "postgres"));
    let err = PostgresSink::connect(weak.clone())
        .await
        .expect_err("no CREATE");
    let msg = err.to_string();
    assert!(
        msg.contains("grant the sink's user CREATE on the database"),
        "{msg}"
    );

    // The schema exists and is the user's, but the table is not theirs.
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect as owner");
    pg.sql(
        "GRANT USAGE ON SCHEMA drc TO weak; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA drc TO weak;
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA drc TO weak;
         CREATE SCHEMA d; GRANT USAGE ON SCHEMA d TO weak;
         CREATE TABLE d.t (id int PRIMARY KEY, v varchar(20));
         CREATE TABLE d.short (id int PRIMARY KEY, v varchar(3));
         CREATE TABLE d.other (id int PRIMARY KEY, w text)",
    )
    .expect("setup");
    let mut weak_sink = PostgresSink::connect(weak).await.expect("connect as weak");
    let err = weak_sink
        .apply(&batch("p", 1, vec![txn(1, vec![ins("t", 1, "a")])]))
        .await
        .expect_err("no INSERT privilege");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 1, .. })
            && msg.contains("42501")
            && msg.contains("grant the sink's user INSERT"),
        "{msg}"
    );
    assert_eq!(offset_of(&pg, "p"), "");

    // A missing table, a table with different columns.
    for (table, needle) in [
        ("missing", "is missing in the target"),
        (
            "other",
            "column(s) v missing in the target table \"d\".\"other\" (it has: id, w)",
        ),
    ] {
        let err = sink
            .apply(&batch(
                "m",
                1,
                vec![
                    txn(1, vec![ins("t", 1, "a")]),
                    txn(2, vec![ins(table, 1, "a")]),
                ],
            ))
            .await
            .expect_err("table mismatch");
        let msg = err.to_string();
        assert!(
            matches!(err, ApplyError::Definite { offset: 2, .. }) && msg.contains(needle),
            "{msg}"
        );
        assert_eq!(rows_of(&pg, "t"), "");
        assert_eq!(offset_of(&pg, "m"), "");
    }

    // Values PostgreSQL refuses: the server's (too long for varchar(3)) in
    // a COPY run across transactions, and one the sink refuses itself (a
    // NUL in text). The error names the exact offset; nothing is committed.
    let mut long_run: Vec<pb::Transaction> = (1..=40)
        .map(|i| txn(i, vec![ins("short", i as i64, "ok")]))
        .collect();
    long_run[29] = txn(30, vec![ins("short", 30, "far too long")]);
    let err = sink
        .apply(&batch("v", 1, long_run))
        .await
        .expect_err("too long");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 30, .. }) && msg.contains("22001"),
        "{msg}"
    );
    assert!(
        !msg.contains("far too long"),
        "no row values in errors: {msg}"
    );
    assert_eq!(pg.sql("SELECT count(*) FROM d.short").expect("n"), "0");
    let err = sink
        .apply(&batch(
            "v",
            1,
            vec![
                txn(1, vec![ins("t", 1, "a")]),
                txn(2, vec![ins("t", 2, "b")]),
                txn(3, vec![ins("t", 3, "nul\0here")]),
            ],
        ))
        .await
        .expect_err("NUL");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 3, .. })
            && msg.contains("column v")
            && msg.contains("NUL")
            && msg.contains("source GTID 0-1-3"),
        "{msg}"
    );
    assert_eq!(rows_of(&pg, "t"), "");
    assert_eq!(offset_of(&pg, "v"), "");

    // DDL with no translation stops the stream, unless skipped.
    let view = || {
        vec![
            txn(1, vec![ins("t", 1, "a")]),
            ddl_txn(2, "d", "CREATE VIEW vv AS SELECT 1"),
            txn(3, vec![ins("t", 2, "b")]),
        ]
    };
    let err = sink
        .apply(&batch("ddl", 1, view()))
        .await
        .expect_err("view");
    let msg = err.to_string();
    assert!(
        matches!(err, ApplyError::Definite { offset: 2, .. })
            && msg.contains("no PostgreSQL translation")
            && msg.contains("on_unsupported_ddl"),
        "{msg}"
    );
    assert_eq!(rows_of(&pg, "t"), "");
    let mut skipping = PostgresSink::connect(PostgresSinkConfig {
        on_unsupported_ddl: UnsupportedDdl::Skip,
        ..config(&pg, ConflictPolicy::Fail)
    })
    .await
    .expect("connect");
    skipping
        .apply(&batch("ddl", 1, view()))
        .await
        .expect("skipped");
    assert_eq!(rows_of(&pg, "t"), "1|a ; 2|b");
    assert_eq!(offset_of(&pg, "ddl"), "3");

    // A failing translated DDL: definite at its offset, the batch rolled back.
    let err = sink
        .apply(&batch(
            "ddl2",
            1,
            vec![
                txn(1, vec![ins("t", 3, "c")]),
                ddl_txn(2, "d", "ALTER TABLE t ADD COLUMN v INT"),
            ],
        ))
        .await
        .expect_err("duplicate column");
    assert!(
        matches!(err, ApplyError::Definite { offset: 2, .. }) && err.to_string().contains("42701"),
        "{err}"
    );
    assert_eq!(rows_of(&pg, "t"), "1|a ; 2|b");

    // Rows of a missing table create it when configured to.
    let mut creating = PostgresSink::connect(PostgresSinkConfig {
        create_missing_tables: true,
        ..config(&pg, ConflictPolicy::Fail)
    })
    .await
    .expect("connect");
    creating
        .apply(&batch("c", 1, vec![txn(1, vec![ins("fresh", 1, "x")])]))
        .await
        .expect("create from the change");
    assert_eq!(rows_of(&pg, "fresh"), "1|x");
    assert_eq!(
        pg.sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'd.fresh'::regclass AND attnum > 0 ORDER BY attnum")
            .expect("types"),
        "integer\ncharacter varying(20)"
    );
}

/// `n` transactions of one INSERT each into `d.t` (ids 1..=n), with an
/// UPDATE of the pre-existing row 0 in the middle: a test holding a lock on
/// row 0 stops the batch there, half applied in its open transaction.
fn interruptible_batch(stream: &str, n: u64) -> Batch {
    let txns = (1..=n)
        .map(|i| {
            if i == n / 2 {
                txn(i, vec![upd("t", 0, "before", "after")])
            } else {
                txn(i, vec![ins("t", i as i64, "v")])
            }
        })
        .collect();
    batch(stream, 1, txns)
}

/// Waits until the sink's UPDATE waits for the lock on row 0; returns its
/// backend pid.
fn wait_for_blocked_batch(pg: &Postgres) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let pid = pg
            .sql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'UPDATE \"d\".\"t\"%' AND wait_event_type = 'Lock'")
            .unwrap_or_default();
        if !pid.is_empty() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the batch never reached the locked row");
}

/// Whether the batch is all there (with its checkpoint); panics if only a
/// part of it is.
fn all_or_nothing(pg: &Postgres, stream: &str, n: u64) -> bool {
    let rows = pg
        .sql("SELECT count(*) || '|' || (SELECT v FROM d.t WHERE id = 0) FROM d.t WHERE id > 0")
        .expect("count");
    let cp = offset_of(pg, stream);
    if rows == "0|before" {
        assert!(cp.is_empty() || cp == "0", "no rows, no checkpoint: {cp}");
        false
    } else {
        assert_eq!(
            rows,
            format!("{}|after", n - 1),
            "half a batch is visible (checkpoint {cp:?})"
        );
        assert_eq!(cp, n.to_string(), "all rows, the batch's checkpoint");
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_or_a_killed_server_leaves_all_or_nothing() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let mut pg = start_pg();
    pg.sql("CREATE SCHEMA d; CREATE TABLE d.t (id int PRIMARY KEY, v varchar(20))")
        .expect("table");
    let reset =
        "DELETE FROM d.t; INSERT INTO d.t VALUES (0, 'before'); DELETE FROM drc.checkpoints";
    let n = 2_000;
    let b = interruptible_batch("k", n);
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    pg.sql(reset).expect("reset");

    // The sink's backend is terminated mid-batch.
    let locker = pg_client(&pg).await;
    locker
        .batch_execute("BEGIN; SELECT * FROM d.t WHERE id = 0 FOR UPDATE")
        .await
        .expect("lock row 0");
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = sink.apply(&b).await;
            (sink, r)
        })
    };
    let pid = tokio::task::block_in_place(|| wait_for_blocked_batch(&pg));
    pg.sql(&format!("SELECT pg_terminate_backend({pid})"))
        .expect("terminate");
    let (mut sink, r) = task.await.expect("join apply");
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let err = r.expect_err("the batch failed");
    assert!(err.is_transient(), "a lost connection is transient: {err}");
    assert!(!all_or_nothing(&pg, "k", n), "nothing of the batch");
    assert_eq!(sink.checkpoint("k").await.expect("cp").offset, 0);
    sink.apply(&b).await.expect("retry");
    assert!(all_or_nothing(&pg, "k", n));

    // The server is killed (kill -9) mid-batch and restarted.
    pg.sql(reset).expect("reset");
    let locker = pg_client(&pg).await;
    locker
        .batch_execute("BEGIN; SELECT * FROM d.t WHERE id = 0 FOR UPDATE")
        .await
        .expect("lock row 0");
    let task = {
        let b = b.clone();
        tokio::spawn(async move {
            let r = sink.apply(&b).await;
            (sink, r)
        })
    };
    tokio::task::block_in_place(|| wait_for_blocked_batch(&pg));
    pg.kill9().expect("kill -9");
    let (mut sink, r) = task.await.expect("join apply");
    drop(locker);
    let err = r.expect_err("the batch failed");
    assert!(err.is_transient(), "a lost server is transient: {err}");
    pg.restart().expect("restart");
    assert!(
        !all_or_nothing(&pg, "k", n),
        "nothing of the batch after recovery"
    );
    assert_eq!(
        sink.checkpoint("k").await.expect("cp after restart").offset,
        0
    );
    sink.apply(&b).await.expect("retry after restart");
    assert!(all_or_nothing(&pg, "k", n));
}

/// An insert into a wider table `d.<table>` of mixed types.
fn wide_insert(table: &str, id: i64) -> pb::RowChange {
    let names = ["id", "v", "n", "t", "d", "b", "j"];
    pb::RowChange {
        op: pb::Op::Insert as i32,
        schema: "d".into(),
        table: table.into(),
        columns: names.iter().map(|n| col(n, "")).collect(),
        primary_key: vec![0],
        before: None,
        after: Some(pb::Row {
            values: vec![
                val(Kind::Int(id)),
                val(Kind::Text(format!("value number {id}"))),
                val(Kind::Decimal(format!("{id}.25"))),
                val(Kind::Datetime(pb::DateTime {
                    year: 2026,
                    month: 1 + (id % 12) as u32,
                    day: 1 + (id % 28) as u32,
                    hour: (id % 24) as u32,
                    minute: 30,
                    second: 15,
                    micros: 123_456,
                    fsp: 6,
                })),
                val(Kind::Double(id as f64 / 7.0)),
                val(Kind::Bytes(id.to_le_bytes().to_vec())),
                val(Kind::Json(format!("{{\"k\":{id},\"tags\":[\"a\",\"b\"]}}"))),
            ],
        }),
    }
}

/// COPY and multi-row INSERT write the same rows; prints how long each
/// takes for long runs (the figures in BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_multi_row_insert_write_the_same_rows() {
    if !Postgres::available() {
        skip!("postgres is not installed");
    }
    let pg = start_pg();
    pg.sql(
        "CREATE SCHEMA d; CREATE TABLE d.a (id int PRIMARY KEY, v varchar(40), n numeric(12,2),
           t timestamp(6), d double precision, b bytea, j jsonb);
         CREATE TABLE d.b (LIKE d.a INCLUDING ALL); CREATE TABLE d.c (LIKE d.a INCLUDING ALL)",
    )
    .expect("tables");
    let rows = 30_000;
    let txns = |t: &str, per_txn: i64| -> Vec<pb::Transaction> {
        (0..rows / per_txn)
            .map(|k| {
                txn(
                    k as u64 + 1,
                    (0..per_txn)
                        .map(|i| wide_insert(t, k * per_txn + i))
                        .collect(),
                )
            })
            .collect()
    };
    let mut sink = PostgresSink::connect(config(&pg, ConflictPolicy::Fail))
        .await
        .expect("connect");
    let mut timings = Vec::new();
    for (table, copy_min_rows, per_txn) in
        [("a", 16, 1), ("b", usize::MAX, 1), ("c", usize::MAX, rows)]
    {
        sink.set_copy_min_rows(copy_min_rows);
        let b = batch(table, 1, txns(table, per_txn));
        let started = Instant::now();
        sink.apply(&b).await.expect("apply");
        timings.push(started.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!(
        "{rows} rows of 7 columns in one batch: COPY {:.0} ms, multi-row INSERT {:.0} ms ({:.2}x)",
        timings[0],
        timings[1],
        timings[1] / timings[0]
    );
    for t in ["b", "c"] {
        assert_eq!(
            pg.sql(&format!(
                "SELECT count(*) FROM ((SELECT * FROM d.a EXCEPT SELECT * FROM d.{t}) UNION ALL
                   (SELECT * FROM d.{t} EXCEPT SELECT * FROM d.a)) x"
            ))
            .expect("diff"),
            "0",
            "d.a and d.{t} hold the same rows"
        );
    }
    assert_eq!(
        pg.sql("SELECT count(*), sum(id), min(t), max(j->>'k') FROM d.a")
            .expect("a"),
        format!(
            "{rows}|{}|2026-01-01 00:30:15.123456|9999",
            rows * (rows - 1) / 2
        )
    );
}
