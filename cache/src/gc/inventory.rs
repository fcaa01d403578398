//! The store as one prune or `system df` sees it: every file and directory as a unit of a
//! [`Kind`], with its size (as `du` counts), its last use, and what removing it means; the
//! tagged images' blobs and layers, which always stay.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::TRASH_PREFIX;
use super::error::{GcError, io_err};
use super::lock::lock_is_free;
use crate::action::CacheRecord;
use crate::mounts::MOUNTS_DIR;
use crate::snapshots::SNAPSHOTS_DIR;
use crate::store::{descriptor_digest, is_index, is_manifest};
use crate::{Digest, Store};

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
    /// Checkouts of git repositories (`git-v1/<commit>`).
    GitCheckouts,
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
            Kind::GitCheckouts => "git checkouts",
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
    pub(super) fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// What a unit removes.
#[derive(Debug, Clone)]
pub(super) enum Action {
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
    /// A git checkout directory (`git-v1/<name>`).
    Checkout(String),
    /// A leftover file or directory.
    Temp { path: PathBuf, dir: bool },
    /// Never removed (images, containers, other).
    Keep,
}

#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) kind: Kind,
    pub(super) rel: String,
    pub(super) mtime: SystemTime,
    pub(super) bytes: u64,
    pub(super) action: Action,
    /// Whether `system df` counts it as an object (not a directory itself or a lock file).
    pub(super) object: bool,
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

pub(super) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, GcError> {
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
pub(super) struct Inventory {
    pub(super) units: Vec<Unit>,
    /// Blobs reachable from tags.
    pub(super) tagged: HashSet<Digest>,
    /// Layer diff ids of tagged images.
    pub(super) tagged_layers: HashSet<Digest>,
    /// How many images (distinct manifests or indexes) the store names.
    pub(super) images: u64,
}

impl Inventory {
    pub(super) fn scan(store: &Store) -> Result<Inventory, GcError> {
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
            let blob = layer.as_ref().map(|l| l.digest);
            let diff = layer.as_ref().map(|l| l.diff_id);
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
                .map(|v| v.digest);
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

        // Git checkouts: `<commit>` and `<commit>-git` directories.
        let checkouts = root.join(super::GIT_CHECKOUTS_DIR);
        for (name, path) in list_dir(&checkouts)? {
            let commit = name.strip_suffix("-git").unwrap_or(&name);
            let action = if name.starts_with(TRASH_PREFIX) {
                (
                    Kind::Temp,
                    Action::Temp {
                        path: path.clone(),
                        dir: true,
                    },
                )
            } else if path.is_dir()
                && (commit.len() == 40 || commit.len() == 64)
                && commit.bytes().all(|b| b.is_ascii_hexdigit())
            {
                (Kind::GitCheckouts, Action::Checkout(name.clone()))
            } else {
                (Kind::GitCheckouts, Action::Keep)
            };
            units.push(make(&mut sizer, root, action.0, &path, action.1));
        }
        units.extend(dir_unit(
            Kind::GitCheckouts,
            &checkouts,
            super::GIT_CHECKOUTS_DIR,
        ));

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
            super::GIT_CHECKOUTS_DIR,
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
            let kind = if name == crate::containers::CONTAINERS_DIR
                || name == crate::containers::CREATE_LOCK
            {
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
