//! The report: what `--format json` prints (schema in `SCHEMA.md`, version [`SCHEMA_VERSION`]).

use serde::{Deserialize, Serialize};

/// The version of the JSON schema. Fields are only ever added within a version; a field is
/// renamed, removed or changes meaning only with a new version.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `rbuild report` says about one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Which image.
    pub image: ImageInfo,
    /// Whole-image numbers.
    pub totals: Totals,
    /// The base image and how it was recognised.
    pub base: BaseInfo,
    /// One entry per layer, bottom first.
    pub layers: Vec<LayerReport>,
    /// The largest regular files of the final file system, largest first.
    pub largest_files: Vec<PathSize>,
    /// The directories of the final file system with the most bytes under them, largest first.
    pub largest_dirs: Vec<DirSize>,
    /// Content present more than once in the final file system, most wasted bytes first.
    pub duplicates: Vec<Duplicate>,
    /// What to change, largest saving first.
    pub findings: Vec<Finding>,
    /// The final file system's bytes by installed package, when the image has package
    /// metadata that `rbuild sbom` reads (absent when the analysis was asked not to read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Packages>,
}

/// The final file system's bytes by package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Packages {
    /// Packages found.
    pub count: usize,
    /// Bytes of the final regular files some package lists.
    pub owned_bytes: u64,
    /// Bytes of the final regular files no package lists: `final_bytes - owned_bytes`.
    pub unowned_bytes: u64,
    /// Final regular files no package lists.
    pub unowned_files: u64,
    /// The packages with the most bytes, largest first (top N).
    pub largest: Vec<PackageSize>,
}

/// One package and the bytes of the final file system it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSize {
    /// Its ecosystem: `deb`, `apk`, `rpm`, `python`, `npm`, `go`.
    pub ecosystem: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture, when the database gives one.
    pub architecture: Option<String>,
    /// Content bytes of the final regular files it lists (a file listed by several
    /// packages counts for the first: dpkg, apk, Python, npm, Go).
    pub bytes: u64,
    /// Those files.
    pub files: u64,
    /// The layer that added it.
    pub layer: usize,
    /// That layer's instruction.
    pub instruction: Option<String>,
    /// That layer's Dockerfile line, when known.
    pub dockerfile_line: Option<u32>,
}

/// Which image was analysed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The name the user gave.
    pub name: String,
    /// The image id (the digest of its manifest or index), when known.
    pub id: Option<String>,
    /// `os` of the config.
    pub os: Option<String>,
    /// `architecture` of the config.
    pub architecture: Option<String>,
    /// `created` of the config (RFC 3339, as written).
    pub created: Option<String>,
}

/// Whole-image numbers. All byte counts are exact; see the crate documentation for the formulas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    /// Number of layers.
    pub layers: usize,
    /// Sum of the layer blob sizes (what a pull downloads).
    pub compressed_bytes: u64,
    /// Sum of the uncompressed layer tar streams (what a pull unpacks).
    pub uncompressed_bytes: u64,
    /// Content bytes of every regular file version in every layer.
    pub shipped_bytes: u64,
    /// Content bytes of the regular files of the final file system.
    pub final_bytes: u64,
    /// Regular files in the final file system.
    pub final_files: u64,
    /// Entries of any kind (files, directories, links, ...) in the final file system.
    pub final_entries: u64,
    /// Bytes of file versions shipped but not in the final file system (overwritten or
    /// deleted by a later layer): `shipped_bytes - final_bytes`.
    pub shadowed_bytes: u64,
    /// Bytes of final-image files whose content another final file already has.
    pub duplicate_bytes: u64,
    /// `shadowed_bytes + duplicate_bytes`.
    pub wasted_bytes: u64,
    /// `final_bytes / shipped_bytes` (1 when nothing is shipped).
    pub efficiency: f64,
}

/// How the base image was told apart from the image's own layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseSource {
    /// The caller found the base image (named by the `org.opencontainers.image.base.*`
    /// annotation or label) and matched its layers.
    Annotation,
    /// From the history: the layers before the last base-image `CMD`/`ENTRYPOINT`.
    History,
    /// Not known: every layer is counted as the image's own.
    Unknown,
}

