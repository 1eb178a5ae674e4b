//! The checkpoint file of the JSON-lines sink: one small JSON object,
//! replaced atomically (temp file, fsync, rename, directory fsync).
//!
//! ```text
//! {"stream":"a.shop","offset":42,"position":{"gtid":"0-1-42","file":"binlog.000001","pos":4200,"gtid_set":"0-1-42"}}
//! ```

use std::io::Write;
use std::path::Path;

use drc_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::{ApplyError, Result};
use crate::sink::Checkpoint;

#[derive(Serialize, Deserialize)]
struct StateFile {
    stream: String,
    offset: u64,
    #[serde(default)]
    position: Option<Position>,
}

#[derive(Serialize, Deserialize)]
struct Position {
    gtid: String,
    file: String,
    pos: u64,
    gtid_set: String,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> ApplyError {
    move |source| ApplyError::Io { context, source }
}

/// The checkpoint stored at `path`; `None` when there is no file.
pub(crate) fn read(path: &Path) -> Result<Option<Checkpoint>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("read checkpoint {}", path.display()))(e)),
    };
    let s: StateFile = serde_json::from_slice(&text).map_err(|e| {
        ApplyError::Config(format!(
            "checkpoint file {} is not valid ({e}); restore it, or remove it to start over from the relay's first offset",
            path.display()
        ))
    })?;
    Ok(Some(Checkpoint {
        stream: s.stream,
        offset: s.offset,
        position: s.position.map(|p| pb::SourcePosition {
            gtid: p.gtid,
            file: p.file,
            pos: p.pos,
            gtid_set: p.gtid_set,
        }),
    }))
}

/// Replaces the checkpoint at `path`, durably.
pub(crate) fn write(path: &Path, cp: &Checkpoint) -> Result<()> {
    let state = StateFile {
        stream: cp.stream.clone(),
        offset: cp.offset,
        position: cp.position.as_ref().map(|p| Position {
            gtid: p.gtid.clone(),
            file: p.file.clone(),
            pos: p.pos,
            gtid_set: p.gtid_set.clone(),
        }),
    };
    let mut text = serde_json::to_vec(&state).map_err(|e| ApplyError::Definite {
        sink: "jsonl".into(),
        offset: cp.offset,
        message: format!("encode checkpoint: {e}"),
    })?;
    text.push(b'\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let ctx = |what: &str| format!("{what} checkpoint {}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(io(ctx("create")))?;
    f.write_all(&text).map_err(io(ctx("write")))?;
    f.sync_all().map_err(io(ctx("fsync")))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .map_err(io(format!("rename checkpoint into {}", path.display())))?;
    super::writer::sync_dir(path)
}
