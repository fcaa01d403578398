//! Sharing the action cache between machines: `--cache-to` exports the records of a build
//! (with the layer blobs they name) to a registry or a directory, `--cache-from` imports
//! them (format: `rbuild_cache::exchange`).
//!
//! An import reads only the manifest and the config (two requests against a registry): the
//! records go into an in-memory overlay ([`RemoteCache`]) that the solver's key phase
//! consults after the local cache. A hit from the overlay reuses the step's layer without
//! running it; the layer's blob is fetched (verified against the artifact's digest and, for
//! a gzip blob of an uncompressed layer, decompressed and verified against the diff_id)
//! only when something needs the file system: a step that runs on top of it, a
//! `COPY --from` or `RUN --mount=from=` reading it, or the final image, which the store
//! keeps complete. A record enters the local `cache-v1/` only once its layer is in the
//! store, so a partial or corrupt import never leaves a local record naming a missing blob.
//!
//! An export to a ref that already exists replaces it: the artifact describes one build
//! (`mode=min`: the steps of the final image; `mode=max`: every step), and a merge would be
//! a read-modify-write that concurrent exports could interleave into an artifact naming
//! records of neither. Blobs go up first, the manifest last (one atomic PUT), so concurrent
//! exports leave the last writer's complete artifact.
//!
//! Import failures (no such ref, not a cache, a config that does not decode) are warnings:
//! the build goes on with the local cache only.

