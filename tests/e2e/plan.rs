//! `rbuild plan`: the parse tree in BuildKit's dump format, and the plan as text, JSON and
//! Graphviz, with located errors.
use crate::support::{Dir, fails, ok, rbuild, tool};

#[test]
fn ast_dump_matches_buildkit_for_every_golden_case() {
    let Some(dir) =
        rbuild_test_support::conformance_dir("ast_dump_matches_buildkit_for_every_golden_case")
    else {
        return;
    };
    let cases = dir.join("dockerfile-parser");
    let root = Dir::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&cases).expect("conformance data (RBUILD_CONFORMANCE_DIR)") {
        let case = entry.unwrap().path();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        let run = ok(rbuild(root.path())
            .args(["plan", "--format", "ast", "-f"])
            .arg(case.join("Dockerfile"))
            .arg(&case));
        assert_eq!(run.stdout, expected, "{}", case.display());
        checked += 1;
    }
    assert_eq!(checked, 33);
}

#[test]
fn text_plan_prunes_to_the_target_and_warns_about_unused_args() {
    let dir = Dir::new();
    dir.write(
        "Dockerfile",
        "FROM scratch AS a\nCOPY a /a\n\nFROM scratch AS b\nARG USED\nCOPY --from=a /a /b\n\nFROM scratch AS c\nCOPY c /c\n",
    );
    let run = ok(rbuild(dir.path())
        .args([
            "plan",
            "--target",
            "b",
            "--build-arg",
            "USED=1",
            "--build-arg",
            "NOPE=2",
        ])
        .arg(dir.path()));
    assert!(run.stdout.contains("COPY --from=a /a /b"), "{}", run.stdout);
    assert!(!run.stdout.contains("COPY c /c"), "{}", run.stdout);
    assert!(
        run.stderr.contains("NOPE"),
        "unused build arg warning: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("USED"), "{}", run.stderr);
}

#[test]
fn json_and_dot_formats_are_machine_readable() {
    let dir = Dir::new();
    dir.write(
        "Dockerfile",
        "FROM scratch AS one\nCOPY x /x\nFROM scratch\nCOPY --from=one /x /y\nEXPOSE 7000-7002\n",
    );
    let run = ok(rbuild(dir.path())
        .args(["plan", "--format", "json"])
        .arg(dir.path()));
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan JSON");
    let ops = plan["ops"].as_array().expect("ops");
    assert!(ops.len() >= 4, "{plan:#}");
    assert_eq!(plan["stages"].as_array().map(Vec::len), Some(2));

    let run = ok(rbuild(dir.path())
        .args(["plan", "--format", "dot"])
        .arg(dir.path()));
    let svg = dir.write("plan.dot", &run.stdout);
    let out = ok(tool("dot", "graphviz").arg("-Tsvg").arg(svg));
    assert!(out.stdout.contains("<svg"), "{}", out.stdout);
}

#[test]
fn errors_name_the_line_and_suggest_the_instruction() {
    let dir = Dir::new();
    dir.write("Dockerfile", "FROM scratch\nCOPPY a b\n");
    let run = fails(rbuild(dir.path()).arg("plan").arg(dir.path()));
    let dockerfile = dir.join("Dockerfile").display().to_string();
    assert!(
        run.stderr
            .contains(&format!("{dockerfile}:2:1: unknown instruction")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("2 | COPPY a b"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: did you mean COPY?"),
        "{}",
        run.stderr
    );

    dir.write("Dockerfile", "FROM scratch\nRUN <<EOF\necho never ends\n");
    let run = fails(rbuild(dir.path()).arg("plan").arg(dir.path()));
    assert!(run.stderr.contains(":2:"), "{}", run.stderr);

    let run = fails(
        rbuild(dir.path())
            .args(["plan", "-f"])
            .arg(dir.join("missing"))
            .arg(dir.path()),
    );
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
}

#[test]
fn plan_reads_base_configs_from_the_store_and_never_pulls() {
    let env = crate::support::BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {}\nENV FROM_BASE=yes\nONBUILD RUN echo triggered\n",
        crate::support::BASE
    ));
    env.build(&["-t", "onbuild-base"]);
    let ctx = env.dir.mkdir("ctx2");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM onbuild-base\nRUN echo \"$FROM_BASE\"\n",
    )
    .unwrap();
    let out = ok(rbuild(&env.root).arg("plan").arg(&ctx));
    assert!(!out.stdout.contains("unresolved"), "{}", out.stdout);
    assert!(
        out.stdout.contains("exec    RUN /bin/sh -c echo triggered"),
        "the base's ONBUILD trigger is planned: {}",
        out.stdout
    );
    let json: serde_json::Value = serde_json::from_str(
        &ok(rbuild(&env.root)
            .args(["plan", "--format", "json"])
            .arg(&ctx))
        .stdout,
    )
    .unwrap();
    assert_eq!(json["stages"][0]["base_config"], "resolved");
    let run = json["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["argv"][2] == "echo \"$FROM_BASE\"")
        .expect("the RUN op");
    assert!(
        run["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "FROM_BASE=yes"),
        "{run}"
    );

    // A store without the image (or no store at all): unresolved, as before, and nothing is
    // pulled or written.
    let other = Dir::new();
    let root = other.join("store");
    let out = ok(rbuild(&root)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .arg("plan")
        .arg(&ctx));
    assert!(
        out.stdout
            .contains("(base config unresolved: ONBUILD triggers unknown"),
        "{}",
        out.stdout
    );
    assert!(!root.exists(), "plan made a store");
}

/// `rbuild plan` without the base image's config (it does no pulls) plans USER and WORKDIR
/// that reference variables only the base image defines, and RUN mounts without a target,
/// and says which variables the base's ENV may define.
#[test]
fn plan_without_the_base_config_marks_its_variables_unresolved() {
    let dir = Dir::new();
    dir.write(
        "Dockerfile",
        "FROM example.com/app-base:1\n\
         USER $APP_USER\n\
         WORKDIR $APP_HOME/src\n\
         RUN --mount=type=cache make\n",
    );
    let run = ok(rbuild(dir.path())
        .args(["plan", "--format", "json"])
        .arg(dir.path()));
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan JSON");
    let stage = &plan["stages"][0];
    assert_eq!(stage["base_config"], "unresolved");
    assert_eq!(
        stage["unresolved_variables"],
        serde_json::json!(["APP_HOME", "APP_USER"])
    );
    let exec = plan["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "exec")
        .expect("the RUN");
    assert_eq!(exec["cwd"], "/src");
    assert_eq!(exec["mounts"][0]["target"], "/src");
    let run = ok(rbuild(dir.path()).arg("plan").arg(dir.path()));
    assert!(
        run.stdout
            .contains("$APP_HOME, $APP_USER may come from its ENV"),
        "{}",
        run.stdout
    );
}

/// A stage for Windows plans with Windows defaults (`cmd /S /C`, backslash paths, the
/// Windows PATH); building it is refused at its FROM line, before anything is pulled.
#[test]
fn windows_stages_plan_but_are_not_built() {
    let dir = Dir::new();
    dir.write(
        "Dockerfile",
        "FROM --platform=windows/amd64 mcr.microsoft.com/windows/nanoserver:ltsc2022\n\
         WORKDIR C:\\app\n\
         RUN dir\n",
    );
    let run = ok(rbuild(dir.path())
        .args(["plan", "--format", "json"])
        .arg(dir.path()));
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan JSON");
    let exec = plan["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "exec")
        .expect("the RUN");
    assert_eq!(exec["argv"], serde_json::json!(["cmd", "/S", "/C", "dir"]));
    assert_eq!(exec["cwd"], "\\app");
    let run = fails(
        rbuild(&dir.join("store"))
            .args(["build", "--progress", "plain"])
            .arg(dir.path()),
    );
    assert!(
        run.stderr
            .contains("stage stage-0 is for windows/amd64: rbuild builds Linux images only"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Dockerfile:1:1"), "{}", run.stderr);
}
