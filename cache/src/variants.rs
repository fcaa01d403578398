//! Compressed variants of uncompressed layers: `ROOT/variants-v1/<hex>.<format>`.
//!
//! Builds keep their layers uncompressed in the store by default (writing a 1 GB layer then
//! costs a copy, not a minute of gzip), like docker's own image store. A push compresses
//! such a layer once and records here which blob holds the compressed bytes, so the next
//! push of any image with that layer reuses the blob. A push records only the digest (the
//! blob uploads while it is compressed and is not kept: `stored` is false), so a re-push to a
//! registry that has it costs a HEAD. A record is a hint: the caller checks that the blob it
//! names is present (in the store, or in the registry for a record without a blob) and
//! falls back to compressing again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::fsutil::write_atomic;

/// Reading or writing a variant record failed.
#[derive(Debug, thiserror::Error)]
pub enum VariantsError {
    /// The record's file could not be read or written.
    #[error("cannot access variant record {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A compressed blob holding the same tar as an uncompressed layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The compressed blob's digest (a record naming no sha256 digest reads as absent).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Whether the blob is in the store (records written before this field existed had one).
    #[serde(default = "stored_default")]
    pub stored: bool,
}

fn stored_default() -> bool {
    true
}

/// The variant records of one store.
#[derive(Debug, Clone)]
pub struct Variants {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Variants {
    /// Opens (creating) the records of the store at `root`.
    pub fn open(root: &Path) -> Result<Variants, VariantsError> {
        let dir = root.join("variants-v1");
        let tmp = root.join("tmp");
        for d in [&dir, &tmp] {
            fs::create_dir_all(d).map_err(|source| VariantsError::Io {
                path: d.clone(),
                source,
            })?;
        }
        Ok(Variants { dir, tmp })
    }

    fn path(&self, layer: &Digest, format: &str) -> PathBuf {
        let format: String = format
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        self.dir.join(format!("{}.{format}", layer.hex()))
    }

    /// The `format` (`gzip`, `zstd`) variant of the uncompressed `layer`, if recorded.
    pub fn get(&self, layer: &Digest, format: &str) -> Option<Variant> {
        let bytes = fs::read(self.path(layer, format)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a variant.
    pub fn put(
        &self,
        layer: &Digest,
        format: &str,
        variant: &Variant,
    ) -> Result<(), VariantsError> {
        let path = self.path(layer, format);
        let bytes = serde_json::to_vec(variant).unwrap_or_default();
        write_atomic(&self.tmp, &path, &bytes).map_err(|source| VariantsError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let v = Variants::open(dir.path()).unwrap();
        let layer = Digest::of(b"tar");
        assert_eq!(v.get(&layer, "gzip"), None);
        let variant = Variant {
            digest: Digest::of(b"gz"),
            size: 2,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            stored: false,
        };
        v.put(&layer, "gzip", &variant).unwrap();
        assert_eq!(v.get(&layer, "gzip"), Some(variant));
        assert_eq!(v.get(&layer, "zstd"), None);
        assert_eq!(v.get(&layer, "../gzip"), v.get(&layer, "gzip"));
        // A record from before `stored` names a blob of the store.
        let old = format!(
            r#"{{"digest":"{}","size":2,"media_type":"m"}}"#,
            Digest::of(b"gz")
        );
        std::fs::write(
            dir.path()
                .join("variants-v1")
                .join(format!("{}.zstd", layer.hex())),
            old,
        )
        .unwrap();
        assert!(v.get(&layer, "zstd").unwrap().stored);
        // A record whose digest is no digest is no record: the variant is made again.
        std::fs::write(
            dir.path()
                .join("variants-v1")
                .join(format!("{}.zstd", layer.hex())),
            r#"{"digest":"sha256:../../x","size":2,"media_type":"m"}"#,
        )
        .unwrap();
        assert_eq!(v.get(&layer, "zstd"), None);
    }
}
