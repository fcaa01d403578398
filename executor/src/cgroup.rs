//! Resource limits of a sandbox: one cgroup per sandbox, made under a parent cgroup that
//! [`CgroupParent::detect`] finds once per command.
//!
//! - cgroup v2 (a `cgroup2` mount whose `cgroup.controllers` offers the controllers): the
//!   parent is `rbuild` below the caller's own cgroup (from `/proc/self/cgroup`). As root in
//!   the root cgroup that is `/sys/fs/cgroup/rbuild`; elsewhere the caller's cgroup must be
//!   writable (a delegated subtree, e.g. a systemd user scope) and hold no other process, as
//!   v2 lets only leaves hold processes: rbuild moves itself into a leaf `rbuild.self` so it
//!   can hand the controllers down.
//! - cgroup v1 (the controllers mounted one hierarchy each): the parent is `rbuild` below the
//!   caller's cgroup in the `memory`, `pids` and `cpu` hierarchies; that needs root.
//!
//! A sandbox's cgroup is `PARENT/PID-N` (PID: rbuild's own process); the parent is removed
//! with the last of them (and made again for the next). The caller moves the
//! sandbox's helper into it before the helper unshares the cgroup namespace, so the
//! namespace is rooted there and everything the sandbox forks is inside. It is removed when
//! the run ends; one left by a killed rbuild (its PID gone) is removed by the next
//! [`CgroupParent::detect`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The period of the CPU bandwidth limit, in microseconds (docker's).
const CPU_PERIOD_US: u64 = 100_000;

/// The resource limits of a sandbox (docker's `--memory`, `--memory-swap`, `--cpus`,
/// `--pids-limit`). `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory, in bytes.
    pub memory: Option<u64>,
    /// Memory plus swap, in bytes; `None` with `memory` set: twice `memory` (docker's
    /// default). Ignored without `memory`.
    pub memory_swap: Option<Swap>,
    /// CPU time, in billionths of a CPU (`--cpus 1.5` is 1_500_000_000).
    pub nano_cpus: Option<u64>,
    /// How many processes (and threads) at most.
    pub pids: Option<u64>,
}

/// `--memory-swap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Memory plus swap, in bytes.
    Total(u64),
    /// `-1`: swap without limit.
    Unlimited,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.nano_cpus.is_none() && self.pids.is_none()
    }

    /// The controllers these limits need.
    fn controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.memory.is_some() {
            c.push("memory");
        }
        if self.nano_cpus.is_some() {
            c.push("cpu");
        }
        if self.pids.is_some() {
            c.push("pids");
        }
        c
    }

    /// The CPU quota per [`CPU_PERIOD_US`], in microseconds (at least 1000, the kernel's
    /// minimum).
    fn cpu_quota_us(&self) -> Option<u64> {
        self.nano_cpus
            .map(|n| (n.saturating_mul(CPU_PERIOD_US) / 1_000_000_000).max(1000))
    }

    /// The memory-plus-swap limit in bytes, `None`: unlimited.
    fn memory_swap_total(&self) -> Option<u64> {
        let memory = self.memory?;
        match self.memory_swap {
            None => Some(memory.saturating_mul(2)),
            Some(Swap::Total(t)) => Some(t.max(memory)),
            Some(Swap::Unlimited) => None,
        }
    }
}

/// Errors of the cgroups; each names the cgroup file or directory.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup can carry the limits here.
    #[error("no cgroup for resource limits: {why}")]
    Unavailable {
        /// Why, in words.
        why: String,
    },
    /// A cgroup file or directory could not be made, written or removed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

/// Which cgroup hierarchy the parent lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// One unified directory.
    V2(PathBuf),
    /// One directory per controller (`memory`, `pids`, `cpu`), as `(controller, dir)`.
    V1(Vec<(&'static str, PathBuf)>),
}

/// Where the sandboxes' cgroups are made; found once per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupParent {
    layout: Layout,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The mount's root inside the hierarchy.
    root: String,
    /// Where it is mounted.
    point: PathBuf,
    /// `None`: cgroup2; else the v1 controllers of the hierarchy.
    controllers: Option<Vec<String>>,
}

