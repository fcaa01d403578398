//! Every environment variable rbuild reads, declared in one place.
//!
//! The README's "Configuration" table lists the same names; keep the two in step.

/// How long one `git` command of a git build input may run (`30s`, `10m`, `1h`; default 30
/// minutes).
pub const RBUILD_GIT_TIMEOUT: &str = "RBUILD_GIT_TIMEOUT";
/// The store root (`--root`).
pub const RBUILD_ROOT: &str = "RBUILD_ROOT";
/// The log filter, in `tracing_subscriber::EnvFilter` syntax (`--verbose` raises it).
pub const RBUILD_LOG: &str = "RBUILD_LOG";
/// The config file (`--config`); default `$XDG_CONFIG_HOME/rbuild/config.toml`.
pub const RBUILD_CONFIG: &str = "RBUILD_CONFIG";
/// How root's sandboxes map container ids to host ids (`--userns`, config `userns`).
pub const RBUILD_USERNS: &str = "RBUILD_USERNS";
/// How many build steps run at once (`--jobs`, config `build.jobs`).
pub const RBUILD_JOBS: &str = "RBUILD_JOBS";
/// How build layers are stored (`--compression`, config `build.compression`).
pub const RBUILD_COMPRESSION: &str = "RBUILD_COMPRESSION";
/// Comma-separated registries spoken to over plain HTTP (`--insecure-registry`, config
/// `registry.insecure`).
pub const RBUILD_INSECURE_REGISTRIES: &str = "RBUILD_INSECURE_REGISTRIES";
/// The store size above which a build prunes afterwards (config `gc.threshold`).
pub const RBUILD_GC_THRESHOLD: &str = "RBUILD_GC_THRESHOLD";
/// The size the automatic gc prunes down to (config `gc.keep_storage`).
pub const RBUILD_GC_KEEP_STORAGE: &str = "RBUILD_GC_KEEP_STORAGE";
/// Check settings for `rbuild check` and builds (`--check-config`, config `check.config`).
pub const RBUILD_CHECK_CONFIG: &str = "RBUILD_CHECK_CONFIG";
/// Whether `rbuild check` reports unpinned packages (config `check.pin_versions`).
pub const RBUILD_CHECK_PIN_VERSIONS: &str = "RBUILD_CHECK_PIN_VERSIONS";
/// Where the default config file lives (`$XDG_CONFIG_HOME/rbuild/config.toml`).
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// Where the conformance vectors are (tests only).
#[allow(dead_code)]
pub const RBUILD_CONFORMANCE_DIR: &str = "RBUILD_CONFORMANCE_DIR";
/// How many times `tests/hostile/crash.rs` kills a build (tests only; default 16).
#[allow(dead_code)]
pub const RBUILD_KILL_ROUNDS: &str = "RBUILD_KILL_ROUNDS";
/// Disables colour in every output when set to any value (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// Fixes the creation time of images (and clamps file mtimes) for reproducible output
/// (<https://reproducible-builds.org/specs/source-date-epoch/>).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// Where the default store root lives for a non-root user (`$XDG_DATA_HOME/rbuild`).
pub const XDG_DATA_HOME: &str = "XDG_DATA_HOME";
/// The home directory (`~/.local/share/rbuild` when `XDG_DATA_HOME` is unset).
pub const HOME: &str = "HOME";
/// The docker config directory (`config.json` with registry credentials); default `~/.docker`
/// (read by `rbuild_registry::credentials`).
#[allow(dead_code)]
pub const DOCKER_CONFIG: &str = rbuild_registry::credentials::ENV_DOCKER_CONFIG;
/// A containers-auth.json file; when set, `login`/`logout` write it and pulls read it first
/// (read by `rbuild_registry::credentials`).
#[allow(dead_code)]
pub const REGISTRY_AUTH_FILE: &str = rbuild_registry::credentials::ENV_REGISTRY_AUTH_FILE;
/// `overlay` or `copy`: forces the snapshotter (read by `rbuild_executor::snapshot`).
#[allow(dead_code)]
pub const RBUILD_SNAPSHOTTER: &str = "RBUILD_SNAPSHOTTER";
/// The largest uncompressed size of one layer that any command reads (`run`, `load`,
/// `report`, a build's outputs), of what a compressed archive (`load`, `import`, `report`,
/// ADD) expands to, and of an archive `load` or `build -` reads from stdin (bytes, or with a
/// `k`, `m`, `g`, `t` or `p` unit, powers of 1024 as docker's `--shm-size` reads them); default
/// [`DEFAULT_MAX_LAYER_BYTES`](rbuild_tarlimits::DEFAULT_MAX_LAYER_BYTES). Past it,
/// the command stops with an error naming the layer or archive (gzip/zstd bombs). The other
/// limits ([`crate::limits`]) are fixed.
pub const RBUILD_MAX_LAYER_SIZE: &str = "RBUILD_MAX_LAYER_SIZE";
/// How many seconds a blob or manifest download may go without receiving
/// [`STALL_PROGRESS_BYTES`](rbuild_registry::STALL_PROGRESS_BYTES) before it is ended as
/// stalled (config `registry.stall_timeout`).
pub const RBUILD_STALL_TIMEOUT: &str = "RBUILD_STALL_TIMEOUT";

/// [`RBUILD_MAX_LAYER_SIZE`] from the environment, or its default.
pub fn max_layer_size() -> anyhow::Result<u64> {
    match std::env::var(RBUILD_MAX_LAYER_SIZE) {
        // `RBUILD_MAX_LAYER_SIZE="lots" is not a size (...)`
        Ok(v) => parse_size(&v).map_err(|e| anyhow::anyhow!("{RBUILD_MAX_LAYER_SIZE}={e}")),
        Err(std::env::VarError::NotPresent) => Ok(rbuild_tarlimits::DEFAULT_MAX_LAYER_BYTES),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{RBUILD_MAX_LAYER_SIZE} is not valid UTF-8")
        }
    }
}

/// Parses a size the way docker reads `--shm-size` and buildx `--keep-storage`: bytes, or
/// a number with a `k`, `m`, `g`, `t` or `p` unit, every one a power of 1024 (`64m`, `1.5GB`,
/// `10GiB`).
pub fn parse_size(text: &str) -> Result<u64, rbuild_options::size::SizeError> {
    rbuild_options::size::parse(text, rbuild_options::size::Rule::Binary)
}
