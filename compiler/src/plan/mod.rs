//! The build plan: stages, ARG/ENV scoping, image configs and the op graph.
//!
//! [`Planner::plan`] takes the parsed instructions and [`PlanOptions`] (target, build
//! args, platforms) and produces a [`Plan`]:
//!
//! 1. instructions are lowered to typed [`crate::instructions::Instruction`]s;
//! 2. global ARGs (before the first FROM) are resolved with the build args and the
//!    predefined platform ARGs, and expanded into each FROM;
//! 3. every stage is evaluated in source order: its base config (from the
//!    [`BaseConfigs`] the caller supplies, or the earlier stage it builds on), ONBUILD
//!    triggers of that base inserted after the FROM, ARG/ENV scoping exactly as docker
//!    build (ENV wins over ARG, stage ARGs re-declare global ones, build args override
//!    defaults), variables expanded where Dockerfiles expand them, and the image config
//!    and history computed step by step;
//! 4. the stage graph (FROM, `COPY --from`, `RUN --mount=from=`) is checked for
//!    self-references and cycles, and pruned to what the target needs;
//! 5. ops are emitted for the needed stages in dependency order, each with a canonical
//!    definition digest and an op digest chaining its inputs' digests.
//!
//! Everything here is a pure function of its inputs, and bounded: [`limits`] lists how far a
//! Dockerfile can make expansion and the plan grow before planning stops with an error.

pub mod config;
pub mod digest;
pub mod expand;
pub mod limits;
pub mod render;
mod scope;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;

use crate::instructions::{
    self, ArgDecl, Chmod, CommandLine, CopyArgs, Healthcheck, Instruction, InstructionError,
    InstructionKind, Mount, MountType, NetworkMode, RawInstruction, SecurityMode, SourceKind, Span,
    render_located,
};
pub use config::{HealthConfig, History, ImageConfig};
pub use digest::{Digest, Encoder, SCHEMA_VERSION};
use expand::Lookup;
pub use expand::{Budget, ExpandError, ExpandLimit, Expansion, ShellExpander, WordExpander};
use limits::{
    MAX_ENVIRONMENT, MAX_EXPANSION_WORK, MAX_INSTRUCTION_GROWTH, MAX_PLAN_SIZE, MAX_WORD_GROWTH,
};
pub use render::{render_dot, render_json, render_text};
use scope::{ArgList, Scope};

/// An OS/architecture/variant triple (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]`, lower-casing it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let lower = value.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let ok = |s: &&str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: String::new(),
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.to_string(),
            }),
            _ => Err("expected os/arch or os/arch/variant".into()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

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
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            target: None,
            build_args: BTreeMap::new(),
            target_platform: Platform::linux_amd64(),
            build_platform: Platform::linux_amd64(),
        }
    }
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

/// What went wrong while planning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanErrorKind {
    /// An invalid instruction.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// A file without FROM.
    #[error("the Dockerfile has no FROM instruction, so it builds no stage")]
    NoStage,
    /// Something other than ARG before the first FROM.
    #[error("{keyword} before the first FROM: only ARG may come before FROM")]
    BeforeFrom {
        /// The instruction.
        keyword: &'static str,
    },
    /// A variable expansion failed.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// A Windows path on another drive than the system drive.
    #[error("{path:?} is not on the system drive (C:): Windows images have only that one")]
    WindowsDrive {
        /// The path.
        path: String,
    },
    /// FROM's image expanded to nothing.
    #[error("base name {word:?} expands to an empty string")]
    EmptyBaseName {
        /// The word as written.
        word: String,
    },
    /// A bad `--platform`.
    #[error("invalid platform {value:?}: {reason}")]
    BadPlatform {
        /// The expanded value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Two stages with the same name.
    #[error("stage name {name:?} is used twice")]
    DuplicateStageName {
        /// The name.
        name: String,
    },
    /// `--from=N` beyond the last stage.
    #[error("stage index {index} does not exist: the Dockerfile has {count} stages")]
    UndefinedStageIndex {
        /// The index.
        index: usize,
        /// How many stages there are.
        count: usize,
    },
    /// A stage that copies or mounts from itself.
    #[error("stage {stage} refers to itself")]
    SelfReference {
        /// The stage.
        stage: String,
    },
    /// A cycle of stage references.
    #[error("circular dependency between stages: {cycle}")]
    Cycle {
        /// `a -> b -> a`.
        cycle: String,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found")]
    UnknownTarget {
        /// The target.
        target: String,
    },
    /// A flag value that is invalid once expanded.
    #[error("invalid --{flag} value {value:?}: {reason}")]
    BadFlagValue {
        /// The flag.
        flag: &'static str,
        /// The expanded value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A flag that does not apply to these sources.
    #[error("{instruction} --{flag} {reason}")]
    FlagNotApplicable {
        /// The instruction.
        instruction: &'static str,
        /// The flag.
        flag: &'static str,
        /// When it applies.
        reason: &'static str,
    },
    /// A bad EXPOSE word.
    #[error("invalid EXPOSE port {word:?}: {reason}")]
    BadPort {
        /// The word after expansion.
        word: String,
        /// Why.
        reason: String,
    },
    /// A value that expands to nothing where one is needed.
    #[error("{instruction} {what} expands to an empty string")]
    EmptyValue {
        /// The instruction.
        instruction: &'static str,
        /// What is empty.
        what: &'static str,
    },
    /// A base image ONBUILD trigger that does not parse.
    #[error("ONBUILD trigger {trigger:?} of base image {image} is invalid: {reason}")]
    BadBaseTrigger {
        /// The trigger text.
        trigger: String,
        /// The base image.
        image: String,
        /// Why.
        reason: String,
    },
    /// A RUN whose heredoc form cannot be run.
    #[error("RUN with heredocs must be in shell form with one command")]
    BadHeredocRun,
    /// The expanded words of one instruction grew past [`limits::MAX_INSTRUCTION_GROWTH`].
    #[error(
        "the expanded words of this instruction are more than {} longer than written",
        crate::shell::human_size(*limit as u64)
    )]
    InstructionTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Setting a variable made an environment larger than [`limits::MAX_ENVIRONMENT`].
    #[error(
        "setting {name} makes {scope} larger than {}",
        crate::shell::human_size(*limit as u64)
    )]
    EnvironmentTooLarge {
        /// The variable being set.
        name: String,
        /// Which environment: the stage's or the global ARGs.
        scope: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A base image whose environment is larger than [`limits::MAX_ENVIRONMENT`].
    #[error(
        "the environment of base image {image} is larger than {}",
        crate::shell::human_size(*limit as u64)
    )]
    BaseEnvironmentTooLarge {
        /// The base image.
        image: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The expansions of the Dockerfile did more work than [`limits::MAX_EXPANSION_WORK`].
    #[error(
        "variable expansion in this Dockerfile needs more than {limit} units of work (one per byte copied, {} per pattern-matching step); this instruction crossed the limit",
        crate::shell::STEP_COST
    )]
    ExpansionWork {
        /// The limit.
        limit: u64,
    },
    /// The plan grew past [`limits::MAX_PLAN_SIZE`].
    #[error(
        "this instruction makes the build plan larger than {} (the environments, commands and histories of all steps)",
        crate::shell::human_size(*limit as u64)
    )]
    PlanTooLarge {
        /// The limit.
        limit: usize,
    },
}

/// A planning error with its location and, for errors about two places (cycles,
/// duplicate names, self-references), the other location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct PlanError {
    /// What went wrong.
    pub kind: Box<PlanErrorKind>,
    /// Where (absent for errors about options, like an unknown `--target`).
    pub span: Option<Span>,
    /// Other places involved, each with a note.
    pub related: Vec<(Span, String)>,
}

