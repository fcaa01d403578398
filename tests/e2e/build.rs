//! `rbuild build`: each Dockerfile instruction, checked in the image it produces (files with
//! `rbuild run`, the config with `rbuild inspect`). Base image: busybox imported into each
//! test's store. Needs what `run.rs` needs (user namespaces, overlayfs or copies, busybox).

use serde_json::{Value, json};

use crate::support::{BASE, BuildEnv, Dir, fails, ok, rbuild};

#[test]
fn build_prints_only_the_image_id_and_build_is_the_default_subcommand() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo hi > /hi\n"));
    let built = env.build(&["-t", "one", "-t", "two:v2"]);
    // Steps: FROM, then the RUN, which ran.
    assert_eq!(
        built.ran(),
        ["RUN /bin/sh -c echo hi > /hi"],
        "{}",
        built.stderr
    );
    assert_eq!(built.steps[0].instruction, format!("FROM {BASE}"));
    assert_eq!(built.steps[1].label, "stage-0 2/2");
    assert_eq!(
        built.steps[1].miss.as_deref(),
        Some("first build of this step")
    );
    // Every -t names the image.
    for name in ["one", "two:v2"] {
        let desc = env.inspect(name);
        assert_eq!(desc["manifestDescriptor"]["digest"], built.id.as_str());
    }
    // `rbuild [flags] CONTEXT` is `rbuild build [flags] CONTEXT`.
    let out = ok(rbuild(&env.root)
        .args(["--progress", "plain", "-t", "three"])
        .arg(&env.ctx));
    assert_eq!(out.stdout, format!("{}\n", built.id));
    assert_eq!(
        crate::support::ran(&crate::support::steps(&out.stderr)),
        Vec::<String>::new(),
        "{}",
        out.stderr
    );
    assert_eq!(env.sh("three", "cat /hi"), "hi\n");
    // --iidfile gets the id (docker writes it without a newline).
    let iid = env.dir.join("iid");
    let built = env.build(&["--iidfile", iid.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), built.id);
    // --progress quiet: nothing on stderr; json: one object per line.
    let out = ok(rbuild(&env.root)
        .args(["build", "--progress", "quiet"])
        .arg(&env.ctx));
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        (format!("{}\n", built.id).as_str(), "")
    );
    let out = ok(rbuild(&env.root)
        .args(["build", "--progress", "json"])
        .arg(&env.ctx));
    let events: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "cached" && e["step"] == 2),
        "{}",
        out.stderr
    );
}

#[test]
fn run_shell_exec_and_heredoc_forms() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE}
RUN echo "shell $((1+2))" > /shell
RUN ["/bin/sh", "-c", "echo exec $0 > /exec", "zero"]
RUN <<EOT
set -e
echo first > /heredoc
echo second >> /heredoc
EOT
RUN cat > /fed <<EOT
fed by heredoc
EOT
RUN <<'EOT' sh -s -- arg1
echo "script got $1" > /script
EOT
RUN <<EOT
#!/bin/sh
echo "run as a script by $0" > /shebang
EOT
"#
    ));
    let built = env.build(&["-t", "img"]);
    assert_eq!(built.ran().len(), 6, "{}", built.stderr);
    assert_eq!(
        env.sh("img", "cat /shell /exec /heredoc /fed /script /shebang"),
        "shell 3\nexec zero\nfirst\nsecond\nfed by heredoc\nscript got arg1\n\
         run as a script by /dev/pipes/EOT\n"
    );
    let config = env.config("img");
    let created_by: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        created_by[0],
        r#"RUN /bin/sh -c echo "shell $((1+2))" > /shell"#
    );
    assert_eq!(created_by[1], r#"RUN /bin/sh -c echo exec $0 > /exec zero"#);
    // Every RUN added a layer and points at its line.
    let comments: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|h| h["comment"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        comments,
        [
            "Dockerfile:2",
            "Dockerfile:3",
            "Dockerfile:4",
            "Dockerfile:9",
            "Dockerfile:12",
            "Dockerfile:15"
        ]
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 7);
}

