//! `rbuild run`, `ps` and `rm` on a busybox image made by `rbuild import`. Needs: root or
//! user namespaces with overlayfs, /bin/busybox (busybox-static), umoci (for an image with
//! Env, WorkingDir and Cmd).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Dir, busybox_rootfs, ok, rbuild, umoci};

/// A store with `bb` (busybox) and `envimg` (busybox with Env, WorkingDir and Cmd).
fn store() -> (Dir, PathBuf) {
    let dir = Dir::new();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    let root = dir.join("store");
    ok(rbuild(&root).arg("import").arg(&rootfs).arg("bb"));
    ok(umoci()
        .arg("config")
        .arg("--image")
        .arg(format!("{}:docker.io/library/bb:latest", root.display()))
        .args(["--tag", "envimg"])
        .args(["--config.env", "FOO=from-image", "--config.env", "BAR=kept"])
        .args(["--config.workingdir", "/data"])
        .args(["--config.cmd", "sh", "--config.cmd", "-c"])
        .args(["--config.cmd", "echo $FOO $BAR; pwd"]));
    (dir, root)
}

fn run(root: &Path, args: &[&str]) -> crate::support::Run {
    let out = rbuild(root)
        .arg("run")
        .args(args)
        .output()
        .expect("run rbuild");
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn output_and_exit_codes() {
    let (_d, root) = store();
    let r = run(
        &root,
        &["--rm", "bb", "sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let r = run(&root, &["--rm", "bb", "no-such-command"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-command"), "{}", r.stderr);
    let r = run(&root, &["--rm", "bb", "/etc/passwd"]);
    assert!(r.code == 126 || r.code == 127, "{r:?}");
    let r = run(&root, &["--rm", "--pull", "never", "not-here", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("hint: pull it: rbuild pull not-here"),
        "{}",
        r.stderr
    );
    // --rm leaves nothing behind.
    assert_eq!(
        std::fs::read_dir(root.join("containers-v1"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn env_workdir_user_entrypoint() {
    let (_d, root) = store();
    let r = run(&root, &["--rm", "envimg"]);
    assert_eq!(r.stdout, "from-image kept\n/data\n", "{}", r.stderr);
    let d = Dir::new();
    let env_file = d.write("env", "# comment\nBAR=from-file\n\n");
    let r = run(
        &root,
        &[
            "--rm",
            "-e",
            "FOO=flag",
            "--env-file",
            env_file.to_str().unwrap(),
            "envimg",
        ],
    );
    assert_eq!(r.stdout, "flag from-file\n/data\n", "{}", r.stderr);
    let r = run(&root, &["--rm", "-w", "/made/here", "envimg", "pwd"]);
    assert_eq!(r.stdout, "/made/here\n", "{}", r.stderr);
    let r = run(&root, &["--rm", "-u", "1000:1001", "bb", "id"]);
    assert_eq!(r.stdout, "uid=1000 gid=1001\n", "{}", r.stderr);
    // --entrypoint replaces the entrypoint and clears the image's Cmd.
    let r = run(&root, &["--rm", "--entrypoint", "echo", "envimg", "a", "b"]);
    assert_eq!(r.stdout, "a b\n", "{}", r.stderr);
    let r = run(&root, &["--rm", "--entrypoint", "pwd", "envimg"]);
    assert_eq!(r.stdout, "/data\n", "{}", r.stderr);
}

#[test]
fn volumes_rw_and_ro() {
    let (_d, root) = store();
    let host = Dir::new();
    host.write("in.txt", "from host\n");
    let spec = format!("{}:/mnt/vol", host.path().display());
    let r = run(
        &root,
        &[
            "--rm",
            "-v",
            &spec,
            "bb",
            "sh",
            "-c",
            "cat /mnt/vol/in.txt; echo new > /mnt/vol/out.txt",
        ],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "from host\n"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "new\n"
    );
    let ro = format!("{spec}:ro");
    let r = run(
        &root,
        &[
            "--rm",
            "-v",
            &ro,
            "bb",
            "sh",
            "-c",
            "echo x > /mnt/vol/ro.txt",
        ],
    );
    assert_ne!(r.code, 0, "writing to a read-only volume must fail");
    assert!(!host.join("ro.txt").exists());
}

#[test]
fn network_none_has_only_lo() {
    let (_d, root) = store();
    let r = run(
        &root,
        &[
            "--rm",
            "--network",
            "none",
            "bb",
            "sh",
            "-c",
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
        ],
    );
    assert_eq!(r.stdout, "lo\n", "{}", r.stderr);
    let r = run(
        &root,
        &[
            "--rm",
            "bb",
            "sh",
            "-c",
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
        ],
    );
    assert_eq!(r.code, 0);
    assert!(r.stdout.lines().count() >= 1 && r.stdout.contains("lo"));
}

#[test]
fn ps_and_rm_lifecycle() {
    let (_d, root) = store();
    let r = run(
        &root,
        &["--name", "kept", "bb", "sh", "-c", "echo data > /f; exit 4"],
    );
    assert_eq!(r.code, 4);
    let ps = ok(rbuild(&root).arg("ps"));
    assert!(
        !ps.stdout.contains("kept"),
        "ps without -a lists exited containers:\n{}",
        ps.stdout
    );
    let ps = ok(rbuild(&root).args(["ps", "-a"]));
    let lines: Vec<&str> = ps.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", ps.stdout);
    for h in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ] {
        assert!(lines[0].contains(h), "{}", lines[0]);
    }
    assert!(
        lines[1].contains("bb") && lines[1].contains("Exited (4)") && lines[1].ends_with("kept"),
        "{}",
        lines[1]
    );
    let id = lines[1].split_whitespace().next().unwrap().to_owned();
    assert_eq!(
        std::fs::read_dir(root.join("containers-v1"))
            .unwrap()
            .count(),
        1
    );
    // A second container with the same name is refused.
    let r = run(&root, &["--name", "kept", "bb", "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    ok(rbuild(&root).args(["rm", "kept"]));
    assert_eq!(
        std::fs::read_dir(root.join("containers-v1"))
            .unwrap()
            .count(),
        0
    );
    let ps = ok(rbuild(&root).args(["ps", "-a"]));
    assert_eq!(ps.stdout.lines().count(), 1, "{}", ps.stdout);
    let r = rbuild(&root).args(["rm", &id]).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
}

fn snapshot_dirs(root: &Path) -> Vec<(String, std::fs::Metadata)> {
    let mut v: Vec<_> = std::fs::read_dir(root.join("snapshots-v1"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn snapshots_are_unpacked_once_and_reused() {
    use std::os::unix::fs::MetadataExt;
    let (_d, root) = store();
    let first = rbuild(&root)
        .args(["-v", "run", "--rm", "bb", "true"])
        .output()
        .unwrap();
    assert!(first.status.success());
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("unpacked snapshot"), "{err}");
    let before = snapshot_dirs(&root);
    assert_eq!(before.len(), 1);
    let first_busybox = std::fs::metadata(
        root.join("snapshots-v1")
            .join(&before[0].0)
            .join("bin/busybox"),
    )
    .unwrap()
    .ino();
    let second = rbuild(&root)
        .args(["-v", "run", "--rm", "bb", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !err.contains("unpacked snapshot") && err.contains("reused"),
        "{err}"
    );
    let after = snapshot_dirs(&root);
    assert_eq!(before.len(), after.len());
    assert_eq!(before[0].0, after[0].0);
    assert_eq!(before[0].1.ino(), after[0].1.ino());
    // Its modification time is its last use (prune's LRU clock), so a reuse moves it on;
    // what it holds is the same files, not a second unpack.
    assert!(after[0].1.mtime() >= before[0].1.mtime());
    let busybox = |root: &Path| {
        std::fs::metadata(
            root.join("snapshots-v1")
                .join(&before[0].0)
                .join("bin/busybox"),
        )
        .unwrap()
        .ino()
    };
    assert_eq!(busybox(&root), first_busybox);
}

#[test]
fn concurrent_first_runs_share_one_snapshot() {
    let (_d, root) = store();
    let children: Vec<_> = (0..2)
        .map(|i| {
            rbuild(&root)
                .args(["run", "--rm", "bb", "echo", &format!("run{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("run{i}\n"));
    }
    let dirs = snapshot_dirs(&root);
    assert_eq!(
        dirs.len(),
        1,
        "{:?}",
        dirs.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    assert_eq!(dirs[0].0.len(), 64);
}

#[test]
fn sigterm_is_forwarded_to_the_command() {
    let (_d, root) = store();
    let mut child = rbuild(&root)
        .args([
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; echo ready; sleep 60 & wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_millis(100));
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rest, "got-term\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// As an unprivileged user with /etc/subuid and /etc/subgid ranges (created here when
/// missing): import, run, and the snapshot keeps the image's owners as subordinate ids.
/// Needs: root for the setup, runuser (util-linux), newuidmap/newgidmap (uidmap), useradd
/// and usermod (passwd).
#[test]
fn runs_as_an_unprivileged_user_with_subordinate_ids() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const USER: &str = "rbuild-rootless";
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "the rootless test's setup must run as root (it creates a user)"
    );
    assert!(
        Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap is missing: install the Debian package uidmap"
    );
    let id = std::process::Command::new("id").arg(USER).output().unwrap();
    if !id.status.success() {
        ok(std::process::Command::new("useradd").args([
            "--create-home",
            "--shell",
            "/bin/sh",
            USER,
        ]));
    }
    let subuid_start = |file: &str| -> Option<u32> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{USER}:"))?
                    .split(':')
                    .next()?
                    .parse()
                    .ok()
            })
    };
    if subuid_start("/etc/subuid").is_none() || subuid_start("/etc/subgid").is_none() {
        ok(std::process::Command::new("usermod").args([
            "--add-subuids",
            "400000-465535",
            "--add-subgids",
            "400000-465535",
            USER,
        ]));
    }
    let host_root_uid = subuid_start("/etc/subuid").unwrap();

    let dir = Dir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    let store = dir.mkdir("store");
    ok(std::process::Command::new("chown").args([USER]).arg(&store));
    let as_user = |args: &[&str]| {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", USER, "--", "env", "HOME=/tmp"])
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(&store)
            .args(args)
            .stdin(Stdio::null());
        cmd
    };
    ok(&mut as_user(&["import", rootfs.to_str().unwrap(), "bb"]));
    let r = ok(&mut as_user(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "id -u; touch /x; chown 1000 /x; stat -c %u /x",
    ]));
    assert_eq!(r.stdout, "0\n1000\n", "{}", r.stderr);
    let r = ok(&mut as_user(&[
        "run", "--rm", "-u", "1000", "bb", "id", "-u",
    ]));
    assert_eq!(r.stdout, "1000\n");
    // The snapshot belongs to the container's root, which is the user itself.
    let snaps = snapshot_dirs(&store);
    assert_eq!(snaps.len(), 1);
    let busybox = store
        .join("snapshots-v1")
        .join(&snaps[0].0)
        .join("bin/busybox");
    let user_uid = std::fs::metadata(&store).unwrap().uid();
    assert_eq!(std::fs::symlink_metadata(busybox).unwrap().uid(), user_uid);
    // A kept container's file chowned to 1000 is owned by a subordinate id on the host;
    // rm removes it all the same.
    ok(&mut as_user(&[
        "run",
        "--name",
        "k",
        "bb",
        "sh",
        "-c",
        "mkdir /d && chown 1000 /d",
    ]));
    let kept = std::fs::read_dir(store.join("containers-v1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    // The overlay snapshotter's upper dir, or the copy snapshotter's tree.
    let d = ["fs/upper/d", "fs/tree/d"]
        .map(|p| kept.path().join(p))
        .into_iter()
        .find(|p| p.exists())
        .expect("the container's /d on the host");
    let owner = std::fs::symlink_metadata(&d).unwrap().uid();
    assert!(
        (host_root_uid..host_root_uid + 65536).contains(&owner),
        "{} is owned by {owner}",
        d.display()
    );
    ok(&mut as_user(&["rm", "k"]));
    assert_eq!(
        std::fs::read_dir(store.join("containers-v1"))
            .unwrap()
            .count(),
        0
    );
}

/// `script` (util-linux) gives rbuild a terminal, as a user's shell would.
fn in_script(root: &Path, run_args: &str, stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let line = format!(
        "{} --root {} run {run_args}",
        env!("CARGO_BIN_EXE_rbuild"),
        root.display()
    );
    let mut child = crate::support::tool("script", "util-linux")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(input);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn tty_gives_the_command_a_terminal() {
    let (_d, root) = store();
    let (code, out) = in_script(&root, "--rm -t bb sh -c 'tty; exit 5'", "");
    assert_eq!(code, Some(5), "{out}");
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    // Without -t the same command has no terminal, even under one.
    let (code, out) = in_script(&root, "--rm bb tty", "");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a tty"), "{out:?}");
    // Piped into rbuild (no terminal on our side), -t still gives one.
    let r = run(&root, &["--rm", "-t", "bb", "tty"]);
    assert_eq!(r.stdout.trim_end(), "/dev/pts/0", "{}", r.stderr);
}

#[test]
fn interactive_keeps_stdin_open() {
    let (_d, root) = store();
    let mut child = rbuild(&root)
        .args(["run", "--rm", "-i", "bb", "sh", "-c", "read a; echo got-$a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"line\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got-line\n");
    // Without -i the command reads nothing, whatever rbuild's stdin holds.
    let mut child = rbuild(&root)
        .args(["run", "--rm", "bb", "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // rbuild may already have let go of its stdin: a broken pipe is fine.
    let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"ignored\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "end\n");
    // -i -t: keystrokes reach a shell on the pty.
    let (code, out) = in_script(&root, "--rm -i -t bb sh", "echo hi-$((6*7)); exit 7\n");
    assert_eq!(code, Some(7), "{out}");
    assert!(out.contains("hi-42"), "{out:?}");
}

/// Ctrl-C in a terminal signals rbuild's whole process group: the command gets SIGINT
/// (forwarded; it runs in its own session) and its trap decides the exit code.
#[test]
fn sigint_to_the_process_group_reaches_the_command() {
    use std::os::unix::process::CommandExt;
    let (_d, root) = store();
    let mut child = rbuild(&root)
        .args([
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "trap 'echo got-int; exit 9' INT; echo ready; sleep 60 & wait",
        ])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    std::thread::sleep(Duration::from_millis(100));
    let group = format!("-{}", child.id());
    let kill = std::process::Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(rest.starts_with("got-int\n"), "{rest:?}");
}

/// As runc starts a container's process: no signal blocked, none ignored (rbuild's own runtime
/// ignores SIGPIPE), so `yes | head -1` ends quietly, in a container and in a RUN step.
#[test]
fn commands_start_with_default_signal_dispositions() {
    const PROBE: &str = "grep -E '^Sig(Blk|Ign)' /proc/self/status; yes | head -n 1";
    const CLEAN: &str = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\ny\n";
    let (_dir, root) = store();
    let out = run(&root, &["--rm", "bb", "sh", "-c", PROBE]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, CLEAN, "")
    );
    let env = crate::support::BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {}\nRUN ({PROBE}) > /probe 2>&1\n",
        crate::support::BASE
    ));
    env.build(&["-t", "sigs"]);
    assert_eq!(env.sh("sigs", "cat /probe"), CLEAN);
}
