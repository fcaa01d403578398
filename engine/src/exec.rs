//! RUN: the parent's snapshots become the sandbox's root (overlay, or a copy), the command
//! runs with the step's environment, user, working directory, network and mounts, and
//! what it changed becomes a layer. With the overlay snapshotter the upper directory is
//! published as the new layer's snapshot, so the next RUN does not unpack it again.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rbuild_cache::action::LayerRecord;
use rbuild_cache::snapshots::Snapshots;
use rbuild_compiler::instructions::{MountType, NetworkMode, SecurityMode};
use rbuild_compiler::plan::ExecOp;
use rbuild_executor::diff::{DiffOptions, LayerInfo};
use rbuild_executor::mounts::{ExtraMount, ExtraMountKind};
use rbuild_executor::sandbox::{self, Command, Network, RunSpec, Stream};
use rbuild_executor::snapshot::{self, RootSource, SnapshotterKind};

use rbuild_cache::mounts::{CacheMountGuard, CacheMounts, Sharing};

use crate::BuildRequest;
use crate::Network as NetworkArg;
use crate::snapshots::ensure_layer_snapshots;
use crate::worker::{InputData, StepEnv};

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
    pub fn new(settings: &BuildRequest, prefix: &str) -> anyhow::Result<StepDir> {
        let tmp = settings.store.tmp_dir();
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{STEP_PREFIX}{prefix}"))
            .tempdir_in(&tmp)
            .with_context(|| format!("cannot create a step directory in {}", tmp.display()))?;
        sandbox::give_to_container_root(dir.path(), &settings.id_map)
            .with_context(|| format!("cannot prepare {}", dir.path().display()))?;
        let lock_path = dir.path().join(".lock");
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
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
        threads: 0,
        sink_hashes: true,
    }
}

/// Writes a layer into the store through `write`; a layer without entries (or `None`) is
/// thrown away and the step records that it added none.
pub fn store_layer(
    settings: &BuildRequest,
    write: impl FnOnce(&mut rbuild_cache::BlobWriter) -> anyhow::Result<Option<LayerInfo>>,
) -> anyhow::Result<Option<LayerRecord>> {
    let mut writer = settings.store.blob_writer(None)?;
    let info = write(&mut writer)?;
    let Some(info) = info.filter(|i| i.entries > 0) else {
        writer.abort();
        return Ok(None);
    };
    writer.flush().context("cannot write the layer")?;
    let committed = writer.commit()?;
    if info.digest.is_empty() {
        // Uncompressed and hashed by the blob writer alone (DiffOptions::sink_hashes).
        return Ok(Some(LayerRecord {
            digest: committed.digest,
            diff_id: committed.digest,
            size: info.size,
            media_type: info.media_type.to_string(),
        }));
    }
    if committed.digest.to_string() != info.digest {
        bail!(
            "the layer was written as {} but stored as {}",
            info.digest,
            committed.digest
        );
    }
    let diff_id = info
        .diff_id
        .parse()
        .with_context(|| format!("the diff id of layer {}", committed.digest))?;
    Ok(Some(LayerRecord {
        digest: committed.digest,
        diff_id,
        size: info.size,
        media_type: info.media_type.to_string(),
    }))
}

