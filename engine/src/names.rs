//! Image names as the user types them, and as the store keeps them.

use rbuild_registry::Reference;
use rbuild_registry::reference::ReferenceError;

/// Why an image name is not valid.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The name does not parse as a reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The name's digest is not a sha256 digest (the store keeps sha256 only).
    #[error("invalid image name {name:?}: {digest} is not a sha256 digest")]
    NotSha256 {
        /// The name as given.
        name: String,
        /// Its digest.
        digest: String,
    },
}

/// The full form of an image name: `busybox` is `docker.io/library/busybox:latest`,
/// `me/app:1` is `docker.io/me/app:1`, `localhost:5000/app` is `localhost:5000/app:latest`.
/// A name with a digest (`name@sha256:...`) keeps it and gets no tag unless one was given.
///
/// This is the registry client's normalisation ([`Reference`]), so a name means the same
/// image in the store and in a registry; the store accepts sha256 digests only.
pub fn normalize_name(input: &str) -> Result<String, NameError> {
    Ok(parse_reference(input)?.to_string())
}

/// Parses an image name with docker's normalisation; digests must be sha256.
pub fn parse_reference(input: &str) -> Result<Reference, NameError> {
    let reference = Reference::parse(input)?;
    if let Some(digest) = reference.digest()
        && rbuild_cache::Digest::try_from(digest).is_err()
    {
        return Err(NameError::NotSha256 {
            name: input.to_string(),
            digest: digest.to_string(),
        });
    }
    Ok(reference)
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
            ("index.docker.io/me/app:1", "docker.io/me/app:1"),
            (
                &format!("busybox@sha256:{}", "a".repeat(64)),
                &format!("docker.io/library/busybox@sha256:{}", "a".repeat(64)),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_name(input).unwrap(), want, "{input}");
        }
        let sha512 = format!("x@sha512:{}", "a".repeat(128));
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a:b:c",
            "busybox:-x",
            "x@sha256:abc",
            &sha512,
        ] {
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
