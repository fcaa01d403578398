//! Best-practice rules, the ones hadolint users rely on, judged on a parse of the shell in
//! RUN ([`super::sh`]) rather than on patterns over the text: `apt-get -qq install` and
//! `sudo apt-get install -y` are read as the commands they are, quotes and line
//! continuations do not matter, and a cache mount counts as cleaning up.

use super::sh::{self, Command, Script};
use super::{CheckConfig, Cx};
use crate::parser::Node;

/// What a stage has seen so far.
#[derive(Default)]
struct Stage {
    /// `ENV PIP_NO_CACHE_DIR=...` was set.
    pip_no_cache: bool,
    /// The last USER instruction.
    last_user: Option<(String, crate::parser::Span)>,
    /// A COPY of the whole context, not yet followed by a dependency install.
    copy_all: Vec<(crate::parser::Span, usize)>,
    /// The stage is part of the built image (known from the plan).
    ships: bool,
}

pub(super) fn run(cx: &mut Cx<'_>, config: &CheckConfig, shipping: Option<&[bool]>) {
    let parsed = cx.parsed;
    let mut names: Vec<String> = Vec::new();
    let mut stage: Option<Stage> = None;
    let mut stage_index = 0usize;
    for (index, node) in parsed.instructions.iter().enumerate() {
        match &*node.keyword_lower {
            "from" => {
                if stage.is_some() {
                    stage_index += 1;
                }
                if let Some(s) = stage.take() {
                    end_stage(cx, s);
                }
                from(cx, node, &names);
                if let Some(n) = node.args.get(2) {
                    names.push(n.to_lowercase());
                }
                stage = Some(Stage {
                    ships: shipping.is_some_and(|s| s.get(stage_index).copied().unwrap_or(false)),
                    ..Stage::default()
                });
            }
            _ => {
                let Some(s) = stage.as_mut() else { continue };
                instruction(cx, config, node, index, s);
            }
        }
    }
    if let Some(s) = stage.take() {
        end_stage(cx, s);
    }
}

fn end_stage(cx: &mut Cx<'_>, s: Stage) {
    if let Some((user, span)) = s.last_user {
        let name = user.split(':').next().unwrap_or("");
        if name == "root" || name == "0" {
            cx.report(
                "LastUserRoot",
                span,
                "Last USER should not be root".into(),
                "switch to an unprivileged user after the steps that need root (USER app, or USER 65534)".into(),
            );
        }
    }
}

/// FromLatestTag and FromUntagged.
fn from(cx: &mut Cx<'_>, node: &Node, stages: &[String]) {
    let Some(image) = node.args.first() else {
        return;
    };
    if image.contains('$')
        || image.eq_ignore_ascii_case("scratch")
        || stages.contains(&image.to_lowercase())
    {
        return;
    }
    if image.contains('@') {
        return;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) => cx.report(
            "FromLatestTag",
            node.span,
            format!("Base image {image} uses the latest tag, which changes under the build"),
            "name a release tag (alpine:3.19), or a digest".into(),
        ),
        Some(_) => {}
        None => cx.report(
            "FromUntagged",
            node.span,
            format!("Base image {image} has no tag, so it is {image}:latest"),
            format!("name a release tag ({image}:<version>), or a digest"),
        ),
    }
}

/// The targets of `RUN --mount=type=cache,...`.
pub(super) fn cache_mounts(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for f in node.flags.iter().filter(|f| f.name() == "mount") {
        let v = f.value().unwrap_or("");
        let mut is_cache = false;
        let mut target = None;
        for part in v.split(',') {
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            match k.trim() {
                "type" => is_cache = val == "cache",
                "target" | "dst" | "destination" => {
                    target = Some(val.trim_end_matches('/').to_string())
                }
                _ => {}
            }
        }
        if is_cache && let Some(t) = target {
            out.push(t);
        }
    }
    out
}

/// The shell script RUN runs: the heredoc body, the shell form's text, or the exec form's
/// words when they call a shell with `-c`.
pub(super) fn run_script(node: &Node) -> Option<Script> {
    if let Some(doc) = node.heredocs.first()
        && node
            .args
            .first()
            .is_some_and(|a| a.trim_start().starts_with("<<"))
    {
        return Some(sh::parse(&doc.content));
    }
    if node.json {
        let shell = node.args.first().map(|s| s.rsplit('/').next().unwrap_or(s));
        if matches!(shell, Some("sh" | "bash" | "ash" | "dash" | "zsh"))
            && node.args.get(1).is_some_and(|a| a == "-c")
        {
            return node.args.get(2).map(|s| sh::parse(s));
        }
        return Some(Script {
            commands: vec![Command {
                words: node.args.clone(),
                ..Command::default()
            }],
        });
    }
    node.args.first().map(|s| sh::parse(s))
}

