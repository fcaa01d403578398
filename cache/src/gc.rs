//! Garbage collection of the store: `rbuild prune` and `rbuild system df`.
//!
//! # What is kept
//!
//! Every blob reachable from `index.json` (a tagged image) always stays. Everything else is
//! cache or garbage: action cache records (`cache-v1/keys`) and slot records
//! (`cache-v1/slots`), compressed variants (`variants-v1`), blobs only they reference,
//! blobs nothing references ("dangling"), unpacked snapshots (`snapshots-v1`), cache mounts
//! (`mounts-v1`), context indexes (`contexts-v1`) and leftovers of killed processes (`tmp/`,
//! snapshot temp dirs, trash).
//!
//! The default prune (like `docker builder prune`) removes what no tagged image shares:
//! records whose layer is not part of a tagged image, the blobs and snapshots only those
//! records needed, dangling blobs and snapshots, and leftovers. It keeps the records and
//! snapshots of tagged images' layers (removing them would free nothing, or only cost an
//! unpack) and cache mounts. `all` removes every record, snapshot, cache mount, variant and
//! context index as well. `keep_storage` removes least recently used first and stops once
//! the store is under the size; `until` removes only what was last used before then.
//!
//! # Last use, and what a running process uses
//!
//! The modification time is the LRU clock: writing a blob, record or snapshot sets it, and
//! a process that reuses one ([`touch`]) sets it to now. It orders `keep_storage` and
//! decides `until`; it protects nothing by itself.
//!
//! Every process that uses the store holds a [`Lease`] for its whole run: a file in
//! `leases-v1/` held with an exclusive flock (a dead process's lease is free, hence
//! recognisably stale). The lease lists what its process uses: the path (relative to the
//! root) of every blob, snapshot, record, variant and context index it writes (appended
//! before the rename that publishes the object: [`record_use`], called by the blob writer,
//! atomic writes and snapshot commits) or reuses ([`touch`]). A prune removes nothing a
//! live lease of another process lists, and ignores its own lease, as BuildKit protects
//! only what leases hold: `rbuild build ... && rbuild prune --all` frees everything the
//! finished build used. Leftovers of killed processes (temp files and directories whose
//! lock is free) go only when older than the start of every other live lease (its file's
//! modification time), so a file another process has just created and not yet locked stays.
//!
//! The window between "a build finds an old object and decides to reuse it" and "the build
//! lists it" is closed by the gc lock (`gc.lock`): a prune holds it exclusively for its
//! mark and sweep; a process holds it shared while it acquires its lease and while it looks
//! up and touches what it will reuse ([`GcLock::shared`]). So a prune either ran entirely
//! before the lookup (the build then sees the object gone and makes it again) or sees it
//! listed. A new object is listed before its rename and the prune reads the leases after
//! it has listed the store, so an object it sees is listed by then. Blobs being written are
//! locked temp files until their rename; cache mounts in use hold their flock, and a prune
//! skips a mount whose lock it cannot take.
//!
//! # Crash safety
//!
//! Records go before the blobs they name; blobs are unlinked one by one; snapshot and cache
//! mount directories are first renamed to a `.trash-` name (one atomic rename, under the gc
//! lock) and deleted afterwards, so a prune killed at any point leaves a store the next
//! build uses as it is: at worst a trash directory, which the next prune deletes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};
use serde::Serialize;

use crate::action::CacheRecord;
use crate::mounts::MOUNTS_DIR;
use crate::snapshots::SNAPSHOTS_DIR;
use crate::store::{StoreError, descriptor_digest, is_index, is_manifest};
use crate::{Digest, Store};

/// The lock file a prune holds exclusively, and users of the store shared for short windows.
pub const GC_LOCK: &str = "gc.lock";
/// The folder of leases: one file per live process using the store.
pub const LEASES_DIR: &str = "leases-v1";
/// The prefix of directories renamed for deletion.
const TRASH_PREFIX: &str = ".trash-";
/// Safety margin below the oldest other lease's start, for leftovers only: file times and
/// the lease's own time come from the same kernel clock, this only absorbs clock steps.
const LEASE_SLACK: Duration = Duration::from_secs(1);

/// The leases this process holds, to list what it uses in them and to tell them from
/// other processes' leases.
static HELD: std::sync::Mutex<Vec<std::sync::Arc<Held>>> = std::sync::Mutex::new(Vec::new());

/// A lease of this process: its store root (as given, and canonical), its file, and what
/// it has listed already.
#[derive(Debug)]
struct Held {
    roots: Vec<PathBuf>,
    path: PathBuf,
    append: std::sync::Mutex<(File, HashSet<String>)>,
}

fn held() -> std::sync::MutexGuard<'static, Vec<std::sync::Arc<Held>>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lists `path` (a blob, snapshot, record... under a store root) as used in this process's
/// lease on that store, if it holds one: a prune of another process then leaves it. Called
/// before the object is published (renamed into place) or when it is reused.
pub fn record_use(path: &Path) {
    let leases: Vec<std::sync::Arc<Held>> = held().clone();
    for lease in leases {
        let Some(rel) = lease
            .roots
            .iter()
            .find_map(|r| path.strip_prefix(r).ok())
            .and_then(|rel| rel.to_str())
        else {
            continue;
        };
        if rel.is_empty() || rel.contains('\n') {
            continue;
        }
        let mut state = lease.append.lock().unwrap_or_else(|e| e.into_inner());
        if state.1.contains(rel) {
            continue;
        }
        let line = format!("{rel}\n");
        match std::io::Write::write_all(&mut state.0, line.as_bytes()) {
            Ok(()) => {
                state.1.insert(rel.to_owned());
            }
            Err(e) => tracing::debug!("cannot list {rel} in {}: {e}", lease.path.display()),
        }
    }
}

/// Whether `path` is a lease this process holds.
fn is_own_lease(path: &Path) -> bool {
    held().iter().any(|h| h.path == path)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Errors of garbage collection; each names the path or object.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A file or directory of the store could not be read, locked or removed.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the images of the store failed.
    #[error("cannot read the images of the store at {root}")]
    Store {
        /// The store root.
        root: PathBuf,
        /// The cause.
        #[source]
        source: StoreError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GcError + '_ {
    move |source| GcError::Io {
        path: path.to_owned(),
        source,
    }
}

fn lock_file(path: &Path) -> Result<File, GcError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))
}

