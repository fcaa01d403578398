//! Leases: every process using the store holds one in `leases-v1/` and lists in it what
//! it writes or reuses ([`record_use`], [`touch`], [`mark_record_used`],
//! [`mark_image_used`]); a prune reads the other live leases ([`other_leases`]) and leaves
//! what they list.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};

use super::LEASES_DIR;
use super::error::{GcError, io_err};
use super::inventory::list_dir;
use super::lock::GcLock;
use crate::action::CacheRecord;
use crate::snapshots::SNAPSHOTS_DIR;
use crate::store::StoreError;
use crate::{Digest, Store};

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
        if touch(&store.blob_path(&layer.digest)).is_err() {
            return false;
        }
        let _ = touch(&store.root().join(SNAPSHOTS_DIR).join(layer.diff_id.hex()));
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

/// What the live leases of other processes (and this one's, with `include_own`) hold: the
/// paths they list, and when the oldest of them started.
#[derive(Debug, Default)]
pub(super) struct Others {
    pub(super) used: HashSet<String>,
    pub(super) oldest: Option<SystemTime>,
    pub(super) live: usize,
}

impl Others {
    /// Leftovers (temp files and directories with a free lock) may go when older than this:
    /// the start of the oldest other live lease (less a margin), or now.
    pub(super) fn temp_cutoff(&self) -> SystemTime {
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
pub(super) fn other_leases(
    root: &Path,
    dry_run: bool,
    include_own: bool,
) -> Result<Others, GcError> {
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
