//! dpkg's database: `status` and `status.d/*`, the `.list` files, DEP-5 copyright files.

use std::collections::HashSet;

use super::{Ctx, Ecosystem, Package, SbomError, distinct, field, join_listed, paragraphs};

/// The status of an installed package.
const INSTALLED: &str = "install ok installed";

/// The most `License:` values kept of one copyright file.
const MAX_LICENSES: usize = 32;

/// An installed package as a status paragraph gives it.
struct Entry {
    name: String,
    version: String,
    arch: Option<String>,
    source: Option<String>,
}

/// The installed packages of one status file (or status.d file).
fn parse(ctx: &Ctx<'_>, real: &str, text: &str, layer: u32) -> Result<Vec<Entry>, SbomError> {
    let mut out = Vec::new();
    for (line, fields) in paragraphs(text) {
        let bad = |message: &str| SbomError::Parse {
            path: real.to_string(),
            layer: ctx.layer_name(layer),
            line,
            message: message.to_string(),
        };
        let Some(name) = field(&fields, "Package") else {
            return Err(bad("a paragraph without a Package field"));
        };
        // distroless status.d files carry no Status: everything they list is installed.
        if let Some(status) = field(&fields, "Status")
            && status.split_whitespace().collect::<Vec<_>>().join(" ") != INSTALLED
        {
            continue;
        }
        let Some(version) = field(&fields, "Version") else {
            return Err(bad(&format!("package {name} has no Version")));
        };
        if name.is_empty() || name.contains(['/', '\n']) {
            return Err(bad(&format!("invalid package name {name:?}")));
        }
        let source = field(&fields, "Source")
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| *s != name)
            .map(str::to_string);
        out.push(Entry {
            name: name.to_string(),
            version: version.to_string(),
            arch: field(&fields, "Architecture").map(str::to_string),
            source,
        });
    }
    Ok(out)
}

/// Reads the dpkg database, if the image has one.
pub(crate) fn read(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    let Some(admin) = ctx.fs.resolve("var/lib/dpkg", true) else {
        return Ok(());
    };
    let mut sources: Vec<(String, u32, Vec<Entry>)> = Vec::new();
    let status = format!("{admin}/status");
    if let Some((bytes, layer)) = ctx.read(&status)? {
        let entries = parse(ctx, &status, &String::from_utf8_lossy(bytes), layer)?;
        sources.push((status, layer, entries));
    }
    let status_d = format!("{admin}/status.d");
    for (path, node) in ctx.fs.under(&status_d) {
        if node.kind != crate::scan::Kind::File || path[status_d.len() + 1..].contains('/') {
            continue;
        }
        // Beside each package's paragraph, distroless keeps NAME.md5sums.
        if path.ends_with(".md5sums") {
            continue;
        }
        if let Some((bytes, layer)) = ctx.read(path)? {
            let entries = parse(ctx, path, &String::from_utf8_lossy(bytes), layer)?;
            sources.push((path.to_string(), layer, entries));
        }
    }
    let namespace = ctx.distro.map_or("debian", |d| d.id.as_str()).to_string();
    let distro_qualifier = ctx.distro.map(|d| match &d.version_id {
        Some(v) => format!("{}-{v}", d.id),
        None => d.id.clone(),
    });
    for (db, db_layer, entries) in sources {
        let versions = ctx.versions(&db, installed_keys);
        for entry in entries {
            if packages.len() >= ctx.options.max_packages {
                return Err(SbomError::TooManyPackages {
                    path: db,
                    layer: ctx.layer_name(db_layer),
                    limit: ctx.options.max_packages,
                });
            }
            let key = (
                entry.name.clone(),
                entry.arch.clone(),
                entry.version.clone(),
            );
            let layer = super::added_by(&versions, db_layer, &key);
            let files = files(ctx, &admin, &entry)?;
            let licenses = licenses(ctx, &entry.name)?;
            let mut purl = format!(
                "pkg:deb/{}/{}@{}",
                super::purl_encode(&namespace, false),
                super::purl_encode(&entry.name, false),
                super::purl_encode(&entry.version, false)
            );
            let mut qualifiers = Vec::new();
            if let Some(arch) = &entry.arch {
                qualifiers.push(format!("arch={}", super::purl_encode(arch, false)));
            }
            if let Some(d) = &distro_qualifier {
                qualifiers.push(format!("distro={}", super::purl_encode(d, false)));
            }
            if !qualifiers.is_empty() {
                purl.push('?');
                purl.push_str(&qualifiers.join("&"));
            }
            packages.push(Package {
                ecosystem: Ecosystem::Deb,
                name: entry.name,
                version: entry.version,
                architecture: entry.arch,
                source: entry.source,
                purl,
                licenses,
                files,
                database: format!("/{db}"),
                layer: layer as usize,
            });
        }
    }
    Ok(())
}