impl PlanError {
    fn at(kind: PlanErrorKind, span: Span) -> Self {
        PlanError {
            kind: Box::new(kind),
            span: Some(span),
            related: Vec::new(),
        }
    }

    fn note(mut self, span: Span, note: impl Into<String>) -> Self {
        self.related.push((span, note.into()));
        self
    }

    /// Renders `file:line:col: message`, the source line and a caret, then a `note:` for
    /// each related place.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        if let PlanErrorKind::Instruction(e) = &*self.kind
            && self.related.is_empty()
        {
            return e.render(file_name, source);
        }
        match self.span {
            Some(span) => render_located(&self.to_string(), span, &self.related, file_name, source),
            None => crate::parser::render_unlocated(&self.to_string(), file_name),
        }
    }
}

impl From<InstructionError> for PlanError {
    fn from(e: InstructionError) -> Self {
        let span = e.span;
        PlanError::at(PlanErrorKind::Instruction(e), span)
    }
}

/// A non-fatal finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanWarning {
    /// A stable short name (`unused-build-arg`, `stage-not-built`).
    pub code: &'static str,
    /// What it is about.
    pub message: String,
    /// Where, if in the Dockerfile.
    pub span: Option<Span>,
}

impl PlanWarning {
    /// Renders `file:line:col: warning: message` with the source line, or
    /// `file: warning: message`.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        match self.span {
            Some(span) => render_located(
                &format!("warning: {}", self.message),
                span,
                &[],
                file_name,
                source,
            ),
            None => {
                crate::parser::render_unlocated(&format!("warning: {}", self.message), file_name)
            }
        }
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
    /// Files of the build context: exactly the paths/globs an instruction selects.
    Context {
        /// Paths and globs, relative to the context root.
        include: Vec<String>,
        /// `--exclude` patterns.
        exclude: Vec<String>,
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

/// Plans Dockerfiles with a given expander, trigger parser and base configs.
#[derive(Clone, Copy)]
pub struct Planner<'a> {
    expander: &'a dyn WordExpander,
    triggers: &'a dyn TriggerParser,
    bases: &'a dyn BaseConfigs,
}

impl fmt::Debug for Planner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planner").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Pass 1: evaluate stages.

/// A source reference of COPY --from or a mount's from=.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceRef {
    Context,
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone)]
enum StepKind {
    Exec(ExecOp, Vec<Option<SourceRef>>),
    Copy {
        op: CopyOp,
        from: SourceRef,
        remote: Vec<OpKind>,
    },
    Mkdir(String, String),
    Config(&'static str),
}

#[derive(Debug, Clone)]
struct Step {
    span: Span,
    kind: StepKind,
    description: String,
}

#[derive(Debug, Clone)]
struct StageWork {
    name: Option<String>,
    span: Span,
    base: StageBase,
    platform: Platform,
    base_config: BaseConfigState,
    image: StageImage,
    steps: Vec<Step>,
    /// Referenced stages with the referring instruction.
    deps: Vec<(usize, Span)>,
    /// ARG names declared in the stage (for the unused build-arg check).
    declared: Vec<String>,
    /// The step environment and build args that stages built `FROM` this one start with.
    inherited: scope::Inherited,
    /// See [`StagePlan::unresolved_variables`].
    unresolved_variables: Vec<String>,
    error: Option<PlanError>,
}

struct Ctx<'p> {
    planner: &'p Planner<'p>,
    escape: char,
    options: &'p PlanOptions,
    predefined: BTreeMap<&'static str, String>,
    names: Vec<Option<String>>,
    /// Stage index by (lower-case) name.
    by_name: HashMap<String, usize>,
    from_spans: Vec<Span>,
    /// Expansion work left for the whole Dockerfile.
    work: Cell<u64>,
    /// The plan's size so far, in [`limits::weight`] units.
    size: Cell<usize>,
    /// The current instruction's words: bytes as written and as expanded.
    instruction: Cell<(usize, usize)>,
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// Joins `dir` and `path` like Go's `path.Join("/", dir, path)`: absolute and clean.
fn join_clean(dir: &str, path: &str) -> String {
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{dir}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// [`join_clean`] for Windows paths, as BuildKit normalizes a Windows working directory:
/// `\` or `/` separators, an optional system drive letter (`C:`, which is dropped), and the
/// result with backslashes (`\app\src`). `None` for a path on another drive.
fn windows_join(dir: &str, path: &str) -> Option<String> {
    let slashed = |p: &str| -> Option<String> {
        let p = p.replace('\\', "/");
        match p.as_bytes() {
            [d, b':', ..] if d.eq_ignore_ascii_case(&b'c') => Some(p[2..].to_string()),
            [d, b':', ..] if d.is_ascii_alphabetic() => None,
            _ => Some(p),
        }
    };
    let joined = join_clean(&slashed(dir)?, &slashed(path)?);
    Some(joined.replace('/', "\\"))
}

impl<'p> Ctx<'p> {
    /// Runs one expansion within the Dockerfile's budget and the current instruction's
    /// bound on growth; `out_len` measures its result.
    fn expanding<T>(
        &self,
        word: &str,
        span: Span,
        run: impl FnOnce(&mut Budget) -> Result<T, ExpandError>,
        out_len: impl Fn(&T) -> usize,
    ) -> Result<T, PlanError> {
        let mut budget = Budget {
            max_growth: MAX_WORD_GROWTH,
            work: self.work.get(),
        };
        let r = run(&mut budget);
        self.work.set(budget.work);
        let value = r.map_err(|e| {
            let kind = match e.limit {
                Some(ExpandLimit::Work) => PlanErrorKind::ExpansionWork {
                    limit: MAX_EXPANSION_WORK,
                },
                _ => PlanErrorKind::Expand(e),
            };
            PlanError::at(kind, span)
        })?;
        self.grow(word.len(), out_len(&value), span)?;
        Ok(value)
    }

    fn expand(&self, word: &str, lookup: Lookup<'_>, span: Span) -> Result<String, PlanError> {
        let expander = self.planner.expander;
        self.expanding(
            word,
            span,
            |b| expander.expand_word(word, self.escape, lookup, b),
            |e| e.value.len(),
        )
        .map(|e| e.value)
    }

    fn expand_words(
        &self,
        word: &str,
        lookup: Lookup<'_>,
        span: Span,
    ) -> Result<Vec<String>, PlanError> {
        let expander = self.planner.expander;
        self.expanding(
            word,
            span,
            |b| expander.expand_words(word, self.escape, lookup, b),
            |w| w.iter().map(String::len).sum(),
        )
    }

    fn expand_heredoc(
        &self,
        body: &str,
        lookup: Lookup<'_>,
        span: Span,
    ) -> Result<String, PlanError> {
        let expander = self.planner.expander;
        self.expanding(
            body,
            span,
            |b| expander.expand_heredoc(body, self.escape, lookup, b),
            String::len,
        )
    }

    /// Starts counting the growth of a new instruction's words.
    fn begin_instruction(&self) {
        self.instruction.set((0, 0));
    }

    /// Adds words of `written` bytes that became `expanded` bytes to the current
    /// instruction, within [`MAX_INSTRUCTION_GROWTH`].
    fn grow(&self, written: usize, expanded: usize, span: Span) -> Result<(), PlanError> {
        let (w, e) = self.instruction.get();
        let (w, e) = (w + written, e.saturating_add(expanded));
        self.instruction.set((w, e));
        if e > w + MAX_INSTRUCTION_GROWTH {
            return Err(PlanError::at(
                PlanErrorKind::InstructionTooLarge {
                    limit: MAX_INSTRUCTION_GROWTH,
                },
                span,
            ));
        }
        Ok(())
    }

    /// Adds `units` to the plan's size, within [`MAX_PLAN_SIZE`].
    fn charge(&self, units: usize, span: Span) -> Result<(), PlanError> {
        let size = self.size.get().saturating_add(units);
        self.size.set(size);
        if size > MAX_PLAN_SIZE {
            return Err(PlanError::at(
                PlanErrorKind::PlanTooLarge {
                    limit: MAX_PLAN_SIZE,
                },
                span,
            ));
        }
        Ok(())
    }

    fn resolve_from(
        &self,
        value: &str,
        current: usize,
        span: Span,
        deps: &mut Vec<(usize, Span)>,
    ) -> Result<SourceRef, PlanError> {
        let lower = value.to_ascii_lowercase();
        let idx = if let Some(&i) = self.by_name.get(&lower) {
            Some(i)
        } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let index: usize = value.parse().unwrap_or(usize::MAX);
            if index >= self.names.len() {
                return Err(PlanError::at(
                    PlanErrorKind::UndefinedStageIndex {
                        index,
                        count: self.names.len(),
                    },
                    span,
                ));
            }
            Some(index)
        } else {
            None
        };
        match idx {
            Some(i) if i == current => Err(PlanError::at(
                PlanErrorKind::SelfReference {
                    stage: stage_label(&self.names, i),
                },
                span,
            )
            .note(self.from_spans[i], "the stage starts here")),
            Some(i) => {
                deps.push((i, span));
                Ok(SourceRef::Stage(i))
            }
            None => Ok(SourceRef::Image(value.to_string())),
        }
    }
}

fn stage_label(names: &[Option<String>], i: usize) -> String {
    match names.get(i).and_then(|n| n.as_deref()) {
        Some(n) => format!("{n:?} (stage {i})"),
        None => format!("stage {i}"),
    }
}

impl<'a> Planner<'a> {
    /// A planner with the given expander and trigger parser, and no base configs.
    pub fn new(expander: &'a dyn WordExpander, triggers: &'a dyn TriggerParser) -> Self {
        Planner {
            expander,
            triggers,
            bases: &NoBaseConfigs,
        }
    }

