//! The solver through a worker that runs nothing: plans the compiler makes from Dockerfile
//! text are solved in stores of their own (temp dirs), and [`FakeWorker`] writes a small
//! tar layer per step through the store's blob writer (so every record names a real blob)
//! and records what it was asked to run, when, with which inputs, and whether its cancel
//! token fired. Steps can be given a delay (spent waiting on the token) or a failure.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rbuild_cache::action::LayerRecord;
use rbuild_cache::{Digest, Store};
use rbuild_compiler::instructions::from_ast::plan_source;
use rbuild_compiler::plan::{CopyOp, ExecOp, NoBaseConfigs, OpKind, Plan};
use rbuild_compress::{Compression, ManifestFormat};

use super::{OpResult, SolveError, solve};
use crate::events::{Events, Location, NoEvents, TransferEvents};
use crate::remote_cache::{CacheCompression, CacheExport, CacheImport, CacheMode, ExportTarget};
use crate::worker::{InputData, StepEnv, Worker, WorkerError};
use crate::{BuildRequest, context};

/// What the fake worker does with the steps whose instruction contains a pattern.
#[derive(Debug, Clone, Copy, Default)]
struct Behaviour {
    /// How long the step takes.
    delay: Duration,
    /// Whether it spends the delay waiting on its cancel token (a sandbox is killed) or
    /// sleeps through it (a step that finishes anyway).
    ignores_cancel: bool,
    /// Whether it fails after the delay.
    fails: bool,
}

/// One step the fake worker was asked to run.
#[derive(Debug, Clone)]
struct Call {
    /// The op's instruction.
    description: String,
    /// Per input: the layer digests of a file system, the selection digest of context
    /// files.
    inputs: Vec<Vec<String>>,
    started: Instant,
    ended: Instant,
    /// Whether its cancel token had fired when it returned.
    cancelled: bool,
    /// The layer it wrote.
    layer: Option<LayerRecord>,
}

#[derive(Debug, Default)]
struct FakeWorker {
    rules: Vec<(String, Behaviour)>,
    calls: Mutex<Vec<Call>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

/// Counts a step as running until dropped.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeWorker {
    fn with(mut self, pattern: &str, behaviour: Behaviour) -> FakeWorker {
        self.rules.push((pattern.to_string(), behaviour));
        self
    }

    fn slow(self, pattern: &str, delay: Duration) -> FakeWorker {
        self.with(
            pattern,
            Behaviour {
                delay,
                ..Behaviour::default()
            },
        )
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The instructions it was asked to run, in the order they started.
    fn asked(&self) -> Vec<String> {
        let mut calls = self.calls();
        calls.sort_by_key(|c| c.started);
        calls.into_iter().map(|c| c.description).collect()
    }

    /// The call whose instruction contains `pattern` (exactly one).
    fn call(&self, pattern: &str) -> Call {
        let calls: Vec<Call> = self
            .calls()
            .into_iter()
            .filter(|c| c.description.contains(pattern))
            .collect();
        assert_eq!(calls.len(), 1, "calls matching {pattern:?}: {calls:#?}");
        calls.into_iter().next().unwrap()
    }

    fn run(&self, step: &StepEnv<'_>) -> Result<Option<LayerRecord>, WorkerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let running = Running(&self.running);
        let started = Instant::now();
        let description = step.op.description.clone();
        let behaviour = self
            .rules
            .iter()
            .find(|(p, _)| description.contains(p.as_str()))
            .map(|(_, b)| *b)
            .unwrap_or_default();
        let woken = if behaviour.ignores_cancel {
            std::thread::sleep(behaviour.delay);
            false
        } else {
            step.cancel.wait(behaviour.delay)
        };
        let inputs: Vec<Vec<String>> = step
            .inputs
            .iter()
            .map(|i| match i {
                InputData::Layers(layers) => layers.iter().map(|l| l.digest.to_string()).collect(),
                InputData::Context(selection, _) => vec![selection.digest.to_string()],
                InputData::Download(d) => vec![d.digest.clone()],
            })
            .collect();
        let outcome = if woken {
            Err(WorkerError::Cancelled)
        } else if behaviour.fails {
            Err(WorkerError::Other(
                format!("process {description:?} did not complete successfully: exit code 1")
                    .into(),
            ))
        } else if matches!(step.op.kind, OpKind::Mkdir { .. }) {
            // As WORKDIR of a directory that exists: no layer.
            Ok(None)
        } else {
            // The layer's content follows from the step and its inputs alone, so the same
            // step on the same inputs writes the same blob.
            let content = format!("{description}\n{inputs:?}\n");
            write_layer(&step.settings.store, &content)
                .map(Some)
                .map_err(WorkerError::Other)
        };
        drop(running);
        self.calls.lock().unwrap().push(Call {
            description,
            inputs,
            started,
            ended: Instant::now(),
            cancelled: step.cancel.is_cancelled(),
            layer: outcome.as_ref().ok().cloned().flatten(),
        });
        outcome
    }
}

impl Worker for FakeWorker {
    fn exec(&self, step: &StepEnv<'_>, _: &ExecOp) -> Result<Option<LayerRecord>, WorkerError> {
        self.run(step)
    }

