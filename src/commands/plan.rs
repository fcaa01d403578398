//! `rbuild plan`: prints what rbuild makes of a Dockerfile: the build plan (stages, ops, edges,
//! pruned stages, warnings) as text, JSON or Graphviz, or the parse tree in BuildKit's format.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use rbuild_compiler::instructions::from_ast::plan_source;
use rbuild_compiler::plan::{self, NoBaseConfigs, PlanOptions, Platform};

/// `rbuild plan [-f Dockerfile] [--target T] [--build-arg K=V]... [--format F] [CONTEXT]`
#[derive(Debug, Args)]
#[command(
    after_help = "Base images the store has (--root, or the default store when it exists) give their configs: inherited ENV, WORKDIR, USER and ONBUILD triggers are planned. Nothing is pulled; a base the store lacks is shown as unresolved."
)]
pub struct PlanArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The stage to build; stages it does not need are reported, not planned.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A build argument, `NAME=value`, or `NAME` to take the value from the environment.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// The platform to build for (`os/arch[/variant]`); default: this machine's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// For people: one line per op with its stage and Dockerfile line.
    Text,
    /// Stable JSON (schema: compiler/src/plan/SCHEMA.md).
    Json,
    /// Graphviz: `rbuild plan --format dot | dot -Tsvg > plan.svg`.
    Dot,
    /// The parse tree, one line per instruction, as BuildKit's parser dumps it.
    Ast,
}

pub fn run(global: &crate::cli::GlobalArgs, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (name, source) =
        rbuild_engine::dockerfile::read_dockerfile(args.file.as_deref(), &args.context)?;
    let text = match args.format {
        PlanFormat::Ast => {
            let parsed = match rbuild_compiler::parser::parse(&source) {
                Ok(parsed) => parsed,
                Err(err) => bail!("{}", err.render(&name, &source)),
            };
            for warning in parsed.warnings() {
                tracing::warn!("{}", warning.render(&name, &source));
            }
            parsed.dump()
        }
        format => {
            let platforms = target_platforms(args.platform.as_deref())?;
            if platforms.len() > 1 {
                bail!(
                    "--platform names {} platforms: a plan is for one; run rbuild plan once per platform",
                    platforms.len()
                );
            }
            let options = plan_options(&args)?;
            let plan = match plan_source(&source, &options, &NoBaseConfigs) {
                Ok(plan) => plan,
                Err(err) => bail!("{}", err.render(&name, &source)),
            };
            // Base images the store has give their configs (inherited settings, ONBUILD
            // triggers); nothing is pulled.
            let configs = stored_configs(global, &plan);
            let plan = if configs.is_empty() {
                plan
            } else {
                match plan_source(&source, &options, &configs) {
                    Ok(plan) => plan,
                    Err(err) => bail!("{}", err.render(&name, &source)),
                }
            };
            for warning in &plan.warnings {
                tracing::warn!("{}", warning.render(&name, &source));
            }
            match format {
                // Text is for people: Dockerfile values in it have their control characters
                // shown as escapes. The other formats are data.
                PlanFormat::Text => rbuild_compiler::text::escape_owned(plan::render_text(&plan)),
                PlanFormat::Json => plan::render_json(&plan),
                _ => plan::render_dot(&plan),
            }
        }
    };
    let mut out = crate::out::stdout();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The configs of the plan's base images that the store (`--root`, or the default one when
/// it exists) has, by reference as the plan writes it.
fn stored_configs(
    global: &crate::cli::GlobalArgs,
    plan: &plan::Plan,
) -> BTreeMap<String, plan::ImageConfig> {
    let mut out = BTreeMap::new();
    let references: Vec<&String> = plan
        .ops
        .iter()
        .filter_map(|op| match &op.kind {
            plan::OpKind::Image { reference, .. } => Some(reference),
            _ => None,
        })
        .collect();
    if references.is_empty() {
        return out;
    }
    let Some(store) = super::existing_store(global) else {
        return out;
    };
    for reference in references {
        if let Some(config) = rbuild_engine::bases::stored_config(&store, reference) {
            out.insert(reference.clone(), config);
        }
    }
    out
}

/// The platforms `--platform` names (a comma-separated list), or this machine's.
pub fn target_platforms(platform: Option<&str>) -> anyhow::Result<Vec<Platform>> {
    match platform {
        Some(text) => Platform::parse_list(text).map_err(|e| anyhow::anyhow!("--platform: {e}")),
        None => Ok(vec![Platform::host()]),
    }
}

/// Resolves `--target`, `--build-arg` and `--platform` (its first platform) into the
/// planner's options.
pub fn plan_options(args: &PlanArgs) -> anyhow::Result<PlanOptions> {
    let host = Platform::host();
    let target_platform = target_platforms(args.platform.as_deref())?
        .into_iter()
        .next()
        .unwrap_or_else(|| host.clone());
    Ok(PlanOptions {
        target: args.target.clone(),
        build_args: build_args(&args.build_args)?,
        target_platform,
        build_platform: host,
        named_contexts: BTreeMap::new(),
    })
}

/// `--build-arg NAME=value` sets a value; `--build-arg NAME` takes it from the environment,
/// and is left unset when the environment has no such variable (as docker does).
pub fn build_args(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in args {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), std::env::var(arg).ok()),
        };
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            bail!("invalid --build-arg {arg:?}: expected NAME=value or NAME");
        }
        if let Some(value) = value {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}
