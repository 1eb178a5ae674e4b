//! The schema history against a real server: every DDL applied by the
//! capture's own DDL follower must leave the tables exactly as the server's
//! information_schema describes them afterwards; a history rewound to any
//! step must give the schema the server had at that step; and a DDL the
//! follower cannot read is confirmed from the server.

use drc_capture::position::BinlogPos;
use drc_capture::schema::ddl::SchemaSet;
use drc_capture::schema::history::{SchemaError, SchemaHistory};
use drc_capture::schema::snapshot::{load_snapshot, load_table, load_table_full, SchemaSnapshot};
use drc_capture::schema::TableSchema;
use drc_tests::{skip, MariaDb, MariaDbOptions};
use mysql_async::prelude::Queryable;

const DBS: [&str; 2] = ["drc_a", "drc_b"];

/// (current database, statement), in order.
const STEPS: &[(&str, &str)] = &[
    ("", "CREATE DATABASE drc_a CHARACTER SET latin1"),
    ("", "CREATE DATABASE drc_b"),
    (
        "",
        "CREATE TABLE drc_a.t1 (
            id int unsigned NOT NULL AUTO_INCREMENT,
            name varchar(32) COLLATE latin1_bin,
            price decimal(10,2) NOT NULL DEFAULT 0,
            flag boolean DEFAULT TRUE,
            kind enum('a','b''c','x,y') NOT NULL DEFAULT 'a',
            tags set('p','q') CHARACTER SET utf8mb4,
            data blob,
            ip INET6,
            u UUID,
            total int AS (id * 2) VIRTUAL,
            secret varchar(10) INVISIBLE DEFAULT 'x',
            n nchar(3),
            r real,
            i8 int8 zerofill,
            f float(30),
            bin varchar(4) CHARACTER SET binary,
            lv long varchar,
            PRIMARY KEY (id),
            UNIQUE KEY uk (name),
            KEY (price)
        ) ENGINE=InnoDB",
    ),
    ("drc_a", "CREATE TABLE t2 (a int NOT NULL, b int NOT NULL, c text, UNIQUE KEY ub (b)) DEFAULT CHARSET=utf8mb3"),
    ("drc_b", "CREATE TABLE `s` (`id` SERIAL, v varchar(3)) /* app comment */"),
    (
        "drc_a",
        "ALTER TABLE t1 ADD COLUMN z int FIRST, ADD y varchar(2) AFTER name, DROP COLUMN data, \
         MODIFY price decimal(12,3), CHANGE COLUMN r rr double NOT NULL, ALGORITHM=COPY",
    ),
    ("drc_a", "ALTER TABLE t1 RENAME COLUMN y TO yy, ADD COLUMN hidden int INVISIBLE"),
    ("drc_a", "ALTER TABLE t2 ADD PRIMARY KEY (a)"),
    ("drc_a", "ALTER TABLE t2 DROP PRIMARY KEY"),
    ("drc_a", "CREATE UNIQUE INDEX ua ON t2 (a)"),
    ("drc_a", "DROP INDEX ub ON t2"),
    ("drc_a", "ALTER TABLE t2 CONVERT TO CHARACTER SET utf8mb4"),
    ("drc_a", "ALTER TABLE t1 ADD COLUMN newtext text, DEFAULT CHARSET=utf8mb4"),
    ("drc_a", "CREATE TABLE likey LIKE t1"),
    ("", "RENAME TABLE drc_a.t2 TO drc_b.t2x, drc_b.s TO drc_a.s2"),
    ("drc_b", "ALTER TABLE t2x MODIFY c varchar(20) NOT NULL, ADD UNIQUE KEY uc (c)"),
    ("drc_a", "DROP TABLE likey"),
    ("drc_a", "ALTER TABLE s2 RENAME TO drc_a.s3"),
    ("", "DROP DATABASE drc_b"),
];

async fn run(conn: &mut mysql_async::Conn, default_db: &str, sql: &str) {
    if !default_db.is_empty() {
        conn.query_drop(format!("USE `{default_db}`"))
            .await
            .expect("use");
    }
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn snapshot(conn: &mut mysql_async::Conn) -> SchemaSnapshot {
    let dbs: Vec<String> = DBS.iter().map(|d| d.to_string()).collect();
    load_snapshot(conn, Some(&dbs)).await.expect("snapshot")
}

/// Compares what decoding relies on (not display widths of COLUMN_TYPE).
fn assert_same(server: &TableSchema, mine: &TableSchema, step: &str) {
    let what = format!("{}.{} after {step:?}", server.db, server.table);
    let names = |t: &TableSchema| t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(server), names(mine), "columns of {what}");
    for (s, m) in server.columns.iter().zip(&mine.columns) {
        let c = format!("column {} of {what}", s.name);
        assert_eq!(s.data_type, m.data_type, "type of {c}");
        assert_eq!(s.unsigned, m.unsigned, "signedness of {c}");
        assert_eq!(s.nullable, m.nullable, "nullability of {c}");
        assert_eq!(s.charset, m.charset, "charset of {c}");
        assert_eq!(s.labels, m.labels, "labels of {c}");
        assert_eq!(s.generated, m.generated, "generated flag of {c}");
        assert_eq!(s.invisible, m.invisible, "invisible flag of {c}");
    }
    assert_eq!(server.primary_key, mine.primary_key, "key of {what}");
}

