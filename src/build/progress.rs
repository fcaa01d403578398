//! Build progress on stderr.
//!
//! `plain` writes every event on its own line, numbered like BuildKit's plain output:
//!
//! ```text
//! #3 [build 2/4] RUN make
//! #3 cache miss: file src/main.c changed
//! #3 0.412 cc -o app main.c
//! #3 DONE 1.3s
//! #4 [build 3/4] COPY app /usr/bin/
//! #4 CACHED
//! ```
//!
//! `tty` writes the same step lines but keeps a step's output to itself unless the step
//! fails; `json` writes one object per event (`{"step", "event", ...}`); `quiet` nothing.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::commands::build::ProgressArg;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Step lines; output only for failures.
    Tty,
    /// Everything, line by line.
    Plain,
    /// JSON lines.
    Json,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// `auto` is `tty` on a terminal and `plain` elsewhere.
    pub fn resolve(arg: ProgressArg, quiet: bool) -> Mode {
        if quiet {
            return Mode::Quiet;
        }
        match arg {
            ProgressArg::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            ProgressArg::Auto | ProgressArg::Plain => Mode::Plain,
            ProgressArg::Tty => Mode::Tty,
            ProgressArg::Json => Mode::Json,
            ProgressArg::Quiet => Mode::Quiet,
        }
    }
}

/// The progress sink shared by the solver's threads.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    explain: bool,
    started: Instant,
    out: Mutex<()>,
}

impl Progress {
    /// A sink; `explain` prints cache-miss reasons in every mode but quiet.
    pub fn new(mode: Mode, explain: bool) -> Progress {
        Progress {
            mode,
            explain,
            started: Instant::now(),
            out: Mutex::new(()),
        }
    }

    fn emit(&self, text: &str) {
        let _guard = self.out.lock();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    fn json(&self, step: usize, event: &str, extra: serde_json::Value) {
        let mut v = serde_json::json!({
            "step": step,
            "event": event,
            "time": self.started.elapsed().as_secs_f64(),
        });
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        self.emit(&v.to_string());
    }

    /// A step starts (or is looked up in the cache).
    pub fn start(&self, step: usize, label: &str, description: &str) {
        match self.mode {
            Mode::Plain | Mode::Tty => self.emit(&format!("#{step} [{label}] {description}")),
            Mode::Json => self.json(
                step,
                "start",
                serde_json::json!({"label": label, "description": description}),
            ),
            Mode::Quiet => {}
        }
    }

    /// A line of a step's output.
    pub fn line(&self, step: usize, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        match self.mode {
            Mode::Plain => self.emit(&format!(
                "#{step} {:.3} {text}",
                self.started.elapsed().as_secs_f64()
            )),
            Mode::Json => self.json(step, "output", serde_json::json!({"text": text})),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    /// A step was found in the cache.
    pub fn cached(&self, step: usize) {
        match self.mode {
            Mode::Plain | Mode::Tty => self.emit(&format!("#{step} CACHED")),
            Mode::Json => self.json(step, "cached", serde_json::json!({})),
            Mode::Quiet => {}
        }
    }

    /// Why a step missed the cache.
    pub fn miss(&self, step: usize, reason: &str) {
        match self.mode {
            Mode::Plain => self.emit(&format!("#{step} cache miss: {reason}")),
            Mode::Tty if self.explain => self.emit(&format!("#{step} cache miss: {reason}")),
            Mode::Json => self.json(step, "miss", serde_json::json!({"reason": reason})),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    /// A step finished.
    pub fn done(&self, step: usize, took: Duration) {
        match self.mode {
            Mode::Plain | Mode::Tty => {
                self.emit(&format!("#{step} DONE {:.1}s", took.as_secs_f64()));
            }
            Mode::Json => self.json(
                step,
                "done",
                serde_json::json!({"seconds": took.as_secs_f64()}),
            ),
            Mode::Quiet => {}
        }
    }

    /// A step failed; `tail` is its last output lines.
    pub fn failed(&self, step: usize, message: &str, tail: &[String]) {
        match self.mode {
            Mode::Plain | Mode::Tty => {
                if self.mode == Mode::Tty {
                    for l in tail {
                        self.emit(&format!("#{step} {l}"));
                    }
                }
                self.emit(&format!("#{step} ERROR {message}"));
            }
            Mode::Json => self.json(step, "error", serde_json::json!({"message": message})),
            Mode::Quiet => {}
        }
    }
}
