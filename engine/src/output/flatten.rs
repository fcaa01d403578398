//! An image's final file system as one tar stream, as a container sees it: layers merged
//! bottom to top, whiteouts and opaque directories applied, a non-directory hiding the
//! directory below it, hard links kept as links.
//!
//! Two passes over the layers. The first reads only headers (uncompressed layers are
//! seeked over; compressed ones decompressed) and builds a path-ordered map of what
//! survives: for each final path, the entry that provides it (hard links resolved to the
//! entry of their target as it was when the link was made). The second writes every
//! directory first, in path order (parents before children), then streams the layers again
//! and writes each surviving entry once, its content copied from the layer; every further
//! name of the same entry follows it as a hard link. Memory grows with the number of final
//! paths, not with their size.
//!
//! Every layer is read through the build's [`Limits`] (its size, entries and names, as when
//! it is unpacked), so a hostile base image cannot make the map or the output unbounded.
//!
//! `type=local` feeds this stream to the executor's `apply_layer` (every name resolved
//! inside the destination, never following a symlink out of it); `type=tar` writes it.
//! Written here rather than by unpacking layer by layer because the output must be one tar
//! in which each file appears once; no crate merges OCI layers into a tar.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rbuild_cache::{Digest, Store};
use rbuild_compress::Compression;
#[cfg(test)]
use rbuild_compress::ManifestFormat;
use rbuild_tarlimits::{LimitedTar, Limits};
use tar::EntryType;

use super::error::{EntryError, FlattenError};

/// A closure that makes an I/O error reading `layer` a [`FlattenError::Read`].
fn read_error(layer: &Digest) -> impl FnOnce(io::Error) -> FlattenError {
    let layer = *layer;
    move |source| FlattenError::Read { layer, source }
}

/// Where an entry is: layer number and position in the layer's entry stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Loc {
    layer: u32,
    index: u64,
}

/// A final path.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The entry whose content and metadata the path has.
    origin: Loc,
    /// The layer that last wrote the path.
    layer: u32,
    dir: bool,
}

/// A directory's header and extended attributes, kept from the first pass.
struct DirMeta {
    header: tar::Header,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// What [`write_tar`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Entries written (directories, files, links...).
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// A layer blob read as an uncompressed tar. Seeking forward skips: a file seeks, a
/// decompressor reads and drops, so tar headers can be walked without copying content.
enum LayerReader {
    Plain(std::fs::File),
    /// A decompressor and the uncompressed bytes read so far (the position `seek` reports).
    Decoded(Box<dyn Read>, u64),
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerReader::Plain(f) => f.read(buf),
            LayerReader::Decoded(r, pos) => {
                let n = r.read(buf)?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }
}

impl Seek for LayerReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match (self, to) {
            (LayerReader::Plain(f), to) => f.seek(to),
            (LayerReader::Decoded(r, pos), SeekFrom::Current(n)) if n >= 0 => {
                let skipped = io::copy(&mut r.take(n as u64), &mut io::sink())?;
                *pos += skipped;
                if skipped < n as u64 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the layer ends inside an entry",
                    ));
                }
                Ok(*pos)
            }
            (LayerReader::Decoded(..), _) => Err(io::Error::other(
                "a compressed layer can only be skipped forward",
            )),
        }
    }
}

fn open_layer(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    limits: &Limits,
) -> Result<LimitedTar<LayerReader>, FlattenError> {
    let file = store.open_blob(digest)?;
    Ok(
        limits.reader(match Compression::from_media_type(media_type) {
            Some(Compression::None) => LayerReader::Plain(file),
            _ => LayerReader::Decoded(
                Box::new(
                    rbuild_compress::decompress(file, Some(media_type))
                        .map_err(read_error(digest))?,
                ),
                0,
            ),
        }),
    )
}

