//! Image names as the user types them, and as the store keeps them.

use anyhow::bail;

/// The full form of an image name: `busybox` is `docker.io/library/busybox:latest`,
/// `me/app:1` is `docker.io/me/app:1`, `localhost:5000/app` is `localhost:5000/app:latest`.
/// A name with a digest (`name@sha256:...`) keeps it and gets no tag.
pub fn normalize_name(input: &str) -> anyhow::Result<String> {
    if input.is_empty() {
        bail!("invalid image name \"\": it is empty");
    }
    let (name, digest) = match input.split_once('@') {
        Some((name, digest)) => {
            if digest.parse::<rbuild_cache::Digest>().is_err() {
                bail!("invalid image name {input:?}: {digest:?} is not a sha256 digest");
            }
            (name, Some(digest))
        }
        None => (input, None),
    };
    let (first, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path.to_string(), Some(tag.to_string())),
        _ => (rest.clone(), None),
    };
    let path = if first == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    for component in path.split('/') {
        let ok = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && component
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            bail!(
                "invalid image name {input:?}: repository component {component:?} must be lowercase letters, digits and separators (. _ -)"
            );
        }
    }
    if let Some(tag) = &tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !tag.starts_with(['.', '-']);
        if !ok {
            bail!("invalid image name {input:?}: tag {tag:?} is not valid");
        }
    }
    let mut full = format!("{first}/{path}");
    match (tag, digest) {
        (Some(tag), Some(d)) => full.push_str(&format!(":{tag}@{d}")),
        (None, Some(d)) => full.push_str(&format!("@{d}")),
        (Some(tag), None) => full.push_str(&format!(":{tag}")),
        (None, None) => full.push_str(":latest"),
    }
    Ok(full)
}

/// The form docker shows: `docker.io/library/busybox:latest` is `busybox:latest`,
/// `docker.io/me/app:1` is `me/app:1`; other registries keep their host.
pub fn short_name(full: &str) -> &str {
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(full)
}

/// Splits a full name into repository and tag (or digest, or `<none>`).
pub fn split_repo_tag(full: &str) -> (&str, &str) {
    if let Some((repo, digest)) = full.split_once('@') {
        return (
            repo.rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(repo, |(r, _)| r),
            digest,
        );
    }
    match full.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (full, "<none>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("me/app", "docker.io/me/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1"),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_name(input).unwrap(), want, "{input}");
        }
        for bad in ["", "Busybox", "a//b", "a:b:c", "busybox:-x", "x@sha256:abc"] {
            assert!(normalize_name(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            short_name("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(
            split_repo_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }
}
