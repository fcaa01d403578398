//! Findings: size and hygiene problems, each with the layer it comes from and a fix.

use std::collections::{BTreeMap, HashMap};

use crate::analyze::{Hidden, HiddenBytes, Node, Options};
use crate::model::{Duplicate, Finding, FindingKind, LayerReport, Severity};
use crate::packages::PackageIndex;
use crate::scan::{Change, Kind, LayerScan};

/// Toolchain findings start at this many bytes (a few headers are normal).
pub const TOOLCHAIN_MIN_BYTES: u64 = 1024 * 1024;

pub(crate) struct Inputs<'a> {
    pub layers: &'a [LayerReport],
    pub scans: &'a [LayerScan],
    pub state: &'a BTreeMap<Box<str>, Node>,
    pub hidden: &'a BTreeMap<(u32, u32, Hidden), HiddenBytes>,
    pub duplicates: &'a [Duplicate],
    pub final_bytes: u64,
    pub options: &'a Options,
    pub packages: Option<&'a PackageIndex>,
}

/// A package manager cache or index: a path fragment that starts at a path component.
struct CacheRule {
    needle: &'static str,
    what: &'static str,
    fix: &'static str,
}

const APT_FIX: &str = "end the RUN that installs packages with `&& apt-get clean && rm -rf /var/lib/apt/lists/*`, or keep the caches out of the layer with `RUN --mount=type=cache,target=/var/cache/apt --mount=type=cache,target=/var/lib/apt/lists`";

const CACHES: &[CacheRule] = &[
    CacheRule {
        needle: "var/lib/apt/lists/",
        what: "apt package lists",
        fix: APT_FIX,
    },
    CacheRule {
        needle: "var/cache/apt/",
        what: "apt package archives",
        fix: APT_FIX,
    },
    CacheRule {
        needle: "var/cache/apk/",
        what: "apk cache",
        fix: "use `apk add --no-cache ...`",
    },
    CacheRule {
        needle: "etc/apk/cache/",
        what: "apk cache",
        fix: "use `apk add --no-cache ...`",
    },
    CacheRule {
        needle: ".cache/pip/",
        what: "pip cache",
        fix: "use `pip install --no-cache-dir ...`, or `RUN --mount=type=cache,target=/root/.cache/pip`",
    },
    CacheRule {
        needle: ".npm/",
        what: "npm cache",
        fix: "run `npm ci && npm cache clean --force` in one RUN, or `RUN --mount=type=cache,target=/root/.npm`",
    },
    CacheRule {
        needle: ".cache/yarn/",
        what: "yarn cache",
        fix: "run `yarn install && yarn cache clean` in one RUN, or `RUN --mount=type=cache,target=/usr/local/share/.cache/yarn`",
    },
    CacheRule {
        needle: ".cargo/registry/",
        what: "cargo registry cache",
        fix: "build in a builder stage and COPY --from only the binary, or `RUN --mount=type=cache,target=/usr/local/cargo/registry`",
    },
    CacheRule {
        needle: "usr/local/cargo/registry/",
        what: "cargo registry cache",
        fix: "build in a builder stage and COPY --from only the binary, or `RUN --mount=type=cache,target=/usr/local/cargo/registry`",
    },
    CacheRule {
        needle: ".cargo/git/",
        what: "cargo git cache",
        fix: "build in a builder stage and COPY --from only the binary, or `RUN --mount=type=cache,target=/usr/local/cargo/git`",
    },
    CacheRule {
        needle: ".cache/go-build/",
        what: "go build cache",
        fix: "build in a builder stage, or `RUN --mount=type=cache,target=/root/.cache/go-build`",
    },
    CacheRule {
        needle: "var/cache/dnf/",
        what: "dnf cache",
        fix: "end the RUN with `&& dnf clean all`, or `RUN --mount=type=cache,target=/var/cache/dnf`",
    },
    CacheRule {
        needle: "var/cache/yum/",
        what: "yum cache",
        fix: "end the RUN with `&& yum clean all`, or `RUN --mount=type=cache,target=/var/cache/yum`",
    },
];