/// The entry name as a clean relative path (`./a//b/` is `a/b`); `None` for the root.
fn clean(name: &[u8]) -> Result<Option<Vec<u8>>, EntryError> {
    let mut out: Vec<u8> = Vec::with_capacity(name.len());
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(EntryError::DotDot(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            }
            c => {
                if c.contains(&0) {
                    return Err(EntryError::Nul(String::from_utf8_lossy(name).into_owned()));
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The keys strictly below `dir` in path order: `dir/` up to `dir0` (`'0'` follows `'/'`).
fn below(dir: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = dir.to_vec();
    lo.push(b'/');
    let mut hi = dir.to_vec();
    hi.push(b'0');
    (lo, hi)
}

/// Removes the paths below `dir` written by layers before `layer` (all of them when
/// `layer` is `u32::MAX`).
fn remove_below(tree: &mut BTreeMap<Vec<u8>, Node>, dir: &[u8], layer: u32) {
    let (lo, hi) = below(dir);
    let doomed: Vec<Vec<u8>> = tree
        .range(lo..hi)
        .filter(|(_, n)| n.layer < layer)
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key()
                && key.starts_with("SCHILY.xattr.")
            {
                out.push((key.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn skipped(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    )
}

/// The final paths, and the headers of the directories among them.
type Scanned = (BTreeMap<Vec<u8>, Node>, HashMap<Loc, DirMeta>);

/// First pass: what survives, and the headers of the directories that do.
fn scan(
    store: &Store,
    layers: &[(Digest, String)],
    limits: &Limits,
) -> Result<Scanned, FlattenError> {
    let mut tree: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    let mut dirs: HashMap<Loc, DirMeta> = HashMap::new();
    for (n, (digest, media_type)) in layers.iter().enumerate() {
        let layer = n as u32;
        let mut archive = tar::Archive::new(open_layer(store, digest, media_type, limits)?);
        let entries = archive.entries_with_seek().map_err(read_error(digest))?;
        for (index, entry) in entries.enumerate() {
            let mut entry = entry.map_err(read_error(digest))?;
            let kind = entry.header().entry_type();
            if skipped(kind) {
                continue;
            }
            let loc = Loc {
                layer,
                index: index as u64,
            };
            let name = entry.path_bytes().into_owned();
            let Some(path) = clean(&name).map_err(|source| FlattenError::Entry {
                layer: *digest,
                source,
            })?
            else {
                continue; // the root directory itself
            };
            let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => (&path[..0], &path[..]),
            };
            if base == b".wh..wh..opq" {
                remove_below(&mut tree, parent, layer);
                continue;
            }
            if let Some(target) = base.strip_prefix(b".wh.") {
                let mut hidden = parent.to_vec();
                if !hidden.is_empty() {
                    hidden.push(b'/');
                }
                hidden.extend_from_slice(target);
                if tree.get(&hidden).is_some_and(|n| n.layer < layer) {
                    tree.remove(&hidden);
                }
                remove_below(&mut tree, &hidden, layer);
                continue;
            }
            // An ancestor that is not a directory is hidden by the directory this entry
            // implies.
            for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
                if tree.get(&path[..i]).is_some_and(|n| !n.dir) {
                    tree.remove(&path[..i]);
                }
            }
            let dir = kind == EntryType::Directory;
            if !dir && tree.get(&path).is_some_and(|n| n.dir) {
                remove_below(&mut tree, &path, u32::MAX);
            }
            let origin = if kind == EntryType::Link {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                let target = match target.as_deref().map(clean) {
                    Some(Ok(Some(t))) => t,
                    _ => {
                        return Err(FlattenError::NoLinkTarget {
                            layer: *digest,
                            link: String::from_utf8_lossy(&name).into_owned(),
                        });
                    }
                };
                match tree.get(&target) {
                    Some(t) if !t.dir => t.origin,
                    _ => {
                        return Err(FlattenError::LinkTarget {
                            layer: *digest,
                            link: String::from_utf8_lossy(&name).into_owned(),
                            target: String::from_utf8_lossy(&target).into_owned(),
                        });
                    }
                }
            } else {
                loc
            };
            if dir {
                let xattrs = xattrs_of(&mut entry).map_err(read_error(digest))?;
                dirs.insert(
                    loc,
                    DirMeta {
                        header: entry.header().clone(),
                        xattrs,
                    },
                );
            }
            tree.insert(path, Node { origin, layer, dir });
        }
    }
    let kept: std::collections::HashSet<Loc> =
        tree.values().filter(|n| n.dir).map(|n| n.origin).collect();
    dirs.retain(|loc, _| kept.contains(loc));
    Ok((tree, dirs))
}

fn append_xattrs<W: Write>(
    builder: &mut tar::Builder<W>,
    xattrs: &[(String, Vec<u8>)],
) -> io::Result<()> {
    if !xattrs.is_empty() {
        builder.append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    Ok(())
}

/// Writes the final file system of `layers` (bottom first) as one tar to `out`; each layer
/// may hold what `limits` allow.
pub fn write_tar<W: Write>(
    store: &Store,
    layers: &[(Digest, String)],
    limits: &Limits,
    files: &[(String, Vec<u8>)],
    out: W,
) -> Result<Stats, FlattenError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let stats = append_tree(&mut builder, store, layers, limits, b"")?;
    append_files(&mut builder, files)?;
    finish(builder)?;
    Ok(stats)
}

/// Appends regular files (mode 0644, time 0) after the file systems: the attestations a
/// `type=tar` output holds beside them.
fn append_files<W: Write>(
    builder: &mut tar::Builder<W>,
    files: &[(String, Vec<u8>)],
) -> Result<(), FlattenError> {
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_size(bytes.len() as u64);
        builder
            .append_data(&mut header, path, &bytes[..])
            .map_err(|source| FlattenError::Append {
                path: path.clone(),
                source,
            })?;
    }
    Ok(())
}

/// Writes the final file systems of several images as one tar, each below a directory of
/// its own (`linux_amd64/`, as buildx writes a multi-platform `type=tar` output).
pub fn write_tars<W: Write>(
    store: &Store,
    parts: &[(String, Vec<(Digest, String)>)],
    limits: &Limits,
    files: &[(String, Vec<u8>)],
    out: W,
) -> Result<Stats, FlattenError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut stats = Stats::default();
    for (dir, layers) in parts {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_size(0);
        let prefix = format!("{dir}/");
        builder
            .append_data(&mut header, &prefix, io::empty())
            .map_err(|source| FlattenError::Append {
                path: dir.clone(),
                source,
            })?;
        let s = append_tree(&mut builder, store, layers, limits, prefix.as_bytes())?;
        stats.entries += s.entries + 1;
        stats.bytes += s.bytes;
    }
    append_files(&mut builder, files)?;
    finish(builder)?;
    Ok(stats)
}

fn finish<W: Write>(builder: tar::Builder<W>) -> Result<(), FlattenError> {
    builder
        .into_inner()
        .map_err(FlattenError::Finish)?
        .flush()
        .map_err(FlattenError::Finish)
}

/// Appends the final file system of `layers` to `builder`, every name below `prefix`
/// (empty, or a directory name ending in `/`).
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    store: &Store,
    layers: &[(Digest, String)],
    limits: &Limits,
    prefix: &[u8],
) -> Result<Stats, FlattenError> {
    let (tree, dirs) = scan(store, layers, limits)?;
    let mut stats = Stats::default();
    let fail = |path: &[u8]| {
        let path = String::from_utf8_lossy(path).into_owned();
        move |source| FlattenError::Append { path, source }
    };

    // Directories first, parents before children; a directory implied by its children
    // but never written gets 0755 root:root, as docker creates it.
    let mut implied: Vec<Vec<u8>> = Vec::new();
    for path in tree.keys() {
        for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            if !tree.contains_key(&path[..i]) {
                implied.push(path[..i].to_vec());
            }
        }
    }
    implied.sort();
    implied.dedup();
    let mut all_dirs: Vec<(&[u8], Option<&DirMeta>)> = tree
        .iter()
        .filter(|(_, n)| n.dir)
        .map(|(p, n)| (p.as_slice(), dirs.get(&n.origin)))
        .chain(implied.iter().map(|p| (p.as_slice(), None)))
        .collect();
    all_dirs.sort_by(|a, b| a.0.cmp(b.0));
    for (path, meta) in all_dirs {
        let mut header = match meta {
            Some(m) => {
                append_xattrs(builder, &m.xattrs).map_err(fail(path))?;
                m.header.clone()
            }
            None => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h
            }
        };
        header.set_size(0);
        let mut name = [prefix, path].concat();
        name.push(b'/');
        builder
            .append_data(
                &mut header,
                Path::new(OsStr::from_bytes(&name)),
                io::empty(),
            )
            .map_err(fail(path))?;
        stats.entries += 1;
    }

    // Every other entry once, at the place of the entry that provides it, in layer order.
    let mut names: HashMap<Loc, Vec<&[u8]>> = HashMap::new();
    for (path, node) in tree.iter().filter(|(_, n)| !n.dir) {
        names.entry(node.origin).or_default().push(path.as_slice());
    }
    for (n, (digest, media_type)) in layers.iter().enumerate() {
        let layer = n as u32;
        if !names.keys().any(|l| l.layer == layer) {
            continue;
        }
        let mut archive = tar::Archive::new(open_layer(store, digest, media_type, limits)?);
        let entries = archive.entries_with_seek().map_err(read_error(digest))?;
        for (index, entry) in entries.enumerate() {
            let mut entry = entry.map_err(read_error(digest))?;
            let loc = Loc {
                layer,
                index: index as u64,
            };
            let Some(paths) = names.get(&loc) else {
                continue;
            };
            let first = paths[0];
            let xattrs = xattrs_of(&mut entry).map_err(fail(first))?;
            append_xattrs(builder, &xattrs).map_err(fail(first))?;
            let mut header = entry.header().clone();
            let kind = header.entry_type();
            let first_name = [prefix, first].concat();
            let first_path = Path::new(OsStr::from_bytes(&first_name));
            match kind {
                EntryType::Symlink => {
                    let target = entry.link_name_bytes().map(|t| t.into_owned());
                    let target = target.unwrap_or_default();
                    header.set_size(0);
                    builder
                        .append_link(
                            &mut header,
                            first_path,
                            Path::new(OsStr::from_bytes(&target)),
                        )
                        .map_err(fail(first))?;
                }
                EntryType::Regular | EntryType::Continuous => {
                    header.set_entry_type(EntryType::Regular);
                    let size = entry.size();
                    header.set_size(size);
                    builder
                        .append_data(&mut header, first_path, &mut entry)
                        .map_err(fail(first))?;
                    stats.bytes += size;
                }
                _ => {
                    header.set_size(0);
                    builder
                        .append_data(&mut header, first_path, io::empty())
                        .map_err(fail(first))?;
                }
            }
            stats.entries += 1;
            for other in &paths[1..] {
                let mut h = entry.header().clone();
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                let other_name = [prefix, other].concat();
                builder
                    .append_link(
                        &mut h,
                        Path::new(OsStr::from_bytes(&other_name)),
                        first_path,
                    )
                    .map_err(fail(other))?;
                stats.entries += 1;
            }
        }
    }
    Ok(stats)
}

