//! The store seen by the registry client: pulled blobs stream into verified store writers
//! ([`BlobTarget`] / [`BlobSink`]), pushed blobs stream out of blob files ([`BlobSource`]).
//!
//! The cache crate never touches the network and the registry crate never touches disk; this
//! module is where the two meet.
//!
//! Where pulled images came from (`rbuild_cache::sources`) lets a push to another repository
//! of the same registry mount the blobs (`POST /v2/DEST/blobs/uploads/?mount=DIGEST&from=REPO`)
//! instead of uploading them.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use rbuild_cache::variants::Variant;
use rbuild_cache::{BlobWriter, Digest, Expected, Store};
use rbuild_registry::{BlobSink, BlobSource, BlobTarget, Descriptor, Reference};

use crate::output::Conversion;

/// The store as a pull target and a push source.
#[derive(Debug, Clone)]
pub struct StoreBlobs {
    store: Store,
    /// Converted layers a push did not keep, by digest: opened, they are converted again.
    remakes: Arc<Mutex<HashMap<Digest, (Conversion, Variant)>>>,
    /// Held while one of them is converted again.
    remaking: Arc<Mutex<()>>,
}

impl StoreBlobs {
    /// Wraps a store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            remakes: Arc::default(),
            remaking: Arc::default(),
        }
    }

    /// Serves `variant`, a layer converted without keeping its blob: when it is opened, it is
    /// converted again with `from` and stored.
    pub fn remake(&self, variant: &Variant, from: &Conversion) {
        self.remakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(variant.digest, (from.clone(), variant.clone()));
    }
}

fn store_digest(digest: &rbuild_registry::Digest) -> io::Result<Digest> {
    Digest::try_from(digest).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Runs `f`, which blocks on disk I/O (fsync, rename), without stalling the other tasks of a
/// multi-threaded runtime: `block_in_place` hands this worker's queued tasks to another one.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl BlobTarget for StoreBlobs {
    fn has(&self, digest: &rbuild_registry::Digest) -> bool {
        // A blob the pull skips is marked used, so a concurrent prune cannot take it away
        // before the image is tagged.
        store_digest(digest).is_ok_and(|d| self.store.claim_blob(&d))
    }

    fn sink(&self, descriptor: &Descriptor) -> io::Result<Box<dyn BlobSink>> {
        let expected = Expected {
            digest: store_digest(descriptor.digest())?,
            size: Some(descriptor.size()),
        };
        // The client resumes an interrupted transfer itself (HTTP Range into the same sink);
        // the sink interface has no way to start a fresh pull at a partial's offset, so every
        // sink is a fresh temp file that disappears unless committed.
        let writer = self
            .store
            .blob_writer(Some(expected))
            .map_err(io::Error::other)?;
        Ok(Box::new(StoreSink { writer }))
    }
}

impl BlobSource for StoreBlobs {
    fn open(
        &self,
        digest: &rbuild_registry::Digest,
        offset: u64,
    ) -> io::Result<Box<dyn Read + Send>> {
        let digest = store_digest(digest)?;
        let remake = self
            .remakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
            .cloned();
        if let Some((from, variant)) = remake
            && !self.store.has_blob(&digest)
        {
            // Once, for every later chunk and retry: the blob is then in the store.
            let _one = self.remaking.lock().unwrap_or_else(|e| e.into_inner());
            if !self.store.has_blob(&digest) {
                blocking(|| from.remake(&self.store, &variant))
                    .map_err(|e| io::Error::other(crate::error::chain_text(&e)))?;
            }
        }
        let mut file = self.store.open_blob(&digest).map_err(|e| match e {
            rbuild_cache::StoreError::BlobMissing { .. } => {
                io::Error::new(io::ErrorKind::NotFound, e)
            }
            other => io::Error::other(other),
        })?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(file))
    }
}

/// One blob on its way into the store: a temp file under `ROOT/tmp` until the verified commit
/// moves it into `blobs/sha256/`; dropped or aborted, it leaves nothing.
#[derive(Debug)]
struct StoreSink {
    writer: BlobWriter,
}

