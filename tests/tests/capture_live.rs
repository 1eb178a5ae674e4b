//! Live capture against a throwaway MariaDB: every column type, transactions
//! and rollbacks, DDL mid-stream (also with MINIMAL metadata and a restart at
//! an old position), compressed binlogs, lost connections, and the start-up
//! checks that refuse a badly configured source.

#![recursion_limit = "512"]

use std::path::PathBuf;

use drc_capture::capture::{self, CaptureOptions, StartAt};
use drc_capture::error::CaptureError;
use drc_capture::output::jsonl;
use drc_capture::position::BinlogPos;
use drc_tests::{skip, MariaDb, MariaDbOptions};
use serde_json::{json, Value};

/// Captures from `start` to the end of the binlog; one JSON object per transaction.
async fn capture_json(
    url: &str,
    start: StartAt,
    history: Option<PathBuf>,
) -> Result<Vec<Value>, CaptureError> {
    let mut opts = CaptureOptions::new(url, start);
    opts.stop_at_end = true;
    opts.schema_history = history;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    capture::run(opts, |mut t| {
        let mut line = Vec::new();
        jsonl::write_txn(&mut line, &mut t, &mut buf)?;
        out.push(serde_json::from_slice(&line).expect("valid JSON line"));
        Ok(())
    })
    .await?;
    Ok(out)
}

/// All row changes of `db.table`, in stream order.
fn changes_of<'a>(txns: &'a [Value], db: &str, table: &str) -> Vec<&'a Value> {
    txns.iter()
        .filter_map(|t| t.get("changes").and_then(Value::as_array))
        .flatten()
        .filter(|c| c["db"] == db && c["table"] == table)
        .collect()
}

fn start(opts: MariaDbOptions) -> Option<MariaDb> {
    if !MariaDb::available() {
        return None;
    }
    Some(MariaDb::start(opts).expect("start mariadb"))
}

