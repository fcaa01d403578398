//! The build context: one parallel walk of the context directory filtered by the applicable
//! `.dockerignore`, and the context index that remembers each file's stat data and BLAKE3
//! content hash so a rebuild hashes only the files that changed (like git's index).
//!
//! ```no_run
//! use rbuild_cache::Store;
//! use rbuild_cache::context::{IndexOptions, index_context};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/tmp/rbuild-store")?;
//! let ctx = index_context(&store, "/src/app".as_ref(), &IndexOptions::default())?;
//! let sel = ctx.select(&["src".into(), "*.toml".into()], &[])?;
//! println!("{} entries, digest {}", sel.entries.len(), sel.digest);
//! # Ok(())
//! # }
//! ```
//!
//! # Walk
//!
//! Directories are read in parallel (rayon); each entry is evaluated with Docker's matcher
//! ([`rbuild_pathmatch::ignore::Matcher::matches_with_parent`]), handing the parent's
//! record down the walk, and an excluded directory is not entered when
//! [`Matcher::can_skip_excluded_dir`] allows it. An excluded directory that holds re-included
//! entries (`!`) is kept, as BuildKit sends the parents of what it sends. Symlinks are never
//! followed: they are entries with a link target. FIFOs, sockets and devices are skipped and
//! reported in [`Context::special_files`]. Names are raw bytes (not necessarily UTF-8).
//!
//! The ignore file is `<Dockerfile>.dockerignore` beside the Dockerfile when it exists, else
//! `.dockerignore` at the context root. The Dockerfile and the ignore file are read straight
//! from disk through [`file::read_in`] (resolved inside their directory, regular files of a
//! bounded size), so they stay available even when ignored; when ignored they are not in the
//! walk, hence in no `COPY .` selection.
//!
//! The `.dockerignore` matcher comes from `rbuild-pathmatch`, a leaf crate. Taking a
//! closure from the caller instead would hide the parent-record protocol of
//! `matches_with_parent` and `can_skip_excluded_dir` behind a less efficient interface.
//!
//! # Index
//!
//! One compact binary file per context in `ROOT/contexts-v1/<blake3 of the canonical context
//! path>.idx`, sorted by path, written atomically, read with one `read`. A file whose
//! (dev, inode, size, mtime, ctime, mode) equals its record is not hashed again. The racy-git
//! rule: a record whose mtime is not strictly older than the second in which the index file
//! was written (its own mtime, stamped by the same file-system clock) is not trusted, since a
//! write in the same clock tick could leave the stat data unchanged. Comparing at whole
//! seconds covers file systems with one-second timestamps; the cost is re-hashing the files
//! modified in the last second before a build once more.

pub mod file;
mod select;

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;
use rbuild_pathmatch::ignore::{self, IgnoreError, Matcher, ParentMatches};
use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat, openat, readlinkat, statat};

use crate::Store;
use crate::fsutil;

pub use select::{Excluded, SelectError, Selection};

/// The store folder holding context indexes.
pub const CONTEXTS_DIR: &str = "contexts-v1";

const MAGIC: &[u8; 8] = b"RBCTXv1\n";
/// Files at least this large are hashed with BLAKE3's own parallelism.
const LARGE_FILE: u64 = 4 << 20;
const CHUNK: usize = 1 << 20;