fn lock_wait(file: &File, op: FlockOperation, path: &Path) -> Result<(), GcError> {
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err(path)(e.into())),
        }
    }
}

/// Whether nobody holds a flock on `path` (a missing file counts as free).
fn lock_is_free(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok(),
        Err(_) => true,
    }
}

/// The store's gc lock, held until dropped.
#[derive(Debug)]
pub struct GcLock {
    _file: File,
}

impl GcLock {
    /// Takes the gc lock shared: for a process that looks up and [`touch`]es what it will
    /// reuse. Waits while a prune runs its mark and sweep.
    pub fn shared(root: &Path) -> Result<GcLock, GcError> {
        let path = root.join(GC_LOCK);
        let file = lock_file(&path)?;
        lock_wait(&file, FlockOperation::LockShared, &path)?;
        Ok(GcLock { _file: file })
    }

    /// Takes the gc lock exclusively (a prune), waiting for the shared holders.
    pub fn exclusive(root: &Path) -> Result<GcLock, GcError> {
        let path = root.join(GC_LOCK);
        let file = lock_file(&path)?;
        lock_wait(&file, FlockOperation::LockExclusive, &path)?;
        Ok(GcLock { _file: file })
    }
}

/// A live process's claim on the store: nothing it uses or writes (see [`record_use`]) is
/// removed by another process's prune while it holds the lease. Released (and its file
/// removed) when dropped; a killed process's lease is recognised as stale by its free
/// flock.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    _file: File,
}

impl Lease {
    /// Takes a new lease on the store at `root`, under the shared gc lock (so that a prune
    /// running now finishes first, and every later prune sees the lease).
    pub fn acquire(root: &Path) -> Result<Lease, GcError> {
        let dir = root.join(LEASES_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let _gc = GcLock::shared(root)?;
        let (path, file) =
            crate::fsutil::create_locked(&dir, "lease", "lease").map_err(io_err(&dir))?;
        let append = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut roots = vec![root.to_owned()];
        if let Ok(canonical) = root.canonicalize()
            && canonical != root
        {
            roots.push(canonical);
        }
        held().push(std::sync::Arc::new(Held {
            roots,
            path: path.clone(),
            append: std::sync::Mutex::new((append, HashSet::new())),
        }));
        Ok(Lease { path, _file: file })
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        held().retain(|h| h.path != self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets a file's or directory's last use (its modification time) to now, and lists it in
/// this process's lease ([`record_use`]).
pub fn touch(path: &Path) -> io::Result<()> {
    record_use(path);
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_NOW, utimensat};
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let times = Timestamps {
        last_access: now,
        last_modification: now,
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// The path of the action cache record of `key` (layout of [`crate::action::ActionCache`]).
fn record_path(root: &Path, key: &Digest) -> PathBuf {
    root.join("cache-v1")
        .join("keys")
        .join(format!("{}.json", key.hex()))
}

/// Marks a cache hit as used: its record, its layer blob and the layer's snapshot. The
/// caller holds [`GcLock::shared`] from its lookup to this call. Returns false when the
/// layer blob is gone (the record is then a miss).
pub fn mark_record_used(store: &Store, key: &Digest, record: &CacheRecord) -> bool {
    if let Some(layer) = &record.layer {
        let Ok(blob) = layer.digest.parse::<Digest>() else {
            return false;
        };
        if touch(&store.blob_path(&blob)).is_err() {
            return false;
        }
        if let Some(diff) = layer
            .diff_id
            .strip_prefix("sha256:")
            .and_then(|h| Digest::from_hex(h).ok())
        {
            let _ = touch(&store.root().join(SNAPSHOTS_DIR).join(diff.hex()));
        }
    }
    if let Err(e) = touch(&record_path(store.root(), key)) {
        tracing::debug!("cannot mark cache record {key} used: {e}");
    }
    true
}

/// Marks every blob of an image (manifest or index, config, layers) as used, under the gc
/// lock. Fails naming the first missing blob.
pub fn mark_image_used(
    store: &Store,
    descriptor: &oci_spec::image::Descriptor,
) -> Result<(), GcError> {
    let _gc = GcLock::shared(store.root())?;
    let store_err = |source| GcError::Store {
        root: store.root().to_owned(),
        source,
    };
    for digest in store.reachable(descriptor, true).map_err(store_err)? {
        let path = store.blob_path(&digest);
        if let Err(e) = touch(&path) {
            if e.kind() == io::ErrorKind::NotFound {
                return Err(store_err(StoreError::BlobMissing { digest }));
            }
            return Err(io_err(&path)(e));
        }
    }
    Ok(())
}

/// Removes images by name, as `rbuild rmi` does: the names go at once; each blob that only
/// they reached is deleted, unless the lease of a live process other than this one lists it,
/// the rule a prune follows. A build that resolved the image as its base listed its blobs
/// then, so they stay, unnamed, until a later prune. With no other live process, every such
/// blob goes.
pub fn remove_images(store: &Store, names: &[String]) -> Result<crate::store::Removed, GcError> {
    let root = store.root();
    let _gc = GcLock::exclusive(root)?;
    let others = other_leases(root, false, false)?;
    let keep = |digest: &Digest| {
        others
            .used
            .contains(&format!("blobs/sha256/{}", digest.hex()))
    };
    store.remove(names, &keep).map_err(|source| GcError::Store {
        root: root.to_owned(),
        source,
    })
}

/// What a prune removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Keep what this process's own lease lists too (the automatic gc at the end of a
    /// build keeps what the build used); `rbuild prune` ignores its own lease.
    pub keep_own: bool,
    /// Every record, snapshot, cache mount, variant and context index too, not only what
    /// no tagged image shares.
    pub all: bool,
    /// Stop once the store takes at most this many bytes (least recently used first).
    pub keep_storage: Option<u64>,
    /// Only what was last used at least this long ago.
    pub until: Option<Duration>,
    /// Compute and report, remove nothing.
    pub dry_run: bool,
}

/// The parts of the store, as `system df` shows them and `prune` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Blobs reachable from tagged images (never removed); counted as images, not blobs.
    Images,
    /// Action cache, slot and variant records, and the blobs only they reference.
    BuildCache,
    /// Blobs nothing references.
    Dangling,
    /// Unpacked layers.
    Snapshots,
    /// `RUN --mount=type=cache` directories.
    CacheMounts,
    /// Context stat indexes.
    Contexts,
    /// Containers of `rbuild run` (never removed by prune).
    Containers,
    /// Leftovers of killed processes: temp files, step and unpack dirs, trash.
    Temp,
    /// Everything else: `index.json`, locks, leases, pull sources.
    Other,
}

impl Kind {
    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Images => "images",
            Kind::BuildCache => "build cache",
            Kind::Dangling => "dangling blobs",
            Kind::Snapshots => "snapshots",
            Kind::CacheMounts => "cache mounts",
            Kind::Contexts => "context indexes",
            Kind::Containers => "containers",
            Kind::Temp => "temp",
            Kind::Other => "other",
        }
    }
}

/// A count and a size in bytes (allocated on disk, as `du` counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// How many objects.
    pub count: u64,
    /// Their size.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Removed, by kind.
    pub freed: BTreeMap<Kind, Tally>,
    /// Objects left because a process uses them (a live lease, a held cache mount lock).
    pub in_use: u64,
    /// The store's size before.
    pub before: u64,
    /// Whether nothing was removed (`dry_run`).
    pub dry_run: bool,
}