/// A build toolchain in the final image.
struct ToolRule {
    needle: &'static str,
    what: &'static str,
}

const TOOLCHAINS: &[ToolRule] = &[
    ToolRule {
        needle: "usr/include/",
        what: "C/C++ headers",
    },
    ToolRule {
        needle: "usr/local/include/",
        what: "C/C++ headers",
    },
    ToolRule {
        needle: "usr/lib/gcc/",
        what: "the GCC compiler",
    },
    ToolRule {
        needle: "usr/libexec/gcc/",
        what: "the GCC compiler",
    },
    ToolRule {
        needle: "usr/lib/llvm-",
        what: "LLVM/clang",
    },
    ToolRule {
        needle: "usr/local/go/",
        what: "the Go toolchain",
    },
    ToolRule {
        needle: "rustup/toolchains/",
        what: "the Rust toolchain",
    },
    ToolRule {
        needle: "usr/lib/jvm/",
        what: "a JDK",
    },
];

/// Documentation, manual pages and translations findings start at this many bytes per layer.
pub const DOCS_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Where documentation, manual pages and translations go.
const DOCS: &[&str] = &[
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
];

/// A toolchain package in the final image: one finding per package past
/// [`TOOLCHAIN_MIN_BYTES`], the smaller ones of a layer together.
fn package_findings(
    inputs: &Inputs<'_>,
    packages: &PackageIndex,
    tools: BTreeMap<usize, Group>,
    out: &mut Vec<Finding>,
) {
    let threshold = TOOLCHAIN_MIN_BYTES.max(inputs.options.min_finding_bytes);
    let mut small: BTreeMap<usize, (Group, Vec<String>)> = BTreeMap::new();
    for (index, group) in tools {
        let package = &packages.inventory.packages[index];
        let layer = package.layer.min(inputs.layers.len().saturating_sub(1));
        if group.bytes < threshold {
            let entry = small.entry(layer).or_default();
            entry.0.bytes += group.bytes;
            entry.0.files += group.files;
            entry.0.samples.extend(group.samples);
            entry.1.push(package.name.clone());
            continue;
        }
        let what = packages.toolchain(index).unwrap_or("a build tool");
        let message = format!(
            "{} {} ({}, {} files) added by {} is {what}",
            package.name,
            package.version,
            mb(group.bytes),
            group.files,
            layer_text(inputs.layers, layer)
        );
        out.push(toolchain_finding(
            inputs,
            layer,
            group,
            message,
            &package.name,
        ));
    }
    for (layer, (group, names)) in small {
        if group.bytes < threshold {
            continue;
        }
        let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        let message = format!(
            "{} build tool packages ({}, {} files) added by {}: {}{}",
            names.len(),
            mb(group.bytes),
            group.files,
            layer_text(inputs.layers, layer),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        out.push(toolchain_finding(
            inputs,
            layer,
            group,
            message,
            &names.join(" "),
        ));
    }
}

/// A toolchain finding of the packages `names` (separated by spaces) that `layer` added.
fn toolchain_finding(
    inputs: &Inputs<'_>,
    layer: usize,
    group: Group,
    message: String,
    names: &str,
) -> Finding {
    let sev = severity(group.bytes, inputs.final_bytes);
    let fix = if inputs.layers[layer].base {
        format!(
            "the base image brings it: build in a separate stage on this base and COPY --from=build only the artifacts into a slim runtime base without `{names}`"
        )
    } else {
        format!(
            "build in a separate stage (`FROM ... AS build`) and COPY --from=build only the artifacts into the final stage, which does not install `{names}`"
        )
    };
    finding(
        inputs,
        FindingKind::Toolchain,
        sev,
        layer,
        None,
        group,
        message,
        fix,
    )
}

/// Whether `needle` occurs in `path` at the start of a path component.
fn at_component(path: &str, needle: &str) -> bool {
    path.starts_with(needle)
        || path
            .match_indices(needle)
            .any(|(at, _)| at > 0 && path.as_bytes()[at - 1] == b'/')
}

/// What in a COPY'd path belongs in `.dockerignore`.
fn context_junk(path: &str) -> Option<&'static str> {
    let components: Vec<&str> = path.split('/').collect();
    let dirs = &components[..components.len().saturating_sub(1)];
    let name = components.last().copied().unwrap_or("");
    if dirs.contains(&".git") {
        return Some(".git");
    }
    if dirs.contains(&"node_modules") {
        return Some("node_modules");
    }
    if let Some(at) = dirs.iter().position(|c| *c == "target") {
        let next = components.get(at + 1).copied().unwrap_or("");
        if matches!(next, "debug" | "release" | "CACHEDIR.TAG") {
            return Some("target");
        }
    }
    if dirs.contains(&"__pycache__") {
        return Some("__pycache__");
    }
    if name.ends_with(".log") {
        return Some("*.log");
    }
    if name == ".DS_Store" {
        return Some(".DS_Store");
    }
    None
}

