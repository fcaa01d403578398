//! BuildKit's build checks, with its rule names, messages and semantics (its Dockerfile
//! frontend's linter and `dockerfile2llb` dispatch): one walk over the instructions that
//! keeps each stage's environment as BuildKit's dispatch does, so `UndefinedVar` sees
//! exactly the variables a build would have, including the base image's ENV when the caller
//! supplied its config.

use std::collections::{HashMap, HashSet};

use super::{Cx, prev_comments, var_span};
use crate::parser::{Node, Span};
use crate::plan::{BaseConfigs, NON_ENV_ARGS, Plan, Platform};
use crate::shell::Lexer;

/// The search path BuildKit gives a stage whose base image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parts of a variable name that mark it as a secret, and parts that clear it (BuildKit's
/// lists, matched between underscores, case-insensitively).
const SECRET_TOKENS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const ALLOW_TOKENS: [&str; 3] = ["public", "file", "version"];

/// What a stage has at a point of the walk.
#[derive(Debug, Clone, Default)]
struct Stage {
    /// The name after AS, lower-cased (as BuildKit keeps it).
    name: Option<String>,
    /// The step environment: the base's ENV, then ENV and ARG values in order.
    env: HashMap<String, String>,
    /// ARGs declared in the stage (with or without a value): never "undefined".
    args: HashSet<String>,
    /// Whether the base's environment is known (a base image without a config is not).
    env_known: bool,
    /// The base image whose config is missing, when it is.
    unknown_base: Option<String>,
    /// The image the stage (or the stage it is built on) starts from.
    base_image: Option<String>,
    /// A RUN or COPY of the stage may have added users (useradd, COPY to /etc).
    makes_users: bool,
    /// A SHELL was set (here or in the base): CMD/ENTRYPOINT shell forms use it.
    shell_set: bool,
    /// An absolute WORKDIR was set in the build.
    workdir_set: bool,
    cmd: Option<Span>,
    entrypoint: Option<Span>,
    healthcheck: Option<Span>,
}

pub(super) fn run(cx: &mut Cx<'_>, bases: &dyn BaseConfigs) {
    let parsed = cx.parsed;
    for w in parsed.warnings() {
        cx.report(
            "NoEmptyContinuation",
            w.span,
            "Empty continuation line".into(),
            "remove the empty line, or end the line before it without the escape character".into(),
        );
    }
    let first_from = parsed
        .instructions
        .iter()
        .position(|n| n.keyword_lower == "from")
        .unwrap_or(parsed.instructions.len());
    instruction_casing(cx, &parsed.instructions[first_from..]);
    let lexer = Lexer::new(parsed.escape);
    let opts = &cx.options.plan;

    // Global scope: the predefined platform arguments, then the ARGs before the first FROM.
    let tp = &opts.target_platform;
    let bp = &opts.build_platform;
    let mut global: HashMap<String, String> = tp
        .args("TARGET")
        .into_iter()
        .chain(bp.args("BUILD"))
        .collect();
    // Defaults only, without --build-arg (what InvalidDefaultArgInFrom judges).
    let mut defaults = global.clone();
    let mut declared: HashSet<String> = HashSet::new();
    for node in &parsed.instructions[..first_from] {
        if node.keyword_lower != "arg" {
            continue;
        }
        definition_description(cx, node, "ARG", &arg_names(node));
        for word in &node.args {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word.as_str(), None),
            };
            declared.insert(key.to_string());
            if let Some(v) = value {
                if let Ok(e) = lexer.process_word(v, &defaults) {
                    defaults.insert(key.to_string(), e.value);
                }
                if let Ok(e) = lexer.process_word(v, &global) {
                    global.insert(key.to_string(), e.value);
                }
            }
            if let Some(v) = opts.build_args.get(key) {
                global.insert(key.to_string(), v.clone());
            }
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut st: Option<Stage> = None;
    for node in &parsed.instructions[first_from..] {
        if node.keyword_lower == "from" {
            if let Some(done) = st.take() {
                finish_stage(&done, &mut stages);
            }
            let stage = from(
                cx, node, &lexer, &global, &defaults, &declared, &stages, &mut names, bases,
            );
            st = Some(stage);
            continue;
        }
        let Some(stage) = st.as_mut() else { continue };
        instruction(cx, node, &lexer, stage, &global, bases);
    }
    if let Some(done) = st.take() {
        finish_stage(&done, &mut stages);
    }
}

