//! Unpacked layer snapshots: `ROOT/snapshots-v1/<diff_id hex>/`, one directory per layer,
//! unpacked once and shared by every later build and run as an overlay lower dir.
//!
//! This module keeps the books only: paths, the per-snapshot lock, the temp directory a
//! layer is unpacked into, the atomic rename that publishes it, listing and leftovers. The
//! caller does the unpacking (and the removal, which may need the sandbox's id map).
//!
//! Publishing protocol: take [`Snapshots::lock`] (an exclusive `flock` on
//! `<hex>.lock`), check [`Snapshots::get`] again, unpack into [`Snapshots::temp_dir`],
//! then [`Snapshots::commit`] renames it into place. A directory named by a digest is
//! therefore always complete; a crash leaves only a temp directory, which
//! [`Snapshots::leftovers`] lists for removal.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};

use crate::Digest;

/// The folder of the store holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots-v1";
const TEMP_PREFIX: &str = ".tmp-";
const LOCK_SUFFIX: &str = ".lock";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Errors of [`Snapshots`]; each names the path that failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotsError {
    /// A file-system call on a snapshot path failed.
    #[error("cannot access snapshot path {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Publishing found the snapshot already there (another process won).
    #[error("snapshot {path} already exists")]
    Exists {
        /// The existing snapshot.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotsError + '_ {
    move |source| SnapshotsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The snapshot folder of one store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

/// Holds a snapshot's lock until dropped.
#[derive(Debug)]
pub struct SnapshotLock {
    _file: File,
}

impl Snapshots {
    /// The snapshot folder under the store root `root` (created if missing).
    pub fn open(root: &Path) -> Result<Snapshots, SnapshotsError> {
        let dir = root.join(SNAPSHOTS_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Snapshots { dir })
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the snapshot of the layer with uncompressed digest `diff_id` lives.
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// The snapshot of `diff_id`, when it has been published.
    pub fn get(&self, diff_id: &Digest) -> Option<PathBuf> {
        let p = self.path(diff_id);
        p.is_dir().then_some(p)
    }

    /// Takes the exclusive lock of `diff_id`'s snapshot, waiting for another process that
    /// holds it (while it unpacks the same layer).
    pub fn lock(&self, diff_id: &Digest) -> Result<SnapshotLock, SnapshotsError> {
        let p = self.dir.join(format!("{}{LOCK_SUFFIX}", diff_id.hex()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err(&p)(e.into())),
            }
        }
        Ok(SnapshotLock { _file: file })
    }

    /// A new, empty directory in the snapshot folder (same file system) to unpack
    /// `diff_id` into before [`Snapshots::commit`].
    pub fn temp_dir(&self, diff_id: &Digest) -> Result<PathBuf, SnapshotsError> {
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = self.dir.join(format!(
                "{TEMP_PREFIX}{}-{}-{n}",
                diff_id.hex(),
                std::process::id()
            ));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
    }

    /// Publishes the unpacked `temp` as `diff_id`'s snapshot with one rename that fails
    /// when the snapshot exists ([`SnapshotsError::Exists`]: the caller removes `temp` and
    /// uses the existing one).
    pub fn commit(&self, temp: &Path, diff_id: &Digest) -> Result<PathBuf, SnapshotsError> {
        let dest = self.path(diff_id);
        crate::gc::record_use(&dest);
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            temp,
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => return Err(SnapshotsError::Exists { path: dest }),
            Err(e) => return Err(io_err(&dest)(e.into())),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        Ok(dest)
    }

    /// The digests of all published snapshots.
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotsError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            if let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok())
                && entry.path().is_dir()
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Temp directories of unpacks that no live process is doing (their lock is free):
    /// what a crash left behind. The caller removes them.
    pub fn leftovers(&self) -> Result<Vec<PathBuf>, SnapshotsError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
                continue;
            };
            let Some(d) = rest.get(..64).and_then(|h| Digest::from_hex(h).ok()) else {
                continue;
            };
            let lock = self.dir.join(format!("{}{LOCK_SUFFIX}", d.hex()));
            let free = match File::open(&lock) {
                Ok(f) => flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok(),
                Err(_) => true,
            };
            if free {
                out.push(entry.path());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_publishes_once_and_lists() {
        let root = tempfile::tempdir().unwrap();
        let s = Snapshots::open(root.path()).unwrap();
        let d = Digest::of(b"layer");
        assert_eq!(s.get(&d), None);
        let t1 = s.temp_dir(&d).unwrap();
        std::fs::write(t1.join("f"), b"1").unwrap();
        let t2 = s.temp_dir(&d).unwrap();
        assert_ne!(t1, t2);
        let p = s.commit(&t1, &d).unwrap();
        assert_eq!(s.get(&d), Some(p.clone()));
        assert!(matches!(
            s.commit(&t2, &d),
            Err(SnapshotsError::Exists { .. })
        ));
        assert_eq!(std::fs::read(p.join("f")).unwrap(), b"1");
        assert_eq!(s.list().unwrap(), vec![d]);
        // t2 is a leftover while nobody holds the lock, not while someone does.
        let lock = s.lock(&d).unwrap();
        assert!(s.leftovers().unwrap().is_empty());
        drop(lock);
        assert_eq!(s.leftovers().unwrap(), vec![t2]);
    }
}
