//! The rules that need more than the Dockerfile: the ignore file, the context's files, the
//! plan, the base images' users. The caller gathers those ([`super::Facts`]); the rules
//! here only compare.

use crate::parser::Node;
use rbuild_pathmatch::ignore::{Matcher, clean_path, read_ignore_file_lines};

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

/// Whether a context file's name marks it as a secret.
fn is_secret_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        ".env"
            | ".npmrc"
            | ".pypirc"
            | ".netrc"
            | ".git-credentials"
            | "credentials.json"
            | "id_rsa"
            | "id_dsa"
            | "id_ecdsa"
            | "id_ed25519"
            | ".htpasswd"
            | "secrets.yaml"
            | "secrets.yml"
            | "secrets.json"
    ) || (lower.starts_with(".env.")
        && !lower.ends_with(".example")
        && !lower.ends_with(".sample")
        && !lower.ends_with(".template"))
        || [".pem", ".key", ".p12", ".pfx", ".jks", ".keystore"]
            .iter()
            .any(|e| lower.ends_with(e))
        || path.ends_with(".aws/credentials")
        || path.ends_with(".docker/config.json")
}

/// SecretFileCopied: context files that look like secrets and that a COPY/ADD of the
/// context ships (the ignore file applied first).
pub(super) fn secret_files(cx: &mut Cx<'_>, node: &Node, sources: &[String]) {
    let Some(files) = cx.options.facts.context_files.as_ref() else {
        return;
    };
    let mut found: Vec<&str> = Vec::new();
    for src in sources {
        if src.contains("://") || src.starts_with("<<") {
            continue;
        }
        let src = clean_path(src.trim_start_matches('/')).into_owned();
        // The source as a pattern: a path selects itself and what is below it; a wildcard
        // selects what it matches (Docker's path matching, as the ignore file's).
        let Ok(selector) = Matcher::new([src.as_str()]) else {
            continue;
        };
        for f in files {
            if !is_secret_name(f) || found.contains(&f.as_str()) {
                continue;
            }
            let selected = src == "." || selector.matches(f.as_bytes()).unwrap_or(false);
            let ignored = cx
                .ignore
                .as_ref()
                .is_some_and(|i| i.excluded_by(f).is_some());
            if selected && !ignored {
                found.push(f);
            }
        }
    }
    if found.is_empty() {
        return;
    }
    let shown: Vec<&str> = found.iter().take(5).copied().collect();
    let more = if found.len() > shown.len() {
        format!(" and {} more", found.len() - shown.len())
    } else {
        String::new()
    };
    let message = format!(
        "{} copies {}{more} from the context into the image",
        node.keyword.to_ascii_uppercase(),
        shown.join(", ")
    );
    let fix = format!(
        "add {} to .dockerignore, and pass what a step needs with RUN --mount=type=secret",
        shown.join(", ")
    );
    cx.report("SecretFileCopied", node.span, message, fix);
}

/// UnknownUser: the user (and group) of USER, when the base image's /etc/passwd
/// (/etc/group) is readable and lacks it. Numeric ids and variables are not judged.
pub(super) fn unknown_user(
    cx: &mut Cx<'_>,
    node: &Node,
    value: &str,
    bases: &dyn crate::plan::BaseConfigs,
    base: &str,
) {
    let (user, group) = match value.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (value, None),
    };
    let named =
        |s: &str| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()) && !s.contains('$');
    let missing = |file: &str, name: &str| -> Option<bool> {
        let text = bases.base_file(base, file)?;
        Some(!text.lines().any(|l| l.split(':').next() == Some(name)))
    };
    if named(user) && missing("etc/passwd", user) == Some(true) {
        cx.report(
            "UnknownUser",
            node.span,
            format!("User {user} is not in /etc/passwd of base image {base}"),
            format!(
                "create it first (RUN useradd {user}, or adduser -D {user}), or use a numeric id"
            ),
        );
    }
    if let Some(g) = group
        && named(g)
        && missing("etc/group", g) == Some(true)
    {
        cx.report(
            "UnknownUser",
            node.span,
            format!("Group {g} is not in /etc/group of base image {base}"),
            format!("create it first (RUN groupadd {g}), or use a numeric id"),
        );
    }
}