fn finish_stage(stage: &Stage, stages: &mut Vec<Stage>) {
    stages.push(stage.clone());
}

fn arg_names(node: &Node) -> Vec<String> {
    node.args
        .iter()
        .map(|w| w.split_once('=').map_or(w.as_str(), |(k, _)| k).to_string())
        .collect()
}

/// InvalidDefinitionDescription (experimental): the comment right above `FROM ... AS name`
/// or `ARG name` should start with the name.
fn definition_description(cx: &mut Cx<'_>, node: &Node, what: &str, keys: &[String]) {
    if keys.is_empty() || !cx.runs("InvalidDefinitionDescription") {
        return;
    }
    let Some(last) = prev_comments(&cx.lines, node).last().copied() else {
        return;
    };
    if last.starts_with("check=") || last.starts_with("syntax=") || last.starts_with("escape=") {
        return;
    }
    let first = last.split(' ').next().unwrap_or("");
    if keys.iter().any(|k| k == first) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        keys[0].as_str()
    };
    cx.report(
        "InvalidDefinitionDescription",
        node.span,
        format!("Comment for {what} should follow the format: `# {example} <description>`"),
        format!(
            "start the comment with `{example} `, or put an empty line between it and the {what}"
        ),
    );
}

/// ConsistentInstructionCasing: the keywords of the stages (FROM onwards) against the
/// majority casing.
fn instruction_casing(cx: &mut Cx<'_>, nodes: &[Node]) {
    let (mut lower, mut upper) = (0usize, 0usize);
    for n in nodes {
        if n.keyword == n.keyword.to_ascii_lowercase() {
            lower += 1;
        } else if n.keyword == n.keyword.to_ascii_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for n in nodes {
        let wrong = if majority_lower {
            (n.keyword != n.keyword.to_ascii_lowercase()).then_some("lowercase")
        } else {
            (n.keyword != n.keyword.to_ascii_uppercase()).then_some("uppercase")
        };
        if let Some(casing) = wrong {
            let fixed = if majority_lower {
                n.keyword.to_ascii_lowercase()
            } else {
                n.keyword.to_ascii_uppercase()
            };
            cx.report(
                "ConsistentInstructionCasing",
                n.keyword_span,
                format!(
                    "Command '{}' should match the case of the command majority ({casing})",
                    n.keyword
                ),
                format!("write `{fixed}`"),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn from(
    cx: &mut Cx<'_>,
    node: &Node,
    lexer: &Lexer,
    global: &HashMap<String, String>,
    defaults: &HashMap<String, String>,
    declared: &HashSet<String>,
    stages: &[Stage],
    names: &mut HashSet<String>,
    bases: &dyn BaseConfigs,
) -> Stage {
    let base_word = node.args.first().cloned().unwrap_or_default();
    let as_word = node.args.get(1);
    let name = node.args.get(2);
    if let (Some(as_word), Some(name)) = (as_word, name) {
        if *name != name.to_lowercase() {
            cx.report(
                "StageNameCasing",
                node.span,
                format!("Stage name '{name}' should be lowercase"),
                format!("name the stage `{}`", name.to_lowercase()),
            );
        }
        let kw = &node.keyword;
        let kw_lower = *kw == kw.to_lowercase();
        let kw_upper = *kw == kw.to_uppercase();
        let mismatch = (kw_lower && *as_word != as_word.to_lowercase())
            || (!kw_lower && kw_upper && *as_word != as_word.to_uppercase());
        if mismatch {
            cx.report(
                "FromAsCasing",
                node.span,
                format!("'{as_word}' and '{kw}' keywords' casing do not match"),
                format!("write `{}`", if kw_lower { "as" } else { "AS" }),
            );
        }
        definition_description(cx, node, "FROM", std::slice::from_ref(name));
    }
    let lower_name = name.map(|n| n.to_lowercase());
    if let Some(n) = &lower_name {
        if n == "context" || n == "scratch" {
            cx.report(
                "ReservedStageName",
                node.span,
                format!("Stage name should not use the same name as reserved stage \"{n}\""),
                "choose another stage name".into(),
            );
        }
        if !names.insert(n.clone()) {
            cx.report(
                "DuplicateStageName",
                node.span,
                format!("Duplicate stage name \"{n}\", stage names should be unique"),
                "rename one of the stages".into(),
            );
        }
    }
    let is_declared = |k: &str| declared.contains(k) || global.contains_key(k);
    let undeclared_in_from = |cx: &mut Cx<'_>, unmatched: &std::collections::BTreeSet<String>| {
        for arg in unmatched {
            if is_declared(arg) {
                continue;
            }
            let candidates: Vec<&str> = declared
                .iter()
                .map(String::as_str)
                .chain(global.keys().map(String::as_str))
                .collect();
            let suggest = crate::suggest::closest(arg, candidates);
            let mut msg = format!("FROM argument '{arg}' is not declared");
            if let Some(s) = suggest {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            cx.report(
                "UndefinedArgInFrom",
                node.span,
                msg,
                format!("declare `ARG {arg}` before the first FROM"),
            );
        }
    };
    let base = lexer.process_word(&base_word, global).ok();
    if let Some(e) = &base {
        undeclared_in_from(cx, &e.vars.unmatched);
    }
    let mut platform = cx.options.plan.target_platform.clone();
    if let Some(flag) = node.flags.iter().find(|f| f.name() == "platform") {
        let v = flag.value().unwrap_or("");
        if let Ok(m) = lexer.process_word(v, global) {
            undeclared_in_from(cx, &m.vars.unmatched);
            let only_target = m.vars.matched.len() == 1
                && m.vars.unmatched.is_empty()
                && m.vars.matched.contains("TARGETPLATFORM");
            if only_target && global.get("TARGETPLATFORM") == Some(&m.value) {
                cx.report(
                    "RedundantTargetPlatform",
                    node.span,
                    format!("Setting platform to predefined {v} in FROM is redundant as this is the default behavior"),
                    "remove the --platform flag".into(),
                );
            }
            if m.vars.matched.is_empty()
                && m.vars.unmatched.is_empty()
                && let Ok(p) = parse_platform(&m.value)
            {
                let stage_name = name.map_or("", String::as_str);
                if !stage_name.contains(&p.os) && !stage_name.contains(&p.architecture) {
                    cx.report(
                        "FromPlatformFlagConstDisallowed",
                        node.span,
                        format!("FROM --platform flag should not use constant value \"{}\"", m.value),
                        "use a variable (--platform=$BUILDPLATFORM), or name the stage after the platform".into(),
                    );
                }
            }
            if let Ok(p) = Platform::parse(&m.value) {
                platform = p;
            }
        }
    }
    if let Ok(e) = lexer.process_word(&base_word, defaults)
        && !valid_reference(&e.value)
    {
        cx.report(
            "InvalidDefaultArgInFrom",
            node.span,
            format!(
                "Default value for ARG {base_word} results in empty or invalid base image name"
            ),
            "give the ARG a default that names an image".into(),
        );
    }

    // The stage's starting state.
    let reference = base.map(|e| e.value).unwrap_or_default();
    let lower_ref = reference.to_lowercase();
    let mut stage = if let Some(parent) = stages
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(&lower_ref))
    {
        Stage {
            env: parent.env.clone(),
            args: parent.args.clone(),
            env_known: parent.env_known,
            unknown_base: parent.unknown_base.clone(),
            base_image: parent.base_image.clone(),
            makes_users: parent.makes_users,
            shell_set: parent.shell_set,
            workdir_set: parent.workdir_set,
            ..Stage::default()
        }
    } else if lower_ref == "scratch" {
        Stage {
            env_known: true,
            ..Stage::default()
        }
    } else {
        if let Some(actual) = bases.base_platform(&reference)
            && (actual.os != platform.os || actual.architecture != platform.architecture)
        {
            cx.report(
                "InvalidBaseImagePlatform",
                node.span,
                format!(
                    "Base image {reference} was pulled with platform \"{actual}\", expected \"{platform}\" for current build"
                ),
                format!(
                    "pull the image for {platform} (rbuild pull --platform {platform} {reference}), or set FROM --platform"
                ),
            );
        }
        match bases.base_config(&reference, &platform) {
            Some(config) => {
                let mut s = Stage {
                    base_image: Some(reference.clone()),
                    env_known: true,
                    shell_set: !config.shell.is_empty(),
                    ..Stage::default()
                };
                for kv in &config.env {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    s.env.insert(k.to_string(), v.to_string());
                }
                s
            }
            None => Stage {
                unknown_base: Some(reference.clone()),
                base_image: Some(reference.clone()),
                ..Stage::default()
            },
        }
    };
    stage
        .env
        .entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    stage.name = lower_name;
    stage
}

/// containerd's platform syntax, as far as FROM --platform constants go: `os`, `os/arch`,
/// `os/arch/variant`.
fn parse_platform(value: &str) -> Result<Platform, String> {
    if !value.contains('/')
        && !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Ok(Platform {
            os: value.to_lowercase(),
            architecture: String::new(),
            variant: String::new(),
        });
    }
    Platform::parse(value).map_err(|e| e.to_string())
}

/// Whether `s` is an image reference docker accepts: `[host[:port]/]path[:tag][@digest]`,
/// path components lower case.
pub(super) fn valid_reference(s: &str) -> bool {
    if s.is_empty() || s.len() > 4096 {
        return false;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return false;
        };
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return false;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let host = parts[0];
        if host.contains('.')
            || host.contains(':')
            || host == "localhost"
            || host.bytes().any(|b| b.is_ascii_uppercase())
        {
            let ok = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !ok {
                return false;
            }
            parts.remove(0);
        }
    }
    !parts.is_empty()
        && parts.iter().all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
                && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
                && b.iter()
                    .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(&x))
        })
}

