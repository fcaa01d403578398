//! `--secret` and `--ssh`: parsed before the build; secret values live in memory only and
//! never reach a log line, a layer, the image config or a cache key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

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
pub fn parse_secrets(specs: &[String]) -> anyhow::Result<BTreeMap<String, Secret>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        let mut kind = None;
        let pairs = rbuild_options::csv::pairs(spec)
            .map_err(|e| anyhow::anyhow!("invalid --secret {spec:?}: {e}"))?;
        for (k, v) in pairs {
            let v = v.unwrap_or_default();
            match k.as_str() {
                "id" => id = Some(v),
                "src" | "source" => src = Some(v),
                "env" => env = Some(v),
                "type" => kind = Some(v.to_ascii_lowercase()),
                other => bail!("invalid --secret {spec:?}: unknown key {other:?}"),
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
                _ => bail!("invalid --secret {spec:?}: it needs id=ID"),
            },
        };
        let value = match (kind.as_deref(), src, env) {
            (Some("env"), Some(var), None) | (_, None, Some(var)) => std::env::var_os(&var)
                .map(|v| v.into_encoded_bytes())
                .with_context(|| format!("secret {id}: environment variable {var} is not set"))?,
            (Some("env"), None, None) => std::env::var_os(&id)
                .map(|v| v.into_encoded_bytes())
                .with_context(|| format!("secret {id}: environment variable {id} is not set"))?,
            (_, Some(path), None) => std::fs::read(&path)
                .with_context(|| format!("secret {id}: cannot read {path}"))?,
            (None | Some("file"), None, None) => match std::env::var_os(&id) {
                Some(v) => v.into_encoded_bytes(),
                None => std::fs::read(&id).with_context(|| {
                    format!("secret {id}: no src= or env= given, and neither a variable nor a file {id} exists")
                })?,
            },
            _ => bail!("invalid --secret {spec:?}: give either src= or env="),
        };
        out.insert(id, Secret(value));
    }
    Ok(out)
}

/// Parses `--ssh default|ID|ID=SOCKET`: `default` (or an id without a socket) is
/// `$SSH_AUTH_SOCK`.
pub fn parse_ssh(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, socket) = match spec.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK").with_context(|| {
                    format!("--ssh {spec}: SSH_AUTH_SOCK is not set; give {spec}=SOCKET")
                })?;
                (spec.clone(), PathBuf::from(sock))
            }
        };
        if id.is_empty() {
            bail!("invalid --ssh {spec:?}: empty id");
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
