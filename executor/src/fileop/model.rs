//! The destination tree: what the layer will hold, on top of a read-only view
//! of the parent file system.
//!
//! Nodes are kept in an arena; a directory's children are sorted bytewise, so
//! the layer is written in one pre-order walk with a fixed order (files whose
//! data comes from an archive follow, in archive order). File nodes
//! do not hold content but say where to read it when the layer is written,
//! so memory stays proportional to the number of entries, not their size.
//! Every directory on the way to something written is a node: created ones
//! with the metadata they get, existing ones ("merge" directories) with the
//! parent's metadata, so that applying the layer keeps their mode and owner.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::source::{FileKind, MAX_HOPS, SourceMeta, comps_of, view_stat};
use super::{FileOpError, Sources};
use crate::diff::{LayerWriter, Meta};
use crate::idmap::IdMap;
use crate::snapshot::LowerView;

/// Where a file's content is read from when the layer is written.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A file of source tree `src`.
    Tree { src: usize, path: Vec<OsString> },
    /// Inline bytes (heredocs), by index.
    Inline(usize),
    /// A host file (a download).
    Host(PathBuf),
    /// The data of entry `ordinal` of archive `archive`.
    Archive { archive: usize, ordinal: u64 },
    /// A file of the parent file system.
    Parent(Vec<OsString>),
}

/// What a node is.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// A directory. `merge`: the parent's directory at this path stays
    /// visible below it. `opaque`: it replaced a parent directory whose
    /// content must be hidden.
    Dir { merge: bool, opaque: bool },
    /// A regular file; nodes with the same `group` are hard links.
    File {
        content: Content,
        size: u64,
        group: Option<usize>,
    },
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A fifo or device: tar type and (major, minor).
    Special(tar::EntryType, (u32, u32)),
}

/// One entry of the destination tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) meta: Meta,
    /// Extended attributes written for directories and regular files.
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
    pub(crate) children: BTreeMap<OsString, usize>,
}

impl Node {
    pub(crate) fn new(kind: NodeKind, meta: Meta) -> Self {
        Node {
            kind,
            meta,
            xattrs: Vec::new(),
            children: BTreeMap::new(),
        }
    }

    /// The same node with extended attributes.
    pub(crate) fn with_xattrs(mut self, xattrs: Vec<(String, Vec<u8>)>) -> Self {
        self.xattrs = xattrs;
        self
    }
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }
}

/// What is at a path now: a node of this operation, an entry of the parent,
/// or nothing.
#[derive(Debug, Clone)]
pub(crate) enum At {
    Node(usize),
    Parent(SourceMeta),
    Missing,
}

/// The destination tree over a parent view.
#[derive(Debug)]
pub(crate) struct Model<'p> {
    nodes: Vec<Node>,
    parent: &'p LowerView,
    id_map: &'p IdMap,
    groups: usize,
}

/// `/a/b` for `[a, b]`.
pub(crate) fn show(comps: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(comps);
    p
}

