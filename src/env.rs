//! Every environment variable rbuild reads, declared in one place.
//!
//! The README's "Configuration" table lists the same names; keep the two in step.

/// The store root (`--root`).
pub const RBUILD_ROOT: &str = "RBUILD_ROOT";
/// The log filter, in `tracing_subscriber::EnvFilter` syntax (`--verbose` raises it).
pub const RBUILD_LOG: &str = "RBUILD_LOG";
/// Where the conformance vectors are (tests only).
#[allow(dead_code)]
pub const RBUILD_CONFORMANCE_DIR: &str = "RBUILD_CONFORMANCE_DIR";
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
