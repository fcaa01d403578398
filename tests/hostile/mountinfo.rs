//! What `/proc/self/mountinfo` shows inside a RUN step and a `rbuild run` container: no line
//! names the store, the step's directory or the host's temporary directories (the overlay's
//! layers are given as `/proc/self/fd/N`, the generated `/etc` files and secrets are bound
//! from a tmpfs of the sandbox's own), root and rootless, with both snapshotters. With the
//! copy snapshotter the root is a bind mount of the step's tree, whose path inside the
//! store's file system the kernel shows as that mount's root (documented in SECURITY.md).

use crate::support::{self, BASE, BuildEnv};

/// The lines of `text` that name `needle`, but for the root mount's own root field when
/// `copy` (the copy snapshotter's bind of the step's tree).
fn naming<'a>(text: &'a str, needle: &str, copy: bool) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let rest = if copy && fields.get(4) == Some(&"/") {
                // Everything but the root field.
                fields
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 3)
                    .map(|(_, f)| *f)
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                l.to_string()
            };
            rest.contains(needle)
        })
        .collect()
}

fn mountinfo_names_no_host_path(rootless: bool, copy: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let secret = env.dir.write("secret.txt", "s3cret");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=secret,id=s,target=/run/s \
         sed 's/^/MI /' /proc/self/mountinfo\n"
    ));
    let snapshotter = if copy { "copy" } else { "overlay" };
    let secret_arg = format!("id=s,src={}", secret.display());
    let mut cmd = env.build_cmd(&["--no-cache", "--secret", &secret_arg]);
    cmd.env("RBUILD_SNAPSHOTTER", snapshotter);
    let run = support::ok(&mut cmd);
    let step: String = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once(" MI ").map(|(_, m)| format!("{m}\n")))
        .collect();
    let root_line = step
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no root mount in: {}", run.stderr));
    assert_eq!(
        root_line.contains(" - overlay "),
        !copy,
        "the {snapshotter} snapshotter's root: {root_line}"
    );
    let mut run_cmd = env.rbuild();
    run_cmd.env("RBUILD_SNAPSHOTTER", snapshotter).args([
        "run",
        "--rm",
        BASE,
        "cat",
        "/proc/self/mountinfo",
    ]);
    let container = support::ok(&mut run_cmd).stdout;
    assert!(container.contains(" / "), "no mountinfo: {container}");
    let store = env.root.display().to_string();
    let dir = env.dir.path().display().to_string();
    for (what, text) in [("RUN step", &step), ("container", &container)] {
        for needle in [store.as_str(), dir.as_str(), "/tmp/", "/var/lib/rbuild"] {
            let found = naming(text, needle, copy);
            assert!(
                found.is_empty(),
                "the {what}'s mountinfo names {needle} ({snapshotter}): {found:#?}"
            );
        }
    }
}

fn overlay(rootless: bool) {
    mountinfo_names_no_host_path(rootless, false)
}

fn copy(rootless: bool) {
    mountinfo_names_no_host_path(rootless, true)
}

support::as_root_and_rootless!(overlay, copy);
