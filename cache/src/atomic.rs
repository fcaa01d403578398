//! Atomic file replacement, for the store and for every file rbuild writes outside it
//! (outputs, archives, credentials).
//!
//! An [`AtomicFile`] is a temp file on the destination's file system, locked for as long as
//! it is open (so the store's temp cleaner never takes a live one), given its final mode
//! before a byte is written; [`AtomicFile::commit`] fsyncs it, renames it over the
//! destination (replacing a symlink there, never following it) and fsyncs the directory,
//! so a crash leaves the old file or the new one, never a part. Dropped without a commit,
//! the temp file is removed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::fsutil::{create_locked, sync_dir};

/// A file being written to replace `dest` atomically.
#[derive(Debug)]
pub struct AtomicFile {
    temp: PathBuf,
    file: File,
    dest: PathBuf,
    mode: Option<u32>,
    committed: bool,
}

impl AtomicFile {
    /// Starts replacing `dest`. The temp file is made in `tmp_dir` (on the same file system
    /// as `dest`), or beside `dest` (hidden, `.rbuild-...tmp`) when `None`; `mode` sets its
    /// permission bits before anything is written (`None` keeps the umask's).
    pub fn create(dest: &Path, tmp_dir: Option<&Path>, mode: Option<u32>) -> io::Result<Self> {
        let beside = parent(dest);
        let (temp, file) = match tmp_dir {
            Some(dir) => create_locked(dir, "file", "tmp")?,
            None => create_locked(beside, ".rbuild", "tmp")?,
        };
        let f = AtomicFile {
            temp,
            file,
            dest: dest.to_path_buf(),
            mode,
            committed: false,
        };
        f.set_mode()?;
        Ok(f)
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temp file's path (for writers that open it themselves, as `std::fs::copy` does).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file being replaced.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    fn set_mode(&self) -> io::Result<()> {
        match self.mode {
            Some(mode) => self
                .file
                .set_permissions(std::fs::Permissions::from_mode(mode)),
            None => Ok(()),
        }
    }

    /// Syncs the temp file, renames it over the destination and syncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        // A writer that opened the path itself may have changed the mode (`fs::copy`).
        self.set_mode()?;
        self.file.sync_all()?;
        std::fs::rename(&self.temp, &self.dest)?;
        self.committed = true;
        sync_dir(parent(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Replaces `dest` with what `write` writes (buffered), atomically (see [`AtomicFile`]).
pub fn write_with<E: From<io::Error>>(
    dest: &Path,
    tmp_dir: Option<&Path>,
    mode: Option<u32>,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    let mut file = AtomicFile::create(dest, tmp_dir, mode)?;
    let mut w = BufWriter::with_capacity(1 << 20, file.file());
    write(&mut w)?;
    w.flush()?;
    drop(w);
    Ok(file.commit()?)
}

/// Replaces `dest` with `bytes`, atomically (see [`AtomicFile`]).
pub fn write(
    dest: &Path,
    tmp_dir: Option<&Path>,
    mode: Option<u32>,
    bytes: &[u8],
) -> io::Result<()> {
    let mut file = AtomicFile::create(dest, tmp_dir, mode)?;
    file.file().write_all(bytes)?;
    file.commit()
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(&dest, "old").unwrap();
        // A failed writer leaves the old file and no temp file.
        let failed: io::Result<()> = write_with(&dest, None, Some(0o644), |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("stop"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A symlink at the destination is replaced, not followed.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        write(&link, None, Some(0o600), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::metadata(&link).unwrap().mode() & 0o777, 0o600);
        // A temp dir elsewhere on the same file system.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        write_with::<io::Error>(&dest, Some(&tmp), None, |w| w.write_all(b"streamed")).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "streamed");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