    fn copy(&self, step: &StepEnv<'_>, _: &CopyOp) -> Result<Option<LayerRecord>, WorkerError> {
        self.run(step)
    }

    fn mkdir(
        &self,
        step: &StepEnv<'_>,
        _: &str,
        _: &str,
    ) -> Result<Option<LayerRecord>, WorkerError> {
        self.run(step)
    }
}

/// A one-file uncompressed layer holding `content`, stored through the blob writer.
fn write_layer(
    store: &Store,
    content: &str,
) -> Result<LayerRecord, Box<dyn std::error::Error + Send + Sync>> {
    let name = format!("step-{}", &Digest::of(content.as_bytes()).hex()[..12]);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, &name, content.as_bytes())?;
    let bytes = tar.into_inner()?;
    let mut writer = store.blob_writer(None)?;
    writer.write_all(&bytes)?;
    let committed = writer.commit()?;
    Ok(LayerRecord {
        digest: committed.digest,
        diff_id: committed.digest,
        size: committed.size,
        media_type: Compression::None
            .media_type(ManifestFormat::Oci)
            .unwrap()
            .into(),
    })
}

/// Records the events the assertions read; shows nothing.
#[derive(Debug, Default)]
struct Recorded {
    numbers: NoEvents,
    steps: Mutex<BTreeMap<usize, String>>,
    cached: Mutex<Vec<usize>>,
    misses: Mutex<Vec<(usize, String)>>,
    failed: Mutex<Vec<(usize, String)>>,
    warnings: Mutex<Vec<(String, String)>>,
}

impl Recorded {
    fn description(&self, step: usize) -> String {
        self.steps.lock().unwrap()[&step].clone()
    }

    /// The instructions reported as cached.
    fn cached(&self) -> Vec<String> {
        let cached = self.cached.lock().unwrap().clone();
        cached.into_iter().map(|s| self.description(s)).collect()
    }

    fn failed(&self) -> Vec<(String, String)> {
        let failed = self.failed.lock().unwrap().clone();
        failed
            .into_iter()
            .map(|(s, m)| (self.description(s), m))
            .collect()
    }
}

impl Events for Recorded {
    fn reserve(&self, count: usize, plan_steps: usize) -> usize {
        self.numbers.reserve(count, plan_steps)
    }
    fn start(&self, step: usize, _: &str, description: &str) {
        self.steps.lock().unwrap().insert(step, description.into());
    }
    fn start_source(&self, step: usize, _: &str, description: &str) {
        self.steps.lock().unwrap().insert(step, description.into());
    }
    fn line(&self, _: usize, _: &[u8]) {}
    fn cached(&self, step: usize) {
        self.cached.lock().unwrap().push(step);
    }
    fn miss(&self, step: usize, reason: &str) {
        self.misses.lock().unwrap().push((step, reason.into()));
    }
    fn layer(&self, _: usize, _: u64) {}
    fn done(&self, _: usize, _: Duration) {}
    fn failed(&self, step: usize, message: &str, _: Option<Location<'_>>) {
        self.failed.lock().unwrap().push((step, message.into()));
    }
    fn warn(&self, code: &str, message: &str) {
        self.warnings
            .lock()
            .unwrap()
            .push((code.into(), message.into()));
    }
    fn transfer(&self, action: &str, subject: &str) -> Box<dyn TransferEvents> {
        self.numbers.transfer(action, subject)
    }
}

/// A store and a context directory in a temp dir of their own.
struct Workspace {
    _dir: tempfile::TempDir,
    store: Store,
    context: PathBuf,
}

/// One solve: the plan, the result of every op (or the error) and the events.
struct Solved {
    plan: Plan,
    results: Result<Vec<Option<OpResult>>, SolveError>,
    events: Recorded,
}

