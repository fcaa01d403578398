//! Settings that a config file, the environment and flags can give, declared in one table.
//!
//! The file is `--config FILE`, else `RBUILD_CONFIG`, else `$XDG_CONFIG_HOME/rbuild/config.toml`
//! (or `~/.config/rbuild/config.toml`) when it exists. Precedence: flag > `RBUILD_*` variable >
//! config file > default. Every key is a row of [`SETTINGS`]: the parser accepts exactly those
//! keys, validates each value by its [`ValueKind`], and `rbuild` documents them from the same
//! table. An unknown key or a bad value is an error naming the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use crate::commands::build::CompressionArg;
use crate::env;

/// What values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// An absolute or relative path (relative to the config file's directory).
    Path,
    /// A size: bytes, or a number with `K`, `M`, `G`, `T` (powers of 1024).
    Size,
    /// A whole number of at least 1.
    Count,
    /// A whole number of seconds, at least 1.
    Seconds,
    /// `uncompressed`, `gzip` or `zstd`.
    Compression,
    /// A list of `HOST[:PORT]` (in the environment: comma-separated).
    Hosts,
    /// A table from registry host to a list of mirror hosts (file only).
    Mirrors,
    /// `host`, `remap` or `remap:UID:GID:SIZE`: how root's sandboxes map ids.
    Userns,
    /// Check settings in the `# check=` directive's syntax (`skip=A,B;error=true`).
    CheckOptions,
    /// `true` or `false`.
    Bool,
    /// A positive number of CPUs, fractions allowed (`1.5`).
    Cpus,
}

