//! What a build step or a container can reach of the host's kernel and of the store: the
//! global sysctls and other kernel interfaces are read-only or hidden, a sandbox with its
//! own network sees its own sysfs, and what a build unpacks or makes (setuid binaries,
//! device nodes, files of other owners) cannot be reached by other users of the machine.
//! Each check runs as root and, where it applies, as an unprivileged user.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::support::{BASE, BuildEnv, ROOTLESS_USER, fails, finish_cmd, ok, tool};

/// A RUN step and an `rbuild run` container write the global `core_pattern` (its own value,
/// so nothing changes if it were allowed): a read-only `/proc/sys` refuses it. Masked files
/// read empty.
fn kernel_settings_are_read_only(env: &BuildEnv) {
    let write =
        "v=$(cat /proc/sys/kernel/core_pattern) && echo \"$v\" > /proc/sys/kernel/core_pattern";
    env.dockerfile(&format!("FROM {BASE}\nRUN {write}\n"));
    let run = env.build_fails(&[]);
    assert!(
        run.stderr
            .contains("/proc/sys/kernel/core_pattern: Read-only file system")
            || (env.user.is_some() && run.stderr.contains("core_pattern: Permission denied")),
        "{}",
        run.stderr
    );
    let r = finish_cmd(env.rbuild().args(["run", "--rm", BASE, "sh", "-c", write]));
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("Read-only file system") || env.user.is_some(),
        "{}",
        r.stderr
    );
    // /proc/sysrq-trigger is opened for writing only (a write could reboot the machine).
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         RUN (: > /proc/sysrq-trigger) 2> /sysrq || true; \
             cat /proc/keys /proc/timer_list 2>/dev/null | wc -c > /masked; \
             ls -A /sys/firmware | wc -l >> /masked\n"
    ));
    env.build(&["-t", "probe"]);
    let sysrq = env.sh("probe", "cat /sysrq");
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        assert!(sysrq.contains("Read-only file system"), "{sysrq}");
    }
    assert_eq!(env.sh("probe", "cat /masked"), "0\n0\n");
}

#[test]
fn a_build_step_cannot_write_the_hosts_kernel_settings() {
    kernel_settings_are_read_only(&BuildEnv::new());
}

#[test]
fn a_rootless_build_step_cannot_write_the_hosts_kernel_settings() {
    kernel_settings_are_read_only(&BuildEnv::rootless());
}

/// `RUN --network=none` has a network namespace of its own, and a sysfs of its own: the
/// host's interfaces are not listed.
fn sysfs_follows_the_network(env: &BuildEnv) {
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --network=none ls /sys/class/net > /ifaces\n"
    ));
    env.build(&["-t", "net"]);
    assert_eq!(env.sh("net", "cat /ifaces"), "lo\n");
}

#[test]
fn a_step_without_network_sees_its_own_sysfs() {
    sysfs_follows_the_network(&BuildEnv::new());
}

#[test]
fn a_rootless_step_without_network_sees_its_own_sysfs() {
    sysfs_follows_the_network(&BuildEnv::rootless());
}

/// A root build unpacks a setuid-root shell and a device node into its store. Another
/// local user can reach neither: the store root is 0700, also when an older version left
/// it 0755 (tightened when the store is opened), and a root that others may write is
/// refused.
#[test]
fn what_a_root_build_unpacks_is_out_of_other_users_reach() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN cp /bin/busybox /suid-sh && chmod 4755 /suid-sh\n"
    ));
    env.build(&["-t", "suid"]);
    ok(env.rbuild().args(["run", "--rm", "suid", "true"]));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&env.root), 0o700);
    // The setuid file is in the store (the build step's published snapshot).
    let found = find_file(&env.root, "suid-sh").expect("the setuid file in the store");
    assert_eq!(mode(&found) & 0o4000, 0o4000, "{}", found.display());
    crate::support::ensure_rootless_user();
    // Every directory above the store is searchable: only the store's own mode stops the
    // other user.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = |path: &std::path::Path| {
        finish_cmd(
            tool("runuser", "util-linux")
                .args([
                    "-u",
                    ROOTLESS_USER,
                    "--",
                    "/bin/busybox",
                    "stat",
                    "-c",
                    "%a",
                ])
                .arg(path),
        )
    };
    let r = probe(&found);
    assert_ne!(r.code, 0, "another user reached {}: {r:?}", found.display());
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    // A store left 0755 by an older version is tightened when it is next opened.
    std::fs::set_permissions(&env.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(probe(&found).code, 0, "the probe works on an open store");
    ok(env.rbuild().arg("images"));
    assert_eq!(mode(&env.root), 0o700);
    assert_ne!(probe(&found).code, 0);
    // A root every user may write to is not a store.
    let shared = env.dir.mkdir("shared");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let r = fails(crate::support::rbuild(&shared).arg("images"));
    assert!(
        r.stderr.contains(&format!(
            "the store root {} is writable by other users",
            shared.display()
        )),
        "{}",
        r.stderr
    );
}

