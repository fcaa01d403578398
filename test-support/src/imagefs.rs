//! Reads an image archive in `docker save` format (what `docker save` and `rbuild save
//! --format docker` write) into its config and its flattened file system, and compares two of
//! them: the config fields a Dockerfile sets, and every file's type, mode, owner, size,
//! content hash and link target (mtimes are not compared).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use sha2::Digest as _;

/// The type of a file in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// One file of a flattened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Its type.
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky (`& 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Size in bytes (0 but for regular files).
    pub size: u64,
    /// sha256 of the content (regular files only).
    pub sha256: Option<String>,
    /// The target of a symlink.
    pub link: Option<String>,
    /// Hard links: the path (in the flattened view) this entry was linked to in its layer.
    pub hardlink_of: Option<String>,
    /// Made for a path's missing parent, not present in any layer.
    pub implicit: bool,
    /// The content of a small text file, shown in differences (not compared: `sha256` is).
    pub preview: Option<String>,
}

impl std::fmt::Display for FileEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if self.kind == FileKind::File {
            let hash = self.sha256.as_deref().unwrap_or("");
            write!(
                f,
                " {} bytes sha256:{}",
                self.size,
                &hash[..hash.len().min(12)]
            )?;
        }
        if let Some(link) = &self.link {
            write!(f, " -> {link}")?;
        }
        if let Some(of) = &self.hardlink_of {
            write!(f, " (hard link of {of})")?;
        }
        if self.implicit {
            write!(f, " (implicit parent)")?;
        }
        if let Some(text) = &self.preview {
            write!(f, " {text:?}")?;
        }
        Ok(())
    }
}

/// Decides whether a path is left out of [`ImageArchive::diff`], given its entries in the two
/// images.
pub type SkipFn<'a> = dyn Fn(&str, Option<&FileEntry>, Option<&FileEntry>) -> bool + 'a;

/// An image read from a `docker save` archive.
#[derive(Debug)]
pub struct ImageArchive {
    /// The image config document.
    pub config: serde_json::Value,
    /// Every file, by path relative to `/` without a leading slash (`etc/passwd`).
    pub files: BTreeMap<String, FileEntry>,
    /// For each layer of the manifest, whether its tar holds no entry at all.
    pub empty_layers: Vec<bool>,
}

/// The config fields ([`ImageArchive::config`]`["config"]`) a Dockerfile sets.
pub const CONFIG_FIELDS: [&str; 12] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "Shell",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
];

impl ImageArchive {
    /// Reads the first image of the archive at `path`.
    pub fn read(path: &Path) -> ImageArchive {
        let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let file = std::fs::File::open(path)
            .unwrap_or_else(|e| panic!("cannot open the image archive {}: {e}", path.display()));
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().expect("archive entries") {
            let mut entry = entry.expect("archive entry");
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .expect("member path")
                .to_string_lossy()
                .into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read member");
            members.insert(name.trim_start_matches("./").to_string(), bytes);
        }
        let member = |name: &str| -> &Vec<u8> {
            members
                .get(name)
                .unwrap_or_else(|| panic!("{}: no member {name}", path.display()))
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(member("manifest.json")).expect("manifest.json");
        let first = &manifest[0];
        let config: serde_json::Value =
            serde_json::from_slice(member(first["Config"].as_str().expect("manifest Config")))
                .expect("image config json");
        let mut files = BTreeMap::new();
        let mut empty_layers = Vec::new();
        for layer in first["Layers"].as_array().expect("manifest Layers") {
            let name = layer.as_str().expect("layer name");
            let tar_bytes = decompress(member(name));
            let entries = tar::Archive::new(tar_bytes.as_slice())
                .entries()
                .map(|e| e.count())
                .unwrap_or(0);
            empty_layers.push(entries == 0);
            apply_layer(&mut files, &tar_bytes, name);
        }
        ImageArchive {
            config,
            files,
            empty_layers,
        }
    }

    /// `config.config[field]`, with `null` for a missing field.
    pub fn config_field(&self, field: &str) -> serde_json::Value {
        self.config["config"]
            .get(field)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// `created_by` and `empty_layer` of the history entries after the first `skip`; an
    /// entry whose layer holds no entry counts as empty (BuildKit ships an empty layer for a
    /// step that changed nothing, rbuild marks the entry `empty_layer`).
    pub fn history(&self, skip: usize) -> Vec<(String, bool)> {
        let mut layers = self.empty_layers.iter();
        self.config["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|e| {
                        let mut empty = e["empty_layer"].as_bool().unwrap_or(false);
                        if !empty {
                            empty = layers.next().copied().unwrap_or(false);
                        }
                        (e["created_by"].as_str().unwrap_or("").to_string(), empty)
                    })
                    .skip(skip)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The differences from `other` in the [`CONFIG_FIELDS`] (a missing field and `null`
    /// count as the same) and in the files, one line each: `config.FIELD: A != B`,
    /// `PATH: only in A: ENTRY`, `PATH: A != B`. Paths for which `skip(path, ours, theirs)`
    /// is true are left out of the file comparison.
    pub fn diff(
        &self,
        other: &ImageArchive,
        names: (&str, &str),
        skip: &SkipFn<'_>,
    ) -> Vec<String> {
        let (a, b) = names;
        let mut out = Vec::new();
        for field in CONFIG_FIELDS {
            let (x, y) = (self.config_field(field), other.config_field(field));
            if x != y {
                out.push(format!("config.{field}: {a} {x} != {b} {y}"));
            }
        }
        let mut paths: Vec<&String> = self.files.keys().chain(other.files.keys()).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            let (x, y) = (self.files.get(path), other.files.get(path));
            if skip(path, x, y) {
                continue;
            }
            match (x, y) {
                (Some(x), None) => out.push(format!("/{path}: only in {a}: {x}")),
                (None, Some(y)) => out.push(format!("/{path}: only in {b}: {y}")),
                (Some(x), Some(y)) if !same_file(x, y) => {
                    out.push(format!("/{path}: {a} {x} != {b} {y}"))
                }
                _ => {}
            }
        }
        out
    }

    /// The differences from `other` in the history: the instruction (first word of
    /// `created_by`) and `empty_layer` of each entry. The rest of `created_by` is left out: its
    /// spelling differs between builders and versions (BuildKit prints Go values).
    pub fn history_diff(&self, other: &ImageArchive, names: (&str, &str)) -> Vec<String> {
        let steps = |image: &ImageArchive| -> Vec<(String, bool)> {
            image
                .history(0)
                .into_iter()
                .map(|(by, empty)| {
                    (
                        by.split_whitespace().next().unwrap_or("").to_string(),
                        empty,
                    )
                })
                .collect()
        };
        let (x, y) = (steps(self), steps(other));
        if x == y {
            return Vec::new();
        }
        let show = |s: &[(String, bool)]| {
            s.iter()
                .map(|(i, empty)| {
                    if *empty {
                        format!("{i}(empty)")
                    } else {
                        i.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        vec![format!(
            "history: {} [{}] != {} [{}]",
            names.0,
            show(&x),
            names.1,
            show(&y)
        )]
    }

    /// Whether `path` is an empty file or a directory holding only directories and empty
    /// files (what a runtime leaves as mount points).
    pub fn is_empty_tree(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.files
            .range(path.to_string()..)
            .take_while(|(p, _)| *p == path || p.starts_with(&prefix))
            .all(|(_, e)| e.kind == FileKind::Dir || (e.kind == FileKind::File && e.size == 0))
    }
}

/// Equal but for the provenance of a parent directory and which of two hard-linked paths the
/// archive wrote first.
fn same_file(x: &FileEntry, y: &FileEntry) -> bool {
    x.kind == y.kind
        && x.mode == y.mode
        && x.uid == y.uid
        && x.gid == y.gid
        && x.size == y.size
        && x.sha256 == y.sha256
        && x.link == y.link
}

fn decompress(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip a layer");
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(bytes)
            .expect("zstd decoder")
            .read_to_end(&mut out)
            .expect("unzstd a layer");
    } else {
        out.extend_from_slice(bytes);
    }
    out
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn apply_layer(files: &mut BTreeMap<String, FileEntry>, tar_bytes: &[u8], layer: &str) {
    let mut archive = tar::Archive::new(tar_bytes);
    // Opaque directories hide the lower layers' contents, not this layer's own entries.
    let mut added: BTreeSet<String> = BTreeSet::new();
    for entry in archive.entries().expect("layer entries") {
        let mut entry = entry.unwrap_or_else(|e| panic!("layer {layer}: {e}"));
        let raw = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let path = normalize(&raw);
        if path.is_empty() {
            continue;
        }
        let (parent, base) = match path.rsplit_once('/') {
            Some((p, b)) => (p.to_string(), b.to_string()),
            None => (String::new(), path.clone()),
        };
        if base == ".wh..wh..opq" {
            let prefix = format!("{parent}/");
            files
                .retain(|p, _| !(parent.is_empty() || p.starts_with(&prefix)) || added.contains(p));
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let target = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            let prefix = format!("{target}/");
            files.retain(|p, _| p != &target && !p.starts_with(&prefix));
            continue;
        }
        let header = entry.header();
        let mode = header.mode().expect("mode") & 0o7777;
        let uid = header.uid().expect("uid");
        let gid = header.gid().expect("gid");
        let kind_of = header.entry_type();
        let mut file = FileEntry {
            kind: FileKind::File,
            mode,
            uid,
            gid,
            size: 0,
            sha256: None,
            link: None,
            hardlink_of: None,
            implicit: false,
            preview: None,
        };
        use tar::EntryType as T;
        match kind_of {
            T::Regular | T::Continuous => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).expect("read a layer file");
                file.size = bytes.len() as u64;
                file.sha256 = Some(crate::hex(&sha2::Sha256::digest(&bytes)));
                if bytes.len() <= 200 {
                    file.preview = String::from_utf8(bytes).ok();
                }
            }
            T::Directory => file.kind = FileKind::Dir,
            T::Symlink => {
                file.kind = FileKind::Symlink;
                file.link = entry
                    .link_name()
                    .expect("link name")
                    .map(|l| l.to_string_lossy().into_owned());
            }
            T::Link => {
                let target = normalize(
                    &entry
                        .link_name()
                        .expect("link name")
                        .expect("a hard link's target")
                        .to_string_lossy(),
                );
                let of = files
                    .get(&target)
                    .unwrap_or_else(|| panic!("layer {layer}: /{path} links to missing /{target}"));
                file = of.clone();
                file.hardlink_of = Some(target);
            }
            T::Char => file.kind = FileKind::Char,
            T::Block => file.kind = FileKind::Block,
            T::Fifo => file.kind = FileKind::Fifo,
            other => panic!("layer {layer}: /{path} has an unexpected type {other:?}"),
        }
        // A non-directory replaces what was there, including a directory's contents.
        if file.kind != FileKind::Dir {
            let prefix = format!("{path}/");
            files.retain(|p, _| !p.starts_with(&prefix));
        }
        let mut ancestor = parent.as_str();
        while !ancestor.is_empty() {
            files.entry(ancestor.to_string()).or_insert(FileEntry {
                kind: FileKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                sha256: None,
                link: None,
                hardlink_of: None,
                implicit: true,
                preview: None,
            });
            ancestor = ancestor.rsplit_once('/').map_or("", |(p, _)| p);
        }
        added.insert(path.clone());
        files.insert(path, file);
    }
}
