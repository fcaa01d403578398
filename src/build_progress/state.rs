//! The step-state bookkeeping every view shares: what each step is doing, its last output
//! lines, its blobs in transfer, the counts the summary reports. Each event updates the
//! state under its lock and is handed, still under it, to the mode's [`View`], so output
//! lines never interleave.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rbuild_engine::Location;
use rbuild_registry::ProgressEvent;

use super::Warning;
use super::view::{TransferNote, View};

/// The output lines a step keeps (for the error report and the tty view).
const TAIL: usize = 10;
/// How often a transfer reports bytes of one blob.
const BYTES_EVERY: Duration = Duration::from_millis(250);

/// How a step ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Running,
    Cached,
    Done,
    Error,
}

/// One blob of a transfer.
#[derive(Debug)]
pub(super) struct Blob {
    pub(super) done: u64,
    pub(super) total: u64,
    pub(super) finished: bool,
    reported: Option<Instant>,
}

impl Blob {
    fn new(total: u64) -> Blob {
        Blob {
            done: 0,
            total,
            finished: false,
            reported: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct StepState {
    pub(super) label: String,
    pub(super) description: String,
    /// FROM, context loads, downloads, transfers: not counted as steps run or cached.
    pub(super) source: bool,
    pub(super) started: Instant,
    pub(super) took: Option<Duration>,
    pub(super) status: Status,
    pub(super) miss: Option<String>,
    /// The last output lines, with the seconds since the step started.
    pub(super) tail: VecDeque<(f64, String)>,
    pub(super) blobs: BTreeMap<String, Blob>,
}

impl StepState {
    fn push_tail(&mut self, since: f64, text: String) {
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back((since, text));
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) steps: BTreeMap<usize, StepState>,
    /// Steps shown (plan steps and transfers), for the header's N/M.
    pub(super) total: usize,
    /// The next free step number.
    pub(super) next: usize,
    pub(super) plan_steps: usize,
    pub(super) layers: usize,
    pub(super) bytes: u64,
    pub(super) warnings: Vec<Warning>,
    /// Lines of the tty view on screen (to move back over them).
    pub(super) drawn: usize,
    pub(super) finished: bool,
}

/// The state and the view, shared by the build's threads (and the tty view's redraws).
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) view: Box<dyn View>,
    pub(super) started: Instant,
    pub(super) state: Mutex<State>,
    pub(super) stop: AtomicBool,
    /// Another process has the terminal ([`super::Progress::suspend`]): what the view writes
    /// is held back in `held` until it is given back.
    pub(super) suspended: AtomicBool,
    held: Mutex<Vec<u8>>,
}

impl Shared {
    pub(super) fn new(view: Box<dyn View>) -> Shared {
        Shared {
            view,
            started: Instant::now(),
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            stop: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Writes text to stderr as it is (errors writing progress are not build errors); while
    /// suspended, keeps it for [`Shared::release`].
    pub(super) fn emit(&self, text: &str) {
        if self.suspended.load(Ordering::SeqCst) {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.extend_from_slice(text.as_bytes());
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// Ends a suspension: writes what was held back.
    pub(super) fn release(&self) {
        self.suspended.store(false, Ordering::SeqCst);
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()));
        if !held.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&held);
            let _ = err.flush();
        }
    }

    pub(super) fn begin(&self, step: usize, label: &str, description: &str, source: bool) {
        let mut st = self.lock();
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
        self.view.start(self, step, label, description, source);
    }

    pub(super) fn line(&self, step: usize, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let mut st = self.lock();
        let Some(s) = st.steps.get_mut(&step) else {
            return;
        };
        let since = s.started.elapsed().as_secs_f64();
        s.push_tail(since, text.to_string());
        self.view.line(self, step, since, &text);
    }

    pub(super) fn cached(&self, step: usize) {
        let mut st = self.lock();
        if let Some(s) = st.steps.get_mut(&step) {
            s.status = Status::Cached;
            s.took = Some(Duration::ZERO);
        }
        self.view.cached(self, step);
    }

    pub(super) fn miss(&self, step: usize, reason: &str) {
        let mut st = self.lock();
        if let Some(s) = st.steps.get_mut(&step) {
            s.miss = Some(reason.to_string());
        }
        self.view.miss(self, step, reason);
    }

    pub(super) fn layer(&self, step: usize, size: u64) {
        let mut st = self.lock();
        st.layers += 1;
        st.bytes += size;
        self.view.layer(self, step, size);
    }

    pub(super) fn done(&self, step: usize, took: Duration) {
        let mut st = self.lock();
        if let Some(s) = st.steps.get_mut(&step) {
            s.status = Status::Done;
            s.took = Some(took);
        }
        self.view.done(self, step, took);
    }

    pub(super) fn failed(&self, step: usize, message: &str, location: Option<Location<'_>>) {
        let mut st = self.lock();
        let Some(s) = st.steps.get_mut(&step) else {
            return;
        };
        s.status = Status::Error;
        s.took = Some(s.started.elapsed());
        self.view.failed(self, step, message, &s.tail, location);
    }

    pub(super) fn warn(&self, w: Warning) {
        let mut st = self.lock();
        if st.warnings.contains(&w) {
            return;
        }
        self.view.warning(self, &w);
        st.warnings.push(w);
    }

    /// Reserves the next step number for a transfer.
    pub(super) fn next_step(&self) -> usize {
        let mut st = self.lock();
        let n = st.next;
        st.next += 1;
        st.total += 1;
        n
    }

    /// How long `step` has been running (zero when it is unknown).
    pub(super) fn running_for(&self, step: usize) -> Duration {
        self.lock()
            .steps
            .get(&step)
            .map(|s| s.started.elapsed())
            .unwrap_or_default()
    }

    /// A registry client's event for the transfer shown as `step`.
    pub(super) fn transfer_event(&self, step: usize, event: &ProgressEvent) {
        let mut st = self.lock();
        let Some(s) = st.steps.get_mut(&step) else {
            return;
        };
        let since = s.started.elapsed().as_secs_f64();
        let note = match event {
            ProgressEvent::BlobStart { digest, size } => {
                s.blobs.insert(digest.to_string(), Blob::new(*size));
                TransferNote::Start {
                    digest: digest.as_ref(),
                    size: *size,
                }
            }
            ProgressEvent::BlobBytes {
                digest,
                done,
                total,
            } => {
                let b = s
                    .blobs
                    .entry(digest.to_string())
                    .or_insert(Blob::new(*total));
                b.done = *done;
                b.total = *total;
                if b.reported.is_some_and(|t| t.elapsed() < BYTES_EVERY) {
                    return;
                }
                b.reported = Some(Instant::now());
                TransferNote::Bytes {
                    digest: digest.as_ref(),
                    done: *done,
                    total: *total,
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
                TransferNote::Done {
                    digest: digest.as_ref(),
                    done,
                    total,
                    since,
                }
            }
            ProgressEvent::BlobExists { digest } => TransferNote::Exists {
                digest: digest.as_ref(),
            },
            ProgressEvent::BlobMounted { digest, from } => TransferNote::Mounted {
                digest: digest.as_ref(),
                from,
            },
            ProgressEvent::Retry {
                what,
                attempt,
                delay,
            } => {
                let text = format!("retrying {what} (attempt {attempt} failed) in {delay:.1?}");
                s.push_tail(since, text.clone());
                TransferNote::Retry {
                    text,
                    what,
                    attempt: *attempt,
                    delay: *delay,
                }
            }
        };
        self.view.transfer(self, step, &note);
    }
}
