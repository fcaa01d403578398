//! Golden tests: every folder of `testdata/plan/` holds a `Dockerfile`, optionally `args`
//! (lines `build-arg K=V`, `target NAME`, `platform P`) and `bases.json` (base image
//! configs by reference), and the expected `plan.txt` + `plan.json`, or `error.txt` for
//! Dockerfiles that must fail. `UPDATE_GOLDEN=1 cargo test -p rbuild-compiler golden`
//! rewrites the expected files.
//!
//! It also plans every Dockerfile of the conformance parser vectors: each must plan or
//! fail with a located error, never panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_compiler::instructions::from_ast::{SourceError, plan_source};
use rbuild_compiler::plan::{
    ImageConfig, NoBaseConfigs, Plan, PlanOptions, Platform, render_dot, render_json, render_text,
};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/plan")
}

fn options(case: &Path) -> PlanOptions {
    let mut opts = PlanOptions::default();
    let Ok(text) = std::fs::read_to_string(case.join("args")) else {
        return opts;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(' ').expect("args lines are `key value`");
        match key {
            "build-arg" => {
                let (k, v) = value.split_once('=').expect("build-arg K=V");
                opts.build_args.insert(k.to_string(), v.to_string());
            }
            "target" => opts.target = Some(value.to_string()),
            "platform" => opts.target_platform = Platform::parse(value).expect("valid platform"),
            other => panic!("{}: unknown args key {other}", case.display()),
        }
    }
    opts
}

fn bases(case: &Path) -> BTreeMap<String, ImageConfig> {
    match std::fs::read_to_string(case.join("bases.json")) {
        Ok(text) => serde_json::from_str(&text).expect("bases.json is a map of configs"),
        Err(_) => BTreeMap::new(),
    }
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("testdata/plan exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "golden cases missing in {}",
        golden_dir().display()
    );
    cases
}

