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
//! warning       "code":NAME, "message":TEXT
//! summary       "ok":BOOL, "images":[NAMES], "digest":DIGEST|null, "seconds":F,
//!               "steps":{"total","run","cached"}, "written":{"layers","bytes"}, "warnings":[...],
//!               "error":TEXT|null
//! ```
//!
//! `docs/progress-json.md` describes it in full. `quiet` shows nothing.
//!
//! Every mode but `quiet` ends with a [`Summary`] (in `json`, the `summary` event); the
//! caller gets the same [`Summary`] back from [`Progress::finish`].

use rbuild_engine::{Events, Location, TransferEvents};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use rbuild_compiler::text::{escape_controls, push_escaped};
use rbuild_registry::{ProgressEvent, ProgressFn};
use unicode_width::UnicodeWidthChar as _;

use crate::commands::build::ProgressArg;

/// The version of the `json` event schema (the `"v"` field of every event).
pub const JSON_VERSION: u32 = 1;

/// Output lines kept per step: shown under a running step in the tty view, and in the `json`
/// error event of a failed step.
const TAIL: usize = 10;
/// Output lines of a running step the tty view shows.
const TTY_TAIL: usize = 6;
/// How often the tty view is redrawn.
const TICK: Duration = Duration::from_millis(100);
/// How often a `json` transfer reports bytes of one blob.
const BYTES_EVERY: Duration = Duration::from_millis(250);

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
            if self.digest.is_none() {
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
                let _ = writeln!(
                    out,
                    "    - {}: {}",
                    escape_controls(&w.code),
                    escape_controls(&w.message)
                );
            }
        }
        out
    }
}

/// How a step ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Cached,
    Done,
    Error,
}

/// One blob of a transfer.
#[derive(Debug)]
struct Blob {
    done: u64,
    total: u64,
    finished: bool,
    reported: Option<Instant>,
}

#[derive(Debug)]
struct StepState {
    label: String,
    description: String,
    /// FROM, context loads, downloads, transfers: not counted as steps run or cached.
    source: bool,
    started: Instant,
    took: Option<Duration>,
    status: Status,
    miss: Option<String>,
    /// The last output lines, with the seconds since the step started.
    tail: VecDeque<(f64, String)>,
    blobs: BTreeMap<String, Blob>,
}

#[derive(Debug, Default)]
struct State {
    steps: BTreeMap<usize, StepState>,
    /// Steps shown (plan steps and transfers), for the header's N/M.
    total: usize,
    /// The next free step number.
    next: usize,
    plan_steps: usize,
    layers: usize,
    bytes: u64,
    warnings: Vec<Warning>,
    /// Lines of the tty view on screen (to move back over them).
    drawn: usize,
    finished: bool,
}

