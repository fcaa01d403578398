//! `rbuild system df`: what the store holds, by kind, and what `prune --all` would free.

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
