//! COPY, ADD and WORKDIR without mounting anything: the result of the
//! operation is computed from the source trees and a read-only view of the
//! parent file system, and written directly as a normalised OCI layer.
//!
//! [`copy`] builds the destination tree in memory: which entries
//! the layer holds, with their final metadata, and where each file's content
//! is read from. Then it walks the tree once in sorted order and streams the
//! entries through the layer writer of [`crate::diff`], which hashes and
//! compresses in the same pass. Nothing is written to disk but the layer.
//! Owners come from the tar headers, so this works without privileges.
//!
//! The rules follow BuildKit's file operations (the Dockerfile frontend's
//! COPY/ADD, `fsutil`'s copy and Docker's archive extraction):
//!
//! * a destination ending in `/`, or an existing directory (following
//!   symlinks inside the root), receives sources by name; otherwise it is the
//!   new name. The destination is resolved inside the root: through symlinks
//!   of the parent image, never out of it. A directory source copies its
//!   content. Several sources need a directory destination.
//! * missing directories above the destination are made with mode 0755 (the
//!   octal `--chmod` mode's permission bits when given), owned by the
//!   `--chown` owner (else 0:0). Existing directories on the way are written
//!   with the parent's metadata; the destination directory of a directory
//!   copy takes the source directory's mtime, as BuildKit's copy does.
//! * a file never replaces a directory, nor a directory a non-directory
//!   (errors, as BuildKit); anything else is replaced. A directory met inside
//!   a copied tree takes the source directory's metadata.
//! * owners: 0:0 for the build context (its [`HostDir`] says so), kept from
//!   stages and images, `--chown` for everything written (the directories it
//!   makes included). `--chmod` applies to every file and directory copied,
//!   not to symlinks.
//! * mtimes are kept (clamped to `SOURCE_DATE_EPOCH` by the writer); inline
//!   files and made directories get `SOURCE_DATE_EPOCH` when set, else the
//!   current time, as BuildKit (which stamps them when it makes them).
//! * hard links among the files of one source become tar hard links.
//! * ADD extracts local tar archives (recognised by content) into the
//!   destination, treated as a directory, as Docker does inside a chroot there:
//!   names and symlinks resolve with the destination as `/`.
//!
//! ```no_run
//! use rbuild_executor::diff::DiffOptions;
//! use rbuild_executor::fileop::{copy, CopyRequest, CopySourceSpec, HostDir};
//! use rbuild_executor::snapshot::LowerView;
//!
//! let context = HostDir::new("/src/app".into(), None);
//! let req = CopyRequest::new(
//!     vec![CopySourceSpec::Tree { fs: &context, pattern: ".".into() }],
//!     "/app/",
//! );
//! let parent = LowerView::new(vec!["/store/snapshots/base".into()]);
//! let out = std::fs::File::create("/tmp/layer.tar.gz")?;
//! let outcome = copy(&req, &parent, &DiffOptions::default(), out)?;
//! println!("{} files, layer {:?}", outcome.files, outcome.layer.and_then(|l| l.digests));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archive;
mod chmod;
mod chown;
mod model;
mod source;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rbuild_compiler::instructions::Chmod;
use rbuild_pathmatch::ignore::{IgnoreError, Matcher};
use rbuild_tarlimits::{LimitError, Limits};

pub use source::{FileKind, HostDir, ImageFs, SourceFs, SourceMeta};

use crate::diff::{DiffError, DiffOptions, LayerInfo, LayerWriter, Meta};
use crate::snapshot::LowerView;
use archive::{ArchiveReader, Extract};
use model::{At, Content, Model, Node, NodeKind, path_comps, show};
use rbuild_pathmatch::glob;
use source::{clean_comps, expand_glob, resolve_in};

/// One source of a COPY or ADD.
pub enum CopySourceSpec<'a> {
    /// A path or glob (Go `filepath.Match` syntax) relative to a tree's root;
    /// a leading `/` means the root.
    Tree {
        /// The tree.
        fs: &'a dyn SourceFs,
        /// The path or glob.
        pattern: String,
    },
    /// A heredoc (`COPY <<EOF /dst`): a file named `name` with `content`.
    Inline {
        /// The file name.
        name: String,
        /// The content.
        content: Vec<u8>,
    },
    /// ADD of a URL: the downloaded file at `path`, named `name`, mode 0600;
    /// mtime from Last-Modified when given.
    Download {
        /// The file name (the URL path's last component).
        name: String,
        /// Where the download is on the host.
        path: PathBuf,
        /// Last-Modified, seconds since the epoch.
        mtime: Option<i64>,
    },
}