fn instruction(cx: &mut Cx<'_>, config: &CheckConfig, node: &Node, index: usize, s: &mut Stage) {
    match &*node.keyword_lower {
        "env" if node.args.chunks(3).any(|kv| kv[0] == "PIP_NO_CACHE_DIR") => {
            s.pip_no_cache = true;
        }
        "user" => {
            if let Some(u) = node.args.first() {
                s.last_user = Some((u.clone(), node.span));
            }
        }
        "add" => add(cx, node),
        "copy" => {
            let from = node.flags.iter().any(|f| f.name() == "from");
            let n = node.args.len();
            if !from
                && n >= 2
                && node.args[..n - 1]
                    .iter()
                    .any(|a| matches!(a.as_str(), "." | "./" | "/"))
            {
                s.copy_all.push((node.span, index));
            }
        }
        "run" => {
            let Some(script) = run_script(node) else {
                return;
            };
            let caches = cache_mounts(node);
            run_step(cx, config, node, &script, &caches, s);
        }
        _ => {}
    }
}

fn add(cx: &mut Cx<'_>, node: &Node) {
    if node.args.len() < 2 || node.flags.iter().any(|f| f.name() == "from") {
        return;
    }
    let sources = &node.args[..node.args.len() - 1];
    let plain = sources.iter().any(|src| {
        !src.contains("://")
            && !src.starts_with("git@")
            && !src.starts_with("<<")
            && !is_archive(src)
    });
    if plain {
        cx.report(
            "AddInsteadOfCopy",
            node.span,
            "Use COPY instead of ADD for files and folders".into(),
            format!(
                "write COPY{}",
                &node.original[node.keyword.len()..]
                    .split('\n')
                    .next()
                    .unwrap_or("")
            ),
        );
    }
}

fn is_archive(path: &str) -> bool {
    const EXT: [&str; 14] = [
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar.zst",
        ".tzst", ".gz", ".bz2", ".xz", ".zst",
    ];
    let lower = path.to_ascii_lowercase();
    EXT.iter().any(|e| lower.ends_with(e))
}

/// The subcommand of a package manager call: the first argument that is not an option
/// (skipping the values of options that take one).
fn subcommand<'a>(c: &'a Command, valued: &[&str]) -> Option<(usize, &'a str)> {
    let args = c.args();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a.starts_with('-') {
            if valued.contains(&a) {
                i += 1;
            }
            i += 1;
            continue;
        }
        return Some((i, a));
    }
    None
}

/// Whether `c` has the flag: a long option (`--yes`, `--opt=value`) or a short one, alone or
/// in a cluster (`-qy`).
fn has_flag(c: &Command, long: &[&str], short: &[char]) -> bool {
    c.args().iter().any(|a| {
        if let Some(l) = a.strip_prefix("--") {
            let name = l.split('=').next().unwrap_or(l);
            long.contains(&name)
        } else if let Some(s) = a.strip_prefix('-') {
            !s.is_empty()
                && s.chars().all(|ch| ch.is_ascii_alphanumeric())
                && s.chars().any(|ch| short.contains(&ch))
        } else {
            false
        }
    })
}

const APT_VALUED: [&str; 4] = ["-o", "-c", "-t", "--target-release"];

fn is_pip(c: &Command) -> Option<usize> {
    let name = c.base_name();
    if name.starts_with("pip") && name[3..].chars().all(|ch| ch.is_ascii_digit() || ch == '.') {
        return Some(0);
    }
    if name.starts_with("python")
        && c.args().first().is_some_and(|a| a == "-m")
        && c.args().get(1).is_some_and(|a| a == "pip" || a == "pip3")
    {
        return Some(2);
    }
    None
}

