//! Persistent cache mounts (`RUN --mount=type=cache`): `ROOT/mounts-v1/`.
//!
//! Each cache id (the mount's `id=`, by default its target path, as BuildKit does) owns
//! directories named by the SHA-256 of the id, so no text from a Dockerfile ever forms a
//! path:
//!
//! ```text
//! mounts-v1/<hex>/          the id's main directory
//! mounts-v1/<hex>.lock      flock of the main directory's users
//! mounts-v1/<hex>-<n>/      extra directories of `sharing=private` (n = 1, 2, ...)
//! mounts-v1/<hex>-<n>.lock  their flocks
//! mounts-v1/<hex>.create    flock held while a directory of the id is being created
//! mounts-v1/<hex>.id        the id in clear, for listings
//! mounts-v1/.tmp-<hex>-...  a directory being created (renamed into place when ready)
//! ```
//!
//! Sharing modes, as BuildKit defines them:
//! - `shared`: every build uses the main directory at once; each holds a shared flock, so
//!   a prune can tell the directory is in use. A shared user waits only while a `locked`
//!   or `private` user holds the main directory.
//! - `locked`: one build at a time; the others wait (and say so in the log) for the
//!   exclusive flock.
//! - `private`: never waits. A build takes the first of the id's directories nobody
//!   holds (the main one, then `<hex>-1`, `<hex>-2`...), creating a new one when all are
//!   busy. Like BuildKit, which keeps such extra directories as more cache records of
//!   the same id, they are kept and reused by later private users.
//!
//! Crash safety: a directory is made under a temp name, given its owner and mode, then
//! renamed into place, so a directory under its final name is always complete. Temp
//! directories of an id are removed by the next build that creates one for the id (it
//! holds the id's create lock, so they cannot belong to a live process). Locks are flocks
//! and vanish with the process that held them.
//!
//! Owner: a new directory gets the owner and mode the mount asks for (`uid`, `gid`,
//! `mode`, default 0:0 and 0755), in host ids (the caller maps container ids through its
//! id map). Without root, chown to other ids fails: [`CacheMounts::acquire`] then leaves
//! the directory owned by the invoking user, which is root inside a rootless sandbox, and
//! warns. Callers that can set the owner from inside the user namespace use
//! [`CacheMounts::acquire_with`] and do it in its `init` step, before the directory is
//! published (the executor's `sandbox::set_owner` does it with the sandbox's id map, in
//! container ids).
//!
//! Locks are flocks on open file descriptions: a process forked while a guard is held
//! (a sandbox's helper) shares the lock until it exits.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};
use sha2::{Digest as _, Sha256};

pub use rbuild_compiler::instructions::flags::CacheSharing as Sharing;