fn run_case(case: &Path) -> (Vec<(&'static str, String)>, Option<Plan>) {
    let text = std::fs::read_to_string(case.join("Dockerfile")).expect("Dockerfile readable");
    let bases = bases(case);
    let result = plan_source(&text, &options(case), &bases);
    match result {
        Ok(plan) => (
            vec![
                ("plan.txt", render_text(&plan)),
                ("plan.json", render_json(&plan)),
            ],
            Some(plan),
        ),
        Err(e) => (vec![("error.txt", e.render("Dockerfile", &text))], None),
    }
}

#[test]
fn golden_plans() {
    let mut failures = Vec::new();
    for case in cases() {
        let (outputs, _) = run_case(&case);
        for (file, actual) in outputs {
            let path = case.join(file);
            rbuild_test_support::compare_golden(&path, &actual, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dot_output_renders_with_graphviz() {
    let mut rendered = 0;
    for case in cases() {
        let (_, Some(plan)) = run_case(&case) else {
            continue;
        };
        let dot = render_dot(&plan);
        let mut child = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("`dot` not found: install the Debian package graphviz");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(dot.as_bytes())
            .expect("dot reads its input");
        let out = child.wait_with_output().expect("dot runs");
        assert!(
            out.status.success() && out.stdout.starts_with(b"<?xml"),
            "{}: dot rejected the graph: {}\n{dot}",
            case.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        rendered += 1;
    }
    assert!(rendered >= 8, "only {rendered} plans rendered");
}

#[test]
fn conformance_dockerfiles_plan_or_fail_with_a_location() {
    let Some(dir) = rbuild_test_support::conformance_dir(
        "conformance_dockerfiles_plan_or_fail_with_a_location",
    ) else {
        return;
    };
    let mut planned = 0;
    let mut failed = Vec::new();
    for folder in ["dockerfile-parser", "dockerfile-parser-negative"] {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join(folder))
            .expect("conformance folder readable")
            .map(|e| e.expect("entry").path().join("Dockerfile"))
            .filter(|p| p.is_file())
            .collect();
        cases.sort();
        for path in cases {
            let bytes = std::fs::read(&path).expect("Dockerfile readable");
            let text = String::from_utf8_lossy(&bytes);
            match plan_source(&text, &PlanOptions::default(), &NoBaseConfigs) {
                Ok(plan) => {
                    assert!(!plan.ops.is_empty(), "{}: empty plan", path.display());
                    planned += 1;
                }
                Err(e) => {
                    let rendered = e.render("Dockerfile", &text);
                    let located = match &e {
                        SourceError::Parse(_) => rendered.starts_with("Dockerfile:"),
                        SourceError::Plan(p) => {
                            p.span.is_some() && rendered.starts_with("Dockerfile:")
                        }
                    };
                    assert!(
                        located,
                        "{}: error without a location:\n{rendered}",
                        path.display()
                    );
                    failed.push(format!(
                        "{}: {}",
                        path.display(),
                        rendered.lines().next().unwrap_or("")
                    ));
                }
            }
        }
    }
    eprintln!(
        "conformance Dockerfiles: {planned} planned, {} failed with a located error",
        failed.len()
    );
    for f in &failed {
        eprintln!("  {f}");
    }
    assert!(
        planned >= 20,
        "only {planned} conformance Dockerfiles planned"
    );
}

mod random {
    //! Random Dockerfiles from a small grammar, through the real parser and lexer: parse +
    //! plan never panics, is deterministic, and every error is located.
    use super::*;
    use proptest::prelude::*;

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("$A".to_string()),
            Just("${B:-x}".to_string()),
            Just("${C:?required}".to_string()),
            Just("\"q w\"".to_string()),
            Just("'s'".to_string()),
            Just("/p/q".to_string()),
            Just("0".to_string()),
            Just("7".to_string()),
            Just("s1".to_string()),
            Just("S0".to_string()),
            Just("https://h/f.tar".to_string()),
            Just("git@h:r.git".to_string()),
            Just("<<EOF".to_string()),
            "[a-z0-9./$={}-]{0,6}",
        ]
    }

    fn line() -> impl Strategy<Value = String> {
        let w = word;
        prop_oneof![
            (w(), prop::option::of("s[0-3]")).prop_map(|(i, n)| match n {
                Some(n) => format!("FROM {i} AS {n}"),
                None => format!("FROM {i}"),
            }),
            w().prop_map(|p| format!("FROM --platform={p} scratch")),
            (w(), w()).prop_map(|(a, b)| format!("ARG {a}={b}")),
            (w(), w()).prop_map(|(a, b)| format!("ENV {a}={b}")),
            (w(), w()).prop_map(|(a, b)| format!("LABEL {a}={b}")),
            w().prop_map(|a| format!("RUN echo {a} \\\n  && true")),
            Just("RUN <<EOF\necho heredoc $A\nEOF".to_string()),
            Just("COPY <<EOF /f\nbody $A\nEOF".to_string()),
            (w(), w())
                .prop_map(|(a, b)| format!("RUN --mount=type=cache,from={a},target={b} true")),
            (w(), w()).prop_map(|(a, b)| format!("RUN --network={a} --security={b} true")),
            (w(), w(), w()).prop_map(|(f, s, d)| format!("COPY --from={f} --chown={s} {s} {d}")),
            (w(), w()).prop_map(|(s, d)| format!("ADD --checksum={d} {s} {d}")),
            (w(), w()).prop_map(|(c, s)| format!("COPY --chmod={c} {s} /d")),
            w().prop_map(|a| format!("WORKDIR {a}")),
            w().prop_map(|a| format!("USER {a}")),
            w().prop_map(|a| format!("EXPOSE {a}")),
            w().prop_map(|a| format!("VOLUME [\"{a}\"]")),
            w().prop_map(|a| format!("CMD {a}")),
            w().prop_map(|a| format!("ENTRYPOINT [\"{a}\"]")),
            w().prop_map(|a| format!("ONBUILD RUN {a}")),
            w().prop_map(|a| format!("HEALTHCHECK --interval={a} CMD true")),
            w().prop_map(|a| format!("STOPSIGNAL {a}")),
            Just("SHELL [\"/bin/bash\", \"-c\"]".to_string()),
            Just("MAINTAINER someone".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parse_and_plan_never_panic(
            lines in prop::collection::vec(line(), 1..20),
            target in prop::option::of("s[0-3]"),
        ) {
            let text = lines.join("\n") + "\n";
            let mut opts = PlanOptions { target, ..PlanOptions::default() };
            opts.build_args.insert("A".into(), "v".into());
            let first = plan_source(&text, &opts, &NoBaseConfigs);
            let second = plan_source(&text, &opts, &NoBaseConfigs);
            prop_assert_eq!(&first, &second);
            match first {
                Ok(p) => {
                    for op in &p.ops {
                        prop_assert!(op.inputs.iter().all(|i| i.op < op.id));
                    }
                    let _ = (render_text(&p), render_json(&p), render_dot(&p));
                }
                Err(e) => {
                    let r = e.render("Dockerfile", &text);
                    prop_assert!(r.starts_with("Dockerfile"), "{}", r);
                }
            }
        }
    }
}