fn run_step(
    cx: &mut Cx<'_>,
    config: &CheckConfig,
    node: &Node,
    script: &Script,
    caches: &[String],
    s: &mut Stage,
) {
    let cached = |dir: &str| caches.iter().any(|c| c == dir || c.ends_with(dir));
    let mut apt_update = false;
    let mut lists_removed = false;
    let mut installs_deps = false;
    let mut reported = std::collections::HashSet::new();
    let mut report = |cx: &mut Cx<'_>, rule: &'static str, at: &str, msg: String, fix: String| {
        if reported.insert(rule) {
            cx.report(rule, super::word_span(node, at), msg, fix);
        }
    };
    for raw in &script.commands {
        let c = raw.unwrapped();
        if raw.base_name() == "sudo" {
            report(
                cx,
                "SudoInRun",
                "sudo",
                "Do not use sudo: RUN already runs as the stage's USER".into(),
                "drop sudo; switch users with USER (or gosu/su-exec in an entrypoint)".into(),
            );
        }
        if c.base_name() == "cd" {
            report(
                cx,
                "CdInRun",
                "cd",
                "Use WORKDIR to switch to a directory".into(),
                "set WORKDIR before the RUN, or use the tool's own directory option (make -C, git -C)".into(),
            );
        }
        if c.base_name() == "rm" && c.args().iter().any(|a| a.starts_with("/var/lib/apt/lists")) {
            lists_removed = true;
        }
        if is_dependency_install(&c) {
            installs_deps = true;
        }
        match c.base_name() {
            "apt-get" => {
                let Some((_, sub)) = subcommand(&c, &APT_VALUED) else {
                    continue;
                };
                if sub == "update" {
                    apt_update = true;
                }
                if sub != "install" {
                    continue;
                }
                let yes = has_flag(&c, &["yes", "assume-yes"], &['y'])
                    || c.args()
                        .iter()
                        .any(|a| a == "-qq" || a == "-q=2" || a == "--quiet=2")
                    || c.args().iter().filter(|a| *a == "-q").count() >= 2;
                if !yes {
                    report(
                        cx,
                        "AptGetMissingYes",
                        "apt-get",
                        "apt-get install without -y waits for an answer no build gives".into(),
                        "add -y: apt-get install -y <package>".into(),
                    );
                }
                let no_rec = has_flag(&c, &["no-install-recommends"], &[])
                    || c.args().windows(2).any(|w| {
                        w[0] == "-o" && w[1].eq_ignore_ascii_case("APT::Install-Recommends=false")
                    });
                if !no_rec {
                    report(
                        cx,
                        "AptGetNoInstallRecommends",
                        "apt-get",
                        "apt-get install without --no-install-recommends also installs recommended packages".into(),
                        "add --no-install-recommends".into(),
                    );
                }
                if config.pin_versions {
                    let unpinned = packages(&c, &APT_VALUED, sub)
                        .into_iter()
                        .filter(|p| !p.contains('=') && !p.ends_with(".deb") && !p.contains('/'))
                        .collect::<Vec<_>>();
                    if let Some(p) = unpinned.first() {
                        report(
                            cx,
                            "UnpinnedPackage",
                            p,
                            format!("apt-get install {p} without a version"),
                            format!("pin it: {p}=<version>"),
                        );
                    }
                }
            }
            "apk" => {
                let valued = [
                    "-X",
                    "--repository",
                    "-t",
                    "--virtual",
                    "-p",
                    "--root",
                    "--arch",
                    "--cache-dir",
                    "--keys-dir",
                ];
                let Some((_, sub)) = subcommand(&c, &valued) else {
                    continue;
                };
                if sub != "add" {
                    continue;
                }
                if !has_flag(&c, &["no-cache"], &[])
                    && !cached("/var/cache/apk")
                    && !cached("/etc/apk/cache")
                {
                    report(
                        cx,
                        "ApkAddNoCache",
                        "apk",
                        "apk add without --no-cache keeps the package index in the layer".into(),
                        "add --no-cache (then no apk update is needed)".into(),
                    );
                }
                if config.pin_versions {
                    let unpinned = packages(&c, &valued, sub)
                        .into_iter()
                        .filter(|p| !p.contains('=') && !p.contains('~') && !p.ends_with(".apk"))
                        .collect::<Vec<_>>();
                    if let Some(p) = unpinned.first() {
                        report(
                            cx,
                            "UnpinnedPackage",
                            p,
                            format!("apk add {p} without a version"),
                            format!("pin it: {p}=<version>"),
                        );
                    }
                }
            }
            _ => {
                let Some(skip) = is_pip(&c) else { continue };
                let valued = [
                    "-r",
                    "--requirement",
                    "-c",
                    "--constraint",
                    "-e",
                    "--editable",
                    "-i",
                    "--index-url",
                    "--extra-index-url",
                    "-f",
                    "--find-links",
                    "-t",
                    "--target",
                    "--prefix",
                    "--root",
                    "--src",
                    "--cache-dir",
                    "--trusted-host",
                    "--platform",
                    "--python-version",
                    "--implementation",
                    "--abi",
                    "--progress-bar",
                    "--log",
                    "--proxy",
                    "--timeout",
                    "--retries",
                    "--exists-action",
                    "--cert",
                    "--client-cert",
                    "--upgrade-strategy",
                    "--only-binary",
                    "--no-binary",
                ];
                let rest = Command {
                    words: std::iter::once(c.name().to_string())
                        .chain(c.args()[skip..].iter().cloned())
                        .collect(),
                    ..Command::default()
                };
                let Some((_, sub)) = subcommand(&rest, &valued) else {
                    continue;
                };
                if sub != "install" {
                    continue;
                }
                if !has_flag(&rest, &["no-cache-dir"], &[])
                    && !s.pip_no_cache
                    && !caches
                        .iter()
                        .any(|c| c.ends_with(".cache/pip") || c.contains("/pip"))
                    && !c.assigns.iter().any(|a| a.starts_with("PIP_NO_CACHE_DIR="))
                {
                    report(
                        cx,
                        "PipNoCacheDir",
                        "pip",
                        "pip install without --no-cache-dir keeps downloaded packages in the layer".into(),
                        "add --no-cache-dir, or mount a cache (RUN --mount=type=cache,target=/root/.cache/pip)".into(),
                    );
                }
                if config.pin_versions {
                    let unpinned = packages(&rest, &valued, sub)
                        .into_iter()
                        .filter(|p| {
                            !p.contains(['=', '<', '>', '@', '/'])
                                && !p.starts_with('.')
                                && !p.ends_with(".whl")
                                && !p.ends_with(".tar.gz")
                                && !p.ends_with(".zip")
                        })
                        .collect::<Vec<_>>();
                    if let Some(p) = unpinned.first() {
                        report(
                            cx,
                            "UnpinnedPackage",
                            p,
                            format!("pip install {p} without a version"),
                            format!("pin it: {p}==<version>, or install from a requirements file"),
                        );
                    }
                }
            }
        }
    }
    if apt_update && !lists_removed && !cached("/var/lib/apt/lists") && !cached("/var/lib/apt") {
        report(
            cx,
            "AptListsNotCleaned",
            "apt-get",
            "The apt lists downloaded by apt-get update stay in the layer".into(),
            "end the RUN with && rm -rf /var/lib/apt/lists/*, or mount a cache at /var/lib/apt/lists".into(),
        );
    }
    // A whole-context COPY before this dependency install: the install reruns whenever any
    // file changes.
    for (span, _) in std::mem::take(&mut s.copy_all) {
        if installs_deps {
            let mut fix = "copy only the dependency manifests and lockfiles first, install, then copy the rest".to_string();
            if let Some(files) = super::resolved::busting_files(cx) {
                fix.push_str(&format!(
                    "; as written, a change to any of {files} reruns it"
                ));
            }
            cx.report(
                "CopyContextBeforeInstall",
                span,
                format!(
                    "The whole context is copied before dependencies are installed on line {}",
                    node.span.start.line
                ),
                fix,
            );
        } else {
            s.copy_all.push((span, 0));
        }
    }
    if s.ships {
        package_caches(cx, node, script, caches);
    }
    let mut pipes: Vec<usize> = script.commands.iter().map(|c| c.pipeline).collect();
    pipes.dedup();
    for p in pipes {
        let cmds: Vec<Command> = script.pipeline(p).map(Command::unwrapped).collect();
        let fetch = cmds
            .iter()
            .position(|c| matches!(c.base_name(), "curl" | "wget"));
        let shell = cmds.iter().rposition(|c| {
            matches!(
                c.base_name(),
                "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh"
            )
        });
        if let (Some(f), Some(sh_at)) = (fetch, shell)
            && f < sh_at
            && cmds[sh_at].args().iter().all(|a| a.starts_with('-'))
        {
            report(
                cx,
                "PipeToShell",
                cmds[f].base_name(),
                format!("A script downloaded by {} is piped into {} and runs unverified", cmds[f].base_name(), cmds[sh_at].base_name()),
                "download to a file, check its checksum (sha256sum -c), then run it; or ADD --checksum=sha256:...".into(),
            );
        }
    }
}