impl ValueKind {
    fn describe(self) -> &'static str {
        match self {
            ValueKind::Path => "a path",
            ValueKind::Size => "a size (bytes, or a number with k, m, g, t or p: powers of 1024)",
            ValueKind::Count => "a whole number of at least 1",
            ValueKind::Seconds => "a whole number of seconds, at least 1",
            ValueKind::Compression => "one of \"uncompressed\", \"gzip\", \"zstd\"",
            ValueKind::Hosts => "a list of registry hosts (HOST[:PORT])",
            ValueKind::Mirrors => "a table of registry host = [mirror hosts]",
            ValueKind::Userns => "\"host\", \"remap\" or \"remap:UID:GID:SIZE\"",
            ValueKind::CheckOptions => {
                "check settings: \"skip=RULE1,RULE2;error=true;experimental=RULE\""
            }
            ValueKind::Bool => "true or false",
            ValueKind::Cpus => "a positive number of CPUs (1.5)",
        }
    }
}

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// Its key in the config file (`section.name`).
    pub key: &'static str,
    /// Its environment variable.
    pub env: Option<&'static str>,
    /// Its command-line flag.
    pub flag: Option<&'static str>,
    /// Its values.
    pub kind: ValueKind,
    /// Its default, for people.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// Every setting of the config file.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "root",
        env: Some(env::RBUILD_ROOT),
        flag: Some("--root"),
        kind: ValueKind::Path,
        default: "$XDG_DATA_HOME/rbuild, ~/.local/share/rbuild, /var/lib/rbuild for root",
        doc: "The store directory.",
    },
    Setting {
        key: "userns",
        env: Some(env::RBUILD_USERNS),
        flag: Some("--userns"),
        kind: ValueKind::Userns,
        default: "host",
        doc: "As root: `host` runs build steps and containers with container ids equal to host \
              ids (docker's default); `remap` maps them onto root's range in /etc/subuid and \
              /etc/subgid (`remap:UID:GID:SIZE` names one), so container root is an \
              unprivileged host user. A store keeps the mapping it was first used with. \
              Without root, the caller's /etc/subuid range is always used.",
    },
    Setting {
        key: "build.jobs",
        env: Some(env::RBUILD_JOBS),
        flag: Some("--jobs"),
        kind: ValueKind::Count,
        default: "the number of CPUs",
        doc: "How many build steps run at once.",
    },
    Setting {
        key: "build.compression",
        env: Some(env::RBUILD_COMPRESSION),
        flag: Some("--compression"),
        kind: ValueKind::Compression,
        default: "uncompressed",
        doc: "How build layers are stored (pushes compress uncompressed layers with gzip).",
    },
    Setting {
        key: "registry.insecure",
        env: Some(env::RBUILD_INSECURE_REGISTRIES),
        flag: Some("--insecure-registry"),
        kind: ValueKind::Hosts,
        default: "none (loopback registries need no entry)",
        doc: "Registries spoken to over plain HTTP.",
    },
    Setting {
        key: "registry.stall_timeout",
        env: Some(env::RBUILD_STALL_TIMEOUT),
        flag: None,
        kind: ValueKind::Seconds,
        default: "30",
        doc: "A blob or manifest download that receives less than 1 KiB in this many seconds \
              is stalled: a blob resumes with a Range request (5 attempts in all), then the \
              command fails naming the blob or manifest and the registry.",
    },
    Setting {
        key: "registry.mirrors",
        env: None,
        flag: None,
        kind: ValueKind::Mirrors,
        default: "none",
        doc: "Per registry, mirrors that pulls try first, in order, before the registry itself.",
    },
    Setting {
        key: "gc.threshold",
        env: Some(env::RBUILD_GC_THRESHOLD),
        flag: None,
        kind: ValueKind::Size,
        default: "none (no automatic gc)",
        doc: "After a build, when the store is larger than this, prune it (as `rbuild prune \
              --keep-storage gc.keep_storage`).",
    },
    Setting {
        key: "gc.keep_storage",
        env: Some(env::RBUILD_GC_KEEP_STORAGE),
        flag: None,
        kind: ValueKind::Size,
        default: "gc.threshold",
        doc: "The size the automatic gc prunes down to (least recently used first).",
    },
    Setting {
        key: "check.config",
        env: Some(env::RBUILD_CHECK_CONFIG),
        flag: Some("--check-config"),
        kind: ValueKind::CheckOptions,
        default: "none (every rule but the experimental ones, findings are warnings)",
        doc: "Settings for `rbuild check` and the checks of every build, in the syntax of the \
              `# check=` directive; a Dockerfile's own directive adds to them.",
    },
    Setting {
        key: "check.pin_versions",
        env: Some(env::RBUILD_CHECK_PIN_VERSIONS),
        flag: None,
        kind: ValueKind::Bool,
        default: "false",
        doc: "Report packages installed without a pinned version (apt-get, apk, pip): the \
              `UnpinnedPackage` rule, for teams that pin.",
    },
    Setting {
        key: "limits.memory",
        env: None,
        flag: Some("--memory"),
        kind: ValueKind::Size,
        default: "none",
        doc: "The memory (and, as much again, swap) each RUN step may use; a step over it is \
              killed by the kernel's OOM killer. Needs a cgroup: cgroup v2 with the caller's \
              cgroup delegated, or root.",
    },
    Setting {
        key: "limits.cpus",
        env: None,
        flag: Some("--cpu-quota"),
        kind: ValueKind::Cpus,
        default: "none",
        doc: "How many CPUs' worth of time each RUN step may use (1.5: 150 ms every 100 ms).",
    },
    Setting {
        key: "limits.pids",
        env: None,
        flag: None,
        kind: ValueKind::Count,
        default: "2048",
        doc: "How many processes and threads each RUN step may have at once: a fork bomb ends \
              there. Where no cgroup can be used, the build warns once (`no-cgroup`) and its \
              steps run without limits.",
    },
];

