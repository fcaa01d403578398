//! The planner's public types: what planning takes ([`PlanOptions`], [`Platform`], the
//! [`BaseConfigs`] and [`TriggerParser`] the caller supplies) and what it gives: a [`Plan`] of
//! [`StagePlan`]s and [`Op`]s in dependency order.

use std::collections::BTreeMap;

pub use rbuild_platform::Platform;

use serde::Serialize;

use super::{Digest, History, ImageConfig, PlanWarning};
use crate::instructions::{Chmod, Mount, NetworkMode, RawInstruction, SecurityMode, Span};

/// What the caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// The platform images are built for (`TARGETPLATFORM`).
    pub target_platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// `--build-context NAME=VALUE`, by [`named_context_key`] of NAME.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            target: None,
            build_args: BTreeMap::new(),
            target_platform: Platform::linux_amd64(),
            build_platform: Platform::linux_amd64(),
            named_contexts: BTreeMap::new(),
        }
    }
}

/// What a named context (`--build-context NAME=VALUE`) stands for in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NamedContext {
    /// An image: `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME` read this
    /// reference instead.
    Image {
        /// The image's reference.
        reference: String,
    },
    /// A directory: its files, read as the build context is (`OpKind::Context` with the
    /// context's name).
    Local,
}

/// The name under which a named context matches a `FROM`, `--from` or stage name, as
/// BuildKit compares them: the reference's short form (`docker.io/library/alpine:latest`,
/// `library/alpine` and `alpine` are all `alpine`; `alpine:3.20` stays itself), without a
/// `:latest` tag. `None` for what is not a valid image name (upper-case letters in the
/// path, an empty component) and for `scratch` and `context`, which never name a context.
pub fn named_context_key(name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case("scratch") || name.eq_ignore_ascii_case("context") {
        return None;
    }
    let (domain, rest) = match name.split_once('/') {
        Some((d, r)) if d.contains(['.', ':']) || d == "localhost" => (d.to_string(), r),
        _ => ("docker.io".to_string(), name),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    // The path ends where a tag or digest starts.
    let path_end = rest
        .find('@')
        .unwrap_or(rest.len())
        .min(rest.rfind(':').unwrap_or(rest.len()));
    let (path, suffix) = rest.split_at(path_end);
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || !c.chars().all(valid))
    {
        return None;
    }
    let path = if domain == "docker.io" {
        match path.strip_prefix("library/") {
            Some(p) if !p.contains('/') => p.to_string(),
            _ => path.to_string(),
        }
    } else {
        format!("{domain}/{path}")
    };
    let suffix = suffix.strip_prefix(":latest").map_or(suffix, |s| s);
    if suffix.starts_with(':') && suffix.len() == 1 {
        return None;
    }
    Some(format!("{path}{suffix}"))
}

/// The proxy ARGs: usable without declaration, visible to RUN, never in history or cache
/// keys.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Parses an ONBUILD trigger from a base image config into an instruction.
pub trait TriggerParser: Sync {
    /// Parses one trigger (`RUN echo hi`); the error says why it is not an instruction.
    fn parse_trigger(&self, text: &str) -> Result<RawInstruction, String>;
}

/// Supplies the config of base images (fetched by the caller; the compiler does no I/O).
pub trait BaseConfigs: Sync {
    /// The config of `reference` for `platform`, if known.
    fn base_config(&self, reference: &str, platform: &Platform) -> Option<ImageConfig>;

    /// A small text file of `reference`'s file system (`etc/passwd`), when the caller can
    /// read it; `None` by default. Only `rbuild check` asks (for the users USER names).
    fn base_file(&self, _reference: &str, _path: &str) -> Option<String> {
        None
    }

    /// The platform `reference`'s config says it is for, when the caller has the image;
    /// `None` by default. Only the checks ask (a single-platform base of another
    /// architecture than the stage's).
    fn base_platform(&self, _reference: &str) -> Option<Platform> {
        None
    }
}

/// No base configs: every image base is "unresolved" (what `rbuild plan` shows).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBaseConfigs;

