//! Proves the throwaway-server harness: servers start with the requested
//! settings, hold data, survive kill -9 + restart, and leave nothing behind
//! (process, temp dir, port) when dropped, also when the test panics.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use drc_tests::{
    free_port, port_is_free, shared_fixtures_dir, skip, MariaDb, MariaDbOptions, Postgres,
    PostgresOptions,
};
use mysql_async::prelude::Queryable;

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Asserts that a dropped server left nothing behind.
fn assert_cleaned_up(pid: u32, dir: &Path, port: u16) {
    assert!(!process_exists(pid), "server process {pid} still exists");
    assert!(!dir.exists(), "temp dir {} still exists", dir.display());
    assert!(port_is_free(port), "port {port} is still taken");
}

#[tokio::test]
async fn mariadb_roundtrip_and_cleanup() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    assert!(!port_is_free(db.port()), "server should hold its port");
    assert_eq!(db.url(), format!("mysql://root@127.0.0.1:{}", db.port()));

    db.exec(
        "CREATE DATABASE smoke;
         CREATE TABLE smoke.t (id INT PRIMARY KEY, v VARCHAR(20)) CHARSET utf8mb4;
         INSERT INTO smoke.t VALUES (1, 'héllo 🐬')",
    )
    .await
    .expect("create and insert");

    let mut conn = db.conn().await.expect("connect");
    let v: Option<String> = conn
        .query_first("SELECT v FROM smoke.t WHERE id = 1")
        .await
        .expect("select");
    assert_eq!(v.as_deref(), Some("héllo 🐬"));
    let settings: Option<(i64, String, String, String, i64, i64)> = conn
        .query_first(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata,
                    @@log_bin_compress, @@server_id",
        )
        .await
        .expect("read settings");
    assert_eq!(
        settings,
        Some((1, "ROW".into(), "FULL".into(), "FULL".into(), 0, 1))
    );
    conn.disconnect().await.expect("disconnect");

    // The blocking client helper sees the same data, 4-byte characters intact.
    assert_eq!(
        db.sql("SELECT id, v FROM smoke.t").expect("sql"),
        "1\théllo 🐬"
    );
    assert!(
        db.datadir().join("binlog.000001").is_file(),
        "binlog file missing in {}",
        db.datadir().display()
    );

    let (pid, dir, port) = (db.pid().expect("pid"), db.dir().to_path_buf(), db.port());
    drop(db);
    assert_cleaned_up(pid, &dir, port);
}

#[test]
fn mariadb_options_are_applied() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = MariaDb::start(MariaDbOptions {
        server_id: 7,
        row_image: "MINIMAL".into(),
        row_metadata: "MINIMAL".into(),
        log_bin_compress: true,
        gtid_domain_id: Some(3),
        ..MariaDbOptions::default()
    })
    .expect("start mariadb");
    let got = db
        .sql(
            "SELECT @@server_id, @@log_bin, @@binlog_row_image, @@binlog_row_metadata,
                    @@log_bin_compress, @@gtid_domain_id",
        )
        .expect("read settings");
    assert_eq!(got, "7\t1\tMINIMAL\tMINIMAL\t1\t3");
}

#[test]
fn mariadb_wrong_settings_for_negative_tests() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let db = MariaDb::start(MariaDbOptions {
        log_bin: false,
        extra_args: vec!["--binlog-format=STATEMENT".into()],
        ..MariaDbOptions::default()
    })
    .expect("start mariadb");
    assert_eq!(
        db.sql("SELECT @@log_bin, @@binlog_format").expect("sql"),
        "0\tSTATEMENT"
    );
    assert!(!db.datadir().join("binlog.index").exists());
}

#[test]
fn mariadb_kill9_then_restart_keeps_data_and_port() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let mut db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    let port = db.port();
    db.sql(
        "CREATE DATABASE k; CREATE TABLE k.t (id INT PRIMARY KEY) ENGINE=InnoDB;
         INSERT INTO k.t VALUES (1), (2), (3)",
    )
    .expect("insert");
    let old_pid = db.pid().expect("pid");

    db.kill9().expect("kill -9");
    assert!(!db.is_running());
    assert!(
        !process_exists(old_pid),
        "killed server {old_pid} still exists"
    );
    assert!(
        db.sql("SELECT 1").is_err(),
        "a killed server must not answer"
    );

    db.restart().expect("restart after kill -9");
    assert_eq!(db.port(), port);
    assert!(db.is_running());
    assert_eq!(db.sql("SELECT COUNT(*) FROM k.t").expect("count"), "3");

    // A clean stop and restart works too.
    db.restart().expect("clean restart");
    assert_eq!(db.sql("SELECT SUM(id) FROM k.t").expect("sum"), "6");
}

