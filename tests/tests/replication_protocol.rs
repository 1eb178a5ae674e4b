//! The replication client (`drc_capture::binlog::protocol`) against a real
//! MariaDB: password login, text queries, COM_REGISTER_SLAVE, a non-blocking
//! COM_BINLOG_DUMP with MariaDB GTID events and ANNOTATE_ROWS, events larger
//! than one 16 MiB packet, and the errors a caller must be able to tell apart.

use std::time::Duration;

use drc_capture::binlog::protocol::{
    ConnectOptions, ProtocolError, ReplicationConn, BINLOG_DUMP_NON_BLOCK,
    BINLOG_SEND_ANNOTATE_ROWS_EVENT,
};
use drc_tests::{skip, MariaDb, MariaDbOptions};

const FORMAT_DESCRIPTION: u8 = 15;
const WRITE_ROWS_V1: u8 = 23;
const WRITE_ROWS_V2: u8 = 30;
const ANNOTATE_ROWS: u8 = 160;
const MARIA_GTID: u8 = 162;
const MARIA_GTID_LIST: u8 = 163;

async fn start_source() -> MariaDb {
    let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    db.exec(
        "CREATE USER 'repl'@'%' IDENTIFIED BY 'p';
         CREATE USER 'repl'@'localhost' IDENTIFIED BY 'p';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'repl'@'%';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'repl'@'localhost';
         CREATE DATABASE app;
         CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(40)) CHARSET utf8mb4;
         INSERT INTO app.t VALUES (1, 'one'), (2, 'two');
         INSERT INTO app.t VALUES (3, NULL)",
    )
    .await
    .expect("set up source");
    db
}

async fn repl_conn(db: &MariaDb, server_id: u32) -> ReplicationConn {
    let mut opts = ConnectOptions::from_url(&db.url_for("repl", "p")).expect("url");
    opts.server_id = server_id;
    opts.read_timeout = Duration::from_secs(20);
    ReplicationConn::connect(opts)
        .await
        .expect("connect as repl")
}

/// Reads a non-blocking dump to its end; returns the events.
async fn read_all(conn: &mut ReplicationConn) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    while let Some(ev) = conn.next_event().await.expect("next event") {
        assert!(ev.len() >= 19, "event shorter than its header");
        let size = u32::from_le_bytes([ev[9], ev[10], ev[11], ev[12]]) as usize;
        assert_eq!(size, ev.len(), "event size field vs bytes received");
        events.push(ev.to_vec());
    }
    events
}

fn types(events: &[Vec<u8>]) -> Vec<u8> {
    events.iter().map(|e| e[4]).collect()
}

async fn start_gtid_dump(conn: &mut ReplicationConn, state: &str, flags: u16) {
    for sql in [
        "SET @master_binlog_checksum=@@global.binlog_checksum".to_string(),
        "SET @mariadb_slave_capability=4".to_string(),
        format!("SET @slave_connect_state='{state}'"),
    ] {
        conn.query(&sql).await.expect(&sql);
    }
    conn.register_replica().await.expect("register");
    conn.dump_file_pos("", 4, flags).await.expect("dump");
}

#[tokio::test]
async fn mariadb_gtid_dump_to_eof() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = start_source().await;
    let mut conn = repl_conn(&db, 101).await;
    assert!(conn.is_mariadb(), "{}", conn.server_version());

    let r = conn
        .query("SELECT @@server_id, NULL AS n")
        .await
        .expect("select");
    assert_eq!(r.columns(), &["@@server_id".to_string(), "n".to_string()]);
    assert_eq!(r.rows(), &[vec![Some("1".to_string()), None]]);
    let logs = conn
        .query("SHOW BINARY LOGS")
        .await
        .expect("show binary logs");
    assert_eq!(logs.get(0, "Log_name"), Some("binlog.000001"));
    let status = conn
        .query("SHOW MASTER STATUS")
        .await
        .expect("show master status");
    assert!(status
        .get(0, "Position")
        .is_some_and(|p| p.parse::<u64>().is_ok()));

    start_gtid_dump(&mut conn, "", BINLOG_DUMP_NON_BLOCK).await;
    let events = read_all(&mut conn).await;
    let t = types(&events);
    assert!(
        t.contains(&FORMAT_DESCRIPTION),
        "no FORMAT_DESCRIPTION in {t:?}"
    );
    assert!(t.contains(&MARIA_GTID), "no MariaDB GTID event in {t:?}");
    assert!(t.contains(&MARIA_GTID_LIST), "no GTID_LIST in {t:?}");
    assert!(
        t.contains(&WRITE_ROWS_V1) || t.contains(&WRITE_ROWS_V2),
        "no rows event in {t:?}"
    );
    assert!(
        !t.contains(&ANNOTATE_ROWS),
        "ANNOTATE_ROWS sent without the flag"
    );
    // After EOF the dump is over.
    assert!(conn.next_event().await.expect("after eof").is_none());
}