/// The folder of the store holding cache mounts.
pub const MOUNTS_DIR: &str = "mounts-v1";
const TEMP_PREFIX: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Errors of [`CacheMounts`]; each names the path or the cache id.
#[derive(Debug, thiserror::Error)]
pub enum MountsError {
    /// A file-system call on a cache mount path failed.
    #[error("cannot access cache mount path {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Preparing a new directory (its owner and mode) failed.
    #[error("cannot prepare the directory of cache mount {id:?} at {path}")]
    Init {
        /// The cache id.
        id: String,
        /// The directory being prepared.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MountsError + '_ {
    move |source| MountsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cache mount folder of one store.
#[derive(Debug, Clone)]
pub struct CacheMounts {
    dir: PathBuf,
}

/// A cache mount directory in use; its lock is released when dropped.
#[derive(Debug)]
pub struct CacheMountGuard {
    /// The directory to bind-mount.
    pub path: PathBuf,
    /// Whether this acquire created it (it is empty).
    pub created: bool,
    _lock: File,
}

/// The file name all of an id's paths start with.
pub fn id_hex(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl CacheMounts {
    /// The cache mount folder under the store root `store_root` (created if missing).
    pub fn open(store_root: &Path) -> Result<CacheMounts, MountsError> {
        let dir = store_root.join(MOUNTS_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(CacheMounts { dir })
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes a directory of cache `id` with `sharing` (see the module docs), creating it
    /// when missing with `mode` (permission bits) and `owner` (host uid and gid; `None`:
    /// the caller's). Waits while another build holds it in `locked` mode.
    pub fn acquire(
        &self,
        id: &str,
        sharing: Sharing,
        owner: Option<(u32, u32)>,
        mode: u32,
    ) -> Result<CacheMountGuard, MountsError> {
        self.acquire_with(id, sharing, &mut |dir| init_dir(id, dir, owner, mode))
    }

    /// Like [`CacheMounts::acquire`], with the caller preparing a new directory: `init`
    /// gets it under its temp name, before it is published.
    pub fn acquire_with(
        &self,
        id: &str,
        sharing: Sharing,
        init: &mut dyn FnMut(&Path) -> io::Result<()>,
    ) -> Result<CacheMountGuard, MountsError> {
        let hex = id_hex(id);
        match sharing {
            Sharing::Shared | Sharing::Locked => {
                let (op, try_op) = if sharing == Sharing::Shared {
                    (
                        FlockOperation::LockShared,
                        FlockOperation::NonBlockingLockShared,
                    )
                } else {
                    (
                        FlockOperation::LockExclusive,
                        FlockOperation::NonBlockingLockExclusive,
                    )
                };
                let (lock_path, lock) = self.lock_file(&hex)?;
                if !try_lock(&lock, try_op).map_err(io_err(&lock_path))? {
                    tracing::info!(
                        "waiting for cache mount {id:?} (sharing={}): another build is using it",
                        sharing.as_str()
                    );
                    lock_wait(&lock, op).map_err(io_err(&lock_path))?;
                    tracing::debug!("cache mount {id:?} is free");
                }
                let (path, created) = self.ensure(id, &hex, &hex, init)?;
                Ok(CacheMountGuard {
                    path,
                    created,
                    _lock: lock,
                })
            }
            Sharing::Private => {
                for n in 0u64.. {
                    let name = if n == 0 {
                        hex.clone()
                    } else {
                        format!("{hex}-{n}")
                    };
                    let (lock_path, lock) = self.lock_file(&name)?;
                    if try_lock(&lock, FlockOperation::NonBlockingLockExclusive)
                        .map_err(io_err(&lock_path))?
                    {
                        if n > 0 {
                            tracing::debug!(
                                "cache mount {id:?} is busy: using its private directory {n}"
                            );
                        }
                        let (path, created) = self.ensure(id, &hex, &name, init)?;
                        return Ok(CacheMountGuard {
                            path,
                            created,
                            _lock: lock,
                        });
                    }
                }
                unreachable!("one of infinitely many private directories is free")
            }
        }
    }

    /// The ids of the cache mounts that exist, sorted.
    pub fn list(&self) -> Result<Vec<String>, MountsError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".id")) else {
                continue;
            };
            if self.dir.join(hex).is_dir() {
                let p = entry.path();
                out.push(std::fs::read_to_string(&p).map_err(io_err(&p))?);
            }
        }
        out.sort();
        Ok(out)
    }

    fn lock_file(&self, name: &str) -> Result<(PathBuf, File), MountsError> {
        let p = self.dir.join(format!("{name}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        Ok((p, f))
    }

    /// The directory `name` of `id`, created (under the create lock, through a temp
    /// directory) when missing; whether it was created.
    fn ensure(
        &self,
        id: &str,
        hex: &str,
        name: &str,
        init: &mut dyn FnMut(&Path) -> io::Result<()>,
    ) -> Result<(PathBuf, bool), MountsError> {
        let path = self.dir.join(name);
        if path.is_dir() {
            return Ok((path, false));
        }
        let create_path = self.dir.join(format!("{hex}.create"));
        let create = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&create_path)
            .map_err(io_err(&create_path))?;
        lock_wait(&create, FlockOperation::LockExclusive).map_err(io_err(&create_path))?;
        if path.is_dir() {
            return Ok((path, false));
        }
        self.remove_leftovers(hex)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id()));
        std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        if let Err(source) = init(&tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(MountsError::Init {
                id: id.to_owned(),
                path: tmp,
                source,
            });
        }
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &path,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(io_err(&path)(e.into()));
            }
        }
        let id_path = self.dir.join(format!("{hex}.id"));
        if !id_path.exists() {
            crate::atomic::write(&id_path, None, None, id.as_bytes()).map_err(io_err(&id_path))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        tracing::debug!("created cache mount {id:?} at {}", path.display());
        Ok((path, true))
    }

    /// Removes temp directories of `hex`: the caller holds its create lock, so they were
    /// left by killed processes.
    fn remove_leftovers(&self, hex: &str) -> Result<(), MountsError> {
        let prefix = format!("{TEMP_PREFIX}{hex}");
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let p = entry.path();
                tracing::debug!("removing the leftover {}", p.display());
                std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }
}

/// Gives a new directory its mode and owner. Without the privilege to chown, it stays
/// the caller's (root in a rootless sandbox), with a warning.
fn init_dir(id: &str, dir: &Path, owner: Option<(u32, u32)>, mode: u32) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        let r = rustix::fs::chown(
            dir,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        );
        match r {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => {
                tracing::warn!(
                    "cannot give cache mount {id:?} to host uid {uid} gid {gid} without root: \
                     it is owned by the invoking user (root in the sandbox)"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

fn try_lock(f: &File, op: FlockOperation) -> io::Result<bool> {
    loop {
        match flock(f, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn lock_wait(f: &File, op: FlockOperation) -> io::Result<()> {
    loop {
        match flock(f, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
