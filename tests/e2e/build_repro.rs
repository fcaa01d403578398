//! Reproducible builds, Docker media types, concurrent builds into one store, and base
//! images from a real registry (pulled once, `--pull` re-resolves).

use std::path::Path;

use rbuild_test_support::{BusyboxLayout, Format, Registry};
use serde_json::Value;

use crate::support::{BASE, BuildEnv, Dir, busybox_rootfs, ok, rbuild, skopeo};

const EPOCH: &str = "1700000000";

/// A fresh store with the base image imported at `EPOCH`, and a fresh context written from
/// scratch (new inodes and mtimes), built with `SOURCE_DATE_EPOCH`.
fn build_fresh(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    busybox_rootfs(&rootfs);
    let root = dir.join("store");
    ok(rbuild(&root)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg("import")
        .arg(&rootfs)
        .arg(BASE));
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("app")).unwrap();
    std::fs::write(ctx.join("app/main.txt"), "main\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE}\nCOPY app /app\nRUN echo built > /app/out\nWORKDIR /app\nCMD [\"cat\", \"out\"]\n"
        ),
    )
    .unwrap();
    let out = ok(rbuild(&root)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["build", "--progress", "plain", "-t", "repro"])
        .arg(&ctx));
    out.stdout.trim_end().to_string()
}

#[test]
fn source_date_epoch_builds_are_reproducible_across_fresh_stores() {
    let a = Dir::new();
    let b = Dir::new();
    let id_a = build_fresh(&a.join("one"));
    // Let the clock move on so that any time that leaks into the image differs.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let id_b = build_fresh(&b.join("two"));
    assert_eq!(id_a, id_b);
    let root = a.join("one/store");
    let out = ok(rbuild(&root).args(["inspect", "repro"]));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let config = &v[0]["config"];
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert!(
        config["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["created"] == "2023-11-14T22:13:20Z"),
        "{config}"
    );
}

#[test]
fn format_docker_gives_docker_media_types() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo d > /d\n"));
    let built = env.build(&["-t", "dockerfmt", "--format", "docker"]);
    // skopeo's oci: transport lists only OCI media types in index.json; read the image
    // through a registry instead.
    let registry = Registry::start();
    let dest = format!("{}/dockerfmt:v1", registry.host());
    let pushed = ok(rbuild(&env.root).args(["push", "dockerfmt", &dest]));
    let out = ok(skopeo()
        .args(["inspect", "--raw"])
        .args(registry.skopeo_flags(""))
        .arg(format!("docker://{dest}")));
    let m: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    // The store keeps the build's layers uncompressed (Docker's uncompressed layer type);
    // the push gzips them, so the registry holds Docker's gzip layer type and a manifest
    // of its own, with the same config.
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    let local = env.inspect("dockerfmt");
    let local_layers = local["manifest"]["layers"].as_array().unwrap();
    assert_eq!(
        local_layers.last().unwrap()["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar",
        "{local}"
    );
    assert_eq!(m["config"]["digest"], local["manifest"]["config"]["digest"]);
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            out.stdout.as_bytes()
        ))
    );
    assert!(pushed.stdout.trim().ends_with(&digest), "{}", pushed.stdout);
    assert_ne!(digest, built.id);
    assert_eq!(env.sh("dockerfmt", "cat /d"), "d\n");
}

#[test]
fn concurrent_builds_into_one_store_all_succeed() {
    let env = BuildEnv::new();
    let mut children = Vec::new();
    for i in 0..4 {
        let ctx = env.dir.mkdir(format!("ctx{i}"));
        // Overlapping: all share the first RUN; two share the second.
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM {BASE}\nRUN echo shared > /shared\nRUN echo pair-{} > /pair\nRUN echo own-{i} > /own\n",
                i % 2
            ),
        )
        .unwrap();
        let mut cmd = rbuild(&env.root);
        cmd.args(["build", "--progress", "plain", "-t", &format!("c{i}")])
            .arg(&ctx)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().expect("spawn rbuild"));
    }
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "build {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..4 {
        assert_eq!(
            env.sh(&format!("c{i}"), "cat /shared /pair /own"),
            format!("shared\npair-{}\nown-{i}\n", i % 2)
        );
    }
    crate::support::verified_blobs(&env.root);
}

#[test]
fn registry_base_is_pulled_once_cached_on_rebuild_and_pull_sees_a_moved_tag() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let host = registry.host();
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {host}/busybox:latest\nRUN echo on-registry-base > /r\n"
    ));
    let manifest_gets = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("GET /v2/busybox/manifests/")
                    || l.contains("HEAD /v2/busybox/manifests/")
            })
            .count()
    };
    let first = env.build(&["-t", "fromreg"]);
    assert_eq!(first.ran(), ["RUN /bin/sh -c echo on-registry-base > /r"]);
    assert_eq!(env.sh("fromreg", "cat /r"), "on-registry-base\n");
    let asked = manifest_gets(&registry.log());
    assert!(asked >= 1, "the first build pulls the base");
    // Rebuild: the store's copy is used, nothing is asked of the registry, all cached.
    let second = env.build(&[]);
    assert_eq!(second.ran(), Vec::<String>::new(), "{}", second.stderr);
    assert_eq!(second.id, first.id);
    assert_eq!(manifest_gets(&registry.log()), asked);
    // The tag moves to another image; without --pull the build keeps the store's copy.
    let other = BusyboxLayout::build_with_extra(4096);
    other.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let kept = env.build(&[]);
    assert_eq!(kept.id, first.id);
    // --pull resolves the tag again: a miss explained by the base image.
    let pulled = env.build(&["--pull", "-t", "moved"]);
    let step = pulled.step("RUN /bin/sh -c echo on-registry-base > /r");
    let reason = step.miss.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("{host}/busybox:latest")),
        "{}",
        pulled.stderr
    );
    assert_ne!(pulled.id, first.id);
    assert_eq!(
        env.sh("moved", "wc -c < /data.bin; cat /r"),
        "4096\non-registry-base\n"
    );
    // --pull again with the tag unchanged: cached.
    let again = env.build(&["--pull"]);
    assert_eq!(again.ran(), Vec::<String>::new(), "{}", again.stderr);
    assert_eq!(again.id, pulled.id);
}

