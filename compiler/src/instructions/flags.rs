//! Flag values: `--chmod` modes, `--mount` specifications, network and security modes,
//! and Go-style durations for HEALTHCHECK. Each parser returns the reason a value is
//! wrong as text; the caller wraps it in a located error naming the flag.

use serde::Serialize;

/// A `--chmod` value: an octal mode (`0755`) or a symbolic one (`u+x,go-w`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Chmod {
    /// Octal permission bits, at most `07777`.
    Octal(u32),
    /// A symbolic mode in chmod(1) syntax, kept as written and applied per file.
    Symbolic(String),
}

impl Chmod {
    /// The text the digest and the renderers use (`0755` or the symbolic clauses).
    pub fn canonical(&self) -> String {
        match self {
            Chmod::Octal(m) => format!("{m:04o}"),
            Chmod::Symbolic(s) => s.clone(),
        }
    }
}

/// Parses a `--chmod` value like BuildKit: octal digits up to `07777`, or comma-separated
/// symbolic clauses `[ugoa]*([-+=][rwxXst]*|[-+=][ugo])+`.
pub fn parse_chmod(value: &str) -> Result<Chmod, String> {
    if value.is_empty() {
        return Err("empty mode".into());
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let mode =
            u32::from_str_radix(value, 8).map_err(|_| format!("{value:?} is not an octal mode"))?;
        if mode > 0o7777 {
            return Err(format!("{value:?} is larger than 7777"));
        }
        return Ok(Chmod::Octal(mode));
    }
    for clause in value.split(',') {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        if rest.is_empty() {
            return Err(format!("clause {clause:?} has no operator"));
        }
        let mut chars = rest.chars().peekable();
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return Err(format!("unexpected {op:?} in clause {clause:?}"));
            }
            let mut perms = String::new();
            while let Some(&c) = chars.peek() {
                if matches!(c, '+' | '-' | '=') {
                    break;
                }
                perms.push(c);
                chars.next();
            }
            let copy = matches!(&*perms, "u" | "g" | "o");
            if !copy && !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(format!(
                    "invalid permissions {perms:?} in clause {clause:?}"
                ));
            }
        }
    }
    Ok(Chmod::Symbolic(value.to_string()))
}

/// The network a RUN step sees (`RUN --network=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default (host networking for rbuild).
    Default,
    /// No network at all: only a loopback interface.
    None,
    /// The host's network namespace.
    Host,
}

impl NetworkMode {
    /// Parses `default`, `none` or `host`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!("{value:?} is not one of default, none, host")),
        }
    }

    /// The name as written in a Dockerfile.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// The security mode of a RUN step (`RUN --security=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// The default sandbox.
    Sandbox,
    /// All capabilities, no seccomp: needs the builder's permission.
    Insecure,
}

impl SecurityMode {
    /// Parses `sandbox` or `insecure`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "sandbox" => Ok(SecurityMode::Sandbox),
            "insecure" => Ok(SecurityMode::Insecure),
            _ => Err(format!("{value:?} is not one of sandbox, insecure")),
        }
    }

    /// The name as written in a Dockerfile.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Sandbox => "sandbox",
            SecurityMode::Insecure => "insecure",
        }
    }
}

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory of the context, another stage or an image.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty in-memory file system.
    Tmpfs,
    /// A secret file (or environment variable) supplied by the caller.
    Secret,
    /// An SSH agent socket supplied by the caller.
    Ssh,
}

impl MountType {
    fn parse(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "bind" => Ok(MountType::Bind),
            "cache" => Ok(MountType::Cache),
            "tmpfs" => Ok(MountType::Tmpfs),
            "secret" => Ok(MountType::Secret),
            "ssh" => Ok(MountType::Ssh),
            _ => Err(format!(
                "unknown mount type {value:?} (expected bind, cache, tmpfs, secret or ssh)"
            )),
        }
    }

    /// The name as written in a Dockerfile.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Every writer uses the same directory at once.
    Shared,
    /// A writer that finds the directory busy gets a fresh one.
    Private,
    /// Writers wait for each other.
    Locked,
}

impl CacheSharing {
    /// The name as written in a Dockerfile.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }
}

/// One parsed `RUN --mount=...` with BuildKit's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The mount kind (`type=`, default `bind`).
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Where it appears in the container.
    pub target: String,
    /// The path inside the source (`source=`/`src=`).
    pub source: Option<String>,
    /// The stage or image the source comes from (`from=`); `None` is the build context.
    pub from: Option<String>,
    /// Whether the mount is read-only.
    pub readonly: bool,
    /// The cache, secret or ssh id.
    pub id: Option<String>,
    /// Cache sharing mode (cache mounts only).
    pub sharing: Option<CacheSharing>,
    /// File mode for cache/secret/ssh mounts.
    pub mode: Option<u32>,
    /// Owner uid for cache/secret/ssh mounts.
    pub uid: Option<u32>,
    /// Owner gid for cache/secret/ssh mounts.
    pub gid: Option<u32>,
    /// Size limit in bytes (tmpfs only).
    pub size: Option<u64>,
    /// Whether a missing secret or ssh socket is an error.
    pub required: bool,
    /// The environment variable a secret is exposed as (secret only).
    pub env: Option<String>,
}

