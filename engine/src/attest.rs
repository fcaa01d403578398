//! Attestations of a build (`--sbom`, `--provenance`, `--attest`): in-toto statements about
//! each platform's image, stored as BuildKit stores them so that the tools reading BuildKit's
//! attestations read rbuild's.
//!
//! For every image of the result the index gets an *attestation manifest*: an image manifest
//! whose descriptor has the platform `unknown/unknown` and the annotations
//! `vnd.docker.reference.type: attestation-manifest` and `vnd.docker.reference.digest:` the
//! image manifest's digest. Its layers are the statements (`application/vnd.in-toto+json`,
//! annotated with `in-toto.io/predicate-type`), its config the small `unknown/unknown`
//! config whose `diff_ids` are the statements' digests. Each statement's subject is the
//! image manifest, named by the image's names as package URLs (`pkg:docker/app@1?platform=
//! linux%2Famd64`).
//!
//! - The SBOM (`https://spdx.dev/Document`) is the SPDX 2.3 document of `rbuild sbom`: the
//!   packages the image's own databases list, read from its layers, nothing run.
//! - The provenance (SLSA v1 by default, v0.2 on request) names the Dockerfile (its name and
//!   sha256), the target, the platform, the context (a local directory or a URL), every base
//!   image with its manifest digest and every `ADD URL` with the sha256 of what was fetched,
//!   rbuild's version and when the build started and finished. `mode=max` adds the build
//!   args, the ids of the secrets and SSH sockets, the Dockerfile's text and the steps.
//!   Nothing secret goes in: no secret's value, no build arg whose name looks like a
//!   credential ([`crate::looks_secret`]) nor a proxy arg (its URL may hold a password), and
//!   every string of the predicate is scrubbed of those values and of the secrets' values.
//!
//! Statements are made once per build ([`predicates`]) and wrapped for each output
//! ([`attach`]): an output that compresses the layers has other manifest digests, and the
//! subjects name the manifests the output holds. A push compresses while it uploads; it
//! makes the attestation manifests again for what it sends ([`retarget`]).

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, MediaType};
use rbuild_cache::Store;
use rbuild_compiler::plan::{OpKind, Platform};
use serde_json::{Value, json};

use crate::{BuildRequest, ImageFormat};

/// The predicate type of an SPDX SBOM.
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
/// The predicate type of SLSA provenance v0.2.
pub const PREDICATE_SLSA02: &str = "https://slsa.dev/provenance/v0.2";
/// The predicate type of SLSA provenance v1.
pub const PREDICATE_SLSA1: &str = "https://slsa.dev/provenance/v1";
/// The in-toto statement type BuildKit writes.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";
/// The media type of a statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The annotation of a statement layer naming its predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// The annotation of an attestation manifest's descriptor naming what it is.
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
/// The value of [`REFERENCE_TYPE_ANNOTATION`] for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// The annotation of an attestation manifest's descriptor naming the image it is about.
pub const REFERENCE_DIGEST_ANNOTATION: &str = "vnd.docker.reference.digest";
/// rbuild's build type: the page that says what its provenance fields mean.
pub const BUILD_TYPE: &str = "https://github.com/rbuild/rbuild/blob/main/docs/attestations.md";

/// Build args whose values never go into a provenance: the proxy settings, which docker
/// keeps out of the image history too (their URLs may carry credentials).
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// Why an attestation could not be made or stored.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A `--sbom`, `--provenance` or `--attest` value is not understood.
    #[error("invalid --{flag} value {value:?}: {message}")]
    Option {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// The SBOM of an image could not be made.
    #[error("cannot list the packages of the {platform} image {digest} for its SBOM")]
    Sbom {
        /// The image's platform.
        platform: String,
        /// Its manifest digest.
        digest: String,
        /// Why.
        #[source]
        source: Box<rbuild_report::SbomError>,
    },
    /// A blob of an image could not be read, or a statement not stored.
    #[error("cannot {action} {digest} for the attestations")]
    Store {
        /// `read the image`, `store the statement`...
        action: &'static str,
        /// The blob.
        digest: String,
        /// Why.
        #[source]
        source: rbuild_cache::StoreError,
    },
    /// A statement or manifest could not be written as JSON.
    #[error("cannot write the {what} of the attestations as JSON")]
    Json {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A digest in an attestation manifest is not a sha256 digest.
    #[error("an attestation manifest names {digest:?}, which is not a sha256 digest")]
    BadDigest {
        /// The text.
        digest: String,
    },
    /// The index could not be written.
    #[error(transparent)]
    Index(#[from] Box<crate::image::ImageError>),
    /// The result's index and the attestations disagree (a bug).
    #[error("internal error: the image {digest} has {images} images but {attested} attestations")]
    Mismatch {
        /// The image or index.
        digest: String,
        /// Its images.
        images: usize,
        /// The platforms attested.
        attested: usize,
    },
}

/// The SLSA provenance version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlsaVersion {
    /// v0.2 (`https://slsa.dev/provenance/v0.2`).
    V02,
    /// v1 (`https://slsa.dev/provenance/v1`), BuildKit's default.
    #[default]
    V1,
}

/// How much the provenance says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProvenanceMode {
    /// The materials, the Dockerfile's digest, the target and platform, the times.
    #[default]
    Min,
    /// Also the build args (not secret-looking ones), the secret and SSH ids, the
    /// Dockerfile's text and the steps.
    Max,
}

