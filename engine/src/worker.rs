//! The worker: what the solver asks to run one build step.
//!
//! The solver decides what runs: it keys every op, takes hits from the cache, orders the
//! misses and keeps at most `--jobs` of them running. The worker does the running: a RUN
//! in a sandbox on the parent's snapshots ([`Worker::exec`]), a COPY or ADD
//! ([`Worker::copy`]), WORKDIR's directory ([`Worker::mkdir`]). It is handed the step's
//! inputs once they are ready ([`InputData`]: the layers of the parent, of another stage or
//! image, the context files the step selected, a download), a [`CancelToken`] that fires
//! when another step fails or the build is interrupted, and the [`BuildNetwork`] whose
//! network namespace the build's RUN steps share; it returns the layer it wrote into
//! the store, or none when the step changed nothing. The solver records the result in the
//! action cache; the worker never sees a cache key.
//!
//! [`SandboxWorker`] is the real worker, the one [`crate::build`] uses: sandboxes and the
//! executor's file operations on the store's snapshots. [`crate::build_with`] takes another
//! one (the solver's tests use one that writes small layers and records what it was asked).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rbuild_cache::action::LayerRecord;
use rbuild_cache::context::Selection;
use rbuild_compiler::plan::{CopyOp, ExecOp, InputRole, Op, Plan};
use rbuild_executor::cgroup::{CgroupParent, Limits};
use rbuild_executor::idmap::IdMap;
use rbuild_executor::sandbox::{CancelHandle, NetStack, SandboxError};

use crate::BuildRequest;
use crate::context::Source;
use crate::events::Events;
pub use crate::exec::ExecError;
pub use crate::fileops::{Download, FileOpError, StepMessage};

/// Runs build steps for the solver. Calls come from several threads at once, one per
/// running step.
pub trait Worker: Send + Sync {
    /// Runs a RUN step on the parent's file system with the step's mounts; returns the
    /// layer of what the command changed.
    fn exec(&self, step: &StepEnv<'_>, exec: &ExecOp) -> Result<Option<LayerRecord>, WorkerError>;
    /// Runs a COPY or ADD step: its sources (context files, another stage's or image's
    /// file system, heredocs, a download) onto the parent's file system.
    fn copy(&self, step: &StepEnv<'_>, copy: &CopyOp) -> Result<Option<LayerRecord>, WorkerError>;
    /// Makes WORKDIR's directory `path`, owned by `user` (empty: root) when it is new.
    fn mkdir(
        &self,
        step: &StepEnv<'_>,
        path: &str,
        user: &str,
    ) -> Result<Option<LayerRecord>, WorkerError>;
}

/// Why a worker did not finish a step.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The step's [`CancelToken`] fired before it finished.
    #[error("cancelled")]
    Cancelled,
    /// A RUN step failed: the command's exit code and last output lines, a mount or
    /// snapshot that could not be made, a layer that could not be written. The solver adds
    /// the step's Dockerfile line.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A COPY, ADD or WORKDIR step failed: a source that is missing, a layer that could not
    /// be written.
    #[error(transparent)]
    FileOp(#[from] FileOpError),
    /// Another worker's step failed (a worker of an embedder's own).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl WorkerError {
    /// What the user can do about it, when the failure carries a hint.
    pub fn hint(&self) -> Option<&str> {
        match self {
            WorkerError::Exec(e) => e.hint(),
            _ => None,
        }
    }
}

/// What a step reads from one of its inputs, handed to the worker that runs it.
#[derive(Debug, Clone)]
pub enum InputData {
    /// A file system (a stage, an image, scratch): its layers, bottom first.
    Layers(Arc<Vec<LayerRecord>>),
    /// Files of the build context or of a named context, and where they are.
    Context(Arc<Selection>, crate::context::ContextFiles),
    /// A downloaded file (ADD URL).
    Download(Arc<Download>),
}

/// Everything a running step needs.
pub struct StepEnv<'a> {
    /// The build settings.
    pub settings: &'a BuildRequest,
    /// The context and Dockerfile.
    pub source: &'a Source,
    /// The plan.
    pub plan: &'a Plan,
    /// The op.
    pub op: &'a Op,
    /// Its progress number.
    pub step: usize,
    /// Progress.
    pub progress: &'a dyn Events,
    /// Inputs by index of `op.inputs`.
    pub inputs: Vec<InputData>,
    /// Fires when the step is to stop (another step failed, the build was interrupted).
    pub cancel: &'a CancelToken,
    /// The network stack the build's RUN steps share.
    pub network: &'a BuildNetwork,
    /// The cgroup parent of the build's RUN steps.
    pub cgroup: &'a BuildCgroup,
}

impl StepEnv<'_> {
    /// The layers of the op's parent input (empty for none).
    pub fn parent_layers(&self) -> Arc<Vec<LayerRecord>> {
        self.op
            .inputs
            .iter()
            .zip(&self.inputs)
            .find(|(i, _)| i.role == InputRole::Parent)
            .and_then(|(_, d)| match d {
                InputData::Layers(l) => Some(l.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for StepEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEnv").field("op", &self.op.id).finish()
    }
}

/// The network stack the RUN steps of one build share ([`Network::Private`]): started by
/// the first step that needs it, ended when the build drops it.
#[derive(Debug, Default)]
pub struct BuildNetwork(Mutex<Option<Arc<NetStack>>>);

impl BuildNetwork {
    /// The build's stack, started now when no step has needed it yet.
    pub(crate) fn stack(&self, id_map: &IdMap) -> Result<Arc<NetStack>, SandboxError> {
        let mut stack = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*stack {
            return Ok(s.clone());
        }
        let s = Arc::new(NetStack::start(id_map)?);
        *stack = Some(s.clone());
        Ok(s)
    }
}

/// The cgroup parent of one build's RUN steps ([`BuildRequest::step_limits`]): found by the
/// first step that runs; where there is none, the build warns once (code `no-cgroup`) and
/// its steps run without limits.
#[derive(Debug, Default)]
pub struct BuildCgroup(OnceLock<Option<CgroupParent>>);

impl BuildCgroup {
    /// The parent of the steps' cgroups, `None` when there is none or no limit is set.
    pub(crate) fn parent(&self, limits: &Limits, progress: &dyn Events) -> Option<CgroupParent> {
        self.0
            .get_or_init(|| {
                if limits.is_empty() {
                    return None;
                }
                match CgroupParent::detect(limits) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        progress.warn(
                            "no-cgroup",
                            &format!(
                                "{}; RUN steps run without resource limits",
                                crate::error::chain_text(&e)
                            ),
                        );
                        None
                    }
                }
            })
            .clone()
    }
}

/// The cancellation of a build's running steps: the solver fires it at the first failure
/// (and on SIGINT or SIGTERM); a worker observes it by asking ([`CancelToken::is_cancelled`]),
/// by waiting on it ([`CancelToken::wait`]) or by registering a sandbox to be killed.
#[derive(Debug, Default)]
pub struct CancelToken {
    state: Mutex<CancelState>,
    fired: Condvar,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    /// The step that claimed the build's failure ([`CancelToken::claim_failure`]).
    claimed_by: Option<usize>,
    handles: Vec<CancelHandle>,
}

impl CancelToken {
    fn state(&self) -> MutexGuard<'_, CancelState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills `handle`'s sandbox when the token fires; at once when it has fired already.
    pub fn register(&self, handle: &CancelHandle) {
        let mut state = self.state();
        if state.cancelled {
            handle.cancel();
        }
        state.handles.push(handle.clone());
    }

