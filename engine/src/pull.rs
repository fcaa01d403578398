//! Pulling an image into the store (`rbuild pull`, missing base images of a build, `rbuild
//! run` of an image the store lacks).

use rbuild_registry::error::RegistryError;
use rbuild_registry::platform::PlatformError;
use rbuild_registry::{Client, Platform, PullOptions};

use crate::names::NameError;
use crate::registry::{RegistryConfig, RuntimeError, runtime};
use crate::transfer::StoreBlobs;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The image name is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The platform is not valid.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The async runtime did not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The registry (or the network) failed the pull.
    #[error("cannot pull {reference}")]
    Pull {
        /// The image's full name.
        reference: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// The registry gave a manifest digest the store cannot keep.
    #[error("the manifest of {reference} has an unusable digest")]
    Digest {
        /// The image's full name.
        reference: String,
        /// Why.
        #[source]
        source: rbuild_cache::DigestError,
    },
    /// The pulled image index is not valid JSON.
    #[error("cannot parse the image index of {reference}")]
    Index {
        /// The image's full name.
        reference: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The pulled image could not be named in the store.
    #[error("cannot name the pulled image {name}")]
    Tag {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: rbuild_cache::StoreError,
    },
}

/// What [`pull_image_with`] put in the store.
#[derive(Debug)]
pub struct Pulled {
    /// The manifest the name points at (the chosen platform's).
    pub descriptor: oci_spec::image::Descriptor,
    /// The pulled reference pinned to the digest the registry gave for it.
    pub pinned: String,
}

/// Pulls `name` into the store and tags it there by its full name, reporting its transfer
/// progress to `progress`: the registry's mirrors first, then the registry; every blob is
/// verified against the digests the manifest names.
pub fn pull_image_with(
    store: &rbuild_cache::Store,
    name: &str,
    platform: Option<&str>,
    registry: &RegistryConfig,
    progress: Option<rbuild_registry::ProgressFn>,
) -> Result<Pulled, PullError> {
    pull_image_as(store, name, platform, registry, progress, true)
}

/// Like [`pull_image_with`], but names the image in the store only when `tag` is set: a
/// build that needs another platform of a base than the one the store names pulls it
/// without taking the name from that one.
pub fn pull_image_as(
    store: &rbuild_cache::Store,
    name: &str,
    platform: Option<&str>,
    registry: &RegistryConfig,
    progress: Option<rbuild_registry::ProgressFn>,
    tag: bool,
) -> Result<Pulled, PullError> {
    let reference = crate::names::parse_reference(name)?;
    let platform = match platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let client = Client::new(registry.client_options(progress));
    let target = StoreBlobs::new(store.clone());
    let started = std::time::Instant::now();
    let pull_opts = PullOptions {
        platform,
        allow_foreign_layers: registry.allow_foreign_layers,
    };
    let rt = runtime()?;
    // Mirrors of the registry (config `registry.mirrors`) first, in order; then the
    // registry itself. Every blob is verified against the digests the manifest names.
    let mut pulled = None;
    for mirror in registry.mirrors(reference.registry()) {
        let at = match reference.digest() {
            Some(d) => format!("{mirror}/{}@{d}", reference.repository()),
            None => format!(
                "{mirror}/{}:{}",
                reference.repository(),
                reference.api_reference()
            ),
        };
        let Ok(mirrored) = crate::names::parse_reference(&at) else {
            tracing::warn!("registry mirror {mirror:?} does not form a reference ({at})");
            continue;
        };
        match rt.block_on(client.pull(&mirrored, &target, &pull_opts)) {
            Ok(p) => {
                tracing::info!("pulled {reference} from the mirror {mirror}");
                pulled = Some(p);
                break;
            }
            Err(e) => tracing::warn!("cannot pull {reference} from the mirror {mirror}: {e}"),
        }
    }
    let pulled = match pulled {
        Some(p) => p,
        None => rt
            .block_on(client.pull(&reference, &target, &pull_opts))
            .map_err(|source| PullError::Pull {
                reference: reference.to_string(),
                source,
            })?,
    };

    let manifest_digest =
        rbuild_cache::Digest::try_from(&pulled.manifest.digest).map_err(|source| {
            PullError::Digest {
                reference: reference.to_string(),
                source,
            }
        })?;
    let top = pulled.index.as_ref().unwrap_or(&pulled.manifest);
    let name = match reference.digest() {
        Some(d) => format!("{}@{d}", reference.name()),
        None => reference.to_string(),
    };
    let mut descriptor = pulled.manifest.descriptor();
    if pulled.index.is_some() {
        // The platform picked, as the index said it (docker's `--platform` on the entry).
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&top.bytes).map_err(|source| PullError::Index {
                reference: reference.to_string(),
                source,
            })?;
        if let Some(entry) = index
            .manifests()
            .iter()
            .find(|m| *m.digest() == pulled.manifest.digest)
        {
            descriptor.set_platform(entry.platform().clone());
        }
    }
    if tag {
        let tag_error = |source| PullError::Tag {
            name: name.clone(),
            source,
        };
        // The name stands for what the registry names: an index keeps its other platforms'
        // entries, pulled later or never (the store reads only the ones present).
        let named = match &pulled.index {
            Some(index) => store_index(store, index).map_err(tag_error)?,
            None => descriptor.clone(),
        };
        store.tag(&name, &named).map_err(tag_error)?;
    }
    for digest in std::iter::once(manifest_digest).chain(
        pulled
            .index
            .as_ref()
            .and_then(|i| rbuild_cache::Digest::try_from(&i.digest).ok()),
    ) {
        if let Err(e) = store.record_source(&digest, &reference.name()) {
            tracing::debug!(
                "cannot record where {digest} came from: {}",
                crate::error::chain_text(&e)
            );
        }
    }
    tracing::info!(
        "pulled {name}: {} blobs fetched, {} already here, in {:.2?}",
        pulled.fetched.len(),
        pulled.skipped.len(),
        started.elapsed()
    );
    Ok(Pulled {
        pinned: format!("{}@{}", reference.name(), top.digest),
        descriptor,
    })
}

