//! What a progress mode shows of each event: the [`View`] trait its renderer implements.

use std::collections::VecDeque;
use std::time::Duration;

use rbuild_engine::Location;

use super::state::{Shared, State};
use super::{Summary, Warning};

/// An event of a transfer (a pull or push shown as a step), after the shared bookkeeping.
#[derive(Debug)]
pub(super) enum TransferNote<'a> {
    /// A blob starts.
    Start { digest: &'a str, size: u64 },
    /// Bytes of a blob (at most every quarter second per blob).
    Bytes {
        digest: &'a str,
        done: u64,
        total: u64,
    },
    /// A blob is complete, `since` seconds after the step started.
    Done {
        digest: &'a str,
        done: u64,
        total: u64,
        since: f64,
    },
    /// The blob was there already.
    Exists { digest: &'a str },
    /// The blob was mounted from another repository.
    Mounted { digest: &'a str, from: &'a str },
    /// A request is tried again (`text` is what the step's output keeps).
    Retry {
        text: String,
        what: &'a str,
        attempt: u32,
        delay: Duration,
    },
}

/// How one progress mode shows the build. Every method is called with the state locked,
/// after the bookkeeping of its event; the default shows nothing.
pub(super) trait View: Send + Sync + std::fmt::Debug {
    /// A step or source starts.
    fn start(&self, _sh: &Shared, _step: usize, _label: &str, _description: &str, _source: bool) {}
    /// A line of a step's output, `since` seconds after the step started.
    fn line(&self, _sh: &Shared, _step: usize, _since: f64, _text: &str) {}
    /// A step was found in the cache.
    fn cached(&self, _sh: &Shared, _step: usize) {}
    /// Why a step missed the cache.
    fn miss(&self, _sh: &Shared, _step: usize, _reason: &str) {}
    /// A step wrote a layer of `size` bytes.
    fn layer(&self, _sh: &Shared, _step: usize, _size: u64) {}
    /// A step finished.
    fn done(&self, _sh: &Shared, _step: usize, _took: Duration) {}
    /// A step failed; `tail` holds its last output lines.
    fn failed(
        &self,
        _sh: &Shared,
        _step: usize,
        _message: &str,
        _tail: &VecDeque<(f64, String)>,
        _location: Option<Location<'_>>,
    ) {
    }
    /// A new warning.
    fn warning(&self, _sh: &Shared, _warning: &Warning) {}
    /// A transfer's event.
    fn transfer(&self, _sh: &Shared, _step: usize, _note: &TransferNote<'_>) {}
    /// Another process is about to take the terminal; `notice` says which and how to
    /// leave it (untrusted text: escape it).
    fn notice(&self, _sh: &Shared, _notice: &str) {}
    /// Whether the view redraws itself on a thread of its own until the build ends.
    fn redraws(&self) -> bool {
        false
    }
    /// Draws the view again (the redraw thread, every tick and on resize).
    fn redraw(&self, _sh: &Shared, _st: &mut State) {}
    /// The build ended: the last of the view, and the summary.
    fn finish(&self, _sh: &Shared, _st: &mut State, _summary: &Summary) {}
}
