//! Small file-system helpers: locked temp files, atomic replacement, directory fsync.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a new temp file in `dir`, locked (flock, exclusive) for as long as it is open, so
/// that [`clean_tmp`] never removes a file a live process is writing.
pub(crate) fn create_temp(dir: &Path, prefix: &str) -> io::Result<(PathBuf, File)> {
    create_locked(dir, prefix, "tmp")
}

/// Creates a new file `PREFIX-PID-TIME-N.SUFFIX` in `dir`, its name unique to this process,
/// locked (flock, exclusive) for as long as it is open: a lock another process can take
/// tells that the file's owner is gone.
pub(crate) fn create_locked(dir: &Path, prefix: &str, suffix: &str) -> io::Result<(PathBuf, File)> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "{prefix}-{}-{nanos:x}-{n}.{suffix}",
            std::process::id()
        ));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                flock(&file, FlockOperation::NonBlockingLockExclusive)?;
                return Ok((path, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// fsyncs a directory, making the renames in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dest` with `bytes` atomically in the store: temp file in `tmp_dir` (same file
/// system), fsync, rename, fsync of the destination directory ([`crate::atomic`]). `dest` is
/// listed in this process's lease first ([`crate::gc::record_use`]).
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::gc::record_use(dest);
    crate::atomic::write(dest, Some(tmp_dir), None, bytes)
}

/// Removes leftovers of killed processes from `tmp_dir`: temp files no process holds locked
/// and older than a minute, and resumable partials older than a day. Returns how many.
/// Removes the files of `dir` that `keep` (given each file's path) does not keep; a missing
/// `dir` has none. Returns how many went, or the path that could not be read or removed.
pub(crate) fn remove_files_unless(
    dir: &Path,
    keep: impl Fn(&Path) -> bool,
) -> Result<usize, (PathBuf, io::Error)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err((dir.to_path_buf(), e)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(|e| (dir.to_path_buf(), e))?.path();
        if keep(&path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((path, e)),
        }
    }
    Ok(removed)
}

pub(crate) fn clean_tmp(tmp_dir: &Path) -> io::Result<usize> {
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in std::fs::read_dir(tmp_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let min_age = if name.ends_with(".partial") {
            Duration::from_secs(24 * 3600)
        } else {
            Duration::from_secs(60)
        };
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < min_age {
            continue;
        }
        let path = entry.path();
        if meta.is_dir() {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
            && std::fs::remove_file(&path).is_ok()
        {
            tracing::debug!("removed leftover temp file {}", path.display());
            removed += 1;
        }
    }
    Ok(removed)
}
