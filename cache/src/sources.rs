//! Where pulled images came from: `ROOT/sources-v1/`.
//!
//! A pull records, for the manifest it stored (and the index, if the tag named one), the
//! repository it came from: `ROOT/sources-v1/<manifest hex>` holds one line,
//! `REGISTRY/REPOSITORY` (e.g. `127.0.0.1:5000/library/busybox`). A push of that manifest to
//! another repository of the same registry asks the registry to mount the blobs from there
//! instead of uploading them. The file is written atomically; a missing or unreadable one
//! only means the blobs are uploaded. A prune removes the entries whose manifest is no
//! longer in the store ([`Store::forget_sources`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::Digest;
use crate::store::Store;

/// Recording or forgetting a pull source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// A file or directory of `sources-v1/` could not be read or written.
    #[error("cannot access pull source record {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The repository text is not one line.
    #[error("pull source {repository:?} of {digest} is not one line naming a repository")]
    NotOneLine {
        /// The manifest digest.
        digest: Digest,
        /// The text given.
        repository: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourcesError + '_ {
    move |source| SourcesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The side folder of pull sources, under the root.
pub const SOURCES_DIR: &str = "sources-v1";

impl Store {
    /// Records that the manifest (or index) `digest` was pulled from `repository`
    /// (`REGISTRY/REPOSITORY`, one line).
    pub fn record_source(&self, digest: &Digest, repository: &str) -> Result<(), SourcesError> {
        let dir = self.root().join(SOURCES_DIR);
        let path = dir.join(digest.hex());
        if repository.is_empty() || repository.contains(['\n', '\r']) {
            return Err(SourcesError::NotOneLine {
                digest: *digest,
                repository: repository.to_string(),
            });
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        crate::fsutil::write_atomic(&self.tmp_dir(), &path, format!("{repository}\n").as_bytes())
            .map_err(io_err(&path))
    }

    /// The `REGISTRY/REPOSITORY` the manifest `digest` was pulled from, if recorded.
    pub fn source_of(&self, digest: &Digest) -> Option<String> {
        let path = self.root().join(SOURCES_DIR).join(digest.hex());
        let text = std::fs::read_to_string(path).ok()?;
        let line = text.lines().next()?.trim();
        (!line.is_empty()).then(|| line.to_string())
    }

    /// Removes the source entries whose manifest is no longer in the store (and any file
    /// there that names no digest). Returns how many went.
    pub fn forget_sources(&self) -> Result<usize, SourcesError> {
        let dir = self.root().join(SOURCES_DIR);
        crate::fsutil::remove_files_unless(&dir, |path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| Digest::from_hex(n).ok())
                .is_some_and(|d| self.has_blob(&d))
        })
        .map_err(|(path, source)| SourcesError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recorded_read_and_forgotten_with_their_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put_blob(b"kept manifest", None).unwrap().digest;
        let gone = Digest::of(b"gone manifest");
        assert_eq!(store.source_of(&kept), None);
        store
            .record_source(&kept, "127.0.0.1:5000/library/busybox")
            .unwrap();
        store.record_source(&gone, "127.0.0.1:5000/other").unwrap();
        assert!(store.record_source(&gone, "a\nb").is_err());
        assert_eq!(
            store.source_of(&kept).as_deref(),
            Some("127.0.0.1:5000/library/busybox")
        );
        std::fs::write(dir.path().join(SOURCES_DIR).join("junk"), "x").unwrap();
        assert_eq!(store.forget_sources().unwrap(), 2);
        assert_eq!(store.source_of(&gone), None);
        assert!(store.source_of(&kept).is_some());
    }
}
