//! The action cache: what a build step produced, by cache key, in `ROOT/cache-v1/`.
//!
//! A key is a [`Digest`] the build engine computes from the step's definition and the keys
//! or content digests of its inputs (see the engine for what goes in). The record says
//! which layer the step added (or that it added none); the layer blob itself lives in the
//! store's `blobs/`. A record whose layer blob is gone (removed by `rmi`) is a miss.
//!
//! Beside the records, `slots/` remembers, for each step of a Dockerfile (a "slot": the
//! engine names it by Dockerfile, stage and position), the inputs of the last key computed
//! there, so a miss can say what changed since the previous build: a file, a build
//! argument, the base image, the parent step.
//!
//! Every write is atomic (temp file, fsync, rename); concurrent builds writing the same
//! key write the same content, and the last rename wins.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::fsutil::write_atomic;

/// The version of the record format; part of every key the engine computes.
pub const SCHEMA: u32 = 1;

/// Reading or writing the action cache failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A directory or record could not be read or written.
    #[error("cannot access action cache file {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record could not be encoded.
    #[error("cannot encode action cache record {path}")]
    Encode {
        /// The record's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A layer a step added.
///
/// The digests serialize as their `sha256:<hex>` text, as records written before they were
/// typed hold them; a record whose digest is not one reads as a miss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the blob.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: String,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// [`SCHEMA`] when written.
    pub schema: u32,
    /// The layer added, or `None` when the step changed no file.
    pub layer: Option<LayerRecord>,
    /// When the step ran (seconds since the epoch).
    pub created: i64,
    /// The step as the image history shows it (for people reading the cache).
    pub description: String,
}

/// One input of a step's key, as remembered for explaining the next miss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainInput {
    /// What it is: `parent`, `source`, `mount`, `base image`, `context`, `url`...
    pub role: String,
    /// A short name for people: the parent step's instruction, the image reference.
    pub label: String,
    /// The key or content digest it contributed.
    pub digest: String,
    /// What a base image input resolved to (its manifest digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The inputs of the last key computed for one slot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExplainRecord {
    /// The key computed.
    pub key: String,
    /// The step's definition digest.
    pub definition: String,
    /// The step as written (history form).
    pub description: String,
    /// The environment the step sees (`NAME=value`), for naming a changed build argument.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Its inputs in key order.
    pub inputs: Vec<ExplainInput>,
    /// For context selections: each selected path and its content digest (short).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// The action cache of one store.
