//! Bad configuration is refused before anything starts, with the key's name
//! and the fix.

use std::process::Command;

fn drc_with(config: &str, role: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("region.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .env("DRC_LOG", "warn")
        .args([role, "--config"])
        .arg(&path)
        .output()
        .expect("run drc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_keys_and_unsafe_settings_are_refused_by_name() {
    let (ok, err) = drc_with(
        "[relay]\nlisten = \"127.0.0.1:1\"\ndata_dir = \"x\"\nlisen_port = 3\n",
        "relay",
    );
    assert!(!ok);
    assert!(err.contains("lisen_port"), "names the unknown key: {err}");

    let (ok, err) = drc_with(
        "[relay]\nlisten = \"0.0.0.0:7400\"\ndata_dir = \"x\"\ninsecure_plaintext = true\n",
        "relay",
    );
    assert!(!ok);
    assert!(
        err.contains("insecure_plaintext") || err.contains("loopback"),
        "plaintext off loopback: {err}"
    );

    let (ok, err) = drc_with(
        "[relay]\nlisten = \"10.1.2.3:7400\"\ndata_dir = \"x\"\n",
        "relay",
    );
    assert!(!ok);
    assert!(err.contains("tls"), "TLS required: {err}");

    let (ok, err) = drc_with(
        "[[capture]]\nstream = \"a b\"\nsource = \"mysql://u@127.0.0.1:3306\"\nrelay = { url = \"http://127.0.0.1:7400\", insecure_plaintext = true }\n",
        "run",
    );
    assert!(!ok);
    assert!(err.contains("capture[0].stream"), "names the key: {err}");

    let (ok, err) = drc_with(
        "[[capture]]\nstream = \"a.s\"\nsource = \"mysql://u@127.0.0.1:3306\"\nstart = \"yesterday\"\nrelay = { url = \"http://127.0.0.1:7400\", insecure_plaintext = true }\n",
        "run",
    );
    assert!(!ok);
    assert!(err.contains("capture[0].start"), "names the key: {err}");

    let (ok, err) = drc_with("region = \"a\"\n", "run");
    assert!(!ok);
    assert!(err.contains("names no role"), "{err}");
}

#[test]
fn postgres_sink_settings_are_refused_by_name_before_connecting() {
    let apply = |sink: &str| {
        format!(
            "[[apply]]\nstream = \"a.shop\"\nsubscriber = \"apply-pg\"\n\
             relay = {{ url = \"http://127.0.0.1:7400\", insecure_plaintext = true }}\n\
             sink = {{ kind = \"postgres\", url = \"postgres://drc@127.0.0.1:1/app\"{sink} }}\n"
        )
    };
    for (extra, needle) in [
        (", urll = \"x\"", "urll"),
        (", on_unsupported_ddl = \"maybe\"", "maybe"),
        (", schema_map = { shop = \"drc\" }", "schema_map.shop"),
        (", origin = \"\"", "origin"),
    ] {
        let (ok, err) = drc_with(&apply(extra), "apply");
        assert!(!ok, "{extra} is refused");
        assert!(err.contains(needle), "{extra}: names {needle}: {err}");
    }
}

/// `drc config check FILE [flags]`: (exit 0?, stdout).
fn check(config: &str, flags: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("region.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drc"));
    cmd.env("DRC_LOG", "warn")
        .args(["config", "check"])
        .arg(&path)
        .args(flags);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run drc config check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The line of `out` about `key`.
fn finding<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&format!("{key}:")))
        .unwrap_or_else(|| panic!("a finding for {key}:\n{out}"))
}

