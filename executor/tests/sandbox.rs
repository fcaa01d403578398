//! Real sandbox runs on a busybox image, with the overlay and the copy
//! snapshotters. Needs: root (or see rootless.rs), /bin/busybox
//! (Debian busybox-static), user namespaces and overlayfs in them.

mod common;

use common::suite::Ctx;
use rbuild_executor::snapshot::SnapshotterKind;

fn overlay() -> Ctx {
    assert!(
        rbuild_executor::sandbox::probe_overlay(),
        "overlayfs in a user namespace does not work on this machine"
    );
    Ctx::new(SnapshotterKind::Overlay)
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod overlay {
            $( #[test] fn $name() { super::common::suite::$name(&super::overlay()); } )*
        }
        mod copy {
            $( #[test] fn $name() { super::common::suite::$name(&super::Ctx::new(super::SnapshotterKind::Copy)); } )*
        }
    };
}

both!(
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
    readonly_binds_cover_submounts,
);

#[test]
fn many_lower_layers_exceed_one_option_page() {
    let c = overlay();
    let mut layers = vec![c.base.clone()];
    let long = "l".repeat(120);
    for i in 0..60 {
        let tar = common::Tar::default()
            .dir("deep", 0o755)
            .file(&format!("deep/f{i}"), 0o644, b"x")
            .build();
        layers.push(common::snapshot(
            c.tmp.path(),
            &format!("{long}-{i}"),
            &tar,
            &c.id_map,
        ));
    }
    let total: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        total > 4096,
        "the lower dirs must not fit one page: {total}"
    );
    let r = c.run_on(&layers, &c.spec("ls /deep | wc -l")).unwrap();
    assert_eq!(r.stdout, ["60"]);
}

/// An image whose mount points are symlinks out of the root: the overlay
/// snapshotter hides them under real mount points; the copy snapshotter
/// refuses to mount through them. Either way nothing on the host changes.
#[test]
fn symlinked_mount_points_never_redirect_mounts() {
    for kind in [SnapshotterKind::Overlay, SnapshotterKind::Copy] {
        let c = Ctx::new(kind);
        let tar = common::Tar::default()
            .symlink("proc", "/etc")
            .symlink("dev", "/")
            .dir("etc", 0o755)
            .symlink("etc/hosts", "/etc/passwd")
            .build();
        let hostile = common::snapshot(c.tmp.path(), "hostile", &tar, &c.id_map);
        let passwd_before = std::fs::read("/etc/passwd").unwrap();
        let r = c.run_on(&[c.base.clone(), hostile], &c.spec("ls /proc/self/status && ls /dev/null && grep -c localhost /etc/hosts && head -1 /etc/passwd"));
        match kind {
            SnapshotterKind::Overlay => {
                let r = r.unwrap();
                assert_eq!(
                    r.stdout,
                    [
                        "/proc/self/status",
                        "/dev/null",
                        "2",
                        "root:x:0:0:root:/root:/bin/sh"
                    ]
                );
            }
            SnapshotterKind::Copy => {
                let e = r.err().expect("mounting through a symlink is refused");
                assert!(e.to_string().contains("proc"), "{e}");
            }
        }
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    }
}
