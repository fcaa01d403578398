//! What `rbuild build` shows on stderr while it works, and the summary at the end.
//!
//! Every part of the build reports to one [`Progress`]: steps start, print output, hit or miss
//! the cache, finish or fail; base images are pulled (and images pushed) through a
//! [`Transfer`]; warnings are collected. The mode decides how it is shown:
//!
//! `plain` writes one line per event, numbered like BuildKit's plain output. `[label]` is the
//! stage's name (or `stage-N`), the step's index in the stage and the stage's step count;
//! output lines carry the seconds since the step started:
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
//! A failed step ends with `#N ERROR: MESSAGE` (its first line). The whole error, with the
//! Dockerfile line and the step's last output lines, is printed once, after the summary, by
//! the command's error report: no mode repeats it in a block of its own.
//!
//! `tty` redraws a view in place: a header with the elapsed time and finished/total steps,
//! the steps with their times, the last lines of each running step's output and the byte
//! progress of transfers. Every line is cut to the terminal width measured at each redraw
//! (so a narrow or resized terminal never wraps). When the build ends the view collapses into
//! the final list of steps.
//!
//! In `plain` and `tty`, control characters of everything untrusted (step output, Dockerfile
//! text, file names, registry messages) are shown as visible escapes such as `\x1b[2J`
//! (tabs and line ends excepted), so a step cannot move the cursor, clear the screen or set
//! the title; `plain` escapes every line it writes. `json` keeps the exact text, JSON-escaped.
//!
//! `json` writes one object per line; the schema (version [`JSON_VERSION`]) is:
//!
//! ```text
//! every event   {"v":1, "time":SECONDS_SINCE_START, "event":NAME, ...}
//! start         "step":N, "label":"build 2/4", "description":"RUN make", "kind":"step"|"source"
//! output        "step":N, "text":LINE
//! cached        "step":N
//! miss          "step":N, "reason":TEXT
//! done          "step":N, "seconds":F
//! error         "step":N, "message":TEXT, "output":[LAST LINES], "file":NAME|null,
//!               "lines":[FIRST, LAST]|null
//! layer         "step":N, "size":BYTES
//! transfer      "step":N, "action":"start"|"bytes"|"done"|"exists"|"mounted",
//!               "blob":DIGEST, "size"/"done"/"total":BYTES, "from":REPOSITORY
//! retry         "step":N, "what":TEXT, "attempt":N, "delay":SECONDS
//! warning       "code":NAME, "message":TEXT[, "check":{"rule","severity","file","line",
//!               "column","end_line","end_column","fix","url"} for code "check"]
//! summary       "ok":BOOL, "images":[NAMES], "digest":DIGEST|null, "seconds":F,
//!               "steps":{"total","run","cached"}, "written":{"layers","bytes"}, "warnings":[...],
//!               "error":TEXT|null
//! ```
//!
//! `docs/progress-json.md` describes it in full. `quiet` shows nothing.
//!
//! Every mode but `quiet` ends with a [`Summary`] (in `json`, the `summary` event); the
//! caller gets the same [`Summary`] back from [`Progress::finish`].
//!
//! The modules follow the parts: `state` keeps what every view needs (each step's status,
//! last output lines and blobs in transfer, the counts of the summary) and hands each event
//! to the mode's renderer, a [`view::View`]: `plain`, `tty`, `json`, `quiet`. `text` holds
//! what the human views share (escaping untrusted text, widths).

mod json;
mod plain;
mod quiet;
mod state;
mod text;
mod tty;
mod view;

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::HumanBytes;
use rbuild_compiler::text::escape_controls;
use rbuild_engine::{Events, Location, TransferEvents};
use rbuild_registry::{ProgressEvent, ProgressFn};

use crate::commands::build::ProgressArg;
use state::{Shared, Status};
use text::format_secs;
use view::View;

