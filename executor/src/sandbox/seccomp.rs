//! The sandbox's seccomp filter: which system calls the command may make.
//!
//! [`Seccomp`] is a [`super::RunSpec`]'s setting: the default profile (Docker's default,
//! written out in `default`), none, or a profile read from Docker's JSON format (`profile`).
//! Before forking, [`filter_for`] resolves the profile for the sandbox's capability set, the
//! host's architecture and kernel, and compiles it to BPF (`bpf`, with the system call
//! numbers of `tables`); the command's set-up installs it as its last step before `execve`.

mod bpf;
mod default;
mod profile;
mod tables;

use std::sync::{Arc, Mutex};

use rustix::thread::CapabilitySet;

pub use bpf::BpfError;
use profile::Host;
pub use profile::{Action, ArgCheck, Condition, Op, Profile, ProfileError, Rule};

/// A sandbox's seccomp setting.
#[derive(Debug, Clone, Default)]
pub enum Seccomp {
    /// Docker's default profile, for the sandbox's capability set.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// This profile.
    Profile(Arc<Profile>),
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub(super) struct Filter(pub(super) Vec<libc::sock_filter>);

/// An architecture the filter has system call numbers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 32-bit x86 (i386), on x86-64 hosts.
    X86,
    /// The x32 ABI, on x86-64 hosts.
    X32,
    /// 64-bit ARM.
    Aarch64,
    /// 32-bit ARM (EABI), on 64-bit ARM hosts.
    Arm,
}

impl Arch {
    /// The host's architecture, when it is one the filter knows.
    pub fn native() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The `AUDIT_ARCH_*` value the kernel reports in `seccomp_data.arch`.
    fn audit(self) -> u32 {
        const LE: u32 = 0x4000_0000;
        const BITS64: u32 = 0x8000_0000;
        match self {
            Arch::X86_64 | Arch::X32 => 62 | BITS64 | LE,
            Arch::X86 => 3 | LE,
            Arch::Aarch64 => 183 | BITS64 | LE,
            Arch::Arm => 40 | LE,
        }
    }

    /// The profile format's name (`SCMP_ARCH_X86_64`).
    pub fn scmp_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::X86 => "SCMP_ARCH_X86",
            Arch::X32 => "SCMP_ARCH_X32",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
            Arch::Arm => "SCMP_ARCH_ARM",
        }
    }

    fn from_scmp_name(name: &str) -> Option<Arch> {
        [Arch::X86_64, Arch::X86, Arch::X32, Arch::Aarch64, Arch::Arm]
            .into_iter()
            .find(|a| a.scmp_name() == name)
    }

    /// Go's name, which the profile format's `includes`/`excludes` use.
    fn go_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::X86 => "x86",
            Arch::X32 => "x32",
            Arch::Aarch64 => "arm64",
            Arch::Arm => "arm",
        }
    }

    /// The number of system call `name` here.
    fn number(self, name: &str) -> Option<u32> {
        let table = match self {
            Arch::X86_64 => tables::X86_64,
            Arch::X86 => tables::X86,
            Arch::X32 => tables::X32,
            Arch::Aarch64 => tables::AARCH64,
            Arch::Arm => tables::ARM,
        };
        table.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
    }
}

/// Errors of building a sandbox's filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The host's architecture has no system call table here.
    #[error("seccomp filters are not supported on {arch}")]
    Unsupported {
        /// The architecture.
        arch: &'static str,
    },
    /// The profile does not compile.
    #[error("cannot compile the seccomp profile")]
    Compile(#[source] BpfError),
}

/// The host the filter is for: its architecture and its kernel's version.
fn host() -> Result<Host, SeccompError> {
    let arch = Arch::native().ok_or(SeccompError::Unsupported {
        arch: std::env::consts::ARCH,
    })?;
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let kernel = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok(Host { arch, kernel })
}

/// The compiled filter of `setting` for a sandbox with capability set `caps`; `None` when
/// unconfined.
pub(super) fn filter_for(
    setting: &Seccomp,
    caps: CapabilitySet,
) -> Result<Option<Filter>, SeccompError> {
    match setting {
        Seccomp::Unconfined => Ok(None),
        Seccomp::Profile(p) => compile(p, caps).map(Some),
        Seccomp::Default => {
            // Every build step asks for the same one: compile it once per process.
            static LAST: Mutex<Option<(CapabilitySet, Filter)>> = Mutex::new(None);
            let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, f)) = last.as_ref().filter(|(c, _)| *c == caps) {
                return Ok(Some(f.clone()));
            }
            let f = compile(&default::profile(), caps)?;
            *last = Some((caps, f.clone()));
            Ok(Some(f))
        }
    }
}

