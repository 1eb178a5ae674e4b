//! `drc verify` as a command: exit 0 when identical, 1 when different (the
//! differing row printed), 2 on an error that names what is wrong; the
//! password from `--target-password-env`.

use std::process::Command;

use drc_tests::{skip, MariaDb, MariaDbOptions};

fn drc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drc"))
}

#[test]
fn exit_codes_say_identical_different_or_error() {
    let out = drc()
        .args([
            "verify",
            "--source",
            "ftp://x",
            "--target",
            "mysql://root@127.0.0.1:1",
        ])
        .output()
        .expect("run drc");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad source URL") && err.contains("unknown scheme"),
        "{err}"
    );

    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let a = MariaDb::start(MariaDbOptions::default()).expect("start source");
    let b = MariaDb::start(MariaDbOptions::default()).expect("start target");
    let setup = "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10));
                 INSERT INTO app.t SELECT seq, CONCAT('v', seq) FROM app.seq_1_to_100;";
    a.sql(setup).expect("source");
    b.sql(setup).expect("target");
    b.sql("CREATE USER 'chk'@'%' IDENTIFIED BY 's3cret'; GRANT SELECT ON *.* TO 'chk'@'%'")
        .expect("user");
    let target = format!("mysql://chk@127.0.0.1:{}", b.port());

    let run = |extra: &[&str]| {
        let out = drc()
            .args([
                "verify",
                "--quiet",
                "--source",
                &a.url(),
                "--target",
                &target,
            ])
            .args(["--target-password-env", "VERIFY_TEST_PW"])
            .args(extra)
            .env("VERIFY_TEST_PW", "s3cret")
            .output()
            .expect("run drc verify");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("app.t: identical ("), "{stdout}");

    b.sql("UPDATE app.t SET v = 'changed' WHERE id = 42")
        .expect("change");
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("different id=42  columns: v"), "{stdout}");
    let (code, stdout, _) = run(&["--json"]);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    assert_eq!(json["tables"][0]["diff_count"], 1);
    assert_eq!(json["tables"][0]["diffs"][0]["kind"], "different");

    let (code, _, stderr) = run(&["--tables", "nosuch.*"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no base table of the source matches nosuch.*"),
        "{stderr}"
    );

    let out = drc()
        .args([
            "verify",
            "--quiet",
            "--source",
            &a.url(),
            "--target",
            &target,
        ])
        .output()
        .expect("run drc verify without the password");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connect to the target") && err.contains("Access denied"),
        "{err}"
    );
}
