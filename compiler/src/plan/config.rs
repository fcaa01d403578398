//! The image configuration a stage produces, in the Docker/OCI config JSON shape
//! (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `Labels`, `ExposedPorts`,
//! `Volumes`, `StopSignal`, `Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`).
//!
//! oci-spec's `Config` has no `Healthcheck`, `OnBuild` or `Shell` (they are Docker
//! extensions that BuildKit writes into OCI configs too), so these are our own serde
//! types with the same JSON field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `{}` value of `ExposedPorts` and `Volumes` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// A container health check (`Healthcheck`); durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    /// Time one check may take.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// Grace period after start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    /// Time between checks during the start period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    /// Failures before the container is unhealthy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The runtime part of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// `EXPOSE`, as `port/proto` keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV`, as `NAME=value` in the order first set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Set by CMD (Docker compatibility).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    /// `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    /// `SHELL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
}

/// The default `PATH` BuildKit gives images whose config sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default `PATH` of Windows images.
pub const DEFAULT_PATH_WINDOWS: &str = "c:\\Windows\\System32;c:\\Windows";

/// The default `PATH` for images of operating system `os`.
pub fn default_path(os: &str) -> &'static str {
    if os == "windows" {
        DEFAULT_PATH_WINDOWS
    } else {
        DEFAULT_PATH
    }
}

/// The default shell for shell-form commands on `os`: `/bin/sh -c`, `cmd /S /C` on Windows.
pub fn default_shell(os: &str) -> Vec<String> {
    if os == "windows" {
        vec!["cmd".into(), "/S".into(), "/C".into()]
    } else {
        vec!["/bin/sh".into(), "-c".into()]
    }
}

impl ImageConfig {
    /// The value of environment variable `name`.
    pub fn env_get(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// Sets `name=value`, replacing an earlier value in place.
    pub fn env_set(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        match self
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == name)
        {
            Some(kv) => *kv = entry,
            None => self.env.push(entry),
        }
    }

    /// The shell used for shell-form commands on `os` (`SHELL`, or [`default_shell`]).
    pub fn shell_or_default(&self, os: &str) -> Vec<String> {
        if self.shell.is_empty() {
            default_shell(os)
        } else {
            self.shell.clone()
        }
    }
}

/// One image history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The instruction, in BuildKit's history format (`RUN |1 A=b /bin/sh -c make`).
    pub created_by: String,
    /// Whether the step adds no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// Expands an `EXPOSE` word into `port/proto` keys: `80` → `80/tcp`, `7000-7002/udp` →
/// three keys. Returns the reason a word is invalid.
pub fn expand_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol {proto:?} (expected tcp, udp or sctp)"
        ));
    }
    // An `ip:hostport:containerport` mapping keeps only the container port, like docker.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let parse = |p: &str| -> Result<u16, String> {
        p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid port range {ports:?}: end is before start"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges() {
        assert_eq!(expand_ports("80"), Ok(vec!["80/tcp".to_string()]));
        assert_eq!(
            expand_ports("7000-7002/udp"),
            Ok(vec![
                "7000/udp".into(),
                "7001/udp".into(),
                "7002/udp".into()
            ])
        );
        assert!(expand_ports("80/xyz").is_err());
        assert!(expand_ports("9-3").is_err());
        assert!(expand_ports("http").is_err());
        assert!(expand_ports("70000").is_err());
    }

    #[test]
    fn env_replaces_in_place() {
        let mut c = ImageConfig::default();
        c.env_set("A", "1");
        c.env_set("B", "2");
        c.env_set("A", "3");
        assert_eq!(c.env, ["A=3", "B=2"]);
        assert_eq!(c.env_get("B"), Some("2"));
        assert_eq!(c.env_get("C"), None);
    }

    #[test]
    fn json_field_names_match_docker() {
        let mut c = ImageConfig {
            working_dir: "/app".into(),
            on_build: vec!["RUN x".into()],
            args_escaped: true,
            ..Default::default()
        };
        c.exposed_ports.insert("80/tcp".into(), Empty {});
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"WorkingDir": "/app", "OnBuild": ["RUN x"],
                "ArgsEscaped": true, "ExposedPorts": {"80/tcp": {}}})
        );
    }
}