/// The id-changing calls of single-id mode (with their 16- and 32-bit variants where an
/// architecture has them): the supervisor keeps each process's ids itself.
const ID_SETTERS: &[&str] = &[
    "setuid",
    "setuid32",
    "setgid",
    "setgid32",
    "setreuid",
    "setreuid32",
    "setregid",
    "setregid32",
    "setresuid",
    "setresuid32",
    "setresgid",
    "setresgid32",
    "setfsuid",
    "setfsuid32",
    "setfsgid",
    "setfsgid32",
    "setgroups",
    "setgroups32",
];

/// The calls that read the ids the supervisor keeps.
const ID_GETTERS: &[&str] = &[
    "getuid",
    "getuid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getegid",
    "getegid32",
    "getresuid",
    "getresuid32",
    "getresgid",
    "getresgid32",
    "getgroups",
    "getgroups32",
];

/// The calls that report a file's owner: answered with the recorded owner when there is one.
const STAT_CALLS: &[&str] = &["stat", "fstat", "lstat", "newfstatat", "statx"];

/// The ownership calls handed to the owner recorder in single-id mode.
const CHOWN_CALLS: &[&str] = &[
    "chown", "chown32", "fchown", "fchown32", "lchown", "lchown32", "fchownat",
];

/// A call of the host's own architecture that the supervisor of single-id mode answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// `chown(path, uid, gid)`.
    Chown,
    /// `lchown(path, uid, gid)`.
    Lchown,
    /// `fchown(fd, uid, gid)`.
    Fchown,
    /// `fchownat(dirfd, path, uid, gid, flags)`.
    Fchownat,
    /// `setuid`, `setreuid`, `setresuid` (and the gid ones with `gid`).
    SetIds {
        /// Group ids, not user ids.
        gid: bool,
        /// 1 (`setuid`), 2 (`setreuid`) or 3 (`setresuid`) arguments.
        args: u8,
    },
    /// `setfsuid`/`setfsgid`: answered with the effective id, changing nothing.
    SetFs {
        /// Group id, not user id.
        gid: bool,
    },
    /// `setgroups(size, list)`.
    SetGroups,
    /// `getuid` (0), `geteuid` (1) and the gid ones.
    GetId {
        /// Group id, not user id.
        gid: bool,
        /// 0: real, 1: effective.
        which: usize,
    },
    /// `getresuid`/`getresgid(real*, effective*, saved*)`.
    GetRes {
        /// Group ids, not user ids.
        gid: bool,
    },
    /// `getgroups(size, list)`.
    GetGroups,
    /// `stat`, `lstat`, `fstat`, `newfstatat`, `statx`.
    Stat(StatCall),
}

/// Which stat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatCall {
    /// `stat(path, buf)`.
    Stat,
    /// `lstat(path, buf)`.
    Lstat,
    /// `fstat(fd, buf)`.
    Fstat,
    /// `newfstatat(dirfd, path, buf, flags)`.
    At,
    /// `statx(dirfd, path, flags, mask, buf)`.
    Statx,
}

/// The call a notification is for: `None` for any other call and for every call of another
/// architecture than the host's (32-bit and x32 programs).
pub(super) fn call_of(audit_arch: u32, nr: i32) -> Option<Call> {
    let arch = Arch::native()?;
    if audit_arch != arch.audit() {
        return None;
    }
    let nr = u32::try_from(nr).ok()?;
    if nr & bpf::X32_SYSCALL_BIT != 0 {
        return None;
    }
    let set = |gid, args| Call::SetIds { gid, args };
    let get = |gid, which| Call::GetId { gid, which };
    [
        ("chown", Call::Chown),
        ("lchown", Call::Lchown),
        ("fchown", Call::Fchown),
        ("fchownat", Call::Fchownat),
        ("setuid", set(false, 1)),
        ("setreuid", set(false, 2)),
        ("setresuid", set(false, 3)),
        ("setgid", set(true, 1)),
        ("setregid", set(true, 2)),
        ("setresgid", set(true, 3)),
        ("setfsuid", Call::SetFs { gid: false }),
        ("setfsgid", Call::SetFs { gid: true }),
        ("setgroups", Call::SetGroups),
        ("getuid", get(false, 0)),
        ("geteuid", get(false, 1)),
        ("getgid", get(true, 0)),
        ("getegid", get(true, 1)),
        ("getresuid", Call::GetRes { gid: false }),
        ("getresgid", Call::GetRes { gid: true }),
        ("getgroups", Call::GetGroups),
        ("stat", Call::Stat(StatCall::Stat)),
        ("lstat", Call::Stat(StatCall::Lstat)),
        ("fstat", Call::Stat(StatCall::Fstat)),
        ("newfstatat", Call::Stat(StatCall::At)),
        ("statx", Call::Stat(StatCall::Statx)),
    ]
    .into_iter()
    .find(|(name, _)| arch.number(name) == Some(nr))
    .map(|(_, c)| c)
}