impl Solved {
    fn results(&self) -> &[Option<OpResult>] {
        match &self.results {
            Ok(r) => r,
            Err(e) => panic!("the solve failed: {}", crate::error::chain_text(e)),
        }
    }

    /// (stage, instruction) -> key of every op with a result.
    fn keys(&self) -> BTreeMap<(String, String), Digest> {
        self.plan
            .ops
            .iter()
            .zip(self.results())
            .filter_map(|(op, r)| {
                let stage = self.plan.stages[op.stage].label();
                r.as_ref().map(|r| ((stage, op.description.clone()), r.key))
            })
            .collect()
    }

    /// The result of the step whose instruction contains `pattern`.
    fn step(&self, pattern: &str) -> &OpResult {
        let found: Vec<&OpResult> = self
            .plan
            .ops
            .iter()
            .zip(self.results())
            .filter(|(op, _)| is_step(&op.kind) && op.description.contains(pattern))
            .filter_map(|(_, r)| r.as_ref())
            .collect();
        assert_eq!(found.len(), 1, "steps matching {pattern:?}");
        found[0]
    }

    fn step_count(&self) -> usize {
        self.plan.ops.iter().filter(|op| is_step(&op.kind)).count()
    }
}

fn is_step(kind: &OpKind) -> bool {
    matches!(
        kind,
        OpKind::Exec(_) | OpKind::Copy(_) | OpKind::Mkdir { .. }
    )
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let context = dir.path().join("context");
        std::fs::create_dir(&context).unwrap();
        Workspace {
            _dir: dir,
            store,
            context,
        }
    }

    fn file(&self, name: &str, content: &str) -> &Workspace {
        std::fs::write(self.context.join(name), content).unwrap();
        self
    }

    /// A request for `dockerfile` (written into the context) with at most `jobs` steps at once.
    fn request(&self, dockerfile: &str, jobs: usize) -> BuildRequest {
        self.file("Dockerfile", dockerfile);
        let mut request = BuildRequest::new(self.store.clone(), &self.context).unwrap();
        request.jobs = jobs;
        request
    }

    fn solve(&self, request: &BuildRequest, worker: &FakeWorker) -> Solved {
        self.solve_with_import(request, worker, false)
    }

    /// Solves, with the request's `--cache-from`s imported when `import` is set.
    fn solve_with_import(
        &self,
        request: &BuildRequest,
        worker: &FakeWorker,
        import: bool,
    ) -> Solved {
        let source = context::load(request).unwrap();
        let plan = plan_source(
            &source.dockerfile_text,
            &request.plan_options,
            &NoBaseConfigs,
        )
        .unwrap();
        let events = Recorded::default();
        let remote = import.then(|| crate::remote_cache::RemoteCache::import(request, &events));
        let results = solve(&crate::solver::Problem {
            settings: request,
            source: &source,
            plan: &plan,
            bases: &crate::bases::Bases::default(),
            progress: &events,
            remote: remote.as_ref(),
            worker,
            multi: None,
        });
        Solved {
            plan,
            results,
            events,
        }
    }
}

/// Three stages used by a fourth, and one nothing uses.
const APP: &str = "\
FROM scratch AS deps
COPY a.txt /a.txt
RUN make deps

FROM scratch AS tools
RUN make tools

FROM scratch AS docs
RUN make docs

FROM deps AS app
WORKDIR /app
COPY b.txt .
ARG MODE=debug
RUN make app
COPY --from=tools /tools /tools
RUN make check
";

/// The steps of APP's target, `app`, and of the stages it uses.
const APP_STEPS: [&str; 8] = [
    "COPY a.txt",
    "make deps",
    "make tools",
    "WORKDIR /app",
    "COPY b.txt",
    "make app",
    "COPY --from=tools",
    "make check",
];

fn app_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .file("c.txt", "not copied\n");
    ws
}

/// Asserts that `worker` was asked to run exactly one step per pattern and nothing else.
fn assert_asked(worker: &FakeWorker, patterns: &[&str]) {
    let asked = worker.asked();
    let unmatched: Vec<&String> = asked
        .iter()
        .filter(|a| !patterns.iter().any(|p| a.contains(p)))
        .collect();
    assert!(
        unmatched.is_empty(),
        "asked for {unmatched:?} too; all: {asked:?}"
    );
    for p in patterns {
        assert_eq!(
            asked.iter().filter(|a| a.contains(p)).count(),
            1,
            "{p:?} in {asked:?}"
        );
    }
}

