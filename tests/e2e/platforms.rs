//! Platforms: `--platform` spellings, RUN steps of a foreign stage through the kernel's
//! binfmt_misc emulator (Debian's qemu-user-static), and `rbuild system binfmt`.

use std::path::Path;

use crate::support::{BuildEnv, as_root_and_rootless, ok, rbuild};

/// Where .ci/setup puts Debian's arm64 busybox-static (extracted from its package).
const ARM64_BUSYBOX: &str = "/usr/local/lib/rbuild-test/arm64/busybox";

/// The arm64 busybox image the emulated tests build on.
const ARM64_BASE: &str = "localhost/busybox-arm64:latest";

/// Registers the arm64 emulator (idempotent; as root, whoever runs the build).
fn register_arm64(root: &Path) {
    ok(rbuild(root).args(["system", "binfmt", "--install", "arm64"]));
}

/// Imports an arm64 busybox root file system as [`ARM64_BASE`] into `env`'s store.
fn import_arm64_base(env: &BuildEnv) {
    assert!(
        Path::new(ARM64_BUSYBOX).is_file(),
        "the tests need Debian's arm64 busybox at {ARM64_BUSYBOX}: run `bash .ci/setup`"
    );
    let rootfs = env.dir.mkdir("arm64-rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(ARM64_BUSYBOX, bin.join("busybox")).unwrap();
    // The applets the tests use (`busybox --list` would need the emulator itself).
    for applet in ["sh", "uname", "cat", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    if env.user.is_some() {
        ok(std::process::Command::new("chown")
            .args(["-R", crate::support::ROOTLESS_USER])
            .arg(&rootfs));
    }
    ok(env
        .rbuild()
        .args(["import", "--platform", "linux/arm64"])
        .arg(&rootfs)
        .arg(ARM64_BASE));
}

fn emulated_run_steps_run_the_foreign_binaries(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    register_arm64(&env.root);
    import_arm64_base(&env);
    env.dockerfile(&format!(
        "FROM {ARM64_BASE}\nARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDARCH\nRUN echo \"$(uname -m) $TARGETPLATFORM $TARGETARCH [$TARGETVARIANT] $BUILDARCH\" > /machine\n"
    ));
    // `aarch64` is a spelling of linux/arm64.
    env.build(&["-t", "emulated", "--platform", "aarch64"]);
    let c = env.config("emulated");
    assert_eq!(
        (
            c["os"].as_str(),
            c["architecture"].as_str(),
            c.get("variant")
        ),
        (Some("linux"), Some("arm64"), None)
    );
    let out = env.dir.mkdir("out");
    if rootless {
        ok(std::process::Command::new("chown")
            .arg(crate::support::ROOTLESS_USER)
            .arg(&out));
    }
    ok(env.rbuild().args([
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/arm64/v8",
        "-o",
        &format!("type=local,dest={}", out.display()),
        env.ctx.to_str().unwrap(),
    ]));
    let machine = std::fs::read_to_string(out.join("machine")).unwrap();
    assert_eq!(machine, "aarch64 linux/arm64 arm64 [] amd64\n");
    // `rbuild run` of the arm64 image goes through the same emulator.
    assert_eq!(env.sh("emulated", "uname -m"), "aarch64\n");
}

as_root_and_rootless!(emulated_run_steps_run_the_foreign_binaries);

#[test]
fn binfmt_status_lists_the_emulators_and_a_missing_one_is_named() {
    let env = BuildEnv::new();
    register_arm64(&env.root);
    let out = ok(env.rbuild().args(["system", "binfmt", "--format", "json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let status = |platform: &str| -> String {
        list.iter()
            .find(|e| e["platform"] == platform)
            .map(|e| e["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{platform} in {list:?}"))
    };
    assert_eq!(status("linux/amd64"), "native");
    assert_eq!(status("linux/386"), "native");
    assert_eq!(status("linux/arm64"), "emulated");
    // Nothing registers s390x here: a RUN for it is refused before it starts, with the
    // commands that would make it work.
    assert_eq!(status("linux/s390x"), "none", "{list:?}");
    env.dockerfile("FROM scratch\nRUN [\"/bin/true\"]\n");
    let run = env.build_fails(&["--platform", "linux/s390x"]);
    for want in [
        "no emulator for linux/s390x",
        "rbuild system binfmt --install s390x",
        "qemu-user-static",
        "Dockerfile:2",
    ] {
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
    }
}
