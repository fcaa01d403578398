//! From an image's manifest, config and layer streams to a [`Report`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::ops::Bound;

use rayon::prelude::*;
use serde::Deserialize;

use crate::findings;
use crate::model::*;
use crate::packages::PackageIndex;
use crate::sbom::{self, CollectedLayer, Collector, Inventory, Owners, SbomOptions};
use crate::scan::{self, Change, Kind, LayerScan, Limits, ScanError};

/// Why an image could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The manifest is not an image manifest.
    #[error("invalid manifest of {image}")]
    Manifest {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The config is not an image config.
    #[error("invalid config of {image}")]
    Config {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A layer blob could not be opened.
    #[error("cannot open layer {index} ({digest}) of {image}")]
    Open {
        /// The image.
        image: String,
        /// The layer position.
        index: usize,
        /// The layer digest.
        digest: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A layer could not be read.
    #[error("cannot analyse layer {index} of {image}")]
    Scan {
        /// The image.
        image: String,
        /// The layer position.
        index: usize,
        /// The cause.
        #[source]
        source: ScanError,
    },
    /// The worker threads could not be started.
    #[error("cannot start {threads} analysis threads")]
    Threads {
        /// How many.
        threads: usize,
        /// The cause.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

/// Opens the layer blobs of an image. Called from several threads at once, once per layer.
pub trait LayerSource: Sync {
    /// The blob of layer `index` (bottom = 0), compressed as stored.
    fn open(&self, index: usize) -> io::Result<Box<dyn Read + Send + '_>>;

    /// Wraps a layer's uncompressed tar stream before the analysis walks it, for checks of
    /// the caller's own: `rbuild report` follows the tar headers there, so that an extension
    /// header claiming a gigabyte is refused before the tar reader takes it whole. By
    /// default the stream is read as it is ([`Options::limits`] apply either way).
    fn check<'r>(&self, tar: Box<dyn Read + 'r>) -> Box<dyn Read + 'r> {
        tar
    }
}

/// An image to analyse.
#[derive(Clone, Copy)]
pub struct ImageInput<'a> {
    /// The name shown in the report.
    pub name: &'a str,
    /// The image id (the digest of its manifest or index), when known.
    pub id: Option<&'a str>,
    /// The image manifest (JSON).
    pub manifest: &'a [u8],
    /// The image config (JSON).
    pub config: &'a [u8],
    /// The number of bottom layers that belong to the base image, when the caller found the
    /// base image itself (from the `org.opencontainers.image.base.*` annotation) and checked
    /// that its layers are this image's first ones.
    pub base_layers: Option<usize>,
    /// The layer blobs, in manifest order.
    pub layers: &'a dyn LayerSource,
}

impl std::fmt::Debug for ImageInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageInput")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("base_layers", &self.base_layers)
            .finish_non_exhaustive()
    }
}

/// How to analyse.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many largest files, directories and duplicates to list.
    pub top: usize,
    /// Worker threads for reading layers (0: one per CPU).
    pub threads: usize,
    /// Smallest number of bytes worth a size finding.
    pub min_finding_bytes: u64,
    /// What one layer may hold; past it the analysis fails naming the layer.
    pub limits: Limits,
    /// Also read the package databases (as `rbuild sbom` does, in the same walk of the
    /// layers) and count the final bytes by package.
    pub packages: bool,
    /// The most bytes of package metadata kept from one layer; past it the report leaves
    /// the packages out with a warning naming the layer and the file.
    pub package_metadata_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            top: 20,
            threads: 0,
            min_finding_bytes: 64 * 1024,
            limits: Limits::default(),
            packages: true,
            package_metadata_bytes: SbomOptions::default().max_layer_metadata_bytes,
        }
    }
}

/// A file system entry as the layers above have left it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub layer: u32,
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub hash: Option<[u8; 32]>,
}

/// Why a file version is not in the final image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Hidden {
    /// Deleted by a whiteout, an opaque directory or an entry of another kind.
    Deleted,
    /// Replaced by other content.
    Overwritten,
    /// Replaced by the same content with other metadata (or none changed).
    MetadataOnly,
}

/// Bytes that one layer hides of another, for one reason.
#[derive(Debug, Clone, Default)]
pub(crate) struct HiddenBytes {
    pub bytes: u64,
    pub files: u64,
    /// Up to 5 (size, path), largest first.
    pub samples: Vec<(u64, Box<str>)>,
}

