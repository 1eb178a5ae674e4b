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