/// The first file named `name` below `dir`, not following symlinks.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let ft = e.file_type().ok()?;
        if e.file_name() == name && ft.is_file() {
            return Some(e.path());
        }
        if ft.is_dir()
            && let Some(p) = find_file(&e.path(), name)
        {
            return Some(p);
        }
    }
    None
}

/// `--userns remap:UID:GID:SIZE`: root's build steps and containers run as an unprivileged
/// host id. Container root is host uid 500000, so the kernel refuses it what belongs to host
/// root; the store belongs to that id (0700); the layers still carry the container's ids;
/// the store keeps its mapping and says so when another one is asked for.
#[test]
fn root_builds_can_map_container_root_to_an_unprivileged_host_id() {
    let env = BuildEnv::new();
    let remap = ["--userns", "remap:500000:500000:65536"];
    // A fresh store for the remapped builds: `BuildEnv`'s store has snapshots of the
    // identity mapping already (its base was imported, then nothing unpacked; a run unpacks).
    ok(env.rbuild().args(["run", "--rm", BASE, "true"]));
    let r = fails(env.rbuild().args(remap).args(["images"]));
    assert!(
        r.stderr
            .contains("holds files unpacked without a remapped user namespace"),
        "{}",
        r.stderr
    );
    let store = env.dir.join("remapped");
    let rb = || {
        let mut cmd = crate::support::rbuild(&store);
        cmd.args(remap);
        cmd
    };
    let busybox = env.dir.mkdir("busybox-rootfs");
    crate::support::busybox_rootfs(&busybox);
    ok(rb().arg("import").arg(&busybox).arg(BASE));
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         RUN cat /proc/self/uid_map > /uid_map; \
             (echo core > /proc/sys/kernel/core_pattern) 2> /sysctl || true; \
             mkdir /home && touch /home/f && chown 1000:1000 /home/f && \
             cp /bin/busybox /suid-sh && chmod 4755 /suid-sh\n"
    ));
    let out = ok(rb()
        .args(["build", "--progress", "plain", "-t", "remapped"])
        .arg(&env.ctx));
    let id = out.stdout.trim().to_string();
    let sh = |script: &str| ok(rb().args(["run", "--rm", "remapped", "sh", "-c", script])).stdout;
    assert_eq!(
        sh("tr -s ' ' < /uid_map; cat /sysctl; ls -ln /home/f | tr -s ' ' | cut -d' ' -f3,4"),
        " 0 500000 65536\n/bin/sh: can't create /proc/sys/kernel/core_pattern: Read-only file system\n1000 1000\n"
    );
    let md = std::fs::metadata(&store).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (500000, 0o700));
    // On the host, the setuid file belongs to the unprivileged id, not to root.
    let suid = find_file(&store, "suid-sh").expect("the setuid file in the store");
    assert_eq!(std::fs::metadata(&suid).unwrap().uid(), 500000);
    // The layer itself has the container's ids (as a build with the identity mapping).
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(rb().args(["inspect", &id])).stdout).unwrap();
    let layer = inspect[0]["manifest"]["layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["digest"].as_str())
        .expect("the build's layer")
        .trim_start_matches("sha256:")
        .to_string();
    let listing = ok(tool("tar", "tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(store.join("blobs/sha256").join(layer)))
    .stdout;
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" 1000/1000 ") && l.ends_with(" home/f")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwsr-xr-x 0/0 ") && l.ends_with(" suid-sh")),
        "{listing}"
    );
    // The same store without the mapping is refused, with the way out.
    let r = fails(crate::support::rbuild(&store).arg("images"));
    assert!(r.stderr.contains("belongs to uid 500000"), "{}", r.stderr);
    assert!(r.stderr.contains("pass the same --userns"), "{}", r.stderr);
}
