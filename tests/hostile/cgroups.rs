//! Resource limits through cgroups: a fork bomb in a RUN step ends at the pids limit of the
//! config file, a container over `--memory` is killed by the OOM killer with an error saying
//! so, `--cpus` becomes the CPU bandwidth limit of the sandbox's cgroup, and no sandbox
//! cgroup outlives its run (one a killed rbuild left is removed by the next run). Where no
//! cgroup can be used (rootless on cgroup v1), a build warns once and goes on, and an
//! explicit `run --memory` is an error naming why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, BASE, BuildEnv, Run};

/// The sandbox cgroups (`rbuild/PID-N`, in every hierarchy) of the rbuild process `pid`.
fn sandbox_cgroups(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if !t.is_dir() {
                continue;
            }
            let path = e.path();
            let in_rbuild = dir.file_name().is_some_and(|n| n == "rbuild");
            if in_rbuild && e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(path);
            } else {
                walk(&path, prefix, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), &format!("{pid}-"), &mut out);
    out
}

/// Runs `cmd`; returns rbuild's pid (the command's own as root) and how it ended.
fn run_with_pid(cmd: &mut Command) -> (u32, Run) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rbuild");
    let pid = child.id();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for rbuild");
    (
        pid,
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        },
    )
}

const NO_CGROUP: &str = "no cgroup for resource limits";

/// A config file with `[limits]`.
fn limits_config(env: &BuildEnv, table: &str) -> PathBuf {
    let path = env.dir.join("config.toml");
    std::fs::write(&path, format!("[limits]\n{table}\n")).expect("write config");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

fn fork_bomb_ends_at_the_config_pids_limit(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let config = limits_config(&env, "pids = 64");
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN for i in $(seq 500); do sleep 5 & done; echo all-started\n"
    ));
    let t = Instant::now();
    let mut cmd = env.rbuild();
    cmd.arg("--config")
        .arg(&config)
        .args(["build", "--progress", "plain"])
        .arg(&env.ctx);
    let (pid, run) = run_with_pid(&mut cmd);
    let took = t.elapsed();
    // The host is fine: it still forks.
    support::ok(&mut Command::new("true"));
    if rootless && run.stderr.contains(NO_CGROUP) {
        assert_eq!(
            run.code, 0,
            "without a cgroup the build goes on: {}",
            run.stderr
        );
        assert_eq!(
            run.stderr.matches(NO_CGROUP).count(),
            1,
            "the warning comes once: {}",
            run.stderr
        );
        return;
    }
    assert_eq!(run.code, 1, "the fork bomb must fail: {}", run.stderr);
    assert!(
        run.stderr.contains("can't fork") || run.stderr.contains("Resource temporarily"),
        "the step's shell says it cannot fork: {}",
        run.stderr
    );
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.ends_with(" all-started") && !l.contains("echo")),
        "{}",
        run.stderr
    );
    assert!(
        took < Duration::from_secs(60),
        "the build ended in {took:?}"
    );
    assert_eq!(sandbox_cgroups(pid), Vec::<PathBuf>::new(), "cgroups left");
}

fn run_memory_limit_is_enforced(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let mut cmd = env.rbuild();
    cmd.args(["run", "--rm", "--memory", "32m", BASE, "sh", "-c"])
        .arg("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
    let (pid, run) = run_with_pid(&mut cmd);
    if rootless && run.stderr.contains(NO_CGROUP) {
        assert_eq!(
            run.code, 125,
            "an explicit limit cannot be dropped: {}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("cannot honour the container's resource limits"),
            "{}",
            run.stderr
        );
        return;
    }
    assert_eq!(run.code, 137, "OOM-killed: {}", run.stderr);
    assert!(!run.stdout.contains("survived"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("killed by the kernel's OOM killer (memory limit 32 MiB)"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox_cgroups(pid), Vec::<PathBuf>::new(), "cgroups left");
}

support::as_root_and_rootless!(
    fork_bomb_ends_at_the_config_pids_limit,
    run_memory_limit_is_enforced
);

/// Waits until `pid`'s sandbox cgroups exist; returns them.
fn wait_for_cgroups(pid: u32) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = sandbox_cgroups(pid);
        if !found.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no cgroup appeared for rbuild {pid}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cpus_become_the_cgroups_cpu_quota() {
    let env = BuildEnv::new();
    let mut child = env
        .rbuild()
        .args(["run", "--rm", "--cpus", "0.5", BASE, "sleep", "3"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start rbuild run");
    let pid = child.id();
    let dirs = wait_for_cgroups(pid);
    let quota: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            std::fs::read_to_string(d.join("cpu.max"))
                .or_else(|_| std::fs::read_to_string(d.join("cpu.cfs_quota_us")))
                .ok()
        })
        .map(|s| s.trim().to_string())
        .collect();
    assert!(
        quota.iter().any(|q| q == "50000" || q == "50000 100000"),
        "cpu quota of {dirs:?}: {quota:?}"
    );
    assert!(child.wait().expect("wait").success());
    assert_eq!(sandbox_cgroups(pid), Vec::<PathBuf>::new(), "cgroups left");
}

#[test]
fn a_killed_runs_cgroup_is_removed_by_the_next_run() {
    let env = BuildEnv::new();
    let mut child = env
        .rbuild()
        .args(["run", "--rm", "--pids-limit", "50", BASE, "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start rbuild run");
    let pid = child.id();
    let dirs = wait_for_cgroups(pid);
    child.kill().expect("SIGKILL rbuild");
    child.wait().expect("wait");
    assert!(dirs.iter().all(|d| d.exists()), "left behind: {dirs:?}");
    // The sandbox dies with rbuild; its cgroup is empty once it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dirs.iter().any(|d| {
        std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
    }) {
        assert!(Instant::now() < deadline, "the sandbox outlived rbuild");
        std::thread::sleep(Duration::from_millis(50));
    }
    support::ok(
        env.rbuild()
            .args(["run", "--rm", "--pids-limit", "50", BASE, "true"]),
    );
    let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "stale cgroups not removed: {left:?}");
}

#[test]
fn a_step_over_the_config_memory_limit_fails_naming_the_oom_killer() {
    let env = BuildEnv::new();
    let config = limits_config(&env, "memory = \"32m\"");
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${{#x}}\n"
    ));
    let mut cmd = env.rbuild();
    cmd.arg("--config")
        .arg(&config)
        .args(["build", "--progress", "plain"])
        .arg(&env.ctx);
    let (pid, run) = run_with_pid(&mut cmd);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("exit code 137: killed by the kernel's OOM killer (memory limit 32 MiB)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("survived 2"), "{}", run.stderr);
    assert_eq!(sandbox_cgroups(pid), Vec::<PathBuf>::new(), "cgroups left");
}

#[test]
fn a_detached_container_refuses_limits_it_would_run_without() {
    let env = BuildEnv::new();
    let run = support::finish_cmd(
        env.rbuild()
            .args(["run", "-d", "--memory", "32m", BASE, "sleep", "1"]),
    );
    assert_eq!(run.code, 125, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "rbuild run -d does not take --memory, --memory-swap, --cpus or --pids-limit"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "no container was started");
}
