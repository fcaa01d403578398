//! Registry credentials: docker's `config.json`, containers' `auth.json`, credential helpers.
//!
//! Lookup order for a registry: the file named by `REGISTRY_AUTH_FILE` (its `auths`), then
//! docker's config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): its
//! `credHelpers` entry for the registry, its `credsStore`, then its `auths`. Secrets are held in
//! [`Secret`], whose `Debug` and `Display` never show the value.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::reference::DOCKER_HUB;

/// The key docker uses for Docker Hub in `config.json` and with credential helpers.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";
/// Names the docker config directory.
pub const ENV_DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// Names a containers-auth.json file.
pub const ENV_REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";

/// A string that is never shown: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password, sent as Basic auth or to a token server.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token server.
    IdentityToken {
        /// The refresh token.
        token: Secret,
    },
}

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A credentials file could not be read.
    #[error("cannot read credentials file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A credentials file is not valid JSON of the expected shape.
    #[error("credentials file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (never contains secret values).
        message: String,
    },
    /// An `auth` entry is not base64 of `user:password`.
    #[error("credentials file {path}: entry for {registry} has a malformed auth field")]
    BadAuthField {
        /// The file.
        path: PathBuf,
        /// The registry key.
        registry: String,
    },
    /// A credential helper could not be run or failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        /// The helper's name (the part after `docker-credential-`).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What went wrong (the helper's stderr, trimmed).
        message: String,
    },
}

/// Where credentials come from: the files and helpers named above.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    explicit: BTreeMap<String, Credential>,
    auth_file: Option<PathBuf>,
    docker_config: Option<PathBuf>,
}

impl CredentialStore {
    /// The sources named by `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG` and `$HOME`.
    pub fn from_env() -> Self {
        Self {
            explicit: BTreeMap::new(),
            auth_file: auth_file_path(),
            docker_config: Some(docker_config_path()),
        }
    }

    /// No credentials at all (anonymous access).
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Explicit files: an optional containers auth file and an optional docker config.json.
    pub fn with_files(auth_file: Option<PathBuf>, docker_config: Option<PathBuf>) -> Self {
        Self {
            explicit: BTreeMap::new(),
            auth_file,
            docker_config,
        }
    }

    /// Uses `credential` for `registry`, before any file (as `login` does to verify it).
    pub fn with_credential(mut self, registry: &str, credential: Credential) -> Self {
        self.explicit.insert(registry.to_string(), credential);
        self
    }

    /// Finds the credential for `registry` (as written in references, e.g. `docker.io`,
    /// `localhost:5000`). `Ok(None)` means anonymous.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialsError> {
        if let Some(c) = self.explicit.get(registry) {
            return Ok(Some(c.clone()));
        }
        if let Some(path) = &self.auth_file {
            if let Some(cfg) = DockerConfig::load_if_exists(path)? {
                if let Some(c) = cfg.auth_for(registry)? {
                    return Ok(Some(c));
                }
            }
        }
        if let Some(path) = &self.docker_config {
            if let Some(cfg) = DockerConfig::load_if_exists(path)? {
                if let Some(helper) = cfg.helper_for(registry) {
                    return run_helper_get(&helper, registry);
                }
                return cfg.auth_for(registry);
            }
        }
        Ok(None)
    }
}

/// The file `REGISTRY_AUTH_FILE` names, if it is set.
pub fn auth_file_path() -> Option<PathBuf> {
    std::env::var_os(ENV_REGISTRY_AUTH_FILE).map(PathBuf::from)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    match std::env::var_os(ENV_DOCKER_CONFIG) {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
            home.join(".docker").join("config.json")
        }
    }
}

/// The key a registry has in `auths` and with credential helpers.
pub fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Reduces a config key or a user-typed registry (`https://index.docker.io/v1/`, `http://host:5000`, `host`) to the
/// registry name references use.
pub fn normalise_registry(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// A docker `config.json` (or containers `auth.json`), keeping fields it does not know.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    path: PathBuf,
    root: Map<String, Value>,
}