/// Expands `word` in the stage's environment and reports the variables it finds unset
/// (UndefinedVar), unless the stage's environment is not fully known.
fn expand(
    cx: &mut Cx<'_>,
    node: &Node,
    lexer: &Lexer,
    stage: &Stage,
    word: &str,
) -> Option<String> {
    let e = lexer.process_word(word, &stage.env).ok()?;
    if !stage.env_known {
        let unsure = e
            .vars
            .unmatched
            .iter()
            .any(|v| !stage.args.contains(v) && !NON_ENV_ARGS.contains(&v.as_str()));
        if unsure && let Some(base) = &stage.unknown_base {
            let note = format!(
                "UndefinedVar: line {}: the config of base image {base} is not in the store, so its ENV is unknown and the line's variables were not checked (pull the image to check them)",
                node.span.start.line
            );
            cx.limits.push(note);
        }
    } else {
        for var in &e.vars.unmatched {
            if stage.args.contains(var) || NON_ENV_ARGS.contains(&var.as_str()) {
                continue;
            }
            let suggest = crate::suggest::closest(var, stage.env.keys().map(String::as_str));
            let mut msg = format!("Usage of undefined variable '${var}'");
            if let Some(s) = suggest {
                msg.push_str(&format!(" (did you mean ${s}?)"));
            }
            let fix = match suggest {
                Some(s) => {
                    format!("use ${s}, or declare `ARG {var}` or `ENV {var}=...` before this line")
                }
                None => format!("declare `ARG {var}` or `ENV {var}=...` before this line"),
            };
            cx.report("UndefinedVar", var_span(node, var), msg, fix);
        }
    }
    Some(e.value)
}