impl PruneReport {
    /// The total freed.
    pub fn total(&self) -> Tally {
        self.freed.values().fold(Tally::default(), |a, t| Tally {
            count: a.count + t.count,
            bytes: a.bytes + t.bytes,
        })
    }
}

/// One object of the store, as `system df --verbose` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// Its path relative to the root.
    pub path: String,
    /// Its size (allocated, hard links counted once).
    pub bytes: u64,
    /// Last use, seconds since the epoch.
    pub last_used: i64,
    /// Whether `prune --all` would remove it now.
    pub reclaimable: bool,
}

/// The store's usage by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Per kind: count and size (for images: how many images, their blobs counted in the
    /// size).
    pub kinds: BTreeMap<Kind, Tally>,
    /// Per kind: what `prune --all` would free now.
    pub reclaimable: BTreeMap<Kind, Tally>,
    /// Every object.
    pub entries: Vec<Entry>,
}

impl Usage {
    /// The store's total size.
    pub fn total(&self) -> u64 {
        self.kinds.values().map(|t| t.bytes).sum()
    }
}

/// Removes a directory tree (snapshots may hold files of other ids: the caller removes
/// them with the privileges they need).
pub type RemoveTree<'a> = &'a dyn Fn(&Path) -> io::Result<()>;

/// What a unit removes.
#[derive(Debug, Clone)]
enum Action {
    /// An action cache record, and the layer blob and snapshot it references.
    Record {
        path: PathBuf,
        blob: Option<Digest>,
        diff: Option<Digest>,
        key: Option<Digest>,
    },
    /// A slot's files; its last key.
    Slot {
        paths: Vec<PathBuf>,
        key: Option<Digest>,
    },
    /// A variant record and its blob.
    Variant {
        path: PathBuf,
        layer: Option<Digest>,
        blob: Option<Digest>,
    },
    /// A blob.
    Blob(Digest),
    /// A snapshot directory.
    Snapshot(Digest),
    /// A cache mount directory (`mounts-v1/<name>`).
    Mount(String),
    /// A context index file.
    Context(PathBuf),
    /// A leftover file or directory.
    Temp { path: PathBuf, dir: bool },
    /// Never removed (images, containers, other).
    Keep,
}

#[derive(Debug, Clone)]
struct Unit {
    kind: Kind,
    rel: String,
    mtime: SystemTime,
    bytes: u64,
    action: Action,
    /// Whether `system df` counts it as an object (not a directory itself or a lock file).
    object: bool,
}

/// Sizes of files and trees, counting each inode once (as `du`).
#[derive(Debug, Default)]
struct Sizer {
    seen: HashSet<(u64, u64)>,
}

impl Sizer {
    fn meta(&mut self, m: &std::fs::Metadata) -> u64 {
        if m.nlink() > 1 && !m.is_dir() && !self.seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        m.blocks() * 512
    }

    fn path(&mut self, path: &Path) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        let mut total = self.meta(&m);
        if m.is_dir() {
            let mut stack = vec![path.to_owned()];
            while let Some(dir) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let Ok(m) = e.metadata() else { continue };
                    total += self.meta(&m);
                    if m.is_dir() {
                        stack.push(e.path());
                    }
                }
            }
        }
        total
    }
}

fn mtime_of(path: &Path) -> SystemTime {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, GcError> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(io_err(dir))?;
                out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    out.sort();
    Ok(out)
}

fn sha256_hex(s: &str) -> Option<Digest> {
    s.strip_prefix("sha256:")
        .and_then(|h| Digest::from_hex(h).ok())
}

/// The store as one prune or df sees it.
#[derive(Debug)]
struct Inventory {
    units: Vec<Unit>,
    /// Blobs reachable from tags.
    tagged: HashSet<Digest>,
    /// Layer diff ids of tagged images.
    tagged_layers: HashSet<Digest>,
    /// How many images (distinct manifests or indexes) the store names.
    images: u64,
}

