//! The solver: keys every op of the plan, takes hits from the action cache (and an imported
//! remote cache), and asks a [`Worker`] to run the misses as soon as their inputs are ready,
//! up to `--jobs` at once. The first failure fires the running steps' [`CancelToken`] (their
//! sandboxes are killed), no step starts after it, and it is reported with its Dockerfile
//! line, its command and its last output lines. A failed RUN step that opens the shell of
//! `--on-error=shell` fires the token itself first ([`CancelToken::claim_failure`]); then only
//! its error is reported, not the cancellations it caused.
//!
//! Its tests (`solver/tests.rs`) solve plans the compiler made from Dockerfile text, in
//! stores of their own, through a worker that writes small layers and records what it was
//! asked to run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rbuild_cache::action::{ActionCache, ActionError, CacheRecord, LayerRecord, SCHEMA};
use rbuild_cache::context::{Context, IndexOptions, SelectError, Selection, index_context};
use rbuild_cache::{Digest, Hasher};
use rbuild_compiler::plan::{InputRole, Op, OpKind, Plan};

use crate::bases::Bases;
use crate::context::{ContextError, ContextFiles, Source};
use crate::events::{Events, Location};
use crate::fileops::FileOpError;
use crate::keys::{self, Part};
use crate::remote_cache::{CacheImportError, FetchFailed, RemoteCache};
use crate::worker::{
    BuildCgroup, BuildNetwork, CancelToken, InputData, StepEnv, Worker, WorkerError,
};
use crate::{BuildRequest, fileops};

/// Why the plan could not be solved.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The action cache failed.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// The gc lock could not be taken.
    #[error(transparent)]
    Gc(#[from] rbuild_cache::gc::GcError),
    /// The context could not be read.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A base image of the plan was not resolved.
    #[error("base image {reference} was not resolved")]
    Unresolved {
        /// The reference.
        reference: String,
    },
    /// A source op failed, at its Dockerfile line (`Dockerfile:3: COPY a /`).
    #[error("{location}")]
    At {
        /// The Dockerfile, line and instruction.
        location: String,
        /// Why.
        #[source]
        source: Box<SolveError>,
    },
    /// The context selection of a COPY or ADD failed.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// A COPY or ADD source is not in the context: the diagnostic at its Dockerfile line,
    /// with the ignore file line that excludes it or the closest context path.
    #[error("{message}")]
    NotInContext {
        /// The source path.
        path: String,
        /// The rendered diagnostic.
        message: String,
    },
    /// An ADD download failed.
    #[error(transparent)]
    Download(#[from] FileOpError),
    /// `ADD` of a git repository failed.
    #[error(transparent)]
    Git(Box<crate::git::GitError>),
    /// The plan lists an op before one it reads.
    #[error("op {op} reads op {input} before it")]
    Order {
        /// The op.
        op: usize,
        /// The op it reads.
        input: usize,
    },
    /// SIGINT and SIGTERM cannot be watched.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// A step failed, at its Dockerfile line (rendered with a caret).
    #[error("{located}")]
    Step {
        /// The diagnostic (`RUN x failed` at its line).
        located: String,
        /// Why.
        #[source]
        source: Box<SolveError>,
    },
    /// The worker failed the step.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// An imported layer (of a step's input, or of the target) could not be fetched.
    #[error(transparent)]
    Import(#[from] CacheImportError),
    /// An op that is no step was run as one.
    #[error("internal error: {kind} is not a step")]
    NotAStep {
        /// The op's kind.
        kind: String,
    },
    /// A step never ran.
    #[error("internal error: step {step} was never run")]
    NeverRun {
        /// The step.
        step: String,
    },
}

impl From<crate::git::GitError> for SolveError {
    fn from(e: crate::git::GitError) -> Self {
        SolveError::Git(Box::new(e))
    }
}

impl SolveError {
    /// The imported layer whose fetch failed this solve, if that is what did.
    fn fetch_failed(&self) -> Option<&FetchFailed> {
        match self {
            SolveError::Import(CacheImportError::Fetch(f)) => Some(f),
            SolveError::At { source, .. } | SolveError::Step { source, .. } => {
                source.fetch_failed()
            }
            _ => None,
        }
    }

    /// What the user can do about it, when the failure carries a hint.
    pub fn hint(&self) -> Option<&str> {
        match self {
            SolveError::Worker(e) => e.hint(),
            SolveError::Context(e) => e.hint(),
            SolveError::Download(FileOpError::Fetch {
                source: rbuild_registry::fetch::FetchError::TooLarge { .. },
                ..
            }) => Some(crate::error::LAYER_SIZE_HINT),
            _ => None,
        }
    }
}

/// The steps running in solves side by side (the platforms of one multi-platform build, the
/// targets of a bake), by record key: a step whose key two solves share runs in the first
/// solve that starts it, and the others wait for it and take its record from the action
/// cache. A bake also bounds the steps all its solves run at once, and stops them all when
/// one target fails ([`Inflight::stop`]).
#[derive(Debug, Default)]
pub struct Inflight {
    running: std::sync::Mutex<HashMap<Digest, Arc<Running>>>,
    /// Steps running now, against `limit` (when set).
    slots: std::sync::Mutex<usize>,
    slot_freed: std::sync::Condvar,
    limit: Option<usize>,
    /// Set by [`Inflight::stop`]; the cancel tokens of the solves still running.
    stopped: AtomicBool,
    tokens: std::sync::Mutex<Vec<std::sync::Weak<CancelToken>>>,
}

/// One running step: done once its solve has recorded it (or given up).
#[derive(Debug, Default)]
struct Running {
    done: std::sync::Mutex<bool>,
    ended: std::sync::Condvar,
}

/// What [`Inflight::claim`] gave: the step to run, or another solve's run to wait for.
enum Claim<'a> {
    Run(RunGuard<'a>),
    Wait(Arc<Running>),
}

/// Ends the claim of a step when dropped (after its record is written), waking the waiters.
struct RunGuard<'a> {
    inflight: &'a Inflight,
    key: Digest,
    running: Arc<Running>,
}

/// One of [`Inflight`]'s step slots, given back when dropped.
struct Slot<'a>(&'a Inflight);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut used = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        *used -= 1;
        self.0.slot_freed.notify_one();
    }
}

