//! What `ADD <url>` downloaded before: `ROOT/downloads-v1/`.
//!
//! A download whose response carried an `ETag` is kept as a blob of the store, and
//! `ROOT/downloads-v1/<sha256 of the URL>` records the entity tag, the content's digest and
//! the response's `Last-Modified`. The next build of that URL asks the server with
//! `If-None-Match` and, on 304, takes the blob instead of downloading it again. The URL itself
//! is not written (it may carry credentials); a missing or unreadable record, or one whose
//! blob a prune removed, only means a full download. A prune removes the records whose blob
//! is gone ([`Store::forget_downloads`]).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::store::Store;

/// Recording or forgetting a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadsError {
    /// A file or directory of `downloads-v1/` could not be read or written.
    #[error("cannot access download record {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record could not be encoded.
    #[error("cannot encode download record {path}")]
    Json {
        /// The record's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadsError + '_ {
    move |source| DownloadsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The side folder of download records, under the root.
pub const DOWNLOADS_DIR: &str = "downloads-v1";

/// A URL's last download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downloaded {
    /// The response's entity tag, as the server sent it.
    pub etag: String,
    /// The content's digest: a blob of the store.
    pub digest: Digest,
    /// Bytes.
    pub size: u64,
    /// The response's `Last-Modified`, seconds since the epoch.
    pub last_modified: Option<i64>,
}

impl Store {
    fn download_record(&self, url: &str) -> PathBuf {
        self.root()
            .join(DOWNLOADS_DIR)
            .join(Digest::of(url.as_bytes()).hex())
    }

    /// The last download of `url`, when it was recorded and its blob is still here.
    pub fn downloaded(&self, url: &str) -> Option<Downloaded> {
        let bytes = std::fs::read(self.download_record(url)).ok()?;
        let record: Downloaded = serde_json::from_slice(&bytes).ok()?;
        self.has_blob(&record.digest).then_some(record)
    }

    /// Records the download of `url` (its content already a blob of the store).
    pub fn record_download(&self, url: &str, record: &Downloaded) -> Result<(), DownloadsError> {
        let path = self.download_record(url);
        let dir = self.root().join(DOWNLOADS_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let bytes = serde_json::to_vec(record).map_err(|source| DownloadsError::Json {
            path: path.clone(),
            source,
        })?;
        crate::fsutil::write_atomic(&self.tmp_dir(), &path, &bytes).map_err(io_err(&path))
    }

    /// Removes the records whose blob is no longer in the store (and any file there that is
    /// no record). Returns how many went.
    pub fn forget_downloads(&self) -> Result<usize, DownloadsError> {
        let dir = self.root().join(DOWNLOADS_DIR);
        crate::fsutil::remove_files_unless(&dir, |path| {
            std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Downloaded>(&b).ok())
                .is_some_and(|r| self.has_blob(&r.digest))
        })
        .map_err(|(path, source)| DownloadsError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_recorded_and_forgotten_with_their_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put_blob(b"kept content", None).unwrap().digest;
        let record = |digest| Downloaded {
            etag: "\"v1\"".into(),
            digest,
            size: 12,
            last_modified: Some(1_700_000_000),
        };
        assert_eq!(store.downloaded("http://127.0.0.1/a"), None);
        store
            .record_download("http://127.0.0.1/a", &record(kept))
            .unwrap();
        store
            .record_download("http://u:secret@127.0.0.1/b", &record(Digest::of(b"gone")))
            .unwrap();
        assert_eq!(store.downloaded("http://127.0.0.1/a"), Some(record(kept)));
        // A record whose blob is gone reads as none, and a prune removes it.
        assert_eq!(store.downloaded("http://u:secret@127.0.0.1/b"), None);
        assert_eq!(store.forget_downloads().unwrap(), 1);
        assert_eq!(store.downloaded("http://127.0.0.1/a"), Some(record(kept)));
        // No record names its URL.
        for entry in std::fs::read_dir(dir.path().join(DOWNLOADS_DIR)).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains("127.0.0.1"), "{text}");
        }
    }
}