impl HiddenBytes {
    pub(crate) fn add(&mut self, size: u64, path: &str) {
        self.bytes += size;
        self.files += 1;
        if self.samples.len() < 5 || self.samples.last().is_some_and(|s| s.0 < size) {
            let at = self.samples.partition_point(|s| s.0 >= size);
            self.samples.insert(at, (size, path.into()));
            self.samples.truncate(5);
        }
    }
}

/// An analysed image: the report plus the final file system, for [`diff`](crate::diff).
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The report.
    pub report: Report,
    /// The final file system: path -> (kind, size, layer, content hash).
    pub(crate) files: BTreeMap<Box<str>, Node>,
    /// Every package with the final bytes it owns (the report lists the largest only);
    /// empty when packages were not read.
    pub(crate) packages: Vec<PackageSize>,
    /// The package (index in `packages`) that owns each listed path.
    pub(crate) owners: Owners,
}

impl Analysis {
    /// The final file system's regular files as (path, size, layer), in path order.
    pub fn final_files(&self) -> impl Iterator<Item = (&str, u64, usize)> {
        self.files
            .iter()
            .filter(|(_, n)| n.kind == Kind::File)
            .map(|(p, n)| (&**p, n.size, n.layer as usize))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    #[serde(default)]
    pub(crate) layers: Vec<DescriptorJson>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DescriptorJson {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) digest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Config {
    pub(crate) created: Option<String>,
    pub(crate) architecture: Option<String>,
    pub(crate) os: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default)]
    pub(crate) history: Vec<History>,
}

#[derive(Debug, Default, Deserialize)]
struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct History {
    created: Option<String>,
    pub(crate) created_by: Option<String>,
    pub(crate) comment: Option<String>,
    #[serde(default)]
    pub(crate) empty_layer: bool,
}

/// The annotation (or label) naming the base image.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The annotation (or label) giving the base image's manifest digest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// Reads the base-image annotations of a manifest, then the labels of its config: returns
/// (`base.name`, `base.digest`). Callers use it to look the base image up.
pub fn base_annotations(manifest: &[u8], config: &[u8]) -> (Option<String>, Option<String>) {
    let manifest: Option<Manifest> = serde_json::from_slice(manifest).ok();
    let config: Option<Config> = serde_json::from_slice(config).ok();
    let labels = config
        .and_then(|c| c.config)
        .and_then(|c| c.labels)
        .unwrap_or_default();
    let annotations = manifest.map(|m| m.annotations).unwrap_or_default();
    let get = |key: &str| annotations.get(key).or(labels.get(key)).cloned();
    (get(BASE_NAME), get(BASE_DIGEST))
}

/// `created_by` as the Dockerfile instruction it stands for.
pub fn instruction(created_by: &str) -> String {
    let text = created_by.trim();
    let text = text.strip_suffix("# buildkit").unwrap_or(text).trim_end();
    if let Some(rest) = text.strip_prefix("/bin/sh -c #(nop)") {
        return rest.trim().to_string();
    }
    if let Some(rest) = text.strip_prefix("/bin/sh -c ") {
        return format!("RUN {}", rest.trim());
    }
    if let Some(rest) = text.strip_prefix("|") {
        // `|N ARG=... /bin/sh -c cmd`: a RUN with build args.
        if let Some(at) = rest.find("/bin/sh -c ") {
            return format!("RUN {}", rest[at + "/bin/sh -c ".len()..].trim());
        }
    }
    text.to_string()
}