#[derive(Debug)]
struct Shared {
    mode: Mode,
    explain: bool,
    color: bool,
    started: Instant,
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Writes lines to stderr (errors writing progress are not build errors). Plain lines
    /// have their control characters shown as escapes here, whatever they quote; the tty view
    /// escapes each piece before adding its own cursor and colour sequences.
    fn emit(&self, text: &str) {
        let text = match self.mode {
            Mode::Plain => escape_controls(text),
            _ => text.into(),
        };
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    fn json(&self, event: &str, fields: serde_json::Value) {
        let mut v = serde_json::json!({
            "v": JSON_VERSION,
            "time": self.elapsed(),
            "event": event,
        });
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), fields) {
            o.extend(e);
        }
        self.emit(&format!("{v}\n"));
    }

    fn done(&self, step: usize, took: Duration) {
        let sh = self;
        let mut st = sh.lock();
        if let Some(s) = st.steps.get_mut(&step) {
            s.status = Status::Done;
            s.took = Some(took);
        }
        match sh.mode {
            Mode::Plain => sh.emit(&format!("#{step} DONE {:.1}s\n", took.as_secs_f64())),
            Mode::Json => sh.step_event(
                step,
                "done",
                serde_json::json!({"seconds": took.as_secs_f64()}),
            ),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    fn failed(&self, step: usize, message: &str, location: Option<Location<'_>>) {
        let sh = self;
        let mut st = sh.lock();
        let Some(s) = st.steps.get_mut(&step) else {
            return;
        };
        s.status = Status::Error;
        s.took = Some(s.started.elapsed());
        let first = message.lines().next().unwrap_or_default();
        match sh.mode {
            Mode::Plain => sh.emit(&format!("#{step} ERROR: {first}\n")),
            Mode::Json => sh.step_event(
                step,
                "error",
                serde_json::json!({
                    "message": message,
                    "output": s.tail.iter().map(|(_, t)| t).collect::<Vec<_>>(),
                    "file": location.as_ref().map(|l| l.file),
                    "lines": location.as_ref().map(|l| [l.lines.0, l.lines.1]),
                }),
            ),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    fn step_event(&self, step: usize, event: &str, fields: serde_json::Value) {
        let mut f = serde_json::json!({"step": step});
        if let (Some(o), serde_json::Value::Object(e)) = (f.as_object_mut(), fields) {
            o.extend(e);
        }
        self.json(event, f);
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
        let color = mode == Mode::Tty && std::env::var_os(crate::env::NO_COLOR).is_none();
        let shared = Arc::new(Shared {
            mode,
            explain,
            color,
            started: Instant::now(),
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            stop: AtomicBool::new(false),
        });
        let renderer = (mode == Mode::Tty).then(|| {
            let shared = shared.clone();
            std::thread::spawn(move || tty_loop(&shared))
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

    fn begin(&self, step: usize, label: &str, description: &str, source: bool) {
        let sh = &self.shared;
        let mut st = sh.lock();
        st.steps.insert(
            step,
            StepState {
                label: label.to_string(),
                description: description.to_string(),
                source,
                started: Instant::now(),
                took: None,
                status: Status::Running,
                miss: None,
                tail: VecDeque::new(),
                blobs: BTreeMap::new(),
            },
        );
        match sh.mode {
            Mode::Plain => sh.emit(&format!("#{step} [{label}] {}\n", one_line(description))),
            Mode::Json => sh.step_event(
                step,
                "start",
                serde_json::json!({
                    "label": label,
                    "description": description,
                    "kind": if source { "source" } else { "step" },
                }),
            ),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    /// A build step (RUN, COPY, ADD, WORKDIR) starts, or is looked up in the cache.
    pub fn start(&self, step: usize, label: &str, description: &str) {
        self.begin(step, label, description, false);
    }

    /// A source (FROM, loading the context, a download) is made ready.
    pub fn start_source(&self, step: usize, label: &str, description: &str) {
        self.begin(step, label, description, true);
    }

    /// A line of a step's output (without its newline).
    pub fn line(&self, step: usize, text: &[u8]) {
        let sh = &self.shared;
        let text = String::from_utf8_lossy(text);
        let mut st = sh.lock();
        let Some(s) = st.steps.get_mut(&step) else {
            return;
        };
        let since = s.started.elapsed().as_secs_f64();
        if s.tail.len() == TAIL {
            s.tail.pop_front();
        }
        s.tail.push_back((since, text.to_string()));
        match sh.mode {
            Mode::Plain => sh.emit(&format!("#{step} {since:.3} {}\n", shown(&text))),
            // The one event a chatty step sends thousands of times: written directly rather
            // than through a `serde_json::Value` map.
            Mode::Json => sh.emit(&format!(
                "{{\"v\":{JSON_VERSION},\"time\":{},\"event\":\"output\",\"step\":{step},\"text\":{}}}\n",
                sh.elapsed(),
                serde_json::Value::from(text.as_ref())
            )),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    /// A step was found in the cache.
    pub fn cached(&self, step: usize) {
        let sh = &self.shared;
        let mut st = sh.lock();
        if let Some(s) = st.steps.get_mut(&step) {
            s.status = Status::Cached;
            s.took = Some(Duration::ZERO);
        }
        match sh.mode {
            Mode::Plain => sh.emit(&format!("#{step} CACHED\n")),
            Mode::Json => sh.step_event(step, "cached", serde_json::json!({})),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    /// Why a step missed the cache.
    pub fn miss(&self, step: usize, reason: &str) {
        let sh = &self.shared;
        let mut st = sh.lock();
        if let Some(s) = st.steps.get_mut(&step) {
            s.miss = Some(reason.to_string());
        }
        match sh.mode {
            Mode::Plain => sh.emit(&format!("#{step} cache miss: {reason}\n")),
            Mode::Json => sh.step_event(step, "miss", serde_json::json!({"reason": reason})),
            Mode::Tty | Mode::Quiet => {}
        }
    }

    /// A step that ran wrote a new layer of `size` bytes.
    pub fn layer(&self, step: usize, size: u64) {
        let sh = &self.shared;
        let mut st = sh.lock();
        st.layers += 1;
        st.bytes += size;
        if sh.mode == Mode::Json {
            sh.step_event(step, "layer", serde_json::json!({"size": size}));
        }
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
        let sh = &self.shared;
        let mut st = sh.lock();
        let w = Warning {
            code: code.to_string(),
            message: message.to_string(),
        };
        if st.warnings.contains(&w) {
            return;
        }
        if sh.mode == Mode::Json {
            sh.json(
                "warning",
                serde_json::json!({"code": code, "message": message}),
            );
        }
        st.warnings.push(w);
    }

    /// A transfer (pulling a base image, pushing the result) shown as a step of its own:
    /// `#N [internal] ACTION SUBJECT`, e.g. `pull docker.io/library/alpine:3`. Hand
    /// [`Transfer::reporter`] to the registry client; finish with [`Transfer::done`] or
    /// [`Transfer::failed`] (dropping it counts as done).
    pub fn transfer(&self, action: &str, subject: &str) -> Transfer {
        let step = {
            let mut st = self.shared.lock();
            let n = st.next;
            st.next += 1;
            st.total += 1;
            n
        };
        self.start_source(step, "internal", &format!("{action} {subject}"));
        Transfer {
            shared: self.shared.clone(),
            step,
            ended: false,
        }
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
        match sh.mode {
            Mode::Tty => {
                let mut frame = redraw_prefix(st.drawn);
                let width = terminal_size().0;
                for line in view(sh, &st, width, None) {
                    frame.push_str(&line);
                    frame.push('\n');
                }
                st.drawn = 0;
                frame.push_str(&summary.render());
                sh.emit(&frame);
            }
            Mode::Plain => sh.emit(&summary.render()),
            Mode::Json => sh.json("summary", summary.to_json()),
            Mode::Quiet => {}
        }
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
        Arc::new(move |event: &ProgressEvent| transfer_event(&shared, step, event))
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
                let took = sh
                    .lock()
                    .steps
                    .get(&self.step)
                    .map(|s| s.started.elapsed())
                    .unwrap_or_default();
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

/// `sha256:` and 12 hex digits.
fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

fn transfer_event(sh: &Shared, step: usize, event: &ProgressEvent) {
    let mut st = sh.lock();
    let Some(s) = st.steps.get_mut(&step) else {
        return;
    };
    let since = s.started.elapsed().as_secs_f64();
    let mut plain = None;
    let mut json = None;
    match event {
        ProgressEvent::BlobStart { digest, size } => {
            s.blobs.insert(
                digest.to_string(),
                Blob {
                    done: 0,
                    total: *size,
                    finished: false,
                    reported: None,
                },
            );
            plain = Some(format!(
                "{} {} started",
                short_digest(digest.as_ref()),
                HumanBytes(*size)
            ));
            json = Some(
                serde_json::json!({"action": "start", "blob": digest.to_string(), "size": size}),
            );
        }
        ProgressEvent::BlobBytes {
            digest,
            done,
            total,
        } => {
            let b = s.blobs.entry(digest.to_string()).or_insert(Blob {
                done: 0,
                total: *total,
                finished: false,
                reported: None,
            });
            b.done = *done;
            b.total = *total;
            if b.reported.is_none_or(|t| t.elapsed() >= BYTES_EVERY) {
                b.reported = Some(Instant::now());
                json = Some(serde_json::json!({
                    "action": "bytes", "blob": digest.to_string(), "done": done, "total": total,
                }));
            }
        }
        ProgressEvent::BlobDone { digest } => {
            let (done, total) = match s.blobs.get_mut(digest.as_ref()) {
                Some(b) => {
                    b.finished = true;
                    b.done = b.total;
                    (b.done, b.total)
                }
                None => (0, 0),
            };
            plain = Some(format!(
                "{} {} / {} {since:.1}s done",
                short_digest(digest.as_ref()),
                HumanBytes(done),
                HumanBytes(total)
            ));
            json = Some(serde_json::json!({"action": "done", "blob": digest.to_string()}));
        }
        ProgressEvent::BlobExists { digest } => {
            plain = Some(format!("{} exists", short_digest(digest.as_ref())));
            json = Some(serde_json::json!({"action": "exists", "blob": digest.to_string()}));
        }
        ProgressEvent::BlobMounted { digest, from } => {
            plain = Some(format!(
                "{} mounted from {from}",
                short_digest(digest.as_ref())
            ));
            json = Some(
                serde_json::json!({"action": "mounted", "blob": digest.to_string(), "from": from}),
            );
        }
        ProgressEvent::Retry {
            what,
            attempt,
            delay,
        } => {
            let text = format!("retrying {what} (attempt {attempt} failed) in {delay:.1?}");
            if s.tail.len() == TAIL {
                s.tail.pop_front();
            }
            s.tail.push_back((since, text.clone()));
            match sh.mode {
                Mode::Plain => sh.emit(&format!("#{step} {text}\n")),
                Mode::Json => sh.step_event(
                    step,
                    "retry",
                    serde_json::json!({"what": what, "attempt": attempt, "delay": delay.as_secs_f64()}),
                ),
                Mode::Tty | Mode::Quiet => {}
            }
            return;
        }
    }
    match sh.mode {
        Mode::Plain => {
            if let Some(p) = plain {
                sh.emit(&format!("#{step} {p}\n"));
            }
        }
        Mode::Json => {
            if let Some(j) = json {
                sh.step_event(step, "transfer", j);
            }
        }
        Mode::Tty | Mode::Quiet => {}
    }
}

fn format_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A line of untrusted text (step output, a Dockerfile line, a file name in a miss reason)
/// as the human views show it: a final carriage return dropped, tabs expanded to the next
/// multiple of eight columns (so widths are right), and every other control character shown
/// as a visible escape (`\x1b[2J`), through the one rule of [`rbuild_compiler::text`].
fn shown(text: &str) -> String {
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut col = 0usize;
    for c in text.chars() {
        if c == '\t' {
            let n = 8 - col % 8;
            out.extend(std::iter::repeat_n(' ', n));
            col += n;
        } else {
            let before = out.len();
            push_escaped(&mut out, c);
            col += out[before..]
                .chars()
                .map(|c| c.width().unwrap_or(0))
                .sum::<usize>();
        }
    }
    out
}

/// A running step's last output line in the tty view: what a terminal would show of a line
/// redrawn with carriage returns (`10%\r50%\r100%` is `100%`), as [`shown`].
fn live_line(text: &str) -> String {
    let text = text.strip_suffix('\r').unwrap_or(text);
    shown(text.rsplit('\r').next().unwrap_or(text))
}

/// A step's description on one line: the line breaks of a heredoc shown as `\n`, control
/// characters as escapes.
fn one_line(description: &str) -> String {
    let d = description.trim_end_matches('\n');
    shown(&d.replace('\r', "\\r").replace('\n', "\\n"))
}

/// Cuts plain text (no escape sequences) to at most `width` columns.
fn truncate(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out
}

fn text_width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// The terminal's (columns, rows), measured on stderr now; 80x24 when unknown.
fn terminal_size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(ws) if ws.ws_col > 0 => (
            usize::from(ws.ws_col),
            if ws.ws_row > 0 {
                usize::from(ws.ws_row)
            } else {
                24
            },
        ),
        _ => (80, 24),
    }
}

const BLUE: &str = "\x1b[34m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn paint(sh: &Shared, color: &str, text: String) -> String {
    if sh.color && !color.is_empty() {
        format!("{color}{text}{RESET}")
    } else {
        text
    }
}

/// `left` and `right` on one line of `width` columns: `left` cut to fit, `right` aligned to
/// the right edge.
fn two_sided(left: &str, right: &str, width: usize) -> String {
    let rw = text_width(right);
    if rw + 1 >= width {
        return truncate(left, width);
    }
    let left = truncate(left, width - rw - 1);
    let pad = width - rw - text_width(&left);
    format!("{left}{}{right}", " ".repeat(pad))
}

/// The lines of the tty view, each at most `width` columns (before colouring). `live` is the
/// screen height while the build runs (the view keeps to it); `None` draws the final list.
fn view(sh: &Shared, st: &State, width: usize, live: Option<usize>) -> Vec<String> {
    let finished = st
        .steps
        .values()
        .filter(|s| s.status != Status::Running)
        .count();
    let mut header = format!(
        "[+] Building {:.1}s ({finished}/{})",
        sh.elapsed(),
        st.total.max(st.steps.len())
    );
    if live.is_none() {
        header.push_str(" FINISHED");
    }
    let mut lines = vec![truncate(&header, width)];
    for s in st.steps.values() {
        let took = s.took.unwrap_or_else(|| s.started.elapsed());
        let prefix = match s.status {
            Status::Cached => "=> CACHED ",
            Status::Error => "=> ERROR ",
            // Still running when the build ended: another step failed.
            Status::Running if live.is_none() => "=> CANCELED ",
            Status::Running | Status::Done => "=> ",
        };
        let left = format!(
            "{prefix}[{}] {}",
            escape_controls(&s.label),
            one_line(&s.description)
        );
        let line = two_sided(&left, &format_secs(took), width);
        let color = match s.status {
            Status::Running => BLUE,
            Status::Error => RED,
            Status::Cached | Status::Done => "",
        };
        lines.push(paint(sh, color, line));
        if sh.explain
            && let Some(reason) = &s.miss
        {
            let l = truncate(&format!("=> => cache miss: {}", shown(reason)), width);
            lines.push(paint(sh, DIM, l));
        }
        if live.is_some() && s.status == Status::Running {
            for (digest, b) in s.blobs.iter().filter(|(_, b)| !b.finished) {
                let l = format!(
                    "=> => {} {} / {}",
                    short_digest(digest),
                    HumanBytes(b.done),
                    HumanBytes(b.total)
                );
                lines.push(truncate(&l, width));
            }
            let skip = s.tail.len().saturating_sub(TTY_TAIL);
            for (_, t) in s.tail.iter().skip(skip) {
                let l = truncate(&format!("=> => # {}", live_line(t)), width);
                lines.push(paint(sh, DIM, l));
            }
        }
    }
    if let Some(height) = live {
        // Keep the header and the newest lines within the screen (one row spare for the
        // cursor).
        let room = height.saturating_sub(1).max(2);
        if lines.len() > room {
            let cut = lines.len() - (room - 1);
            lines.drain(1..cut);
        }
    }
    lines
}

/// Moves the cursor back to the first line of a view of `drawn` lines and clears from there.
fn redraw_prefix(drawn: usize) -> String {
    let mut s = String::new();
    if drawn > 0 {
        let _ = write!(s, "\x1b[{drawn}A");
    }
    s.push_str("\r\x1b[J");
    s
}

fn tty_loop(sh: &Shared) {
    // A resize redraws at once; every redraw measures the terminal anyway.
    let resized = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGWINCH, resized.clone());
    let mut last = Instant::now();
    while !sh.stop.load(Ordering::SeqCst) {
        if resized.swap(false, Ordering::SeqCst) || last.elapsed() >= TICK {
            last = Instant::now();
            let mut st = sh.lock();
            if st.finished {
                break;
            }
            let (width, height) = terminal_size();
            let lines = view(sh, &st, width, Some(height));
            let mut frame = redraw_prefix(st.drawn);
            for l in &lines {
                frame.push_str(l);
                frame.push('\n');
            }
            st.drawn = lines.len();
            sh.emit(&frame);
        }
        std::thread::sleep(Duration::from_millis(20));
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
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(shown("a\x1b[31mred\x1b[0m b"), "a\\x1b[31mred\\x1b[0m b");
        assert_eq!(shown("x\x1b[2J\0y"), "x\\x1b[2J\\x00y");
        assert_eq!(shown("10%\r50%\r100%"), "10%\\x0d50%\\x0d100%");
        assert_eq!(live_line("10%\r50%\r100%"), "100%");
        assert_eq!(shown("line\r"), "line");
        assert_eq!(shown("a\tb"), "a       b");
        assert_eq!(shown("\x1b\tb"), "\\x1b    b");
        assert_eq!(shown("é\u{9b}x"), "é\\u{9b}x");
        assert_eq!(one_line("RUN a\nb\n"), "RUN a\\nb");
        assert_eq!(one_line("RUN \x1b[2J"), "RUN \\x1b[2J");
    }

    #[test]
    fn lines_fit_the_width() {
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("日本語", 5), "日本");
        let l = two_sided("=> [stage-0 2/3] RUN a long command", "1.2s", 20);
        assert_eq!(l, "=> [stage-0 2/3 1.2s");
        assert_eq!(text_width(&l), 20);
        assert_eq!(two_sided("ab", "1.2s", 10), "ab    1.2s");
        assert_eq!(two_sided("abcdef", "1.2s", 4), "abcd");
    }

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
            warnings: vec![Warning {
                code: "unused-build-arg".into(),
                message: "one or more build args [X] were not consumed".into(),
            }],
            error: None,
        };
        assert_eq!(
            s.render(),
            "built app:1 in 1.2s\n  image id  sha256:00\n  steps     1 run, 2 cached, 3 in all\n  written   1 new layer, 2.00 KiB\n  warnings  1\n    - unused-build-arg: one or more build args [X] were not consumed\n"
        );
    }
}
