//! Layer conversions: a layer of the store recompressed for an output or a push (gzip,
//! zstd, uncompressed), made once and remembered in `variants-v1/`; an image's manifest with
//! its layers converted.

use std::io::Write;

use oci_spec::image::{Descriptor, MediaType};
use rbuild_cache::variants::Variant;
use rbuild_cache::{Digest, Store, descriptor_digest};
use rbuild_compress::{Compression, ManifestFormat};
use serde_json::{Value, json};

use super::error::OutputError;
use super::settings::LayerCompression;

/// The media type of a layer in `format` (`docker` or OCI) with `kind` compression.
fn layer_type(docker: bool, kind: Compression) -> Result<&'static str, OutputError> {
    let format = if docker {
        ManifestFormat::Docker
    } else {
        ManifestFormat::Oci
    };
    match kind.media_type(format) {
        Ok(media_type) => Ok(media_type),
        Err(_) if docker && kind == Compression::Zstd => Err(OutputError::ZstdInDocker),
        Err(e) => Err(e.into()),
    }
}

/// The name of a converted layer in `variants-v1/`: `gzip` at the default level (shared with
/// `rbuild push`), `gzip9`, `zstd`, `zstd19`, `tar`.
pub(super) fn variant_name(c: &LayerCompression) -> String {
    let base = match c.kind {
        Compression::None => "tar",
        kind => kind.name(),
    };
    match c.level {
        Some(l) if c.kind != Compression::None => format!("{base}{l}"),
        _ => base.to_string(),
    }
}

/// Converts one layer blob of the store to `c`, once: the result is remembered in
/// `variants-v1/`.
pub fn convert_layer(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    c: &LayerCompression,
) -> Result<Variant, OutputError> {
    convert_layer_watched(store, digest, media_type, c, &mut ())
}

/// What a caller learns while layers are converted (a push uploads each layer as it is
/// written).
pub trait ConvertWatch {
    /// A layer's conversion starts: where to copy its converted bytes as they are written
    /// (`None`: nowhere). A failing copy is dropped; the conversion goes on.
    fn converting(&mut self) -> Option<Box<dyn Write + Send>>;
    /// A layer is converted (now, or found converted earlier): `from` makes it again.
    fn ready(&mut self, variant: &Variant, from: &Conversion);
    /// Whether converted layers must stay in the store. A push needs their bytes only while
    /// they upload, so it records just their digests.
    fn keeps_blobs(&self) -> bool {
        true
    }
    /// Whether a layer converted earlier whose blob was not kept may be used as it is (a push:
    /// the registry has it).
    fn has_unkept(&mut self, _variant: &Variant) -> bool {
        false
    }
}

impl ConvertWatch for () {
    fn converting(&mut self) -> Option<Box<dyn Write + Send>> {
        None
    }
    fn ready(&mut self, _: &Variant, _: &Conversion) {}
}

/// A layer conversion: which layer of the store (and its media type), to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The layer blob in the store.
    pub layer: Digest,
    /// Its media type.
    pub media_type: String,
    /// What it is converted to.
    pub compression: LayerCompression,
}

impl Conversion {
    /// Converts the layer into `out`, returning it when done.
    fn write_into<W: Write + Send>(&self, store: &Store, out: W) -> Result<W, OutputError> {
        let digest = &self.layer;
        let reader = store.open_blob(digest)?;
        // Read in 1 MiB pieces: `io::copy` alone reads a boxed reader 8 KiB at a time.
        let mut reader = std::io::BufReader::with_capacity(
            1 << 20,
            rbuild_compress::decompress(reader, Some(&self.media_type)).map_err(|source| {
                OutputError::ReadLayer {
                    layer: *digest,
                    source,
                }
            })?,
        );
        let c = &self.compression;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fail = |source| OutputError::Compress {
            layer: *digest,
            source,
        };
        Ok(match c.kind {
            Compression::None => {
                let mut w = out;
                std::io::copy(&mut reader, &mut w).map_err(fail)?;
                w
            }
            Compression::Gzip => {
                let mut gz = rbuild_compress::ParallelGzip::new(out, threads);
                if let Some(l) = c.level {
                    gz = gz.with_level(l.clamp(0, 9) as u32);
                }
                std::io::copy(&mut reader, &mut gz).map_err(fail)?;
                gz.finish().map_err(fail)?
            }
            Compression::Zstd => {
                let mut z =
                    zstd::stream::write::Encoder::new(out, c.level.unwrap_or(3)).map_err(fail)?;
                std::io::copy(&mut reader, &mut z).map_err(fail)?;
                z.finish().map_err(fail)?
            }
            Compression::Bzip2 | Compression::Xz => {
                return Err(fail(std::io::Error::other(format!(
                    "cannot write {} layers",
                    c.kind
                ))));
            }
        })
    }

