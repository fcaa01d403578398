//! Language packages: Python distributions (`*.dist-info`, `*.egg-info`), npm packages
//! (`node_modules/**/package.json`, and the lockfiles of applications) and the modules Go
//! binaries are built from.

use super::fs::Captured;
use super::{Ctx, Ecosystem, Package, SbomError, field, join_listed, paragraphs, purl_encode};
use crate::scan::Kind;

/// The longest licence text taken as a licence name; longer `License` fields hold the whole
/// licence text, not its name.
const MAX_LICENSE_NAME: usize = 100;

/// The files of the final file system whose path ends in `suffix`, with their content.
fn metadata_files<'c>(ctx: &'c Ctx<'_>, suffix: &str) -> Vec<(&'c str, u32, &'c Captured)> {
    ctx.fs
        .nodes
        .iter()
        .filter(|(path, node)| node.kind == Kind::File && path.ends_with(suffix))
        .filter_map(|(path, node)| Some((&**path, node.layer, node.content.as_deref()?)))
        .collect()
}

pub(crate) fn check_count(
    ctx: &Ctx<'_>,
    packages: &[Package],
    path: &str,
    layer: u32,
) -> Result<(), SbomError> {
    if packages.len() >= ctx.options.max_packages {
        return Err(SbomError::TooManyPackages {
            path: path.to_string(),
            layer: ctx.layer_name(layer),
            limit: ctx.options.max_packages,
        });
    }
    Ok(())
}

fn bytes<'b>(
    ctx: &Ctx<'_>,
    path: &str,
    layer: u32,
    content: &'b Captured,
) -> Result<&'b [u8], SbomError> {
    match content {
        Captured::Bytes(b) | Captured::Go(b) => Ok(b),
        // Archives and executables are never at a database's path.
        Captured::Java(_) | Captured::Rust(_) => Ok(&[]),
        Captured::TooLarge(bytes) => Err(SbomError::TooLarge {
            path: path.to_string(),
            layer: ctx.layer_name(layer),
            bytes: *bytes,
            limit: ctx.options.max_database_bytes,
        }),
    }
}

/// A short licence name, or none for a licence text.
fn license_name(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()
        && value.len() <= MAX_LICENSE_NAME
        && !value.contains('\n')
        && !value.eq_ignore_ascii_case("unknown")
        && !value.eq_ignore_ascii_case("UNKNOWN"))
    .then(|| value.to_string())
}

/// Python distributions: `*.dist-info/METADATA` (files from `RECORD` beside it) and
/// `*.egg-info/PKG-INFO`.
pub(crate) fn python(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    let mut found = metadata_files(ctx, ".dist-info/METADATA");
    found.extend(metadata_files(ctx, ".egg-info/PKG-INFO"));
    for (path, layer, content) in found {
        let text = String::from_utf8_lossy(bytes(ctx, path, layer, content)?).into_owned();
        // The headers end at the first empty line; the description follows.
        let Some((line, fields)) = paragraphs(&text).into_iter().next() else {
            continue;
        };
        let bad = |message: String| SbomError::Parse {
            path: path.to_string(),
            layer: ctx.layer_name(layer),
            line,
            message,
        };
        let Some(name) = field(&fields, "Name") else {
            return Err(bad("no Name field".to_string()));
        };
        let Some(version) = field(&fields, "Version") else {
            return Err(bad(format!("distribution {name} has no Version field")));
        };
        check_count(ctx, packages, path, layer)?;
        let license = field(&fields, "License-Expression")
            .and_then(license_name)
            .or_else(|| field(&fields, "License").and_then(license_name));
        let dir = path.rsplit_once('/').map_or("", |p| p.0);
        let site = dir.rsplit_once('/').map_or("", |p| p.0);
        let mut files = Vec::new();
        if let Some(dist_info) = dir.strip_suffix(".dist-info") {
            let record = format!("{dist_info}.dist-info/RECORD");
            if let Some(node) = ctx.fs.nodes.get(record.as_str())
                && node.kind == Kind::File
                && let Some(content) = node.content.as_deref()
            {
                let text =
                    String::from_utf8_lossy(bytes(ctx, &record, node.layer, content)?).into_owned();
                for line in text.lines() {
                    let listed = match line.strip_prefix('"') {
                        Some(rest) => rest.split('"').next().unwrap_or(""),
                        None => line.split(',').next().unwrap_or(""),
                    };
                    if let Some(file) = join_listed(site, listed) {
                        files.push(format!("/{file}"));
                    }
                }
            }
        }
        files.sort();
        files.dedup();
        // The name as the index knows it: lower case, runs of `-_.` as one `-`.
        let mut normalized = String::new();
        for c in name.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !normalized.ends_with('-') {
                    normalized.push('-');
                }
            } else {
                normalized.extend(c.to_lowercase());
            }
        }
        packages.push(Package {
            ecosystem: Ecosystem::Python,
            purl: format!(
                "pkg:pypi/{}@{}",
                purl_encode(&normalized, false),
                purl_encode(version, false)
            ),
            name: name.to_string(),
            version: version.to_string(),
            architecture: None,
            source: None,
            licenses: license.into_iter().collect(),
            files,
            database: format!("/{path}"),
            layer: layer as usize,
        });
    }
    Ok(())
}

