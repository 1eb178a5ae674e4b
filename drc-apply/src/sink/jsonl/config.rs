//! Settings of the JSON-lines sink.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ApplyError, Result};

/// Rotate the output file once it holds this many bytes.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;

/// `path` value that writes to standard output.
pub const STDOUT: &str = "-";

fn default_max_file_bytes() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}

/// Where and how the JSON-lines sink writes.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// Output file (appended to; its directory is created), or `-` for
    /// standard output.
    pub path: PathBuf,
    /// Rotate the output file once it holds this many bytes: it is renamed
    /// with a numeric suffix (`out.jsonl.000001`, `.000002`, ...; all kept)
    /// and a new file is started. A line never spans two files; a single line
    /// larger than this gets a file of its own. 0 turns rotation off.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Checkpoint file. Default: `<path>.checkpoint.json` next to the
    /// output. With `path = "-"` and no checkpoint file, the checkpoint is
    /// kept in memory only (every start replays what the relay holds).
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
}

impl JsonlConfig {
    /// Writes to `path` with the default settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            checkpoint: None,
        }
    }

    /// True when the output is standard output.
    pub fn is_stdout(&self) -> bool {
        self.path == Path::new(STDOUT)
    }

    /// The checkpoint file, if the checkpoint is kept in a file.
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.checkpoint {
            return Some(p.clone());
        }
        if self.is_stdout() {
            return None;
        }
        let mut name = self.path.clone().into_os_string();
        name.push(".checkpoint.json");
        Some(PathBuf::from(name))
    }

    /// Refuses what cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(ApplyError::Config(
                "sink.path is empty; name the output file, or \"-\" for standard output".into(),
            ));
        }
        if !self.is_stdout() && self.path.file_name().is_none() {
            return Err(ApplyError::Config(format!(
                "sink.path = {:?} names no file; write DIR/NAME.jsonl",
                self.path
            )));
        }
        if let Some(c) = &self.checkpoint {
            if c.file_name().is_none() {
                return Err(ApplyError::Config(format!(
                    "sink.checkpoint = {c:?} names no file; write DIR/NAME.checkpoint.json"
                )));
            }
            if *c == self.path {
                return Err(ApplyError::Config(
                    "sink.checkpoint is the output file itself; choose another file".into(),
                ));
            }
        }
        Ok(())
    }
}