#[test]
fn arg_env_and_build_args_reach_run_but_args_stay_out_of_the_config() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"ARG BASE_IMAGE={BASE}
FROM $BASE_IMAGE
ARG FLAVOR=plain
ARG UNSET
ENV APP_HOME=/srv/app GREETING="hello world"
ENV DERIVED=$APP_HOME/bin
RUN echo "$FLAVOR|$UNSET|$APP_HOME|$GREETING|$DERIVED" > /seen
ARG FLAVOR2=${{FLAVOR}}-x
ENV FLAVOR=env-wins
RUN echo "$FLAVOR|$FLAVOR2" > /seen2
"#
    ));
    env.build(&["-t", "default"]);
    assert_eq!(
        env.sh("default", "cat /seen /seen2"),
        "plain||/srv/app|hello world|/srv/app/bin\nenv-wins|plain-x\n"
    );
    env.build(&[
        "-t",
        "args",
        "--build-arg",
        "FLAVOR=spicy",
        "--build-arg",
        "UNSET=now-set",
    ]);
    assert_eq!(
        env.sh("args", "cat /seen /seen2"),
        "spicy|now-set|/srv/app|hello world|/srv/app/bin\nenv-wins|spicy-x\n"
    );
    let config = env.config("args");
    assert_eq!(
        config["config"]["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_HOME=/srv/app",
            "GREETING=hello world",
            "DERIVED=/srv/app/bin",
            "FLAVOR=env-wins"
        ])
    );
    // Build args are not in the runtime environment of the image either.
    assert_eq!(env.sh("args", "echo \"[$UNSET][$FLAVOR2]\""), "[][]\n");
    // As in docker, history records the build args a RUN saw.
    let hist = config["history"].as_array().unwrap();
    assert_eq!(
        hist[5]["created_by"],
        r#"RUN |2 FLAVOR=spicy UNSET=now-set /bin/sh -c echo "$FLAVOR|$UNSET|$APP_HOME|$GREETING|$DERIVED" > /seen"#
    );
}

/// As BuildKit: a stage built `FROM` another stage goes on with the ARG values in effect at
/// the end of it (in RUN's environment, in expansion, in RUN history), and an ARG declared
/// after an ENV of the same name is what the following steps see, while the image config
/// keeps the ENV value.
#[test]
fn child_stages_inherit_args_and_a_later_arg_overrides_env_for_steps() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE} AS base
ARG VERSION=1.2
ARG CHANNEL
ENV MODE=env-mode
ARG MODE=arg-mode
RUN echo "$MODE" > /mode
FROM base AS child
RUN echo "$VERSION|$CHANNEL|$MODE" > /inherited
ENV LABEL_VALUE=v$VERSION
FROM base AS other
ARG VERSION=2.0
RUN echo "$VERSION" > /redeclared
FROM child
COPY --from=other /redeclared /redeclared
"#
    ));
    env.build(&["-t", "inherit", "--build-arg", "CHANNEL=beta"]);
    assert_eq!(
        env.sh(
            "inherit",
            "cat /mode /inherited /redeclared; echo $LABEL_VALUE $MODE"
        ),
        "arg-mode\n1.2|beta|arg-mode\n2.0\nv1.2 env-mode\n"
    );
    let config = env.config("inherit");
    let env_list = config["config"]["Env"].as_array().unwrap();
    assert!(env_list.contains(&json!("MODE=env-mode")), "{env_list:?}");
    assert!(
        !env_list
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("VERSION=")),
        "build args stay out of the config: {env_list:?}"
    );
    let created: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .filter(|c| c.starts_with("RUN "))
        .collect();
    assert_eq!(
        created,
        [
            r#"RUN |3 VERSION=1.2 CHANNEL=beta MODE=arg-mode /bin/sh -c echo "$MODE" > /mode"#,
            r#"RUN |3 VERSION=1.2 CHANNEL=beta MODE=arg-mode /bin/sh -c echo "$VERSION|$CHANNEL|$MODE" > /inherited"#,
        ]
    );
}

