//! `rbuild build [OPTIONS] CONTEXT` (also `rbuild [OPTIONS] CONTEXT`): builds an image from
//! a Dockerfile into the store. The flags are docker build's where docker has the flag.
//! stdout gets the image id (the manifest digest); progress goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use rbuild_compress::Compression;
use rbuild_engine::debug_shell::OnError;
use rbuild_engine::maintain::GcPolicy;
use rbuild_engine::output::{OutputFlags, OutputSettings};
use rbuild_engine::{BuildRequest, Built, ImageFormat, Network};

use super::registry::RegistryArgs;
use crate::build_progress::Progress;
use crate::cli::GlobalArgs;

/// `rbuild build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image `NAME[:TAG]` in the store; may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin. It may lie
    /// outside the context.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build argument, `NAME=value`, or `NAME` to take the value from the environment.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// An extra context, `NAME=DIR`, `NAME=docker-image://REF` or
    /// `NAME=oci-layout://DIR[:TAG|@DIGEST]`, for `FROM NAME`, `COPY --from=NAME` and `RUN
    /// --mount=from=NAME` (it also replaces an image or stage of that name); may be
    /// repeated.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Check the Dockerfile (as `rbuild check`) and do not build; exits 1 on an error
    /// finding (a `# check=error=true` file's findings are errors).
    #[arg(long)]
    pub check: bool,
    /// Run every step; use no cached result.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Run every step of this stage; may be repeated.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Look base images up in their registry even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// The platforms to build for (`os/arch[/variant]`, comma-separated: one image each,
    /// under one index; `arm64`, `linux/arm64/v8` and `aarch64` are one platform); default:
    /// this machine's. Foreign RUN steps need an emulator (`rbuild system binfmt`).
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]")]
    pub platform: Option<String>,
    /// How progress is shown on stderr.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Say, for every step that runs, which input changed since the last build.
    #[arg(long = "explain-cache")]
    pub explain_cache: bool,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (`id=ID` alone reads the variable ID); may be repeated. Never stored.
    #[arg(long, value_name = "id=ID[,src=PATH|env=VAR]")]
    pub secret: Vec<String>,
    /// An SSH agent socket for `RUN --mount=type=ssh`: `default`, `ID=SOCKET` or `default=SOCKET`;
    /// may be repeated.
    #[arg(long, value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// The network of RUN steps that do not say (`default`: a network namespace of the
    /// build's own, with outbound access only; `host` needs `--allow network.host`).
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    pub network: NetworkArg,
    /// Grant an entitlement: `network.host` (RUN steps may use the host's network) or
    /// `security.insecure`; may be repeated.
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Add `HOST:IP` to the `/etc/hosts` RUN steps see (not to the image); may be repeated.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Set a label on the image, `KEY=VALUE`; may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Manifest and config media types: OCI, or Docker's v2 schema 2.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// How layers are stored: uncompressed by default, as in docker's image store (a 1 GB
    /// layer costs a copy, not a minute of gzip); pushes and OCI outputs gzip them unless
    /// this flag or their `compression=` key says otherwise. (Default: config
    /// `build.compression`, else uncompressed.)
    #[arg(long, value_enum, env = crate::env::RBUILD_COMPRESSION)]
    pub compression: Option<CompressionArg>,
    /// Compression level for layers compressed for an output or a push (gzip 0-9, zstd 1-22).
    #[arg(long = "compression-level", value_name = "N")]
    pub compression_level: Option<i32>,
    /// Re-compress every layer whose compression differs from the chosen one, the base
    /// image's too (by default only uncompressed layers are compressed).
    #[arg(long = "force-compression")]
    pub force_compression: bool,
    /// Where the result goes, as docker buildx: `type=image` (the store, the default),
    /// `type=oci|docker,dest=FILE`, `type=oci,dest=DIR,tar=false`, `type=local,dest=DIR`,
    /// `type=tar,dest=FILE`; `-o DIR` is `type=local,dest=DIR`, `dest=-` is stdout. May be
    /// repeated.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "type=TYPE[,KEY=VALUE...]|DIR"
    )]
    pub outputs: Vec<String>,
    /// Push every `-t` name to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// Write the build's result as JSON (image digest, config, descriptor, names, pushed
    /// references, duration, warnings) to FILE.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// An annotation, `[TYPE:]KEY=VALUE` where TYPE is `manifest` (the default) or
    /// `manifest-descriptor`, optionally with `[PLATFORM]`; may be repeated.
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Attach an SBOM of each image (SPDX 2.3: the packages `rbuild sbom` lists) as an
    /// attestation; makes the image an index. `--sbom=false` turns it off;
    /// `--sbom=scan-stages=true` adds an SBOM of each stage the image is built from.
    #[arg(
        long,
        value_name = "true|false|scan-stages=true",
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pub sbom: Option<String>,
    /// Attach SLSA provenance of each image as an attestation (default mode=min,
    /// version=v1); makes the image an index. `--provenance=false` turns it off.
    #[arg(
        long,
        value_name = "[mode=min|max][,version=v0.2|v1]",
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pub provenance: Option<String>,
    /// An attestation, buildx's general form: `type=sbom` or
    /// `type=provenance[,mode=min|max][,version=v0.2|v1]`; may be repeated.
    #[arg(long = "attest", value_name = "type=sbom|provenance[,KEY=VALUE...]")]
    pub attest: Vec<String>,
    #[command(flatten)]
    pub limit_args: super::resources::BuildLimitArgs,
    /// Steps run at once (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N", env = crate::env::RBUILD_JOBS)]
    pub jobs: Option<usize>,
    /// Write the image id (its manifest digest) to this file; not written when only
    /// `type=local` or `type=tar` outputs are asked for, which keep no image.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// After the build, report where the image's bytes go (`rbuild report`): text on
    /// stderr, or FORMAT into --report-file.
    #[arg(long)]
    pub report: bool,
    /// The report's format.
    #[arg(long = "report-format", value_enum, default_value_t = super::report::ReportFormat::Text)]
    pub report_format: super::report::ReportFormat,
    /// Write the report to FILE (implies --report).
    #[arg(long = "report-file", value_name = "FILE")]
    pub report_file: Option<PathBuf>,
    /// Exit with code 3 when the report crosses a threshold (implies --report), as
    /// `rbuild report --fail-on`: `efficiency<0.9`, `wasted>20MB`, `size>300MB`.
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<String>,
    /// Import cache records: `REF`, `type=registry,ref=REF` or `type=local,src=DIR`; may
    /// be repeated. A step whose key matches is not run; its layer is fetched only when
    /// needed. An import that fails is a warning.
    #[arg(
        long = "cache-from",
        value_name = "type=registry,ref=REF|type=local,src=DIR"
    )]
    pub cache_from: Vec<String>,
    /// Export this build's cache records: `type=registry,ref=REF` or `type=local,dest=DIR`,
    /// with `mode=min|max` (the final image's steps, or every step), `compression=gzip|
    /// uncompressed`, `ignore-error=true`; or `type=inline,ref=REF` (push the image to REF
    /// with its steps' records in its config); may be repeated.
    #[arg(
        long = "cache-to",
        value_name = "type=registry,ref=REF[,mode=max]|type=local,dest=DIR"
    )]
    pub cache_to: Vec<String>,
    /// What a failed RUN step does: `fail` ends the build; `shell` first opens an interactive
    /// shell in the step's file system as the command left it, with the step's environment,
    /// working directory, user, network and mounts (needs a terminal on stdin); `shell:CMD`
    /// runs CMD there instead (split into words as a shell does; no terminal needed; its
    /// output goes to stdout). Leaving it ends the build with the step's error; nothing of it
    /// is kept.
    #[arg(
        long = "on-error",
        value_name = "fail|shell|shell:CMD",
        default_value = "fail"
    )]
    pub on_error: String,
    /// After the build, open a shell (`/bin/sh`, or CMD split into words as a shell does) in
    /// the built stage (the last one, or --target) with its config's environment, working
    /// directory and user, as `rbuild run --rm -it`; rbuild then exits with its exit code.
    #[arg(
        long,
        value_name = "CMD",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = DEFAULT_INVOKE
    )]
    pub invoke: Option<String>,
    /// After the build, build it again with no cache into a fresh store (the base images
    /// copied from this one, nothing pulled) and compare the two images: exit 1 naming the
    /// first layer and file that differ. Needs SOURCE_DATE_EPOCH.
    #[arg(long = "reproducible-check")]
    pub reproducible_check: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// The build context: a directory, `-` for a tar archive (or a Dockerfile) on stdin, or
    /// the `http://` or `https://` URL of one.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// `--progress`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    /// A live view of the running steps.
    Tty,
    /// Every event on its own line, prefixed `#N`.
    Plain,
    /// One JSON object per line.
    Json,
    /// Only errors.
    Quiet,
}

