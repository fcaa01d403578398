//! `rbuild images`: the images in the store.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::cli::GlobalArgs;

/// `rbuild images [--format table|json] [-q]`
///
/// IMAGE ID is the digest of the image's manifest (or index), the id every command prints
/// and takes. PLATFORM is the image's, or every platform of an index. SIZE is what the store
/// holds for the image: its configs and its layers as stored (a layer two platforms share,
/// once).
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format: an aligned table, or JSON with full values.
    #[arg(long, value_enum, default_value_t = ImagesFormat::Table)]
    pub format: ImagesFormat,
    /// Only print image ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagesFormat {
    /// NAME, TAG, IMAGE ID, CREATED, PLATFORM, SIZE.
    Table,
    /// One JSON array with full names, digests, RFC 3339 times and sizes in bytes.
    Json,
}

struct Row {
    name: String,
    repository: String,
    tag: String,
    /// The image id: the digest of its manifest (or index).
    id: String,
    created: Option<jiff::Timestamp>,
    platforms: Vec<String>,
    size: u64,
}

pub fn run(global: &GlobalArgs, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let mut rows = Vec::new();
    for image in store.list()? {
        let (_, manifest) = match store.image_manifest(&image.descriptor) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!("skipping {}: {err}", image.name);
                continue;
            }
        };
        let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
        let created = store
            .read_config(&config_digest)
            .ok()
            .and_then(|c| c.created().clone())
            .and_then(|c| c.parse::<jiff::Timestamp>().ok());
        // The platforms, and the size of what the store holds for them: configs and
        // (compressed) layers, each blob once.
        let images = match rbuild_cache::is_index(image.descriptor.media_type()) {
            true => store
                .read_index_blob(&rbuild_cache::descriptor_digest(&image.descriptor)?)?
                .manifests()
                .iter()
                .filter(|d| !rbuild_cache::is_attestation_manifest(d))
                .filter_map(|d| {
                    let (_, m) = store.image_manifest(d).ok()?;
                    Some((rbuild_cache::descriptor_platform(d), m))
                })
                .collect(),
            false => vec![(None, manifest.clone())],
        };
        let mut blobs = std::collections::HashMap::new();
        let mut platforms = Vec::new();
        for (platform, m) in &images {
            let platform = match platform {
                Some(p) => Some(p.to_string()),
                None => store
                    .read_config(&rbuild_cache::descriptor_digest(m.config())?)
                    .ok()
                    .map(|c| {
                        rbuild_compiler::plan::Platform::new(
                            &c.os().to_string(),
                            &c.architecture().to_string(),
                            c.variant().as_deref(),
                        )
                        .to_string()
                    }),
            };
            platforms.extend(platform);
            for d in std::iter::once(m.config()).chain(m.layers()) {
                blobs.insert(d.digest().to_string(), d.size());
            }
        }
        let size = blobs.values().sum::<u64>();
        let (repository, tag) = crate::names::split_repo_tag(&image.name);
        rows.push(Row {
            repository: repository.to_string(),
            tag: tag.to_string(),
            name: image.name.clone(),
            id: image.descriptor.digest().to_string(),
            created,
            platforms,
            size,
        });
    }
    rows.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            if seen.insert(&row.id) {
                crate::outln!("{}", &row.id[7..19]);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ImagesFormat::Json => {
            let out: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "repository": r.repository,
                        "tag": r.tag,
                        "id": r.id,
                        "digest": r.id,
                        "created": r.created.map(|c| c.to_string()),
                        "platforms": r.platforms,
                        "size": r.size,
                    })
                })
                .collect();
            crate::outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImagesFormat::Table => {
            let now = jiff::Timestamp::now();
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    [
                        crate::names::short_name(&r.repository).to_string(),
                        r.tag.clone(),
                        r.id[7..19].to_string(),
                        r.created
                            .map_or_else(|| "unknown".to_string(), |c| ago(now, c)),
                        r.platforms.join(","),
                        rbuild_options::size::image(r.size),
                    ]
                })
                .collect();
            let header =
                ["NAME", "TAG", "IMAGE ID", "CREATED", "PLATFORM", "SIZE"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &table {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&table) {
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    if i + 1 == row.len() {
                        line.push_str(cell);
                    } else {
                        line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
                    }
                }
                crate::outln!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "3 minutes ago", "2 days ago", as docker prints them.
fn ago(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let secs = now.as_second() - then.as_second();
    if secs < 0 {
        return "in the future".to_string();
    }
    let units = [
        (365 * 86400, "year"),
        (30 * 86400, "month"),
        (7 * 86400, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    if secs < 1 {
        return "less than a second ago".to_string();
    }
    for (unit, name) in units {
        if secs >= unit {
            let n = secs / unit;
            return if n == 1 {
                format!("{} {name} ago", if name == "hour" { "an" } else { "a" })
            } else {
                format!("{n} {name}s ago")
            };
        }
    }
    unreachable!("secs >= 1 matches the last unit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_age() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| jiff::Timestamp::from_second(1_000_000 - s).unwrap();
        assert_eq!(ago(now, at(180)), "3 minutes ago");
        assert_eq!(ago(now, at(3600)), "an hour ago");
        assert_eq!(ago(now, at(2 * 86400)), "2 days ago");
    }
}
