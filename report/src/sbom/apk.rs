//! apk's database: `lib/apk/db/installed`.

use std::collections::HashSet;

use super::{Ctx, Ecosystem, Package, SbomError, join_listed, purl_encode};

/// One package of the database.
#[derive(Default)]
struct Entry {
    line: usize,
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    license: Option<String>,
    origin: Option<String>,
    files: Vec<String>,
}

/// The packages of an `installed` file: paragraphs of `K:value` lines; `F:` names a
/// directory, the `R:` lines after it its files.
fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut current: Option<Entry> = None;
    let mut dir = String::new();
    for (at, line) in text.lines().enumerate() {
        if line.is_empty() {
            out.extend(current.take());
            dir.clear();
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let entry = current.get_or_insert_with(|| Entry {
            line: at + 1,
            ..Entry::default()
        });
        match key {
            "P" => entry.name = Some(value.to_string()),
            "V" => entry.version = Some(value.to_string()),
            "A" => entry.arch = Some(value.to_string()),
            "L" => entry.license = Some(value.to_string()),
            "o" => entry.origin = Some(value.to_string()),
            "F" => dir = value.to_string(),
            "R" => {
                let listed = if dir.is_empty() {
                    value.to_string()
                } else {
                    format!("{dir}/{value}")
                };
                // A path climbing out of the root is left out.
                if let Some(path) = join_listed("", &format!("/{listed}")) {
                    entry.files.push(format!("/{path}"));
                }
            }
            _ => {}
        }
    }
    out.extend(current);
    out
}

/// Reads the apk database, if the image has one.
pub(crate) fn read(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    let Some(db) = ctx.fs.resolve("lib/apk/db/installed", true) else {
        return Ok(());
    };
    let Some((bytes, db_layer)) = ctx.read(&db)? else {
        return Ok(());
    };
    let versions = ctx.versions(&db, |text| {
        parse(text)
            .into_iter()
            .filter_map(|e| Some((e.name?, e.version?)))
            .collect::<HashSet<_>>()
    });
    let namespace = ctx.distro.map_or("alpine", |d| d.id.as_str()).to_string();
    let distro = ctx.distro.map(|d| match &d.version_id {
        Some(v) => format!("{}-{v}", d.id),
        None => d.id.clone(),
    });
    for entry in parse(&String::from_utf8_lossy(bytes)) {
        let bad = |message: String| SbomError::Parse {
            path: db.clone(),
            layer: ctx.layer_name(db_layer),
            line: entry.line,
            message,
        };
        let Some(name) = entry.name.clone() else {
            return Err(bad("a package without a P: line".to_string()));
        };
        let Some(version) = entry.version.clone() else {
            return Err(bad(format!("package {name} has no V: line")));
        };
        if packages.len() >= ctx.options.max_packages {
            return Err(SbomError::TooManyPackages {
                path: db.clone(),
                layer: ctx.layer_name(db_layer),
                limit: ctx.options.max_packages,
            });
        }
        let layer = super::added_by(&versions, db_layer, &(name.clone(), version.clone()));
        let mut purl = format!(
            "pkg:apk/{}/{}@{}",
            purl_encode(&namespace, false),
            purl_encode(&name, false),
            purl_encode(&version, false)
        );
        let mut qualifiers = Vec::new();
        if let Some(arch) = &entry.arch {
            qualifiers.push(format!("arch={}", purl_encode(arch, false)));
        }
        if let Some(d) = &distro {
            qualifiers.push(format!("distro={}", purl_encode(d, false)));
        }
        if !qualifiers.is_empty() {
            purl.push('?');
            purl.push_str(&qualifiers.join("&"));
        }
        let mut files = entry.files;
        files.sort();
        files.dedup();
        packages.push(Package {
            ecosystem: Ecosystem::Apk,
            source: entry.origin.filter(|o| *o != name),
            name,
            version,
            architecture: entry.arch,
            purl,
            licenses: entry.license.into_iter().collect(),
            files,
            database: format!("/{db}"),
            layer: layer as usize,
        });
    }
    Ok(())
}