impl std::fmt::Debug for CopySourceSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopySourceSpec::Tree { pattern, .. } => {
                f.debug_struct("Tree").field("pattern", pattern).finish()
            }
            CopySourceSpec::Inline { name, content } => f
                .debug_struct("Inline")
                .field("name", name)
                .field("len", &content.len())
                .finish(),
            CopySourceSpec::Download { name, path, mtime } => f
                .debug_struct("Download")
                .field("name", name)
                .field("path", path)
                .field("mtime", mtime)
                .finish(),
        }
    }
}

/// A COPY or ADD as the plan describes it.
#[derive(Debug)]
pub struct CopyRequest<'a> {
    /// The sources, in order.
    pub sources: Vec<CopySourceSpec<'a>>,
    /// The destination: absolute, a trailing `/` kept.
    pub dest: String,
    /// `--chown` (`user[:group]`, names or ids), unresolved.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns (.dockerignore syntax), relative to each source.
    pub excludes: Vec<String>,
    /// ADD: unpack local archives unless `unpack == Some(false)`.
    pub add: bool,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
    /// `--link`: the destination is resolved on an empty tree.
    pub link: bool,
    /// What an archive ADD extracts may hold (its uncompressed size, entries, names).
    pub limits: Limits,
}

impl<'a> CopyRequest<'a> {
    /// A plain COPY of `sources` to `dest`.
    pub fn new(sources: Vec<CopySourceSpec<'a>>, dest: impl Into<String>) -> Self {
        CopyRequest {
            sources,
            dest: dest.into(),
            chown: None,
            chmod: None,
            parents: false,
            excludes: Vec::new(),
            add: false,
            unpack: None,
            link: false,
            limits: Limits::default(),
        }
    }
}