/// The base image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseInfo {
    /// How it was recognised.
    pub source: BaseSource,
    /// `org.opencontainers.image.base.name`, when the image says.
    pub name: Option<String>,
    /// `org.opencontainers.image.base.digest`, when the image says.
    pub digest: Option<String>,
    /// How many of the bottom layers belong to it.
    pub layers: usize,
    /// Their compressed bytes.
    pub compressed_bytes: u64,
    /// Their uncompressed bytes.
    pub uncompressed_bytes: u64,
}

/// One layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerReport {
    /// Position, 0 = bottom.
    pub index: usize,
    /// The blob digest.
    pub digest: Option<String>,
    /// The uncompressed digest from the config's `rootfs.diff_ids`.
    pub diff_id: Option<String>,
    /// The blob media type.
    pub media_type: Option<String>,
    /// Whether it belongs to the base image.
    pub base: bool,
    /// The blob size.
    pub compressed_bytes: u64,
    /// The tar stream size.
    pub uncompressed_bytes: u64,
    /// Entries in the tar (whiteouts included).
    pub entries: u64,
    /// Regular files in the tar.
    pub files: u64,
    /// Content bytes of its regular files.
    pub shipped_bytes: u64,
    /// Regular files at paths that did not exist below.
    pub added_files: u64,
    /// Their bytes.
    pub added_bytes: u64,
    /// Regular files at paths that existed below (replacing what was there).
    pub modified_files: u64,
    /// Their bytes (the new versions).
    pub modified_bytes: u64,
    /// Regular files of lower layers it deletes (whiteouts, opaque directories, a path
    /// replaced by another kind of entry).
    pub removed_files: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Its bytes still in the final file system.
    pub final_bytes: u64,
    /// Its bytes that later layers hide: `shipped_bytes - final_bytes`.
    pub shadowed_bytes: u64,
    /// The history entry's `created_by`, as written.
    pub created_by: Option<String>,
    /// The Dockerfile instruction, cleaned (`RUN apt-get ...`, `COPY ...`).
    pub instruction: Option<String>,
    /// The history entry's `comment`.
    pub comment: Option<String>,
    /// The history entry's `created`.
    pub created: Option<String>,
    /// The Dockerfile line, when the history records it.
    pub dockerfile_line: Option<u32>,
}

/// A path and its size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathSize {
    /// Absolute path in the image.
    pub path: String,
    /// Content bytes.
    pub bytes: u64,
    /// The layer it comes from.
    pub layer: usize,
}

/// A directory and what is under it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirSize {
    /// Absolute path in the image.
    pub path: String,
    /// Content bytes of the regular files under it, at any depth.
    pub bytes: u64,
    /// Regular files under it, at any depth.
    pub files: u64,
}

/// One content present at several final paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Duplicate {
    /// BLAKE3 of the content, hex.
    pub blake3: String,
    /// Size of one copy.
    pub bytes: u64,
    /// Number of copies.
    pub copies: u64,
    /// `(copies - 1) * bytes`.
    pub wasted_bytes: u64,
    /// The copies (at most 10), with their layers.
    pub paths: Vec<PathSize>,
}

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A package manager's cache or index left in the image.
    PackageCache,
    /// Files created in one layer and deleted in a later one.
    DeletedLater,
    /// Files a later layer copies again only to change their mode or owner.
    MetadataOnlyCopy,
    /// Files a later layer replaces with other content.
    Overwritten,
    /// The same content at several paths.
    Duplicate,
    /// A compiler, headers or other build toolchain in the final image.
    Toolchain,
    /// Files from the build context that a `.dockerignore` should keep out.
    Dockerignore,
    /// Files or directories anyone may write.
    WorldWritable,
    /// setuid or setgid executables.
    Setuid,
    /// Documentation, manual pages and translations in the final image.
    Docs,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Worth fixing.
    Medium,
    /// A large part of the image.
    High,
}

/// A problem with a concrete fix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// How much it matters.
    pub severity: Severity,
    /// The layer the bytes are in (or the files come from).
    pub layer: Option<usize>,
    /// The later layer that deletes, overwrites or re-copies them.
    pub later_layer: Option<usize>,
    /// The instruction of `layer`.
    pub instruction: Option<String>,
    /// The Dockerfile line of `layer`, when known.
    pub dockerfile_line: Option<u32>,
    /// The instruction of `later_layer`.
    pub later_instruction: Option<String>,
    /// Bytes that the fix saves (or, for permission findings, the bytes concerned).
    pub bytes: u64,
    /// Files concerned.
    pub files: u64,
    /// Up to 5 example paths, largest first.
    pub paths: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub fix: String,
}