/// Indexing the build context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory cannot be opened.
    #[error("cannot open build context {path}")]
    Root {
        /// The context directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A directory of the context cannot be read.
    #[error("cannot read directory {path} of the build context")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry cannot be stat'ed.
    #[error("cannot stat {path} in the build context")]
    Stat {
        /// The entry.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A symlink's target cannot be read.
    #[error("cannot read symlink {path} in the build context")]
    ReadLink {
        /// The symlink.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file cannot be read for hashing.
    #[error("cannot read {path} in the build context")]
    Hash {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The ignore file cannot be read (see [`file::read_in`]).
    #[error("cannot read ignore file {path}")]
    IgnoreFile {
        /// The ignore file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: file::FileError,
    },
    /// The ignore file has an invalid pattern, or a path cannot be evaluated against it.
    #[error("invalid ignore file {path}")]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: IgnoreError,
    },
    /// The context index cannot be written to the store.
    #[error("cannot write context index {path}")]
    WriteIndex {
        /// The index file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = ContextError> = std::result::Result<T, E>;

/// How to index a context.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// The Dockerfile (absolute, or relative to the context root); `None` for `Dockerfile`
    /// at the root. Only used to find `<Dockerfile>.dockerignore`, resolved inside the
    /// Dockerfile's own directory for an absolute path and inside the context for a relative
    /// one. A Dockerfile from standard input has no such file: pass `Some("-")`.
    pub dockerfile: Option<PathBuf>,
    /// Read no ignore file: every file is in the index (a git checkout that `ADD` copies
    /// whole, as BuildKit does).
    pub no_ignore_file: bool,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
}

/// A special file found in the context and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
}

/// A special file that the walk skipped, reported so the build can warn about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialFile {
    /// Relative to the context root.
    pub path: PathBuf,
    /// What it is.
    pub kind: SpecialKind,
}

/// One entry of the context (after `.dockerignore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root, `/`-separated, raw bytes.
    pub path: PathBuf,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner on the host (not part of any digest; see [`Selection`]).
    pub uid: u32,
    /// Group on the host (not part of any digest).
    pub gid: u32,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch (not part of any digest).
    pub mtime_ns: i64,
    /// A symlink's target, as stored.
    pub link_target: Option<PathBuf>,
    /// A regular file's BLAKE3 content hash.
    pub hash: Option<blake3::Hash>,
    dev: u64,
    ino: u64,
    ctime_ns: i64,
    raw_mode: u32,
}

impl Entry {
    /// The path as raw bytes.
    pub fn path_bytes(&self) -> &[u8] {
        self.path.as_os_str().as_bytes()
    }
}

/// Work counters of one indexing run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Entries stat'ed (files, directories, symlinks, special files).
    pub stated: usize,
    /// Regular files hashed (the others were reused from the index).
    pub hashed: usize,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Whether the index file was rewritten.
    pub index_written: bool,
}

/// An indexed build context: its entries after `.dockerignore`, with content hashes.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore_file: Option<PathBuf>,
    /// The ignore file's patterns and the line of each.
    ignore: Option<(Matcher, Vec<usize>)>,
    entries: Vec<Entry>,
    special: Vec<SpecialFile>,
    stats: IndexStats,
}

impl Context {
    /// The canonical context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore file that applied, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// Every entry, sorted by path bytes.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `path` (relative, `/`-separated), if the walk kept it.
    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path_bytes().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Special files the walk skipped, sorted by path.
    pub fn special_files(&self) -> &[SpecialFile] {
        &self.special
    }

    /// What this indexing run did.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }
}

/// Walks the context at `root`, reuses the hashes of unchanged files from the store's index
/// of that context, hashes the others in parallel, and writes the updated index back.
pub fn index_context(store: &Store, root: &Path, options: &IndexOptions) -> Result<Context> {
    let root = fs::canonicalize(root).map_err(|source| ContextError::Root {
        path: root.to_owned(),
        source,
    })?;
    let (ignore_file, matcher, lines) = load_ignore(&root, options)?;
    let walker = Walker {
        matcher: &matcher,
        ignore_file: ignore_file.as_deref().unwrap_or(Path::new("")),
        stated: AtomicUsize::new(0),
    };
    let root_fd = openat(
        CWD,
        &root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ContextError::Root {
        path: root.clone(),
        source: errno(e),
    })?;
    let (mut entries, mut special) =
        walker.walk_dir(&root_fd, &root, b"", &ParentMatches::default())?;
    entries.par_sort_unstable_by(|a, b| a.path_bytes().cmp(b.path_bytes()));
    special.sort_by(|a, b| a.path.cmp(&b.path));

    let index_path = index_path(store, &root);
    let old = load_index(&index_path);
    let hashed = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let volatile = AtomicUsize::new(0);
    entries.par_iter_mut().try_for_each(|e| -> Result<()> {
        if e.kind != EntryKind::File {
            return Ok(());
        }
        if let Some(h) = old.lookup(e) {
            e.hash = Some(h);
            return Ok(());
        }
        let abs = root.join(&e.path);
        let (hash, stable) = hash_file(&abs, e).map_err(|source| ContextError::Hash {
            path: abs.clone(),
            source,
        })?;
        if !stable {
            // Changed while being read: never matches a stat again, so it is re-hashed.
            e.ctime_ns = i64::MIN;
            volatile.fetch_add(1, Ordering::Relaxed);
        }
        e.hash = Some(hash);
        hashed.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(e.size, Ordering::Relaxed);
        Ok(())
    })?;
    let hashed = hashed.into_inner();
    let files = entries.iter().filter(|e| e.kind == EntryKind::File).count();
    let mut stats = IndexStats {
        stated: walker.stated.into_inner(),
        hashed,
        bytes_hashed: bytes.into_inner(),
        index_written: false,
    };
    if hashed > 0 || files != old.records.len() || volatile.into_inner() > 0 {
        write_index(store, &index_path, &entries)?;
        stats.index_written = true;
    }
    let ignore = ignore_file.is_some().then_some((matcher, lines));
    Ok(Context {
        root,
        ignore_file,
        ignore,
        entries,
        special,
        stats,
    })
}