impl Inventory {
    fn scan(store: &Store) -> Result<Inventory, GcError> {
        let root = store.root();
        let store_err = |source| GcError::Store {
            root: root.to_owned(),
            source,
        };
        let rel = |p: &Path| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        let mut sizer = Sizer::default();
        let mut units = Vec::new();
        // Tagged images: their blobs and layer diff ids.
        let mut tagged = HashSet::new();
        let mut tagged_layers = HashSet::new();
        let mut images = HashSet::new();
        for image in store.list().map_err(store_err)? {
            images.insert(image.descriptor.digest().to_string());
            let reach = store
                .reachable(&image.descriptor, false)
                .map_err(store_err)?;
            tagged.extend(reach);
            let mut manifests = vec![image.descriptor.clone()];
            while let Some(d) = manifests.pop() {
                let Ok(digest) = descriptor_digest(&d) else {
                    continue;
                };
                if is_index(d.media_type()) {
                    if let Ok(index) = store.read_index_blob(&digest) {
                        manifests.extend(index.manifests().iter().cloned());
                    }
                } else if is_manifest(d.media_type())
                    && let Ok(m) = store.read_manifest(&digest)
                    && let Ok(c) = descriptor_digest(m.config())
                    && let Ok(config) = store.read_config(&c)
                {
                    tagged_layers.extend(
                        config
                            .rootfs()
                            .diff_ids()
                            .iter()
                            .filter_map(|d| sha256_hex(d)),
                    );
                }
            }
        }

        // Action cache records and slots.
        let keys_dir = root.join("cache-v1").join("keys");
        for (name, path) in list_dir(&keys_dir)? {
            let key = name
                .strip_suffix(".json")
                .and_then(|h| Digest::from_hex(h).ok());
            let record: Option<CacheRecord> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let layer = record.and_then(|r| r.layer);
            let blob = layer.as_ref().and_then(|l| l.digest.parse::<Digest>().ok());
            let diff = layer.as_ref().and_then(|l| sha256_hex(&l.diff_id));
            let action = Action::Record {
                path: path.clone(),
                blob,
                diff,
                key,
            };
            units.push(make(&mut sizer, root, Kind::BuildCache, &path, action));
        }
        let slots_dir = root.join("cache-v1").join("slots");
        let mut slots: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (name, path) in list_dir(&slots_dir)? {
            let stem = name.split('.').next().unwrap_or_default().to_string();
            slots.entry(stem).or_default().push(path);
        }
        for (stem, paths) in slots {
            let key_file = slots_dir.join(format!("{stem}.key"));
            let key = std::fs::read_to_string(&key_file)
                .ok()
                .and_then(|k| k.trim().parse::<Digest>().ok());
            let bytes: u64 = paths.iter().map(|p| sizer.path(p)).sum();
            let mtime = paths
                .iter()
                .map(|p| mtime_of(p))
                .max()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            units.push(Unit {
                kind: Kind::BuildCache,
                rel: rel(&slots_dir.join(&stem)),
                mtime,
                bytes,
                action: Action::Slot { paths, key },
                object: true,
            });
        }
        for dir in [keys_dir.clone(), slots_dir.clone(), root.join("cache-v1")] {
            units.extend(dir_unit(Kind::BuildCache, &dir, &rel(&dir)));
        }

        // Variants.
        let variants_dir = root.join("variants-v1");
        for (name, path) in list_dir(&variants_dir)? {
            let layer = name
                .split('.')
                .next()
                .and_then(|h| Digest::from_hex(h).ok());
            let blob = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::variants::Variant>(&b).ok())
                .filter(|v| v.stored)
                .and_then(|v| v.digest.parse::<Digest>().ok());
            let action = Action::Variant {
                path: path.clone(),
                layer,
                blob,
            };
            units.push(make(&mut sizer, root, Kind::BuildCache, &path, action));
        }

        // Blobs: tagged ones are images, the rest is decided below (cache or dangling).
        let blobs_dir = store.blobs_dir();
        for (name, path) in list_dir(&blobs_dir)? {
            match Digest::from_hex(&name) {
                Ok(d) if tagged.contains(&d) => {
                    units.push(make(&mut sizer, root, Kind::Images, &path, Action::Keep))
                }
                Ok(d) => units.push(make(
                    &mut sizer,
                    root,
                    Kind::Dangling,
                    &path,
                    Action::Blob(d),
                )),
                Err(_) => units.push(make(&mut sizer, root, Kind::Other, &path, Action::Keep)),
            }
        }
        for dir in [root.join("blobs"), blobs_dir] {
            units.extend(dir_unit(Kind::Images, &dir, &rel(&dir)));
        }

        // Snapshots, their temp dirs and trash.
        let snaps = root.join(SNAPSHOTS_DIR);
        for (name, path) in list_dir(&snaps)? {
            let orphan_lock = name
                .strip_suffix(".lock")
                .is_some_and(|hex| !snaps.join(hex).exists() && lock_is_free(&path));
            let action = if orphan_lock {
                // The lock of a snapshot that is gone: a leftover. (Removing a lock another
                // process is about to take at worst lets two unpack the same layer, and the
                // publishing rename keeps one.)
                (
                    Kind::Temp,
                    Action::Temp {
                        path: path.clone(),
                        dir: false,
                    },
                )
            } else if let Ok(d) = Digest::from_hex(&name) {
                (Kind::Snapshots, Action::Snapshot(d))
            } else if name.starts_with(TRASH_PREFIX) {
                (
                    Kind::Temp,
                    Action::Temp {
                        path: path.clone(),
                        dir: true,
                    },
                )
            } else if let Some(rest) = name.strip_prefix(".tmp-") {
                let free = rest
                    .get(..64)
                    .is_some_and(|h| lock_is_free(&snaps.join(format!("{h}.lock"))));
                if free {
                    (
                        Kind::Temp,
                        Action::Temp {
                            path: path.clone(),
                            dir: true,
                        },
                    )
                } else {
                    (Kind::Temp, Action::Keep)
                }
            } else {
                (Kind::Snapshots, Action::Keep)
            };
            units.push(make(&mut sizer, root, action.0, &path, action.1));
        }
        units.extend(dir_unit(Kind::Snapshots, &snaps, SNAPSHOTS_DIR));

