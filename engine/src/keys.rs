//! Cache keys and the explanation of misses.
//!
//! key = sha256("rbuild-action-key", schema, the op's definition digest, then for each input
//! its role and its key or content digest). The definition covers the command, the
//! environment and build args the step sees, mounts, network, chown/chmod, destination; the
//! inputs are the parent step's key, the base image's manifest digest, the digest of
//! exactly the context files a COPY selects, a downloaded file's digest. Labels are for
//! people and never enter the key; neither do secret values (a secret mount's definition
//! names only its id).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rbuild_cache::action::{ExplainInput, ExplainRecord, SCHEMA};
use rbuild_cache::{Digest, Hasher};

/// One input of a key.
#[derive(Debug, Clone)]
pub struct Part {
    /// `parent`, `source`, `mount`, `base image`, `context`, `url`.
    pub role: &'static str,
    /// For people: the input step, the image reference.
    pub label: String,
    /// Its key or content digest.
    pub digest: String,
    /// For base images: the manifest digest, so a miss can name what the tag resolves to.
    pub content: Option<String>,
}

/// Computes a key.
pub fn key(definition: &str, parts: &[Part]) -> Digest {
    let mut h = Hasher::new();
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"rbuild-action-key");
    field(&SCHEMA.to_le_bytes());
    field(definition.as_bytes());
    for p in parts {
        field(p.role.as_bytes());
        field(p.digest.as_bytes());
    }
    h.finish()
}

/// The explain record of a key computed from these inputs.
pub fn record(
    key: &Digest,
    definition: &str,
    description: &str,
    env: &[String],
    parts: &[Part],
    files: BTreeMap<String, String>,
) -> ExplainRecord {
    ExplainRecord {
        key: key.to_string(),
        definition: definition.to_string(),
        description: description.to_string(),
        env: env.to_vec(),
        inputs: parts
            .iter()
            .map(|p| ExplainInput {
                role: p.role.to_string(),
                label: p.label.clone(),
                digest: p.digest.clone(),
                content: p.content.clone(),
            })
            .collect(),
        files,
    }
}

/// Why `now` missed the cache, compared with the inputs of the previous build of the same
/// step (`before`).
pub fn explain(before: Option<&ExplainRecord>, now: &ExplainRecord) -> String {
    let Some(before) = before else {
        return "first build of this step".into();
    };
    if before.key == now.key {
        return "no cached result (the step did not finish last time, or its result was removed)"
            .into();
    }
    if before.definition != now.definition {
        // Environments are only comparable between two RUN steps.
        let changed = if before.env.is_empty() || now.env.is_empty() {
            Vec::new()
        } else {
            changed_env(&before.env, &now.env)
        };
        if !changed.is_empty()
            && without_build_args(&before.description) == without_build_args(&now.description)
        {
            return format!("build arg or env {} changed", changed.join(", "));
        }
        if !changed.is_empty() {
            return format!(
                "the instruction changed (was: {}); env {} changed",
                before.description,
                changed.join(", ")
            );
        }
        return format!("the instruction changed (was: {})", before.description);
    }
    for (i, input) in now.inputs.iter().enumerate() {
        let old = before.inputs.get(i);
        if old.is_some_and(|o| o.digest == input.digest && o.role == input.role) {
            continue;
        }
        if input.label == "context" && (!now.files.is_empty() || !before.files.is_empty()) {
            return files_changed(&before.files, &now.files);
        }
        let role = if input.content.is_some() {
            "base image"
        } else {
            input.role.as_str()
        };
        return match role {
            "context" => files_changed(&before.files, &now.files),
            "base image" => format!(
                "base image {} now resolves to {} (was {})",
                input.label,
                input.content.as_deref().unwrap_or(&input.digest),
                old.and_then(|o| o.content.clone())
                    .unwrap_or_else(|| "something else".into())
            ),
            "url" => format!("the file at {} changed", input.label),
            "parent" => format!("the previous step changed: {}", input.label),
            role => format!("its {role} changed: {}", input.label),
        };
    }
    "its inputs changed".into()
}