impl Inflight {
    /// Solves sharing their steps that run at most `jobs` steps at once between them.
    pub fn with_jobs(jobs: usize) -> Inflight {
        Inflight {
            limit: Some(jobs.max(1)),
            ..Inflight::default()
        }
    }

    /// Stops every solve: their running steps are cancelled and no new step starts.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let tokens = std::mem::take(&mut *self.tokens.lock().unwrap_or_else(|p| p.into_inner()));
        for token in tokens.iter().filter_map(std::sync::Weak::upgrade) {
            token.cancel();
        }
    }

    /// Whether [`Inflight::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Registers a solve's cancel token, fired by [`Inflight::stop`] (at once when stopped).
    fn register(&self, token: &Arc<CancelToken>) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(token));
        if self.stopped() {
            token.cancel();
        }
    }

    /// Waits for a free step slot (at once without a limit).
    fn slot(&self) -> Option<Slot<'_>> {
        let limit = self.limit?;
        let mut used = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= limit {
            used = self
                .slot_freed
                .wait(used)
                .unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        Some(Slot(self))
    }

    fn claim(&self, key: Digest) -> Claim<'_> {
        let mut map = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(&key) {
            return Claim::Wait(Arc::clone(r));
        }
        let running = Arc::new(Running::default());
        map.insert(key, Arc::clone(&running));
        Claim::Run(RunGuard {
            inflight: self,
            key,
            running,
        })
    }
}

impl Running {
    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = self.ended.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .inflight
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
        drop(map);
        *self.running.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.running.ended.notify_all();
    }
}

/// How a step that was to run ended: it ran, or another platform's solve ran it and its
/// record is taken.
enum Outcome {
    Ran(CacheRecord),
    Shared(CacheRecord),
}

/// The result of one op.
#[derive(Debug, Clone)]
pub struct OpResult {
    /// Its cache key.
    pub key: Digest,
    /// The key its record is stored under (`COPY --link`: without the parent).
    pub record_key: Digest,
    /// The file system it produces, as layers bottom first (empty for non-file-system ops).
    pub layers: Arc<Vec<LayerRecord>>,
    /// For steps: whether it added a layer.
    pub added: bool,
    /// Whether it came from the cache.
    pub cached: bool,
    /// When the step ran (seconds since the epoch; from the cache record for hits), so a
    /// rebuild from the cache gives the same image.
    pub created: i64,
    /// For a download (`ADD URL`): the `sha256:` digest of what was fetched; for a git
    /// source (`ADD` of a repository): the commit. The provenance names them.
    pub fetched: Option<String>,
}

/// An op's state after the key phase.
enum Prep {
    /// Config ops: nothing to do.
    Skip,
    /// Known at once (scratch, images, context selections, downloads).
    Ready(OpResult, Option<InputData>),
    /// A step: a hit when `record` is set, else it runs.
    Step {
        key: Digest,
        /// The key its record is stored under (`COPY --link`: without the parent).
        record_key: Digest,
        record: Option<CacheRecord>,
        /// Whether `record` came from a `--cache-from` import (its layer may not be local).
        imported: bool,
    },
}

/// How many times a build with an imported cache is solved before a layer that cannot be
/// fetched fails it.
const SOLVE_ATTEMPTS: usize = 8;

