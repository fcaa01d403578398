//! The store: an OCI image layout at the root, plus versioned side folders.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder,
    ImageManifest, MediaType,
};
use rustix::fs::{FlockOperation, flock};

use crate::blob::{BlobError, BlobWriter, Committed, Expected};
use crate::fsutil;
use rbuild_compiler::plan::Platform;
use rbuild_digest::{Digest, DigestError};

/// The `oci-layout` file's content.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Docker's media types, which pulled images may use.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The media type of a Docker manifest list (an index of per-platform manifests).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// containerd's annotation for the full image name, which some archives carry.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// How deep indexes may nest (an index listing an index...). Real images have one or two
/// levels; a bound keeps a crafted chain from exhausting the stack.
pub const MAX_INDEX_DEPTH: usize = 32;

/// The largest manifest, index or config the store reads (they are read whole into memory).
pub const MAX_DOCUMENT_SIZE: u64 = 64 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An index has no image for the platform asked for.
    #[error("image index {digest} has no image for {platform} (it has: {available})")]
    NoPlatform {
        /// The index.
        digest: Digest,
        /// The platform asked for.
        platform: String,
        /// The platforms it has.
        available: String,
    },
    /// An index lists an image for the platform asked for, but only some of its platforms
    /// were pulled and that one is not among them.
    #[error(
        "image index {digest} lists an image for {platform}, which is not in the store; pull it with --platform {platform}"
    )]
    PlatformNotPulled {
        /// The index.
        digest: Digest,
        /// The platform asked for.
        platform: String,
    },
    /// A file or directory of the store could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store root can be changed by another user: what it holds could be swapped
    /// under the builds that trust it.
    #[error("the store root {path} {why}; give the store a directory of its own")]
    SharedRoot {
        /// The store root.
        path: PathBuf,
        /// What makes it shared (`is writable by other users`, `belongs to uid N`).
        why: String,
    },
    /// The store's unpacked files were made with another user-namespace id mapping than
    /// this process uses: their owners would be wrong in every sandbox.
    #[error(
        "the store at {root} holds files unpacked with the id mapping\n{recorded}and this command maps ids as\n{wanted}(use the same --userns, or another --root)"
    )]
    IdMapChanged {
        /// The store root.
        root: PathBuf,
        /// The mapping the store recorded (`uid 0 0 4294967295` lines).
        recorded: String,
        /// The mapping of this process.
        wanted: String,
    },
    /// A store with unpacked files of the caller's own ids was opened for a remapped user
    /// namespace (`--userns remap`), whose container root owns its store.
    #[error(
        "the store at {path} holds files unpacked without a remapped user namespace; remapped builds need a store of their own (another --root)"
    )]
    NotRemapped {
        /// The store root.
        path: PathBuf,
    },
    /// The root holds an OCI layout of a version this store does not know.
    #[error("{path} is not an OCI image layout of version 1.0.0")]
    LayoutVersion {
        /// The `oci-layout` file.
        path: PathBuf,
    },
    /// A JSON document in the store does not parse.
    #[error("cannot parse {what} {path}")]
    Json {
        /// What the document is (`index.json`, `manifest`, `config`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A blob is not in the store.
    #[error("blob {digest} is not in the store")]
    BlobMissing {
        /// The digest.
        digest: Digest,
    },
    /// A blob could not be stored.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A descriptor carries a digest the store does not accept.
    #[error("descriptor digest {digest} is not a sha256 digest")]
    BadDigest {
        /// The digest text.
        digest: String,
        /// The cause.
        #[source]
        source: DigestError,
    },
    /// No image has this name.
    #[error("no image named {name} in the store")]
    NotFound {
        /// The name.
        name: String,
    },
    /// An image name is not a valid `org.opencontainers.image.ref.name`.
    #[error("invalid image name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// An image cannot be tagged because a blob it needs is missing.
    #[error("image {name} is incomplete: blob {digest} is missing")]
    Incomplete {
        /// The name it was to get.
        name: String,
        /// The missing blob.
        digest: Digest,
    },
    /// An id prefix matches several images.
    #[error("image id {id} is ambiguous")]
    Ambiguous {
        /// The prefix.
        id: String,
    },
    /// A manifest, index or config blob is larger than [`MAX_DOCUMENT_SIZE`].
    #[error("{what} {digest} is {size} bytes, more than the {MAX_DOCUMENT_SIZE} a {what} may have")]
    DocumentTooLarge {
        /// What the document is (`manifest`, `image index`, `config`).
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Indexes nest deeper than [`MAX_INDEX_DEPTH`].
    #[error("index {digest} nests more than {MAX_INDEX_DEPTH} indexes deep")]
    TooDeep {
        /// The top index.
        digest: Digest,
    },
    /// JSON could not be serialized.
    #[error("cannot serialize {what}")]
    Serialize {
        /// What.
        what: &'static str,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One named image of the store: an entry of `index.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// The name (`org.opencontainers.image.ref.name`), e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The manifest (or index) descriptor.
    pub descriptor: Descriptor,
}

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The names removed from `index.json`.
    pub untagged: Vec<String>,
    /// The blobs deleted because nothing named references them any more.
    pub deleted: Vec<Digest>,
    /// The blobs nothing named references any more that were kept because the caller's
    /// `keep` said so (a running process uses them); a later prune removes them.
    pub kept: Vec<Digest>,
}

/// A daemonless image store rooted in one directory.
///
/// The root is an OCI image layout that skopeo, umoci and oras read as it is:
///
/// ```text
/// ROOT/oci-layout        {"imageLayoutVersion":"1.0.0"}
/// ROOT/index.json        one descriptor per name, with org.opencontainers.image.ref.name
/// ROOT/blobs/sha256/HEX  content-addressed blobs, each verified on the way in
/// ROOT/index.lock        flock serializing read-modify-write of index.json
/// ROOT/tmp/              temp files (same file system as blobs/, for atomic renames)
/// ```
///
/// Reserved for other parts of rbuild, each versioned so a format change takes a new name:
/// `snapshots-v1/` (unpacked layers), `cache-v1/` (the action cache), `contexts-v1/` (the
/// context stat index), `mounts-v1/` (cache mounts).
///
/// Every write is atomic (temp file, fsync, rename, fsync of the directory), so several
/// processes can share one root and a process killed at any moment leaves a usable store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Whether the directory holds nothing unpacked (no snapshots, cache mounts or containers).
fn is_empty_store(root: &Path) -> Result<bool> {
    for dir in ["snapshots-v1", "mounts-v1", "containers-v1"] {
        let path = root.join(dir);
        match std::fs::read_dir(&path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(true)
}

/// Creates the store root with mode 0700, or tightens an existing one to 0700 (stores made
/// by older versions were 0755): snapshots hold image files as they are, setuid binaries
/// and device nodes included, with the image's owners, so no other user may reach them. A
/// root that another user owns, or that is writable by others (`/tmp`), is refused. With
/// `owner`, a new store's root is given to it (the caller must be root) and must belong to it.
fn make_private_root(root: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(root)(e)),
    }
    let md = std::fs::metadata(root).map_err(io_err(root))?;
    let shared = |why: String| StoreError::SharedRoot {
        path: root.to_owned(),
        why,
    };
    if !md.is_dir() {
        return Err(io_err(root)(io::Error::from(io::ErrorKind::NotADirectory)));
    }
    let me = rustix::process::geteuid().as_raw();
    let md = match owner {
        Some((uid, gid)) if md.uid() == me && md.uid() != uid => {
            if !is_empty_store(root)? {
                return Err(StoreError::NotRemapped {
                    path: root.to_owned(),
                });
            }
            std::os::unix::fs::chown(root, Some(uid), Some(gid)).map_err(io_err(root))?;
            std::fs::metadata(root).map_err(io_err(root))?
        }
        _ => md,
    };
    let expected = owner.map_or(me, |(uid, _)| uid);
    if md.uid() != expected {
        return Err(shared(format!(
            "belongs to uid {}, not to uid {expected}",
            md.uid()
        )));
    }
    if md.mode() & 0o002 != 0 {
        return Err(shared("is writable by other users".into()));
    }
    if md.mode() & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(root))?;
    }
    Ok(())
}

