//! One module per subcommand. Each resolves its arguments into settings, then does the work.

pub mod bake;
pub mod build;
pub mod check;
pub mod container;
pub mod exec;
pub mod images;
pub mod import;
pub mod inspect;
pub mod kill;
pub mod load;
pub mod login;
pub mod logout;
pub mod logs;
pub mod network;
pub mod plan;
pub mod port;
pub mod prune;
pub mod ps;
pub mod pull;
pub mod push;
pub mod registry;
pub mod report;
pub mod resources;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod sbom;
pub mod start;
pub mod stop;
pub mod supervise;
pub mod system;
pub mod tag;
pub mod wait;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command the user asked for and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    crate::config::init(cli.global.config.as_deref())?;
    let result = dispatch(cli);
    // The lease goes before the process does (a killed process's lease is stale anyway).
    LEASES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    result
}

/// The leases of the stores this process opened (see `rbuild_cache::gc`): what the command
/// writes or reuses is safe from a concurrent prune until it exits.
static LEASES: std::sync::Mutex<Vec<rbuild_cache::gc::Lease>> = std::sync::Mutex::new(Vec::new());

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(&cli.global, *args),
        Command::Bake(args) => bake::run(&cli.global, *args),
        Command::Plan(args) => plan::run(&cli.global, args),
        Command::Check(args) => check::run(&cli.global, args),
        Command::Import(args) => import::run(&cli.global, args),
        Command::Images(args) => images::run(&cli.global, args),
        Command::Tag(args) => tag::run(&cli.global, args),
        Command::Rmi(args) => rmi::run(&cli.global, args),
        Command::Inspect(args) => inspect::run(&cli.global, args),
        Command::Save(args) => save::run(&cli.global, args),
        Command::Load(args) => load::run(&cli.global, args),
        Command::Login(args) => login::run(args),
        Command::Logout(args) => logout::run(args),
        Command::Run(args) => run::run(&cli.global, args),
        Command::Ps(args) => ps::run(&cli.global, args),
        Command::Rm(args) => rm::run(&cli.global, args),
        Command::Logs(args) => logs::run(&cli.global, args),
        Command::Stop(args) => stop::run(&cli.global, args),
        Command::Kill(args) => kill::run(&cli.global, args),
        Command::Start(args) => start::run(&cli.global, args),
        Command::Wait(args) => wait::run(&cli.global, args),
        Command::Exec(args) => exec::run(&cli.global, args),
        Command::Port(args) => port::run(&cli.global, args),
        Command::ContainerSupervise(args) => supervise::run(&cli.global, args),
        Command::Report(args) => report::run(&cli.global, args),
        Command::Sbom(args) => sbom::run(&cli.global, args),
        Command::Pull(args) => pull::run(&cli.global, args),
        Command::Push(args) => push::run(&cli.global, args),
        Command::Prune(args) => prune::run(&cli.global, args),
        Command::System(args) => system::run(&cli.global, args),
    }
}

/// Opens the store named by `--root` / `RBUILD_ROOT`, the config file's `root`, or the
/// default one, and takes a lease on it for the rest of the command.
pub fn open_store(global: &crate::cli::GlobalArgs) -> anyhow::Result<rbuild_cache::Store> {
    open_store_at(global, &store_root(global)?)
}

/// [`open_store`] for the store at `root`, owned as the store of `global` would be.
pub fn open_store_at(
    global: &crate::cli::GlobalArgs,
    root: &std::path::Path,
) -> anyhow::Result<rbuild_cache::Store> {
    use anyhow::Context;
    let root = root.to_path_buf();
    // A store for remapped sandboxes belongs to the container root's host ids.
    let owner = match root_id_map(global)? {
        Some(map) if !map.is_identity() => map.host_uid(0).zip(map.host_gid(0)),
        _ => None,
    };
    let store = rbuild_cache::Store::open_owned(&root, owner).map_err(|e| {
        let remapped = matches!(&e, rbuild_cache::StoreError::SharedRoot { .. })
            && root.join("idmap").exists();
        let e = anyhow::Error::new(e).context(format!("cannot open the store at {}", root.display()));
        if remapped {
            e.context(crate::report::Hint(
                "a store used with --userns remap belongs to the container root's host id: pass the same --userns (or RBUILD_USERNS, or `userns` in the config file)".into(),
            ))
        } else {
            e
        }
    })?;
    let lease = rbuild_cache::gc::Lease::acquire(&root)
        .with_context(|| format!("cannot take a lease on the store at {}", root.display()))?;
    LEASES.lock().unwrap_or_else(|e| e.into_inner()).push(lease);
    Ok(store)
}

