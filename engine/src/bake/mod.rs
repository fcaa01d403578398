//! `rbuild bake`: the targets of compose files and bake files (HCL or JSON), resolved as
//! docker buildx bake resolves them, then built side by side in one process ([`run`]).
//!
//! 1. The files are read in order ([`default_files`] when none is named); a compose file's
//!    services with a `build:` section become targets ([`compose`]), a bake file's `target`
//!    and `group` blocks are evaluated with its variables and functions ([`hclfile`]). A
//!    target defined again in a later file is merged into the earlier one, field by field as
//!    buildx merges: maps key by key, `tags`/`platforms`/`output`/`cache-to` replaced,
//!    `secret`/`ssh`/`cache-from` appended.
//! 2. The names asked for (default: the group `default`, else every compose service) are
//!    expanded through their groups; each target takes its `inherits` parents first (a
//!    cycle is an error naming it), then the `--set` overrides, then the defaults (context
//!    `.`, dockerfile `Dockerfile`) ([`resolve`]).
//! 3. [`Definition`] serializes to buildx's `--print` shape:
//!    `{"group": {NAME: {"targets": [...]}}, "target": {NAME: {...}}}`.

pub mod compose;
mod funcs;
pub mod hclfile;
pub mod run;

pub use funcs::STDLIB;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why bake files could not be read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No file was named and none of the default names exists.
    #[error("no bake file in {dir}: looked for {looked}")]
    NoFile {
        /// The directory searched.
        dir: PathBuf,
        /// The names looked for.
        looked: String,
    },
    /// A compose file is not valid.
    #[error(transparent)]
    Compose(#[from] compose::ComposeError),
    /// An HCL or JSON bake file is not valid.
    #[error(transparent)]
    Hcl(#[from] hclfile::HclError),
    /// A name on the command line (or in a group) is neither a target nor a group.
    #[error("no target or group named {name:?}; known: {known}")]
    UnknownTarget {
        /// The name.
        name: String,
        /// The targets and groups defined.
        known: String,
    },
    /// Targets inherit from each other in a loop.
    #[error("inherits cycle: {chain}")]
    InheritsCycle {
        /// The targets of the loop, `a -> b -> a`.
        chain: String,
    },
    /// Targets name each other as `target:` contexts in a loop.
    #[error("target: context cycle: {chain}")]
    ContextCycle {
        /// The targets of the loop, `a -> b -> a`.
        chain: String,
    },
    /// Groups name each other in a loop.
    #[error("group cycle: {chain}")]
    GroupCycle {
        /// The groups of the loop.
        chain: String,
    },
    /// A `--set` is not `TARGET.KEY=VALUE` or names a key that cannot be set.
    #[error("invalid --set {spec:?}: {reason}")]
    BadOverride {
        /// The override.
        spec: String,
        /// Why.
        reason: String,
    },
    /// A `--set` target pattern matches no target being built.
    #[error("--set {spec:?} matches no target of this bake")]
    OverrideMatchesNothing {
        /// The override.
        spec: String,
    },
}

/// A target: what one image build needs, with buildx's key names. A field left unset
/// (`None`, empty) takes what a parent or an earlier file gave, else the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Target {
    /// A description (shown by `--print` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The targets whose fields this one starts from, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherits: Vec<String>,
    /// The build context: a directory (relative to the working directory) or a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Named contexts: `NAME = DIR | docker-image://REF | oci-layout://DIR | target:TARGET`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub contexts: BTreeMap<String, String>,
    /// The Dockerfile, relative to the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The Dockerfile's text, instead of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    /// Build arguments.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub args: BTreeMap<String, String>,
    /// Image labels.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub labels: BTreeMap<String, String>,
    /// Image names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Caches to import (as `--cache-from`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// Caches to export (as `--cache-to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_to: Option<Vec<String>>,
    /// The stage to build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Secrets (as `--secret`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret: Vec<String>,
    /// SSH agent sockets (as `--ssh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<String>,
    /// Target platforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    /// Outputs (as `--output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<String>>,
    /// Look base images up in their registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<bool>,
    /// Use no cached result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cache: Option<bool>,
    /// The network of RUN steps (`default`, `none`, `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The size of `/dev/shm` in RUN steps (read, not applied: steps get the sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    /// Extra `/etc/hosts` entries of RUN steps, host name to address.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_map"
    )]
    pub extra_hosts: BTreeMap<String, String>,
    /// Attestations (as `--attest`: `type=sbom`, `type=provenance,mode=max`); a later entry
    /// of a type replaces an earlier one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attest: Vec<String>,
}

/// A map whose values may be strings, numbers or booleans (all kept as text); null values
/// are left out, as buildx leaves them out.
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Option<Scalar>>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?.text())))
        .collect())
}