/// What a file operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpOutcome {
    /// The layer written to `out`; `None` when nothing changed (then `out`
    /// holds nothing useful and no layer should be recorded).
    pub layer: Option<LayerInfo>,
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Errors of COPY, ADD and WORKDIR; each names the source, the path or the
/// name involved.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A source path does not exist.
    #[error("source {pattern}: {path} not found")]
    NotFound {
        /// The source as written.
        pattern: String,
        /// The path that is missing.
        path: PathBuf,
    },
    /// A glob is malformed.
    #[error("invalid pattern {pattern} in source")]
    BadPattern {
        /// The source as written.
        pattern: String,
    },
    /// An `--exclude` pattern is malformed.
    #[error("invalid --exclude pattern")]
    Exclude(#[source] IgnoreError),
    /// Several sources and a destination that is not a directory.
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a /: {dest}"
    )]
    DestNotDir {
        /// The destination as written.
        dest: String,
    },
    /// Something that must be a directory is not.
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file would replace a directory.
    #[error("cannot replace directory {path} with a file from {source_path}")]
    ReplaceDir {
        /// The directory in the destination.
        path: PathBuf,
        /// The source file.
        source_path: PathBuf,
    },
    /// Too many symlinks on the way.
    #[error("too many levels of symbolic links resolving {path}")]
    SymlinkLoop {
        /// The path.
        path: PathBuf,
    },
    /// A `--chown`/USER name is not in the parent's /etc/passwd.
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser {
        /// The user name.
        name: String,
    },
    /// A group name is not in the parent's /etc/group.
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup {
        /// The group name.
        name: String,
    },
    /// A source file could not be read.
    #[error("cannot read {path} of source {pattern}")]
    ReadSource {
        /// The source as written.
        pattern: String,
        /// The file that could not be read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The parent file system could not be read.
    #[error("cannot read {path} in the parent image")]
    ReadParent {
        /// The path in the parent image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An archive could not be read.
    #[error("cannot read archive {archive}")]
    ReadArchive {
        /// The archive (its source as written).
        archive: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An archive crossed one of [`CopyRequest::limits`].
    #[error("archive {archive}: {limit}")]
    ArchiveLimit {
        /// The archive (its source as written).
        archive: String,
        /// The limit it crossed.
        limit: LimitError,
    },
    /// An archive entry cannot be extracted.
    #[error("archive {archive}: entry {entry} {reason}")]
    ArchiveEntry {
        /// The archive (its source as written).
        archive: String,
        /// The entry's name in the archive.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// A name that a layer cannot carry (it would read as a whiteout).
    #[error("{path}: {reason}")]
    BadName {
        /// The path in the destination.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// A file changed while it was being copied.
    #[error("{path} changed while it was being copied")]
    Changed {
        /// The path.
        path: PathBuf,
    },
    /// Writing the layer failed.
    #[error(transparent)]
    Layer(#[from] DiffError),
}

/// Refuses names a layer cannot carry: `.wh.` names read as whiteouts.
pub(crate) fn check_name(name: &std::ffi::OsStr) -> Result<(), &'static str> {
    if name.as_bytes().starts_with(b".wh.") {
        return Err("has a name starting with .wh., which a layer reads as a whiteout");
    }
    Ok(())
}

/// Where file contents come from while the layer is written.
pub(crate) struct Sources<'a> {
    trees: Vec<(&'a dyn SourceFs, String)>,
    inline: Vec<&'a [u8]>,
    archives: Vec<ArchiveReader<'a>>,
    parent: &'a LowerView,
}

impl<'a> Sources<'a> {
    /// The source trees, for the read-ahead thread of the layer writer.
    pub(crate) fn trees(&self) -> Vec<&'a dyn SourceFs> {
        self.trees.iter().map(|(fs, _)| *fs).collect()
    }

    pub(crate) fn open(
        &mut self,
        c: &Content,
        size: u64,
        dest: &std::path::Path,
    ) -> Result<Box<dyn Read + '_>, FileOpError> {
        let err = |path: PathBuf, pattern: String| {
            move |source| FileOpError::ReadSource {
                pattern,
                path,
                source,
            }
        };
        Ok(match c {
            Content::Tree { src, path } => {
                let (fs, pat) = &self.trees[*src];
                Box::new(
                    fs.open(path)
                        .map_err(err(path.iter().collect(), pat.clone()))?,
                )
            }
            Content::Inline(i) => Box::new(self.inline[*i]),
            Content::Host(p) => {
                Box::new(std::fs::File::open(p).map_err(err(p.clone(), p.display().to_string()))?)
            }
            Content::Parent(comps) => {
                let r = SourceFs::open(self.parent, comps).map_err(|source| {
                    FileOpError::ReadParent {
                        path: show(comps),
                        source,
                    }
                })?;
                Box::new(r)
            }
            Content::Archive { archive, ordinal } => {
                let a = &mut self.archives[*archive];
                let label = a.label.display().to_string();
                a.read_at(*ordinal, size)
                    .map_err(|source| FileOpError::ReadArchive {
                        archive: format!("{label} (entry {})", dest.display()),
                        source,
                    })?
            }
        })
    }

    fn describe(&self, c: &Content, dest: &std::path::Path) -> PathBuf {
        match c {
            Content::Tree { path, .. } => path.iter().collect(),
            Content::Host(p) => p.clone(),
            Content::Parent(comps) => show(comps),
            Content::Archive { archive, .. } => archive::entry_label(
                &self.archives[*archive].label,
                &path_comps(&dest.to_string_lossy()),
            ),
            Content::Inline(_) => dest.to_owned(),
        }
    }
}

/// Settings shared by every entry of one operation.
struct Ctx<'m> {
    owner: Option<(u32, u32)>,
    chmod: Option<&'m Chmod>,
    limits: &'m Limits,
    now: i64,
    exclude: Option<Matcher>,
    exceptions: bool,
    groups: HashMap<(usize, (u64, u64)), usize>,
}

impl Ctx<'_> {
    /// The metadata a copied entry gets.
    fn meta(&self, m: &SourceMeta) -> Meta {
        let (uid, gid) = self.owner.unwrap_or((m.uid, m.gid));
        let mode = match (self.chmod, m.kind) {
            (_, FileKind::Symlink) | (None, _) => m.mode,
            (Some(c), k) => chmod::apply(c, m.mode, k == FileKind::Dir),
        };
        Meta {
            mode,
            uid,
            gid,
            mtime: m.mtime,
        }
    }

    /// Metadata of directories made on the way.
    fn made_dir(&self) -> Meta {
        let mode = match self.chmod {
            Some(Chmod::Octal(m)) => m & 0o777,
            _ => 0o755,
        };
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        Meta {
            mode,
            uid,
            gid,
            mtime: self.now,
        }
    }

    fn excluded(&self, rel: &[OsString]) -> Result<bool, FileOpError> {
        let Some(m) = &self.exclude else {
            return Ok(false);
        };
        if rel.is_empty() {
            return Ok(false);
        }
        let mut p = Vec::new();
        for (i, c) in rel.iter().enumerate() {
            if i > 0 {
                p.push(b'/');
            }
            p.extend_from_slice(c.as_bytes());
        }
        m.matches(&p).map_err(FileOpError::Exclude)
    }
}

