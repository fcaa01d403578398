//! The package inventory of an image (`rbuild sbom`): what its package databases say is
//! installed, read from the image's final file system without running anything in it.
//!
//! The layers are streamed once, in parallel, as for the size analysis; only the files that
//! hold package metadata are kept, within [`SbomOptions`]' bounds, and the final file system
//! is replayed from the layers (whiteouts and opaque directories included) keeping which layer
//! last wrote each path. Symbolic links are followed with the image as the root: `..` stops at
//! `/` and an absolute target names a path of the image, so nothing outside it is ever read
//! (nothing is read from disk at all: only the layer streams).
//!
//! What is read:
//!
//! - dpkg (Debian, Ubuntu): `var/lib/dpkg/status` and `var/lib/dpkg/status.d/*` (distroless),
//!   packages whose `Status` is `install ok installed`; their files from
//!   `var/lib/dpkg/info/NAME.list` (or `NAME:ARCH.list`); their licences from the `License:`
//!   fields of `usr/share/doc/NAME/copyright` when it is machine-readable (DEP-5);
//! - apk (Alpine): `lib/apk/db/installed` (`P:`, `V:`, `A:`, `L:`, `o:`, `F:`/`R:`);
//! - rpm (Fedora, RHEL and its rebuilds, Amazon Linux): `rpmdb.sqlite` (rpm 4.16 and later,
//!   with its `-wal` file) or the Berkeley DB hash file `Packages`, in `var/lib/rpm` or
//!   `usr/lib/sysimage/rpm`: each row's header blob gives the name, `[EPOCH:]VERSION-RELEASE`,
//!   architecture, licence, source RPM and file list (`gpg-pubkey` entries are skipped). These
//!   files are kept up to 256 MiB; see `sbom::rpm` for how the untrusted SQLite file is opened;
//! - Python: `*.dist-info/METADATA` with `RECORD`, and `*.egg-info/PKG-INFO`;
//! - npm: `node_modules/NAME/package.json` and `node_modules/@SCOPE/NAME/package.json`, and
//!   the packages an application's `package-lock.json`/`npm-shrinkwrap.json` names that are
//!   not installed beside it (no development dependencies);
//! - Go: the build information (`\xff Go buildinf:`, Go 1.18 and later) of executables: the
//!   main module and its dependencies, each a package owned by the binary.
//! - Java: archives (`*.jar`, `*.war`, `*.ear`, `*.jpi`, `*.hpi`) anywhere, read as their layer
//!   streams (up to 128 MiB): one package per `META-INF/maven/GROUP/ARTIFACT/pom.properties`,
//!   else the `MANIFEST.MF` main attributes, else the file name; the archives inside one are
//!   read one level deep; each package owns the archive (see [`java`]);
//! - Rust: the crates of executables built with `cargo auditable` (their `.dep-v0` section,
//!   read from the executable's bytes held as it streams, up to 64 MiB), build dependencies
//!   left out, each a package owned by the binary (see [`rust`]).
//!
//! Each package records the layer that added it: for a database holding many packages (dpkg's
//! `status`, apk's `installed`, rpm's database) the lowest layer from which every later version of the
//! database still lists the package as it is at the top; for a file per package, the layer
//! that wrote the file. The layer's history entry gives its instruction and Dockerfile line.
//! Regular files that no package lists are counted as unowned.
//!
//! [`render`] writes the inventory as a table, as SPDX 2.3 JSON and as CycloneDX 1.5 JSON,
//! deterministically: sorted, and dated by the image's `created` time.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;

use crate::ImageInput;
use crate::analyze::{
    AnalyzeError, Config, Manifest, dockerfile_line, image_info, instruction, parse_image,
    read_layers,
};
use crate::model::ImageInfo;
use crate::scan::{self, Kind, Limits};

mod apk;
mod dpkg;
mod fs;
mod java;
mod lang;
pub mod license;
pub mod render;
mod rpm;
mod rust;