/// A scalar value of a bake or compose file, kept as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    /// A string.
    Text(String),
    /// A whole number.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl Scalar {
    pub(crate) fn text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl Target {
    /// Takes every field `later` sets, as buildx merges a target defined twice (and a
    /// child over its parents).
    pub fn merge(&mut self, later: &Target) {
        macro_rules! take {
            ($($f:ident),*) => {$(
                if later.$f.is_some() {
                    self.$f = later.$f.clone();
                }
            )*};
        }
        take!(
            description,
            context,
            dockerfile,
            dockerfile_inline,
            tags,
            cache_to,
            target,
            platforms,
            output,
            pull,
            no_cache,
            network,
            shm_size
        );
        for (map, more) in [
            (&mut self.contexts, &later.contexts),
            (&mut self.args, &later.args),
            (&mut self.labels, &later.labels),
            (&mut self.extra_hosts, &later.extra_hosts),
        ] {
            map.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for (list, more) in [
            (&mut self.secret, &later.secret),
            (&mut self.ssh, &later.ssh),
            (&mut self.cache_from, &later.cache_from),
            (&mut self.attest, &later.attest),
        ] {
            for item in more {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        if !later.inherits.is_empty() {
            self.inherits = later.inherits.clone();
        }
    }

    /// The targets this one needs built first: its `target:NAME` contexts, by context name.
    pub fn target_contexts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.contexts
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.strip_prefix("target:")?)))
    }
}

/// A group: names of targets and groups built together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// A description (shown by `--print` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The targets and groups.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// What bake files define (before [`resolve`]) or what a bake builds (after it), in the
/// shape `--print` writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Definition {
    /// The groups.
    pub group: BTreeMap<String, Group>,
    /// The targets.
    pub target: BTreeMap<String, Target>,
}

impl Definition {
    /// Adds the targets and groups of a later file: a target defined twice is merged, a
    /// group's list replaced.
    pub fn merge(&mut self, later: Definition) {
        for (name, t) in later.target {
            match self.target.get_mut(&name) {
                Some(old) => old.merge(&t),
                None => {
                    self.target.insert(name, t);
                }
            }
        }
        self.group.extend(later.group);
    }
}

/// The file names looked for when no `-f` is given, in buildx's order: compose files (and
/// their overrides), then bake files.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
    "docker-bake.json",
    "docker-bake.hcl",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
];

/// The default files that exist in `dir`, in [`DEFAULT_FILES`]' order.
pub fn default_files(dir: &Path) -> Result<Vec<PathBuf>, BakeError> {
    let found: Vec<PathBuf> = DEFAULT_FILES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if found.is_empty() {
        return Err(BakeError::NoFile {
            dir: dir.to_path_buf(),
            looked: DEFAULT_FILES.join(", "),
        });
    }
    Ok(found)
}

/// The kind of a bake file, by its name: compose (`.yaml`, `.yml`), JSON, else HCL.
fn is_compose(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Reads `files` in order (later ones override earlier ones); `env` gives the variables of
/// the environment (`${VAR}` in compose files, bake `variable` overrides).
pub fn load(files: &[PathBuf], env: &BTreeMap<String, String>) -> Result<Definition, BakeError> {
    let mut def = Definition::default();
    let mut hcl_files = Vec::new();
    let mut compose_services = BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| BakeError::Read {
            path: path.clone(),
            source,
        })?;
        if is_compose(path) {
            let loaded = compose::load(path, &text, env)?;
            compose_services.extend(loaded.target.keys().cloned());
            def.merge(loaded);
        } else {
            hcl_files.push((path.clone(), text));
        }
    }
    if !hcl_files.is_empty() {
        def.merge(hclfile::load(&hcl_files, env)?);
    }
    // As buildx: compose services make up the default group unless a file defines one.
    if !compose_services.is_empty() && !def.group.contains_key("default") {
        def.group.insert(
            "default".into(),
            Group {
                description: None,
                targets: compose_services.into_iter().collect(),
            },
        );
    }
    Ok(def)
}

