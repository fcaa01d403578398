//! `rbuild ps`: lists the containers `rbuild run` kept (without `--rm`).

use std::process::ExitCode;

use clap::Args;
use rbuild_cache::containers::{Containers, Record, State};

use crate::cli::GlobalArgs;

/// `rbuild ps [-a] [-q]`
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show exited containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Only the ids.
    #[arg(short, long)]
    pub quiet: bool,
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
        "NAMES".into(),
    ]];
    for r in containers.list()?.iter().rev() {
        let running = is_running(r);
        if !args.all && !running {
            continue;
        }
        if args.quiet {
            println!("{}", &r.id[..12]);
            continue;
        }
        rows.push([
            r.id[..12].to_owned(),
            r.image.clone(),
            command(&r.command),
            format!("{} ago", ago(now - r.created)),
            status(r, running, now),
            r.name.clone(),
        ]);
    }
    if !args.quiet {
        let widths: Vec<usize> = (0..6)
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
            println!("{}", line.trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A container marked running whose `rbuild` process is gone ended without a record.
fn is_running(r: &Record) -> bool {
    r.state == State::Running && std::path::Path::new(&format!("/proc/{}", r.pid)).exists()
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

fn status(r: &Record, running: bool, now: i64) -> String {
    if running {
        return format!("Up {}", ago(now - r.created));
    }
    match (r.exit_code, r.finished) {
        (Some(code), Some(at)) => format!("Exited ({code}) {} ago", ago(now - at)),
        _ => "Dead".into(),
    }
}

/// Docker's coarse durations: "5 seconds", "3 minutes", "2 hours", "4 days".
fn ago(secs: i64) -> String {
    let s = secs.max(0);
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_coarse() {
        assert_eq!(super::ago(0), "0 seconds");
        assert_eq!(super::ago(61), "1 minute");
        assert_eq!(super::ago(7300), "2 hours");
    }
}