/// `--provenance` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProvenanceOptions {
    /// `mode=`.
    pub mode: ProvenanceMode,
    /// `version=`.
    pub version: SlsaVersion,
}

/// The attestations a build makes. None by default: an attestation turns a one-platform
/// image into an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attest {
    /// `--sbom`: an SPDX SBOM of each image.
    pub sbom: bool,
    /// `--sbom=scan-stages=true`: an SBOM of every other stage the image needs too, as if
    /// each declared `ARG BUILDKIT_SBOM_SCAN_STAGE=true`.
    pub scan_stages: bool,
    /// `--provenance`: a SLSA provenance of each image.
    pub provenance: Option<ProvenanceOptions>,
}

impl Attest {
    /// Whether the build makes no attestation.
    pub fn is_empty(&self) -> bool {
        !self.sbom && self.provenance.is_none()
    }

    /// Applies `--sbom=VALUE`: `true` (or empty), `false`, or buildx's `key=value` list
    /// (`disabled=true`).
    pub fn set_sbom(&mut self, value: &str) -> Result<(), AttestError> {
        match parse_bool(value) {
            Some(on) => self.sbom = on,
            None => sbom_fields(self, &fields("sbom", value)?, "sbom", value)?,
        }
        Ok(())
    }

    /// Applies `--provenance=VALUE`: `true` (or empty: `mode=min`), `false`, `min`, `max`,
    /// or `mode=min|max,version=v0.2|v1[,disabled=true]`.
    pub fn set_provenance(&mut self, value: &str) -> Result<(), AttestError> {
        self.provenance = match (parse_bool(value), value) {
            (Some(true), _) => Some(ProvenanceOptions::default()),
            (Some(false), _) => None,
            (None, "min" | "max") => {
                provenance_fields(&[("mode".into(), Some(value.into()))], "provenance", value)?
            }
            (None, _) => provenance_fields(&fields("provenance", value)?, "provenance", value)?,
        };
        Ok(())
    }

