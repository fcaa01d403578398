//! Java archives (`.jar`, `.war`, `.ear`, Jenkins' `.jpi` and `.hpi`): the Maven artifacts
//! their `META-INF/maven/GROUP/ARTIFACT/pom.properties` files name (a shaded archive holds
//! several), else what `META-INF/MANIFEST.MF` says, else what the file name says
//! (`name-1.2.3.jar`). The archives inside one (`WEB-INF/lib/*.jar` of a war, `BOOT-INF/lib/`
//! of a Spring Boot jar, `lib/` of an ear) are read too, one level deep.
//!
//! An archive is read while its layer streams (up to [`MAX_ARCHIVE`] bytes) and only the
//! artifacts found are kept. The archive is untrusted: the entries of its central directory,
//! the bytes decompressed from each entry and from all nested archives are bounded; an
//! archive past a bound is skipped with a warning naming it, never read in full.

use std::io::{self, Cursor, Read};

use super::lang::check_count;
use super::{Ctx, Ecosystem, Package, SbomError, purl_encode};
use crate::sbom::fs::Captured;

/// The largest archive read; a larger one is skipped (logged at debug level).
pub(crate) const MAX_ARCHIVE: u64 = 128 << 20;
/// The most central directory entries of one archive (counted by their signature before the
/// directory is parsed, so nested archives stored uncompressed count too).
const MAX_ENTRIES: usize = 200_000;
/// The largest `pom.properties` or `MANIFEST.MF`, decompressed.
const MAX_METADATA: u64 = 1 << 20;
/// The largest nested archive, decompressed.
const MAX_NESTED: u64 = 64 << 20;
/// The most bytes decompressed from the nested archives of one archive.
const MAX_NESTED_TOTAL: u64 = 256 << 20;
/// The most nested archives read in one archive.
const MAX_NESTED_COUNT: usize = 4096;

/// Why an archive was skipped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JavaError {
    /// More central directory entries than [`MAX_ENTRIES`].
    #[error("{archive}: more than {limit} entries")]
    TooManyEntries {
        /// The archive (`/outer.war!/WEB-INF/lib/inner.jar` for a nested one).
        archive: String,
        /// The limit.
        limit: usize,
    },
    /// An entry decompresses to more bytes than allowed.
    #[error("{archive}!/{entry}: decompresses to more than {limit} bytes")]
    EntryTooLarge {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// The limit.
        limit: u64,
    },
    /// Not a zip archive, or a damaged one.
    #[error("{archive}: {source}")]
    Zip {
        /// The archive.
        archive: String,
        /// What the zip reader said.
        source: zip::result::ZipError,
    },
    /// An entry could not be decompressed.
    #[error("{archive}!/{entry}: {source}")]
    Entry {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// What went wrong.
        source: io::Error,
    },
}

/// One artifact found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Artifact {
    /// The nested archive it was found in (its entry name), `None` for the archive itself.
    pub nested: Option<String>,
    /// The Maven group, when known.
    pub group: Option<String>,
    /// The artifact name.
    pub name: String,
    /// Its version (empty when nothing tells it).
    pub version: String,
    /// `Bundle-License` of the manifest, as written.
    pub license: Option<String>,
}

impl Artifact {
    /// The bytes it takes, for the bound on what a layer keeps.
    pub(crate) fn size(&self) -> u64 {
        (self.nested.as_ref().map_or(0, String::len)
            + self.group.as_ref().map_or(0, String::len)
            + self.name.len()
            + self.version.len()
            + self.license.as_ref().map_or(0, String::len)) as u64
    }
}

/// Whether a path names a Java archive (by its extension, in any case).
pub(crate) fn is_archive(path: &str) -> bool {
    let Some((stem, ext)) = path.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && !stem.ends_with('/')
        && ["jar", "war", "ear", "jpi", "hpi"]
            .iter()
            .any(|e| ext.eq_ignore_ascii_case(e))
}