/// A setting's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// [`ValueKind::Path`].
    Path(PathBuf),
    /// [`ValueKind::Size`].
    Size(u64),
    /// [`ValueKind::Count`].
    Count(usize),
    /// [`ValueKind::Seconds`].
    Seconds(u64),
    /// [`ValueKind::Compression`].
    Compression(CompressionArg),
    /// [`ValueKind::Hosts`].
    Hosts(Vec<String>),
    /// [`ValueKind::Mirrors`].
    Mirrors(BTreeMap<String, Vec<String>>),
    /// [`ValueKind::Userns`].
    Userns(Userns),
    /// [`ValueKind::CheckOptions`]: the text, validated.
    CheckOptions(String),
    /// [`ValueKind::Bool`].
    Bool(bool),
    /// [`ValueKind::Cpus`], in billionths of a CPU.
    Cpus(u64),
}

/// How root's sandboxes map container ids to host ids (`userns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Userns {
    /// Container ids are host ids.
    #[default]
    Host,
    /// Onto root's range of /etc/subuid and /etc/subgid.
    Remap,
    /// Onto the given ranges.
    RemapTo {
        /// First host uid (container root).
        uid: u32,
        /// First host gid.
        gid: u32,
        /// How many ids.
        size: u32,
    },
}

impl std::str::FromStr for Userns {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Userns> {
        match text {
            "host" => return Ok(Userns::Host),
            "remap" => return Ok(Userns::Remap),
            _ => {}
        }
        let bad = || anyhow::anyhow!("expected {}", ValueKind::Userns.describe());
        let rest = text.strip_prefix("remap:").ok_or_else(bad)?;
        let n: Vec<u32> = rest
            .split(':')
            .map(|n| n.parse::<u32>().map_err(|_| bad()))
            .collect::<anyhow::Result<_>>()?;
        match n[..] {
            [uid, gid, size]
                if uid > 0
                    && gid > 0
                    && size > 0
                    && uid.checked_add(size).is_some()
                    && gid.checked_add(size).is_some() =>
            {
                Ok(Userns::RemapTo { uid, gid, size })
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Userns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Userns::Host => f.write_str("host"),
            Userns::Remap => f.write_str("remap"),
            Userns::RemapTo { uid, gid, size } => write!(f, "remap:{uid}:{gid}:{size}"),
        }
    }
}

/// The settings from the config file and the environment (flags are applied where they are
/// read: a flag given wins over everything here).
#[derive(Debug, Default)]
pub struct Config {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    values: BTreeMap<&'static str, Value>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Loads the configuration once for this process (`--config`, else `RBUILD_CONFIG`, else the
/// default file if it exists) and the environment.
pub fn init(explicit: Option<&Path>) -> anyhow::Result<&'static Config> {
    if let Some(c) = CONFIG.get() {
        return Ok(c);
    }
    let config = load(explicit, &|name| std::env::var(name).ok())?;
    Ok(CONFIG.get_or_init(|| config))
}

/// The configuration loaded by [`init`] (empty when it was not called).
pub fn get() -> &'static Config {
    CONFIG.get_or_init(Config::default)
}

fn default_file() -> Option<PathBuf> {
    let base = match std::env::var_os(env::XDG_CONFIG_HOME).map(PathBuf::from) {
        Some(x) if x.is_absolute() => x,
        _ => PathBuf::from(std::env::var_os(env::HOME)?).join(".config"),
    };
    Some(base.join("rbuild").join("config.toml"))
}

/// Reads the file (if any) and then the environment (through `var`, so tests can pass
/// their own).
pub fn load(
    explicit: Option<&Path>,
    var: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    let file = match explicit {
        Some(p) => Some(p.to_owned()),
        None => match var(env::RBUILD_CONFIG) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => default_file().filter(|p| p.is_file()),
        },
    };
    let mut config = Config {
        file: file.clone(),
        values: BTreeMap::new(),
    };
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        config.values = parse(path, &text)?;
    }
    for s in SETTINGS {
        let Some(name) = s.env else { continue };
        let Some(text) = var(name).filter(|t| !t.is_empty()) else {
            continue;
        };
        let value = from_env(s.kind, &text).with_context(|| {
            format!(
                "{name}={text:?} is not valid: expected {}",
                s.kind.describe()
            )
        })?;
        config.values.insert(s.key, value);
    }
    Ok(config)
}

