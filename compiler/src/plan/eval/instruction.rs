//! One instruction of a stage evaluated against the stage's scope: ARG, ENV and LABEL,
//! the config instructions (CMD, ENTRYPOINT, SHELL, WORKDIR, USER, EXPOSE, VOLUME,
//! STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER), each recorded as a step with its history
//! text; RUN, COPY and ADD go to their own files.

use super::{
    NON_ENV_ARGS, StageWork, Step, StepKind, join_clean, record, step_weight, windows_join,
    with_shell,
};
use crate::instructions::{ArgDecl, Healthcheck, Instruction, InstructionKind};
use crate::plan::context::{Ctx, STAGE_ENV, check_environment};
use crate::plan::scope::{ArgList, Scope};
use crate::plan::{HealthConfig, PROXY_ARGS, PlanError, PlanErrorKind, Planner, config};

impl Planner<'_> {
    pub(super) fn eval_instruction(
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
                    // Proxy variables go apart; BuildKit's SBOM switches never reach steps.
                    let env = !PROXY_ARGS.contains(&name.as_str())
                        && !NON_ENV_ARGS.contains(&name.as_str());
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
