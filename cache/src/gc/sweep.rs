//! The sweep: [`prune`] removes what the plan chose, records before the blobs they name and
//! directories renamed to trash under the gc lock; [`remove_images`] is `rbuild rmi` under
//! the same lease rule.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};
use serde::Serialize;

use super::TRASH_PREFIX;
use super::error::{GcError, io_err};
use super::inventory::{Action, Inventory, Kind, Tally};
use super::lease::other_leases;
use super::lock::{GcLock, lock_file};
use super::plan::plan;
use crate::mounts::MOUNTS_DIR;
use crate::snapshots::SNAPSHOTS_DIR;
use crate::{Digest, Store};

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

/// Removes a directory tree (snapshots may hold files of other ids: the caller removes
/// them with the privileges they need).
pub type RemoveTree<'a> = &'a dyn Fn(&Path) -> io::Result<()>;

static COUNTER: AtomicU64 = AtomicU64::new(0);

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
    let removed = store
        .remove(names, &keep)
        .map_err(|source| GcError::Store {
            root: root.to_owned(),
            source,
        })?;
    forget_sources(store);
    Ok(removed)
}

/// Drops the pull sources of manifests no longer in the store. They only save uploads, so a
/// failure is logged, not returned.
fn forget_sources(store: &Store) {
    match store.forget_sources() {
        Ok(0) => {}
        Ok(n) => tracing::debug!("forgot the pull sources of {n} removed manifests"),
        Err(e) => tracing::warn!("{e}"),
    }
    // So are the records of ADD downloads whose content went.
    match store.forget_downloads() {
        Ok(0) => {}
        Ok(n) => tracing::debug!("forgot {n} downloads whose content was removed"),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Moves `dir/name` into the trash (emptied later, outside the lock): whether it was there.
fn to_trash(dir: &Path, name: &str, trash: &mut Vec<PathBuf>) -> Result<bool, GcError> {
    let to = trash_name(dir, name);
    match std::fs::rename(dir.join(name), &to) {
        Ok(()) => {
            trash.push(to);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&dir.join(name))(e)),
    }
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
        Action::Snapshot(_) | Action::Mount(_) | Action::Checkout(_) => 3,
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
                to_trash(&dir, &d.hex(), &mut trash)?
            }
            Action::Mount(name) => {
                let dir = root.join(MOUNTS_DIR);
                let lock_path = dir.join(format!("{name}.lock"));
                let lock = lock_file(&lock_path)?;
                if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
                    report.in_use += 1;
                    continue;
                }
                to_trash(&dir, name, &mut trash)?
            }
            Action::Checkout(name) => {
                let dir = root.join(super::GIT_CHECKOUTS_DIR);
                to_trash(&dir, name, &mut trash)?
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
    forget_sources(store);
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
