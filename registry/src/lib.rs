//! rbuild's OCI distribution client: image references, registry credentials, pull and push.
//!
//! It never touches disk for image data: pulled blobs stream into [`BlobSink`]s that a
//! [`BlobTarget`] hands out, pushed blobs stream from a [`BlobSource`]. The local store
//! implements those traits; [`MemoryBlobs`] is an in-memory implementation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rbuild_registry::{Client, ClientOptions, MemoryBlobs, PullOptions, Reference};
//!
//! let client = Client::new(ClientOptions::default());
//! let blobs = MemoryBlobs::new();
//! let image = client
//!     .pull(&Reference::parse("localhost:5000/busybox")?, &blobs, &PullOptions::default())
//!     .await?;
//! println!("{} has {} layers", image.reference, image.image_manifest.layers().len());
//! # Ok(()) }
//! ```
//!
//! # Why not `oci-client`
//!
//! `oci-client` (the successor of `oci-distribution`) covers chunked uploads, mounts, partial
//! blob reads and per-repository tokens, but rbuild needs things it leaves to the caller or
//! hides: retries with exponential backoff honouring `Retry-After`, resuming an interrupted
//! blob with `Range` into the same sink while the digest is computed as bytes arrive (the
//! sink is committed only after verification and aborted otherwise), HEAD-first pushes that
//! cost one request per unchanged blob, docker `config.json` / credential helpers /
//! `REGISTRY_AUTH_FILE`, per-registry `certs.d` CAs, the loopback-only plain-HTTP rule, and
//! progress events per blob. Wrapping it would mean re-implementing most of those around its
//! calls, so the client is built directly on `reqwest` (rustls with the system's roots plus
//! extra CAs) and `tokio`, with manifest and descriptor types from `oci-spec`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blob;
pub mod client;
pub mod credentials;
pub mod error;
pub mod fetch;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;

pub use blob::{BlobSink, BlobSource, BlobTarget, MemoryBlobs};
pub use client::{Client, ClientOptions, RetryPolicy, STALL_PROGRESS_BYTES, is_loopback_registry};
pub use credentials::{Credential, CredentialStore, CredentialsError, DockerConfig, Secret};
pub use error::RegistryError;
pub use oci_spec::image::{Descriptor, Digest};
pub use platform::{Platform, PlatformError};
pub use progress::{ProgressEvent, ProgressFn};
pub use pull::{FetchedManifest, PullOptions, PulledImage, sha256_digest};
pub use push::{BlobPush, PushImage, PushManifest, PushOptions, PushResult, ReadyBlob};
pub use reference::{Reference, ReferenceError};