#[test]
fn a_second_solve_of_the_same_dockerfile_and_context_asks_the_worker_for_nothing() {
    let ws = app_workspace();
    let request = ws.request(APP, 4);
    let first_worker = FakeWorker::default();
    let first = ws.solve(&request, &first_worker);
    assert_asked(&first_worker, &APP_STEPS);
    assert!(first.events.cached().is_empty());

    // The worker got each step's inputs as the solver had them: the parent's layers, the
    // layers of the stage a COPY --from reads.
    let check = first_worker.call("make check");
    let copied = first.step("COPY --from=tools");
    let copied_layers: Vec<String> = copied.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(check.inputs, [copied_layers]);
    let tools: Vec<String> = first
        .step("make tools")
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    assert!(
        first_worker
            .call("COPY --from=tools")
            .inputs
            .contains(&tools),
        "{:?}",
        first_worker.call("COPY --from=tools").inputs
    );
    // What it wrote is what the results hold, on top of the parent's layers.
    assert_eq!(
        copied.layers.last(),
        first_worker.call("COPY --from=tools").layer.as_ref()
    );
    assert!(!first.step("WORKDIR").added);

    let second_worker = FakeWorker::default();
    let second = ws.solve(&request, &second_worker);
    assert_eq!(second_worker.asked(), Vec::<String>::new());
    assert_eq!(second.keys(), first.keys());
    let cached = second.events.cached();
    assert_eq!(cached.len(), second.step_count(), "{cached:?}");
    for p in APP_STEPS {
        let (a, b) = (first.step(p), second.step(p));
        assert!(b.cached, "{p}");
        assert_eq!((a.layers.clone(), a.created), (b.layers.clone(), b.created));
    }
}

#[test]
fn keys_depend_on_neither_the_store_nor_the_context_path_nor_jobs() {
    let (one, two) = (app_workspace(), app_workspace());
    assert_ne!(one.store.root(), two.store.root());
    assert_ne!(one.context, two.context);
    let a = one.solve(&one.request(APP, 4), &FakeWorker::default());
    let b = two.solve(&two.request(APP, 1), &FakeWorker::default());
    let keys = a.keys();
    assert!(keys.len() > APP_STEPS.len(), "{keys:?}");
    assert_eq!(keys, b.keys());
    // The records too: the layers the steps wrote are found under the same keys.
    let record_keys = |s: &Solved| -> Vec<Digest> {
        s.results().iter().flatten().map(|r| r.record_key).collect()
    };
    assert_eq!(record_keys(&a), record_keys(&b));
}

#[test]
fn a_changed_build_arg_reruns_exactly_the_steps_after_it() {
    let ws = app_workspace();
    let mut request = ws.request(APP, 4);
    ws.solve(&request, &FakeWorker::default());
    request
        .plan_options
        .build_args
        .insert("MODE".into(), "release".into());
    let worker = FakeWorker::default();
    let solved = ws.solve(&request, &worker);
    assert_asked(&worker, &["make app", "COPY --from=tools", "make check"]);
    let misses = solved.events.misses.lock().unwrap().clone();
    assert!(
        misses.iter().any(|(_, reason)| reason.contains("MODE")),
        "{misses:?}"
    );
}

#[test]
fn a_changed_context_file_reruns_the_copy_that_selects_it_and_what_follows() {
    let ws = app_workspace();
    let request = ws.request(APP, 4);
    ws.solve(&request, &FakeWorker::default());

    // A file no COPY selects changes nothing.
    ws.file("c.txt", "still not copied\n");
    let worker = FakeWorker::default();
    ws.solve(&request, &worker);
    assert_asked(&worker, &[]);

    ws.file("b.txt", "b, changed\n");
    let worker = FakeWorker::default();
    let solved = ws.solve(&request, &worker);
    assert_asked(
        &worker,
        &["COPY b.txt", "make app", "COPY --from=tools", "make check"],
    );
    let misses = solved.events.misses.lock().unwrap().clone();
    assert!(
        misses.iter().any(|(_, reason)| reason.contains("b.txt")),
        "{misses:?}"
    );

    ws.file("a.txt", "a, changed\n");
    let worker = FakeWorker::default();
    ws.solve(&request, &worker);
    let mut all_but_tools = APP_STEPS.to_vec();
    all_but_tools.retain(|s| *s != "make tools");
    assert_asked(&worker, &all_but_tools);
}

