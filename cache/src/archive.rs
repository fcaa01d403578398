//! Image archives: `save` writes docker-archive or OCI-archive tarballs, `load` reads both.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use rbuild_compress::{Compression, Decoder};
use rbuild_tarlimits::{LimitError, Limits};
use serde_json::json;

use crate::blob::Expected;
use crate::store::{self, ANNOTATION_CONTAINERD_NAME, Store, StoreError, descriptor_digest};
use rbuild_digest::{Digest, Hasher, HashingReader};

/// Largest JSON document read from an archive.
const MAX_DOCUMENT: u64 = 64 << 20;

/// Why saving or loading an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive could not be read.
    #[error("cannot read archive {path}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive could not be written.
    #[error("cannot write {entry} to the archive")]
    Write {
        /// The entry being written.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive is neither a docker archive nor an OCI layout.
    #[error("{path} is neither a docker archive (manifest.json) nor an OCI archive (index.json)")]
    UnknownFormat {
        /// The archive.
        path: PathBuf,
    },
    /// A file the archive refers to is not in it.
    #[error("archive {path} has no entry {entry}")]
    MissingEntry {
        /// The archive.
        path: PathBuf,
        /// The missing entry.
        entry: String,
    },
    /// A JSON document of the archive does not parse or is too large.
    #[error("invalid {entry} in archive {path}: {reason}")]
    Invalid {
        /// The archive.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// A file's content does not match the digest it is known by.
    #[error("{entry} in archive {path} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The archive.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// The digest it must have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// Decompressed content passed [`Limits::max_layer_bytes`].
    #[error("{entry} in archive {path} is larger than {limit} bytes uncompressed")]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// The entry (a layer file, or `the archive` when the archive itself is compressed).
        entry: String,
        /// The limit.
        limit: u64,
    },
    /// The archive's own tar stream crossed one of the [`Limits`] (its entries and names).
    #[error("archive {path}: {limit}")]
    Limit {
        /// The archive.
        path: PathBuf,
        /// The limit it crossed.
        limit: LimitError,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A read error of the archive at `path`; the limit it crossed, when it is one.
fn read_error(path: &Path, source: io::Error) -> ArchiveError {
    match LimitError::of(&source) {
        Some(LimitError::TooLarge { limit }) => ArchiveError::TooLarge {
            path: path.to_path_buf(),
            entry: "the archive".into(),
            limit: *limit,
        },
        Some(limit) => ArchiveError::Limit {
            path: path.to_path_buf(),
            limit: limit.clone(),
        },
        None => ArchiveError::Read {
            path: path.to_path_buf(),
            source,
        },
    }
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// The two archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` / `docker load`: `manifest.json`, `repositories`, the config and layer
    /// files, beside the OCI layout of the same images (as docker's containerd store writes).
    Docker,
    /// An OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/`).
    Oci,
}

/// An image to save.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The full name (`docker.io/library/busybox:latest`), used in OCI archives; `None` for
    /// an image saved by id.
    pub name: Option<String>,
    /// The name docker shows (`busybox:latest`), used in docker archives.
    pub short_name: Option<String>,
    /// The manifest (or index) descriptor.
    pub descriptor: Descriptor,
}

/// An image an archive held, now in the store (not yet tagged).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The names the archive gives it, as written there: docker's `RepoTags`, or for OCI
    /// archives `io.containerd.image.name` or else `org.opencontainers.image.ref.name` (which
    /// may be a bare tag such as `latest`, naming no repository).
    pub names: Vec<String>,
    /// The manifest (or index) descriptor.
    pub descriptor: Descriptor,
}

struct TarOut<W: Write> {
    builder: tar::Builder<W>,
    dirs: BTreeSet<String>,
}

impl<W: Write> TarOut<W> {
    fn new(out: W) -> TarOut<W> {
        TarOut {
            builder: tar::Builder::new(out),
            dirs: BTreeSet::new(),
        }
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        if !self.dirs.insert(name.to_string()) {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        self.builder
            .append_data(&mut h, name, io::empty())
            .map_err(|source| ArchiveError::Write {
                entry: name.to_string(),
                source,
            })
    }

    fn file(&mut self, name: &str, size: u64, data: impl Read) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        self.builder
            .append_data(&mut h, name, data)
            .map_err(|source| ArchiveError::Write {
                entry: name.to_string(),
                source,
            })
    }

