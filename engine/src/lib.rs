//! The build engine: from a Dockerfile and a context to an image in the store, without the
//! command line.
//!
//! [`build`] takes a [`BuildRequest`] (the store, the context, the Dockerfile's options,
//! outputs, caches) and reports what happens to an [`Events`] sink:
//!
//! 1. the context and the Dockerfile are loaded ([`context`]);
//! 2. the Dockerfile is planned once without base image configs to learn which base images
//!    it names; each is resolved once ([`bases`]: the store's copy, else pulled), then the
//!    Dockerfile is planned again with their configs (inherited ENV, WORKDIR, ONBUILD);
//! 3. the solver gives every op a cache key; hits come from the action cache (and an
//!    imported remote cache), misses run as soon as their inputs are ready, up to
//!    [`BuildRequest::jobs`] at once, through a [`Worker`];
//! 4. the target stage's layers, config and history become a manifest in the store
//!    ([`image`]), then every output is written ([`output`]) and the cache exported
//!    ([`remote_cache`]).
//!
//! Pulls and pushes of whole images ([`pull`], [`push`]) and the snapshots runs use
//! ([`snapshots`]) live here too, so the command line and embedders share them.
//!
//! # Example
//!
//! Build a Dockerfile into a store of your own, without the command line:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rbuild_engine::{BuildRequest, NoEvents};
//!
//! let context = tempfile::tempdir()?;
//! std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n")?;
//! std::fs::write(context.path().join("hello.txt"), "hello\n")?;
//! let root = tempfile::tempdir()?;
//! let store = rbuild_cache::Store::open(root.path().join("store"))?;
//!
//! let mut request = BuildRequest::new(store.clone(), context.path())?;
//! request.tags.push("localhost/hello:latest".into());
//! let built = rbuild_engine::build(&request, &NoEvents::default())?;
//!
//! assert_eq!(store.resolve("localhost/hello:latest")?.digest().to_string(), built.id);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attest;
pub mod bake;
pub mod bases;
pub mod check;
pub mod context;
pub mod debug_shell;
pub mod dockerfile;
pub mod error;
pub mod events;
mod exec;
mod fileops;
pub mod git;
pub mod image;
pub mod inventory;
mod keys;
pub mod maintain;
pub mod missing;
pub mod names;
pub mod output;
pub mod pull;
pub mod push;
pub mod registry;
pub mod remote_cache;
pub mod repro;
pub mod secrets;
pub mod snapshots;
mod solver;
pub mod stdout;
pub mod transfer;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rbuild_cache::Store;
use rbuild_compiler::instructions::from_ast::plan_source;
use rbuild_compiler::plan::{NoBaseConfigs, Plan, PlanOptions};
use rbuild_compress::Compression;
use rbuild_executor::idmap::IdMap;

pub use error::Error;
pub use events::{Events, Location, NoEvents, TransferEvents};
pub use worker::{SandboxWorker, Worker};

pub use secrets::Secret;

