//! The rules that need more than the Dockerfile: the ignore file, the context's files, the
//! plan, the base images' users. The caller gathers those ([`super::Facts`]); the rules
//! here only compare.

use crate::dockerignore::{Matcher, clean_path, read_ignore_file_lines};
use crate::parser::Node;

use super::Cx;

/// The ignore file, compiled, with each pattern's line.
#[derive(Debug)]
pub(super) struct Ignore {
    name: String,
    matcher: Matcher,
    lines: Vec<usize>,
}

impl Ignore {
    /// `None` when the file's patterns do not compile (the build reports that).
    pub(super) fn new(name: &str, text: &str) -> Option<Ignore> {
        let lines = read_ignore_file_lines(text);
        let matcher = Matcher::new(lines.iter().map(|(_, p)| p.as_str())).ok()?;
        Some(Ignore {
            name: name.to_string(),
            matcher,
            lines: lines.into_iter().map(|(l, _)| l).collect(),
        })
    }

    /// The pattern (its text and line) that excludes `path`, if one does.
    pub(super) fn excluded_by(&self, path: &str) -> Option<(&str, usize)> {
        let path = clean_path(path.trim_start_matches('/'));
        if path == "." || path.is_empty() {
            // The whole context is excluded only by a pattern for everything.
            let root = self
                .matcher
                .patterns()
                .iter()
                .enumerate()
                .find(|(_, p)| !p.is_exclusion() && matches!(p.text(), "*" | "**" | "**/*"))?;
            return Some((root.1.source(), self.lines[root.0]));
        }
        let i = self.matcher.deciding_pattern(path.as_bytes()).ok()??;
        Some((self.matcher.patterns()[i].source(), self.lines[i]))
    }
}

/// CopyIgnoredFile: a context source of COPY/ADD that the ignore file excludes, named with
/// the pattern (and its line) that excludes it.
pub(super) fn copy_ignored(cx: &mut Cx<'_>, node: &Node, sources: &[String]) {
    let Some(ignore) = cx.ignore.as_ref() else {
        return;
    };
    let mut found = Vec::new();
    for src in sources {
        if src.contains("://") || src.starts_with("git@") || src.starts_with("<<") {
            continue;
        }
        // Wildcards select what the context has; a wildcard source is judged by its files.
        if src.contains(['*', '?', '[']) {
            continue;
        }
        if let Some((pattern, line)) = ignore.excluded_by(src) {
            found.push((src.clone(), pattern.to_string(), line, ignore.name.clone()));
        }
    }
    let cmd = if node.keyword_lower == "add" {
        "Add"
    } else {
        "Copy"
    };
    for (src, pattern, line, file) in found {
        let shown = clean_path(src.trim_start_matches('/')).into_owned();
        cx.report(
            "CopyIgnoredFile",
            node.span,
            format!("Attempting to {cmd} file \"{shown}\" that is excluded by .dockerignore (pattern `{pattern}` on line {line} of {file})"),
            format!("remove `{pattern}` from {file} or add `!{shown}` after it, or do not copy {shown}"),
        );
    }
}

/// Manifests and lockfiles: the files a dependency install reads.
const MANIFESTS: [&str; 22] = [
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "requirements.txt",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "pyproject.toml",
    "Gemfile",
    "Gemfile.lock",
    "composer.json",
    "composer.lock",
    "go.mod",
    "go.sum",
    "Cargo.toml",
    "Cargo.lock",
    "pom.xml",
    "mix.exs",
    "mix.lock",
    ".npmrc",
];

/// For CopyContextBeforeInstall: the context files (not excluded by the ignore file) other
/// than manifests and lockfiles, whose changes rerun the install: a few names and the count.
/// `None` when the context was not listed.
pub(super) fn busting_files(cx: &Cx<'_>) -> Option<String> {
    let files = cx.options.facts.context_files.as_ref()?;
    let ignore = cx.ignore.as_ref();
    let busting: Vec<&String> = files
        .iter()
        .filter(|f| {
            let base = f.rsplit('/').next().unwrap_or(f);
            !MANIFESTS.contains(&base) && ignore.is_none_or(|i| i.excluded_by(f).is_none())
        })
        .collect();
    if busting.is_empty() {
        return None;
    }
    let shown: Vec<&str> = busting.iter().take(5).map(|s| s.as_str()).collect();
    Some(if busting.len() > shown.len() {
        format!("{} ({} files in all)", shown.join(", "), busting.len())
    } else {
        shown.join(", ")
    })
}