    /// Uses `bases` for the configs of base images.
    pub fn with_bases(mut self, bases: &'a dyn BaseConfigs) -> Self {
        self.bases = bases;
        self
    }

    /// Plans the instructions of one Dockerfile (`escape` is its escape character).
    pub fn plan(
        &self,
        raw: &[RawInstruction],
        escape: char,
        options: &PlanOptions,
    ) -> Result<Plan, PlanError> {
        let instructions = instructions::lower(raw)?;
        let first_from = instructions
            .iter()
            .position(|i| matches!(i.kind, InstructionKind::From(_)))
            .ok_or_else(|| PlanError {
                kind: Box::new(PlanErrorKind::NoStage),
                span: instructions.first().map(|i| i.span),
                related: Vec::new(),
            })?;
        let (globals, rest) = instructions.split_at(first_from);

        // Stage boundaries and names.
        let mut stage_instrs: Vec<(&Instruction, &instructions::From, Vec<&Instruction>)> =
            Vec::new();
        for ins in rest {
            match &ins.kind {
                InstructionKind::From(f) => stage_instrs.push((ins, f, Vec::new())),
                _ => {
                    if let Some(last) = stage_instrs.last_mut() {
                        last.2.push(ins);
                    }
                }
            }
        }
        let names: Vec<Option<String>> = stage_instrs
            .iter()
            .map(|(_, f, _)| f.name.clone())
            .collect();
        let from_spans: Vec<Span> = stage_instrs.iter().map(|(i, _, _)| i.span).collect();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let Some(name) = name else { continue };
            if let Some(&j) = by_name.get(name) {
                return Err(PlanError::at(
                    PlanErrorKind::DuplicateStageName { name: name.clone() },
                    from_spans[i],
                )
                .note(from_spans[j], "first used here"));
            }
            by_name.insert(name.clone(), i);
        }
        let target = match &options.target {
            Some(t) => *by_name
                .get(&t.to_ascii_lowercase())
                .ok_or_else(|| PlanError {
                    kind: Box::new(PlanErrorKind::UnknownTarget { target: t.clone() }),
                    span: None,
                    related: Vec::new(),
                })?,
            None => names.len() - 1,
        };

        let tp = &options.target_platform;
        let bp = &options.build_platform;
        let mut predefined = BTreeMap::new();
        predefined.insert("TARGETPLATFORM", tp.to_string());
        predefined.insert("TARGETOS", tp.os.clone());
        predefined.insert("TARGETARCH", tp.architecture.clone());
        predefined.insert("TARGETVARIANT", tp.variant.clone());
        predefined.insert("BUILDPLATFORM", bp.to_string());
        predefined.insert("BUILDOS", bp.os.clone());
        predefined.insert("BUILDARCH", bp.architecture.clone());
        predefined.insert("BUILDVARIANT", bp.variant.clone());
        predefined.insert("TARGETSTAGE", stage_label_plain(&names, target));
        let ctx = Ctx {
            planner: self,
            escape,
            options,
            predefined,
            names,
            by_name,
            from_spans,
            work: Cell::new(MAX_EXPANSION_WORK),
            size: Cell::new(0),
            instruction: Cell::new((0, 0)),
        };

        // Global ARGs.
        let mut global_args = ArgList::default();
        let mut consumed: BTreeSet<String> = BTreeSet::new();
        for ins in globals {
            let InstructionKind::Arg(decls) = &ins.kind else {
                return Err(PlanError::at(
                    PlanErrorKind::BeforeFrom {
                        keyword: ins.keyword(),
                    },
                    ins.span,
                ));
            };
            ctx.begin_instruction();
            for ArgDecl { name, default } in decls {
                consumed.insert(name.clone());
                let value = if let Some(v) = options.build_args.get(name) {
                    Some(v.clone())
                } else if let Some(d) = default {
                    let lookup = |n: &str| global_lookup(&global_args, &ctx.predefined, n);
                    Some(ctx.expand(d, &lookup, ins.span)?)
                } else {
                    None
                };
                global_args.declare(name.clone(), value);
                check_environment(global_args.bytes(), name, "the global ARGs", ins.span)?;
            }
        }

        // Pass 1: every stage, in source order.
        let mut works: Vec<StageWork> = Vec::new();
        for (index, (from_ins, from, body)) in stage_instrs.iter().enumerate() {
            let work = self.eval_stage(&ctx, &global_args, &works, index, from_ins, from, body);
            works.push(work);
        }

        // Which stages the target needs, checking references on the way.
        let mut needed = vec![false; works.len()];
        let order = dependency_order(&works, &ctx.names, target)?;
        for &i in &order {
            needed[i] = true;
        }
        for &i in &order {
            if let Some(err) = &works[i].error {
                return Err(err.clone());
            }
        }

        let mut warnings = Vec::new();
        for (i, w) in works.iter().enumerate() {
            if !needed[i] {
                warnings.push(PlanWarning {
                    code: "stage-not-built",
                    message: format!(
                        "stage {} is not needed for target {} and is not built",
                        stage_label_plain(&ctx.names, i),
                        stage_label_plain(&ctx.names, target)
                    ),
                    span: Some(w.span),
                });
            } else {
                consumed.extend(w.declared.iter().cloned());
            }
        }
        let unused: Vec<&String> = options
            .build_args
            .keys()
            .filter(|k| {
                !consumed.contains(*k)
                    && !PROXY_ARGS.contains(&k.as_str())
                    && !ctx.predefined.contains_key(k.as_str())
            })
            .collect();
        if !unused.is_empty() {
            let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            warnings.push(PlanWarning {
                code: "unused-build-arg",
                message: format!(
                    "one or more build args [{}] were not consumed",
                    list.join(" ")
                ),
                span: None,
            });
        }

