//! Pull: resolve a reference to a manifest, pick a platform from an index, stream blobs into
//! the caller's sinks with digest verification, retries and `Range` resume.

use std::str::FromStr;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use oci_spec::image::{Descriptor, Digest, DigestAlgorithm, ImageIndex, ImageManifest};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::blob::{BlobSink, BlobTarget};
use crate::client::{Client, Host, STALL_PROGRESS_BYTES, Scopes, status_error, transient_error};
use crate::error::RegistryError;
use crate::platform::Platform;
use crate::progress::ProgressEvent;
use crate::reference::Reference;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest image config a pull accepts (configs are read whole into memory; real ones
/// are a few KiB, a long history a few MiB).
pub const MAX_CONFIG_SIZE: u64 = 64 << 20;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index as the registry sent it, verified against its digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// Its media type (one of the four constants of this module).
    pub media_type: String,
    /// The exact bytes (what the digest covers).
    pub bytes: Vec<u8>,
}

impl FetchedManifest {
    /// Whether this is an index / manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.as_str().into(),
            self.bytes.len() as u64,
            self.digest.clone(),
        )
    }
}

/// What `pull` does besides the defaults.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform picked from an index (default: the host's).
    pub platform: Platform,
    /// Fetch non-distributable ("foreign") layers from the URLs in their descriptors.
    pub allow_foreign_layers: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            allow_foreign_layers: false,
        }
    }
}

/// The result of a pull: everything went into the caller's target.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference pulled, pinned to the manifest digest.
    pub reference: Reference,
    /// The index the tag pointed at, if it pointed at one.
    pub index: Option<FetchedManifest>,
    /// The image manifest (for the chosen platform).
    pub manifest: FetchedManifest,
    /// The parsed manifest.
    pub image_manifest: ImageManifest,
    /// Blobs (manifests, config, layers) written to the target.
    pub fetched: Vec<Digest>,
    /// Blobs the target already had.
    pub skipped: Vec<Digest>,
}

/// Whether a media type marks a non-distributable layer.
pub fn is_foreign_layer(media_type: &str) -> bool {
    media_type.contains(".foreign.") || media_type.contains(".nondistributable.")
}