use std::collections::HashMap;
use std::io::{self, Read, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use oci_spec::image::{Descriptor, MediaType};
use rbuild_cache::action::{ActionCache, CacheRecord, LayerRecord};
use rbuild_cache::exchange::{
    self, ARTIFACT_TYPE, BlobRef, CONFIG_MEDIA_TYPE, CacheConfig, ExportedLayer, ExportedRecord,
};
use rbuild_cache::{BlobWriter, Digest, Expected, Store};
use rbuild_compiler::plan::{InputRole, OpKind, Plan};
use rbuild_registry::{
    BlobSink, BlobSource, BlobTarget, Client, MemoryBlobs, PushImage, PushManifest, PushOptions,
    Reference,
};

use crate::BuildRequest;
use crate::events::Events;
use crate::names::NameError;
use crate::output::OutputError;
use crate::registry::RuntimeError;
use crate::solver::OpResult;
use rbuild_cache::action::ActionError;
use rbuild_cache::{DigestError, StoreError};
use rbuild_registry::error::RegistryError;

/// A `--cache-from` or `--cache-to` value that is not valid.
#[derive(Debug, thiserror::Error)]
pub enum CacheFlagError {
    /// The value is not one CSV record (a misplaced or unclosed quote).
    #[error("invalid {flag} {text:?}: {problem}")]
    Csv {
        /// The flag.
        flag: &'static str,
        /// Its value.
        text: String,
        /// Which field, and what is wrong with it.
        problem: rbuild_options::csv::CsvError,
    },
    /// A field is not `KEY=VALUE`.
    #[error("invalid {flag} {text:?}: {field:?} is not KEY=VALUE")]
    NotKeyValue {
        /// The flag.
        flag: &'static str,
        /// Its value.
        text: String,
        /// The field.
        field: String,
    },
    /// A boolean key has another value.
    #[error("invalid {flag} {key}={value:?}: expected true or false")]
    Bool {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A bare value is not an image reference.
    #[error("invalid {flag} {text:?}: not an image reference")]
    NotReference {
        /// The flag.
        flag: &'static str,
        /// Its value.
        text: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// `ref=` is not an image reference.
    #[error("invalid {flag} ref={reference:?}")]
    BadRef {
        /// The flag.
        flag: &'static str,
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// A key of BuildKit's importers that means nothing here.
    #[error("invalid {flag} {key}=: name the cache with ref= or src=")]
    Unused {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: String,
    },
    /// An unknown key.
    #[error("invalid {flag} key {key:?} (expected {expected})")]
    UnknownKey {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: String,
        /// The keys there are.
        expected: &'static str,
    },
    /// A key the type needs is missing.
    #[error("invalid {flag} {text:?}: type={kind} needs {key}={why}")]
    Missing {
        /// The flag.
        flag: &'static str,
        /// Its value.
        text: String,
        /// The type.
        kind: &'static str,
        /// The missing key.
        key: &'static str,
        /// What the key is for, if that needs saying.
        why: &'static str,
    },
    /// A key has a value it cannot take.
    #[error("invalid {flag} {key}={value:?} (expected {expected})")]
    Value {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// The values there are.
        expected: &'static str,
    },
    /// `oci-mediatypes=false` or `image-manifest=false`.
    #[error("invalid {flag} {key}={value}: rbuild writes only OCI image manifests")]
    NotOci {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A setting an inline cache cannot have.
    #[error("invalid {flag} type=inline,{setting}: {why}")]
    Inline {
        /// The flag.
        flag: &'static str,
        /// The setting (`mode=max`).
        setting: &'static str,
        /// Why not.
        why: &'static str,
    },
}

/// Why a `--cache-from` could not be imported, or an imported layer fetched.
#[derive(Debug, thiserror::Error)]
pub enum CacheImportError {
    /// The reference is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The async runtime did not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The directory holds no OCI layout.
    #[error("{} is not a cache directory (no index.json)", dir.display())]
    NotACacheDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory cannot be opened as a layout.
    #[error("cannot open cache directory {}", dir.display())]
    OpenDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The layout names no cache.
    #[error("cache directory {} names no {name}", dir.display())]
    NoRef {
        /// The directory.
        dir: PathBuf,
        /// The name looked for.
        name: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A store (the build's, or the cache directory) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache's manifest or config is not valid.
    #[error(transparent)]
    Exchange(#[from] exchange::ExchangeError),
    /// The action cache failed.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// The cache config does not have its digest.
    #[error("cache config {digest} does not match its digest")]
    ConfigMismatch {
        /// The digest.
        digest: Digest,
    },
    /// The reference names an image index.
    #[error("{reference} is an image index ({digest}), not an rbuild cache")]
    Index {
        /// The reference.
        reference: String,
        /// The index's digest.
        digest: String,
    },
    /// The manifest of an image holding an inline cache is not valid.
    #[error("the manifest of {reference} is not valid")]
    Manifest {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The image config of an inline cache is too large.
    #[error("image config {digest} of {reference} is too large")]
    ConfigTooLarge {
        /// The reference.
        reference: String,
        /// The config's digest.
        digest: Digest,
    },
    /// The cache config was not fetched.
    #[error("cache config {digest} was not fetched")]
    NotFetched {
        /// The config's digest.
        digest: Digest,
    },
    /// No runtime for a registry fetch.
    #[error("internal error: no runtime for {reference}")]
    NoRuntime {
        /// The reference.
        reference: String,
    },
    /// A fetched layer is not in the store.
    #[error("layer {digest} is not in the store after fetching it")]
    NotStored {
        /// The layer.
        digest: Digest,
    },
    /// A blob of a cache directory cannot be read.
    #[error("cannot read blob {digest}")]
    ReadBlob {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A fetched blob cannot be stored.
    #[error("cannot store blob {digest}")]
    StoreBlob {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A blob of a cache directory does not have its digest.
    #[error("blob {digest} does not match its digest (got {actual})")]
    BlobMismatch {
        /// The blob.
        digest: Digest,
        /// The digest of its bytes.
        actual: Digest,
    },
    /// An imported layer could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchFailed),
}

/// Why a `--cache-to` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CacheExportError {
    /// The export to `target` failed.
    #[error("cannot export the cache to {target}")]
    Export {
        /// The registry reference or directory.
        target: String,
        /// Why.
        #[source]
        source: Box<CacheExportError>,
    },
    /// The reference is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The action cache failed.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// An imported layer the export holds could not be fetched.
    #[error(transparent)]
    Import(#[from] CacheImportError),
    /// A layer could not be converted.
    #[error(transparent)]
    Convert(Box<OutputError>),
    /// A document could not be read or written as JSON.
    #[error("{what} is not valid JSON")]
    Json {
        /// The document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The async runtime did not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The directory cannot be opened as a layout.
    #[error("cannot open cache directory {}", dir.display())]
    OpenDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image's manifest names no config.
    #[error("image {manifest} has no config digest")]
    NoConfigDigest {
        /// The manifest.
        manifest: Digest,
        /// Why.
        #[source]
        source: DigestError,
    },
    /// The image's config is not a JSON object.
    #[error("image config {digest} is not an object")]
    ConfigNotObject {
        /// The config.
        digest: Digest,
    },
}

impl From<OutputError> for CacheExportError {
    fn from(e: OutputError) -> Self {
        CacheExportError::Convert(Box::new(e))
    }
}

fn json_error(what: impl std::fmt::Display) -> impl FnOnce(serde_json::Error) -> CacheExportError {
    let what = what.to_string();
    move |source| CacheExportError::Json { what, source }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Imported layers fetched at once.
const FETCH_JOBS: usize = 4;
/// The name a cache export has in a `type=local` directory (an OCI image layout).
const LOCAL_REF: &str = "latest";

/// Which steps an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the final image's chain.
    Min,
    /// Every step of every stage the build ran or took from the cache.
    Max,
}

/// How an export stores uncompressed layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheCompression {
    /// gzip variants (what registries and other tools expect).
    Gzip,
    /// The store's blobs as they are.
    Uncompressed,
}

/// Where a `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImport {
    /// `type=registry,ref=REF` (or just `REF`).
    Registry {
        /// The reference, as given.
        reference: String,
    },
    /// `type=local,src=DIR`.
    Local {
        /// The directory (an OCI image layout).
        src: PathBuf,
    },
}

/// Where a `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// The destination.
    pub target: ExportTarget,
    /// `mode=`.
    pub mode: CacheMode,
    /// `compression=`.
    pub compression: CacheCompression,
    /// `ignore-error=true`: a failed export is a warning.
    pub ignore_error: bool,
}

/// The destination of a `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// `type=registry,ref=REF`.
    Registry(String),
    /// `type=local,dest=DIR`.
    Local(PathBuf),
    /// `type=inline,ref=REF`: the image is pushed to REF with the records of its steps in
    /// its config.
    Inline(String),
}

/// Splits `key=value,key=value`: one CSV record, as buildx reads it (a field in double
/// quotes may hold commas: `"dest=/a,b"`).
fn csv_pairs(flag: &'static str, text: &str) -> Result<Vec<(String, String)>, CacheFlagError> {
    rbuild_options::csv::pairs(text)
        .map_err(|problem| CacheFlagError::Csv {
            flag,
            text: text.to_string(),
            problem,
        })?
        .into_iter()
        .map(|(k, v)| {
            let v = v.ok_or_else(|| CacheFlagError::NotKeyValue {
                flag,
                text: text.to_string(),
                field: k.clone(),
            })?;
            Ok((k, v.trim().to_string()))
        })
        .collect()
}

fn bool_value(flag: &'static str, key: &str, v: &str) -> Result<bool, CacheFlagError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(CacheFlagError::Bool {
            flag,
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Checks that `ref=` of `flag` is an image reference.
fn check_ref(flag: &'static str, reference: &str) -> Result<(), CacheFlagError> {
    crate::names::parse_reference(reference).map_err(|source| CacheFlagError::BadRef {
        flag,
        reference: reference.to_string(),
        source,
    })?;
    Ok(())
}

/// The error for a `type=KIND` without `key=`.
fn missing(
    flag: &'static str,
    text: &str,
    kind: &'static str,
    key: &'static str,
) -> CacheFlagError {
    CacheFlagError::Missing {
        flag,
        text: text.to_string(),
        kind,
        key,
        why: "",
    }
}

/// Parses one `--cache-from`: `REF`, `type=registry,ref=REF` or `type=local,src=DIR`.
pub fn parse_cache_from(text: &str) -> Result<CacheImport, CacheFlagError> {
    const FLAG: &str = "--cache-from";
    if !text.contains('=') {
        crate::names::parse_reference(text).map_err(|source| CacheFlagError::NotReference {
            flag: FLAG,
            text: text.to_string(),
            source,
        })?;
        return Ok(CacheImport::Registry {
            reference: text.to_string(),
        });
    }
    let pairs = csv_pairs(FLAG, text)?;
    let mut kind = "registry".to_string();
    let mut reference = None;
    let mut src = None;
    for (k, v) in pairs {
        match k.as_str() {
            "type" => kind = v,
            "ref" => reference = Some(v),
            "src" => src = Some(PathBuf::from(v)),
            // Options BuildKit's importers take that change nothing here.
            "digest" | "tag" => return Err(CacheFlagError::Unused { flag: FLAG, key: k }),
            _ => {
                return Err(CacheFlagError::UnknownKey {
                    flag: FLAG,
                    key: k,
                    expected: "type, ref or src",
                });
            }
        }
    }
    match kind.as_str() {
        "registry" => {
            let reference = reference.ok_or_else(|| missing(FLAG, text, "registry", "ref"))?;
            check_ref(FLAG, &reference)?;
            Ok(CacheImport::Registry { reference })
        }
        "local" => Ok(CacheImport::Local {
            src: src.ok_or_else(|| missing(FLAG, text, "local", "src"))?,
        }),
        other => Err(CacheFlagError::Value {
            flag: FLAG,
            key: "type",
            value: other.to_string(),
            expected: "registry or local",
        }),
    }
}

/// Parses one `--cache-to`: `type=registry,ref=REF[,mode=min|max][,compression=gzip|
/// uncompressed][,ignore-error=true]` or `type=local,dest=DIR[,...]`.
pub fn parse_cache_to(text: &str) -> Result<CacheExport, CacheFlagError> {
    const FLAG: &str = "--cache-to";
    let pairs = if text.contains('=') {
        csv_pairs(FLAG, text)?
    } else {
        vec![("ref".to_string(), text.to_string())]
    };
    let mut kind = "registry".to_string();
    let (mut reference, mut dest) = (None, None);
    let mut out = CacheExport {
        target: ExportTarget::Local(PathBuf::new()),
        mode: CacheMode::Min,
        compression: CacheCompression::Gzip,
        ignore_error: false,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "type" => kind = v,
            "ref" => reference = Some(v),
            "dest" => dest = Some(PathBuf::from(v)),
            "mode" => {
                out.mode = match v.as_str() {
                    "min" => CacheMode::Min,
                    "max" => CacheMode::Max,
                    _ => {
                        return Err(CacheFlagError::Value {
                            flag: FLAG,
                            key: "mode",
                            value: v,
                            expected: "min or max",
                        });
                    }
                }
            }
            "compression" => {
                out.compression = match v.as_str() {
                    "gzip" => CacheCompression::Gzip,
                    "uncompressed" => CacheCompression::Uncompressed,
                    _ => {
                        return Err(CacheFlagError::Value {
                            flag: FLAG,
                            key: "compression",
                            value: v,
                            expected: "gzip or uncompressed",
                        });
                    }
                }
            }
            "ignore-error" => out.ignore_error = bool_value(FLAG, &k, &v)?,
            // rbuild always writes OCI media types in an image manifest.
            "oci-mediatypes" | "image-manifest" => {
                if !bool_value(FLAG, &k, &v)? {
                    return Err(CacheFlagError::NotOci {
                        flag: FLAG,
                        key: k,
                        value: v,
                    });
                }
            }
            _ => {
                return Err(CacheFlagError::UnknownKey {
                    flag: FLAG,
                    key: k,
                    expected: "type, ref, dest, mode, compression or ignore-error",
                });
            }
        }
    }
    out.target = match kind.as_str() {
        "registry" => {
            let reference = reference.ok_or_else(|| missing(FLAG, text, "registry", "ref"))?;
            check_ref(FLAG, &reference)?;
            ExportTarget::Registry(reference)
        }
        "local" => ExportTarget::Local(dest.ok_or_else(|| missing(FLAG, text, "local", "dest"))?),
        "inline" => {
            let reference = reference.ok_or_else(|| CacheFlagError::Missing {
                flag: FLAG,
                text: text.to_string(),
                kind: "inline",
                key: "ref",
                why: " (where the image is pushed)",
            })?;
            check_ref(FLAG, &reference)?;
            if out.compression == CacheCompression::Uncompressed {
                return Err(CacheFlagError::Inline {
                    flag: FLAG,
                    setting: "compression=uncompressed",
                    why: "pushed images have gzip layers",
                });
            }
            if out.mode == CacheMode::Max {
                return Err(CacheFlagError::Inline {
                    flag: FLAG,
                    setting: "mode=max",
                    why: "an image carries only its own steps (mode=min)",
                });
            }
            ExportTarget::Inline(reference)
        }
        other => {
            return Err(CacheFlagError::Value {
                flag: FLAG,
                key: "type",
                value: other.to_string(),
                expected: "registry, local or inline",
            });
        }
    };
    Ok(out)
}

/// Where imported records' blobs come from.
enum Source {
    Registry {
        client: Client,
        reference: Reference,
    },
    Local {
        store: Store,
        dir: PathBuf,
    },
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Registry { reference, .. } => reference.to_string(),
            Source::Local { dir, .. } => dir.display().to_string(),
        }
    }
}

/// An imported layer could not be fetched (gone from the registry, corrupt): the build is
/// solved again without the records naming it.
#[derive(Debug, thiserror::Error)]
#[error("cannot fetch cached layer {blob} from {source_name}")]
pub struct FetchFailed {
    /// The blob of the artifact.
    pub blob: Digest,
    /// Where it was fetched from.
    pub source_name: String,
    /// The cause.
    #[source]
    pub source: Box<CacheImportError>,
}

/// Imported records, consulted after the local action cache, and the blobs they name.
pub struct RemoteCache {
    records: HashMap<Digest, (usize, ExportedRecord)>,
    /// Local layer digest -> (source, layer) for fetching.
    layers: HashMap<Digest, (usize, ExportedLayer)>,
    sources: Vec<Source>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Local layer digest -> the keys of the records naming it.
    by_layer: HashMap<Digest, Vec<Digest>>,
    /// A lock per layer being fetched, so two steps needing a layer fetch it once.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// Local layer digests whose fetch failed: records naming them are no longer offered.
    bad: Mutex<std::collections::HashSet<Digest>>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("records", &self.records.len())
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl RemoteCache {
    /// Imports the records of every `--cache-from`; each failure is a warning.
    pub fn import(settings: &BuildRequest, progress: &dyn Events) -> RemoteCache {
        let mut cache = RemoteCache {
            records: HashMap::new(),
            layers: HashMap::new(),
            sources: Vec::new(),
            runtime: None,
            by_layer: HashMap::new(),
            fetching: Mutex::default(),
            bad: Mutex::default(),
        };
        for spec in &settings.cache_from {
            let started = Instant::now();
            let what = match spec {
                CacheImport::Registry { reference } => reference.clone(),
                CacheImport::Local { src } => src.display().to_string(),
            };
            match cache.import_one(settings, spec) {
                Ok((n, dropped, too_large)) => {
                    tracing::info!(
                        "imported {n} cache records from {what} in {:.2?}",
                        started.elapsed()
                    );
                    if dropped > 0 {
                        progress.warn(
                            "cache-import",
                            &format!(
                                "cache import {what}: {dropped} records were unsound and ignored"
                            ),
                        );
                    }
                    if too_large > 0 {
                        progress.warn(
                            "cache-import",
                            &format!(
                                "cache import {what}: {too_large} records name layers larger \
                                 than {} bytes ({}) and were ignored",
                                settings.limits.max_layer_bytes, "RBUILD_MAX_LAYER_SIZE"
                            ),
                        );
                    }
                }
                Err(e) => {
                    progress.warn(
                        "cache-import",
                        &format!(
                            "cache import {what} failed, building without it: {}",
                            crate::error::chain_text(&e)
                        ),
                    );
                }
            }
        }
        cache
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, RuntimeError> {
        if self.runtime.is_none() {
            self.runtime = Some(crate::registry::runtime()?);
        }
        Ok(self.runtime.as_ref().expect("just set"))
    }

    /// Imports one `--cache-from`: (records, unsound records dropped, records dropped for
    /// naming a layer past the layer size limit, which a fetch would write whole).
    fn import_one(
        &mut self,
        settings: &BuildRequest,
        spec: &CacheImport,
    ) -> Result<(usize, usize, usize), CacheImportError> {
        let (source, manifest, config) = match spec {
            CacheImport::Registry { reference } => {
                let reference = crate::names::parse_reference(reference)?;
                let client = Client::new(settings.registry.client_options(None));
                let (manifest, config) = {
                    let client = client.clone();
                    let reference = reference.clone();
                    self.runtime()?
                        .block_on(async move { fetch_documents(&client, &reference).await })?
                };
                (Source::Registry { client, reference }, manifest, config)
            }
            CacheImport::Local { src } => {
                if !src.join("index.json").is_file() {
                    return Err(CacheImportError::NotACacheDir { dir: src.clone() });
                }
                let store = Store::open(src).map_err(|source| CacheImportError::OpenDir {
                    dir: src.clone(),
                    source,
                })?;
                let desc = store
                    .resolve(LOCAL_REF)
                    .map_err(|source| CacheImportError::NoRef {
                        dir: src.clone(),
                        name: LOCAL_REF,
                        source,
                    })?;
                let digest = rbuild_cache::descriptor_digest(&desc)?;
                let manifest = store.read_blob(&digest)?;
                let config_ref = CacheConfig::config_of(&manifest)?;
                let config_digest = config_ref.digest;
                let config = store.read_blob(&config_digest)?;
                if Digest::of(&config) != config_digest {
                    return Err(CacheImportError::ConfigMismatch {
                        digest: config_digest,
                    });
                }
                (
                    Source::Local {
                        store,
                        dir: src.clone(),
                    },
                    manifest,
                    config,
                )
            }
        };
        let (parsed, dropped) = CacheConfig::parse(&manifest, &config)?;
        let index = self.sources.len();
        self.sources.push(source);
        let mut n = 0;
        let mut too_large = 0;
        for (key, record) in parsed.records {
            let Ok(key) = key.parse::<Digest>() else {
                continue;
            };
            if record
                .layer
                .as_ref()
                .is_some_and(|l| l.local.size > settings.limits.max_layer_bytes)
            {
                too_large += 1;
                continue;
            }
            n += 1;
            if let Some(layer) = &record.layer {
                self.layers
                    .entry(layer.local.digest)
                    .or_insert_with(|| (index, layer.clone()));
            }
            // The first --cache-from that has a key wins.
            if let std::collections::hash_map::Entry::Vacant(v) = self.records.entry(key) {
                if let Some(layer) = &record.layer {
                    self.by_layer
                        .entry(layer.local.digest)
                        .or_default()
                        .push(key);
                }
                v.insert((index, record));
            }
        }
        Ok((n, dropped, too_large))
    }

    /// The imported record for `key`.
    pub fn get(&self, key: &Digest) -> Option<CacheRecord> {
        let (_, record) = self.records.get(key)?;
        if let Some(l) = &record.layer
            && self
                .bad
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&l.local.digest)
        {
            return None;
        }
        Some(record.to_record())
    }

    /// The registry repository and artifact blob an imported layer (by local digest) can
    /// be read from, when it came from a registry.
    fn registry_blob(&self, local_digest: &Digest) -> Option<(&Reference, BlobRef)> {
        let (source, layer) = self.layers.get(local_digest)?;
        match &self.sources[*source] {
            Source::Registry { reference, .. } => Some((reference, layer.blob.clone())),
            Source::Local { .. } => None,
        }
    }

    /// Records (as `rbuild pull` does) that the image `image` came from the first registry
    /// cache whose layers it uses, so `rbuild push` to another repository of that registry
    /// mounts those blobs from the cache instead of uploading them.
    pub fn note_push_source(&self, store: &Store, image: &Descriptor) {
        let Ok((manifest_desc, manifest)) = store.image_manifest(image) else {
            return;
        };
        let used = |index: usize| {
            self.layers.values().any(|(i, l)| {
                *i == index
                    && manifest
                        .layers()
                        .iter()
                        .any(|m| m.digest().as_ref() == l.local.digest.to_string())
            })
        };
        let found = self.sources.iter().enumerate().find_map(|(i, s)| match s {
            Source::Registry { reference, .. } if used(i) => Some(reference),
            _ => None,
        });
        if let (Some(reference), Ok(digest)) =
            (found, rbuild_cache::descriptor_digest(&manifest_desc))
            && let Err(e) = store.record_source(&digest, &reference.name())
        {
            tracing::debug!(
                "cannot record where {digest} came from: {}",
                crate::error::chain_text(&e)
            );
        }
    }

    /// Writes the imported record of `key` into the local cache when everything it names is
    /// in the store (a record without a layer, or whose layer was fetched).
    pub fn adopt(&self, store: &Store, cache: &ActionCache, key: &Digest) {
        let Some((_, record)) = self.records.get(key) else {
            return;
        };
        let present = record
            .layer
            .as_ref()
            .is_none_or(|l| store.has_blob(&l.local.digest));
        if present && let Err(e) = cache.put(key, &record.to_record()) {
            tracing::debug!("cannot record imported {key}: {e}");
        }
    }

    /// Fetches every layer of `layers` the store lacks and an import names, then records the
    /// imported records naming them in the local cache. Layers neither local nor imported
    /// are left to the caller (it fails on them as it would without an import).
    pub fn ensure_local(
        &self,
        store: &Store,
        cache: &ActionCache,
        layers: &[LayerRecord],
    ) -> Result<(), CacheImportError> {
        let mut missing: Vec<&LayerRecord> = Vec::new();
        for layer in layers {
            let local = store.has_blob(&layer.digest);
            if !local
                && self.layers.contains_key(&layer.digest)
                && !missing.iter().any(|m| m.digest == layer.digest)
            {
                missing.push(layer);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // A few at a time: each blob's commit waits for an fsync, so small layers are
        // bound by latency, not bandwidth.
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<CacheImportError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..missing.len().min(FETCH_JOBS) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(layer) = missing.get(i) else {
                            break;
                        };
                        if let Err(e) = self.fetch_one(store, cache, layer) {
                            failure
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                            break;
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fetch_one(
        &self,
        store: &Store,
        cache: &ActionCache,
        layer: &LayerRecord,
    ) -> Result<(), CacheImportError> {
        let digest = layer.digest;
        let Some((source, exported)) = self.layers.get(&layer.digest) else {
            return Ok(());
        };
        // One fetch per layer, even when two steps need it at once.
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest)
            .or_default()
            .clone();
        let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
        if store.has_blob(&digest) {
            return Ok(());
        }
        let started = Instant::now();
        let source = &self.sources[*source];
        if let Err(e) = self.fetch(store, source, exported) {
            self.bad
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(digest);
            return Err(FetchFailed {
                blob: exported.blob.digest,
                source_name: source.name(),
                source: Box::new(e),
            }
            .into());
        }
        tracing::info!(
            "fetched cached layer {} ({} bytes) from {} in {:.2?}",
            exported.blob.digest,
            exported.blob.size,
            source.name(),
            started.elapsed()
        );
        for key in self.by_layer.get(&layer.digest).into_iter().flatten() {
            self.adopt(store, cache, key);
        }
        Ok(())
    }

    fn fetch(
        &self,
        store: &Store,
        source: &Source,
        layer: &ExportedLayer,
    ) -> Result<(), CacheImportError> {
        let local_digest = layer.local.digest;
        let sink: Box<dyn BlobSink> = if layer.blob.digest != local_digest {
            Box::new(GunzipSink::new(
                store.clone(),
                Expected {
                    digest: local_digest,
                    size: Some(layer.local.size),
                },
            )?)
        } else {
            rbuild_registry::BlobTarget::sink(
                &crate::transfer::StoreBlobs::new(store.clone()),
                &blob_descriptor(&layer.blob),
            )
            .map_err(|source| CacheImportError::StoreBlob {
                digest: layer.blob.digest,
                source,
            })?
        };
        match source {
            Source::Registry { client, reference } => {
                let desc = blob_descriptor(&layer.blob);
                let runtime = self
                    .runtime
                    .as_ref()
                    .ok_or_else(|| CacheImportError::NoRuntime {
                        reference: reference.to_string(),
                    })?;
                runtime.block_on(client.fetch_blob(reference, &desc, sink))?;
            }
            Source::Local { store: src, .. } => {
                let blob = layer.blob.digest;
                let mut file = src.open_blob(&blob)?;
                copy_verified(&mut file, &blob, sink)?;
            }
        }
        if !store.has_blob(&local_digest) {
            return Err(CacheImportError::NotStored {
                digest: local_digest,
            });
        }
        Ok(())
    }
}

/// Streams `reader` into `sink`, committing only when the bytes hash to `digest`.
fn copy_verified(
    reader: &mut impl Read,
    digest: &Digest,
    mut sink: Box<dyn BlobSink>,
) -> Result<(), CacheImportError> {
    let mut hasher = rbuild_cache::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                sink.abort();
                return Err(CacheImportError::ReadBlob {
                    digest: *digest,
                    source: e,
                });
            }
        };
        hasher.update(&buf[..n]);
        if let Err(e) = sink.write(&buf[..n]) {
            sink.abort();
            return Err(CacheImportError::StoreBlob {
                digest: *digest,
                source: e,
            });
        }
    }
    let actual = hasher.finish();
    if actual != *digest {
        sink.abort();
        return Err(CacheImportError::BlobMismatch {
            digest: *digest,
            actual,
        });
    }
    sink.commit(&rbuild_registry::Digest::from(*digest))
        .map_err(|source| CacheImportError::StoreBlob {
            digest: *digest,
            source,
        })?;
    Ok(())
}

fn blob_descriptor(blob: &BlobRef) -> Descriptor {
    Descriptor::new(
        MediaType::Other(blob.media_type.clone()),
        blob.size,
        rbuild_registry::Digest::from(blob.digest),
    )
}

/// The manifest and config of a registry cache export.
async fn fetch_documents(
    client: &Client,
    reference: &Reference,
) -> Result<(Vec<u8>, Vec<u8>), CacheImportError> {
    let manifest = client.fetch_manifest(reference).await?;
    if manifest.is_index() {
        return Err(CacheImportError::Index {
            reference: reference.to_string(),
            digest: manifest.digest.to_string(),
        });
    }
    let (config, inline) = match CacheConfig::config_of(&manifest.bytes) {
        Ok(c) => (c, false),
        // An image: its config may hold inline records.
        Err(exchange::ExchangeError::NotACache { media_type, .. })
            if exchange::is_image_config(&media_type) =>
        {
            let bad = |source| CacheImportError::Manifest {
                reference: reference.to_string(),
                source,
            };
            let v: serde_json::Value = serde_json::from_slice(&manifest.bytes).map_err(bad)?;
            let config: BlobRef = serde_json::from_value(v["config"].clone()).map_err(bad)?;
            if config.size > exchange::MAX_CONFIG_SIZE {
                return Err(CacheImportError::ConfigTooLarge {
                    reference: reference.to_string(),
                    digest: config.digest,
                });
            }
            (config, true)
        }
        Err(e) => return Err(e.into()),
    };
    let desc = blob_descriptor(&config);
    let blobs = MemoryBlobs::new();
    let sink = blobs
        .sink(&desc)
        .map_err(|source| CacheImportError::StoreBlob {
            digest: config.digest,
            source,
        })?;
    client.fetch_blob(reference, &desc, sink).await?;
    let bytes = blobs
        .get(desc.digest())
        .ok_or_else(|| CacheImportError::NotFetched {
            digest: config.digest,
        })?;
    let bytes = if inline {
        exchange::inline_of(&bytes)?
    } else {
        bytes.to_vec()
    };
    Ok((manifest.bytes, bytes))
}

/// A sink that decompresses a gzip layer into a store writer: the client verifies the
/// compressed digest before `commit`, the writer the uncompressed one (the diff_id) in it.
struct GunzipSink {
    store: Store,
    expected: Expected,
    decoder: Option<flate2::write::MultiGzDecoder<BlobWriter>>,
}

impl GunzipSink {
    fn new(store: Store, expected: Expected) -> Result<GunzipSink, StoreError> {
        let writer = store.blob_writer(Some(expected))?;
        Ok(GunzipSink {
            store,
            expected,
            decoder: Some(flate2::write::MultiGzDecoder::new(writer)),
        })
    }
}

impl BlobSink for GunzipSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.decoder {
            Some(d) => d.write_all(buf),
            None => Err(io::Error::other("sink already finished")),
        }
    }

    fn reset(&mut self) -> io::Result<()> {
        self.decoder = None;
        let writer = self
            .store
            .blob_writer(Some(self.expected))
            .map_err(io::Error::other)?;
        self.decoder = Some(flate2::write::MultiGzDecoder::new(writer));
        Ok(())
    }

    fn commit(mut self: Box<Self>, _digest: &rbuild_registry::Digest) -> io::Result<()> {
        let decoder = self
            .decoder
            .take()
            .ok_or_else(|| io::Error::other("sink already finished"))?;
        let writer = decoder.finish()?;
        writer.commit().map_err(io::Error::other)?;
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}

/// The layers the output needs fetched: the final stage's, so the image in the store is
/// complete.
pub fn ensure_output(
    settings: &BuildRequest,
    plan: &Plan,
    results: &[Option<OpResult>],
    remote: &RemoteCache,
) -> Result<(), CacheImportError> {
    let Some(result) = plan.target_stage().result else {
        return Ok(());
    };
    let Some(state) = results[result].as_ref() else {
        return Ok(());
    };
    let cache = ActionCache::open(settings.store.root())?;
    remote.ensure_local(&settings.store, &cache, &state.layers)
}

/// The steps an export of `mode` holds, as (record key, record).
fn exported_steps(
    plan: &Plan,
    results: &[Option<OpResult>],
    mode: CacheMode,
) -> Vec<(Digest, CacheRecord)> {
    let is_step = |i: usize| {
        matches!(
            plan.ops[i].kind,
            OpKind::Exec(_) | OpKind::Copy(_) | OpKind::Mkdir { .. }
        )
    };
    let ops: Vec<usize> = match mode {
        CacheMode::Max => (0..plan.ops.len()).filter(|&i| is_step(i)).collect(),
        CacheMode::Min => {
            let mut chain = Vec::new();
            let mut cur = plan.target_stage().result;
            while let Some(i) = cur {
                if is_step(i) {
                    chain.push(i);
                }
                cur = plan.ops[i]
                    .inputs
                    .iter()
                    .find(|x| x.role == InputRole::Parent)
                    .map(|x| x.op);
            }
            chain.reverse();
            chain
        }
    };
    ops.into_iter()
        .filter_map(|i| {
            let r = results[i].as_ref()?;
            let record = CacheRecord {
                schema: rbuild_cache::action::SCHEMA,
                layer: if r.added {
                    r.layers.last().cloned()
                } else {
                    None
                },
                created: r.created,
                description: plan.ops[i].description.clone(),
            };
            Some((r.record_key, record))
        })
        .collect()
}

/// The blobs of an export: the config from memory, the layers from the store.
struct ExportBlobs {
    config: MemoryBlobs,
    store: crate::transfer::StoreBlobs,
}

impl BlobSource for ExportBlobs {
    fn open(
        &self,
        digest: &rbuild_registry::Digest,
        offset: u64,
    ) -> io::Result<Box<dyn Read + Send>> {
        if self.config.get(digest).is_some() {
            return self.config.open(digest, offset);
        }
        self.store.open(digest, offset)
    }
}

/// Runs every `--cache-to` of the build; `image` is the built image's manifest.
pub fn export(
    settings: &BuildRequest,
    solved: &[(&Plan, &[Option<OpResult>])],
    remote: Option<&RemoteCache>,
    image: &Descriptor,
    progress: &dyn Events,
) -> Result<(), CacheExportError> {
    for spec in &settings.cache_to {
        let started = Instant::now();
        let what = match &spec.target {
            ExportTarget::Registry(r) => r.clone(),
            ExportTarget::Local(d) => d.display().to_string(),
            ExportTarget::Inline(r) => r.clone(),
        };
        match export_one(settings, solved, remote, spec, image) {
            Ok(n) => tracing::info!(
                "exported {n} cache records to {what} in {:.2?}",
                started.elapsed()
            ),
            Err(e) if spec.ignore_error => progress.warn(
                "cache-export",
                &format!(
                    "cache export to {what} failed: {}",
                    crate::error::chain_text(&e)
                ),
            ),
            Err(e) => {
                return Err(CacheExportError::Export {
                    target: what,
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(())
}

fn export_one(
    settings: &BuildRequest,
    solved: &[(&Plan, &[Option<OpResult>])],
    remote: Option<&RemoteCache>,
    spec: &CacheExport,
    image: &Descriptor,
) -> Result<usize, CacheExportError> {
    let store = &settings.store;
    // Every platform's records; a step two platforms share is one record.
    let mut steps: Vec<(Digest, CacheRecord)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (plan, results) in solved {
        for (key, record) in exported_steps(plan, results, spec.mode) {
            if seen.insert(key) {
                steps.push((key, record));
            }
        }
    }
    // Layers imported from a repository of the destination's registry and never fetched
    // are exported as the blob they are there (mounted, or already present): a
    // `--cache-from X --cache-to X,mode=max` build downloads no layer just to re-export it.
    let dest_registry = match &spec.target {
        ExportTarget::Registry(r) => Some(crate::names::parse_reference(r)?),
        _ => None,
    };
    let mut reused: HashMap<Digest, BlobRef> = HashMap::new();
    let mut mount_from = None;
    if let Some(remote) = remote {
        let cache = ActionCache::open(store.root())?;
        let mut fetch = Vec::new();
        for l in steps.iter().filter_map(|(_, r)| r.layer.as_ref()) {
            let local = store.has_blob(&l.digest);
            match (local, &dest_registry, remote.registry_blob(&l.digest)) {
                (false, Some(dest), Some((from, blob))) if from.registry() == dest.registry() => {
                    if from.repository() != dest.repository() {
                        mount_from.get_or_insert_with(|| from.repository().to_string());
                    }
                    reused.insert(l.digest, blob);
                }
                _ => fetch.push(l.clone()),
            }
        }
        remote.ensure_local(store, &cache, &fetch)?;
    }
    let mut config = CacheConfig::new();
    let mut blobs: Vec<BlobRef> = Vec::new();
    for (key, record) in &steps {
        let layer = match &record.layer {
            None => None,
            Some(l) => {
                let digest = l.digest;
                let uncompressed = rbuild_compress::Compression::from_media_type(&l.media_type)
                    == Some(rbuild_compress::Compression::None);
                let blob = match (spec.compression, uncompressed) {
                    _ if reused.contains_key(&l.digest) => reused[&l.digest].clone(),
                    (CacheCompression::Gzip, true) => {
                        let v = super::output::convert_layer(
                            store,
                            &digest,
                            &l.media_type,
                            &super::output::LayerCompression::default(),
                        )?;
                        BlobRef {
                            digest: v.digest,
                            size: v.size,
                            media_type: v.media_type,
                        }
                    }
                    _ => BlobRef {
                        digest: l.digest,
                        size: l.size,
                        media_type: l.media_type.clone(),
                    },
                };
                if !blobs.contains(&blob) {
                    blobs.push(blob.clone());
                }
                Some(ExportedLayer {
                    local: l.clone(),
                    blob,
                })
            }
        };
        config.records.insert(
            key.to_string(),
            ExportedRecord {
                layer,
                created: record.created,
                description: record.description.clone(),
            },
        );
    }
    let config_bytes = config.to_bytes();
    let config_digest = Digest::of(&config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": blobs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(json_error("the cache manifest"))?;
    match &spec.target {
        ExportTarget::Inline(reference) => {
            push_inline(settings, image, reference, &config_bytes)?;
        }
        ExportTarget::Registry(reference) => {
            let dest = crate::names::parse_reference(reference)?;
            let image = PushImage::single(PushManifest::from_bytes(OCI_MANIFEST, manifest_bytes)?);
            let memory = MemoryBlobs::new();
            memory.insert(&rbuild_registry::Digest::from(config_digest), config_bytes);
            let source = ExportBlobs {
                config: memory,
                store: crate::transfer::StoreBlobs::new(store.clone()),
            };
            let client = Client::new(settings.registry.client_options(None));
            let result = crate::registry::runtime()?.block_on(async {
                client
                    .push(
                        &dest,
                        &image,
                        &source,
                        &PushOptions {
                            mount_from,
                            ..Default::default()
                        },
                    )
                    .await
            })?;
            tracing::debug!(
                "cache export {dest}: {} blobs uploaded, {} already there",
                result.uploaded.len(),
                result.existing.len()
            );
        }
        ExportTarget::Local(dir) => {
            let out = Store::open(dir).map_err(|source| CacheExportError::OpenDir {
                dir: dir.clone(),
                source,
            })?;
            for blob in &blobs {
                let digest = blob.digest;
                if !out.has_blob(&digest) {
                    let mut file = store.open_blob(&digest)?;
                    out.copy_blob(&mut file, Some(Expected::digest(digest)))?;
                }
            }
            out.put_document(MediaType::Other(CONFIG_MEDIA_TYPE.into()), &config_bytes)?;
            let desc = out.put_document(MediaType::Other(OCI_MANIFEST.into()), &manifest_bytes)?;
            let mut tagged = desc;
            tagged.set_media_type(MediaType::ImageManifest);
            tagged.set_artifact_type(Some(MediaType::Other(ARTIFACT_TYPE.into())));
            out.tag(LOCAL_REF, &tagged)?;
        }
    }
    Ok(steps.len())
}

/// Pushes the built image to `reference` with `records` (a [`CacheConfig`]) in its config's
/// [`exchange::INLINE_FIELD`], layers gzipped as `rbuild push` does. The pushed config (so
/// the pushed digest) differs from the store's image by that field only.
fn push_inline(
    settings: &BuildRequest,
    image: &Descriptor,
    reference: &str,
    records: &[u8],
) -> Result<(), CacheExportError> {
    let store = &settings.store;
    let dest = crate::names::parse_reference(reference)?;
    let (manifest_desc, _) = store.image_manifest(image)?;
    let manifest_digest = rbuild_cache::descriptor_digest(&manifest_desc)?;
    let bytes = store.read_blob(&manifest_digest)?;
    let bytes =
        super::output::convert_layers(store, &bytes, &super::output::LayerCompression::default())?
            .unwrap_or(bytes);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(json_error(format!("image {manifest_digest}")))?;
    let config_digest: Digest = manifest["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|source| CacheExportError::NoConfigDigest {
            manifest: manifest_digest,
            source,
        })?;
    let config_type = manifest["config"]["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.config.v1+json")
        .to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&config_digest)?)
            .map_err(json_error(format!("image config {config_digest}")))?;
    let records: serde_json::Value =
        serde_json::from_slice(records).map_err(json_error("the cache config"))?;
    config
        .as_object_mut()
        .ok_or(CacheExportError::ConfigNotObject {
            digest: config_digest,
        })?
        .insert(exchange::INLINE_FIELD.to_string(), records);
    let config_bytes =
        serde_json::to_vec(&config).map_err(json_error(format!("image config {config_digest}")))?;
    let config_desc = store.put_document(MediaType::Other(config_type), &config_bytes)?;
    manifest["config"]["digest"] = serde_json::json!(config_desc.digest().to_string());
    manifest["config"]["size"] = serde_json::json!(config_desc.size());
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(json_error(format!("image {manifest_digest}")))?;
    let push = PushImage::single(PushManifest::from_bytes(&media_type, manifest_bytes)?);
    let client = Client::new(settings.registry.client_options(None));
    let source = crate::transfer::StoreBlobs::new(store.clone());
    let result = crate::registry::runtime()?.block_on(async {
        client
            .push(&dest, &push, &source, &PushOptions::default())
            .await
    })?;
    tracing::info!("pushed {}@{} with inline cache", dest.name(), result.digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_from_flags_parse_like_buildx() {
        assert_eq!(
            parse_cache_from("127.0.0.1:5000/app:cache").unwrap(),
            CacheImport::Registry {
                reference: "127.0.0.1:5000/app:cache".into()
            }
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=127.0.0.1:5000/app:cache").unwrap(),
            CacheImport::Registry {
                reference: "127.0.0.1:5000/app:cache".into()
            }
        );
        assert_eq!(
            parse_cache_from("type=local,src=/tmp/c").unwrap(),
            CacheImport::Local {
                src: "/tmp/c".into()
            }
        );
        let e = parse_cache_from("type=local,path=/tmp/c").unwrap_err();
        assert!(
            format!("{e:#}").contains("--cache-from key \"path\""),
            "{e:#}"
        );
        let e = parse_cache_from("type=s3,ref=x").unwrap_err();
        assert!(
            format!("{e:#}").contains("--cache-from type=\"s3\""),
            "{e:#}"
        );
        let e = parse_cache_from("type=registry").unwrap_err();
        assert!(format!("{e:#}").contains("needs ref="), "{e:#}");
    }

    #[test]
    fn cache_to_flags_parse_like_buildx() {
        let e = parse_cache_to("type=registry,ref=127.0.0.1:5000/app:c,mode=max").unwrap();
        assert_eq!(
            e,
            CacheExport {
                target: ExportTarget::Registry("127.0.0.1:5000/app:c".into()),
                mode: CacheMode::Max,
                compression: CacheCompression::Gzip,
                ignore_error: false,
            }
        );
        let e = parse_cache_to(
            "type=local,\"dest=/tmp/a,b\",compression=uncompressed,ignore-error=true",
        )
        .unwrap();
        assert_eq!(e.target, ExportTarget::Local("/tmp/a,b".into()));
        assert_eq!(e.mode, CacheMode::Min);
        assert_eq!(e.compression, CacheCompression::Uncompressed);
        assert!(e.ignore_error);
        for (bad, says) in [
            ("type=registry,ref=x,mode=all", "--cache-to mode=\"all\""),
            (
                "type=registry,ref=x,compression=lz4",
                "--cache-to compression=\"lz4\"",
            ),
            (
                "type=registry,ref=x,ignore-error=maybe",
                "--cache-to ignore-error=\"maybe\"",
            ),
            ("type=local,dst=/x", "--cache-to key \"dst\""),
            ("type=local", "needs dest="),
            ("type=inline", "type=inline needs ref="),
            ("type=inline,ref=r/x,mode=max", "mode=max"),
            (
                "type=registry,ref=UPPER/Case",
                "--cache-to ref=\"UPPER/Case\"",
            ),
            // A quote inside a field: buildx refuses it too.
            ("type=local,dest=\"/tmp/a,b\"", "field 2 (\"dest=\\\"\")"),
            ("type=local,\"dest=/tmp/a", "field 2"),
        ] {
            let e = parse_cache_to(bad).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{bad}: {e:#}");
        }
    }
}