#[test]
fn a_changed_instruction_reruns_it_and_the_steps_that_read_it() {
    let ws = app_workspace();
    ws.solve(&ws.request(APP, 4), &FakeWorker::default());
    let changed = APP.replace("RUN make tools", "RUN make tools --verbose");
    let worker = FakeWorker::default();
    ws.solve(&ws.request(&changed, 4), &worker);
    // The app stage reads tools only from its COPY --from: the steps before it are hits.
    assert_asked(
        &worker,
        &["make tools --verbose", "COPY --from=tools", "make check"],
    );
}

#[test]
fn no_cache_reruns_every_step_and_no_cache_filter_only_the_named_stage() {
    let ws = app_workspace();
    let mut request = ws.request(APP, 4);
    ws.solve(&request, &FakeWorker::default());

    request.no_cache_filter = vec!["tools".into()];
    let worker = FakeWorker::default();
    let solved = ws.solve(&request, &worker);
    // The steps reading tools keep their keys (the stage's key did not change), so they
    // are hits.
    assert_asked(&worker, &["make tools"]);
    assert_eq!(solved.events.cached().len(), APP_STEPS.len() - 1);

    request.no_cache_filter.clear();
    request.no_cache = true;
    let worker = FakeWorker::default();
    ws.solve(&request, &worker);
    assert_asked(&worker, &APP_STEPS);
}

#[test]
fn the_target_stage_asks_only_for_the_steps_it_needs() {
    let ws = app_workspace();
    let mut request = ws.request(APP, 4);
    request.plan_options.target = Some("tools".into());
    let worker = FakeWorker::default();
    ws.solve(&request, &worker);
    assert_asked(&worker, &["make tools"]);

    request.plan_options.target = Some("deps".into());
    let worker = FakeWorker::default();
    ws.solve(&request, &worker);
    assert_asked(&worker, &["COPY a.txt", "make deps"]);

    // Without --target the last stage is built, and `docs`, which it does not use, never
    // runs (APP_STEPS has no `make docs`).
    request.plan_options.target = None;
    let worker = FakeWorker::default();
    ws.solve(&request, &worker);
    assert_asked(
        &worker,
        &[
            "WORKDIR",
            "COPY b.txt",
            "make app",
            "COPY --from",
            "make check",
        ],
    );
}

/// Four independent stages of one slow RUN each, copied into a last stage.
const FOUR_STAGES: &str = "\
FROM scratch AS s1
RUN slow 1
FROM scratch AS s2
RUN slow 2
FROM scratch AS s3
RUN slow 3
FROM scratch AS s4
RUN slow 4
FROM scratch
COPY --from=s1 /a /1
COPY --from=s2 /a /2
COPY --from=s3 /a /3
COPY --from=s4 /a /4
";

#[test]
fn independent_stages_run_concurrently_up_to_jobs_and_never_more() {
    for jobs in [2, 3, 4] {
        let ws = Workspace::new();
        let worker = FakeWorker::default().slow("-c slow", Duration::from_millis(400));
        ws.solve(&ws.request(FOUR_STAGES, jobs), &worker).results();
        assert_eq!(worker.asked().len(), 8);
        for call in worker
            .calls()
            .iter()
            .filter(|c| c.description.contains("-c slow"))
        {
            assert!(call.ended - call.started >= Duration::from_millis(400));
        }
        assert_eq!(
            worker.most_running.load(Ordering::SeqCst),
            jobs,
            "steps running at once with jobs={jobs}"
        );
    }
}

#[test]
fn one_job_runs_one_step_at_a_time() {
    let ws = Workspace::new();
    let worker = FakeWorker::default().slow("-c slow", Duration::from_millis(100));
    ws.solve(&ws.request(FOUR_STAGES, 1), &worker).results();
    assert_eq!(worker.most_running.load(Ordering::SeqCst), 1);
    let mut calls = worker.calls();
    assert_eq!(calls.len(), 8);
    calls.sort_by_key(|c| c.started);
    for pair in calls.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "{} started before {} ended",
            pair[1].description,
            pair[0].description
        );
    }
}

/// A quick step (followed by another), a failing one and a slow one, all at once.
const FAILING: &str = "\
FROM scratch AS quick
RUN quick
RUN after quick
FROM scratch AS failing
RUN fail here
FROM scratch AS slow
RUN slow
FROM scratch
COPY --from=quick /a /q
COPY --from=failing /a /f
COPY --from=slow /a /s
";