/// What to build and how: everything a build needs, resolved before any work starts (the
/// `rbuild build` command makes one from its flags and the config file).
#[derive(Debug)]
pub struct BuildRequest {
    /// The store.
    pub store: Store,
    /// Where the context comes from.
    pub context: context::ContextArg,
    /// `-f`.
    pub file: Option<PathBuf>,
    /// `--build-context NAME=VALUE`s, by the key names are matched with
    /// ([`context::parse_named_context`]).
    pub named_contexts: BTreeMap<String, context::NamedContextArg>,
    /// Planner options (`--target`, `--build-arg`, `--platform`).
    pub plan_options: PlanOptions,
    /// `-t`, normalized.
    pub tags: Vec<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`, lower-cased stage names.
    pub no_cache_filter: Vec<String>,
    /// `--pull`.
    pub pull: bool,
    /// `--secret`s by id (values in memory only).
    pub secrets: BTreeMap<String, Secret>,
    /// `--ssh` sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Several target platforms (`--platform linux/amd64,linux/arm64`): one image each,
    /// under one index. Empty (or one): [`PlanOptions::target_platform`] alone.
    pub platforms: Vec<rbuild_compiler::plan::Platform>,
    /// The network of RUN steps that say `default` (`--network`).
    pub network: Network,
    /// The entitlements granted with `--allow`.
    pub allow: Entitlements,
    /// `--add-host`: `(host name, address)` entries added to every RUN step's `/etc/hosts`.
    pub add_hosts: Vec<(String, String)>,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// The manifest and config format of the image (`--format`).
    pub format: ImageFormat,
    /// `--compression` (how build steps write layers; uncompressed unless given).
    pub compression: Compression,
    /// Outputs (`--output`, `--push`, `--compression*`, `--annotation`, `--metadata-file`).
    pub output: output::OutputSettings,
    /// `--jobs`.
    pub jobs: usize,
    /// `--iidfile`.
    pub iidfile: Option<PathBuf>,
    /// `--explain-cache`.
    pub explain: bool,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: Option<i64>,
    /// How registries are reached (pulls of base images, pushes, the remote cache).
    pub registry: registry::RegistryConfig,
    /// How ids map into the sandboxes.
    pub id_map: IdMap,
    /// `--cache-from`s.
    pub cache_from: Vec<remote_cache::CacheImport>,
    /// `--cache-to`s.
    pub cache_to: Vec<remote_cache::CacheExport>,
    /// What the layers and archives the build reads may hold (`RBUILD_MAX_LAYER_SIZE`).
    pub limits: rbuild_tarlimits::Limits,
    /// The automatic prune after a build (config `gc.threshold`, `gc.keep_storage`).
    pub gc: maintain::GcPolicy,
    /// The resource limits of every RUN step (config `limits.*`, `--memory`, `--cpu-quota`,
    /// ...); by default only [`DEFAULT_STEP_PIDS`] processes.
    pub step_limits: rbuild_executor::cgroup::Limits,
    /// What a failed RUN step does before the build ends (`--on-error`).
    pub on_error: debug_shell::OnError,
    /// The attestations attached to the image (`--sbom`, `--provenance`, `--attest`).
    pub attest: attest::Attest,
    /// How long one `git` command of a git input may run (`RBUILD_GIT_TIMEOUT`); default
    /// [`git::GIT_TIMEOUT`].
    pub git_timeout: std::time::Duration,
    /// The package inventory's reading of the layers this build unpacks, for its SBOM
    /// (start with an empty one; builds may share one).
    pub layer_scans: std::sync::Arc<inventory::LayerScans>,
}

impl BuildRequest {
    /// A request to build the Dockerfile of the context directory `context` into `store`
    /// with docker's defaults: the host's platform, no tags (the image is kept unnamed;
    /// push [`BuildRequest::tags`]), the cache used, layers uncompressed, one output into
    /// the store, as many parallel steps as CPUs, the caller's user-namespace mapping and
    /// the default limits. Change the fields to ask for more.
    pub fn new(store: Store, context: impl Into<PathBuf>) -> Result<BuildRequest, Error> {
        let host = rbuild_compiler::plan::Platform::host();
        Ok(BuildRequest {
            id_map: IdMap::for_current_user(),
            store,
            context: context::ContextArg::new(&context.into(), None)?,
            file: None,
            named_contexts: BTreeMap::new(),
            plan_options: PlanOptions {
                target_platform: host.clone(),
                build_platform: host,
                ..PlanOptions::default()
            },
            tags: Vec::new(),
            platforms: Vec::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            pull: false,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            network: Network::Default,
            allow: Entitlements::default(),
            add_hosts: Vec::new(),
            labels: BTreeMap::new(),
            format: ImageFormat::Oci,
            compression: Compression::None,
            output: output::OutputSettings::from_flags(&output::OutputFlags::default(), &[])?,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            iidfile: None,
            explain: false,
            epoch: None,
            registry: registry::RegistryConfig::default(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            limits: rbuild_tarlimits::Limits::default(),
            gc: maintain::GcPolicy::default(),
            on_error: debug_shell::OnError::Fail,
            git_timeout: git::GIT_TIMEOUT,
            step_limits: rbuild_executor::cgroup::Limits {
                pids: Some(DEFAULT_STEP_PIDS),
                ..Default::default()
            },
            attest: attest::Attest::default(),
            layer_scans: Default::default(),
        })
    }
}

impl BuildRequest {
    /// Where the layers the build unpacks are read for the SBOM as they stream, when the
    /// build attaches one.
    pub(crate) fn layer_scans(&self) -> Option<&std::sync::Arc<inventory::LayerScans>> {
        self.attest.sbom.then_some(&self.layer_scans)
    }

    /// The platforms the build makes images for: [`BuildRequest::platforms`] when it names
    /// two or more, else the plan options' target platform.
    pub fn target_platforms(&self) -> Vec<rbuild_compiler::plan::Platform> {
        if self.platforms.len() > 1 {
            self.platforms.clone()
        } else {
            vec![self.plan_options.target_platform.clone()]
        }
    }
}

/// How many processes a RUN step may have at once unless configured otherwise: enough for
/// any parallel build (`make -j`), few enough that a fork bomb ends at it (podman's
/// default).
pub const DEFAULT_STEP_PIDS: u64 = 2048;

/// What a build may do beyond the default sandbox (`--allow`, buildx's entitlements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entitlements {
    /// `network.host`: RUN steps may use the host's network (`--network host`,
    /// `RUN --network=host`).
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure` steps get every privilege of their
    /// user namespace (all capabilities, no system call filter, /proc and /sys unmasked).
    pub security_insecure: bool,
}

