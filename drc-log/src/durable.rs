//! Small file system steps that make changes survive a crash: fsync of a
//! directory (so a created, renamed or removed name is durable) and the
//! write-to-temp, fsync, rename, fsync-directory dance for state files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{LogError, Result};

/// Suffix of a state file being replaced; left-overs are removed on open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Makes the directory's entries (created, renamed, removed names) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Creates `dir` (and its parents) if it is missing, and makes the new name
/// durable in its parent.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| LogError::io("create log directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `dir/name` with `bytes` so that after a crash the file holds
/// either the old or the new contents, never a mix: write a temp file, fsync
/// it, rename it over the old one, fsync the directory.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| LogError::io("create temp state file", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| LogError::io("write temp state file", &tmp, e))?;
    f.sync_all()
        .map_err(|e| LogError::io("fsync temp state file", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| LogError::io("rename state file into place", &path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_replaces_and_leaves_no_temp() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| LogError::io("tempdir", "", e))?;
        replace_file(d.path(), "state.json", b"one")?;
        replace_file(d.path(), "state.json", b"two")?;
        let got = fs::read(d.path().join("state.json")).map_err(|e| LogError::io("read", "", e))?;
        assert_eq!(got, b"two");
        assert!(!d.path().join("state.json.tmp").exists());
        Ok(())
    }
}