/// The cgroup mounts of a `mountinfo` text.
fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (root, point) = (unescape(l.get(3)?), unescape(l.get(4)?));
            let controllers = match *r.first()? {
                "cgroup2" => None,
                "cgroup" => Some(
                    r.get(2)?
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(str::to_string)
                        .collect(),
                ),
                _ => return None,
            };
            Some(Mount {
                root,
                point: PathBuf::from(point),
                controllers,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The caller's cgroup path in the hierarchy with `controller` (`None`: the v2 one), from a
/// `/proc/self/cgroup` text.
fn own_path(proc_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => id == "0" && ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

/// The directory of cgroup `path` in `mount`.
fn dir_in(mount: &Mount, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    mount.point.join(rel)
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the sandbox cgroups in `parent` whose rbuild process is gone.
fn clean_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !pid_alive(pid) {
            match std::fs::remove_dir(e.path()) {
                Ok(()) => tracing::debug!("removed stale cgroup {}", e.path().display()),
                Err(err) => tracing::debug!("stale cgroup {}: {err}", e.path().display()),
            }
        }
    }
}

/// Makes `dir` unless it exists.
fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create the cgroup", dir)(e)),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), CgroupError> {
    std::fs::write(path, text).map_err(io_err("write", path))
}

fn unavailable(why: impl Into<String>) -> CgroupError {
    CgroupError::Unavailable { why: why.into() }
}

/// Enables `controllers` for the children of `dir` (v2).
fn delegate(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let have = std::fs::read_to_string(&file).map_err(io_err("read", &file))?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !have.split_whitespace().any(|h| h == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&file, &missing.join(" "))
}

impl CgroupParent {
    /// Finds (and makes) the parent of the sandboxes' cgroups for limits that need
    /// `controllers` (`memory`, `cpu`, `pids`), and removes stale sandbox cgroups in it.
    pub fn detect(limits: &Limits) -> Result<CgroupParent, CgroupError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(io_err("read", Path::new("/proc/self/cgroup")))?;
        let mounts = cgroup_mounts(&mountinfo);
        let wanted = {
            let mut w = limits.controllers();
            if w.is_empty() {
                w = vec!["memory", "cpu", "pids"];
            }
            w
        };
        let root = rustix::process::geteuid().is_root();
        // v2 when its mount offers every controller wanted.
        let v2 = mounts.iter().find(|m| m.controllers.is_none());
        if let Some(m) = v2 {
            let offered =
                std::fs::read_to_string(m.point.join("cgroup.controllers")).unwrap_or_default();
            if wanted
                .iter()
                .all(|c| offered.split_whitespace().any(|o| o == *c))
            {
                let own = own_path(&proc_cgroup, None).unwrap_or_else(|| "/".into());
                return Self::detect_v2(&dir_in(m, &own), own == "/", &wanted);
            }
        }
        // v1: a hierarchy per controller.
        let mut dirs = Vec::new();
        for c in &wanted {
            let Some(m) = mounts.iter().find(|m| {
                m.controllers
                    .as_ref()
                    .is_some_and(|cs| cs.iter().any(|x| x == c))
            }) else {
                return Err(unavailable(format!(
                    "the {c} controller is mounted neither in a cgroup v1 hierarchy nor \
                     offered by cgroup v2"
                )));
            };
            let own = own_path(&proc_cgroup, Some(c)).unwrap_or_else(|| "/".into());
            dirs.push((*c, dir_in(m, &own).join("rbuild")));
        }
        if !root {
            return Err(unavailable(
                "cgroup v1 without root: the cgroups are not delegated to this user",
            ));
        }
        for (_, d) in &dirs {
            make_dir(d)?;
            clean_stale(d);
        }
        Ok(CgroupParent {
            layout: Layout::V1(dirs),
        })
    }

    fn detect_v2(
        own: &Path,
        own_is_root: bool,
        wanted: &[&str],
    ) -> Result<CgroupParent, CgroupError> {
        let parent = own.join("rbuild");
        if own_is_root {
            delegate(own, wanted).map_err(|e| unavailable(format!("cgroup v2: {e}")))?;
        } else {
            let procs = own.join("cgroup.procs");
            if let Err(first) = delegate(own, wanted) {
                // Only leaves hold processes: move this process into one, when it is alone.
                let text = std::fs::read_to_string(&procs).unwrap_or_default();
                let me = std::process::id().to_string();
                if text.lines().any(|p| p != me) {
                    return Err(unavailable(format!(
                        "cgroup v2: {first}; the cgroup {} holds other processes too (run \
                         rbuild in a cgroup of its own, e.g. `systemd-run --user --scope`)",
                        own.display()
                    )));
                }
                let leaf = own.join("rbuild.self");
                make_dir(&leaf).map_err(|e| unavailable(format!("cgroup v2: {e}")))?;
                write_file(&leaf.join("cgroup.procs"), &me)
                    .and_then(|()| delegate(own, wanted))
                    .map_err(|e| unavailable(format!("cgroup v2: {e}")))?;
            }
        }
        make_dir(&parent).map_err(|e| unavailable(format!("cgroup v2: {e}")))?;
        delegate(&parent, wanted).map_err(|e| unavailable(format!("cgroup v2: {e}")))?;
        clean_stale(&parent);
        Ok(CgroupParent {
            layout: Layout::V2(parent),
        })
    }

    /// Makes a sandbox's cgroup with `limits`.
    pub fn create(&self, limits: &Limits) -> Result<SandboxCgroup, CgroupError> {
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut cg = SandboxCgroup {
            dirs: Vec::new(),
            v2: matches!(self.layout, Layout::V2(_)),
            memory: limits.memory,
        };
        // The parent goes when its last sandbox does: make it again when another rbuild
        // removed it meanwhile.
        match &self.layout {
            Layout::V2(parent) => {
                make_dir(parent)?;
                delegate(parent, &limits.controllers())?;
                let d = parent.join(&name);
                make_dir(&d)?;
                cg.dirs.push(("", d.clone()));
                if let Some(m) = limits.memory {
                    write_file(&d.join("memory.max"), &m.to_string())?;
                    let swap = d.join("memory.swap.max");
                    if swap.exists() {
                        let s = limits
                            .memory_swap_total()
                            .map_or("max".to_string(), |t| (t - m).to_string());
                        write_file(&swap, &s)?;
                    }
                }
                if let Some(q) = limits.cpu_quota_us() {
                    write_file(&d.join("cpu.max"), &format!("{q} {CPU_PERIOD_US}"))?;
                }
                if let Some(p) = limits.pids {
                    write_file(&d.join("pids.max"), &p.to_string())?;
                }
            }
            Layout::V1(parents) => {
                for (c, parent) in parents {
                    make_dir(parent)?;
                    let d = parent.join(&name);
                    make_dir(&d)?;
                    cg.dirs.push((c, d.clone()));
                    match *c {
                        "memory" => {
                            let Some(m) = limits.memory else { continue };
                            write_file(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                            let memsw = d.join("memory.memsw.limit_in_bytes");
                            if memsw.exists() {
                                let s = limits
                                    .memory_swap_total()
                                    .map_or("-1".to_string(), |t| t.to_string());
                                write_file(&memsw, &s)?;
                            }
                        }
                        "cpu" => {
                            let Some(q) = limits.cpu_quota_us() else {
                                continue;
                            };
                            write_file(&d.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                            write_file(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                        }
                        "pids" => {
                            let Some(p) = limits.pids else { continue };
                            write_file(&d.join("pids.max"), &p.to_string())?;
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(cg)
    }
}

/// One sandbox's cgroup (a directory per v1 controller); removed when dropped.
#[derive(Debug)]
pub struct SandboxCgroup {
    dirs: Vec<(&'static str, PathBuf)>,
    v2: bool,
    memory: Option<u64>,
}

impl SandboxCgroup {
    /// Moves process `pid` (and its threads) into the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, d) in &self.dirs {
            write_file(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The cgroup's directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// The memory limit, when set.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory
    }

    /// Whether the kernel's OOM killer killed a process of the cgroup.
    pub fn oom_killed(&self) -> bool {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.dirs
            .iter()
            .filter(|(c, _)| self.v2 || *c == "memory")
            .filter_map(|(_, d)| std::fs::read_to_string(d.join(file)).ok())
            .any(|text| {
                text.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        for (_, d) in &self.dirs {
            // The kernel may still be tearing the last processes down: retry for a while.
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if tries < 50 => {
                        tracing::trace!("cgroup {}: {e}", d.display());
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        tracing::warn!("cannot remove the cgroup {}: {e}", d.display());
                        break;
                    }
                }
            }
            // The parent too, when no other sandbox uses it, so nothing of rbuild's stays in
            // the caller's cgroup (which its owner may want to remove).
            if let Some(parent) = d.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// What to say of a sandbox the kernel's OOM killer ended.
pub fn oom_message(memory_limit: Option<u64>) -> String {
    match memory_limit {
        Some(m) => format!(
            "killed by the kernel's OOM killer (memory limit {})",
            show_size(m)
        ),
        None => "killed by the kernel's OOM killer".into(),
    }
}

/// A size for people: `64 MiB`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "bytes" {
        format!("{bytes} bytes")
    } else if v.fract() == 0.0 {
        format!("{v} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_cgroup_mounts_are_found() {
        let text = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
                    33 25 0:29 / /tmp rw - tmpfs tmpfs rw\n";
        let m = cgroup_mounts(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            m[1].controllers,
            Some(vec!["cpu".to_string(), "cpuacct".to_string()])
        );
        assert_eq!(m[2].controllers, None);
    }

    #[test]
    fn own_cgroup_per_controller() {
        let text = "8:pids:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/user.slice/x.scope\n";
        assert_eq!(own_path(text, Some("memory")).as_deref(), Some("/a/b"));
        assert_eq!(own_path(text, Some("cpu")).as_deref(), Some("/c"));
        assert_eq!(own_path(text, None).as_deref(), Some("/user.slice/x.scope"));
        let m = Mount {
            root: "/a".into(),
            point: "/sys/fs/cgroup/memory".into(),
            controllers: Some(vec![]),
        };
        assert_eq!(dir_in(&m, "/a/b"), Path::new("/sys/fs/cgroup/memory/b"));
    }

    #[test]
    fn cpu_quota_and_sizes_for_people() {
        let l = Limits {
            nano_cpus: Some(500_000_000),
            ..Limits::default()
        };
        assert_eq!(l.cpu_quota_us(), Some(50_000));
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(1536 << 20), "1.5 GiB");
    }
}