/// The network of a RUN step that does not say (`RUN --network=default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The default: a network namespace of the build's own, shared by its RUN steps, with
    /// outbound access only.
    #[default]
    Default,
    /// No network: only `lo`.
    None,
    /// The host's network (needs [`Entitlements::network_host`]).
    Host,
}

/// The format of the image's manifest and config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// OCI image manifest and config.
    #[default]
    Oci,
    /// Docker's v2 schema 2 manifest and config.
    Docker,
}

/// Whether a build arg's name says it holds a credential (`PASSWORD`, `GITHUB_TOKEN`,
/// `aws_secret_access_key`, `NPM_AUTH`...).
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "_AUTH",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper == "AUTH"
}

#[cfg(test)]
mod tests {
    use crate::looks_secret;

    #[test]
    fn secret_looking_build_args() {
        for n in [
            "PASSWORD",
            "db_password",
            "GITHUB_TOKEN",
            "aws_secret_access_key",
            "NPM_AUTH",
            "API_KEY",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["VERSION", "BASE", "HTTP_PROXY", "KEYBOARD", "AUTHOR"] {
            assert!(!looks_secret(n), "{n}");
        }
    }
}

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    /// The image id: `sha256:` digest of its manifest.
    pub id: String,
    /// Its first name (`-t`), or the id when untagged.
    pub name: String,
    /// Its manifest.
    pub descriptor: oci_spec::image::Descriptor,
    /// Whether an output was written to stdout (then the id is not printed there).
    pub stdout_used: bool,
    /// Whether an output holds an image (not only `type=local`/`type=tar`): else no id is
    /// printed or written, as with buildx.
    pub makes_image: bool,
    /// The base images the build used: the name each was found under in the store, and its
    /// manifest.
    pub bases: Vec<(String, oci_spec::image::Descriptor)>,
}

/// Warnings about the build args: names that look like credentials.
fn warn_build_args(settings: &BuildRequest, progress: &dyn Events) {
    for name in settings.plan_options.build_args.keys() {
        if looks_secret(name) {
            progress.warn(
                "secret-build-arg",
                &format!(
                    "build arg {name} looks like a secret: build args are visible in the image history \
                     (`RUN |1 {name}=...`) and in cache records; pass it with --secret id={name},env={name} \
                     and RUN --mount=type=secret,id={name},env={name} instead"
                ),
            );
        }
    }
}

/// Runs a build, reporting to `progress`; its steps run in sandboxes ([`SandboxWorker`]).
pub fn build(settings: &BuildRequest, progress: &dyn Events) -> Result<Built, Error> {
    build_with(settings, progress, &SandboxWorker)
}

