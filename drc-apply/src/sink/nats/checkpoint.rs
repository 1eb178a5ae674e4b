//! The checkpoint in a JetStream key-value bucket: one key per DRC stream
//! (the stream name itself, e.g. `a.shop`), its value a small JSON object:
//!
//! ```text
//! {"stream":"a.shop","offset":42,"position":{"gtid":"0-1-42","file":"binlog.000001","pos":4200,"gtid_set":"0-1-42"},
//!  "jetstream_stream":"DRC_a_shop","last_sequence":118}
//! ```
//!
//! `last_sequence` is the JetStream sequence of the last message of the
//! checkpointed batch (0: none yet); it is there for people reading the
//! bucket, the sink does not rely on it. The value is written (and
//! acknowledged by JetStream) only after every publish of the batch has been
//! acknowledged, so the checkpoint never counts a message JetStream does not
//! hold.

use async_nats::jetstream::kv::Store;
use drc_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use super::SINK_NAME;
use crate::error::{ApplyError, Result};
use crate::sink::Checkpoint;

#[derive(Serialize, Deserialize)]
struct Value {
    stream: String,
    offset: u64,
    #[serde(default)]
    position: Option<Position>,
    #[serde(default)]
    jetstream_stream: String,
    #[serde(default)]
    last_sequence: u64,
}

#[derive(Serialize, Deserialize)]
struct Position {
    gtid: String,
    file: String,
    pos: u64,
    gtid_set: String,
}

/// Whether `key` is a valid key-value key (letters, digits, `-/_=.`, no dot
/// at either end, no empty token).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.'))
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
}

/// The checkpoint of `stream` stored in `kv` (offset 0 when there is none).
pub async fn read(kv: &Store, bucket: &str, stream: &str) -> Result<Checkpoint> {
    let value = kv.get(stream).await.map_err(|e| ApplyError::Transient {
        sink: SINK_NAME.into(),
        message: format!("read checkpoint {stream:?} from bucket {bucket:?}: {e}"),
    })?;
    let Some(bytes) = value else {
        return Ok(Checkpoint {
            stream: stream.into(),
            offset: 0,
            position: None,
        });
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApplyError::Config(format!(
            "checkpoint {stream:?} in bucket {bucket:?} is not valid ({e}); restore it, or delete the key to start over from the relay's first offset"
        ))
    })?;
    if v.stream != stream {
        return Err(ApplyError::Config(format!(
            "checkpoint key {stream:?} in bucket {bucket:?} holds stream {:?}; delete the key or use another sink.kv_bucket",
            v.stream
        )));
    }
    Ok(Checkpoint {
        stream: v.stream,
        offset: v.offset,
        position: v.position.map(|p| pb::SourcePosition {
            gtid: p.gtid,
            file: p.file,
            pos: p.pos,
            gtid_set: p.gtid_set,
        }),
    })
}

/// Replaces the checkpoint of `cp.stream`; returns once JetStream has
/// acknowledged it.
pub async fn write(
    kv: &Store,
    bucket: &str,
    cp: &Checkpoint,
    jetstream_stream: &str,
    last_sequence: u64,
) -> Result<()> {
    let value = Value {
        stream: cp.stream.clone(),
        offset: cp.offset,
        position: cp.position.as_ref().map(|p| Position {
            gtid: p.gtid.clone(),
            file: p.file.clone(),
            pos: p.pos,
            gtid_set: p.gtid_set.clone(),
        }),
        jetstream_stream: jetstream_stream.into(),
        last_sequence,
    };
    let bytes = serde_json::to_vec(&value).map_err(|e| ApplyError::Definite {
        sink: SINK_NAME.into(),
        offset: cp.offset,
        message: format!("encode checkpoint: {e}"),
    })?;
    kv.put(cp.stream.as_str(), bytes.into())
        .await
        .map_err(|e| ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!(
                "write checkpoint {:?} at offset {} into bucket {bucket:?}: {e}",
                cp.stream, cp.offset
            ),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_key;

    #[test]
    fn keys() {
        assert!(valid_key("a.shop"));
        assert!(valid_key("a-b_c"));
        assert!(!valid_key("a."));
        assert!(!valid_key("a..b"));
        assert!(!valid_key(""));
    }
}
