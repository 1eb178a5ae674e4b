//! The streams of a relay, one log directory each under
//! `DATA_DIR/streams/NAME`.
//!
//! At open the registry opens every stream found on disk, those the config
//! names, and the replicas of every upstream; a local stream is created by the
//! first publish to it. Stream names are restricted to letters, digits, `.`,
//! `_` and `-` so that they are safe directory names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::{RelayError, Result};
use crate::stream::{log_error, Role, Stream};

/// Longest stream name.
pub const MAX_STREAM_NAME: usize = 128;

/// Checks a stream name; the message says what is allowed.
pub fn check_stream_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(RelayError::InvalidRequest(format!(
            "bad stream name {name:?}: use 1-{MAX_STREAM_NAME} letters, digits, '.', '_' or '-', not starting with '.'"
        )))
    }
}

/// All streams of one relay.
pub struct Registry {
    root: PathBuf,
    log_config: drc_log::LogConfig,
    /// Stream name → upstream URL, for replicas.
    replicas: HashMap<String, String>,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    /// Serializes stream creation.
    create: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Opens the streams under `data_dir`, plus `streams` and the replicas
    /// (stream → upstream URL), creating missing ones.
    pub async fn open(
        data_dir: &Path,
        log_config: drc_log::LogConfig,
        streams: &[String],
        replicas: HashMap<String, String>,
    ) -> Result<Arc<Self>> {
        let root = data_dir.join("streams");
        std::fs::create_dir_all(&root)
            .map_err(|e| RelayError::io("create data directory", &root, e))?;
        let reg = Arc::new(Self {
            root: root.clone(),
            log_config,
            replicas,
            streams: RwLock::new(BTreeMap::new()),
            create: tokio::sync::Mutex::new(()),
        });
        let mut names: Vec<String> = Vec::new();
        let dir =
            std::fs::read_dir(&root).map_err(|e| RelayError::io("list streams in", &root, e))?;
        for entry in dir {
            let entry = entry.map_err(|e| RelayError::io("list streams in", &root, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.path().is_dir() && check_stream_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.extend(streams.iter().cloned());
        names.extend(reg.replicas.keys().cloned());
        names.sort();
        names.dedup();
        for n in names {
            reg.open_stream(&n).await?;
        }
        Ok(reg)
    }

    fn role_of(&self, name: &str) -> Role {
        match self.replicas.get(name) {
            Some(u) => Role::Replica {
                upstream: u.clone(),
            },
            None => Role::Local,
        }
    }

    async fn open_stream(&self, name: &str) -> Result<Arc<Stream>> {
        check_stream_name(name)?;
        let _g = self.create.lock().await;
        if let Some(s) = self.get(name) {
            return Ok(s);
        }
        let dir = self.root.join(name);
        let log = drc_log::Log::open(&dir, self.log_config.clone())
            .await
            .map_err(|e| log_error(name, e))?;
        let stream = Arc::new(Stream::new(name.to_string(), self.role_of(name), log).await?);
        tracing::info!(
            stream = name,
            role = stream.role().name(),
            last_offset = stream.last_offset(),
            "stream open"
        );
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), stream.clone());
        Ok(stream)
    }

    /// The stream, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The stream, created if missing (the first publish of a capture).
    pub async fn get_or_create(&self, name: &str) -> Result<Arc<Stream>> {
        match self.get(name) {
            Some(s) => Ok(s),
            None => self.open_stream(name).await,
        }
    }

    /// Every stream, by name.
    pub fn list(&self) -> Vec<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Closes every log whose last user is gone (the writer finishes and the
    /// directory lock is released). Streams still used elsewhere are left to
    /// close when their last user drops them.
    pub async fn close(&self) {
        let streams: Vec<(String, Arc<Stream>)> =
            std::mem::take(&mut *self.streams.write().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        for (name, s) in streams {
            match Arc::try_unwrap(s) {
                Ok(s) => {
                    if let Err(e) = s.close().await {
                        tracing::warn!(stream = %name, error = %e, "closing log");
                    }
                }
                Err(_) => tracing::debug!(stream = %name, "stream still in use at close"),
            }
        }
    }
}