/// npm packages: `node_modules/NAME/package.json`, `node_modules/@SCOPE/NAME/package.json`;
/// a package owns the files of its directory but those of its own `node_modules`.
pub(crate) fn npm(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    for (path, layer, content) in metadata_files(ctx, "/package.json") {
        let dir = path.rsplit_once('/').map_or("", |p| p.0);
        let parent = dir.rsplit_once('/').map_or("", |p| p.0);
        let scoped = parent.rsplit_once('/').is_some_and(|(up, scope)| {
            scope.starts_with('@') && (up == "node_modules" || up.ends_with("/node_modules"))
        });
        if !(parent == "node_modules" || parent.ends_with("/node_modules") || scoped) {
            continue;
        }
        let raw = bytes(ctx, path, layer, content)?;
        let value: serde_json::Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(e) => {
                return Err(SbomError::Parse {
                    path: path.to_string(),
                    layer: ctx.layer_name(layer),
                    line: e.line(),
                    message: format!("invalid JSON: {e}"),
                });
            }
        };
        // A package.json without a name and version (a test fixture, a nested
        // configuration) is not a package.
        let (Some(name), Some(version)) = (value["name"].as_str(), value["version"].as_str())
        else {
            continue;
        };
        check_count(ctx, packages, path, layer)?;
        let mut licenses = Vec::new();
        match &value["license"] {
            serde_json::Value::String(s) => licenses.extend(license_name(s)),
            serde_json::Value::Object(o) => licenses.extend(
                o.get("type")
                    .and_then(|t| t.as_str())
                    .and_then(license_name),
            ),
            _ => {}
        }
        if let Some(list) = value["licenses"].as_array() {
            for item in list {
                let text = item.as_str().or_else(|| item["type"].as_str());
                licenses.extend(text.and_then(license_name));
            }
        }
        let nested = format!("{dir}/node_modules/");
        let files = ctx
            .fs
            .under(dir)
            .into_iter()
            .filter(|(p, n)| n.kind == Kind::File && !p.starts_with(&nested))
            .map(|(p, _)| format!("/{p}"))
            .collect();
        let purl_name = match name.split_once('/') {
            Some((scope, rest)) => {
                format!("{}/{}", purl_encode(scope, false), purl_encode(rest, false))
            }
            None => purl_encode(name, false),
        };
        packages.push(Package {
            ecosystem: Ecosystem::Npm,
            purl: format!("pkg:npm/{purl_name}@{}", purl_encode(version, false)),
            name: name.to_string(),
            version: version.to_string(),
            architecture: None,
            source: None,
            licenses: super::distinct(licenses),
            files,
            database: format!("/{path}"),
            layer: layer as usize,
        });
    }
    Ok(())
}

