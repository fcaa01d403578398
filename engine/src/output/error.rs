//! The errors of build outputs: [`SettingsError`] for the output flags (checked before the
//! build), [`WriteError`] for writing a file or stdout, [`FlattenError`] for merging layers
//! into one file system, and [`OutputError`] for everything [`super::export`] and the layer
//! conversions do.

use std::error::Error as StdError;
use std::path::PathBuf;

use rbuild_cache::variants::VariantsError;
use rbuild_cache::{BlobError, Digest, DigestError, StoreError};

use crate::names::NameError;
use crate::push::PushError;

/// A boxed error of any kind, kept as a source with its own chain.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An `--output`, `--annotation`, compression flag or `--metadata-file` that is not valid.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// An `--output` value is not valid.
    #[error("invalid --output {spec:?}")]
    Output {
        /// The value.
        spec: String,
        /// Why.
        #[source]
        source: Box<SettingsError>,
    },
    /// `--output` is empty.
    #[error("empty --output: expected type=TYPE[,KEY=VALUE...] or a directory")]
    Empty,
    /// The value is not one CSV record (a misplaced or unclosed quote); the caller names the
    /// flag and the value.
    #[error("{problem}")]
    Csv {
        /// Which field, and what is wrong with it.
        problem: rbuild_options::csv::CsvError,
    },
    /// A field is not `KEY=VALUE`.
    #[error("invalid --output field {field:?}: expected KEY=VALUE")]
    NotKeyValue {
        /// The field.
        field: String,
    },
    /// `dest=` is empty.
    #[error("--output {spec:?}: dest is empty")]
    EmptyDest {
        /// The value.
        spec: String,
    },
    /// A `name=` is not an image name.
    #[error("invalid name {name:?} in --output")]
    Name {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// A boolean key has another value.
    #[error("output key {key} must be true or false, not {value:?}")]
    Bool {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// An unknown compression.
    #[error("unknown compression {value:?}: expected gzip, zstd or uncompressed")]
    Compression {
        /// The value.
        value: String,
    },
    /// `compression-level=` is not a number.
    #[error("compression-level must be a number, not {value:?}")]
    Level {
        /// The value.
        value: String,
    },
    /// A compression level out of its compression's range.
    #[error("compression level {level} is out of range for {kind} ({low}-{high})")]
    LevelRange {
        /// The level.
        level: i32,
        /// The compression (`Gzip`, `Zstd`).
        kind: String,
        /// The lowest level.
        low: i32,
        /// The highest level.
        high: i32,
    },
    /// An unknown key.
    #[error(
        "unknown key {key:?} in --output {spec:?} (rbuild knows type, dest, name, push, \
         tar, compression, compression-level, force-compression)"
    )]
    UnknownKey {
        /// The key.
        key: String,
        /// The value.
        spec: String,
    },
    /// No `type=`.
    #[error("--output {spec:?} has no type=")]
    NoType {
        /// The value.
        spec: String,
    },
    /// An unknown type.
    #[error("unknown output type {kind:?}: expected image, registry, oci, docker, local or tar")]
    UnknownType {
        /// The type.
        kind: String,
    },
    /// `push=true` on an output that is not an image.
    #[error("push=true applies to type=image only, not type={kind}")]
    PushNotImage {
        /// The output's type.
        kind: &'static str,
    },
    /// `tar=` on an output that is not an OCI layout.
    #[error("tar= applies to type=oci only, not type={kind}")]
    TarNotOci {
        /// The output's type.
        kind: &'static str,
    },
    /// `name=` on a file system output.
    #[error("name= does not apply to type={kind}: it writes a file system, not an image")]
    NameNotImage {
        /// The output's type.
        kind: &'static str,
    },
    /// Compression keys on a file system output.
    #[error("type={kind} writes files, not layers: compression keys do not apply")]
    CompressionNotLayers {
        /// The output's type.
        kind: &'static str,
    },
    /// A compressed docker archive.
    #[error(
        "type=docker writes a docker archive, whose layers are uncompressed tars (as docker \
         save writes them): use type=oci for compressed layers"
    )]
    DockerCompressed,
    /// `dest=` on an image output.
    #[error("type=image takes no dest: it goes to the store (and registries with push=true)")]
    ImageDest,
    /// A directory output to stdout.
    #[error("type=local cannot write to stdout: use type=tar,dest=-")]
    LocalStdout,
    /// An OCI layout directory to stdout.
    #[error("type=oci,tar=false writes a directory: it cannot go to stdout")]
    OciDirStdout,
    /// An output that needs `dest=`.
    #[error("--output type={kind} needs dest=PATH (or dest=- for stdout)")]
    NoDest {
        /// The output's type.
        kind: &'static str,
    },
    /// Two outputs to stdout.
    #[error("only one output can be written to stdout")]
    TwoStdout,
    /// A push without a name.
    #[error("pushing needs a name: give -t NAME (or name= in --output)")]
    PushWithoutName,
    /// The destination cannot be written.
    #[error("cannot write output type={kind} to {}", path.display())]
    Dest {
        /// The output's type.
        kind: &'static str,
        /// The destination.
        path: PathBuf,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// The `--metadata-file` cannot be written.
    #[error("cannot write --metadata-file {}", path.display())]
    MetadataFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// An `--annotation` is not valid.
    #[error("invalid --annotation {spec:?}: {problem}")]
    Annotation {
        /// The value.
        spec: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An `--annotation` of a type rbuild does not write.
    #[error("--annotation {spec:?}: {problem}")]
    AnnotationType {
        /// The value.
        spec: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An `--annotation` for another platform.
    #[error("--annotation {key} is for platform {platform}, but the image is for {image}")]
    AnnotationPlatform {
        /// The annotation's key.
        key: String,
        /// Its platform.
        platform: String,
        /// The image's platform.
        image: String,
    },
}

/// A file (or stdout) that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Something that should be a directory is not.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file destination is a directory.
    #[error("{} is a directory", path.display())]
    IsADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory of a file destination does not exist.
    #[error("directory {} does not exist", path.display())]
    NoDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// No file can be made in the directory.
    #[error("cannot create a file in {}", dir.display())]
    CreateIn {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No temp file can be made beside the destination.
    #[error("cannot create a temp file in {}", dir.display())]
    TempFile {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory cannot be made.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be written (what wrote it failed, or the disk).
    #[error("cannot write {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// stdout is a terminal.
    #[error("refusing to write an archive to a terminal: redirect stdout")]
    Terminal,
    /// stdout cannot be written.
    #[error("cannot write to stdout")]
    Stdout(#[source] BoxError),
}

/// Why the final file system of the layers could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    /// A layer's blob cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer cannot be read.
    #[error("cannot read layer {layer}")]
    Read {
        /// The layer.
        layer: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An entry of a layer is not acceptable.
    #[error("layer {layer}")]
    Entry {
        /// The layer.
        layer: Digest,
        /// Why.
        #[source]
        source: EntryError,
    },
    /// A hard link of a layer leads nowhere.
    #[error("layer {layer}: hard link {link:?} has no valid target")]
    NoLinkTarget {
        /// The layer.
        layer: Digest,
        /// The link's name.
        link: String,
    },
    /// A hard link of a layer points to no file below or before it.
    #[error(
        "layer {layer}: hard link {link:?} points to {target:?}, which is not a file \
         of the layers below or before it"
    )]
    LinkTarget {
        /// The layer.
        layer: Digest,
        /// The link's name.
        link: String,
        /// Its target.
        target: String,
    },
    /// An entry cannot be written to the tar.
    #[error("cannot write {path:?} to the tar")]
    Append {
        /// The entry's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tar cannot be finished.
    #[error("cannot finish the tar")]
    Finish(#[source] std::io::Error),
    /// The destination directory cannot be made.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pipe between the tar writer and the unpacker cannot be made.
    #[error("cannot create a pipe")]
    Pipe(#[source] std::io::Error),
    /// The tar writer panicked.
    #[error("the tar writer panicked")]
    Panicked,
    /// The merged file system cannot be unpacked into the directory.
    #[error("cannot write into {}", dir.display())]
    Unpack {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: rbuild_executor::unpack::UnpackError,
    },
}

/// A tar entry name that cannot be in a layer.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A `..` component.
    #[error("entry {0:?} contains '..'")]
    DotDot(String),
    /// A NUL byte.
    #[error("entry {0:?} contains a NUL byte")]
    Nul(String),
}

/// Why an output could not be written, or a layer converted.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The annotations do not fit the image.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A file or stdout cannot be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// One output failed.
    #[error("cannot write output type={kind} to {dest}")]
    Output {
        /// The output's type.
        kind: &'static str,
        /// Its destination (`-` for stdout, the names for `image`).
        dest: String,
        /// Why.
        #[source]
        source: Box<OutputError>,
    },
    /// The image cannot be named in the store.
    #[error("cannot name the image {name}")]
    Tag {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A name to push to is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The attestations could not be attached to the image.
    #[error(transparent)]
    Attest(#[from] crate::attest::AttestError),
    /// A push failed.
    #[error("cannot push {reference}")]
    Push {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: Box<PushError>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The final file system cannot be written.
    #[error(transparent)]
    Flatten(#[from] FlattenError),
    /// A layer cannot be read.
    #[error("cannot read layer {layer}")]
    ReadLayer {
        /// The layer.
        layer: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A layer cannot be compressed.
    #[error("cannot compress layer {layer}")]
    Compress {
        /// The layer.
        layer: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A digest of a manifest or variant record is not valid.
    #[error("bad {what} {digest}")]
    BadDigest {
        /// `layer digest`, `variant digest`.
        what: &'static str,
        /// The text.
        digest: String,
        /// Why.
        #[source]
        source: DigestError,
    },
    /// A layer converted again does not give the recorded blob.
    #[error("cannot convert layer {layer} to {digest} again for its upload")]
    Remake {
        /// The layer.
        layer: Digest,
        /// The recorded conversion.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<OutputError>,
    },
    /// The conversion records failed.
    #[error(transparent)]
    Variants(#[from] VariantsError),
    /// A blob cannot be committed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A manifest is not valid JSON.
    #[error("{what} is not valid JSON")]
    Json {
        /// The document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// zstd layers in a Docker manifest.
    #[error("zstd layers cannot be in a Docker v2 manifest: build with --format oci")]
    ZstdInDocker,
    /// A compression with no layer media type in the manifest format.
    #[error(transparent)]
    LayerMediaType(#[from] rbuild_compress::MediaTypeError),
    /// The layers of an image cannot be converted.
    #[error("cannot convert the layers of {manifest}")]
    Convert {
        /// The image's manifest.
        manifest: Digest,
        /// Why.
        #[source]
        source: Box<OutputError>,
    },
    /// The `--metadata-file` cannot be written.
    #[error("cannot write --metadata-file {}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<OutputError>,
    },
}

impl OutputError {
    /// A closure that makes a JSON error on `what` an [`OutputError::Json`].
    pub(crate) fn json(what: impl std::fmt::Display) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.to_string();
        move |source| OutputError::Json { what, source }
    }
}