#[tokio::test]
async fn mariadb_annotate_rows_and_gtid_resume() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = start_source().await;
    let pos = db.sql("SELECT @@global.gtid_binlog_pos").expect("gtid pos");
    db.exec("INSERT INTO app.t VALUES (10, 'after the resume point')")
        .await
        .expect("insert");

    let mut conn = repl_conn(&db, 102).await;
    start_gtid_dump(
        &mut conn,
        &pos,
        BINLOG_DUMP_NON_BLOCK | BINLOG_SEND_ANNOTATE_ROWS_EVENT,
    )
    .await;
    let events = read_all(&mut conn).await;
    let t = types(&events);
    // Exactly the one transaction after the resume point.
    assert_eq!(t.iter().filter(|&&x| x == MARIA_GTID).count(), 1, "{t:?}");
    let annotate: Vec<&Vec<u8>> = events.iter().filter(|e| e[4] == ANNOTATE_ROWS).collect();
    assert_eq!(annotate.len(), 1, "{t:?}");
    let text = String::from_utf8_lossy(&annotate[0][19..]);
    assert!(text.contains("after the resume point"), "{text}");
}

#[tokio::test]
async fn event_larger_than_one_packet() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = start_source().await;
    db.exec(
        "SET GLOBAL max_allowed_packet = 256 * 1024 * 1024;
         CREATE TABLE app.big (id INT PRIMARY KEY, b LONGBLOB)",
    )
    .await
    .expect("prepare");
    // A new connection sees the raised max_allowed_packet.
    db.exec("INSERT INTO app.big VALUES (1, REPEAT('x', 40 * 1024 * 1024))")
        .await
        .expect("insert 40 MiB");
    let mut conn = repl_conn(&db, 103).await;
    start_gtid_dump(&mut conn, "", BINLOG_DUMP_NON_BLOCK).await;
    let events = read_all(&mut conn).await;
    let biggest = events
        .iter()
        .filter(|e| e[4] == WRITE_ROWS_V1 || e[4] == WRITE_ROWS_V2)
        .map(|e| e.len())
        .max()
        .expect("rows events");
    assert!(
        biggest > 40 * 1024 * 1024,
        "largest rows event {biggest} bytes"
    );
}

#[tokio::test]
async fn resume_point_purged_or_unknown() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = start_source().await;
    let mut conn = repl_conn(&db, 104).await;
    conn.query("SET @master_binlog_checksum=@@global.binlog_checksum")
        .await
        .expect("checksum");
    conn.register_replica().await.expect("register");
    conn.dump_file_pos("binlog.999999", 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    let err = conn.next_event().await.expect_err("unknown file");
    assert_eq!(err.server_code(), Some(1236), "{err}");
    assert!(!err.is_transient());
    assert!(matches!(err, ProtocolError::Server { .. }));
}

#[tokio::test]
async fn wrong_password_is_access_denied() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = start_source().await;
    let opts = ConnectOptions::from_url(&db.url_for("repl", "wrong")).expect("url");
    let err = ReplicationConn::connect(opts).await.expect_err("must fail");
    assert!(matches!(err, ProtocolError::Auth(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.to_lowercase().contains("access denied"), "{msg}");
    assert!(!err.is_transient());

    // Root with its empty password works (empty scramble).
    let opts = ConnectOptions::from_url(&db.url()).expect("url");
    let mut root = ReplicationConn::connect(opts).await.expect("root login");
    let r = root.query("SELECT CURRENT_USER()").await.expect("select");
    assert!(r.first_value().is_some_and(|u| u.starts_with("root@")));
    root.close().await.expect("close");
}
