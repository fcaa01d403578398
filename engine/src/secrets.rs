//! `--secret` and `--ssh`: parsed before the build; secret values live in memory only and
//! never reach a log line, a layer, the image config or a cache key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A `--secret` or `--ssh` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A `--secret` or `--ssh` flag is not well formed.
    #[error("invalid {flag} {spec:?}: {problem}")]
    Invalid {
        /// `--secret` or `--ssh`.
        flag: &'static str,
        /// The flag's value.
        spec: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The environment variable a secret names is not set.
    #[error("secret {id}: environment variable {var} is not set")]
    Unset {
        /// The secret's id.
        id: String,
        /// The variable.
        var: String,
    },
    /// The file a secret names cannot be read.
    #[error("secret {id}: cannot read {path}")]
    Read {
        /// The secret's id.
        id: String,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `id=ID` alone names neither a variable nor a readable file.
    #[error("secret {id}: no src= or env= given, and neither a variable nor a file {id} exists")]
    Neither {
        /// The secret's id.
        id: String,
        /// Why the file could not be read.
        #[source]
        source: std::io::Error,
    },
    /// `--ssh ID` without a socket while `SSH_AUTH_SOCK` is not set.
    #[error("--ssh {spec}: SSH_AUTH_SOCK is not set; give {spec}=SOCKET")]
    NoAgent {
        /// The flag's value.
        spec: String,
    },
}

fn invalid(flag: &'static str, spec: &str, problem: impl Into<String>) -> SecretError {
    SecretError::Invalid {
        flag,
        spec: spec.to_string(),
        problem: problem.into(),
    }
}

/// A secret's value. Its Debug and Display never show the bytes.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The bytes, for the sandbox.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Parses `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, one CSV record as buildx
/// reads it (`id=a,"src=x,y"` for a path with a comma). `id=ID` alone reads the
/// environment variable `ID` when it is set, else the file `ID`, as buildx does.
pub fn parse_secrets(specs: &[String]) -> Result<BTreeMap<String, Secret>, SecretError> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        let mut kind = None;
        let pairs = rbuild_options::csv::pairs(spec)
            .map_err(|e| invalid("--secret", spec, e.to_string()))?;
        for (k, v) in pairs {
            let v = v.unwrap_or_default();
            match k.as_str() {
                "id" => id = Some(v),
                "src" | "source" => src = Some(v),
                "env" => env = Some(v),
                "type" => kind = Some(v.to_ascii_lowercase()),
                other => {
                    return Err(invalid("--secret", spec, format!("unknown key {other:?}")));
                }
            }
        }
        let id = match id {
            Some(id) if !id.is_empty() => id,
            _ => match (&src, &env) {
                (Some(s), _) => PathBuf::from(s)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                (None, Some(e)) => e.clone(),
                _ => return Err(invalid("--secret", spec, "it needs id=ID")),
            },
        };
        let value = match (kind.as_deref(), src, env) {
            (Some("env"), Some(var), None) | (_, None, Some(var)) => std::env::var_os(&var)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| SecretError::Unset {
                    id: id.clone(),
                    var,
                })?,
            (Some("env"), None, None) => std::env::var_os(&id)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| SecretError::Unset {
                    id: id.clone(),
                    var: id.clone(),
                })?,
            (_, Some(path), None) => std::fs::read(&path).map_err(|source| SecretError::Read {
                id: id.clone(),
                path,
                source,
            })?,
            (None | Some("file"), None, None) => match std::env::var_os(&id) {
                Some(v) => v.into_encoded_bytes(),
                None => std::fs::read(&id).map_err(|source| SecretError::Neither {
                    id: id.clone(),
                    source,
                })?,
            },
            _ => return Err(invalid("--secret", spec, "give either src= or env=")),
        };
        out.insert(id, Secret(value));
    }
    Ok(out)
}

/// Parses `--ssh default|ID|ID=SOCKET`: `default` (or an id without a socket) is
/// `$SSH_AUTH_SOCK`.
pub fn parse_ssh(specs: &[String]) -> Result<BTreeMap<String, PathBuf>, SecretError> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, socket) = match spec.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK")
                    .ok_or_else(|| SecretError::NoAgent { spec: spec.clone() })?;
                (spec.clone(), PathBuf::from(sock))
            }
        };
        if id.is_empty() {
            return Err(invalid("--ssh", spec, "empty id"));
        }
        out.insert(id, socket);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_files_and_variables_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cret-file").unwrap();
        let parsed = parse_secrets(&[format!("id=a,src={}", f.display())]).unwrap();
        assert_eq!(parsed["a"].bytes(), b"s3cret-file");
        assert!(!format!("{:?}", parsed).contains("s3cret"));
        let parsed = parse_secrets(&[format!("src={}", f.display())]).unwrap();
        assert_eq!(parsed["tok"].bytes(), b"s3cret-file");
        assert!(parse_secrets(&["id=x,bogus=1".into()]).is_err());
        assert!(parse_secrets(&["id=x,env=RBUILD_TEST_SURELY_UNSET_VAR".into()]).is_err());
        let path = std::env::var("PATH").unwrap();
        let parsed = parse_secrets(&["id=p,env=PATH".into()]).unwrap();
        assert_eq!(parsed["p"].bytes(), path.as_bytes());
    }

    #[test]
    fn ssh_sockets() {
        let parsed = parse_ssh(&["key=/tmp/agent.sock".into()]).unwrap();
        assert_eq!(parsed["key"], PathBuf::from("/tmp/agent.sock"));
        assert!(parse_ssh(&["=x".into()]).is_err());
    }
}
