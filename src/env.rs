//! Every environment variable rbuild reads, declared in one place.
//!
//! The README's "Configuration" table lists the same names; keep the two in step.

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
/// The docker config directory (`config.json` with registry credentials); default `~/.docker`.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// A containers-auth.json file; when set, `login`/`logout` write it and pulls read it first.
pub const REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";
/// `overlay` or `copy`: forces the snapshotter (read by `rbuild_executor::snapshot`).
#[allow(dead_code)]
pub const RBUILD_SNAPSHOTTER: &str = "RBUILD_SNAPSHOTTER";
/// The largest uncompressed size of one layer that any command reads (`run`, `load`,
/// `report`, a build's outputs), of what a compressed archive (`load`, `import`, `report`,
/// ADD) expands to, and of an archive `load` or `build -` reads from stdin (bytes, or with a
/// `K`, `M`, `G` or `T` suffix, powers of 1024); default
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
        Ok(v) => parse_size(&v).ok_or_else(|| {
            anyhow::anyhow!(
                "{RBUILD_MAX_LAYER_SIZE}={v:?} is not a size (bytes, or a number with K, M, G or T)"
            )
        }),
        Err(std::env::VarError::NotPresent) => Ok(rbuild_tarlimits::DEFAULT_MAX_LAYER_BYTES),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{RBUILD_MAX_LAYER_SIZE} is not valid UTF-8")
        }
    }
}

/// Parses `123`, `64K`, `1m`, `10GiB`, `2T` (powers of 1024) into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size(" 1m "), Some(1 << 20));
        assert_eq!(parse_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_size("2t"), Some(2 << 40));
        for bad in ["", "K", "1.5G", "-1", "1X", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
