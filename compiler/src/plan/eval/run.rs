//! RUN evaluated into an exec step: the command with the image's SHELL or as a heredoc
//! script, the step environment (proxy variables apart), the working directory, and each
//! `--mount` with its target and the stage, image or context it reads.

use super::{SourceRef, StageWork, Step, StepKind, join_clean, record, with_shell};
use crate::instructions::{self, CommandLine, Instruction, MountType, NetworkMode, SecurityMode};
use crate::plan::context::Ctx;
use crate::plan::scope::Scope;
use crate::plan::{ExecMount, ExecOp, InlineFile, PROXY_ARGS, PlanError, PlanErrorKind, Planner};

impl Planner<'_> {
    pub(super) fn eval_run(
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
}
