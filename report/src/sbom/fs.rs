//! The image's final file system as the package inventory needs it: which layer last wrote
//! each path, what kind of entry it is, where its links point, and the content of the few
//! files package databases live in (read while the layers stream, within bounds).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::ops::Bound;
use std::sync::Arc;

use crate::analyze::take_subtree;
use crate::scan::{Kind, Walked};

/// The content kept of one database file.
#[derive(Debug)]
pub(crate) enum Captured {
    /// The whole file (or, for a file read only in part, its first bytes).
    Bytes(Vec<u8>),
    /// The file is larger than the limit: it was not kept.
    TooLarge(u64),
    /// An executable's Go build information: the bytes from [`GO_MAGIC`] on, at most
    /// [`GO_KEEP`] of them.
    Go(Vec<u8>),
    /// The artifacts a Java archive holds.
    Java(Vec<super::java::Artifact>),
    /// The crates of a Rust executable built with `cargo auditable`.
    Rust(Vec<super::rust::Crate>),
}

impl Captured {
    /// The bytes it keeps, for the bound on what a layer keeps.
    fn size(&self) -> u64 {
        match self {
            Captured::Bytes(b) | Captured::Go(b) => b.len() as u64,
            Captured::TooLarge(_) => 0,
            Captured::Java(found) => found.iter().map(|a| a.size()).sum(),
            Captured::Rust(crates) => crates
                .iter()
                .map(|c| (c.name.len() + c.version.len() + c.source.len()) as u64)
                .sum(),
        }
    }
}

/// What starts the build information the Go linker writes into every binary.
pub(crate) const GO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// How much of the build information is kept: the header, the Go version and the module
/// list.
const GO_KEEP: usize = 256 * 1024;

/// The largest executable held in memory whole (to read its section table, at its end);
/// the Go build information of a larger one is still searched for as it streams.
pub(crate) const MAX_EXECUTABLE: u64 = 64 << 20;

/// Whether the first bytes of a file are those of an ELF, PE or Mach-O executable.
fn is_executable(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
        || head.starts_with(b"MZ")
        || [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xcf, 0xfa, 0xed, 0xfe],
        ]
        .iter()
        .any(|m| head.starts_with(m))
}

std::thread_local! {
    /// The buffer an executable is read into, reused from one to the next on a thread.
    static EXECUTABLE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What an executable (`size` bytes, told by its first bytes: ELF, PE or Mach-O) carries:
/// the crates of its `cargo auditable` section, or its Go build information. Up to
/// [`MAX_EXECUTABLE`] bytes it is read whole, once; a larger one is searched for Go build
/// information only, as it streams.
fn executable(path: &str, size: u64, content: &mut dyn Read) -> io::Result<Option<Captured>> {
    let mut head = Vec::with_capacity(4);
    content.take(4).read_to_end(&mut head)?;
    if !is_executable(&head) {
        return Ok(None);
    }
    if size > MAX_EXECUTABLE {
        return Ok(go_buildinfo(&mut head.chain(content))?.map(Captured::Go));
    }
    EXECUTABLE.with_borrow_mut(|bytes| {
        bytes.clear();
        // The header's size: one allocation, not a doubling one.
        bytes.reserve(size as usize);
        bytes.extend_from_slice(&head);
        content.take(MAX_EXECUTABLE).read_to_end(bytes)?;
        let found = match super::rust::crates(path, bytes) {
            Ok(Some(crates)) => Some(Captured::Rust(crates)),
            Ok(None) => go_in(bytes).map(Captured::Go),
            Err(e) => {
                tracing::warn!("cargo auditable data skipped: {e}");
                go_in(bytes).map(Captured::Go)
            }
        };
        // The buffer is kept for the next executable, whatever its size: the pages of a
        // fresh one cost more than reading into them (this thread held that much anyway),
        // and the threads end with the inventory.
        if bytes.capacity() > MAX_EXECUTABLE as usize {
            *bytes = Vec::new();
        }
        Ok(found)
    })
}

/// The Go build information in an executable held whole.
fn go_in(bytes: &[u8]) -> Option<Vec<u8>> {
    let at = memchr::memmem::find(bytes, GO_MAGIC)?;
    Some(bytes[at..].iter().take(GO_KEEP).copied().collect())
}

/// Looks for Go build information in an executable's content as it streams: the bytes from
/// [`GO_MAGIC`] on, or `None`. Reads the file only up to the magic (and [`GO_KEEP`] bytes
/// after it).
fn go_buildinfo(content: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
    let finder = memchr::memmem::Finder::new(GO_MAGIC);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut window: Vec<u8> = Vec::with_capacity(chunk.len() + GO_MAGIC.len());
    loop {
        let n = content.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        window.extend_from_slice(&chunk[..n]);
        if let Some(at) = finder.find(&window) {
            let mut found = window.split_off(at);
            if found.len() < GO_KEEP {
                content
                    .take((GO_KEEP - found.len()) as u64)
                    .read_to_end(&mut found)?;
            }
            found.truncate(GO_KEEP);
            return Ok(Some(found));
        }
        // Keep the tail that may hold the start of the magic.
        let from = window.len().saturating_sub(GO_MAGIC.len() - 1);
        window.drain(..from);
    }
}

/// How much of a file of interest to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The whole file, up to the database limit (past it: [`Captured::TooLarge`]).
    Whole,
    /// Its first bytes only (copyright files: the licence fields come first).
    Head(u64),
    /// The whole file, up to [`RPMDB_MAX_BYTES`] (or the database limit if larger).
    Rpmdb,
}