/// Runs a build, reporting to `progress`, with its steps run by `worker`.
///
/// With several [`BuildRequest::platforms`] the Dockerfile is planned and solved once per
/// platform, the solves side by side in one process: a step whose key is the same for two
/// platforms (a stage `FROM --platform=$BUILDPLATFORM`) runs once, the other solve waits for
/// it and takes its record. The images become one index (a Docker manifest list with
/// `--format docker`), which the outputs write.
pub fn build_with(
    settings: &BuildRequest,
    progress: &dyn Events,
    worker: &dyn Worker,
) -> Result<Built, Error> {
    build_beside(settings, progress, worker, None)
}

/// Runs a build as [`build_with`] does; with `beside`, side by side with other builds of one
/// process (a bake's targets): their solves share `beside`'s running steps, and its name
/// labels this build's steps.
pub(crate) fn build_beside(
    settings: &BuildRequest,
    progress: &dyn Events,
    worker: &dyn Worker,
    beside: Option<(&solver::Inflight, &str)>,
) -> Result<Built, Error> {
    let started = std::time::Instant::now();
    let build_started = jiff::Timestamp::now();
    warn_build_args(settings, progress);
    if let Some(note) = settings.id_map.single_id_note() {
        progress.warn("single-id", &note);
    }
    exec::remove_stale_step_dirs(settings);
    let source = context::load(settings)?;
    let remote = (!settings.cache_from.is_empty())
        .then(|| remote_cache::RemoteCache::import(settings, progress));
    let platforms = settings.target_platforms();
    if platforms.len() > 1 {
        check_multi_platform(settings, &platforms)?;
    }
    let plan_options = PlanOptions {
        named_contexts: context::plan_contexts(&settings.named_contexts, &source),
        ..settings.plan_options.clone()
    };
    let solved: Vec<Solved> = if platforms.len() == 1 && beside.is_none() {
        vec![solve_platform(
            settings,
            &source,
            &plan_options,
            None,
            progress,
            remote.as_ref(),
            worker,
        )?]
    } else {
        let own = solver::Inflight::default();
        let shared = beside.map_or(&own, |(i, _)| i);
        // The plan's warnings are shown once, not once per platform.
        let warned = AtomicBool::new(false);
        let solves: Vec<(PlanOptions, String)> = platforms
            .iter()
            .map(|p| {
                let label = match (beside, platforms.len()) {
                    (Some((_, name)), 1) => name.to_string(),
                    (Some((_, name)), _) => format!("{name} {p}"),
                    (None, _) => p.to_string(),
                };
                let options = PlanOptions {
                    target_platform: p.clone(),
                    ..plan_options.clone()
                };
                (options, label)
            })
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = solves
                .iter()
                .map(|(o, label)| {
                    let (source, remote, warned) = (&source, remote.as_ref(), &warned);
                    let group = Group {
                        inflight: shared,
                        label,
                        warned,
                    };
                    s.spawn(move || {
                        solve_platform(settings, source, o, Some(group), progress, remote, worker)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<_>, Error>>()
        })?
    };
    let descriptor = match solved.as_slice() {
        [one] => one.image.clone(),
        many => image::assemble_index(
            settings,
            &many.iter().map(|s| s.image.clone()).collect::<Vec<_>>(),
        )?,
    };
    if let Some(remote) = &remote {
        remote.note_push_source(&settings.store, &descriptor);
    }
    let attested = attestations(settings, &source, &solved, build_started)?;
    let exported = output::export(settings, &descriptor, &attested, progress)?;
    // The image as the store names it (its layers converted when an image output asked).
    let descriptor = exported
        .written
        .iter()
        .find(|w| w.kind == "image")
        .and_then(|w| w.descriptor.clone())
        .unwrap_or(descriptor);
    let pairs: Vec<(&Plan, &[Option<solver::OpResult>])> = solved
        .iter()
        .map(|s| (&s.plan, s.results.as_slice()))
        .collect();
    remote_cache::export(settings, &pairs, remote.as_ref(), &descriptor, progress)?;
    let id = descriptor.digest().to_string();
    let makes_image = settings.output.makes_image();
    if let Some(path) = settings.iidfile.as_ref().filter(|_| makes_image) {
        std::fs::write(path, &id).map_err(|source| Error::Iidfile {
            path: path.clone(),
            source,
        })?;
    }
    let (ran, cached) = solved
        .iter()
        .flat_map(|s| s.plan.ops.iter().zip(&s.results))
        .filter(|(op, _)| {
            matches!(
                op.kind,
                rbuild_compiler::plan::OpKind::Exec(_)
                    | rbuild_compiler::plan::OpKind::Copy(_)
                    | rbuild_compiler::plan::OpKind::Mkdir { .. }
            )
        })
        .filter_map(|(_, r)| r.as_ref())
        .fold((0, 0), |(ran, cached), r| {
            if r.cached {
                (ran, cached + 1)
            } else {
                (ran + 1, cached)
            }
        });
    tracing::info!(
        "built {id} in {:.2?}: {ran} steps run, {cached} from the cache",
        started.elapsed()
    );
    let name = settings.tags.first().cloned().unwrap_or_else(|| id.clone());
    if let Some(path) = &settings.output.metadata_file {
        let mut warnings: Vec<String> = Vec::new();
        for w in solved.iter().flat_map(|s| &s.plan.warnings) {
            if w.code != "stage-not-built" && !warnings.contains(&w.message) {
                warnings.push(w.message.clone());
            }
        }
        output::write_metadata(
            path,
            settings,
            &descriptor,
            &exported,
            started.elapsed(),
            &warnings,
        )?;
    }
    maintain::auto_gc(&settings.store, &settings.gc);
    Ok(Built {
        id,
        name,
        descriptor,
        stdout_used: settings.output.writes_stdout(),
        makes_image,
        bases: solved.iter().flat_map(|s| s.bases.clone()).collect(),
    })
}

/// The predicates of each platform's image (none unless asked), in the order of the
/// platforms.
fn attestations(
    settings: &BuildRequest,
    source: &context::Source,
    solved: &[Solved],
    started: jiff::Timestamp,
) -> Result<Vec<attest::PlatformPredicates>, Error> {
    if settings.attest.is_empty() {
        return Ok(Vec::new());
    }
    let finished = jiff::Timestamp::now();
    let mut out = Vec::new();
    for s in solved {
        let facts = attest::BuildFacts {
            settings,
            dockerfile_name: &source.dockerfile_name,
            dockerfile_text: &source.dockerfile_text,
            context_url: source.url(),
            plan: &s.plan,
            materials: s.materials.clone(),
            image: &s.image,
            stages: &s.scanned_stages,
            started,
            finished,
        };
        out.push(attest::predicates(&facts, &s.plan.target_platform)?);
    }
    Ok(out)
}

/// Refuses what cannot hold several platforms' images: a `type=docker` output (a docker
/// archive names one image per tag) and an inline cache (kept in one image's config), as
/// buildx refuses them.
fn check_multi_platform(
    settings: &BuildRequest,
    platforms: &[rbuild_compiler::plan::Platform],
) -> Result<(), Error> {
    let refuse = |what: String, hint| Error::MultiPlatform {
        what,
        count: platforms.len(),
        platforms: platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        hint,
    };
    if settings
        .output
        .outputs
        .iter()
        .any(|o| o.kind == output::OutputKind::Docker)
    {
        return Err(refuse(
            "the type=docker output".into(),
            "use type=oci, which holds the index, or build one --platform at a time",
        ));
    }
    if let Some(c) = settings
        .cache_to
        .iter()
        .find(|c| matches!(c.target, remote_cache::ExportTarget::Inline(_)))
    {
        let remote_cache::ExportTarget::Inline(r) = &c.target else {
            unreachable!("found as inline")
        };
        return Err(refuse(
            format!("--cache-to type=inline ({r})"),
            "export the cache with type=registry or type=local",
        ));
    }
    Ok(())
}

/// A solve beside others: the steps they share, its steps' label, and whether one of the
/// build's solves has shown the plan's warnings.
#[derive(Clone, Copy)]
struct Group<'a> {
    inflight: &'a solver::Inflight,
    label: &'a str,
    warned: &'a AtomicBool,
}

/// One platform's build: its plan, what each op gave, and its image in the store.
struct Solved {
    plan: Plan,
    results: Vec<Option<solver::OpResult>>,
    image: oci_spec::image::Descriptor,
    /// The other stages the SBOM attestation lists.
    scanned_stages: Vec<image::ScannedStage>,
    /// The base images, by the name each was found under.
    bases: Vec<(String, oci_spec::image::Descriptor)>,
    /// The base images and downloads it used, for its provenance.
    materials: Vec<attest::Material>,
}

/// Plans the Dockerfile for `options`' target platform, resolves its base images, solves
/// it (sharing running steps through `group` with the solves beside it) and
/// assembles its image.
fn solve_platform(
    settings: &BuildRequest,
    source: &context::Source,
    options: &PlanOptions,
    group: Option<Group<'_>>,
    progress: &dyn Events,
    remote: Option<&remote_cache::RemoteCache>,
    worker: &dyn Worker,
) -> Result<Solved, Error> {
    let text = &source.dockerfile_text;
    let name = &source.dockerfile_name;
    let diagnostic = |message: String| Error::Dockerfile {
        file: name.clone(),
        message,
    };

    // First plan: which base images the target needs.
    let first =
        plan_source(text, options, &NoBaseConfigs).map_err(|e| diagnostic(e.render(name, text)))?;
    // Stages for other operating systems plan (with their defaults) but are not built.
    if let Some(stage) = first
        .stages
        .iter()
        .find(|s| s.built && s.platform.os != "linux")
    {
        return Err(diagnostic(rbuild_compiler::parser::render_diagnostic(
            &format!(
                "stage {} is for {}: rbuild builds Linux images only",
                stage.label(),
                stage.platform
            ),
            stage.span,
            Some("`rbuild plan` shows the plan of such a stage"),
            name,
            text,
        )));
    }
    let bases = bases::resolve(
        settings,
        &first,
        bases::Dockerfile { name, text },
        &source.loaded_images(),
        progress,
    )?;
    for base in bases.values() {
        rbuild_cache::gc::mark_image_used(&settings.store, &base.manifest_descriptor).map_err(
            |source| Error::IncompleteBase {
                image: base.name.clone(),
                source: Box::new(source),
            },
        )?;
    }
    let plan: Plan =
        plan_source(text, options, &bases).map_err(|e| diagnostic(e.render(name, text)))?;
    // The warnings of a platform's plan (the first one's only, when they are the same).
    let shown_before = group.is_some_and(|g| g.warned.swap(true, Ordering::SeqCst));
    for warning in plan.warnings.iter().filter(|_| !shown_before) {
        // With --target, the stages the target does not need are expected; without it, a
        // stage the last one does not need is dead code worth a warning.
        if warning.code == "stage-not-built" && options.target.is_some() {
            tracing::debug!("{}", warning.message);
            continue;
        }
        let message = match warning.span {
            Some(span) => format!("{name}:{}: {}", span.start.line, warning.message),
            None => warning.message.clone(),
        };
        progress.warn(warning.code, &message);
    }
    for f in &settings.no_cache_filter {
        if !plan
            .stages
            .iter()
            .any(|s| s.label().eq_ignore_ascii_case(f) || s.index.to_string() == *f)
        {
            return Err(Error::NoCacheFilter {
                filter: f.clone(),
                file: name.clone(),
            });
        }
    }
    let multi = group.map(|g| (g.inflight, g.label));
    let results = solver::solve(&solver::Problem {
        settings,
        source,
        plan: &plan,
        bases: &bases,
        progress,
        remote,
        worker,
        multi,
    })?;
    let image = image::assemble(settings, &plan, &bases, &results)?;
    let materials = attest::materials(&plan, &bases, &results);
    let scanned_stages = if settings.attest.sbom {
        image::scanned_stages(
            settings,
            &plan,
            &bases,
            &results,
            settings.attest.scan_stages,
        )?
    } else {
        Vec::new()
    };
    Ok(Solved {
        plan,
        results,
        image,
        scanned_stages,
        bases: bases
            .values()
            .map(|b| (b.name.clone(), b.manifest_descriptor.clone()))
            .collect(),
        materials,
    })
}
