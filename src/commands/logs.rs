//! `rbuild logs`: the output of a detached container, from its log.

use std::io::{BufRead as _, BufReader, Seek as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rbuild_cache::containers::Containers;

use crate::cli::GlobalArgs;

/// `rbuild logs [-f] [--tail N] [-t] NAME`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (`all`: every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Each line with the time it was written (RFC 3339).
    #[arg(short, long)]
    pub timestamps: bool,
    /// The container (name or id prefix).
    pub container: String,
}

/// One line of a container's log.
#[derive(Debug, serde::Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

pub fn run(global: &GlobalArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let r = containers.find(&args.container)?;
    let path = super::supervise::log_path(&containers, &r.id);
    let tail = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("--tail {n:?} is not a number of lines"))?,
        ),
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !r.detached {
                anyhow::bail!(
                    "container {} ran in the foreground: its output was not kept",
                    r.name
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        if !line.ends_with('\n') {
            break;
        }
        lines.push(std::mem::take(&mut line));
    }
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for l in &lines[skip..] {
        print_entry(&path, l, args.timestamps)?;
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // A partial last line is read again once complete.
    let mut pos = reader.stream_position()? - line.len() as u64;
    loop {
        let running = containers.supervised(&r.id);
        let mut f = std::fs::File::open(&path)?;
        f.seek(std::io::SeekFrom::Start(pos))?;
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 && line.ends_with('\n') {
            print_entry(&path, &line, args.timestamps)?;
            pos += line.len() as u64;
            line.clear();
        }
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_entry(path: &std::path::Path, line: &str, timestamps: bool) -> anyhow::Result<()> {
    let e: Entry = serde_json::from_str(line)
        .with_context(|| format!("cannot parse a line of the log {}", path.display()))?;
    let text = e.log.strip_suffix('\n').unwrap_or(&e.log);
    let text = if timestamps {
        format!("{} {text}", e.time)
    } else {
        text.to_owned()
    };
    if e.stream == "stderr" {
        eprintln!("{text}");
    } else {
        crate::outln!("{text}");
    }
    Ok(())
}
