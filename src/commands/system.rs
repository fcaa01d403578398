//! `rbuild system df`: what the store holds, by kind, and what `prune --all` would free;
//! `rbuild system config`: the settings in effect; `rbuild system binfmt`: the emulators that
//! run other architectures' RUN steps.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use rbuild_cache::gc;
use rbuild_options::size::human as human_size;

use crate::cli::GlobalArgs;

/// `rbuild system`.
#[derive(Debug, Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

/// The `system` subcommands.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the store's disk usage by kind.
    Df(DfArgs),
    /// Show the settings of the config file and the environment, and where they come from.
    Config,
    /// Show which architectures RUN steps can emulate (the kernel's binfmt_misc handlers);
    /// `--install` registers Debian's qemu-user-static emulators (needs root).
    Binfmt(BinfmtArgs),
}

/// `rbuild system binfmt`.
#[derive(Debug, Args)]
pub struct BinfmtArgs {
    /// Register Debian's qemu-user-static handlers (with the fix-binary flag) for these
    /// architectures (`arm64`, `arm`, `riscv64`, ...; all that Debian's package offers when none
    /// is named), mounting binfmt_misc first if needed. Needs root.
    #[arg(long)]
    pub install: bool,
    /// The architectures to install (with `--install`).
    #[arg(value_name = "ARCH", requires = "install")]
    pub arches: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DfFormat::Text)]
    pub format: DfFormat,
}

/// `rbuild system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Also list every object (blob, record, snapshot, cache mount...).
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DfFormat::Text)]
    pub format: DfFormat,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DfFormat {
    /// A table for people.
    Text,
    /// JSON.
    Json,
}