/// Why an inventory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// The image's manifest, config or a layer could not be read (or a layer held more
    /// package metadata than allowed).
    #[error(transparent)]
    Image(#[from] AnalyzeError),
    /// A layer's tar stream handed to [`scan_layer`] could not be read.
    #[error("cannot read the packages of layer {layer}")]
    Layer {
        /// The layer.
        layer: String,
        /// The cause.
        #[source]
        source: scan::ScanError,
    },
    /// A package database file is larger than [`SbomOptions::max_database_bytes`].
    #[error("/{path} (written by {layer}) is {bytes} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The file.
        path: String,
        /// The layer that wrote it.
        layer: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The image lists more packages than [`SbomOptions::max_packages`].
    #[error("/{path} (written by {layer}) takes the image past {limit} packages")]
    TooManyPackages {
        /// The database file where the limit was passed.
        path: String,
        /// The layer that wrote it.
        layer: String,
        /// The limit.
        limit: usize,
    },
    /// A binary package database (rpm's) cannot be read.
    #[error("/{path} (written by {layer}): {message}")]
    Database {
        /// The file.
        path: String,
        /// The layer that wrote it.
        layer: String,
        /// What is wrong (the record, page or SQLite error).
        message: String,
    },
    /// A package database entry is malformed.
    #[error("/{path} (written by {layer}), line {line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The layer that wrote it.
        layer: String,
        /// The line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The bounds of an inventory; the inputs are untrusted.
#[derive(Debug, Clone)]
pub struct SbomOptions {
    /// Worker threads for reading layers (0: one per CPU).
    pub threads: usize,
    /// What one layer may hold.
    pub limits: Limits,
    /// The largest package database file read (dpkg's `status`, a `.list`, apk's
    /// `installed`, a `METADATA`, a `package.json`; rpm's database may be up to 256 MiB, or
    /// this if larger); a larger one in the final file system is an error naming it and its
    /// layer.
    pub max_database_bytes: u64,
    /// The most bytes of package metadata kept from one layer.
    pub max_layer_metadata_bytes: u64,
    /// The most packages in one image.
    pub max_packages: usize,
    /// How many unowned files to list (all are counted).
    pub unowned_listed: usize,
}

impl Default for SbomOptions {
    fn default() -> SbomOptions {
        SbomOptions {
            threads: 0,
            limits: Limits::default(),
            max_database_bytes: 32 << 20,
            max_layer_metadata_bytes: 512 << 20,
            max_packages: 100_000,
            unowned_listed: 100,
        }
    }
}

/// Which package manager a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// dpkg (Debian, Ubuntu).
    Deb,
    /// apk (Alpine).
    Apk,
    /// Python distributions.
    Python,
    /// npm packages.
    Npm,
    /// Go modules (from a Go binary's build information).
    Go,
    /// rpm (Fedora, RHEL and its rebuilds, Amazon Linux, openSUSE).
    Rpm,
    /// Java archives (Maven artifacts).
    Java,
    /// Rust crates (from the `cargo auditable` data of an executable).
    Cargo,
}

impl Ecosystem {
    /// The short name (`deb`, `apk`, `python`, `npm`, `go`, `rpm`, `java`, `cargo`).
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Java => "java",
            Ecosystem::Cargo => "cargo",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    /// Where it comes from.
    pub ecosystem: Ecosystem,
    /// Its name.
    pub name: String,
    /// Its version, as the database gives it.
    pub version: String,
    /// Its architecture (dpkg, apk).
    pub architecture: Option<String>,
    /// The source package (dpkg's `Source`, apk's origin) when it differs from the name; for
    /// a Go module, the Go version of the binary.
    pub source: Option<String>,
    /// Its package URL.
    pub purl: String,
    /// The licences it declares, as written (sorted, distinct).
    pub licenses: Vec<String>,
    /// The paths it owns, absolute, as its database lists them (sorted).
    pub files: Vec<String>,
    /// The database file (or entry) it was read from, absolute.
    pub database: String,
    /// The layer that added it (bottom = 0).
    pub layer: usize,
}

/// A layer of the image, as its history tells it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// Position, bottom = 0.
    pub index: usize,
    /// The blob digest.
    pub digest: Option<String>,
    /// The instruction that made it (from the history's `created_by`).
    pub instruction: Option<String>,
    /// The Dockerfile line (from the history's `comment` or `created_by`).
    pub dockerfile_line: Option<u32>,
}

/// The distribution `/etc/os-release` names.
#[derive(Debug, Clone, Serialize)]
pub struct Distro {
    /// `ID`.
    pub id: String,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// The inventory of an image: what `rbuild sbom --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The image.
    pub image: ImageInfo,
    /// Its distribution, when it has an os-release.
    pub distro: Option<Distro>,
    /// Its layers.
    pub layers: Vec<LayerInfo>,
    /// The packages, sorted by ecosystem, name, version, architecture and database.
    pub packages: Vec<Package>,
    /// Regular files in the final file system.
    pub files: u64,
    /// Regular files no package lists.
    pub unowned_files: u64,
    /// The first of them (up to [`SbomOptions::unowned_listed`]), absolute, in path order.
    pub unowned: Vec<String>,
}

impl Inventory {
    /// The layer a package was added by.
    pub fn layer(&self, package: &Package) -> Option<&LayerInfo> {
        self.layers.get(package.layer)
    }
}