/// The targets `names` stand for (default: `default`), groups expanded, each resolved
/// (parents, `overrides`, defaults), and the groups they came through; the group `default`
/// lists the names asked for, as buildx prints it.
pub fn resolve(
    def: &Definition,
    names: &[String],
    overrides: &[String],
) -> Result<Definition, BakeError> {
    let asked: Vec<String> = if names.is_empty() {
        vec!["default".to_string()]
    } else {
        names.iter().map(|n| sanitize(n)).collect()
    };
    let mut out = Definition::default();
    let mut selected = Vec::new();
    for name in &asked {
        expand(def, name, &mut Vec::new(), &mut selected, &mut out.group)?;
    }
    let overrides = overrides
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    for o in &overrides {
        if !selected.iter().any(|t| o.matches(t)) {
            return Err(BakeError::OverrideMatchesNothing {
                spec: o.spec.clone(),
            });
        }
    }
    // The targets asked for, then those their `target:` contexts name.
    let mut queue = selected.clone();
    while let Some(name) = queue.pop() {
        if out.target.contains_key(&name) {
            continue;
        }
        let mut t = inherited(def, &name, &mut Vec::new())?;
        for o in overrides.iter().filter(|o| o.matches(&name)) {
            o.apply(&mut t)?;
        }
        t.inherits.clear();
        t.context.get_or_insert_with(|| ".".into());
        if t.dockerfile_inline.is_none() {
            t.dockerfile.get_or_insert_with(|| "Dockerfile".into());
        }
        for (_, dep) in t.target_contexts() {
            let dep = sanitize(dep);
            if !def.target.contains_key(&dep) {
                return Err(unknown(def, &dep));
            }
            queue.push(dep);
        }
        out.target.insert(name, t);
    }
    for name in out.target.keys() {
        context_cycle(&out, name, &mut Vec::new())?;
    }
    let default = out.group.entry("default".into()).or_default();
    let mut listed: Vec<String> = asked.into_iter().filter(|n| n != "default").collect();
    if listed.is_empty() {
        listed = default.targets.clone();
    }
    listed.sort();
    listed.dedup();
    default.targets = listed;
    Ok(out)
}

/// Whether `name` may name a target or a group (as buildx: ASCII letters, digits, `_`, `-`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What [`valid_name`] allows, for error messages.
pub const VALID_NAME: &str = "only letters, digits, '_' and '-' are allowed";

/// Target names as buildx keeps them: `.` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.replace('.', "_")
}

/// Adds the targets `name` stands for to `selected` (a target itself, or a group's members),
/// recording the groups passed in `groups`.
fn expand(
    def: &Definition,
    name: &str,
    stack: &mut Vec<String>,
    selected: &mut Vec<String>,
    groups: &mut BTreeMap<String, Group>,
) -> Result<(), BakeError> {
    if let Some(group) = def.group.get(name) {
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_string());
            return Err(BakeError::GroupCycle {
                chain: stack.join(" -> "),
            });
        }
        groups.insert(name.to_string(), group.clone());
        stack.push(name.to_string());
        for member in &group.targets {
            expand(def, &sanitize(member), stack, selected, groups)?;
        }
        stack.pop();
        return Ok(());
    }
    if def.target.contains_key(name) {
        if !selected.iter().any(|s| s == name) {
            selected.push(name.to_string());
        }
        return Ok(());
    }
    Err(unknown(def, name))
}