fn instruction(
    cx: &mut Cx<'_>,
    node: &Node,
    lexer: &Lexer,
    stage: &mut Stage,
    global: &HashMap<String, String>,
    bases: &dyn BaseConfigs,
) {
    match &*node.keyword_lower {
        "env" => {
            let legacy = node.args.get(2).is_some_and(String::is_empty);
            if legacy {
                cx.report(
                    "LegacyKeyValueFormat",
                    node.span,
                    format!("\"{0} key=value\" should be used instead of legacy \"{0} key value\" format", node.keyword),
                    format!("write `{} {}=...`", node.keyword, node.args[0]),
                );
            }
            let mut set = Vec::new();
            for kv in node.args.chunks(3) {
                secret_key(cx, node, "ENV", &kv[0]);
                let value = expand(cx, node, lexer, stage, kv.get(1).map_or("", String::as_str));
                set.push((kv[0].clone(), value.unwrap_or_default()));
            }
            for (k, v) in set {
                stage.env.insert(k, v);
            }
        }
        "label" => {
            if node.args.get(2).is_some_and(String::is_empty) {
                cx.report(
                    "LegacyKeyValueFormat",
                    node.span,
                    format!("\"{0} key=value\" should be used instead of legacy \"{0} key value\" format", node.keyword),
                    format!("write `{} {}=...`", node.keyword, node.args[0]),
                );
            }
            for kv in node.args.chunks(3) {
                expand(cx, node, lexer, stage, &kv[0]);
                expand(cx, node, lexer, stage, kv.get(1).map_or("", String::as_str));
            }
        }
        "arg" => {
            definition_description(cx, node, "ARG", &arg_names(node));
            for word in &node.args {
                let (key, value) = match word.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (word.as_str(), None),
                };
                secret_key(cx, node, "ARG", key);
                let given = cx.options.plan.build_args.get(key).cloned();
                let v = match (given, value) {
                    (Some(g), _) => Some(g),
                    (None, Some(v)) => expand(cx, node, lexer, stage, v),
                    (None, None) => global.get(key).cloned(),
                };
                if let Some(v) = v
                    && !NON_ENV_ARGS.contains(&key)
                {
                    stage.env.insert(key.to_string(), v);
                }
                stage.args.insert(key.to_string());
            }
        }
        "copy" | "add" => {
            for flag in &node.flags {
                if matches!(flag.name(), "chown" | "chmod") {
                    expand(cx, node, lexer, stage, flag.value().unwrap_or(""));
                }
            }
            let mut words = Vec::with_capacity(node.args.len());
            for word in &node.args {
                words.push(expand(cx, node, lexer, stage, word).unwrap_or_default());
            }
            if words.last().is_some_and(|d| d.starts_with("/etc")) {
                stage.makes_users = true;
            }
            words.pop();
            if !node.flags.iter().any(|f| f.name() == "from") {
                super::resolved::copy_ignored(cx, node, &words);
                super::resolved::secret_files(cx, node, &words);
            }
        }
        "workdir" => {
            let path = node.args.first().map_or("", String::as_str);
            let v = expand(cx, node, lexer, stage, path).unwrap_or_default();
            if !stage.workdir_set && !v.starts_with('/') && !v.is_empty() {
                cx.report(
                    "WorkdirRelativePath",
                    node.span,
                    format!("Relative workdir \"{path}\" can have unexpected results if the base image changes"),
                    format!("use an absolute path (WORKDIR /{})", v.trim_start_matches("./")),
                );
            }
            stage.workdir_set = true;
        }
        "stopsignal" => {
            if let Some(w) = node.args.first() {
                expand(cx, node, lexer, stage, w);
            }
        }
        "user" => {
            let Some(w) = node.args.first() else { return };
            let Some(user) = expand(cx, node, lexer, stage, w) else {
                return;
            };
            if !stage.makes_users
                && let Some(base) = stage.base_image.clone()
            {
                super::resolved::unknown_user(cx, node, &user, bases, &base);
            }
        }
        "run" => {
            // Every command that makes users or groups has `user` or `group` in its name.
            let names_users = |t: &str| t.contains("user") || t.contains("group");
            let may_make_users = names_users(&node.original)
                || node.heredocs.iter().any(|h| names_users(&h.content));
            if !stage.makes_users
                && may_make_users
                && let Some(script) = super::practice::run_script(node)
            {
                stage.makes_users = script.commands.iter().any(|c| {
                    matches!(
                        c.unwrapped().base_name(),
                        "useradd" | "adduser" | "groupadd" | "addgroup" | "usermod" | "groupmod"
                    )
                });
            }
        }
        "volume" => {
            for w in &node.args {
                expand(cx, node, lexer, stage, w);
            }
        }
        "expose" => {
            for w in &node.args {
                let Some(port) = expand(cx, node, lexer, stage, w) else {
                    continue;
                };
                expose(cx, node, &port);
            }
        }
        "shell" => stage.shell_set = true,
        "cmd" | "entrypoint" => {
            let slot = if node.keyword_lower == "cmd" {
                &mut stage.cmd
            } else {
                &mut stage.entrypoint
            };
            let previous = slot.replace(node.span);
            used_once(cx, node, previous);
            if !node.json && !stage.shell_set {
                cx.report(
                    "JSONArgsRecommended",
                    node.span,
                    format!("JSON arguments recommended for {} to prevent unintended behavior related to OS signals", node.keyword),
                    format!("write {} [\"executable\", \"arg\"...], or `SHELL` the shell to use", node.keyword),
                );
            }
        }
        "healthcheck" => {
            let previous = stage.healthcheck.replace(node.span);
            used_once(cx, node, previous);
        }
        "maintainer" => cx.report(
            "MaintainerDeprecated",
            node.span,
            "Maintainer instruction is deprecated in favor of using label".into(),
            format!(
                "write LABEL org.opencontainers.image.authors=\"{}\"",
                node.args.first().map_or("", String::as_str)
            ),
        ),
        _ => {}
    }
}