#[derive(Debug, Clone)]
pub struct ActionCache {
    keys: PathBuf,
    slots: PathBuf,
    tmp: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ActionError + '_ {
    move |source| ActionError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ActionCache {
    /// Opens (creating when missing) the action cache of the store at `root`.
    pub fn open(root: &Path) -> Result<ActionCache, ActionError> {
        let dir = root.join("cache-v1");
        let keys = dir.join("keys");
        let slots = dir.join("slots");
        let tmp = root.join("tmp");
        for d in [&keys, &slots, &tmp] {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        Ok(ActionCache { keys, slots, tmp })
    }

    fn key_path(&self, key: &Digest) -> PathBuf {
        self.keys.join(format!("{}.json", key.hex()))
    }

    fn slot_path(&self, slot: &Digest) -> PathBuf {
        self.slots.join(format!("{}.json", slot.hex()))
    }

    /// The record for `key`, if one was written and is readable. A record that does not
    /// decode (a future format, a torn file from another tool) is treated as absent.
    pub fn get(&self, key: &Digest) -> Result<Option<CacheRecord>, ActionError> {
        let path = self.key_path(key);
        read_json(&path)
    }

    /// Records what the step with `key` produced.
    pub fn put(&self, key: &Digest, record: &CacheRecord) -> Result<(), ActionError> {
        let path = self.key_path(key);
        write_json(&self.tmp, &path, record)
    }

    /// Removes the record for `key` (its layer blob is gone).
    pub fn forget(&self, key: &Digest) -> Result<(), ActionError> {
        let path = self.key_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The inputs last recorded for `slot`.
    pub fn last_inputs(&self, slot: &Digest) -> Result<Option<ExplainRecord>, ActionError> {
        read_json(&self.slot_path(slot))
    }

    /// The key last computed for `slot`: a small read, so a build whose steps all hit
    /// need not parse the (possibly large) input records.
    pub fn last_key(&self, slot: &Digest) -> Result<Option<String>, ActionError> {
        let path = self.slots.join(format!("{}.key", slot.hex()));
        match fs::read_to_string(&path) {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Remembers the inputs of the key just computed for `slot`.
    pub fn set_last_inputs(
        &self,
        slot: &Digest,
        record: &ExplainRecord,
    ) -> Result<(), ActionError> {
        let path = self.slot_path(slot);
        write_json(&self.tmp, &path, record)?;
        let key_path = self.slots.join(format!("{}.key", slot.hex()));
        write_atomic(&self.tmp, &key_path, record.key.as_bytes()).map_err(io_err(&key_path))
    }

    /// Every key with a record (for `prune` and tests).
    pub fn keys(&self) -> Result<Vec<Digest>, ActionError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.keys).map_err(io_err(&self.keys))? {
            let entry = entry.map_err(io_err(&self.keys))?;
            let name = entry.file_name();
            if let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && let Ok(d) = Digest::from_hex(hex)
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ActionError> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::debug!("ignoring unreadable record {}: {e}", path.display());
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn write_json<T: Serialize>(tmp: &Path, path: &Path, value: &T) -> Result<(), ActionError> {
    let bytes = serde_json::to_vec(value).map_err(|source| ActionError::Encode {
        path: path.to_owned(),
        source,
    })?;
    write_atomic(tmp, path, &bytes).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as stores written before the digests were typed hold it, byte for byte:
    /// it reads, and writes back the same.
    #[test]
    fn records_of_earlier_stores_read_and_keep_their_format() {
        let text = r#"{"schema":1,"layer":{"digest":"sha256:a3f6e8e8f2b2ea3e2a2a05cd4c5a7c22f4f8b1a2c1a5eb9f7e6a9d6a6b6c7d8e","diff_id":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":4,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"},"created":1,"description":"RUN true"}"#;
        let record: CacheRecord = serde_json::from_str(text).unwrap();
        let layer = record.layer.as_ref().unwrap();
        assert_eq!(layer.diff_id, Digest::of(b""));
        assert_eq!(
            layer.digest.to_string(),
            "sha256:a3f6e8e8f2b2ea3e2a2a05cd4c5a7c22f4f8b1a2c1a5eb9f7e6a9d6a6b6c7d8e"
        );
        assert_eq!(serde_json::to_string(&record).unwrap(), text);

        // A record whose digest is not one is a miss, as a record that is not JSON.
        let dir = tempfile::tempdir().unwrap();
        let cache = ActionCache::open(dir.path()).unwrap();
        let key = Digest::of(b"step");
        cache.put(&key, &record).unwrap();
        assert_eq!(cache.get(&key).unwrap(), Some(record));
        fs::write(
            cache.key_path(&key),
            text.replace("sha256:a3f6", "sha256:../"),
        )
        .unwrap();
        assert_eq!(cache.get(&key).unwrap(), None);
    }

    #[test]
    fn records_round_trip_and_bad_records_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ActionCache::open(dir.path()).unwrap();
        let key = Digest::of(b"step");
        assert_eq!(cache.get(&key).unwrap(), None);
        let record = CacheRecord {
            schema: SCHEMA,
            layer: Some(LayerRecord {
                digest: Digest::of(b"blob"),
                diff_id: Digest::of(b"tar"),
                size: 4,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }),
            created: 1,
            description: "RUN true".into(),
        };
        cache.put(&key, &record).unwrap();
        assert_eq!(cache.get(&key).unwrap(), Some(record));
        assert_eq!(cache.keys().unwrap(), vec![key]);
        fs::write(cache.key_path(&key), b"{not json").unwrap();
        assert_eq!(cache.get(&key).unwrap(), None);
        cache.forget(&key).unwrap();
        assert!(cache.keys().unwrap().is_empty());

        let slot = Digest::of(b"slot");
        let mut explain = ExplainRecord {
            key: key.to_string(),
            ..Default::default()
        };
        explain.files.insert("a.txt".into(), "abc".into());
        assert_eq!(cache.last_key(&slot).unwrap(), None);
        cache.set_last_inputs(&slot, &explain).unwrap();
        assert_eq!(cache.last_inputs(&slot).unwrap(), Some(explain));
        assert_eq!(cache.last_key(&slot).unwrap(), Some(key.to_string()));
    }
}