fn unknown(def: &Definition, name: &str) -> BakeError {
    let mut known: Vec<&str> = def
        .target
        .keys()
        .chain(def.group.keys())
        .map(String::as_str)
        .collect();
    known.sort_unstable();
    known.dedup();
    BakeError::UnknownTarget {
        name: name.to_string(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    }
}

/// Fails when the `target:` contexts of `name` lead back to a target on `stack`.
fn context_cycle(def: &Definition, name: &str, stack: &mut Vec<String>) -> Result<(), BakeError> {
    if stack.iter().any(|s| s == name) {
        stack.push(name.to_string());
        return Err(BakeError::ContextCycle {
            chain: stack.join(" -> "),
        });
    }
    stack.push(name.to_string());
    if let Some(t) = def.target.get(name) {
        for (_, dep) in t.target_contexts() {
            context_cycle(def, &sanitize(dep), stack)?;
        }
    }
    stack.pop();
    Ok(())
}

/// Target `name` with its parents' fields under its own.
fn inherited(def: &Definition, name: &str, stack: &mut Vec<String>) -> Result<Target, BakeError> {
    if stack.iter().any(|s| s == name) {
        stack.push(name.to_string());
        return Err(BakeError::InheritsCycle {
            chain: stack.join(" -> "),
        });
    }
    let own = def.target.get(name).ok_or_else(|| unknown(def, name))?;
    stack.push(name.to_string());
    let mut t = Target::default();
    for parent in &own.inherits {
        let p = inherited(def, &sanitize(parent), stack)?;
        t.merge(&p);
    }
    stack.pop();
    t.merge(own);
    Ok(t)
}

/// One `--set PATTERN.KEY=VALUE`.
#[derive(Debug)]
struct Override {
    spec: String,
    pattern: String,
    key: String,
    value: String,
}

impl Override {
    fn parse(spec: &str) -> Result<Override, BakeError> {
        let bad = |reason: &str| BakeError::BadOverride {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (path, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected TARGET.KEY=VALUE"))?;
        let (pattern, key) = path
            .split_once('.')
            .ok_or_else(|| bad("expected TARGET.KEY=VALUE"))?;
        if pattern.is_empty() || key.is_empty() {
            return Err(bad("expected TARGET.KEY=VALUE"));
        }
        let o = Override {
            spec: spec.to_string(),
            pattern: sanitize(pattern),
            key: key.to_string(),
            value: value.to_string(),
        };
        // Checked once here, so a bad key fails even when no target matches.
        o.apply(&mut Target::default())?;
        Ok(o)
    }

    /// Whether the pattern (`*` matches any run of characters) matches `target`.
    fn matches(&self, target: &str) -> bool {
        glob(&self.pattern, target)
    }

    fn apply(&self, t: &mut Target) -> Result<(), BakeError> {
        let v = self.value.clone();
        let list = || v.split(',').map(str::to_string).collect::<Vec<_>>();
        let flag = |v: &str| match v {
            "true" | "1" | "" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(BakeError::BadOverride {
                spec: self.spec.clone(),
                reason: format!("{v:?} is not true or false"),
            }),
        };
        let (key, sub) = match self.key.split_once('.') {
            Some((k, s)) => (k, Some(s)),
            None => (self.key.as_str(), None),
        };
        match (key, sub) {
            ("args", Some(k)) => drop(t.args.insert(k.into(), v)),
            ("labels", Some(k)) => drop(t.labels.insert(k.into(), v)),
            ("contexts", Some(k)) => drop(t.contexts.insert(k.into(), v)),
            ("context", None) => t.context = Some(v),
            ("dockerfile", None) => t.dockerfile = Some(v),
            ("dockerfile-inline", None) => t.dockerfile_inline = Some(v),
            ("target", None) => t.target = Some(v),
            ("network", None) => t.network = Some(v),
            ("tags", None) => t.tags = Some(list()),
            ("platform" | "platforms", None) => t.platforms = Some(list()),
            ("output", None) => t.output = Some(vec![v]),
            ("cache-to", None) => t.cache_to = Some(vec![v]),
            ("cache-from", None) => t.cache_from = vec![v],
            ("secrets" | "secret", None) => t.secret = vec![v],
            ("ssh", None) => t.ssh = vec![v],
            ("attest", None) => t.attest.push(v),
            ("pull", None) => t.pull = Some(flag(&v)?),
            ("no-cache", None) => t.no_cache = Some(flag(&v)?),
            _ => {
                return Err(BakeError::BadOverride {
                    spec: self.spec.clone(),
                    reason: format!(
                        "{:?} cannot be set (args.NAME, labels.NAME, contexts.NAME, context, \
                         dockerfile, dockerfile-inline, target, network, tags, platform, \
                         output, cache-from, cache-to, secrets, ssh, attest, pull, no-cache)",
                        self.key
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Whether `pattern` (where `*` matches any run of characters) matches all of `text`.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(text) = text.strip_prefix(head) else {
                return false;
            };
            (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .any(|i| glob(rest, &text[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "app"));
        assert!(glob("a*", "app"));
        assert!(glob("*p", "app"));
        assert!(!glob("b*", "app"));
        assert!(glob("app", "app"));
        assert!(!glob("ap", "app"));
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let compose = dir.path().join("compose.yaml");
        std::fs::write(
            &compose,
            "services:\n  app:\n    image: localhost/app\n    build:\n      context: .\n      args:\n        - A=1\n        - B\n",
        )
        .unwrap();
        let hcl = dir.path().join("docker-bake.override.hcl");
        std::fs::write(
            &hcl,
            "target \"app\" {\n  tags = [\"localhost/app:override\"]\n  args = { C = \"3\" }\n}\n",
        )
        .unwrap();
        assert_eq!(
            default_files(dir.path()).unwrap(),
            [compose.clone(), hcl.clone()]
        );
        let env = BTreeMap::from([("B".to_string(), "2".to_string())]);
        let def = load(&[compose, hcl], &env).unwrap();
        let r = resolve(&def, &[], &[]).unwrap();
        let app = &r.target["app"];
        assert_eq!(app.tags.as_deref().unwrap(), ["localhost/app:override"]);
        assert_eq!(
            app.args,
            BTreeMap::from([
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
                ("C".to_string(), "3".to_string()),
            ])
        );
        assert_eq!(r.group["default"].targets, ["app"]);
    }

    #[test]
    fn merge_as_buildx() {
        let mut a = Target {
            tags: Some(vec!["a".into()]),
            cache_from: vec!["x".into()],
            args: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "1".into())]),
            ..Target::default()
        };
        a.merge(&Target {
            tags: Some(vec!["b".into()]),
            cache_from: vec!["y".into()],
            args: BTreeMap::from([("B".into(), "2".into())]),
            ..Target::default()
        });
        assert_eq!(a.tags, Some(vec!["b".to_string()]));
        assert_eq!(a.cache_from, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(a.args["A"], "1");
        assert_eq!(a.args["B"], "2");
    }
}