#[test]
fn config_instructions_are_kept_in_the_image_config() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE}
ARG VERSION=1.0
LABEL org.example.version=$VERSION "multi word"="a b"
LABEL other=x
EXPOSE 80 7000-7002/tcp 53/udp
VOLUME ["/data", "/logs"]
VOLUME /cache
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=2 CMD wget -q localhost || exit 1
ONBUILD RUN echo triggered
MAINTAINER someone@example.com
SHELL ["/bin/sh", "-ec"]
CMD echo from-cmd
"#
    ));
    let built = env.build(&[
        "-t",
        "cfg",
        "--label",
        "from.flag=yes",
        "--label",
        "other=flag-wins",
    ]);
    assert_eq!(built.ran(), Vec::<String>::new(), "{}", built.stderr);
    let config = env.config("cfg");
    let c = &config["config"];
    assert_eq!(
        c["Labels"],
        json!({"org.example.version": "1.0", "multi word": "a b", "other": "flag-wins", "from.flag": "yes"})
    );
    assert_eq!(
        c["ExposedPorts"],
        json!({"80/tcp": {}, "7000/tcp": {}, "7001/tcp": {}, "7002/tcp": {}, "53/udp": {}})
    );
    assert_eq!(
        c["Volumes"],
        json!({"/data": {}, "/logs": {}, "/cache": {}})
    );
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(
        c["Healthcheck"],
        json!({
            "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
            "Interval": 5_000_000_000u64,
            "Timeout": 3_000_000_000u64,
            "StartPeriod": 1_000_000_000u64,
            "Retries": 2
        })
    );
    assert_eq!(c["OnBuild"], json!(["RUN echo triggered"]));
    assert_eq!(c["Shell"], json!(["/bin/sh", "-ec"]));
    // A shell-form CMD runs through the SHELL in force.
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-ec", "echo from-cmd"]));
    assert_eq!(config["author"], "someone@example.com");
    // No ARG in the config.
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e.as_str().unwrap().starts_with("VERSION"))
    );
    // Config instructions add no layers: only the base's.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    let hist = config["history"].as_array().unwrap();
    // One entry per instruction but ONBUILD, which only changes the config (as BuildKit).
    assert_eq!(hist.len(), 1 + 11, "{hist:?}");
    assert!(
        hist[1..].iter().all(|h| h["empty_layer"] == true),
        "{hist:?}"
    );
    let out = ok(rbuild(&env.root).args(["run", "--rm", "cfg"]));
    assert_eq!(out.stdout, "from-cmd\n");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nONBUILD RUN echo triggered > /trigger\n"
    ));
    env.build(&["-t", "parent"]);
    env.dockerfile("FROM parent\nRUN cat /trigger > /seen\n");
    let built = env.build(&["-t", "child"]);
    assert_eq!(
        built.ran(),
        [
            "RUN /bin/sh -c echo triggered > /trigger",
            "RUN /bin/sh -c cat /trigger > /seen"
        ],
        "{}",
        built.stderr
    );
    assert_eq!(env.sh("child", "cat /seen"), "triggered\n");
    // Triggers are consumed: the child has none.
    assert!(env.config("child")["config"]["OnBuild"].is_null());
}

#[test]
fn entrypoint_and_cmd() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nCMD [\"ignored\"]\nENTRYPOINT [\"/bin/echo\", \"ep\"]\n"
    ));
    env.build(&["-t", "ep-only"]);
    // ENTRYPOINT resets a CMD set before it in the same stage? No: docker keeps a CMD of
    // the same stage and drops only the inherited one.
    let c = env.config("ep-only");
    assert_eq!(c["config"]["Entrypoint"], json!(["/bin/echo", "ep"]));
    assert_eq!(c["config"]["Cmd"], json!(["ignored"]));
    env.dockerfile("FROM ep-only\nENTRYPOINT [\"/bin/echo\", \"child\"]\n");
    env.build(&["-t", "ep-child"]);
    let c = env.config("ep-child");
    assert_eq!(c["config"]["Entrypoint"], json!(["/bin/echo", "child"]));
    assert!(
        c["config"]["Cmd"].is_null(),
        "inherited CMD is dropped: {c}"
    );
    env.dockerfile(&format!(
        "FROM {BASE}\nENTRYPOINT [\"/bin/echo\", \"ep\"]\nCMD [\"arg1\", \"arg2\"]\n"
    ));
    env.build(&["-t", "ep-cmd"]);
    let out = ok(rbuild(&env.root).args(["run", "--rm", "ep-cmd"]));
    assert_eq!(out.stdout, "ep arg1 arg2\n");
    // Shell-form ENTRYPOINT goes through /bin/sh -c.
    env.dockerfile(&format!("FROM {BASE}\nENTRYPOINT echo shell-ep $0\n"));
    env.build(&["-t", "ep-shell"]);
    assert_eq!(
        env.config("ep-shell")["config"]["Entrypoint"],
        json!(["/bin/sh", "-c", "echo shell-ep $0"])
    );
}