    /// Converts the layer into `inner` and copies what it writes to `copy`. The copy ends
    /// (its reader sees the end) before `inner` is returned to be synced and committed.
    fn write_teed<W: Write + Send>(
        &self,
        store: &Store,
        inner: W,
        copy: Option<Box<dyn Write + Send>>,
    ) -> Result<W, OutputError> {
        let Tee { inner, copy } = self.write_into(store, Tee { inner, copy })?;
        drop(copy);
        Ok(inner)
    }

    /// Converts the layer again and stores the result, for a layer converted without keeping
    /// its blob whose bytes are needed after all (a push whose streamed upload failed). The
    /// conversion is deterministic; the store refuses bytes that do not have the recorded
    /// digest and size. The record then says the blob is stored.
    pub fn remake(&self, store: &Store, variant: &Variant) -> Result<(), OutputError> {
        let digest = variant.digest;
        let started = std::time::Instant::now();
        let writer = store.blob_writer(Some(rbuild_cache::Expected {
            digest,
            size: Some(variant.size),
        }))?;
        let committed = self
            .write_into(store, writer)
            .and_then(|w| Ok(w.commit()?))
            .map_err(|e| OutputError::Remake {
                layer: self.layer,
                digest,
                source: Box::new(e),
            })?;
        tracing::debug!(
            "converted layer {} again to {} in {:.2?}",
            self.layer,
            committed.digest,
            started.elapsed()
        );
        let variants = rbuild_cache::variants::Variants::open(store.root())?;
        let kept = Variant {
            stored: true,
            ..variant.clone()
        };
        variants.put(&self.layer, &variant_name(&self.compression), &kept)?;
        Ok(())
    }
}