fn from_env(kind: ValueKind, text: &str) -> anyhow::Result<Value> {
    Ok(match kind {
        ValueKind::Path => Value::Path(PathBuf::from(text)),
        ValueKind::Size => Value::Size(env::parse_size(text)?),
        ValueKind::Count => Value::Count(parse_count(text).context("not a number of at least 1")?),
        ValueKind::Seconds => Value::Seconds(
            parse_count(text).context("not a number of seconds of at least 1")? as u64,
        ),
        ValueKind::Compression => {
            Value::Compression(parse_compression(text).context("not a compression")?)
        }
        ValueKind::Hosts => Value::Hosts(
            text.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        ValueKind::Mirrors => bail!("mirrors are set in the config file only"),
        ValueKind::Userns => Value::Userns(text.parse()?),
        ValueKind::CheckOptions => {
            rbuild_compiler::check::parse_check_options(text)?;
            Value::CheckOptions(text.to_string())
        }
        ValueKind::Bool => Value::Bool(parse_bool(text).context("not true or false")?),
        ValueKind::Cpus => Value::Cpus(parse_cpus(text).context("not a number of CPUs")?),
    })
}

/// A positive number of CPUs (`--cpus 1.5`) in billionths of a CPU.
pub fn parse_cpus(text: &str) -> Option<u64> {
    let n: f64 = text.trim().parse().ok()?;
    (n.is_finite() && (0.001..=1e6).contains(&n)).then(|| (n * 1e9).round() as u64)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn parse_count(text: &str) -> Option<usize> {
    text.trim().parse::<usize>().ok().filter(|&n| n >= 1)
}

fn parse_compression(text: &str) -> Option<CompressionArg> {
    match text {
        "uncompressed" => Some(CompressionArg::Uncompressed),
        "gzip" => Some(CompressionArg::Gzip),
        "zstd" => Some(CompressionArg::Zstd),
        _ => None,
    }
}

/// `FILE:LINE:COL` of a byte offset.
fn location(path: &Path, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    format!("{}:{line}:{col}", path.display())
}

type Spanned<'i> = toml::Spanned<toml::de::DeValue<'i>>;

/// Parses a config file's text into values, checking every key and value against
/// [`SETTINGS`].
pub fn parse(path: &Path, text: &str) -> anyhow::Result<BTreeMap<&'static str, Value>> {
    let table = toml::de::DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or_else(
            || path.display().to_string(),
            |s| location(path, text, s.start),
        );
        anyhow::anyhow!("{at}: {}", e.message().trim_end_matches('\n'))
    })?;
    let mut leaves: Vec<(String, usize, &Spanned<'_>)> = Vec::new();
    flatten("", table.get_ref(), &mut leaves);
    let mut out = BTreeMap::new();
    for (key, at, value) in leaves {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
            bail!(
                "{}: unknown key `{key}` (known keys: {})",
                location(path, text, at),
                known.join(", ")
            );
        };
        let bad = |what: &str| {
            anyhow::anyhow!(
                "{}: bad value for `{key}`: {what}: expected {}",
                location(path, text, value.span().start),
                setting.kind.describe()
            )
        };
        let v = value.get_ref();
        let parsed = match setting.kind {
            ValueKind::Path => {
                let s = v.as_str().ok_or_else(|| bad(v.type_str()))?;
                let p = PathBuf::from(s);
                let p = if p.is_relative() {
                    path.parent().unwrap_or(Path::new(".")).join(p)
                } else {
                    p
                };
                Value::Path(p)
            }
            ValueKind::Size => match v {
                toml::de::DeValue::String(s) => {
                    Value::Size(env::parse_size(s).map_err(|_| bad(&format!("{s:?}")))?)
                }
                toml::de::DeValue::Integer(i) => Value::Size(
                    u64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                        .map_err(|_| bad(i.as_str()))?,
                ),
                other => return Err(bad(other.type_str())),
            },
            ValueKind::Count | ValueKind::Seconds => match v {
                toml::de::DeValue::Integer(i) => {
                    let n = usize::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| bad(i.as_str()))?;
                    if setting.kind == ValueKind::Seconds {
                        Value::Seconds(n as u64)
                    } else {
                        Value::Count(n)
                    }
                }
                other => return Err(bad(other.type_str())),
            },
            ValueKind::Compression => {
                let s = v.as_str().ok_or_else(|| bad(v.type_str()))?;
                Value::Compression(parse_compression(s).ok_or_else(|| bad(&format!("{s:?}")))?)
            }
            ValueKind::Hosts => Value::Hosts(hosts(v).ok_or_else(|| bad(v.type_str()))?),
            ValueKind::Userns => {
                let s = v.as_str().ok_or_else(|| bad(v.type_str()))?;
                Value::Userns(s.parse().map_err(|_| bad(&format!("{s:?}")))?)
            }
            ValueKind::CheckOptions => {
                let s = v.as_str().ok_or_else(|| bad(v.type_str()))?;
                rbuild_compiler::check::parse_check_options(s)
                    .map_err(|e| bad(&format!("{s:?} ({e})")))?;
                Value::CheckOptions(s.to_string())
            }
            ValueKind::Bool => match v {
                toml::de::DeValue::Boolean(b) => Value::Bool(*b),
                other => return Err(bad(other.type_str())),
            },
            ValueKind::Cpus => {
                let text = match v {
                    toml::de::DeValue::Integer(i) => i.as_str(),
                    toml::de::DeValue::Float(f) => f.as_str(),
                    toml::de::DeValue::String(s) => s.as_ref(),
                    other => return Err(bad(other.type_str())),
                };
                Value::Cpus(parse_cpus(text).ok_or_else(|| bad(&format!("{text:?}")))?)
            }
            ValueKind::Mirrors => {
                let t = v.as_table().ok_or_else(|| bad(v.type_str()))?;
                let mut map = BTreeMap::new();
                for (host, list) in t {
                    let list = hosts(list.get_ref()).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: bad value for `{key}.\"{}\"`: expected a list of mirror hosts",
                            location(path, text, list.span().start),
                            host.get_ref()
                        )
                    })?;
                    map.insert(host.get_ref().to_string(), list);
                }
                Value::Mirrors(map)
            }
        };
        out.insert(setting.key, parsed);
    }
    Ok(out)
}