/// The largest rpm database kept: one file holds every package's header with its file list,
/// tens of MB in images and hundreds on big hosts.
pub(crate) const RPMDB_MAX_BYTES: u64 = 256 << 20;

/// The first bytes read of a copyright file.
pub(crate) const COPYRIGHT_HEAD: u64 = 256 * 1024;

/// Whether a path holds package metadata, and how much of it to keep. Database paths are
/// matched by their tail, so that a database directory moved behind a symbolic link (to a
/// place inside the image) is still read.
fn keep(path: &str) -> Option<Keep> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent_name = parent.rsplit_once('/').map_or(parent, |p| p.1);
    let grand = parent.rsplit_once('/').map_or("", |p| p.0);
    let grand_name = grand.rsplit_once('/').map_or(grand, |p| p.1);
    let whole = match name {
        "status" => parent_name == "dpkg",
        "installed" => parent.ends_with("apk/db") || parent == "apk/db",
        "os-release" => path == "etc/os-release" || path == "usr/lib/os-release",
        "METADATA" | "RECORD" => parent_name.ends_with(".dist-info"),
        "PKG-INFO" => parent_name.ends_with(".egg-info"),
        "package.json" => {
            grand_name == "node_modules"
                || (grand_name.starts_with('@')
                    && grand.rsplit_once('/').is_some_and(|(up, _)| {
                        up == "node_modules" || up.ends_with("/node_modules")
                    }))
        }
        "rpmdb.sqlite" | "rpmdb.sqlite-wal" | "Packages" if parent_name == "rpm" => {
            return Some(Keep::Rpmdb);
        }
        // npm's lockfiles of an application (not those inside installed packages, nor
        // `node_modules/.package-lock.json`, which mirrors what is installed).
        "package-lock.json" | "npm-shrinkwrap.json" => {
            !path.starts_with("node_modules/") && !path.contains("/node_modules/")
        }
        "copyright" => {
            return (grand == "usr/share/doc").then_some(Keep::Head(COPYRIGHT_HEAD));
        }
        _ => {
            (parent_name == "status.d" && grand_name == "dpkg")
                || (name.ends_with(".list") && parent_name == "info" && grand_name == "dpkg")
        }
    };
    whole.then_some(Keep::Whole)
}

/// One change of a layer, as kept for the replay.
#[derive(Debug, Clone)]
pub(crate) enum FsChange {
    Whiteout(Box<str>),
    Opaque(Box<str>),
    Entry {
        path: Box<str>,
        kind: Kind,
        link: Option<Box<str>>,
        content: Option<Arc<Captured>>,
    },
}

/// What one layer holds, with the database files it writes.
#[derive(Debug, Default, Clone)]
pub(crate) struct FsLayer {
    pub changes: Vec<FsChange>,
}

