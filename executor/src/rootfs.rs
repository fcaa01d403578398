//! Path resolution confined to a root directory.
//!
//! Every lookup goes through `openat2(2)` with `RESOLVE_IN_ROOT`, so `..`,
//! absolute symlinks and symlinked parents all stay inside the root; the last
//! component is always handled with `*at` calls that do not follow symlinks.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// A directory that all paths are resolved inside.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
}

/// Why a path name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadName {
    /// Contains a `..` component.
    DotDot,
    /// Contains a NUL byte.
    Nul,
}

/// Splits a name from an archive into normal components: a leading `/` and
/// `.` components are dropped (the name is taken relative to the root); `..`
/// is refused.
pub(crate) fn components(name: &[u8]) -> Result<Vec<&OsStr>, BadName> {
    if name.contains(&0) {
        return Err(BadName::Nul);
    }
    let mut out = Vec::new();
    for c in Path::new(OsStr::from_bytes(name)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(BadName::DotDot),
        }
    }
    Ok(out)
}

/// Path components as one relative path for `openat2`: joined with `/`, `.` when there are
/// none.
pub(crate) fn join<C: AsRef<OsStr>>(comps: &[C]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c.as_ref().as_bytes());
    }
    if v.is_empty() {
        v.push(b'.');
    }
    v
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens `path` (a trusted host path) as the root.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens the directory at `comps` (resolved inside the root) with `flags`.
    pub(crate) fn open_dir(&self, comps: &[&OsStr], flags: OFlags) -> io::Result<OwnedFd> {
        let p = join(comps);
        Ok(rustix::fs::openat2(
            &self.fd,
            p.as_slice(),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )?)
    }

    /// Opens `comps` (resolved inside the root) without following a final symlink.
    pub(crate) fn open_nofollow(&self, comps: &[&OsStr], flags: OFlags) -> io::Result<OwnedFd> {
        let p = join(comps);
        Ok(rustix::fs::openat2(
            &self.fd,
            p.as_slice(),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )?)
    }

    /// Opens the directory `comps` as an `O_PATH` fd, creating missing
    /// directories (mode 0755) on the way. `created` receives the paths made.
    pub(crate) fn ensure_dir(
        &self,
        comps: &[&OsStr],
        mut created: Option<&mut Vec<Vec<u8>>>,
    ) -> io::Result<OwnedFd> {
        match self.open_dir(comps, OFlags::PATH) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut cur = self.open_dir(&[], OFlags::PATH)?;
        for i in 0..comps.len() {
            match self.open_dir(&comps[..=i], OFlags::PATH) {
                Ok(fd) => cur = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(&cur, comps[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            if let Some(c) = created.as_deref_mut() {
                                c.push(join(&comps[..=i]));
                            }
                        }
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    cur = self.open_dir(&comps[..=i], OFlags::PATH)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }
}

/// `lstat` of `name` in `dir`, `None` when absent.
pub(crate) fn lstat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stat result is a directory.
pub(crate) fn is_dir(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
}

/// Removes `name` in `dir` and, for a directory, everything below it, never
/// following symlinks. Absent names are not an error.
pub(crate) fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for child in list_dir(&sub)? {
            remove_all_at(&sub, &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Names in a directory opened for reading, without `.` and `..`, sorted.
pub(crate) fn list_dir(dir: impl AsFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push(OsStr::from_bytes(n).to_owned());
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_normalised() {
        let c = components(b"/a/./b//c/").unwrap();
        assert_eq!(c, vec![OsStr::new("a"), OsStr::new("b"), OsStr::new("c")]);
        assert_eq!(components(b"a/../../x"), Err(BadName::DotDot));
        assert_eq!(components(b"../x"), Err(BadName::DotDot));
        assert_eq!(components(b"a\0b"), Err(BadName::Nul));
        assert!(components(b"./").unwrap().is_empty());
    }
}
