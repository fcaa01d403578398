//! `rbuild bake [-f FILE]... [TARGET|GROUP]...`: builds the targets of compose files and
//! docker bake files (HCL, JSON) in one process, as `docker buildx bake` does. The files are
//! read and resolved by the engine (`rbuild_engine::bake`); each target becomes the request
//! `rbuild build` would make of the same flags (`super::build::request`), and the targets
//! are built side by side, a step they share run once. stdout gets `TARGET IMAGE-ID` lines
//! (or, with `--print`, the resolved definition as JSON, and nothing is built).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, FromArgMatches as _};
use rbuild_engine::bake::{self, Target};

use super::build::{BuildArgs, ProgressArg};
use super::registry::RegistryArgs;
use crate::build_progress::Progress;
use crate::cli::GlobalArgs;

/// `rbuild bake`
#[derive(Debug, Args)]
pub struct BakeArgs {
    /// A compose file (`.yaml`, `.yml`), or a bake file (`.hcl`, `.json`); may be repeated,
    /// later files overriding earlier ones. Default: those of compose.yaml, compose.yml,
    /// docker-compose.yml, docker-compose.yaml, docker-bake.json, docker-bake.hcl (and their
    /// `.override` variants) that exist in the working directory.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Override a target's key: `TARGET.KEY=VALUE` (`*` in TARGET matches any characters):
    /// `args.NAME`, `labels.NAME`, `contexts.NAME`, `context`, `dockerfile`,
    /// `dockerfile-inline`, `target`, `tags`, `platform`, `output`, `cache-from`, `cache-to`,
    /// `secrets`, `ssh`, `network`, `attest` (added to the target's), `pull`, `no-cache`;
    /// may be repeated.
    #[arg(long = "set", value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// Attach an SBOM to every target's image: `--set=*.attest=type=sbom[,VALUE]`
    /// (`true`, `false`, or `scan-stages=true`).
    #[arg(long, value_name = "true|false|KEY=VALUE", require_equals = true, num_args = 0..=1, default_missing_value = "true")]
    pub sbom: Option<String>,
    /// Attach a provenance to every target's image: `--set=*.attest=type=provenance[,VALUE]`
    /// (`true`, `false`, or `mode=min|max`).
    #[arg(long, value_name = "true|false|KEY=VALUE", require_equals = true, num_args = 0..=1, default_missing_value = "true")]
    pub provenance: Option<String>,
    /// Print the resolved targets and groups as JSON (buildx's shape) and build nothing.
    #[arg(long)]
    pub print: bool,
    /// Push every target's tags to their registries after the build.
    #[arg(long)]
    pub push: bool,
    /// Build every step of every target; use no cached result.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Look base images up in their registry even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// Write each target's build result (image digest, descriptor, names, pushed
    /// references) as JSON to FILE, under the target's name.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// How progress is shown on stderr; each step's label starts with its target.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Steps run at once, across all targets (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N", env = crate::env::RBUILD_JOBS)]
    pub jobs: Option<usize>,
    /// Grant an entitlement to every target: `network.host` or `security.insecure`; may be
    /// repeated.
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// The targets and groups to build (default: the group `default`; for compose files,
    /// every service with a `build:` section).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: BakeArgs) -> anyhow::Result<ExitCode> {
    let files = if args.files.is_empty() {
        bake::default_files(&std::env::current_dir().context("the working directory")?)?
    } else {
        args.files.clone()
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let def = bake::load(&files, &env)?;
    // buildx's shorthands: `--sbom` and `--provenance` are `--set *.attest=...` after the
    // others.
    let mut set = args.set.clone();
    for (kind, value) in [("sbom", &args.sbom), ("provenance", &args.provenance)] {
        if let Some(value) = value {
            set.push(format!("*.attest={}", canonical_attest(kind, value)));
        }
    }
    let resolved = bake::resolve(&def, &args.targets, &set)?;
    if args.print {
        let mut text = serde_json::to_string_pretty(&resolved)?;
        text.push('\n');
        crate::out!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = super::build::jobs(args.jobs)?;
    // Inline Dockerfiles and each target's metadata are written here for the build.
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut targets = Vec::new();
    let mut mode = None;
    // Files in `scratch` are named by the target's index: a name may hold any character.
    let index: BTreeMap<&str, usize> = resolved
        .target
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    for (name, t) in &resolved.target {
        let build_args = build_args(name, index[name.as_str()], t, &args, jobs, scratch.path())?;
        let (request, m) =
            super::build::request(global, build_args).with_context(|| format!("target {name}"))?;
        mode = Some(m);
        targets.push(bake::run::BakeTarget {
            name: name.clone(),
            request,
            after: t
                .target_contexts()
                .map(|(k, d)| (k.to_string(), bake::sanitize(d)))
                .collect(),
        });
    }
    let mode = match mode {
        Some(m) => m,
        None => crate::build_progress::Mode::resolve(args.progress, global.quiet)?,
    };
    // The summary names every image: its tags, or its target's name when untagged.
    let tags: Vec<String> = targets
        .iter()
        .flat_map(|t| match t.request.tags.as_slice() {
            [] => vec![t.name.clone()],
            tags => tags.to_vec(),
        })
        .collect();
    let progress = Progress::new(mode, false);
    let built = match bake::run::build_all(targets, jobs, &progress, &rbuild_engine::SandboxWorker)
    {
        Ok(built) => {
            progress.finish(Ok((&tags, None)));
            built
        }
        Err(e) => {
            let e = anyhow::Error::new(e);
            progress.finish(Err(&e));
            return Err(e);
        }
    };
    let mut built: Vec<_> = built.into_iter().collect();
    built.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(path) = &args.metadata_file {
        let mut doc = serde_json::Map::new();
        for (name, _) in &built {
            let file = metadata_path(scratch.path(), index[name.as_str()]);
            let text = std::fs::read(&file)
                .with_context(|| format!("cannot read the metadata of target {name}"))?;
            let value: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("the metadata of target {name}"))?;
            doc.insert(name.clone(), value);
        }
        let mut text = serde_json::to_vec_pretty(&serde_json::Value::Object(doc))?;
        text.push(b'\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for (name, b) in &built {
        if b.makes_image && !b.stdout_used {
            crate::outln!("{name} {}", b.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// buildx's spelling of a `--sbom`/`--provenance` value as an `attest` entry: a boolean
/// becomes `type=KIND` or `type=KIND,disabled=true`, anything else `type=KIND,VALUE`.
fn canonical_attest(kind: &str, value: &str) -> String {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" => format!("type={kind}"),
        "false" | "0" => format!("type={kind},disabled=true"),
        _ if kind == "provenance" && matches!(value, "min" | "max") => {
            format!("type={kind},mode={value}")
        }
        _ => format!("type={kind},{value}"),
    }
}

/// Where a target's own metadata file is written during the build.
fn metadata_path(dir: &std::path::Path, index: usize) -> PathBuf {
    dir.join(format!("{index}.metadata.json"))
}

/// The `rbuild build` flags a resolved target stands for.
fn build_args(
    name: &str,
    index: usize,
    t: &Target,
    args: &BakeArgs,
    jobs: usize,
    scratch: &std::path::Path,
) -> anyhow::Result<BuildArgs> {
    let context = t.context.clone().unwrap_or_else(|| ".".into());
    let matches = BuildArgs::augment_args(clap::Command::new("build"))
        .try_get_matches_from(["build", context.as_str()])
        .with_context(|| format!("target {name}: context {context:?}"))?;
    let mut b = BuildArgs::from_arg_matches(&matches)?;
    b.file = match (&t.dockerfile_inline, &t.dockerfile) {
        (Some(text), _) => {
            let path = scratch.join(format!("{index}.Dockerfile"));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Some(path)
        }
        // As buildx: the Dockerfile's path is relative to the context.
        (None, Some(file)) if !context.contains("://") => Some(PathBuf::from(&context).join(file)),
        _ => None,
    };
    b.tags = t.tags.clone().unwrap_or_default();
    b.build_args = t.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    b.labels = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    b.build_contexts = t
        .contexts
        .iter()
        .filter(|(_, v)| !v.starts_with("target:"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    b.target = t.target.clone();
    b.platform = t.platforms.as_ref().map(|p| p.join(","));
    b.secret = t.secret.clone();
    b.ssh = t.ssh.clone();
    b.cache_from = t.cache_from.clone();
    b.cache_to = t.cache_to.clone().unwrap_or_default();
    b.outputs = t.output.clone().unwrap_or_default();
    b.attest = t.attest.clone();
    b.add_host = t
        .extra_hosts
        .iter()
        .map(|(h, ip)| format!("{h}:{ip}"))
        .collect();
    b.no_cache = args.no_cache || t.no_cache.unwrap_or(false);
    b.pull = args.pull || t.pull.unwrap_or(false);
    b.push = args.push;
    b.allow = args.allow.clone();
    b.jobs = Some(jobs);
    b.progress = args.progress;
    b.registry_args = args.registry_args.clone();
    b.metadata_file = args
        .metadata_file
        .as_ref()
        .map(|_| metadata_path(scratch, index));
    if let Some(network) = &t.network {
        b.network = clap::ValueEnum::from_str(network, true)
            .map_err(|_| anyhow::anyhow!("target {name}: unknown network {network:?}"))?;
    }
    if let Some(size) = &t.shm_size {
        tracing::warn!(
            "target {name}: shm-size {size} is not applied; RUN steps get the sandbox's /dev/shm"
        );
    }
    Ok(b)
}
