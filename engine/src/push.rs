//! Pushing an image of the store to a registry (`rbuild push`, `--push` of a build).

use oci_spec::image::Descriptor;
use rbuild_cache::variants::Variant;
use rbuild_cache::{Digest, DigestError, Store, StoreError, descriptor_digest, is_index};
use rbuild_registry::error::RegistryError;

use rbuild_registry::{
    Client, PushImage, PushManifest, PushOptions, PushResult, ReadyBlob, Reference,
};

use crate::output::{
    Conversion, ConvertWatch, LayerCompression, OutputError, convert_layers_watched,
};
use crate::registry::{RegistryConfig, RuntimeError, runtime};
use crate::transfer::{StoreBlobs, mount_source};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The store cannot read the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The async runtime did not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The registry failed the push.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A manifest digest is not one the store keeps.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The layers of a manifest could not be converted.
    #[error("cannot compress the layers of {manifest}")]
    Convert {
        /// The manifest.
        manifest: Digest,
        /// Why.
        #[source]
        source: Box<OutputError>,
    },
    /// An attestation manifest could not be made for the pushed image.
    #[error(transparent)]
    Attest(Box<crate::attest::AttestError>),
    /// None of the manifests an image index lists is in the store.
    #[error(
        "image index {index} lists manifest {manifest}, and none of its images is in the store: pull a platform of it first"
    )]
    MissingManifest {
        /// The index.
        index: Digest,
        /// The manifest.
        manifest: Digest,
    },
}