/// One selected source entry.
struct Selected {
    /// Index into [`Sources::trees`].
    src: usize,
    /// The name it is copied under when the destination is a directory.
    name: OsString,
    /// Its path in the tree (symlinks followed unless `--parents`).
    path: Vec<OsString>,
    /// With `--parents`: the path kept under the destination.
    keep: Option<Vec<OsString>>,
    meta: SourceMeta,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Resolves one `Tree` source to its entries.
fn select(
    fs: &dyn SourceFs,
    src: usize,
    pattern: &str,
    parents: bool,
) -> Result<Vec<Selected>, FileOpError> {
    let rerr = |path: &[OsString]| {
        let path: PathBuf = show(path);
        let pattern = pattern.to_owned();
        move |source| FileOpError::ReadSource {
            pattern,
            path,
            source,
        }
    };
    // `--parents`: the part after a `/./` pivot (else the whole path) is kept.
    let (base_s, pat_s) = match (parents, pattern.split_once("/./")) {
        (true, Some((b, p))) => (b, p),
        (true, None) => ("/", pattern),
        (false, _) => ("", pattern),
    };
    let base = clean_comps(base_s);
    let pat = clean_comps(pat_s);
    let first_wild = pat.iter().position(|c| glob::has_wildcards(c.as_bytes()));
    let (fixed, wild) = match first_wild {
        Some(i) => (&pat[..i], &pat[i..]),
        None => (&pat[..], &pat[..0]),
    };
    for w in wild {
        if glob::syntax_error(w.as_bytes()).is_some() {
            return Err(FileOpError::BadPattern {
                pattern: pattern.to_owned(),
            });
        }
    }
    let base_res = resolve_in(fs, &base, true).map_err(rerr(&base))?;
    let mut prefix = base.clone();
    prefix.extend(fixed.iter().cloned());
    let mut matches: Vec<(Vec<OsString>, Vec<OsString>)> = Vec::new(); // (kept rel, path)
    if wild.is_empty() {
        let mut p = base_res.clone();
        p.extend(fixed.iter().cloned());
        matches.push((fixed.to_vec(), p));
    } else {
        let mut start = base_res.clone();
        start.extend(fixed.iter().cloned());
        let start = resolve_in(fs, &start, true).map_err(rerr(&prefix))?;
        for m in expand_glob(fs, &start, wild).map_err(rerr(&prefix))? {
            let mut keep = fixed.to_vec();
            keep.extend(m[start.len()..].iter().cloned());
            matches.push((keep, m));
        }
        // A wildcard that matches nothing copies nothing, as in BuildKit.
    }
    let mut out = Vec::new();
    for (keep, path) in matches {
        // Named sources are followed (within the tree); `--parents` copies
        // what it matches as it is.
        let path = if parents {
            path
        } else {
            resolve_in(fs, &path, true).map_err(rerr(&path))?
        };
        let meta = fs
            .stat(&path)
            .map_err(rerr(&path))?
            .ok_or_else(|| FileOpError::NotFound {
                pattern: pattern.to_owned(),
                path: show(&path),
            })?;
        let name = keep
            .last()
            .or(base.last())
            .cloned()
            .unwrap_or_else(|| OsString::from("/"));
        out.push(Selected {
            src,
            name,
            path,
            keep: parents.then_some(keep),
            meta,
        });
    }
    Ok(out)
}

/// Computes COPY/ADD onto `parent` and writes the result as a layer to
/// `out`. `layer` is `None` when nothing would be written (e.g. an empty
/// directory copied onto itself is still a change; a selection that is
/// entirely excluded is not); `out` then holds nothing useful.
pub fn copy(
    req: &CopyRequest<'_>,
    parent: &LowerView,
    opts: &DiffOptions,
    out: impl Write,
) -> Result<FileOpOutcome, FileOpError> {
    let empty = LowerView::new(Vec::new());
    let dest_view = if req.link { &empty } else { parent };
    let parent_fs = ImageFs::new(parent.clone(), opts.id_map.clone());
    let owner = match &req.chown {
        Some(spec) => Some(chown::resolve(spec, &parent_fs)?),
        None => None,
    };
    let exclude = if req.excludes.is_empty() {
        None
    } else {
        Some(Matcher::new(&req.excludes).map_err(FileOpError::Exclude)?)
    };
    let mut ctx = Ctx {
        owner,
        chmod: req.chmod.as_ref(),
        limits: &req.limits,
        now: opts.source_date_epoch.unwrap_or_else(now_secs),
        exceptions: exclude.as_ref().is_some_and(Matcher::has_exclusions),
        exclude,
        groups: HashMap::new(),
    };
    let mut model = Model::new(dest_view, &opts.id_map);
    let mut sources = Sources {
        trees: Vec::new(),
        inline: Vec::new(),
        archives: Vec::new(),
        parent: dest_view,
    };

    enum Item<'s> {
        Tree(Selected),
        Inline(&'s str, usize, u64),
        Download(&'s str, &'s PathBuf, Option<i64>),
    }
    let mut items = Vec::new();
    for spec in &req.sources {
        match spec {
            CopySourceSpec::Tree { fs, pattern } => {
                let idx = sources.trees.len();
                sources.trees.push((*fs, pattern.clone()));
                for s in select(*fs, idx, pattern, req.parents)? {
                    items.push(Item::Tree(s));
                }
            }
            CopySourceSpec::Inline { name, content } => {
                sources.inline.push(content);
                items.push(Item::Inline(
                    name,
                    sources.inline.len() - 1,
                    content.len() as u64,
                ));
            }
            CopySourceSpec::Download { name, path, mtime } => {
                items.push(Item::Download(name, path, *mtime));
            }
        }
    }

    let dest = path_comps(&req.dest);
    let dest_slash = req.dest.ends_with('/');
    if items.len() > 1 && !dest_slash && !req.parents {
        let r = model.resolve(&[], &dest, true)?;
        let at = model.at(&r)?;
        if !model.at_is_dir(&at) {
            return Err(FileOpError::DestNotDir {
                dest: req.dest.clone(),
            });
        }
    }
    // The directory that must exist before any source is copied.
    let ensure: &[OsString] = if dest_slash || req.parents {
        &dest
    } else {
        &dest[..dest.len().saturating_sub(1)]
    };
    // Sources that are all wildcards matching nothing leave the destination alone.
    if !ensure.is_empty() && !items.is_empty() {
        let r = model.resolve(&[], ensure, true)?;
        model.ensure_dir(&r, ctx.made_dir())?;
    }

    for item in items {
        match item {
            Item::Tree(s) => {
                let fs = sources.trees[s.src].0;
                let unpack = req.add && req.unpack != Some(false);
                if unpack && s.meta.kind == FileKind::File {
                    let raw = fs.open(&s.path).map_err(|source| FileOpError::ReadSource {
                        pattern: sources.trees[s.src].1.clone(),
                        path: show(&s.path),
                        source,
                    })?;
                    if archive::is_archive(raw, &req.limits) {
                        let path = s.path.clone();
                        let open = move || -> io::Result<Box<dyn Read + Send>> {
                            archive::decompress(fs.open(&path)?)
                        };
                        extract_into(
                            &mut model,
                            &mut sources,
                            &ctx,
                            &dest,
                            show(&s.path),
                            Box::new(open),
                        )?;
                        continue;
                    }
                }
                copy_selected(&mut model, &mut ctx, &sources, &dest, s)?;
            }
            Item::Inline(name, idx, size) => {
                let meta = SourceMeta {
                    kind: FileKind::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size,
                    mtime: ctx.now,
                    link_target: None,
                    ino_key: None,
                    nlink: 1,
                    rdev: None,
                    xattrs: Vec::new(),
                };
                let name = OsString::from(name);
                copy_top_file(
                    &mut model,
                    &ctx,
                    &dest,
                    &name,
                    &meta,
                    Content::Inline(idx),
                    None,
                )?;
            }
            Item::Download(name, path, mtime) => {
                if req.unpack == Some(true) {
                    let p = path.clone();
                    let raw =
                        std::fs::File::open(&p).map_err(|source| FileOpError::ReadSource {
                            pattern: name.to_owned(),
                            path: p.clone(),
                            source,
                        })?;
                    if archive::is_archive(Box::new(raw), &req.limits) {
                        let p2 = p.clone();
                        let open = move || -> io::Result<Box<dyn Read + Send>> {
                            archive::decompress(Box::new(std::fs::File::open(&p2)?))
                        };
                        extract_into(&mut model, &mut sources, &ctx, &dest, p, Box::new(open))?;
                        continue;
                    }
                }
                let size = std::fs::metadata(path)
                    .map_err(|source| FileOpError::ReadSource {
                        pattern: name.to_owned(),
                        path: path.clone(),
                        source,
                    })?
                    .len();
                let meta = SourceMeta {
                    kind: FileKind::File,
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                    size,
                    mtime: mtime.unwrap_or(ctx.now),
                    link_target: None,
                    ino_key: None,
                    nlink: 1,
                    rdev: None,
                    xattrs: Vec::new(),
                };
                let name = OsString::from(name);
                copy_top_file(
                    &mut model,
                    &ctx,
                    &dest,
                    &name,
                    &meta,
                    Content::Host(path.clone()),
                    None,
                )?;
            }
        }
    }
    finish(model, sources, opts, out)
}

fn finish(
    model: Model<'_>,
    mut sources: Sources<'_>,
    opts: &DiffOptions,
    out: impl Write,
) -> Result<FileOpOutcome, FileOpError> {
    if model.is_empty() {
        return Ok(FileOpOutcome {
            layer: None,
            files: 0,
            bytes: 0,
        });
    }
    let mut w =
        LayerWriter::new(out, opts).map_err(|e| FileOpError::Layer(DiffError::Finish(e)))?;
    let (files, bytes) = model.write(&mut w, &mut sources)?;
    let info = w.finish()?;
    Ok(FileOpOutcome {
        layer: Some(info),
        files,
        bytes,
    })
}

/// Extracts an archive into the destination (a directory, made if missing).
fn extract_into<'a>(
    model: &mut Model<'_>,
    sources: &mut Sources<'a>,
    ctx: &Ctx<'_>,
    dest: &[OsString],
    label: PathBuf,
    mut open: archive::Opener<'a>,
) -> Result<(), FileOpError> {
    let root = model.resolve(&[], dest, true)?;
    let made = Meta {
        mode: 0o755,
        ..ctx.made_dir()
    };
    model.ensure_dir(&root, made)?;
    let label_s = label.display().to_string();
    let r = open().map_err(|source| FileOpError::ReadArchive {
        archive: label_s.clone(),
        source,
    })?;
    let index = sources.archives.len();
    extract_archive(model, r, index, &label_s, &root, ctx)?;
    sources.archives.push(ArchiveReader::new(label, open));
    Ok(())
}