/// The packages an npm lockfile (`package-lock.json`, `npm-shrinkwrap.json`) of an
/// application names that are not installed beside it (those are read from their own
/// `package.json`): lockfile versions 2 and 3 (`packages`, keyed by install path) and 1
/// (nested `dependencies`). Development dependencies and workspace links are left out. Such
/// a package owns no file of the image; its database is the lockfile.
pub(crate) fn npm_lock(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    let mut found = metadata_files(ctx, "/package-lock.json");
    found.extend(metadata_files(ctx, "/npm-shrinkwrap.json"));
    for name in ["package-lock.json", "npm-shrinkwrap.json"] {
        if let Some(node) = ctx.fs.nodes.get(name)
            && node.kind == Kind::File
            && let Some(content) = node.content.as_deref()
        {
            found.push((name, node.layer, content));
        }
    }
    for (path, layer, content) in found {
        if path.starts_with("node_modules/") || path.contains("/node_modules/") {
            continue;
        }
        let raw = bytes(ctx, path, layer, content)?;
        let value: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| SbomError::Parse {
                path: path.to_string(),
                layer: ctx.layer_name(layer),
                line: e.line(),
                message: format!("invalid JSON: {e}"),
            })?;
        let dir = path.rsplit_once('/').map_or("", |p| p.0);
        // (install path relative to the lockfile's directory, name, version, licence)
        let mut entries: Vec<(String, String, String, Option<String>)> = Vec::new();
        if let Some(map) = value["packages"].as_object() {
            for (key, p) in map {
                let Some(at) = key.rfind("node_modules/") else {
                    continue; // the root project, or a workspace folder
                };
                if p["dev"] == true || p["link"] == true {
                    continue;
                }
                let name = p["name"]
                    .as_str()
                    .unwrap_or(&key[at + "node_modules/".len()..]);
                let Some(version) = p["version"].as_str() else {
                    continue;
                };
                let license = p["license"].as_str().and_then(license_name);
                entries.push((key.clone(), name.into(), version.into(), license));
            }
        } else if value["dependencies"].is_object() {
            // Version 1: `dependencies` nested as node_modules directories are.
            let mut pending = vec![(String::new(), &value["dependencies"], 0usize)];
            while let Some((base, deps, depth)) = pending.pop() {
                let Some(map) = deps.as_object() else {
                    continue;
                };
                for (name, d) in map {
                    let key = format!("{base}node_modules/{name}");
                    if d["dev"] == true {
                        continue;
                    }
                    if let Some(version) = d["version"].as_str() {
                        entries.push((key.clone(), name.clone(), version.into(), None));
                    }
                    // A nesting as deep as a path may be is the most there can be.
                    if depth < 64 && d["dependencies"].is_object() {
                        pending.push((format!("{key}/"), &d["dependencies"], depth + 1));
                    }
                }
            }
        }
        entries.sort();
        let mut seen = std::collections::HashSet::new();
        for (key, name, version, license) in entries {
            let installed = join_listed(dir, &format!("{key}/package.json"))
                .and_then(|p| ctx.fs.get(&p))
                .is_some_and(|(_, n)| n.kind == Kind::File);
            if installed || !seen.insert((name.clone(), version.clone())) {
                continue;
            }
            check_count(ctx, packages, path, layer)?;
            let purl_name = match name.split_once('/') {
                Some((scope, rest)) => {
                    format!("{}/{}", purl_encode(scope, false), purl_encode(rest, false))
                }
                None => purl_encode(&name, false),
            };
            packages.push(Package {
                ecosystem: Ecosystem::Npm,
                purl: format!("pkg:npm/{purl_name}@{}", purl_encode(&version, false)),
                name,
                version,
                architecture: None,
                source: None,
                licenses: license.into_iter().collect(),
                files: Vec::new(),
                database: format!("/{path}"),
                layer: layer as usize,
            });
        }
    }
    Ok(())
}

