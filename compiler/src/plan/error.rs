//! What planning reports: [`PlanError`] (with [`PlanErrorKind`]) for a Dockerfile that
//! cannot be planned, [`PlanWarning`] for a finding that does not stop it.

use serde::Serialize;

use super::ExpandError;
use crate::instructions::{InstructionError, Span, render_located};

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
    /// A bad `--platform` (the error names the expanded value).
    #[error(transparent)]
    BadPlatform(rbuild_platform::PlatformError),
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
    /// The expanded words of one instruction grew past [`super::limits::MAX_INSTRUCTION_GROWTH`].
    #[error(
        "the expanded words of this instruction are more than {} longer than written",
        rbuild_options::size::limit(*limit as u64)
    )]
    InstructionTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Setting a variable made an environment larger than [`super::limits::MAX_ENVIRONMENT`].
    #[error(
        "setting {name} makes {scope} larger than {}",
        rbuild_options::size::limit(*limit as u64)
    )]
    EnvironmentTooLarge {
        /// The variable being set.
        name: String,
        /// Which environment: the stage's or the global ARGs.
        scope: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A base image whose environment is larger than [`super::limits::MAX_ENVIRONMENT`].
    #[error(
        "the environment of base image {image} is larger than {}",
        rbuild_options::size::limit(*limit as u64)
    )]
    BaseEnvironmentTooLarge {
        /// The base image.
        image: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The expansions of the Dockerfile did more work than [`super::limits::MAX_EXPANSION_WORK`].
    #[error(
        "variable expansion in this Dockerfile needs more than {limit} units of work (one per byte copied, {} per pattern-matching step); this instruction crossed the limit",
        crate::shell::STEP_COST
    )]
    ExpansionWork {
        /// The limit.
        limit: u64,
    },
    /// The plan grew past [`super::limits::MAX_PLAN_SIZE`].
    #[error(
        "this instruction makes the build plan larger than {} (the environments, commands and histories of all steps)",
        rbuild_options::size::limit(*limit as u64)
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
    pub(super) fn at(kind: PlanErrorKind, span: Span) -> Self {
        PlanError {
            kind: Box::new(kind),
            span: Some(span),
            related: Vec::new(),
        }
    }

    pub(super) fn note(mut self, span: Span, note: impl Into<String>) -> Self {
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