impl BlobSink for StoreSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        // Buffered (256 KiB): most chunks only copy into the buffer.
        self.writer.write_all(buf)
    }

    fn reset(&mut self) -> io::Result<()> {
        self.writer.restart().map_err(io::Error::other)
    }

    fn commit(self: Box<Self>, digest: &rbuild_registry::Digest) -> io::Result<()> {
        let want = store_digest(digest)?;
        let writer = self.writer;
        let committed = blocking(move || writer.commit()).map_err(io::Error::other)?;
        if committed.digest != want {
            // Unreachable when the writer was made by `sink`: it verifies against the
            // descriptor's digest, which is the one the client commits.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} committed instead of {want}", committed.digest),
            ));
        }
        Ok(())
    }

    fn abort(self: Box<Self>) {
        self.writer.abort();
    }
}

/// The repository to mount blobs from when pushing to `dest`: the recorded source of
/// `digest`, when it is another repository of the same registry.
pub fn mount_source(store: &Store, digest: &Digest, dest: &Reference) -> Option<String> {
    let source = store.source_of(digest)?;
    let (registry, repository) = source.split_once('/')?;
    (registry == dest.registry() && repository != dest.repository()).then(|| repository.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(d: &Digest) -> rbuild_registry::Digest {
        rbuild_registry::Digest::from(*d)
    }

    #[test]
    fn sink_commits_only_verified_content_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blobs = StoreBlobs::new(store.clone());
        let data = b"hello blob".to_vec();
        let digest = Digest::of(&data);
        let desc = Descriptor::new(
            oci_spec::image::MediaType::ImageLayer,
            data.len() as u64,
            oci(&digest),
        );

        // Aborted after a partial write: nothing in blobs/, nothing left in tmp/.
        let mut sink = blobs.sink(&desc).unwrap();
        sink.write(&data[..4]).unwrap();
        sink.abort();
        assert!(!blobs.has(&oci(&digest)));
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);

        // Wrong bytes of the right size: refused at commit.
        let mut sink = blobs.sink(&desc).unwrap();
        sink.write(b"HELLO BLOB").unwrap();
        assert!(sink.commit(&oci(&digest)).is_err());
        assert!(!blobs.has(&oci(&digest)));
        assert_eq!(std::fs::read_dir(store.blobs_dir()).unwrap().count(), 0);

        // Too many bytes: refused at write.
        let mut sink = blobs.sink(&desc).unwrap();
        assert!(sink.write(b"hello blob and more").is_err());
        sink.abort();

        // Reset, then the right bytes: stored.
        let mut sink = blobs.sink(&desc).unwrap();
        sink.write(b"junk").unwrap();
        sink.reset().unwrap();
        sink.write(&data).unwrap();
        sink.commit(&oci(&digest)).unwrap();
        assert!(blobs.has(&oci(&digest)));
        assert_eq!(store.read_blob(&digest).unwrap(), data);

        let mut from_5 = String::new();
        blobs
            .open(&oci(&digest), 6)
            .unwrap()
            .read_to_string(&mut from_5)
            .unwrap();
        assert_eq!(from_5, "blob");
        let missing = Digest::of(b"missing");
        assert_eq!(
            blobs.open(&oci(&missing), 0).err().unwrap().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn sources_give_mounts_on_the_same_registry_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = Digest::of(b"manifest");
        let pulled = Reference::parse("127.0.0.1:5000/library/busybox:1").unwrap();
        assert_eq!(store.source_of(&digest), None);
        store.record_source(&digest, &pulled.name()).unwrap();
        let same = Reference::parse("127.0.0.1:5000/other:2").unwrap();
        assert_eq!(
            mount_source(&store, &digest, &same).as_deref(),
            Some("library/busybox")
        );
        let same_repo = Reference::parse("127.0.0.1:5000/library/busybox:2").unwrap();
        assert_eq!(mount_source(&store, &digest, &same_repo), None);
        let elsewhere = Reference::parse("127.0.0.1:5001/other:2").unwrap();
        assert_eq!(mount_source(&store, &digest, &elsewhere), None);
    }
}
