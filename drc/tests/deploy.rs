//! The files under deploy/ are usable as shipped: systemd accepts the units
//! (`systemd-analyze verify`), each runs the role it says with `Type=notify`,
//! a `drc config check` before start and the hardening the README promises.

use std::path::Path;
use std::process::Command;

const UNITS: [(&str, &str); 4] = [
    ("drc@.service", "run"),
    ("drc-relay@.service", "relay"),
    ("drc-capture@.service", "capture"),
    ("drc-apply@.service", "apply"),
];

fn unit_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd")
}

#[test]
fn units_run_their_role_hardened() {
    for (unit, role) in UNITS {
        let text = std::fs::read_to_string(unit_dir().join(unit)).expect("unit file");
        for line in [
            "Type=notify".to_string(),
            "ExecStartPre=/usr/bin/drc config check /etc/drc/%i.toml".to_string(),
            format!("ExecStart=/usr/bin/drc {role} --config /etc/drc/%i.toml"),
            "NoNewPrivileges=yes".to_string(),
            "ProtectSystem=strict".to_string(),
            "StateDirectory=drc/%i".to_string(),
            "WatchdogSec=30".to_string(),
            "User=drc".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} has `{line}`");
        }
    }
}

#[test]
fn systemd_accepts_the_units() {
    let found = Command::new("systemd-analyze").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (unit, _) in UNITS {
        // Verify checks that the executables exist: point them at the binary
        // under test instead of the install path.
        let text = std::fs::read_to_string(unit_dir().join(unit)).expect("unit file");
        let path = dir.path().join(unit);
        std::fs::write(
            &path,
            text.replace("/usr/bin/drc", env!("CARGO_BIN_EXE_drc")),
        )
        .expect("write unit");
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // An instance name systemd-analyze makes up for a template may not
        // resolve its user; anything else it says is a defect of the unit.
        let problems: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "{unit}: {stderr}"
        );
    }
}