#[test]
fn user_applies_to_later_runs_by_id_and_by_name() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE}
RUN mkdir -m 1777 /out
USER 1234:4321
RUN id -u > /out/numeric; id -g >> /out/numeric
USER app
RUN id -u > /out/named; id -g >> /out/named; touch /out/owned
USER svc
RUN id -u > /out/svc; id -g >> /out/svc
USER root
"#
    ));
    env.build(&["-t", "users"]);
    assert_eq!(
        env.sh(
            "users",
            "cat /out/numeric /out/named /out/svc; stat -c '%u %g' /out/owned /out/svc"
        ),
        "1234\n4321\n1000\n1000\n1001\n50\n1000 1000\n1001 50\n"
    );
    assert_eq!(env.config("users")["config"]["User"], "root");
}

#[test]
fn workdir_is_created_for_the_current_user_and_used_by_run() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE}
USER app
WORKDIR /work/dir
RUN pwd > here
WORKDIR sub
RUN pwd > /work/dir/sub/here
"#
    ));
    let built = env.build(&["-t", "wd"]);
    assert_eq!(built.ran().len(), 4, "{}", built.stderr);
    assert_eq!(
        env.sh(
            "wd",
            "cat /work/dir/here /work/dir/sub/here; stat -c '%a %u %g' /work /work/dir /work/dir/sub"
        ),
        "/work/dir\n/work/dir/sub\n755 1000 1000\n755 1000 1000\n755 1000 1000\n"
    );
    let c = env.config("wd");
    assert_eq!(c["config"]["WorkingDir"], "/work/dir/sub");
    // WORKDIR of an existing directory keeps its owner and mode.
    env.dockerfile(&format!("FROM {BASE}\nWORKDIR /bin\nRUN pwd > /tmp-pwd\n"));
    env.build(&["-t", "wd-existing"]);
    assert_eq!(
        env.sh("wd-existing", "cat /tmp-pwd; stat -c '%a %u' /bin"),
        "/bin\n755 0\n"
    );
}

#[test]
fn scratch_stage_gets_working_dir_slash_and_a_default_path() {
    // BuildKit's empty image (dockerfile2llb emptyImage) sets WorkingDir "/" and the default
    // PATH; so does rbuild.
    let env = BuildEnv::new();
    env.dockerfile("FROM scratch\nLABEL a=b\n");
    let built = env.build(&["-t", "empty"]);
    let c = env.config("empty");
    assert_eq!(c["config"]["WorkingDir"], "/");
    assert_eq!(
        c["config"]["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
    assert_eq!(c["rootfs"], json!({"type": "layers", "diff_ids": []}));
    assert_eq!(env.inspect("empty")["manifest"]["layers"], json!([]));
    assert_eq!(built.ran(), Vec::<String>::new());
}

#[test]
fn network_none_leaves_only_loopback() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > /ifaces\nRUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /none\n"
    ));
    // On the host's network (granted explicitly) a step sees the host's interfaces.
    env.build(&[
        "-t",
        "net-default",
        "--network",
        "host",
        "--allow",
        "network.host",
    ]);
    let host_ifaces = std::fs::read_to_string("/proc/net/dev").unwrap();
    let mut expected: Vec<&str> = host_ifaces
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    expected.sort();
    assert_eq!(
        env.sh("net-default", "cat /ifaces; echo --; cat /none"),
        format!("{}\n--\nlo\n", expected.join("\n"))
    );
    env.build(&["-t", "net-none", "--network", "none", "--no-cache"]);
    assert_eq!(env.sh("net-none", "cat /ifaces"), "lo\n");
}

