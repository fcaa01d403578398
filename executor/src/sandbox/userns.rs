//! Work done inside a user namespace with the caller's id map, where files owned by the
//! mapped ids can be read, written and given their owners without privileges: installing
//! the maps, writing and unpacking layers, giving a directory its owner, removing trees;
//! as root each is done directly. Also the probe for overlayfs in a user namespace.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal};
use rustix::thread::UnshareFlags;

use super::SandboxError;
use super::error::{error_chain, host};
use super::fd::{FORK_LOCK, pipe, read_exact_fd, write_all_fd};
use crate::idmap::{IdMap, MappingKind};
use crate::mounts::HostKernel;
use crate::snapshot::{PreparedRoot, RootSource};
use crate::sys;
use rbuild_compress::{Compression, ManifestFormat};

pub(super) fn install_maps(pid: i32, map: &IdMap) -> Result<(), SandboxError> {
    let proc_write = |file: &str, text: &str| {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, text).map_err(|source| SandboxError::IdMap {
            pid,
            tool: p.clone(),
            source,
        })
    };
    match map.kind {
        MappingKind::Root => {
            proc_write("uid_map", &map.uid_map_text())?;
            proc_write("gid_map", &map.gid_map_text())
        }
        MappingKind::Single => {
            proc_write("setgroups", "deny")?;
            proc_write("uid_map", &map.uid_map_text())?;
            proc_write("gid_map", &map.gid_map_text())
        }
        MappingKind::Subordinate => {
            // Both tools run at once: each is a setuid program start-up.
            let mut children = Vec::new();
            for (tool, ranges) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
                let mut cmd = std::process::Command::new(tool);
                cmd.arg(pid.to_string());
                for r in ranges.iter() {
                    cmd.args([
                        r.container.to_string(),
                        r.host.to_string(),
                        r.size.to_string(),
                    ]);
                }
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                let child = cmd.spawn().map_err(|source| SandboxError::IdMap {
                    pid,
                    tool: tool.into(),
                    source,
                })?;
                children.push((tool, child));
            }
            for (tool, child) in children {
                let out = child
                    .wait_with_output()
                    .map_err(|source| SandboxError::IdMap {
                        pid,
                        tool: tool.into(),
                        source,
                    })?;
                if !out.status.success() {
                    let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                    return Err(SandboxError::IdMap {
                        pid,
                        tool: tool.into(),
                        source: io::Error::other(msg),
                    });
                }
            }
            Ok(())
        }
    }
}

