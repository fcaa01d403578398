//! `rbuild ps`: lists the containers `rbuild run` kept (without `--rm`).

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use rbuild_cache::containers::Containers;

use super::container::{self, ContainerConfig, Status};
use crate::cli::GlobalArgs;

/// `rbuild ps [-a] [-q] [--format table|json]`
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show exited containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Only the ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// `table` (docker's columns) or `json` (one object a line, docker's keys).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header.
    Table,
    /// One JSON object a line.
    Json,
}

pub fn run(global: &GlobalArgs, args: PsArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let now = jiff::Timestamp::now().as_second();
    let mut rows = vec![[
        "CONTAINER ID".to_owned(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for r in containers.list()?.iter().rev() {
        let status = container::status(&containers, r);
        if !args.all && status != Status::Running {
            continue;
        }
        if args.quiet {
            crate::outln!("{}", &r.id[..12]);
            continue;
        }
        let ports = ContainerConfig::of(r)
            .map(|c| container::ports_text(&c.ports))
            .unwrap_or_default();
        let row = [
            r.id[..12].to_owned(),
            r.image.clone(),
            command(&r.command),
            format!("{} ago", container::ago(now - r.created)),
            container::status_text(&containers, r, now),
            ports,
            r.name.clone(),
        ];
        if args.format == Format::Json {
            let obj = serde_json::json!({
                "ID": row[0], "Image": row[1], "Command": row[2], "CreatedAt": jiff::Timestamp::from_second(r.created).map(|t| t.to_string()).unwrap_or_default(),
                "RunningFor": row[3], "Status": row[4], "State": status.word(), "Ports": row[5], "Names": row[6],
            });
            crate::outln!("{obj}");
            continue;
        }
        rows.push(row);
    }
    if !args.quiet && args.format == Format::Table {
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            crate::outln!("{}", line.trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The command column: the image's or the user's argv, control characters shown as escapes.
fn command(argv: &[String]) -> String {
    let text = argv.join(" ");
    let text = rbuild_compiler::text::escape_controls(&text);
    let short: String = text.chars().take(20).collect();
    if short.len() < text.len() {
        format!("\"{}…\"", short)
    } else {
        format!("\"{text}\"")
    }
}
