//! `drc log check DIR`: a sound log passes with its figures; a flipped byte in
//! an earlier record fails with the file and byte named.

use std::process::Command;

use bytes::Bytes;
use drc_log::{Log, LogConfig};

fn check(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["log", "check"])
        .arg(dir)
        .output()
        .expect("run drc");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn check_reports_a_sound_log_and_names_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let log = Log::open(dir.path(), LogConfig::default())
            .await
            .expect("open");
        for i in 0..100u32 {
            log.append(vec![Bytes::from(format!("record {i} {}", "x".repeat(100)))])
                .await
                .expect("append");
        }
        log.close().await.expect("close");
    });
    let (ok, text) = check(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("records: 100 (offsets 1 to 100)"), "{text}");

    let seg = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write");
    let (ok, text) = check(dir.path());
    assert!(!ok, "corruption fails the check: {text}");
    let name = seg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(text.contains(&name), "names the file: {text}");
}