/// What the readers of package databases share.
pub(crate) struct Ctx<'a> {
    pub fs: &'a fs::Rootfs,
    pub layers: &'a [LayerInfo],
    pub distro: Option<&'a Distro>,
    pub options: &'a SbomOptions,
}

impl Ctx<'_> {
    /// A layer for messages: `layer 3 (sha256:...)`.
    pub(crate) fn layer_name(&self, layer: u32) -> String {
        match self
            .layers
            .get(layer as usize)
            .and_then(|l| l.digest.as_deref())
        {
            Some(digest) => format!("layer {layer} ({digest})"),
            None => format!("layer {layer}"),
        }
    }

    /// The content of a database file of the final file system (`real`: a resolved path),
    /// or `None` when it is missing or not a regular file; a file past the limit is an error.
    pub(crate) fn read(&self, real: &str) -> Result<Option<(&[u8], u32)>, SbomError> {
        let Some(node) = self.fs.nodes.get(real) else {
            return Ok(None);
        };
        if node.kind != Kind::File {
            return Ok(None);
        }
        match node.content.as_deref() {
            Some(fs::Captured::Bytes(bytes) | fs::Captured::Go(bytes)) => {
                Ok(Some((bytes, node.layer)))
            }
            Some(fs::Captured::Java(_) | fs::Captured::Rust(_)) => Ok(None),
            Some(fs::Captured::TooLarge(bytes)) => Err(SbomError::TooLarge {
                path: real.to_string(),
                layer: self.layer_name(node.layer),
                bytes: *bytes,
                limit: self.options.max_database_bytes,
            }),
            None => {
                tracing::warn!(
                    "/{real} (written by {}) is not at a place package databases are read from: skipped",
                    self.layer_name(node.layer)
                );
                Ok(None)
            }
        }
    }

    /// Every version of a database file holding many packages, bottom to top, as the set of
    /// package keys `parse` finds in it (`None`: a version too large to have been kept).
    pub(crate) fn versions<K: Hash + Eq>(
        &self,
        real: &str,
        parse: impl Fn(&str) -> HashSet<K>,
    ) -> Vec<(u32, Option<HashSet<K>>)> {
        let Some(versions) = self.fs.versions.get(real) else {
            return Vec::new();
        };
        versions
            .iter()
            .map(|(li, content)| match &**content {
                fs::Captured::Bytes(bytes) | fs::Captured::Go(bytes) => {
                    (*li, Some(parse(&String::from_utf8_lossy(bytes))))
                }
                _ => (*li, None),
            })
            .collect()
    }
}

/// The layer that added a package of a database file holding many packages: the lowest
/// layer from which every version of the file up to `top` (the final one's layer) lists it.
pub(crate) fn added_by<K: Hash + Eq>(
    versions: &[(u32, Option<HashSet<K>>)],
    top: u32,
    key: &K,
) -> u32 {
    let mut layer = top;
    for (li, keys) in versions.iter().rev() {
        if *li > top {
            continue;
        }
        match keys {
            Some(keys) if keys.contains(key) => layer = *li,
            _ => break,
        }
    }
    layer
}

/// Lines of a control file (dpkg's status, Python's METADATA) as paragraphs of fields:
/// `(first line, [(field, value)])`; continuation lines (starting with a space or a tab) are
/// joined to the field's value with a newline. Lines before the first field of a paragraph
/// that are not fields are reported as (line, text) in the error list.
pub(crate) fn paragraphs(text: &str) -> Vec<(usize, Vec<(String, String)>)> {
    let mut out: Vec<(usize, Vec<(String, String)>)> = Vec::new();
    let mut current: Option<(usize, Vec<(String, String)>)> = None;
    for (at, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if let Some(p) = current.take() {
                out.push(p);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, fields)) = current.as_mut()
                && let Some((_, value)) = fields.last_mut()
            {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.trim().to_string(), v.trim().to_string()),
            None => (line.trim().to_string(), String::new()),
        };
        current
            .get_or_insert_with(|| (at + 1, Vec::new()))
            .1
            .push((field, value));
    }
    if let Some(p) = current {
        out.push(p);
    }
    out
}

