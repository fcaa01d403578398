//! Named build contexts (`--build-context NAME=VALUE`): a directory read by `COPY --from`,
//! `RUN --mount=from` and `FROM`, with its own `.dockerignore` and its content in the cache
//! keys; an image that replaces the image or stage of the same name; and the errors for
//! values that name nothing usable.

use std::process::Command;

use crate::support::{BASE, BuildEnv, ok};

/// A directory named context outside the build context, owned by the environment's user.
fn extra_dir(env: &BuildEnv) -> std::path::PathBuf {
    let extra = env.dir.mkdir("extra");
    std::fs::write(extra.join("a.txt"), "from a\n").unwrap();
    std::fs::create_dir_all(extra.join("sub")).unwrap();
    std::fs::write(extra.join("sub/b.txt"), "from b\n").unwrap();
    std::fs::write(extra.join("noise.log"), "ignored\n").unwrap();
    std::fs::write(extra.join(".dockerignore"), "*.log\n").unwrap();
    if let Some(user) = env.user {
        ok(Command::new("chown").args(["-R", user]).arg(&extra));
    }
    extra
}

fn directory_context_for_copy_mount_and_from(env: &BuildEnv) {
    let extra = extra_dir(env);
    env.dockerfile(&format!(
        "FROM extra AS tree\n\
         FROM {BASE}\n\
         COPY --from=extra a.txt /copied.txt\n\
         RUN --mount=from=extra,target=/mnt cat /mnt/sub/b.txt > /mounted.txt && ls -a /mnt > /listing.txt\n\
         COPY --from=tree / /tree/\n"
    ));
    let spec = format!("extra={}", extra.display());
    let first = env.build(&["-t", "img", "--build-context", &spec]);
    assert_eq!(env.sh("img", "cat /copied.txt"), "from a\n");
    assert_eq!(env.sh("img", "cat /mounted.txt"), "from b\n");
    // The context's own .dockerignore hides noise.log from the mount and from FROM.
    assert_eq!(
        env.sh("img", "cat /listing.txt"),
        ".\n..\n.dockerignore\na.txt\nsub\n"
    );
    assert_eq!(
        env.sh("img", "cd /tree && find . | sort"),
        ".\n./.dockerignore\n./a.txt\n./sub\n./sub/b.txt\n"
    );
    let run = "RUN /bin/sh -c cat /mnt/sub/b.txt > /mounted.txt && ls -a /mnt > /listing.txt";
    assert!(first.ran().iter().any(|s| s == run), "{}", first.stderr);

    // Unchanged, or changed only where .dockerignore hides: every step from the cache.
    std::fs::write(extra.join("noise.log"), "still ignored\n").unwrap();
    let again = env.build(&["-t", "img", "--build-context", &spec]);
    assert_eq!(again.ran(), Vec::<String>::new(), "{}", again.stderr);
    assert!(again.step("FROM extra").cached, "{}", again.stderr);
    assert_eq!(again.id, first.id);

    // A file of the context changes: the steps that read it run, the others hit.
    std::fs::write(extra.join("sub/b.txt"), "b changed\n").unwrap();
    let changed = env.build(&["-t", "img", "--build-context", &spec]);
    assert!(changed.ran().iter().any(|s| s == run), "{}", changed.stderr);
    assert!(!changed.step("FROM extra").cached, "{}", changed.stderr);
    assert!(
        changed
            .cached()
            .iter()
            .any(|s| s == "COPY --from=extra a.txt /copied.txt"),
        "{}",
        changed.stderr
    );
    assert_eq!(env.sh("img", "cat /mounted.txt"), "b changed\n");
    assert_eq!(env.sh("img", "cat /tree/sub/b.txt"), "b changed\n");
}

#[test]
fn directory_context_for_copy_mount_and_from_as_root() {
    directory_context_for_copy_mount_and_from(&BuildEnv::new());
}

#[test]
fn directory_context_for_copy_mount_and_from_rootless() {
    directory_context_for_copy_mount_and_from(&BuildEnv::rootless());
}

#[test]
fn image_context_replaces_the_image_of_its_name() {
    let env = BuildEnv::new();
    // Without network, `alpine` can only be the store's busybox named by the context; its
    // long form matches the same context.
    env.dockerfile(
        "FROM alpine\n\
         RUN echo first > /one\n\
         FROM docker.io/library/alpine:latest\n\
         COPY --from=0 /one /one\n\
         RUN --mount=from=alpine,target=/m test -x /m/bin/busybox && cat /one\n",
    );
    let built = env.build(&[
        "-t",
        "img",
        "--network",
        "none",
        "--build-context",
        "alpine=docker-image://localhost/busybox",
    ]);
    assert_eq!(env.sh("img", "cat /one"), "first\n");
    assert!(
        !built.stderr.contains("docker.io"),
        "nothing is pulled: {}",
        built.stderr
    );
}

#[test]
fn a_context_of_a_stage_name_replaces_the_stage() {
    let env = BuildEnv::new();
    let tools = env.dir.mkdir("tools");
    std::fs::write(tools.join("marker"), "from the context\n").unwrap();
    // BuildKit's order: a context named like a stage replaces that stage (its steps never
    // run), everywhere the stage is used.
    env.dockerfile(&format!(
        "FROM {BASE} AS tools\n\
         RUN exit 3\n\
         FROM {BASE}\n\
         COPY --from=tools /marker /marker\n"
    ));
    let spec = format!("tools={}", tools.display());
    env.build(&["-t", "img", "--build-context", &spec]);
    assert_eq!(env.sh("img", "cat /marker"), "from the context\n");
    // Without the context the stage runs, and fails.
    env.build_fails(&["-t", "img2"]);
}