impl BaseConfigs for NoBaseConfigs {
    fn base_config(&self, _: &str, _: &Platform) -> Option<ImageConfig> {
        None
    }
}

impl BaseConfigs for BTreeMap<String, ImageConfig> {
    fn base_config(&self, reference: &str, _: &Platform) -> Option<ImageConfig> {
        self.get(reference).cloned()
    }
}

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StageBase {
    /// `FROM scratch`.
    Scratch,
    /// A registry image.
    Image {
        /// The reference as written after expansion.
        reference: String,
    },
    /// An earlier stage.
    Stage {
        /// Its index.
        index: usize,
    },
}

/// Whether a stage's base config was known when planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseConfigState {
    /// Scratch, another stage, or a config the caller supplied.
    Resolved,
    /// An image whose config was not supplied: inherited settings and ONBUILD triggers
    /// are unknown.
    Unresolved,
}

/// The image a stage produces (its config, author and history).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StageImage {
    /// The runtime config.
    pub config: ImageConfig,
    /// MAINTAINER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// One entry per instruction of the stage (base history not included).
    pub history: Vec<History>,
}

/// One stage of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagePlan {
    /// 0-based index.
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The FROM line.
    pub span: Span,
    /// Where it starts from.
    pub base: StageBase,
    /// The platform it builds for.
    pub platform: Platform,
    /// Whether the target needs it (pruned stages are listed but not built).
    pub built: bool,
    /// Whether the base config was known.
    pub base_config: BaseConfigState,
    /// With an unresolved base config: the variables the stage uses that the Dockerfile
    /// leaves unset and the base image's ENV may define (they expanded to nothing here),
    /// sorted.
    pub unresolved_variables: Vec<String>,
    /// Stages it needs (FROM, `--from`, mounts), sorted.
    pub depends_on: Vec<usize>,
    /// The ops of this stage, in order.
    pub ops: Vec<usize>,
    /// The op whose file system is the stage's result.
    pub result: Option<usize>,
    /// The image it produces.
    pub image: StageImage,
    /// Whether a build with an SBOM also lists this stage's packages, as its
    /// `BUILDKIT_SBOM_SCAN_STAGE` ARG (or the global one) asks: `true`, or a list of stage
    /// names holding this one's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sbom_scan: bool,
}

impl StagePlan {
    /// `name` or `stage-N`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("stage-{}", self.index),
        }
    }
}

/// A file written for a RUN step (a heredoc with a `#!` line becomes a script).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// Its path in the container (RUN) or its name (COPY heredoc source).
    pub path: String,
    /// Its mode.
    pub mode: u32,
    /// Its content.
    pub content: String,
}

/// A mount of a RUN step; `input` indexes [`Op::inputs`] for mounts with a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecMount {
    /// The parsed mount.
    #[serde(flatten)]
    pub mount: Mount,
    /// The input that provides its source (bind and cache mounts with a source).
    pub input: Option<usize>,
}

/// A RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOp {
    /// The full argv (shell-form commands wrapped with the current SHELL).
    pub argv: Vec<String>,
    /// The environment (`NAME=value`), image ENV plus ARGs in scope.
    pub env: Vec<String>,
    /// Proxy variables passed to the process but kept out of digests and history.
    pub proxy_env: Vec<String>,
    /// The user (`USER`), empty for root.
    pub user: String,
    /// The working directory.
    pub cwd: String,
    /// `--mount`s.
    pub mounts: Vec<ExecMount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// Files mounted read-only for heredoc scripts.
    pub files: Vec<InlineFile>,
}

/// Where a COPY/ADD source comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySource {
    /// The path or glob inside the input (or the URL, or the heredoc name).
    pub path: String,
    /// The input of [`Op::inputs`] it is read from; `None` for heredoc content.
    pub input: Option<usize>,
    /// The heredoc body for inline sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A COPY or ADD step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyOp {
    /// ADD (unpacks local archives, fetches URLs) rather than COPY.
    pub add: bool,
    /// The sources.
    pub sources: Vec<CopySource>,
    /// The destination, made absolute against the working directory (a trailing `/`
    /// kept).
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
}