    fn finish(self) -> Result<W> {
        self.builder
            .into_inner()
            .map_err(|source| ArchiveError::Write {
                entry: "the end of archive".into(),
                source,
            })
    }
}

/// Writes `images` as an archive of `format` to `out`.
pub fn save<W: Write>(store: &Store, images: &[SaveImage], format: Format, out: W) -> Result<W> {
    match format {
        Format::Docker => save_docker(store, images, out),
        Format::Oci => save_oci(store, images, out),
    }
}

fn save_oci<W: Write>(store: &Store, images: &[SaveImage], out: W) -> Result<W> {
    let mut tar = TarOut::new(out);
    write_layout(&mut tar, store, images)?;
    tar.finish()
}

/// Writes the OCI image layout of `images`: `oci-layout`, `index.json` (each image's
/// descriptor named in `org.opencontainers.image.ref.name` and `io.containerd.image.name`)
/// and every blob the images reach, as the store keeps it.
fn write_layout<W: Write>(
    tar: &mut TarOut<W>,
    store: &Store,
    images: &[SaveImage],
) -> Result<BTreeSet<Digest>> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    tar.file("oci-layout", layout.len() as u64, &layout[..])?;
    let mut manifests = Vec::new();
    let mut blobs = BTreeSet::new();
    for image in images {
        blobs.extend(store.reachable(&image.descriptor, false)?);
        let mut d = image.descriptor.clone();
        if let Some(name) = &image.name {
            let mut annotations = d.annotations().clone().unwrap_or_default();
            annotations.insert(oci_spec::image::ANNOTATION_REF_NAME.into(), name.clone());
            annotations.insert(ANNOTATION_CONTAINERD_NAME.into(), name.clone());
            d.set_annotations(Some(annotations));
        }
        manifests.push(d);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let index = serde_json::to_vec(&index).expect("a JSON value serializes");
    tar.file("index.json", index.len() as u64, &index[..])?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    for &digest in &blobs {
        if !store.has_blob(&digest) {
            continue;
        }
        let size = store.blob_size(&digest)?;
        let file = store.open_blob(&digest)?;
        tar.file(
            &format!("blobs/sha256/{}", digest.hex()),
            size,
            BufReader::new(file),
        )?;
    }
    Ok(blobs)
}

