//! Build outputs, as docker buildx names them: where the built image goes after
//! [`super::image::assemble`] put its config and manifest into the store.
//!
//! - `type=image` (the default): the store, named by `-t` (or `name=`); `push=true` (or
//!   `--push`) pushes every name with the code of `rbuild push`.
//! - `type=oci,dest=FILE|DIR[,tar=false]`: an OCI image layout, in a tar or a directory.
//! - `type=docker,dest=FILE`: a docker archive (`docker load`), `RepoTags` from the names.
//! - `type=local,dest=DIR` / `type=tar,dest=FILE`: the final file system, whiteouts applied,
//!   written from one merged tar stream (`flatten`).
//!
//! Files are written atomically (a temp file beside the destination, renamed into place);
//! `dest=-` writes to stdout. Without a `type=image` output the image is not named in the
//! store (its blobs stay as cache), as with buildx.
//!
//! Layer compression of an output comes from its `compression=`, `compression-level=` and
//! `force-compression=` keys, else from `--compression`, `--compression-level` and
//! `--force-compression`, else the output's default: the store keeps layers as built,
//! pushes and OCI layouts get gzip, docker archives hold uncompressed tars (as `docker
//! save`). Converted layers are made once and remembered in `variants-v1/`.
//!
//! One file per concern: `settings` (the flags, parsed and checked before the build),
//! `export` (every output in order, and `--metadata-file`), `convert` (layer conversions),
//! `layout` (OCI layouts and docker archives), `flatten` (the final file system of the
//! layers), `files` (atomic files and stdout), `error` (the errors of all of them).

mod convert;
mod error;
mod export;
mod files;
mod flatten;
mod layout;
mod settings;

pub use convert::{
    Conversion, ConvertWatch, convert_image, convert_layer, convert_layers, convert_layers_watched,
};
pub use error::{BoxError, EntryError, FlattenError, OutputError, SettingsError, WriteError};
pub use export::{Exported, Pushed, Written, export, write_metadata};
pub use settings::{
    Annotation, AnnotationKind, Dest, LayerCompression, Output, OutputFlags, OutputKind,
    OutputSettings, parse_annotation, parse_output,
};
