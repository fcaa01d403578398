//! Subtle build semantics: the cache key of `--network`, how build-arg and base-image
//! changes are explained, symlinked COPY sources, and `.dockerignore` under bind mounts.

use std::os::unix::fs::symlink;

use crate::support::{BASE, BuildEnv};

/// `--network none` must enter the cache key of RUN steps that do not name a network
/// (BuildKit's ExecOp NetMode is part of the op): reusing the first build's result would
/// give the image the host's interfaces.
#[test]
fn network_flag_enters_the_cache_key() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > /ifaces\n"
    ));
    env.build(&["-t", "host"]);
    let built = env.build(&["-t", "none", "--network", "none"]);
    assert_eq!(built.ran().len(), 1, "{}", built.stderr);
    assert_eq!(env.sh("none", "cat /ifaces"), "lo\n");
}

/// A changed build arg is explained as `build arg or env NAME changed`, although the step's
/// description (`RUN |1 MODE=debug ...`) embeds the build args' values.
#[test]
fn build_arg_change_is_explained_as_a_build_arg() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nARG MODE=debug\nRUN echo $MODE > /mode\n"
    ));
    env.build(&[]);
    let built = env.build(&["--build-arg", "MODE=release"]);
    assert_eq!(
        built
            .step("RUN |1 MODE=release /bin/sh -c echo $MODE > /mode")
            .miss
            .as_deref(),
        Some("build arg or env MODE changed")
    );
}

/// After `--pull` finds the tag moved, the first step's miss must read `base image REF now
/// resolves to sha256:...`.
#[test]
fn pull_of_a_moved_tag_is_explained_as_a_base_image_change() {
    use rbuild_test_support::{BusyboxLayout, Format, Registry};
    let registry = Registry::start();
    BusyboxLayout::build().push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let host = registry.host();
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {host}/busybox:latest\nRUN echo x > /x\n"));
    env.build(&[]);
    BusyboxLayout::build_with_extra(1024).push_with_skopeo(
        &registry,
        "busybox:latest",
        Format::Oci,
    );
    let built = env.build(&["--pull"]);
    let reason = built
        .step("RUN /bin/sh -c echo x > /x")
        .miss
        .clone()
        .unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "base image {host}/busybox:latest now resolves to sha256:"
        )),
        "{}",
        built.stderr
    );
}

/// `COPY link /dest` where `link` is a symlink in the context to `in.txt` (or to a
/// directory) must copy the target's content, as BuildKit does (the named source is
/// followed): the context selection holds the link and its target.
#[test]
fn copy_of_a_symlinked_source_follows_it() {
    let env = BuildEnv::new();
    env.write("in.txt", "hello\n");
    env.write("sub/s.txt", "s\n");
    symlink("in.txt", env.ctx.join("link")).unwrap();
    symlink("sub", env.ctx.join("dirlink")).unwrap();
    env.dockerfile(&format!("FROM {BASE}\nCOPY link /l2\nCOPY dirlink /d/\n"));
    env.build(&["-t", "links"]);
    assert_eq!(
        env.sh("links", "[ -f /l2 ] && [ ! -L /l2 ] && cat /l2 /d/s.txt"),
        "hello\ns\n"
    );
}

/// `RUN --mount=type=bind` of the context must see only what .dockerignore lets through,
/// as COPY does (BuildKit sends the context filtered): an ignored `secret.key` must not be
/// visible to the step (it could end up in a layer).
#[test]
fn bind_mount_of_the_context_honours_dockerignore() {
    let env = BuildEnv::new();
    env.write("a", "a\n");
    env.write("secret.key", "s\n");
    env.write(".dockerignore", "*.key\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=bind,target=/ctx ls -A /ctx > /listing\n"
    ));
    env.build(&["-t", "bind"]);
    assert_eq!(
        env.sh("bind", "cat /listing"),
        ".dockerignore\nDockerfile\na\n"
    );
}