/// A docker archive as docker's containerd image store writes one: the OCI layout of the
/// images (so that loading it back gives the same manifests, hence the same image ids), plus
/// `manifest.json` and `repositories` naming the config and layer blobs for readers of the
/// classic format (layers as the store keeps them, uncompressed or compressed; `docker load`
/// and skopeo read both).
fn save_docker<W: Write>(store: &Store, images: &[SaveImage], out: W) -> Result<W> {
    let mut tar = TarOut::new(out);
    let mut written = write_layout(&mut tar, store, images)?;
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    // One entry per image, listing every name the image is saved under.
    let mut order: Vec<Digest> = Vec::new();
    let mut tags: HashMap<Digest, Vec<&SaveImage>> = HashMap::new();
    for image in images {
        let d = descriptor_digest(&image.descriptor)?;
        if !tags.contains_key(&d) {
            order.push(d);
        }
        tags.entry(d).or_default().push(image);
    }
    for d in order {
        let group = &tags[&d];
        let (_, manifest) = store.image_manifest(&group[0].descriptor)?;
        let config_digest = descriptor_digest(manifest.config())?;
        let config_name = format!("blobs/sha256/{}", config_digest.hex());
        let mut layer_names = Vec::new();
        for (i, layer) in manifest.layers().iter().enumerate() {
            let blob = descriptor_digest(layer)?;
            if !layer.media_type().to_string().contains("zstd") {
                layer_names.push(format!("blobs/sha256/{}", blob.hex()));
                continue;
            }
            // docker's classic loader reads no zstd: those layers go in once more,
            // uncompressed and named by their diff_id.
            let config_bytes = store.read_blob(&config_digest)?;
            let config = ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
                ArchiveError::Invalid {
                    path: store.blob_path(&config_digest),
                    entry: config_digest.to_string(),
                    reason: e.to_string(),
                }
            })?;
            let diff_id = config
                .rootfs()
                .diff_ids()
                .get(i)
                .and_then(|s| s.parse::<Digest>().ok())
                .ok_or_else(|| ArchiveError::Invalid {
                    path: store.blob_path(&config_digest),
                    entry: config_digest.to_string(),
                    reason: format!("no valid diff_id for layer {i}"),
                })?;
            let name = format!("blobs/sha256/{}", diff_id.hex());
            if written.insert(diff_id) {
                // The tar header needs the size first: one pass to measure (and verify the
                // diff_id), one to write.
                let (actual, size) = {
                    let mut r = HashingReader::new(uncompressed(store, &blob)?);
                    io::copy(&mut r, &mut io::sink()).map_err(|source| ArchiveError::Read {
                        path: store.blob_path(&blob),
                        source,
                    })?;
                    let (_, digest, size) = r.finish();
                    (digest, size)
                };
                if actual != diff_id {
                    return Err(ArchiveError::DigestMismatch {
                        path: store.root().to_path_buf(),
                        entry: format!("layer {blob}"),
                        expected: diff_id,
                        actual,
                    });
                }
                tar.file(&name, size, uncompressed(store, &blob)?)?;
            }
            layer_names.push(name);
        }
        let repo_tags: Vec<&str> = group
            .iter()
            .filter_map(|i| i.short_name.as_deref())
            .collect();
        for name in &repo_tags {
            if let Some((repo, tag)) = split_tag(name)
                && let Some(top) = layer_names.last()
            {
                let top = top.rsplit('/').next().unwrap_or_default().to_string();
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), top);
            }
        }
        manifest_json.push(json!({
            "Config": config_name,
            "RepoTags": repo_tags,
            "Layers": layer_names,
        }));
    }
    let manifest_bytes = serde_json::to_vec(&manifest_json).expect("a JSON value serializes");
    tar.file(
        "manifest.json",
        manifest_bytes.len() as u64,
        &manifest_bytes[..],
    )?;
    let repos = serde_json::to_vec(&repositories).expect("a JSON value serializes");
    tar.file("repositories", repos.len() as u64, &repos[..])?;
    tar.finish()
}

/// `repo:tag` split at the tag's colon (not a registry port's).
fn split_tag(name: &str) -> Option<(&str, &str)> {
    let (repo, tag) = name.rsplit_once(':')?;
    (!tag.contains('/')).then_some((repo, tag))
}

/// A reader of a stored layer's uncompressed tar.
fn uncompressed(store: &Store, blob: &Digest) -> Result<Box<dyn Read>> {
    let path = store.blob_path(blob);
    let mut file = BufReader::new(store.open_blob(blob)?);
    let head = io::BufRead::fill_buf(&mut file).map_err(|source| ArchiveError::Read {
        path: path.clone(),
        source,
    })?;
    let compression = Compression::detect(head);
    Ok(Box::new(
        Decoder::new(file, compression).map_err(|source| ArchiveError::Read { path, source })?,
    ))
}

/// Where a file of the archive is.
#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// An indexed, seekable tar archive.
struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