/// The package arguments after the subcommand (options and their values skipped).
fn packages(c: &Command, valued: &[&str], sub: &str) -> Vec<String> {
    let args = c.args();
    let Some(start) = args.iter().position(|a| a == sub) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') {
            if valued.contains(&a.as_str()) {
                i += 1;
            }
        } else if !a.contains('$') {
            out.push(a.clone());
        }
        i += 1;
    }
    out
}

/// Whether `c` installs a project's dependencies from its manifest.
fn is_dependency_install(c: &Command) -> bool {
    let args: Vec<&str> = c.args().iter().map(String::as_str).collect();
    let first = args.iter().find(|a| !a.starts_with('-')).copied();
    match c.base_name() {
        "npm" | "pnpm" => matches!(first, Some("install" | "i" | "ci")),
        "yarn" => matches!(first, None | Some("install")),
        "bundle" | "poetry" | "pipenv" | "composer" => first == Some("install"),
        "go" => args.starts_with(&["mod", "download"]),
        "cargo" => matches!(first, Some("fetch")),
        "dotnet" => first == Some("restore"),
        "mix" => first == Some("deps.get"),
        "mvn" | "./mvnw" | "mvnw" => args.iter().any(|a| a.starts_with("dependency:")),
        _ => {
            is_pip(c).is_some()
                && args
                    .iter()
                    .any(|a| *a == "-r" || *a == "--requirement" || a.starts_with("--requirement="))
        }
    }
}