/// `--network`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// A network namespace of the build's own, shared by its RUN steps, with outbound access
    /// only.
    Default,
    /// No network: only a loopback interface.
    None,
    /// The host's network (needs `--allow network.host`).
    Host,
}

/// `--format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// OCI image manifest and config media types.
    Oci,
    /// Docker image manifest v2, schema 2.
    Docker,
}

/// `--compression`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// gzip (every tool reads it).
    Gzip,
    /// zstd (smaller and faster; OCI format only).
    Zstd,
    /// No compression.
    Uncompressed,
}

pub fn run(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let check_args = super::check::CheckArgs {
        files: args.file.clone().into_iter().collect(),
        build_args: args.build_args.clone(),
        target: args.target.clone(),
        platform: args.platform.clone(),
        context: args.context.clone(),
        ..super::check::CheckArgs::default()
    };
    if args.check {
        return super::check::run(global, check_args);
    }
    let quiet = global.quiet || args.progress == ProgressArg::Quiet;
    let excerpts = !quiet && args.progress != ProgressArg::Json;
    let checks = super::check::before_build(global, &check_args, excerpts);
    let report = args.report || args.report_file.is_some() || !args.fail_on.is_empty();
    let report_format = args.report_format;
    let report_file = args.report_file.clone();
    let fail_on = args.fail_on.clone();
    let invoke = args.invoke.as_deref().map(command_words).transpose()?;
    // `--invoke` runs with the build's network settings.
    let invoke_net = InvokeNetwork {
        allow: args.allow.clone(),
        add_host: args.add_host.clone(),
    };
    let repro = args.reproducible_check;
    if repro && args.context.as_os_str() == "-" {
        bail!("--reproducible-check builds twice and cannot read the context from stdin twice");
    }
    let (request, mode) = request(global, args)?;
    if repro && request.epoch.is_none() {
        bail!(
            "--reproducible-check needs {}: set it to a number of seconds so that both builds \
             record the same times",
            crate::env::SOURCE_DATE_EPOCH
        );
    }
    let store = request.store.clone();
    let network = request.network;
    let built = build(&request, mode, checks)?;
    // As docker: when an output goes to stdout, the image id does not; with only file
    // system outputs there is no image id.
    if !built.stdout_used && built.makes_image {
        crate::outln!("{}", built.id);
    }
    if repro {
        reproducible_check(global, request, mode, &built)?;
    }
    if let Some(command) = invoke {
        if !built.makes_image {
            bail!(
                "--invoke needs the built image in the store, and the outputs asked for keep \
                 none: add -o type=image"
            );
        }
        return invoke_shell(global, &store, &built, command, network, invoke_net);
    }
    if report {
        return super::report::report_built(
            store,
            &built.name,
            &built.descriptor,
            report_format,
            report_file.as_deref(),
            &fail_on,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves the command line (and the config file) into the engine's request, and the
/// progress view it asks for.
pub fn request(
    global: &GlobalArgs,
    args: BuildArgs,
) -> anyhow::Result<(BuildRequest, crate::build_progress::Mode)> {
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
    let platforms = crate::commands::plan::target_platforms(args.platform.as_deref())?;
    let mut tags = Vec::new();
    for t in &args.tags {
        let name = rbuild_engine::names::normalize_name(t)
            .with_context(|| format!("invalid tag {t:?}"))?;
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
    let allow = super::network::entitlements(&args.allow)?;
    super::network::check_host_network(args.network == NetworkArg::Host, &allow)?;
    let add_hosts = args
        .add_host
        .iter()
        .map(|h| super::network::add_host(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secrets = rbuild_engine::secrets::parse_secrets(&args.secret)?;
    let ssh = rbuild_engine::secrets::parse_ssh(&args.ssh)?;
    let config = crate::config::get();
    let layers = compression(
        args.compression
            .or(config.compression())
            .unwrap_or(CompressionArg::Uncompressed),
    );
    let output = OutputSettings::from_flags(
        &OutputFlags {
            outputs: args.outputs.clone(),
            push: args.push,
            compression: args.compression.map(compression),
            compression_level: args.compression_level,
            force_compression: args.force_compression,
            annotations: args.annotations.clone(),
            metadata_file: args.metadata_file.clone(),
        },
        &tags,
    )?;
    if args.format == FormatArg::Docker && layers == Compression::Zstd {
        bail!("--compression zstd needs --format oci: Docker's v2 manifests have no zstd layers");
    }
    let jobs = jobs(args.jobs)?;
    let quiet = global.quiet || args.progress == ProgressArg::Quiet;
    let progress = crate::build_progress::Mode::resolve(args.progress, quiet)?;
    let context = rbuild_engine::context::ContextArg::new(&args.context, args.file.as_deref())?;
    let mut named_contexts = BTreeMap::new();
    for spec in &args.build_contexts {
        let (key, value) = rbuild_engine::context::parse_named_context(spec)?;
        if named_contexts.insert(key.clone(), value).is_some() {
            bail!("--build-context {key} is given twice");
        }
    }
    let mut attest = rbuild_engine::attest::Attest::default();
    for a in &args.attest {
        attest.add(a)?;
    }
    if let Some(v) = &args.sbom {
        attest.set_sbom(v)?;
    }
    if let Some(v) = &args.provenance {
        attest.set_provenance(v)?;
    }
    let cache_from = args
        .cache_from
        .iter()
        .map(|c| rbuild_engine::remote_cache::parse_cache_from(c))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|c| rbuild_engine::remote_cache::parse_cache_to(c))
        .collect::<Result<Vec<_>, _>>()?;
    let request = BuildRequest {
        store,
        context,
        file: args.file,
        named_contexts,
        plan_options,
        platforms,
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
        network: match args.network {
            NetworkArg::Default => Network::Default,
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        },
        allow,
        add_hosts,
        labels,
        format: match args.format {
            FormatArg::Oci => ImageFormat::Oci,
            FormatArg::Docker => ImageFormat::Docker,
        },
        compression: layers,
        output,
        jobs,
        iidfile: args.iidfile,
        explain: args.explain_cache,
        epoch: crate::commands::source_date_epoch()?,
        registry: super::registry::registry_config(&args.registry_args),
        id_map,
        cache_from,
        cache_to,
        limits: crate::limits::get()?,
        gc: GcPolicy {
            threshold: config.gc_threshold(),
            keep_storage: config.gc_keep_storage(),
        },
        on_error: on_error(&args.on_error)?,
        git_timeout: git_timeout()?,
        step_limits: args.limit_args.limits(config.step_limits())?,
        attest,
        layer_scans: Default::default(),
    };
    Ok((request, progress))
}

/// `--jobs` (else the config file's `build.jobs`, else the number of CPUs), at least 1.
pub fn jobs(flag: Option<usize>) -> anyhow::Result<usize> {
    match flag.or(crate::config::get().jobs()) {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(2, |n| n.get())),
    }
}

/// `RBUILD_GIT_TIMEOUT`, or the default.
fn git_timeout() -> anyhow::Result<std::time::Duration> {
    let Some(value) = std::env::var_os(crate::env::RBUILD_GIT_TIMEOUT) else {
        return Ok(rbuild_engine::git::GIT_TIMEOUT);
    };
    let text = value.to_string_lossy();
    rbuild_cache::gc::parse_duration(&text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "invalid {}={text:?}: expected a duration (30s, 10m, 1h)",
                crate::env::RBUILD_GIT_TIMEOUT
            )
        })
}

/// Runs a build with the progress view `mode`; the closing summary goes to stderr.
fn build(
    request: &BuildRequest,
    mode: crate::build_progress::Mode,
    checks: super::check::BuildChecks,
) -> anyhow::Result<Built> {
    let progress = Progress::new(mode, request.explain);
    for (message, finding) in checks.findings {
        progress.warn_check(&message, finding);
    }
    if let Some(violation) = checks.violation {
        let e = anyhow::anyhow!(violation);
        progress.finish(Err(&e));
        return Err(e);
    }
    match rbuild_engine::build(request, &progress) {
        Ok(built) => {
            let id = built.makes_image.then_some(built.id.as_str());
            progress.finish(Ok((&request.tags, id)));
            Ok(built)
        }
        Err(e) => {
            let e = anyhow::Error::new(e);
            progress.finish(Err(&e));
            Err(e)
        }
    }
}

/// `--reproducible-check`: `request` built again with no cache into a fresh store under the
/// store's temp space, the base images copied there, and the two images compared.
fn reproducible_check(
    global: &GlobalArgs,
    mut request: BuildRequest,
    mode: crate::build_progress::Mode,
    built: &Built,
) -> anyhow::Result<()> {
    let main = request.store.clone();
    let tmp = main.tmp_dir();
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("repro-")
        .tempdir_in(&tmp)
        .with_context(|| format!("cannot create a directory in {}", tmp.display()))?
        .keep();
    let outcome = rebuild_and_compare(global, &mut request, mode, built, &dir.join("store"));
    // The sandboxes may have written files of other ids there.
    if let Err(e) = rbuild_engine::maintain::remove_tree(&dir) {
        tracing::warn!("cannot remove {}: {e}", dir.display());
    }
    let compared = outcome?;
    let differences: Vec<String> = compared
        .iter()
        .filter_map(|c| {
            let d = c.difference.as_ref()?;
            Some(match &c.platform {
                Some(p) => format!("{p}: {} (build) and {} (rebuild): {d}", c.built, c.rebuilt),
                None => format!("{} (build) and {} (rebuild): {d}", c.built, c.rebuilt),
            })
        })
        .collect();
    if !differences.is_empty() {
        bail!("not reproducible: {}", differences.join("; "));
    }
    for c in &compared {
        match &c.platform {
            Some(p) => eprintln!("reproducible: {p} {}", c.built),
            None => eprintln!("reproducible: {}", c.built),
        }
    }
    Ok(())
}

/// The second build of `--reproducible-check` into a new store at `root`, and the comparison.
fn rebuild_and_compare(
    global: &GlobalArgs,
    request: &mut BuildRequest,
    mode: crate::build_progress::Mode,
    built: &Built,
    root: &std::path::Path,
) -> anyhow::Result<Vec<rbuild_engine::repro::Compared>> {
    let main = request.store.clone();
    let fresh = crate::commands::open_store_at(global, root)?;
    fresh.claim_id_map(&request.id_map.describe())?;
    rbuild_engine::repro::copy_images(&main, &fresh, &built.bases)?;
    request.store = fresh.clone();
    request.no_cache = true;
    request.pull = false;
    request.tags.clear();
    request.output = OutputSettings::from_flags(&OutputFlags::default(), &[])?;
    request.iidfile = None;
    request.cache_from.clear();
    request.cache_to.clear();
    request.explain = false;
    request.on_error = OnError::Fail;
    request.gc = GcPolicy::default();
    tracing::info!("building again with no cache into {}", root.display());
    let rebuilt = build(request, mode, super::check::BuildChecks::default())
        .context("the rebuild of --reproducible-check failed")?;
    Ok(rbuild_engine::repro::compare(
        &main,
        &built.descriptor,
        &fresh,
        &rebuilt.descriptor,
        &request.limits,
    )?)
}

/// The engine's compression of a `--compression` value.
fn compression(c: CompressionArg) -> Compression {
    match c {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::Uncompressed => Compression::None,
    }
}

/// What `--invoke` runs when it is given no command.
const DEFAULT_INVOKE: &str = rbuild_engine::debug_shell::DEFAULT_SHELL;

/// A command given as one string (`--on-error=shell:CMD`, `--invoke=CMD`): its words, split
/// as a shell splits them (quotes group, backslashes escape; nothing is expanded).
fn command_words(text: &str) -> anyhow::Result<Vec<String>> {
    match shlex::split(text) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => bail!("the command {text:?} is empty"),
        None => bail!("the command {text:?} has an unterminated quote or a trailing backslash"),
    }
}

/// `--on-error`: `fail`, `shell` or `shell:CMD`.
fn on_error(text: &str) -> anyhow::Result<OnError> {
    match text {
        "fail" => Ok(OnError::Fail),
        "shell" => Ok(OnError::Shell(None)),
        _ => match text.strip_prefix("shell:") {
            Some(command) => Ok(OnError::Shell(Some(
                command_words(command).with_context(|| format!("invalid --on-error={text}"))?,
            ))),
            None => bail!("invalid --on-error={text}: expected fail, shell or shell:CMD"),
        },
    }
}

/// `--invoke`: `command` in the built image `id` as `rbuild run --rm -i` would run it (with
/// `-t` when stdin is a terminal), the image's entrypoint left out; its exit code is
/// rbuild's (125 when it cannot be started, 126 or 127 when the command cannot be run).
/// The build's `--allow` and `--add-host`, which `--invoke` runs with.
struct InvokeNetwork {
    allow: Vec<String>,
    add_host: Vec<String>,
}

fn invoke_shell(
    global: &GlobalArgs,
    store: &rbuild_cache::Store,
    built: &Built,
    command: Vec<String>,
    network: Network,
    InvokeNetwork { allow, add_host }: InvokeNetwork,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    let args = super::run::RunArgs {
        rm: true,
        name: None,
        env: Vec::new(),
        env_file: Vec::new(),
        volume: Vec::new(),
        workdir: None,
        user: None,
        network: match network {
            Network::Default => super::run::NetworkArg::Default,
            Network::None => super::run::NetworkArg::None,
            Network::Host => super::run::NetworkArg::Host,
        },
        allow,
        add_host,
        entrypoint: Some(String::new()),
        security_opt: Vec::new(),
        tty: std::io::stdin().is_terminal(),
        interactive: true,
        detach: false,
        publish: Vec::new(),
        publish_all: false,
        pull: super::run::PullPolicy::Never,
        platform: None,
        registry_args: RegistryArgs::default(),
        limit_args: Default::default(),
        health_args: Default::default(),
        image: built.id.clone(),
        args: command,
    };
    super::run::run_descriptor(global, store, &built.descriptor, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_error_values() {
        assert_eq!(on_error("fail").unwrap(), OnError::Fail);
        assert_eq!(on_error("shell").unwrap(), OnError::Shell(None));
        assert_eq!(
            on_error("shell:sh -c 'cat /tmp/log; env'").unwrap(),
            OnError::Shell(Some(vec![
                "sh".into(),
                "-c".into(),
                "cat /tmp/log; env".into()
            ]))
        );
        for bad in ["", "shel", "shell:", "shell:'x", "bash"] {
            assert!(on_error(bad).is_err(), "{bad}");
        }
    }
}