        // Pass 2: ops.
        let mut emitter = Emitter {
            ops: Vec::with_capacity(raw.len() * 2),
        };
        let mut results: Vec<Option<usize>> = vec![None; works.len()];
        let mut stage_ops: Vec<Vec<usize>> = vec![Vec::new(); works.len()];
        for &si in &order {
            let steps = std::mem::take(&mut works[si].steps);
            let w = &works[si];
            let start = emitter.ops.len();
            let mut current = match &w.base {
                StageBase::Scratch => {
                    emitter.push(si, w.span, OpKind::Scratch, vec![], "FROM scratch".into())
                }
                StageBase::Image { reference } => emitter.push(
                    si,
                    w.span,
                    OpKind::Image {
                        reference: reference.clone(),
                        platform: w.platform.clone(),
                    },
                    vec![],
                    format!("FROM {reference}"),
                ),
                StageBase::Stage { index } => results[*index].expect("base stage emitted first"),
            };
            for step in steps {
                let span = step.span;
                match step.kind {
                    StepKind::Exec(mut exec, mount_refs) => {
                        let mut inputs = vec![Input {
                            op: current,
                            role: InputRole::Parent,
                        }];
                        for (m, r) in exec.mounts.iter_mut().zip(mount_refs) {
                            let Some(r) = r else { continue };
                            let include =
                                vec![m.mount.source.clone().unwrap_or_else(|| ".".into())];
                            let src = emitter.source(
                                si,
                                span,
                                r,
                                (include, vec![]),
                                &w.platform,
                                &results,
                            );
                            m.input = Some(inputs.len());
                            inputs.push(Input {
                                op: src,
                                role: InputRole::Mount,
                            });
                        }
                        current =
                            emitter.push(si, span, OpKind::Exec(exec), inputs, step.description);
                    }
                    StepKind::Copy {
                        mut op,
                        from,
                        remote,
                    } => {
                        let mut inputs = vec![Input {
                            op: current,
                            role: InputRole::Parent,
                        }];
                        let local: Vec<String> = op
                            .sources
                            .iter()
                            .filter(|s| {
                                s.content.is_none() && source_kind_of(&s.path) == SourceKind::Local
                            })
                            .map(|s| s.path.clone())
                            .collect();
                        let local_input = if local.is_empty() {
                            None
                        } else {
                            let src = emitter.source(
                                si,
                                span,
                                from,
                                (local, op.excludes.clone()),
                                &w.platform,
                                &results,
                            );
                            inputs.push(Input {
                                op: src,
                                role: InputRole::Source,
                            });
                            Some(inputs.len() - 1)
                        };
                        let mut remote_iter = remote.iter();
                        for s in &mut op.sources {
                            if s.content.is_some() {
                                continue;
                            }
                            if source_kind_of(&s.path) == SourceKind::Local {
                                s.input = local_input;
                            } else if let Some(kind) = remote_iter.next() {
                                let id =
                                    emitter.push(si, span, kind.clone(), vec![], s.path.clone());
                                inputs.push(Input {
                                    op: id,
                                    role: InputRole::Source,
                                });
                                s.input = Some(inputs.len() - 1);
                            }
                        }
                        current =
                            emitter.push(si, span, OpKind::Copy(op), inputs, step.description);
                    }
                    StepKind::Mkdir(path, user) => {
                        current = emitter.push(
                            si,
                            span,
                            OpKind::Mkdir {
                                path: path.clone(),
                                user: user.clone(),
                            },
                            vec![Input {
                                op: current,
                                role: InputRole::Parent,
                            }],
                            step.description,
                        );
                    }
                    StepKind::Config(kw) => {
                        emitter.push(
                            si,
                            span,
                            OpKind::Config {
                                instruction: kw,
                                change: step.description.clone(),
                            },
                            vec![Input {
                                op: current,
                                role: InputRole::Parent,
                            }],
                            step.description,
                        );
                    }
                }
            }
            results[si] = Some(current);
            stage_ops[si] = (start..emitter.ops.len()).collect();
        }