fn extract_archive(
    model: &mut Model<'_>,
    r: Box<dyn Read + Send>,
    index: usize,
    label: &str,
    root: &[OsString],
    ctx: &Ctx<'_>,
) -> Result<(), FileOpError> {
    let x = Extract {
        index,
        label,
        root,
        owner: ctx.owner,
        now: ctx.now,
        limits: ctx.limits,
    };
    archive::extract(model, r, &x)
}

/// Copies one selected entry to the destination.
fn copy_selected(
    model: &mut Model<'_>,
    ctx: &mut Ctx<'_>,
    sources: &Sources<'_>,
    dest: &[OsString],
    s: Selected,
) -> Result<(), FileOpError> {
    let fs = sources.trees[s.src].0;
    let pattern = &sources.trees[s.src].1;
    if let Some(keep) = &s.keep {
        // `--parents`: dest/keep, the directories of `keep` copied from the source.
        let root = model.resolve(&[], dest, true)?;
        let mut dir_id = model.ensure_dir(&root, ctx.made_dir())?;
        let mut target = root;
        let n = keep.len();
        let src_base = &s.path[..s.path.len() - n];
        for i in 0..n.saturating_sub(1) {
            target.push(keep[i].clone());
            let mut sp = src_base.to_vec();
            sp.extend(keep[..=i].iter().cloned());
            let m = fs
                .stat(&sp)
                .map_err(|source| FileOpError::ReadSource {
                    pattern: pattern.clone(),
                    path: show(&sp),
                    source,
                })?
                .ok_or_else(|| FileOpError::NotFound {
                    pattern: pattern.clone(),
                    path: show(&sp),
                })?;
            dir_id = match model.at(&target)? {
                At::Missing => model.insert(
                    dir_id,
                    keep[i].clone(),
                    Node::new(
                        NodeKind::Dir {
                            merge: false,
                            opaque: false,
                        },
                        ctx.meta(&m),
                    ),
                ),
                _ => model.ensure_dir(&target, ctx.made_dir())?,
            };
        }
        if n == 0 {
            // The whole tree: its content goes into dest.
            return copy_tree(
                model,
                ctx,
                sources,
                s.src,
                &s.path,
                &s.meta,
                dir_id,
                &target,
                &[],
                true,
            );
        }
        target.push(keep[n - 1].clone());
        // `--exclude` sees the path kept under the destination.
        return copy_entry(
            model, ctx, sources, s.src, &s.path, &s.meta, dir_id, &target, keep,
        );
    }
    if s.meta.kind == FileKind::Dir {
        let dres = model.resolve(&[], dest, true)?;
        let id = model.ensure_dir(&dres, ctx.made_dir())?;
        return copy_tree(
            model,
            ctx,
            sources,
            s.src,
            &s.path,
            &s.meta,
            id,
            &dres,
            &[],
            true,
        );
    }
    if ctx.excluded(std::slice::from_ref(&s.name))? {
        return Ok(());
    }
    let group = link_group(model, ctx, s.src, &s.meta);
    let content = Content::Tree {
        src: s.src,
        path: s.path.clone(),
    };
    copy_top_file(model, ctx, dest, &s.name, &s.meta, content, group)
}