/// Pushes the store image `descriptor` to `dest`, its layers converted to `compression`
/// first (uncompressed layers are gzipped by default). Blobs are mounted from the repository
/// the image was pulled from when it is on the same registry, else from `mount_from`.
/// Transfer progress goes to `progress`.
pub fn push_descriptor(
    store: &Store,
    descriptor: &Descriptor,
    dest: &Reference,
    registry: &RegistryConfig,
    progress: Option<rbuild_registry::ProgressFn>,
    compression: &LayerCompression,
    mount_from: Option<String>,
) -> Result<PushResult, PushError> {
    let top = descriptor_digest(descriptor)?;
    let client = Client::new(registry.client_options(progress));
    let source = StoreBlobs::new(store.clone());
    let rt = runtime()?;
    let started = std::time::Instant::now();
    // Layers are converted on a helper thread while they upload: a layer converted now
    // streams to the registry as it is written, one converted earlier uploads at once.
    let top_mount = mount_source(store, &top, dest);
    let early_mount = top_mount.clone().or_else(|| mount_from.clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (image, pushed) = std::thread::scope(|s| {
        let (client, source, handle) = (&client, &source, rt.handle());
        let mount_from = early_mount.as_deref();
        let converting = s.spawn(move || {
            let mut watch = UploadWatch {
                blobs: tx,
                done: None,
                handed: std::collections::HashSet::new(),
                source,
                registry: (client, dest, handle),
                mount_from,
            };
            push_image(store, descriptor, compression, &mut watch)
        });
        let pushed = rt.block_on(client.push_blobs_as_ready(dest, rx, source, mount_from));
        let image = converting
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok::<_, PushError>((image?, pushed?))
    })?;
    let first_manifest = rbuild_cache::Digest::try_from(&image.manifests[0].digest())?;
    let push_opts = PushOptions {
        mount_from: top_mount
            .or_else(|| mount_source(store, &first_manifest, dest))
            .or(mount_from),
        pushed,
    };
    if let Some(from) = &push_opts.mount_from {
        tracing::debug!("blobs of {top} are mounted from {from}");
    }
    let result = rt.block_on(client.push(dest, &image, &source, &push_opts))?;
    tracing::info!(
        "pushed {dest}: {} blobs uploaded, {} mounted, {} already there, in {:.2?}",
        result.uploaded.len(),
        result.mounted.len(),
        result.existing.len(),
        started.elapsed()
    );
    Ok(result)
}

/// What to push for a store descriptor: a manifest, or an index with the manifests it lists
/// that the store has (a pull of one platform names the index with only that platform's
/// image present); an index none of whose images are here is refused.
fn push_image(
    store: &Store,
    descriptor: &Descriptor,
    compression: &LayerCompression,
    watch: &mut dyn ConvertWatch,
) -> Result<PushImage, PushError> {
    let digest = descriptor_digest(descriptor)?;
    let media_type = descriptor.media_type().to_string();
    let mut manifest = |d: &Descriptor| -> Result<PushManifest, PushError> {
        let digest = descriptor_digest(d)?;
        let bytes = store.read_blob(&digest)?;
        let bytes = convert_layers_watched(store, &bytes, compression, watch)
            .map_err(|e| PushError::Convert {
                manifest: digest,
                source: Box::new(e),
            })?
            .unwrap_or(bytes);
        Ok(PushManifest::from_bytes(d.media_type().as_ref(), bytes)?)
    };
    if !is_index(descriptor.media_type()) {
        return Ok(PushImage::single(manifest(descriptor)?));
    }
    let mut bytes = store.read_blob(&digest)?;
    let index = store.read_index_blob(&digest)?;
    let absent = store.absent_manifests(descriptor)?;
    if absent.len() == index.manifests().len()
        && let Some(first) = absent.first()
    {
        return Err(PushError::MissingManifest {
            index: digest,
            manifest: descriptor_digest(first)?,
        });
    }
    if !absent.is_empty() {
        tracing::warn!(
            "image index {digest}: pushing the platforms the store has; not pulled: {}",
            absent
                .iter()
                .map(|d| match rbuild_cache::descriptor_platform(d) {
                    Some(p) => p.to_string(),
                    None => d.digest().to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut manifests = Vec::new();
    // Each entry the pushed index keeps: where it is in the store's index, the pushed
    // manifest's digest and size when converting its layers made it a new document, and for
    // an attestation manifest made again for such an image, that image's new digest.
    let mut kept = Vec::new();
    // The images whose manifests the push changes: old digest, new.
    let mut renamed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (i, entry) in index.manifests().iter().enumerate() {
        let d = descriptor_digest(entry)?;
        if !store.has_blob(&d) {
            continue;
        }
        let mut pushed = manifest(entry)?;
        let attested = entry
            .annotations()
            .as_ref()
            .filter(|_| rbuild_cache::is_attestation_manifest(entry))
            .and_then(|a| a.get(crate::attest::REFERENCE_DIGEST_ANNOTATION))
            .and_then(|old| Some((old, renamed.get(old.as_str())?)));
        let mut retargeted = None;
        if let Some((old, new)) = attested {
            let bytes = crate::attest::retarget(store, &pushed.bytes, old, new)
                .map_err(|e| PushError::Attest(Box::new(e)))?;
            pushed = PushManifest::from_bytes(entry.media_type().as_ref(), bytes)?;
            retargeted = Some(new.clone());
        }
        let pushed_digest = rbuild_cache::Digest::of(&pushed.bytes);
        if pushed_digest != d {
            renamed.insert(d.to_string(), pushed_digest.to_string());
        }
        kept.push((
            i,
            (pushed_digest != d).then_some((pushed_digest, pushed.bytes.len())),
            retargeted,
        ));
        manifests.push(pushed);
    }
    // Manifests whose layers were compressed for the push are new documents: the index
    // pushed names them (the store's index keeps naming the store's manifests). An index
    // pulled for some of its platforms is pushed with those.
    if !absent.is_empty() || kept.iter().any(|(_, changed, _)| changed.is_some()) {
        let invalid = |e: serde_json::Error| RegistryError::InvalidManifest {
            reference: digest.to_string(),
            message: e.to_string(),
        };
        let mut doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
        let entries = doc["manifests"].as_array().cloned().unwrap_or_default();
        doc["manifests"] = kept
            .iter()
            .filter_map(|(i, changed, retargeted)| {
                let mut entry = entries.get(*i)?.clone();
                if let Some((d, size)) = changed {
                    entry["digest"] = serde_json::json!(d.to_string());
                    entry["size"] = serde_json::json!(size);
                }
                if let Some(image) = retargeted {
                    entry["annotations"][crate::attest::REFERENCE_DIGEST_ANNOTATION] =
                        serde_json::json!(image);
                }
                Some(entry)
            })
            .collect();
        bytes = serde_json::to_vec(&doc).map_err(invalid)?;
    }
    Ok(PushImage::with_index(&media_type, bytes, manifests)?)
}

/// Hands each layer of a push to the uploads while it is converted.
struct UploadWatch<'a> {
    blobs: tokio::sync::mpsc::UnboundedSender<ReadyBlob>,
    /// Where the descriptor of the layer being streamed goes once it is converted.
    done: Option<tokio::sync::oneshot::Sender<rbuild_registry::Descriptor>>,
    /// Blobs handed over so far: a layer that comes again (in another manifest of an index, or
    /// twice in one) is uploaded once.
    handed: std::collections::HashSet<rbuild_cache::Digest>,
    /// The push's source, told how to make again the layers it does not keep (for an upload
    /// that has to start over).
    source: &'a StoreBlobs,
    /// Where the push goes, to ask whether a layer pushed before is there.
    registry: (&'a Client, &'a Reference, &'a tokio::runtime::Handle),
    /// The repository of the same registry the push mounts blobs from, if any.
    mount_from: Option<&'a str>,
}

impl ConvertWatch for UploadWatch<'_> {
    fn converting(&mut self) -> Option<Box<dyn std::io::Write + Send>> {
        let (bytes, receiver) = tokio::sync::mpsc::channel(STREAM_DEPTH);
        let (done, finished) = tokio::sync::oneshot::channel();
        self.blobs
            .send(ReadyBlob::Streaming {
                bytes: receiver,
                done: finished,
            })
            .ok()?;
        self.done = Some(done);
        // When the upload lags behind, the conversion waits; when it is gone, the copy stops
        // (and the upload falls back to the layer made again).
        Some(Box::new(ChannelWriter {
            to: bytes,
            buf: Vec::with_capacity(STREAM_CHUNK),
        }))
    }

    fn ready(&mut self, v: &Variant, from: &Conversion) {
        let digest = rbuild_registry::Digest::from(v.digest);
        if !v.stored {
            self.source.remake(v, from);
        }
        let desc = Descriptor::new(v.media_type.as_str().into(), v.size, digest);
        let first = self.handed.insert(v.digest);
        // A closed channel means the uploads stopped with an error, which the push reports;
        // converting the rest still fills the variant records.
        match self.done.take() {
            Some(done) => drop(done.send(desc)),
            None if first => drop(self.blobs.send(ReadyBlob::Stored(desc))),
            None => {}
        }
    }

    fn keeps_blobs(&self) -> bool {
        false
    }

    fn has_unkept(&mut self, v: &Variant) -> bool {
        // Converted earlier in this push (a layer repeated in an index): it is on its way.
        if self.handed.contains(&v.digest) {
            return true;
        }
        let digest = rbuild_registry::Digest::from(v.digest);
        let (client, dest, handle) = self.registry;
        // In the destination, or in the repository the push mounts blobs from.
        let mount = self.mount_from.and_then(|repo| {
            rbuild_registry::Reference::parse(&format!("{}/{repo}", dest.registry())).ok()
        });
        for repo in std::iter::once(dest).chain(mount.as_ref()) {
            match handle.block_on(client.blob_exists(repo, &digest)) {
                Ok(true) => return true,
                Ok(false) => {}
                // Converting the layer again uploads it.
                Err(e) => tracing::debug!("cannot ask {repo} for layer {digest}: {e}"),
            }
        }
        false
    }
}

/// Bytes gathered for one send to a streamed upload.
const STREAM_CHUNK: usize = 1 << 20;
/// Sends a streamed upload may lag behind the conversion (memory: this many chunks).
const STREAM_DEPTH: usize = 8;

/// The copy of a layer being converted, sent in chunks to its streamed upload (blocking when
/// the upload lags behind).
struct ChannelWriter {
    to: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_CHUNK));
        self.to
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        // The last bytes; if they cannot go, the upload's byte count falls short of the blob
        // and the blob is pushed again from the store.
        if !self.buf.is_empty() {
            let _ = self.send();
        }
    }
}