        let stages = works
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let mut depends_on: Vec<usize> = w.deps.iter().map(|(d, _)| *d).collect();
                if let StageBase::Stage { index } = w.base {
                    depends_on.push(index);
                }
                depends_on.sort_unstable();
                depends_on.dedup();
                StagePlan {
                    index: i,
                    name: w.name,
                    span: w.span,
                    base: w.base,
                    platform: w.platform,
                    built: needed[i],
                    base_config: w.base_config,
                    unresolved_variables: w.unresolved_variables,
                    depends_on,
                    ops: std::mem::take(&mut stage_ops[i]),
                    result: results[i],
                    image: w.image,
                }
            })
            .collect();
        Ok(Plan {
            schema: SCHEMA_VERSION,
            target,
            target_platform: options.target_platform.clone(),
            build_platform: options.build_platform.clone(),
            global_args: global_args.into_vec(),
            stages,
            ops: emitter.ops,
            warnings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_stage(
        &self,
        ctx: &Ctx<'_>,
        global_args: &ArgList,
        done: &[StageWork],
        index: usize,
        from_ins: &Instruction,
        from: &instructions::From,
        body: &[&Instruction],
    ) -> StageWork {
        let mut work = StageWork {
            name: from.name.clone(),
            span: from_ins.span,
            base: StageBase::Scratch,
            platform: ctx.options.target_platform.clone(),
            base_config: BaseConfigState::Resolved,
            image: StageImage::default(),
            steps: Vec::new(),
            deps: Vec::new(),
            declared: Vec::new(),
            inherited: scope::Inherited::default(),
            unresolved_variables: Vec::new(),
            error: None,
        };
        if let Err(e) = self.eval_stage_inner(
            ctx,
            global_args,
            done,
            index,
            from_ins,
            from,
            body,
            &mut work,
        ) {
            work.error = Some(e);
        }
        work
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_stage_inner(
        &self,
        ctx: &Ctx<'_>,
        global_args: &ArgList,
        done: &[StageWork],
        index: usize,
        from_ins: &Instruction,
        from: &instructions::From,
        body: &[&Instruction],
        work: &mut StageWork,
    ) -> Result<(), PlanError> {
        let span = from_ins.span;
        ctx.begin_instruction();
        let glookup = |n: &str| global_lookup(global_args, &ctx.predefined, n);
        let image = ctx.expand(&from.image, &glookup, span)?;
        if image.is_empty() {
            return Err(PlanError::at(
                PlanErrorKind::EmptyBaseName {
                    word: from.image.clone(),
                },
                span,
            ));
        }
        let explicit_platform = match &from.platform {
            Some(p) => {
                let value = ctx.expand(p, &glookup, span)?;
                Some(Platform::parse(&value).map_err(|reason| {
                    PlanError::at(PlanErrorKind::BadPlatform { value, reason }, span)
                })?)
            }
            None => None,
        };
        let lower = image.to_ascii_lowercase();
        let base_stage = ctx.by_name.get(&lower).copied().filter(|&b| b < index);
        let mut base = StageImage::default();
        let mut base_image_name = None;
        let mut inherited = None;
        if let Some(b) = base_stage {
            let base_work = &done[b];
            if let Some(e) = &base_work.error {
                return Err(e.clone());
            }
            work.base = StageBase::Stage { index: b };
            work.platform = explicit_platform.unwrap_or_else(|| base_work.platform.clone());
            base = base_work.image.clone();
            inherited = Some(base_work.inherited.clone());
            work.base_config = base_work.base_config;
        } else if lower == "scratch" {
            work.base = StageBase::Scratch;
            work.platform =
                explicit_platform.unwrap_or_else(|| ctx.options.target_platform.clone());
            base.config.working_dir = "/".into();
        } else {
            work.platform =
                explicit_platform.unwrap_or_else(|| ctx.options.target_platform.clone());
            work.base = StageBase::Image {
                reference: image.clone(),
            };
            match self.bases.base_config(&image, &work.platform) {
                Some(c) => base.config = c,
                None => work.base_config = BaseConfigState::Unresolved,
            }
            base_image_name = Some(image.clone());
        }
        // The inherited config and history are this stage's own copy.
        ctx.charge(limits::image_weight(&base), span)?;
        // A stage built FROM another stage goes on with its step environment and build
        // args (BuildKit's state), an image base with its config's ENV.
        let mut scope = match inherited {
            Some(i) => Scope::inherit(base, i),
            None => Scope::new(base),
        };
        if work.base_config == BaseConfigState::Unresolved {
            scope.unresolved = Some(Default::default());
        }
        if scope.environment_size() > MAX_ENVIRONMENT {
            return Err(PlanError::at(
                PlanErrorKind::BaseEnvironmentTooLarge {
                    image: image.clone(),
                    limit: MAX_ENVIRONMENT,
                },
                span,
            ));
        }
        if scope.env_get("PATH").is_none() {
            scope.env_set("PATH", config::default_path(&work.platform.os));
        }
        // ONBUILD triggers of the base run right after FROM; the new image does not keep them.
        let triggers = std::mem::take(&mut scope.image.config.on_build);
        let base_label = base_image_name.unwrap_or_else(|| image.clone());
        let mut trigger_instrs = Vec::new();
        for t in &triggers {
            let bad = |reason: String| {
                PlanError::at(
                    PlanErrorKind::BadBaseTrigger {
                        trigger: t.clone(),
                        image: base_label.clone(),
                        reason,
                    },
                    span,
                )
            };
            let raw = self.triggers.parse_trigger(t).map_err(bad)?;
            let mut ins = instructions::lower_one(&raw).map_err(|e| bad(e.to_string()))?;
            if matches!(
                ins.kind,
                InstructionKind::From(_)
                    | InstructionKind::Onbuild(_)
                    | InstructionKind::Maintainer(_)
            ) {
                return Err(bad("FROM, ONBUILD and MAINTAINER cannot be triggers".into()));
            }
            ins.span = span;
            trigger_instrs.push(ins);
        }
        for ins in trigger_instrs.iter().chain(body.iter().copied()) {
            self.eval_instruction(ctx, global_args, index, ins, &mut scope, work)?;
        }
        work.inherited = scope.inherited();
        if let Some(names) = scope.unresolved.take() {
            work.unresolved_variables = names.into_inner().into_iter().collect();
        }
        work.image = scope.image;
        Ok(())
    }

    fn eval_instruction(
        &self,
        ctx: &Ctx<'_>,
        global_args: &ArgList,
        index: usize,
        ins: &Instruction,
        scope: &mut Scope,
        work: &mut StageWork,
    ) -> Result<(), PlanError> {
        let span = ins.span;
        let kw = ins.keyword();
        ctx.begin_instruction();
        macro_rules! expand {
            ($word:expr) => {{
                let lookup = |n: &str| scope.lookup(n);
                ctx.expand($word, &lookup, span)?
            }};
        }
        let config_step = |scope: &mut Scope, work: &mut StageWork, description: String| {
            let step = Step {
                span,
                kind: StepKind::Config(kw),
                description,
            };
            record(ctx, scope, work, step, true)
        };
        match &ins.kind {
            InstructionKind::From(_) => unreachable!("FROM starts a stage"),
            InstructionKind::Arg(decls) => {
                let mut shown = Vec::new();
                for ArgDecl { name, default } in decls {
                    work.declared.push(name.clone());
                    let value = if let Some(v) = ctx.options.build_args.get(name) {
                        Some(v.clone())
                    } else if let Some(d) = default {
                        Some(expand!(d))
                    } else if let Some(v) = global_args.get(name) {
                        v.map(str::to_owned)
                    } else {
                        ctx.predefined.get(name.as_str()).cloned()
                    };
                    shown.push(match &value {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                    let env = !PROXY_ARGS.contains(&name.as_str());
                    scope.declare_arg(name, value, env);
                    check_environment(scope.environment_size(), name, STAGE_ENV, span)?;
                }
                config_step(scope, work, format!("ARG {}", shown.join(" ")))?;
            }
            InstructionKind::Env(pairs) | InstructionKind::Label(pairs) => {
                // Every value of one instruction sees the environment from before it.
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((expand!(k), expand!(v)));
                }
                let is_env = matches!(ins.kind, InstructionKind::Env(_));
                let mut shown = Vec::new();
                for (k, v) in expanded {
                    if k.is_empty() {
                        return Err(PlanError::at(
                            PlanErrorKind::EmptyValue {
                                instruction: kw,
                                what: "name",
                            },
                            span,
                        ));
                    }
                    if is_env {
                        scope.env_set(&k, &v);
                        check_environment(scope.environment_size(), &k, STAGE_ENV, span)?;
                        shown.push(format!("{k}={v}"));
                    } else {
                        shown.push(format!("{}={}", go_quote(&k), go_quote(&v)));
                        scope.image.config.labels.insert(k, v);
                    }
                }
                config_step(scope, work, format!("{kw} {}", shown.join(" ")))?;
            }
            InstructionKind::Run(run) => self.eval_run(ctx, index, ins, run, scope, work)?,
            InstructionKind::Cmd(cmd) | InstructionKind::Entrypoint(cmd) => {
                let args = with_shell(&scope.image.config, &work.platform.os, cmd);
                let description = format!("{kw} {}", go_quote_list(&args));
                if kw == "CMD" {
                    scope.image.config.cmd = Some(args);
                    scope.image.config.args_escaped = true;
                    scope.cmd_set = true;
                } else {
                    scope.image.config.entrypoint = Some(args);
                    if !scope.cmd_set {
                        scope.image.config.cmd = None;
                    }
                }
                config_step(scope, work, description)?;
            }
            InstructionKind::Shell(shell) => {
                scope.image.config.shell = shell.clone();
                config_step(scope, work, format!("SHELL {}", go_quote_list(shell)))?;
            }
            InstructionKind::Workdir(dir) => {
                // A value that expands to nothing keeps the current directory, as in
                // BuildKit.
                let value = expand!(dir);
                let cur = if scope.image.config.working_dir.is_empty() {
                    "/".to_string()
                } else {
                    scope.image.config.working_dir.clone()
                };
                let path = if work.platform.os == "windows" {
                    windows_join(&cur, &value).ok_or_else(|| {
                        PlanError::at(
                            PlanErrorKind::WindowsDrive {
                                path: value.clone(),
                            },
                            span,
                        )
                    })?
                } else {
                    join_clean(&cur, &value)
                };
                scope.image.config.working_dir = path.clone();
                let description = format!("WORKDIR {path}");
                let step = Step {
                    span,
                    kind: StepKind::Mkdir(path, scope.image.config.user.clone()),
                    description,
                };
                record(ctx, scope, work, step, false)?;
            }
            InstructionKind::User(user) => {
                // A value that expands to nothing is the default user, as in BuildKit.
                let value = expand!(user);
                scope.image.config.user = value.clone();
                config_step(scope, work, format!("USER {value}"))?;
            }
            InstructionKind::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    let lookup = |n: &str| scope.lookup(n);
                    for w in ctx.expand_words(p, &lookup, span)? {
                        let keys = config::expand_ports(&w).map_err(|reason| {
                            PlanError::at(
                                PlanErrorKind::BadPort {
                                    word: w.clone(),
                                    reason,
                                },
                                span,
                            )
                        })?;
                        // A range is written short and listed in full.
                        ctx.grow(0, keys.iter().map(|k| k.len() + 1).sum(), span)?;
                        all.extend(keys);
                    }
                }
                for k in &all {
                    scope
                        .image
                        .config
                        .exposed_ports
                        .insert(k.clone(), config::Empty {});
                }
                config_step(scope, work, format!("EXPOSE {}", all.join(" ")))?;
            }
            InstructionKind::Volume(vols) => {
                let mut shown = Vec::new();
                for v in vols {
                    let value = expand!(v);
                    if value.is_empty() {
                        return Err(PlanError::at(
                            PlanErrorKind::EmptyValue {
                                instruction: kw,
                                what: "path",
                            },
                            span,
                        ));
                    }
                    scope
                        .image
                        .config
                        .volumes
                        .insert(value.clone(), config::Empty {});
                    shown.push(value);
                }
                config_step(scope, work, format!("VOLUME {}", go_quote_list(&shown)))?;
            }
            InstructionKind::Stopsignal(sig) => {
                let value = expand!(sig);
                scope.image.config.stop_signal = value.clone();
                config_step(scope, work, format!("STOPSIGNAL {value}"))?;
            }
            InstructionKind::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthConfig {
                        test: vec!["NONE".into()],
                        ..Default::default()
                    },
                    Healthcheck::Cmd {
                        command,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let mut test = Vec::new();
                        if command.shell_form {
                            test.push("CMD-SHELL".to_string());
                            test.push(command.args.join(" "));
                        } else {
                            test.push("CMD".to_string());
                            test.extend(command.args.iter().cloned());
                        }
                        HealthConfig {
                            test,
                            interval: interval.unwrap_or(0),
                            timeout: timeout.unwrap_or(0),
                            start_period: start_period.unwrap_or(0),
                            start_interval: start_interval.unwrap_or(0),
                            retries: retries.unwrap_or(0),
                        }
                    }
                };
                let description = format!("HEALTHCHECK {}", go_quote_list(&hc.test));
                scope.image.config.healthcheck = Some(hc);
                config_step(scope, work, description)?;
            }
            InstructionKind::Onbuild(trigger) => {
                scope.image.config.on_build.push(trigger.clone());
                // As BuildKit: a trigger changes the config only and adds no history entry.
                let step = Step {
                    span,
                    kind: StepKind::Config(kw),
                    description: format!("ONBUILD {trigger}"),
                };
                ctx.charge(step_weight(&step), span)?;
                work.steps.push(step);
            }
            InstructionKind::Maintainer(m) => {
                scope.image.author = Some(m.clone());
                config_step(scope, work, format!("MAINTAINER {m}"))?;
            }
            InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                self.eval_copy(ctx, index, ins, c, scope, work)?;
            }
        }
        Ok(())
    }

    fn eval_run(
        &self,
        ctx: &Ctx<'_>,
        index: usize,
        ins: &Instruction,
        run: &instructions::Run,
        scope: &mut Scope,
        work: &mut StageWork,
    ) -> Result<(), PlanError> {
        let span = ins.span;
        let config = &scope.image.config;
        let mut files = Vec::new();
        let argv = if run.heredocs.is_empty() {
            with_shell(config, &work.platform.os, &run.command)
        } else {
            if !run.command.shell_form || run.command.args.len() != 1 {
                return Err(PlanError::at(PlanErrorKind::BadHeredocRun, span));
            }
            let cmd = &run.command.args[0];
            let first = &run.heredocs[0];
            let only_heredoc = instructions::heredoc_name(cmd.trim()).as_deref()
                == Some(first.name.as_str())
                && run.heredocs.len() == 1
                && !cmd.trim().contains(char::is_whitespace);
            if only_heredoc && first.body().starts_with("#!") {
                let path = format!("/dev/pipes/{}", first.name);
                files.push(InlineFile {
                    path: path.clone(),
                    mode: 0o755,
                    content: first.body(),
                });
                vec![path]
            } else if only_heredoc {
                with_shell(
                    config,
                    &work.platform.os,
                    &CommandLine {
                        args: vec![first.body()],
                        shell_form: true,
                    },
                )
            } else {
                let mut full = cmd.clone();
                for h in &run.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                with_shell(
                    config,
                    &work.platform.os,
                    &CommandLine {
                        args: vec![full],
                        shell_form: true,
                    },
                )
            }
        };
        // The environment: ENV and ARG values in the order they were set (BuildKit's
        // state environment); proxy variables go apart, out of the cache key and history.
        let env = scope.step_env();
        let history_args = scope.history_args(&|k| PROXY_ARGS.contains(&k));
        let mut proxy_env = Vec::new();
        for (k, v) in scope.args.iter() {
            if PROXY_ARGS.contains(&k)
                && let Some(v) = v
            {
                proxy_env.push(format!("{k}={v}"));
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = ctx.options.build_args.get(p)
                && !scope.args.contains(p)
            {
                proxy_env.push(format!("{p}={v}"));
            }
        }
        let cwd = if config.working_dir.is_empty() {
            "/".to_string()
        } else {
            config.working_dir.clone()
        };
        let mut mounts = Vec::new();
        let mut refs = Vec::new();
        for (i, (value, mspan)) in run.mounts.iter().enumerate() {
            let lookup = |n: &str| scope.lookup(n);
            let parsed = instructions::parse_mount(value, i, |v| ctx.expand(v, &lookup, *mspan))?
                .map_err(|reason| {
                PlanError::at(
                    PlanErrorKind::BadFlagValue {
                        flag: "mount",
                        value: value.clone(),
                        reason,
                    },
                    *mspan,
                )
            })?;
            let mut parsed = parsed;
            if matches!(
                parsed.kind,
                MountType::Bind | MountType::Tmpfs | MountType::Cache
            ) {
                // As BuildKit: a missing or relative target is taken from the working
                // directory, and only `/` itself is refused.
                parsed.target = join_clean(&cwd, &parsed.target);
                if parsed.target == "/" {
                    return Err(PlanError::at(
                        PlanErrorKind::BadFlagValue {
                            flag: "mount",
                            value: value.clone(),
                            reason: "invalid mount target \"/\"".into(),
                        },
                        *mspan,
                    ));
                }
            }
            let r = match (parsed.kind, &parsed.from) {
                (MountType::Bind, None) => Some(SourceRef::Context),
                (_, Some(f)) => Some(ctx.resolve_from(f, index, *mspan, &mut work.deps)?),
                _ => None,
            };
            refs.push(r);
            mounts.push(ExecMount {
                mount: parsed,
                input: None,
            });
        }
        let mut description = String::from("RUN ");
        if !history_args.is_empty() {
            description.push_str(&format!(
                "|{} {} ",
                history_args.len(),
                history_args.join(" ")
            ));
        }
        description.push_str(&argv.join(" "));
        let exec = ExecOp {
            argv,
            env,
            proxy_env,
            user: config.user.clone(),
            cwd,
            mounts,
            network: run.network.unwrap_or(NetworkMode::Default),
            security: run.security.unwrap_or(SecurityMode::Sandbox),
            files,
        };
        let step = Step {
            span,
            kind: StepKind::Exec(exec, refs),
            description,
        };
        record(ctx, scope, work, step, false)
    }

    fn eval_copy(
        &self,
        ctx: &Ctx<'_>,
        index: usize,
        ins: &Instruction,
        c: &CopyArgs,
        scope: &mut Scope,
        work: &mut StageWork,
    ) -> Result<(), PlanError> {
        let span = ins.span;
        let kw = ins.keyword();
        let lookup = |n: &str| scope.lookup(n);
        let ex = |w: &str| ctx.expand(w, &lookup, span);
        let mut sources = Vec::new();
        let mut remote = Vec::new();
        let mut any_remote = false;
        let mut any_git = false;
        for s in &c.sources {
            if let Some(name) = instructions::heredoc_name(s)
                && let Some(h) = c.heredocs.iter().find(|h| h.name == name)
            {
                let body = h.body();
                let content = if h.expand {
                    ctx.expand_heredoc(&body, &lookup, span)?
                } else {
                    body
                };
                sources.push(CopySource {
                    path: name,
                    input: None,
                    content: Some(content),
                });
                continue;
            }
            let path = ex(s)?;
            let kind = if c.is_add {
                source_kind_of(&path)
            } else {
                SourceKind::Local
            };
            match kind {
                SourceKind::Local => {}
                SourceKind::Url => {
                    any_remote = true;
                    remote.push(OpKind::Http {
                        url: path.clone(),
                        checksum: None,
                    });
                }
                SourceKind::Git => {
                    any_remote = true;
                    any_git = true;
                    remote.push(OpKind::Git {
                        url: path.clone(),
                        keep_git_dir: c.keep_git_dir.unwrap_or(false),
                        checksum: None,
                    });
                }
            }
            sources.push(CopySource {
                path,
                input: None,
                content: None,
            });
        }
        let not_applicable = |flag: &'static str, reason: &'static str| {
            PlanError::at(
                PlanErrorKind::FlagNotApplicable {
                    instruction: kw,
                    flag,
                    reason,
                },
                span,
            )
        };
        if c.from.is_some() && any_remote {
            return Err(not_applicable(
                "from",
                "cannot be used with a URL or git source",
            ));
        }
        if c.checksum.is_some() && !any_remote {
            return Err(not_applicable(
                "checksum",
                "can only be used with a URL or git source",
            ));
        }
        if c.keep_git_dir.is_some() && !any_git {
            return Err(not_applicable(
                "keep-git-dir",
                "can only be used with a git source",
            ));
        }
        if let Some(ck) = &c.checksum {
            let ck = ex(ck)?;
            for r in &mut remote {
                match r {
                    OpKind::Http { checksum, .. } | OpKind::Git { checksum, .. } => {
                        *checksum = Some(ck.clone())
                    }
                    _ => {}
                }
            }
        }
        let mut from_value = None;
        let from = match &c.from {
            Some(f) => {
                let value = ex(f)?;
                from_value = Some(value.clone());
                if value.is_empty() {
                    return Err(PlanError::at(
                        PlanErrorKind::EmptyValue {
                            instruction: kw,
                            what: "--from",
                        },
                        span,
                    ));
                }
                ctx.resolve_from(&value, index, span, &mut work.deps)?
            }
            None => SourceRef::Context,
        };
        let chown = match &c.chown {
            Some(v) => Some(ex(v)?).filter(|v| !v.is_empty()),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(v) => {
                let value = ex(v)?;
                Some(instructions::parse_chmod(&value).map_err(|reason| {
                    PlanError::at(
                        PlanErrorKind::BadFlagValue {
                            flag: "chmod",
                            value,
                            reason,
                        },
                        span,
                    )
                })?)
            }
            None => None,
        };
        let mut excludes = Vec::new();
        for e in &c.excludes {
            excludes.push(ex(e)?);
        }
        let dest_raw = ex(&c.dest)?;
        let cwd = if scope.image.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            scope.image.config.working_dir.clone()
        };
        let mut dest = join_clean(&cwd, &dest_raw);
        if (dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".") && dest != "/" {
            dest.push('/');
        }
        let mut description = String::from(kw);
        if let Some(f) = &from_value {
            description.push_str(&format!(" --from={f}"));
        }
        if let Some(o) = &chown {
            description.push_str(&format!(" --chown={o}"));
        }
        if let Some(m) = &chmod {
            description.push_str(&format!(" --chmod={}", m.canonical()));
        }
        for s in &sources {
            description.push(' ');
            if s.content.is_some() {
                description.push_str("<<");
            }
            description.push_str(&s.path);
        }
        description.push(' ');
        description.push_str(&dest);
        let op = CopyOp {
            add: c.is_add,
            sources,
            dest,
            chown,
            chmod,
            link: c.link,
            parents: c.parents,
            excludes,
            unpack: c.unpack,
        };
        let step = Step {
            span,
            kind: StepKind::Copy { op, from, remote },
            description,
        };
        record(ctx, scope, work, step, false)
    }
}

