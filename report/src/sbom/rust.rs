//! Rust executables built with `cargo auditable`: the `.dep-v0` section (ELF, PE or Mach-O)
//! holds the crate graph as zlib-compressed JSON,
//! `{"packages":[{"name","version","source","kind","dependencies","root"}]}`; `kind` is
//! `runtime` when absent, and `dependencies` index the list. The crates built for build
//! scripts and procedural macros (`kind: build`) are not in the executable and are left out.
//!
//! The executable is read from the bytes its layer streamed (up to
//! [`MAX_EXECUTABLE`](super::fs::MAX_EXECUTABLE)); the JSON is decompressed up to
//! [`MAX_JSON`] bytes, and a graph whose indexes point outside it is rejected.

use std::io::Read;

use object::{Object, ObjectSection};
use serde::Deserialize;

use super::lang::check_count;
use super::{Ctx, Ecosystem, Package, SbomError, purl_encode};
use crate::sbom::fs::Captured;

/// The most bytes of JSON decompressed from one `.dep-v0` section.
const MAX_JSON: u64 = 8 << 20;

/// Why a `.dep-v0` section was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RustError {
    /// The zlib stream is damaged.
    #[error("/{path}: .dep-v0 section: {source}")]
    Inflate {
        /// The executable.
        path: String,
        /// What the decoder said.
        source: std::io::Error,
    },
    /// It decompresses to more than [`MAX_JSON`] bytes.
    #[error("/{path}: .dep-v0 section decompresses to more than {limit} bytes")]
    TooLarge {
        /// The executable.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// Not the JSON cargo-auditable writes.
    #[error("/{path}: .dep-v0 section: {source}")]
    Json {
        /// The executable.
        path: String,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A dependency index past the end of the package list.
    #[error(
        "/{path}: .dep-v0 section: package {package} depends on index {index}, past the {count} packages"
    )]
    Index {
        /// The executable.
        path: String,
        /// The package naming it.
        package: String,
        /// The index.
        index: usize,
        /// How many packages there are.
        count: usize,
    },
}

/// One crate built into an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crate {
    /// The crate's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it came from (`crates.io`, `git`, `local`, `registry`, ...).
    pub source: String,
    /// Whether it is the executable's own package.
    pub root: bool,
}

#[derive(Deserialize)]
struct Audit {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    source: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    dependencies: Vec<usize>,
    #[serde(default)]
    root: bool,
}

/// The crates of an executable's `.dep-v0` section; `Ok(None)` when the bytes are no object
/// file this reader knows or have no such section.
pub(crate) fn crates(path: &str, bytes: &[u8]) -> Result<Option<Vec<Crate>>, RustError> {
    let Ok(file) = object::File::parse(bytes) else {
        return Ok(None);
    };
    let Some(data) = file.section_by_name(".dep-v0").and_then(|s| s.data().ok()) else {
        return Ok(None);
    };
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|source| RustError::Inflate {
            path: path.to_string(),
            source,
        })?;
    if json.len() as u64 > MAX_JSON {
        return Err(RustError::TooLarge {
            path: path.to_string(),
            limit: MAX_JSON,
        });
    }
    let audit: Audit = serde_json::from_slice(&json).map_err(|source| RustError::Json {
        path: path.to_string(),
        source,
    })?;
    let count = audit.packages.len();
    for p in &audit.packages {
        if let Some(&index) = p.dependencies.iter().find(|&&i| i >= count) {
            return Err(RustError::Index {
                path: path.to_string(),
                package: p.name.clone(),
                index,
                count,
            });
        }
    }
    Ok(Some(
        audit
            .packages
            .into_iter()
            .filter(|p| p.kind.as_deref() != Some("build"))
            .map(|p| Crate {
                name: p.name,
                version: p.version,
                source: p.source,
                root: p.root,
            })
            .collect(),
    ))
}

/// The crates of the final file system's auditable executables, each owning its executable.
pub(crate) fn read(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    for (path, node) in &ctx.fs.nodes {
        let Some(Captured::Rust(crates)) = node.content.as_deref() else {
            continue;
        };
        // The executable's own package first: it owns the executable.
        let root_first = crates
            .iter()
            .filter(|c| c.root)
            .chain(crates.iter().filter(|c| !c.root));
        for c in root_first {
            check_count(ctx, packages, path, node.layer)?;
            packages.push(Package {
                ecosystem: Ecosystem::Cargo,
                name: c.name.clone(),
                version: c.version.clone(),
                architecture: None,
                source: (c.source != "crates.io").then(|| c.source.clone()),
                purl: format!(
                    "pkg:cargo/{}@{}",
                    purl_encode(&c.name, false),
                    purl_encode(&c.version, false)
                ),
                licenses: Vec::new(),
                files: vec![format!("/{path}")],
                database: format!("/{path}"),
                layer: node.layer as usize,
            });
        }
    }
    Ok(())
}