fn assert_state(server: &SchemaSnapshot, tables: Vec<&TableSchema>, step: &str) {
    let mine: Vec<&TableSchema> = tables
        .into_iter()
        .filter(|t| DBS.contains(&t.db.as_str()))
        .collect();
    let server_names: Vec<(String, String)> = server
        .tables
        .iter()
        .map(|(t, _)| (t.db.clone(), t.table.clone()))
        .collect();
    let my_names: Vec<(String, String)> = mine
        .iter()
        .map(|t| (t.db.clone(), t.table.clone()))
        .collect();
    assert_eq!(server_names, my_names, "tables after {step:?}");
    for ((s, _), m) in server.tables.iter().zip(mine) {
        assert_same(s, m, step);
    }
}

fn at(step: usize) -> BinlogPos {
    BinlogPos::new("binlog.000001", 1000 + 100 * step as u64)
}

#[tokio::test]
async fn ddl_follower_matches_the_server_and_history_rewinds() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let server = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    let mut conn = server.conn().await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("schema-history.jsonl");

    // The starting point: the server's charsets, no tables of ours yet.
    let start = load_snapshot(&mut conn, None)
        .await
        .expect("initial snapshot");
    let mut set = SchemaSet::new();
    set.server_charset = start.server_charset.clone();
    set.db_charsets = start.db_charsets.clone();
    let mut history = SchemaHistory::open(&path).expect("open history");
    history
        .record_full_snapshot(at(0), start)
        .expect("record snapshot");

    let mut after_step = Vec::new();
    for (i, (db, sql)) in STEPS.iter().enumerate() {
        run(&mut conn, db, sql).await;
        set.apply_ddl(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        history
            .apply_ddl(&at(i + 1), db, sql)
            .unwrap_or_else(|e| panic!("history, {sql}: {e}"));
        let now = snapshot(&mut conn).await;
        assert_state(&now, set.tables.values().collect(), sql);
        assert_state(&now, history.tables().collect(), sql);
        after_step.push(now);
    }

    // The comparisons above were about real tables.
    let t1 = &after_step[2].tables[0].0;
    assert_eq!((t1.table.as_str(), t1.columns.len()), ("t1", 17));
    assert_eq!(t1.columns[4].labels, vec!["a", "b'c", "x,y"]);
    assert_eq!(t1.columns[7].data_type, "inet6");
    let t2 = &after_step[10].tables[1].0;
    assert_eq!((t2.table.as_str(), t2.primary_key.clone()), ("t2", vec![0]));
    assert!(after_step.last().is_some_and(|s| s.tables.len() == 2));

    // The history, reopened, rewinds to the schema the server had at each step.
    drop(history);
    let mut history = SchemaHistory::open(&path).expect("reopen history");
    for (i, expected) in after_step.iter().enumerate() {
        // Just after the DDL at step i+1.
        let mut pos = at(i + 1);
        pos.pos += 1;
        history.rewind_to(&pos).expect("rewind");
        assert_state(
            expected,
            history.tables().collect(),
            &format!("rewind to step {}", i + 1),
        );
    }

    // A statement the follower cannot read is confirmed from the server.
    history
        .rewind_to(&at(STEPS.len() + 1))
        .expect("back to the newest state");
    let ctas = "CREATE TABLE drc_a.copy AS SELECT id, name FROM drc_a.t1";
    run(&mut conn, "drc_a", ctas).await;
    let err = history
        .apply_ddl(&at(STEPS.len() + 1), "drc_a", ctas)
        .expect_err("CREATE TABLE ... SELECT is not followed");
    assert!(matches!(err, SchemaError::UnknownDdl { .. }), "{err}");
    let loaded = load_table_full(&mut conn, "drc_a", "copy")
        .await
        .expect("load")
        .expect("the new table exists");
    history
        .confirm_from_server_full(&at(STEPS.len() + 1), "drc_a", ctas, vec![loaded], vec![])
        .expect("confirm");
    let now = snapshot(&mut conn).await;
    assert_state(&now, history.tables().collect(), ctas);
    assert!(load_table(&mut conn, "drc_a", "nope")
        .await
        .expect("load")
        .is_none());

    // ... and replayed from its record after a rewind, without parsing.
    history.rewind_to(&at(STEPS.len() + 1)).expect("rewind");
    assert!(history.table("drc_a", "copy").is_none());
    history
        .apply_ddl(&at(STEPS.len() + 1), "drc_a", ctas)
        .expect("replayed from the record");
    assert_state(
        &now,
        history.tables().collect(),
        "replay of the confirmed DDL",
    );
}