    /// Whether the token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.state().cancelled
    }

    /// Waits until the token fires or `timeout` passes; returns whether it fired.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        while !state.cancelled {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .fired
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Claims the build's failure for `step` (whose command failed and which is to open
    /// the shell of `--on-error=shell`): fires the token, so the other running steps are
    /// killed, and returns true; returns false when the token had fired already (another step
    /// failed first, or the build was interrupted). The solver then reports `step`'s error,
    /// not the cancellations the claim caused.
    pub fn claim_failure(&self, step: usize) -> bool {
        let mut state = self.state();
        if state.cancelled {
            return false;
        }
        state.claimed_by = Some(step);
        Self::fire(&mut state);
        self.fired.notify_all();
        true
    }

    /// The step that claimed the build's failure, if one did.
    pub fn claimed_by(&self) -> Option<usize> {
        self.state().claimed_by
    }

    fn fire(state: &mut CancelState) {
        state.cancelled = true;
        for h in &state.handles {
            h.cancel();
        }
    }

    /// Fires the token: every registered sandbox is killed and every waiter wakes.
    pub fn cancel(&self) {
        let mut state = self.state();
        Self::fire(&mut state);
        self.fired.notify_all();
    }
}

/// The real worker: RUN in a namespaced sandbox on overlay (or copied) snapshots of the
/// parent's layers, COPY, ADD and WORKDIR through the executor's file operations; each
/// writes its layer straight into the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct SandboxWorker;

impl Worker for SandboxWorker {
    fn exec(&self, step: &StepEnv<'_>, exec: &ExecOp) -> Result<Option<LayerRecord>, WorkerError> {
        Ok(crate::exec::run(step, exec)?)
    }

    fn copy(&self, step: &StepEnv<'_>, copy: &CopyOp) -> Result<Option<LayerRecord>, WorkerError> {
        Ok(crate::fileops::copy(step, copy)?)
    }

    fn mkdir(
        &self,
        step: &StepEnv<'_>,
        path: &str,
        user: &str,
    ) -> Result<Option<LayerRecord>, WorkerError> {
        Ok(crate::fileops::mkdir(step, path, user)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::CancelToken;

    #[test]
    fn a_waiter_wakes_when_the_token_fires() {
        let token = Arc::new(CancelToken::default());
        let waiter = {
            let token = token.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (token.wait(Duration::from_secs(30)), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        token.cancel();
        let (fired, waited) = waiter.join().unwrap();
        assert!(fired);
        assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
        assert!(token.is_cancelled());
        // Fired already: no wait at all.
        assert!(token.wait(Duration::from_secs(30)));
    }

    #[test]
    fn only_the_first_failure_claims_and_the_claim_fires_the_token() {
        let token = CancelToken::default();
        assert_eq!(token.claimed_by(), None);
        assert!(token.claim_failure(4));
        assert!(token.is_cancelled());
        assert!(!token.claim_failure(5));
        assert_eq!(token.claimed_by(), Some(4));
        // After an interruption nobody claims.
        let interrupted = CancelToken::default();
        interrupted.cancel();
        assert!(!interrupted.claim_failure(1));
        assert_eq!(interrupted.claimed_by(), None);
    }

    #[test]
    fn a_wait_without_cancellation_times_out() {
        let token = CancelToken::default();
        let started = Instant::now();
        assert!(!token.wait(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(!token.is_cancelled());
    }
}