/// The value of a field in a paragraph (field names compare without case).
pub(crate) fn field<'p>(fields: &'p [(String, String)], name: &str) -> Option<&'p str> {
    fields
        .iter()
        .find(|(f, _)| f.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Percent-encodes a package URL component: everything but ASCII letters, digits and
/// `.-_~` (and `/` when `slash`).
pub(crate) fn purl_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"._-~".contains(&b) || (slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Joins a path a database lists (absolute, or relative to `base`) to a path of the image:
/// `..` is resolved lexically. `None` when it would climb above the root (a relative path:
/// above the first component of `base`), or when nothing is left.
pub(crate) fn join_listed(base: &str, listed: &str) -> Option<String> {
    let mut parts: Vec<&str> = if listed.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|c| !c.is_empty()).collect()
    };
    let floor = parts.len().min(if listed.starts_with('/') { 0 } else { 1 });
    for part in listed.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.len() <= floor {
                    return None;
                }
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Makes the inventory of an image.
pub fn inventory(image: ImageInput<'_>, options: &SbomOptions) -> Result<Inventory, SbomError> {
    inventory_with(image, options, &|_| None)
}

/// What the inventory keeps of one layer, read once (while a build unpacks the layer, say)
/// for later inventories of images holding it.
#[derive(Debug, Clone)]
pub struct ScannedLayer(Arc<CollectedLayer>);

/// Reads one layer's uncompressed tar stream as [`inventory`] reads a layer blob: `name`
/// names it in errors.
pub fn scan_layer(
    tar: impl Read,
    name: &str,
    options: &SbomOptions,
) -> Result<ScannedLayer, SbomError> {
    let mut layer = Collector::new(options);
    scan::walk_layer(
        tar,
        name,
        &options.limits,
        |tar| tar,
        |item| layer.visit(item),
    )
    .map_err(|source| SbomError::Layer {
        layer: name.to_string(),
        source,
    })?;
    Ok(ScannedLayer(Arc::new(layer.finish())))
}

/// [`inventory`], taking the layers `known` gives (by position, bottom = 0) from an earlier
/// [`scan_layer`] instead of reading their blobs.
pub fn inventory_with(
    image: ImageInput<'_>,
    options: &SbomOptions,
    known: &(dyn Fn(usize) -> Option<ScannedLayer> + Sync),
) -> Result<Inventory, SbomError> {
    let (manifest, config) = parse_image(&image)?;
    let walked = read_layers(
        &image,
        &manifest,
        options.threads,
        |index, digest, reader| {
            if let Some(ScannedLayer(layer)) = known(index) {
                tracing::debug!("layer {index} ({digest}): packages taken from an earlier read");
                return Ok(Arc::unwrap_or_clone(layer));
            }
            let mut layer = Collector::new(options);
            scan::walk_layer(
                reader,
                digest,
                &options.limits,
                |tar| image.layers.check(tar),
                |item| layer.visit(item),
            )?;
            Ok(layer.finish())
        },
    )?;
    Ok(from_layers(&image, &manifest, &config, walked, options)?.0)
}

/// Keeps what the inventory needs of one layer while it streams: its changes, and the
/// content of the files that hold package metadata.
pub(crate) struct Collector {
    layer: fs::FsLayer,
    kept: u64,
    max_file: u64,
    max_layer_kept: u64,
}

/// What the inventory keeps of one layer.
pub(crate) type CollectedLayer = fs::FsLayer;

impl Collector {
    pub(crate) fn new(options: &SbomOptions) -> Collector {
        Collector {
            layer: fs::FsLayer::default(),
            kept: 0,
            max_file: options.max_database_bytes,
            max_layer_kept: options.max_layer_metadata_bytes,
        }
    }

    /// Takes one change of the layer; reads (part of) a file's content when it holds
    /// package metadata or may be an executable with build information.
    pub(crate) fn visit(&mut self, item: scan::Walked<'_>) -> std::io::Result<()> {
        fs::collect(
            item,
            &mut self.layer,
            &mut self.kept,
            self.max_file,
            self.max_layer_kept,
        )
    }

    pub(crate) fn finish(self) -> CollectedLayer {
        self.layer
    }
}

/// Which package owns each path of the final file system: the resolved path -> the index
/// in [`Inventory::packages`]. A path several packages list belongs to the first one read
/// (dpkg, apk, rpm, Python, npm, Go, Java, Rust; a Go binary to its main module, a Rust one
/// to its root crate).
pub(crate) type Owners = std::collections::HashMap<String, usize>;

/// The inventory from the layers [`Collector`] kept, with the owner of each listed path.
pub(crate) fn from_layers(
    image: &ImageInput<'_>,
    manifest: &Manifest,
    config: &Config,
    walked: Vec<CollectedLayer>,
    options: &SbomOptions,
) -> Result<(Inventory, Owners), SbomError> {
    let count = manifest.layers.len();
    let rootfs = fs::replay(walked);

    let history: Vec<_> = config.history.iter().filter(|h| !h.empty_layer).collect();
    let layers: Vec<LayerInfo> = (0..count)
        .map(|index| {
            let h = history.get(index);
            let created_by = h.and_then(|h| h.created_by.as_deref());
            let comment = h.and_then(|h| h.comment.as_deref());
            LayerInfo {
                index,
                digest: manifest.layers[index].digest.clone(),
                instruction: created_by.map(instruction),
                dockerfile_line: comment
                    .and_then(dockerfile_line)
                    .or_else(|| created_by.and_then(dockerfile_line)),
            }
        })
        .collect();
    let distro = os_release(&rootfs);
    let ctx = Ctx {
        fs: &rootfs,
        layers: &layers,
        distro: distro.as_ref(),
        options,
    };
    let mut packages = Vec::new();
    dpkg::read(&ctx, &mut packages)?;
    apk::read(&ctx, &mut packages)?;
    rpm::read(&ctx, &mut packages)?;
    lang::python(&ctx, &mut packages)?;
    lang::npm(&ctx, &mut packages)?;
    lang::npm_lock(&ctx, &mut packages)?;
    lang::go(&ctx, &mut packages)?;
    java::read(&ctx, &mut packages)?;
    rust::read(&ctx, &mut packages)?;
    let key = |p: &Package| {
        (
            p.ecosystem,
            p.name.clone(),
            p.version.clone(),
            p.architecture.clone(),
            p.database.clone(),
        )
    };
    let mut order: Vec<usize> = (0..packages.len()).collect();
    order.sort_by_cached_key(|&i| key(&packages[i]));
    let mut position = vec![0usize; packages.len()];
    for (at, &i) in order.iter().enumerate() {
        position[i] = at;
    }

    // Files no package lists; a listed path through a linked directory (`/bin/ls` on a
    // merged /usr) counts for the file it names.
    let mut owners: Owners = Owners::new();
    for (i, package) in packages.iter().enumerate() {
        for file in &package.files {
            let real = rootfs
                .resolve(file, false)
                .unwrap_or_else(|| file.trim_start_matches('/').to_string());
            owners.entry(real).or_insert(position[i]);
        }
    }
    let mut slots: Vec<Option<Package>> = packages.into_iter().map(Some).collect();
    let packages: Vec<Package> = order.iter().filter_map(|&i| slots[i].take()).collect();
    let mut files = 0u64;
    let mut unowned_files = 0u64;
    let mut unowned = Vec::new();
    for (path, node) in &rootfs.nodes {
        if node.kind != Kind::File {
            continue;
        }
        files += 1;
        if !owners.contains_key(&**path) {
            unowned_files += 1;
            if unowned.len() < options.unowned_listed {
                unowned.push(format!("/{path}"));
            }
        }
    }
    let inventory = Inventory {
        image: image_info(image, config),
        distro,
        layers,
        packages,
        files,
        unowned_files,
        unowned,
    };
    Ok((inventory, owners))
}

/// The distribution from `etc/os-release` (or `usr/lib/os-release`).
fn os_release(fs: &fs::Rootfs) -> Option<Distro> {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let (_, node) = fs.get(p)?;
            match node.content.as_deref()? {
                fs::Captured::Bytes(bytes) | fs::Captured::Go(bytes) => {
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                _ => None,
            }
        })?;
    let mut id = None;
    let mut version_id = None;
    let mut pretty_name = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .to_string();
        match key.trim() {
            "ID" => id = Some(value),
            "VERSION_ID" => version_id = Some(value),
            "PRETTY_NAME" => pretty_name = Some(value),
            _ => {}
        }
    }
    Some(Distro {
        id: id?,
        version_id,
        pretty_name,
    })
}

/// Distinct, sorted.
pub(crate) fn distinct(items: impl IntoIterator<Item = String>) -> Vec<String> {
    items
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_paths_stay_in_the_image() {
        assert_eq!(
            join_listed("", "/usr/bin/jq").as_deref(),
            Some("usr/bin/jq")
        );
        assert_eq!(
            join_listed("usr/lib/python3/dist-packages", "../../../bin/x").as_deref(),
            Some("usr/bin/x")
        );
        assert_eq!(join_listed("", "/../../etc/passwd"), None);
        assert_eq!(join_listed("a/b", "../../../etc/passwd"), None);
        assert_eq!(join_listed("", "/."), None);
    }

    #[test]
    fn control_paragraphs() {
        let text = "Package: a\nDescription: x\n more\n\nPackage: b\n";
        let p = paragraphs(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].0, 5);
        assert_eq!(field(&p[0].1, "description"), Some("x\nmore"));
        assert_eq!(purl_encode("1:2.0+b1", false), "1%3A2.0%2Bb1");
    }
}
