//! Deterministic layer tarballs from directories, and compression detection.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use rbuild_compress::ParallelGzip;
use tar::{EntryType, Header};

use crate::blob::BlobWriter;
use crate::store::{Store, StoreError};
use rbuild_digest::{Digest, HashingWriter};

/// Why a directory could not be turned into a tarball.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The tar stream could not be written.
    #[error("cannot write the tar entry for {path}")]
    Write {
        /// The entry being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The compressed layer could not be written (the store's file system is full, say).
    #[error("cannot write the compressed layer to {path}")]
    WriteBlob {
        /// The temp file of the layer.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The compressed layer could not be finished.
    #[error("cannot finish the compressed layer in {path}")]
    Compress {
        /// The temp file of the layer.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer blob could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns an uncompressed layer tar stream into a gzip blob of the store in one pass: the tar
/// bytes are hashed (the diff_id), compressed on several threads, hashed again (the blob
/// digest) and written to a temp file that [`finish`](LayerWriter::finish) moves into place.
#[derive(Debug)]
pub struct LayerWriter {
    inner: HashingWriter<ParallelGzip<BlobWriter>>,
    temp: PathBuf,
}

/// A layer [`LayerWriter`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLayer {
    /// The digest of the compressed blob.
    pub digest: Digest,
    /// The size of the compressed blob.
    pub size: u64,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
}

impl NewLayer {
    /// The layer's descriptor (`application/vnd.oci.image.layer.v1.tar+gzip`).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(MediaType::ImageLayerGzip, self.size, self.digest)
    }
}

impl LayerWriter {
    /// A writer of a new gzip layer, compressing on `threads` threads (1: inline).
    pub fn new(store: &Store, threads: usize) -> Result<LayerWriter, StoreError> {
        let blob = store.blob_writer(None)?;
        let temp = blob.temp_path().to_path_buf();
        let gz = ParallelGzip::new(blob, threads);
        Ok(LayerWriter {
            inner: HashingWriter::new(gz),
            temp,
        })
    }

    /// Finishes compression and stores the blob.
    pub fn finish(self) -> Result<NewLayer, LayerError> {
        let (gz, diff_id, _) = self.inner.finish();
        let blob = gz.finish().map_err(|source| LayerError::Compress {
            path: self.temp.clone(),
            source,
        })?;
        let committed = blob.commit().map_err(StoreError::from)?;
        Ok(NewLayer {
            digest: committed.digest,
            size: committed.size,
            diff_id,
        })
    }
}

impl Write for LayerWriter {
    /// Compressed members reach the store's temp file while the tar is written, so a
    /// failure here (a full disk) names that file.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|source| {
            io::Error::new(
                source.kind(),
                LayerError::WriteBlob {
                    path: self.temp.clone(),
                    source,
                },
            )
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How a directory becomes a tarball.
#[derive(Debug, Clone, Default)]
pub struct TarOptions {
    /// Clamp every mtime to at most this many seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<u64>,
    /// Directories left out wherever they appear in the tree (compared by device and inode),
    /// such as the store itself when a whole file system is imported.
    pub exclude: Vec<PathBuf>,
}

/// Writes the tree under `root` (not `root` itself) as a tar stream to `out`.
///
/// The stream is deterministic: entries in byte order of their names, directories before their
/// content, no user or group names, PAX records (sorted) for long names, large ids and
/// extended attributes. Modes (setuid, setgid, sticky included), uid, gid and mtimes are kept
/// (mtimes clamped when asked); symlinks are stored as links, files with several links as one
/// file plus hard links, devices and fifos as such. Sockets are skipped.
pub fn write_dir_tar<W: Write>(root: &Path, out: W, options: TarOptions) -> Result<W, LayerError> {
    write_dir_tar_newest(root, out, options).map(|(out, _)| out)
}

/// [`write_dir_tar`], also returning the newest modification time written (after
/// clamping), in seconds since the epoch: 0 for an empty tree.
pub fn write_dir_tar_newest<W: Write>(
    root: &Path,
    out: W,
    options: TarOptions,
) -> Result<(W, u64), LayerError> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut links = HashMap::new();
    let exclude: Vec<(u64, u64)> = options
        .exclude
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let walker = Walker {
        clamp_mtime: options.clamp_mtime,
        exclude,
        newest: std::cell::Cell::new(0),
    };
    walker.walk(root, Path::new(""), &mut builder, &mut links)?;
    let out = builder.into_inner().map_err(|source| LayerError::Write {
        path: root.to_path_buf(),
        source,
    })?;
    Ok((out, walker.newest.get()))
}

struct Walker {
    clamp_mtime: Option<u64>,
    exclude: Vec<(u64, u64)>,
    /// The newest mtime written so far.
    newest: std::cell::Cell<u64>,
}

impl Walker {
    fn walk<W: Write>(
        &self,
        dir: &Path,
        rel: &Path,
        builder: &mut tar::Builder<W>,
        links: &mut HashMap<(u64, u64), PathBuf>,
    ) -> Result<(), LayerError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LayerError::Read { path, source }
        };
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read_err(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
            let ft = meta.file_type();
            if ft.is_socket() {
                tracing::warn!("skipping socket {}", path.display());
                continue;
            }
            if ft.is_dir() && self.exclude.contains(&(meta.dev(), meta.ino())) {
                tracing::info!("leaving out {}", path.display());
                continue;
            }
            let mut header = Header::new_ustar();
            let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            header.set_mode(meta.mode() & 0o7777);
            set_id(&mut header, &mut pax, "uid", u64::from(meta.uid()));
            set_id(&mut header, &mut pax, "gid", u64::from(meta.gid()));
            let mut mtime = u64::try_from(meta.mtime()).unwrap_or(0);
            if let Some(clamp) = self.clamp_mtime {
                mtime = mtime.min(clamp);
            }
            header.set_mtime(mtime);
            self.newest.set(self.newest.get().max(mtime));
            header.set_size(0);
            let mut name_bytes = rel.as_os_str().as_bytes().to_vec();
            let mut body: Option<File> = None;
            let mut size = 0;
            if ft.is_dir() {
                header.set_entry_type(EntryType::Directory);
                name_bytes.push(b'/');
            } else if ft.is_symlink() {
                header.set_entry_type(EntryType::Symlink);
                let target = std::fs::read_link(&path).map_err(read_err(&path))?;
                set_link(&mut header, &mut pax, target.as_os_str().as_bytes());
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1
                    && let Some(first) = links.get(&key)
                {
                    header.set_entry_type(EntryType::Link);
                    set_link(&mut header, &mut pax, first.as_os_str().as_bytes());
                } else {
                    if meta.nlink() > 1 {
                        links.insert(key, rel.clone());
                    }
                    header.set_entry_type(EntryType::Regular);
                    size = meta.len();
                    header.set_size(size);
                    body = Some(File::open(&path).map_err(read_err(&path))?);
                }
            } else if ft.is_char_device() || ft.is_block_device() {
                header.set_entry_type(if ft.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                let rdev = meta.rdev();
                let werr = |source| LayerError::Write {
                    path: path.clone(),
                    source,
                };
                header
                    .set_device_major(rustix::fs::major(rdev))
                    .map_err(werr)?;
                header
                    .set_device_minor(rustix::fs::minor(rdev))
                    .map_err(werr)?;
            } else if ft.is_fifo() {
                header.set_entry_type(EntryType::Fifo);
            }
            if header
                .set_path(Path::new(std::ffi::OsStr::from_bytes(&name_bytes)))
                .is_err()
            {
                pax.insert("path".into(), name_bytes.clone());
                let short = &name_bytes[..name_bytes.len().min(100)];
                let old = header.as_old_mut();
                old.name = [0; 100];
                old.name[..short.len()].copy_from_slice(short);
            }
            read_xattrs(&path, &mut pax);
            let werr = |source| LayerError::Write {
                path: path.clone(),
                source,
            };
            if !pax.is_empty() {
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .map_err(werr)?;
            }
            header.set_cksum();
            match body {
                Some(file) => {
                    let reader = ExactReader {
                        inner: file,
                        remaining: size,
                        path: &path,
                    };
                    builder.append(&header, reader).map_err(werr)?;
                }
                None => builder.append(&header, io::empty()).map_err(werr)?,
            }
            if ft.is_dir() {
                self.walk(&path, &rel, builder, links)?;
            }
        }
        Ok(())
    }
}