/// Runs `child` in a forked process inside a new user namespace with
/// `id_map` installed, while the caller runs `parent`. They share a pipe:
/// the child writes to it when `child_writes`, else reads from it. The
/// child's returned text (`ok\n...` or `error\n...`) comes back as the result.
fn in_userns(
    id_map: &IdMap,
    what: &str,
    child_writes: bool,
    child: impl FnOnce(File) -> String,
    parent: impl FnOnce(File) -> Result<(), SandboxError>,
) -> Result<Result<Vec<String>, String>, SandboxError> {
    let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (data_r, data_w) = pipe()?;
    let (info_r, info_w) = pipe()?;
    let (up_r, up_w) = pipe()?;
    let (down_r, down_w) = pipe()?;
    let (child_end, parent_end) = if child_writes {
        (data_w, data_r)
    } else {
        (data_r, data_w)
    };
    let pid = match sys::fork().map_err(host(format!("fork the {what}")))? {
        sys::Fork::Child => {
            drop((parent_end, info_r, up_r, down_w));
            let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
            if sys::unshare(UnshareFlags::NEWUSER).is_err() || write_all_fd(&up_w, b"u").is_err() {
                sys::exit_now(1);
            }
            let mut b = [0u8; 1];
            if !read_exact_fd(&down_r, &mut b).unwrap_or(false) {
                sys::exit_now(1);
            }
            let text = child(File::from(child_end));
            let _ = write_all_fd(&info_w, text.as_bytes());
            sys::exit_now(0)
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop((child_end, info_w, up_w, down_r));
    drop(fork_guard);
    let child_pid = Pid::from_raw(pid).expect("fork returns a positive pid");
    let result = (|| {
        let mut b = [0u8; 1];
        if !read_exact_fd(&up_r, &mut b).map_err(host(format!("wait for the {what}")))? {
            return Err(SandboxError::Setup {
                message: format!("the {what} could not enter a user namespace"),
            });
        }
        install_maps(pid, id_map)?;
        write_all_fd(&down_w, b"g").map_err(host(format!("signal the {what}")))?;
        drop(down_w);
        parent(File::from(parent_end))?;
        let mut text = String::new();
        File::from(info_r)
            .read_to_string(&mut text)
            .map_err(host(format!("read the {what}'s result")))?;
        let mut lines = text.lines().map(str::to_owned);
        match lines.next().as_deref() {
            Some("ok") => Ok(Ok(lines.collect())),
            Some("error") => Ok(Err(lines.collect::<Vec<_>>().join("\n"))),
            _ => Ok(Err(format!("the {what} exited without a result"))),
        }
    })();
    if result.is_err() {
        let _ = rustix::process::kill_process(child_pid, Signal::KILL);
    }
    let _ = rustix::process::waitpid(Some(child_pid), rustix::process::WaitOptions::empty());
    result
}

/// Writes the layer of a finished step. As root the files are read
/// directly; otherwise the diff runs in a child process inside a user
/// namespace with the step's id map, where files owned by the mapped ids
/// (mode 0600 files of another user in the image, say) are readable.
pub fn write_layer(
    root: &mut PreparedRoot,
    opts: &crate::diff::DiffOptions,
    id_map: &IdMap,
    out: impl io::Write,
) -> Result<crate::diff::LayerInfo, SandboxError> {
    let step = root.mountpoint.clone();
    let layer_err = |message: String| SandboxError::Layer {
        step: step.clone(),
        message,
    };
    if id_map.kind == MappingKind::Root {
        return root
            .write_layer(opts, out)
            .map_err(|e| layer_err(error_chain(&e)));
    }
    if let RootSource::Overlay { upper, .. } = &root.source {
        if readable_tree(upper) {
            // Everything is readable from here: no namespace needed, owners
            // are mapped back through the id map.
            let mut direct = opts.clone();
            direct.id_map = id_map.clone();
            return root
                .write_layer(&direct, out)
                .map_err(|e| layer_err(error_chain(&e)));
        }
    }
    root.remove_stubs().map_err(|e| layer_err(e.to_string()))?;
    layer_where_readable(
        id_map,
        "layer writer",
        |w, map| {
            let mut inner = opts.clone();
            inner.id_map = map.clone();
            root.write_layer(&inner, w)
                .map(Some)
                .map_err(|e| error_chain(&e))
        },
        out,
    )?
    .map_err(&layer_err)?
    .ok_or_else(|| layer_err("the layer writer wrote no layer".into()))
}

/// Runs `write`, which writes a layer to its writer from files of the sandbox's id map
/// (an upper dir, snapshots, another stage's files) and says what it wrote, where every
/// such file can be read: directly as root, with `id_map` to map owners back; otherwise in
/// a child process inside a
/// user namespace with the map, where it runs as container root (mode 0700 directories of
/// apt's `_apt` user, mode 0000 files) and owners read as the image's ids, so it gets the
/// identity map. The layer's bytes go to `out`. The outer error is the namespace's; the
/// inner one is `write`'s message.
pub fn layer_where_readable(
    id_map: &IdMap,
    what: &str,
    write: impl FnOnce(&mut dyn io::Write, &IdMap) -> Result<Option<crate::diff::LayerInfo>, String>,
    mut out: impl io::Write,
) -> Result<Result<Option<crate::diff::LayerInfo>, String>, SandboxError> {
    if id_map.kind == MappingKind::Root {
        return Ok(write(&mut out, id_map));
    }
    let f = match in_userns(
        id_map,
        what,
        true,
        |mut pipe| match write(&mut pipe, &id_map.inside()) {
            Ok(None) => "ok".to_owned(),
            Ok(Some(i)) => {
                // "-" for digests the sink computes (DiffOptions::sink_hashes).
                let (diff_id, digest) = i.digests.map_or_else(
                    || ("-".to_owned(), "-".to_owned()),
                    |d| (d.diff_id.to_string(), d.digest.to_string()),
                );
                format!(
                    "ok\n{diff_id}\n{digest}\n{}\n{}\n{}\n{}",
                    i.size, i.uncompressed_size, i.media_type, i.entries
                )
            }
            Err(e) => format!("error\n{e}"),
        },
        |mut pipe| {
            io::copy(&mut pipe, &mut out).map_err(host("copy the layer"))?;
            out.flush().map_err(host("flush the layer"))
        },
    )? {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    if f.is_empty() {
        return Ok(Ok(None));
    }
    let bad = |found: String| {
        Ok(Err(format!(
            "the {what} sent an unexpected result: {found}"
        )))
    };
    if f.len() != 6 {
        return bad(format!("{f:?}"));
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
    let Some(media_type) = [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .filter_map(|c| c.media_type(ManifestFormat::Oci).ok())
        .find(|m| *m == f[4])
    else {
        return bad(format!("media type {:?}", f[4]));
    };
    let digest = |s: &str| {
        s.parse::<rbuild_digest::Digest>()
            .map_err(|e| format!("bad digest {s:?}: {e}"))
    };
    let info = (|| {
        let digests = match (f[0].as_str(), f[1].as_str()) {
            ("-", "-") => None,
            (diff_id, blob) => Some(crate::diff::LayerDigests {
                diff_id: digest(diff_id)?,
                digest: digest(blob)?,
            }),
        };
        Ok(crate::diff::LayerInfo {
            digests,
            size: num(&f[2])?,
            uncompressed_size: num(&f[3])?,
            media_type,
            entries: num(&f[5])?,
        })
    })();
    Ok(info.map(Some))
}

/// Applies a layer like [`crate::unpack::apply_layer`], for use by the
/// sandbox with `id_map`: as root directly (ids mapped by the map); otherwise
/// in a child process inside a user namespace with the map, so that files
/// get the image's owners (as subordinate ids on the host). With a
/// single-id mapping, owners other than root cannot be kept:
/// `opts.ignore_chown_errors` decides whether that fails.
pub fn unpack_layer(
    mut reader: impl Read,
    dest: &Path,
    opts: &crate::unpack::UnpackOptions,
    id_map: &IdMap,
) -> Result<crate::unpack::Stats, SandboxError> {
    let unpack_err = |message: String| SandboxError::Unpack {
        dest: dest.to_owned(),
        message,
    };
    if id_map.kind == MappingKind::Root {
        give_to_container_root(dest, id_map).map_err(|e| unpack_err(e.to_string()))?;
        let mut o = opts.clone();
        o.id_map = id_map.clone();
        return crate::unpack::apply_layer(reader, dest, &o)
            .map_err(|e| unpack_err(error_chain(&e)));
    }
    let mut inner = opts.clone();
    inner.id_map = id_map.inside();
    let f = in_userns(
        id_map,
        "layer unpacker",
        false,
        |pipe| match crate::unpack::apply_layer(io::BufReader::new(pipe), dest, &inner) {
            Ok(s) => format!(
                "ok\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
                s.entries,
                s.bytes,
                s.whiteouts,
                s.opaque_dirs,
                s.chown_failures,
                s.skipped_devices,
                s.skipped_xattrs
            ),
            Err(e) => format!("error\n{}", error_chain(&e)),
        },
        |mut pipe| {
            // The child may stop reading early on an error: a broken pipe is
            // reported through its result instead.
            match io::copy(&mut reader, &mut pipe) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(SandboxError::Host {
                    what: format!("read the layer for {}", dest.display()),
                    source: e,
                }),
            }
        },
    )?
    .map_err(&unpack_err)?;
    let n: Vec<u64> = f
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| unpack_err(format!("bad number {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    if n.len() != 7 {
        return Err(unpack_err(format!("unexpected result {f:?}")));
    }
    Ok(crate::unpack::Stats {
        entries: n[0],
        bytes: n[1],
        whiteouts: n[2],
        opaque_dirs: n[3],
        chown_failures: n[4],
        skipped_devices: n[5],
        skipped_xattrs: n[6],
    })
}

/// Whether every file and directory below `dir` can be read (and every
/// directory searched) by this process.
fn readable_tree(dir: &Path) -> bool {
    use rustix::fs::Access;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries {
        let Ok(e) = e else { return false };
        let Ok(ft) = e.file_type() else { return false };
        let p = e.path();
        if ft.is_dir() {
            if rustix::fs::access(&p, Access::READ_OK | Access::EXEC_OK).is_err()
                || !readable_tree(&p)
            {
                return false;
            }
        } else if ft.is_file() && rustix::fs::access(&p, Access::READ_OK).is_err() {
            return false;
        }
    }
    true
}

/// Gives `path` the owner `uid`:`gid` as seen inside a sandbox with `id_map`
/// (container ids) and the permission bits `mode`: what a new cache mount
/// directory needs. As root the ids are mapped and set directly; otherwise it
/// is done from inside a user namespace with the map, where the caller may
/// chown to its subordinate ids. An id outside the map is an error.
pub fn set_owner(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
    id_map: &IdMap,
) -> Result<(), SandboxError> {
    let what = || format!("give {} to {uid}:{gid} mode {mode:o}", path.display());
    let apply = |uid: u32, gid: u32| -> io::Result<()> {
        rustix::fs::chown(
            path,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        )?;
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode & 0o7777))?;
        Ok(())
    };
    if id_map.kind == MappingKind::Root {
        let (Some(huid), Some(hgid)) = (id_map.host_uid(uid), id_map.host_gid(gid)) else {
            return Err(SandboxError::Host {
                what: what(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "id outside the id map"),
            });
        };
        return apply(huid, hgid).map_err(host(what()));
    }
    in_userns(
        id_map,
        "chown helper",
        true,
        |_pipe| match apply(uid, gid) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error\n{e}"),
        },
        |_pipe| Ok(()),
    )?
    .map_err(|message| SandboxError::Host {
        what: what(),
        source: io::Error::other(message),
    })?;
    Ok(())
}

/// Gives a directory that root made for a sandbox (a step dir, a snapshot's root) to the
/// container's root when `id_map` remaps root's ids: the sandbox's mounts run as that id
/// and must reach it. Nothing to do otherwise (the caller is already container root).
pub fn give_to_container_root(path: &Path, id_map: &IdMap) -> io::Result<()> {
    if id_map.kind != MappingKind::Root || id_map.is_identity() {
        return Ok(());
    }
    let (Some(uid), Some(gid)) = (id_map.host_uid(0), id_map.host_gid(0)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the id map has no container root",
        ));
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", path.display())))
}

/// Removes a step or snapshot directory. Without root, files owned by
/// subordinate ids (and overlay's work dir) are removed from inside a user
/// namespace with `id_map`, where they belong to the caller.
pub fn remove_tree(path: &Path, id_map: &IdMap) -> Result<(), SandboxError> {
    let direct = std::fs::remove_dir_all(path);
    match direct {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if id_map.kind == MappingKind::Root => {
            return Err(SandboxError::Host {
                what: format!("remove {}", path.display()),
                source: e,
            });
        }
        Err(_) => {}
    }
    in_userns(
        id_map,
        "remover",
        true,
        |_pipe| match std::fs::remove_dir_all(path) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error\n{e}"),
        },
        |_pipe| Ok(()),
    )?
    .map_err(|message| SandboxError::Host {
        what: format!("remove {}", path.display()),
        source: io::Error::other(message),
    })?;
    Ok(())
}

