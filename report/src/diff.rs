//! `--diff OLD NEW`: what grew between two images, by layer and by path.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::analyze::Analysis;
use crate::model::{PackageSize, SCHEMA_VERSION};
use crate::scan::Kind;

/// The difference between two images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diff {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The old image's name.
    pub old: String,
    /// The new image's name.
    pub new: String,
    /// Totals of both and their differences.
    pub totals: TotalsDiff,
    /// Bottom layers the two images share (same diff_id, or same digest).
    pub shared_layers: usize,
    /// Layers of OLD above the shared ones.
    pub removed_layers: Vec<LayerDelta>,
    /// Layers of NEW above the shared ones.
    pub added_layers: Vec<LayerDelta>,
    /// Final-image files that differ, largest size change first.
    pub paths: Vec<PathDelta>,
    /// Directories whose content grew or shrank the most, largest change first.
    pub dirs: Vec<PathDelta>,
    /// Packages added, removed, upgraded or resized, largest size change first (top N).
    #[serde(default)]
    pub packages: Vec<PackageDelta>,
}

/// How a package changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageStatus {
    /// Only in NEW.
    Added,
    /// Only in OLD.
    Removed,
    /// In both, with another version.
    Upgraded,
    /// In both, same version, other bytes in the final file system.
    Resized,
}

/// A package that one image has and the other has not, or has in another version or size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageDelta {
    /// `deb`, `apk`, `python`, `npm`, `go`.
    pub ecosystem: String,
    /// Its name.
    pub name: String,
    /// How it changed.
    pub status: PackageStatus,
    /// The version in OLD.
    pub old_version: Option<String>,
    /// The version in NEW.
    pub new_version: Option<String>,
    /// Its bytes in OLD.
    pub old_bytes: u64,
    /// Its bytes in NEW.
    pub new_bytes: u64,
    /// `new_bytes - old_bytes`.
    pub delta: i64,
}

/// Old and new values of the whole-image numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TotalsDiff {
    /// Compressed layer bytes (old, new).
    pub compressed_bytes: (u64, u64),
    /// Uncompressed layer bytes (old, new).
    pub uncompressed_bytes: (u64, u64),
    /// Final file system bytes (old, new).
    pub final_bytes: (u64, u64),
    /// Wasted bytes (old, new).
    pub wasted_bytes: (u64, u64),
    /// Regular files in the final file system (old, new).
    pub final_files: (u64, u64),
    /// Efficiency (old, new).
    pub efficiency: (f64, f64),
}

/// A layer only one side has.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerDelta {
    /// Its position in its image.
    pub index: usize,
    /// Its digest.
    pub digest: Option<String>,
    /// Its instruction.
    pub instruction: Option<String>,
    /// Compressed bytes.
    pub compressed_bytes: u64,
    /// Uncompressed bytes.
    pub uncompressed_bytes: u64,
}

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Only in NEW.
    Added,
    /// Only in OLD.
    Removed,
    /// In both, with other content.
    Changed,
}

/// A file or directory whose size changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathDelta {
    /// Absolute path.
    pub path: String,
    /// How it changed.
    pub status: Status,
    /// Bytes in OLD.
    pub old_bytes: u64,
    /// Bytes in NEW.
    pub new_bytes: u64,
    /// `new_bytes - old_bytes`.
    pub delta: i64,
    /// The NEW layer it comes from (files only).
    pub layer: Option<usize>,
}

fn layer_key(l: &crate::model::LayerReport) -> Option<&str> {
    l.diff_id.as_deref().or(l.digest.as_deref())
}

