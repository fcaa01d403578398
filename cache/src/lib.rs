//! rbuild's local, daemonless image store: a directory that is an OCI image layout, written
//! atomically and safely shared by concurrent processes. It never touches the network; a
//! registry client streams blobs into it through [`BlobWriter`].
//!
//! ```no_run
//! use std::io::Write;
//! use rbuild_cache::{Expected, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/tmp/rbuild-store")?;
//! let data = b"hello";
//! let mut writer = store.blob_writer(Some(Expected::digest(rbuild_cache::Digest::of(data))))?;
//! writer.write_all(data)?;
//! let blob = writer.commit()?; // refused if the content does not match the digest
//! assert!(store.has_blob(&blob.digest));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod archive;
pub mod atomic;
mod blob;
pub mod containers;
pub mod context;
pub mod downloads;
pub mod exchange;
mod fsutil;
pub mod gc;
pub mod import;
pub mod layer;
pub mod mounts;
pub mod snapshots;
pub mod sources;
mod store;
pub mod variants;

pub use blob::{BlobError, BlobWriter, Committed, Expected};
pub use rbuild_digest::{Digest, DigestError, Hasher, HashingReader, HashingWriter};
pub use store::{
    ANNOTATION_CONTAINERD_NAME, DOCKER_MANIFEST_LIST, ImageRef, MAX_DOCUMENT_SIZE, MAX_INDEX_DEPTH,
    Removed, Store, StoreError, descriptor_digest, descriptor_platform, is_attestation_manifest,
    is_index, is_manifest, ref_name, validate_name,
};