pub fn run(global: &GlobalArgs, args: SystemArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SystemCommand::Df(df) => run_df(global, df),
        SystemCommand::Binfmt(args) => run_binfmt(args),
        SystemCommand::Config => {
            let config = crate::config::get();
            match &config.file {
                Some(f) => crate::outln!("# config file: {}", f.display()),
                None => crate::outln!("# no config file"),
            }
            if let Ok(root) = super::store_root(global) {
                crate::outln!("# store in effect: {}", root.display());
            }
            for s in crate::config::SETTINGS {
                crate::outln!("# {}", s.doc);
                let from: Vec<String> = s
                    .flag
                    .iter()
                    .map(|f| format!("flag {f}"))
                    .chain(s.env.iter().map(|e| format!("variable {e}")))
                    .collect();
                if !from.is_empty() {
                    crate::outln!("# also: {}", from.join(", "));
                }
                match config.show(s.key) {
                    Some(v) => crate::outln!(
                        "{} = {v}
",
                        s.key
                    ),
                    None => crate::outln!(
                        "# {} (default: {})
",
                        s.key,
                        s.default
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_binfmt(args: BinfmtArgs) -> anyhow::Result<ExitCode> {
    use rbuild_compiler::plan::Platform;
    use rbuild_executor::binfmt::{self, Installed};
    if args.install {
        let arches: Vec<String> = if args.arches.is_empty() {
            binfmt::known_arches()
                .iter()
                .filter(|a| {
                    !binfmt::runs_natively(&Platform::new("linux", a, None))
                        && binfmt::debian_definition(
                            std::path::Path::new(binfmt::DEBIAN_BINFMT_D),
                            a,
                        )
                        .is_ok()
                })
                .map(|a| a.to_string())
                .collect()
        } else {
            args.arches
                .iter()
                .map(|a| Platform::parse(a).map(|p| p.architecture))
                .collect::<Result<_, _>>()?
        };
        if arches.is_empty() {
            anyhow::bail!(
                "no qemu handler definitions in {}: install Debian's qemu-user-static (`apt-get install qemu-user-static`)",
                binfmt::DEBIAN_BINFMT_D
            );
        }
        for (arch, what) in binfmt::install(&arches)? {
            match what {
                Installed::Registered(name) => tracing::info!("{arch}: registered {name}"),
                Installed::Present(name) => tracing::info!("{arch}: {name} was registered already"),
                Installed::Native => tracing::info!("{arch}: runs natively"),
            }
        }
    }
    let rows: Vec<(String, String, String)> = binfmt::known_arches()
        .iter()
        .map(|arch| {
            let platform = Platform::new("linux", arch, None);
            let (status, handler) = match binfmt::handler_for(&platform) {
                Ok(None) => ("native".to_string(), String::new()),
                Ok(Some(h)) => (
                    "emulated".to_string(),
                    format!("{} ({})", h.name, h.interpreter.display()),
                ),
                Err(binfmt::BinfmtError::NoHandler { detail, .. }) if !detail.is_empty() => (
                    "unusable".to_string(),
                    detail.trim().trim_matches(['(', ')']).to_string(),
                ),
                Err(_) => ("none".to_string(), String::new()),
            };
            (platform.to_string(), status, handler)
        })
        .collect();
    match args.format {
        DfFormat::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|(p, s, h)| serde_json::json!({"platform": p, "status": s, "handler": h}))
                .collect();
            crate::outln!("{}", serde_json::to_string_pretty(&list)?);
        }
        DfFormat::Text => {
            crate::outln!("{:<16} {:<9} HANDLER", "PLATFORM", "STATUS");
            for (p, s, h) in &rows {
                crate::outln!("{p:<16} {s:<9} {h}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_df(global: &GlobalArgs, args: DfArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let usage = gc::usage(&store)
        .with_context(|| format!("cannot measure the store at {}", store.root().display()))?;
    match args.format {
        DfFormat::Json => {
            let kinds: Vec<serde_json::Value> = usage
                .kinds
                .iter()
                .map(|(k, t)| {
                    let r = usage.reclaimable.get(k).copied().unwrap_or_default();
                    serde_json::json!({
                        "kind": k,
                        "count": t.count,
                        "bytes": t.bytes,
                        "reclaimable_count": r.count,
                        "reclaimable_bytes": r.bytes,
                    })
                })
                .collect();
            let mut v = serde_json::json!({
                "root": store.root(),
                "kinds": kinds,
                "total_bytes": usage.total(),
                "reclaimable_bytes": usage.reclaimable.values().map(|t| t.bytes).sum::<u64>(),
            });
            if args.verbose {
                v["entries"] = serde_json::to_value(&usage.entries)?;
            }
            crate::outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        DfFormat::Text => {
            crate::outln!(
                "{:<16} {:>7} {:>11} {:>12}",
                "TYPE",
                "COUNT",
                "SIZE",
                "RECLAIMABLE"
            );
            for (k, t) in &usage.kinds {
                let r = usage.reclaimable.get(k).copied().unwrap_or_default();
                crate::outln!(
                    "{:<16} {:>7} {:>11} {:>12}",
                    k.name(),
                    t.count,
                    human_size(t.bytes),
                    human_size(r.bytes)
                );
            }
            let reclaimable: u64 = usage.reclaimable.values().map(|t| t.bytes).sum();
            crate::outln!(
                "{:<16} {:>7} {:>11} {:>12}",
                "total",
                "",
                human_size(usage.total()),
                human_size(reclaimable)
            );
            if args.verbose {
                crate::outln!();
                crate::outln!(
                    "{:<16} {:>11}  {:<20} {:<11} PATH",
                    "TYPE",
                    "SIZE",
                    "LAST USED",
                    "RECLAIMABLE"
                );
                let mut entries = usage.entries.clone();
                entries.sort_by_key(|a| (a.kind, a.last_used));
                for e in &entries {
                    let when = jiff::Timestamp::from_second(e.last_used)
                        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    crate::outln!(
                        "{:<16} {:>11}  {:<20} {:<11} {}",
                        e.kind.name(),
                        human_size(e.bytes),
                        when,
                        if e.reclaimable { "yes" } else { "no" },
                        e.path
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