/// Whether a notification is an id-changing call of a compatibility architecture (a 32-bit
/// or x32 program): it succeeds without effect, as in charliecloud's seccomp mode.
pub(super) fn foreign_id_setter(audit_arch: u32, nr: i32) -> bool {
    let Ok(nr) = u32::try_from(nr) else {
        return false;
    };
    [Arch::X86, Arch::X32, Arch::Arm].into_iter().any(|a| {
        a.audit() == audit_arch && ID_SETTERS.iter().any(|name| a.number(name) == Some(nr))
    })
}

/// The filter of single-id mode, installed beside the sandbox's own: the id-changing and
/// id-reading calls and the ownership calls wait for the supervisor in init; everything else
/// is left to the other filter. It answers for the host's architecture and the compatibility
/// ones the default profile covers, so it refuses nothing the other allows.
pub(super) fn owner_filter() -> Result<Filter, SeccompError> {
    static FILTER: std::sync::OnceLock<Vec<libc::sock_filter>> = std::sync::OnceLock::new();
    if let Some(prog) = FILTER.get() {
        return Ok(Filter(prog.clone()));
    }
    let host = host()?;
    let names: Vec<&str> = [ID_SETTERS, ID_GETTERS, CHOWN_CALLS, STAT_CALLS].concat();
    let rules = [Rule::new(&names, Action::Notify)];
    let arches = default::profile().arches_for(host.arch);
    let prog = bpf::compile(&arches, Action::Allow, &rules.iter().collect::<Vec<_>>())
        .map_err(SeccompError::Compile)?;
    Ok(Filter(FILTER.get_or_init(|| prog).clone()))
}

fn compile(profile: &Profile, caps: CapabilitySet) -> Result<Filter, SeccompError> {
    let host = host()?;
    let rules = profile.resolve(caps, host);
    let prog = bpf::compile(
        &profile.arches_for(host.arch),
        profile.default_action,
        &rules,
    )
    .map_err(SeccompError::Compile)?;
    Ok(Filter(prog))
}

#[cfg(test)]
mod tests {
    use super::bpf::ret_value;
    use super::bpf::tests::run;
    use super::*;

    /// The default filter for `caps`, run on one call of `arch`.
    fn verdict(caps: CapabilitySet, arch: Arch, name: &str, args: [u64; 6]) -> Action {
        let Some(Filter(prog)) = filter_for(&Seccomp::Default, caps).expect("compiles") else {
            panic!("a filter")
        };
        let nr = arch
            .number(name)
            .unwrap_or_else(|| panic!("{name} on {arch:?}"));
        let got = run(&prog, arch.audit(), nr, args);
        [
            Action::Allow,
            Action::Errno(1),
            Action::Errno(38),
            Action::KillProcess,
        ]
        .into_iter()
        .find(|a| ret_value(*a) == got)
        .unwrap_or_else(|| panic!("unexpected action {got:#x}"))
    }

    fn docker_caps() -> CapabilitySet {
        super::super::default_capabilities()
    }

    #[test]
    fn the_default_profile_allows_ordinary_calls_and_refuses_the_rest() {
        let Some(host) = Arch::native() else { return };
        let caps = docker_caps();
        let allow = Action::Allow;
        let eperm = Action::Errno(1);
        for name in [
            "read",
            "openat",
            "execve",
            "exit_group",
            "mkdirat",
            "chroot",
            "getdents64",
        ] {
            assert_eq!(verdict(caps, host, name, [0; 6]), allow, "{name}");
        }
        for name in [
            "keyctl",
            "add_key",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "kcmp",
            "bpf",
            "init_module",
            "reboot",
            "swapon",
            "pivot_root",
            "open_by_handle_at",
            "userfaultfd",
        ] {
            assert_eq!(verdict(caps, host, name, [0; 6]), eperm, "{name}");
        }
        // Namespaces through clone need CAP_SYS_ADMIN; clone3 answers ENOSYS.
        let sigchld = libc::SIGCHLD as u64;
        let newuser = libc::CLONE_NEWUSER as u64;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let mut args = [0; 6];
        args[0] = sigchld;
        assert_eq!(verdict(caps, host, "clone", args), allow);
        args[0] = thread;
        assert_eq!(verdict(caps, host, "clone", args), allow);
        args[0] = sigchld | newuser;
        assert_eq!(verdict(caps, host, "clone", args), eperm);
        assert_eq!(verdict(caps, host, "clone3", [0; 6]), Action::Errno(38));
        let admin = caps | CapabilitySet::SYS_ADMIN;
        assert_eq!(verdict(admin, host, "clone", args), allow);
        assert_eq!(verdict(admin, host, "clone3", [0; 6]), allow);
        assert_eq!(verdict(admin, host, "mount", [0; 6]), allow);
        assert_eq!(
            verdict(caps | CapabilitySet::SYS_PTRACE, host, "kcmp", [0; 6]),
            allow
        );
        // personality: only the listed values.
        for (p, want) in [
            (0, allow),
            (8, allow),
            (0x20008, allow),
            (0xffff_ffff, allow),
            (0x0040_0000, eperm),
        ] {
            assert_eq!(
                verdict(caps, host, "personality", [p, 0, 0, 0, 0, 0]),
                want,
                "{p:#x}"
            );
        }
        // socket: every family but AF_ALG and AF_VSOCK.
        for (family, want) in [
            (libc::AF_INET, allow),
            (libc::AF_NETLINK, allow),
            (libc::AF_ALG, eperm),
            (39, allow),
            (libc::AF_VSOCK, eperm),
            (44, allow),
        ] {
            assert_eq!(
                verdict(caps, host, "socket", [family as u64, 0, 0, 0, 0, 0]),
                want,
                "{family}"
            );
        }
    }