/// A package as (name, architecture, version).
type Key = (String, Option<String>, String);

/// The packages a version of a status file lists as installed.
fn installed_keys(text: &str) -> HashSet<Key> {
    paragraphs(text)
        .into_iter()
        .filter(|(_, fields)| {
            field(fields, "Status")
                .is_none_or(|s| s.split_whitespace().collect::<Vec<_>>().join(" ") == INSTALLED)
        })
        .filter_map(|(_, fields)| {
            Some((
                field(&fields, "Package")?.to_string(),
                field(&fields, "Architecture").map(str::to_string),
                field(&fields, "Version")?.to_string(),
            ))
        })
        .collect()
}

/// The files a package owns: `info/NAME:ARCH.list`, else `info/NAME.list`. Paths that climb
/// out of the root (`..`) are left out with a warning.
fn files(ctx: &Ctx<'_>, admin: &str, entry: &Entry) -> Result<Vec<String>, SbomError> {
    let mut candidates = Vec::new();
    if let Some(arch) = &entry.arch {
        candidates.push(format!("{admin}/info/{}:{arch}.list", entry.name));
    }
    candidates.push(format!("{admin}/info/{}.list", entry.name));
    for list in candidates {
        let Some((bytes, layer)) = ctx.read(&list)? else {
            continue;
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (at, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
            if line.is_empty() || line == "/." {
                continue;
            }
            match join_listed("", line) {
                Some(path) => {
                    // Directories are shared between packages: only what they hold counts.
                    let dir = ctx
                        .fs
                        .get(&path)
                        .is_some_and(|(_, n)| n.kind == crate::scan::Kind::Dir);
                    if !dir && seen.insert(path.clone()) {
                        out.push(format!("/{path}"));
                    }
                }
                None => tracing::warn!(
                    "/{list} (written by {}), line {}: {line:?} is outside the image: left out",
                    ctx.layer_name(layer),
                    at + 1
                ),
            }
        }
        out.sort();
        return Ok(out);
    }
    Ok(Vec::new())
}

/// The `License:` values of a machine-readable (DEP-5) copyright file.
fn licenses(ctx: &Ctx<'_>, name: &str) -> Result<Vec<String>, SbomError> {
    let Some((real, _)) = ctx.fs.get(&format!("usr/share/doc/{name}/copyright")) else {
        return Ok(Vec::new());
    };
    let Some((bytes, _)) = ctx.read(&real)? else {
        return Ok(Vec::new());
    };
    Ok(dep5_licenses(&String::from_utf8_lossy(bytes)))
}

/// The `License:` values (their first line) of a DEP-5 copyright file; none when the file
/// does not declare the format.
pub(crate) fn dep5_licenses(text: &str) -> Vec<String> {
    let machine_readable = text
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("Format:") && l.contains("copyright-format"));
    if !machine_readable {
        return Vec::new();
    }
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("License:") {
            let value = value.trim();
            if !value.is_empty() && out.len() < MAX_LICENSES {
                out.push(value.to_string());
            }
        }
    }
    distinct(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_license_fields() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: jq\n\nFiles: *\nCopyright: x\nLicense: MIT\n\n\
                    Files: debian/*\nLicense: GPL-2+\n This program is free software\n\n\
                    License: MIT\n text\n";
        assert_eq!(dep5_licenses(text), ["GPL-2+", "MIT"]);
        assert!(dep5_licenses("This is jq, written by...\nLicense: MIT\n").is_empty());
    }
}