/// What an op does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OpKind {
    /// The empty file system.
    Scratch,
    /// A registry image.
    Image {
        /// The reference.
        reference: String,
        /// The platform to pull.
        platform: Platform,
    },
    /// Files of the build context (or of a named context): exactly the paths/globs an
    /// instruction selects.
    Context {
        /// Paths and globs, relative to the context root.
        include: Vec<String>,
        /// `--exclude` patterns.
        exclude: Vec<String>,
        /// The named context (`--build-context NAME=DIR`, NAME as [`named_context_key`]
        /// gives it) the files come from; `None`: the build context.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A file downloaded by ADD.
    Http {
        /// The URL.
        url: String,
        /// `--checksum`.
        checksum: Option<String>,
    },
    /// A git repository fetched by ADD.
    Git {
        /// The repository URL with its `#ref:dir` fragment.
        url: String,
        /// `--keep-git-dir`.
        keep_git_dir: bool,
        /// `--checksum` (the commit).
        checksum: Option<String>,
    },
    /// RUN.
    Exec(ExecOp),
    /// COPY or ADD.
    Copy(CopyOp),
    /// WORKDIR creating its directory.
    Mkdir {
        /// The absolute path.
        path: String,
        /// The owner (the current USER), empty for root.
        user: String,
    },
    /// An instruction that only changes the image config (ENV, LABEL, CMD, ...).
    Config {
        /// The instruction keyword.
        instruction: &'static str,
        /// The change, as the image history records it.
        change: String,
    },
}

impl OpKind {
    /// The op type as the renderings name it (`exec`, `copy`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Scratch => "scratch",
            OpKind::Image { .. } => "image",
            OpKind::Context { .. } => "context",
            OpKind::Http { .. } => "http",
            OpKind::Git { .. } => "git",
            OpKind::Exec(_) => "exec",
            OpKind::Copy(_) => "copy",
            OpKind::Mkdir { .. } => "mkdir",
            OpKind::Config { .. } => "config",
        }
    }

    /// Whether the op produces a file system (everything but config changes).
    pub fn is_filesystem(&self) -> bool {
        !matches!(self, OpKind::Config { .. })
    }
}

/// The role an input plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputRole {
    /// The file system the op works on.
    Parent,
    /// Files copied from.
    Source,
    /// A RUN mount's source.
    Mount,
}

impl InputRole {
    /// The role as the renderings name it.
    pub fn as_str(self) -> &'static str {
        match self {
            InputRole::Parent => "parent",
            InputRole::Source => "source",
            InputRole::Mount => "mount",
        }
    }
}

/// An edge: this op reads the result of `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Input {
    /// The op read from (always an earlier op).
    pub op: usize,
    /// How it is used.
    pub role: InputRole,
}

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Op {
    /// Its index in [`Plan::ops`].
    pub id: usize,
    /// The stage it belongs to.
    pub stage: usize,
    /// The instruction it comes from (the FROM line for base images and triggers).
    pub span: Span,
    /// What it does.
    #[serde(flatten)]
    pub kind: OpKind,
    /// What it reads.
    pub inputs: Vec<Input>,
    /// The instruction as the image history records it (not part of any digest).
    pub description: String,
    /// Digest of the canonical definition alone.
    pub definition: Digest,
    /// Digest of the definition and the digests of all inputs.
    pub digest: Digest,
}

/// The resolved build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The canonical encoding's version.
    pub schema: u32,
    /// The stage built.
    pub target: usize,
    /// The platform images are built for.
    pub target_platform: Platform,
    /// The platform the build runs on.
    pub build_platform: Platform,
    /// Global ARGs with their values.
    pub global_args: Vec<(String, Option<String>)>,
    /// Every stage, in source order.
    pub stages: Vec<StagePlan>,
    /// Ops in dependency order: every input precedes its reader.
    pub ops: Vec<Op>,
    /// Non-fatal findings.
    pub warnings: Vec<PlanWarning>,
}

impl Plan {
    /// The stage built.
    pub fn target_stage(&self) -> &StagePlan {
        &self.stages[self.target]
    }
}
