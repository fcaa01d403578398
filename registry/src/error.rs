//! The error of every registry operation (transport, auth, pull, push).

use oci_spec::image::Digest;

/// Why a registry operation failed. Every variant names the object it failed on; no variant
/// ever holds a credential or token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),
    /// A certificate file could not be read or parsed.
    #[error("cannot load CA certificates from {path}: {message}")]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The HTTP client for a registry could not be built.
    #[error("cannot set up an HTTP client for registry {registry}")]
    ClientSetup {
        /// The registry.
        registry: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A request could not be sent or its response could not be read.
    #[error("request {method} {url} failed")]
    Http {
        /// The method.
        method: String,
        /// The URL (never carries credentials).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url} returned {status}{}", fmt_body(.body))]
    Status {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (the registry's error message).
        body: String,
    },
    /// The registry refused the credentials, or anonymous access, for a repository.
    #[error(
        "{registry} denied access to {what} (401 unauthorized); check `rbuild login {registry}`"
    )]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What was being accessed.
        what: String,
    },
    /// The token server failed or gave an unusable answer.
    #[error("token server {realm} for {registry}: {message}")]
    Token {
        /// The registry.
        registry: String,
        /// The token server's URL.
        realm: String,
        /// What went wrong.
        message: String,
    },
    /// A registry URL could not be formed (bad Location header, bad realm).
    #[error("bad URL {url:?} from registry {registry}")]
    BadUrl {
        /// The registry.
        registry: String,
        /// The URL text.
        url: String,
    },
    /// The manifest does not exist.
    #[error("manifest {reference} not found")]
    ManifestNotFound {
        /// The reference.
        reference: String,
    },
    /// The manifest is larger than the configured limit.
    #[error("manifest {reference} is larger than {limit} bytes")]
    ManifestTooLarge {
        /// The reference.
        reference: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("manifest {reference} is invalid: {message}")]
    InvalidManifest {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest has a media type rbuild does not handle.
    #[error("manifest {reference} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The reference.
        reference: String,
        /// The media type.
        media_type: String,
    },
    /// No manifest in an index matches the requested platform.
    #[error("no manifest for platform {platform} in {reference} (available: {available})")]
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A digest uses an algorithm rbuild cannot verify.
    #[error("cannot verify digest {digest}: only sha256 is supported")]
    UnsupportedDigest {
        /// The digest.
        digest: String,
    },
    /// Content does not hash to its digest.
    #[error("content of {digest} does not match its digest (got {actual})")]
    DigestMismatch {
        /// The expected digest.
        digest: String,
        /// The digest of what was received.
        actual: String,
    },
    /// A blob is not the size its descriptor says.
    #[error("blob {digest}: expected {expected} bytes, received {received}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The blob does not exist in the repository.
    #[error("blob {digest} not found in {repository}")]
    BlobNotFound {
        /// The blob.
        digest: Digest,
        /// The repository.
        repository: String,
    },
    /// A foreign (non-distributable) layer is not in the registry and fetching from its URLs
    /// was not allowed.
    #[error(
        "layer {digest} is non-distributable and not in the registry; allow fetching foreign layers from their URLs to pull it"
    )]
    ForeignLayer {
        /// The layer.
        digest: Digest,
    },
    /// The caller's sink failed.
    #[error("cannot store blob {digest}")]
    Sink {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A download received less than [`STALL_PROGRESS_BYTES`](crate::STALL_PROGRESS_BYTES)
    /// in [`ClientOptions::stall_timeout`](crate::ClientOptions::stall_timeout).
    #[error(
        "{what} from {registry} stalled: less than {} bytes arrived in {after:?}",
        crate::STALL_PROGRESS_BYTES
    )]
    Stalled {
        /// What was downloading (`blob DIGEST`, `manifest REFERENCE`).
        what: String,
        /// The registry.
        registry: String,
        /// How long.
        after: std::time::Duration,
    },
    /// A streamed upload made no progress (the connection took no bytes, or no answer came
    /// after the last one) for the read timeout.
    #[error("upload to {url} made no progress for {after:?}")]
    UploadStalled {
        /// The upload URL.
        url: String,
        /// How long nothing moved.
        after: std::time::Duration,
    },
    /// The caller's source failed.
    #[error("cannot read blob {digest} for upload")]
    Source {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_body(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl RegistryError {
    /// Whether trying again might succeed (network trouble, truncated transfers).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http { .. } | Self::SizeMismatch { .. } | Self::Stalled { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
