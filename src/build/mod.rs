//! The build engine: from a Dockerfile and a context to an image in the store.
//!
//! 1. settings: the command line resolved (secrets read, context located), [`Settings`];
//! 2. the Dockerfile is planned once without base image configs to learn which base images
//!    it names; each is resolved once (store, or registry with `--pull` or when missing);
//!    then planned again with their configs (inherited ENV, WORKDIR, ONBUILD triggers);
//! 3. [`solver`]: every op gets a cache key; hits are taken from the action cache, misses
//!    run as soon as their inputs are ready, in parallel up to `--jobs`;
//! 4. [`image`]: the target stage's layers, config and history become a manifest in the
//!    store, tagged with every `-t`.

pub mod bases;
mod context;
mod exec;
mod fileops;
mod image;
mod keys;
pub mod output;
pub mod progress;
pub mod remote_cache;
mod secrets;
mod solver;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use rbuild_cache::Store;
use rbuild_compiler::instructions::from_ast::plan_source;
use rbuild_compiler::plan::{NoBaseConfigs, Plan, PlanOptions};
use rbuild_executor::compress::Compression;
use rbuild_executor::idmap::IdMap;

use crate::cli::GlobalArgs;
use crate::commands::build::{BuildArgs, CompressionArg, FormatArg, NetworkArg, ProgressArg};
use crate::commands::registry::RegistryArgs;

pub use progress::{Progress, Summary};
pub use secrets::Secret;

/// A build, resolved from the command line before any work starts.
#[derive(Debug)]
pub struct Settings {
    /// The store.
    pub store: Store,
    /// Where the context comes from.
    pub context: context::ContextArg,
    /// `-f`.
    pub file: Option<PathBuf>,
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
    /// `--network` for RUN steps that say `default`.
    pub network: NetworkArg,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// `--format`.
    pub format: FormatArg,
    /// `--compression` (how build steps write layers; uncompressed unless given).
    pub compression: Compression,
    /// Outputs (`--output`, `--push`, `--compression*`, `--annotation`, `--metadata-file`).
    pub output: output::OutputSettings,
    /// `--jobs`.
    pub jobs: usize,
    /// `--iidfile`.
    pub iidfile: Option<PathBuf>,
    /// `--progress`, resolved.
    pub progress: progress::Mode,
    /// `--explain-cache`.
    pub explain: bool,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: Option<i64>,
    /// Registry flags for pulling bases.
    pub registry_args: RegistryArgs,
    /// How ids map into the sandboxes.
    pub id_map: IdMap,
    /// `--cache-from`s.
    pub cache_from: Vec<remote_cache::CacheImport>,
    /// `--cache-to`s.
    pub cache_to: Vec<remote_cache::CacheExport>,
    /// What the layers and archives the build reads may hold (`RBUILD_MAX_LAYER_SIZE`).
    pub limits: rbuild_compiler::limits::Limits,
}

