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
    import_busybox(env, ARM64_BUSYBOX, "linux/arm64", ARM64_BASE);
}

/// Imports `busybox` (with a few applet links) for `platform` as `name`.
fn import_busybox(env: &BuildEnv, busybox: &str, platform: &str, name: &str) {
    let rootfs = env
        .dir
        .mkdir(format!("rootfs-{}", platform.replace('/', "_")));
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
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
        .args(["import", "--platform", platform])
        .arg(&rootfs)
        .arg(name));
}

fn emulated_run_steps_run_the_foreign_binaries(rootless: bool) {
    let env = env_for(rootless);
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
    let env = env_for(false);
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

/// The cross-compilation pattern: a stage on the build platform makes a file per target
/// architecture, and each target's stage copies it into its own base.
const CROSS: &str = "\
ARG TARGETARCH
FROM --platform=$BUILDPLATFORM localhost/busybox-amd64 AS build
RUN echo compiled > /common
ARG TARGETARCH
RUN echo \"for $TARGETARCH\" > /out
FROM localhost/busybox-${TARGETARCH}
COPY --from=build /common /out /
RUN uname -m > /machine
";

/// A store (as root, or as the rootless user), with the arm64 emulator registered.
fn env_for(rootless: bool) -> BuildEnv {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    register_arm64(&env.root);
    env
}

/// [`env_for`] with both busybox bases and the [`CROSS`] Dockerfile.
fn cross_env(rootless: bool) -> BuildEnv {
    let env = env_for(rootless);
    import_busybox(
        &env,
        ARM64_BUSYBOX,
        "linux/arm64",
        "localhost/busybox-arm64",
    );
    import_busybox(
        &env,
        "/bin/busybox",
        "linux/amd64",
        "localhost/busybox-amd64",
    );
    env.dockerfile(CROSS);
    env
}

fn multi_platform_builds_make_an_index_and_share_the_build_stage(rootless: bool) {
    let env = cross_env(rootless);
    let built = env.build(&["-t", "localhost/multi:1", "--platform", "linux/amd64,arm64"]);
    // The build-platform stage's common step ran once: the other platform took its record.
    let common = "RUN /bin/sh -c echo compiled > /common";
    let ran = built.ran();
    assert_eq!(
        ran.iter().filter(|r| *r == common).count(),
        1,
        "{}",
        built.stderr
    );
    assert_eq!(
        built.cached().iter().filter(|r| *r == common).count(),
        1,
        "{}",
        built.stderr
    );
    for arch in ["amd64", "arm64"] {
        let step = format!("RUN |1 TARGETARCH={arch} /bin/sh -c echo \"for $TARGETARCH\" > /out");
        assert!(ran.contains(&step), "{step} in {ran:?}");
        assert!(
            built
                .steps
                .iter()
                .any(|s| s.label.starts_with(&format!("linux/{arch} "))),
            "steps labelled with their platform: {}",
            built.stderr
        );
    }
    // One name, the index; `images` lists both platforms.
    let images = ok(env.rbuild().args(["images", "--format", "json"]));
    let images: Vec<serde_json::Value> = serde_json::from_str(&images.stdout).unwrap();
    let multi = images
        .iter()
        .find(|i| i["name"] == "localhost/multi:1")
        .expect("the index is named");
    assert_eq!(multi["id"], built.id.as_str());
    assert_eq!(
        multi["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // type=local: a directory per platform, each with its own machine and file.
    let out = env.dir.mkdir("out");
    if rootless {
        ok(std::process::Command::new("chown")
            .arg(crate::support::ROOTLESS_USER)
            .arg(&out));
    }
    let dest = format!("type=local,dest={}", out.display());
    let again = ok(&mut env.build_cmd(&["--platform", "linux/amd64,linux/arm64", "-o", &dest]));
    let again = crate::support::steps(&again.stderr);
    assert!(
        crate::support::ran(&again).is_empty(),
        "all cached: {again:?}"
    );
    for (dir, machine, arch) in [
        ("linux_amd64", "x86_64", "amd64"),
        ("linux_arm64", "aarch64", "arm64"),
    ] {
        let read = |f: &str| std::fs::read_to_string(out.join(dir).join(f)).unwrap();
        assert_eq!(read("machine"), format!("{machine}\n"));
        assert_eq!(read("out"), format!("for {arch}\n"));
        assert_eq!(read("common"), "compiled\n");
    }
    // run: the host's image of the index, or the one --platform names (emulated).
    let machine = |platform: &[&str]| {
        ok(env.rbuild().args(["run", "--rm"]).args(platform).args([
            "localhost/multi:1",
            "cat",
            "/machine",
            "/out",
        ]))
        .stdout
    };
    assert_eq!(machine(&[]), "x86_64\nfor amd64\n");
    assert_eq!(
        machine(&["--platform", "linux/arm64"]),
        "aarch64\nfor arm64\n"
    );
    // report: one platform of the index, or all side by side.
    let report = ok(env.rbuild().args([
        "report",
        "--format",
        "json",
        "--platform",
        "linux/arm64",
        "localhost/multi:1",
    ]));
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["image"]["architecture"], "arm64");
    let all = ok(env.rbuild().args([
        "report",
        "--format",
        "json",
        "--all-platforms",
        "localhost/multi:1",
    ]));
    let all: Vec<serde_json::Value> = serde_json::from_str(&all.stdout).unwrap();
    let platforms: Vec<&str> = all
        .iter()
        .map(|r| r["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(all[1]["report"]["image"]["architecture"], "arm64");
    let missing = crate::support::fails(env.rbuild().args([
        "report",
        "--platform",
        "linux/s390x",
        "localhost/multi:1",
    ]));
    assert!(
        missing.stderr.contains("has no image for linux/s390x")
            && missing.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        missing.stderr
    );
    // save and load keep the index with every platform.
    let archive = out.join("multi.tar");
    ok(env
        .rbuild()
        .args(["save", "--format", "oci", "-o"])
        .arg(&archive)
        .arg("localhost/multi:1"));
    let other = out.join("other-store");
    ok(crate::support::rbuild_as(env.user, &other)
        .arg("load")
        .arg("-i")
        .arg(&archive));
    let listed =
        ok(crate::support::rbuild_as(env.user, &other).args(["images", "--format", "json"]));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], built.id.as_str());
    assert_eq!(
        listed[0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
}

as_root_and_rootless!(multi_platform_builds_make_an_index_and_share_the_build_stage);

#[test]
fn a_multi_platform_push_is_an_index_every_tool_reads() {
    let registry = rbuild_test_support::Registry::start();
    let env = cross_env(false);
    let name = format!("{}/multi:1", registry.host());
    let metadata = env.dir.join("metadata.json");
    let built = env.build(&[
        "-t",
        &name,
        "--platform",
        "linux/amd64,linux/arm64",
        "--push",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(meta.get("containerimage.config.digest").is_none(), "{meta}");
    let pushed = meta["containerimage.digest"].as_str().unwrap().to_string();
    // skopeo sees the index with both platforms, and picks each.
    let flags = registry.skopeo_flags("");
    let raw = ok(crate::support::skopeo()
        .args(["inspect", "--raw"])
        .args(&flags)
        .arg(format!("docker://{name}")));
    let index: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // The metadata names what the registry holds (the layers were gzipped for the push).
    use sha2::Digest as _;
    assert_eq!(
        pushed,
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(raw.stdout.as_bytes()))
        )
    );
    assert_ne!(pushed, built.id);
    for (arch, machine) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let dir = env.dir.join(format!("skopeo-{arch}"));
        ok(crate::support::skopeo()
            .args(["--override-arch", arch, "copy", "--quiet"])
            .args(registry.skopeo_flags("src-"))
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:x", dir.display())));
        let bundle = env.dir.join(format!("bundle-{arch}"));
        ok(crate::support::umoci()
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:x", dir.display()))
            .arg(&bundle));
        let read = |f: &str| std::fs::read_to_string(bundle.join("rootfs").join(f)).unwrap();
        assert_eq!(read("machine"), format!("{machine}\n"));
        assert_eq!(read("out"), format!("for {arch}\n"));
    }
    // A store that names one platform of a registry image: a multi-platform build from it
    // pulls the other platform for its stage, and the name keeps naming what it named.
    let fresh = env_for(false);
    ok(fresh
        .rbuild()
        .args(["pull", "--platform", "linux/amd64", &name]));
    let named = fresh.inspect(&name);
    fresh.dockerfile(&format!("FROM {name}\nRUN uname -m > /machine\n"));
    let out = fresh.dir.mkdir("out");
    let dest = format!("type=local,dest={}", out.display());
    ok(&mut fresh.build_cmd(&["--platform", "linux/amd64,linux/arm64", "-o", &dest]));
    for (dir, machine) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        let got = std::fs::read_to_string(out.join(dir).join("machine")).unwrap();
        assert_eq!(got, format!("{machine}\n"), "{dir}");
    }
    assert_eq!(fresh.inspect(&name)["id"], named["id"]);
    one_name_for_platforms_pulled_one_by_one(&registry, &name, &pushed);
    // pull --all-platforms keeps the index and every image; a push of it is the same index.
    let whole = BuildEnv::new();
    let pinned = ok(whole.rbuild().args(["pull", "--all-platforms", &name]));
    assert_eq!(
        pinned.stdout.trim(),
        format!("{}/multi@{pushed}", registry.host())
    );
    let listed = ok(whole.rbuild().args(["images", "--format", "json"]));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let entry = listed.iter().find(|i| i["name"] == name.as_str()).unwrap();
    assert_eq!(entry["id"], pushed.as_str());
    assert_eq!(
        entry["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let copy = format!("{}/copy:1", registry.host());
    ok(whole.rbuild().args(["push", &name, &copy]));
    let copied = ok(crate::support::skopeo()
        .args(["inspect", "--raw"])
        .args(&flags)
        .arg(format!("docker://{copy}")));
    assert_eq!(copied.stdout, raw.stdout);
    // The remote cache carries every platform's records: a fresh store builds both
    // platforms from it without running a step.
    let cache = env.dir.join("cache");
    let cache_to = format!("type=local,dest={},mode=max", cache.display());
    ok(&mut env.build_cmd(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--cache-to",
        &cache_to,
    ]));
    let cold = BuildEnv::new();
    let bases = env.dir.join("bases.tar");
    ok(env
        .rbuild()
        .args(["save", "--format", "oci", "-o"])
        .arg(&bases)
        .args(["localhost/busybox-arm64", "localhost/busybox-amd64"]));
    ok(cold.rbuild().arg("load").arg("-i").arg(&bases));
    cold.dockerfile(CROSS);
    let cache_from = format!("type=local,src={}", cache.display());
    let warm = cold.build(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--cache-from",
        &cache_from,
    ]);
    assert!(warm.ran().is_empty(), "{}", warm.stderr);
    assert_eq!(warm.cached().len(), 8, "{}", warm.stderr);
    // What cannot hold an index is refused before anything runs.
    let run = env.build_fails(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        "type=docker,dest=x.tar",
    ]);
    assert!(run.stderr.contains("type=docker"), "{}", run.stderr);
    assert!(run.stderr.contains("type=oci"), "{}", run.stderr);
}

/// `pull --platform` of an index names the index, with the platforms pulled so far present:
/// pulling another platform adds it under the same name, and run, push and save use what
/// is there.
fn one_name_for_platforms_pulled_one_by_one(
    registry: &rbuild_test_support::Registry,
    name: &str,
    index: &str,
) {
    let env = env_for(false);
    let platforms = |env: &BuildEnv| {
        let listed = ok(env.rbuild().args(["images", "--format", "json"]));
        let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
        let entry = listed.iter().find(|i| i["name"] == name).unwrap().clone();
        assert_eq!(entry["id"], index, "{entry}");
        entry["platforms"].clone()
    };
    ok(env
        .rbuild()
        .args(["pull", "--platform", "linux/arm64", name]));
    assert_eq!(platforms(&env), serde_json::json!(["linux/arm64"]));
    let missing = env
        .rbuild()
        .args([
            "run",
            "--rm",
            "--pull",
            "never",
            "--platform",
            "linux/amd64",
        ])
        .args([name, "cat", "/out"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(
        stderr.contains("linux/amd64") && stderr.contains("not in the store"),
        "{stderr}"
    );
    // The platform pulled is what the name runs by default, even on another host.
    let run = ok(env.rbuild().args(["run", "--rm", name, "cat", "/out"]));
    assert_eq!(run.stdout, "for arm64\n");
    // `run` pulls a platform the index lists and the store lacks, as it pulls a missing image.
    let run = ok(env.rbuild().args([
        "run",
        "--rm",
        "--platform",
        "linux/amd64",
        name,
        "cat",
        "/out",
    ]));
    assert_eq!(run.stdout, "for amd64\n");
    assert_eq!(
        platforms(&env),
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    for (platform, out) in [
        ("linux/amd64", "for amd64\n"),
        ("linux/arm64", "for arm64\n"),
    ] {
        let run =
            ok(env
                .rbuild()
                .args(["run", "--rm", "--platform", platform, name, "cat", "/out"]));
        assert_eq!(run.stdout, out, "{platform}");
    }
    // A store with one platform pushes that one, in an index of its own; a save and load
    // keeps the name and what it has.
    let partial = env_for(false);
    ok(partial
        .rbuild()
        .args(["pull", "--platform", "linux/arm64", name]));
    let copy = format!("{}/partial:1", registry.host());
    ok(partial.rbuild().args(["push", name, &copy]));
    let raw = ok(crate::support::skopeo()
        .args(["inspect", "--raw"])
        .args(registry.skopeo_flags(""))
        .arg(format!("docker://{copy}")));
    let pushed: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    let entries = pushed["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{pushed}");
    assert_eq!(entries[0]["platform"]["architecture"], "arm64");
    let archive = partial.dir.join("partial.tar");
    ok(partial
        .rbuild()
        .args(["save", "--format", "oci", "-o"])
        .arg(&archive)
        .arg(name));
    let loaded = BuildEnv::new();
    ok(loaded.rbuild().arg("load").arg("-i").arg(&archive));
    assert_eq!(platforms(&loaded), serde_json::json!(["linux/arm64"]));
    let run = ok(loaded.rbuild().args(["run", "--rm", name, "cat", "/out"]));
    assert_eq!(run.stdout, "for arm64\n");
}

/// A Debian arm64 minbase (debootstrapped through the emulator) installs a package with apt
/// in an emulated RUN step, and the image runs through the emulator too.
fn debian_arm64_installs_packages_through_emulation(rootless: bool) {
    let env = env_for(rootless);
    let registry = rbuild_test_support::Registry::start();
    rbuild_test_support::DebianBase::bookworm_arm64().push(&registry, "debian:bookworm-arm64");
    env.dockerfile(&format!(
        "FROM {}/debian:bookworm-arm64\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello \\\n\
             && dpkg --print-architecture > /arch\n\
         CMD [\"hello\"]\n",
        registry.host()
    ));
    env.build(&["-t", "debian-arm64", "--platform", "linux/arm64"]);
    assert_eq!(env.config("debian-arm64")["architecture"], "arm64");
    let out = ok(env.rbuild().args(["run", "--rm", "debian-arm64"]));
    assert_eq!(out.stdout, "Hello, world!\n");
    assert_eq!(
        env.sh("debian-arm64", "cat /arch; uname -m"),
        "arm64\naarch64\n"
    );
}

as_root_and_rootless!(debian_arm64_installs_packages_through_emulation);
