//! The streaming, verifying blob writer: the only way bytes enter `blobs/sha256/`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::fsutil;
use rbuild_digest::{Digest, Hasher};

/// Why a blob was not stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Writing or syncing the temp file failed.
    #[error("cannot write temp file {path}")]
    Write {
        /// The temp file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Moving the finished blob into place failed.
    #[error("cannot move {from} to blob {digest}")]
    Commit {
        /// The temp file.
        from: PathBuf,
        /// The digest of its content.
        digest: Digest,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The content does not match the expected digest.
    #[error("blob content has digest {actual}, expected {expected}: refused")]
    DigestMismatch {
        /// What the caller said the content is.
        expected: Digest,
        /// What the content is.
        actual: Digest,
    },
    /// The content does not have the expected size.
    #[error("blob {digest}: got {actual} bytes, expected {expected}: refused")]
    SizeMismatch {
        /// The expected digest, or the digest of what arrived when none was expected.
        digest: Digest,
        /// The expected size.
        expected: u64,
        /// How many bytes arrived.
        actual: u64,
    },
}

/// What a caller expects a blob to be; a [`BlobWriter`] refuses anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The digest the content must have.
    pub digest: Digest,
    /// The size the content must have, when known.
    pub size: Option<u64>,
}

impl Expected {
    /// Expects `digest`, of any size.
    pub fn digest(digest: Digest) -> Expected {
        Expected { digest, size: None }
    }
}

/// A blob that made it into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Streams a blob into a temp file under `ROOT/tmp`, hashing as it goes, and moves it into
/// `blobs/sha256/` on [`commit`](BlobWriter::commit) only if the content matches what was
/// expected. Dropping it without committing removes the temp file (a resumable partial is
/// kept for a later [`Store::blob_writer_resumable`](crate::Store::blob_writer_resumable)).
///
/// It is a plain [`std::io::Write`]; async code drives it from `spawn_blocking` or by writing
/// each received chunk with `write_all`.
#[derive(Debug)]
pub struct BlobWriter {
    blobs_dir: PathBuf,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Hasher,
    offset: u64,
    expected: Option<Expected>,
    keep_partial: bool,
    syncer: Option<Syncer>,
    unsynced: u64,
}

/// Bytes a blob's temp file takes between two background syncs.
const SYNC_EVERY: u64 = 64 << 20;

/// Syncs a large blob's temp file in the background while it is still being written: the
/// disk then works alongside the writer, and the sync in `commit` waits only for the tail
/// instead of the whole blob at once.
#[derive(Debug)]
struct Syncer {
    wake: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn start(file: &File) -> io::Result<Syncer> {
        let file = file.try_clone()?;
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("blob-sync".into())
            .spawn(move || {
                // The clone shares the writer's open file, so a write-back error is reported
                // to whichever sync comes first: the first one is kept for `commit`.
                let mut failed = Ok(());
                while woken.recv().is_ok() {
                    if let Err(e) = file.sync_data()
                        && failed.is_ok()
                    {
                        failed = Err(e);
                    }
                }
                failed
            })?;
        Ok(Syncer { wake, thread })
    }

    /// Asks for a sync of what was written so far (one queued request covers later bytes).
    fn request(&self) {
        let _ = self.wake.try_send(());
    }

    /// Waits for the sync under way, if any; the first error any of them met.
    fn finish(self) -> io::Result<()> {
        drop(self.wake);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the blob sync thread panicked")))
    }
}

impl BlobWriter {
    /// A writer into a fresh, locked temp file.
    pub(crate) fn create(
        blobs_dir: PathBuf,
        tmp_dir: &Path,
        expected: Option<Expected>,
    ) -> Result<BlobWriter, BlobError> {
        let (path, file) =
            fsutil::create_temp(tmp_dir, "blob").map_err(|source| BlobError::Write {
                path: tmp_dir.to_path_buf(),
                source,
            })?;
        Ok(BlobWriter {
            blobs_dir,
            path,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            hasher: Hasher::new(),
            offset: 0,
            expected,
            keep_partial: false,
            syncer: None,
            unsynced: 0,
        })
    }