impl Store {
    /// Opens the store at `root`, creating the layout if it is missing, and removes temp
    /// files that killed processes left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        Self::open_owned(root, None)
    }

    /// [`Store::open`] for a store whose root belongs to `owner` (uid, gid) instead of the
    /// caller: root's stores with remapped user namespaces belong to the container root's
    /// host ids, so that sandboxes can reach their snapshots; other users still cannot.
    pub fn open_owned(root: impl Into<PathBuf>, owner: Option<(u32, u32)>) -> Result<Store> {
        let store = Store { root: root.into() };
        make_private_root(&store.root, owner)?;
        for dir in [store.blobs_dir(), store.tmp_dir()] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let layout = store.root.join("oci-layout");
        match std::fs::read(&layout) {
            Ok(bytes) => {
                let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if parsed.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                    return Err(StoreError::LayoutVersion { path: layout });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fsutil::write_atomic(&store.tmp_dir(), &layout, OCI_LAYOUT)
                    .map_err(io_err(&layout))?;
            }
            Err(e) => return Err(io_err(&layout)(e)),
        }
        let index = store.index_path();
        if !index.exists() {
            let _lock = store.lock()?;
            if !index.exists() {
                store.write_index(&empty_index())?;
            }
        }
        if let Err(e) = fsutil::clean_tmp(&store.tmp_dir()) {
            tracing::debug!("cannot clean {}: {e}", store.tmp_dir().display());
        }
        Ok(store)
    }

    /// Records the user-namespace id mapping (`mapping`, one line per map) that this
    /// store's snapshots, cache mounts and containers are made with (`ROOT/idmap`), or
    /// checks it against the recorded one: owners on disk are host ids, so files unpacked
    /// with one mapping show wrong owners with another. A store with nothing unpacked takes
    /// the new mapping.
    pub fn claim_id_map(&self, mapping: &str) -> Result<()> {
        let path = self.root.join("idmap");
        let read = || match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        };
        if read()?.as_deref() == Some(mapping) {
            return Ok(());
        }
        let _lock = self.lock()?;
        match read()? {
            Some(recorded) if recorded == mapping => Ok(()),
            Some(recorded) if !is_empty_store(&self.root)? => Err(StoreError::IdMapChanged {
                root: self.root.clone(),
                recorded,
                wanted: mapping.to_owned(),
            }),
            _ => fsutil::write_atomic(&self.tmp_dir(), &path, mapping.as_bytes())
                .map_err(io_err(&path)),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/blobs/sha256`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// `ROOT/tmp`: temp space on the store's file system.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the store holds the blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Whether the store holds the blob, marking it as used now (under the gc lock, so a
    /// concurrent prune either removed it before, or sees it used): for a caller that skips
    /// writing a blob because it is already there.
    pub fn claim_blob(&self, digest: &Digest) -> bool {
        let Ok(_gc) = crate::gc::GcLock::shared(&self.root) else {
            return self.has_blob(digest);
        };
        match crate::gc::touch(&self.blob_path(digest)) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            // Not ours to touch (a store shared read-only): present, unprotected.
            Err(_) => self.has_blob(digest),
        }
    }

    /// The size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobMissing { digest: *digest })
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing { digest: *digest },
            _ => io_err(&path)(e),
        })
    }

    /// Reads a whole blob (for small JSON documents).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        Ok(bytes)
    }

    /// A writer for a new blob, verified against `expected` (when given) on commit.
    pub fn blob_writer(&self, expected: Option<Expected>) -> Result<BlobWriter> {
        Ok(BlobWriter::create(
            self.blobs_dir(),
            &self.tmp_dir(),
            expected,
        )?)
    }

    /// Like [`blob_writer`](Store::blob_writer), but continues a partial download of the same
    /// blob that an interrupted process left; [`BlobWriter::offset`] says where to go on from.
    pub fn blob_writer_resumable(&self, expected: Expected) -> Result<BlobWriter> {
        Ok(BlobWriter::resume(
            self.blobs_dir(),
            &self.tmp_dir(),
            expected,
        )?)
    }

    /// Stores `bytes`, checked against `expected` when given.
    pub fn put_blob(&self, bytes: &[u8], expected: Option<Expected>) -> Result<Committed> {
        if let Some(exp) = expected
            && self.has_blob(&exp.digest)
            && self.blob_size(&exp.digest)? == bytes.len() as u64
            && Digest::of(bytes) == exp.digest
            && self.claim_blob(&exp.digest)
        {
            return Ok(Committed {
                digest: exp.digest,
                size: bytes.len() as u64,
            });
        }
        let mut writer = self.blob_writer(expected)?;
        let tmp = writer.temp_path().to_path_buf();
        io::Write::write_all(&mut writer, bytes).map_err(io_err(&tmp))?;
        Ok(writer.commit()?)
    }

    /// Streams `reader` into a new blob, checked against `expected` when given.
    pub fn copy_blob(
        &self,
        reader: &mut impl Read,
        expected: Option<Expected>,
    ) -> Result<Committed> {
        let mut writer = self.blob_writer(expected)?;
        let tmp = writer.temp_path().to_path_buf();
        io::copy(reader, &mut writer).map_err(io_err(&tmp))?;
        Ok(writer.commit()?)
    }

    /// Stores a JSON document exactly as given and returns its descriptor.
    pub fn put_document(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
        // Documents are small: hashing first lets an unchanged one skip the write and fsync.
        let committed = self.put_blob(bytes, Some(Expected::digest(Digest::of(bytes))))?;
        Ok(Descriptor::new(
            media_type,
            committed.size,
            committed.digest,
        ))
    }

    /// Serializes and stores an image config.
    pub fn put_config(&self, config: &ImageConfiguration) -> Result<Descriptor> {
        let text = config.to_string().map_err(|source| StoreError::Serialize {
            what: "image config",
            source,
        })?;
        self.put_document(MediaType::ImageConfig, text.as_bytes())
    }

    /// Serializes and stores an image manifest. The blobs it references should be stored first.
    pub fn put_manifest(&self, manifest: &ImageManifest) -> Result<Descriptor> {
        let text = manifest
            .to_string()
            .map_err(|source| StoreError::Serialize {
                what: "image manifest",
                source,
            })?;
        self.put_document(MediaType::ImageManifest, text.as_bytes())
    }

    /// Reads a JSON document blob (manifest, index, config), refusing one larger than
    /// [`MAX_DOCUMENT_SIZE`] before reading it into memory.
    fn read_document(&self, digest: &Digest, what: &'static str) -> Result<Vec<u8>> {
        let size = self.blob_size(digest)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(StoreError::DocumentTooLarge {
                what,
                digest: *digest,
                size,
            });
        }
        self.read_blob(digest)
    }

    /// Reads and parses a manifest blob.
    pub fn read_manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        let bytes = self.read_document(digest, "manifest")?;
        ImageManifest::from_reader(&bytes[..]).map_err(|source| StoreError::Json {
            what: "manifest",
            path: self.blob_path(digest),
            source,
        })
    }

    /// Reads and parses an image index blob.
    pub fn read_index_blob(&self, digest: &Digest) -> Result<ImageIndex> {
        let bytes = self.read_document(digest, "image index")?;
        ImageIndex::from_reader(&bytes[..]).map_err(|source| StoreError::Json {
            what: "image index",
            path: self.blob_path(digest),
            source,
        })
    }

    /// Reads and parses an image config blob.
    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfiguration> {
        let bytes = self.read_document(digest, "config")?;
        ImageConfiguration::from_reader(&bytes[..]).map_err(|source| StoreError::Json {
            what: "config",
            path: self.blob_path(digest),
            source,
        })
    }

    /// The image manifest a descriptor stands for: the descriptor itself, or for an index the
    /// entry this machine runs best among those the store has (a pull of one platform names
    /// the index with only that platform's image present), falling back to the first present
    /// manifest.
    pub fn image_manifest(&self, descriptor: &Descriptor) -> Result<(Descriptor, ImageManifest)> {
        self.image_manifest_at(descriptor, descriptor, 0, None)
    }

    /// The image manifest a descriptor stands for when `platform` is wanted: the descriptor
    /// itself, or for an index the entry [`Platform::pick`] chooses; an index without one is
    /// [`StoreError::NoPlatform`], naming the platforms it has, and one whose chosen image was
    /// not pulled is [`StoreError::PlatformNotPulled`].
    pub fn image_manifest_for(
        &self,
        descriptor: &Descriptor,
        platform: &Platform,
    ) -> Result<(Descriptor, ImageManifest)> {
        self.image_manifest_at(descriptor, descriptor, 0, Some(platform))
    }

    /// The entries of an index whose documents the store does not have: a pull of one
    /// platform names the whole index with only that platform's image present. Empty for a
    /// manifest and for a complete index.
    pub fn absent_manifests(&self, descriptor: &Descriptor) -> Result<Vec<Descriptor>> {
        if !is_index(descriptor.media_type()) {
            return Ok(Vec::new());
        }
        let index = self.read_index_blob(&descriptor_digest(descriptor)?)?;
        let mut absent = Vec::new();
        for entry in index.manifests() {
            if !self.has_blob(&descriptor_digest(entry)?) {
                absent.push(entry.clone());
            }
        }
        Ok(absent)
    }

    fn image_manifest_at(
        &self,
        top: &Descriptor,
        descriptor: &Descriptor,
        depth: usize,
        wanted: Option<&Platform>,
    ) -> Result<(Descriptor, ImageManifest)> {
        let digest = descriptor_digest(descriptor)?;
        if depth > MAX_INDEX_DEPTH {
            return Err(StoreError::TooDeep {
                digest: descriptor_digest(top)?,
            });
        }
        if is_index(descriptor.media_type()) {
            let index = self.read_index_blob(&digest)?;
            let present = |d: &Descriptor| descriptor_digest(d).is_ok_and(|d| self.has_blob(&d));
            let entries: Vec<(&Descriptor, Platform)> = index
                .manifests()
                .iter()
                .filter(|d| !is_index(d.media_type()) && !is_attestation_manifest(d))
                .filter_map(|d| Some((d, descriptor_platform(d)?)))
                .collect();
            let host = Platform::host();
            // Without a platform asked for, the choice is among the images the store has.
            let picked = match wanted {
                Some(p) => p.pick(entries.iter().map(|(d, p)| (*d, p))),
                None => host.pick(
                    entries
                        .iter()
                        .filter(|(d, _)| present(d))
                        .map(|(d, p)| (*d, p)),
                ),
            };
            if let (Some(d), Some(p)) = (picked, wanted)
                && !present(d)
            {
                return Err(StoreError::PlatformNotPulled {
                    digest,
                    platform: p.to_string(),
                });
            }
            let chosen = match (picked, wanted) {
                (Some(d), _) => d,
                (None, Some(p)) => {
                    return Err(StoreError::NoPlatform {
                        digest,
                        platform: p.to_string(),
                        available: entries
                            .iter()
                            .map(|(_, p)| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                (None, None) => index
                    .manifests()
                    .iter()
                    .find(|d| present(d))
                    .or_else(|| index.manifests().first())
                    .ok_or(StoreError::BlobMissing { digest })?,
            }
            .clone();
            return self.image_manifest_at(top, &chosen, depth + 1, wanted);
        }
        Ok((descriptor.clone(), self.read_manifest(&digest)?))
    }

    /// Every named image, in `index.json` order (descriptors without their naming annotations).
    pub fn list(&self) -> Result<Vec<ImageRef>> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = d.annotations().as_ref()?.get(ANNOTATION_REF_NAME)?.clone();
                Some(ImageRef {
                    name,
                    descriptor: strip_name(d),
                })
            })
            .collect())
    }

    /// The descriptor named `name`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor> {
        self.list()?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.descriptor)
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_string(),
            })
    }

    /// The image whose id starts with `id` (`sha256:` optional, at least 4 hex digits). An
    /// image's id is the digest of what its `index.json` entry names: its manifest (or
    /// index), as docker's containerd image store has it. `Ok(None)` when nothing matches.
    pub fn resolve_id(&self, id: &str) -> Result<Option<Descriptor>> {
        let hex_part = id.strip_prefix("sha256:").unwrap_or(id);
        if hex_part.len() < 4 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hex_part = hex_part.to_ascii_lowercase();
        let mut found: Option<Descriptor> = None;
        for image in self.list()? {
            if descriptor_digest(&image.descriptor)?
                .hex()
                .starts_with(&hex_part)
            {
                match &found {
                    Some(prev) if prev.digest() != image.descriptor.digest() => {
                        return Err(StoreError::Ambiguous { id: id.to_string() });
                    }
                    _ => found = Some(image.descriptor),
                }
            }
        }
        Ok(found)
    }

    /// Names `descriptor` `name`, replacing what had that name. Every blob the image needs must
    /// be in the store already; of an index, the images of some of its platforms may be absent
    /// (a pull of one platform), not all.
    pub fn tag(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        validate_name(name)?;
        let _lock = self.lock()?;
        // Checked under the lock, so a concurrent removal cannot take a blob away unseen.
        let reachable = self.reachable(descriptor, true)?;
        let absent = self.absent_manifests(descriptor)?;
        let entries = match is_index(descriptor.media_type()) {
            true => self
                .read_index_blob(&descriptor_digest(descriptor)?)?
                .manifests()
                .len(),
            false => 0,
        };
        let absent = match absent.len() < entries {
            true => absent
                .iter()
                .map(descriptor_digest)
                .collect::<Result<BTreeSet<_>>>()?,
            false => BTreeSet::new(),
        };
        for digest in reachable {
            if !self.has_blob(&digest) && !absent.contains(&digest) {
                return Err(StoreError::Incomplete {
                    name: name.to_string(),
                    digest,
                });
            }
        }
        let mut index = self.read_index()?;
        let mut entry = strip_name(descriptor);
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        entry.set_annotations(Some(annotations));
        if index.manifests().contains(&entry) {
            // Already named so: nothing to write (a rebuild from the cache).
            return Ok(());
        }
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        manifests.push(entry);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Removes the name `name` (the blobs stay). Returns the descriptor it had.
    pub fn untag(&self, name: &str) -> Result<Descriptor> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let found = index
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_string(),
            })?;
        let manifests = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(strip_name(&found))
    }

    /// Removes the names, then deletes the blobs of the removed images that no remaining
    /// entry of `index.json` references, except those `keep` holds on to. All names must
    /// exist, or nothing is removed. `rbuild rmi` goes through
    /// [`crate::gc::remove_images`], whose `keep` spares what running processes use.
    pub fn remove(&self, names: &[String], keep: &dyn Fn(&Digest) -> bool) -> Result<Removed> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        for name in names {
            if !index
                .manifests()
                .iter()
                .any(|d| ref_name(d) == Some(name.as_str()))
            {
                return Err(StoreError::NotFound { name: name.clone() });
            }
        }
        let (gone, kept): (Vec<Descriptor>, Vec<Descriptor>) = index
            .manifests()
            .iter()
            .cloned()
            .partition(|d| ref_name(d).is_some_and(|n| names.iter().any(|x| x == n)));
        let mut candidates = BTreeSet::new();
        for d in &gone {
            candidates.extend(self.reachable(d, false)?);
        }
        for d in &kept {
            for digest in self.reachable(d, false)? {
                candidates.remove(&digest);
            }
        }
        index.set_manifests(kept);
        // index.json first: a crash after this leaves unreferenced blobs, never dangling names.
        self.write_index(&index)?;
        let mut deleted = Vec::new();
        let mut kept = Vec::new();
        for digest in candidates {
            if keep(&digest) {
                kept.push(digest);
                continue;
            }
            let path = self.blob_path(&digest);
            match std::fs::remove_file(&path) {
                Ok(()) => deleted.push(digest),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        let blobs = self.blobs_dir();
        fsutil::sync_dir(&blobs).map_err(io_err(&blobs))?;
        let mut untagged: Vec<String> = gone
            .iter()
            .filter_map(|d| ref_name(d).map(str::to_string))
            .collect();
        untagged.sort();
        Ok(Removed {
            untagged,
            deleted,
            kept,
        })
    }

    /// Every blob digest an image needs: the descriptor's own blob, and for manifests their
    /// config and layers, for indexes their children (recursively). Children that are not in
    /// the store are skipped when `strict` is false (a pull may fetch one platform only).
    pub fn reachable(&self, descriptor: &Descriptor, strict: bool) -> Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        self.walk(descriptor, strict, 0, &mut out)
            .map_err(|e| match e {
                StoreError::TooDeep { .. } => match descriptor_digest(descriptor) {
                    Ok(digest) => StoreError::TooDeep { digest },
                    Err(e) => e,
                },
                e => e,
            })?;
        Ok(out)
    }

    fn walk(
        &self,
        d: &Descriptor,
        strict: bool,
        depth: usize,
        out: &mut BTreeSet<Digest>,
    ) -> Result<()> {
        let top = depth == 0;
        let digest = descriptor_digest(d)?;
        if depth > MAX_INDEX_DEPTH {
            return Err(StoreError::TooDeep { digest });
        }
        if !out.insert(digest) {
            return Ok(());
        }
        if !self.has_blob(&digest) {
            if strict && top {
                return Err(StoreError::BlobMissing { digest });
            }
            return Ok(());
        }
        if is_index(d.media_type()) {
            let index = self.read_index_blob(&digest)?;
            for child in index.manifests() {
                self.walk(child, false, depth + 1, out)?;
            }
        } else if is_manifest(d.media_type()) {
            let manifest = self.read_manifest(&digest)?;
            out.insert(descriptor_digest(manifest.config())?);
            for layer in manifest.layers() {
                out.insert(descriptor_digest(layer)?);
            }
        }
        Ok(())
    }

    /// Removes temp files left by killed processes; returns how many.
    pub fn clean_tmp(&self) -> Result<usize> {
        let tmp = self.tmp_dir();
        fsutil::clean_tmp(&tmp).map_err(io_err(&tmp))
    }

    /// Takes the exclusive lock that serializes updates of `index.json`.
    pub(crate) fn lock(&self) -> Result<File> {
        let path = self.root.join("index.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err(&path)(e.into()))?;
        Ok(file)
    }

    /// Reads `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        ImageIndex::from_reader(&bytes[..]).map_err(|source| StoreError::Json {
            what: "index.json",
            path,
            source,
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let path = self.index_path();
        let text = index.to_string().map_err(|source| StoreError::Serialize {
            what: "index.json",
            source,
        })?;
        fsutil::write_atomic(&self.tmp_dir(), &path, text.as_bytes()).map_err(io_err(&path))
    }
}

fn empty_index() -> ImageIndex {
    let mut index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .expect("an empty index has every required field");
    index.set_media_type(Some(MediaType::ImageIndex));
    index
}

/// The `org.opencontainers.image.ref.name` of an index entry.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

/// A copy of `d` without naming annotations.
fn strip_name(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    if let Some(mut annotations) = d.annotations().clone() {
        annotations.remove(ANNOTATION_REF_NAME);
        annotations.remove(ANNOTATION_CONTAINERD_NAME);
        d.set_annotations(if annotations.is_empty() {
            None
        } else {
            Some(annotations)
        });
    }
    d
}

/// The platform an index entry names, normalised.
pub fn descriptor_platform(d: &Descriptor) -> Option<Platform> {
    let p = d.platform().as_ref()?;
    Some(Platform::new(
        &p.os().to_string(),
        &p.architecture().to_string(),
        p.variant().as_deref(),
    ))
}

/// The store's digest of a descriptor.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::try_from(d.digest()).map_err(|source| StoreError::BadDigest {
        digest: d.digest().to_string(),
        source,
    })
}

