//! The sandbox suite as unprivileged users. The setup (run as root) creates
//! two users: one with /etc/subuid and /etc/subgid ranges (mapped through
//! newuidmap/newgidmap, Debian package `uidmap`) and one without (a single-id
//! mapping), then runs this test binary's `inner_*` tests as each of them.

mod common;

use std::process::Command as Proc;

const SUBID_USER: &str = "rbuild-rootless";
const SINGLE_USER: &str = "rbuild-single";

fn tool(name: &str) -> Proc {
    Proc::new(name)
}

fn ensure_user(name: &str, subids: bool) {
    if !tool("id").arg(name).output().unwrap().status.success() {
        let st = tool("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .status()
            .expect("useradd (Debian package passwd) is missing");
        assert!(st.success(), "useradd {name} failed");
    }
    let has = |f: &str| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{name}:")))
    };
    let (uids, gids) = (has("/etc/subuid"), has("/etc/subgid"));
    if subids && !(uids && gids) {
        let base = 300_000 + (name.len() as u32) * 70_000;
        let range = format!("{base}-{}", base + 65535);
        let st = tool("usermod")
            .args(["--add-subuids", &range, "--add-subgids", &range, name])
            .status()
            .unwrap();
        assert!(st.success(), "usermod --add-subuids for {name} failed");
    }
    if !subids && (uids || gids) {
        for f in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{name}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(f, kept).unwrap();
        }
    }
}

/// Runs the `inner_<prefix>` tests of this binary as `user`; returns their output.
fn run_inner_as(user: &str, filter: &str) -> String {
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "the rootless tests' setup must run as root (it creates users)"
    );
    assert!(
        std::path::Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap is missing: install the Debian package uidmap"
    );
    let exe = std::env::current_exe().unwrap();
    let out = tool("runuser")
        .args(["-u", user, "--", "env", "HOME=/tmp", "RUST_BACKTRACE=1"])
        .arg(&exe)
        .args(["--ignored", "--test-threads=1", filter])
        .output()
        .expect("runuser (Debian package util-linux) is missing");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tests as {user} failed:\n{text}");
    assert!(text.contains("test result: ok"), "{text}");
    text
}

#[test]
fn suite_as_unprivileged_user_with_subordinate_ids() {
    ensure_user(SUBID_USER, true);
    let out = run_inner_as(SUBID_USER, "inner_subid::");
    assert!(out.contains("24 passed"), "{out}");
}

#[test]
fn suite_as_unprivileged_user_with_a_single_id() {
    ensure_user(SINGLE_USER, false);
    let out = run_inner_as(SINGLE_USER, "inner_single::");
    assert!(out.contains("16 passed"), "{out}");
}

fn ctx() -> common::suite::Ctx {
    assert_ne!(
        rustix::process::getuid().as_raw(),
        0,
        "inner tests run as an unprivileged user"
    );
    common::suite::Ctx::new(rbuild_executor::snapshot::SnapshotterKind::Overlay)
}

macro_rules! inner {
    ($module:ident, $kind:expr, $($name:ident),* $(,)?) => {
        mod $module {
            $(
                #[test]
                #[ignore = "run as an unprivileged user by the tests above"]
                fn $name() {
                    let c = super::ctx();
                    assert_eq!(c.id_map.kind, $kind);
                    super::common::suite::$name(&c);
                }
            )*
        }
    };
}

inner!(
    inner_subid,
    rbuild_executor::idmap::MappingKind::Subordinate,
    output_and_exit_code,
    exec_form_and_missing_binary,
    env_and_workdir,
    user_switching_and_ownership,
    whiteout_after_rm,
    opaque_dir,
    hard_links,
    network_none_has_only_lo,
    proc_shows_only_the_sandbox,
    background_process_is_killed,
    the_callers_descriptors_stay_out_of_the_sandbox,
    timeout_and_cancel_kill_everything,
    generated_etc_files_stay_out_of_the_layer,
    dev_sys_and_security,
    kernel_interfaces_are_masked_and_read_only,
    network_none_has_its_own_sysfs,
    extra_mounts,
    layers_stack,
    lower_whiteouts_and_opaque_dirs_hide_what_is_below,
    overlay_extra_mounts,
    secret_mounts,
    mount_targets_stay_in_the_root,
    ssh_agent_socket_bind,
    set_owner_maps_container_ids,
);

// With one id only, switching to another user and chown to other ids cannot work.
inner!(
    inner_single,
    rbuild_executor::idmap::MappingKind::Single,
    output_and_exit_code,
    exec_form_and_missing_binary,
    whiteout_after_rm,
    opaque_dir,
    hard_links,
    network_none_has_only_lo,
    proc_shows_only_the_sandbox,
    background_process_is_killed,
    the_callers_descriptors_stay_out_of_the_sandbox,
    generated_etc_files_stay_out_of_the_layer,
    dev_sys_and_security,
    kernel_interfaces_are_masked_and_read_only,
    network_none_has_its_own_sysfs,
    overlay_extra_mounts,
    mount_targets_stay_in_the_root,
    ssh_agent_socket_bind,
);