fn set_id(header: &mut Header, pax: &mut BTreeMap<String, Vec<u8>>, key: &str, id: u64) {
    const USTAR_MAX: u64 = 0o7_777_777;
    if id > USTAR_MAX {
        pax.insert(key.into(), id.to_string().into_bytes());
    }
    let id = id.min(USTAR_MAX);
    if key == "uid" {
        header.set_uid(id)
    } else {
        header.set_gid(id)
    }
}

fn set_link(header: &mut Header, pax: &mut BTreeMap<String, Vec<u8>>, target: &[u8]) {
    if target.len() > 100 || header.set_link_name_literal(target).is_err() {
        pax.insert("linkpath".into(), target.to_vec());
        let _ = header.set_link_name_literal(&target[..target.len().min(100)]);
    }
}

/// Adds `SCHILY.xattr.*` records for the extended attributes that can be read. The SELinux
/// label describes the host, not the content, and is left out.
fn read_xattrs(path: &Path, pax: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(names) = xattr::list(path) else { return };
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if name == "security.selinux" {
            continue;
        }
        match xattr::get(path, name) {
            Ok(Some(value)) => {
                pax.insert(format!("SCHILY.xattr.{name}"), value);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot read xattr {name} of {}: {e}", path.display()),
        }
    }
}

