//! Where pulled blobs go and where pushed blobs come from.
//!
//! The traits are synchronous so a `std::fs` store implements them directly; the client calls
//! them with chunks of at most a few hundred KiB, so a write to a local file does not hold up
//! the async runtime noticeably.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use oci_spec::image::{Descriptor, Digest};

/// Receives one blob's bytes, in order. The client verifies the digest before `commit`; a sink
/// that is dropped or `abort`ed must leave nothing behind.
pub trait BlobSink: Send {
    /// Appends bytes.
    fn write(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Discards everything written so far (the server restarted the transfer from byte 0).
    fn reset(&mut self) -> io::Result<()>;
    /// Makes the blob durable under `digest`; called only after the bytes hashed to it.
    fn commit(self: Box<Self>, digest: &Digest) -> io::Result<()>;
    /// Drops what was written; called on any failure.
    fn abort(self: Box<Self>);
}

/// The caller's side of a pull: which blobs it already holds, and sinks for the others.
pub trait BlobTarget: Sync {
    /// Whether the blob is already present (it is then not fetched).
    fn has(&self, digest: &Digest) -> bool;
    /// A fresh, empty sink for the blob.
    fn sink(&self, descriptor: &Descriptor) -> io::Result<Box<dyn BlobSink>>;
}

/// The caller's side of a push: blob contents by digest.
pub trait BlobSource: Sync {
    /// A reader positioned `offset` bytes into the blob.
    fn open(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>>;
}

/// Blobs held in memory: a [`BlobTarget`] and [`BlobSource`] for small images and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobs {
    blobs: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
}

impl MemoryBlobs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a blob under its digest (not verified: callers hash what they insert).
    pub fn insert(&self, digest: &Digest, bytes: Vec<u8>) {
        self.lock().insert(digest.to_string(), Arc::new(bytes));
    }
    /// A blob's bytes.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Vec<u8>>> {
        self.lock().get(digest.as_ref()).cloned()
    }
    /// How many blobs are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }
    /// Whether no blob is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<u8>>>> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlobTarget for MemoryBlobs {
    fn has(&self, digest: &Digest) -> bool {
        self.lock().contains_key(digest.as_ref())
    }
    fn sink(&self, _descriptor: &Descriptor) -> io::Result<Box<dyn BlobSink>> {
        Ok(Box::new(MemorySink {
            blobs: self.clone(),
            buf: Vec::new(),
        }))
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let bytes = self.get(digest).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("blob {digest} not held"))
        })?;
        let mut cursor = io::Cursor::new(ArcBytes(bytes));
        cursor.set_position(offset);
        Ok(Box::new(cursor))
    }
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

struct MemorySink {
    blobs: MemoryBlobs,
    buf: Vec<u8>,
}

impl BlobSink for MemorySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }
    fn reset(&mut self) -> io::Result<()> {
        self.buf.clear();
        Ok(())
    }
    fn commit(self: Box<Self>, digest: &Digest) -> io::Result<()> {
        let Self { blobs, buf } = *self;
        blobs.insert(digest, buf);
        Ok(())
    }
    fn abort(self: Box<Self>) {}
}
