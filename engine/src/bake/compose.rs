//! Compose files as bake reads them: every service with a `build:` section is a target named
//! after the service, tagged with its `image:` (then `build.tags`). Paths are the compose
//! file's: `context` is relative to the file's directory (it may lead out of it with `..`),
//! `dockerfile` relative to the context.
//!
//! Values are interpolated as compose does (`${VAR}`, `$VAR`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+other}`, `${VAR+other}`, `$$`
//! for a `$`), from the environment and then the `.env` file beside the compose file. Only
//! the keys of `build:` are checked (an unknown one is an error at its line and column);
//! the other service keys are for running containers and are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Definition, Scalar, Target};

/// Why a compose file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The YAML is not valid, or a key or value is not what compose allows.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The compose file.
        file: PathBuf,
        /// Where (1-based; 0 when the parser gave no place).
        line: usize,
        /// The column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A `${VAR...}` is malformed, or `${VAR:?message}` found VAR unset.
    #[error("{file}: service {service}: {message}")]
    Interpolation {
        /// The compose file.
        file: PathBuf,
        /// The service.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// A build secret names no top-level secret, or one with neither `file` nor
    /// `environment`.
    #[error("{file}: service {service}: secret {secret:?} {reason}")]
    Secret {
        /// The compose file.
        file: PathBuf,
        /// The service.
        service: String,
        /// The secret.
        secret: String,
        /// Why.
        reason: String,
    },
    /// A service's name cannot name a target.
    #[error("{file}: service {service:?}: {reason}", reason = super::VALID_NAME)]
    Name {
        /// The compose file.
        file: PathBuf,
        /// The service.
        service: String,
    },
    /// The `.env` file could not be read.
    #[error("cannot read {path}")]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
struct ComposeFile {
    #[serde(default)]
    services: BTreeMap<String, Service>,
    #[serde(default)]
    secrets: BTreeMap<String, TopSecret>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    build: Option<Build>,
}

#[derive(Debug, Deserialize)]
struct TopSecret {
    file: Option<String>,
    environment: Option<String>,
}

/// `build: DIR` or `build: {...}`.
#[derive(Debug, Default)]
struct Build(BuildMap);

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Build;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a context directory or a build mapping")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Build, E> {
                Ok(Build(BuildMap {
                    context: Some(v.to_string()),
                    ..BuildMap::default()
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Build, A::Error> {
                BuildMap::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Build)
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys of a service's `build:` mapping that bake reads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildMap {
    context: Option<String>,
    dockerfile: Option<String>,
    dockerfile_inline: Option<String>,
    args: Option<ListOrMap>,
    target: Option<String>,
    tags: Option<Vec<String>>,
    labels: Option<ListOrMap>,
    platforms: Option<Vec<String>>,
    secrets: Option<Vec<BuildSecret>>,
    ssh: Option<ListOrMap>,
    cache_from: Option<Vec<String>>,
    cache_to: Option<Vec<String>>,
    additional_contexts: Option<ListOrMap>,
    network: Option<String>,
    extra_hosts: Option<ListOrMap>,
    shm_size: Option<Scalar>,
    no_cache: Option<bool>,
    pull: Option<bool>,
}

/// A build secret: its name, or `{source: NAME, target: ...}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BuildSecret {
    Name(String),
    Long { source: String },
}

/// `KEY=VALUE` items (a `KEY` alone has no value) or a mapping.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListOrMap {
    List(Vec<String>),
    Map(BTreeMap<String, Option<Scalar>>),
}

impl ListOrMap {
    /// The pairs; `sep` splits list items (`=`, or `:` too for extra hosts).
    fn pairs(self, seps: &[char]) -> Vec<(String, Option<String>)> {
        match self {
            ListOrMap::List(items) => items
                .into_iter()
                .map(|i| match i.split_once(seps) {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (i, None),
                })
                .collect(),
            ListOrMap::Map(m) => m
                .into_iter()
                .map(|(k, v)| (k, v.map(Scalar::text)))
                .collect(),
        }
    }
}

/// Reads the compose file `path` (its text `text`) into targets, interpolating from `env`
/// and the `.env` file beside it.
pub fn load(
    path: &Path,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<Definition, ComposeError> {
    let file: ComposeFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ComposeError::Syntax {
            file: path.to_path_buf(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut vars = dot_env(&dir.join(".env"))?;
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut def = Definition::default();
    for (service, s) in file.services {
        let Some(Build(b)) = s.build else {
            continue;
        };
        if !super::valid_name(&super::sanitize(&service)) {
            return Err(ComposeError::Name {
                file: path.to_path_buf(),
                service,
            });
        }
        let ip = |v: &str| -> Result<String, ComposeError> {
            interpolate(v, &vars).map_err(|message| ComposeError::Interpolation {
                file: path.to_path_buf(),
                service: service.clone(),
                message,
            })
        };
        let ip_opt = |v: Option<String>| v.as_deref().map(ip).transpose();
        let ip_list = |v: Option<Vec<String>>| -> Result<Vec<String>, ComposeError> {
            v.unwrap_or_default().iter().map(|s| ip(s)).collect()
        };
        let ip_pairs = |v: Option<ListOrMap>,
                        seps: &[char]|
         -> Result<Vec<(String, Option<String>)>, ComposeError> {
            v.map(|m| m.pairs(seps))
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| Ok((k, v.as_deref().map(ip).transpose()?)))
                .collect()
        };
        let context = ip_opt(b.context)?.unwrap_or_else(|| ".".into());
        let context = if context.contains("://") || context.starts_with("git@") {
            context
        } else {
            dir.join(&context).display().to_string()
        };
        let mut tags = Vec::new();
        tags.extend(ip_opt(s.image)?);
        tags.extend(ip_list(b.tags)?);
        // A bare `KEY` takes its value from the environment; unset, it is left out.
        let args = ip_pairs(b.args, &['='])?
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v.or_else(|| vars.get(&k).cloned())?;
                Some((k, v))
            })
            .collect();
        let labels = ip_pairs(b.labels, &['='])?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        let contexts = ip_pairs(b.additional_contexts, &['='])?
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v?;
                let v = match v.strip_prefix("service:") {
                    Some(service) => format!("target:{}", super::sanitize(service)),
                    None if v.contains("://") || v.starts_with("target:") => v,
                    None => dir.join(&v).display().to_string(),
                };
                Some((k, v))
            })
            .collect();
        let extra_hosts = ip_pairs(b.extra_hosts, &['=', ':'])?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        let ssh = ip_pairs(b.ssh, &['='])?
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect();
        let mut secret = Vec::new();
        for s in b.secrets.unwrap_or_default() {
            let name = match s {
                BuildSecret::Name(n) | BuildSecret::Long { source: n } => n,
            };
            let bad = |reason: &str| ComposeError::Secret {
                file: path.to_path_buf(),
                service: service.clone(),
                secret: name.clone(),
                reason: reason.to_string(),
            };
            let top = file
                .secrets
                .get(&name)
                .ok_or_else(|| bad("is not defined under the top-level secrets"))?;
            secret.push(match (&top.file, &top.environment) {
                (Some(f), _) => format!("id={name},src={}", dir.join(ip(f)?).display()),
                (None, Some(e)) => format!("id={name},env={}", ip(e)?),
                (None, None) => return Err(bad("has neither file nor environment")),
            });
        }
        let platforms = ip_list(b.platforms)?;
        let cache_to = ip_list(b.cache_to)?;
        let target = Target {
            context: Some(context),
            dockerfile: ip_opt(b.dockerfile)?,
            dockerfile_inline: ip_opt(b.dockerfile_inline)?,
            args,
            labels,
            tags: Some(tags),
            target: ip_opt(b.target)?,
            platforms: (!platforms.is_empty()).then_some(platforms),
            secret,
            ssh,
            cache_from: ip_list(b.cache_from)?,
            cache_to: (!cache_to.is_empty()).then_some(cache_to),
            contexts,
            network: ip_opt(b.network)?,
            extra_hosts,
            shm_size: b.shm_size.map(Scalar::text),
            no_cache: b.no_cache,
            pull: b.pull,
            ..Target::default()
        };
        def.target.insert(super::sanitize(&service), target);
    }
    Ok(def)
}

