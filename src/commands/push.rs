//! `rbuild push NAME [DEST]`: uploads an image of the store to a registry (to NAME itself, or
//! to DEST). Blobs the registry has cost one HEAD each; blobs of an image pulled from another
//! repository of the same registry are mounted from there. stdout gets the pushed reference
//! pinned to its digest.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use oci_spec::image::Descriptor;
use rbuild_cache::{Store, descriptor_digest, is_index};
use rbuild_registry::{Client, PushImage, PushManifest, PushOptions};

use super::registry::{RegistryArgs, credential_store, runtime};
use crate::cli::GlobalArgs;
use crate::transfer::{StoreBlobs, mount_source};

/// `rbuild push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store (name or id).
    pub name: String,
    /// Where to push it (default: its name): `registry.example:5000/app:1`.
    pub dest: Option<String>,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

pub fn run(global: &GlobalArgs, args: PushArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let (found_as, descriptor) = super::find_image(&store, &args.name)?;
    let dest_text = match (&args.dest, &found_as) {
        (Some(d), _) => d.clone(),
        (None, Some(name)) => name.clone(),
        (None, None) => bail!("{} is an image id: name a destination", args.name),
    };
    let dest = crate::names::parse_reference(&dest_text)?;
    let image = push_image(&store, &descriptor)?;
    let top = descriptor_digest(&descriptor)?;
    let first_manifest = rbuild_cache::Digest::try_from(&image.manifests[0].digest())?;
    let push_opts = PushOptions {
        mount_from: mount_source(&store, &top, &dest)
            .or_else(|| mount_source(&store, &first_manifest, &dest)),
    };
    if let Some(from) = &push_opts.mount_from {
        tracing::debug!("blobs of {} are mounted from {from}", args.name);
    }
    let mut opts = args.registry_args.client_options(credential_store());
    opts.progress =
        crate::progress::reporter(crate::progress::Mode::detect(global.quiet), "pushing");
    let client = Client::new(opts);
    let source = StoreBlobs::new(store);
    let started = std::time::Instant::now();
    let result = {
        let dest = dest.clone();
        runtime()?.block_on(async move { client.push(&dest, &image, &source, &push_opts).await })
    }
    .with_context(|| format!("cannot push {} to {dest}", args.name))?;
    tracing::info!(
        "pushed {dest}: {} blobs uploaded, {} mounted, {} already there, in {:.2?}",
        result.uploaded.len(),
        result.mounted.len(),
        result.existing.len(),
        started.elapsed()
    );
    println!("{}@{}", dest.name(), result.digest);
    Ok(ExitCode::SUCCESS)
}

/// The compressed media type for an uncompressed layer type, if it is one.
pub fn gzip_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" => {
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        }
        "application/vnd.docker.image.rootfs.diff.tar" => {
            Some("application/vnd.docker.image.rootfs.diff.tar.gzip")
        }
        _ => None,
    }
}

/// The gzip variant of the uncompressed layer `digest` (media type `gzip_type`): the one
/// recorded in `variants-v1/` when its blob is present, else made now (parallel members,
/// deterministic) and recorded.
pub fn gzip_variant(
    store: &Store,
    variants: &rbuild_cache::variants::Variants,
    digest: &rbuild_cache::Digest,
    gzip_type: &str,
) -> anyhow::Result<rbuild_cache::variants::Variant> {
    let known = variants
        .get(digest, "gzip")
        .filter(|v| v.digest.parse().is_ok_and(|d| store.has_blob(&d)));
    if let Some(v) = known {
        return Ok(v);
    }
    let started = std::time::Instant::now();
    let mut reader = store.open_blob(digest)?;
    let writer = store.blob_writer(None)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut gz = rbuild_executor::compress::ParallelGzip::new(writer, threads);
    std::io::copy(&mut reader, &mut gz)
        .with_context(|| format!("cannot compress layer {digest}"))?;
    let committed = gz
        .finish()
        .with_context(|| format!("cannot compress layer {digest}"))?
        .commit()?;
    tracing::info!(
        "compressed layer {digest} into {} ({} bytes) in {:.2?}",
        committed.digest,
        committed.size,
        started.elapsed()
    );
    let v = rbuild_cache::variants::Variant {
        digest: committed.digest.to_string(),
        size: committed.size,
        media_type: gzip_type.to_string(),
    };
    variants.put(digest, "gzip", &v)?;
    Ok(v)
}

/// A manifest whose uncompressed layers are replaced by gzip variants (made once per layer
/// and remembered in `variants-v1/`), or `None` when every layer is compressed already.
/// Builds keep layers uncompressed in the store, as docker's image store does; registries
/// get them compressed. The config (and so the image's diff_ids) does not change.
pub fn compressed_layers(store: &Store, manifest: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let mut value: serde_json::Value = serde_json::from_slice(manifest)?;
    let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) else {
        return Ok(None);
    };
    let variants = rbuild_cache::variants::Variants::open(store.root())?;
    let mut changed = false;
    for layer in layers.iter_mut() {
        let Some(media_type) = layer["mediaType"].as_str() else {
            continue;
        };
        let Some(gzip) = gzip_type(media_type) else {
            continue;
        };
        let digest: rbuild_cache::Digest = layer["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("bad layer digest {}", layer["digest"]))?;
        let variant = gzip_variant(store, &variants, &digest, gzip)?;
        layer["mediaType"] = serde_json::json!(gzip);
        layer["digest"] = serde_json::json!(variant.digest);
        layer["size"] = serde_json::json!(variant.size);
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&value)?;
    let media_type = value["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    store.put_document(oci_spec::image::MediaType::Other(media_type), &bytes)?;
    Ok(Some(bytes))
}

/// What to push for a store descriptor: a manifest, or an index with every manifest it lists
/// (all of them must be in the store; a pull keeps one platform and names its manifest).
fn push_image(store: &Store, descriptor: &Descriptor) -> anyhow::Result<PushImage> {
    let digest = descriptor_digest(descriptor)?;
    let media_type = descriptor.media_type().to_string();
    let manifest = |d: &Descriptor| -> anyhow::Result<PushManifest> {
        let digest = descriptor_digest(d)?;
        let bytes = store.read_blob(&digest)?;
        let bytes = compressed_layers(store, &bytes)
            .with_context(|| format!("cannot compress the layers of {digest}"))?
            .unwrap_or(bytes);
        Ok(PushManifest::from_bytes(d.media_type().as_ref(), bytes)?)
    };
    if !is_index(descriptor.media_type()) {
        return Ok(PushImage::single(manifest(descriptor)?));
    }
    let bytes = store.read_blob(&digest)?;
    let index = store.read_index_blob(&digest)?;
    let mut manifests = Vec::new();
    for entry in index.manifests() {
        let d = descriptor_digest(entry)?;
        if !store.has_blob(&d) {
            bail!(
                "image index {digest} lists manifest {d}, which is not in the store: push one platform by its manifest digest"
            );
        }
        manifests.push(manifest(entry)?);
    }
    Ok(PushImage::with_index(&media_type, bytes, manifests)?)
}
