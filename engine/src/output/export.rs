//! Writing a build's outputs ([`export`]) and its `--metadata-file` ([`write_metadata`]).

use std::path::Path;
use std::time::Duration;

use oci_spec::image::Descriptor;
use rbuild_cache::archive::Format;
use rbuild_cache::{Digest, Store, descriptor_digest};
use rbuild_compress::Compression;
use serde_json::{Value, json};

use super::convert::convert_image;
use super::error::OutputError;
use super::files::{atomic_file, write_to};
use super::flatten;
use super::layout::{write_archive, write_oci_dir};
use super::settings::{Dest, OutputKind};
use crate::BuildRequest;
use crate::attest::{PlatformPredicates, attach, statement_file};
use crate::events::Events;

/// One image reference pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference as named (`registry:5000/app:1`).
    pub reference: String,
    /// The manifest digest the registry has.
    pub digest: String,
}

/// One output written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Its type (`image`, `oci`, `docker`, `local`, `tar`).
    pub kind: &'static str,
    /// Where (`-` for stdout; the names for `image`).
    pub dest: String,
    /// The manifest it holds, for image outputs.
    pub descriptor: Option<Descriptor>,
}

/// What [`export`] did.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// References pushed, with their digests.
    pub pushed: Vec<Pushed>,
    /// Outputs written, in order.
    pub written: Vec<Written>,
}