/// The variables of a `.env` file (none when it does not exist): `KEY=VALUE` lines, `#`
/// comments, an optional `export `, values optionally quoted.
fn dot_env(path: &Path) -> Result<BTreeMap<String, String>, ComposeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(ComposeError::EnvFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if q == e && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v.split(" #").next().unwrap_or(v).trim_end(),
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// Interpolates compose's `$` forms in `text` from `vars`.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = closing_brace(r).ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
            out.push_str(&expand(&r[..end], vars)?);
            rest = &r[end + 1..];
        } else {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&rest[..n]).map_or("", String::as_str));
            }
            rest = &rest[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${` whose text starts `text` (nested `${...}` skipped).
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One `${...}` body: `NAME` with an optional operator and word.
fn expand(body: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let n = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(n);
    if name.is_empty() {
        return Err(format!("invalid interpolation ${{{body}}}"));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let word = |w: &str| interpolate(w, vars);
    let value = value.cloned().unwrap_or_default();
    Ok(match op {
        "" => value,
        _ if op.starts_with(":-") => {
            if non_empty {
                value
            } else {
                word(&op[2..])?
            }
        }
        _ if op.starts_with('-') => {
            if set {
                value
            } else {
                word(&op[1..])?
            }
        }
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let (needs, msg) = if let Some(m) = op.strip_prefix(":?") {
                (non_empty, m)
            } else {
                (set, &op[1..])
            };
            if !needs {
                return Err(format!(
                    "required variable {name} is missing a value: {msg}"
                ));
            }
            value
        }
        _ if op.starts_with(":+") => {
            if non_empty {
                word(&op[2..])?
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => {
            if set {
                word(&op[1..])?
            } else {
                String::new()
            }
        }
        _ => return Err(format!("invalid interpolation ${{{body}}}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_forms() {
        let vars = BTreeMap::from([
            ("A".to_string(), "a".to_string()),
            ("E".to_string(), String::new()),
        ]);
        let i = |t: &str| interpolate(t, &vars).unwrap();
        assert_eq!(i("x${A}y$A"), "xaya");
        assert_eq!(i("${U:-d}${E:-d}${E-d}${U-d}"), "ddd");
        assert_eq!(i("${A:+p}${E:+p}${E+p}"), "pp");
        assert_eq!(i("$$A"), "$A");
        assert_eq!(i("${U:-${A}}"), "a");
        assert!(
            interpolate("${U:?need it}", &vars)
                .unwrap_err()
                .contains("need it")
        );
        assert!(interpolate("${A", &vars).is_err());
    }
}
