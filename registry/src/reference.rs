//! Image references with docker's normalisation.
//!
//! `busybox` is `docker.io/library/busybox:latest`; `host:port/ns/name:tag@sha256:...` names a
//! registry explicitly. The first path component is a registry when it contains `.` or `:` or is
//! `localhost`; otherwise the reference is on Docker Hub.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

/// The registry of references that name none.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a reference could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("invalid reference \"\": empty")]
    Empty,
    /// A path component has characters or separators that are not allowed.
    #[error(
        "invalid reference {reference:?}: repository name component {component:?} must be lowercase letters, digits and single separators (. _ __ -)"
    )]
    InvalidComponent {
        /// The reference as given.
        reference: String,
        /// The offending component.
        component: String,
    },
    /// The repository name has uppercase letters.
    #[error("invalid reference {reference:?}: repository name must be lowercase")]
    Uppercase {
        /// The reference as given.
        reference: String,
    },
    /// The registry host or port is malformed.
    #[error("invalid reference {reference:?}: bad registry host {host:?}")]
    InvalidRegistry {
        /// The reference as given.
        reference: String,
        /// The registry part.
        host: String,
    },
    /// The tag is malformed.
    #[error(
        "invalid reference {reference:?}: bad tag {tag:?} (up to 128 of [A-Za-z0-9_.-], not starting with . or -)"
    )]
    InvalidTag {
        /// The reference as given.
        reference: String,
        /// The tag part.
        tag: String,
    },
    /// The digest is malformed.
    #[error("invalid reference {reference:?}: bad digest {digest:?}")]
    InvalidDigest {
        /// The reference as given.
        reference: String,
        /// The digest part.
        digest: String,
    },
    /// The name is longer than 255 characters.
    #[error("invalid reference {reference:?}: repository name longer than 255 characters")]
    TooLong {
        /// The reference as given.
        reference: String,
    },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference (`busybox`, `localhost:5000/a/b:tag@sha256:...`).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err_ref = || input.to_string();
        let (rest, digest) = match input.split_once('@') {
            Some((name, d)) => {
                let digest = parse_digest(d).ok_or_else(|| ReferenceError::InvalidDigest {
                    reference: err_ref(),
                    digest: d.to_string(),
                })?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(ReferenceError::InvalidTag {
                        reference: err_ref(),
                        tag: tag.to_string(),
                    });
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(ReferenceError::InvalidRegistry {
                        reference: err_ref(),
                        host: first.to_string(),
                    });
                }
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                reference: err_ref(),
            });
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::InvalidComponent {
                    reference: err_ref(),
                    component: component.to_string(),
                });
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong {
                reference: err_ref(),
            });
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as named in the reference (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry's API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What the registry API calls this image: the digest when there is one, else the tag.
    pub fn api_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::InvalidTag {
                reference: self.to_string(),
                tag: tag.to_string(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The fully qualified name without tag or digest (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form docker shows (`busybox:latest`, `localhost:5000/a/b:1`).
    pub fn familiar(&self) -> String {
        // Docker Hub's name can be left out only when the repository's first component does
        // not look like a registry host: `docker.io/example.com/x` must keep it, or it would
        // read as the registry example.com.
        let first = self.repository.split('/').next().unwrap_or_default();
        let looks_like_host = first.contains(['.', ':']) || first == "localhost";
        let name = if self.registry == DOCKER_HUB && !looks_like_host {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_ref());
        }
        s
    }
}

/// The host serving a registry's API: Docker Hub's name maps to its API host.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == "index.docker.io" {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl fmt::Display for Reference {
    /// The full form; `{:#}` gives the familiar form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.familiar())
        } else {
            f.write_str(&self.with_suffix(self.name()))
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_digest(s: &str) -> Option<Digest> {
    let (algo, hex) = s.split_once(':')?;
    let ok = match algo {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => false,
    } && hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return None;
    }
    Digest::from_str(s).ok()
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [ipv6]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        return after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return false;
        }
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_docker_hub_names() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(format!("{r:#}"), "busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("user/app:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.0");
        assert_eq!(r.familiar(), "user/app:1.0");
        let r = Reference::parse("index.docker.io/library/alpine").unwrap();
        assert_eq!(r.familiar(), "alpine:latest");
        // A Docker Hub repository whose first component looks like a host keeps the registry.
        for name in ["docker.io/example.com/x", "docker.io/localhost/x"] {
            let r = Reference::parse(name).unwrap();
            assert_eq!(r.familiar(), format!("{name}:latest"));
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
        }
    }

    #[test]
    fn explicit_registries() {
        let r = Reference::parse(&format!("localhost:5000/ns/name:tag@{D}")).unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "ns/name");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.api_reference(), D);
        assert_eq!(r.to_string(), format!("localhost:5000/ns/name:tag@{D}"));
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.registry(), "localhost");
        let r = Reference::parse("quay.io/a/b").unwrap();
        assert_eq!(r.registry(), "quay.io");
        let r = Reference::parse("[::1]:5000/a").unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.familiar(), format!("busybox@{D}"));
    }

    #[test]
    fn rejects_bad_references_naming_them() {
        let e = Reference::parse("Busybox").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid reference \"Busybox\": repository name must be lowercase"
        );
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::InvalidComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("a/b:"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a:-x"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a@sha256:abc"),
            Err(ReferenceError::InvalidDigest { .. })
        ));
        assert!(matches!(
            Reference::parse("a_-b"),
            Err(ReferenceError::InvalidComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("host:99999/a"),
            Err(ReferenceError::InvalidRegistry { .. })
        ));
        assert!(matches!(Reference::parse(""), Err(ReferenceError::Empty)));
        let long = "a".repeat(300);
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
        assert!(Reference::parse("a__b/c-d--e.f:v1.2_3").is_ok());
    }
}