fn parse_bool(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(format!("{key}={v:?} is not a boolean")),
    }
}

/// Parses a `--mount` value. `expand` is applied to each field's value (BuildKit expands
/// mount values with the build environment) before it is interpreted; `ssh_index` numbers
/// the default ssh socket targets.
pub fn parse_mount<E>(
    value: &str,
    ssh_index: usize,
    mut expand: impl FnMut(&str) -> Result<String, E>,
) -> Result<Result<Mount, String>, E> {
    // One CSV record, as BuildKit reads it: `"target=/a,b"` holds a comma.
    let fields = match rbuild_options::csv::fields(value) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut kind = MountType::Bind;
    let mut pairs = Vec::new();
    for field in fields {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let val = match val {
            Some(v) => Some(expand(&v)?),
            None => None,
        };
        if key == "type" {
            let Some(v) = val else {
                return Ok(Err("type needs a value".into()));
            };
            kind = match MountType::parse(&v) {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
        } else {
            pairs.push((key, val));
        }
    }
    Ok(build_mount(kind, pairs, ssh_index))
}

fn build_mount(
    kind: MountType,
    pairs: Vec<(String, Option<String>)>,
    ssh_index: usize,
) -> Result<Mount, String> {
    let mut m = Mount {
        kind,
        target: String::new(),
        source: None,
        from: None,
        readonly: matches!(kind, MountType::Bind | MountType::Secret | MountType::Ssh),
        id: None,
        sharing: (kind == MountType::Cache).then_some(CacheSharing::Shared),
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let not_for = |key: &str, kinds: &[MountType]| -> Result<(), String> {
        if kinds.contains(&kind) {
            Err(format!("{key} is not allowed for {} mounts", kind.as_str()))
        } else {
            Ok(())
        }
    };
    for (key, val) in pairs {
        let need = |v: &Option<String>| -> Result<String, String> {
            v.clone().ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "target" | "dst" | "destination" => m.target = need(&val)?,
            "source" | "src" => {
                not_for(&key, &[MountType::Tmpfs])?;
                m.source = Some(need(&val)?);
            }
            "from" => {
                not_for(&key, &[MountType::Tmpfs, MountType::Secret, MountType::Ssh])?;
                m.from = Some(need(&val)?);
            }
            "readonly" | "ro" => m.readonly = parse_bool(&key, val.as_deref())?,
            "readwrite" | "rw" => m.readonly = !parse_bool(&key, val.as_deref())?,
            "id" => {
                not_for(&key, &[MountType::Bind, MountType::Tmpfs])?;
                m.id = Some(need(&val)?);
            }
            "sharing" => {
                if kind != MountType::Cache {
                    return Err("sharing is only allowed for cache mounts".into());
                }
                m.sharing = Some(match need(&val)?.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    v => {
                        return Err(format!(
                            "sharing={v:?} is not one of shared, private, locked"
                        ));
                    }
                });
            }
            "mode" => {
                not_for(&key, &[MountType::Bind, MountType::Tmpfs])?;
                let v = need(&val)?;
                let mode = u32::from_str_radix(&v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("mode={v:?} is not an octal mode"))?;
                m.mode = Some(mode);
            }
            "uid" | "gid" => {
                not_for(&key, &[MountType::Bind, MountType::Tmpfs])?;
                let v = need(&val)?;
                let id: u32 = v
                    .parse()
                    .map_err(|_| format!("{key}={v:?} is not a number"))?;
                if key == "uid" {
                    m.uid = Some(id);
                } else {
                    m.gid = Some(id);
                }
            }
            "size" => {
                if kind != MountType::Tmpfs {
                    return Err("size is only allowed for tmpfs mounts".into());
                }
                // Docker reads a tmpfs size with RAMInBytes: `64m` is 64 MiB.
                let text = need(&val)?;
                m.size = Some(
                    rbuild_options::size::parse(&text, rbuild_options::size::Rule::Binary)
                        .map_err(|e| e.to_string())?,
                );
            }
            "required" => {
                if !matches!(kind, MountType::Secret | MountType::Ssh) {
                    return Err("required is only allowed for secret and ssh mounts".into());
                }
                m.required = parse_bool(&key, val.as_deref())?;
            }
            "env" => {
                if kind != MountType::Secret {
                    return Err("env is only allowed for secret mounts".into());
                }
                m.env = Some(need(&val)?);
            }
            _ => return Err(format!("unknown mount option {key:?}")),
        }
    }
    // Bind, tmpfs and cache mounts without a target (or with a relative one) are mounted
    // at (or below) the working directory: the planner, which knows it, resolves them.
    match kind {
        MountType::Bind | MountType::Tmpfs => {}
        MountType::Cache => {
            if m.id.is_none() {
                // BuildKit's default id: the target as written, cleaned (`.` when empty).
                m.id = Some(rbuild_pathmatch::clean_path(&m.target).into_owned());
            }
        }
        MountType::Secret => {
            if m.id.is_none() && m.target.is_empty() && m.env.is_none() {
                return Err("secret mount needs an id or a target".into());
            }
            if m.id.is_none() {
                let base = m.target.rsplit('/').next().unwrap_or_default().to_string();
                m.id = Some(base);
            }
            if m.target.is_empty() && m.env.is_none() {
                m.target = format!("/run/secrets/{}", m.id.as_deref().unwrap_or_default());
            }
            m.mode.get_or_insert(0o400);
        }
        MountType::Ssh => {
            m.id.get_or_insert_with(|| "default".into());
            if m.target.is_empty() {
                m.target = format!("/run/buildkit/ssh_agent.{ssh_index}");
            }
            m.mode.get_or_insert(0o600);
        }
    }
    Ok(m)
}

/// Parses a Go duration (`1m30s`, `500ms`, `1.5h`, `0`) into nanoseconds.
pub fn parse_duration(value: &str) -> Result<u64, String> {
    let bad = || format!("{value:?} is not a duration (like 30s, 1m30s, 500ms)");
    let s = value.strip_prefix('+').unwrap_or(value);
    if s.starts_with('-') {
        return Err(format!("{value:?} is negative"));
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += num * mult;
    }
    if total > u64::MAX as f64 {
        return Err(format!("{value:?} is too long"));
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(parse_chmod("755"), Ok(Chmod::Octal(0o755)));
        assert_eq!(parse_chmod("0644"), Ok(Chmod::Octal(0o644)));
        assert!(parse_chmod("8").is_err());
        assert!(parse_chmod("17777").is_err());
        assert_eq!(
            parse_chmod("u+x,go-w"),
            Ok(Chmod::Symbolic("u+x,go-w".into()))
        );
        assert!(parse_chmod("a=rX").is_ok());
        assert!(parse_chmod("u+q").is_err());
        assert!(parse_chmod("ux").is_err());
        assert!(parse_chmod("").is_err());
    }

    fn mount(v: &str) -> Result<Mount, String> {
        parse_mount::<()>(v, 0, |s| Ok(s.to_string())).unwrap()
    }

    #[test]
    fn mounts_with_defaults() {
        let m = mount("type=cache,target=/root/.cache").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Shared));
        assert!(!m.readonly);
        let m = mount("target=/src,from=build,source=/out,rw").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(!m.readonly);
        assert_eq!(m.from.as_deref(), Some("build"));
        let m = mount("type=secret,id=tok").unwrap();
        assert_eq!(m.target, "/run/secrets/tok");
        assert_eq!(m.mode, Some(0o400));
        let m = mount("type=ssh").unwrap();
        assert_eq!(m.target, "/run/buildkit/ssh_agent.0");
        let m = mount("type=tmpfs,dst=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = mount("\"type=bind,target=/a,b\"").unwrap_err();
        assert!(m.contains("type"), "{m}");
        let m = mount("type=bind,\"target=/a,b\",source=x").unwrap();
        assert_eq!(m.target, "/a,b");
        let m = mount("type=bind,target=\"/a,b\"").unwrap_err();
        assert!(m.contains("field 2"), "{m}");
    }

    #[test]
    fn mounts_without_a_target_are_left_to_the_planner() {
        // The planner joins them to the working directory, as BuildKit does.
        for ok in [
            "type=cache",
            "type=bind",
            "type=tmpfs",
            "type=bind,target=rel",
        ] {
            assert!(mount(ok).is_ok(), "{ok}");
        }
        assert_eq!(mount("type=cache").unwrap().id.as_deref(), Some("."));
        assert_eq!(
            mount("type=cache,target=/c/").unwrap().id.as_deref(),
            Some("/c")
        );
    }

    #[test]
    fn bad_mounts() {
        for bad in [
            "type=nfs,target=/x",
            "type=cache,target=/x,sharing=maybe",
            "type=tmpfs,target=/x,from=a",
            "type=bind,target=/x,size=1",
            "type=bind,target=/x,colour=red",
            "type=cache,target=/x,mode=999",
            "type=cache,target=/x,uid=me",
            "type=bind,target=/x,ro=perhaps",
        ] {
            assert!(mount(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        for bad in ["", "10", "1x", "-1s", "s", "1m30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
