//! Layers of an image in the store as [`rbuild_report`] reads them (`rbuild report`,
//! `rbuild sbom` and the SBOM attestation of a build).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, mpsc};

use rbuild_cache::{Digest, Store};
use rbuild_report::sbom::ScannedLayer;

/// The layer blobs of a stored image, in manifest order; every tar stream is followed
/// header by header against `limits`.
#[derive(Debug)]
pub struct StoreLayers<'a> {
    /// The store.
    pub store: &'a Store,
    /// The layers' blob digests.
    pub digests: &'a [Digest],
    /// The bounds of a layer.
    pub limits: rbuild_tarlimits::Limits,
}

impl rbuild_report::LayerSource for StoreLayers<'_> {
    fn open(&self, index: usize) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let digest = self.digests.get(index).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no layer {index}"))
        })?;
        let file = self
            .store
            .open_blob(digest)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Box::new(file))
    }

    fn check<'r>(&self, tar: Box<dyn Read + 'r>) -> Box<dyn Read + 'r> {
        Box::new(self.limits.reader(tar))
    }
}

/// The package inventory's reading of layers a build unpacked, by diff id: a build that
/// attaches an SBOM reads each base layer while it unpacks it (a second reader of the same
/// uncompressed stream, on its own thread), so that the SBOM need not decompress the layer
/// again.
#[derive(Debug, Default)]
pub struct LayerScans {
    done: Mutex<HashMap<Digest, ScannedLayer>>,
}

impl LayerScans {
    /// The reading of the layer with this diff id, if a build made one.
    pub fn get(&self, diff_id: &Digest) -> Option<ScannedLayer> {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(diff_id)
            .cloned()
    }

    /// Starts reading a layer's uncompressed stream: feed it every byte through
    /// [`LayerTee::feed`], then [`LayerTee::finish`]. The reading is kept when it succeeds;
    /// when it fails, the SBOM reads the layer's blob later. `None` when the layer was read
    /// already (or no thread could be started).
    pub(crate) fn tee(
        self: &Arc<Self>,
        diff_id: Digest,
        limits: rbuild_tarlimits::Limits,
    ) -> Option<LayerTee> {
        if self.get(&diff_id).is_some() {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(TEE_CHUNKS);
        let thread = std::thread::Builder::new()
            .name("layer-packages".into())
            .spawn(move || {
                let options = rbuild_report::SbomOptions {
                    limits,
                    ..Default::default()
                };
                let reader = ChunkReader {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                };
                rbuild_report::sbom::scan_layer(reader, &diff_id.to_string(), &options)
                    .map_err(|e| tracing::debug!("packages of layer {diff_id} not read: {e}"))
                    .ok()
            })
            .map_err(|e| tracing::debug!("cannot start a layer reader: {e}"))
            .ok()?;
        Some(LayerTee {
            scans: Arc::clone(self),
            diff_id,
            tx: Some(tx),
            buf: Vec::with_capacity(TEE_CHUNK),
            thread: Some(thread),
        })
    }
}

/// Bytes handed to a layer reader at a time, and how many such chunks may wait.
const TEE_CHUNK: usize = 256 * 1024;
const TEE_CHUNKS: usize = 8;

/// The feeding end of [`LayerScans::tee`].
#[derive(Debug)]
pub(crate) struct LayerTee {
    scans: Arc<LayerScans>,
    diff_id: Digest,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    thread: Option<std::thread::JoinHandle<Option<ScannedLayer>>>,
}

impl LayerTee {
    /// Hands on the next bytes of the stream.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= TEE_CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TEE_CHUNK));
        // The reader stops early on an error (it logs it): the rest is not needed.
        if let Some(tx) = &self.tx
            && tx.send(chunk).is_err()
        {
            self.tx = None;
        }
    }

    /// Ends the stream (whose bytes matched the diff id), waits for the reader and keeps its
    /// reading. Dropping a tee instead discards the reading.
    pub(crate) fn finish(mut self) {
        if !self.buf.is_empty() {
            self.flush();
        }
        self.tx = None;
        if let Some(Ok(Some(scanned))) = self.thread.take().map(|t| t.join()) {
            self.scans
                .done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.diff_id, scanned);
        }
    }
}

impl Drop for LayerTee {
    fn drop(&mut self) {
        // Closing the channel ends the reader (a stream cut short fails its reading).
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A reader over the chunks a [`LayerTee`] sends.
struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A reader that hands every byte it reads to a [`LayerTee`] as well.
pub(crate) struct TeeReader<R> {
    pub(crate) inner: R,
    pub(crate) tee: Option<LayerTee>,
}

impl<R: Read> Read for TeeReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        if let Some(tee) = &mut self.tee {
            tee.feed(&out[..n]);
        }
        Ok(n)
    }
}