/// The ignore file that applies, its matcher, and the line of each pattern.
fn load_ignore(
    root: &Path,
    options: &IndexOptions,
) -> Result<(Option<PathBuf>, Matcher, Vec<usize>)> {
    if options.no_ignore_file {
        return Ok((None, Matcher::default(), Vec::new()));
    }
    let dockerfile = options
        .dockerfile
        .clone()
        .unwrap_or_else(|| PathBuf::from("Dockerfile"));
    let at_root = (root.to_path_buf(), PathBuf::from(".dockerignore"));
    // (directory, name inside it): `<Dockerfile>.dockerignore` beside the Dockerfile, resolved
    // inside the Dockerfile's directory when it is given by an absolute path, else inside
    // the context.
    let candidates = if dockerfile.as_os_str() == "-" {
        vec![at_root]
    } else {
        let mut name = dockerfile.clone().into_os_string();
        name.push(".dockerignore");
        let name = PathBuf::from(name);
        let beside = match (name.parent(), name.file_name()) {
            (Some(dir), Some(file)) if name.is_absolute() => (dir.to_owned(), PathBuf::from(file)),
            _ => (root.to_path_buf(), name),
        };
        vec![beside, at_root]
    };
    // `dockerignore::select_ignore_file` works on `/`-separated strings; the Dockerfile may be
    // an absolute, non-UTF-8 path here, so the same precedence is applied to paths.
    for (dir, name) in candidates {
        let path = dir.join(&name);
        let bytes = file::read_in(&dir, &name, file::MAX_IGNORE_FILE_SIZE).map_err(|source| {
            ContextError::IgnoreFile {
                path: path.clone(),
                source,
            }
        })?;
        let Some(bytes) = bytes else { continue };
        let patterns = ignore::read_ignore_file_lines(&String::from_utf8_lossy(&bytes));
        let matcher = Matcher::new(patterns.iter().map(|(_, p)| p)).map_err(|source| {
            ContextError::Ignore {
                path: path.clone(),
                source,
            }
        })?;
        let lines = patterns.iter().map(|(line, _)| *line).collect();
        return Ok((Some(path), matcher, lines));
    }
    Ok((None, Matcher::default(), Vec::new()))
}

struct Walker<'a> {
    matcher: &'a Matcher,
    ignore_file: &'a Path,
    stated: AtomicUsize,
}

type WalkOut = (Vec<Entry>, Vec<SpecialFile>);

