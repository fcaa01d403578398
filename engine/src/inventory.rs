//! Layers of an image in the store as [`rbuild_report`] reads them (`rbuild report`,
//! `rbuild sbom` and the SBOM attestation of a build).

use std::io::Read;

use rbuild_cache::{Digest, Store};

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
