//! What a build reports while it works: the [`Events`] sink the command line implements for
//! its tty, plain and json views, and [`NoEvents`] for callers that want nothing.

use std::time::Duration;

use rbuild_registry::ProgressFn;

/// Where a failed step is in the Dockerfile.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    /// The Dockerfile's name as the user gave it.
    pub file: &'a str,
    /// The first and last line (1-based) of the instruction.
    pub lines: (usize, usize),
}

/// Receives a build's progress. Steps are numbered by the sink ([`Events::reserve`],
/// [`Events::transfer`]); every step starts, may print output, hits or misses the cache,
/// and ends done or failed. Calls come from several threads at once.
pub trait Events: Send + Sync {
    /// Reserves `count` step numbers for the plan's steps, of which `plan_steps` are build
    /// steps (counted in a summary); returns the first number.
    fn reserve(&self, count: usize, plan_steps: usize) -> usize;
    /// A build step (RUN, COPY, ADD, WORKDIR) starts, or is looked up in the cache.
    fn start(&self, step: usize, label: &str, description: &str);
    /// A source (FROM, loading the context, a download) is made ready.
    fn start_source(&self, step: usize, label: &str, description: &str);
    /// A line of a step's output (without its newline; untrusted bytes).
    fn line(&self, step: usize, text: &[u8]);
    /// The step was found in the cache.
    fn cached(&self, step: usize);
    /// The step was not in the cache, for `reason`.
    fn miss(&self, step: usize, reason: &str);
    /// The step wrote a layer of `size` bytes.
    fn layer(&self, step: usize, size: u64);
    /// The step finished after `took`.
    fn done(&self, step: usize, took: Duration);
    /// The step failed with `message` (its first line is the summary) at `location`.
    fn failed(&self, step: usize, message: &str, location: Option<Location<'_>>);
    /// A warning of the build, with a stable `code` (`secret-build-arg`, `cache-import`...).
    fn warn(&self, code: &str, message: &str);
    /// A transfer (pulling a base image, pushing the result) shown as a step of its own,
    /// `ACTION SUBJECT` (`pull docker.io/library/alpine:3`).
    fn transfer(&self, action: &str, subject: &str) -> Box<dyn TransferEvents>;
    /// A process of the build takes the terminal (the shell of `--on-error=shell`): show
    /// `notice` (what it is, how to leave it), then draw and write nothing until
    /// [`Events::resume`], holding back what comes meanwhile. The default does nothing.
    fn suspend(&self, notice: &str) {
        let _ = notice;
    }
    /// The process of [`Events::suspend`] ended: show what was held back and go on.
    fn resume(&self) {}
}

/// A transfer started by [`Events::transfer`]; dropping it counts as done.
pub trait TransferEvents: Send {
    /// The callback for the registry client: blob starts, bytes, completions, mounts and
    /// retries become progress of this step.
    fn reporter(&self) -> Option<ProgressFn>;
    /// The transfer finished.
    fn done(self: Box<Self>);
    /// The transfer failed with `message`.
    fn failed(self: Box<Self>, message: &str);
}

/// An [`Events`] sink that shows nothing (and numbers steps from 1).
#[derive(Debug, Default)]
pub struct NoEvents {
    next: std::sync::atomic::AtomicUsize,
}

impl Events for NoEvents {
    fn reserve(&self, count: usize, _plan_steps: usize) -> usize {
        self.next
            .fetch_add(count, std::sync::atomic::Ordering::SeqCst)
            + 1
    }
    fn start(&self, _: usize, _: &str, _: &str) {}
    fn start_source(&self, _: usize, _: &str, _: &str) {}
    fn line(&self, _: usize, _: &[u8]) {}
    fn cached(&self, _: usize) {}
    fn miss(&self, _: usize, _: &str) {}
    fn layer(&self, _: usize, _: u64) {}
    fn done(&self, _: usize, _: Duration) {}
    fn failed(&self, _: usize, _: &str, _: Option<Location<'_>>) {}
    fn warn(&self, code: &str, message: &str) {
        tracing::warn!("{code}: {message}");
    }
    fn transfer(&self, _: &str, _: &str) -> Box<dyn TransferEvents> {
        Box::new(NoTransfer)
    }
}

/// The transfer of [`NoEvents`].
#[derive(Debug)]
struct NoTransfer;

impl TransferEvents for NoTransfer {
    fn reporter(&self) -> Option<ProgressFn> {
        None
    }
    fn done(self: Box<Self>) {}
    fn failed(self: Box<Self>, _: &str) {}
}