fn expected_torture() -> Vec<Value> {
    vec![
        json!({"id": 1, "ti": 127, "tiu": 255, "si": 32767, "siu": 65535, "mi": 8388607, "miu": 16777215,
            "i": 2147483647, "iu": 4294967295u64, "bi": 9223372036854775807i64, "biu": 18446744073709551615u64,
            "d": "99999999999999999999999999999999999.999999999999999999999999999999", "d2": "12345678.90",
            "f": 3.5, "db": 1.7976931348623157e308, "b": 18446744073709551615u64, "b3": 5,
            "dt": "9999-12-31", "tm": "838:59:59", "tm6": "-838:59:59.000000", "dtm": "9999-12-31 23:59:59",
            "dtm3": "2026-11-27 12:34:56.789", "dtm6": "9999-12-31 23:59:59.999999",
            "ts": "2038-01-19 03:14:07", "ts6": "2038-01-19 03:14:07.999999", "y": 2155,
            "c": "héllo", "vc": "emoji 😀 and ñ", "tx": "long text", "cl": "café €", "c3": "日本語",
            "bn": {"base64": "AQIAAA=="}, "vb": {"base64": "AP8="}, "bl": {"base64": "3q2+7w=="},
            "e": "c", "s": ["x", "z"], "j": {"a": [1, 2.5, "x"], "b": null},
            "g": {"wkb_base64": "AQIAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPA/AAAAAAAA8D8=", "srid": 0},
            "p": {"wkb_base64": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": 0},
            "ip": "2001:db8::1", "u": "123e4567-e89b-12d3-a456-426614174000",
            "gen": 2147483647, "gens": 2147483647, "inv": 7}),
        json!({"id": 2, "ti": -128, "tiu": 0, "si": -32768, "siu": 0, "mi": -8388608, "miu": 0,
            "i": -2147483648i64, "iu": 0, "bi": -9223372036854775808i64, "biu": 0,
            "d": "-99999999999999999999999999999999999.999999999999999999999999999999", "d2": "-0.01",
            "f": -1.25, "db": -2.5e-300, "b": 0, "b3": 0,
            "dt": "0000-00-00", "tm": "-0:00:01", "tm6": "0:00:00.000001", "dtm": "0000-00-00 00:00:00",
            "dtm3": "1000-01-01 00:00:00.001", "dtm6": "1970-01-01 00:00:00.000001",
            "ts": "0000-00-00 00:00:00", "ts6": "1970-01-01 00:00:01.000001", "y": 0,
            "c": "", "vc": "", "tx": "", "cl": "", "c3": "",
            "bn": {"base64": "AAAAAA=="}, "vb": {"base64": ""}, "bl": {"base64": ""},
            "e": "", "s": [], "j": [],
            "g": {"wkb_base64": "AQEAAAAAAAAAAAAAAAAAAAAAAAAA", "srid": 0},
            "p": {"wkb_base64": "AQEAAAAAAAAAAAD4vwAAAAAAAAAA", "srid": 0},
            "ip": "::ffff:1.2.3.4", "u": "00000000-0000-0000-0000-000000000000",
            "gen": -2147483647i64, "gens": -2147483648i64, "inv": 7}),
    ]
}

async fn torture(row_metadata: &str) {
    let Some(db) = start(MariaDbOptions {
        row_metadata: row_metadata.into(),
        ..Default::default()
    }) else {
        skip!("mariadbd is not installed");
    };
    db.exec(drc_tests::torture::DDL)
        .await
        .expect("create torture table");
    let hist = tempfile::tempdir().expect("tempdir");
    let history = hist.path().join("schema.jsonl");
    // With MINIMAL metadata the names come from the schema history: start
    // capturing (snapshot) before the rows exist.
    let head = capture_json(&db.url(), StartAt::FromNow, Some(history.clone()))
        .await
        .expect("snapshot at head");
    assert!(head.is_empty());
    let pos: Vec<String> = db
        .sql("SHOW MASTER STATUS")
        .expect("master status")
        .split('\t')
        .map(String::from)
        .collect();
    db.exec(drc_tests::torture::ROWS)
        .await
        .expect("insert torture rows");
    let txns = capture_json(
        &db.url(),
        StartAt::FilePos(BinlogPos::new(pos[0].clone(), pos[1].parse().expect("pos"))),
        Some(history),
    )
    .await
    .expect("capture");
    let rows = changes_of(&txns, "tt", "torture");
    assert_eq!(rows.len(), 3, "three inserts: {txns:?}");
    let expected = expected_torture();
    let mut wrong = Vec::new();
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got["op"], "insert");
        assert_eq!(got["pk"], json!(["id"]));
        let after = got["after"].as_object().expect("after image");
        for (k, v) in want.as_object().expect("object") {
            if after.get(k) != Some(v) {
                wrong.push(format!(
                    "row {} column {k}: got {:?}, want {v}",
                    want["id"],
                    after.get(k)
                ));
            }
        }
        assert_eq!(
            after.len(),
            want.as_object().map_or(0, |o| o.len()),
            "no extra columns"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A single all-NULL row is shorter in bytes than the table's column count.
    let pos: Vec<String> = db
        .sql("SHOW MASTER STATUS")
        .expect("master status")
        .split('\t')
        .map(String::from)
        .collect();
    db.exec("INSERT INTO tt.torture (id) VALUES (4)")
        .await
        .expect("insert a NULL row alone");
    let alone = capture_json(
        &db.url(),
        StartAt::FilePos(BinlogPos::new(pos[0].clone(), pos[1].parse().expect("pos"))),
        Some(hist.path().join("schema.jsonl")),
    )
    .await
    .expect("a lone NULL row decodes");
    let lone = changes_of(&alone, "tt", "torture");
    assert_eq!(lone.len(), 1);
    assert_eq!(lone[0]["after"]["id"], 4);
    assert_eq!(lone[0]["after"]["tx"], Value::Null);
    let nulls = rows[2]["after"].as_object().expect("row 3");
    for (k, v) in nulls {
        if !["id", "inv"].contains(&k.as_str()) {
            assert_eq!(v, &Value::Null, "column {k} of the NULL row");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_torture_full_metadata() {
    torture("FULL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_torture_minimal_metadata() {
    torture("MINIMAL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_whole_and_rollbacks_absent() {
    let Some(db) = start(MariaDbOptions::default()) else {
        skip!("mariadbd is not installed");
    };
    db.exec(
        "CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE shop.audit (id INT PRIMARY KEY AUTO_INCREMENT, note TEXT);
         START TRANSACTION; INSERT INTO shop.o VALUES (1,'a'),(2,'b'); UPDATE shop.o SET v='bb' WHERE id=2;
           DELETE FROM shop.o WHERE id=1; INSERT INTO shop.audit (note) VALUES ('x'); COMMIT;
         START TRANSACTION; INSERT INTO shop.o VALUES (10,'gone'); ROLLBACK;
         START TRANSACTION; INSERT INTO shop.o VALUES (3,'c'); SAVEPOINT s1; INSERT INTO shop.o VALUES (4,'undone');
           ROLLBACK TO SAVEPOINT s1; COMMIT;
         INSERT INTO shop.o VALUES (5,'autocommit');",
    )
    .await
    .expect("workload");
    let txns = capture_json(&db.url(), StartAt::FromStart, None)
        .await
        .expect("capture");
    let dml: Vec<&Value> = txns.iter().filter(|t| t.get("changes").is_some()).collect();
    assert_eq!(dml.len(), 3, "three committed transactions: {dml:#?}");
    let first = dml[0]["changes"].as_array().expect("changes");
    let ops: Vec<(&str, &str)> = first
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap_or(""),
                c["table"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("insert", "o"),
            ("insert", "o"),
            ("update", "o"),
            ("delete", "o"),
            ("insert", "audit")
        ]
    );
    assert_eq!(first[2]["before"], json!({"id": 2, "v": "b"}));
    assert_eq!(first[2]["after"], json!({"id": 2, "v": "bb"}));
    assert_eq!(first[3]["before"], json!({"id": 1, "v": "a"}));
    assert_eq!(first[3]["after"], Value::Null);
    let second: Vec<&Value> = dml[1]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .collect();
    assert_eq!(
        second.len(),
        1,
        "savepoint rollback leaves one row: {second:?}"
    );
    assert_eq!(second[0]["after"], json!({"id": 3, "v": "c"}));
    assert_eq!(
        dml[2]["changes"][0]["after"],
        json!({"id": 5, "v": "autocommit"})
    );
    let all = serde_json::to_string(&txns).expect("json");
    assert!(
        !all.contains("gone") && !all.contains("undone"),
        "rolled back rows must not appear"
    );
    // GTIDs are MariaDB's and increase; positions too.
    let gtids: Vec<&str> = dml
        .iter()
        .map(|t| t["gtid"].as_str().unwrap_or(""))
        .collect();
    assert!(gtids.iter().all(|g| g.starts_with("0-1-")), "{gtids:?}");
    let poss: Vec<u64> = dml.iter().map(|t| t["pos"].as_u64().unwrap_or(0)).collect();
    assert!(poss.windows(2).all(|w| w[0] < w[1]), "{poss:?}");
    // DDL is its own transaction with its default database.
    let ddl: Vec<&Value> = txns.iter().filter(|t| t.get("ddl").is_some()).collect();
    assert!(ddl.iter().any(|t| t["ddl"]
        .as_str()
        .is_some_and(|s| s.starts_with("CREATE TABLE shop.o"))));
    // Filters: only shop.audit.
    let mut opts = CaptureOptions::new(db.url(), StartAt::FromStart);
    opts.stop_at_end = true;
    opts.decoder.filter =
        drc_capture::filter::Filter::new(&["shop.audit".into()], &[]).expect("filter");
    let mut tables = Vec::new();
    capture::run(opts, |t| {
        for c in &t.txn.changes {
            tables.push(format!("{}.{}", c.schema, c.table));
        }
        Ok(())
    })
    .await
    .expect("filtered capture");
    assert_eq!(tables, vec!["shop.audit".to_string()]);
}

const DDL_SEQUENCE: &[&str] = &[
    "CREATE TABLE d.t (id INT PRIMARY KEY, a INT, b VARCHAR(10))",
    "INSERT INTO d.t VALUES (1, 10, 'one')",
    "ALTER TABLE d.t ADD COLUMN c INT DEFAULT 5 AFTER id",
    "INSERT INTO d.t VALUES (2, 22, 20, 'two')",
    "ALTER TABLE d.t DROP COLUMN a",
    "INSERT INTO d.t VALUES (3, 33, 'three')",
    "ALTER TABLE d.t RENAME COLUMN b TO name",
    "INSERT INTO d.t VALUES (4, 44, 'four')",
    "ALTER TABLE d.t MODIFY COLUMN name VARCHAR(10) FIRST",
    "INSERT INTO d.t VALUES ('five', 5, 55)",
    "RENAME TABLE d.t TO d.t2",
    "INSERT INTO d.t2 VALUES ('six', 6, 66)",
];

fn ddl_expected() -> Vec<(&'static str, Value)> {
    vec![
        ("t", json!({"id": 1, "a": 10, "b": "one"})),
        ("t", json!({"id": 2, "c": 22, "a": 20, "b": "two"})),
        ("t", json!({"id": 3, "c": 33, "b": "three"})),
        ("t", json!({"id": 4, "c": 44, "name": "four"})),
        ("t", json!({"name": "five", "id": 5, "c": 55})),
        ("t2", json!({"name": "six", "id": 6, "c": 66})),
    ]
}

fn inserts_of(txns: &[Value]) -> Vec<(String, Value)> {
    txns.iter()
        .filter_map(|t| t.get("changes").and_then(Value::as_array))
        .flatten()
        .map(|c| {
            (
                c["table"].as_str().unwrap_or("").to_string(),
                c["after"].clone(),
            )
        })
        .collect()
}

fn assert_ddl_inserts(got: &[(String, Value)], want: &[(&str, Value)]) {
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((gt, gv), (wt, wv)) in got.iter().zip(want) {
        assert_eq!(gt, wt);
        assert_eq!(gv, wv);
        // Column order follows the table at that time.
        let gk: Vec<&String> = gv
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        let wk: Vec<&String> = wv
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(gk, wk);
    }
}

async fn ddl_mid_stream(row_metadata: &str) {
    let Some(db) = start(MariaDbOptions {
        row_metadata: row_metadata.into(),
        ..Default::default()
    }) else {
        skip!("mariadbd is not installed");
    };
    db.exec("CREATE DATABASE d").await.expect("create db");
    let dir = tempfile::tempdir().expect("tempdir");
    let history = dir.path().join("schema.jsonl");
    capture_json(&db.url(), StartAt::FromNow, Some(history.clone()))
        .await
        .expect("snapshot");
    let master = |db: &MariaDb| -> BinlogPos {
        let p: Vec<String> = db
            .sql("SHOW MASTER STATUS")
            .expect("status")
            .split('\t')
            .map(String::from)
            .collect();
        BinlogPos::new(p[0].clone(), p[1].parse().expect("pos"))
    };
    let begin = master(&db);
    let mut positions = Vec::new();
    for stmt in DDL_SEQUENCE {
        positions.push(master(&db));
        db.exec(stmt).await.expect(stmt);
    }
    let txns = capture_json(&db.url(), StartAt::FilePos(begin), Some(history.clone()))
        .await
        .expect("capture through DDL");
    assert_ddl_inserts(&inserts_of(&txns), &ddl_expected());
    let ddl: Vec<&str> = txns.iter().filter_map(|t| t["ddl"].as_str()).collect();
    assert_eq!(ddl.len(), 6, "{ddl:?}");
    assert!(txns
        .iter()
        .filter(|t| t.get("ddl").is_some())
        .all(|t| t["db"] == "" || t["db"] == "d"));

    // Restart at an old position (before the third insert): old events are
    // decoded with the schema of their time, from the persisted history.
    let restart_at = positions[5].clone();
    let again = capture_json(&db.url(), StartAt::FilePos(restart_at), Some(history))
        .await
        .expect("capture from an old position");
    assert_ddl_inserts(&inserts_of(&again), &ddl_expected()[2..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_mid_stream_full_metadata() {
    ddl_mid_stream("FULL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_mid_stream_minimal_metadata_and_restart_at_old_position() {
    ddl_mid_stream("MINIMAL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_binlog_events() {
    let Some(db) = start(MariaDbOptions {
        log_bin_compress: true,
        extra_args: vec!["--log-bin-compress-min-len=10".into()],
        ..Default::default()
    }) else {
        skip!("mariadbd is not installed");
    };
    db.exec(
        "CREATE DATABASE z; CREATE TABLE z.t (id INT PRIMARY KEY, body TEXT, n BIGINT UNSIGNED);
         INSERT INTO z.t VALUES (1, REPEAT('abc', 1000), 18446744073709551615), (2, 'short', 0);
         UPDATE z.t SET body = REPEAT('xyz', 2000) WHERE id = 1;
         DELETE FROM z.t WHERE id = 2;",
    )
    .await
    .expect("workload");
    let types = db.sql("SHOW BINLOG EVENTS").expect("binlog events");
    assert!(
        types.contains("Write_rows_compressed") && types.contains("Query_compressed"),
        "the server wrote compressed events: {types}"
    );
    let txns = capture_json(&db.url(), StartAt::FromStart, None)
        .await
        .expect("capture");
    let ch = changes_of(&txns, "z", "t");
    assert_eq!(ch.len(), 4);
    assert_eq!(ch[0]["after"]["body"], json!("abc".repeat(1000)));
    assert_eq!(ch[0]["after"]["n"], json!(18446744073709551615u64));
    assert_eq!(ch[2]["op"], "update");
    assert_eq!(ch[2]["after"]["body"], json!("xyz".repeat(2000)));
    assert_eq!(ch[3]["op"], "delete");
    assert_eq!(ch[3]["before"]["body"], "short");
    assert!(txns.iter().any(|t| t["ddl"]
        .as_str()
        .is_some_and(|s| s.contains("CREATE TABLE z.t"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_resumes_without_loss_or_repeat() {
    let Some(db) = start(MariaDbOptions::default()) else {
        skip!("mariadbd is not installed");
    };
    db.exec("CREATE DATABASE k; CREATE TABLE k.t (id INT PRIMARY KEY, pad VARCHAR(2000))")
        .await
        .expect("schema");
    // 40 transactions of 500 rows each, ~40 MB of binlog: more than the
    // socket buffers hold, so the server's dump thread is still sending when
    // it is killed, and the capture sees the break.
    for batch in 0..40 {
        let values: Vec<String> = (0..500)
            .map(|i| format!("({}, REPEAT('p', 2000))", batch * 500 + i))
            .collect();
        db.exec(&format!("INSERT INTO k.t VALUES {}", values.join(",")))
            .await
            .expect("insert batch");
    }
    let url = db.url();
    let killer_db = db.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    // Kill the binlog dump thread again and again while the capture reads,
    // from a thread and runtime of its own: the slow consumer below blocks a
    // thread of the test's runtime.
    let killer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("killer runtime");
        rt.block_on(async move {
            let mut kills = 0u32;
            let opts = mysql_async::OptsBuilder::from_opts(
                mysql_async::Opts::from_url(&killer_db).expect("url"),
            )
            .prefer_socket(false);
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .expect("killer connection");
            use mysql_async::prelude::Queryable;
            let _ = ready_tx.send(());
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let ids: Vec<u64> = conn
                    .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
                    .await
                    .expect("processlist");
                for id in ids {
                    if conn
                        .query_drop(format!("KILL CONNECTION {id}"))
                        .await
                        .is_ok()
                    {
                        kills += 1;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
            kills
        })
    });
    // The capture starts once the killer is connected (on a loaded machine
    // the capture could otherwise be done before the first kill).
    ready_rx.await.expect("killer ready");
    // No stop at the end: with a non-blocking dump the server could send the
    // whole binlog into the socket buffers and end its dump thread before a
    // kill lands. The consumer stops after the 40th transaction instead.
    let opts = CaptureOptions::new(url, StartAt::FromStart);
    let mut ids = Vec::new();
    let mut txn_count = 0;
    let stats = capture::run(opts, |t| {
        // A slow consumer, so that the kills land while transactions stream.
        std::thread::sleep(std::time::Duration::from_millis(25));
        if !t.txn.changes.is_empty() {
            txn_count += 1;
            assert_eq!(t.txn.changes.len(), 500, "whole transactions only");
        }
        for c in &t.txn.changes {
            if let Some(drc_proto::v1::value::Kind::Int(id)) =
                c.after.as_ref().and_then(|r| r.values[0].kind.clone())
            {
                ids.push(id);
            }
        }
        if txn_count == 40 {
            return Err(CaptureError::Stop);
        }
        Ok(())
    })
    .await
    .expect("capture survives kills");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.join().expect("killer");
    assert!(
        kills >= 1 && stats.reconnects >= 1,
        "the connection was killed {kills} times, {} reconnects",
        stats.reconnects
    );
    assert_eq!(txn_count, 40);
    let want: Vec<i64> = (0..20_000).collect();
    assert_eq!(ids, want, "every row exactly once, in order");
}

async fn expect_refusal(db: &MariaDb, url: &str, start: StartAt, needle: &str) {
    let _ = db;
    let err = match capture_json(url, start, None).await {
        Ok(v) => panic!(
            "capture as {url} must refuse, but it read {} transactions",
            v.len()
        ),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(needle),
        "error {msg:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_binlog_off() {
    let Some(db) = start(MariaDbOptions {
        log_bin: false,
        ..Default::default()
    }) else {
        skip!("mariadbd is not installed");
    };
    expect_refusal(&db, &db.url(), StartAt::FromNow, "log_bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_statement_format_and_minimal_image() {
    let Some(db) = start(MariaDbOptions {
        binlog_format: "STATEMENT".into(),
        ..Default::default()
    }) else {
        skip!("mariadbd is not installed");
    };
    expect_refusal(&db, &db.url(), StartAt::FromNow, "binlog_format=ROW").await;
    db.exec("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'MINIMAL'")
        .await
        .expect("set");
    expect_refusal(&db, &db.url(), StartAt::FromNow, "binlog_row_image=FULL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_missing_privileges() {
    let Some(db) = start(MariaDbOptions::default()) else {
        skip!("mariadbd is not installed");
    };
    db.exec(
        "CREATE USER 'weak'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO 'weak'@'%';
         CREATE USER 'noselect'@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'noselect'@'%';
         CREATE USER 'good'@'%' IDENTIFIED BY 'pw'; GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'good'@'%';",
    )
    .await
    .expect("users");
    expect_refusal(
        &db,
        &db.url_for("weak", "pw"),
        StartAt::FromNow,
        "REPLICATION SLAVE",
    )
    .await;
    expect_refusal(
        &db,
        &db.url_for("noselect", "pw"),
        StartAt::FromNow,
        "SELECT",
    )
    .await;
    let ok = capture_json(&db.url_for("good", "pw"), StartAt::FromNow, None).await;
    assert!(
        ok.is_ok(),
        "a user with the documented grants works: {ok:?}"
    );
    expect_refusal(
        &db,
        &db.url_for("good", "wrong"),
        StartAt::FromNow,
        "Access denied",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_purged_resume_point() {
    let Some(db) = start(MariaDbOptions::default()) else {
        skip!("mariadbd is not installed");
    };
    db.exec("CREATE DATABASE p; CREATE TABLE p.t (id INT PRIMARY KEY); INSERT INTO p.t VALUES (1)")
        .await
        .expect("workload");
    let first: String = db
        .sql("SHOW MASTER STATUS")
        .expect("status")
        .split('\t')
        .next()
        .unwrap_or_default()
        .to_string();
    db.exec("FLUSH BINARY LOGS; INSERT INTO p.t VALUES (2); FLUSH BINARY LOGS")
        .await
        .expect("rotate");
    let current: String = db
        .sql("SHOW MASTER STATUS")
        .expect("status")
        .split('\t')
        .next()
        .unwrap_or_default()
        .to_string();
    db.exec(&format!("PURGE BINARY LOGS TO '{current}'"))
        .await
        .expect("purge");
    expect_refusal(
        &db,
        &db.url(),
        StartAt::FilePos(BinlogPos::new(first, 4)),
        "purged",
    )
    .await;
    expect_refusal(&db, &db.url(), StartAt::Gtid("0-1-1".into()), "purged").await;
    // From now still works.
    assert!(capture_json(&db.url(), StartAt::FromNow, None)
        .await
        .is_ok());
}

async fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<i64>) -> Option<i64> {
    tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
        .await
        .expect("the row arrives within a minute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_noticed_by_heartbeat_timeout() {
    let Some(db) = start(MariaDbOptions::default()) else {
        skip!("mariadbd is not installed");
    };
    db.exec("CREATE DATABASE h; CREATE TABLE h.t (id INT PRIMARY KEY)")
        .await
        .expect("schema");
    let pid = db.pid().expect("server pid");
    let mut opts = CaptureOptions::new(db.url(), StartAt::FromNow);
    opts.heartbeat = std::time::Duration::from_millis(500);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let task = tokio::spawn(capture::run(opts, move |t| {
        for c in &t.txn.changes {
            if let Some(drc_proto::v1::value::Kind::Int(id)) =
                c.after.as_ref().and_then(|r| r.values[0].kind.clone())
            {
                let _ = tx.send(id);
                if id == 2 {
                    return Err(CaptureError::Stop);
                }
            }
        }
        Ok(())
    }));
    // Wait until the capture streams, then insert row 1.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    db.exec("INSERT INTO h.t VALUES (1)").await.expect("row 1");
    assert_eq!(recv(&mut rx).await, Some(1));
    // Freeze the server: no heartbeats, no FIN. The capture must notice.
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill {sig}");
    };
    signal("-STOP");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    signal("-CONT");
    db.exec("INSERT INTO h.t VALUES (2)").await.expect("row 2");
    assert_eq!(recv(&mut rx).await, Some(2));
    let stats = task
        .await
        .expect("join")
        .expect("capture ends cleanly on Stop");
    assert!(
        stats.reconnects >= 1,
        "the silent link was detected and re-established"
    );
    assert_eq!(stats.transactions, 2);
}

/// A capture that keeps no schema history on disk and resumes by GTID right
/// before an ALTER the server has already run (a restart after a crash) takes
/// its schema snapshot at the head, which already shows the ALTER. Meeting
/// the ALTER again must not stop it: the DDL is handed on, and rows on both
/// sides of it decode with the columns of their time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_resume_right_before_a_ddl_without_a_history_file() {
    let Some(db) = start(MariaDbOptions::default()) else {
        skip!("mariadbd is not installed");
    };
    db.exec(
        "CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO shop.o VALUES (1, 'one')",
    )
    .await
    .expect("schema");
    let before_ddl = db
        .sql("SELECT @@global.gtid_binlog_pos")
        .expect("gtid position");
    db.exec(
        "INSERT INTO shop.o VALUES (2, 'two');
         ALTER TABLE shop.o ADD COLUMN note VARCHAR(20) NULL;
         INSERT INTO shop.o VALUES (3, 'three', 'n3');
         ALTER TABLE shop.o DROP COLUMN v;
         INSERT INTO shop.o VALUES (4, 'n4')",
    )
    .await
    .expect("workload");
    let txns = capture_json(&db.url(), StartAt::Gtid(before_ddl.clone()), None)
        .await
        .expect("capture resumed before the DDL");
    let ddl: Vec<&str> = txns.iter().filter_map(|t| t["ddl"].as_str()).collect();
    assert_eq!(
        ddl,
        vec![
            "ALTER TABLE shop.o ADD COLUMN note VARCHAR(20) NULL",
            "ALTER TABLE shop.o DROP COLUMN v"
        ],
        "resumed after {before_ddl}: {txns:#?}"
    );
    let rows: Vec<Value> = changes_of(&txns, "shop", "o")
        .iter()
        .map(|c| c["after"].clone())
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"id": 2, "v": "two"}),
            json!({"id": 3, "v": "three", "note": "n3"}),
            json!({"id": 4, "note": "n4"}),
        ]
    );
}