    /// Applies `--attest type=sbom|provenance[,KEY=VALUE...]`, buildx's general form.
    pub fn add(&mut self, value: &str) -> Result<(), AttestError> {
        let mut pairs = fields("attest", value)?;
        let at = pairs.iter().position(|(k, _)| k == "type").ok_or_else(|| {
            bad(
                "attest",
                value,
                "it needs type=sbom or type=provenance".into(),
            )
        })?;
        let (_, kind) = pairs.remove(at);
        match kind.as_deref() {
            Some("sbom") => sbom_fields(self, &pairs, "attest", value)?,
            Some("provenance") => self.provenance = provenance_fields(&pairs, "attest", value)?,
            other => {
                return Err(bad(
                    "attest",
                    value,
                    format!(
                        "unknown attestation type {:?}: rbuild makes sbom and provenance",
                        other.unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn bad(flag: &'static str, value: &str, message: String) -> AttestError {
    AttestError::Option {
        flag,
        value: value.to_string(),
        message,
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn fields(flag: &'static str, value: &str) -> Result<Vec<(String, Option<String>)>, AttestError> {
    rbuild_options::csv::pairs(value).map_err(|e| bad(flag, value, e.to_string()))
}

/// Whether a `disabled=` field turns the attestation off.
fn disabled(flag: &'static str, value: &str, v: Option<&str>) -> Result<bool, AttestError> {
    parse_bool(v.unwrap_or("true")).ok_or_else(|| {
        bad(
            flag,
            value,
            format!("disabled={:?} is not true or false", v),
        )
    })
}

fn sbom_fields(
    attest: &mut Attest,
    pairs: &[(String, Option<String>)],
    flag: &'static str,
    value: &str,
) -> Result<(), AttestError> {
    let mut on = true;
    for (k, v) in pairs {
        match k.as_str() {
            "disabled" => on = !disabled(flag, value, v.as_deref())?,
            "scan-stages" => {
                attest.scan_stages = parse_bool(v.as_deref().unwrap_or("true"))
                    .ok_or_else(|| bad(flag, value, "scan-stages takes true or false".into()))?;
            }
            "generator" => {
                return Err(bad(
                    flag,
                    value,
                    "rbuild lists the packages itself (as `rbuild sbom` does): it runs no generator image"
                        .into(),
                ));
            }
            other => {
                return Err(bad(
                    flag,
                    value,
                    format!(
                        "unknown sbom option {other:?} (rbuild takes disabled= and scan-stages=)"
                    ),
                ));
            }
        }
    }
    attest.sbom = on;
    Ok(())
}

fn provenance_fields(
    pairs: &[(String, Option<String>)],
    flag: &'static str,
    value: &str,
) -> Result<Option<ProvenanceOptions>, AttestError> {
    let mut options = ProvenanceOptions::default();
    let mut on = true;
    for (k, v) in pairs {
        let v = v.as_deref();
        match (k.as_str(), v) {
            ("mode", Some("min")) => options.mode = ProvenanceMode::Min,
            ("mode", Some("max" | "full")) => options.mode = ProvenanceMode::Max,
            ("version", Some("v1")) => options.version = SlsaVersion::V1,
            ("version", Some("v0.2")) => options.version = SlsaVersion::V02,
            ("disabled", _) => on = !disabled(flag, value, v)?,
            ("mode", _) => {
                return Err(bad(flag, value, format!("mode={v:?} is not min or max")));
            }
            ("version", _) => {
                return Err(bad(flag, value, format!("version={v:?} is not v0.2 or v1")));
            }
            (other, _) => {
                return Err(bad(
                    flag,
                    value,
                    format!(
                        "unknown provenance option {other:?} (rbuild takes mode=, version=, disabled=)"
                    ),
                ));
            }
        }
    }
    Ok(on.then_some(options))
}

/// A dependency the provenance names: a base image or a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Material {
    /// A package URL (images) or the URL.
    pub uri: String,
    /// `sha256:...`.
    pub digest: String,
}

/// One statement's predicate, not yet given its subject.
#[derive(Debug, Clone)]
pub struct Predicate {
    /// Its type ([`PREDICATE_SPDX`], [`PREDICATE_SLSA1`], ...).
    pub predicate_type: &'static str,
    /// The file a `local` or `tar` output writes it to (`sbom.spdx.json`,
    /// `sbom-STAGE.spdx.json`, `provenance.json`).
    pub filename: String,
    /// The predicate.
    pub predicate: Value,
}

/// The predicates of one platform's image.
#[derive(Debug, Clone)]
pub struct PlatformPredicates {
    /// The image's platform.
    pub platform: Platform,
    /// Its predicates, SBOM first.
    pub predicates: Vec<Predicate>,
}

/// What the provenance of one platform's build draws on.
pub(crate) struct BuildFacts<'a> {
    pub settings: &'a BuildRequest,
    pub dockerfile_name: &'a str,
    pub dockerfile_text: &'a str,
    /// The URL of a downloaded or git context (`...#COMMIT` for git).
    pub context_url: Option<&'a str>,
    pub plan: &'a rbuild_compiler::plan::Plan,
    pub materials: Vec<Material>,
    /// The image in the store (its manifest).
    pub image: &'a Descriptor,
    /// The other stages whose packages the SBOM attestation lists.
    pub stages: &'a [crate::image::ScannedStage],
    /// When the build started and finished.
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
}

/// The materials of a plan: its base images (by the digest the store has) and the
/// downloads its ops fetched.
pub(crate) fn materials(
    plan: &rbuild_compiler::plan::Plan,
    bases: &crate::bases::Bases,
    fetched: &[Option<crate::solver::OpResult>],
) -> Vec<Material> {
    let mut out: Vec<Material> = Vec::new();
    for (op, result) in plan.ops.iter().zip(fetched) {
        let material =
            match &op.kind {
                OpKind::Image { .. } => bases.of(&op.kind).and_then(|b| {
                    let platform = rbuild_cache::descriptor_platform(&b.manifest_descriptor)
                        .or_else(|| match &op.kind {
                            OpKind::Image { platform, .. } => Some(platform.clone()),
                            _ => None,
                        });
                    Some(Material {
                        uri: image_purl(&b.name, platform.as_ref())?,
                        digest: b.digest(),
                    })
                }),
                OpKind::Http { url, .. } | OpKind::Git { url, .. } => result
                    .as_ref()
                    .and_then(|r| r.fetched.clone())
                    .map(|digest| Material {
                        uri: redact_url(url),
                        digest,
                    }),
                _ => None,
            };
        if let Some(m) = material.filter(|m| !out.contains(m)) {
            out.push(m);
        }
    }
    out
}

/// A URL without its user and password.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// Percent-encodes a package URL part: all but ASCII letters, digits, `.-_~` (and the
/// characters in `keep`).
fn purl_escape(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"._-~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An image name as BuildKit's package URL: `pkg:docker/NAMESPACE/NAME@TAG?platform=...`
/// with docker's short name (`busybox`, `localhost:5000/app`), the digest as a qualifier
/// when the name has one.
pub fn image_purl(name: &str, platform: Option<&Platform>) -> Option<String> {
    let reference = crate::names::parse_reference(name).ok()?;
    let tagged = match (reference.tag(), reference.digest()) {
        (None, None) => reference.with_tag("latest").ok()?,
        _ => reference.clone(),
    };
    let familiar = tagged.familiar();
    let bare = familiar
        .split('@')
        .next()
        .unwrap_or_default()
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or_else(
            || familiar.split('@').next().unwrap_or_default(),
            |(n, _)| n,
        );
    let (namespace, short) = match bare.rsplit_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, bare),
    };
    let mut purl = String::from("pkg:docker/");
    if let Some(ns) = namespace {
        purl.push_str(&purl_escape(ns, b"/:"));
        purl.push('/');
    }
    purl.push_str(&purl_escape(short, b""));
    if let Some(tag) = tagged.tag() {
        purl.push('@');
        purl.push_str(&purl_escape(tag, b""));
    }
    let mut qualifiers = Vec::new();
    if let Some(d) = tagged.digest() {
        qualifiers.push(format!("digest={}", purl_escape(d.as_ref(), b":")));
    }
    if let Some(p) = platform {
        qualifiers.push(format!("platform={}", purl_escape(&p.to_string(), b"")));
    }
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    Some(purl)
}

/// Reads an image's manifest, config and layers from the store for its inventory.
struct StoredImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layers: Vec<rbuild_cache::Digest>,
}

fn stored_image(store: &Store, image: &Descriptor) -> Result<StoredImage, AttestError> {
    let read = |source| AttestError::Store {
        action: "read the image",
        digest: image.digest().to_string(),
        source,
    };
    let digest = rbuild_cache::descriptor_digest(image).map_err(read)?;
    let manifest = store.read_blob(&digest).map_err(read)?;
    let (_, parsed) = store.image_manifest(image).map_err(read)?;
    let config_digest = rbuild_cache::descriptor_digest(parsed.config()).map_err(read)?;
    let config = store.read_blob(&config_digest).map_err(read)?;
    let layers = parsed
        .layers()
        .iter()
        .map(rbuild_cache::descriptor_digest)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    Ok(StoredImage {
        manifest,
        config,
        layers,
    })
}

/// The SPDX document of the image whose manifest and config are `manifest` and `config`,
/// its layer blobs `layers` in the store.
fn sbom_of(
    settings: &BuildRequest,
    (name, id): (&str, &str),
    manifest: &[u8],
    config: &[u8],
    layers: &[rbuild_cache::Digest],
    platform: &Platform,
) -> Result<Value, AttestError> {
    let layers = crate::inventory::StoreLayers {
        store: &settings.store,
        digests: layers,
        limits: settings.limits,
    };
    // The layers this build unpacked were read as they streamed: only the others are read
    // from their blobs.
    let diff_ids: Vec<Option<rbuild_cache::Digest>> = serde_json::from_slice::<Value>(config)
        .ok()
        .and_then(|c| {
            c.pointer("/rootfs/diff_ids")?.as_array().map(|ids| {
                ids.iter()
                    .map(|d| d.as_str().and_then(|d| d.parse().ok()))
                    .collect()
            })
        })
        .unwrap_or_default();
    let known = |index: usize| {
        let diff_id = diff_ids.get(index).copied().flatten()?;
        settings.layer_scans.get(&diff_id)
    };
    let inventory = rbuild_report::sbom::inventory_with(
        rbuild_report::ImageInput {
            name,
            id: Some(id),
            manifest,
            config,
            base_layers: None,
            layers: &layers,
        },
        &rbuild_report::SbomOptions {
            limits: settings.limits,
            ..Default::default()
        },
        &known,
    )
    .map_err(|source| AttestError::Sbom {
        platform: platform.to_string(),
        digest: id.to_string(),
        source: Box::new(source),
    })?;
    serde_json::from_str(&rbuild_report::sbom::render::spdx_json(&inventory)).map_err(|source| {
        AttestError::Json {
            what: "SBOM",
            source,
        }
    })
}

/// The predicates of one platform's image.
pub(crate) fn predicates(
    facts: &BuildFacts<'_>,
    platform: &Platform,
) -> Result<PlatformPredicates, AttestError> {
    let attest = facts.settings.attest;
    let mut predicates = Vec::new();
    if attest.sbom {
        let id = facts.image.digest().to_string();
        let image_name = facts.settings.tags.first().unwrap_or(&id);
        let stored = stored_image(&facts.settings.store, facts.image)?;
        predicates.push(Predicate {
            predicate_type: PREDICATE_SPDX,
            filename: "sbom.spdx.json".into(),
            predicate: sbom_of(
                facts.settings,
                (image_name, &id),
                &stored.manifest,
                &stored.config,
                &stored.layers,
                platform,
            )?,
        });
        // Then the stages asked for, as BuildKit puts its scanner's extra documents after
        // the image's own.
        for stage in facts.stages {
            let id = rbuild_cache::Digest::of(&stage.documents.manifest).to_string();
            let name = format!("{image_name} (stage {})", stage.label);
            predicates.push(Predicate {
                predicate_type: PREDICATE_SPDX,
                filename: format!("sbom-{}.spdx.json", stage.label),
                predicate: sbom_of(
                    facts.settings,
                    (&name, &id),
                    &stage.documents.manifest,
                    &stage.documents.config,
                    &stage.layers,
                    platform,
                )?,
            });
        }
    }
    if let Some(options) = attest.provenance {
        let (predicate_type, predicate) = provenance(facts, platform, options);
        predicates.push(Predicate {
            predicate_type,
            filename: "provenance.json".into(),
            predicate,
        });
    }
    Ok(PlatformPredicates {
        platform: platform.clone(),
        predicates,
    })
}

/// Whether a build arg's value stays out of the provenance.
fn withheld(name: &str) -> bool {
    crate::looks_secret(name) || PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// A digest as SLSA's digest set: `sha256:HEX` is `{"sha256": HEX}`; a git commit (no
/// algorithm) is `sha1`, or `sha256` for a 64-digit one, as BuildKit records commits.
fn sha256_set(digest: &str) -> Value {
    match digest.split_once(':') {
        Some((algorithm, hex)) => json!({ algorithm: hex }),
        None if digest.len() == 64 => json!({ "sha256": digest }),
        None => json!({ "sha1": digest }),
    }
}

/// The provenance predicate: its type and the document.
fn provenance(
    facts: &BuildFacts<'_>,
    platform: &Platform,
    options: ProvenanceOptions,
) -> (&'static str, Value) {
    let settings = facts.settings;
    let max = options.mode == ProvenanceMode::Max;
    let dockerfile_digest = rbuild_cache::Digest::of(facts.dockerfile_text.as_bytes()).to_string();

    // The request, as BuildKit records it for the dockerfile frontend.
    let mut args = BTreeMap::new();
    if let Some(target) = &settings.plan_options.target {
        args.insert("target".to_string(), target.clone());
    }
    args.insert("platform".to_string(), platform.to_string());
    let mut complete_request = true;
    for (name, value) in &settings.plan_options.build_args {
        if !max || withheld(name) {
            complete_request = false;
            continue;
        }
        args.insert(format!("build-arg:{name}"), value.clone());
    }
    for (key, value) in &settings.labels {
        if max {
            args.insert(format!("label:{key}"), value.clone());
        } else {
            complete_request = false;
        }
    }
    let mut request = json!({"frontend": "dockerfile.v0", "args": args});
    if max {
        if !settings.secrets.is_empty() {
            request["secrets"] = settings
                .secrets
                .keys()
                .map(|id| json!({"id": id}))
                .collect();
        }
        if !settings.ssh.is_empty() {
            request["ssh"] = settings.ssh.keys().map(|id| json!({"id": id})).collect();
        }
    }
    let mut config_source = json!({
        "path": facts.dockerfile_name,
        "digest": sha256_set(&dockerfile_digest),
    });
    let local = match &settings.context {
        crate::context::ContextArg::Url(url) => {
            config_source["uri"] = json!(redact_url(url));
            false
        }
        crate::context::ContextArg::Git(url) => {
            // The repository (credentials cut) with its ref and subdirectory; the commit
            // checked out is the source's digest, the Dockerfile's moves beside it.
            let mut uri = url.shown();
            if url.reference.is_some() || url.subdir.is_some() {
                uri.push('#');
                uri.push_str(url.reference.as_deref().unwrap_or_default());
                if let Some(dir) = &url.subdir {
                    uri.push(':');
                    uri.push_str(dir);
                }
            }
            config_source["uri"] = json!(uri);
            if let Some((_, commit)) = facts.context_url.and_then(|u| u.rsplit_once('#')) {
                config_source["digest"] = sha256_set(commit);
                config_source["dockerfileDigest"] = sha256_set(&dockerfile_digest);
            }
            false
        }
        crate::context::ContextArg::Dir(_) | crate::context::ContextArg::Stdin => true,
    };
    if local {
        let mut locals = vec![json!({"name": "context"}), json!({"name": "dockerfile"})];
        for name in settings.named_contexts.keys() {
            locals.push(json!({"name": name}));
        }
        request["locals"] = Value::Array(locals);
    }
    let materials: Vec<Value> = facts
        .materials
        .iter()
        .map(|m| json!({"uri": m.uri, "digest": sha256_set(&m.digest)}))
        .collect();
    let build_config = max.then(|| build_config(facts));
    let source = max.then(|| {
        json!({"infos": [{
            "filename": facts.dockerfile_name,
            "language": "Dockerfile",
            "data": base64_encode(facts.dockerfile_text.as_bytes()),
        }]})
    });
    let builder_platform = settings.plan_options.build_platform.to_string();
    let version = env!("CARGO_PKG_VERSION");
    let invocation = facts.image.digest().to_string();
    let time = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (predicate_type, mut doc) = match options.version {
        SlsaVersion::V1 => {
            let mut internal = json!({"builderPlatform": builder_platform});
            if let Some(c) = &build_config {
                internal["buildConfig"] = c.clone();
            }
            let mut metadata = json!({
                "invocationID": invocation,
                "startedOn": time(facts.started),
                "finishedOn": time(facts.finished),
                "rbuild_completeness": {
                    "request": complete_request,
                    "resolvedDependencies": !local,
                },
            });
            if let Some(s) = &source {
                metadata["rbuild_metadata"] = json!({ "source": s });
            }
            (
                PREDICATE_SLSA1,
                json!({
                    "buildDefinition": {
                        "buildType": BUILD_TYPE,
                        "externalParameters": {
                            "configSource": config_source,
                            "request": request,
                        },
                        "internalParameters": internal,
                        "resolvedDependencies": materials,
                    },
                    "runDetails": {
                        "builder": {"id": "", "version": {"rbuild": version}},
                        "metadata": metadata,
                    },
                }),
            )
        }
        SlsaVersion::V02 => {
            let mut entry =
                json!({"entryPoint": facts.dockerfile_name, "digest": config_source["digest"]});
            if let Some(uri) = config_source.get("uri") {
                entry["uri"] = uri.clone();
            }
            let mut doc = json!({
                "builder": {"id": ""},
                "buildType": BUILD_TYPE,
                "materials": materials,
                "invocation": {
                    "configSource": entry,
                    "parameters": request,
                    "environment": {"platform": builder_platform},
                },
                "metadata": {
                    "buildInvocationID": invocation,
                    "buildStartedOn": time(facts.started),
                    "buildFinishedOn": time(facts.finished),
                    "completeness": {
                        "parameters": complete_request,
                        "environment": true,
                        "materials": !local,
                    },
                    "reproducible": false,
                    "https://github.com/rbuild/rbuild#metadata": {"version": version},
                },
            });
            if let Some(c) = build_config {
                doc["buildConfig"] = c;
            }
            if let Some(s) = source {
                doc["metadata"]["https://github.com/rbuild/rbuild#metadata"]["source"] = s;
            }
            (PREDICATE_SLSA02, doc)
        }
    };
    scrub(&mut doc, &secret_values(settings));
    (predicate_type, doc)
}

/// The values no attestation may hold: the secrets', and those of the build args kept out
/// of the provenance (only the non-trivial ones: a value of one or two characters would
/// scrub ordinary text).
fn secret_values(settings: &BuildRequest) -> Vec<String> {
    let mut out: Vec<String> = settings
        .secrets
        .values()
        .filter_map(|s| std::str::from_utf8(s.bytes()).ok())
        .flat_map(|s| [s.to_string(), s.trim().to_string()])
        .collect();
    out.extend(
        settings
            .plan_options
            .build_args
            .iter()
            .filter(|(name, _)| withheld(name))
            .map(|(_, v)| v.clone()),
    );
    out.retain(|v| v.len() >= 3);
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out.dedup();
    out
}

/// Replaces every occurrence of a secret value in the strings of `doc` with `***`.
fn scrub(doc: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match doc {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "***");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub(v, secrets)),
        _ => {}
    }
}

/// The steps of the build, as `mode=max` records them: BuildKit's `buildConfig` has the
/// LLB ops; rbuild's has its plan's ops (kind, description, Dockerfile line, inputs).
fn build_config(facts: &BuildFacts<'_>) -> Value {
    let steps: Vec<Value> = facts
        .plan
        .ops
        .iter()
        .map(|op| {
            let inputs: Vec<String> = op
                .inputs
                .iter()
                .map(|i| format!("step{}:{}", i.op, i.role.as_str()))
                .collect();
            let mut step = json!({
                "id": format!("step{}", op.id),
                "op": {"kind": op.kind.name(), "description": op.description},
            });
            if op.span.start.line > 0 {
                step["op"]["dockerfileLine"] = json!(op.span.start.line);
            }
            if !inputs.is_empty() {
                step["inputs"] = json!(inputs);
            }
            step
        })
        .collect();
    json!({ "steps": steps })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A statement about the image `subject` (a manifest) with the names `names`.
fn statement(
    predicate: &Predicate,
    subject: &Descriptor,
    platform: &Platform,
    names: &[String],
) -> Value {
    let digest = sha256_set(subject.digest().as_ref());
    let mut subjects: Vec<Value> = names
        .iter()
        .filter_map(|n| image_purl(n, Some(platform)))
        .map(|name| json!({"name": name, "digest": digest}))
        .collect();
    if subjects.is_empty() {
        subjects.push(json!({"name": "_", "digest": digest}));
    }
    json!({
        "_type": STATEMENT_TYPE,
        "predicateType": predicate.predicate_type,
        "subject": subjects,
        "predicate": predicate.predicate,
    })
}

/// The JSON bytes of a statement for a `local` or `tar` output (its subject: the image the
/// files come from).
pub fn statement_file(
    predicate: &Predicate,
    image: &Descriptor,
    platform: &Platform,
    names: &[String],
) -> Result<Vec<u8>, AttestError> {
    serde_json::to_vec_pretty(&statement(predicate, image, platform, names)).map_err(|source| {
        AttestError::Json {
            what: "statement",
            source,
        }
    })
}

/// Stores a document of an attestation manifest.
fn put_document(store: &Store, media_type: &str, bytes: &[u8]) -> Result<Descriptor, AttestError> {
    store
        .put_document(MediaType::Other(media_type.into()), bytes)
        .map_err(|source| AttestError::Store {
            action: "store the attestation",
            digest: rbuild_cache::Digest::of(bytes).to_string(),
            source,
        })
}

/// Stores the attestation manifest of the image `image` (a manifest descriptor).
fn attestation_manifest(
    store: &Store,
    format: ImageFormat,
    image: &Descriptor,
    attested: &PlatformPredicates,
    names: &[String],
) -> Result<Descriptor, AttestError> {
    let json = |what| move |source| AttestError::Json { what, source };
    let put = |media_type: &str, bytes: &[u8]| put_document(store, media_type, bytes);
    let (manifest_type, config_type) = crate::image::manifest_types(format);
    let mut layers = Vec::new();
    for predicate in &attested.predicates {
        let bytes = serde_json::to_vec(&statement(predicate, image, &attested.platform, names))
            .map_err(json("statement"))?;
        let stored = put(IN_TOTO_MEDIA_TYPE, &bytes)?;
        layers.push(json!({
            "mediaType": IN_TOTO_MEDIA_TYPE,
            "digest": stored.digest().to_string(),
            "size": stored.size(),
            "annotations": {PREDICATE_TYPE_ANNOTATION: predicate.predicate_type},
        }));
    }
    // BuildKit's config of an attestation manifest: an unknown/unknown image whose
    // diff_ids are the statements (stored uncompressed).
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>(),
        },
    });
    let config_bytes = serde_json::to_vec(&config).map_err(json("config"))?;
    let config_desc = put(config_type, &config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": config_type,
            "digest": config_desc.digest().to_string(),
            "size": config_desc.size(),
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(json("manifest"))?;
    let mut desc = put(manifest_type, &bytes)?;
    desc.set_media_type(match format {
        ImageFormat::Oci => MediaType::ImageManifest,
        ImageFormat::Docker => MediaType::Other(manifest_type.into()),
    });
    let mut platform = oci_spec::image::Platform::default();
    platform.set_os("unknown".into());
    platform.set_architecture("unknown".into());
    desc.set_platform(Some(platform));
    desc.set_annotations(Some(
        [
            (
                REFERENCE_DIGEST_ANNOTATION.to_string(),
                image.digest().to_string(),
            ),
            (
                REFERENCE_TYPE_ANNOTATION.to_string(),
                ATTESTATION_MANIFEST.to_string(),
            ),
        ]
        .into(),
    ));
    Ok(desc)
}

/// The attestation manifest `manifest` (its JSON) made again for the image manifest `new`
/// in place of `old`, which it attests: a push that compresses the layers gives the image
/// another digest, and its statements must name the manifest the registry gets. The
/// statements get the new subject digest, the config their digests; everything is stored.
/// Returns the new manifest's bytes.
pub fn retarget(
    store: &Store,
    manifest: &[u8],
    old: &str,
    new: &str,
) -> Result<Vec<u8>, AttestError> {
    let json = |what| move |source| AttestError::Json { what, source };
    let read = |digest: &Value| -> Result<Vec<u8>, AttestError> {
        let text = digest.as_str().unwrap_or_default();
        let parsed: rbuild_cache::Digest = text.parse().map_err(|_| AttestError::BadDigest {
            digest: text.to_string(),
        })?;
        store
            .read_blob(&parsed)
            .map_err(|source| AttestError::Store {
                action: "read the attestation",
                digest: text.to_string(),
                source,
            })
    };
    let put = |media_type: &str, bytes: &[u8]| put_document(store, media_type, bytes);
    let (old_hex, new_hex) = (
        old.strip_prefix("sha256:").unwrap_or(old),
        new.strip_prefix("sha256:").unwrap_or(new),
    );
    let mut doc: Value = serde_json::from_slice(manifest).map_err(json("manifest"))?;
    let mut diff_ids = Vec::new();
    if let Some(layers) = doc["layers"].as_array_mut() {
        for layer in layers {
            let mut statement: Value =
                serde_json::from_slice(&read(&layer["digest"])?).map_err(json("statement"))?;
            if let Some(subjects) = statement["subject"].as_array_mut() {
                for s in subjects {
                    if s["digest"]["sha256"] == old_hex {
                        s["digest"]["sha256"] = json!(new_hex);
                    }
                }
            }
            let bytes = serde_json::to_vec(&statement).map_err(json("statement"))?;
            let media_type = layer["mediaType"]
                .as_str()
                .unwrap_or(IN_TOTO_MEDIA_TYPE)
                .to_string();
            let stored = put(&media_type, &bytes)?;
            layer["digest"] = json!(stored.digest().to_string());
            layer["size"] = json!(stored.size());
            diff_ids.push(layer["digest"].clone());
        }
    }
    let mut config: Value =
        serde_json::from_slice(&read(&doc["config"]["digest"])?).map_err(json("config"))?;
    config["rootfs"]["diff_ids"] = Value::Array(diff_ids);
    let config_bytes = serde_json::to_vec(&config).map_err(json("config"))?;
    let config_type = doc["config"]["mediaType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stored = put(&config_type, &config_bytes)?;
    doc["config"]["digest"] = json!(stored.digest().to_string());
    doc["config"]["size"] = json!(stored.size());
    let bytes = serde_json::to_vec(&doc).map_err(json("manifest"))?;
    let manifest_type = doc["mediaType"].as_str().unwrap_or_default().to_string();
    put(&manifest_type, &bytes)?;
    Ok(bytes)
}

/// The image `image` (a manifest, or the index of a multi-platform build, as an output
/// holds it) with an attestation manifest per image: a new index in the store. The
/// index's images are in the order of `attested`.
pub fn attach(
    store: &Store,
    format: ImageFormat,
    image: &Descriptor,
    attested: &[PlatformPredicates],
    names: &[String],
) -> Result<Descriptor, AttestError> {
    let read = |source| AttestError::Store {
        action: "read the image",
        digest: image.digest().to_string(),
        source,
    };
    let images: Vec<Descriptor> = if rbuild_cache::is_index(image.media_type()) {
        let digest = rbuild_cache::descriptor_digest(image).map_err(read)?;
        store
            .read_index_blob(&digest)
            .map_err(read)?
            .manifests()
            .clone()
    } else {
        vec![image.clone()]
    };
    if images.len() != attested.len() {
        return Err(AttestError::Mismatch {
            digest: image.digest().to_string(),
            images: images.len(),
            attested: attested.len(),
        });
    }
    let mut manifests = images.clone();
    for (img, a) in images.iter().zip(attested) {
        manifests.push(attestation_manifest(store, format, img, a, names)?);
    }
    let mut desc = crate::image::write_index(store, format, &manifests).map_err(Box::new)?;
    if let Some(a) = image.annotations() {
        desc.set_annotations(Some(a.clone()));
    }
    Ok(desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_buildx_takes_them() {
        let mut a = Attest::default();
        a.set_provenance("").unwrap();
        assert_eq!(a.provenance, Some(ProvenanceOptions::default()));
        a.set_provenance("mode=max,version=v0.2").unwrap();
        assert_eq!(
            a.provenance,
            Some(ProvenanceOptions {
                mode: ProvenanceMode::Max,
                version: SlsaVersion::V02
            })
        );
        a.set_provenance("max").unwrap();
        assert_eq!(a.provenance.unwrap().mode, ProvenanceMode::Max);
        a.set_provenance("false").unwrap();
        assert_eq!(a.provenance, None);
        a.add("type=sbom").unwrap();
        assert!(a.sbom);
        a.add("type=sbom,disabled=true").unwrap();
        assert!(!a.sbom);
        a.add("type=provenance,mode=max").unwrap();
        assert_eq!(a.provenance.unwrap().mode, ProvenanceMode::Max);
        for wrong in ["type=vex", "mode=max", "type=provenance,mode=most"] {
            let e = a.add(wrong).unwrap_err().to_string();
            assert!(e.contains(wrong), "{e}");
        }
        assert!(a.set_sbom("generator=docker/scout").is_err());
        a.add("type=sbom,scan-stages=true").unwrap();
        assert!(a.sbom && a.scan_stages);
        a.set_sbom("scan-stages=false").unwrap();
        assert!(a.sbom && !a.scan_stages);
        assert!(a.set_sbom("scan-stages=sometimes").is_err());
    }

    #[test]
    fn image_names_become_buildkit_package_urls() {
        let amd64 = Platform::linux_amd64();
        assert_eq!(
            image_purl("busybox", Some(&amd64)).unwrap(),
            "pkg:docker/busybox@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            image_purl("localhost:5000/team/app:1", None).unwrap(),
            "pkg:docker/localhost:5000/team/app@1"
        );
        assert_eq!(
            redact_url("https://user:pw@example.com/a@b"),
            "https://example.com/a@b"
        );
    }

    #[test]
    fn scrubbing_reaches_every_string() {
        let mut doc = json!({"a": ["x hunter22 y", {"b": "hunter22"}], "c": 1});
        scrub(&mut doc, &["hunter22".to_string()]);
        assert_eq!(doc, json!({"a": ["x *** y", {"b": "***"}], "c": 1}));
    }
}