fn is_copy(instruction: Option<&str>) -> bool {
    match instruction {
        None => true,
        Some(text) => {
            let upper = text.trim_start().to_ascii_uppercase();
            upper.starts_with("COPY") || upper.starts_with("ADD")
        }
    }
}

fn severity(bytes: u64, final_bytes: u64) -> Severity {
    if bytes >= 50_000_000 || (final_bytes > 0 && bytes.saturating_mul(10) >= final_bytes) {
        Severity::High
    } else if bytes >= 1_000_000 {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// Per-(key, layer) sums, with up to 5 largest example paths.
#[derive(Default)]
struct Group {
    bytes: u64,
    files: u64,
    samples: Vec<(u64, String)>,
}

impl Group {
    fn add(&mut self, size: u64, path: &str) {
        self.bytes += size;
        self.files += 1;
        self.samples.push((size, format!("/{path}")));
        if self.samples.len() > 64 {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.samples
            .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        self.samples.truncate(5);
    }

    fn paths(mut self) -> Vec<String> {
        self.trim();
        self.samples.into_iter().map(|(_, p)| p).collect()
    }
}

fn layer_text(layers: &[LayerReport], index: usize) -> String {
    let layer = &layers[index];
    let mut text = format!("layer {index}");
    if let Some(line) = layer.dockerfile_line {
        text.push_str(&format!(" (Dockerfile line {line})"));
    }
    if let Some(instruction) = &layer.instruction {
        text.push_str(&format!(" `{}`", shorten(instruction, 60)));
    }
    text
}

pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn mb(bytes: u64) -> String {
    rbuild_options::size::image(bytes)
}

#[allow(clippy::too_many_arguments)]
fn finding(
    inputs: &Inputs<'_>,
    kind: FindingKind,
    severity: Severity,
    layer: usize,
    later: Option<usize>,
    group: Group,
    message: String,
    fix: String,
) -> Finding {
    let l = &inputs.layers[layer];
    Finding {
        kind,
        severity,
        layer: Some(layer),
        later_layer: later,
        instruction: l.instruction.clone(),
        dockerfile_line: l.dockerfile_line,
        later_instruction: later.and_then(|i| inputs.layers[i].instruction.clone()),
        bytes: group.bytes,
        files: group.files,
        paths: group.paths(),
        message,
        fix,
    }
}

pub(crate) fn find(inputs: &Inputs<'_>) -> Vec<Finding> {
    let min = inputs.options.min_finding_bytes;
    let mut out = Vec::new();

    // Files hidden by later layers.
    for (&(origin, later, reason), hidden) in inputs.hidden {
        if hidden.bytes < min.max(1) {
            continue;
        }
        let (origin, later) = (origin as usize, later as usize);
        let group = Group {
            bytes: hidden.bytes,
            files: hidden.files,
            samples: hidden
                .samples
                .iter()
                .map(|(s, p)| (*s, format!("/{p}")))
                .collect(),
        };
        let same = origin == later;
        let (kind, message, fix) = match reason {
            Hidden::Deleted => (
                FindingKind::DeletedLater,
                format!(
                    "{} in {} files created in {} and deleted in {} still ship in layer {origin}",
                    mb(hidden.bytes),
                    hidden.files,
                    layer_text(inputs.layers, origin),
                    if same {
                        "the same layer".to_string()
                    } else {
                        layer_text(inputs.layers, later)
                    },
                ),
                format!(
                    "delete them in the same RUN that creates them (layer {origin}), or produce them in a separate build stage and COPY --from only what the final image needs"
                ),
            ),
            Hidden::MetadataOnly => (
                FindingKind::MetadataOnlyCopy,
                format!(
                    "{} in {} files from {} are copied again by {} with the same content, only to change their mode or owner",
                    mb(hidden.bytes),
                    hidden.files,
                    layer_text(inputs.layers, origin),
                    layer_text(inputs.layers, later),
                ),
                format!(
                    "set the mode and owner where the files are written (layer {origin}): `COPY --chmod=... --chown=...`, or chmod/chown in the same RUN; drop the chmod/chown of layer {later}"
                ),
            ),
            Hidden::Overwritten => {
                if hidden.bytes < min.max(1024 * 1024) {
                    continue;
                }
                (
                    FindingKind::Overwritten,
                    format!(
                        "{} in {} files from {} are replaced by {} and still ship in layer {origin}",
                        mb(hidden.bytes),
                        hidden.files,
                        layer_text(inputs.layers, origin),
                        layer_text(inputs.layers, later),
                    ),
                    format!(
                        "write the final version in one step: merge layer {later}'s change into layer {origin}, or build the files in a separate stage"
                    ),
                )
            }
        };
        let sev = severity(hidden.bytes, inputs.final_bytes);
        out.push(finding(
            inputs,
            kind,
            sev,
            origin,
            Some(later),
            group,
            message,
            fix,
        ));
    }

    // Package manager caches, toolchains and permissions in the final image.
    let mut caches: BTreeMap<(usize, usize), Group> = BTreeMap::new();
    let mut tools: BTreeMap<(&str, usize), Group> = BTreeMap::new();
    let mut tool_packages: BTreeMap<usize, Group> = BTreeMap::new();
    let mut docs: BTreeMap<usize, (Group, HashMap<usize, u64>)> = BTreeMap::new();
    let mut world: BTreeMap<usize, Group> = BTreeMap::new();
    let mut setuid: BTreeMap<usize, Group> = BTreeMap::new();
    for (path, node) in inputs.state {
        let layer = node.layer as usize;
        if node.kind == Kind::File {
            if let Some(rule) = CACHES.iter().position(|r| at_component(path, r.needle)) {
                caches
                    .entry((rule, layer))
                    .or_default()
                    .add(node.size, path);
            }
            let package = inputs.packages.and_then(|p| p.owner(path));
            match package.filter(|&i| inputs.packages.is_some_and(|p| p.toolchain(i).is_some())) {
                // Named by its package below.
                Some(i) => tool_packages.entry(i).or_default().add(node.size, path),
                None => {
                    if let Some(rule) = TOOLCHAINS.iter().find(|r| at_component(path, r.needle)) {
                        tools
                            .entry((rule.what, layer))
                            .or_default()
                            .add(node.size, path);
                    }
                }
            }
            if DOCS.iter().any(|d| at_component(path, d)) {
                docs.entry(layer).or_default().0.add(node.size, path);
                if let Some(i) = package {
                    *docs.entry(layer).or_default().1.entry(i).or_default() += node.size;
                }
            }
            if node.mode & 0o6000 != 0 {
                setuid.entry(layer).or_default().add(node.size, path);
            }
        }
        let writable = match node.kind {
            Kind::File => node.mode & 0o002 != 0,
            // A sticky world-writable directory (like /tmp) is the safe kind.
            Kind::Dir => node.mode & 0o002 != 0 && node.mode & 0o1000 == 0,
            _ => false,
        };
        if writable {
            world.entry(layer).or_default().add(node.size, path);
        }
    }
    for ((rule, layer), group) in caches {
        if group.bytes < min.max(1) {
            continue;
        }
        let rule = &CACHES[rule];
        let message = format!(
            "{} of {} ({} files) left in {}",
            mb(group.bytes),
            rule.what,
            group.files,
            layer_text(inputs.layers, layer)
        );
        let sev = severity(group.bytes, inputs.final_bytes);
        out.push(finding(
            inputs,
            FindingKind::PackageCache,
            sev,
            layer,
            None,
            group,
            message,
            rule.fix.to_string(),
        ));
    }
    for ((what, layer), group) in tools {
        if group.bytes < TOOLCHAIN_MIN_BYTES.max(min) {
            continue;
        }
        let message = format!(
            "{} of {what} ({} files) in the final image, from {}",
            mb(group.bytes),
            group.files,
            layer_text(inputs.layers, layer)
        );
        let sev = severity(group.bytes, inputs.final_bytes);
        out.push(finding(
            inputs,
            FindingKind::Toolchain,
            sev,
            layer,
            None,
            group,
            message,
            "use a multi-stage build: compile in a builder stage (`FROM ... AS build`) and COPY --from=build only the artifacts into a slim final stage".to_string(),
        ));
    }
    if let Some(packages) = inputs.packages {
        package_findings(inputs, packages, tool_packages, &mut out);
    }
    for (layer, (group, by_package)) in docs {
        if group.bytes < DOCS_MIN_BYTES.max(min) {
            continue;
        }
        let mut largest: Vec<(usize, u64)> = by_package.into_iter().collect();
        largest.sort_by_key(|&(i, bytes)| (std::cmp::Reverse(bytes), i));
        let named: Vec<String> = largest
            .iter()
            .take(3)
            .filter_map(|&(i, bytes)| {
                let p = inputs.packages?.inventory.packages.get(i)?;
                Some(format!("{} {}", p.name, mb(bytes)))
            })
            .collect();
        let mut message = format!(
            "{} of documentation, manual pages and translations ({} files) in {}",
            mb(group.bytes),
            group.files,
            layer_text(inputs.layers, layer)
        );
        if !named.is_empty() {
            message.push_str(&format!(", most from {}", named.join(", ")));
        }
        let fix = if inputs.layers[layer].base {
            "they come with the base image: pick a slimmer base (a `-slim` variant), or delete them in the image's first RUN".to_string()
        } else {
            "keep them out of the install: for apt, a `/etc/dpkg/dpkg.cfg.d/` file with `path-exclude=/usr/share/doc/*`, `path-exclude=/usr/share/man/*`, `path-exclude=/usr/share/locale/*` (and `path-include=/usr/share/doc/*/copyright`) before `apt-get install`; or delete them in the same RUN that installs them".to_string()
        };
        let sev = severity(group.bytes, inputs.final_bytes).min(Severity::Medium);
        out.push(finding(
            inputs,
            FindingKind::Docs,
            sev,
            layer,
            None,
            group,
            message,
            fix,
        ));
    }
    for (layer, group) in world {
        let message = format!(
            "{} files or directories anyone may write, from {}",
            group.files,
            layer_text(inputs.layers, layer)
        );
        out.push(finding(
            inputs,
            FindingKind::WorldWritable,
            Severity::Medium,
            layer,
            None,
            group,
            message,
            "remove the write bit for others (`chmod o-w`), or set the sticky bit on shared directories (`chmod +t`)".to_string(),
        ));
    }
    for (layer, group) in setuid {
        let message = format!(
            "{} setuid or setgid files, from {}",
            group.files,
            layer_text(inputs.layers, layer)
        );
        out.push(finding(
            inputs,
            FindingKind::Setuid,
            Severity::Low,
            layer,
            None,
            group,
            message,
            "remove the bits from programs the container does not need (`chmod u-s,g-s FILE`), or run with no-new-privileges".to_string(),
        ));
    }

    // Build-context files in COPY/ADD layers (shipped even if deleted later).
    let mut junk: BTreeMap<(&str, usize), Group> = BTreeMap::new();
    for (layer, scan) in inputs.scans.iter().enumerate() {
        if !is_copy(inputs.layers[layer].instruction.as_deref()) {
            continue;
        }
        for change in &scan.changes {
            if let Change::Entry(entry) = change
                && entry.kind == Kind::File
                && let Some(what) = context_junk(&entry.path)
            {
                junk.entry((what, layer))
                    .or_default()
                    .add(entry.size, &entry.path);
            }
        }
    }
    for ((what, layer), group) in junk {
        let message = format!(
            "{} files ({}) of `{what}` copied from the build context in {}",
            group.files,
            mb(group.bytes),
            layer_text(inputs.layers, layer)
        );
        let sev = severity(group.bytes, inputs.final_bytes).max(Severity::Low);
        let pattern = match what {
            ".git" | "node_modules" | "target" | "__pycache__" => format!("{what}/"),
            other => other.to_string(),
        };
        out.push(finding(
            inputs,
            FindingKind::Dockerignore,
            sev,
            layer,
            None,
            group,
            message,
            format!("add `{pattern}` to .dockerignore (or COPY only the paths the image needs)"),
        ));
    }

    // Duplicate content in the final image, one finding per layer pair of the largest groups.
    let mut dup: HashMap<usize, Group> = HashMap::new();
    for d in inputs.duplicates {
        for copy in d.paths.iter().skip(1) {
            dup.entry(copy.layer)
                .or_default()
                .add(d.bytes, copy.path.trim_start_matches('/'));
        }
        // Copies beyond the 10 listed.
        let listed = d.paths.len() as u64;
        if d.copies > listed
            && let Some(last) = d.paths.last()
        {
            let group = dup.entry(last.layer).or_default();
            group.bytes += d.bytes * (d.copies - listed);
            group.files += d.copies - listed;
        }
    }
    let mut dup: Vec<(usize, Group)> = dup.into_iter().collect();
    dup.sort_by_key(|(layer, _)| *layer);
    for (layer, group) in dup {
        if group.bytes < min.max(1) {
            continue;
        }
        let message = format!(
            "{} in {} files of {} have the same content as other files of the image",
            mb(group.bytes),
            group.files,
            layer_text(inputs.layers, layer)
        );
        let sev = severity(group.bytes, inputs.final_bytes);
        out.push(finding(
            inputs,
            FindingKind::Duplicate,
            sev,
            layer,
            None,
            group,
            message,
            "keep one copy: replace the others with symlinks or hard links, or COPY the file once"
                .to_string(),
        ));
    }

    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.kind.cmp(&b.kind))
            .then(a.layer.cmp(&b.layer))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_match_at_component_starts() {
        assert!(at_component("root/.cache/pip/http/x", ".cache/pip/"));
        assert!(at_component("var/lib/apt/lists/deb", "var/lib/apt/lists/"));
        assert!(!at_component(
            "opt/myvar/lib/apt/lists/x",
            "var/lib/apt/lists/"
        ));
        assert_eq!(context_junk("app/.git/objects/ab"), Some(".git"));
        assert_eq!(context_junk("app/target/release/app"), Some("target"));
        assert_eq!(context_junk("app/target/main.js"), None);
        assert_eq!(context_junk("app/build.log"), Some("*.log"));
        assert_eq!(context_junk("app/src/main.rs"), None);
    }
}