fn source_kind_of(path: &str) -> SourceKind {
    instructions::source_kind(path)
}

fn stage_label_plain(names: &[Option<String>], i: usize) -> String {
    match names.get(i).and_then(|n| n.as_deref()) {
        Some(n) => n.to_string(),
        None => format!("stage-{i}"),
    }
}

fn global_lookup<'a>(
    globals: &'a ArgList,
    predefined: &'a BTreeMap<&'static str, String>,
    name: &str,
) -> Option<&'a str> {
    match globals.get(name) {
        Some(v) => v,
        None => predefined.get(name).map(String::as_str),
    }
}

/// The environment [`check_environment`] names for a stage.
const STAGE_ENV: &str = "the stage's environment (ENV and ARG)";

/// An error unless an environment of `size` bytes is within [`MAX_ENVIRONMENT`].
fn check_environment(
    size: usize,
    name: &str,
    scope: &'static str,
    span: Span,
) -> Result<(), PlanError> {
    if size > MAX_ENVIRONMENT {
        return Err(PlanError::at(
            PlanErrorKind::EnvironmentTooLarge {
                name: name.to_owned(),
                scope,
                limit: MAX_ENVIRONMENT,
            },
            span,
        ));
    }
    Ok(())
}

/// Adds a step and its history entry to the stage, within the plan's size bound.
fn record(
    ctx: &Ctx<'_>,
    scope: &mut Scope,
    work: &mut StageWork,
    step: Step,
    empty_layer: bool,
) -> Result<(), PlanError> {
    ctx.charge(step_weight(&step), step.span)?;
    scope.image.history.push(History {
        created_by: step.description.clone(),
        empty_layer,
    });
    work.steps.push(step);
    Ok(())
}