fn clean_name(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl Archive {
    /// Indexes the archive's members, its tar stream checked against `limits` (all but the
    /// size: a plain archive holds many layers, and a compressed one was spooled within it).
    fn open(path: &Path, file: File, limits: &Limits) -> Result<Archive> {
        let rerr = |source| read_error(path, source);
        let mut members = HashMap::new();
        {
            let limits = Limits {
                max_layer_bytes: u64::MAX,
                ..*limits
            };
            let mut archive = tar::Archive::new(limits.reader(&file));
            for entry in archive.entries_with_seek().map_err(rerr)? {
                let entry = entry.map_err(rerr)?;
                let name = clean_name(&String::from_utf8_lossy(&entry.path_bytes()));
                let member = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                    tar::EntryType::Symlink => {
                        let target = entry.link_name_bytes().unwrap_or_default();
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        Member::Link(if target.starts_with('/') {
                            clean_name(&target)
                        } else {
                            clean_name(&format!("{dir}/{target}"))
                        })
                    }
                    tar::EntryType::Link => {
                        let target = entry.link_name_bytes().unwrap_or_default();
                        Member::Link(clean_name(&String::from_utf8_lossy(&target)))
                    }
                    _ => continue,
                };
                members.insert(name, member);
            }
        }
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut current = clean_name(name);
        for _ in 0..16 {
            match self.members.get(&current) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => current = target.clone(),
                None => break,
            }
        }
        Err(ArchiveError::MissingEntry {
            path: self.path.clone(),
            entry: name.to_string(),
        })
    }

    fn reader(&self, name: &str) -> Result<(impl io::BufRead + '_, u64)> {
        let (offset, size) = self.locate(name)?;
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))
            .map_err(|source| ArchiveError::Read {
                path: self.path.clone(),
                source,
            })?;
        Ok((BufReader::with_capacity(1 << 20, file.take(size)), size))
    }

    fn read_document(&self, name: &str) -> Result<Vec<u8>> {
        let (mut r, size) = self.reader(name)?;
        if size > MAX_DOCUMENT {
            return Err(self.invalid(name, format!("{size} bytes is too large")));
        }
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Read {
                path: self.path.clone(),
                source,
            })?;
        Ok(bytes)
    }

    fn invalid(&self, entry: &str, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Invalid {
            path: self.path.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }
}

/// Loads every image of the archive at `path` (docker or OCI, plain or gzip/zstd compressed)
/// into the store, verifying every digest. Names are returned, not applied: the caller
/// normalizes and tags them.
pub fn load(store: &Store, path: &Path) -> Result<Vec<Loaded>> {
    load_with(store, path, &Limits::default())
}