#[test]
fn bad_named_contexts_are_refused_naming_the_value() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nCOPY --from=extra a /a\n"));
    let missing = env.dir.join("no-such-dir");
    let missing_spec = format!("extra={}", missing.display());
    let file = env.write("plain-file", "x");
    let file_spec = format!("extra={}", file.display());
    for (spec, want) in [
        (missing_spec.as_str(), missing.display().to_string()),
        (
            file_spec.as_str(),
            format!("{} is not a directory", file.display()),
        ),
        (
            "extra=ftp://host/ctx",
            "unsupported context source ftp://".into(),
        ),
        (
            "extra=docker-image://Not A Ref",
            "\"Not A Ref\" is not an image reference".into(),
        ),
        ("Extra=.", "invalid --build-context \"Extra=.\"".into()),
        ("extra", "expected NAME=VALUE".into()),
    ] {
        let run = env.build_fails(&["--build-context", spec]);
        assert!(
            run.stderr.contains(&want),
            "{spec}: want {want:?} in {}",
            run.stderr
        );
    }
}

#[test]
fn oci_layout_context_from_an_oci_directory_output() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo from the layout > /marker\n"
    ));
    let layout = env.dir.join("layout");
    let dest = format!("type=oci,tar=false,dest={}", layout.display());
    env.build(&["-t", "localhost/layout:v1", "-o", &dest]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // Another store, which has never seen that image: the layout is its only source.
    let other = BuildEnv::new();
    other.dockerfile(
        "FROM base AS built\n\
         RUN cat /marker > /seen\n\
         FROM scratch\n\
         COPY --from=built /seen /seen\n",
    );
    for value in [
        format!("oci-layout://{}", layout.display()),
        format!("oci-layout://{}:v1", layout.display()),
        format!("oci-layout://{}@{digest}", layout.display()),
    ] {
        let spec = format!("base={value}");
        other.build(&["-t", "img", "--build-context", &spec]);
        let out = other.dir.join("out");
        let _ = std::fs::remove_dir_all(&out);
        let local = format!("type=local,dest={}", out.display());
        ok(&mut other.build_cmd(&["-o", &local, "--build-context", &spec]));
        assert_eq!(
            std::fs::read_to_string(out.join("seen")).unwrap(),
            "from the layout\n",
            "{value}"
        );
    }
    let spec = format!("base=oci-layout://{}:v2", layout.display());
    let run = other.build_fails(&["--build-context", &spec]);
    assert!(
        run.stderr.contains("has no image v2") && run.stderr.contains(&digest),
        "{}",
        run.stderr
    );
    let spec = format!("base=oci-layout://{}", other.ctx.display());
    let run = other.build_fails(&["--build-context", &spec]);
    assert!(
        run.stderr.contains(&format!(
            "{} is not an OCI image layout",
            other.ctx.display()
        )),
        "{}",
        run.stderr
    );
}

/// Serves `body` at `/ctx.tar.gz`, a redirect to it at `/moved`, and 404 for the rest;
/// returns the base URL.
fn serve_context(body: Vec<u8>) -> String {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let head = crate::support::request_head(&mut conn);
            let path = head.split(' ').nth(1).unwrap_or_default().to_string();
            let _ = match path.as_str() {
                "/ctx.tar.gz" => write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|()| conn.write_all(&body)),
                "/moved" => write!(
                    conn,
                    "HTTP/1.1 302 Found\r\nLocation: /ctx.tar.gz\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                _ => write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_tarball_url_is_the_context() {
    let env = BuildEnv::new();
    env.write("hello.txt", "hello from the tarball\n");
    env.dockerfile(&format!("FROM {BASE}\nCOPY hello.txt /hello.txt\n"));
    let tar = env.context_tar();
    let base = serve_context(crate::support::gzip(&tar));
    for (path, tag) in [("/ctx.tar.gz", "img"), ("/moved", "img2")] {
        let url = format!("{base}{path}");
        ok(env
            .rbuild()
            .args(["build", "--progress", "plain", "-t", tag, &url]));
        assert_eq!(
            env.sh(tag, "cat /hello.txt"),
            "hello from the tarball\n",
            "{url}"
        );
    }
    // A URL that is not there, and one whose download crosses the size limit: errors that
    // name the URL.
    let missing = format!("{base}/nothing.tar.gz");
    let run = crate::support::fails(
        env.rbuild()
            .args(["build", "--progress", "plain", &missing]),
    );
    assert!(
        run.stderr
            .contains(&format!("cannot download the build context {missing}"))
            && run.stderr.contains("404"),
        "{}",
        run.stderr
    );
    let url = format!("{base}/ctx.tar.gz");
    let run = crate::support::fails(env.rbuild().env("RBUILD_MAX_LAYER_SIZE", "100").args([
        "build",
        "--progress",
        "plain",
        &url,
    ]));
    assert!(
        run.stderr.contains(&format!(
            "the build context read from {url} is larger than 100 bytes"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn the_context_and_the_dockerfile_cannot_both_come_from_stdin() {
    let env = BuildEnv::new();
    let run = crate::support::fails(env.rbuild().args(["build", "-f", "-", "-"]));
    assert!(
        run.stderr
            .contains("the context and the Dockerfile cannot both come from stdin"),
        "{}",
        run.stderr
    );
}