/// Compares two analysed images; lists at most `top` paths and directories.
pub fn diff(old: &Analysis, new: &Analysis, top: usize) -> Diff {
    let (o, n) = (&old.report, &new.report);
    let shared = o
        .layers
        .iter()
        .zip(&n.layers)
        .take_while(|(a, b)| layer_key(a).is_some() && layer_key(a) == layer_key(b))
        .count();
    let delta = |l: &crate::model::LayerReport| LayerDelta {
        index: l.index,
        digest: l.digest.clone(),
        instruction: l.instruction.clone(),
        compressed_bytes: l.compressed_bytes,
        uncompressed_bytes: l.uncompressed_bytes,
    };
    let mut paths = Vec::new();
    let mut dirs: HashMap<String, (u64, u64)> = HashMap::new();
    fn files(a: &Analysis) -> BTreeMap<&str, (u64, Option<[u8; 32]>, usize)> {
        a.files
            .iter()
            .filter(|(_, n)| n.kind == Kind::File)
            .map(|(p, n)| (&**p, (n.size, n.hash, n.layer as usize)))
            .collect()
    }
    let (of, nf) = (files(old), files(new));
    let mut add_dirs = |path: &str, old_bytes: u64, new_bytes: u64| {
        for (at, _) in path.match_indices('/') {
            let d = dirs.entry(path[..at].to_string()).or_default();
            d.0 += old_bytes;
            d.1 += new_bytes;
        }
    };
    for (path, &(size, hash, _)) in &of {
        match nf.get(path) {
            None => {
                paths.push(PathDelta {
                    path: format!("/{path}"),
                    status: Status::Removed,
                    old_bytes: size,
                    new_bytes: 0,
                    delta: -(size as i64),
                    layer: None,
                });
                add_dirs(path, size, 0);
            }
            Some(&(new_size, new_hash, layer)) => {
                if new_size != size || new_hash != hash {
                    paths.push(PathDelta {
                        path: format!("/{path}"),
                        status: Status::Changed,
                        old_bytes: size,
                        new_bytes: new_size,
                        delta: new_size as i64 - size as i64,
                        layer: Some(layer),
                    });
                }
                add_dirs(path, size, new_size);
            }
        }
    }
    for (path, &(size, _, layer)) in &nf {
        if !of.contains_key(path) {
            paths.push(PathDelta {
                path: format!("/{path}"),
                status: Status::Added,
                old_bytes: 0,
                new_bytes: size,
                delta: size as i64,
                layer: Some(layer),
            });
            add_dirs(path, 0, size);
        }
    }
    paths.sort_by(|a, b| {
        b.delta
            .unsigned_abs()
            .cmp(&a.delta.unsigned_abs())
            .then_with(|| a.path.cmp(&b.path))
    });
    paths.truncate(top);
    let mut dirs: Vec<PathDelta> = dirs
        .into_iter()
        .filter(|(_, (a, b))| a != b)
        .map(|(path, (a, b))| PathDelta {
            path: format!("/{path}"),
            status: if a == 0 {
                Status::Added
            } else if b == 0 {
                Status::Removed
            } else {
                Status::Changed
            },
            old_bytes: a,
            new_bytes: b,
            delta: b as i64 - a as i64,
            layer: None,
        })
        .collect();
    dirs.sort_by(|a, b| {
        b.delta
            .unsigned_abs()
            .cmp(&a.delta.unsigned_abs())
            .then_with(|| a.path.cmp(&b.path))
    });
    dirs.truncate(top);
    let (ot, nt) = (&o.totals, &n.totals);
    let packages = package_deltas(&old.packages, &new.packages, top);
    Diff {
        schema: SCHEMA_VERSION,
        old: o.image.name.clone(),
        new: n.image.name.clone(),
        totals: TotalsDiff {
            compressed_bytes: (ot.compressed_bytes, nt.compressed_bytes),
            uncompressed_bytes: (ot.uncompressed_bytes, nt.uncompressed_bytes),
            final_bytes: (ot.final_bytes, nt.final_bytes),
            wasted_bytes: (ot.wasted_bytes, nt.wasted_bytes),
            final_files: (ot.final_files, nt.final_files),
            efficiency: (ot.efficiency, nt.efficiency),
        },
        shared_layers: shared,
        removed_layers: o.layers[shared..].iter().map(delta).collect(),
        added_layers: n.layers[shared..].iter().map(delta).collect(),
        paths,
        dirs,
        packages,
    }
}

/// The packages that differ, keyed by ecosystem, name and architecture.
fn package_deltas(old: &[PackageSize], new: &[PackageSize], top: usize) -> Vec<PackageDelta> {
    type Key<'a> = (&'a str, &'a str, Option<&'a str>);
    fn by_key(sizes: &[PackageSize]) -> BTreeMap<Key<'_>, &PackageSize> {
        sizes
            .iter()
            .map(|p| ((&*p.ecosystem, &*p.name, p.architecture.as_deref()), p))
            .collect()
    }
    let (o, n) = (by_key(old), by_key(new));
    let keys: std::collections::BTreeSet<&Key<'_>> = o.keys().chain(n.keys()).collect();
    let mut out: Vec<PackageDelta> = Vec::new();
    for key in keys {
        let (a, b) = (o.get(key).copied(), n.get(key).copied());
        let status = match (a, b) {
            (None, Some(_)) => PackageStatus::Added,
            (Some(_), None) => PackageStatus::Removed,
            (Some(a), Some(b)) if a.version != b.version => PackageStatus::Upgraded,
            (Some(a), Some(b)) if a.bytes != b.bytes => PackageStatus::Resized,
            _ => continue,
        };
        let (old_bytes, new_bytes) = (a.map_or(0, |p| p.bytes), b.map_or(0, |p| p.bytes));
        out.push(PackageDelta {
            ecosystem: key.0.to_string(),
            name: key.1.to_string(),
            status,
            old_version: a.map(|p| p.version.clone()),
            new_version: b.map(|p| p.version.clone()),
            old_bytes,
            new_bytes,
            delta: new_bytes as i64 - old_bytes as i64,
        });
    }
    out.sort_by(|a, b| {
        b.delta
            .unsigned_abs()
            .cmp(&a.delta.unsigned_abs())
            .then_with(|| a.name.cmp(&b.name))
    });
    out.truncate(top);
    out
}