/// Solves the plan: every key, then the misses run on `worker`. Returns the result of
/// every op (`None` for config ops).
///
/// With an imported cache the layers of the target stage are fetched too, so the image in
/// the store is complete. An imported layer that cannot be fetched is a warning: the plan is
/// solved again without the records naming it (what ran or was fetched meanwhile is in the
/// local cache by then), so only the steps whose layers are gone run.
pub fn solve(problem: &Problem<'_>) -> Result<Vec<Option<OpResult>>, SolveError> {
    let Problem {
        settings,
        plan,
        progress,
        remote,
        ..
    } = *problem;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let solved = solve_once(problem).and_then(|results| match remote {
            Some(remote) => crate::remote_cache::ensure_output(settings, plan, &results, remote)
                .map(|()| results)
                .map_err(SolveError::from),
            None => Ok(results),
        });
        match solved {
            Err(e) if attempts < SOLVE_ATTEMPTS && e.fetch_failed().is_some() => {
                let why = e
                    .fetch_failed()
                    .map(|f| format!("{f}: {}", crate::error::chain_text(&f.source)))
                    .unwrap_or_default();
                progress.warn(
                    "cache-import",
                    &format!("{why}; building those steps instead"),
                );
            }
            other => return other,
        }
    }
}

/// What [`solve`] solves: a plan with its base images and context, for a build, reporting
/// to `progress`, its steps run by `worker`.
pub struct Problem<'a> {
    /// The build.
    pub settings: &'a BuildRequest,
    /// Its context and Dockerfile.
    pub source: &'a Source,
    /// The plan (of one platform).
    pub plan: &'a Plan,
    /// Its base images.
    pub bases: &'a Bases,
    /// Where events go.
    pub progress: &'a dyn Events,
    /// The imported cache, if any.
    pub remote: Option<&'a RemoteCache>,
    /// Runs the steps.
    pub worker: &'a dyn Worker,
    /// Beside other solves (a multi-platform build, a bake): the steps they all run, and
    /// what labels this plan's steps (its platform, its bake target's name).
    pub multi: Option<(&'a Inflight, &'a str)>,
}

/// One pass: every key, then the misses.
fn solve_once(problem: &Problem<'_>) -> Result<Vec<Option<OpResult>>, SolveError> {
    let Problem {
        settings,
        source,
        plan,
        bases,
        progress,
        remote,
        worker,
        multi,
    } = *problem;
    let cache = ActionCache::open(settings.store.root())?;
    let steps = number_steps(plan, progress, multi.map(|(_, p)| p));
    let (preps, mut reasons) = key_phase(settings, source, plan, bases, &cache, progress, remote)?;
    run_phase(
        &Run {
            settings,
            source,
            plan,
            cache: &cache,
            remote,
            progress,
            worker,
            inflight: multi.map(|(i, _)| i),
        },
        &steps,
        preps,
        &mut reasons,
    )
}

/// What the run phase works with.
struct Run<'a> {
    settings: &'a BuildRequest,
    source: &'a Source,
    plan: &'a Plan,
    cache: &'a ActionCache,
    remote: Option<&'a RemoteCache>,
    progress: &'a dyn Events,
    worker: &'a dyn Worker,
    /// The running steps of the other solves (a multi-platform build, a bake).
    inflight: Option<&'a Inflight>,
}

/// Progress numbers (reserved from `progress`) and labels of the ops shown (everything but
/// config ops); beside other solves each label starts with `prefix` (the platform:
/// `linux/arm64 build 2/3`, a bake target: `app build 2/3`).
fn number_steps(
    plan: &Plan,
    progress: &dyn Events,
    prefix: Option<&str>,
) -> Vec<Option<(usize, String)>> {
    let mut out = vec![None; plan.ops.len()];
    let mut n = 0;
    let mut build_steps = 0;
    for stage in &plan.stages {
        let shown: Vec<usize> = stage
            .ops
            .iter()
            .copied()
            .filter(|&i| {
                matches!(
                    plan.ops[i].kind,
                    OpKind::Image { .. } | OpKind::Exec(_) | OpKind::Copy(_) | OpKind::Mkdir { .. }
                )
            })
            .collect();
        for &i in &stage.ops {
            let op = &plan.ops[i];
            let label = match op.kind {
                OpKind::Context { .. } => "internal".to_string(),
                OpKind::Http { .. } | OpKind::Git { .. } => "internal".to_string(),
                OpKind::Scratch | OpKind::Config { .. } => continue,
                _ => {
                    if !matches!(op.kind, OpKind::Image { .. }) {
                        build_steps += 1;
                    }
                    let pos = shown.iter().position(|&s| s == i).unwrap_or(0) + 1;
                    match prefix {
                        Some(p) => format!("{p} {} {pos}/{}", stage.label(), shown.len()),
                        None => format!("{} {pos}/{}", stage.label(), shown.len()),
                    }
                }
            };
            n += 1;
            out[i] = Some((n, label));
        }
    }
    let first = progress.reserve(n, build_steps);
    for (number, _) in out.iter_mut().flatten() {
        *number += first - 1;
    }
    out
}