/// MultipleInstructionsDisallowed: reported at the earlier instruction, which is ignored.
fn used_once(cx: &mut Cx<'_>, node: &Node, previous: Option<Span>) {
    if let Some(span) = previous {
        cx.report(
            "MultipleInstructionsDisallowed",
            span,
            format!("Multiple {} instructions should not be used in the same stage because only the last one will be used", node.keyword),
            format!("remove this {}; the one on line {} wins", node.keyword, node.span.start.line),
        );
    }
}

/// ExposeProtoCasing and ExposeInvalidFormat on one expanded port spec.
fn expose(cx: &mut Cx<'_>, node: &Node, raw: &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host, container) = match parts.len() {
        1 => ("", "", parts[0]),
        2 => ("", parts[0], parts[1]),
        3 => (parts[0], parts[1], parts[2]),
        n => (
            raw.rsplitn(3, ':').nth(2).unwrap_or(""),
            parts[n - 2],
            parts[n - 1],
        ),
    };
    let proto = container.split_once('/').map_or("", |(_, p)| p);
    if proto != proto.to_lowercase() {
        cx.report(
            "ExposeProtoCasing",
            node.span,
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
            format!("write {}", raw.to_lowercase()),
        );
    }
    if !ip.is_empty() || !host.is_empty() {
        cx.report(
            "ExposeInvalidFormat",
            node.span,
            format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
            format!("expose the container port only (EXPOSE {container}); publish it with `run -p`"),
        );
    }
}

/// SecretsUsedInArgOrEnv on one ARG or ENV name.
fn secret_key(cx: &mut Cx<'_>, node: &Node, instruction: &str, key: &str) {
    let has = |tokens: &[&str]| {
        key.split('_')
            .any(|part| tokens.iter().any(|t| t.eq_ignore_ascii_case(part)))
    };
    if has(&SECRET_TOKENS) && !has(&ALLOW_TOKENS) {
        cx.report(
            "SecretsUsedInArgOrEnv",
            node.span,
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({instruction} \"{key}\")"
            ),
            "pass it with a secret mount (RUN --mount=type=secret,id=...) instead".into(),
        );
    }
}

/// UnusedStage: stages the plan does not build for the target.
pub(super) fn unused_stages(cx: &mut Cx<'_>, plan: &Plan) {
    let target = plan.target_stage().label();
    for stage in &plan.stages {
        if !stage.built {
            cx.report(
                "UnusedStage",
                stage.span,
                format!(
                    "Stage {} is not used by target {target} and is not built",
                    stage.label()
                ),
                "remove the stage, or build it with --target".into(),
            );
        }
    }
}