impl Client {
    /// Asks for a manifest's digest, media type and size without fetching it (HEAD).
    /// `Ok(None)` when the registry has no such manifest.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Digest, String, u64)>, RegistryError> {
        let (_, url, resp) = self.request_manifest(reference, Method::HEAD).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(Method::HEAD, &url, resp).await);
        }
        let digest = header_digest(&resp).and_then(|v| Digest::from_str(&v).ok());
        let Some(digest) = digest else {
            return Ok(None);
        };
        let media_type = header_media_type(&resp).unwrap_or_default();
        let size = resp.content_length().unwrap_or(0);
        Ok(Some((digest, media_type, size)))
    }

    /// Asks the registry for `reference`'s manifest (any manifest or index type rbuild reads)
    /// with `method`; the manifest's URL and the answer, whatever its status.
    async fn request_manifest(
        &self,
        reference: &Reference,
        method: Method,
    ) -> Result<(Arc<Host>, Url, reqwest::Response), RegistryError> {
        let host = self.host(reference.registry()).await?;
        let url = manifest_url(&host, reference)?;
        let resp = self
            .send(
                &host,
                &Scopes::pull(reference.repository()),
                method,
                &url,
                &format!("manifest {reference}"),
                |r| Ok(r.header(ACCEPT, ACCEPT_MANIFESTS)),
            )
            .await?;
        Ok((host, url, resp))
    }

    /// Fetches a manifest or index, limited in size, verified against the reference's digest
    /// (when it has one) and against the registry's `Docker-Content-Digest`.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let limit = self.inner.opts.max_manifest_size;
        let what = reference.to_string();
        let (host, url, resp) = self.request_manifest(reference, Method::GET).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound { reference: what });
        }
        if !resp.status().is_success() {
            return Err(status_error(Method::GET, &url, resp).await);
        }
        if resp.content_length().is_some_and(|l| l > limit as u64) {
            return Err(RegistryError::ManifestTooLarge {
                reference: what,
                limit,
            });
        }
        let header_type = header_media_type(&resp);
        let header_digest = header_digest(&resp);
        let mut bytes = Vec::new();
        let mut body = resp.bytes_stream();
        let mut watch = StallWatch::new(self.inner.opts.stall_timeout);
        let download = format!("manifest {what}");
        while let Some(chunk) = watch
            .chunk(&mut body, &download, &host.registry, &url)
            .await?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(RegistryError::ManifestTooLarge {
                    reference: what,
                    limit,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let digest = sha256_digest(&bytes);
        let expected = reference
            .digest()
            .map(ToString::to_string)
            .or(header_digest);
        if let Some(expected) = expected {
            if expected.starts_with("sha256:") && expected != digest.as_ref() {
                return Err(RegistryError::DigestMismatch {
                    digest: expected,
                    actual: digest.to_string(),
                });
            }
            if !expected.starts_with("sha256:") {
                return Err(RegistryError::UnsupportedDigest { digest: expected });
            }
        }
        let media_type = detect_media_type(&what, header_type.as_deref(), &bytes)?;
        Ok(FetchedManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Resolves `reference` to an image manifest: fetches it, and when it is an index picks
    /// the manifest for `platform` and fetches that. Returns (index, manifest).
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(Option<FetchedManifest>, FetchedManifest), RegistryError> {
        let top = self.fetch_manifest(reference).await?;
        if !top.is_index() {
            return Ok((None, top));
        }
        let index: ImageIndex =
            serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::InvalidManifest {
                reference: reference.to_string(),
                message: e.to_string(),
            })?;
        let entries: Vec<(&Descriptor, Platform)> = index
            .manifests()
            .iter()
            .filter_map(|m| {
                let p = m.platform().as_ref()?;
                let os = p.os().to_string();
                // BuildKit's attestation manifests are `unknown/unknown`: no platform.
                if os == "unknown" {
                    return None;
                }
                let arch = p.architecture().to_string();
                Some((m, Platform::new(&os, &arch, p.variant().as_deref())))
            })
            .collect();
        let chosen = platform.pick(entries.iter().map(|(m, p)| (*m, p)));
        let Some(chosen) = chosen else {
            let available: Vec<String> = entries.iter().map(|(_, p)| p.to_string()).collect();
            return Err(RegistryError::NoMatchingPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: available.join(", "),
            });
        };
        let child = reference.with_digest(chosen.digest().clone());
        let manifest = self.fetch_manifest(&child).await?;
        if manifest.is_index() {
            return Err(RegistryError::InvalidManifest {
                reference: child.to_string(),
                message: "an index entry points at another index".into(),
            });
        }
        Ok((Some(top), manifest))
    }

    /// Pulls an image: manifests, config and layers go into `target` (blobs it has are
    /// skipped); layers are fetched concurrently.
    pub async fn pull(
        &self,
        reference: &Reference,
        target: &dyn BlobTarget,
        opts: &PullOptions,
    ) -> Result<PulledImage, RegistryError> {
        let (index, manifest) = self.resolve(reference, &opts.platform).await?;
        let image_manifest: ImageManifest =
            serde_json::from_slice(&manifest.bytes).map_err(|e| {
                RegistryError::InvalidManifest {
                    reference: reference.to_string(),
                    message: e.to_string(),
                }
            })?;
        let config_size = image_manifest.config().size();
        if config_size > MAX_CONFIG_SIZE {
            return Err(RegistryError::InvalidManifest {
                reference: reference.to_string(),
                message: format!(
                    "its config is {config_size} bytes, more than the {MAX_CONFIG_SIZE} a config may have"
                ),
            });
        }
        let mut fetched = Vec::new();
        let mut skipped = Vec::new();
        for m in index.iter().chain(std::iter::once(&manifest)) {
            if target.has(&m.digest) {
                skipped.push(m.digest.clone());
                continue;
            }
            let desc = m.descriptor();
            let mut sink = target.sink(&desc).map_err(|source| RegistryError::Sink {
                digest: m.digest.clone(),
                source,
            })?;
            let written = sink.write(&m.bytes);
            if let Err(source) = written {
                sink.abort();
                return Err(RegistryError::Sink {
                    digest: m.digest.clone(),
                    source,
                });
            }
            sink.commit(&m.digest)
                .map_err(|source| RegistryError::Sink {
                    digest: m.digest.clone(),
                    source,
                })?;
            fetched.push(m.digest.clone());
        }
        let mut blobs: Vec<Descriptor> = vec![image_manifest.config().clone()];
        for l in image_manifest.layers() {
            if !blobs.iter().any(|b| b.digest() == l.digest()) {
                blobs.push(l.clone());
            }
        }
        let mut todo = Vec::new();
        for b in blobs {
            if target.has(b.digest()) {
                self.emit(ProgressEvent::BlobExists {
                    digest: b.digest().clone(),
                });
                skipped.push(b.digest().clone());
            } else {
                todo.push(b);
            }
        }
        let pinned = reference.with_digest(manifest.digest.clone());
        let limit = self.inner.opts.max_concurrent_downloads.max(1);
        let done: Vec<Digest> = stream::iter(todo.into_iter().map(|desc| {
            let pinned = &pinned;
            async move {
                let sink = target.sink(&desc).map_err(|source| RegistryError::Sink {
                    digest: desc.digest().clone(),
                    source,
                })?;
                self.fetch_blob_with(pinned, &desc, sink, opts.allow_foreign_layers)
                    .await?;
                Ok::<_, RegistryError>(desc.digest().clone())
            }
        }))
        .buffer_unordered(limit)
        .try_collect()
        .await?;
        fetched.extend(done);
        Ok(PulledImage {
            reference: pinned,
            index,
            manifest,
            image_manifest,
            fetched,
            skipped,
        })
    }

    /// Streams one blob of `repository`'s registry into `sink`, verifying its sha256 while it
    /// streams; commits the sink only when size and digest match, aborts it otherwise.
    pub async fn fetch_blob(
        &self,
        repository: &Reference,
        descriptor: &Descriptor,
        sink: Box<dyn BlobSink>,
    ) -> Result<(), RegistryError> {
        self.fetch_blob_with(repository, descriptor, sink, false)
            .await
    }

    async fn fetch_blob_with(
        &self,
        repository: &Reference,
        desc: &Descriptor,
        mut sink: Box<dyn BlobSink>,
        allow_foreign: bool,
    ) -> Result<(), RegistryError> {
        match self
            .fetch_into(repository, desc, &mut sink, allow_foreign)
            .await
        {
            Ok(()) => sink
                .commit(desc.digest())
                .map_err(|source| RegistryError::Sink {
                    digest: desc.digest().clone(),
                    source,
                }),
            Err(e) => {
                sink.abort();
                Err(e)
            }
        }
    }

    async fn fetch_into(
        &self,
        repository: &Reference,
        desc: &Descriptor,
        sink: &mut Box<dyn BlobSink>,
        allow_foreign: bool,
    ) -> Result<(), RegistryError> {
        let digest = desc.digest().clone();
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(RegistryError::UnsupportedDigest {
                digest: digest.to_string(),
            });
        }
        let size = desc.size();
        let host = self.host(repository.registry()).await?;
        let foreign = is_foreign_layer(desc.media_type().as_ref());
        let url = match desc.urls().as_ref().and_then(|u| u.first()) {
            Some(u) if foreign && allow_foreign => {
                let url = Url::parse(u).map_err(|_| RegistryError::BadUrl {
                    registry: host.registry.clone(),
                    url: u.clone(),
                })?;
                if url.scheme() != "https" && url.scheme() != "http" {
                    return Err(RegistryError::BadUrl {
                        registry: host.registry.clone(),
                        url: u.clone(),
                    });
                }
                url
            }
            _ => host.url(&format!("/v2/{}/blobs/{digest}", repository.repository()))?,
        };
        let scopes = Scopes::pull(repository.repository());
        let policy = self.inner.opts.retry.clone();
        let what = format!("blob {digest}");
        self.emit(ProgressEvent::BlobStart {
            digest: digest.clone(),
            size,
        });
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut failures = 0u32;
        loop {
            let offset = received;
            let resp = self
                .send(&host, &scopes, Method::GET, &url, &what, |r| {
                    Ok(if offset > 0 {
                        r.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        r
                    })
                })
                .await;
            let outcome: Result<(), RegistryError> = async {
                let resp = resp?;
                match resp.status() {
                    StatusCode::OK => {
                        if received > 0 {
                            // The server ignored Range: start over.
                            sink.reset().map_err(|source| RegistryError::Sink {
                                digest: digest.clone(),
                                source,
                            })?;
                            hasher = Sha256::new();
                            received = 0;
                        }
                    }
                    StatusCode::PARTIAL_CONTENT if received > 0 => {
                        let start = resp
                            .headers()
                            .get(reqwest::header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("bytes "))
                            .and_then(|v| v.split('-').next())
                            .and_then(|v| v.parse::<u64>().ok());
                        if start != Some(received) {
                            sink.reset().map_err(|source| RegistryError::Sink {
                                digest: digest.clone(),
                                source,
                            })?;
                            hasher = Sha256::new();
                            received = 0;
                            return Err(RegistryError::SizeMismatch {
                                digest: digest.clone(),
                                expected: size,
                                received: 0,
                            });
                        }
                    }
                    StatusCode::NOT_FOUND if foreign => {
                        return Err(RegistryError::ForeignLayer {
                            digest: digest.clone(),
                        });
                    }
                    StatusCode::NOT_FOUND => {
                        return Err(RegistryError::BlobNotFound {
                            digest: digest.clone(),
                            repository: repository.name(),
                        });
                    }
                    _ => return Err(status_error(Method::GET, &url, resp).await),
                }
                let mut body = resp.bytes_stream();
                let mut watch = StallWatch::new(self.inner.opts.stall_timeout);
                while let Some(chunk) = watch.chunk(&mut body, &what, &host.registry, &url).await? {
                    if received + chunk.len() as u64 > size {
                        return Err(RegistryError::SizeMismatch {
                            digest: digest.clone(),
                            expected: size,
                            received: received + chunk.len() as u64,
                        });
                    }
                    hasher.update(&chunk);
                    sink.write(&chunk).map_err(|source| RegistryError::Sink {
                        digest: digest.clone(),
                        source,
                    })?;
                    received += chunk.len() as u64;
                    self.emit(ProgressEvent::BlobBytes {
                        digest: digest.clone(),
                        done: received,
                        total: size,
                    });
                }
                if received < size {
                    return Err(RegistryError::SizeMismatch {
                        digest: digest.clone(),
                        expected: size,
                        received,
                    });
                }
                Ok(())
            }
            .await;
            match outcome {
                Ok(()) => break,
                Err(e @ RegistryError::SizeMismatch { received: r, .. }) if r > size => {
                    return Err(e);
                }
                // `send` has already retried error statuses; here only broken transfers
                // (connection errors, short bodies) are resumed.
                Err(e) if transient_error(&e) && !matches!(e, RegistryError::Status { .. }) => {
                    failures += 1;
                    if failures >= policy.max_attempts {
                        return Err(e);
                    }
                    // A stalled transfer has waited its timeout already.
                    let delay = if matches!(e, RegistryError::Stalled { .. }) {
                        std::time::Duration::ZERO
                    } else {
                        policy.delay(failures)
                    };
                    tracing::debug!(%digest, received, ?delay, error = %e, "blob transfer interrupted; resuming");
                    self.emit(ProgressEvent::Retry {
                        what: what.clone(),
                        attempt: failures,
                        delay,
                    });
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
        let actual = hasher.finalize();
        let actual = format!("sha256:{}", hex(&actual));
        if actual != digest.as_ref() {
            return Err(RegistryError::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        self.emit(ProgressEvent::BlobDone { digest });
        Ok(())
    }
}

/// Watches a download for stalls: it must receive [`STALL_PROGRESS_BYTES`] within `timeout`,
/// again and again until it ends (the last bytes of a body may be fewer).
struct StallWatch {
    timeout: std::time::Duration,
    deadline: tokio::time::Instant,
    pending: u64,
}

impl StallWatch {
    fn new(timeout: std::time::Duration) -> StallWatch {
        StallWatch {
            timeout,
            deadline: tokio::time::Instant::now() + timeout,
            pending: 0,
        }
    }

    /// The next chunk of `body`; `Err(timeout)` when the download stalled.
    async fn next<S>(
        &mut self,
        body: &mut S,
    ) -> Result<Option<reqwest::Result<bytes::Bytes>>, std::time::Duration>
    where
        S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    {
        let chunk = tokio::time::timeout_at(self.deadline, body.next())
            .await
            .map_err(|_| self.timeout)?;
        if let Some(Ok(bytes)) = &chunk {
            self.pending += bytes.len() as u64;
            if self.pending >= STALL_PROGRESS_BYTES {
                self.pending = 0;
                self.deadline = tokio::time::Instant::now() + self.timeout;
            }
        }
        Ok(chunk)
    }

    /// The next chunk of `body`, a GET of `url` downloading `what` from `registry`; a stall
    /// or a failed read is an error naming them.
    async fn chunk<S>(
        &mut self,
        body: &mut S,
        what: &str,
        registry: &str,
        url: &Url,
    ) -> Result<Option<bytes::Bytes>, RegistryError>
    where
        S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    {
        let chunk = self
            .next(body)
            .await
            .map_err(|after| RegistryError::Stalled {
                what: what.to_string(),
                registry: registry.to_string(),
                after,
            })?;
        chunk.transpose().map_err(|source| RegistryError::Http {
            method: "GET".into(),
            url: url.to_string(),
            source,
        })
    }
}

/// The media type an answer's `Content-Type` names, without parameters.
fn header_media_type(resp: &reqwest::Response) -> Option<String> {
    let v = resp.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or(v).trim().to_string())
}

/// The digest an answer's `Docker-Content-Digest` names, unparsed.
fn header_digest(resp: &reqwest::Response) -> Option<String> {
    let v = resp.headers().get("docker-content-digest")?.to_str().ok()?;
    Some(v.to_string())
}

fn manifest_url(host: &Host, reference: &Reference) -> Result<Url, RegistryError> {
    host.url(&format!(
        "/v2/{}/manifests/{}",
        reference.repository(),
        reference.api_reference()
    ))
}

/// The media type of manifest bytes, as a pull decides it: the `Content-Type` (`header`) when
/// it is a manifest type, else the `mediaType` field, else guessed from the shape (OCI allows
/// leaving it out). `reference` names the manifest in errors.
pub fn detect_media_type(
    reference: &str,
    header: Option<&str>,
    bytes: &[u8],
) -> Result<String, RegistryError> {
    const KNOWN: [&str; 4] = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ];
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidManifest {
            reference: reference.to_string(),
            message: e.to_string(),
        })?;
    if probe.schema_version != Some(2) {
        return Err(RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: header
                .map(str::to_string)
                .unwrap_or_else(|| format!("schemaVersion {:?}", probe.schema_version)),
        });
    }
    let chosen = match (header, probe.media_type.as_deref()) {
        (Some(h), _) if KNOWN.contains(&h) => h.to_string(),
        (_, Some(m)) => m.to_string(),
        _ if probe.manifests.is_some() => OCI_INDEX.to_string(),
        _ if probe.layers.is_some() => OCI_MANIFEST.to_string(),
        _ => String::new(),
    };
    if !KNOWN.contains(&chosen.as_str()) {
        return Err(RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: chosen,
        });
    }
    Ok(chosen)
}

/// The sha256 digest of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    let hash = Sha256::digest(bytes);
    Digest::from_str(&format!("sha256:{}", hex(&hash))).expect("a sha256 hex digest is valid")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