#[test]
fn the_first_failure_cancels_the_running_steps_and_starts_no_new_one() {
    let ws = Workspace::new();
    let worker = FakeWorker::default()
        .with(
            "-c fail here",
            Behaviour {
                delay: Duration::from_millis(100),
                fails: true,
                ..Behaviour::default()
            },
        )
        // Finishes after the failure, whatever its token says.
        .with(
            "-c quick",
            Behaviour {
                delay: Duration::from_millis(600),
                ignores_cancel: true,
                ..Behaviour::default()
            },
        )
        .slow("-c slow", Duration::from_secs(60));
    let started = Instant::now();
    let solved = ws.solve(&ws.request(FAILING, 4), &worker);
    let took = started.elapsed();
    let Err(e) = &solved.results else {
        panic!("the build succeeded: {:?}", worker.asked());
    };
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // The slow step's token woke it; the quick one's fired while it ran.
    let slow = worker.call("-c slow");
    assert!(slow.cancelled);
    assert!(slow.ended - slow.started < Duration::from_secs(30));
    assert!(worker.call("-c quick").cancelled);
    // The step that became ready after the failure never started.
    assert_asked(&worker, &["-c quick", "-c fail here", "-c slow"]);

    // The error names the failing step: its Dockerfile line, its instruction, its cause.
    let text = crate::error::chain_text(e);
    assert!(text.contains("Dockerfile:5"), "{text}");
    assert!(text.contains("RUN /bin/sh -c fail here failed"), "{text}");
    assert!(text.contains("exit code 1"), "{text}");
    // It alone is reported failed: the cancelled step is not.
    let failed = solved.events.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].0.contains("fail here"), "{failed:?}");
}

/// Builds `dockerfile` in `ws` through [`crate::build_with`], exporting every step's record
/// into the cache directory `dest`.
fn export_cache(ws: &Workspace, dockerfile: &str, dest: &std::path::Path) -> FakeWorker {
    let mut request = ws.request(dockerfile, 4);
    request.cache_to.push(CacheExport {
        target: ExportTarget::Local(dest.to_path_buf()),
        mode: CacheMode::Max,
        compression: CacheCompression::Uncompressed,
        ignore_error: false,
    });
    let worker = FakeWorker::default();
    crate::build_with(&request, &Recorded::default(), &worker).unwrap();
    worker
}

#[test]
fn an_imported_layer_that_cannot_be_fetched_is_built_instead() {
    const CHAIN: &str = "FROM scratch\nCOPY a.txt /a.txt\nRUN make one\nRUN make two\n";
    let cache_dir = tempfile::tempdir().unwrap();
    let dest = cache_dir.path().join("cache");
    let exporter = app_workspace();
    let exported = export_cache(&exporter, CHAIN, &dest);
    assert_asked(&exported, &["COPY a.txt", "make one", "make two"]);

    // The layer of `RUN make one` is gone from the cache directory.
    let gone = exported.call("make one").layer.unwrap();
    std::fs::remove_file(dest.join("blobs/sha256").join(gone.digest.hex())).unwrap();

    // Another store, another context directory with the same files.
    let ws = app_workspace();
    let mut request = ws.request(CHAIN, 4);
    request
        .cache_from
        .push(CacheImport::Local { src: dest.clone() });
    let worker = FakeWorker::default();
    let solved = ws.solve_with_import(&request, &worker, true);
    let results = solved.results();

    // Only that step ran, and wrote the same layer; the steps around it came from the
    // import, their layers fetched into the store.
    assert_asked(&worker, &["make one"]);
    assert_eq!(worker.call("make one").layer.as_ref(), Some(&gone));
    let warnings = solved.events.warnings.lock().unwrap().clone();
    assert!(
        warnings.iter().any(|(code, message)| code == "cache-import"
            && message.contains(&gone.digest.to_string())
            && message.contains("building those steps instead")),
        "{warnings:?}"
    );
    let target = solved.plan.target_stage().result.unwrap();
    let layers = &results[target].as_ref().unwrap().layers;
    assert_eq!(layers.len(), 3);
    for layer in layers.iter() {
        assert!(
            ws.store.has_blob(&layer.digest),
            "{} is not in the store",
            layer.digest
        );
    }
    assert!(solved.step("make two").cached);
    assert!(solved.step("COPY a.txt").cached);
}