/// Reads a Java archive of `size` bytes as its layer streams: the artifacts it holds, or
/// `None` when it is larger than [`MAX_ARCHIVE`] or cannot be read (a warning names it).
pub(crate) fn capture(
    path: &str,
    size: u64,
    content: &mut dyn Read,
) -> io::Result<Option<Captured>> {
    if size > MAX_ARCHIVE {
        tracing::debug!(
            "/{path}: a Java archive of {size} bytes, more than {MAX_ARCHIVE}: not read"
        );
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(size as usize);
    content.take(MAX_ARCHIVE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ARCHIVE {
        tracing::debug!("/{path}: a Java archive of more than {MAX_ARCHIVE} bytes: not read");
        return Ok(None);
    }
    match artifacts(&format!("/{path}"), &bytes) {
        Ok(found) => Ok(Some(Captured::Java(found))),
        Err(e) => {
            tracing::warn!("Java archive skipped: {e}");
            Ok(None)
        }
    }
}

/// The artifacts of an archive and of the archives inside it (`label` names it in errors).
pub(crate) fn artifacts(label: &str, bytes: &[u8]) -> Result<Vec<Artifact>, JavaError> {
    let file_name = label.rsplit('/').next().unwrap_or(label);
    let mut zip = open(label, bytes)?;
    let mut out = own_artifacts(label, file_name, &mut zip)?;
    let nested: Vec<String> = zip
        .file_names()
        .filter(|n| !n.ends_with('/') && is_archive(n))
        .map(str::to_string)
        .collect();
    let mut total = 0u64;
    for (count, entry) in nested.into_iter().enumerate() {
        if count >= MAX_NESTED_COUNT || total >= MAX_NESTED_TOTAL {
            tracing::warn!(
                "{label}: more than {MAX_NESTED_COUNT} nested archives or {MAX_NESTED_TOTAL} bytes of them: the rest not read"
            );
            break;
        }
        let inner_label = format!("{label}!/{entry}");
        let inner = match read_entry(label, &mut zip, &entry, MAX_NESTED) {
            Ok(inner) => inner,
            Err(e) => {
                tracing::warn!("nested Java archive skipped: {e}");
                continue;
            }
        };
        total += inner.len() as u64;
        let inner_name = entry.rsplit('/').next().unwrap_or(&entry);
        let found = open(&inner_label, &inner)
            .and_then(|mut z| own_artifacts(&inner_label, inner_name, &mut z));
        match found {
            Ok(found) => out.extend(found.into_iter().map(|a| Artifact {
                nested: Some(entry.clone()),
                ..a
            })),
            Err(e) => tracing::warn!("nested Java archive skipped: {e}"),
        }
    }
    Ok(out)
}

type Zip<'b> = zip::ZipArchive<Cursor<&'b [u8]>>;

/// Opens an archive after bounding its entry count.
fn open<'b>(label: &str, bytes: &'b [u8]) -> Result<Zip<'b>, JavaError> {
    // Every central directory entry the reader parses starts with this signature: counting
    // them bounds what parsing the directory allocates, whatever its end record claims.
    let entries = memchr::memmem::find_iter(bytes, b"PK\x01\x02").count();
    if entries > MAX_ENTRIES {
        return Err(JavaError::TooManyEntries {
            archive: label.to_string(),
            limit: MAX_ENTRIES,
        });
    }
    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|source| JavaError::Zip {
        archive: label.to_string(),
        source,
    })
}

/// Decompresses one entry, at most `limit` bytes.
fn read_entry(
    label: &str,
    zip: &mut Zip<'_>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, JavaError> {
    let err = |source| JavaError::Entry {
        archive: label.to_string(),
        entry: name.to_string(),
        source,
    };
    let file = zip.by_name(name).map_err(|e| err(io::Error::other(e)))?;
    let mut out = Vec::with_capacity(file.size().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut out).map_err(err)?;
    if out.len() as u64 > limit {
        return Err(JavaError::EntryTooLarge {
            archive: label.to_string(),
            entry: name.to_string(),
            limit,
        });
    }
    Ok(out)
}