/// Writes the final file system of `layers` into the directory `dir` (created when missing):
/// the merged stream of [`write_tar`] applied by the executor's unpacker, so every name is
/// resolved inside `dir` and no symlink (of the image or already in `dir`) leads out of it.
/// Owners are set when running as root; otherwise files belong to the caller.
pub fn write_dir(
    store: &Store,
    layers: &[(Digest, String)],
    limits: &Limits,
    dir: &Path,
) -> Result<(), FlattenError> {
    std::fs::create_dir_all(dir).map_err(|source| FlattenError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| FlattenError::Pipe(e.into()))?;
    let (reader, writer) = (std::fs::File::from(reader), std::fs::File::from(writer));
    let root = rustix::process::geteuid().is_root();
    let mut opts = rbuild_executor::unpack::UnpackOptions::new(format!(
        "the file system of the image ({} layers)",
        layers.len()
    ));
    opts.whiteouts = rbuild_executor::unpack::WhiteoutMode::Delete;
    opts.ignore_chown_errors = !root;
    // The merged stream holds every layer's survivors (each layer was held to `limits`): its
    // size and entries are those of the whole image; its names are the layers' names.
    opts.limits = Limits {
        max_layer_bytes: u64::MAX,
        max_entries: u64::MAX,
        ..*limits
    };
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            write_tar(
                store,
                layers,
                limits,
                &[],
                io::BufWriter::with_capacity(1 << 20, writer),
            )
        });
        let applied = rbuild_executor::unpack::apply_layer(
            io::BufReader::with_capacity(1 << 20, reader),
            dir,
            &opts,
        );
        let produced = producer.join().map_err(|_| FlattenError::Panicked)?;
        // A broken pipe on the writer's side is explained by the unpacker's error; any other
        // writer error (an unreadable layer) explains the unpacker's truncated stream.
        if let Err(e) = &produced {
            let broken_pipe = crate::missing::causes(e)
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|io| io.kind() == io::ErrorKind::BrokenPipe);
            if !broken_pipe || applied.is_ok() {
                return produced.map(|_| ());
            }
        }
        let stats = applied.map_err(|source| FlattenError::Unpack {
            dir: dir.to_path_buf(),
            source,
        })?;
        if stats.chown_failures > 0 {
            tracing::info!(
                "{} entries of {} keep the caller as owner (not running as root)",
                stats.chown_failures,
                dir.display()
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar: `(name, kind, content or link target)`; kind is `d`, `f`, `l` (symlink),
    /// `h` (hard link).
    fn layer(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(if *kind == 'd' { 0o755 } else { 0o644 });
            h.set_mtime(1);
            match kind {
                'd' => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                'f' => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, data.as_bytes()).unwrap();
                }
                'l' | 'h' => {
                    h.set_entry_type(if *kind == 'l' {
                        EntryType::Symlink
                    } else {
                        EntryType::Link
                    });
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => unreachable!(),
            }
        }
        b.into_inner().unwrap()
    }

    /// Flattens layers (the second gzip-compressed, to walk both readers) and lists the
    /// result as `name kind content-or-target`.
    fn flat(layers: &[Vec<u8>]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut refs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let (bytes, media_type) = if i == 1 {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(l).unwrap();
                (
                    gz.finish().unwrap(),
                    Compression::Gzip.media_type(ManifestFormat::Oci).unwrap(),
                )
            } else {
                (
                    l.clone(),
                    Compression::None.media_type(ManifestFormat::Oci).unwrap(),
                )
            };
            let c = store.put_blob(&bytes, None).unwrap();
            refs.push((c.digest, media_type.to_string()));
        }
        let mut out = Vec::new();
        write_tar(&store, &refs, &Limits::default(), &[], &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let kind = e.header().entry_type();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap());
                let mut content = String::new();
                e.read_to_string(&mut content).unwrap();
                match kind {
                    EntryType::Directory => format!("{name} d"),
                    EntryType::Regular => format!("{name} f {content}"),
                    EntryType::Symlink => format!("{name} l {}", link.unwrap()),
                    EntryType::Link => format!("{name} h {}", link.unwrap()),
                    other => format!("{name} {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn whiteouts_opaque_dirs_replacements_and_hard_links() {
        let l0 = layer(&[
            ("etc/", 'd', ""),
            ("etc/a", 'f', "a0"),
            ("etc/b", 'f', "b0"),
            ("etc/link", 'h', "etc/a"),
            ("opq/", 'd', ""),
            ("opq/old", 'f', "old"),
            ("dir/", 'd', ""),
            ("dir/child", 'f', "c"),
            ("file", 'f', "was a file"),
            ("keep", 'f', "k"),
            ("keep2", 'h', "keep"),
        ]);
        let l1 = layer(&[
            ("etc/.wh.b", 'f', ""),
            ("etc/a", 'f', "a1"),
            ("opq/", 'd', ""),
            ("opq/.wh..wh..opq", 'f', ""),
            ("opq/new", 'f', "new"),
            ("dir", 'f', "now a file"),
            ("file/", 'd', ""),
            ("file/inside", 'f', "i"),
            ("implied/deep/x", 'f', "x"),
            ("sym", 'l', "/etc/a"),
        ]);
        let l2 = layer(&[(".wh.keep", 'f', ""), ("opq/later", 'f', "l")]);
        assert_eq!(
            flat(&[l0, l1, l2]),
            [
                "etc/ d",
                "file/ d",
                "implied/ d",
                "implied/deep/ d",
                "opq/ d",
                // layer 0: `etc/a` was replaced, so its old content lives on in the link
                "etc/link f a0",
                "keep2 f k",
                // then layer 1's survivors in its order
                "etc/a f a1",
                "opq/new f new",
                "dir f now a file",
                "file/inside f i",
                "implied/deep/x f x",
                "sym l /etc/a",
                "opq/later f l",
            ]
        );
    }

    #[test]
    fn surviving_hard_links_follow_their_target_and_dot_slash_names_are_one_path() {
        let l0 = layer(&[
            ("./", 'd', ""),
            ("./bin/", 'd', ""),
            ("./bin/tool", 'f', "t"),
            ("./bin/alias", 'h', "./bin/tool"),
            ("bin/tool2", 'h', "bin/tool"),
        ]);
        assert_eq!(
            flat(&[l0]),
            [
                "bin/ d",
                "bin/alias f t",
                "bin/tool h bin/alias",
                "bin/tool2 h bin/alias"
            ]
        );
    }

    #[test]
    fn a_hard_link_to_nothing_is_an_error_naming_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l = layer(&[("a", 'h', "missing")]);
        let c = store.put_blob(&l, None).unwrap();
        let err = write_tar(
            &store,
            &[(
                c.digest,
                Compression::None
                    .media_type(ManifestFormat::Oci)
                    .unwrap()
                    .to_string(),
            )],
            &Limits::default(),
            &[],
            io::sink(),
        )
        .unwrap_err();
        let text = crate::error::chain_text(&err);
        assert!(
            text.contains("hard link \"a\" points to \"missing\""),
            "{text}"
        );
    }

    #[test]
    fn a_layer_past_the_limits_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l = layer(&[("a/", 'd', ""), ("a/b/", 'd', ""), ("a/b/c", 'f', "x")]);
        let c = store.put_blob(&l, None).unwrap();
        let limits = Limits {
            max_path_depth: 2,
            ..Limits::default()
        };
        let err = write_tar(
            &store,
            &[(
                c.digest,
                Compression::None
                    .media_type(ManifestFormat::Oci)
                    .unwrap()
                    .to_string(),
            )],
            &limits,
            &[],
            io::sink(),
        )
        .unwrap_err();
        let text = crate::error::chain_text(&err);
        assert!(
            text.contains(&format!("cannot read layer {}", c.digest))
                && text.contains("entry \"a/b/c\" has 3 path components, more than the 2 allowed"),
            "{text}"
        );
    }
}