/// The version of the `json` schema (`"v"` of every event).
pub const JSON_VERSION: u32 = 1;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A view redrawn in place on a terminal.
    Tty,
    /// Everything, line by line.
    Plain,
    /// JSON lines.
    Json,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// `auto` is `tty` when stderr is a terminal and `plain` elsewhere. `tty` asked for
    /// explicitly on something that is not a terminal is an error, as in `docker buildx`.
    pub fn resolve(arg: ProgressArg, quiet: bool) -> anyhow::Result<Mode> {
        if quiet {
            return Ok(Mode::Quiet);
        }
        let terminal = std::io::stderr().is_terminal();
        Ok(match arg {
            ProgressArg::Auto if terminal => Mode::Tty,
            ProgressArg::Auto | ProgressArg::Plain => Mode::Plain,
            ProgressArg::Tty if terminal => Mode::Tty,
            ProgressArg::Tty => anyhow::bail!(
                "--progress tty needs a terminal on stderr; use --progress plain (or auto) when \
                 stderr is a pipe or a file"
            ),
            ProgressArg::Json => Mode::Json,
            ProgressArg::Quiet => Mode::Quiet,
        })
    }
}

/// A warning found during the build, listed in the summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// A stable short name: `unused-build-arg`, `stage-not-built`, `secret-build-arg`,
    /// `context-special-file`...
    pub code: String,
    /// What it is about (one line, naming the object).
    pub message: String,
    /// For a finding of the Dockerfile's build checks (code `check`): the rule and where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckWarning>,
}

/// Where a build-check finding is and what its rule says (the `check` field of a warning).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckWarning {
    /// The rule's name (`JSONArgsRecommended`).
    pub rule: String,
    /// `warning` or `error` (`# check=error=true`).
    pub severity: String,
    /// The Dockerfile, as the build names it.
    pub file: String,
    /// First line and column (1-based) of the finding.
    pub line: usize,
    /// Its column.
    pub column: usize,
    /// Last line and the column after its last character.
    pub end_line: usize,
    /// The column after it.
    pub end_column: usize,
    /// What to do about it.
    pub fix: String,
    /// The rule's documentation page.
    pub url: String,
}

/// What a build did, printed at its end and handed to the caller (the metadata file wants
/// the duration and the warnings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Whether the build produced an image.
    pub ok: bool,
    /// The names the image was given (`-t`), in full.
    pub images: Vec<String>,
    /// The image id (manifest digest), when built (not with only `type=local`/`type=tar`
    /// outputs).
    pub digest: Option<String>,
    /// From the start of the build to its end.
    pub duration: Duration,
    /// Build steps of the plan (RUN, COPY, ADD, WORKDIR; not FROM or context loads).
    pub steps: usize,
    /// Steps that ran.
    pub run: usize,
    /// Steps taken from the cache.
    pub cached: usize,
    /// New layers written by the steps that ran.
    pub layers_written: usize,
    /// Their size in bytes (as stored).
    pub bytes_written: u64,
    /// Every warning, in the order found.
    pub warnings: Vec<Warning>,
    /// Why the build failed (the error's first line), when it did.
    pub error: Option<String>,
}

impl Summary {
    /// The `json` form (the fields of the `summary` event).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok,
            "images": self.images,
            "digest": self.digest,
            "seconds": self.duration.as_secs_f64(),
            "steps": {"total": self.steps, "run": self.run, "cached": self.cached},
            "written": {"layers": self.layers_written, "bytes": self.bytes_written},
            "warnings": self.warnings,
            "error": self.error,
        })
    }

    /// The text form, several lines each ending with a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let secs = format_secs(self.duration);
        if self.ok {
            let names: Vec<_> = self
                .images
                .iter()
                .map(|n| escape_controls(crate::names::short_name(n)))
                .collect();
            // A bake names its images without one digest.
            if self.digest.is_none() && names.is_empty() {
                let _ = writeln!(out, "built in {secs} (outputs only, no image kept)");
            } else if names.is_empty() {
                let _ = writeln!(out, "built an untagged image in {secs}");
            } else {
                let _ = writeln!(out, "built {} in {secs}", names.join(", "));
            }
        } else {
            let _ = writeln!(out, "build failed after {secs}");
        }
        if let Some(d) = &self.digest {
            let _ = writeln!(out, "  image id  {d}");
        }
        let _ = writeln!(
            out,
            "  steps     {} run, {} cached, {} in all",
            self.run, self.cached, self.steps
        );
        let layers = match self.layers_written {
            1 => "1 new layer".to_string(),
            n => format!("{n} new layers"),
        };
        let _ = writeln!(
            out,
            "  written   {layers}, {}",
            HumanBytes(self.bytes_written)
        );
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "  warnings  {}", self.warnings.len());
            for w in &self.warnings {
                let what = match &w.check {
                    Some(c) => format!("{} ({}:{})", c.rule, c.file, c.line),
                    None => w.code.clone(),
                };
                let _ = writeln!(
                    out,
                    "    - {}: {}",
                    escape_controls(&what),
                    escape_controls(&w.message)
                );
            }
        }
        out
    }
}