    #[test]
    fn the_compat_architectures_are_covered() {
        let caps = docker_caps();
        if Arch::native() == Some(Arch::X86_64) {
            assert_eq!(
                verdict(caps, Arch::X86, "socketcall", [0; 6]),
                Action::Allow
            );
            assert_eq!(verdict(caps, Arch::X86, "mmap2", [0; 6]), Action::Allow);
            assert_eq!(verdict(caps, Arch::X86, "keyctl", [0; 6]), Action::Errno(1));
            assert_eq!(
                verdict(caps, Arch::X86, "modify_ldt", [0; 6]),
                Action::Allow
            );
            assert_eq!(verdict(caps, Arch::X32, "read", [0; 6]), Action::Allow);
            assert_eq!(verdict(caps, Arch::X32, "keyctl", [0; 6]), Action::Errno(1));
            assert_eq!(
                verdict(caps, Arch::X32, "arch_prctl", [0; 6]),
                Action::Allow
            );
            // Architecture conditions name the host's architecture; the rule then holds for
            // every architecture of the filter that has the call, as with libseccomp.
            assert_eq!(
                verdict(caps, Arch::X86, "arch_prctl", [0; 6]),
                Action::Allow
            );
        }
        if Arch::native() == Some(Arch::Aarch64) {
            assert_eq!(verdict(caps, Arch::Arm, "set_tls", [0; 6]), Action::Allow);
            assert_eq!(verdict(caps, Arch::Arm, "keyctl", [0; 6]), Action::Errno(1));
        }
    }

    #[test]
    fn the_owner_filter_hands_on_id_and_owner_calls() {
        let Some(host) = Arch::native() else { return };
        let Filter(prog) = owner_filter().expect("compiles");
        let verdict = |arch: Arch, name: &str| {
            let nr = arch.number(name).unwrap_or_else(|| panic!("{name}"));
            run(&prog, arch.audit(), nr, [0; 6])
        };
        let notify = ret_value(Action::Notify);
        for name in [
            "setuid",
            "setresgid",
            "setgroups",
            "getuid",
            "getgroups",
            "fchownat",
            "newfstatat",
            "statx",
        ] {
            assert_eq!(verdict(host, name), notify, "{name}");
            let nr = host.number(name).expect("a number") as i32;
            assert!(call_of(host.audit(), nr).is_some(), "{name}");
            assert!(!foreign_id_setter(host.audit(), nr), "{name}");
        }
        for name in ["read", "openat", "execve", "mount", "getpid"] {
            assert_eq!(verdict(host, name), ret_value(Action::Allow), "{name}");
        }
        if host == Arch::X86_64 {
            // 32-bit programs: id changes succeed without effect, the rest runs as it would.
            for name in ["setuid32", "chown32", "getuid32"] {
                assert_eq!(verdict(Arch::X86, name), notify, "{name}");
                let nr = Arch::X86.number(name).expect("a number") as i32;
                assert_eq!(call_of(Arch::X86.audit(), nr), None);
                assert_eq!(foreign_id_setter(Arch::X86.audit(), nr), name == "setuid32");
            }
        }
    }

    #[test]
    fn the_default_filter_fits_the_kernel_limit() {
        let Some(Filter(prog)) =
            filter_for(&Seccomp::Default, CapabilitySet::all()).expect("compiles")
        else {
            panic!("a filter")
        };
        assert!(prog.len() < 4096, "{} instructions", prog.len());
        assert!(
            filter_for(&Seccomp::Unconfined, docker_caps())
                .expect("ok")
                .is_none()
        );
    }
}