/// Runs one RUN step; returns the layer it added.
pub fn run(env: &StepEnv<'_>, exec: &ExecOp) -> anyhow::Result<Option<LayerRecord>> {
    let settings = env.settings;
    if exec.security == SecurityMode::Insecure {
        bail!(
            "RUN --security=insecure is not supported: rbuild's sandboxes never get all privileges"
        );
    }
    let platform = &env.plan.stages[env.op.stage].platform;
    let host = &env.plan.build_platform;
    if platform.os != host.os || platform.architecture != host.architecture {
        bail!(
            "cannot run a RUN step for {}/{} on this {}/{} machine: rbuild does not emulate other architectures",
            platform.os,
            platform.architecture,
            host.os,
            host.architecture
        );
    }
    let parent = env.parent_layers();
    let layers =
        ensure_layer_snapshots(&settings.store, &parent, &settings.id_map, &settings.limits)
            .context("cannot prepare the parent file system")?;
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
    spec.network = match exec.network {
        NetworkMode::None => Network::None,
        NetworkMode::Host => Network::Host,
        NetworkMode::Default => match settings.network {
            NetworkArg::None => Network::None,
            NetworkArg::Default | NetworkArg::Host => Network::Host,
        },
    };
    let mut guards: Vec<CacheMountGuard> = Vec::new();
    spec.mounts = mounts(env, exec, dir.path(), &mut spec.env, &mut guards)?;
    env.cancel.register(&spec.cancel);
    let kind = SnapshotterKind::detect();
    let mut root = snapshot::prepare(kind, &layers, &dir.path().join("fs"), &spec.mountpoints())
        .context("cannot prepare the step's root file system")?;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let outcome = sandbox::Sandbox::run(&spec, &root, &mut |_stream: Stream, line: &[u8]| {
        env.progress.line(env.step, line);
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(String::from_utf8_lossy(line).into_owned());
    })
    .with_context(|| {
        format!(
            "cannot run {:?} in working directory {}",
            exec.argv, spec.workdir
        )
    })?;
    drop(guards);
    if outcome.cancelled {
        bail!("cancelled");
    }
    if outcome.timed_out || outcome.exit_code != 0 {
        let mut msg = format!(
            "process {:?} did not complete successfully: exit code {}",
            exec.argv, outcome.exit_code
        );
        if !tail.is_empty() {
            msg.push_str("\nlast output lines:");
            for l in &tail {
                msg.push_str("\n  ");
                msg.push_str(l);
            }
        }
        // The step's writes go to the store's file system: a full one explains the failure
        // whatever the command printed.
        let root = settings.store.root();
        if let Ok(st) = rustix::fs::statvfs(root)
            && st.f_bavail.saturating_mul(st.f_frsize) < 1 << 20
        {
            return Err(anyhow::anyhow!(msg).context(crate::Hint(format!(
                "the file system of the store {} is full (No space left on device): free space or run `rbuild prune`",
                root.display()
            ))));
        }
        bail!(msg);
    }
    let opts = diff_options(settings);
    // Without root, the step's files (apt's 0700 dirs of `_apt`, say) are read from inside
    // the step's user namespace.
    let layer = store_layer(settings, |w| {
        Ok(Some(
            sandbox::write_layer(&mut root, &opts, &settings.id_map, w)
                .context("cannot write the step's changes as a layer")?,
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
) -> anyhow::Result<Vec<ExtraMount>> {
    let settings = env.settings;
    let mut out = Vec::new();
    if !exec.files.is_empty() {
        let files = dir.join("files");
        std::fs::create_dir_all(&files)
            .with_context(|| format!("cannot create {}", files.display()))?;
        for (i, f) in exec.files.iter().enumerate() {
            let host = files.join(i.to_string());
            let mut file = std::fs::File::create(&host)
                .with_context(|| format!("cannot write {}", host.display()))?;
            file.write_all(f.content.as_bytes())
                .with_context(|| format!("cannot write {}", host.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(f.mode | 0o444))
                .with_context(|| format!("cannot set the mode of {}", host.display()))?;
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
                    .with_context(|| format!("{}: no source", what()))?;
                let lowers = match input {
                    // The context directory itself (never written: writes go to scratch),
                    // or, when a .dockerignore hides some of it, a tree of links to exactly
                    // the files the mount selects.
                    InputData::Context(selection) => {
                        if env.source.index(settings)?.ignore_file().is_some() {
                            let tree = dir.join(format!("context-{n}"));
                            link_tree(&env.source.root, selection, &tree).with_context(|| {
                                format!("{}: cannot prepare the context", what())
                            })?;
                            vec![tree]
                        } else {
                            vec![env.source.root.clone()]
                        }
                    }
                    InputData::Layers(layers) => {
                        let mut dirs = ensure_layer_snapshots(
                            &settings.store,
                            layers,
                            &settings.id_map,
                            &settings.limits,
                        )
                        .with_context(|| format!("{}: cannot prepare its source", what()))?;
                        dirs.reverse();
                        dirs
                    }
                    InputData::Download(_) => bail!("{}: a download cannot be mounted", what()),
                };
                let scratch = (!mount.readonly).then(|| dir.join(format!("mount-{n}")));
                if let Some(s) = &scratch {
                    std::fs::create_dir_all(s)
                        .with_context(|| format!("cannot create {}", s.display()))?;
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
                    bail!(
                        "{}: cache mounts seeded from= another stage are not supported",
                        what()
                    );
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
                    .with_context(|| format!("{}: cannot get cache mount {id:?}", what()))?;
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
                        bail!(
                            "secret {id:?} is required by {} but was not given (--secret id={id},src=FILE)",
                            what()
                        );
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
                        bail!(
                            "ssh agent {id:?} is required by {} but was not given (--ssh {id}=SOCKET)",
                            what()
                        );
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