/// The Dockerfile line recorded in a history comment or `created_by`: `Dockerfile:12`
/// (any file name ending in `Dockerfile` or `.dockerfile`, then `:LINE`).
pub fn dockerfile_line(history_text: &str) -> Option<u32> {
    for (at, _) in history_text.match_indices("ockerfile:") {
        let digits: String = history_text[at + "ockerfile:".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(line) = digits.parse() {
            return Some(line);
        }
    }
    None
}

fn is_base_boundary(entry: &History) -> bool {
    let text = instruction(entry.created_by.as_deref().unwrap_or(""));
    entry.empty_layer && (text.starts_with("CMD") || text.starts_with("ENTRYPOINT"))
}

/// The history heuristic: the base image ends at the last `CMD`/`ENTRYPOINT` (which
/// creates no layer) that has layers both before and after it. Returns the number of base
/// layers, or `None` when no such entry exists.
pub(crate) fn base_from_history(history: &[History]) -> Option<usize> {
    let mut layers_before = Vec::with_capacity(history.len());
    let mut count = 0;
    for entry in history {
        layers_before.push(count);
        if !entry.empty_layer {
            count += 1;
        }
    }
    history
        .iter()
        .enumerate()
        .rev()
        .find(|(i, entry)| {
            is_base_boundary(entry) && layers_before[*i] > 0 && layers_before[*i] < count
        })
        .map(|(i, _)| layers_before[i])
}

/// Removes `path` (when `with_self`) and everything under it; "" is the root.
pub(crate) fn take_subtree<N>(
    state: &mut BTreeMap<Box<str>, N>,
    path: &str,
    with_self: bool,
) -> Vec<(Box<str>, N)> {
    let mut taken = Vec::new();
    if path.is_empty() {
        taken.extend(std::mem::take(state));
        return taken;
    }
    if with_self && let Some(node) = state.remove(path) {
        taken.push((path.into(), node));
    }
    let lo = format!("{path}/");
    let hi = format!("{path}0"); // '0' is the byte after '/'
    let keys: Vec<Box<str>> = state
        .range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        if let Some(node) = state.remove(&key) {
            taken.push((key, node));
        }
    }
    taken
}

/// What a report says of the image itself.
pub(crate) fn image_info(image: &ImageInput<'_>, config: &Config) -> ImageInfo {
    ImageInfo {
        name: image.name.to_string(),
        id: image.id.map(str::to_string),
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        created: config.created.clone(),
    }
}

/// Parses an image's manifest and config.
pub(crate) fn parse_image(image: &ImageInput<'_>) -> Result<(Manifest, Config), AnalyzeError> {
    let manifest: Manifest =
        serde_json::from_slice(image.manifest).map_err(|source| AnalyzeError::Manifest {
            image: image.name.to_string(),
            source,
        })?;
    let config: Config =
        serde_json::from_slice(image.config).map_err(|source| AnalyzeError::Config {
            image: image.name.to_string(),
            source,
        })?;
    Ok((manifest, config))
}

/// Reads every layer of an image once, on a pool of `threads` threads (0: one per CPU),
/// larger blobs first: `read` gets a layer's digest (its position when it has none, for
/// messages) and blob, and returns what it keeps of it. The results come in layer order.
pub(crate) fn read_layers<T: Send>(
    image: &ImageInput<'_>,
    manifest: &Manifest,
    threads: usize,
    read: impl Fn(usize, &str, Box<dyn Read + Send + '_>) -> Result<T, ScanError> + Sync,
) -> Result<Vec<T>, AnalyzeError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|source| AnalyzeError::Threads { threads, source })?;
    let count = manifest.layers.len();
    // Larger blobs first, so that one big layer does not start last.
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(manifest.layers[i].size));
    let mut read_back: Vec<(usize, T)> = pool.install(|| {
        order
            .par_iter()
            .map(|&index| {
                let digest = manifest.layers[index]
                    .digest
                    .clone()
                    .unwrap_or_else(|| format!("#{index}"));
                let reader = image
                    .layers
                    .open(index)
                    .map_err(|source| AnalyzeError::Open {
                        image: image.name.to_string(),
                        index,
                        digest: digest.clone(),
                        source,
                    })?;
                let kept = read(index, &digest, reader).map_err(|source| AnalyzeError::Scan {
                    image: image.name.to_string(),
                    index,
                    source,
                })?;
                Ok((index, kept))
            })
            .collect::<Result<Vec<_>, AnalyzeError>>()
    })?;
    read_back.sort_by_key(|(i, _)| *i);
    Ok(read_back.into_iter().map(|(_, kept)| kept).collect())
}