/// Walks one layer, keeping the content of the package metadata files: a database file
/// larger than `max_file` is kept as [`Captured::TooLarge`], and a layer whose kept bytes
/// pass `max_layer_kept` fails with an I/O error of kind `OutOfMemory` naming the file.
pub(crate) fn collect(
    item: Walked<'_>,
    layer: &mut FsLayer,
    kept: &mut u64,
    max_file: u64,
    max_layer_kept: u64,
) -> io::Result<()> {
    let change = match item {
        Walked::Opaque(dir) => FsChange::Opaque(dir),
        Walked::Whiteout(path) => FsChange::Whiteout(path),
        Walked::Entry(walked) => {
            let entry = walked.entry;
            let wanted = if entry.kind == Kind::File {
                keep(&entry.path)
            } else {
                None
            };
            let content = match wanted {
                None if entry.kind == Kind::File && super::java::is_archive(&entry.path) => {
                    super::java::capture(&entry.path, entry.size, walked.content)?.map(Arc::new)
                }
                // An executable may be a Go binary or a Rust one built with `cargo auditable`.
                None if entry.kind == Kind::File
                    && entry.mode & 0o111 != 0
                    && entry.size >= GO_MAGIC.len() as u64 =>
                {
                    executable(&entry.path, entry.size, walked.content)?.map(Arc::new)
                }
                None => None,
                Some(Keep::Whole) if entry.size > max_file => {
                    Some(Arc::new(Captured::TooLarge(entry.size)))
                }
                Some(Keep::Rpmdb) if entry.size > max_file.max(RPMDB_MAX_BYTES) => {
                    Some(Arc::new(Captured::TooLarge(entry.size)))
                }
                Some(how) => {
                    let cap = match how {
                        Keep::Whole => max_file,
                        Keep::Head(n) => n.min(max_file),
                        Keep::Rpmdb => max_file.max(RPMDB_MAX_BYTES),
                    };
                    let mut bytes = Vec::with_capacity(entry.size.min(cap) as usize);
                    walked.content.take(cap + 1).read_to_end(&mut bytes)?;
                    if bytes.len() as u64 > cap {
                        if !matches!(how, Keep::Head(_)) {
                            // The header lied about the size.
                            Some(Arc::new(Captured::TooLarge(bytes.len() as u64)))
                        } else {
                            bytes.truncate(cap as usize);
                            Some(Arc::new(Captured::Bytes(bytes)))
                        }
                    } else {
                        Some(Arc::new(Captured::Bytes(bytes)))
                    }
                }
            };
            if let Some(captured) = content.as_deref() {
                *kept += captured.size();
                if *kept > max_layer_kept {
                    return Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!(
                            "package metadata of more than {max_layer_kept} bytes (at {})",
                            entry.path
                        ),
                    ));
                }
            }
            FsChange::Entry {
                path: entry.path,
                kind: entry.kind,
                link: walked.link,
                content,
            }
        }
    };
    layer.changes.push(change);
    Ok(())
}

/// A path of the final file system.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The layer that last wrote it.
    pub layer: u32,
    pub kind: Kind,
    /// A symbolic link's target.
    pub link: Option<Box<str>>,
    pub content: Option<Arc<Captured>>,
}

/// The final file system, and every version of each database file (dpkg's `status`, apk's
/// `installed`): the layers that wrote it, bottom to top, for finding the layer that added a
/// package.
#[derive(Debug, Default)]
pub(crate) struct Rootfs {
    pub nodes: BTreeMap<Box<str>, Node>,
    pub versions: HashMap<Box<str>, Vec<(u32, Arc<Captured>)>>,
}

/// Whether a path's versions are kept (the databases that hold many packages).
fn versioned(path: &str) -> bool {
    path.ends_with("dpkg/status")
        || path.ends_with("apk/db/installed")
        || path.ends_with("rpm/rpmdb.sqlite")
        || path.ends_with("rpm/Packages")
}

/// Replays the layers bottom to top.
pub(crate) fn replay(layers: Vec<FsLayer>) -> Rootfs {
    let mut fs = Rootfs::default();
    for (index, layer) in layers.into_iter().enumerate() {
        let li = index as u32;
        // Whiteouts apply to the lower layers, wherever they are in the tar.
        for change in &layer.changes {
            match change {
                FsChange::Whiteout(path) => drop(take_subtree(&mut fs.nodes, path, true)),
                FsChange::Opaque(dir) => drop(take_subtree(&mut fs.nodes, dir, false)),
                FsChange::Entry { .. } => {}
            }
        }
        for change in layer.changes {
            let FsChange::Entry {
                path,
                kind,
                link,
                content,
            } = change
            else {
                continue;
            };
            if kind != Kind::Dir {
                drop(take_subtree(&mut fs.nodes, &path, false));
            }
            let node = if kind == Kind::Hardlink {
                // A hard link is the file it names (written earlier in this tar).
                let target = crate::scan::normalize(link.as_deref().unwrap_or(""));
                match fs.nodes.get(target.as_str()) {
                    Some(t) if t.kind == Kind::File => Node {
                        layer: li,
                        kind: Kind::File,
                        link: None,
                        content: t.content.clone(),
                    },
                    _ => Node {
                        layer: li,
                        kind: Kind::File,
                        link: None,
                        content: None,
                    },
                }
            } else {
                Node {
                    layer: li,
                    kind,
                    link,
                    content,
                }
            };
            if versioned(&path)
                && let Some(content) = &node.content
            {
                fs.versions
                    .entry(path.clone())
                    .or_default()
                    .push((li, content.clone()));
            }
            fs.nodes.insert(path, node);
        }
    }
    fs
}

