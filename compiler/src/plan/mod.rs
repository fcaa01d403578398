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
//!
//! The planner's parts, one file each (this one holds [`Planner`] and [`Planner::plan`],
//! which runs the passes):
//!
//! - `types`: the public types: what planning takes ([`PlanOptions`], [`Platform`], the
//!   [`BaseConfigs`] and [`TriggerParser`] the caller supplies) and what it gives ([`Plan`],
//!   [`StagePlan`], [`Op`], [`OpKind`], [`ExecOp`], [`CopyOp`], ...);
//! - `error`: [`PlanError`] and [`PlanWarning`];
//! - `context`: the per-Dockerfile context every stage is evaluated in (stage names, the
//!   predefined ARGs, expansion within the Dockerfile's bounds, the plan's size);
//! - `eval`: pass 1, a stage and its instructions evaluated into steps, image config and
//!   history (`eval/instruction.rs`, `eval/run.rs` and `eval/copy.rs` for the instructions);
//! - `graph`: the stage graph, walked from the target in dependency order, with cycles and
//!   self-references reported;
//! - `emit`: pass 2, the needed stages' steps emitted as ops;
//! - [`digest`]: the canonical encoding of op definitions and the op digests;
//! - [`config`], [`expand`], [`limits`], [`render`] and `scope`: the image config, word
//!   expansion, the planning bounds, the views `rbuild plan` prints, and a stage's ARG/ENV
//!   scope.

pub mod config;
mod context;
pub mod digest;
mod emit;
mod error;
mod eval;
pub(crate) use eval::NON_ENV_ARGS;
pub mod expand;
mod graph;
pub mod limits;
pub mod render;
mod scope;
mod types;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::instructions::{self, ArgDecl, Instruction, InstructionKind, RawInstruction, Span};
pub use config::{HealthConfig, History, ImageConfig};
use context::{Ctx, check_environment, global_lookup, stage_label_plain};
pub use digest::{Digest, Encoder, SCHEMA_VERSION, definition_digest};
use emit::Emitter;
pub use error::{PlanError, PlanErrorKind, PlanWarning};
use eval::StageWork;
pub use expand::{Budget, ExpandError, ExpandLimit, Expansion, ShellExpander, WordExpander};
use graph::dependency_order;
use limits::MAX_EXPANSION_WORK;
pub use render::{render_dot, render_json, render_text};
use scope::ArgList;
pub use types::{
    BaseConfigState, BaseConfigs, CopyOp, CopySource, ExecMount, ExecOp, InlineFile, Input,
    InputRole, NamedContext, NoBaseConfigs, Op, OpKind, PROXY_ARGS, Plan, PlanOptions, Platform,
    StageBase, StageImage, StagePlan, TriggerParser, named_context_key,
};

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
        let mut predefined: BTreeMap<String, String> = tp
            .args("TARGET")
            .into_iter()
            .chain(bp.args("BUILD"))
            .collect();
        predefined.insert("TARGETSTAGE".into(), stage_label_plain(&names, target));
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
                    // Without a value the name keeps the one it has: an earlier global
                    // ARG's, or a predefined platform ARG's (BuildKit's rule), so that
                    // `ARG TARGETARCH` then `FROM base-$TARGETARCH` names the target's base.
                    global_lookup(&global_args, &ctx.predefined, name).map(str::to_string)
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
            let start = emitter.ops.len();
            results[si] = Some(emitter.stage(si, &works[si], steps, &results));
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
                    sbom_scan: w.sbom_scan,
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
}

#[cfg(test)]
mod tests;