/// PackageCacheInLayer: npm, yarn and composer installs in a stage of the built image that
/// leave their download cache in the layer (no cache mount on it, no cleanup in the RUN).
fn package_caches(cx: &mut Cx<'_>, node: &Node, script: &Script, caches: &[String]) {
    struct Manager {
        name: &'static str,
        dirs: &'static [&'static str],
        installs: fn(&Command) -> bool,
        cleans: fn(&Command) -> bool,
    }
    const MANAGERS: [Manager; 3] = [
        Manager {
            name: "npm",
            dirs: &["/root/.npm", "/home/node/.npm"],
            installs: |c| {
                matches!(c.base_name(), "npm")
                    && c.args()
                        .iter()
                        .find(|a| !a.starts_with('-'))
                        .is_some_and(|a| matches!(a.as_str(), "install" | "i" | "ci"))
            },
            cleans: |c| {
                c.base_name() == "npm"
                    && c.args().iter().any(|a| a == "cache")
                    && c.args().iter().any(|a| a == "clean")
            },
        },
        Manager {
            name: "yarn",
            dirs: &["/usr/local/share/.cache/yarn", "/root/.cache/yarn"],
            installs: |c| {
                c.base_name() == "yarn"
                    && c.args()
                        .iter()
                        .find(|a| !a.starts_with('-'))
                        .is_none_or(|a| matches!(a.as_str(), "install" | "add"))
            },
            cleans: |c| {
                c.base_name() == "yarn"
                    && c.args().iter().any(|a| a == "cache")
                    && c.args().iter().any(|a| a == "clean")
            },
        },
        Manager {
            name: "composer",
            dirs: &["/root/.composer/cache", "/tmp/composer-cache", "/tmp/cache"],
            installs: |c| {
                c.base_name().starts_with("composer")
                    && c.args()
                        .iter()
                        .find(|a| !a.starts_with('-'))
                        .is_some_and(|a| matches!(a.as_str(), "install" | "require" | "update"))
            },
            cleans: |c| {
                c.base_name().starts_with("composer")
                    && c.args()
                        .iter()
                        .any(|a| matches!(a.as_str(), "clear-cache" | "clearcache" | "cc"))
            },
        },
    ];
    for m in &MANAGERS {
        let cmds: Vec<Command> = script.commands.iter().map(Command::unwrapped).collect();
        let Some(install) = cmds.iter().find(|c| (m.installs)(c)) else {
            continue;
        };
        let cache_off = install.assigns.iter().any(|a| {
            a.starts_with("COMPOSER_CACHE_DIR=/dev/null")
                || a.starts_with("YARN_CACHE_FOLDER=")
                || a.starts_with("npm_config_cache=")
        });
        let cleaned = cmds.iter().any(|c| (m.cleans)(c))
            || cmds.iter().any(|c| {
                c.base_name() == "rm"
                    && c.args().iter().any(|a| {
                        m.dirs.iter().any(|d| {
                            a.starts_with(d)
                                || a.starts_with("~/.npm")
                                || a.starts_with("$HOME/.npm")
                        })
                    })
            });
        let mounted = caches.iter().any(|c| {
            m.dirs.iter().any(|d| {
                d.starts_with(c.as_str())
                    || c.ends_with("/.npm")
                    || c.contains("yarn")
                    || c.contains("composer")
            })
        });
        if cache_off || cleaned || mounted {
            continue;
        }
        cx.report(
            "PackageCacheInLayer",
            super::word_span(node, m.name),
            format!("{} leaves its download cache ({}) in the layer of the built image", m.name, m.dirs[0]),
            format!("mount a cache there (RUN --mount=type=cache,target={} ...), or clean it in the same RUN", m.dirs[0]),
        );
    }
}