/// The most symbolic links followed in resolving one path (Linux's limit).
const MAX_LINKS: usize = 40;

impl Rootfs {
    /// Resolves `path` (relative to the root, or absolute) inside the image: symbolic links
    /// are followed with the image as the root, so `..` stops at `/` and an absolute target
    /// names a path of the image, never one of the machine. The last component is followed
    /// too when `follow_last`. `None` for a loop or more than [`MAX_LINKS`] links.
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_string)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                done.pop();
                continue;
            }
            done.push(part);
            let last = pending.is_empty();
            if last && !follow_last {
                break;
            }
            let here = done.join("/");
            let Some(node) = self.nodes.get(here.as_str()) else {
                continue;
            };
            if node.kind != Kind::Symlink {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = node.link.as_deref().unwrap_or("");
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            pending.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .rev()
                    .map(str::to_string),
            );
        }
        Some(done.join("/"))
    }

    /// The node a path names after resolving its links.
    pub(crate) fn get(&self, path: &str) -> Option<(String, &Node)> {
        let real = self.resolve(path, true)?;
        let node = self.nodes.get(real.as_str())?;
        Some((real, node))
    }

    /// The paths directly or indirectly under `dir` (a resolved path), in path order.
    pub(crate) fn under(&self, dir: &str) -> Vec<(&str, &Node)> {
        let lo = format!("{dir}/");
        let hi = format!("{dir}0");
        self.nodes
            .range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
            .map(|(k, n)| (&**k, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind, link: Option<&str>) -> Node {
        Node {
            layer: 0,
            kind,
            link: link.map(Into::into),
            content: None,
        }
    }

    #[test]
    fn links_resolve_inside_the_image() {
        let mut fs = Rootfs::default();
        fs.nodes
            .insert("bin".into(), node(Kind::Symlink, Some("usr/bin")));
        fs.nodes.insert("usr/bin/ls".into(), node(Kind::File, None));
        fs.nodes.insert(
            "var/lib/dpkg".into(),
            node(Kind::Symlink, Some("../../../../../etc")),
        );
        fs.nodes
            .insert("loop".into(), node(Kind::Symlink, Some("loop")));
        assert_eq!(fs.resolve("/bin/ls", true).as_deref(), Some("usr/bin/ls"));
        assert_eq!(
            fs.resolve("var/lib/dpkg/status", true).as_deref(),
            Some("etc/status")
        );
        assert_eq!(fs.resolve("bin", false).as_deref(), Some("bin"));
        assert_eq!(fs.resolve("loop/x", true), None);
    }

    #[test]
    fn metadata_paths_are_recognised() {
        assert_eq!(keep("var/lib/dpkg/status"), Some(Keep::Whole));
        assert_eq!(keep("var/lib/dpkg/status.d/base"), Some(Keep::Whole));
        assert_eq!(keep("var/lib/dpkg/info/jq.list"), Some(Keep::Whole));
        assert_eq!(keep("var/lib/dpkg/info/jq.md5sums"), None);
        assert_eq!(keep("lib/apk/db/installed"), Some(Keep::Whole));
        assert_eq!(
            keep("usr/share/doc/jq/copyright"),
            Some(Keep::Head(COPYRIGHT_HEAD))
        );
        assert_eq!(
            keep("usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"),
            Some(Keep::Whole)
        );
        assert_eq!(
            keep("app/node_modules/left-pad/package.json"),
            Some(Keep::Whole)
        );
        assert_eq!(
            keep("app/node_modules/@types/node/package.json"),
            Some(Keep::Whole)
        );
        assert_eq!(keep("var/lib/rpm/rpmdb.sqlite"), Some(Keep::Rpmdb));
        assert_eq!(keep("usr/lib/sysimage/rpm/Packages"), Some(Keep::Rpmdb));
        assert_eq!(keep("srv/Packages"), None);
        assert_eq!(keep("app/package.json"), None);
        assert_eq!(keep("app/package-lock.json"), Some(Keep::Whole));
        assert_eq!(keep("npm-shrinkwrap.json"), Some(Keep::Whole));
        assert_eq!(keep("app/node_modules/x/package-lock.json"), None);
        assert_eq!(keep("app/node_modules/.package-lock.json"), None);
        assert_eq!(keep("app/node_modules/x/lib/package.json"), None);
    }
}
