//! Image layers unpacked into the store's snapshots, once per layer, for builds and runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::ImageConfiguration;
use rbuild_cache::action::LayerRecord;
use rbuild_cache::gc::GcError;
use rbuild_cache::snapshots::{Snapshots, SnapshotsError};
use rbuild_cache::{Digest, DigestError, Store, StoreError};
use rbuild_executor::idmap::{IdMap, MappingKind};
use rbuild_executor::sandbox::{self, SandboxError};
use rbuild_executor::unpack::UnpackOptions;

use crate::inventory::{LayerScans, LayerTee, TeeReader};

/// Why a layer's snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The manifest and the config disagree on the number of layers.
    #[error("the image has {layers} layers but its config lists {diff_ids} diff ids")]
    LayerCount {
        /// Layers of the manifest.
        layers: usize,
        /// Diff ids of the config.
        diff_ids: usize,
    },
    /// A diff id of the image's config does not parse.
    #[error("bad {what} {digest}")]
    BadDigest {
        /// `diff id` or `layer digest`.
        what: &'static str,
        /// The text.
        digest: String,
        /// Why.
        #[source]
        source: DigestError,
    },
    /// The snapshots directory or a snapshot's lock failed.
    #[error(transparent)]
    Snapshots(#[from] SnapshotsError),
    /// The gc lock could not be taken.
    #[error(transparent)]
    Gc(#[from] GcError),
    /// The layer's blob cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The layer cannot be read (decompressed).
    #[error("cannot read layer {layer}")]
    Read {
        /// The layer's blob.
        layer: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The layer cannot be unpacked; past the layer size limit, `hint` says which variable
    /// sets it.
    #[error("cannot unpack layer {layer}")]
    Unpack {
        /// The layer's blob.
        layer: Digest,
        /// Why.
        #[source]
        source: SandboxError,
        /// What the user can do about it.
        hint: Option<&'static str>,
    },
    /// The layer's uncompressed bytes do not have its diff id.
    #[error("layer {layer} unpacks to {actual}, not its diff id {diff_id}")]
    DiffId {
        /// The layer's blob.
        layer: Digest,
        /// The digest of what it unpacked.
        actual: Digest,
        /// What its config says.
        diff_id: Digest,
    },
}

impl SnapshotError {
    /// What the user can do about it (the variable that sets a limit the layer crossed).
    pub fn hint(&self) -> Option<&str> {
        match self {
            SnapshotError::Unpack { hint, .. } => *hint,
            _ => None,
        }
    }
}

/// The snapshot of every layer of the image (bottom first), unpacking the missing ones
/// once into `ROOT/snapshots-v1/<diff_id>/`. Concurrent processes wait on the snapshot's
/// lock; the first to get it unpacks into a temp dir and renames it into place, the others
/// find it done.
pub fn ensure_snapshots(
    store: &Store,
    config: &ImageConfiguration,
    manifest: &oci_spec::image::ImageManifest,
    id_map: &IdMap,
    limits: &rbuild_tarlimits::Limits,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(SnapshotError::LayerCount {
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        });
    }
    let layers: Vec<LayerRecord> = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| {
            Ok(LayerRecord {
                digest: rbuild_cache::descriptor_digest(l)?,
                diff_id: diff_id
                    .parse::<Digest>()
                    .map_err(|source| SnapshotError::BadDigest {
                        what: "diff id",
                        digest: diff_id.clone(),
                        source,
                    })?,
                size: l.size(),
                media_type: l.media_type().to_string(),
            })
        })
        .collect::<Result<_, SnapshotError>>()?;
    ensure_layer_snapshots(store, &layers, id_map, limits, None)
}

