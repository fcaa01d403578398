//! Language packages: Python distributions (`*.dist-info`, `*.egg-info`) and npm packages
//! (`node_modules/**/package.json`).

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

fn check_count(
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
        Captured::Bytes(b) => Ok(b),
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