impl Settings {
    /// Resolves the command line.
    pub fn from_args(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<Settings> {
        let store = crate::commands::open_store(global)?;
        let id_map = crate::commands::id_map(global, &store)?;
        let plan_args = crate::commands::plan::PlanArgs {
            file: None,
            target: args.target.clone(),
            build_args: args.build_args.clone(),
            platform: args.platform.clone(),
            format: crate::commands::plan::PlanFormat::Text,
            context: PathBuf::from("."),
        };
        let plan_options = crate::commands::plan::plan_options(&plan_args)?;
        let mut tags = Vec::new();
        for t in &args.tags {
            let name =
                crate::names::normalize_name(t).with_context(|| format!("invalid tag {t:?}"))?;
            tags.push(name);
        }
        let mut labels = BTreeMap::new();
        for l in &args.labels {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            if k.is_empty() {
                bail!("invalid --label {l:?}: expected KEY=VALUE");
            }
            labels.insert(k.to_string(), v.to_string());
        }
        let secrets = secrets::parse_secrets(&args.secret)?;
        let ssh = secrets::parse_ssh(&args.ssh)?;
        let config = crate::config::get();
        let compression = match args
            .compression
            .or(config.compression())
            .unwrap_or(CompressionArg::Uncompressed)
        {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Uncompressed => Compression::None,
        };
        let output = output::OutputSettings::from_args(&args, &tags)?;
        if args.format == FormatArg::Docker && compression == Compression::Zstd {
            bail!(
                "--compression zstd needs --format oci: Docker's v2 manifests have no zstd layers"
            );
        }
        let jobs = match args.jobs.or(config.jobs()) {
            Some(0) => bail!("--jobs must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let quiet = global.quiet || args.progress == ProgressArg::Quiet;
        let progress = progress::Mode::resolve(args.progress, quiet)?;
        let context = context::ContextArg::new(&args.context, args.file.as_deref())?;
        let cache_from = args
            .cache_from
            .iter()
            .map(|c| remote_cache::parse_cache_from(c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cache_to = args
            .cache_to
            .iter()
            .map(|c| remote_cache::parse_cache_to(c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Settings {
            store,
            context,
            file: args.file,
            plan_options,
            tags,
            no_cache: args.no_cache,
            no_cache_filter: args
                .no_cache_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            pull: args.pull,
            secrets,
            ssh,
            network: args.network,
            labels,
            format: args.format,
            compression,
            output,
            jobs,
            iidfile: args.iidfile,
            progress,
            explain: args.explain_cache,
            epoch: crate::commands::source_date_epoch()?,
            registry_args: args.registry_args,
            id_map,
            cache_from,
            cache_to,
            limits: crate::limits::get()?,
        })
    }
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
    use super::looks_secret;

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
    /// What the build did (duration, steps, bytes written, warnings), as printed at its end.
    #[allow(dead_code)] // for the callers that record build metadata
    pub summary: Summary,
    /// Whether an output was written to stdout (then the id is not printed there).
    pub stdout_used: bool,
    /// Whether an output holds an image (not only `type=local`/`type=tar`): else no id is
    /// printed or written, as with buildx.
    pub makes_image: bool,
}

/// Runs a build. Progress and the closing summary go to stderr as `--progress` says; the
/// summary is also returned in [`Built`].
///
/// A caller with more to show before the summary (pushing the image) runs [`build_in`] with
/// its own [`Progress`] (`Progress::new(settings.progress, settings.explain)`), reports the
/// rest through it (`progress.transfer("push", name)`), then calls [`Progress::finish`].
pub fn build(settings: Settings) -> anyhow::Result<Built> {
    let progress = Progress::new(settings.progress, settings.explain);
    match build_in(&settings, &progress) {
        Ok(built) => {
            let id = built.makes_image.then_some(built.id.as_str());
            let summary = progress.finish(Ok((&settings.tags, id)));
            Ok(Built { summary, ..built })
        }
        Err(e) => {
            progress.finish(Err(&e));
            Err(e)
        }
    }
}

/// Warnings about the build args: names that look like credentials.
fn warn_build_args(settings: &Settings, progress: &Progress) {
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

/// Runs a build, reporting to `progress` without finishing it; the returned [`Built`]'s
/// summary is empty until the caller's [`Progress::finish`].
pub fn build_in(settings: &Settings, progress: &Progress) -> anyhow::Result<Built> {
    let started = std::time::Instant::now();
    warn_build_args(settings, progress);
    exec::remove_stale_step_dirs(settings);
    let source = context::load(settings)?;
    let text = &source.dockerfile_text;
    let name = &source.dockerfile_name;
    let render = |err: &dyn Fn(&str, &str) -> String| err(name, text);

    // First plan: which base images the target needs.
    let first = plan_source(text, &settings.plan_options, &NoBaseConfigs)
        .map_err(|e| anyhow::anyhow!("{}", render(&|n, s| e.render(n, s))))?;
    // Stages for other operating systems plan (with their defaults) but are not built.
    if let Some(stage) = first
        .stages
        .iter()
        .find(|s| s.built && s.platform.os != "linux")
    {
        bail!(
            "{}",
            rbuild_compiler::parser::render_diagnostic(
                &format!(
                    "stage {} is for {}: rbuild builds Linux images only",
                    stage.label(),
                    stage.platform
                ),
                stage.span,
                Some("`rbuild plan` shows the plan of such a stage"),
                name,
                text,
            )
        );
    }
    let bases = bases::resolve(settings, &first, bases::Dockerfile { name, text }, progress)?;
    for base in bases.values() {
        rbuild_cache::gc::mark_image_used(&settings.store, &base.manifest_descriptor)
            .with_context(|| format!("base image {} is incomplete", base.name))?;
    }
    let configs: BTreeMap<String, rbuild_compiler::plan::ImageConfig> = bases
        .iter()
        .map(|(r, b)| (r.clone(), b.runtime_config.clone()))
        .collect();
    let plan: Plan = plan_source(text, &settings.plan_options, &configs)
        .map_err(|e| anyhow::anyhow!("{}", render(&|n, s| e.render(n, s))))?;
    for warning in &plan.warnings {
        // With --target, the stages the target does not need are expected; without it, a
        // stage the last one does not need is dead code worth a warning.
        if warning.code == "stage-not-built" && settings.plan_options.target.is_some() {
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
            bail!("--no-cache-filter {f:?} names no stage of {name}");
        }
    }
    let remote = (!settings.cache_from.is_empty())
        .then(|| remote_cache::RemoteCache::import(settings, progress));
    // An imported layer that cannot be fetched is a warning: the build is solved again
    // without the records naming it (what ran or was fetched meanwhile is in the local
    // cache by then).
    let mut attempts = 0;
    let results = loop {
        attempts += 1;
        let solved = solver::solve(settings, &source, &plan, &bases, progress, remote.as_ref())
            .and_then(|results| match &remote {
                Some(remote) => {
                    remote_cache::ensure_output(settings, &plan, &results, remote).map(|()| results)
                }
                None => Ok(results),
            });
        match solved {
            Err(e) if attempts < 8 && e.downcast_ref::<remote_cache::FetchFailed>().is_some() => {
                let why = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<remote_cache::FetchFailed>())
                    .map(|f| format!("{f}: {:#}", f.source))
                    .unwrap_or_default();
                progress.warn(
                    "cache-import",
                    &format!("{why}; building those steps instead"),
                );
            }
            other => break other?,
        }
    };
    let descriptor = image::assemble(settings, &plan, &bases, &results)?;
    if let Some(remote) = &remote {
        remote.note_push_source(&settings.store, &descriptor);
    }
    let exported = output::export(settings, &descriptor, progress)?;
    // The image as the store names it (its layers converted when an image output asked).
    let descriptor = exported
        .written
        .iter()
        .find(|w| w.kind == "image")
        .and_then(|w| w.descriptor.clone())
        .unwrap_or(descriptor);
    remote_cache::export(
        settings,
        &plan,
        &results,
        remote.as_ref(),
        &descriptor,
        progress,
    )?;
    let id = descriptor.digest().to_string();
    let makes_image = settings.output.makes_image();
    if let Some(path) = settings.iidfile.as_ref().filter(|_| makes_image) {
        std::fs::write(path, &id)
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    let (ran, cached) = plan
        .ops
        .iter()
        .zip(&results)
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
        let warnings: Vec<String> = plan
            .warnings
            .iter()
            .filter(|w| w.code != "stage-not-built")
            .map(|w| w.message.clone())
            .collect();
        output::write_metadata(
            path,
            settings,
            &descriptor,
            &exported,
            started.elapsed(),
            &warnings,
        )?;
    }
    crate::commands::prune::auto_gc(&settings.store);
    Ok(Built {
        id,
        name,
        descriptor,
        summary: Summary::default(),
        stdout_used: settings.output.writes_stdout(),
        makes_image,
    })
}
