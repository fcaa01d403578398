//! Image size analysis for `rbuild report`: where every byte of an OCI image goes, what is
//! wasted, and what to change in the Dockerfile.
//!
//! The crate is pure analysis: it takes an image's manifest and config as JSON and its layer
//! blobs as readers ([`LayerSource`]); it reads no files itself and never touches the network.
//! Each layer is streamed once (plain, gzip with any number of members, or zstd, recognised
//! from its first bytes), nothing is unpacked to disk, and every regular file's content is
//! hashed with BLAKE3 while it streams. Layers are read in parallel, then replayed in order
//! over a compact map of the file system (path -> layer, kind, size, mode, owner, hash).
//! Layers are untrusted: one larger uncompressed than [`Options::limits`] allows, or with more
//! entries, longer names or deeper paths, is refused with an error naming the layer, so memory
//! stays bounded by entries x name length; [`LayerSource::check`] lets the caller add checks
//! of its own on each uncompressed stream.
//!
//! ```no_run
//! use std::io::Read;
//! use rbuild_report::{ImageInput, LayerSource, Options, analyze, render};
//!
//! struct Files(Vec<std::path::PathBuf>);
//! impl LayerSource for Files {
//!     fn open(&self, index: usize) -> std::io::Result<Box<dyn Read + Send + '_>> {
//!         Ok(Box::new(std::fs::File::open(&self.0[index])?))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manifest = std::fs::read("manifest.json")?;
//! let config = std::fs::read("config.json")?;
//! let layers = Files(vec!["layer0.tar.gz".into(), "layer1.tar.gz".into()]);
//! let analysis = analyze(
//!     ImageInput { name: "app", id: None, manifest: &manifest, config: &config,
//!                  base_layers: None, layers: &layers },
//!     &Options::default(),
//! )?;
//! print!("{}", render::text(&analysis.report));
//! # Ok(())
//! # }
//! ```
//!
//! # What is counted, exactly
//!
//! Byte counts of files are content bytes of regular files (`size` in the tar header). Tar
//! headers, padding, directories, symlinks and hard links count as 0; a hard link is not
//! shipped twice, so it adds nothing. Layer sizes are the blob size (compressed) and the
//! length of the uncompressed tar stream.
//!
//! Replaying the layers bottom to top, each regular file *version* (one tar entry) is either
//! in the final file system or hidden by a later change: a whiteout `.wh.NAME` (the path and
//! everything under it), an opaque directory `.wh..wh..opq` (everything the lower layers have
//! under that directory, not what the same layer adds), a later entry at the same path (a new
//! version), or an entry of another kind at the path (a directory replacing a file, or a file
//! replacing a directory and its content). Whiteouts apply to the lower layers whatever their
//! place in the tar. With that:
//!
//! - `shipped_bytes` = Σ over every layer of the sizes of its regular files
//! - `final_bytes` = Σ of the sizes of the regular files of the final file system
//! - `shadowed_bytes` = `shipped_bytes - final_bytes`: exactly the versions that are
//!   overwritten or deleted later; the copy that is kept is never counted
//! - `duplicate_bytes` = Σ over each content hash present at *n* > 1 final paths of
//!   `(n - 1) × size` (one copy is needed; hard links are not copies)
//! - `wasted_bytes` = `shadowed_bytes + duplicate_bytes`
//! - `efficiency` = `final_bytes / shipped_bytes` (1 for an image that ships no file bytes)
//!
//! Per layer, `added` are its files at paths the layers below do not have, `modified` its
//! files at paths they have, `removed` the lower files it deletes; `final_bytes` are its bytes
//! still visible at the top and `shadowed_bytes = shipped_bytes - final_bytes` those that later
//! layers hide (a chmod in a later layer hides the whole earlier copy).
//!
//! ## Compared with dive
//!
//! dive counts, for every path present in more than one layer, the sizes of *all* its
//! versions as wasted, including the one that is in the final image, so an image that writes
//! a file once and chmods it later shows twice the real waste, and its efficiency score mixes
//! that with per-path counts. It also treats only layer 0 as the base image. Here only the
//! hidden versions are waste, the efficiency is a plain ratio of bytes, and the base image is
//! found as described next.
//!
//! # The base image
//!
//! In order of preference:
//!
//! 1. the caller passes [`ImageInput::base_layers`]: it found the image named by the manifest
//!    annotation (or config label) `org.opencontainers.image.base.digest` / `.base.name`
//!    and checked that the base's layers are the first layers of this image;
//! 2. the history: a base image's last instruction is usually `CMD` or `ENTRYPOINT`, which
//!    makes no layer. The base ends at the last such history entry that has layers both before
//!    and after it (a `CMD` at the very end is the image's own);
//! 3. otherwise no layer is counted as the base's.
//!
//! History entries are matched to layers by skipping those marked `empty_layer`; when the
//! history has fewer layer entries than the manifest has layers, the last layers have no
//! instruction. A history `comment` or `created_by` holding `Dockerfile:LINE` gives the
//! Dockerfile line.
//!
//! # Output
//!
//! [`Report`] is what `--format json` prints; its schema is documented field by field on the
//! types of [`model`] and summarised in `SCHEMA.md`, versioned by [`SCHEMA_VERSION`].
//! [`render`] has the text and the HTML forms, [`gate`] the `--fail-on` conditions and
//! [`diff()`] the comparison of two images.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod analyze;
pub mod diff;
mod findings;
pub mod gate;
pub mod model;
mod packages;
pub mod render;
pub mod sbom;
pub mod scan;

pub use analyze::{
    Analysis, AnalyzeError, BASE_DIGEST, BASE_NAME, ImageInput, LayerSource, Options, analyze,
    base_annotations, dockerfile_line, instruction,
};
pub use diff::{Diff, diff};
pub use findings::{DOCS_MIN_BYTES, TOOLCHAIN_MIN_BYTES};
pub use gate::{Gate, GateError};
pub use model::*;
pub use sbom::{Inventory, SbomError, SbomOptions, inventory};
pub use scan::Limits;