/// [`ensure_snapshots`] for a list of layers (bottom first), as the build engine has them.
/// With `scans`, each layer unpacked is also read for the package inventory (see
/// [`LayerScans`]).
pub fn ensure_layer_snapshots(
    store: &Store,
    layers: &[LayerRecord],
    id_map: &IdMap,
    limits: &rbuild_tarlimits::Limits,
    scans: Option<&Arc<LayerScans>>,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let snapshots = Snapshots::open(store.root())?;
    let mut out = Vec::with_capacity(layers.len());
    for layer in layers {
        let diff_id = &layer.diff_id;
        let d = layer.diff_id;
        // Found and marked used under the gc lock, so a prune cannot take it away before
        // it is mounted (see rbuild_cache::gc).
        let in_use = || -> Result<Option<PathBuf>, SnapshotError> {
            let _gc = rbuild_cache::gc::GcLock::shared(store.root())?;
            Ok(snapshots
                .get(&d)
                .filter(|p| rbuild_cache::gc::touch(p).is_ok()))
        };
        if let Some(p) = in_use()? {
            tracing::debug!("snapshot {diff_id} reused");
            out.push(p);
            continue;
        }
        let _lock = snapshots.lock(&d)?;
        if let Some(p) = in_use()? {
            tracing::debug!("snapshot {diff_id} unpacked by another process");
            out.push(p);
            continue;
        }
        let temp = snapshots.temp_dir(&d)?;
        let tee = scans.and_then(|s| s.tee(d, *limits));
        let result = unpack_into(store, layer, &d, &temp, id_map, limits, tee);
        let published = result.and_then(|()| match snapshots.commit(&temp, &d) {
            Ok(p) => Ok(p),
            Err(SnapshotsError::Exists { path }) => Ok(path),
            Err(e) => Err(e.into()),
        });
        if published.is_err() || temp.exists() {
            if let Err(e) = sandbox::remove_tree(&temp, id_map) {
                tracing::warn!("cannot remove {}: {e}", temp.display());
            }
        }
        out.push(published?);
    }
    Ok(out)
}

fn unpack_into(
    store: &Store,
    layer: &LayerRecord,
    d: &Digest,
    temp: &Path,
    id_map: &IdMap,
    limits: &rbuild_tarlimits::Limits,
    tee: Option<LayerTee>,
) -> Result<(), SnapshotError> {
    let started = std::time::Instant::now();
    let diff_id = &layer.diff_id;
    let blob = layer.digest;
    let file = store.open_blob(&blob)?;
    let tar = rbuild_compress::decompress(file, Some(&layer.media_type)).map_err(|source| {
        SnapshotError::Read {
            layer: blob,
            source,
        }
    })?;
    // Every decompressed byte counts, those after the tar's end too: the drain below reads
    // them all to check the diff id.
    let mut tar = TeeReader {
        inner: limits.reader(tar),
        tee,
    };
    // Check the uncompressed bytes against the diff id while they stream by.
    let mut hashing = rbuild_cache::HashingReader::new(&mut tar);
    let mut opts = UnpackOptions::new(diff_id.to_string());
    opts.ignore_chown_errors = id_map.kind == MappingKind::Single;
    opts.limits = *limits;
    let unpacked = sandbox::unpack_layer(&mut hashing, temp, &opts, id_map);
    let stats = match unpacked {
        Ok(stats) => stats,
        // The sandbox reports the unpacker's errors as text: say here which limit was hit.
        Err(source) => {
            let crossed = tar.inner.limiter().seen() > limits.max_layer_bytes;
            return Err(SnapshotError::Unpack {
                layer: blob,
                source,
                hint: crossed.then_some(crate::error::LAYER_SIZE_HINT),
            });
        }
    };
    // Drain what the tar reader left (padding) before checking the digest.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|source| SnapshotError::Read {
        layer: blob,
        source,
    })?;
    let (_, actual, _) = hashing.finish();
    if let Some(tee) = tar.tee.take() {
        // Only a layer whose bytes matched its diff id is kept for the inventory.
        if actual == *d {
            tee.finish();
        }
    }
    if actual != *d {
        return Err(SnapshotError::DiffId {
            layer: blob,
            actual,
            diff_id: *diff_id,
        });
    }
    tracing::debug!(
        "unpacked snapshot {diff_id}: {} entries in {:?}",
        stats.entries,
        started.elapsed()
    );
    Ok(())
}
