//! Source trees: the [`SourceFs`] trait, the host build context ([`HostDir`]),
//! image and stage trees ([`ImageFs`], [`LowerView`]), and how a COPY source
//! (a path or a Go `filepath.Match` glob) selects entries in them.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use rbuild_pathmatch::glob;

use crate::idmap::IdMap;
use crate::rootfs::join;
use crate::snapshot::LowerView;

/// The type of a file in a source tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// What `lstat` says about a source file, with owners as the image sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMeta {
    /// The file type.
    pub kind: FileKind,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// The target of a symlink.
    pub link_target: Option<PathBuf>,
    /// `(dev, ino)` identifying hard links to one file.
    pub ino_key: Option<(u64, u64)>,
    /// Number of hard links.
    pub nlink: u64,
    /// Major and minor numbers of a device.
    pub rdev: Option<(u32, u32)>,
    /// Extended attributes (name, value), sorted; overlayfs' own never.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl SourceMeta {
    /// Metadata from `lstat` with the given owner.
    pub fn from_metadata(md: &fs::Metadata, uid: u32, gid: u32, link: Option<PathBuf>) -> Self {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_char_device() {
            FileKind::Char
        } else if ft.is_block_device() {
            FileKind::Block
        } else {
            FileKind::File
        };
        let rdev = matches!(kind, FileKind::Char | FileKind::Block)
            .then(|| (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())));
        SourceMeta {
            kind,
            mode: md.mode() & 0o7777,
            uid,
            gid,
            size: if kind == FileKind::File { md.len() } else { 0 },
            mtime: md.mtime(),
            link_target: link,
            ino_key: Some((md.dev(), md.ino())),
            nlink: md.nlink(),
            rdev,
            xattrs: Vec::new(),
        }
    }
}

/// A read-only tree that COPY reads from. Paths are components relative to
/// the tree's root; implementations never leave the root.
pub trait SourceFs: Send + Sync {
    /// lstat of a path given as components relative to the tree root (never
    /// follows the last component). `None` when it does not exist.
    fn stat(&self, path: &[OsString]) -> io::Result<Option<SourceMeta>>;
    /// Names in a directory, sorted bytewise.
    fn list(&self, dir: &[OsString]) -> io::Result<Vec<OsString>>;
    /// Opens a regular file's content.
    fn open(&self, path: &[OsString]) -> io::Result<Box<dyn Read + Send>>;
}

/// A host directory (the build context). Files read through it are owned by
/// 0:0, as Docker gives them; extended attributes are not read (the context
/// selection's digest does not cover them).
#[derive(Debug)]
pub struct HostDir {
    root: PathBuf,
    /// The allowed paths and the directories above them, as relative path bytes (hashed:
    /// a COPY of 100,000 files looks each up several times).
    allow: Option<std::collections::HashSet<Vec<u8>>>,
    fd: OnceLock<OwnedFd>,
    /// The directory used last (walks and the layer writer go directory by
    /// directory, so most lookups reuse it).
    last: Mutex<Option<(Vec<OsString>, Arc<OwnedFd>)>>,
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

impl HostDir {
    /// A view of `root`. `allow`: when `Some`, only these relative paths exist
    /// (and the directories above them, which are listed too).
    pub fn new(root: PathBuf, allow: Option<BTreeSet<PathBuf>>) -> Self {
        let allow = allow.map(|a| {
            let mut set = std::collections::HashSet::with_capacity(a.len() * 2);
            for p in &a {
                let comps: Vec<OsString> = p
                    .components()
                    .filter_map(|c| match c {
                        std::path::Component::Normal(n) => Some(n.to_os_string()),
                        _ => None,
                    })
                    .collect();
                for n in (1..=comps.len()).rev() {
                    if !set.insert(join(&comps[..n])) && n < comps.len() {
                        break;
                    }
                }
            }
            set
        });
        HostDir {
            root,
            allow,
            fd: OnceLock::new(),
            last: Mutex::new(None),
        }
    }

    fn allowed(&self, comps: &[OsString]) -> bool {
        let Some(a) = &self.allow else {
            return true;
        };
        if comps.is_empty() {
            return true;
        }
        a.contains(&join(comps))
    }