/// Analyses an image: reads every layer once (in parallel), replays them in order and
/// computes the report.
pub fn analyze(image: ImageInput<'_>, options: &Options) -> Result<Analysis, AnalyzeError> {
    let (manifest, config) = parse_image(&image)?;
    let sbom_options = SbomOptions {
        threads: options.threads,
        limits: options.limits,
        max_layer_metadata_bytes: options.package_metadata_bytes,
        ..SbomOptions::default()
    };
    let read = read_layers(&image, &manifest, options.threads, |_, digest, reader| {
        let mut changes = Vec::new();
        let mut collector = options.packages.then(|| Collector::new(&sbom_options));
        // Too much package metadata in the layer: the packages are left out, the sizes stand.
        let mut overflow: Option<String> = None;
        let (compressed_bytes, tar_bytes) = scan::walk_layer(
            reader,
            digest,
            &options.limits,
            |tar| image.layers.check(tar),
            |item| match collector.as_mut().filter(|_| overflow.is_none()) {
                Some(collector) => scan::record(
                    item,
                    &mut changes,
                    Some(&mut |walked| match collector.visit(walked) {
                        Err(error) if error.kind() == io::ErrorKind::OutOfMemory => {
                            overflow = Some(format!("layer {digest}: {error}"));
                            Ok(())
                        }
                        other => other,
                    }),
                ),
                None => scan::record(item, &mut changes, None),
            },
        )?;
        let scan = LayerScan {
            changes,
            compressed_bytes,
            tar_bytes,
        };
        let collected = match overflow {
            Some(overflow) => Err(overflow),
            None => Ok(collector.map(Collector::finish)),
        };
        Ok((scan, collected))
    })?;
    let (scans, collected): (Vec<LayerScan>, Vec<Result<Option<CollectedLayer>, String>>) =
        read.into_iter().unzip();
    let inventory = match collected.into_iter().collect::<Result<Option<Vec<_>>, _>>() {
        Ok(Some(layers)) => {
            match sbom::from_layers(&image, &manifest, &config, layers, &sbom_options) {
                Ok(found) => Some(found),
                Err(error) => {
                    tracing::warn!("{}: packages not counted: {error}", image.name);
                    None
                }
            }
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!("{}: packages not counted: {error}", image.name);
            None
        }
    };
    Ok(build(image, options, &manifest, &config, &scans, inventory))
}

