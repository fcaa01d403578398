//! `rbuild plan`: prints what rbuild makes of a Dockerfile.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// `rbuild plan [-f Dockerfile] [--format ast] [CONTEXT]`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// What to print: `ast` is the parse tree in BuildKit's dump format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Ast)]
    pub format: PlanFormat,
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// The parse tree, one line per instruction, as BuildKit's parser dumps it.
    Ast,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (name, source) = read_dockerfile(args.file.as_deref(), &args.context)?;
    let parsed = match rbuild_compiler::parser::parse(&source) {
        Ok(parsed) => parsed,
        Err(err) => bail!("{}", err.render(&name, &source)),
    };
    for warning in parsed.warnings() {
        tracing::warn!("{}", warning.render(&name, &source));
    }
    match args.format {
        PlanFormat::Ast => {
            let mut out = std::io::stdout().lock();
            out.write_all(parsed.dump().as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the Dockerfile named by `-f` (or CONTEXT/Dockerfile) and returns the name to show
/// in diagnostics with its text.
pub fn read_dockerfile(
    file: Option<&std::path::Path>,
    context: &std::path::Path,
) -> anyhow::Result<(String, String)> {
    let mut bytes = Vec::new();
    let name = match file {
        Some(path) if path.as_os_str() == "-" => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the Dockerfile from stdin")?;
            "<stdin>".to_string()
        }
        Some(path) => {
            bytes = std::fs::read(path)
                .with_context(|| format!("cannot read Dockerfile {}", path.display()))?;
            path.display().to_string()
        }
        None => {
            let path = context.join("Dockerfile");
            bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read Dockerfile {}", path.display()))?;
            path.display().to_string()
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name, text)),
        Err(err) => {
            let bytes = err.as_bytes();
            let at = err.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{name}:{line}: the Dockerfile is not valid UTF-8 (byte {at})")
        }
    }
}