    fn root_fd(&self) -> io::Result<&OwnedFd> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd);
        }
        let fd = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(self.fd.get_or_init(|| fd))
    }

    /// An `O_PATH` fd of the directory `dir`, reusing the last one.
    fn dir_fd(&self, dir: &[OsString]) -> io::Result<Arc<OwnedFd>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, fd)) = &*last {
            if p.as_slice() == dir {
                return Ok(fd.clone());
            }
        }
        let fd = Arc::new(self.open_dir(dir, OFlags::PATH)?);
        *last = Some((dir.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Opens the directory `comps` beneath the root, refusing symlinks.
    fn open_dir(&self, comps: &[OsString], flags: OFlags) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat2(
            self.root_fd()?,
            join(comps).as_slice(),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )?)
    }
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl SourceFs for HostDir {
    fn stat(&self, path: &[OsString]) -> io::Result<Option<SourceMeta>> {
        if !self.allowed(path) {
            return Ok(None);
        }
        let Some((last, dir)) = path.split_last() else {
            let md = fs::metadata(&self.root)?;
            return Ok(Some(SourceMeta::from_metadata(&md, 0, 0, None)));
        };
        let dfd = match self.dir_fd(dir) {
            Ok(fd) => fd,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR)
                    || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let st = match rustix::fs::statat(&dfd, last.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let kind = match ft {
            rustix::fs::FileType::Directory => FileKind::Dir,
            rustix::fs::FileType::Symlink => FileKind::Symlink,
            rustix::fs::FileType::Fifo => FileKind::Fifo,
            rustix::fs::FileType::CharacterDevice => FileKind::Char,
            rustix::fs::FileType::BlockDevice => FileKind::Block,
            rustix::fs::FileType::RegularFile => FileKind::File,
            _ => return Ok(None), // sockets are not copied
        };
        let link_target = if kind == FileKind::Symlink {
            let t = rustix::fs::readlinkat(&dfd, last.as_os_str(), Vec::new())?;
            Some(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
        } else {
            None
        };
        let rdev = matches!(kind, FileKind::Char | FileKind::Block)
            .then(|| (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)));
        Ok(Some(SourceMeta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: 0,
            gid: 0,
            size: if kind == FileKind::File {
                st.st_size as u64
            } else {
                0
            },
            mtime: st.st_mtime,
            link_target,
            ino_key: Some((st.st_dev, st.st_ino)),
            nlink: st.st_nlink,
            rdev,
            xattrs: Vec::new(),
        }))
    }

    fn list(&self, dir: &[OsString]) -> io::Result<Vec<OsString>> {
        if !self.allowed(dir) {
            return Err(not_found());
        }
        let fd = self.open_dir(dir, OFlags::RDONLY)?;
        let mut d = rustix::fs::Dir::read_from(&fd)?;
        let mut out = Vec::new();
        let mut child = dir.to_vec();
        while let Some(ent) = d.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            child.push(OsStr::from_bytes(n).to_owned());
            if self.allowed(&child) {
                out.push(child.pop().expect("pushed above"));
            } else {
                child.pop();
            }
        }
        out.sort();
        Ok(out)
    }

    fn open(&self, path: &[OsString]) -> io::Result<Box<dyn Read + Send>> {
        if !self.allowed(path) {
            return Err(not_found());
        }
        let Some((last, dir)) = path.split_last() else {
            return Err(not_found());
        };
        // One component below a directory reached without symlinks, not
        // following a final symlink: never outside the root.
        let fd = rustix::fs::openat(
            &*self.dir_fd(dir)?,
            last.as_os_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Box::new(File::from(fd)))
    }
}

/// An image's or a stage's file system (overlay-format snapshots) with owners
/// mapped from host ids back to ids inside the image.
#[derive(Debug, Clone)]
pub struct ImageFs {
    view: LowerView,
    id_map: IdMap,
}

impl ImageFs {
    /// A tree over `view`; `id_map` maps the snapshots' host owners back.
    pub fn new(view: LowerView, id_map: IdMap) -> Self {
        ImageFs { view, id_map }
    }
}

/// lstat of `comps` in `view`, owners mapped through `id_map` (an owner
/// outside the mapping is reported as an error naming the path).
pub(crate) fn view_stat(
    view: &LowerView,
    id_map: &IdMap,
    comps: &[OsString],
) -> io::Result<Option<(PathBuf, SourceMeta)>> {
    let Some((p, md)) = view.lookup(comps)? else {
        return Ok(None);
    };
    if md.file_type().is_socket() {
        return Ok(None); // sockets are not copied
    }
    let (uid, gid) = match (
        id_map.container_uid(md.uid()),
        id_map.container_gid(md.gid()),
    ) {
        (Some(u), Some(g)) => (u, g),
        _ => {
            return Err(io::Error::other(format!(
                "{} is owned by host id {}:{}, outside the id mapping",
                p.display(),
                md.uid(),
                md.gid()
            )));
        }
    };
    let link = if md.file_type().is_symlink() {
        Some(fs::read_link(&p)?)
    } else {
        None
    };
    let mut meta = SourceMeta::from_metadata(&md, uid, gid, link);
    if matches!(meta.kind, FileKind::File | FileKind::Dir) {
        meta.xattrs = crate::diff::read_xattrs(&p)?;
        if let Some(owner) = crate::owner::take_recorded(&mut meta.xattrs, id_map) {
            (meta.uid, meta.gid) = owner;
        }
    }
    Ok(Some((p, meta)))
}