fn build(
    image: ImageInput<'_>,
    options: &Options,
    manifest: &Manifest,
    config: &Config,
    scans: &[LayerScan],
    inventory: Option<(Inventory, Owners)>,
) -> Analysis {
    // History entries that made layers, in order.
    let layer_history: Vec<&History> = config.history.iter().filter(|h| !h.empty_layer).collect();
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();

    let (base_name, base_digest) = base_annotations(image.manifest, image.config);
    let (base_source, base_layers) = match image.base_layers {
        Some(n) => (BaseSource::Annotation, n.min(scans.len())),
        None => match base_from_history(&config.history) {
            Some(n) => (BaseSource::History, n.min(scans.len())),
            None => (BaseSource::Unknown, 0),
        },
    };

    let mut layers: Vec<LayerReport> = Vec::with_capacity(scans.len());
    let mut state: BTreeMap<Box<str>, Node> = BTreeMap::new();
    let mut hidden: BTreeMap<(u32, u32, Hidden), HiddenBytes> = BTreeMap::new();

    for (index, scan) in scans.iter().enumerate() {
        let li = index as u32;
        let desc = manifest.layers.get(index);
        let history = layer_history.get(index).copied();
        let created_by = history.and_then(|h| h.created_by.clone());
        let comment = history.and_then(|h| h.comment.clone());
        let line = comment
            .as_deref()
            .and_then(dockerfile_line)
            .or_else(|| created_by.as_deref().and_then(dockerfile_line));
        let mut layer = LayerReport {
            index,
            digest: desc.and_then(|d| d.digest.clone()),
            diff_id: diff_ids.get(index).cloned(),
            media_type: desc.and_then(|d| d.media_type.clone()),
            base: index < base_layers,
            compressed_bytes: desc.map_or(scan.compressed_bytes, |d| {
                if d.size > 0 {
                    d.size
                } else {
                    scan.compressed_bytes
                }
            }),
            uncompressed_bytes: scan.tar_bytes,
            entries: scan.changes.len() as u64,
            files: 0,
            shipped_bytes: 0,
            added_files: 0,
            added_bytes: 0,
            modified_files: 0,
            modified_bytes: 0,
            removed_files: 0,
            removed_bytes: 0,
            final_bytes: 0,
            shadowed_bytes: 0,
            instruction: created_by.as_deref().map(instruction),
            created_by,
            comment,
            created: history.and_then(|h| h.created.clone()),
            dockerfile_line: line,
        };
        let remove = |layer: &mut LayerReport,
                      hidden: &mut BTreeMap<(u32, u32, Hidden), HiddenBytes>,
                      taken: Vec<(Box<str>, Node)>| {
            for (path, node) in taken {
                if node.kind == Kind::File {
                    layer.removed_files += 1;
                    layer.removed_bytes += node.size;
                    hidden
                        .entry((node.layer, li, Hidden::Deleted))
                        .or_default()
                        .add(node.size, &path);
                }
            }
        };
        // Whiteouts and opaque markers apply to the lower layers only, whatever their place
        // in the tar: apply them before this layer's own entries.
        for change in &scan.changes {
            match change {
                Change::Whiteout(path) => {
                    let taken = take_subtree(&mut state, path, true);
                    remove(&mut layer, &mut hidden, taken);
                }
                Change::Opaque(dir) => {
                    let taken = take_subtree(&mut state, dir, false);
                    remove(&mut layer, &mut hidden, taken);
                }
                Change::Entry(_) => {}
            }
        }
        for change in &scan.changes {
            let Change::Entry(entry) = change else {
                continue;
            };
            let node = Node {
                layer: li,
                kind: entry.kind,
                size: entry.size,
                mode: entry.mode,
                hash: entry.hash,
            };
            if entry.kind == Kind::File {
                layer.files += 1;
                layer.shipped_bytes += entry.size;
            }
            let existing = state.get(&*entry.path).copied();
            if entry.kind != Kind::Dir {
                // A non-directory replaces a directory (listed or implied by paths under
                // it): the content goes too.
                let taken = take_subtree(&mut state, &entry.path, false);
                remove(&mut layer, &mut hidden, taken);
            }
            match existing {
                Some(old) if old.kind == Kind::File && entry.kind == Kind::File => {
                    let reason = if old.hash == entry.hash && old.size == entry.size {
                        Hidden::MetadataOnly
                    } else {
                        Hidden::Overwritten
                    };
                    hidden
                        .entry((old.layer, li, reason))
                        .or_default()
                        .add(old.size, &entry.path);
                }
                Some(old) if old.kind == Kind::File => {
                    // A file replaced by another kind of entry.
                    layer.removed_files += 1;
                    layer.removed_bytes += old.size;
                    hidden
                        .entry((old.layer, li, Hidden::Deleted))
                        .or_default()
                        .add(old.size, &entry.path);
                }
                _ => {}
            }
            if entry.kind == Kind::File {
                if existing.is_some() {
                    layer.modified_files += 1;
                    layer.modified_bytes += entry.size;
                } else {
                    layer.added_files += 1;
                    layer.added_bytes += entry.size;
                }
            }
            state.insert(entry.path.clone(), node);
        }
        layers.push(layer);
    }

    // The final file system.
    let mut final_bytes = 0u64;
    let mut final_files = 0u64;
    let mut dirs: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut by_hash: HashMap<[u8; 32], Vec<(&str, u64, u32)>> = HashMap::new();
    for (path, node) in &state {
        if node.kind != Kind::File {
            continue;
        }
        final_bytes += node.size;
        final_files += 1;
        layers[node.layer as usize].final_bytes += node.size;
        for (at, _) in path.match_indices('/') {
            let dir = dirs.entry(&path[..at]).or_default();
            dir.0 += node.size;
            dir.1 += 1;
        }
        if let Some(hash) = node.hash {
            by_hash
                .entry(hash)
                .or_default()
                .push((path, node.size, node.layer));
        }
    }
    for layer in &mut layers {
        layer.shadowed_bytes = layer.shipped_bytes - layer.final_bytes;
    }
    let shipped_bytes: u64 = layers.iter().map(|l| l.shipped_bytes).sum();

    let mut largest_files: Vec<PathSize> = {
        let mut files: Vec<(&str, &Node)> = state
            .iter()
            .filter(|(_, n)| n.kind == Kind::File)
            .map(|(p, n)| (&**p, n))
            .collect();
        files.sort_by(|a, b| b.1.size.cmp(&a.1.size).then(a.0.cmp(b.0)));
        files
            .into_iter()
            .take(options.top)
            .map(|(p, n)| PathSize {
                path: format!("/{p}"),
                bytes: n.size,
                layer: n.layer as usize,
            })
            .collect()
    };
    largest_files.truncate(options.top);
    let mut largest_dirs: Vec<DirSize> = dirs
        .iter()
        .map(|(p, (bytes, files))| DirSize {
            path: format!("/{p}"),
            bytes: *bytes,
            files: *files,
        })
        .collect();
    largest_dirs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.path.cmp(&b.path)));
    largest_dirs.truncate(options.top);

    let mut duplicate_bytes = 0u64;
    let mut duplicates: Vec<Duplicate> = Vec::new();
    for (hash, mut copies) in by_hash {
        if copies.len() < 2 {
            continue;
        }
        copies.sort();
        let size = copies[0].1;
        let wasted = size * (copies.len() as u64 - 1);
        duplicate_bytes += wasted;
        duplicates.push(Duplicate {
            blake3: hex(&hash),
            bytes: size,
            copies: copies.len() as u64,
            wasted_bytes: wasted,
            paths: copies
                .iter()
                .take(10)
                .map(|(p, s, l)| PathSize {
                    path: format!("/{p}"),
                    bytes: *s,
                    layer: *l as usize,
                })
                .collect(),
        });
    }
    duplicates.sort_by(|a, b| {
        b.wasted_bytes
            .cmp(&a.wasted_bytes)
            .then(a.paths[0].path.cmp(&b.paths[0].path))
    });

    let shadowed_bytes = shipped_bytes - final_bytes;
    let totals = Totals {
        layers: layers.len(),
        compressed_bytes: layers.iter().map(|l| l.compressed_bytes).sum(),
        uncompressed_bytes: layers.iter().map(|l| l.uncompressed_bytes).sum(),
        shipped_bytes,
        final_bytes,
        final_files,
        final_entries: state.len() as u64,
        shadowed_bytes,
        duplicate_bytes,
        wasted_bytes: shadowed_bytes + duplicate_bytes,
        efficiency: if shipped_bytes == 0 {
            1.0
        } else {
            final_bytes as f64 / shipped_bytes as f64
        },
    };
    let base = BaseInfo {
        source: base_source,
        name: base_name,
        digest: base_digest,
        layers: base_layers,
        compressed_bytes: layers[..base_layers]
            .iter()
            .map(|l| l.compressed_bytes)
            .sum(),
        uncompressed_bytes: layers[..base_layers]
            .iter()
            .map(|l| l.uncompressed_bytes)
            .sum(),
    };
    let packages =
        inventory.map(|(inventory, owners)| PackageIndex::new(inventory, owners, &state, &layers));
    let findings = findings::find(&findings::Inputs {
        layers: &layers,
        scans,
        state: &state,
        hidden: &hidden,
        duplicates: &duplicates,
        final_bytes,
        options,
        packages: packages.as_ref(),
    });
    duplicates.truncate(options.top);
    let report = Report {
        schema: SCHEMA_VERSION,
        image: image_info(&image, config),
        totals,
        base,
        layers,
        largest_files,
        largest_dirs,
        duplicates,
        findings,
        packages: packages
            .as_ref()
            .map(|p| p.section(final_bytes, options.top)),
    };
    Analysis {
        report,
        files: state,
        owners: packages
            .as_ref()
            .map(|p| p.owners.clone())
            .unwrap_or_default(),
        packages: packages.map(|p| p.sizes).unwrap_or_default(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(created_by: &str, empty: bool) -> History {
        History {
            created: None,
            created_by: Some(created_by.into()),
            comment: None,
            empty_layer: empty,
        }
    }

    #[test]
    fn instructions_from_created_by() {
        assert_eq!(
            instruction("/bin/sh -c #(nop)  CMD [\"bash\"]"),
            "CMD [\"bash\"]"
        );
        assert_eq!(
            instruction("/bin/sh -c apt-get update"),
            "RUN apt-get update"
        );
        assert_eq!(
            instruction("RUN /bin/sh -c make # buildkit"),
            "RUN /bin/sh -c make"
        );
        assert_eq!(instruction("|1 V=2 /bin/sh -c echo $V"), "RUN echo $V");
        assert_eq!(dockerfile_line("Dockerfile:12"), Some(12));
        assert_eq!(dockerfile_line("build/app.dockerfile:7 COPY"), Some(7));
        assert_eq!(dockerfile_line("buildkit.dockerfile.v0"), None);
    }

    #[test]
    fn base_ends_at_the_last_cmd_with_layers_after_it() {
        let history = vec![
            h("/bin/sh -c #(nop) ADD file:abc in /", false),
            h("/bin/sh -c #(nop)  CMD [\"bash\"]", true),
            h("RUN /bin/sh -c apt-get update # buildkit", false),
            h("/bin/sh -c #(nop)  CMD [\"python3\"]", true),
            h("COPY . /app # buildkit", false),
            h("RUN /bin/sh -c make # buildkit", false),
            h("CMD [\"/app/run\"]", true),
        ];
        assert_eq!(base_from_history(&history), Some(2));
        // A CMD at the end only (the image's own) is no boundary.
        assert_eq!(base_from_history(&history[..1]), None);
        let own = vec![h("COPY . /", false), h("CMD [\"x\"]", true)];
        assert_eq!(base_from_history(&own), None);
    }
}