/// Each selected path with a short content digest (or kind and mode), for explaining
/// which file changed.
fn selection_files(s: &Selection) -> impl Iterator<Item = (String, String)> + '_ {
    s.entries.iter().map(|e| {
        let h = e
            .hash
            .map(|h| h.to_hex()[..16].to_string())
            .unwrap_or_else(|| format!("{:?}:{:o}", e.kind, e.mode));
        (String::from_utf8_lossy(e.path_bytes()).into_owned(), h)
    })
}

fn forced(settings: &BuildRequest, plan: &Plan, op: &Op) -> bool {
    if settings.no_cache {
        return true;
    }
    let stage = &plan.stages[op.stage];
    settings
        .no_cache_filter
        .iter()
        .any(|f| stage.label().eq_ignore_ascii_case(f) || stage.index.to_string() == *f)
}

fn slot(source: &Source, plan: &Plan, op: &Op) -> Digest {
    let stage = &plan.stages[op.stage];
    let pos = stage.ops.iter().position(|&i| i == op.id).unwrap_or(0);
    let mut h = Hasher::new();
    for part in [
        source.identity(),
        source.dockerfile_name.clone(),
        stage.label(),
        pos.to_string(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finish()
}

/// The result of a source op (scratch, image, context, download): known before anything
/// runs, keyed by its content.
fn source_result(
    definition: &str,
    role: &'static str,
    label: String,
    digest: String,
    layers: Vec<LayerRecord>,
    data: Option<InputData>,
) -> Prep {
    let parts = if digest.is_empty() {
        Vec::new()
    } else {
        vec![Part {
            role,
            label,
            digest,
            content: None,
        }]
    };
    Prep::Ready(
        OpResult {
            key: keys::key(definition, &parts),
            record_key: keys::key(definition, &parts),
            layers: Arc::new(layers),
            added: false,
            cached: true,
            created: 0,
            fetched: None,
        },
        data,
    )
}

fn key_phase(
    settings: &BuildRequest,
    source: &Source,
    plan: &Plan,
    bases: &Bases,
    cache: &ActionCache,
    progress: &dyn Events,
    remote: Option<&RemoteCache>,
) -> Result<(Vec<Prep>, HashMap<usize, String>), SolveError> {
    let mut reasons = HashMap::new();
    let mut preps: Vec<Prep> = Vec::with_capacity(plan.ops.len());
    let mut keys: Vec<Option<Digest>> = vec![None; plan.ops.len()];
    let mut selections: HashMap<usize, Arc<Selection>> = HashMap::new();
    for op in &plan.ops {
        let definition = op.definition.to_string();
        let at = |e: SolveError| -> SolveError {
            let line = op.span.start.line;
            SolveError::At {
                location: format!("{}:{line}: {}", source.dockerfile_name, op.description),
                source: Box::new(e),
            }
        };
        let prep = match &op.kind {
            OpKind::Config { .. } => Prep::Skip,
            OpKind::Scratch => source_result(
                &definition,
                "",
                String::new(),
                String::new(),
                Vec::new(),
                None,
            ),
            OpKind::Image { reference, .. } => {
                let base = bases.of(&op.kind).ok_or_else(|| SolveError::Unresolved {
                    reference: reference.clone(),
                })?;
                source_result(
                    &definition,
                    "base image",
                    reference.clone(),
                    base.digest(),
                    base.layers.clone(),
                    None,
                )
            }
            OpKind::Context {
                include,
                exclude,
                name,
            } => {
                let (index, files) = source.context_index(settings, name.as_deref())?;
                for special in index.special_files() {
                    progress.warn(
                        "context-special-file",
                        &format!(
                            "build context: skipped {} ({:?}): only files, directories and symlinks are copied",
                            special.path.display(),
                            special.kind
                        ),
                    );
                }
                let selection = index.select(include, exclude).map_err(|e| match e {
                    SelectError::NotFound { .. } => missing_source(source, index, op, e),
                    e => at(e.into()),
                })?;
                let digest = selection.digest.to_hex().to_string();
                let selection = Arc::new(selection);
                selections.insert(op.id, selection.clone());
                source_result(
                    &definition,
                    "context",
                    "context".into(),
                    digest,
                    Vec::new(),
                    Some(InputData::Context(selection, files)),
                )
            }
            OpKind::Http { url, checksum } => {
                let download = fileops::download(settings, url, checksum.as_deref())
                    .map_err(|e| at(e.into()))?;
                let digest = download.digest.clone();
                let mut prep = source_result(
                    &definition,
                    "url",
                    url.clone(),
                    digest.clone(),
                    Vec::new(),
                    Some(InputData::Download(Arc::new(download))),
                );
                if let Prep::Ready(result, _) = &mut prep {
                    result.fetched = Some(digest);
                }
                prep
            }
            OpKind::Git {
                url,
                keep_git_dir,
                checksum,
            } => {
                let (selection, files, commit, shown) =
                    git_source(settings, url, *keep_git_dir, checksum.as_deref()).map_err(at)?;
                let mut prep = source_result(
                    &definition,
                    "git",
                    shown,
                    commit.clone(),
                    Vec::new(),
                    Some(InputData::Context(Arc::new(selection), files)),
                );
                if let Prep::Ready(result, _) = &mut prep {
                    result.fetched = Some(commit);
                }
                prep
            }
            OpKind::Exec(_) | OpKind::Copy(_) | OpKind::Mkdir { .. } => {
                let mut parts = Vec::new();
                let mut link_parts = Vec::new();
                for input in &op.inputs {
                    let k = keys[input.op].ok_or(SolveError::Order {
                        op: op.id,
                        input: input.op,
                    })?;
                    let mut part = Part {
                        role: input.role.as_str(),
                        label: plan.ops[input.op].description.clone(),
                        digest: k.to_string(),
                        content: None,
                    };
                    // A base image as the parent: explained by what its tag resolves to.
                    if input.role == InputRole::Parent
                        && let OpKind::Image { reference, .. } = &plan.ops[input.op].kind
                        && let Some(base) = bases.of(&plan.ops[input.op].kind)
                    {
                        part.label = reference.clone();
                        part.content = Some(base.digest());
                    }
                    if input.role != InputRole::Parent {
                        link_parts.push(part.clone());
                    }
                    parts.push(part);
                }
                // `--network none` on the command line changes what RUN steps that name no
                // network get, so it is part of their key (the default and host are the same).
                if let OpKind::Exec(e) = &op.kind
                    && e.network == rbuild_compiler::instructions::NetworkMode::Default
                    && settings.network == crate::Network::None
                {
                    parts.push(Part {
                        role: "network",
                        label: "--network none".into(),
                        digest: "none".into(),
                        content: None,
                    });
                }
                let key = keys::key(&definition, &parts);
                let link = matches!(&op.kind, OpKind::Copy(c) if c.link);
                let record_key = if link {
                    keys::key(&format!("link:{definition}"), &link_parts)
                } else {
                    key
                };
                let slot = slot(source, plan, op);
                let force = forced(settings, plan, op);
                let local = if force {
                    None
                } else {
                    // Looked up and marked used (record, layer blob, snapshot) under the gc
                    // lock: a concurrent prune either removed it before (a miss) or sees it
                    // used. A record whose layer blob is gone is a miss.
                    let _gc = rbuild_cache::gc::GcLock::shared(settings.store.root())?;
                    cache
                        .get(&record_key)?
                        .filter(|r| r.schema == SCHEMA)
                        .filter(|r| {
                            rbuild_cache::gc::mark_record_used(&settings.store, &record_key, r)
                        })
                };
                // Imported records come after the local ones; their layers are fetched
                // only when needed.
                let from_import = match (&local, remote) {
                    (None, Some(remote)) if !force => remote.get(&record_key),
                    _ => None,
                };
                let imported = from_import.is_some();
                let record = local.or(from_import);
                // The inputs are recorded (and compared) only when they changed: a build
                // whose steps all hit reads one small file per step.
                let last_key = cache.last_key(&slot).unwrap_or(None);
                if record.is_none() || last_key.as_deref() != Some(key.to_string().as_str()) {
                    let env = match &op.kind {
                        OpKind::Exec(e) => e.env.clone(),
                        _ => Vec::new(),
                    };
                    let context_files: BTreeMap<String, String> = op
                        .inputs
                        .iter()
                        .filter_map(|i| selections.get(&i.op))
                        .flat_map(|s| selection_files(s.as_ref()))
                        .collect();
                    let now = keys::record(
                        &key,
                        &definition,
                        &op.description,
                        &env,
                        &parts,
                        context_files,
                    );
                    if record.is_none() {
                        let reason = if force {
                            "caching disabled for this step (--no-cache)".to_string()
                        } else {
                            let before = cache.last_inputs(&slot).unwrap_or(None);
                            keys::explain(before.as_ref(), &now)
                        };
                        if settings.explain {
                            tracing::info!("{}: cache miss: {reason}", op.description);
                        }
                        reasons.insert(op.id, reason);
                    }
                    if let Err(e) = cache.set_last_inputs(&slot, &now) {
                        tracing::debug!("cannot record the inputs of {}: {e}", op.description);
                    }
                }
                Prep::Step {
                    key,
                    record_key,
                    record,
                    imported,
                }
            }
        };
        keys[op.id] = match &prep {
            Prep::Skip => None,
            Prep::Ready(r, _) => Some(r.key),
            Prep::Step { key, .. } => Some(*key),
        };
        preps.push(prep);
    }
    Ok((preps, reasons))
}

/// The files `ADD URL#REF /dst` copies: the whole checkout of the commit (or its SUBDIR),
/// no ignore file applied, as BuildKit copies it; with the commit (its cache key) and the
/// URL as shown.
fn git_source(
    settings: &BuildRequest,
    url: &str,
    keep_git_dir: bool,
    checksum: Option<&str>,
) -> Result<(Selection, ContextFiles, String, String), SolveError> {
    let parsed = crate::git::GitUrl::parse(url)?;
    let checkout = crate::git::checkout(settings, &parsed, keep_git_dir)?;
    crate::git::check_checksum(&parsed, &checkout.commit, checksum)?;
    let opts = IndexOptions {
        dockerfile: None,
        no_ignore_file: true,
    };
    let index = index_context(&settings.store, &checkout.root, &opts).map_err(|source| {
        ContextError::Index {
            path: checkout.root.clone(),
            source,
        }
    })?;
    let selection = index.select(&[".".to_string()], &[])?;
    let files = ContextFiles {
        root: checkout.root,
        filtered: false,
    };
    Ok((selection, files, checkout.commit, parsed.shown()))
}

type Finished = (usize, Result<Outcome, SolveError>, Duration);

fn run_phase(
    run: &Run<'_>,
    steps: &[Option<(usize, String)>],
    preps: Vec<Prep>,
    reasons: &mut HashMap<usize, String>,
) -> Result<Vec<Option<OpResult>>, SolveError> {
    let Run {
        settings,
        source,
        plan,
        cache,
        remote,
        progress,
        worker,
        inflight,
    } = *run;
    let n = plan.ops.len();
    let mut results: Vec<Option<OpResult>> = vec![None; n];
    let mut data: Vec<Option<InputData>> = vec![None; n];
    let mut finished = vec![false; n];
    let mut started = vec![false; n];
    let cancel = Arc::new(CancelToken::default());
    let signals = watch_signals(&cancel)?;
    if let Some(inflight) = inflight {
        inflight.register(&cancel);
    }
    // Ends (with its holder and pasta) once every step has.
    let network = BuildNetwork::default();
    let cgroup = BuildCgroup::default();
    let mut failure: Option<SolveError> = None;
    let mut running = 0usize;
    let (tx, rx) = mpsc::channel::<Finished>();
    let step_no = |i: usize| steps[i].as_ref().map_or(0, |(n, _)| *n);

    std::thread::scope(|scope| {
        loop {
            // Start (or finish at once) everything whose inputs are done.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for i in 0..n {
                    if started[i] || !plan.ops[i].inputs.iter().all(|x| finished[x.op]) {
                        continue;
                    }
                    let op = &plan.ops[i];
                    match &preps[i] {
                        Prep::Skip => {
                            started[i] = true;
                            finished[i] = true;
                            progressed = true;
                        }
                        Prep::Ready(r, d) => {
                            match (&steps[i], &op.kind) {
                                (Some((s, label)), OpKind::Image { .. }) => {
                                    progress.start_source(
                                        *s,
                                        label,
                                        &format!("FROM {}", image_ref(op)),
                                    );
                                    progress.done(*s, Duration::ZERO);
                                }
                                (Some((s, label)), OpKind::Context { include, name, .. }) => {
                                    let what = match name {
                                        Some(n) => format!("[context {n}] load"),
                                        None => "load build context".into(),
                                    };
                                    progress.start_source(
                                        *s,
                                        label,
                                        &format!("{what}: {}", include.join(" ")),
                                    );
                                    progress.done(*s, Duration::ZERO);
                                }
                                (Some((s, label)), OpKind::Http { url, .. }) => {
                                    progress.start_source(*s, label, &format!("download {url}"));
                                    progress.done(*s, Duration::ZERO);
                                }
                                _ => {}
                            }
                            results[i] = Some(r.clone());
                            data[i] = d.clone();
                            started[i] = true;
                            finished[i] = true;
                            progressed = true;
                        }
                        Prep::Step {
                            key,
                            record_key,
                            record: Some(rec),
                            imported,
                        } => {
                            if let Some((s, label)) = &steps[i] {
                                progress.start(*s, label, &op.description);
                                progress.cached(*s);
                            }
                            if *imported && let Some(remote) = remote {
                                remote.adopt(&settings.store, cache, record_key);
                            }
                            let parent = parent_layers(op, &results);
                            let mut layers = (*parent).clone();
                            layers.extend(rec.layer.clone());
                            results[i] = Some(OpResult {
                                key: *key,
                                record_key: *record_key,
                                layers: Arc::new(layers),
                                added: rec.layer.is_some(),
                                cached: true,
                                created: rec.created,
                                fetched: None,
                            });
                            started[i] = true;
                            finished[i] = true;
                            progressed = true;
                        }
                        Prep::Step { record: None, .. } => {
                            // A step that claimed the failure (its shell is open) ends the
                            // build: nothing new starts meanwhile.
                            if failure.is_some()
                                || running >= settings.jobs
                                || cancel.claimed_by().is_some()
                                || inflight.is_some_and(Inflight::stopped)
                            {
                                continue;
                            }
                            let inputs: Vec<InputData> = op
                                .inputs
                                .iter()
                                .map(|x| {
                                    data[x.op].clone().unwrap_or_else(|| {
                                        InputData::Layers(
                                            results[x.op]
                                                .as_ref()
                                                .map(|r| r.layers.clone())
                                                .unwrap_or_default(),
                                        )
                                    })
                                })
                                .collect();
                            let s = step_no(i);
                            if let Some((s, label)) = &steps[i] {
                                progress.start(*s, label, &op.description);
                                if let Some(reason) = reasons.remove(&i) {
                                    progress.miss(*s, &reason);
                                }
                            }
                            started[i] = true;
                            running += 1;
                            let Prep::Step { record_key, .. } = &preps[i] else {
                                unreachable!("only steps run");
                            };
                            let record_key = *record_key;
                            let tx = tx.clone();
                            let cancel = &*cancel;
                            let network = &network;
                            let cgroup = &cgroup;
                            scope.spawn(move || {
                                let t = Instant::now();
                                let env = StepEnv {
                                    settings,
                                    source,
                                    plan,
                                    op,
                                    step: s,
                                    progress,
                                    inputs,
                                    cancel,
                                    network,
                                    cgroup,
                                };
                                let r =
                                    run_once(inflight, cache, &record_key, &op.description, || {
                                        fetch_inputs(remote, settings, cache, &env.inputs)
                                            .and_then(|()| run_step(worker, &env))
                                    });
                                let _ = tx.send((i, r, t.elapsed()));
                            });
                        }
                    }
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, r, took)) = rx.recv() else {
                break;
            };
            running -= 1;
            finished[i] = true;
            let op = &plan.ops[i];
            let s = step_no(i);
            match r {
                Ok(outcome) => {
                    let Prep::Step {
                        key, record_key, ..
                    } = &preps[i]
                    else {
                        unreachable!("only steps run");
                    };
                    let (layer, created, cached) = match outcome {
                        Outcome::Ran(record) => {
                            if let Some(l) = &record.layer {
                                progress.layer(s, l.size);
                            }
                            progress.done(s, took);
                            (record.layer, record.created, false)
                        }
                        Outcome::Shared(record) => {
                            progress.cached(s);
                            (record.layer, record.created, true)
                        }
                    };
                    let mut layers = (*parent_layers(op, &results)).clone();
                    layers.extend(layer.clone());
                    results[i] = Some(OpResult {
                        key: *key,
                        record_key: *record_key,
                        layers: Arc::new(layers),
                        added: layer.is_some(),
                        cached,
                        created,
                        fetched: None,
                    });
                }
                Err(e) => {
                    // After a claim (`--on-error=shell`) only the claiming step's error
                    // counts: the others were cancelled by it.
                    let claimed = cancel.claimed_by();
                    if failure.is_none() && claimed.is_none_or(|c| c == s) {
                        if !cancel.is_cancelled() || signals.caught() || claimed.is_some() {
                            progress.failed(
                                s,
                                &crate::error::chain_text(&e),
                                Some(Location {
                                    file: &source.dockerfile_name,
                                    lines: (op.span.start.line, op.span.end.line),
                                }),
                            );
                        }
                        let line = op.span.start.line;
                        let text = &source.dockerfile_text;
                        let located = rbuild_compiler::parser::render_diagnostic(
                            &format!("{} failed", op.description),
                            op.span,
                            None,
                            &source.dockerfile_name,
                            text,
                        );
                        tracing::debug!("step at line {line} failed");
                        failure = Some(SolveError::Step {
                            located,
                            source: Box::new(e),
                        });
                        cancel.cancel();
                    }
                }
            }
        }
    });
    drop(signals);
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(i) = (0..n).find(|&i| !finished[i]) {
        return Err(SolveError::NeverRun {
            step: plan.ops[i].description.clone(),
        });
    }
    Ok(results)
}