#[test]
fn compression_and_format_flags_choose_media_types() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo z > /z\n"));
    env.build(&["-t", "zst", "--compression", "zstd"]);
    let m = env.inspect("zst")["manifest"].clone();
    assert_eq!(
        m["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(env.sh("zst", "cat /z"), "z\n");
    env.build(&[
        "-t",
        "plain-tar",
        "--compression",
        "uncompressed",
        "--no-cache",
    ]);
    let m = env.inspect("plain-tar")["manifest"].clone();
    assert_eq!(
        m["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(
        m["layers"][1]["digest"],
        env.config("plain-tar")["rootfs"]["diff_ids"][1]
    );
    let out = env.build_fails(&["--format", "docker", "--compression", "zstd"]);
    assert!(out.stderr.contains("--format oci"), "{}", out.stderr);
}

#[test]
fn stdin_dockerfile_stdin_context_and_a_dockerfile_outside_the_context() {
    use std::io::Write as _;
    use std::process::Stdio;
    let env = BuildEnv::new();
    let pipe = |args: &[&str], input: Vec<u8>| {
        let mut cmd = rbuild(&env.root);
        cmd.args(["build", "--progress", "plain"]).args(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rbuild");
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // -f - with a context directory.
    let ctx = env.ctx.to_str().unwrap().to_string();
    let text = format!("FROM {BASE}\nRUN echo from-stdin > /f\n");
    pipe(&["-t", "a", "-f", "-", &ctx], text.into_bytes());
    assert_eq!(env.sh("a", "cat /f"), "from-stdin\n");
    // CONTEXT - with a bare Dockerfile.
    let text = format!("FROM {BASE}\nRUN echo bare > /f\n");
    pipe(&["-t", "b", "-"], text.into_bytes());
    assert_eq!(env.sh("b", "cat /f"), "bare\n");
    // CONTEXT - with a gzip tar holding the Dockerfile.
    let tar_of = |name: &str, body: String| {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_bytes()).unwrap();
        tar.into_inner().unwrap()
    };
    let body = format!("FROM {BASE}\nRUN echo from-tar > /f\n");
    let gz = crate::support::gzip(&tar_of("Dockerfile", body));
    pipe(&["-t", "c", "-"], gz);
    assert_eq!(env.sh("c", "cat /f"), "from-tar\n");
    // A relative -f names a file of the archive.
    let body = format!("FROM {BASE}\nRUN echo in-archive > /f\n");
    pipe(
        &["-t", "e", "-f", "sub/Build.Dockerfile", "-"],
        tar_of("sub/Build.Dockerfile", body),
    );
    assert_eq!(env.sh("e", "cat /f"), "in-archive\n");
    // -f outside the context.
    let outside = Dir::new();
    let file = outside.write(
        "Some.Dockerfile",
        format!("FROM {BASE}\nRUN echo outside > /f\n"),
    );
    env.build(&["-t", "d", "-f", file.to_str().unwrap()]);
    assert_eq!(env.sh("d", "cat /f"), "outside\n");
}

#[test]
fn failures_name_the_dockerfile_line() {
    let env = BuildEnv::new();
    // Syntax errors: file, line and column, before anything runs.
    env.dockerfile(&format!("FROM {BASE}\nRUN echo ok\nFROBNICATE x\n"));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("Dockerfile:3:1"), "{}", out.stderr);
    assert!(out.stderr.contains("FROBNICATE"), "{}", out.stderr);
    assert!(crate::support::ran(&crate::support::steps(&out.stderr)).is_empty());
    env.dockerfile(&format!("FROM {BASE}\nENV\n"));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("Dockerfile:2:"), "{}", out.stderr);
    // An unknown --target.
    env.dockerfile(&format!("FROM {BASE} AS one\nRUN true\n"));
    let out = env.build_fails(&["--target", "nope"]);
    assert!(out.stderr.contains("\"nope\""), "{}", out.stderr);
    // A missing context directory.
    let out = fails(rbuild(&env.root).args(["build", "/nonexistent/rbuild-ctx"]));
    assert!(
        out.stderr.contains("/nonexistent/rbuild-ctx"),
        "{}",
        out.stderr
    );
    // A base image that is neither in the store nor reachable.
    env.dockerfile("FROM 127.0.0.1:1/nothere:latest\nRUN true\n");
    let out = env.build_fails(&[]);
    assert!(
        out.stderr.contains("127.0.0.1:1/nothere:latest"),
        "{}",
        out.stderr
    );
    // A missing Dockerfile.
    std::fs::remove_file(env.ctx.join("Dockerfile")).unwrap();
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("Dockerfile"), "{}", out.stderr);
}