/// The platform of the manifest descriptor, as `os/arch[/variant]`.
fn platform_text(descriptor: &Descriptor) -> String {
    descriptor
        .platform()
        .as_ref()
        .map_or_else(String::new, |p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
}

/// Writes every output of `settings` for the image `descriptor` (in the store, unnamed),
/// with the statements of `attested` (one entry per image of `descriptor`, or none): an
/// image output gets them as attestation manifests of an index, `local` and `tar` as files
/// beside each platform's file system.
pub fn export(
    settings: &BuildRequest,
    descriptor: &Descriptor,
    attested: &[PlatformPredicates],
    progress: &dyn Events,
) -> Result<Exported, OutputError> {
    let store = &settings.store;
    let out = &settings.output;
    let mut exported = Exported::default();
    let mut base = descriptor.clone();
    let desc_annotations = out.descriptor_annotations(&platform_text(descriptor))?;
    if !desc_annotations.is_empty() {
        let mut a = base.annotations().clone().unwrap_or_default();
        a.extend(desc_annotations);
        base.set_annotations(Some(a));
    }
    for output in &out.outputs {
        let started = std::time::Instant::now();
        let names = out.names_for(output, &settings.tags);
        let dest_text = match &output.dest {
            Some(Dest::Stdout) => "-".to_string(),
            Some(Dest::Path(p)) => p.display().to_string(),
            None => names.join(","),
        };
        let what = |e: OutputError| OutputError::Output {
            kind: output.kind.name(),
            dest: dest_text.clone(),
            source: Box::new(e),
        };
        let mut written = Written {
            kind: output.kind.name(),
            dest: dest_text.clone(),
            descriptor: None,
        };
        match output.kind {
            OutputKind::Image { push } => {
                let image = match out.compression_for(output, None) {
                    Some(c) => convert_image(store, &base, &c).map_err(what)?,
                    None => base.clone(),
                };
                let image = with_attestations(settings, &image, attested, &names)?;
                for name in &names {
                    store.tag(name, &image).map_err(|source| OutputError::Tag {
                        name: name.clone(),
                        source,
                    })?;
                }
                if push {
                    let compression = out
                        .compression_for(output, Some(Compression::Gzip))
                        .unwrap_or_default();

                    let mut previous: Option<rbuild_registry::Reference> = None;
                    for name in &names {
                        let dest = crate::names::parse_reference(name)?;
                        // Later names on the same registry mount the blobs the first one
                        // uploaded.
                        let mount = previous
                            .as_ref()
                            .filter(|p| {
                                p.registry() == dest.registry()
                                    && p.repository() != dest.repository()
                            })
                            .map(|p| p.repository().to_string());
                        let transfer = progress.transfer("push", name);
                        let result = crate::push::push_descriptor(
                            store,
                            &image,
                            &dest,
                            &settings.registry,
                            transfer.reporter(),
                            &compression,
                            mount,
                        )
                        .map_err(|e| OutputError::Push {
                            reference: name.clone(),
                            source: Box::new(e),
                        });
                        let result = match result {
                            Ok(r) => {
                                transfer.done();
                                r
                            }
                            Err(e) => {
                                transfer.failed(&crate::error::chain_text(&e));
                                return Err(e);
                            }
                        };
                        tracing::info!("pushed {name}@{}", result.digest);
                        exported.pushed.push(Pushed {
                            reference: name.clone(),
                            digest: result.digest.to_string(),
                        });
                        previous.get_or_insert(dest);
                    }
                }
                written.descriptor = Some(image);
            }
            OutputKind::Oci { tar } => {
                let compression = out.compression_for(output, Some(Compression::Gzip));
                let image = match compression {
                    Some(c) => convert_image(store, &base, &c).map_err(what)?,
                    None => base.clone(),
                };
                let image = with_attestations(settings, &image, attested, &names)?;
                let dest = output.dest.as_ref().expect("checked when parsed");
                if tar {
                    write_archive(store, &image, &names, Format::Oci, dest)
                        .map_err(|e| what(e.into()))?;
                } else {
                    let Dest::Path(dir) = dest else {
                        unreachable!("checked when parsed")
                    };
                    write_oci_dir(store, &image, names.first().map(String::as_str), dir)
                        .map_err(what)?;
                }
                written.descriptor = Some(image);
            }
            OutputKind::Docker => {
                if !attested.is_empty() {
                    progress.warn(
                        "attestations",
                        "the type=docker output holds no attestations: a docker archive names \
                         one image manifest per tag; use type=oci to keep them",
                    );
                }
                let dest = output.dest.as_ref().expect("checked when parsed");
                write_archive(store, &base, &names, Format::Docker, dest)
                    .map_err(|e| what(e.into()))?;
                written.descriptor = Some(base.clone());
            }
            OutputKind::Local => {
                let Some(Dest::Path(dir)) = &output.dest else {
                    unreachable!("checked when parsed")
                };
                // An index: a directory per platform (`linux_arm64`), as buildx writes.
                let files = attestation_files(settings, descriptor, attested)?;
                for (sub, layers) in platform_layers(store, descriptor)? {
                    let dir = match &sub {
                        Some(sub) => dir.join(sub),
                        None => dir.clone(),
                    };
                    flatten::write_dir(store, &layers, &settings.limits, &dir)
                        .map_err(|e| what(e.into()))?;
                }
                // Written after the file systems, by rename: a file or link of the image
                // with the same name is replaced, never followed.
                for (path, bytes) in &files {
                    atomic_file(&dir.join(path), |w| w.write_all(bytes))
                        .map_err(|e| what(e.into()))?;
                }
            }
            OutputKind::Tar => {
                let parts = platform_layers(store, descriptor)?;
                let files = attestation_files(settings, descriptor, attested)?;
                let dest = output.dest.as_ref().expect("checked when parsed");
                write_to(dest, |w| match parts.as_slice() {
                    [(None, layers)] => {
                        flatten::write_tar(store, layers, &settings.limits, &files, w).map(|_| ())
                    }
                    _ => {
                        let named: Vec<(String, Vec<(Digest, String)>)> = parts
                            .iter()
                            .map(|(sub, layers)| (sub.clone().unwrap_or_default(), layers.clone()))
                            .collect();
                        flatten::write_tars(store, &named, &settings.limits, &files, w).map(|_| ())
                    }
                })
                .map_err(|e| what(e.into()))?;
            }
        }
        tracing::info!(
            "wrote output type={} to {dest_text} in {:.2?}",
            output.kind.name(),
            started.elapsed()
        );
        exported.written.push(written);
    }
    Ok(exported)
}

/// `image` with its attestations attached (itself when there are none).
fn with_attestations(
    settings: &BuildRequest,
    image: &Descriptor,
    attested: &[PlatformPredicates],
    names: &[String],
) -> Result<Descriptor, OutputError> {
    if attested.is_empty() {
        return Ok(image.clone());
    }
    Ok(attach(
        &settings.store,
        settings.format,
        image,
        attested,
        names,
    )?)
}

/// The statements a `local` or `tar` output writes, as (path, JSON): `provenance.json` and
/// `sbom.spdx.json` at the top, or in each platform's directory (`linux_arm64/`).
fn attestation_files(
    settings: &BuildRequest,
    descriptor: &Descriptor,
    attested: &[PlatformPredicates],
) -> Result<Vec<(String, Vec<u8>)>, OutputError> {
    let images: Vec<Descriptor> = if attested.is_empty() {
        Vec::new()
    } else if rbuild_cache::is_index(descriptor.media_type()) {
        settings
            .store
            .read_index_blob(&descriptor_digest(descriptor)?)?
            .manifests()
            .clone()
    } else {
        vec![descriptor.clone()]
    };
    let multi = images.len() > 1;
    let mut out = Vec::new();
    for (image, a) in images.iter().zip(attested) {
        for p in &a.predicates {
            let path = if multi {
                format!(
                    "{}/{}",
                    a.platform.to_string().replace('/', "_"),
                    p.filename
                )
            } else {
                p.filename.to_string()
            };
            let bytes = statement_file(p, image, &a.platform, &settings.tags)?;
            out.push((path, bytes));
        }
    }
    Ok(out)
}

/// The layers of each image `descriptor` holds: of the image itself (no directory), or of
/// every platform of an index, with the directory buildx gives it (`linux_arm64_v8`).
#[allow(clippy::type_complexity)]
fn platform_layers(
    store: &Store,
    descriptor: &Descriptor,
) -> Result<Vec<(Option<String>, Vec<(Digest, String)>)>, OutputError> {
    if !rbuild_cache::is_index(descriptor.media_type()) {
        return Ok(vec![(None, image_layers(store, descriptor)?)]);
    }
    let index = store.read_index_blob(&descriptor_digest(descriptor)?)?;
    let mut out = Vec::new();
    for d in index.manifests() {
        let dir = rbuild_cache::descriptor_platform(d)
            .map(|p| p.to_string().replace('/', "_"))
            .unwrap_or_else(|| d.digest().digest().to_string());
        out.push((Some(dir), image_layers(store, d)?));
    }
    Ok(out)
}

/// The layers of an image manifest: (blob digest, media type).
fn image_layers(
    store: &Store,
    descriptor: &Descriptor,
) -> Result<Vec<(Digest, String)>, OutputError> {
    let (_, manifest) = store.image_manifest(descriptor)?;
    manifest
        .layers()
        .iter()
        .map(|l| Ok((descriptor_digest(l)?, l.media_type().to_string())))
        .collect()
}

/// Writes the `--metadata-file` JSON, buildx's keys and rbuild's own:
///
/// ```json
/// {
///   "containerimage.digest": "sha256:…",       // the image's manifest digest: as pushed
///                                               // (first name) when pushed, else as stored
///   "containerimage.config.digest": "sha256:…", // its config (not for an index)
///   "containerimage.descriptor": {"mediaType": "…", "digest": "sha256:…", "size": 1234,
///                                 "platform": {…}, "annotations": {…}},
///   "image.name": "registry/app:1,registry/app:latest",  // the names, comma-separated
///   "rbuild.image.id": "sha256:…",              // the id printed on stdout (store manifest)
///   "rbuild.pushed": [{"reference": "registry/app:1", "digest": "sha256:…"}],
///   "rbuild.outputs": [{"type": "oci", "dest": "out.tar", "digest": "sha256:…"}],
///   "rbuild.duration_seconds": 12.5,
///   "rbuild.warnings": ["…"]
/// }
/// ```
///
/// Keys without a value (no names, nothing pushed) are left out, except the lists.
pub fn write_metadata(
    path: &Path,
    settings: &BuildRequest,
    stored: &Descriptor,
    exported: &Exported,
    duration: Duration,
    warnings: &[String],
) -> Result<(), OutputError> {
    metadata(path, settings, stored, exported, duration, warnings).map_err(|e| {
        OutputError::Metadata {
            path: path.to_path_buf(),
            source: Box::new(e),
        }
    })
}

fn metadata(
    path: &Path,
    settings: &BuildRequest,
    stored: &Descriptor,
    exported: &Exported,
    duration: Duration,
    warnings: &[String],
) -> Result<(), OutputError> {
    let store = &settings.store;
    let primary = exported
        .written
        .iter()
        .find_map(|w| w.descriptor.clone())
        .unwrap_or_else(|| stored.clone());
    // An index (a multi-platform build) has no one config: buildx writes none.
    let config_digest = if rbuild_cache::is_index(stored.media_type()) {
        None
    } else {
        Some(
            store
                .image_manifest(stored)?
                .1
                .config()
                .digest()
                .to_string(),
        )
    };
    let mut descriptor =
        serde_json::to_value(&primary).map_err(OutputError::json("the image's descriptor"))?;
    let mut digest = primary.digest().to_string();
    if let Some(p) = exported.pushed.first() {
        // The registry holds the pushed manifest: the descriptor names it.
        digest = p.digest.clone();
        descriptor["digest"] = json!(p.digest);
        let size = p
            .digest
            .parse::<Digest>()
            .ok()
            .and_then(|d| store.blob_size(&d).ok());
        if let Some(size) = size {
            descriptor["size"] = json!(size);
        }
    }
    let mut names: Vec<String> = Vec::new();
    for o in &settings.output.outputs {
        for n in settings.output.names_for(o, &settings.tags) {
            if matches!(o.kind, OutputKind::Local | OutputKind::Tar) || names.contains(&n) {
                continue;
            }
            names.push(n);
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("containerimage.digest".into(), json!(digest));
    if let Some(c) = config_digest {
        doc.insert("containerimage.config.digest".into(), json!(c));
    }
    doc.insert("containerimage.descriptor".into(), descriptor);
    if !names.is_empty() {
        doc.insert("image.name".into(), json!(names.join(",")));
    }
    doc.insert("rbuild.image.id".into(), json!(stored.digest().to_string()));
    doc.insert(
        "rbuild.pushed".into(),
        Value::Array(
            exported
                .pushed
                .iter()
                .map(|p| json!({"reference": p.reference, "digest": p.digest}))
                .collect(),
        ),
    );
    doc.insert(
        "rbuild.outputs".into(),
        Value::Array(
            exported
                .written
                .iter()
                .map(|w| {
                    let mut o = json!({"type": w.kind, "dest": w.dest});
                    if let Some(d) = &w.descriptor {
                        o["digest"] = json!(d.digest().to_string());
                    }
                    o
                })
                .collect(),
        ),
    );
    doc.insert(
        "rbuild.duration_seconds".into(),
        json!((duration.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    doc.insert("rbuild.warnings".into(), json!(warnings));
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc))
        .map_err(OutputError::json("the metadata"))?;
    bytes.push(b'\n');
    Ok(atomic_file(path, |w| w.write_all(&bytes))?)
}