    /// A writer that continues the partial temp file left for `expected.digest`, if there is
    /// one that no other process is writing; otherwise a fresh one.
    pub(crate) fn resume(
        blobs_dir: PathBuf,
        tmp_dir: &Path,
        expected: Expected,
    ) -> Result<BlobWriter, BlobError> {
        let path = tmp_dir.join(format!("sha256-{}.partial", expected.digest.hex()));
        let werr = |source| BlobError::Write {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(werr)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            // Another process is filling this partial: write our own copy.
            return BlobWriter::create(blobs_dir, tmp_dir, Some(expected));
        }
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(werr)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let offset = hasher.len();
        if expected.size.is_some_and(|size| offset > size) {
            file.set_len(0).map_err(werr)?;
            hasher = Hasher::new();
        }
        let offset = hasher.len();
        file.seek(SeekFrom::Start(offset)).map_err(werr)?;
        Ok(BlobWriter {
            blobs_dir,
            path,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            hasher,
            offset,
            expected: Some(expected),
            keep_partial: true,
            syncer: None,
            unsynced: 0,
        })
    }

    /// How many bytes were already there when this writer was opened (a resumed partial):
    /// the caller continues the stream from this offset (an HTTP `Range` request), or calls
    /// [`restart`](BlobWriter::restart).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the blob has so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// The temp file being written.
    pub fn temp_path(&self) -> &Path {
        &self.path
    }

    /// Drops what was written so far and starts again from byte 0.
    pub fn restart(&mut self) -> Result<(), BlobError> {
        let path = self.path.clone();
        let werr = |source| BlobError::Write {
            path: path.clone(),
            source,
        };
        let file = self.file.as_mut().expect("writer is open");
        file.flush().map_err(werr)?;
        let inner = file.get_mut();
        inner.set_len(0).map_err(werr)?;
        inner.seek(SeekFrom::Start(0)).map_err(werr)?;
        self.hasher = Hasher::new();
        self.offset = 0;
        Ok(())
    }

    /// Verifies the content, syncs it and moves it to `blobs/sha256/<hex>`.
    ///
    /// On a digest or size mismatch the temp file is deleted and nothing enters the store.
    pub fn commit(mut self) -> Result<Committed, BlobError> {
        let file = self.file.take().expect("writer is open");
        let hasher = std::mem::take(&mut self.hasher);
        let size = hasher.len();
        let digest = hasher.finish();
        let path = self.path.clone();
        let werr = |source| BlobError::Write {
            path: path.clone(),
            source,
        };
        if let Some(expected) = self.expected {
            if expected.digest != digest {
                drop(file);
                let _ = std::fs::remove_file(&self.path);
                return Err(BlobError::DigestMismatch {
                    expected: expected.digest,
                    actual: digest,
                });
            }
            if let Some(want) = expected.size
                && want != size
            {
                drop(file);
                let _ = std::fs::remove_file(&self.path);
                return Err(BlobError::SizeMismatch {
                    digest,
                    expected: want,
                    actual: size,
                });
            }
        }
        let file = file.into_inner().map_err(|e| werr(e.into_error()))?;
        if let Some(syncer) = self.syncer.take() {
            syncer.finish().map_err(werr)?;
        }
        file.sync_all().map_err(werr)?;
        let dest = self.blobs_dir.join(digest.hex());
        let cerr = |source| BlobError::Commit {
            from: path.clone(),
            digest,
            source,
        };
        // Listed in this process's lease before it is visible, so no prune takes it
        // between the rename and its use.
        crate::gc::record_use(&dest);
        std::fs::rename(&self.path, &dest).map_err(cerr)?;
        fsutil::sync_dir(&self.blobs_dir).map_err(cerr)?;
        // The rename released the name; the lock goes with the file.
        drop(file);
        Ok(Committed { digest, size })
    }

    /// Throws the content away, partial included.
    pub fn abort(mut self) {
        self.keep_partial = false;
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(Expected {
            digest,
            size: Some(size),
        }) = self.expected
            && self.hasher.len() + buf.len() as u64 > size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {digest} is longer than the expected {size} bytes"),
            ));
        }
        let file = self.file.as_mut().expect("writer is open");
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            if self.syncer.is_none() {
                match Syncer::start(file.get_ref()) {
                    Ok(s) => self.syncer = Some(s),
                    Err(e) => {
                        tracing::debug!("no background sync for {}: {e}", self.path.display())
                    }
                }
            }
            if let Some(s) = &self.syncer {
                s.request();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("writer is open").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Not joined: the sync under way ends on its own.
        drop(self.syncer.take().map(|s| s.wake));
        if let Some(mut file) = self.file.take() {
            if self.keep_partial {
                let _ = file.flush();
            } else {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