impl DockerConfig {
    /// Reads a config file; `Ok(None)` when it does not exist.
    pub fn load_if_exists(path: &Path) -> Result<Option<Self>, CredentialsError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_slice(path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads a config file, or an empty config when it does not exist.
    pub fn load_or_default(path: &Path) -> Result<Self, CredentialsError> {
        Ok(Self::load_if_exists(path)?.unwrap_or_else(|| Self {
            path: path.to_path_buf(),
            root: Map::new(),
        }))
    }

    /// Parses config text; `path` is only used in errors.
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, CredentialsError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| CredentialsError::Parse {
            path: path.to_path_buf(),
            message: format!("line {} column {}", e.line(), e.column()),
        })?;
        let Value::Object(root) = value else {
            return Err(CredentialsError::Parse {
                path: path.to_path_buf(),
                message: "top level is not an object".into(),
            });
        };
        Ok(Self {
            path: path.to_path_buf(),
            root,
        })
    }

    /// The file this config was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config as pretty JSON, ready to be written.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&Value::Object(self.root.clone()))
            .expect("a JSON map always serialises");
        out.push(b'\n');
        out
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.root.get("auths").and_then(Value::as_object)
    }

    /// The credential helper to ask for `registry`, if the config names one.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        if let Some(helpers) = self.root.get("credHelpers").and_then(Value::as_object) {
            for (k, v) in helpers {
                if normalise_registry(k) == registry {
                    if let Some(h) = v.as_str() {
                        return Some(h.to_string());
                    }
                }
            }
        }
        self.root
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The inline (`auths`) credential for `registry`.
    pub fn auth_for(&self, registry: &str) -> Result<Option<Credential>, CredentialsError> {
        let Some(auths) = self.auths() else {
            return Ok(None);
        };
        for (key, entry) in auths {
            if normalise_registry(key) != registry {
                continue;
            }
            if let Some(token) = entry.get("identitytoken").and_then(Value::as_str) {
                if !token.is_empty() {
                    return Ok(Some(Credential::IdentityToken {
                        token: Secret::new(token),
                    }));
                }
            }
            let bad = || CredentialsError::BadAuthField {
                path: self.path.clone(),
                registry: key.clone(),
            };
            if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
                if auth.is_empty() {
                    continue;
                }
                let decoded = BASE64.decode(auth.trim()).map_err(|_| bad())?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
                let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
                return Ok(Some(Credential::Basic {
                    username: user.to_string(),
                    password: Secret::new(pass),
                }));
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(Value::as_str),
                entry.get("password").and_then(Value::as_str),
            ) {
                return Ok(Some(Credential::Basic {
                    username: u.to_string(),
                    password: Secret::new(p),
                }));
            }
        }
        Ok(None)
    }

    /// Records `username`/`password` for `registry` in `auths` (base64 `auth`, as docker does).
    pub fn set_basic(&mut self, registry: &str, username: &str, password: &Secret) {
        self.remove(registry);
        let auth = BASE64.encode(format!("{username}:{}", password.expose()));
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        auths
            .as_object_mut()
            .expect("just made an object")
            .insert(config_key(registry), Value::Object(entry));
    }

    /// Removes every `auths` entry for `registry`; returns whether there was one.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(auths) = self.root.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| normalise_registry(k) == registry)
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        !keys.is_empty()
    }
}

/// Reply of `docker-credential-* get`.
#[derive(serde::Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn run_helper_get(helper: &str, registry: &str) -> Result<Option<Credential>, CredentialsError> {
    let stdout = match run_helper(helper, registry, "get", config_key(registry).as_bytes()) {
        Ok(out) => out,
        Err(CredentialsError::Helper { message, .. })
            if message.contains("credentials not found") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let reply: HelperReply =
        serde_json::from_slice(&stdout).map_err(|_| CredentialsError::Helper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            message: "reply is not the expected JSON".into(),
        })?;
    if reply.username == "<token>" {
        Ok(Some(Credential::IdentityToken {
            token: Secret::new(reply.secret),
        }))
    } else {
        Ok(Some(Credential::Basic {
            username: reply.username,
            password: Secret::new(reply.secret),
        }))
    }
}

/// Stores credentials with `docker-credential-<helper> store` (as `login` does when the
/// config names a helper for the registry).
pub fn helper_store(
    helper: &str,
    registry: &str,
    username: &str,
    password: &Secret,
) -> Result<(), CredentialsError> {
    let payload = serde_json::json!({
        "ServerURL": config_key(registry),
        "Username": username,
        "Secret": password.expose(),
    });
    run_helper(helper, registry, "store", payload.to_string().as_bytes()).map(drop)
}

/// Removes credentials with `docker-credential-<helper> erase`.
pub fn helper_erase(helper: &str, registry: &str) -> Result<(), CredentialsError> {
    run_helper(helper, registry, "erase", config_key(registry).as_bytes()).map(drop)
}

fn run_helper(
    helper: &str,
    registry: &str,
    verb: &str,
    input: &[u8],
) -> Result<Vec<u8>, CredentialsError> {
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| fail(format!("cannot write to it: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{verb}: {} ({})", text.trim(), out.status)));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{c:?} {}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn reads_auths_and_identity_tokens() {
        let p = Path::new("config.json");
        let cfg = DockerConfig::from_slice(
            p,
            br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
                "localhost:5000":{"identitytoken":"tok"}},"other":1}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.auth_for("docker.io").unwrap(),
            Some(Credential::Basic {
                username: "user".into(),
                password: Secret::new("pa:ss")
            })
        );
        assert_eq!(
            cfg.auth_for("localhost:5000").unwrap(),
            Some(Credential::IdentityToken {
                token: Secret::new("tok")
            })
        );
        assert_eq!(cfg.auth_for("quay.io").unwrap(), None);
        let bad = DockerConfig::from_slice(p, br#"{"auths":{"x.io":{"auth":"!!"}}}"#).unwrap();
        let e = bad.auth_for("x.io").unwrap_err().to_string();
        assert_eq!(
            e,
            "credentials file config.json: entry for x.io has a malformed auth field"
        );
    }

    #[test]
    fn set_and_remove_keep_other_fields() {
        let p = Path::new("c.json");
        let mut cfg =
            DockerConfig::from_slice(p, br#"{"credHelpers":{"gcr.io":"gcloud"},"psFormat":"x"}"#)
                .unwrap();
        cfg.set_basic("docker.io", "me", &Secret::new("pw"));
        let text = String::from_utf8(cfg.to_json()).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert!(text.contains("psFormat"), "{text}");
        assert_eq!(cfg.helper_for("gcr.io").as_deref(), Some("gcloud"));
        assert_eq!(cfg.helper_for("docker.io"), None);
        assert!(cfg.remove("docker.io"));
        assert!(!cfg.remove("docker.io"));
        assert_eq!(cfg.auth_for("docker.io").unwrap(), None);
    }
}