#[test]
fn config_check_names_each_problem_by_key() {
    use drc_tests::{free_port, skip, MariaDb, MariaDbOptions};
    if !MariaDb::available() {
        skip!("mariadbd is not installed");
    }
    let good = MariaDb::start(MariaDbOptions::default()).expect("source");
    good.sql("CREATE USER 'repl'@'%' IDENTIFIED BY 'right'; GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'repl'@'%'")
        .expect("user");
    let no_binlog = MariaDb::start(MariaDbOptions {
        log_bin: false,
        ..Default::default()
    })
    .expect("server without binlog");
    let dead = free_port().expect("port");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let config = format!(
        "region = \"a\"\n\
         [relay]\nlisten = \"127.0.0.1:{relay}\"\ndata_dir = {data:?}\n\
         tls = {{ ca = {ca:?}, cert = {ca:?}, key = {ca:?} }}\n\
         [[relay.upstreams]]\nurl = \"http://127.0.0.1:{dead}\"\ninsecure_plaintext = true\nstreams = [\"b.shop\"]\n\
         [[capture]]\nstream = \"a.shop\"\nsource = \"mysql://repl@127.0.0.1:{good}\"\nsource_password_env = \"DRC_TEST_PW\"\n\
         relay = {{ url = \"https://127.0.0.1:{relay}\", tls = {{ ca = {ca:?}, cert = {ca:?}, key = {ca:?} }} }}\n\
         schema_history = {hist:?}\n\
         [[capture]]\nstream = \"a.other\"\nsource = \"{nb}\"\n\
         relay = {{ url = \"http://127.0.0.1:{relay}\", insecure_plaintext = true }}\n",
        relay = free_port().expect("port"),
        data = w.join("relay"),
        ca = w.join("missing-ca.pem"),
        good = good.port(),
        hist = w.join("no-such-dir").join("history.json"),
        nb = no_binlog.url(),
    );

    let (ok, out) = check(&config, &[], &[("DRC_TEST_PW", "wrong")]);
    assert!(!ok, "errors fail the check:\n{out}");
    assert!(finding(&out, "relay.tls").starts_with("error"), "{out}");
    assert!(
        finding(&out, "relay.tls").contains("missing-ca.pem"),
        "{out}"
    );
    assert!(finding(&out, "relay.data_dir").starts_with("ok"), "{out}");
    assert!(
        finding(&out, "capture[0].schema_history").contains("no-such-dir"),
        "{out}"
    );
    let src = finding(&out, "capture[0].source");
    assert!(
        src.starts_with("error") && src.contains("Access denied"),
        "{src}"
    );
    let nb = finding(&out, "capture[1].source");
    assert!(nb.starts_with("error") && nb.contains("log_bin"), "{nb}");
    // The other region being down is a warning: the relay retries.
    assert!(
        finding(&out, "relay.upstreams[0]").starts_with("warning"),
        "{out}"
    );

    // With the right password the source passes capture's checks.
    let (_, out) = check(&config, &[], &[("DRC_TEST_PW", "right")]);
    let src = finding(&out, "capture[0].source");
    assert!(
        src.starts_with("ok") && src.contains("fit capture"),
        "{src}"
    );

    // Unset password variable: named, with the fix.
    let (ok, out) = check(&config, &["--offline"], &[]);
    assert!(!ok);
    assert!(
        finding(&out, "capture[0].source_password_env").contains("DRC_TEST_PW is not set"),
        "{out}"
    );

    // Warnings alone pass, unless --strict.
    let only_upstream = format!(
        "[relay]\nlisten = \"127.0.0.1:{}\"\ndata_dir = {:?}\ninsecure_plaintext = true\n\
         [[relay.upstreams]]\nurl = \"http://127.0.0.1:{dead}\"\ninsecure_plaintext = true\nstreams = [\"b.shop\"]\n",
        free_port().expect("port"),
        w.join("relay2"),
    );
    let (ok, out) = check(&only_upstream, &[], &[]);
    assert!(ok, "a warning alone passes:\n{out}");
    assert!(out.contains("0 errors, 1 warning"), "{out}");
    let (ok, _) = check(&only_upstream, &["--strict"], &[]);
    assert!(!ok, "--strict fails on warnings");

    // Unknown keys are named.
    let (ok, out) = check(
        "[relay]\nlisten = \"127.0.0.1:1\"\ndata_dir = \"x\"\nlisen = 3\n",
        &[],
        &[],
    );
    assert!(!ok);
    assert!(finding(&out, "file").contains("lisen"), "{out}");
}