/// Pulls every platform of `name` (`rbuild pull --all-platforms`): for an index, each image
/// it lists (through the registry's mirrors, as [`pull_image_with`]), then the index itself
/// (read from the registry, not its mirrors), which the store names; an image of one platform
/// is pulled as [`pull_image_with`] pulls it.
pub fn pull_all_platforms(
    store: &rbuild_cache::Store,
    name: &str,
    registry: &RegistryConfig,
    progress: Option<rbuild_registry::ProgressFn>,
) -> Result<Pulled, PullError> {
    let reference = crate::names::parse_reference(name)?;
    let failed = |source| PullError::Pull {
        reference: reference.to_string(),
        source,
    };
    let client = Client::new(registry.client_options(None));
    let top = runtime()?
        .block_on(client.fetch_manifest(&reference))
        .map_err(failed)?;
    if !top.is_index() {
        return pull_image_with(store, name, None, registry, progress);
    }
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(&top.bytes).map_err(|source| PullError::Index {
            reference: reference.to_string(),
            source,
        })?;
    for entry in index.manifests() {
        let child = format!("{}@{}", reference.name(), entry.digest());
        pull_image_as(store, &child, None, registry, progress.clone(), false)?;
    }
    let digest =
        rbuild_cache::Digest::try_from(&top.digest).map_err(|source| PullError::Digest {
            reference: reference.to_string(),
            source,
        })?;
    let tag_error = |source| PullError::Tag {
        name: reference.to_string(),
        source,
    };
    let descriptor = store_index(store, &top).map_err(tag_error)?;
    let name = match reference.digest() {
        Some(d) => format!("{}@{d}", reference.name()),
        None => reference.to_string(),
    };
    store.tag(&name, &descriptor).map_err(tag_error)?;
    if let Err(e) = store.record_source(&digest, &reference.name()) {
        tracing::debug!(
            "cannot record where {digest} came from: {}",
            crate::error::chain_text(&e)
        );
    }
    Ok(Pulled {
        pinned: format!("{}@{}", reference.name(), top.digest),
        descriptor,
    })
}

/// Stores an index document as the registry gave it; its descriptor, with the index's own
/// media type.
fn store_index(
    store: &rbuild_cache::Store,
    index: &rbuild_registry::pull::FetchedManifest,
) -> Result<oci_spec::image::Descriptor, rbuild_cache::StoreError> {
    let mut descriptor = store.put_document(
        oci_spec::image::MediaType::Other(index.media_type.clone()),
        &index.bytes,
    )?;
    descriptor.set_media_type(match index.media_type.as_str() {
        rbuild_registry::pull::OCI_INDEX => oci_spec::image::MediaType::ImageIndex,
        other => oci_spec::image::MediaType::Other(other.to_string()),
    });
    Ok(descriptor)
}
