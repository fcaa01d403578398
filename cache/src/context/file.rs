//! The files a build reads from its context itself rather than copying: the Dockerfile and
//! the ignore files (`<Dockerfile>.dockerignore`, `.dockerignore`). They come from the same
//! untrusted tree as everything else, so they are read the way every context path is
//! resolved: inside their directory with `openat2(RESOLVE_IN_ROOT)`, where a symlink to
//! `/etc/shadow`, `/proc/self/environ` or `../../x` lands inside the directory, never on the
//! host. Only regular files are read (a FIFO would block, a device never end), and at most
//! a limit of bytes ([`MAX_DOCKERFILE_SIZE`], [`MAX_IGNORE_FILE_SIZE`]): one byte past it is
//! an error naming the file, and no more is read.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, fstat, openat2, statat};

/// The largest Dockerfile read (16 MiB); BuildKit's own line limit is 64 KiB, so a real
/// Dockerfile is far smaller.
pub const MAX_DOCKERFILE_SIZE: u64 = 16 << 20;
/// The largest `.dockerignore` or `<Dockerfile>.dockerignore` read (16 MiB).
pub const MAX_IGNORE_FILE_SIZE: u64 = 16 << 20;

/// Every lookup stays inside the directory; `/proc` magic links are never followed.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A context file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The directory the file is resolved in cannot be opened.
    #[error("cannot open directory {dir}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The name does not lead to a file inside the directory (a symlink whose target is
    /// not inside it, a loop, no permission).
    #[error("cannot open {path} inside {dir} (symlinks resolve inside it)")]
    Open {
        /// The file.
        path: PathBuf,
        /// The directory it is resolved in.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The name is something other than a regular file.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The file holds more than the limit.
    #[error("{path} is larger than {} MiB ({limit} bytes)", limit >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the file failed.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Reads `name` (a relative path) resolved inside `dir` as if `dir` were `/`: symlinks on
/// the way and at the end, absolute or with `..`, stay inside `dir`. Only a regular file of
/// at most `limit` bytes is read. `Ok(None)` when there is no entry of that name; an entry
/// that exists but leads nowhere inside `dir` (a symlink out of it) is an error, so a file
/// the user meant to be read is never silently skipped.
pub fn read_in(dir: &Path, name: &Path, limit: u64) -> Result<Option<Vec<u8>>, FileError> {
    let path = dir.join(name);
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FileError::Dir {
        dir: dir.to_owned(),
        source: e.into(),
    })?;
    let open_err = |e: rustix::io::Errno| FileError::Open {
        path: path.clone(),
        dir: dir.to_owned(),
        source: e.into(),
    };
    if !exists(&dir_fd, name).map_err(open_err)? {
        return Ok(None);
    }
    // Look first through an O_PATH descriptor, so a FIFO or a device is never opened.
    let probe = open_in(&dir_fd, name, OFlags::PATH).map_err(open_err)?;
    check_regular(&probe, &path)?;
    let fd = open_in(
        &dir_fd,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    )
    .map_err(open_err)?;
    // Replaced between the two opens: check again what was opened.
    check_regular(&fd, &path)?;
    read_capped(File::from(fd), limit, &path).map(Some)
}

/// Reads all of `reader` when it holds at most `limit` bytes; reads at most `limit + 1`
/// (`path` names it in errors, e.g. `<stdin>`).
pub fn read_capped(reader: impl Read, limit: u64, path: &Path) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Whether `name` has an entry (a dangling symlink counts): its parent directories are
/// resolved inside `dir`, the last component is not followed.
fn exists(dir: &OwnedFd, name: &Path) -> rustix::io::Result<bool> {
    let (parent, last) = match (name.parent(), name.file_name()) {
        (Some(p), Some(l)) => (p, l),
        // `.`, `..`, `/`: a directory, which the regular-file check reports.
        _ => return Ok(true),
    };
    if name.components().any(|c| c == Component::ParentDir) {
        // `..` inside the name: let the resolution (which keeps it inside) decide.
        return Ok(true);
    }
    let holder;
    let parent_fd = if parent.as_os_str().is_empty() {
        dir
    } else {
        match open_in(dir, parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => {
                holder = fd;
                &holder
            }
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(false),
            Err(e) => return Err(e),
        }
    };
    match statat(parent_fd, last, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `openat2` inside `dir`, retried when a concurrent rename makes the kernel ask for it.
fn open_in(dir: &OwnedFd, name: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match openat2(dir, name, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            Err(rustix::io::Errno::AGAIN) if tries < 8 => tries += 1,
            other => return other,
        }
    }
}

fn check_regular(fd: &OwnedFd, path: &Path) -> Result<(), FileError> {
    let st = fstat(fd).map_err(|e| FileError::Read {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => return Ok(()),
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "named pipe",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "special file",
    };
    Err(FileError::NotRegular {
        path: path.to_owned(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ctx");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(tmp.path().join("outside"), "secret").unwrap();
        std::fs::write(dir.join("sub/real"), "inside").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), dir.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", dir.join("up")).unwrap();
        std::os::unix::fs::symlink("/sub/real", dir.join("rooted")).unwrap();
        std::os::unix::fs::symlink("sub/real", dir.join("rel")).unwrap();
        let read = |name: &str| read_in(&dir, Path::new(name), 100);
        assert!(matches!(read("abs"), Err(FileError::Open { .. })));
        assert!(matches!(read("up"), Err(FileError::Open { .. })));
        assert_eq!(read("rooted").unwrap().unwrap(), b"inside");
        assert_eq!(read("rel").unwrap().unwrap(), b"inside");
        assert_eq!(read("../sub/real").unwrap().unwrap(), b"inside");
        assert!(read("missing").unwrap().is_none());
        assert!(read("nodir/missing").unwrap().is_none());
        assert!(matches!(
            read("sub"),
            Err(FileError::NotRegular {
                kind: "directory",
                ..
            })
        ));
    }

    #[test]
    fn sizes_are_capped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), "12345").unwrap();
        assert_eq!(
            read_in(tmp.path(), Path::new("f"), 5).unwrap().unwrap(),
            b"12345"
        );
        let err = read_in(tmp.path(), Path::new("f"), 4).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { limit: 4, .. }), "{err}");
        let err = read_capped(io::repeat(0), 1 << 20, Path::new("<stdin>")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "<stdin> is larger than 1 MiB (1048576 bytes)"
        );
    }
}
