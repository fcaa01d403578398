//! Base images: each reference the target needs is resolved once per build to a manifest
//! digest. The store's copy is used when it has one (as docker uses its local image);
//! `--pull`, or a missing image, asks the registry.

use std::collections::BTreeMap;

use oci_spec::image::Descriptor;
use rbuild_cache::action::LayerRecord;
use rbuild_cache::{Digest, StoreError};
use rbuild_compiler::parser::Span;
use rbuild_compiler::plan::{ImageConfig, OpKind, Plan, Platform};

use crate::BuildRequest;
use crate::events::Events;
use crate::names::NameError;
use crate::pull::PullError;

/// Why a base image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The reference is neither a stage nor in the store, and its pull failed: `message` is
    /// the diagnostic at the reference in the Dockerfile, with what was tried and the closest
    /// stage or local image; the pull's error is kept under `-v` only.
    #[error("{message}")]
    NotFound {
        /// The reference as the Dockerfile writes it.
        reference: String,
        /// The rendered diagnostic.
        message: String,
        /// The pull's error (under `-v`).
        #[source]
        source: Option<Box<PullError>>,
    },
    /// The base image is in the store (or was pulled) but cannot be used.
    #[error("cannot resolve base image {reference}")]
    Resolve {
        /// The reference as the Dockerfile writes it.
        reference: String,
        /// Why.
        #[source]
        source: Box<BaseError>,
    },
    /// The reference is not a valid image name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The store cannot read the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image's config is not JSON.
    #[error("the config {digest} of {image} is not JSON")]
    ConfigNotJson {
        /// The image.
        image: String,
        /// Its config.
        digest: Digest,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The image's runtime config does not have the expected fields.
    #[error("the config {digest} of {image} is malformed")]
    ConfigMalformed {
        /// The image.
        image: String,
        /// Its config.
        digest: Digest,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A diff id of the image's config is not a sha256 digest.
    #[error("the config {digest} of {image} has a bad diff id")]
    BadDiffId {
        /// The image.
        image: String,
        /// Its config.
        digest: Digest,
        /// Why.
        #[source]
        source: rbuild_cache::DigestError,
    },
    /// The manifest and the config disagree on the number of layers.
    #[error("{image}: the manifest lists {layers} layers but the config {diff_ids} diff ids")]
    LayerCount {
        /// The image.
        image: String,
        /// Layers of the manifest.
        layers: usize,
        /// Diff ids of the config.
        diff_ids: usize,
    },
}

/// A resolved base image.
#[derive(Debug, Clone)]
pub struct Base {
    /// The name it was found under in the store.
    pub name: String,
    /// Its manifest.
    pub manifest_descriptor: Descriptor,
    /// The config document, as JSON (keeps fields rbuild does not model).
    pub config_json: serde_json::Value,
    /// The runtime config the planner inherits from.
    pub runtime_config: ImageConfig,
    /// Its layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

impl Base {
    /// `sha256:...` of the manifest: what the cache keys record.
    pub fn digest(&self) -> String {
        self.manifest_descriptor.digest().to_string()
    }
}

/// The Dockerfile the plan came from, for errors located in it.
#[derive(Debug, Clone, Copy)]
pub struct Dockerfile<'a> {
    /// Its name as shown.
    pub name: &'a str,
    /// Its text.
    pub text: &'a str,
}

/// The resolved base images of a plan, by reference (as the plan writes it) and platform: one
/// reference may stand for two images in one plan (`FROM --platform=$BUILDPLATFORM alpine`
/// and `FROM alpine` of a foreign target).
#[derive(Debug, Default)]
pub struct Bases(BTreeMap<(String, Platform), Base>);

impl Bases {
    /// The base of `reference` for `platform`.
    pub fn get(&self, reference: &str, platform: &Platform) -> Option<&Base> {
        self.0.get(&(reference.to_string(), platform.clone()))
    }

    /// The base an image op names.
    pub fn of(&self, kind: &OpKind) -> Option<&Base> {
        match kind {
            OpKind::Image {
                reference,
                platform,
            } => self.get(reference, platform),
            _ => None,
        }
    }

    /// Every base.
    pub fn values(&self) -> impl Iterator<Item = &Base> {
        self.0.values()
    }
}

impl rbuild_compiler::plan::BaseConfigs for Bases {
    fn base_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Option<rbuild_compiler::plan::ImageConfig> {
        self.get(reference, platform)
            .map(|b| b.runtime_config.clone())
    }
}

/// Resolves every image op's reference of `plan` for its platform; a reference of `loaded`
/// (an `oci-layout://` context's image) is that image, never looked up or pulled.
/// A pull is shown as a step of its own in `progress`. A reference that is neither in the
/// store nor pullable is reported at its Dockerfile line ([`BaseError::NotFound`]).
pub fn resolve(
    settings: &BuildRequest,
    plan: &Plan,
    dockerfile: Dockerfile<'_>,
    loaded: &BTreeMap<String, Descriptor>,
    progress: &dyn Events,
) -> Result<Bases, BaseError> {
    let mut out = BTreeMap::new();
    for op in &plan.ops {
        let OpKind::Image {
            reference,
            platform,
        } = &op.kind
        else {
            continue;
        };
        let key = (reference.clone(), platform.clone());
        if out.contains_key(&key) {
            continue;
        }
        let base = match resolve_one(
            settings,
            reference,
            platform,
            loaded.get(reference),
            progress,
        ) {
            Ok(base) => base,
            Err(Failure::Pull(e)) => {
                return Err(not_found(settings, plan, dockerfile, op.span, reference, e));
            }
            Err(Failure::Other(e)) => {
                return Err(BaseError::Resolve {
                    reference: reference.clone(),
                    source: Box::new(e),
                });
            }
        };
        out.insert(key, base);
    }
    Ok(Bases(out))
}

/// Why a base could not be resolved: its pull failed (it was not in the store), or
/// something else.
enum Failure {
    Pull(PullError),
    Other(BaseError),
}

impl<E: Into<BaseError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

/// The error for a `FROM` or `--from` reference that is neither a stage nor in the store,
/// and whose pull failed: located at the reference in the Dockerfile, with what was tried in
/// one line and the closest stage or local image as a hint; the pull's causes under `-v`.
fn not_found(
    settings: &BuildRequest,
    plan: &Plan,
    dockerfile: Dockerfile<'_>,
    span: Span,
    reference: &str,
    err: PullError,
) -> BaseError {
    let full = crate::names::normalize_name(reference).unwrap_or_else(|_| reference.to_string());
    let stage_names: Vec<(&str, usize)> = plan
        .stages
        .iter()
        .filter_map(|s| Some((s.name.as_deref()?, s.span.start.line)))
        .collect();
    let stage = rbuild_compiler::suggest::closest(
        &reference.to_ascii_lowercase(),
        stage_names.iter().map(|(n, _)| *n),
    );
    let hint = match stage {
        Some(best) => {
            let line = stage_names
                .iter()
                .find(|(n, _)| *n == best)
                .map_or(0, |(_, l)| *l);
            Some(format!("did you mean {best} (the stage on line {line})?"))
        }
        None => crate::missing::closest_image(&settings.store, reference)
            .map(|best| format!("did you mean {best}?")),
    };
    let mut text = rbuild_compiler::parser::render_diagnostic(
        &format!(
            "{reference} is neither a stage of this Dockerfile nor an image in the local store"
        ),
        locate(dockerfile.text, span, reference),
        None,
        dockerfile.name,
        dockerfile.text,
    );
    text.push_str("\n  = note: ");
    text.push_str(&crate::missing::pull_failure(&full, &err));
    if let Some(hint) = hint {
        text.push_str("\nhint: ");
        text.push_str(&hint);
    }
    BaseError::NotFound {
        reference: reference.to_string(),
        message: text,
        source: crate::missing::verbose().then(|| Box::new(err)),
    }
}

/// The span of `word` where the instruction at `span` names it (`FROM word`,
/// `--from=word`, `from=word`), or the instruction when the word is not written there as
/// such (it came from a variable).
fn locate(text: &str, span: Span, word: &str) -> Span {
    locate_word(text, span, word, true)
}

/// The span of the first `word` of the instruction at `span` (after its keyword) written
/// between whitespace (or after `=`, with `after_equals`), or the whole instruction when the
/// word is not written as such.
pub(super) fn locate_word(text: &str, span: Span, word: &str, after_equals: bool) -> Span {
    if word.is_empty() {
        return span;
    }
    let lines = text
        .split('\n')
        .enumerate()
        .skip(span.start.line.saturating_sub(1));
    for (i, line) in lines.take(span.end.line.saturating_sub(span.start.line) + 1) {
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        // Skip the keyword, then find the word with a separator before and after it.
        let mut at = if i + 1 == span.start.line {
            line.find(char::is_whitespace).unwrap_or(line.len())
        } else {
            0
        };
        while let Some(found) = line[at..].find(word) {
            let start = at + found;
            let end = start + word.len();
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            if before.is_none_or(|c| c.is_whitespace() || (after_equals && c == '='))
                && after.is_none_or(|c| c.is_whitespace() || c == ',' || c == '\\')
            {
                let column = line[..start].chars().count() + 1;
                return Span::on_line(i + 1, column, word.chars().count());
            }
            at = end;
        }
    }
    span
}

fn resolve_one(
    settings: &BuildRequest,
    reference: &str,
    platform: &Platform,
    loaded: Option<&Descriptor>,
    progress: &dyn Events,
) -> Result<Base, Failure> {
    let store = &settings.store;
    let name = crate::names::normalize_name(reference)?;
    let stored = loaded.cloned().or_else(|| local_image(store, reference));
    // The checks before the build saw the store's copy; only a base new to the store is
    // compared here.
    let new_to_store = stored.is_none();
    // A single-platform copy this platform does not run (the store names the amd64 image,
    // an arm64 stage wants it) is pulled again for this platform, without taking the name
    // from the copy; when that pull fails, the copy is taken as it is (as BuildKit takes a
    // single-platform image), with the check's warning. So is an index of which another
    // platform was pulled.
    let foreign = stored.as_ref().is_some_and(|d| {
        if rbuild_cache::is_index(d.media_type()) {
            matches!(
                store.image_manifest_for(d, platform),
                Err(StoreError::PlatformNotPulled { .. })
            )
        } else {
            !runs_here(store, d, platform)
        }
    });
    let local = if loaded.is_some() {
        stored.clone()
    } else if settings.pull || foreign {
        None
    } else {
        stored.clone()
    };
    let descriptor = match local {
        Some(d) => {
            tracing::debug!("base image {reference}: using the store's {name}");
            d
        }
        None => {
            let transfer = progress.transfer("pull", &name);
            let pulled = crate::pull::pull_image_as(
                store,
                reference,
                Some(&platform.to_string()),
                &settings.registry,
                transfer.reporter(),
                !foreign,
            );
            match (pulled, stored) {
                (Ok(p), _) => {
                    transfer.done();
                    p.descriptor
                }
                (Err(e), Some(copy)) if foreign => {
                    transfer.failed(&format!(
                        "no {platform} image to pull ({}): the store's single-platform copy is used",
                        crate::error::chain_text(&e)
                    ));
                    copy
                }
                (Err(e), _) => {
                    transfer.failed(&crate::missing::pull_failure(&name, &e));
                    return Err(Failure::Pull(e));
                }
            }
        }
    };
    let (manifest_descriptor, manifest) = store.image_manifest_for(&descriptor, platform)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    let bytes = store.read_blob(&config_digest)?;
    let config_json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| BaseError::ConfigNotJson {
            image: name.clone(),
            digest: config_digest,
            source,
        })?;
    // A base the store had was compared by the checks before the build
    // (InvalidBaseImagePlatform); one pulled now is compared here, as BuildKit does after
    // resolving: a single-platform image of another architecture is taken as it is.
    if new_to_store
        && let Some(actual) = config_platform(&config_json)
        && (actual.os != platform.os || actual.architecture != platform.architecture)
    {
        progress.warn(
            "base-platform",
            &format!(
                "Base image {reference} was pulled with platform \"{}\", expected \"{}\" for current build",
                actual,
                platform
            ),
        );
    }
    let runtime_config =
        runtime_config(&config_json).map_err(|source| BaseError::ConfigMalformed {
            image: name.clone(),
            digest: config_digest,
            source,
        })?;
    let diff_ids: Vec<rbuild_cache::Digest> = config_json
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str())
                .map(str::parse)
                .collect()
        })
        .transpose()
        .map_err(|source| BaseError::BadDiffId {
            image: name.clone(),
            digest: config_digest,
            source,
        })?
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Failure::Other(BaseError::LayerCount {
            image: name,
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        }));
    }
    let layers = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| {
            Ok(LayerRecord {
                digest: rbuild_cache::descriptor_digest(l)?,
                diff_id,
                size: l.size(),
                media_type: l.media_type().to_string(),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Base {
        name,
        manifest_descriptor,
        config_json,
        runtime_config,
        layers,
    })
}

/// The store's image for `reference` (by its full name, or by the text as written), if it
/// has one.
pub fn local_image(store: &rbuild_cache::Store, reference: &str) -> Option<Descriptor> {
    crate::names::normalize_name(reference)
        .ok()
        .and_then(|name| store.resolve(&name).ok())
        .or_else(|| store.resolve(reference).ok())
}

/// The runtime config (`config` of the image config document) a stage inherits.
fn runtime_config(config_json: &serde_json::Value) -> serde_json::Result<ImageConfig> {
    match config_json.get("config") {
        Some(c) if !c.is_null() => serde_json::from_value(c.clone()),
        _ => Ok(ImageConfig::default()),
    }
}

/// The runtime config of the store's copy of `reference`, for planning without building
/// (`rbuild plan`): `None` when the store does not have it or cannot read it. Never pulls.
pub fn stored_config(store: &rbuild_cache::Store, reference: &str) -> Option<ImageConfig> {
    runtime_config(&stored_config_document(store, reference)?).ok()
}

/// The platform the store's copy of `reference` says it is for (its config's `os`,
/// `architecture` and `variant`); `None` when the store does not have it or the config names
/// no platform.
pub fn stored_platform(store: &rbuild_cache::Store, reference: &str) -> Option<Platform> {
    config_platform(&stored_config_document(store, reference)?)
}

/// The image config document of the store's copy of `reference`.
fn stored_config_document(
    store: &rbuild_cache::Store,
    reference: &str,
) -> Option<serde_json::Value> {
    let descriptor = local_image(store, reference)?;
    let (_, manifest) = store.image_manifest(&descriptor).ok()?;
    let digest = rbuild_cache::descriptor_digest(manifest.config()).ok()?;
    let bytes = store.read_blob(&digest).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `platform` runs the single-platform image `descriptor` of the store (an image
/// whose config names no platform is taken to run anywhere).
fn runs_here(store: &rbuild_cache::Store, descriptor: &Descriptor, platform: &Platform) -> bool {
    let config = store
        .image_manifest(descriptor)
        .ok()
        .and_then(|(_, m)| rbuild_cache::descriptor_digest(m.config()).ok())
        .and_then(|d| store.read_blob(&d).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    match config.as_ref().and_then(config_platform) {
        Some(actual) => platform.runs(&actual),
        None => true,
    }
}

/// The platform an image config document names, when it names an os and an architecture.
fn config_platform(config_json: &serde_json::Value) -> Option<Platform> {
    let field = |name: &str| config_json.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (os, architecture) = (field("os"), field("architecture"));
    (!os.is_empty() && !architecture.is_empty())
        .then(|| Platform::new(os, architecture, Some(field("variant"))))
}
