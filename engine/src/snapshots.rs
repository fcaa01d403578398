//! Image layers unpacked into the store's snapshots, once per layer, for builds and runs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use oci_spec::image::ImageConfiguration;
use rbuild_cache::action::LayerRecord;
use rbuild_cache::snapshots::{Snapshots, SnapshotsError};
use rbuild_cache::{Digest, Store};
use rbuild_executor::idmap::{IdMap, MappingKind};
use rbuild_executor::sandbox;
use rbuild_executor::unpack::UnpackOptions;

/// The snapshot of every layer of the image (bottom first), unpacking the missing ones
/// once into `ROOT/snapshots-v1/<diff_id>/`. Concurrent processes wait on the snapshot's
/// lock; the first to get it unpacks into a temp dir and renames it into place, the others
/// find it done.
pub fn ensure_snapshots(
    store: &Store,
    config: &ImageConfiguration,
    manifest: &oci_spec::image::ImageManifest,
    id_map: &IdMap,
    limits: &rbuild_compiler::limits::Limits,
) -> anyhow::Result<Vec<PathBuf>> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "the image has {} layers but its config lists {} diff ids",
            manifest.layers().len(),
            diff_ids.len()
        );
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
                    .with_context(|| format!("bad diff id {diff_id}"))?,
                size: l.size(),
                media_type: l.media_type().to_string(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    ensure_layer_snapshots(store, &layers, id_map, limits)
}

/// [`ensure_snapshots`] for a list of layers (bottom first), as the build engine has them.
pub fn ensure_layer_snapshots(
    store: &Store,
    layers: &[LayerRecord],
    id_map: &IdMap,
    limits: &rbuild_compiler::limits::Limits,
) -> anyhow::Result<Vec<PathBuf>> {
    let snapshots = Snapshots::open(store.root())?;
    let mut out = Vec::with_capacity(layers.len());
    for layer in layers {
        let diff_id = &layer.diff_id;
        let d = layer.diff_id;
        // Found and marked used under the gc lock, so a prune cannot take it away before
        // it is mounted (see rbuild_cache::gc).
        let in_use = || -> anyhow::Result<Option<PathBuf>> {
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
        let result = unpack_into(store, layer, &d, &temp, id_map, limits);
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
    limits: &rbuild_compiler::limits::Limits,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let diff_id = &layer.diff_id;
    let blob = layer.digest;
    let file = store.open_blob(&blob)?;
    let tar = rbuild_executor::compress::decompress(file, Some(&layer.media_type))
        .with_context(|| format!("cannot read layer {blob}"))?;
    // Every decompressed byte counts, those after the tar's end too: the drain below reads
    // them all to check the diff id.
    let mut tar = limits.reader(tar);
    // Check the uncompressed bytes against the diff id while they stream by.
    let mut hashing = rbuild_cache::HashingReader::new(&mut tar);
    let mut opts = UnpackOptions::new(diff_id.to_string());
    opts.ignore_chown_errors = id_map.kind == MappingKind::Single;
    opts.limits = *limits;
    let unpacked = sandbox::unpack_layer(&mut hashing, temp, &opts, id_map);
    let stats = match unpacked {
        Ok(stats) => stats,
        // The sandbox reports the unpacker's errors as text: say here which limit was hit.
        Err(e) if tar.limiter().seen() > limits.max_layer_bytes => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot unpack layer {blob}"))
                .context(crate::layer_size_hint()));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot unpack layer {blob}")),
    };
    // Drain what the tar reader left (padding) before checking the digest.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .with_context(|| format!("cannot read layer {blob}"))?;
    let (_, actual, _) = hashing.finish();
    if actual != *d {
        bail!("layer {blob} unpacks to {actual}, not its diff id {diff_id}");
    }
    tracing::debug!(
        "unpacked snapshot {diff_id}: {} entries in {:?}",
        stats.entries,
        started.elapsed()
    );
    Ok(())
}