/// Whether overlayfs can be mounted in a user namespace here: mounts a
/// two-lower overlay in a throwaway namespace.
pub fn probe_overlay() -> bool {
    let Ok(dir) = tempdir_in_tmp() else {
        return false;
    };
    let names = ["l1", "l2", "u", "w", "m"];
    for n in names {
        if std::fs::create_dir(dir.join(n)).is_err() {
            return false;
        }
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let ok = match sys::fork() {
        Err(_) => false,
        Ok(sys::Fork::Child) => {
            let r = (|| -> io::Result<()> {
                sys::unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)?;
                std::fs::write("/proc/self/setgroups", "deny")?;
                std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
                std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
                use crate::mounts::Kernel;
                let mut k = HostKernel::default();
                k.make_private()?;
                k.overlay(
                    &[dir.join("l1"), dir.join("l2")],
                    Some((&dir.join("u"), &dir.join("w"))),
                    &dir.join("m"),
                )
            })();
            sys::exit_now(if r.is_ok() { 0 } else { 1 })
        }
        Ok(sys::Fork::Parent(pid)) => {
            let pid = Pid::from_raw(pid).expect("fork returns a positive pid");
            matches!(rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()), Ok(Some((_, s))) if s.exit_status() == Some(0))
        }
    };
    // overlayfs leaves `work/work` with mode 0, which even its owner cannot
    // descend into without privileges.
    let _ = rustix::fs::chmod(dir.join("w/work"), rustix::fs::Mode::from_raw_mode(0o700));
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

fn tempdir_in_tmp() -> io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("rbuild-probe-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}
