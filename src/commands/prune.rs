//! `rbuild prune`: removes what no tagged image needs (see `rbuild_cache::gc`), and the
//! automatic gc a build runs when the store outgrows `gc.threshold`.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use rbuild_cache::gc::{self, PruneOptions, PruneReport};
use rbuild_executor::idmap::IdMap;
use rbuild_options::size::human as human_size;

use crate::cli::GlobalArgs;

/// `rbuild prune`.
#[derive(Debug, Args)]
#[command(
    after_help = "A running rbuild process keeps what it uses: each lists the blobs, snapshots and records it writes or reuses in its lease, and a prune leaves exactly those (and the cache mounts a step holds). Nothing else is protected, so `rbuild build ... && rbuild prune --all` frees all the build cache. Leftovers of killed processes go once no rbuild process that started before them is running."
)]
pub struct PruneArgs {
    /// Also remove every build cache record, snapshot, cache mount and context index (tagged
    /// images and every blob they need always stay).
    #[arg(short, long)]
    pub all: bool,
    /// Remove least recently used first, and stop once the store is at most this size
    /// (bytes, or a number with k, m, g, t or p, powers of 1024 as buildx reads it: `10g`,
    /// `512MB`, `1.5GiB`).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// `until=DURATION`: remove only what was last used longer ago (`24h`, `30m`, `7d`).
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (rbuild never asks; accepted for docker compatibility).
    #[arg(short, long)]
    pub force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PruneFormat::Text)]
    pub format: PruneFormat,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PruneFormat {
    /// A table for people.
    Text,
    /// JSON.
    Json,
}

/// Removes a tree the way the sandbox wrote it (files of other ids included).
fn remove_tree(path: &std::path::Path) -> std::io::Result<()> {
    rbuild_executor::sandbox::remove_tree(path, &IdMap::for_current_user())
        .map_err(|e| std::io::Error::other(format!("{e:#}")))
}

/// Parses `--filter` values (only `until=` is known).
fn until(filters: &[String]) -> anyhow::Result<Option<std::time::Duration>> {
    let mut out = None;
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid --filter {f:?}: expected until=DURATION");
        };
        match k {
            "until" => {
                out = Some(gc::parse_duration(v).with_context(|| {
                    format!("invalid --filter {f:?}: {v:?} is not a duration (24h, 30m, 7d, 1h30m)")
                })?);
            }
            _ => bail!("unknown --filter {k:?}: only until=DURATION is supported"),
        }
    }
    Ok(out)
}

pub fn run(global: &GlobalArgs, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let keep_storage = match &args.keep_storage {
        Some(s) => Some(
            crate::env::parse_size(s)
                .map_err(|e| anyhow::anyhow!("invalid --keep-storage: {e}"))?,
        ),
        None => None,
    };
    let opts = PruneOptions {
        keep_own: false,
        all: args.all,
        keep_storage,
        until: until(&args.filter)?,
        dry_run: args.dry_run,
    };
    let store = super::open_store(global)?;
    let report = gc::prune(&store, &opts, &remove_tree)
        .with_context(|| format!("cannot prune the store at {}", store.root().display()))?;
    match args.format {
        PruneFormat::Json => crate::outln!("{}", serde_json::to_string_pretty(&json(&report))?),
        PruneFormat::Text => crate::out!("{}", text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn json(report: &PruneReport) -> serde_json::Value {
    let kinds: Vec<serde_json::Value> = report
        .freed
        .iter()
        .map(|(k, t)| serde_json::json!({"kind": k, "count": t.count, "bytes": t.bytes}))
        .collect();
    serde_json::json!({
        "dry_run": report.dry_run,
        "freed": kinds,
        "total_bytes": report.total().bytes,
        "in_use": report.in_use,
        "before_bytes": report.before,
    })
}

fn text(report: &PruneReport) -> String {
    let mut out = String::new();
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (kind, t) in &report.freed {
        out.push_str(&format!(
            "{verb} {:<16} {:>6}  {:>10}\n",
            kind.name(),
            t.count,
            human_size(t.bytes)
        ));
    }
    if report.in_use > 0 {
        out.push_str(&format!(
            "kept {} in use by running rbuild processes\n",
            report.in_use
        ));
    }
    let total = report.total();
    out.push_str(&format!(
        "Total {}: {} ({} objects)\n",
        if report.dry_run {
            "reclaimable space"
        } else {
            "reclaimed space"
        },
        human_size(total.bytes),
        total.count
    ));
    out
}
