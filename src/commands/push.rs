//! `rbuild push NAME [DEST]`: uploads an image of the store to a registry (to NAME itself, or
//! to DEST). Blobs the registry has cost one HEAD each; blobs of an image pulled from another
//! repository of the same registry are mounted from there. stdout gets the pushed reference
//! pinned to its digest.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use oci_spec::image::Descriptor;
use rbuild_cache::{Store, descriptor_digest, is_index};
use rbuild_registry::{Client, PushImage, PushManifest, PushOptions, PushResult, Reference};

use super::registry::{RegistryArgs, credential_store, runtime};
use crate::build::output::{LayerCompression, convert_layers};
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
    let result = push_descriptor(
        &store,
        &descriptor,
        &dest,
        &args.registry_args,
        crate::progress::reporter(crate::progress::Mode::detect(global.quiet), "pushing"),
        &LayerCompression::default(),
        None,
    )
    .with_context(|| format!("cannot push {} to {dest}", args.name))?;
    println!("{}@{}", dest.name(), result.digest);
    Ok(ExitCode::SUCCESS)
}

/// Pushes the store image `descriptor` to `dest`, its layers converted to `compression`
/// first (uncompressed layers are gzipped by default). Blobs are mounted from the repository
/// the image was pulled from when it is on the same registry, else from `mount_from`.
/// Transfer progress goes to `progress`.
pub fn push_descriptor(
    store: &Store,
    descriptor: &Descriptor,
    dest: &Reference,
    registry_args: &RegistryArgs,
    progress: Option<rbuild_registry::ProgressFn>,
    compression: &LayerCompression,
    mount_from: Option<String>,
) -> anyhow::Result<PushResult> {
    let image = push_image(store, descriptor, compression)?;
    let top = descriptor_digest(descriptor)?;
    let first_manifest = rbuild_cache::Digest::try_from(&image.manifests[0].digest())?;
    let push_opts = PushOptions {
        mount_from: mount_source(store, &top, dest)
            .or_else(|| mount_source(store, &first_manifest, dest))
            .or(mount_from),
    };
    if let Some(from) = &push_opts.mount_from {
        tracing::debug!("blobs of {top} are mounted from {from}");
    }
    let mut opts = registry_args.client_options(credential_store());
    opts.progress = progress;
    let client = Client::new(opts);
    let source = StoreBlobs::new(store.clone());
    let started = std::time::Instant::now();
    let result = {
        let dest = dest.clone();
        runtime()?.block_on(async move { client.push(&dest, &image, &source, &push_opts).await })
    }?;
    tracing::info!(
        "pushed {dest}: {} blobs uploaded, {} mounted, {} already there, in {:.2?}",
        result.uploaded.len(),
        result.mounted.len(),
        result.existing.len(),
        started.elapsed()
    );
    Ok(result)
}

/// What to push for a store descriptor: a manifest, or an index with every manifest it lists
/// (all of them must be in the store; a pull keeps one platform and names its manifest).
fn push_image(
    store: &Store,
    descriptor: &Descriptor,
    compression: &LayerCompression,
) -> anyhow::Result<PushImage> {
    let digest = descriptor_digest(descriptor)?;
    let media_type = descriptor.media_type().to_string();
    let manifest = |d: &Descriptor| -> anyhow::Result<PushManifest> {
        let digest = descriptor_digest(d)?;
        let bytes = store.read_blob(&digest)?;
        let bytes = convert_layers(store, &bytes, compression)
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