/// A RUN description without BuildKit's build-arg prefix (`RUN |2 A=1 B=2 cmd` -> `RUN
/// cmd`), so a changed build arg is told from a changed command.
fn without_build_args(description: &str) -> String {
    let Some(rest) = description.strip_prefix("RUN |") else {
        return description.to_string();
    };
    let mut words = rest.split(' ');
    let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let rest: Vec<&str> = words.skip(n).collect();
    format!("RUN {}", rest.join(" "))
}

fn changed_env(before: &[String], now: &[String]) -> Vec<String> {
    let map = |v: &[String]| -> BTreeMap<String, String> {
        v.iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let (a, b) = (map(before), map(now));
    let mut names: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

fn files_changed(before: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> String {
    let mut changed = Vec::new();
    for (path, hash) in now {
        match before.get(path) {
            None => changed.push(format!("{path} (added)")),
            Some(h) if h != hash => changed.push(path.clone()),
            _ => {}
        }
    }
    for path in before.keys() {
        if !now.contains_key(path) {
            changed.push(format!("{path} (removed)"));
        }
    }
    if changed.is_empty() {
        return "the selected files' modes or links changed".into();
    }
    let mut out = format!("file {}", changed[0]);
    if changed.len() > 1 {
        out = format!("files {}", changed[..changed.len().min(5)].join(", "));
        if changed.len() > 5 {
            let _ = write!(out, " and {} more", changed.len() - 5);
        }
    }
    out + " changed"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(role: &'static str, label: &str, digest: &str) -> Part {
        Part {
            role,
            label: label.into(),
            digest: digest.into(),
            content: None,
        }
    }

    #[test]
    fn keys_cover_definition_roles_and_digests_but_not_labels() {
        let a = key("def", &[part("parent", "RUN a", "k1")]);
        assert_eq!(a, key("def", &[part("parent", "other label", "k1")]));
        assert_ne!(a, key("def2", &[part("parent", "RUN a", "k1")]));
        assert_ne!(a, key("def", &[part("source", "RUN a", "k1")]));
        assert_ne!(a, key("def", &[part("parent", "RUN a", "k2")]));
        // Field boundaries are unambiguous.
        assert_ne!(
            key("ab", &[part("parent", "", "c")]),
            key("a", &[part("parent", "", "bc")])
        );
    }

    #[test]
    fn explanations_name_what_changed() {
        let files = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let base = |def: &str, env: &[&str], parts: &[Part], f| {
            let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
            record(&key(def, parts), def, "RUN make", &env, parts, f)
        };
        let old = base(
            "d1",
            &["A=1"],
            &[part("context", "context", "c1")],
            files(&[("a.txt", "1"), ("b.txt", "2")]),
        );
        assert_eq!(explain(None, &old), "first build of this step");
        let new = base(
            "d1",
            &["A=1"],
            &[part("context", "context", "c2")],
            files(&[("a.txt", "1"), ("b.txt", "3")]),
        );
        assert_eq!(explain(Some(&old), &new), "file b.txt changed");
        let new = base(
            "d2",
            &["A=2"],
            &[part("context", "context", "c1")],
            files(&[]),
        );
        assert_eq!(explain(Some(&old), &new), "build arg or env A changed");
        let img_old = base(
            "d",
            &[],
            &[part("base image", "busybox", "sha256:aaaa")],
            files(&[]),
        );
        let img_new = base(
            "d",
            &[],
            &[part("base image", "busybox", "sha256:bbbb")],
            files(&[]),
        );
        assert_eq!(
            explain(Some(&img_old), &img_new),
            "base image busybox now resolves to sha256:bbbb (was something else)"
        );
        let p_old = base("d", &[], &[part("parent", "RUN a", "k1")], files(&[]));
        let p_new = base("d", &[], &[part("parent", "RUN a", "k2")], files(&[]));
        assert_eq!(
            explain(Some(&p_old), &p_new),
            "the previous step changed: RUN a"
        );
    }
}