fn merge(mut a: WalkOut, b: WalkOut) -> WalkOut {
    a.0.extend(b.0);
    a.1.extend(b.1);
    a
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl Walker<'_> {
    /// Walks the directory open as `fd` (`abs` names it in errors): names come from one
    /// `getdents` pass, each entry is `fstatat`-ed relative to the directory (no path
    /// resolution from the root, never following a symlink), entries in parallel.
    fn walk_dir(
        &self,
        fd: &OwnedFd,
        abs: &Path,
        rel: &[u8],
        parent: &ParentMatches,
    ) -> Result<WalkOut> {
        let read_err = |e| ContextError::ReadDir {
            path: abs.to_owned(),
            source: errno(e),
        };
        let mut names: Vec<CString> = Vec::new();
        for entry in Dir::read_from(fd).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        let visit = |mut acc: WalkOut, name: &CString| -> Result<WalkOut> {
            self.visit(fd, abs, rel, name, parent, &mut acc)?;
            Ok(acc)
        };
        if names.len() < 4 {
            return names.iter().try_fold(WalkOut::default(), visit);
        }
        names
            .par_iter()
            .try_fold(WalkOut::default, visit)
            .try_reduce(WalkOut::default, |mut a, b| {
                if a.0.len() < b.0.len() {
                    return Ok(merge(b, a));
                }
                a = merge(a, b);
                Ok(a)
            })
    }

    fn visit(
        &self,
        dirfd: &OwnedFd,
        dir: &Path,
        rel_dir: &[u8],
        name: &CStr,
        parent: &ParentMatches,
        out: &mut WalkOut,
    ) -> Result<()> {
        let name_bytes = name.to_bytes();
        let mut rel = Vec::with_capacity(rel_dir.len() + 1 + name_bytes.len());
        if !rel_dir.is_empty() {
            rel.extend_from_slice(rel_dir);
            rel.push(b'/');
        }
        rel.extend_from_slice(name_bytes);
        let abs = || dir.join(OsStr::from_bytes(name_bytes));
        let (excluded, record) = if self.matcher.is_empty() {
            (false, ParentMatches::default())
        } else {
            self.matcher
                .matches_with_parent(&rel, parent)
                .map_err(|source| ContextError::Ignore {
                    path: self.ignore_file.to_owned(),
                    source,
                })?
        };
        let st =
            statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ContextError::Stat {
                path: abs(),
                source: errno(e),
            })?;
        self.stated.fetch_add(1, Ordering::Relaxed);
        let ft = FileType::from_raw_mode(st.st_mode as _);
        if ft == FileType::Directory {
            if excluded {
                let skip =
                    std::str::from_utf8(&rel).is_ok_and(|r| self.matcher.can_skip_excluded_dir(r));
                if skip {
                    return Ok(());
                }
            }
            let path = abs();
            let fd = openat(
                dirfd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ContextError::ReadDir {
                path: path.clone(),
                source: errno(e),
            })?;
            let (children, special) = self.walk_dir(&fd, &path, &rel, &record)?;
            if !excluded || !children.is_empty() {
                out.0.push(entry(rel, EntryKind::Dir, &st, None));
            }
            out.0.extend(children);
            out.1.extend(special);
            return Ok(());
        }
        if excluded {
            return Ok(());
        }
        let kind = match ft {
            FileType::RegularFile => EntryKind::File,
            FileType::Symlink => EntryKind::Symlink,
            other => {
                let kind = match other {
                    FileType::Fifo => SpecialKind::Fifo,
                    FileType::Socket => SpecialKind::Socket,
                    FileType::BlockDevice => SpecialKind::BlockDevice,
                    _ => SpecialKind::CharDevice,
                };
                let path = PathBuf::from(OsStr::from_bytes(&rel));
                out.1.push(SpecialFile { path, kind });
                return Ok(());
            }
        };
        let target = if kind == EntryKind::Symlink {
            let target =
                readlinkat(dirfd, name, Vec::new()).map_err(|e| ContextError::ReadLink {
                    path: abs(),
                    source: errno(e),
                })?;
            Some(PathBuf::from(OsString::from_vec(target.into_bytes())))
        } else {
            None
        };
        out.0.push(entry(rel, kind, &st, target));
        Ok(())
    }
}

// The field types of `struct stat` differ between architectures.
#[allow(clippy::unnecessary_cast)]
fn entry(rel: Vec<u8>, kind: EntryKind, st: &Stat, link: Option<PathBuf>) -> Entry {
    Entry {
        path: PathBuf::from(OsString::from_vec(rel)),
        kind,
        mode: st.st_mode as u32 & 0o7777,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: if kind == EntryKind::Dir {
            0
        } else {
            st.st_size as u64
        },
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        link_target: link,
        hash: None,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
        raw_mode: st.st_mode as u32,
    }
}