#[test]
fn base_from_a_tls_registry_with_auth_needs_its_ca_and_a_login() {
    let registry = Registry::start_with_auth();
    BusyboxLayout::build().push_with_skopeo(&registry, "secure/busybox:latest", Format::Oci);
    let host = registry.host();
    let ca = registry.ca_pem();
    let ca = ca.to_str().unwrap();
    let env = BuildEnv::new();
    let docker_config = env.dir.mkdir("docker-config");
    env.dockerfile(&format!(
        "FROM {host}/secure/busybox:latest\nRUN echo secure > /s\n"
    ));
    let build = |extra: &[&str]| {
        let mut cmd = env.build_cmd(extra);
        cmd.env("DOCKER_CONFIG", &docker_config)
            .env_remove("REGISTRY_AUTH_FILE");
        cmd
    };
    // The registry's certificate is signed by a CA the system does not trust.
    let out = crate::support::fails(&mut build(&[]));
    assert!(out.stderr.contains(&host), "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    // With the CA but without credentials: refused by the registry.
    let out = crate::support::fails(&mut build(&["--tls-ca", ca]));
    assert!(
        out.stderr.contains("401 unauthorized") && out.stderr.contains("rbuild login"),
        "{}",
        out.stderr
    );
    // After a login, the base is pulled and the build runs.
    crate::support::filter(
        rbuild(&env.root)
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("REGISTRY_AUTH_FILE")
            .args([
                "login",
                "-u",
                rbuild_test_support::USER,
                "--password-stdin",
                "--tls-ca",
                ca,
                &host,
            ]),
        format!("{}\n", rbuild_test_support::PASSWORD).as_bytes(),
    );
    let out = ok(&mut build(&["--tls-ca", ca, "-t", "secure"]));
    assert!(
        !out.stderr.contains(rbuild_test_support::PASSWORD),
        "{}",
        out.stderr
    );
    assert_eq!(env.sh("secure", "cat /s"), "secure\n");
}

#[test]
fn reproducible_check_passes_a_reproducible_build() {
    let env = BuildEnv::new();
    env.write("app/main.txt", "main\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY app /app\nRUN echo built > /app/out\nCMD [\"cat\", \"/app/out\"]\n"
    ));
    let run = ok(env
        .build_cmd(&["--reproducible-check", "-t", "checked"])
        .env("SOURCE_DATE_EPOCH", EPOCH));
    let id = run.stdout.trim();
    assert!(id.starts_with("sha256:"), "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!("reproducible: {id}")),
        "{}",
        run.stderr
    );
    // The rebuild ran every step again (no cache) and left nothing in the store's temp space.
    assert!(
        run.stderr
            .matches("RUN /bin/sh -c echo built > /app/out")
            .count()
            >= 2,
        "{}",
        run.stderr
    );
    let tmp = env.root.join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("repro-")),
        "{left:?}"
    );
    assert_eq!(env.sh("checked", "cat /app/out"), "built\n");
}

#[test]
fn reproducible_check_names_the_layer_line_and_file_that_differ() {
    // (busybox's date has no %N: the random bytes stand for any time or random value that
    // leaks into a file.)
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo same > /same\nRUN od -An -N8 -tx1 /dev/urandom > /stamp\nRUN echo after > /after\n"
    ));
    let mut cmd = env.build_cmd(&["--reproducible-check", "-t", "unrepro"]);
    let run = crate::support::fails(cmd.env("SOURCE_DATE_EPOCH", EPOCH));
    // The first build's image is kept and its id printed; the check fails after it.
    let id = run.stdout.trim();
    assert!(id.starts_with("sha256:"), "{}", run.stdout);
    let error = run
        .stderr
        .lines()
        .find(|l| l.contains("not reproducible"))
        .unwrap_or_else(|| panic!("no error line:\n{}", run.stderr));
    assert!(error.contains(id), "{error}");
    assert!(
        error.contains(
            "layer 2 (Dockerfile:3: RUN /bin/sh -c od -An -N8 -tx1 /dev/urandom > /stamp) differs: /stamp: content"
        ),
        "{error}"
    );
    assert!(!error.contains("/same"), "{error}");
}

#[test]
fn reproducible_check_without_source_date_epoch_is_refused_before_building() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo x > /x\n"));
    let run = env.build_fails(&["--reproducible-check", "-t", "never"]);
    assert!(
        run.stderr
            .contains("--reproducible-check needs SOURCE_DATE_EPOCH"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("echo x"),
        "nothing ran: {}",
        run.stderr
    );
    crate::support::fails(env.rbuild().args(["inspect", "never"]));
}