/// Root's id mapping from `--userns` / `RBUILD_USERNS` / the config file; `None` when not
/// running as root (whose mapping is always its own /etc/subuid ranges).
fn root_id_map(
    global: &crate::cli::GlobalArgs,
) -> anyhow::Result<Option<rbuild_executor::idmap::IdMap>> {
    use crate::config::Userns;
    use rbuild_executor::idmap::IdMap;
    let mode = global.userns.or(crate::config::get().userns());
    if !rustix::process::geteuid().is_root() {
        if let Some(mode) = mode.filter(|m| *m != Userns::Host) {
            anyhow::bail!(
                "--userns {mode} needs root: without root, sandboxes always map ids through the caller's /etc/subuid and /etc/subgid ranges"
            );
        }
        return Ok(None);
    }
    Ok(Some(match mode.unwrap_or_default() {
        Userns::Host => IdMap::identity(),
        Userns::Remap => {
            IdMap::root_subordinate().map_err(|e| anyhow::anyhow!("--userns remap: {e}"))?
        }
        Userns::RemapTo { uid, gid, size } => IdMap::remapped(uid, gid, size),
    }))
}

/// The user-namespace id mapping of this process's sandboxes and of what it unpacks into
/// `store`: root's from `--userns`, otherwise the caller's /etc/subuid ranges (or its own id
/// alone). The store keeps the mapping it was first used with and refuses another one.
pub fn id_map(
    global: &crate::cli::GlobalArgs,
    store: &rbuild_cache::Store,
) -> anyhow::Result<rbuild_executor::idmap::IdMap> {
    let map = match root_id_map(global)? {
        Some(map) => map,
        None => rbuild_executor::idmap::IdMap::for_current_user(),
    };
    store.claim_id_map(&map.describe())?;
    Ok(map)
}

/// The store named by `--root` / `RBUILD_ROOT`, the config file's `root`, or the default
/// one, opened only to read and only when it exists (`rbuild plan`): no lease, nothing
/// created.
pub fn existing_store(global: &crate::cli::GlobalArgs) -> Option<rbuild_cache::Store> {
    let root = store_root(global).ok()?;
    if !root.join("index.json").is_file() {
        return None;
    }
    match rbuild_cache::Store::open(&root) {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::debug!("not reading base images from {}: {e}", root.display());
            None
        }
    }
}

/// The store directory: `--root` / `RBUILD_ROOT`, the config file's `root`, or the default.
pub fn store_root(global: &crate::cli::GlobalArgs) -> anyhow::Result<std::path::PathBuf> {
    match global.root.clone().or_else(|| crate::config::get().root()) {
        Some(root) => Ok(root),
        None => default_root(),
    }
}

/// `/var/lib/rbuild` for root, else `$XDG_DATA_HOME/rbuild` or `~/.local/share/rbuild`.
fn default_root() -> anyhow::Result<std::path::PathBuf> {
    use std::path::PathBuf;
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/rbuild"));
    }
    if let Some(xdg) = std::env::var_os(crate::env::XDG_DATA_HOME).map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg.join("rbuild"));
    }
    match std::env::var_os(crate::env::HOME) {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".local/share/rbuild")),
        _ => Err(
            anyhow::anyhow!("cannot find the store: HOME is not set").context(crate::report::Hint(
                "pass --root DIR or set RBUILD_ROOT".into(),
            )),
        ),
    }
}

/// Finds an image by name (normalized) or by id prefix; returns the name it is known by
/// (when found by name) and its descriptor.
pub fn find_image(
    store: &rbuild_cache::Store,
    arg: &str,
) -> anyhow::Result<(Option<String>, oci_spec::image::Descriptor)> {
    // Names other tools wrote into the layout may not be references: try the text as it is.
    if let Ok(descriptor) = store.resolve(arg) {
        return Ok((Some(arg.to_string()), descriptor));
    }
    if let Ok(name) = crate::names::normalize_name(arg)
        && let Ok(descriptor) = store.resolve(&name)
    {
        return Ok((Some(name), descriptor));
    }
    if let Some(descriptor) = store.resolve_id(arg)? {
        return Ok((None, descriptor));
    }
    let name = crate::names::normalize_name(arg)?;
    let err = anyhow::Error::new(rbuild_cache::StoreError::NotFound { name });
    Err(match crate::missing::closest_image(store, arg) {
        Some(best) => err.context(crate::report::Hint(format!("did you mean {best}?"))),
        None => err,
    })
}

/// The `SOURCE_DATE_EPOCH` value, if set.
pub fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var(crate::env::SOURCE_DATE_EPOCH) {
        Ok(text) if !text.is_empty() => {
            text.trim().parse::<i64>().map(Some).map_err(|_| {
                anyhow::anyhow!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds")
            })
        }
        _ => Ok(None),
    }
}

/// The image `descriptor` stands for on `--platform` (`platform`): for an index, the manifest
/// of its entry for that platform (an error listing the platforms it has when there is none),
/// or of the host's best entry when no platform is named; a manifest stands for itself.
pub fn image_for_platform(
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
    platform: Option<&str>,
) -> anyhow::Result<(oci_spec::image::Descriptor, oci_spec::image::ImageManifest)> {
    Ok(match platform {
        Some(p) => {
            let p = rbuild_compiler::plan::Platform::parse(p)
                .map_err(|e| anyhow::anyhow!("--platform: {e}"))?;
            store.image_manifest_for(descriptor, &p)?
        }
        None => store.image_manifest(descriptor)?,
    })
}