/// Hashes a file; `stable` is false when its stat data changed while it was read (the
/// hash is then not recorded in the index).
fn hash_file(path: &Path, e: &Entry) -> io::Result<(blake3::Hash, bool)> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    if e.size >= LARGE_FILE {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update_rayon(&buf[..n]);
        }
    } else {
        let mut buf = Vec::with_capacity(e.size as usize + 1);
        file.read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    let meta = file.metadata()?;
    let stable = meta.size() == e.size
        && meta.mtime() * 1_000_000_000 + meta.mtime_nsec() == e.mtime_ns
        && meta.ctime() * 1_000_000_000 + meta.ctime_nsec() == e.ctime_ns;
    Ok((hasher.finalize(), stable))
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `ROOT/contexts-v1/<blake3 of the canonical context path>.idx`.
fn index_path(store: &Store, canonical_root: &Path) -> PathBuf {
    let key = blake3::hash(canonical_root.as_os_str().as_bytes());
    store
        .root()
        .join(CONTEXTS_DIR)
        .join(format!("{}.idx", key.to_hex()))
}

struct Record {
    path: Box<[u8]>,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
    hash: [u8; 32],
}

#[derive(Default)]
struct OldIndex {
    records: Vec<Record>,
    /// Records with an mtime at or after this are racy (whole second of the index write).
    racy_from_ns: i64,
}

impl OldIndex {
    fn lookup(&self, e: &Entry) -> Option<blake3::Hash> {
        let i = self
            .records
            .binary_search_by(|r| (*r.path).cmp(e.path_bytes()))
            .ok()?;
        let r = &self.records[i];
        (r.dev == e.dev
            && r.ino == e.ino
            && r.size == e.size
            && r.mtime_ns == e.mtime_ns
            && r.ctime_ns == e.ctime_ns
            && r.mode == e.raw_mode
            && r.mtime_ns < self.racy_from_ns)
            .then(|| blake3::Hash::from_bytes(r.hash))
    }
}

/// Loads an index; a missing, unreadable or corrupt one is an empty index (everything is
/// hashed again), never an error.
fn load_index(path: &Path) -> OldIndex {
    let read = || -> io::Result<(Vec<u8>, i64)> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let mut bytes = Vec::with_capacity(meta.size() as usize);
        file.read_to_end(&mut bytes)?;
        Ok((bytes, meta.mtime()))
    };
    let (bytes, written_s) = match read() {
        Ok(x) => x,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!("cannot read context index {}: {e}", path.display());
            }
            return OldIndex::default();
        }
    };
    match parse_index(&bytes) {
        Some(records) => OldIndex {
            records,
            racy_from_ns: written_s * 1_000_000_000,
        },
        None => {
            tracing::warn!(
                "context index {} is corrupt; hashing every file",
                path.display()
            );
            OldIndex::default()
        }
    }
}

fn parse_index(bytes: &[u8]) -> Option<Vec<Record>> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC)?);
    let count = usize::try_from(r.u64()?).ok()?;
    let mut records = Vec::with_capacity(count.min(body.len() / 80));
    let mut prev: Option<&[u8]> = None;
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = r.take(len)?;
        if prev.is_some_and(|p| p >= path) {
            return None;
        }
        prev = Some(path);
        records.push(Record {
            path: path.into(),
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            mode: r.u32()?,
            hash: r.take(32)?.try_into().ok()?,
        });
    }
    r.0.is_empty().then_some(records)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn write_index(store: &Store, path: &Path, entries: &[Entry]) -> Result<()> {
    let files: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    let mut out = Vec::with_capacity(16 + files.len() * 100);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    for e in files {
        let p = e.path_bytes();
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
        for v in [e.dev, e.ino, e.size, e.mtime_ns as u64, e.ctime_ns as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&e.raw_mode.to_le_bytes());
        out.extend_from_slice(e.hash.as_ref().map_or(&[0; 32], |h| h.as_bytes()));
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    let err = |source| ContextError::WriteIndex {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(err)?;
    fsutil::write_atomic(&store.tmp_dir(), path, &out).map_err(err)
}
