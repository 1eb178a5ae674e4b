//! The PostgreSQL sink against real servers, with a workload captured from
//! MariaDB (the capture's type-torture table, tables without a key, DDL of
//! every translated kind, a random mix of inserts, updates, deletes and
//! multi-row transactions) applied in batches: the target tables equal the
//! source row by row, per the documented type mapping; batches delivered
//! again and a new sink resuming from its checkpoint apply nothing twice.
//! Hand-built failures are in `postgres_faults.rs`.

use std::collections::BTreeMap;

use drc_apply::sink::postgres::{ConflictPolicy, PostgresSink};
use drc_apply::Sink;
use drc_tests::{skip, MariaDb, MariaDbOptions, Postgres};
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};

mod common;
mod pg_common;
use common::{batches, capture_all};
use pg_common::{config, pg_client, rows_text, start_pg};

fn servers_available() -> bool {
    MariaDb::available() && Postgres::available()
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

const TYPES_TABLE: &str = "CREATE TABLE w.types (
      id INT PRIMARY KEY,
      ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, miu MEDIUMINT UNSIGNED,
      i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, d DECIMAL(65,30), d2 DECIMAL(10,2),
      f FLOAT, db DOUBLE, b BIT(64), b3 BIT(3), dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME,
      dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL,
      ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR, c CHAR(10), vc VARCHAR(300), tx TEXT,
      cl VARCHAR(20) CHARACTER SET latin1, c3 VARCHAR(20) CHARACTER SET utf8mb3, bn BINARY(4),
      vb VARBINARY(10), bl BLOB, e ENUM('a','b','c'), s SET('x','y','z'), j JSON, g GEOMETRY,
      p POINT, ip INET6, u UUID, gen INT AS (i + 1) VIRTUAL, gens INT AS (i * 2) STORED,
      inv INT INVISIBLE DEFAULT 7
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
    "CREATE TABLE w.bits (id INT PRIMARY KEY, b BIT(3) NOT NULL DEFAULT b'101')",
    "INSERT INTO w.bits (id) VALUES (1)",
    "CREATE OR REPLACE TABLE w.bits (id INT PRIMARY KEY, b BIT(3) NOT NULL DEFAULT b'011',
       x VARBINARY(4) DEFAULT X'0A0B', t TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))",
    "INSERT INTO w.bits (id) VALUES (2)",
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
        gen integer|gens integer|inv integer";
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
