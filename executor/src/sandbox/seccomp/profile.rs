//! A seccomp profile: the default action, the architectures, and the rules, each a list of
//! system call names with an action, argument checks and the conditions (capabilities,
//! architecture, kernel version) under which it applies. Read from Docker's profile JSON
//! ([`Profile::from_json`]) or built in code (the default profile), and resolved for one
//! sandbox ([`Profile::resolve`]) into the rules the compiler turns into BPF.

use std::path::{Path, PathBuf};

use rustix::thread::CapabilitySet;
use serde::Deserialize;

use super::Arch;

/// What the filter does with a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let it run.
    Allow,
    /// Fail it with this errno, without running it.
    Errno(u16),
    /// Kill the calling thread.
    KillThread,
    /// Kill the whole process.
    KillProcess,
    /// Send the thread `SIGSYS`.
    Trap,
    /// Hand it to a ptrace tracer with this value (fails with `ENOSYS` when there is none).
    Trace(u16),
    /// Let it run and log it.
    Log,
    /// Stop the caller until the supervisor holding the filter's listener answers
    /// (`SECCOMP_RET_USER_NOTIF`); only in filters rbuild makes itself.
    Notify,
}

/// How an argument is compared (all comparisons are of unsigned 64-bit values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `arg != value`
    NotEqual,
    /// `arg < value`
    LessThan,
    /// `arg <= value`
    LessOrEqual,
    /// `arg == value`
    Equal,
    /// `arg >= value`
    GreaterOrEqual,
    /// `arg > value`
    GreaterThan,
    /// `arg & value == value_two`
    MaskedEqual,
}

/// One argument check of a rule; every check of a rule must hold for the rule to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    /// Which argument, 0 to 5.
    pub index: u8,
    /// The comparison.
    pub op: Op,
    /// The value compared with (the mask for [`Op::MaskedEqual`]).
    pub value: u64,
    /// The value the masked argument must equal ([`Op::MaskedEqual`] only).
    pub value_two: u64,
}

/// When a rule applies: every listed capability in the sandbox's set, the host's
/// architecture among the listed ones, the kernel at least this version. An empty list
/// or `None` does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    /// Capability names, `CAP_SYS_ADMIN` style.
    pub caps: Vec<String>,
    /// Architecture names as Go spells them (`amd64`, `arm64`, `x86`, `x32`, `arm`).
    pub arches: Vec<String>,
    /// The minimum kernel version, (major, minor).
    pub min_kernel: Option<(u32, u32)>,
}

/// A rule: these system calls get this action when the arguments pass the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// System call names.
    pub names: Vec<String>,
    /// What happens when the rule applies.
    pub action: Action,
    /// Checks on the arguments (all must hold).
    pub args: Vec<ArgCheck>,
    /// The rule is used only when this holds.
    pub includes: Condition,
    /// The rule is left out when any part of this holds.
    pub excludes: Condition,
}

impl Rule {
    /// An unconditional rule for `names`.
    pub fn new(names: &[&str], action: Action) -> Rule {
        Rule {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            action,
            args: Vec::new(),
            includes: Condition::default(),
            excludes: Condition::default(),
        }
    }
}

/// A seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// What happens to a system call no rule names.
    pub default_action: Action,
    /// The architectures the filter answers for beside the host's own (for the host's
    /// architecture, with `archMap`; every listed one with `architectures`).
    pub arches: Vec<Arch>,
    /// The rules, first match first.
    pub rules: Vec<Rule>,
}

/// The host a profile is resolved for.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// The host's architecture.
    pub arch: Arch,
    /// The kernel's version, (major, minor).
    pub kernel: (u32, u32),
}

