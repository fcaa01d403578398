//! `RUN --mount=type=cache|bind|tmpfs|ssh`: what the step sees, what persists, what the
//! image keeps (no mount points), and how bind-mounted context files key the step.

use std::os::unix::net::UnixListener;

use crate::support::{BASE, BuildEnv, ok};

#[test]
fn cache_bind_and_tmpfs_mounts() {
    let env = BuildEnv::new();
    env.write("in.txt", "hello\n");
    env.write("unrelated.txt", "u\n");
    env.dockerfile(&format!(
        r#"FROM {BASE} AS other
RUN mkdir /o && echo from-other > /o/f
FROM {BASE}
RUN --mount=type=cache,target=/cache,id=c1 echo x >> /cache/log; wc -l < /cache/log > /count
RUN --mount=type=bind,source=in.txt,target=/ctx/in.txt cat /ctx/in.txt > /bound
RUN --mount=type=bind,from=other,source=/o,target=/mnt cat /mnt/f > /fromother
RUN --mount=type=bind,target=/ctx,rw echo scribble > /ctx/in.txt; cat /ctx/in.txt > /rw
RUN --mount=type=bind,target=/ro (echo no > /ro/in.txt) 2>/dev/null && echo writable > /ro-result || echo read-only > /ro-result
RUN --mount=type=tmpfs,target=/t echo t > /t/x; cat /t/x > /tmpfs
RUN --mount=type=cache,target=/cache,id=c1 ls /cache > /cachelist
"#
    ));
    let built = env.build(&["-t", "m"]);
    assert_eq!(built.ran().len(), 8, "{}", built.stderr);
    assert_eq!(
        env.sh(
            "m",
            "cat /count /bound /fromother /rw /ro-result /tmpfs /cachelist; for p in /cache /ctx /mnt /ro /t; do [ -e $p ] && echo $p left; done; true"
        ),
        "1\nhello\nfrom-other\nscribble\nread-only\nt\nlog\n"
    );
    // Writes to an rw bind mount never reach the context.
    assert_eq!(
        std::fs::read_to_string(env.ctx.join("in.txt")).unwrap(),
        "hello\n"
    );
    // The cache mount keeps its content across builds.
    env.build(&["-t", "m2", "--no-cache-filter", "stage-1"]);
    assert_eq!(env.sh("m2", "cat /count"), "2\n");
    // A file no mount reads changes: nothing runs again.
    env.write("unrelated.txt", "changed\n");
    let built = env.build(&["-t", "m3"]);
    // Only the steps that bind the whole context run again.
    assert_eq!(
        built.ran(),
        [
            "RUN /bin/sh -c echo scribble > /ctx/in.txt; cat /ctx/in.txt > /rw",
            "RUN /bin/sh -c (echo no > /ro/in.txt) 2>/dev/null && echo writable > /ro-result || echo read-only > /ro-result",
            "RUN /bin/sh -c echo t > /t/x; cat /t/x > /tmpfs",
            "RUN /bin/sh -c ls /cache > /cachelist"
        ],
        "{}",
        built.stderr
    );
    // The bound file changes: its step runs again and says why.
    env.write("in.txt", "changed\n");
    let built = env.build(&["-t", "m4"]);
    let step = built.step("RUN /bin/sh -c cat /ctx/in.txt > /bound");
    assert!(!step.cached, "{}", built.stderr);
    assert_eq!(
        step.miss.as_deref(),
        Some("file in.txt changed"),
        "{}",
        built.stderr
    );
    assert_eq!(env.sh("m4", "cat /bound"), "changed\n");
}

#[test]
fn ssh_mounts_forward_the_agent_socket() {
    let env = BuildEnv::new();
    let sock = env.dir.join("agent.sock");
    let _listener = UnixListener::bind(&sock).expect("bind a unix socket");
    env.dockerfile(&format!(
        r#"FROM {BASE}
RUN --mount=type=ssh echo "$SSH_AUTH_SOCK" > /sock; test -S "$SSH_AUTH_SOCK" && echo socket >> /sock
RUN --mount=type=ssh,id=deploy,target=/agent,required=true test -S /agent && echo deploy-socket >> /sock
RUN --mount=type=ssh,id=optional,target=/opt-agent test -S /opt-agent && echo present >> /sock || echo optional-absent >> /sock
"#
    ));
    let default = format!("default={}", sock.display());
    let out = env.build_fails(&["--ssh", &default]);
    assert!(out.stderr.contains("deploy"), "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile:3"), "{}", out.stderr);
    let deploy = format!("deploy={}", sock.display());
    env.build(&["-t", "s", "--ssh", &default, "--ssh", &deploy]);
    assert_eq!(
        env.sh(
            "s",
            "cat /sock; for p in /run/buildkit /agent /opt-agent; do [ -e $p ] && echo $p left; done; true"
        ),
        "/run/buildkit/ssh_agent.0\nsocket\ndeploy-socket\noptional-absent\n"
    );
}

