//! Image outputs written outside the store: an OCI image layout (a directory, or a tar) and
//! a docker archive.

use std::path::Path;

use oci_spec::image::Descriptor;
use rbuild_cache::Store;
use rbuild_cache::archive::{self, Format, SaveImage};
use serde_json::json;

use super::error::{OutputError, WriteError};
use super::files::{atomic_file, write_error, write_to};
use super::settings::Dest;

/// Writes `descriptor` named `names` as an archive of `format` (an OCI layout in a tar, or
/// a docker archive) to `dest`.
pub(super) fn write_archive(
    store: &Store,
    descriptor: &Descriptor,
    names: &[String],
    format: Format,
    dest: &Dest,
) -> Result<(), WriteError> {
    let images = save_images(descriptor, names);
    write_to(dest, |w| {
        archive::save(store, &images, format, w).map(|_| ())
    })
}

/// The images an archive of `descriptor` holds: one per name (docker's `RepoTags`, the
/// layout's `index.json` names), or one without a name.
fn save_images(descriptor: &Descriptor, names: &[String]) -> Vec<SaveImage> {
    if names.is_empty() {
        return vec![SaveImage {
            name: None,
            short_name: None,
            descriptor: descriptor.clone(),
        }];
    }
    names
        .iter()
        .map(|n| SaveImage {
            name: Some(n.clone()),
            short_name: Some(crate::names::short_name(n).to_string()),
            descriptor: descriptor.clone(),
        })
        .collect()
}

/// Writes the image as an OCI layout directory: blobs first (each atomically, existing ones
/// of the right size kept), `oci-layout`, then `index.json` naming only this image.
pub(super) fn write_oci_dir(
    store: &Store,
    descriptor: &Descriptor,
    name: Option<&str>,
    dir: &Path,
) -> Result<(), OutputError> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|source| WriteError::CreateDir {
        path: blobs.clone(),
        source,
    })?;
    for digest in store.reachable(descriptor, true)? {
        let target = blobs.join(digest.hex());
        let size = store.blob_size(&digest)?;
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file() && m.len() == size) {
            continue;
        }
        // std::fs::copy lets the kernel copy (copy_file_range: a reflink where the file
        // system shares extents), into a temp file renamed into place.
        let fail = |e| write_error(&target, e);
        let tmp =
            rbuild_cache::atomic::AtomicFile::create(&target, None, Some(0o644)).map_err(fail)?;
        std::fs::copy(store.blob_path(&digest), tmp.temp_path()).map_err(fail)?;
        tmp.commit().map_err(fail)?;
    }
    atomic_file(&dir.join("oci-layout"), |w| {
        w.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#)
    })?;
    let mut entry = descriptor.clone();
    if let Some(name) = name {
        let mut a = entry.annotations().clone().unwrap_or_default();
        a.insert(
            oci_spec::image::ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        );
        a.insert("io.containerd.image.name".to_string(), name.to_string());
        entry.set_annotations(Some(a));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry],
    });
    let bytes = serde_json::to_vec(&index).map_err(OutputError::json("the layout's index.json"))?;
    Ok(atomic_file(&dir.join("index.json"), |w| {
        w.write_all(&bytes)
    })?)
}
