//! RUN: the parent's snapshots become the sandbox's root (overlay, or a copy), the command
//! runs with the step's environment, user, working directory, network and mounts, and
//! what it changed becomes a layer. With the overlay snapshotter the upper directory is
//! published as the new layer's snapshot, so the next RUN does not unpack it again.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rbuild_cache::action::LayerRecord;
use rbuild_cache::snapshots::Snapshots;
use rbuild_compiler::instructions::{MountType, NetworkMode, SecurityMode};
use rbuild_compiler::plan::ExecOp;
use rbuild_executor::cgroup::oom_message;
use rbuild_executor::diff::{DiffOptions, LayerInfo};
use rbuild_executor::idmap::MappingKind;
use rbuild_executor::mounts::{ExtraMount, ExtraMountKind};
use rbuild_executor::sandbox::{self, Command, Network, RunSpec, Stream};
use rbuild_executor::snapshot::{self, RootSource, SnapshotterKind};

use rbuild_cache::mounts::{CacheMountGuard, CacheMounts, Sharing};

use crate::BuildRequest;
use crate::Network as NetworkArg;
use crate::context::ContextError;
use crate::snapshots::{SnapshotError, ensure_layer_snapshots};
use crate::worker::{InputData, StepEnv};

/// Why a RUN step (or the step directory or layer of another step) failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A file or directory of the step cannot be made or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What failed (`create`, `write`, `lock`, `prepare`, `set the mode of`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The step directory cannot be made in the store's temp dir.
    #[error("cannot create a step directory in {}", dir.display())]
    StepDir {
        /// The store's temp dir.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot take the layer.
    #[error(transparent)]
    Store(#[from] rbuild_cache::StoreError),
    /// The layer cannot be committed to the store.
    #[error(transparent)]
    Blob(#[from] rbuild_cache::BlobError),
    /// The layer cannot be written.
    #[error("cannot write the layer")]
    Flush(#[source] std::io::Error),
    /// The layer's digest is not what was written.
    #[error("the layer was written as {written} but stored as {stored}")]
    DigestMismatch {
        /// The digest the writer computed.
        written: rbuild_cache::Digest,
        /// The digest the store computed.
        stored: rbuild_cache::Digest,
    },
    /// `RUN --security=insecure` without the `security.insecure` entitlement.
    #[error(
        "RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure to give this step all privileges"
    )]
    Insecure,
    /// `RUN --network=host` (or `--network host`) without the `network.host` entitlement.
    #[error(
        "{what} needs the network.host entitlement: pass --allow network.host to let RUN steps use the host's network"
    )]
    NetworkHost {
        /// What asked for the host's network: the RUN line or the `--network host` flag.
        what: String,
    },
    /// The stage is for another architecture and no emulator runs its binaries.
    #[error(transparent)]
    Emulation(#[from] rbuild_executor::binfmt::BinfmtError),
    /// The parent's snapshots cannot be made.
    #[error("cannot prepare the parent file system")]
    Parent(#[source] Box<SnapshotError>),
    /// The step's root file system cannot be mounted.
    #[error("cannot prepare the step's root file system")]
    Root(#[source] rbuild_executor::snapshot::SnapshotError),
    /// The sandbox cannot run the command.
    #[error("cannot run {argv:?} in working directory {workdir}")]
    Run {
        /// The command.
        argv: Vec<String>,
        /// Its working directory.
        workdir: String,
        /// Why.
        #[source]
        source: rbuild_executor::sandbox::SandboxError,
    },
    /// The step was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The command failed (or timed out); `tail` holds its last output lines, `hint` says
    /// when the store's file system is full.
    #[error("process {argv:?} did not complete successfully: exit code {code}{killed}{tail}")]
    Failed {
        /// The command.
        argv: Vec<String>,
        /// Its exit code.
        code: i32,
        /// `: killed by the kernel's OOM killer (memory limit ...)`, or nothing.
        killed: String,
        /// `\nlast output lines:` and the lines, or nothing.
        tail: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// The step's changes cannot be written as a layer.
    #[error("cannot write the step's changes as a layer")]
    WriteLayer(#[source] rbuild_executor::sandbox::SandboxError),
    /// A bind mount has no source input.
    #[error("{mount}: no source")]
    NoSource {
        /// The mount (`--mount=type=bind,target=/x`).
        mount: String,
    },
    /// The context tree of a bind mount cannot be made.
    #[error("{mount}: cannot prepare the context")]
    MountContext {
        /// The mount.
        mount: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The snapshots of a bind mount's source cannot be made.
    #[error("{mount}: cannot prepare its source")]
    MountSource {
        /// The mount.
        mount: String,
        /// Why.
        #[source]
        source: Box<SnapshotError>,
    },
    /// A bind mount names a download.
    #[error("{mount}: a download cannot be mounted")]
    MountDownload {
        /// The mount.
        mount: String,
    },
    /// A cache mount with `from=`.
    #[error("{mount}: cache mounts seeded from= another stage are not supported")]
    CacheFrom {
        /// The mount.
        mount: String,
    },
    /// The cache mounts of the store cannot be opened.
    #[error(transparent)]
    CacheMounts(#[from] rbuild_cache::mounts::MountsError),
    /// A cache mount cannot be taken.
    #[error("{mount}: cannot get cache mount {id:?}")]
    CacheMount {
        /// The mount.
        mount: String,
        /// The cache mount's id.
        id: String,
        /// Why.
        #[source]
        source: rbuild_cache::mounts::MountsError,
    },
    /// A required secret was not given.
    #[error("secret {id:?} is required by {mount} but was not given (--secret id={id},src=FILE)")]
    SecretMissing {
        /// The secret's id.
        id: String,
        /// The mount.
        mount: String,
    },
    /// A required ssh agent was not given.
    #[error("ssh agent {id:?} is required by {mount} but was not given (--ssh {id}=SOCKET)")]
    SshMissing {
        /// The agent's id.
        id: String,
        /// The mount.
        mount: String,
    },
    /// The context cannot be read.
    #[error(transparent)]
    Context(Box<ContextError>),
}

impl ExecError {
    /// What the user can do about it (the store's file system is full).
    pub fn hint(&self) -> Option<&str> {
        match self {
            ExecError::Failed { hint, .. } => hint.as_deref(),
            ExecError::Context(e) => e.hint(),
            _ => None,
        }
    }
}

impl From<ContextError> for ExecError {
    fn from(e: ContextError) -> Self {
        ExecError::Context(Box::new(e))
    }
}

/// A closure that makes an I/O error on `path` an [`ExecError::Io`].
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExecError {
    let path = path.to_path_buf();
    move |source| ExecError::Io {
        action,
        path,
        source,
    }
}

/// How many output lines a failure shows.
const TAIL: usize = 20;

/// A temp dir of the store that is removed (with the sandbox's id map) when dropped. It
/// holds an flock on `DIR/.lock` while it lives, so [`remove_stale_step_dirs`] can tell the
/// dirs of killed builds from those of running ones.
pub struct StepDir {
    path: PathBuf,
    id_map: rbuild_executor::idmap::IdMap,
    _lock: std::fs::File,
}

/// The prefix of every step dir in the store's tmp/.
const STEP_PREFIX: &str = "step-";

/// Removes the step dirs that builds killed before they could clean up left in the store's
/// tmp/ (their lock is free). Returns how many.
pub fn remove_stale_step_dirs(settings: &BuildRequest) -> usize {
    let tmp = settings.store.tmp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(STEP_PREFIX) {
            continue;
        }
        let path = e.path();
        match std::fs::File::open(path.join(".lock")) {
            Ok(lock) => {
                let free =
                    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                        .is_ok();
                if !free {
                    continue;
                }
            }
            // No lock file: a build was killed between making the dir and locking it (a few
            // microseconds), or is in that window right now: old enough means the former.
            Err(_) => {
                let young = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age < std::time::Duration::from_secs(2));
                if young {
                    continue;
                }
            }
        }
        match sandbox::remove_tree(&path, &settings.id_map) {
            Ok(()) => removed += 1,
            Err(e) => tracing::debug!("cannot remove stale {}: {e}", path.display()),
        }
    }
    if removed > 0 {
        tracing::debug!("removed {removed} step directories of killed builds");
    }
    removed
}

impl StepDir {
    /// A new dir under the store's tmp/.
    pub fn new(settings: &BuildRequest, prefix: &str) -> Result<StepDir, ExecError> {
        let tmp = settings.store.tmp_dir();
        std::fs::create_dir_all(&tmp).map_err(io_error("create", &tmp))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{STEP_PREFIX}{prefix}"))
            .tempdir_in(&tmp)
            .map_err(|source| ExecError::StepDir {
                dir: tmp.clone(),
                source,
            })?;
        sandbox::give_to_container_root(dir.path(), &settings.id_map)
            .map_err(io_error("prepare", dir.path()))?;
        let lock_path = dir.path().join(".lock");
        let lock = std::fs::File::create(&lock_path).map_err(io_error("create", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io_error("lock", &lock_path)(e.into()))?;
        Ok(StepDir {
            path: dir.keep(),
            id_map: settings.id_map.clone(),
            _lock: lock,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for StepDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StepDir").field(&self.path).finish()
    }
}

impl Drop for StepDir {
    fn drop(&mut self) {
        if self.path.exists()
            && let Err(e) = sandbox::remove_tree(&self.path, &self.id_map)
        {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// The layer options of this build.
pub fn diff_options(settings: &BuildRequest) -> DiffOptions {
    DiffOptions {
        compression: settings.compression,
        source_date_epoch: settings.epoch,
        id_map: settings.id_map.clone(),
        new_owner: None,
        threads: 0,
        sink_hashes: true,
    }
}

/// Writes a layer into the store through `write`; a layer without entries (or `None`) is
/// thrown away and the step records that it added none.
pub fn store_layer<E: From<ExecError>>(
    settings: &BuildRequest,
    write: impl FnOnce(&mut rbuild_cache::BlobWriter) -> Result<Option<LayerInfo>, E>,
) -> Result<Option<LayerRecord>, E> {
    let mut writer = settings.store.blob_writer(None).map_err(ExecError::from)?;
    let info = write(&mut writer)?;
    let Some(info) = info.filter(|i| i.entries > 0) else {
        writer.abort();
        return Ok(None);
    };
    writer.flush().map_err(ExecError::Flush)?;
    let committed = writer.commit().map_err(ExecError::from)?;
    let Some(digests) = info.digests else {
        // Uncompressed and hashed by the blob writer alone (DiffOptions::sink_hashes).
        return Ok(Some(LayerRecord {
            digest: committed.digest,
            diff_id: committed.digest,
            size: info.size,
            media_type: info.media_type.to_string(),
        }));
    };
    if committed.digest != digests.digest {
        return Err(ExecError::DigestMismatch {
            written: digests.digest,
            stored: committed.digest,
        }
        .into());
    }
    Ok(Some(LayerRecord {
        digest: committed.digest,
        diff_id: digests.diff_id,
        size: info.size,
        media_type: info.media_type.to_string(),
    }))
}

/// Runs one RUN step; returns the layer it added.
pub fn run(env: &StepEnv<'_>, exec: &ExecOp) -> Result<Option<LayerRecord>, ExecError> {
    let settings = env.settings;
    let privileged = exec.security == SecurityMode::Insecure;
    if privileged && !settings.allow.security_insecure {
        return Err(ExecError::Insecure);
    }
    let platform = &env.plan.stages[env.op.stage].platform;
    // A foreign stage's binaries run through the kernel's binfmt_misc emulator, which needs
    // nothing from the step's root file system (fix-binary handlers only).
    rbuild_executor::binfmt::handler_for(platform)?;
    let parent = env.parent_layers();
    let layers = ensure_layer_snapshots(
        &settings.store,
        &parent,
        &settings.id_map,
        &settings.limits,
        settings.layer_scans(),
    )
    .map_err(|e| ExecError::Parent(Box::new(e)))?;
    let dir = StepDir::new(settings, "run-")?;
    let mut spec = RunSpec::new(Command::Exec(exec.argv.clone()));
    spec.env = exec.env.iter().chain(&exec.proxy_env).cloned().collect();
    spec.workdir = if exec.cwd.is_empty() {
        "/".into()
    } else {
        exec.cwd.clone()
    };
    spec.user = exec.user.clone();
    spec.hostname = "rbuild".into();
    spec.id_map = settings.id_map.clone();
    spec.network = match (exec.network, settings.network) {
        (NetworkMode::None, _) | (NetworkMode::Default, NetworkArg::None) => Network::None,
        (NetworkMode::Default, NetworkArg::Default) => Network::Private,
        (NetworkMode::Host, _) | (NetworkMode::Default, NetworkArg::Host) => {
            if !settings.allow.network_host {
                let what = if exec.network == NetworkMode::Host {
                    format!(
                        "RUN --network=host at line {} of the Dockerfile",
                        env.op.span.start.line
                    )
                } else {
                    "--network host".into()
                };
                return Err(ExecError::NetworkHost { what });
            }
            Network::Host
        }
    };
    if spec.network == Network::Private {
        spec.net_stack =
            Some(
                env.network
                    .stack(&settings.id_map)
                    .map_err(|source| ExecError::Run {
                        argv: exec.argv.clone(),
                        workdir: spec.workdir.clone(),
                        source,
                    })?,
            );
    }
    spec.add_hosts = settings.add_hosts.clone();
    spec.privileged = privileged;
    spec.limits = settings.step_limits;
    spec.cgroup = env.cgroup.parent(&settings.step_limits, env.progress);
    let mut guards: Vec<CacheMountGuard> = Vec::new();
    spec.mounts = mounts(env, exec, dir.path(), &mut spec.env, &mut guards)?;
    env.cancel.register(&spec.cancel);
    let kind = SnapshotterKind::detect();
    let mut root = snapshot::prepare(kind, &layers, &dir.path().join("fs"), &spec.mountpoints())
        .map_err(ExecError::Root)?;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let outcome = sandbox::Sandbox::run(&spec, &root, &mut |_stream: Stream, line: &[u8]| {
        env.progress.line(env.step, line);
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(String::from_utf8_lossy(line).into_owned());
    })
    .map_err(|source| ExecError::Run {
        argv: exec.argv.clone(),
        workdir: spec.workdir.clone(),
        source,
    })?;
    if outcome.cancelled {
        return Err(ExecError::Cancelled);
    }
    if outcome.timed_out || outcome.exit_code != 0 {
        let mut last = String::new();
        if !tail.is_empty() {
            last.push_str("\nlast output lines:");
            for l in &tail {
                last.push_str("\n  ");
                last.push_str(l);
            }
        }
        // The step's writes go to the store's file system: a full one explains the failure
        // whatever the command printed.
        let store_root = settings.store.root();
        let full = rustix::fs::statvfs(store_root)
            .is_ok_and(|st| st.f_bavail.saturating_mul(st.f_frsize) < 1 << 20);
        let failed = ExecError::Failed {
            argv: exec.argv.clone(),
            code: outcome.exit_code,
            killed: if outcome.oom_killed {
                format!(": {}", oom_message(outcome.memory_limit))
            } else {
                String::new()
            },
            tail: last,
            hint: full.then(|| format!(
                "the file system of the store {} is full (No space left on device): free space or run `rbuild prune`",
                store_root.display()
            )).or_else(|| crate::debug_shell::rerun_hint(settings)),
        };
        // `--on-error=shell`, with the step's cache mounts still held.
        crate::debug_shell::after_failure(env, &spec, &root);
        return Err(failed);
    }
    drop(guards);
    let mut opts = diff_options(settings);
    if settings.id_map.kind == MappingKind::Single && outcome.user != (0, 0) {
        // The step ran as root under another user's ids: what it made is that user's.
        opts.new_owner = Some(outcome.user);
    }
    // Without root, the step's files (apt's 0700 dirs of `_apt`, say) are read from inside
    // the step's user namespace.
    let layer = store_layer::<ExecError>(settings, |w| {
        Ok(Some(
            sandbox::write_layer(&mut root, &opts, &settings.id_map, w)
                .map_err(ExecError::WriteLayer)?,
        ))
    })?;
    if let (Some(layer), RootSource::Overlay { upper, .. }) = (&layer, &root.source) {
        publish_upper(settings, upper, layer);
    }
    Ok(layer)
}

/// Publishes an overlay upper dir as the snapshot of the layer it was diffed into.
fn publish_upper(settings: &BuildRequest, upper: &Path, layer: &LayerRecord) {
    let diff_id = layer.diff_id;
    let Ok(snapshots) = Snapshots::open(settings.store.root()) else {
        return;
    };
    if snapshots.get(&diff_id).is_some() {
        return;
    }
    match snapshots.commit(upper, &diff_id) {
        Ok(p) => tracing::debug!("published {} as snapshot {}", upper.display(), p.display()),
        Err(e) => tracing::debug!("snapshot {} not published: {e}", layer.diff_id),
    }
}

/// Makes `tree` hold exactly the selected context entries: directories recreated with their
/// modes, files hard-linked (copied across file systems), symlinks recreated. It is only ever
/// an overlay lower dir, so the links are never written through.
fn link_tree(
    root: &Path,
    selection: &rbuild_cache::context::Selection,
    tree: &Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(tree)?;
    let mut dirs = Vec::new();
    for e in &selection.entries {
        let dest = tree.join(&e.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match e.kind {
            rbuild_cache::context::EntryKind::Dir => {
                std::fs::create_dir_all(&dest)?;
                dirs.push((dest, e.mode & 0o7777));
            }
            rbuild_cache::context::EntryKind::File => {
                let src = root.join(&e.path);
                if std::fs::hard_link(&src, &dest).is_err() {
                    std::fs::copy(&src, &dest)?;
                }
            }
            rbuild_cache::context::EntryKind::Symlink => {
                if let Some(t) = &e.link_target {
                    std::os::unix::fs::symlink(t, &dest)?;
                }
            }
        }
    }
    // Modes last, deepest first: a read-only directory must not stop its children.
    for (dest, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The step's mounts: `--mount`s and the heredoc scripts. `process_env` gets the
/// variables of `env=` secrets and ssh sockets; `guards` keeps cache mounts locked until the
/// step ends.
fn mounts(
    env: &StepEnv<'_>,
    exec: &ExecOp,
    dir: &Path,
    process_env: &mut Vec<String>,
    guards: &mut Vec<CacheMountGuard>,
) -> Result<Vec<ExtraMount>, ExecError> {
    let settings = env.settings;
    let mut out = Vec::new();
    if !exec.files.is_empty() {
        let files = dir.join("files");
        std::fs::create_dir_all(&files).map_err(io_error("create", &files))?;
        for (i, f) in exec.files.iter().enumerate() {
            let host = files.join(i.to_string());
            let mut file = std::fs::File::create(&host).map_err(io_error("write", &host))?;
            file.write_all(f.content.as_bytes())
                .map_err(io_error("write", &host))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(f.mode | 0o444))
                .map_err(io_error("set the mode of", &host))?;
            out.push(ExtraMount {
                kind: ExtraMountKind::Bind { source: host },
                target: PathBuf::from(&f.path),
                readonly: true,
            });
        }
    }
    for (n, m) in exec.mounts.iter().enumerate() {
        let mount = &m.mount;
        let target = PathBuf::from(&mount.target);
        let what = || {
            format!(
                "--mount=type={},target={}",
                mount.kind.as_str(),
                mount.target
            )
        };
        match mount.kind {
            MountType::Tmpfs => out.push(ExtraMount {
                kind: ExtraMountKind::Tmpfs {
                    size: mount.size.unwrap_or(0),
                },
                target,
                readonly: false,
            }),
            MountType::Bind => {
                let input = m
                    .input
                    .and_then(|i| env.inputs.get(i))
                    .ok_or_else(|| ExecError::NoSource { mount: what() })?;
                let lowers = match input {
                    // The context directory itself (never written: writes go to scratch),
                    // or, when a .dockerignore hides some of it, a tree of links to exactly
                    // the files the mount selects.
                    InputData::Context(selection, files) => {
                        if files.filtered {
                            let tree = dir.join(format!("context-{n}"));
                            link_tree(&files.root, selection, &tree).map_err(|source| {
                                ExecError::MountContext {
                                    mount: what(),
                                    source,
                                }
                            })?;
                            vec![tree]
                        } else {
                            vec![files.root.clone()]
                        }
                    }
                    InputData::Layers(layers) => {
                        let mut dirs = ensure_layer_snapshots(
                            &settings.store,
                            layers,
                            &settings.id_map,
                            &settings.limits,
                            settings.layer_scans(),
                        )
                        .map_err(|source| ExecError::MountSource {
                            mount: what(),
                            source: Box::new(source),
                        })?;
                        dirs.reverse();
                        dirs
                    }
                    InputData::Download(_) => {
                        return Err(ExecError::MountDownload { mount: what() });
                    }
                };
                let scratch = (!mount.readonly).then(|| dir.join(format!("mount-{n}")));
                if let Some(s) = &scratch {
                    std::fs::create_dir_all(s).map_err(io_error("create", s))?;
                }
                out.push(ExtraMount {
                    kind: ExtraMountKind::Overlay {
                        lowers,
                        scratch,
                        subpath: PathBuf::from(mount.source.as_deref().unwrap_or("")),
                    },
                    target,
                    readonly: mount.readonly,
                });
            }
            MountType::Cache => {
                if mount.from.is_some() {
                    return Err(ExecError::CacheFrom { mount: what() });
                }
                let id = mount.id.clone().unwrap_or_else(|| mount.target.clone());
                let sharing = mount.sharing.unwrap_or(Sharing::Shared);
                let (uid, gid) = (mount.uid.unwrap_or(0), mount.gid.unwrap_or(0));
                let mode = mount.mode.unwrap_or(0o755);
                let id_map = settings.id_map.clone();
                let cache = CacheMounts::open(settings.store.root())?;
                let guard = cache
                    .acquire_with(&id, sharing, &mut |d| {
                        sandbox::set_owner(d, uid, gid, mode, &id_map)
                            .map_err(|e| std::io::Error::other(e.to_string()))
                    })
                    .map_err(|source| ExecError::CacheMount {
                        mount: what(),
                        id: id.clone(),
                        source,
                    })?;
                // Last use, for `prune` (which never takes a mount whose lock is held).
                let _ = rbuild_cache::gc::touch(&guard.path);
                out.push(ExtraMount {
                    kind: ExtraMountKind::Bind {
                        source: guard.path.clone(),
                    },
                    target,
                    readonly: mount.readonly,
                });
                guards.push(guard);
            }
            MountType::Secret => {
                let id = mount.id.clone().unwrap_or_default();
                let Some(secret) = settings.secrets.get(&id) else {
                    if mount.required {
                        return Err(ExecError::SecretMissing { id, mount: what() });
                    }
                    tracing::debug!("secret {id:?} not given: not mounted");
                    continue;
                };
                if let Some(var) = &mount.env {
                    process_env.push(format!("{var}={}", String::from_utf8_lossy(secret.bytes())));
                }
                if !mount.target.is_empty() {
                    out.push(ExtraMount {
                        kind: ExtraMountKind::Secret {
                            content: secret.bytes().to_vec(),
                            uid: mount.uid.unwrap_or(0),
                            gid: mount.gid.unwrap_or(0),
                            mode: mount.mode.unwrap_or(0o400),
                        },
                        target,
                        readonly: true,
                    });
                }
            }
            MountType::Ssh => {
                let id = mount.id.clone().unwrap_or_else(|| "default".into());
                let Some(socket) = settings.ssh.get(&id) else {
                    if mount.required {
                        return Err(ExecError::SshMissing { id, mount: what() });
                    }
                    tracing::debug!("ssh agent {id:?} not given: not mounted");
                    continue;
                };
                process_env.push(format!("SSH_AUTH_SOCK={}", mount.target));
                out.push(ExtraMount {
                    kind: ExtraMountKind::Bind {
                        source: socket.clone(),
                    },
                    target,
                    readonly: false,
                });
            }
        }
    }
    Ok(out)
}