#[test]
fn bind_mounts_never_reach_outside_the_context() {
    let env = BuildEnv::new();
    let outside = env.dir.mkdir("outside");
    std::fs::write(outside.join("f"), "LEAKED\n").unwrap();
    std::os::unix::fs::symlink("../outside", env.ctx.join("esc")).unwrap();
    for source in ["../outside", "esc", "esc/", "/../outside"] {
        env.dockerfile(&format!(
            "FROM {BASE}\nRUN --mount=type=bind,source={source},target=/x cat /x/f > /r 2>&1 || echo refused > /r\n"
        ));
        let run = crate::support::finish_cmd(&mut env.build_cmd(&["-t", "esc"]));
        assert!(!run.stderr.contains("LEAKED"), "{source}: {}", run.stderr);
        if run.code == 0 {
            let seen = env.sh("esc", "cat /r");
            assert!(!seen.contains("LEAKED"), "{source}: the step read {seen:?}");
        } else {
            assert_eq!(run.code, 1, "{source}: {}", run.stderr);
        }
    }
    // COPY keeps a symlink that points out as a symlink and never follows it out.
    for (copy, ok) in [
        ("COPY . /all/", true),
        ("COPY esc/f /f", false),
        ("COPY esc/ /e/", false),
    ] {
        env.dockerfile(&format!("FROM {BASE}\n{copy}\n"));
        let run = crate::support::finish_cmd(&mut env.build_cmd(&["-t", "esc-copy"]));
        assert!(!run.stderr.contains("LEAKED"), "{copy}: {}", run.stderr);
        if ok {
            assert_eq!(run.code, 0, "{copy}: {}", run.stderr);
            assert_eq!(
                env.sh(
                    "esc-copy",
                    "readlink /all/esc; cat /all/esc/f 2>/dev/null; true"
                ),
                "../outside\n"
            );
        } else if run.code == 0 {
            let found = env.sh("esc-copy", "cat /f /e/f 2>/dev/null; true");
            assert!(!found.contains("LEAKED"), "{copy}: {found:?}");
        }
    }
}

/// A bind, tmpfs or cache mount without a target is mounted on the working directory, and a
/// relative target below it, as BuildKit does; only `/` itself is refused. `rbuild plan`
/// shows the resolved targets.
#[test]
fn mounts_without_a_target_use_the_working_directory() {
    let env = BuildEnv::new();
    env.write("data.txt", "from the context\n");
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         WORKDIR /app\n\
         RUN --mount=type=bind,source=data.txt,target=rel/data cat /app/rel/data > /seen-bind\n\
         RUN --mount=type=tmpfs touch scratch && mount | grep -c ' /app ' > /seen-tmpfs\n\
         RUN --mount=type=cache echo kept > cached\n\
         RUN --mount=type=cache cat cached > /seen-cache\n"
    ));
    let plan = ok(env
        .rbuild()
        .args(["plan", "--format", "json"])
        .arg(&env.ctx));
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let targets: Vec<String> = v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|op| op["mounts"].as_array())
        .flatten()
        .map(|m| m["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        targets,
        ["/app/rel/data", "/app", "/app", "/app"],
        "{}",
        plan.stdout
    );
    env.build(&["-t", "mounted"]);
    assert_eq!(
        env.sh(
            "mounted",
            "cat /seen-bind /seen-tmpfs /seen-cache; echo \"[$(ls -A /app)]\""
        ),
        // Nothing the mounts wrote, and no mount point, is left in the image.
        "from the context\n1\nkept\n[]\n"
    );
    env.dockerfile(&format!("FROM {BASE}\nRUN --mount=type=tmpfs true\n"));
    let out = env.build_fails(&[]);
    assert!(
        out.stderr.contains("invalid mount target \"/\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
}