fn hosts(v: &toml::de::DeValue<'_>) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|h| h.get_ref().as_str().map(str::to_string))
        .collect()
}

/// The leaves of a table as dotted keys with the offset of their key. A table is a leaf
/// when a setting takes a whole table (mirrors).
fn flatten<'a, 'i>(
    prefix: &str,
    table: &'a toml::de::DeTable<'i>,
    out: &mut Vec<(String, usize, &'a Spanned<'i>)>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        let whole = SETTINGS
            .iter()
            .any(|s| s.key == key && s.kind == ValueKind::Mirrors);
        match v.get_ref() {
            toml::de::DeValue::Table(t) if !whole => flatten(&key, t, out),
            _ => out.push((key, k.span().start, v)),
        }
    }
}

impl Config {
    /// The value of `key` (a row of [`SETTINGS`]).
    fn value(&self, key: &str) -> Option<&Value> {
        debug_assert!(SETTINGS.iter().any(|s| s.key == key), "{key} is no setting");
        self.values.get(key)
    }

    /// The value of `key` as the config file would spell it, when set.
    pub fn show(&self, key: &str) -> Option<String> {
        Some(match self.values.get(key)? {
            Value::Path(p) => format!("{:?}", p.display().to_string()),
            Value::Size(n) => n.to_string(),
            Value::Count(n) => n.to_string(),
            Value::Seconds(n) => n.to_string(),
            Value::Compression(c) => format!("{:?}", format!("{c:?}").to_ascii_lowercase()),
            Value::Hosts(h) => format!("{h:?}"),
            Value::Mirrors(m) => format!("{m:?}"),
            Value::Userns(u) => format!("{:?}", u.to_string()),
            Value::CheckOptions(c) => format!("{c:?}"),
            Value::Bool(b) => b.to_string(),
            Value::Cpus(n) => (*n as f64 / 1e9).to_string(),
        })
    }

