//! `rbuild check`: Dockerfile checks that know the image. The rules live in
//! `rbuild_compiler::check` (no I/O); this command reads the files, gathers what the rules
//! need from the context and the store (`rbuild_engine::check`), and prints the findings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use rbuild_compiler::check::{self, CheckConfig, CheckOptions, Checked, Report, Severity};

/// `rbuild check [-f Dockerfile]... [--build-arg K=V]... [--target T] [--format F] [CONTEXT]`
#[derive(Debug, Args, Clone, Default)]
#[command(
    after_help = "Each finding names its rule; every rule has a page in docs/checks/. A `# check=skip=RULE1,RULE2;error=true` directive at the top of the Dockerfile skips rules or makes findings errors, as in BuildKit; --check-config and the config file's check.config give the same settings for every file. With --quiet only the findings that fail the check are printed (no notes, no summary). Base images the store has give their configs (ENV, SHELL, users); nothing is pulled."
)]
pub struct CheckArgs {
    /// A Dockerfile, or a directory whose Dockerfiles (`Dockerfile`, `*.Dockerfile`,
    /// `Dockerfile.*`) are all checked; may be repeated (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// A build argument, `NAME=value`, or `NAME` to take the value from the environment.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one); stages it does not use are reported.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// The platform to build for (`os/arch[/variant]`); default: this machine's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// What to print on stdout.
    #[arg(long = "format", value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Exit with code 1 when a finding is at least this severe (default: error).
    #[arg(long = "fail-on", value_enum, value_name = "LEVEL")]
    pub fail_on: Option<FailOn>,
    /// Check settings in the directive's syntax: `skip=RULE1,RULE2;error=true;experimental=RULE`
    /// (default: config `check.config`).
    #[arg(long = "check-config", value_name = "OPTIONS")]
    pub check_config: Option<String>,
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CheckFormat {
    /// For people: each finding with its source line, its fix and its rule's page.
    #[default]
    Text,
    /// `{"files": [{"file", "findings": [...]}]}`.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

/// When the command fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// On any warning or error.
    Warning,
    /// On errors only (findings of `# check=error=true`, or rules that are errors).
    Error,
}

impl FailOn {
    fn threshold(self) -> Severity {
        match self {
            FailOn::Warning => Severity::Warning,
            FailOn::Error => Severity::Error,
        }
    }
}

/// One file checked: its name as shown, its text, the result.
struct Done {
    name: String,
    source: String,
    checked: Checked,
}

pub fn run(global: &crate::cli::GlobalArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let done = check_files(global, &args, true)?;
    let threshold = args.fail_on.map_or(Severity::Error, FailOn::threshold);
    let quiet = global.quiet;
    let mut shown: Vec<Done> = done;
    if quiet {
        for d in &mut shown {
            d.checked.findings.retain(|f| f.severity >= threshold);
            d.checked.limits.clear();
        }
    }
    let reports: Vec<Report<'_>> = shown
        .iter()
        .map(|d| Report {
            file: &d.name,
            source: &d.source,
            checked: &d.checked,
        })
        .collect();
    let text = match args.format {
        CheckFormat::Text => {
            let mut t = check::render_text(&reports);
            if quiet {
                // The summary line is not a finding.
                if let Some(i) = t.trim_end().rfind('\n').map(|i| i + 1).or(Some(0))
                    && t[i..].contains(" checked: ")
                {
                    t.truncate(i);
                }
            }
            t
        }
        CheckFormat::Json => check::render_json(&reports),
        CheckFormat::Sarif => check::render_sarif(&reports),
    };
    let mut out = crate::out::stdout();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let failed = shown
        .iter()
        .flat_map(|d| &d.checked.findings)
        .any(|f| f.severity >= threshold);
    if failed {
        let mut rules: Vec<&str> = shown
            .iter()
            .flat_map(|d| &d.checked.findings)
            .filter(|f| f.severity >= threshold)
            .map(|f| f.rule)
            .collect();
        rules.sort_unstable();
        rules.dedup();
        tracing::error!("lint violation found for rules: {}", rules.join(", "));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The check settings: `--check-config`, else the config file's `check.config`, plus the
/// config file's `check.pin_versions`.
fn settings(args: &CheckArgs) -> anyhow::Result<CheckConfig> {
    let config = crate::config::get();
    let text = match &args.check_config {
        Some(t) => Some(t.clone()),
        None => config.check_config(),
    };
    let mut out = match text {
        Some(t) => check::parse_check_options(&t)
            .with_context(|| format!("invalid --check-config {t:?}"))?,
        None => CheckConfig::default(),
    };
    out.pin_versions = config.check_pin_versions();
    Ok(out)
}

/// The Dockerfiles named by `-f` (files, and the Dockerfiles under directories), or
/// CONTEXT/Dockerfile.
fn targets(args: &CheckArgs) -> anyhow::Result<Vec<Option<PathBuf>>> {
    if args.files.is_empty() {
        return Ok(vec![None]);
    }
    let mut out = Vec::new();
    for f in &args.files {
        if f.is_dir() {
            let mut found = Vec::new();
            collect_dockerfiles(f, &mut found, 0)?;
            if found.is_empty() {
                bail!("no Dockerfile in directory {}", f.display());
            }
            found.sort();
            out.extend(found.into_iter().map(Some));
        } else {
            out.push(Some(f.clone()));
        }
    }
    Ok(out)
}

fn is_dockerfile_name(name: &str) -> bool {
    name == "Dockerfile"
        || name.ends_with(".Dockerfile")
        || name.ends_with(".dockerfile")
        || name.starts_with("Dockerfile.") && !name.ends_with(".dockerignore")
}

fn collect_dockerfiles(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> anyhow::Result<()> {
    // Deep enough for any source tree, bounded against link loops.
    if depth > 32 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list directory {}", dir.display()))?;
        let ty = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ty.is_dir() && !name.starts_with('.') {
            collect_dockerfiles(&entry.path(), out, depth + 1)?;
        } else if ty.is_file() && is_dockerfile_name(&name) {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Checks every Dockerfile the arguments name. A file that does not parse fails the
/// command with its diagnostic.
fn check_files(
    global: &crate::cli::GlobalArgs,
    args: &CheckArgs,
    list_context: bool,
) -> anyhow::Result<Vec<Done>> {
    let plan_args = crate::commands::plan::PlanArgs {
        file: None,
        target: args.target.clone(),
        build_args: args.build_args.clone(),
        platform: args.platform.clone(),
        format: crate::commands::plan::PlanFormat::Text,
        context: args.context.clone(),
    };
    let plan = crate::commands::plan::plan_options(&plan_args)?;
    let config = settings(args)?;
    let mut gatherer =
        rbuild_engine::check::Gatherer::new(&args.context, super::existing_store(global));
    gatherer.list_context = list_context;
    let mut done = Vec::new();
    for file in targets(args)? {
        let (name, source) =
            rbuild_engine::dockerfile::read_dockerfile(file.as_deref(), &args.context)?;
        let options = CheckOptions {
            plan: plan.clone(),
            config: config.clone(),
            facts: gatherer.facts(file.as_deref()),
        };
        let checked = match check::check(&source, &options, &gatherer.bases) {
            Ok(c) => c,
            Err(err) => bail!("{}", err.render(&name, &source)),
        };
        done.push(Done {
            name,
            source,
            checked,
        });
    }
    Ok(done)
}

/// What the check every build runs first found: its findings as warnings for the build's
/// progress, and the rules whose findings fail the build (`# check=error=true`).
#[derive(Debug, Default)]
pub struct BuildChecks {
    /// Each finding: its message and where it is.
    pub findings: Vec<(String, crate::build_progress::CheckWarning)>,
    /// Set when a file says `error=true` and has findings: the failure's message.
    pub violation: Option<String>,
}

/// The check every build runs first, as BuildKit's: its build checks only (the best-practice
/// and resolved rules are `rbuild check`'s). With `excerpts`, each finding is also printed
/// on stderr with its source excerpt (the text progress modes; `json` gets only the
/// warnings). Under `# check=error=true` (or `--check-config error=true`) a finding fails
/// the build before any step runs: [`BuildChecks::violation`] names the rules.
pub fn before_build(
    global: &crate::cli::GlobalArgs,
    args: &CheckArgs,
    excerpts: bool,
) -> BuildChecks {
    let mut out = BuildChecks::default();
    // A Dockerfile from stdin is read once, by the build.
    if args.files.iter().any(|f| f.as_os_str() == "-") {
        return out;
    }
    // A Dockerfile that cannot be read or parsed is reported by the build itself.
    // Its rules need no listing of the context.
    let Ok(mut done) = check_files(global, args, false) else {
        return out;
    };
    let mut violated = Vec::new();
    for d in &mut done {
        d.checked
            .findings
            .retain(|f| check::rule(f.rule).is_some_and(|r| r.origin == check::Origin::Buildkit));
        for f in &d.checked.findings {
            if excerpts {
                let message = format!("{}[{}]: {}", f.severity.as_str(), f.rule, f.message);
                tracing::warn!(
                    "{}",
                    rbuild_compiler::parser::render_diagnostic(
                        &message,
                        f.span,
                        Some(&f.fix),
                        &d.name,
                        &d.source
                    )
                );
            }
            out.findings.push((
                f.message.clone(),
                crate::build_progress::CheckWarning {
                    rule: f.rule.to_string(),
                    severity: f.severity.as_str().to_string(),
                    file: d.name.clone(),
                    line: f.span.start.line,
                    column: f.span.start.column,
                    end_line: f.span.end.line,
                    end_column: f.span.end.column,
                    fix: f.fix.clone(),
                    url: check::rule(f.rule).map(|r| r.doc_url()).unwrap_or_default(),
                },
            ));
        }
        if d.checked.config.error && !d.checked.findings.is_empty() {
            violated.extend(d.checked.violated_rules());
        }
    }
    if !violated.is_empty() {
        violated.sort_unstable();
        violated.dedup();
        out.violation = Some(format!(
            "lint violation found for rules: {}",
            violated.join(", ")
        ));
    }
    out
}