/// The progress sink of a build, shared by the solver's threads.
#[derive(Debug)]
pub struct Progress {
    shared: Arc<Shared>,
    renderer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Progress {
    /// A sink; `explain` shows cache-miss reasons in the tty view too (plain and json always
    /// have them). In `tty` mode a thread redraws the view until [`Progress::finish`].
    pub fn new(mode: Mode, explain: bool) -> Progress {
        let view: Box<dyn View> = match mode {
            Mode::Tty => Box::new(tty::Tty {
                explain,
                color: std::env::var_os(crate::env::NO_COLOR).is_none(),
            }),
            Mode::Plain => Box::new(plain::Plain),
            Mode::Json => Box::new(json::Json),
            Mode::Quiet => Box::new(quiet::Quiet),
        };
        let shared = Arc::new(Shared::new(view));
        let renderer = shared.view.redraws().then(|| {
            let shared = shared.clone();
            std::thread::spawn(move || tty::redraw_loop(&shared))
        });
        Progress {
            shared,
            renderer: Mutex::new(renderer),
        }
    }

    /// Reserves `count` step numbers for the plan's steps, of which `plan_steps` are build
    /// steps (counted in the summary); returns the first number.
    pub fn reserve(&self, count: usize, plan_steps: usize) -> usize {
        let mut st = self.shared.lock();
        let first = st.next;
        st.next += count;
        st.total += count;
        st.plan_steps += plan_steps;
        first
    }

    /// A build step (RUN, COPY, ADD, WORKDIR) starts, or is looked up in the cache.
    pub fn start(&self, step: usize, label: &str, description: &str) {
        self.shared.begin(step, label, description, false);
    }

    /// A source (FROM, loading the context, a download) is made ready.
    pub fn start_source(&self, step: usize, label: &str, description: &str) {
        self.shared.begin(step, label, description, true);
    }

    /// A line of a step's output (without its newline).
    pub fn line(&self, step: usize, text: &[u8]) {
        self.shared.line(step, text);
    }

    /// A step was found in the cache.
    pub fn cached(&self, step: usize) {
        self.shared.cached(step);
    }

    /// Why a step missed the cache.
    pub fn miss(&self, step: usize, reason: &str) {
        self.shared.miss(step, reason);
    }

    /// A step that ran wrote a new layer of `size` bytes.
    pub fn layer(&self, step: usize, size: u64) {
        self.shared.layer(step, size);
    }

    /// A step (or source) finished.
    pub fn done(&self, step: usize, took: Duration) {
        self.shared.done(step, took);
    }

    /// A step failed with `message` (its first line is shown on the step; the whole error,
    /// with the step's last output lines, is the command's error at the end).
    pub fn failed(&self, step: usize, message: &str, location: Option<Location<'_>>) {
        self.shared.failed(step, message, location);
    }

    /// A warning, listed in the summary (`json`: also an event when found).
    pub fn warn(&self, code: &str, message: &str) {
        self.shared.warn(Warning {
            code: code.to_string(),
            message: message.to_string(),
            check: None,
        });
    }

    /// A finding of the Dockerfile's build checks, as a warning with code `check`.
    pub fn warn_check(&self, message: &str, check: CheckWarning) {
        self.shared.warn(Warning {
            code: "check".to_string(),
            message: message.to_string(),
            check: Some(check),
        });
    }

    /// A transfer (pulling a base image, pushing the result) shown as a step of its own:
    /// `#N [internal] ACTION SUBJECT`, e.g. `pull docker.io/library/alpine:3`. Hand
    /// [`Transfer::reporter`] to the registry client; finish with [`Transfer::done`] or
    /// [`Transfer::failed`] (dropping it counts as done).
    pub fn transfer(&self, action: &str, subject: &str) -> Transfer {
        let step = self.shared.next_step();
        self.start_source(step, "internal", &format!("{action} {subject}"));
        Transfer {
            shared: self.shared.clone(),
            step,
            ended: false,
        }
    }

    /// Another process takes the terminal (the shell of `--on-error=shell`): the tty view
    /// draws its frame once more and leaves it on the screen, `notice` is shown, and nothing
    /// is drawn or written until [`Progress::resume`] (what comes meanwhile is held back).
    pub fn suspend(&self, notice: &str) {
        let sh = &self.shared;
        let mut st = sh.lock();
        if st.finished {
            return;
        }
        if sh.view.redraws() {
            sh.view.redraw(sh, &mut st);
            st.drawn = 0;
        }
        sh.view.notice(sh, notice);
        sh.suspended.store(true, Ordering::SeqCst);
    }

    /// The process of [`Progress::suspend`] ended: what was held back is written and the
    /// view goes on (the tty view below the frame it left).
    pub fn resume(&self) {
        let _st = self.shared.lock();
        self.shared.release();
    }

    /// Ends the build's progress: the tty view collapses into the final list (a failed step
    /// marked `ERROR`), then the summary is printed (not in quiet mode). A build that
    /// succeeded passes `Ok((names, digest))` (no digest when its outputs hold no image), a
    /// failed one `Err(error)`.
    pub fn finish(&self, outcome: Result<(&[String], Option<&str>), &anyhow::Error>) -> Summary {
        let (ok, images, digest, error) = match outcome {
            Ok((images, digest)) => (true, images.to_vec(), digest.map(str::to_string), None),
            Err(e) => {
                let text = format!("{e:#}");
                let first = text.lines().next().unwrap_or_default().to_string();
                (false, Vec::new(), None, Some(first))
            }
        };
        self.stop_renderer();
        let sh = &self.shared;
        let mut st = sh.lock();
        let (mut run, mut cached) = (0, 0);
        for s in st.steps.values().filter(|s| !s.source) {
            match s.status {
                Status::Cached => cached += 1,
                Status::Done | Status::Error => run += 1,
                Status::Running => {}
            }
        }
        let summary = Summary {
            ok,
            images,
            digest,
            duration: sh.started.elapsed(),
            steps: st.plan_steps,
            run,
            cached,
            layers_written: st.layers,
            bytes_written: st.bytes,
            warnings: st.warnings.clone(),
            error,
        };
        if st.finished {
            return summary;
        }
        st.finished = true;
        sh.view.finish(sh, &mut st, &summary);
        summary
    }

    fn stop_renderer(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let handle = self
            .renderer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_renderer();
    }
}

/// A pull or push shown as a step; see [`Progress::transfer`].
#[derive(Debug)]
pub struct Transfer {
    shared: Arc<Shared>,
    step: usize,
    ended: bool,
}

impl Transfer {
    /// The callback for the registry client (`PullOptions`/`ClientOptions::progress`): blob
    /// starts, bytes, completions, mounts and retries become progress of this step.
    pub fn reporter(&self) -> ProgressFn {
        let shared = self.shared.clone();
        let step = self.step;
        Arc::new(move |event: &ProgressEvent| shared.transfer_event(step, event))
    }

