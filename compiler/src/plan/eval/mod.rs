//! Pass 1: every stage evaluated in source order into the steps it will run, its image
//! config and its history. This file holds a stage's evaluation (FROM, the base config and
//! its ONBUILD triggers) and the steps it records; `instruction.rs` evaluates each
//! instruction, `run.rs` RUN and `copy.rs` COPY and ADD.

mod copy;
mod instruction;
mod run;

use super::context::{Ctx, global_lookup};
use super::limits::{self, MAX_ENVIRONMENT};
use super::scope::{self, ArgList, Scope};
use super::{
    BaseConfigState, CopyOp, CopySource, ExecOp, History, ImageConfig, NamedContext, OpKind,
    PlanError, PlanErrorKind, Planner, Platform, StageBase, StageImage, config,
};
use crate::instructions::{self, CommandLine, Instruction, InstructionKind, SourceKind, Span};

/// A source reference of COPY --from or a mount's from=.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SourceRef {
    Context,
    /// A directory named context (`--build-context NAME=DIR`), by its key.
    Named(String),
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone)]
pub(super) enum StepKind {
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
pub(super) struct Step {
    pub(super) span: Span,
    pub(super) kind: StepKind,
    pub(super) description: String,
}

#[derive(Debug, Clone)]
pub(super) struct StageWork {
    pub(super) name: Option<String>,
    pub(super) span: Span,
    pub(super) base: StageBase,
    pub(super) platform: Platform,
    pub(super) base_config: BaseConfigState,
    pub(super) image: StageImage,
    pub(super) steps: Vec<Step>,
    /// Referenced stages with the referring instruction.
    pub(super) deps: Vec<(usize, Span)>,
    /// ARG names declared in the stage (for the unused build-arg check).
    pub(super) declared: Vec<String>,
    /// The step environment and build args that stages built `FROM` this one start with.
    pub(super) inherited: scope::Inherited,
    /// See [`super::StagePlan::unresolved_variables`].
    pub(super) unresolved_variables: Vec<String>,
    /// See [`super::StagePlan::sbom_scan`].
    pub(super) sbom_scan: bool,
    pub(super) error: Option<PlanError>,
}

/// The build arg that asks for an SBOM of a stage besides the image's (BuildKit's).
pub(crate) const SBOM_SCAN_STAGE: &str = "BUILDKIT_SBOM_SCAN_STAGE";

/// BuildKit's build args that never reach a step's environment: the SBOM switches (the
/// context's SBOM is not made by rbuild).
pub(crate) const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", SBOM_SCAN_STAGE];

/// Whether [`SBOM_SCAN_STAGE`]'s `value` selects the stage `name`: a boolean as Go's
/// `strconv.ParseBool` reads one, else a comma-separated list of stage names.
pub(crate) fn sbom_scan_enabled(name: Option<&str>, value: &str) -> bool {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
        list => name.is_some_and(|name| list.split(',').any(|n| n == name)),
    }
}

impl Planner<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn eval_stage(
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
            sbom_scan: false,
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
                Some(
                    Platform::parse(&value)
                        .map_err(|e| PlanError::at(PlanErrorKind::BadPlatform(e), span))?,
                )
            }
            None => None,
        };
        let lower = image.to_ascii_lowercase();
        // As BuildKit: a named context of the stage's own name replaces the whole stage;
        // else a stage of that name comes first, then a named context, then an image.
        let replaced = from.name.as_deref().and_then(|n| ctx.named_context(n));
        let base_stage = ctx
            .by_name
            .get(&lower)
            .copied()
            .filter(|&b| b < index && replaced.is_none());
        let body = if replaced.is_some() { &[][..] } else { body };
        let named = match replaced {
            Some(c) => Some(c),
            None if base_stage.is_none() => ctx.named_context(&image),
            None => None,
        };
        // An image context stands for its reference (`docker-image://scratch` is scratch).
        let named_image = match &named {
            Some((_, NamedContext::Image { reference })) => Some(reference.clone()),
            _ => None,
        };
        let lower = match &named_image {
            Some(r) => r.to_ascii_lowercase(),
            None => lower,
        };
        let mut base = StageImage::default();
        let mut base_image_name = None;
        let mut inherited = None;
        let mut local_context = None;
        if let Some((key, NamedContext::Local)) = &named {
            // The directory's files are the stage's root, as a COPY into scratch.
            work.base = StageBase::Scratch;
            work.platform =
                explicit_platform.unwrap_or_else(|| ctx.options.target_platform.clone());
            base.config.working_dir = "/".into();
            local_context = Some(key.clone());
        } else if let Some(b) = base_stage {
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
            let image = named_image.unwrap_or_else(|| image.clone());
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
        if let Some(key) = local_context {
            let op = CopyOp {
                add: false,
                sources: vec![CopySource {
                    path: ".".into(),
                    input: None,
                    content: None,
                }],
                dest: "/".into(),
                chown: None,
                chmod: None,
                link: false,
                parents: false,
                excludes: Vec::new(),
                unpack: None,
            };
            let step = Step {
                span,
                kind: StepKind::Copy {
                    op,
                    from: SourceRef::Named(key.clone()),
                    remote: Vec::new(),
                },
                description: format!("FROM {key}"),
            };
            record(ctx, &mut scope, work, step, false)?;
        }
        for ins in trigger_instrs.iter().chain(body.iter().copied()) {
            self.eval_instruction(ctx, global_args, index, ins, &mut scope, work)?;
        }
        work.inherited = scope.inherited();
        // BuildKit's rule: the global ARG's value, then the stage's own ARG's.
        let scan = |args: &ArgList| args.get(SBOM_SCAN_STAGE).flatten().map(str::to_string);
        if let Some(value) = scan(&scope.args).or_else(|| scan(global_args)) {
            work.sbom_scan = sbom_scan_enabled(work.name.as_deref(), &value);
        }
        if let Some(names) = scope.unresolved.take() {
            work.unresolved_variables = names.into_inner().into_iter().collect();
        }
        work.image = scope.image;
        Ok(())
    }
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
pub(super) fn windows_join(dir: &str, path: &str) -> Option<String> {
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

pub(super) fn source_kind_of(path: &str) -> SourceKind {
    instructions::source_kind(path)
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