impl<'p> Model<'p> {
    /// An empty tree over `parent` (whose owners `id_map` maps back).
    pub(crate) fn new(parent: &'p LowerView, id_map: &'p IdMap) -> Self {
        let root = Node::new(
            NodeKind::Dir {
                merge: true,
                opaque: false,
            },
            Meta {
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
        );
        Model {
            nodes: vec![root],
            parent,
            id_map,
            groups: 0,
        }
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes[0].children.is_empty()
    }

    /// A new hard-link group id.
    pub(crate) fn new_group(&mut self) -> usize {
        self.groups += 1;
        self.groups
    }

    pub(crate) fn node(&self, id: usize) -> &Node {
        &self.nodes[id]
    }

    pub(crate) fn node_mut(&mut self, id: usize) -> &mut Node {
        &mut self.nodes[id]
    }

    fn parent_stat(&self, comps: &[OsString]) -> Result<Option<SourceMeta>, FileOpError> {
        Ok(view_stat(self.parent, self.id_map, comps)
            .map_err(|source| FileOpError::ReadParent {
                path: show(comps),
                source,
            })?
            .map(|(_, m)| m))
    }

    /// What is at `comps` (no symlink followed).
    pub(crate) fn at(&self, comps: &[OsString]) -> Result<At, FileOpError> {
        let mut cur = 0;
        for c in comps {
            let n = &self.nodes[cur];
            match n.children.get(c) {
                Some(&id) => cur = id,
                None => {
                    return match n.kind {
                        NodeKind::Dir { merge: true, .. } => Ok(match self.parent_stat(comps)? {
                            Some(m) => At::Parent(m),
                            None => At::Missing,
                        }),
                        _ => Ok(At::Missing),
                    };
                }
            }
        }
        Ok(At::Node(cur))
    }

    /// Whether `at` is a directory.
    pub(crate) fn at_is_dir(&self, at: &At) -> bool {
        match at {
            At::Node(id) => self.nodes[*id].is_dir(),
            At::Parent(m) => m.kind == FileKind::Dir,
            At::Missing => false,
        }
    }

    fn link_of(&self, at: &At) -> Option<PathBuf> {
        match at {
            At::Node(id) => match &self.nodes[*id].kind {
                NodeKind::Symlink(t) => Some(PathBuf::from(OsStr::from_bytes(t))),
                _ => None,
            },
            At::Parent(m) if m.kind == FileKind::Symlink => m.link_target.clone(),
            _ => None,
        }
    }

    /// Resolves `rel` below `root` following symlinks (of this tree and of
    /// the parent) as if `root` were `/`: `..` and absolute targets never
    /// leave it. The last component is followed when `follow_last`.
    pub(crate) fn resolve(
        &self,
        root: &[OsString],
        rel: &[OsString],
        follow_last: bool,
    ) -> Result<Vec<OsString>, FileOpError> {
        let mut todo: Vec<OsString> = rel.iter().rev().cloned().collect();
        let mut done: Vec<OsString> = root.to_vec();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                if done.len() > root.len() {
                    done.pop();
                }
                continue;
            }
            if c.is_empty() || c == "." {
                continue;
            }
            done.push(c);
            if todo.is_empty() && !follow_last {
                break;
            }
            let at = self.at(&done)?;
            if let Some(target) = self.link_of(&at) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(FileOpError::SymlinkLoop { path: show(&done) });
                }
                done.pop();
                if target.is_absolute() {
                    done.truncate(root.len());
                }
                todo.extend(comps_of(&target).into_iter().rev());
            }
        }
        Ok(done)
    }

    /// The node of the directory at `comps` (resolved: no symlinks on the
    /// way), creating missing directories with `meta` (as `mkdir -p`) and
    /// nodes with the parent's metadata for existing ones.
    pub(crate) fn ensure_dir(
        &mut self,
        comps: &[OsString],
        meta: Meta,
    ) -> Result<usize, FileOpError> {
        let mut cur = 0;
        for i in 0..comps.len() {
            let here = &comps[..=i];
            if let Some(&id) = self.nodes[cur].children.get(&comps[i]) {
                if !self.nodes[id].is_dir() {
                    return Err(FileOpError::NotADirectory { path: show(here) });
                }
                cur = id;
                continue;
            }
            let node = match self.at(here)? {
                At::Parent(m) if m.kind == FileKind::Dir => Node::new(
                    NodeKind::Dir {
                        merge: true,
                        opaque: false,
                    },
                    Meta {
                        mode: m.mode,
                        uid: m.uid,
                        gid: m.gid,
                        mtime: m.mtime,
                    },
                )
                .with_xattrs(m.xattrs),
                At::Parent(_) | At::Node(_) => {
                    return Err(FileOpError::NotADirectory { path: show(here) });
                }
                At::Missing => {
                    super::check_name(&comps[i]).map_err(|reason| FileOpError::BadName {
                        path: show(here),
                        reason,
                    })?;
                    Node::new(
                        NodeKind::Dir {
                            merge: false,
                            opaque: false,
                        },
                        meta,
                    )
                }
            };
            cur = self.insert(cur, comps[i].clone(), node);
        }
        Ok(cur)
    }

    /// Puts `node` as `name` in directory node `dir`, replacing what was
    /// there. A directory replacing a parent directory that is not merged
    /// becomes opaque.
    pub(crate) fn insert(&mut self, dir: usize, name: OsString, node: Node) -> usize {
        let id = self.nodes.len();
        self.nodes.push(node);
        self.nodes[dir].children.insert(name, id);
        id
    }

    /// Replaces whatever is at `comps` (whose parent is directory node `dir`)
    /// with `node`. When a directory replaces something, it hides what the
    /// parent had below that path.
    pub(crate) fn replace(
        &mut self,
        dir: usize,
        comps: &[OsString],
        mut node: Node,
    ) -> Result<usize, FileOpError> {
        let name = comps.last().expect("a path below the root").clone();
        if let NodeKind::Dir { merge, opaque } = &mut node.kind {
            *merge = false;
            // Hide the parent's directory, if it had one.
            *opaque = self.parent_is_dir(comps)?;
        }
        Ok(self.insert(dir, name, node))
    }

    /// Whether the parent (below nodes that merge) has a directory at `comps`.
    fn parent_is_dir(&self, comps: &[OsString]) -> Result<bool, FileOpError> {
        let mut cur = 0;
        for c in &comps[..comps.len() - 1] {
            match self.nodes[cur].children.get(c) {
                Some(&id) => cur = id,
                None => break,
            }
            if !matches!(self.nodes[cur].kind, NodeKind::Dir { merge: true, .. }) {
                return Ok(false);
            }
        }
        Ok(self
            .parent_stat(comps)?
            .is_some_and(|m| m.kind == FileKind::Dir))
    }

    /// Writes every node (the root excepted) to `w` in pre-order with sorted
    /// names, except files whose data comes from an archive: those follow, in
    /// the order of their data in the archive, so that each archive is read
    /// once, front to back. Returns the number of regular files and their
    /// bytes.
    ///
    /// Small files of source trees are read ahead on another thread (at most
    /// [`PREFETCH_FILES`] of at most [`PREFETCH_MAX`] bytes each in flight), so
    /// opening and reading the sources overlaps with hashing and writing the
    /// layer: with 100,000 context files the two halves take about as long.
    pub(crate) fn write<W: Write>(
        &self,
        w: &mut LayerWriter<W>,
        sources: &mut Sources<'_>,
    ) -> Result<(u64, u64), FileOpError> {
        let mut order = Vec::new();
        self.prefetch_order(0, &mut std::collections::HashSet::new(), &mut order);
        let trees = sources.trees();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH_FILES);
            if !order.is_empty() {
                scope.spawn(move || {
                    for (id, src, path, size) in order {
                        let data = read_small(trees[src], &path, size);
                        if tx.send((id, data)).is_err() {
                            break;
                        }
                    }
                });
            }
            let mut st = WriteState {
                first: HashMap::new(),
                files: 0,
                bytes: 0,
                name: Vec::new(),
                deferred: Vec::new(),
                prefetched: Some(rx),
            };
            self.write_dir(0, w, sources, &mut st)?;
            st.prefetched = None;
            let mut deferred = std::mem::take(&mut st.deferred);
            deferred.sort();
            for (_, _, name, id) in deferred {
                st.name = name;
                self.write_node(id, w, sources, &mut st, true)?;
            }
            Ok((st.files, st.bytes))
        })
    }

    /// The small source-tree files in the order [`Self::write_dir`] writes them (hard
    /// links after the first of their group are not read again).
    fn prefetch_order(
        &self,
        dir: usize,
        groups: &mut std::collections::HashSet<usize>,
        out: &mut Vec<(usize, usize, Vec<OsString>, u64)>,
    ) {
        for &id in self.nodes[dir].children.values() {
            let node = &self.nodes[id];
            match &node.kind {
                NodeKind::File {
                    content: Content::Tree { src, path },
                    size,
                    group,
                } if *size <= PREFETCH_MAX && group.is_none_or(|g| groups.insert(g)) => {
                    out.push((id, *src, path.clone(), *size));
                }
                NodeKind::File { group: Some(g), .. } => {
                    groups.insert(*g);
                }
                _ => {}
            }
            if node.is_dir() {
                self.prefetch_order(id, groups, out);
            }
        }
    }

    fn write_dir<W: Write>(
        &self,
        dir: usize,
        w: &mut LayerWriter<W>,
        sources: &mut Sources<'_>,
        st: &mut WriteState,
    ) -> Result<(), FileOpError> {
        for (name, &id) in &self.nodes[dir].children {
            let len = st.name.len();
            st.name.extend_from_slice(name.as_bytes());
            let node = &self.nodes[id];
            let r = self.write_node(id, w, sources, st, false);
            if r.is_ok() && node.is_dir() {
                st.name.push(b'/');
                if let NodeKind::Dir { opaque: true, .. } = node.kind {
                    w.opaque_dir(&String::from_utf8_lossy(&st.name))?;
                }
                self.write_dir(id, w, sources, st)?;
            }
            st.name.truncate(len);
            r?;
        }
        Ok(())
    }

    fn write_node<W: Write>(
        &self,
        id: usize,
        w: &mut LayerWriter<W>,
        sources: &mut Sources<'_>,
        st: &mut WriteState,
        now: bool,
    ) -> Result<(), FileOpError> {
        let node = &self.nodes[id];
        let empty = &mut std::io::empty();
        if let NodeKind::File {
            content: Content::Archive { archive, ordinal },
            ..
        } = &node.kind
        {
            if !now {
                st.deferred.push((*archive, *ordinal, st.name.clone(), id));
                return Ok(());
            }
        }
        match &node.kind {
            NodeKind::Dir { .. } => {
                let mut n = st.name.clone();
                n.push(b'/');
                w.entry(
                    &n,
                    tar::EntryType::Directory,
                    &node.meta,
                    0,
                    None,
                    None,
                    &node.xattrs,
                    empty,
                )?;
            }
            NodeKind::Symlink(t) => {
                w.entry(
                    &st.name,
                    tar::EntryType::Symlink,
                    &node.meta,
                    0,
                    Some(t),
                    None,
                    &[],
                    empty,
                )?;
            }
            NodeKind::Special(kind, dev) => {
                w.entry(&st.name, *kind, &node.meta, 0, None, Some(*dev), &[], empty)?;
            }
            NodeKind::File {
                content,
                size,
                group,
            } => {
                if let Some(g) = group {
                    if let Some(first) = st.first.get(g) {
                        w.entry(
                            &st.name,
                            tar::EntryType::Link,
                            &node.meta,
                            0,
                            Some(first),
                            None,
                            &[],
                            empty,
                        )?;
                        return Ok(());
                    }
                    st.first.insert(*g, st.name.clone());
                }
                let path = PathBuf::from(OsStr::from_bytes(&st.name));
                // Read ahead by the prefetch thread when it is this file's turn; on any
                // surprise the thread is stopped and files are opened here.
                let mut ahead = None;
                if matches!(content, Content::Tree { .. }) && *size <= PREFETCH_MAX {
                    match st.prefetched.as_ref().map(|rx| rx.recv()) {
                        Some(Ok((pid, Ok(data)))) if pid == id => ahead = Some(data),
                        Some(_) => st.prefetched = None,
                        None => {}
                    }
                }
                let mut r: Box<dyn std::io::Read + '_> = match ahead {
                    Some(data) => Box::new(std::io::Cursor::new(data)),
                    None => sources.open(content, *size, &path)?,
                };
                let res = w.entry(
                    &st.name,
                    tar::EntryType::Regular,
                    &node.meta,
                    *size,
                    None,
                    None,
                    &node.xattrs,
                    &mut r,
                );
                drop(r);
                res.map_err(|e| match e {
                    crate::diff::DiffError::Changed { .. } => FileOpError::Changed {
                        path: sources.describe(content, &path),
                    },
                    e => FileOpError::Layer(e),
                })?;
                st.files += 1;
                st.bytes += size;
            }
        }
        Ok(())
    }
}

/// Files read ahead at most at once.
const PREFETCH_FILES: usize = 256;
/// Files larger than this are streamed by the writer itself.
const PREFETCH_MAX: u64 = 256 << 10;

/// Reads a whole small file (one byte more than expected, so a file that grew is noticed
/// by the writer's size check).
fn read_small(fs: &dyn super::SourceFs, path: &[OsString], size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut data = Vec::with_capacity(size as usize);
    fs.open(path)?.take(size + 1).read_to_end(&mut data)?;
    Ok(data)
}

struct WriteState {
    prefetched: Option<std::sync::mpsc::Receiver<(usize, std::io::Result<Vec<u8>>)>>,
    first: HashMap<usize, Vec<u8>>,
    files: u64,
    bytes: u64,
    name: Vec<u8>,
    /// Archive files to write after the walk: (archive, data position, name, node).
    deferred: Vec<(usize, u64, Vec<u8>, usize)>,
}

/// The path `p` (a container path) as components.
pub(crate) fn path_comps(p: &str) -> Vec<OsString> {
    comps_of(Path::new(p))
}