        // Cache mounts: `<hex>` and `<hex>-<n>` directories; locks and ids stay.
        let mounts = root.join(MOUNTS_DIR);
        for (name, path) in list_dir(&mounts)? {
            let base = name.split('-').next().unwrap_or_default();
            let is_dir = path.is_dir();
            let action = if name.starts_with(TRASH_PREFIX) {
                (
                    Kind::Temp,
                    Action::Temp {
                        path: path.clone(),
                        dir: true,
                    },
                )
            } else if is_dir && base.len() == 64 && Digest::from_hex(base).is_ok() {
                (Kind::CacheMounts, Action::Mount(name.clone()))
            } else {
                (Kind::CacheMounts, Action::Keep)
            };
            units.push(make(&mut sizer, root, action.0, &path, action.1));
        }
        units.extend(dir_unit(Kind::CacheMounts, &mounts, MOUNTS_DIR));

        // Context indexes.
        let contexts = root.join("contexts-v1");
        for (_, path) in list_dir(&contexts)? {
            units.push(make(
                &mut sizer,
                root,
                Kind::Contexts,
                &path,
                Action::Context(path.clone()),
            ));
        }

        // Temp files and step dirs.
        let tmp = store.tmp_dir();
        for (_, path) in list_dir(&tmp)? {
            let dir = path.is_dir();
            let free = if dir {
                lock_is_free(&path.join(".lock"))
            } else {
                lock_is_free(&path)
            };
            let action = if free {
                Action::Temp {
                    path: path.clone(),
                    dir,
                }
            } else {
                Action::Keep
            };
            units.push(make(&mut sizer, root, Kind::Temp, &path, action));
        }

        // Everything else at the top, kept.
        let known = [
            "blobs",
            "cache-v1",
            "variants-v1",
            SNAPSHOTS_DIR,
            MOUNTS_DIR,
            "contexts-v1",
            "tmp",
        ];
        for (name, path) in list_dir(root)? {
            if known.contains(&name.as_str()) {
                if name == "contexts-v1" || name == "variants-v1" || name == "tmp" {
                    let kind = match name.as_str() {
                        "contexts-v1" => Kind::Contexts,
                        "variants-v1" => Kind::BuildCache,
                        _ => Kind::Temp,
                    };
                    units.extend(dir_unit(kind, &path, &name));
                }
                continue;
            }
            let kind = if name == crate::containers::CONTAINERS_DIR {
                Kind::Containers
            } else {
                Kind::Other
            };
            units.push(make(&mut sizer, root, kind, &path, Action::Keep));
        }
        units.extend(dir_unit(Kind::Other, root, "."));

        // Blobs referenced by records or variants are build cache, not dangling.
        let mut referenced = HashSet::new();
        for u in &units {
            match &u.action {
                Action::Record { blob: Some(b), .. } | Action::Variant { blob: Some(b), .. } => {
                    referenced.insert(*b);
                }
                _ => {}
            }
        }
        for u in &mut units {
            if let Action::Blob(d) = &u.action
                && referenced.contains(d)
            {
                u.kind = Kind::BuildCache;
            }
        }
        Ok(Inventory {
            units,
            tagged,
            tagged_layers,
            images: images.len() as u64,
        })
    }
}

/// A unit for the file or tree at `path`.
fn make(sizer: &mut Sizer, root: &Path, kind: Kind, path: &Path, action: Action) -> Unit {
    Unit {
        kind,
        rel: path
            .strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned(),
        mtime: mtime_of(path),
        bytes: sizer.path(path),
        object: !matches!(action, Action::Keep)
            || !(path
                .extension()
                .is_some_and(|e| e == "lock" || e == "create" || e == "id")),
        action,
    }
}

/// A directory itself (its entries not counted), when it exists: its size counts in the
/// usage, it is no object of its own (its time is the epoch, which marks such units).
fn dir_unit(kind: Kind, dir: &Path, rel: &str) -> Option<Unit> {
    let m = std::fs::symlink_metadata(dir).ok()?;
    Some(Unit {
        kind,
        rel: rel.to_owned(),
        mtime: SystemTime::UNIX_EPOCH,
        bytes: m.blocks() * 512,
        action: Action::Keep,
        object: false,
    })
}

/// What the live leases of other processes (and this one's, with `include_own`) hold: the
/// paths they list, and when the oldest of them started.
#[derive(Debug, Default)]
struct Others {
    used: HashSet<String>,
    oldest: Option<SystemTime>,
    live: usize,
}

impl Others {
    /// Leftovers (temp files and directories with a free lock) may go when older than this:
    /// the start of the oldest other live lease (less a margin), or now.
    fn temp_cutoff(&self) -> SystemTime {
        match self.oldest {
            Some(t) => t.checked_sub(LEASE_SLACK).unwrap_or(SystemTime::UNIX_EPOCH),
            None => SystemTime::now(),
        }
    }
}

/// When a lease started: from its name (`lease-PID-NANOS-N.lease`, nanoseconds since the
/// epoch in hex, as [`crate::fsutil::create_locked`] names it), else its file's time.
fn lease_start(path: &Path, file: &File) -> SystemTime {
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').nth(2))
        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
        .and_then(|nanos| u64::try_from(nanos / 1_000_000_000).ok())
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    from_name.unwrap_or_else(|| {
        file.metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    })
}