/// Reads exactly `remaining` bytes, failing if the file is shorter (it changed while read),
/// so a tar entry never disagrees with its header.
struct ExactReader<'a> {
    inner: File,
    remaining: u64,
    path: &'a Path,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was read", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tar_is_deterministic_and_keeps_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("b/c/file"), b"hello").unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(root.join("a"), root.join("z-link")).unwrap();
        std::os::unix::fs::symlink("b/c/file", root.join("s")).unwrap();
        let long = "d".repeat(150);
        std::fs::write(root.join(&long), b"long").unwrap();
        xattr::set(root.join("b/c/file"), "user.rbuild", b"kept")
            .expect("the temp dir's file system must support user xattrs");
        let options = TarOptions {
            clamp_mtime: Some(1000),
            exclude: Vec::new(),
        };
        let one = write_dir_tar(root, Vec::new(), options.clone()).unwrap();
        let two = write_dir_tar(root, Vec::new(), options).unwrap();
        assert_eq!(one, two);
        let mut archive = tar::Archive::new(&one[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(h.mtime().unwrap(), 1000, "{path}");
            let pax: Vec<(String, Vec<u8>)> = match entry.pax_extensions().unwrap() {
                Some(exts) => exts
                    .map(|e| e.unwrap())
                    .map(|e| (e.key().unwrap().to_string(), e.value_bytes().to_vec()))
                    .collect(),
                None => Vec::new(),
            };
            match path.as_str() {
                "a" => assert_eq!(h.mode().unwrap(), 0o4755),
                "b/c/file" => assert!(
                    pax.contains(&("SCHILY.xattr.user.rbuild".to_string(), b"kept".to_vec())),
                    "{pax:?}"
                ),
                "z-link" => {
                    assert_eq!(h.entry_type(), EntryType::Link);
                    assert_eq!(entry.link_name().unwrap().unwrap().to_str(), Some("a"));
                }
                "s" => {
                    assert_eq!(h.entry_type(), EntryType::Symlink);
                    assert_eq!(
                        entry.link_name().unwrap().unwrap().to_str(),
                        Some("b/c/file")
                    );
                }
                _ => {}
            }
            seen.push(path);
        }
        assert_eq!(seen, ["a", "b/", "b/c/", "b/c/file", &long, "s", "z-link"]);

        let options = TarOptions {
            clamp_mtime: None,
            exclude: vec![root.join("b/c")],
        };
        let without = write_dir_tar(root, Vec::new(), options).unwrap();
        let mut archive = tar::Archive::new(&without[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a", "b/", &long, "s", "z-link"]);
    }
}