    /// `userns`.
    pub fn userns(&self) -> Option<Userns> {
        match self.value("userns")? {
            Value::Userns(u) => Some(*u),
            _ => None,
        }
    }

    /// `root`.
    pub fn root(&self) -> Option<PathBuf> {
        match self.value("root")? {
            Value::Path(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// `build.jobs`.
    pub fn jobs(&self) -> Option<usize> {
        match self.value("build.jobs")? {
            Value::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// `build.compression`.
    pub fn compression(&self) -> Option<CompressionArg> {
        match self.value("build.compression")? {
            Value::Compression(c) => Some(*c),
            _ => None,
        }
    }

    /// `registry.insecure`.
    pub fn insecure_registries(&self) -> Vec<String> {
        match self.value("registry.insecure") {
            Some(Value::Hosts(h)) => h.clone(),
            _ => Vec::new(),
        }
    }

    /// `registry.stall_timeout`.
    pub fn stall_timeout(&self) -> Option<std::time::Duration> {
        match self.value("registry.stall_timeout")? {
            Value::Seconds(n) => Some(std::time::Duration::from_secs(*n)),
            _ => None,
        }
    }

    /// `registry.mirrors`: per registry host, its mirrors in order.
    pub fn all_mirrors(&self) -> BTreeMap<String, Vec<String>> {
        match self.value("registry.mirrors") {
            Some(Value::Mirrors(m)) => m.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// `gc.threshold`.
    pub fn gc_threshold(&self) -> Option<u64> {
        match self.value("gc.threshold")? {
            Value::Size(n) => Some(*n),
            _ => None,
        }
    }

    /// `check.config`.
    pub fn check_config(&self) -> Option<String> {
        match self.value("check.config") {
            Some(Value::CheckOptions(c)) => Some(c.clone()),
            _ => None,
        }
    }

    /// `limits.memory`, `limits.cpus` and `limits.pids`: the limits of every RUN step
    /// (by default only [`rbuild_engine::DEFAULT_STEP_PIDS`] processes).
    pub fn step_limits(&self) -> rbuild_executor::cgroup::Limits {
        rbuild_executor::cgroup::Limits {
            memory: match self.value("limits.memory") {
                Some(Value::Size(n)) => Some(*n),
                _ => None,
            },
            memory_swap: None,
            nano_cpus: match self.value("limits.cpus") {
                Some(Value::Cpus(n)) => Some(*n),
                _ => None,
            },
            pids: match self.value("limits.pids") {
                Some(Value::Count(n)) => Some(*n as u64),
                _ => Some(rbuild_engine::DEFAULT_STEP_PIDS),
            },
        }
    }

    /// `check.pin_versions`.
    pub fn check_pin_versions(&self) -> bool {
        matches!(self.value("check.pin_versions"), Some(Value::Bool(true)))
    }

    /// `gc.keep_storage`, by default the threshold.
    pub fn gc_keep_storage(&self) -> Option<u64> {
        match self.value("gc.keep_storage") {
            Some(Value::Size(n)) => Some(*n),
            _ => self.gc_threshold(),
        }
    }
}

/// The README's table of settings, generated from [`SETTINGS`] (a test keeps the README in
/// step).
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Key | Variable | Flag | Value | Default | Meaning |\n|---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            s.key,
            s.env.map_or("-".to_string(), |e| format!("`{e}`")),
            s.flag.map_or("-".to_string(), |f| format!("`{f}`")),
            s.kind.describe(),
            s.default,
            s.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> anyhow::Result<BTreeMap<&'static str, Value>> {
        parse(Path::new("/etc/rbuild.toml"), text)
    }

    #[test]
    fn every_key_parses() {
        let v = parse_text(
            "root = \"/srv/rbuild\"\n[build]\njobs = 3\ncompression = \"zstd\"\n\
             [registry]\ninsecure = [\"reg.local:5000\"]\nstall_timeout = 45\n\
             [registry.mirrors]\n\"docker.io\" = [\"127.0.0.1:5001\", \"127.0.0.1:5002\"]\n\
             [gc]\nthreshold = \"10G\"\nkeep_storage = 1048576\n",
        )
        .unwrap();
        assert_eq!(v["root"], Value::Path("/srv/rbuild".into()));
        assert_eq!(v["build.jobs"], Value::Count(3));
        assert_eq!(
            v["build.compression"],
            Value::Compression(CompressionArg::Zstd)
        );
        assert_eq!(
            v["registry.insecure"],
            Value::Hosts(vec!["reg.local:5000".into()])
        );
        assert_eq!(v["registry.stall_timeout"], Value::Seconds(45));
        let Value::Mirrors(m) = &v["registry.mirrors"] else {
            panic!("mirrors")
        };
        assert_eq!(m["docker.io"], ["127.0.0.1:5001", "127.0.0.1:5002"]);
        assert_eq!(v["gc.threshold"], Value::Size(10 << 30));
        assert_eq!(v["gc.keep_storage"], Value::Size(1 << 20));
        // Relative paths are relative to the file.
        let v = parse_text("root = \"store\"").unwrap();
        assert_eq!(v["root"], Value::Path("/etc/store".into()));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse_text("[build]\njobs = 2\njbos = 3\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/etc/rbuild.toml:3:1: unknown key `build.jbos`"),
            "{e}"
        );
        let e = parse_text("\n\n[gc]\nthreshold = \"lots\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/etc/rbuild.toml:4:13: bad value for `gc.threshold`: \"lots\""),
            "{e}"
        );
        let e = parse_text("[build]\njobs = 0\n").unwrap_err();
        assert!(
            e.to_string().contains(":2:8: bad value for `build.jobs`"),
            "{e}"
        );
        let e = parse_text("[build]\ncompression = \"lz4\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":2:15: bad value for `build.compression`"),
            "{e}"
        );
        let e = parse_text("[registry]\nstall_timeout = \"soon\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":2:17: bad value for `registry.stall_timeout`"),
            "{e}"
        );
        let e = parse_text("root = \n").unwrap_err();
        assert!(e.to_string().starts_with("/etc/rbuild.toml:1:"), "{e}");
    }

    #[test]
    fn readme_documents_every_setting() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's config file table is out of date; it should be:\n{table}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[build]\njobs = 2\n[gc]\nthreshold = \"1G\"\n").unwrap();
        let none = |_: &str| None;
        let c = load(Some(&file), &none).unwrap();
        assert_eq!(c.jobs(), Some(2));
        assert_eq!(c.gc_keep_storage(), Some(1 << 30));
        let env = |n: &str| (n == env::RBUILD_JOBS).then(|| "5".to_string());
        let c = load(Some(&file), &env).unwrap();
        assert_eq!(c.jobs(), Some(5));
        let bad = |n: &str| (n == env::RBUILD_JOBS).then(|| "many".to_string());
        let e = load(Some(&file), &bad).unwrap_err();
        assert!(format!("{e:#}").contains("RBUILD_JOBS=\"many\""), "{e:#}");
        // RBUILD_CONFIG names the file when no flag does.
        let via_env = |n: &str| (n == env::RBUILD_CONFIG).then(|| file.display().to_string());
        assert_eq!(load(None, &via_env).unwrap().jobs(), Some(2));
    }
}