/// Whether an index entry is an attestation manifest (BuildKit's layout, which rbuild
/// writes too): statements about another entry, not an image of a platform
/// (`vnd.docker.reference.type: attestation-manifest`).
pub fn is_attestation_manifest(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .is_some_and(|t| t == "attestation-manifest")
}

/// Whether a media type is an image index (OCI or Docker manifest list).
pub fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST_LIST,
        _ => false,
    }
}

/// Whether a media type is an image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageManifest => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST,
        _ => false,
    }
}

/// Checks a name against the OCI `ref.name` grammar: components of `[A-Za-z0-9]` joined by
/// `/`, and separators `-._:@+` (or `--`) inside components.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = || StoreError::InvalidName {
        name: name.to_string(),
    };
    if name.is_empty() || name.len() > 4096 {
        return Err(bad());
    }
    for component in name.split('/') {
        let bytes = component.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return Err(bad());
        };
        if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
            return Err(bad());
        }
        let mut prev_sep = false;
        for &b in bytes {
            if b.is_ascii_alphanumeric() {
                prev_sep = false;
            } else if b"-._:@+".contains(&b) {
                if prev_sep && b != b'-' {
                    return Err(bad());
                }
                prev_sep = true;
            } else {
                return Err(bad());
            }
        }
    }
    Ok(())
}