#[test]
fn platform_sets_the_image_platform_and_foreign_runs_are_refused() {
    let env = BuildEnv::new();
    env.dockerfile("FROM scratch\nLABEL x=y\n");
    // Platforms are normalised as buildx does: `arm64/v8` is `arm64`, `armhf` is `arm/v7`.
    env.build(&["-t", "arm", "--platform", "linux/arm64/v8"]);
    let c = env.config("arm");
    assert_eq!(
        (&c["os"], &c["architecture"], c.get("variant")),
        (&json!("linux"), &json!("arm64"), None)
    );
    env.build(&["-t", "armhf", "--platform", "armhf"]);
    let c = env.config("armhf");
    assert_eq!(
        (&c["os"], &c["architecture"], &c["variant"]),
        (&json!("linux"), &json!("arm"), &json!("v7"))
    );
    let out = env.build_fails(&["--platform", "pentium"]);
    assert!(out.stderr.contains("\"pentium\""), "{}", out.stderr);
    // A platform without an emulator (`platforms.rs` checks that none is registered).
    env.dockerfile(&format!("FROM {BASE}\nRUN true\n"));
    let out = env.build_fails(&["--platform", "linux/s390x"]);
    assert!(out.stderr.contains("linux/s390x"), "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
}

#[test]
fn zstd_compressed_context_on_stdin() {
    let env = BuildEnv::new();
    env.write("data.txt", "from zstd context\n");
    env.dockerfile(&format!("FROM {BASE}\nCOPY data.txt /\n"));
    let tar = env.context_tar();
    let zst = crate::support::filter(
        crate::support::tool("zstd", "zstd").args(["-q", "-c"]),
        &tar,
    );
    let mut cmd = rbuild(&env.root);
    cmd.args(["build", "--progress", "quiet", "-t", "z", "-"]);
    let id = crate::support::filter(&mut cmd, &zst);
    assert_eq!(String::from_utf8(id).unwrap().len(), 72);
    assert_eq!(env.sh("z", "cat /data.txt"), "from zstd context\n");
}

#[test]
fn run_layers_record_deletions_replacements_links_and_special_files() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE}
RUN mkdir -p /d/sub && echo 1 > /d/sub/f && echo keep > /d/keep && echo x > /etc/extra
RUN rm /bin/vi && rm -r /d && mkdir -p /d && echo new > /d/only && chmod 600 /etc/passwd && ln /etc/extra /etc/hard && ln -s /etc/extra /etc/soft && mkfifo /fifo && mkdir /empty
RUN (sleep 100 &) ; echo a background process does not hold the step
"#
    ));
    let started = std::time::Instant::now();
    env.build(&["-t", "layers"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let expected = "absent\n/d\n/d/only\n/etc/passwd 600 1 regular file\n/etc/hard 644 2 regular file\n/etc/soft 1 symbolic link\n/fifo 644 1 fifo\n/empty 755 directory\n/etc/extra\n";
    assert_eq!(
        env.sh(
            "layers",
            "[ -e /bin/vi ] && echo present || echo absent; find /d | sort; stat -c '%n %a %h %F' /etc/passwd /etc/hard; stat -c '%n %h %F' /etc/soft; stat -c '%n %a %h %F' /fifo; stat -c '%n %a %F' /empty; readlink /etc/soft"
        ),
        expected
    );
    // umoci applies the same layers (whiteouts, opaque directories) to the same tree.
    let bundle = env.dir.join("bundle");
    ok(crate::support::umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!(
            "{}:docker.io/library/layers:latest",
            env.root.display()
        ))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert!(!rootfs.join("bin/vi").exists());
    assert!(!rootfs.join("d/keep").exists() && !rootfs.join("d/sub").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("d/only")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/soft")).unwrap(),
        std::path::Path::new("/etc/extra")
    );
}

#[test]
fn proxy_build_args_reach_run_but_not_history_or_cache_keys() {
    // As BuildKit: the predefined proxy args are given to RUN without an ARG, and neither
    // recorded in history nor part of the step's key.
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo \"proxy=[$HTTP_PROXY][$no_proxy]\" > /p\n"
    ));
    env.build(&[
        "-t",
        "px",
        "--build-arg",
        "HTTP_PROXY=http://127.0.0.1:9",
        "--build-arg",
        "no_proxy=localhost",
    ]);
    assert_eq!(
        env.sh("px", "cat /p"),
        "proxy=[http://127.0.0.1:9][localhost]\n"
    );
    let config = serde_json::to_string(&env.config("px")).unwrap();
    assert!(!config.contains("127.0.0.1:9"), "{config}");
    let built = env.build(&["--build-arg", "HTTP_PROXY=http://127.0.0.1:10"]);
    assert_eq!(built.ran(), Vec::<String>::new(), "{}", built.stderr);
}