    fn end(&mut self, status: Status, message: Option<&str>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let sh = &self.shared;
        match (status, message) {
            (Status::Error, Some(m)) => sh.failed(self.step, m, None),
            _ => {
                let took = sh.running_for(self.step);
                sh.done(self.step, took);
            }
        }
    }

    /// The transfer finished.
    pub fn done(mut self) {
        self.end(Status::Done, None);
    }

    /// The transfer failed with `message`.
    pub fn failed(mut self, message: &str) {
        self.end(Status::Error, Some(message));
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.end(Status::Done, None);
    }
}

/// The engine reports to the views through the same calls.
impl Events for Progress {
    fn reserve(&self, count: usize, plan_steps: usize) -> usize {
        Progress::reserve(self, count, plan_steps)
    }
    fn start(&self, step: usize, label: &str, description: &str) {
        Progress::start(self, step, label, description);
    }
    fn start_source(&self, step: usize, label: &str, description: &str) {
        Progress::start_source(self, step, label, description);
    }
    fn line(&self, step: usize, text: &[u8]) {
        Progress::line(self, step, text);
    }
    fn cached(&self, step: usize) {
        Progress::cached(self, step);
    }
    fn miss(&self, step: usize, reason: &str) {
        Progress::miss(self, step, reason);
    }
    fn layer(&self, step: usize, size: u64) {
        Progress::layer(self, step, size);
    }
    fn done(&self, step: usize, took: Duration) {
        Progress::done(self, step, took);
    }
    fn failed(&self, step: usize, message: &str, location: Option<Location<'_>>) {
        Progress::failed(self, step, message, location);
    }
    fn warn(&self, code: &str, message: &str) {
        Progress::warn(self, code, message);
    }
    fn transfer(&self, action: &str, subject: &str) -> Box<dyn TransferEvents> {
        Box::new(Progress::transfer(self, action, subject))
    }
    fn suspend(&self, notice: &str) {
        Progress::suspend(self, notice);
    }
    fn resume(&self) {
        Progress::resume(self);
    }
}

impl TransferEvents for Transfer {
    fn reporter(&self) -> Option<ProgressFn> {
        Some(Transfer::reporter(self))
    }
    fn done(self: Box<Self>) {
        Transfer::done(*self);
    }
    fn failed(self: Box<Self>, message: &str) {
        Transfer::failed(*self, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_text() {
        let s = Summary {
            ok: true,
            images: vec!["docker.io/library/app:1".into()],
            digest: Some("sha256:00".into()),
            duration: Duration::from_millis(1234),
            steps: 3,
            run: 1,
            cached: 2,
            layers_written: 1,
            bytes_written: 2048,
            warnings: vec![
                Warning {
                    code: "unused-build-arg".into(),
                    message: "one or more build args [X] were not consumed".into(),
                    check: None,
                },
                Warning {
                    code: "check".into(),
                    message: "JSON arguments recommended for CMD".into(),
                    check: Some(CheckWarning {
                        rule: "JSONArgsRecommended".into(),
                        severity: "warning".into(),
                        file: "Dockerfile".into(),
                        line: 3,
                        column: 1,
                        end_line: 3,
                        end_column: 9,
                        fix: "write CMD [\"app\"]".into(),
                        url: "docs/checks/JSONArgsRecommended.md".into(),
                    }),
                },
            ],
            error: None,
        };
        assert_eq!(
            s.render(),
            "built app:1 in 1.2s\n  image id  sha256:00\n  steps     1 run, 2 cached, 3 in all\n  written   1 new layer, 2.00 KiB\n  warnings  2\n    - unused-build-arg: one or more build args [X] were not consumed\n    - JSONArgsRecommended (Dockerfile:3): JSON arguments recommended for CMD\n"
        );
        let json = s.to_json();
        assert_eq!(json["warnings"][0].get("check"), None);
        assert_eq!(json["warnings"][1]["check"]["rule"], "JSONArgsRecommended");
        assert_eq!(json["warnings"][1]["check"]["line"], 3);
    }
}