fn link_group(
    model: &mut Model<'_>,
    ctx: &mut Ctx<'_>,
    src: usize,
    m: &SourceMeta,
) -> Option<usize> {
    if m.kind != FileKind::File || m.nlink < 2 {
        return None;
    }
    let key = (src, m.ino_key?);
    Some(*ctx.groups.entry(key).or_insert_with(|| model.new_group()))
}

/// Copies a non-directory named `name` to the destination: into it when it
/// is a directory, else as it.
fn copy_top_file(
    model: &mut Model<'_>,
    ctx: &Ctx<'_>,
    dest: &[OsString],
    name: &OsString,
    m: &SourceMeta,
    content: Content,
    group: Option<usize>,
) -> Result<(), FileOpError> {
    let mut target = model.resolve(&[], dest, true)?;
    let at = model.at(&target)?;
    if model.at_is_dir(&at) {
        target.push(name.clone());
    }
    let Some((_, dir)) = target.split_last() else {
        return Err(FileOpError::ReplaceDir {
            path: PathBuf::from("/"),
            source_path: PathBuf::from(name),
        });
    };
    let dir_id = model.ensure_dir(dir, ctx.made_dir())?;
    place(model, ctx, dir_id, &target, m, content, group)
}

/// Puts a non-directory at `target` (in directory node `dir_id`).
fn place(
    model: &mut Model<'_>,
    ctx: &Ctx<'_>,
    dir_id: usize,
    target: &[OsString],
    m: &SourceMeta,
    content: Content,
    group: Option<usize>,
) -> Result<(), FileOpError> {
    let name = target.last().expect("a file below the root");
    check_name(name).map_err(|reason| FileOpError::BadName {
        path: show(target),
        reason,
    })?;
    let at = model.at(target)?;
    if model.at_is_dir(&at) {
        return Err(FileOpError::ReplaceDir {
            path: show(target),
            source_path: match &content {
                Content::Tree { path, .. } => show(path),
                _ => PathBuf::from(name),
            },
        });
    }
    let meta = ctx.meta(m);
    let kind = match m.kind {
        FileKind::File => NodeKind::File {
            content,
            size: m.size,
            group,
        },
        FileKind::Symlink => NodeKind::Symlink(
            m.link_target
                .as_ref()
                .map(|t| t.as_os_str().as_bytes().to_vec())
                .unwrap_or_default(),
        ),
        FileKind::Fifo => NodeKind::Special(tar::EntryType::Fifo, (0, 0)),
        FileKind::Char => NodeKind::Special(tar::EntryType::Char, m.rdev.unwrap_or((0, 0))),
        FileKind::Block => NodeKind::Special(tar::EntryType::Block, m.rdev.unwrap_or((0, 0))),
        FileKind::Dir => unreachable!("directories are copied by copy_tree"),
    };
    let xattrs = if m.kind == FileKind::File {
        m.xattrs.clone()
    } else {
        Vec::new()
    };
    model.insert(
        dir_id,
        name.clone(),
        Node::new(kind, meta).with_xattrs(xattrs),
    );
    Ok(())
}