/// What a step costs in the plan: its op, its description and its history entry.
fn step_weight(step: &Step) -> usize {
    use limits::weight;
    let own = match &step.kind {
        StepKind::Exec(x, _) => limits::exec_weight(x),
        StepKind::Copy { op, remote, .. } => {
            limits::copy_weight(op)
                + remote
                    .iter()
                    .map(|r| match r {
                        OpKind::Http { url, .. } | OpKind::Git { url, .. } => weight(url),
                        _ => 0,
                    })
                    .sum::<usize>()
        }
        StepKind::Mkdir(path, user) => weight(path) + weight(user),
        // A config op repeats its description as its change.
        StepKind::Config(_) => weight(&step.description),
    };
    own + 2 * weight(&step.description)
}

/// Wraps a shell-form command with the image's SHELL (default `/bin/sh -c`).
fn with_shell(config: &ImageConfig, os: &str, cmd: &CommandLine) -> Vec<String> {
    if !cmd.shell_form {
        return cmd.args.clone();
    }
    let mut argv = config.shell_or_default(os);
    argv.push(cmd.args.join(" "));
    argv
}

/// Edge `k` of stage `w`: its base stage first (at its FROM line), then what it copies or
/// mounts from (at the referring instruction).
fn stage_edge(w: &StageWork, k: usize) -> Option<(usize, Span)> {
    match w.base {
        StageBase::Stage { index } if k == 0 => Some((index, w.span)),
        StageBase::Stage { .. } => w.deps.get(k - 1).copied(),
        _ => w.deps.get(k).copied(),
    }
}