/// Writes to `inner` and copies what it took into `copy`, until the copy fails.
struct Tee<W> {
    inner: W,
    copy: Option<Box<dyn Write + Send>>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(copy) = &mut self.copy
            && let Err(e) = copy.write_all(&buf[..n])
        {
            tracing::debug!("the copy of a converted layer stopped: {e}");
            self.copy = None;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn convert_layer_watched(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    c: &LayerCompression,
    watch: &mut dyn ConvertWatch,
) -> Result<Variant, OutputError> {
    let variants = rbuild_cache::variants::Variants::open(store.root())?;
    let name = variant_name(c);
    let conversion = Conversion {
        layer: *digest,
        media_type: media_type.to_string(),
        compression: c.clone(),
    };
    let keep = watch.keeps_blobs();
    if let Some(v) = variants.get(digest, &name).filter(|v| {
        if v.stored {
            store.has_blob(&v.digest)
        } else {
            !keep && watch.has_unkept(v)
        }
    }) {
        watch.ready(&v, &conversion);
        return Ok(v);
    }
    let started = std::time::Instant::now();
    let copy = watch.converting();
    let (converted, size) = if keep {
        let blob = conversion.write_teed(store, store.blob_writer(None)?, copy)?;
        let committed = blob.commit()?;
        (committed.digest, committed.size)
    } else {
        let hashed = rbuild_cache::HashingWriter::new(std::io::sink());
        let (_, digest, size) = conversion.write_teed(store, hashed, copy)?.finish();
        (digest, size)
    };
    tracing::info!(
        "converted layer {digest} to {name}: {converted} ({size} bytes{}) in {:.2?}",
        if keep { "" } else { ", not kept" },
        started.elapsed()
    );
    let v = Variant {
        digest: converted,
        size,
        media_type: layer_type(false, c.kind)?.to_string(),
        stored: keep,
    };
    variants.put(digest, &name, &v)?;
    watch.ready(&v, &conversion);
    Ok(v)
}

/// A manifest whose layers are converted to `c` (uncompressed ones always, others only with
/// `force`; layers already in `c`'s compression are kept), stored in the store; `None` when
/// nothing changes. The config, and so the diff_ids, stay the same.
pub fn convert_layers(
    store: &Store,
    manifest: &[u8],
    c: &LayerCompression,
) -> Result<Option<Vec<u8>>, OutputError> {
    convert_layers_watched(store, manifest, c, &mut ())
}

/// `convert_layers`, telling `watch` about each layer it converts.
pub fn convert_layers_watched(
    store: &Store,
    manifest: &[u8],
    c: &LayerCompression,
    watch: &mut dyn ConvertWatch,
) -> Result<Option<Vec<u8>>, OutputError> {
    let mut value: Value =
        serde_json::from_slice(manifest).map_err(OutputError::json("the manifest"))?;
    let docker = value["mediaType"]
        .as_str()
        .is_some_and(|m| m.starts_with("application/vnd.docker."));
    let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) else {
        return Ok(None);
    };
    let mut changed = false;
    for layer in layers.iter_mut() {
        let Some(media_type) = layer["mediaType"].as_str().map(str::to_string) else {
            continue;
        };
        // Foreign and non-distributable layers are not ours to change.
        if media_type.contains("nondistributable") || media_type.contains("foreign") {
            continue;
        }
        let Some(current) = Compression::from_media_type(&media_type) else {
            continue;
        };
        if current == c.kind || (current != Compression::None && !c.force) {
            continue;
        }
        let digest: Digest = layer["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|source| OutputError::BadDigest {
                what: "layer digest",
                digest: layer["digest"].to_string(),
                source,
            })?;
        let variant = convert_layer_watched(store, &digest, &media_type, c, watch)?;
        layer["mediaType"] = json!(layer_type(docker, c.kind)?);
        layer["digest"] = json!(variant.digest);
        layer["size"] = json!(variant.size);
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&value).map_err(OutputError::json("the manifest"))?;
    let media_type = value["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    // Kept even when the layers are not: `--metadata-file` reads the pushed manifest's size.
    store.put_document(MediaType::Other(media_type), &bytes)?;
    Ok(Some(bytes))
}

/// The image `descriptor` with its layers converted to `c` (the same descriptor when nothing
/// changes): platform and annotations of the descriptor are kept. An index is written anew
/// over its converted images.
pub fn convert_image(
    store: &Store,
    descriptor: &Descriptor,
    c: &LayerCompression,
) -> Result<Descriptor, OutputError> {
    let digest = descriptor_digest(descriptor)?;
    let bytes = store.read_blob(&digest)?;
    if rbuild_cache::is_index(descriptor.media_type()) {
        let mut index: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(OutputError::json("an image index of the build"))?;
        let images = store.read_index_blob(&digest)?;
        let converted = images
            .manifests()
            .iter()
            .map(|d| convert_image(store, d, c))
            .collect::<Result<Vec<_>, _>>()?;
        if converted
            .iter()
            .zip(images.manifests())
            .all(|(a, b)| a == b)
        {
            return Ok(descriptor.clone());
        }
        index["manifests"] = serde_json::to_value(&converted)
            .map_err(OutputError::json("an image index of the build"))?;
        let new = serde_json::to_vec(&index).map_err(OutputError::json("an image index"))?;
        let media_type = descriptor.media_type().to_string();
        store.put_document(MediaType::Other(media_type), &new)?;
        let mut d = descriptor.clone();
        d.set_digest(Digest::of(&new).into());
        d.set_size(new.len() as u64);
        return Ok(d);
    }
    match convert_layers(store, &bytes, c).map_err(|e| OutputError::Convert {
        manifest: digest,
        source: Box::new(e),
    })? {
        None => Ok(descriptor.clone()),
        Some(converted) => {
            let mut d = descriptor.clone();
            d.set_digest(Digest::of(&converted).into());
            d.set_size(converted.len() as u64);
            Ok(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct PushLike {
        copies: Vec<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>,
        ready: Vec<(Variant, Conversion)>,
        registry_has: bool,
    }

    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ConvertWatch for PushLike {
        fn converting(&mut self) -> Option<Box<dyn Write + Send>> {
            let copy = std::sync::Arc::default();
            self.copies.push(std::sync::Arc::clone(&copy));
            Some(Box::new(Shared(copy)))
        }
        fn ready(&mut self, v: &Variant, from: &Conversion) {
            self.ready.push((v.clone(), from.clone()));
        }
        fn keeps_blobs(&self) -> bool {
            false
        }
        fn has_unkept(&mut self, _: &Variant) -> bool {
            self.registry_has
        }
    }

    #[test]
    fn a_push_keeps_no_converted_layer_and_one_made_again_is_checked() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 9 MiB of poorly compressible bytes: three parallel gzip members.
        let mut layer = Vec::with_capacity(9 << 20);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        while layer.len() < 9 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            layer.extend_from_slice(&x.to_le_bytes()[..3]);
        }
        let tar_type = "application/vnd.oci.image.layer.v1.tar";
        let layer_digest = store.put_blob(&layer, None).unwrap().digest;
        let gzip = LayerCompression::default();

        let mut push = PushLike::default();
        let v = convert_layer_watched(&store, &layer_digest, tar_type, &gzip, &mut push).unwrap();
        assert!(!v.stored);
        let sent = push.copies[0].lock().unwrap().clone();
        assert_eq!(v.digest, Digest::of(&sent));
        assert_eq!(v.size, sent.len() as u64);
        let d = v.digest;
        assert!(!store.has_blob(&d), "the gzip copy stays out of the store");
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&sent[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert!(plain == layer, "the gzip stream holds the layer");
        let (_, from) = push.ready.pop().unwrap();
        assert_eq!(from.layer, layer_digest);

        // A record the conversion does not give again is refused, naming the layer.
        let wrong = Variant {
            size: v.size + 1,
            ..v.clone()
        };
        let err = crate::error::chain_text(&from.remake(&store, &wrong).unwrap_err());
        assert!(err.contains(&layer_digest.to_string()), "{err}");
        assert!(!store.has_blob(&d));
        // Made again (an upload starting over): stored once, served from any offset.
        let blobs = crate::transfer::StoreBlobs::new(store.clone());
        blobs.remake(&v, &from);
        let oci_digest: rbuild_registry::Digest = d.to_string().parse().unwrap();
        let mut tail = Vec::new();
        rbuild_registry::BlobSource::open(&blobs, &oci_digest, 1000)
            .unwrap()
            .read_to_end(&mut tail)
            .unwrap();
        assert!(tail == sent[1000..], "opened at an offset");
        assert!(store.has_blob(&d));
        let variants = rbuild_cache::variants::Variants::open(store.root()).unwrap();
        assert!(variants.get(&layer_digest, "gzip").unwrap().stored);
        std::fs::remove_file(store.blob_path(&d)).unwrap();
        variants.put(&layer_digest, "gzip", &v).unwrap();

        // A push to a registry that has it converts nothing; one that lacks it converts again.
        let mut has = PushLike {
            registry_has: true,
            ..PushLike::default()
        };
        assert_eq!(
            convert_layer_watched(&store, &layer_digest, tar_type, &gzip, &mut has).unwrap(),
            v
        );
        assert!(has.copies.is_empty());
        let mut lacks = PushLike::default();
        convert_layer_watched(&store, &layer_digest, tar_type, &gzip, &mut lacks).unwrap();
        assert!(*lacks.copies[0].lock().unwrap() == sent);
        // Outputs that need the blob store it, under the same digest.
        let kept = convert_layer(&store, &layer_digest, tar_type, &gzip).unwrap();
        assert!(kept.stored && kept.digest == v.digest && store.has_blob(&d));
    }

    #[test]
    fn variant_names_share_push_gzip() {
        assert_eq!(variant_name(&LayerCompression::default()), "gzip");
        let c = LayerCompression {
            kind: Compression::Zstd,
            level: Some(19),
            force: true,
        };
        assert_eq!(variant_name(&c), "zstd19");
    }
}
