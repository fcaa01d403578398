//! `rbuild plan`: prints what rbuild makes of a Dockerfile: the build plan (stages, ops, edges,
//! pruned stages, warnings) as text, JSON or Graphviz, or the parse tree in BuildKit's format.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rbuild_cache::context::file::{self, MAX_DOCKERFILE_SIZE};
use rbuild_compiler::instructions::from_ast::plan_source;
use rbuild_compiler::plan::{self, NoBaseConfigs, PlanOptions, Platform};

/// `rbuild plan [-f Dockerfile] [--target T] [--build-arg K=V]... [--format F] [CONTEXT]`
#[derive(Debug, Args)]
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

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (name, source) = read_dockerfile(args.file.as_deref(), &args.context)?;
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
            let options = plan_options(&args)?;
            let plan = match plan_source(&source, &options, &NoBaseConfigs) {
                Ok(plan) => plan,
                Err(err) => bail!("{}", err.render(&name, &source)),
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
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves `--target`, `--build-arg` and `--platform` into the planner's options.
pub fn plan_options(args: &PlanArgs) -> anyhow::Result<PlanOptions> {
    let host = host_platform();
    let target_platform = match &args.platform {
        Some(text) => Platform::parse(text)
            .map_err(|why| anyhow::anyhow!("invalid --platform {text:?}: {why}"))?,
        None => host.clone(),
    };
    Ok(PlanOptions {
        target: args.target.clone(),
        build_args: build_args(&args.build_args)?,
        target_platform,
        build_platform: host,
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

/// This machine's platform, in Go's names (`linux/amd64`, `linux/arm64/v8`).
pub fn host_platform() -> Platform {
    let text = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64/v8",
        "x86" => "linux/386",
        "arm" => "linux/arm/v7",
        "powerpc64" => "linux/ppc64le",
        "s390x" => "linux/s390x",
        "riscv64" => "linux/riscv64",
        _ => "linux/amd64",
    };
    Platform::parse(text).unwrap_or_else(|_| Platform::linux_amd64())
}

/// Reads the Dockerfile named by `-f` (or CONTEXT/Dockerfile) and returns the name to show
/// in diagnostics with its text.
///
/// The Dockerfile is untrusted like the rest of the context: CONTEXT/Dockerfile is resolved
/// inside the context, and a `-f PATH` file name inside its own directory (a symlink there
/// resolves within that directory, as BuildKit's Dockerfile source does), so a link to
/// `/etc/shadow` or `/proc/self/environ` is never read. Only a regular file of at most
/// [`MAX_DOCKERFILE_SIZE`] is read; `-f -` reads stdin up to the same size.
pub fn read_dockerfile(file: Option<&Path>, context: &Path) -> anyhow::Result<(String, String)> {
    match file {
        Some(path) if path.as_os_str() == "-" => {
            let bytes = file::read_capped(
                std::io::stdin().lock(),
                MAX_DOCKERFILE_SIZE,
                Path::new("<stdin>"),
            )
            .context("cannot read the Dockerfile from stdin")?;
            decode_dockerfile("<stdin>", bytes)
        }
        Some(path) => {
            let (dir, name) = split_file_name(path)?;
            read_dockerfile_in(dir, name, &path.display().to_string())
        }
        None => {
            let shown = context.join("Dockerfile").display().to_string();
            read_dockerfile_in(context, Path::new("Dockerfile"), &shown)
        }
    }
}

/// Reads the Dockerfile `name` resolved inside `dir` (see [`read_dockerfile`]); `shown`
/// names it in diagnostics and errors.
pub fn read_dockerfile_in(
    dir: &Path,
    name: &Path,
    shown: &str,
) -> anyhow::Result<(String, String)> {
    match file::read_in(dir, name, MAX_DOCKERFILE_SIZE) {
        Ok(Some(bytes)) => decode_dockerfile(shown, bytes),
        Ok(None) => bail!("cannot read Dockerfile {shown}: no such file"),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read Dockerfile {shown}"))),
    }
}

/// `-f PATH` as (its directory, its file name).
fn split_file_name(path: &Path) -> anyhow::Result<(&Path, &Path)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            Ok((dir, Path::new(name)))
        }
        _ => bail!("-f {} does not name a file", path.display()),
    }
}

/// The Dockerfile's text; bytes that are not UTF-8 are reported by line and offset, never
/// shown.
pub fn decode_dockerfile(name: &str, bytes: Vec<u8>) -> anyhow::Result<(String, String)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name.to_string(), text)),
        Err(err) => {
            let bytes = err.as_bytes();
            let at = err.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{name}:{line}: the Dockerfile is not valid UTF-8 (byte {at})")
        }
    }
}
