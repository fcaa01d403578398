//! The store's gc lock (`gc.lock`): a prune holds it exclusively for its mark and sweep,
//! other processes shared while they take their lease and mark what they reuse; and the
//! flock helpers the leases, the inventory and the sweep share.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use super::GC_LOCK;
use super::error::{GcError, io_err};

pub(super) fn lock_file(path: &Path) -> Result<File, GcError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))
}

pub(super) fn lock_wait(file: &File, op: FlockOperation, path: &Path) -> Result<(), GcError> {
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err(path)(e.into())),
        }
    }
}

/// Whether nobody holds a flock on `path` (a missing file counts as free).
pub(super) fn lock_is_free(path: &Path) -> bool {
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
    /// Takes the gc lock shared: for a process that looks up and [`touch`](super::touch)es what it will
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