/// The artifacts one archive describes itself (its nested archives aside).
fn own_artifacts(
    label: &str,
    file_name: &str,
    zip: &mut Zip<'_>,
) -> Result<Vec<Artifact>, JavaError> {
    let mut poms: Vec<String> = Vec::new();
    let mut manifest = None;
    for name in zip.file_names() {
        let parts: Vec<&str> = name.split('/').collect();
        if let ["META-INF", "maven", group, artifact, "pom.properties"] = parts.as_slice()
            && !group.is_empty()
            && !artifact.is_empty()
        {
            poms.push(name.to_string());
        } else if name.eq_ignore_ascii_case("META-INF/MANIFEST.MF") {
            manifest = Some(name.to_string());
        }
    }
    poms.sort();
    let main = match &manifest {
        Some(name) => {
            let text = read_entry(label, zip, name, MAX_METADATA)?;
            manifest_main(&String::from_utf8_lossy(&text))
        }
        None => Vec::new(),
    };
    let get = |key: &str| {
        main.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let license = get("Bundle-License");
    let mut out = Vec::new();
    for pom in &poms {
        let text = read_entry(label, zip, pom, MAX_METADATA)?;
        let props = properties(&String::from_utf8_lossy(&text));
        let prop = |key: &str| {
            props
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let (Some(name), Some(version)) = (prop("artifactId"), prop("version")) else {
            continue;
        };
        out.push(Artifact {
            nested: None,
            group: prop("groupId"),
            name,
            version,
            // The manifest speaks for the archive: for a shaded one, not for what it bundles.
            license: if poms.len() == 1 {
                license.clone()
            } else {
                None
            },
        });
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let (stem_name, stem_version) = from_file_name(file_name);
    let symbolic =
        get("Bundle-SymbolicName").map(|s| s.split(';').next().unwrap_or("").trim().to_string());
    let name = get("Implementation-Title")
        .or(symbolic)
        .or_else(|| get("Specification-Title"))
        .filter(|n| !n.is_empty())
        .unwrap_or(stem_name);
    let version = get("Implementation-Version")
        .or_else(|| get("Bundle-Version"))
        .or_else(|| get("Specification-Version"))
        .unwrap_or(stem_version);
    if name.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Artifact {
        nested: None,
        group: get("Implementation-Vendor-Id"),
        name,
        version,
        license,
    }])
}

/// The main section of a manifest (up to the first empty line): `Name: value` pairs, a line
/// starting with a space continuing the value before it.
fn manifest_main(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(more) = line.strip_prefix(' ') {
            if let Some((_, value)) = out.last_mut() {
                value.push_str(more);
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    for (_, value) in &mut out {
        *value = value.trim().to_string();
    }
    out
}

/// `key=value` (or `key: value`) lines of a Java properties file; `#` and `!` start comments.
fn properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '!']))
        .filter_map(|l| {
            let at = l.find(['=', ':'])?;
            Some((l[..at].trim().to_string(), l[at + 1..].trim().to_string()))
        })
        .collect()
}

/// Name and version from an archive's file name: the version starts at the first `-`
/// followed by a digit (`commons-lang3-3.12.0.jar`: `commons-lang3`, `3.12.0`).
fn from_file_name(file_name: &str) -> (String, String) {
    let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s);
    let bytes = stem.as_bytes();
    match (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b'-' && bytes[i + 1].is_ascii_digit())
    {
        Some(i) => (stem[..i].to_string(), stem[i + 1..].to_string()),
        None => (stem.to_string(), String::new()),
    }
}

/// The Java artifacts of the final file system, each owning its archive.
pub(crate) fn read(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    for (path, node) in &ctx.fs.nodes {
        let Some(Captured::Java(found)) = node.content.as_deref() else {
            continue;
        };
        for artifact in found {
            check_count(ctx, packages, path, node.layer)?;
            let mut purl = String::from("pkg:maven/");
            if let Some(group) = &artifact.group {
                purl.push_str(&purl_encode(group, false));
                purl.push('/');
            }
            purl.push_str(&purl_encode(&artifact.name, false));
            if !artifact.version.is_empty() {
                purl.push('@');
                purl.push_str(&purl_encode(&artifact.version, false));
            }
            packages.push(Package {
                ecosystem: Ecosystem::Java,
                name: artifact.name.clone(),
                version: artifact.version.clone(),
                architecture: None,
                source: None,
                purl,
                licenses: artifact.license.iter().cloned().collect(),
                files: vec![format!("/{path}")],
                database: match &artifact.nested {
                    Some(inner) => format!("/{path}!/{inner}"),
                    None => format!("/{path}"),
                },
                layer: node.layer as usize,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_files_and_manifests() {
        assert!(is_archive("usr/share/java/a.JAR"));
        assert!(is_archive("x.hpi"));
        assert!(!is_archive("usr/share/java/.jar"));
        assert!(!is_archive("a.jar.sha1"));
        assert_eq!(
            from_file_name("commons-lang3-3.12.0.jar"),
            ("commons-lang3".into(), "3.12.0".into())
        );
        assert_eq!(from_file_name("app.war"), ("app".into(), String::new()));
        let main = manifest_main(
            "Manifest-Version: 1.0\r\nBundle-License: https://www.apache.org/licenses/LICE\r\n NSE-2.0.txt\r\n\r\nName: x\r\nA: b\r\n",
        );
        assert_eq!(
            main,
            [
                ("Manifest-Version".into(), "1.0".into()),
                (
                    "Bundle-License".into(),
                    "https://www.apache.org/licenses/LICENSE-2.0.txt".into()
                )
            ]
        );
        assert_eq!(
            properties("#Generated\nversion=3.12.0\ngroupId = org.apache.commons\n"),
            [
                ("version".into(), "3.12.0".into()),
                ("groupId".into(), "org.apache.commons".into())
            ]
        );
    }
}
