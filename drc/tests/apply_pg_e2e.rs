//! One region in one process, into PostgreSQL: `drc run` with a relay, a
//! capture of a MariaDB and an applier writing into a PostgreSQL database,
//! SIGKILLed at random moments while the source is busy and started again
//! each time. The target ends equal to the source row by row: no change is
//! lost, and none is applied twice (a keyless table would show doubles).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drc_tests::{free_port, skip, MariaDb, MariaDbOptions, Postgres, PostgresOptions};

mod common;
use common::Proc;

/// A small xorshift generator: random kill moments without a dependency,
/// reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn capture_relay_and_postgres_applier_survive_kill9_under_load() {
    if !MariaDb::available() || !Postgres::available() {
        skip!("mariadbd or postgres is not installed");
    }
    kill9_under_load(false);
}

/// The same with an ALTER TABLE in the middle of the load. A capture
/// restarted right before the ALTER resumes behind the schema snapshot it
/// takes at the head, which already shows the ALTER: it must hand the ALTER
/// on, not stop at it.
#[test]
fn capture_relay_and_postgres_applier_survive_kill9_with_ddl_under_load() {
    if !MariaDb::available() || !Postgres::available() {
        skip!("mariadbd or postgres is not installed");
    }
    kill9_under_load(true);
}

fn kill9_under_load(ddl_mid_load: bool) {
    let src = Arc::new(MariaDb::start(MariaDbOptions::default()).expect("source"));
    let pg = Postgres::start(PostgresOptions::default()).expect("target");
    src.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.o (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2));
         CREATE TABLE shop.log (msg VARCHAR(50))",
    )
    .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let port = free_port().expect("port");
    let cfg = w.join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\n\
             [[capture]]\nstream = \"a.shop\"\nsource = \"{}\"\nstart = \"start\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\n\
             [[apply]]\nstream = \"a.shop\"\nsubscriber = \"apply-pg\"\n\
             relay = {{ url = \"http://127.0.0.1:{port}\", insecure_plaintext = true }}\n\
             max_batch_delay_ms = 20\n\
             sink = {{ kind = \"postgres\", url = \"{}\" }}\n",
            w.join("data"),
            src.url(),
            pg.url(),
        ),
    )
    .expect("config");
    let args = ["run", "--config", cfg.to_str().unwrap_or_default()];
    let log = w.join("run.log");
    let start = || {
        Proc::spawn(
            "drc run",
            Command::new(env!("CARGO_BIN_EXE_drc")),
            &args,
            &log,
        )
    };

    // The source is written to all along, from another thread.
    let writes = 300;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let src = Arc::clone(&src);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for id in 0..writes {
                if ddl_mid_load && id == writes / 2 {
                    // DDL in the middle of the load, translated on the way.
                    src.sql("ALTER TABLE shop.o ADD COLUMN extra INT NULL")
                        .expect("alter");
                }
                let extra = if ddl_mid_load && id >= writes / 2 {
                    format!(", extra = {id}")
                } else {
                    String::new()
                };
                src.sql(&format!(
                    "INSERT INTO shop.o (id, v, n) VALUES ({id}, 'v{id}', {id}.25);
                     UPDATE shop.o SET n = n + 1{extra} WHERE id = {id} DIV 2;
                     BEGIN; INSERT INTO shop.log VALUES ('row {id}'); UPDATE shop.o SET v = 'w{id}' WHERE id = {id} DIV 3; COMMIT"
                ))
                .expect("write");
                if id % 50 == 49 {
                    src.sql(&format!("DELETE FROM shop.o WHERE id % 7 = {}", id / 50))
                        .expect("delete");
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("kill moments seed: {seed}");
    let mut rng = Rng(seed);
    let mut run = start();
    let mut kills = 0;
    // The target's checkpoint at each kill. Each kill waits until the
    // restarted applier has committed something (bounded, for a slow
    // machine), then comes at a random moment: the kills hit a working
    // applier mid-stream, not one still starting.
    let checkpoint = || {
        pg.sql("SELECT \"offset\" FROM drc.checkpoints")
            .unwrap_or_default()
    };
    let mut seen: Vec<String> = Vec::new();
    while !done.load(Ordering::SeqCst) || kills < 3 {
        let last = seen.last().cloned().unwrap_or_default();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until && checkpoint() == last {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rng.below(700)));
        // SIGKILL the whole region, then start it again.
        run.kill9();
        kills += 1;
        seen.push(checkpoint());
        run = start();
    }
    writer.join().expect("writer thread");
    seen.dedup();
    assert!(
        seen.len() >= 3,
        "the applier made progress between kills: {seen:?}"
    );

    let extra_col = if ddl_mid_load { ", extra" } else { "" };
    let dump_src = || {
        (
            src.sql(&format!(
                "SELECT id, v, n{extra_col} FROM shop.o ORDER BY id"
            ))
            .unwrap_or_default()
            .replace('\t', "|")
            .replace("|NULL", "|"),
            src.sql("SELECT msg FROM shop.log ORDER BY msg")
                .unwrap_or_default(),
        )
    };
    let dump_pg = || {
        (
            pg.sql(&format!(
                "SELECT id, v, n{extra_col} FROM shop.o ORDER BY id"
            ))
            .unwrap_or_default(),
            pg.sql("SELECT msg FROM shop.log ORDER BY msg COLLATE \"C\"")
                .unwrap_or_default(),
        )
    };
    let want = dump_src();
    assert_eq!(want.1.lines().count(), writes, "the source's log table");
    let deadline = Instant::now() + Duration::from_secs(90);
    while dump_pg() != want {
        if Instant::now() >= deadline {
            let got = dump_pg();
            let first_diff = want.0.lines().zip(got.0.lines()).find(|(a, b)| a != b);
            let run_log = std::fs::read_to_string(&log).unwrap_or_default();
            let apply_lines: Vec<&str> = run_log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("failed"))
                .collect();
            let tail: Vec<&str> = run_log.lines().collect();
            eprintln!(
                "RUN LOG TAIL\n{}",
                tail[tail.len().saturating_sub(40)..].join("\n")
            );
            let relay_last = common::last_offset(&w.join("data").join("streams").join("a.shop"));
            eprintln!(
                "relay log last offset {relay_last}, target checkpoint {:?}\nsessions: {:?}",
                checkpoint(),
                pg.sql(
                    "SELECT pid, state, wait_event_type, wait_event, backend_xid, left(query, 80) \
                     FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> pg_backend_pid()"
                )
            );
            panic!(
                "target never matched the source after {kills} kills: {} vs {} rows, first \
                 difference {first_diff:?}, log rows {} vs {}\n{}",
                want.0.lines().count(),
                got.0.lines().count(),
                want.1.lines().count(),
                got.1.lines().count(),
                apply_lines[apply_lines.len().saturating_sub(30)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    run.stop();
    // Row by row: every source row once, with the source's values.
    let (o, msgs) = dump_pg();
    assert_eq!(o, want.0);
    assert_eq!(msgs, want.1);
    assert_eq!(
        pg.sql("SELECT count(*), count(DISTINCT msg) FROM shop.log")
            .expect("count"),
        format!("{writes}|{writes}"),
        "no change applied twice"
    );
    let ckpt = pg
        .sql("SELECT stream FROM drc.checkpoints")
        .expect("checkpoint");
    assert_eq!(ckpt, "a.shop");
    eprintln!("{kills} kills, checkpoints seen at them: {seen:?}");
}