/// [`load`] with limits other than the defaults: what a compressed archive and each
/// compressed layer may expand to ([`Limits::max_layer_bytes`]: a gzip or zstd bomb stops
/// there instead of filling the disk), and the entries and names of the archive's tar.
pub fn load_with(store: &Store, path: &Path, limits: &Limits) -> Result<Vec<Loaded>> {
    let rerr = |source| read_error(path, source);
    let mut file = File::open(path).map_err(rerr)?;
    let mut head = [0u8; 8];
    let n = file.read(&mut head).map_err(rerr)?;
    file.seek(SeekFrom::Start(0)).map_err(rerr)?;
    let compression = Compression::detect(&head[..n]);
    // A compressed archive is unpacked to a temp file first: loading needs to seek.
    let mut _spool = None;
    if compression != Compression::None {
        let mut decoder = match compression {
            Compression::Gzip | Compression::Zstd => {
                Decoder::new(BufReader::new(file), compression).map_err(rerr)?
            }
            _ => {
                return Err(ArchiveError::UnknownFormat {
                    path: path.to_path_buf(),
                });
            }
        };
        let mut tmp = tempfile_in(store)?;
        io::copy(&mut limits.reader(&mut decoder), &mut tmp.1).map_err(rerr)?;
        tmp.1.seek(SeekFrom::Start(0)).map_err(rerr)?;
        file = tmp.1.try_clone().map_err(rerr)?;
        _spool = Some(tmp);
    }
    let archive = Archive::open(path, file, limits)?;
    // A docker archive that also holds its OCI layout (docker's containerd store, rbuild)
    // is read through the layout: the manifests come back as they were, and the image ids
    // with them.
    if archive.has("index.json") {
        load_oci(store, &archive)
    } else if archive.has("manifest.json") {
        load_docker(store, &archive, limits)
    } else {
        Err(ArchiveError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

/// A temp file in the store's tmp dir, removed when dropped.
struct Spool(PathBuf, File);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_in(store: &Store) -> Result<Spool> {
    let tmp = store.tmp_dir();
    let (path, file) =
        crate::fsutil::create_temp(&tmp, "spool").map_err(|source| ArchiveError::Read {
            path: tmp.clone(),
            source,
        })?;
    Ok(Spool(path, file))
}

#[derive(serde::Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The digest a file name promises: `<hex>.json`, `blobs/sha256/<hex>`, `<hex>/layer.tar`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let last = name.rsplit('/').next()?;
    let stem = last.strip_suffix(".json").unwrap_or(last);
    Digest::from_hex(stem).ok()
}

fn load_docker(store: &Store, archive: &Archive, limits: &Limits) -> Result<Vec<Loaded>> {
    let bytes = archive.read_document("manifest.json")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| archive.invalid("manifest.json", e.to_string()))?;
    let mut loaded = Vec::new();
    for entry in entries {
        let config_bytes = archive.read_document(&entry.config)?;
        let config_digest = Digest::of(&config_bytes);
        if let Some(expected) = digest_in_name(&entry.config)
            && expected != config_digest
        {
            return Err(ArchiveError::DigestMismatch {
                path: archive.path.clone(),
                entry: entry.config.clone(),
                expected,
                actual: config_digest,
            });
        }
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| archive.invalid(&entry.config, e.to_string()))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(archive.invalid(
                &entry.config,
                format!(
                    "{} diff_ids for {} layers",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
            let diff_id: Digest = diff_id
                .parse()
                .map_err(|_| archive.invalid(&entry.config, format!("bad diff_id {diff_id}")))?;
            layers.push(load_docker_layer(store, archive, name, diff_id, limits)?);
        }
        let config_desc = store.put_document(MediaType::ImageConfig, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("a JSON value serializes");
        let descriptor = store.put_document(MediaType::ImageManifest, &manifest_bytes)?;
        loaded.push(Loaded {
            names: entry.repo_tags.unwrap_or_default(),
            descriptor,
        });
    }
    Ok(loaded)
}

/// A reader that copies what it reads into a writer.
struct Tee<'a, R, W> {
    inner: R,
    copy: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Stores one layer file of a docker archive. An uncompressed layer is stored as it is,
/// checked against its diff_id; a compressed one is stored compressed, and its uncompressed
/// content is checked against the diff_id in the same pass.
fn load_docker_layer(
    store: &Store,
    archive: &Archive,
    name: &str,
    diff_id: Digest,
    limits: &Limits,
) -> Result<Descriptor> {
    let rerr = |source| ArchiveError::Read {
        path: archive.path.clone(),
        source,
    };
    let (mut reader, size) = archive.reader(name)?;
    let head = io::BufRead::fill_buf(&mut reader).map_err(rerr)?;
    let compression = Compression::detect(head);
    if compression == Compression::None {
        if store.claim_blob(&diff_id) {
            return Ok(Descriptor::new(MediaType::ImageLayer, size, diff_id));
        }
        let mut writer = store.blob_writer(Some(Expected {
            digest: diff_id,
            size: Some(size),
        }))?;
        io::copy(&mut reader, &mut writer).map_err(rerr)?;
        let committed = writer.commit().map_err(|e| match e {
            crate::BlobError::DigestMismatch { expected, actual } => ArchiveError::DigestMismatch {
                path: archive.path.clone(),
                entry: name.to_string(),
                expected,
                actual,
            },
            other => ArchiveError::Store(other.into()),
        })?;
        return Ok(Descriptor::new(
            MediaType::ImageLayer,
            committed.size,
            committed.digest,
        ));
    }
    let mut writer = store.blob_writer(None)?;
    let actual = {
        let mut tee = Tee {
            inner: &mut reader,
            copy: &mut writer,
        };
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        {
            let mut decoder = match compression {
                Compression::Gzip | Compression::Zstd => {
                    Decoder::new(BufReader::new(&mut tee), compression).map_err(rerr)?
                }
                _ => return Err(archive.invalid(name, "unsupported layer compression")),
            };
            let mut total: u64 = 0;
            loop {
                let n = decoder.read(&mut buf).map_err(rerr)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > limits.max_layer_bytes {
                    return Err(ArchiveError::TooLarge {
                        path: archive.path.clone(),
                        entry: name.to_string(),
                        limit: limits.max_layer_bytes,
                    });
                }
                hasher.update(&buf[..n]);
            }
        }
        io::copy(&mut tee, &mut io::sink()).map_err(rerr)?;
        hasher.finish()
    };
    if actual != diff_id {
        writer.abort();
        return Err(ArchiveError::DigestMismatch {
            path: archive.path.clone(),
            entry: name.to_string(),
            expected: diff_id,
            actual,
        });
    }
    let committed = writer.commit().map_err(StoreError::from)?;
    let media_type = if compression == Compression::Gzip {
        MediaType::ImageLayerGzip
    } else {
        MediaType::ImageLayerZstd
    };
    Ok(Descriptor::new(
        media_type,
        committed.size,
        committed.digest,
    ))
}

fn load_oci(store: &Store, archive: &Archive) -> Result<Vec<Loaded>> {
    let bytes = archive.read_document("index.json")?;
    let index = ImageIndex::from_reader(&bytes[..])
        .map_err(|e| archive.invalid("index.json", e.to_string()))?;
    let mut loaded = Vec::new();
    for d in index.manifests() {
        copy_tree(store, archive, d, true)?;
        // containerd and docker put the full name in their own annotation and only the tag
        // in ref.name; other writers put the name in ref.name.
        let names: Vec<String> = d
            .annotations()
            .as_ref()
            .and_then(|a| {
                a.get(ANNOTATION_CONTAINERD_NAME)
                    .or_else(|| a.get(oci_spec::image::ANNOTATION_REF_NAME))
            })
            .cloned()
            .into_iter()
            .collect();
        let mut descriptor = d.clone();
        descriptor.set_annotations(None);
        loaded.push(Loaded { names, descriptor });
    }
    Ok(loaded)
}

/// Copies a descriptor's blob and everything it references from the archive into the store.
fn copy_tree(store: &Store, archive: &Archive, d: &Descriptor, required: bool) -> Result<()> {
    copy_tree_at(store, archive, d, required, 0)
}

fn copy_tree_at(
    store: &Store,
    archive: &Archive,
    d: &Descriptor,
    required: bool,
    depth: usize,
) -> Result<()> {
    let digest = descriptor_digest(d)?;
    if depth > store::MAX_INDEX_DEPTH {
        return Err(StoreError::TooDeep { digest }.into());
    }
    let entry = format!("blobs/sha256/{}", digest.hex());
    let is_document = store::is_index(d.media_type()) || store::is_manifest(d.media_type());
    if is_document && d.size() > MAX_DOCUMENT {
        return Err(archive.invalid(&entry, format!("a {} byte manifest is too large", d.size())));
    }
    if !store.claim_blob(&digest) {
        if !archive.has(&entry) {
            if required {
                return Err(ArchiveError::MissingEntry {
                    path: archive.path.clone(),
                    entry,
                });
            }
            tracing::debug!("archive {} has no {entry}: skipped", archive.path.display());
            return Ok(());
        }
        let (mut reader, _) = archive.reader(&entry)?;
        let mut writer = store.blob_writer(Some(Expected {
            digest,
            size: Some(d.size()),
        }))?;
        io::copy(&mut reader, &mut writer).map_err(|source| ArchiveError::Read {
            path: archive.path.clone(),
            source,
        })?;
        writer.commit().map_err(|e| match e {
            crate::BlobError::DigestMismatch { expected, actual } => ArchiveError::DigestMismatch {
                path: archive.path.clone(),
                entry: entry.clone(),
                expected,
                actual,
            },
            other => ArchiveError::Store(other.into()),
        })?;
    }
    if store::is_index(d.media_type()) {
        let index = store.read_index_blob(&digest)?;
        for child in index.manifests() {
            copy_tree_at(store, archive, child, false, depth + 1)?;
        }
    } else if store::is_manifest(d.media_type()) {
        let manifest: ImageManifest = store.read_manifest(&digest)?;
        copy_tree_at(store, archive, manifest.config(), true, depth + 1)?;
        for layer in manifest.layers() {
            copy_tree_at(store, archive, layer, true, depth + 1)?;
        }
    }
    Ok(())
}
