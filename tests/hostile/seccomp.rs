//! The system calls a build step or a container may make: every sandbox runs under Docker's
//! default seccomp profile (`Seccomp: 2` in its status), so the kernel's key store, new
//! namespaces, other personalities, `kcmp` and the rest the profile leaves out fail with
//! `EPERM`, and `clone3` with `ENOSYS` so that libc falls back to `clone`. `rbuild run
//! --security-opt seccomp=unconfined` lifts the filter, `seccomp=FILE` replaces it with a
//! profile in Docker's format, and a bad profile is refused naming the file and the place.
//! Real software still works under it: apt-get installs a package (with apt's own seccomp
//! sandbox on for its download methods). Each case runs as root and as an unprivileged user.

use crate::support::{BASE, BuildEnv, as_root_and_rootless, ok, tool};

/// A static probe: for each argument, makes that system call and prints `NAME: ok` or
/// `NAME: <strerror>`.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long traced(void) {
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    long r = ptrace(PTRACE_ATTACH, child, 0, 0);
    int e = errno;
    kill(child, SIGKILL);
    waitpid(child, 0, 0);
    errno = e;
    return r;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *c = argv[i];
        long r = -1;
        errno = 0;
        if (!strcmp(c, "keyctl")) r = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
        else if (!strcmp(c, "kcmp")) r = syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0);
        else if (!strcmp(c, "clone3")) r = syscall(SYS_clone3, 0, 0);
        else if (!strcmp(c, "personality")) r = personality(ADDR_NO_RANDOMIZE);
        else if (!strcmp(c, "ptrace")) r = traced();
        else { printf("%s: unknown probe\n", c); return 2; }
        printf("%s: %s\n", c, r < 0 ? strerror(errno) : "ok");
    }
    return 0;
}
"#;

/// What the sandbox's status says, then each probe, `unshare -U` and `mount -t tmpfs`.
const SCRIPT: &str = "grep '^Seccomp:' /proc/self/status; \
    /probe keyctl kcmp clone3 personality ptrace; \
    unshare -U true 2>&1 && echo 'unshare: ok'; \
    mkdir -p /m && mount -t tmpfs none /m 2>&1 && echo 'mount: ok'; true";

/// A build environment whose context holds the static probe, and an image `probe` with it.
fn probe_env(rootless: bool) -> BuildEnv {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let src = env.write("probe.c", PROBE_C);
    ok(tool("gcc", "gcc")
        .args(["-static", "-O2", "-o"])
        .arg(env.ctx.join("probe"))
        .arg(&src));
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY probe /probe\nRUN ({SCRIPT}) > /in-run\n"
    ));
    env.build(&["-t", "probe"]);
    env
}

fn assert_confined(what: &str, out: &str) {
    for line in [
        "Seccomp:\t2\n",
        "keyctl: Operation not permitted\n",
        "kcmp: Operation not permitted\n",
        "clone3: Function not implemented\n",
        "personality: Operation not permitted\n",
        // As in Docker's profile on kernels from 4.8: tracing one's own processes is allowed.
        "ptrace: ok\n",
    ] {
        assert!(out.contains(line), "{what}: no {line:?} in:\n{out}");
    }
    assert!(
        out.contains("unshare(0x10000000): Operation not permitted"),
        "{what}: {out}"
    );
    // busybox's words for EPERM.
    assert!(
        out.contains("mount: permission denied (are you root?)"),
        "{what}: {out}"
    );
}

fn filtered(rootless: bool) {
    let env = probe_env(rootless);
    assert_confined("RUN", &env.sh("probe", "cat /in-run"));
    assert_confined("run", &env.sh("probe", SCRIPT));
}