/// A COPY/ADD source that is not in the context, at its Dockerfile line: the ignore file
/// line that excludes it, or the closest context path.
fn missing_source(source: &Source, index: &Context, op: &Op, err: SelectError) -> SolveError {
    let SelectError::NotFound {
        source_path,
        excluded_by,
        closest,
    } = &err
    else {
        return err.into();
    };
    let text = &source.dockerfile_text;
    let span = super::bases::locate_word(text, op.span, source_path, false);
    let mut out = rbuild_compiler::parser::render_diagnostic(
        &err.to_string(),
        span,
        None,
        &source.dockerfile_name,
        text,
    );
    if let Some(x) = excluded_by {
        let file = x.file.strip_prefix(index.root()).unwrap_or(&x.file);
        out.push_str(&format!(
            "\n  = note: {}:{} excludes it ({})",
            file.display(),
            x.line,
            x.pattern
        ));
    }
    if let Some(c) = closest {
        out.push_str(&format!("\nhint: did you mean {c}?"));
    }
    SolveError::NotInContext {
        path: source_path.clone(),
        message: out,
    }
}

fn image_ref(op: &Op) -> &str {
    match &op.kind {
        OpKind::Image { reference, .. } => reference,
        _ => "",
    }
}

fn parent_layers(op: &Op, results: &[Option<OpResult>]) -> Arc<Vec<LayerRecord>> {
    op.inputs
        .iter()
        .find(|i| i.role == InputRole::Parent)
        .and_then(|i| results[i.op].as_ref())
        .map(|r| r.layers.clone())
        .unwrap_or_default()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Fetches the imported layers of a step's file-system inputs that the store lacks: the
/// step is about to read them.
fn fetch_inputs(
    remote: Option<&RemoteCache>,
    settings: &BuildRequest,
    cache: &ActionCache,
    inputs: &[InputData],
) -> Result<(), SolveError> {
    let Some(remote) = remote else {
        return Ok(());
    };
    for input in inputs {
        if let InputData::Layers(layers) = input {
            remote.ensure_local(&settings.store, cache, layers)?;
        }
    }
    Ok(())
}

/// Asks `worker` to run the step; its error keeps its whole chain (and any hint in it).
/// Runs a step with `run` and records it (`description`) in the action cache under
/// `record_key`, unless
/// another platform's solve of the same build runs the same step: then it waits for that
/// run and takes its record (or runs the step itself when that run left none).
fn run_once(
    inflight: Option<&Inflight>,
    cache: &ActionCache,
    record_key: &Digest,
    description: &str,
    run: impl FnOnce() -> Result<Option<LayerRecord>, SolveError>,
) -> Result<Outcome, SolveError> {
    let guard = match inflight.map(|f| f.claim(*record_key)) {
        Some(Claim::Wait(running)) => {
            running.wait();
            if let Ok(Some(record)) = cache.get(record_key) {
                return Ok(Outcome::Shared(record));
            }
            None
        }
        Some(Claim::Run(guard)) => Some(guard),
        None => None,
    };
    let slot = inflight.and_then(Inflight::slot);
    let layer = run()?;
    drop(slot);
    let record = CacheRecord {
        schema: SCHEMA,
        layer,
        created: now_secs(),
        description: description.to_string(),
    };
    if let Err(e) = cache.put(record_key, &record) {
        tracing::warn!("cannot record {description} in the cache: {e}");
    }
    // Waiters look for the record once the claim ends.
    drop(guard);
    Ok(Outcome::Ran(record))
}

fn run_step(worker: &dyn Worker, env: &StepEnv<'_>) -> Result<Option<LayerRecord>, SolveError> {
    if env.cancel.is_cancelled() {
        return Err(WorkerError::Cancelled.into());
    }
    let ran = match &env.op.kind {
        OpKind::Exec(exec) => worker.exec(env, exec),
        OpKind::Copy(copy) => worker.copy(env, copy),
        OpKind::Mkdir { path, user } => worker.mkdir(env, path, user),
        other => {
            return Err(SolveError::NotAStep {
                kind: other.name().to_string(),
            });
        }
    };
    Ok(ran?)
}

/// Ctrl-C and SIGTERM stop the build: every sandbox is killed, temp dirs are removed.
struct SignalWatch {
    handle: signal_hook::iterator::Handle,
    caught: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalWatch {
    fn caught(&self) -> bool {
        self.caught.load(Ordering::SeqCst)
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch_signals(cancel: &Arc<CancelToken>) -> Result<SignalWatch, SolveError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(SolveError::Signals)?;
    let handle = signals.handle();
    let caught = Arc::new(AtomicBool::new(false));
    let flag = caught.clone();
    let cancel = cancel.clone();
    let thread = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, Ordering::SeqCst);
            cancel.cancel();
        }
    });
    Ok(SignalWatch {
        handle,
        caught,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests;