impl Profile {
    /// The rules that apply to a sandbox with capability set `caps` on `host`, in order.
    pub fn resolve(&self, caps: CapabilitySet, host: Host) -> Vec<&Rule> {
        let has_cap = |name: &String| {
            name.strip_prefix("CAP_")
                .and_then(CapabilitySet::from_name)
                .is_some_and(|c| caps.contains(c))
        };
        let arch = host.arch.go_name();
        let kernel_at_least = |v: Option<(u32, u32)>| v.is_some_and(|v| host.kernel >= v);
        self.rules
            .iter()
            .filter(|r| {
                let ex = &r.excludes;
                let excluded = ex.arches.iter().any(|a| a == arch)
                    || ex.caps.iter().any(has_cap)
                    || kernel_at_least(ex.min_kernel);
                let inc = &r.includes;
                let included = (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
                    && inc.caps.iter().all(has_cap)
                    && (inc.min_kernel.is_none() || kernel_at_least(inc.min_kernel));
                included && !excluded
            })
            .collect()
    }

    /// The architectures the filter covers on `host`: the host's own first, then the others
    /// the profile names that have tables here.
    pub fn arches_for(&self, host: Arch) -> Vec<Arch> {
        let mut v = vec![host];
        for a in &self.arches {
            if !v.contains(a) {
                v.push(*a);
            }
        }
        v
    }

    /// Reads a profile in Docker's JSON format from `path`.
    pub fn from_file(path: &Path) -> Result<Profile, ProfileError> {
        let bytes = std::fs::read(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Profile::from_json(path, &bytes)
    }

    /// Parses a profile in Docker's JSON format; `path` names it in errors.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<Profile, ProfileError> {
        let json: ProfileJson =
            serde_json::from_slice(bytes).map_err(|source| ProfileError::Parse {
                path: path.to_owned(),
                source,
            })?;
        json.into_profile(path)
    }
}

/// Errors of reading a seccomp profile; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file cannot be read.
    #[error("cannot read seccomp profile {}", path.display())]
    Read {
        /// The profile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid profile document (the cause says where).
    #[error("seccomp profile {} is not valid", path.display())]
    Parse {
        /// The profile.
        path: PathBuf,
        /// The cause, with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A rule is not valid.
    #[error("seccomp profile {}: syscalls[{index}]: {problem}", path.display())]
    Rule {
        /// The profile.
        path: PathBuf,
        /// The rule's position in `syscalls`.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The profile as a whole is not valid.
    #[error("seccomp profile {}: {problem}", path.display())]
    Profile {
        /// The profile.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The largest errno a filter can return (the kernel's `MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileJson {
    default_action: ActionName,
    default_errno_ret: Option<Errno>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapJson>>,
    #[serde(default)]
    syscalls: Option<Vec<SyscallJson>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapJson {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallJson {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: ActionName,
    errno_ret: Option<Errno>,
    #[serde(default)]
    args: Option<Vec<ArgJson>>,
    #[serde(default)]
    includes: Option<FilterJson>,
    #[serde(default)]
    excludes: Option<FilterJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgJson {
    index: ArgIndex,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: OpName,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterJson {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<KernelVersion>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum ActionName {
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
}

impl ActionName {
    /// The action, with `errno` for the two that carry a value (`EPERM` when not given, as
    /// Docker does).
    fn with(self, errno: Option<Errno>) -> Action {
        let value = errno.map_or(libc::EPERM as u16, |e| e.0);
        match self {
            ActionName::Allow => Action::Allow,
            ActionName::Errno => Action::Errno(value),
            ActionName::KillThread => Action::KillThread,
            ActionName::KillProcess => Action::KillProcess,
            ActionName::Trap => Action::Trap,
            ActionName::Trace => Action::Trace(value),
            ActionName::Log => Action::Log,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum OpName {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    LessThan,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterOrEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    GreaterThan,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

impl From<OpName> for Op {
    fn from(o: OpName) -> Op {
        match o {
            OpName::NotEqual => Op::NotEqual,
            OpName::LessThan => Op::LessThan,
            OpName::LessOrEqual => Op::LessOrEqual,
            OpName::Equal => Op::Equal,
            OpName::GreaterOrEqual => Op::GreaterOrEqual,
            OpName::GreaterThan => Op::GreaterThan,
            OpName::MaskedEqual => Op::MaskedEqual,
        }
    }
}

/// An errno a filter can return (checked while parsing, so the error has a position).
#[derive(Debug, Clone, Copy)]
struct Errno(u16);

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v > MAX_ERRNO {
            return Err(serde::de::Error::custom(format!(
                "errno {v} is out of range (at most {MAX_ERRNO})"
            )));
        }
        Ok(Errno(v as u16))
    }
}

/// A system call argument's index, 0 to 5.
#[derive(Debug, Clone, Copy)]
struct ArgIndex(u8);

impl<'de> Deserialize<'de> for ArgIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        match u8::try_from(v) {
            Ok(i) if i < 6 => Ok(ArgIndex(i)),
            _ => Err(serde::de::Error::custom(format!(
                "argument index {v} is out of range (system calls have arguments 0 to 5)"
            ))),
        }
    }
}

/// `"<major>.<minor>"`.
#[derive(Debug, Clone, Copy)]
struct KernelVersion(u32, u32);

impl<'de> Deserialize<'de> for KernelVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = s
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .filter(|v| *v != (0, 0));
        match parsed {
            Some((a, b)) => Ok(KernelVersion(a, b)),
            None => Err(serde::de::Error::custom(format!(
                "kernel version {s:?} is not \"<major>.<minor>\""
            ))),
        }
    }
}

impl FilterJson {
    fn into_condition(self) -> Condition {
        Condition {
            caps: self.caps.unwrap_or_default(),
            arches: self.arches.unwrap_or_default(),
            min_kernel: self.min_kernel.map(|k| (k.0, k.1)),
        }
    }
}

impl ProfileJson {
    fn into_profile(self, path: &Path) -> Result<Profile, ProfileError> {
        let problem = |problem: String| ProfileError::Profile {
            path: path.to_owned(),
            problem,
        };
        if self.architectures.as_ref().is_some_and(|a| !a.is_empty())
            && self.arch_map.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(problem(
                "both \"architectures\" and \"archMap\" are given; use one".into(),
            ));
        }
        let mut arch_names: Vec<String> = self.architectures.unwrap_or_default();
        // With archMap, the host's entry and its sub-architectures.
        if let Some(host) = Arch::native() {
            for entry in self.arch_map.unwrap_or_default() {
                if entry.architecture == host.scmp_name() {
                    arch_names.push(entry.architecture);
                    arch_names.extend(entry.sub_architectures.unwrap_or_default());
                }
            }
        }
        let mut arches = Vec::new();
        for name in &arch_names {
            if !name.starts_with("SCMP_ARCH_") {
                return Err(problem(format!("unknown architecture {name:?}")));
            }
            // Architectures this build has no table for cannot run here; they are skipped.
            if let Some(a) = Arch::from_scmp_name(name) {
                if !arches.contains(&a) {
                    arches.push(a);
                }
            }
        }
        let mut rules = Vec::new();
        for (index, call) in self.syscalls.unwrap_or_default().into_iter().enumerate() {
            let rule_problem = |problem: &str| ProfileError::Rule {
                path: path.to_owned(),
                index,
                problem: problem.to_owned(),
            };
            let names = match (call.name, call.names) {
                (Some(_), Some(n)) if !n.is_empty() => {
                    return Err(rule_problem(
                        "both \"name\" and \"names\" are given; use one",
                    ));
                }
                (Some(n), _) => vec![n],
                (None, Some(n)) if !n.is_empty() => n,
                (None, _) => return Err(rule_problem("no system call is named")),
            };
            if names.iter().any(String::is_empty) {
                return Err(rule_problem("a system call name is empty"));
            }
            rules.push(Rule {
                names,
                action: call.action.with(call.errno_ret),
                args: call
                    .args
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| ArgCheck {
                        index: a.index.0,
                        op: a.op.into(),
                        value: a.value,
                        value_two: a.value_two,
                    })
                    .collect(),
                includes: call.includes.unwrap_or_default().into_condition(),
                excludes: call.excludes.unwrap_or_default().into_condition(),
            });
        }
        Ok(Profile {
            default_action: self.default_action.with(self.default_errno_ret),
            arches,
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::from_json(Path::new("p.json"), text.as_bytes())
    }

    #[test]
    fn a_docker_profile_parses_with_its_actions_args_and_conditions() {
        let p = parse(
            r#"{
              "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
              "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                          {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
              "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "comment": "ignored"},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "includes": {"minKernel": "4.8", "arches": ["amd64"]}}
              ]}"#,
        )
        .expect("parses");
        assert_eq!(p.default_action, Action::Errno(1));
        let expect_arches: &[Arch] = if cfg!(target_arch = "x86_64") {
            &[Arch::X86_64, Arch::X86, Arch::X32]
        } else {
            &[Arch::Aarch64, Arch::Arm]
        };
        assert_eq!(p.arches, expect_arches);
        assert_eq!(p.rules.len(), 3);
        assert_eq!(p.rules[0].names, ["read", "write"]);
        assert_eq!(
            p.rules[1].args,
            [ArgCheck {
                index: 0,
                op: Op::MaskedEqual,
                value: 2114060288,
                value_two: 0
            }]
        );
        assert_eq!(p.rules[1].excludes.caps, ["CAP_SYS_ADMIN"]);
        assert_eq!(p.rules[2].names, ["mkdir"]);
        assert_eq!(p.rules[2].action, Action::Errno(13));
        assert_eq!(p.rules[2].includes.min_kernel, Some((4, 8)));
    }

    #[test]
    fn errors_name_the_file_and_where() {
        let err = |text: &str| {
            let e = parse(text).expect_err("should fail");
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(&e) {
                s = format!("{s}: {src}");
            }
            s
        };
        let e = err("{\"defaultAction\": \"SCMP_ACT_NOPE\"}");
        assert!(
            e.starts_with("seccomp profile p.json is not valid: unknown variant `SCMP_ACT_NOPE`"),
            "{e}"
        );
        assert!(e.contains("line 1 column"), "{e}");
        let e = err(
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"x\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 70000}]}",
        );
        assert!(
            e.contains("errno 70000 is out of range") && e.contains("line 2"),
            "{e}"
        );
        let e = err(
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"x\"], \"action\": \"SCMP_ACT_ALLOW\",\n\"args\": [{\"index\": 6, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}]}",
        );
        assert!(
            e.contains("argument index 6 is out of range") && e.contains("line 2"),
            "{e}"
        );
        let e = err(
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"x\"], \"action\": \"SCMP_ACT_ALLOW\", \"includes\": {\"minKernel\": \"4\"}}]}",
        );
        assert!(e.contains("kernel version \"4\" is not"), "{e}");
        let e = err(
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"action\": \"SCMP_ACT_ALLOW\"}]}",
        );
        assert_eq!(
            e,
            "seccomp profile p.json: syscalls[0]: no system call is named"
        );
        let e = err(
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [\"SCMP_ARCH_X86\"], \"archMap\": [{\"architecture\": \"SCMP_ARCH_X86_64\"}]}",
        );
        assert!(e.contains("both \"architectures\" and \"archMap\""), "{e}");
        let e = err("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [\"x86\"]}");
        assert!(e.contains("unknown architecture \"x86\""), "{e}");
        let e = err("{\"syscalls\": []}");
        assert!(e.contains("missing field `defaultAction`"), "{e}");
    }

    #[test]
    fn conditions_follow_the_capabilities_architecture_and_kernel() {
        let mut with_admin = Rule::new(&["mount"], Action::Allow);
        with_admin.includes.caps = vec!["CAP_SYS_ADMIN".into()];
        let mut without_admin = Rule::new(&["clone3"], Action::Errno(38));
        without_admin.excludes.caps = vec!["CAP_SYS_ADMIN".into()];
        let mut arm_only = Rule::new(&["set_tls"], Action::Allow);
        arm_only.includes.arches = vec!["arm64".into()];
        let mut new_kernel = Rule::new(&["ptrace"], Action::Allow);
        new_kernel.includes.min_kernel = Some((4, 8));
        let p = Profile {
            default_action: Action::Errno(1),
            arches: Vec::new(),
            rules: vec![with_admin, without_admin, arm_only, new_kernel],
        };
        let names = |caps, arch, kernel| -> Vec<String> {
            p.resolve(caps, Host { arch, kernel })
                .iter()
                .map(|r| r.names[0].clone())
                .collect()
        };
        assert_eq!(
            names(CapabilitySet::CHOWN, Arch::X86_64, (6, 1)),
            ["clone3", "ptrace"]
        );
        assert_eq!(
            names(CapabilitySet::SYS_ADMIN, Arch::Aarch64, (4, 4)),
            ["mount", "set_tls"]
        );
    }
}