fn unconfined(rootless: bool) {
    let env = probe_env(rootless);
    let out = ok(env.rbuild().args([
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "probe",
        "sh",
        "-c",
        SCRIPT,
    ]))
    .stdout;
    for line in [
        "Seccomp:\t0\n",
        "kcmp: ok\n",
        "clone3: Invalid argument\n",
        "personality: ok\n",
        "unshare: ok\n",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert!(!out.contains("keyctl: Operation not permitted"), "{out}");
}

fn custom_profile(rootless: bool) {
    let env = probe_env(rootless);
    let profile = env.write(
        "deny-mkdir.json",
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
  ]
}"#,
    );
    let opt = format!("seccomp={}", profile.display());
    let run = crate::support::finish_cmd(env.rbuild().args([
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "probe",
        "sh",
        "-c",
        "grep '^Seccomp:' /proc/self/status; mkdir /made; /probe kcmp",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    // The profile's errno; what it does not name is allowed.
    assert!(
        run.stderr
            .contains("mkdir: can't create directory '/made': Permission denied"),
        "{run:?}"
    );
    assert_eq!(run.stdout, "Seccomp:\t2\nkcmp: ok\n");

    // A bad profile: refused before anything runs, naming the file, the line and the column.
    let bad = env.write(
        "bad.json",
        "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_DENY\"}]\n}\n",
    );
    let opt = format!("seccomp={}", bad.display());
    let run = crate::fails_125(env.rbuild().args([
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "probe",
        "true",
    ]));
    let want = format!("seccomp profile {} is not valid", bad.display());
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown variant `SCMP_ACT_DENY`")
            && run.stderr.contains("line 3 column"),
        "{}",
        run.stderr
    );
}

fn apt_get_installs_under_the_filter(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let registry = rbuild_test_support::Registry::start();
    rbuild_test_support::DebianBase::bookworm().push(&registry, "debian:bookworm");
    env.dockerfile(&format!(
        "FROM {}/debian:bookworm\n\
         RUN grep '^Seccomp:' /proc/self/status > /seccomp && \
             apt-get -o APT::Sandbox::Seccomp=true update && \
             apt-get -o APT::Sandbox::Seccomp=true install -y --no-install-recommends hello\n",
        registry.host()
    ));
    env.build(&["-t", "apt"]);
    assert_eq!(
        env.sh("apt", "cat /seccomp; hello"),
        "Seccomp:\t2\nHello, world!\n"
    );
}

/// One test as root and one as the unprivileged user, named `CASE::root` and
/// `CASE::rootless`.
/// `RUN --security=insecure` needs `--allow security.insecure`, and then that step alone has
/// every privilege of its user namespace: all capabilities, no filter, no no_new_privs, /proc
/// neither masked nor read-only; the step after it is confined again.
fn insecure_step(rootless: bool) {
    let env = probe_env(rootless);
    env.dockerfile(&format!(
        "FROM probe\nRUN --security=insecure ({SCRIPT}; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
         test -f /proc/keys && echo keys: unmasked; grep -q ' /proc/sys ' /proc/self/mountinfo || echo sys: writable; true) > /insecure 2>&1\n\
         RUN ({SCRIPT}) > /after 2>&1\n"
    ));
    let refused = env.build_fails(&["-t", "insecure"]);
    assert!(
        refused.stderr.contains(
            "RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure"
        ),
        "{}",
        refused.stderr
    );
    env.build(&["--allow", "security.insecure", "-t", "insecure"]);
    let out = env.sh("insecure", "cat /insecure");
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let all = format!("CapEff:\t{:016x}\n", u64::MAX >> (63 - last_cap));
    for line in [
        "Seccomp:\t0\n",
        "NoNewPrivs:\t0\n",
        all.as_str(),
        "kcmp: ok\n",
        "unshare: ok\n",
        "mount: ok\n",
        "keys: unmasked\n",
        "sys: writable\n",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert_confined("RUN after", &env.sh("insecure", "cat /after"));
}

as_root_and_rootless!(
    filtered,
    unconfined,
    custom_profile,
    apt_get_installs_under_the_filter,
    insecure_step,
);