fn view_open(view: &LowerView, path: &[OsString]) -> io::Result<Box<dyn Read + Send>> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some((p, _)) = view.lookup(path)? else {
        return Err(not_found());
    };
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)?;
    Ok(Box::new(f))
}

impl SourceFs for ImageFs {
    fn stat(&self, path: &[OsString]) -> io::Result<Option<SourceMeta>> {
        Ok(view_stat(&self.view, &self.id_map, path)?.map(|(_, m)| m))
    }
    fn list(&self, dir: &[OsString]) -> io::Result<Vec<OsString>> {
        self.view.list(dir)
    }
    fn open(&self, path: &[OsString]) -> io::Result<Box<dyn Read + Send>> {
        view_open(&self.view, path)
    }
}

/// A view read with identity ids (snapshots written by root, or tests).
impl SourceFs for LowerView {
    fn stat(&self, path: &[OsString]) -> io::Result<Option<SourceMeta>> {
        Ok(view_stat(self, &IdMap::identity(), path)?.map(|(_, m)| m))
    }
    fn list(&self, dir: &[OsString]) -> io::Result<Vec<OsString>> {
        LowerView::list(self, dir)
    }
    fn open(&self, path: &[OsString]) -> io::Result<Box<dyn Read + Send>> {
        view_open(self, path)
    }
}

/// Symlinks followed on one resolution at most (as Linux).
pub(crate) const MAX_HOPS: u32 = 40;

/// The components of a path, `.` dropped, `..` kept.
pub(crate) fn comps_of(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Cleans a source path lexically as `filepath.Join("/", p)` does: `..` at
/// the root stays at the root.
pub(crate) fn clean_comps(p: &str) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in comps_of(Path::new(p)) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// Resolves `comps` in a source tree following symlinks inside its root
/// (an absolute target or `..` never leaves it). The last component is
/// followed when `follow_last`. Fails with `ELOOP` after [`MAX_HOPS`].
pub(crate) fn resolve_in(
    fs: &dyn SourceFs,
    comps: &[OsString],
    follow_last: bool,
) -> io::Result<Vec<OsString>> {
    let mut todo: Vec<OsString> = comps.iter().rev().cloned().collect();
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        done.push(c);
        if todo.is_empty() && !follow_last {
            break;
        }
        if let Some(m) = fs.stat(&done)? {
            if m.kind == FileKind::Symlink {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                done.pop();
                let target = m.link_target.unwrap_or_default();
                if target.is_absolute() {
                    done.clear();
                }
                todo.extend(comps_of(&target).into_iter().rev());
            }
        }
    }
    Ok(done)
}

/// Expands the glob components `pattern` under the directory `base` (already
/// resolved) of `fs`: the paths (relative to the tree root) with exactly as
/// many more components, each component matching its pattern. Directories
/// are not followed through symlinks, as `filepath.Walk`.
pub(crate) fn expand_glob(
    fs: &dyn SourceFs,
    base: &[OsString],
    pattern: &[OsString],
) -> io::Result<Vec<Vec<OsString>>> {
    let pats: Vec<&[u8]> = pattern.iter().map(|c| c.as_bytes()).collect();
    let mut out = Vec::new();
    let mut cur = base.to_vec();
    walk_glob(fs, &mut cur, &pats, &mut out)?;
    Ok(out)
}

fn walk_glob(
    fs: &dyn SourceFs,
    cur: &mut Vec<OsString>,
    pats: &[&[u8]],
    out: &mut Vec<Vec<OsString>>,
) -> io::Result<()> {
    let Some((p, rest)) = pats.split_first() else {
        out.push(cur.clone());
        return Ok(());
    };
    match fs.stat(cur)? {
        Some(m) if m.kind == FileKind::Dir => {}
        _ => return Ok(()),
    }
    for name in fs.list(cur)? {
        if !glob::matches_checked(p, name.as_bytes()) {
            continue;
        }
        cur.push(name);
        walk_glob(fs, cur, rest, out)?;
        cur.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_comps_stay_at_root() {
        assert_eq!(clean_comps("/../a/./b/.."), vec![OsString::from("a")]);
        assert!(clean_comps("/").is_empty());
        assert!(clean_comps(".").is_empty());
    }
}