/// Reads the live leases of other processes (and this one's own with `include_own`);
/// stale ones (their holder is dead) are removed on the way unless `dry_run`. Only complete
/// lines count: a line still being appended names an object not yet published.
fn other_leases(root: &Path, dry_run: bool, include_own: bool) -> Result<Others, GcError> {
    let mut out = Others::default();
    for (_, path) in list_dir(&root.join(LEASES_DIR))? {
        let own = is_own_lease(&path);
        if own && !include_own {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if !own && flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
            if !dry_run {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        out.live += 1;
        if !own {
            let started = lease_start(&path, &file);
            out.oldest = Some(out.oldest.map_or(started, |o| o.min(started)));
        }
        let mut text = String::new();
        let _ = io::Read::read_to_string(&mut &file, &mut text);
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        out.used.extend(
            complete
                .split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(out)
}

/// Decides what to remove. Returns the indexes of removed units, and how many were left
/// because they are in use. An object may go when no live lease of `others` lists it (and,
/// with `until`, it was last used before then); a leftover when it is older than every
/// other live lease.
fn plan(
    inv: &Inventory,
    opts: &PruneOptions,
    others: &Others,
    until: Option<SystemTime>,
) -> (Vec<usize>, u64) {
    let units = &inv.units;
    let total: u64 = units.iter().map(|u| u.bytes).sum();
    let mut removed = vec![false; units.len()];
    let mut freed = 0u64;
    let mut in_use = 0u64;
    let listed = |u: &Unit| match &u.action {
        // A slot is its files `<stem>.json` and `<stem>.key`.
        Action::Slot { .. } => {
            let prefix = format!("{}.", u.rel);
            others.used.iter().any(|r| r.starts_with(&prefix))
        }
        _ => others.used.contains(&u.rel),
    };
    let old = |u: &Unit| !listed(u) && until.is_none_or(|c| u.mtime < c);
    let temp_cutoff = others.temp_cutoff();
    let old_temp = |u: &Unit| u.mtime < temp_cutoff && until.is_none_or(|c| u.mtime < c);
    let mut blob_refs: HashMap<Digest, usize> = HashMap::new();
    let mut snap_refs: HashMap<Digest, usize> = HashMap::new();
    let mut blob_unit: HashMap<Digest, usize> = HashMap::new();
    let mut snap_unit: HashMap<Digest, usize> = HashMap::new();
    let mut record_keys: HashMap<Digest, usize> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        match &u.action {
            Action::Record {
                blob, diff, key, ..
            } => {
                if let Some(b) = blob {
                    *blob_refs.entry(*b).or_default() += 1;
                }
                if let Some(d) = diff {
                    *snap_refs.entry(*d).or_default() += 1;
                }
                if let Some(k) = key {
                    record_keys.insert(*k, i);
                }
            }
            Action::Variant { blob: Some(b), .. } => *blob_refs.entry(*b).or_default() += 1,
            Action::Blob(d) => {
                blob_unit.insert(*d, i);
            }
            Action::Snapshot(d) => {
                snap_unit.insert(*d, i);
            }
            _ => {}
        }
    }
    let present = |d: &Digest| blob_unit.contains_key(d) || inv.tagged.contains(d);

    // Leftovers first, whatever the size limit: they are garbage, not cache.
    for (i, u) in units.iter().enumerate() {
        if let Action::Temp { .. } = u.action {
            if old_temp(u) {
                removed[i] = true;
                freed += u.bytes;
            } else {
                in_use += 1;
            }
        }
    }

    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (units[i].mtime, i));
    let over = |freed: u64| {
        opts.keep_storage
            .is_none_or(|k| total.saturating_sub(freed) > k)
    };
    let mut changed = true;
    let mut counted_busy = vec![false; units.len()];
    while changed && over(freed) {
        changed = false;
        for &i in &order {
            if !over(freed) {
                break;
            }
            if removed[i] {
                continue;
            }
            let u = &units[i];
            let candidate = match &u.action {
                Action::Record { blob, .. } => {
                    opts.all
                        || blob.is_none_or(|b| !inv.tagged.contains(&b))
                        || blob.is_some_and(|b| !present(&b))
                }
                Action::Variant { layer, .. } => {
                    opts.all || layer.is_none_or(|l| !inv.tagged.contains(&l))
                }
                Action::Blob(d) => {
                    !inv.tagged.contains(d) && blob_refs.get(d).copied().unwrap_or(0) == 0
                }
                Action::Snapshot(d) => {
                    opts.all
                        || (!inv.tagged_layers.contains(d)
                            && snap_refs.get(d).copied().unwrap_or(0) == 0)
                }
                Action::Mount(_) | Action::Context(_) => opts.all,
                Action::Slot { .. } | Action::Temp { .. } | Action::Keep => false,
            };
            if !candidate {
                continue;
            }
            if !old(u) {
                if !counted_busy[i] {
                    counted_busy[i] = true;
                    in_use += 1;
                }
                continue;
            }
            removed[i] = true;
            freed += u.bytes;
            changed = true;
            // What only this unit needed goes with it.
            let (blob, diff) = match &u.action {
                Action::Record { blob, diff, .. } => (*blob, *diff),
                Action::Variant { blob, .. } => (*blob, None),
                _ => (None, None),
            };
            if let Some(b) = blob {
                let n = blob_refs.entry(b).or_default();
                *n = n.saturating_sub(1);
                if *n == 0
                    && !inv.tagged.contains(&b)
                    && let Some(&j) = blob_unit.get(&b)
                    && !removed[j]
                    && old(&units[j])
                {
                    removed[j] = true;
                    freed += units[j].bytes;
                }
            }
            if let Some(d) = diff {
                let n = snap_refs.entry(d).or_default();
                *n = n.saturating_sub(1);
                if *n == 0
                    && (opts.all || !inv.tagged_layers.contains(&d))
                    && let Some(&j) = snap_unit.get(&d)
                    && !removed[j]
                    && old(&units[j])
                {
                    removed[j] = true;
                    freed += units[j].bytes;
                }
            }
        }
    }
    // Slots whose record is gone (or was never written) go too.
    for (i, u) in units.iter().enumerate() {
        if let Action::Slot { key, .. } = &u.action {
            let kept = key
                .and_then(|k| record_keys.get(&k))
                .is_some_and(|&j| !removed[j]);
            if !kept && old(u) {
                removed[i] = true;
            }
        }
    }
    let out = (0..units.len()).filter(|&i| removed[i]).collect();
    (out, in_use)
}

fn trash_name(dir: &Path, name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TRASH_PREFIX}{name}-{}-{n}", std::process::id()))
}

fn remove_file(path: &Path) -> Result<bool, GcError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes what no tagged image needs, as `opts` says (see the module docs), and reports
/// what it freed. Holds the gc lock exclusively for its mark and sweep; directory trees are
/// renamed to trash under it and deleted (with `remove_tree`) after it is released.
pub fn prune(
    store: &Store,
    opts: &PruneOptions,
    remove_tree: RemoveTree<'_>,
) -> Result<PruneReport, GcError> {
    let root = store.root();
    let gc = GcLock::exclusive(root)?;
    let until = opts.until.map(|until| {
        SystemTime::now()
            .checked_sub(until)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    // The index lock keeps tags from changing between the mark and the sweep of blobs: a
    // `tag` after the sweep checks every blob it names is present.
    let index_lock = store.lock().map_err(|source| GcError::Store {
        root: root.to_owned(),
        source,
    })?;
    let inv = Inventory::scan(store)?;
    // After the scan: an object the scan saw was listed in its lease before it was renamed
    // into place, so the leases read now list it.
    let others = other_leases(root, opts.dry_run, opts.keep_own)?;
    tracing::debug!(
        "prune: {} other live leases listing {} objects",
        others.live,
        others.used.len()
    );
    let (chosen, in_use) = plan(&inv, opts, &others, until);
    let mut report = PruneReport {
        in_use,
        before: inv.units.iter().map(|u| u.bytes).sum(),
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    if opts.dry_run {
        for &i in &chosen {
            let u = &inv.units[i];
            report.freed.entry(u.kind).or_default().add(u.bytes);
        }
        return Ok(report);
    }
    // Records first, then blobs, then directories (renamed to trash), then leftovers.
    let rank = |a: &Action| match a {
        Action::Record { .. } | Action::Slot { .. } | Action::Variant { .. } => 0,
        Action::Context(_) => 1,
        Action::Blob(_) => 2,
        Action::Snapshot(_) | Action::Mount(_) => 3,
        Action::Temp { .. } | Action::Keep => 4,
    };
    let mut chosen = chosen;
    chosen.sort_by_key(|&i| rank(&inv.units[i].action));
    let mut trash: Vec<PathBuf> = Vec::new();
    let mut synced_blobs = false;
    for i in chosen {
        let u = &inv.units[i];
        let done = match &u.action {
            Action::Record { path, .. } | Action::Variant { path, .. } | Action::Context(path) => {
                remove_file(path)?
            }
            Action::Slot { paths, .. } => {
                let mut any = false;
                for p in paths {
                    any |= remove_file(p)?;
                }
                any
            }
            Action::Blob(d) => {
                if !synced_blobs {
                    // Record removals are durable before any blob they named goes.
                    let keys = root.join("cache-v1").join("keys");
                    let _ = File::open(&keys).and_then(|f| f.sync_all());
                    synced_blobs = true;
                }
                remove_file(&store.blob_path(d))?
            }
            Action::Snapshot(d) => {
                let dir = root.join(SNAPSHOTS_DIR);
                let to = trash_name(&dir, &d.hex());
                match std::fs::rename(dir.join(d.hex()), &to) {
                    Ok(()) => {
                        trash.push(to);
                        true
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_err(&dir.join(d.hex()))(e)),
                }
            }
            Action::Mount(name) => {
                let dir = root.join(MOUNTS_DIR);
                let lock_path = dir.join(format!("{name}.lock"));
                let lock = lock_file(&lock_path)?;
                if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
                    report.in_use += 1;
                    continue;
                }
                let to = trash_name(&dir, name);
                match std::fs::rename(dir.join(name), &to) {
                    Ok(()) => {
                        trash.push(to);
                        true
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_err(&dir.join(name))(e)),
                }
            }
            Action::Temp { path, dir } => {
                if *dir {
                    trash.push(path.clone());
                    true
                } else {
                    remove_file(path)?
                }
            }
            Action::Keep => false,
        };
        if done {
            report.freed.entry(u.kind).or_default().add(u.bytes);
        }
    }
    for dir in [
        store.blobs_dir(),
        root.join(SNAPSHOTS_DIR),
        root.join(MOUNTS_DIR),
    ] {
        if dir.exists() {
            File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&dir))?;
        }
    }
    drop(index_lock);
    drop(gc);
    for t in trash {
        if let Err(e) = remove_tree(&t) {
            tracing::warn!("cannot remove {}: {e}", t.display());
        }
    }
    Ok(report)
}

/// The store's usage by kind, with what `prune --all` would free now.
pub fn usage(store: &Store) -> Result<Usage, GcError> {
    let root = store.root();
    let inv = Inventory::scan(store)?;
    let others = other_leases(root, true, false)?;
    let all = PruneOptions {
        all: true,
        dry_run: true,
        ..PruneOptions::default()
    };
    let (chosen, _) = plan(&inv, &all, &others, None);
    let chosen: HashSet<usize> = chosen.into_iter().collect();
    let mut usage = Usage::default();
    for (i, u) in inv.units.iter().enumerate() {
        let t = usage.kinds.entry(u.kind).or_default();
        if !u.object {
            // A directory itself, a lock: its size counts, it is no object.
            t.bytes += u.bytes;
            continue;
        }
        t.add(u.bytes);
        let reclaimable = chosen.contains(&i);
        if reclaimable {
            usage.reclaimable.entry(u.kind).or_default().add(u.bytes);
        }
        usage.entries.push(Entry {
            kind: u.kind,
            path: u.rel.clone(),
            bytes: u.bytes,
            last_used: u
                .mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            reclaimable,
        });
    }
    // Images count as images, however many blobs they have.
    if let Some(t) = usage.kinds.get_mut(&Kind::Images) {
        t.count = inv.images;
    }
    Ok(usage)
}

/// Parses a duration: one or more `<number><unit>` with units `s`, `m`, `h`, `d`, `w`
/// (`24h`, `1h30m`, `7d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(secs)?)?;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs(total))
}