/// A LEB128 unsigned varint, as Go's `encoding/binary` writes it.
fn uvarint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in rest.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Some(value);
        }
    }
    None
}

/// A varint-prefixed string.
fn go_string<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
    let len = usize::try_from(uvarint(rest)?).ok()?;
    let (text, after) = (rest.get(..len)?, rest.get(len..)?);
    *rest = after;
    Some(text)
}

/// The Go version and the module lines of a binary's build information (Go 1.18 and later,
/// which write the strings inline; older binaries point at them in memory and are not read).
pub(crate) fn go_buildinfo(blob: &[u8]) -> Option<(String, String)> {
    let header = blob.get(..32)?;
    if !header.starts_with(super::fs::GO_MAGIC) || header[15] & 2 == 0 {
        return None;
    }
    let mut rest = &blob[32..];
    let version = String::from_utf8_lossy(go_string(&mut rest)?).into_owned();
    let mut modinfo = go_string(&mut rest)?;
    // The module lines sit between two 16-byte sentinels.
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    Some((version, String::from_utf8_lossy(modinfo).into_owned()))
}

/// Go binaries: the main module and the dependencies their build information lists (a
/// `=>` line replaces the module before it).
pub(crate) fn go(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    for (path, node) in &ctx.fs.nodes {
        let Some(Captured::Go(blob)) = node.content.as_deref() else {
            continue;
        };
        let Some((go_version, modinfo)) = go_buildinfo(blob) else {
            tracing::debug!("/{path}: Go build information of a Go before 1.18, not read");
            continue;
        };
        let mut modules: Vec<(String, String)> = Vec::new();
        for line in modinfo.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["mod" | "dep", module, version, ..] => {
                    modules.push((module.to_string(), version.to_string()));
                }
                ["=>", module, version, ..] => {
                    if let Some(last) = modules.last_mut() {
                        *last = (module.to_string(), version.to_string());
                    }
                }
                _ => {}
            }
        }
        for (module, version) in modules {
            check_count(ctx, packages, path, node.layer)?;
            let purl = if version == "(devel)" || version.is_empty() {
                format!("pkg:golang/{}", purl_encode(&module, true))
            } else {
                format!(
                    "pkg:golang/{}@{}",
                    purl_encode(&module, true),
                    purl_encode(&version, false)
                )
            };
            packages.push(Package {
                ecosystem: Ecosystem::Go,
                name: module,
                version,
                architecture: None,
                source: Some(go_version.clone()),
                purl,
                licenses: Vec::new(),
                files: vec![format!("/{path}")],
                database: format!("/{path}"),
                layer: node.layer as usize,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u8) -> Vec<u8> {
        let mut out = super::super::fs::GO_MAGIC.to_vec();
        out.extend_from_slice(&[8, flags]);
        out.resize(32, 0);
        out
    }

    #[test]
    fn go_build_information() {
        let mut blob = header(2);
        blob.push(8);
        blob.extend_from_slice(b"go1.22.0");
        let modinfo = format!("{}mod\tm\tv1.0.0\t\n{}", "s".repeat(16), "e".repeat(16));
        // 300 bytes need two varint bytes.
        let modinfo = format!("{modinfo}{}", " ".repeat(300 - modinfo.len()));
        blob.extend_from_slice(&[0xac, 0x02]);
        blob.extend_from_slice(modinfo.as_bytes());
        let (version, lines) = go_buildinfo(&blob).unwrap();
        assert_eq!(version, "go1.22.0");
        assert!(lines.contains("mod\tm\tv1.0.0"), "{lines:?}");
        // Before Go 1.18 the header points at the strings: not read.
        assert_eq!(go_buildinfo(&header(0)), None);
        // A length past the end.
        let mut cut = header(2);
        cut.extend_from_slice(&[0x7f, b'g']);
        assert_eq!(go_buildinfo(&cut), None);
    }
}