#[test]
fn mariadb_is_cleaned_up_when_the_test_panics() {
    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let seen: Arc<Mutex<Option<(u32, PathBuf, u16)>>> = Arc::default();
    let seen_inside = Arc::clone(&seen);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
        assert_eq!(db.sql("SELECT 1").expect("sql"), "1");
        *seen_inside.lock().expect("lock") =
            Some((db.pid().expect("pid"), db.dir().to_path_buf(), db.port()));
        panic!("deliberate panic with a live server");
    }));
    assert!(result.is_err(), "the closure should have panicked");
    let (pid, dir, port) = seen
        .lock()
        .expect("lock")
        .clone()
        .expect("server was started before the panic");
    assert_cleaned_up(pid, &dir, port);
}

#[test]
fn postgres_roundtrip_and_cleanup() {
    if !Postgres::available() {
        skip!("postgresql is not installed");
    }
    let mut pg = Postgres::start(PostgresOptions::default()).expect("start postgres");
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'héllo 🐘')")
        .expect("create and insert");
    assert_eq!(pg.sql("SELECT id, v FROM t").expect("select"), "1|héllo 🐘");

    pg.kill9().expect("kill -9");
    pg.restart().expect("restart");
    assert_eq!(pg.sql("SELECT count(*) FROM t").expect("count"), "1");

    let (pid, dir, port) = (pg.pid().expect("pid"), pg.dir().to_path_buf(), pg.port());
    drop(pg);
    assert_cleaned_up(pid, &dir, port);
}

#[test]
fn free_ports_are_not_handed_out_twice() {
    let ports: Vec<u16> = (0..50).map(|_| free_port().expect("free port")).collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "duplicate ports in {ports:?}");
    assert!(ports.iter().all(|&p| port_is_free(p)));
}

#[test]
fn shared_fixtures_dir_points_at_binlogs() {
    let Some(dir) = shared_fixtures_dir() else {
        skip!("no shared fixtures on this machine");
    };
    assert!(dir.ends_with("binlogs"));
    assert!(std::fs::read_dir(&dir)
        .expect("read fixtures")
        .next()
        .is_some());
}

/// Set by `servers_die_with_the_test_process` for its child.
const PDEATHSIG_HELPER_ENV: &str = "DRC_TESTS_PDEATHSIG_HELPER";

/// Run only as a child of `servers_die_with_the_test_process`: starts a
/// server, reports it, and waits to be killed.
#[test]
#[ignore = "helper process of servers_die_with_the_test_process"]
fn pdeathsig_helper() {
    if std::env::var_os(PDEATHSIG_HELPER_ENV).is_none() {
        return;
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    println!("SERVER {} {}", db.pid().expect("pid"), db.dir().display());
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn servers_die_with_the_test_process() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    if !MariaDb::available() {
        skip!("mariadb-server is not installed");
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "pdeathsig_helper", "--nocapture"])
        .env(PDEATHSIG_HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("helper stdout");
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map(|line| line.expect("read helper output"))
        .find(|line| line.starts_with("SERVER "))
        .expect("helper reports its server");
    let mut fields = line.split_whitespace().skip(1);
    let pid: u32 = fields.next().and_then(|p| p.parse().ok()).expect("pid");
    let dir = PathBuf::from(fields.next().expect("dir"));
    assert!(process_exists(pid));

    // SIGKILL: the helper runs no destructors, so only the parent-death
    // signal can stop its server.
    child.kill().expect("kill helper");
    child.wait().expect("reap helper");
    drc_tests::wait_until(
        "the orphaned server to die",
        std::time::Duration::from_secs(10),
        || Ok(!process_exists(pid)),
    )
    .expect("server died with its test process");
    std::fs::remove_dir_all(&dir).expect("remove the helper's temp dir");
}

#[test]
fn nats_jetstream_keeps_messages_across_kill9_and_cleans_up() {
    use drc_tests::{Nats, NatsOptions};
    if !Nats::available() {
        skip!("nats-server is not installed");
    }
    let mut nats = Nats::start(NatsOptions::default()).expect("start nats-server");
    let (port, dir) = (nats.port(), nats.dir().to_path_buf());
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let publish = |url: String| async move {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "SMOKE".into(),
            subjects: vec!["smoke.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
        js.publish("smoke.a", "one".into())
            .await
            .expect("publish")
            .await
            .expect("ack")
            .sequence
    };
    assert_eq!(rt.block_on(publish(nats.url())), 1);
    let old_pid = nats.pid().expect("pid");
    nats.kill9().expect("kill -9");
    assert!(!nats.is_running() && !process_exists(old_pid));
    nats.restart().expect("restart after kill -9");
    assert_eq!(nats.port(), port);
    // The store survived: the next message gets sequence 2.
    assert_eq!(rt.block_on(publish(nats.url())), 2);
    let msgs = rt
        .block_on(drc_tests::replay::read_jetstream(&nats.url(), "SMOKE"))
        .expect("read back");
    assert_eq!(
        msgs.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(),
        vec![b"one".to_vec(), b"one".to_vec()]
    );
    let pid = nats.pid().expect("pid");
    drop(nats);
    assert_cleaned_up(pid, &dir, port);
}