/// `1.5 KiB`, `20 MiB`: a size for people (powers of 1024).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{ActionCache, LayerRecord, SCHEMA};

    fn age(path: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(t).unwrap();
    }

    fn remove(p: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(p)
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        for bad in ["", "h", "10", "1x", "-1h", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(20 << 20), "20.0 MiB");
    }

    /// A live lease of another process (a flock on its own open file) that lists `paths`;
    /// the lock goes with the returned file.
    fn other_lease(root: &Path, name: &str, paths: &[String]) -> File {
        let dir = root.join(LEASES_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut text: String = paths.iter().map(|p| format!("{p}\n")).collect();
        // A line still being written names nothing yet.
        text.push_str("blobs/sha256/partial");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        flock(&file, FlockOperation::LockExclusive).unwrap();
        file
    }

    fn blob_rel(d: &Digest) -> String {
        format!("blobs/sha256/{}", d.hex())
    }

    #[test]
    fn prune_keeps_what_other_live_leases_list_and_drops_stale_leases() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let free = store.put_blob(b"free dangling", None).unwrap();
        let listed = store.put_blob(b"listed dangling", None).unwrap();
        let held = other_lease(dir.path(), "lease-1-0-0.lease", &[blob_rel(&listed.digest)]);
        // A stale lease (nobody holds it) lists nothing that counts.
        let stale = dir.path().join(LEASES_DIR).join("lease-2-0-0.lease");
        std::fs::write(&stale, format!("{}\n", blob_rel(&free.digest))).unwrap();
        // Just written, and no lease lists it: nothing but leases protects.
        let r = prune(&store, &PruneOptions::default(), &remove).unwrap();
        assert!(!store.has_blob(&free.digest));
        assert!(store.has_blob(&listed.digest));
        assert_eq!(r.freed[&Kind::Dangling].count, 1);
        assert_eq!(r.in_use, 1);
        assert!(!stale.exists(), "stale lease left");
        // This process's own lease lists what it writes; its prune ignores it, the
        // automatic gc after a build (keep_own) keeps it.
        let own = Lease::acquire(dir.path()).unwrap();
        let mine = store.put_blob(b"mine", None).unwrap();
        let listing = std::fs::read_to_string(own.path()).unwrap();
        assert_eq!(listing, format!("{}\n", blob_rel(&mine.digest)));
        let keep_own = PruneOptions {
            keep_own: true,
            ..PruneOptions::default()
        };
        prune(&store, &keep_own, &remove).unwrap();
        assert!(store.has_blob(&mine.digest));
        prune(&store, &PruneOptions::default(), &remove).unwrap();
        assert!(!store.has_blob(&mine.digest));
        drop(own);
        // The other process ends: what it listed goes.
        drop(held);
        prune(&store, &PruneOptions::default(), &remove).unwrap();
        assert!(!store.has_blob(&listed.digest));
    }

    #[test]
    fn remove_images_keeps_blobs_another_lease_lists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.put_blob(b"layer", None).unwrap();
        let config = store.put_blob(b"{}", None).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest.to_string(), "size": config.size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob.digest.to_string(), "size": blob.size}],
        });
        let desc = store
            .put_document(
                oci_spec::image::MediaType::ImageManifest,
                &serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
        store.tag("x/y:1", &desc).unwrap();
        let held = other_lease(dir.path(), "lease-1-0-0.lease", &[blob_rel(&blob.digest)]);
        let removed = remove_images(&store, &["x/y:1".to_string()]).unwrap();
        assert_eq!(removed.kept, vec![blob.digest]);
        assert!(store.has_blob(&blob.digest) && !store.has_blob(&config.digest));
        drop(held);
        prune(&store, &PruneOptions::default(), &remove).unwrap();
        assert!(!store.has_blob(&blob.digest));
    }

    #[test]
    fn records_go_with_their_blobs_and_all_drops_shared_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = ActionCache::open(dir.path()).unwrap();
        let layer = store.put_blob(b"layer tar", None).unwrap();
        let key = Digest::of(b"key");
        let record = CacheRecord {
            schema: SCHEMA,
            layer: Some(LayerRecord {
                digest: layer.digest.to_string(),
                diff_id: layer.digest.to_string(),
                size: layer.size,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }),
            created: 0,
            description: "RUN x".into(),
        };
        cache.put(&key, &record).unwrap();
        // Another live process uses this record.
        let used = Digest::of(b"used");
        cache.put(&used, &record).unwrap();
        let rel = |k: &Digest| format!("cache-v1/keys/{}.json", k.hex());
        let held = other_lease(dir.path(), "lease-1-0-0.lease", &[rel(&used)]);
        let dry = PruneOptions {
            dry_run: true,
            ..PruneOptions::default()
        };
        let r = prune(&store, &dry, &remove).unwrap();
        assert_eq!(r.freed.get(&Kind::BuildCache).map(|t| t.count), Some(1));
        assert!(cache.get(&key).unwrap().is_some(), "dry run removed");
        prune(&store, &PruneOptions::default(), &remove).unwrap();
        assert!(cache.get(&key).unwrap().is_none());
        assert!(cache.get(&used).unwrap().is_some());
        // The blob is still referenced by the used record.
        assert!(store.has_blob(&layer.digest));
        drop(held);
        prune(&store, &PruneOptions::default(), &remove).unwrap();
        assert!(!store.has_blob(&layer.digest));
        assert!(cache.keys().unwrap().is_empty());
    }

    #[test]
    fn keep_storage_removes_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut blobs = Vec::new();
        for (i, secs) in [(0u8, 4000u64), (1, 3000), (2, 2000), (3, 1000)] {
            let b = store.put_blob(&vec![i; 64 << 10], None).unwrap();
            age(&store.blob_path(&b.digest), secs);
            blobs.push(b.digest);
        }
        let before = usage(&store).unwrap().total();
        // Room for all but about 1.5 blobs: the two oldest go.
        let opts = PruneOptions {
            keep_storage: Some(before - (96 << 10)),
            ..PruneOptions::default()
        };
        let r = prune(&store, &opts, &remove).unwrap();
        assert_eq!(r.freed[&Kind::Dangling].count, 2);
        assert!(!store.has_blob(&blobs[0]) && !store.has_blob(&blobs[1]));
        assert!(store.has_blob(&blobs[2]) && store.has_blob(&blobs[3]));
        // until: only older than 1500 s.
        let opts = PruneOptions {
            until: Some(Duration::from_secs(1500)),
            ..PruneOptions::default()
        };
        prune(&store, &opts, &remove).unwrap();
        assert!(!store.has_blob(&blobs[2]) && store.has_blob(&blobs[3]));
    }
}