/// Depth-first walk from `target` over stage references; returns the stages it needs in
/// dependency order and reports cycles with every line involved. The walk keeps its own
/// stack, so a chain of many thousands of stages cannot overflow the thread's.
fn dependency_order(
    works: &[StageWork],
    names: &[Option<String>],
    target: usize,
) -> Result<Vec<usize>, PlanError> {
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![0u8; works.len()];
    let mut order = Vec::new();
    // The stages being walked, each with its next edge; `path` holds, for all but the last,
    // the stage and the place where it refers to the next one.
    let mut stack: Vec<(usize, usize)> = vec![(target, 0)];
    let mut path: Vec<(usize, Span)> = Vec::new();
    state[target] = OPEN;
    while let Some((i, next)) = stack.last_mut() {
        let i = *i;
        let Some((d, sp)) = stage_edge(&works[i], *next) else {
            state[i] = DONE;
            order.push(i);
            stack.pop();
            path.pop();
            continue;
        };
        *next += 1;
        path.push((i, sp));
        match state[d] {
            DONE => {
                path.pop();
            }
            OPEN => return Err(cycle_error(names, &path, d)),
            _ => {
                state[d] = OPEN;
                stack.push((d, 0));
            }
        }
    }
    Ok(order)
}

/// The error for reaching stage `d` again along `path` (which ends with the reference
/// that closes the cycle).
fn cycle_error(names: &[Option<String>], path: &[(usize, Span)], d: usize) -> PlanError {
    let start = path.iter().position(|(s, _)| *s == d).unwrap_or(0);
    let mut names_in: Vec<String> = path[start..]
        .iter()
        .map(|(s, _)| stage_label_plain(names, *s))
        .collect();
    names_in.push(stage_label_plain(names, d));
    let (_, last_span) = path[path.len() - 1];
    let mut err = PlanError::at(
        PlanErrorKind::Cycle {
            cycle: names_in.join(" -> "),
        },
        last_span,
    );
    for (s, sp) in &path[start..path.len() - 1] {
        err = err.note(
            *sp,
            format!(
                "stage {} refers to the next one here",
                stage_label_plain(names, *s)
            ),
        );
    }
    err
}

// ---------------------------------------------------------------------------------------
// Pass 2: ops and digests.

#[derive(Default)]
struct Emitter {
    ops: Vec<Op>,
}

impl Emitter {
    /// The op a `--from` / mount source reads: the context (with what it selects), a stage's
    /// result (already emitted), or an image.
    fn source(
        &mut self,
        stage: usize,
        span: Span,
        from: SourceRef,
        (include, exclude): (Vec<String>, Vec<String>),
        platform: &Platform,
        results: &[Option<usize>],
    ) -> usize {
        match from {
            SourceRef::Context => self.push(
                stage,
                span,
                OpKind::Context { include, exclude },
                vec![],
                "context".into(),
            ),
            SourceRef::Stage(i) => results[i].expect("dependency emitted first"),
            SourceRef::Image(reference) => {
                let description = format!("FROM {reference}");
                self.push(
                    stage,
                    span,
                    OpKind::Image {
                        reference,
                        platform: platform.clone(),
                    },
                    vec![],
                    description,
                )
            }
        }
    }

    fn push(
        &mut self,
        stage: usize,
        span: Span,
        kind: OpKind,
        inputs: Vec<Input>,
        description: String,
    ) -> usize {
        let definition = definition_digest(&kind);
        let mut e = Encoder::new("op");
        e.digest("definition", &definition)
            .group("inputs", inputs.len());
        for input in &inputs {
            e.str("role", input.role.as_str())
                .digest("input", &self.ops[input.op].digest);
        }
        let digest = e.finish();
        let id = self.ops.len();
        self.ops.push(Op {
            id,
            stage,
            span,
            kind,
            inputs,
            description,
            definition,
            digest,
        });
        id
    }
}

fn encode_mount(e: &mut Encoder, m: &ExecMount) {
    let m2 = &m.mount;
    e.str("type", m2.kind.as_str())
        .str("target", &m2.target)
        .opt("source", m2.source.as_deref())
        .opt("from", m2.from.as_deref())
        .bool("readonly", m2.readonly)
        .opt("id", m2.id.as_deref())
        .opt("sharing", m2.sharing.map(|s| s.as_str()))
        .u64("mode", m2.mode.map_or(u64::MAX, u64::from))
        .u64("uid", m2.uid.map_or(u64::MAX, u64::from))
        .u64("gid", m2.gid.map_or(u64::MAX, u64::from))
        .u64("size", m2.size.unwrap_or(u64::MAX))
        .bool("required", m2.required)
        .opt("env", m2.env.as_deref())
        .u64("input", m.input.map_or(u64::MAX, |i| i as u64));
}

/// The digest of an op's canonical definition (inputs excluded; proxy variables and
/// history text never included).
pub fn definition_digest(kind: &OpKind) -> Digest {
    let mut e = Encoder::new(kind.name());
    match kind {
        OpKind::Scratch => {}
        OpKind::Image {
            reference,
            platform,
        } => {
            e.str("reference", reference)
                .str("platform", &platform.to_string());
        }
        OpKind::Context { include, exclude } => {
            e.list("include", include).list("exclude", exclude);
        }
        OpKind::Http { url, checksum } => {
            e.str("url", url).opt("checksum", checksum.as_deref());
        }
        OpKind::Git {
            url,
            keep_git_dir,
            checksum,
        } => {
            e.str("url", url)
                .bool("keep_git_dir", *keep_git_dir)
                .opt("checksum", checksum.as_deref());
        }
        OpKind::Exec(x) => {
            e.list("argv", &x.argv)
                .list("env", &x.env)
                .str("user", &x.user)
                .str("cwd", &x.cwd)
                .str("network", x.network.as_str())
                .str("security", x.security.as_str())
                .group("mounts", x.mounts.len());
            for m in &x.mounts {
                encode_mount(&mut e, m);
            }
            e.group("files", x.files.len());
            for f in &x.files {
                e.str("path", &f.path)
                    .u64("mode", u64::from(f.mode))
                    .str("content", &f.content);
            }
        }
        OpKind::Copy(c) => {
            e.bool("add", c.add).group("sources", c.sources.len());
            for s in &c.sources {
                e.str("path", &s.path)
                    .u64("input", s.input.map_or(u64::MAX, |i| i as u64))
                    .opt("content", s.content.as_deref());
            }
            e.str("dest", &c.dest)
                .opt("chown", c.chown.as_deref())
                .opt("chmod", c.chmod.as_ref().map(Chmod::canonical).as_deref())
                .bool("link", c.link)
                .bool("parents", c.parents)
                .list("excludes", &c.excludes)
                .opt("unpack", c.unpack.map(|u| if u { "true" } else { "false" }));
        }
        OpKind::Mkdir { path, user } => {
            e.str("path", path).str("user", user);
        }
        OpKind::Config {
            instruction,
            change,
        } => {
            e.str("instruction", instruction).str("change", change);
        }
    }
    e.finish()
}

#[cfg(test)]
mod tests;