/// Copies the entry at `path` (metadata `m`) to `target` inside a copied
/// tree; `rel` is its path relative to the source, for `--exclude`.
#[allow(clippy::too_many_arguments)]
fn copy_entry(
    model: &mut Model<'_>,
    ctx: &mut Ctx<'_>,
    sources: &Sources<'_>,
    src: usize,
    path: &[OsString],
    m: &SourceMeta,
    dir_id: usize,
    target: &[OsString],
    rel: &[OsString],
) -> Result<(), FileOpError> {
    let excluded = ctx.excluded(rel)?;
    if m.kind != FileKind::Dir {
        if excluded {
            return Ok(());
        }
        let group = link_group(model, ctx, src, m);
        let content = Content::Tree {
            src,
            path: path.to_vec(),
        };
        return place(model, ctx, dir_id, target, m, content, group);
    }
    if excluded && !ctx.exceptions {
        return Ok(());
    }
    let name = target.last().expect("below the root").clone();
    check_name(&name).map_err(|reason| FileOpError::BadName {
        path: show(target),
        reason,
    })?;
    let meta = ctx.meta(m);
    let before = model.at(target)?;
    let (id, created) = match &before {
        At::Missing => (
            model.insert(
                dir_id,
                name,
                Node::new(
                    NodeKind::Dir {
                        merge: false,
                        opaque: false,
                    },
                    meta,
                )
                .with_xattrs(m.xattrs.clone()),
            ),
            true,
        ),
        at if model.at_is_dir(at) => {
            let id = model.ensure_dir(target, meta)?;
            let n = model.node_mut(id);
            n.meta = meta;
            n.xattrs = m.xattrs.clone();
            (id, false)
        }
        _ => return Err(FileOpError::NotADirectory { path: show(target) }),
    };
    copy_tree(model, ctx, sources, src, path, m, id, target, rel, false)?;
    if excluded && created && model.node(id).children.is_empty() {
        // Only made to hold un-excluded entries, and none came.
        model
            .node_mut(dir_id)
            .children
            .remove(target.last().expect("below the root"));
    }
    Ok(())
}

/// Copies the content of directory `path` into directory node `id` at
/// `target`. `top`: the destination directory itself only takes the source
/// directory's mtime.
#[allow(clippy::too_many_arguments)]
fn copy_tree(
    model: &mut Model<'_>,
    ctx: &mut Ctx<'_>,
    sources: &Sources<'_>,
    src: usize,
    path: &[OsString],
    m: &SourceMeta,
    id: usize,
    target: &[OsString],
    rel: &[OsString],
    top: bool,
) -> Result<(), FileOpError> {
    let (fs, pattern) = &sources.trees[src];
    let fs = *fs;
    if top && id != 0 {
        model.node_mut(id).meta.mtime = m.mtime;
    }
    let rerr = |p: &[OsString]| {
        let path = show(p);
        let pattern = pattern.to_owned();
        move |source| FileOpError::ReadSource {
            pattern,
            path,
            source,
        }
    };
    let names = fs.list(path).map_err(rerr(path))?;
    let mut cpath = path.to_vec();
    let mut ctarget = target.to_vec();
    let mut crel = rel.to_vec();
    for n in names {
        cpath.push(n.clone());
        ctarget.push(n.clone());
        crel.push(n);
        let cm = fs.stat(&cpath).map_err(rerr(&cpath))?;
        if let Some(cm) = cm {
            copy_entry(model, ctx, sources, src, &cpath, &cm, id, &ctarget, &crel)?;
        }
        cpath.pop();
        ctarget.pop();
        crel.pop();
    }
    Ok(())
}

/// WORKDIR: makes `path` (and missing parents, 0755) owned by `user` (`""`
/// is root; names resolved in the parent's /etc/passwd and /etc/group, a
/// numeric user need not exist). `layer` is `None` when the directory
/// already exists.
pub fn mkdir(
    path: &str,
    user: &str,
    parent: &LowerView,
    opts: &DiffOptions,
    out: impl Write,
) -> Result<FileOpOutcome, FileOpError> {
    let parent_fs = ImageFs::new(parent.clone(), opts.id_map.clone());
    let mut model = Model::new(parent, &opts.id_map);
    let comps = path_comps(path);
    let target = model.resolve(&[], &comps, true)?;
    let at = model.at(&target)?;
    if model.at_is_dir(&at) {
        return Ok(FileOpOutcome {
            layer: None,
            files: 0,
            bytes: 0,
        });
    }
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        chown::resolve(user, &parent_fs)?
    };
    let meta = Meta {
        mode: 0o755,
        uid,
        gid,
        mtime: opts.source_date_epoch.unwrap_or_else(now_secs),
    };
    model.ensure_dir(&target, meta)?;
    let sources = Sources {
        trees: Vec::new(),
        inline: Vec::new(),
        archives: Vec::new(),
        parent,
    };
    finish(model, sources, opts, out)
}
