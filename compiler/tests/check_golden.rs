//! Golden tests of `rbuild check`'s rules: every folder of `testdata/check/` is named after a
//! rule and holds `bad.Dockerfile` (which must trigger the rule), `good.Dockerfile` (which
//! must trigger nothing at all) and `bad.txt`, the expected text output for the bad file.
//! Optional inputs: `config` (check settings in the directive's syntax, plus a line
//! `pin-versions` to turn that on), `bases.json` (base image configs by reference),
//! `dockerignore` (the ignore file), `context.txt` (the context's files, one a line) and
//! `files.json` (files of base images: reference, then path, then text) and `platforms.json`
//! (the platform each base image's config names, by reference).
//! `UPDATE_GOLDEN=1 cargo test -p rbuild-compiler --test check_golden` rewrites `bad.txt`.
//!
//! It also checks the clean corpus in `testdata/check-corpus/`: Dockerfiles in the style of
//! the official images, on which no rule may fire.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_compiler::check::{self, CheckOptions, Checked, Facts, RULES, Report};
use rbuild_compiler::plan::{BaseConfigs, ImageConfig, Platform};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

fn options(case: &Path) -> CheckOptions {
    let mut opts = CheckOptions::default();
    if let Ok(text) = std::fs::read_to_string(case.join("config")) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == "pin-versions" {
                opts.config.pin_versions = true;
            } else if let Some(arg) = line.strip_prefix("build-arg ") {
                let (k, v) = arg.split_once('=').expect("build-arg K=V");
                opts.plan.build_args.insert(k.into(), v.into());
            } else if let Some(t) = line.strip_prefix("target ") {
                opts.plan.target = Some(t.into());
            } else {
                let c = check::parse_check_options(line).expect("valid check options");
                opts.config.merge(&c);
            }
        }
    }
    let mut facts = Facts::default();
    if let Ok(text) = std::fs::read_to_string(case.join("dockerignore")) {
        facts.ignore = Some((".dockerignore".into(), text));
    }
    if let Ok(text) = std::fs::read_to_string(case.join("context.txt")) {
        facts.context_files = Some(text.lines().map(str::to_string).collect());
    }
    opts.facts = facts;
    opts
}

/// Base image configs (`bases.json`) and files (`files.json`: reference to path to text).
struct Bases {
    configs: BTreeMap<String, ImageConfig>,
    files: BTreeMap<String, BTreeMap<String, String>>,
    platforms: BTreeMap<String, String>,
}

impl BaseConfigs for Bases {
    fn base_config(&self, reference: &str, _: &Platform) -> Option<ImageConfig> {
        self.configs.get(reference).cloned()
    }

    fn base_file(&self, reference: &str, path: &str) -> Option<String> {
        self.files.get(reference)?.get(path).cloned()
    }

    fn base_platform(&self, reference: &str) -> Option<Platform> {
        let text = self.platforms.get(reference)?;
        Some(Platform::parse(text).expect("platforms.json names valid platforms"))
    }
}

fn bases(case: &Path) -> Bases {
    let read = |name: &str| std::fs::read_to_string(case.join(name)).ok();
    Bases {
        configs: read("bases.json")
            .map(|t| serde_json::from_str(&t).expect("bases.json is a map of configs"))
            .unwrap_or_default(),
        files: read("files.json")
            .map(|t| serde_json::from_str(&t).expect("files.json is a map of maps"))
            .unwrap_or_default(),
        platforms: read("platforms.json")
            .map(|t| serde_json::from_str(&t).expect("platforms.json is a map of platforms"))
            .unwrap_or_default(),
    }
}

fn run(case: &Path, file: &str) -> (String, Checked) {
    let text = std::fs::read_to_string(case.join(file)).expect("Dockerfile readable");
    let checked = check::check(&text, &options(case), &bases(case))
        .unwrap_or_else(|e| panic!("{}: {}", case.join(file).display(), e.render(file, &text)));
    (text, checked)
}

#[test]
fn every_rule_has_a_golden_case_and_a_page() {
    let mut missing = Vec::new();
    for rule in RULES {
        let dir = root().join("check").join(rule.name);
        if !dir.join("bad.Dockerfile").is_file() || !dir.join("good.Dockerfile").is_file() {
            missing.push(format!("golden case {}", dir.display()));
        }
        let page = root().join("..").join(rule.doc_path());
        match std::fs::read_to_string(&page) {
            Ok(text) => {
                for part in ["## Why", "## Bad", "## Good"] {
                    if !text.contains(part) {
                        missing.push(format!("{part} in {}", page.display()));
                    }
                }
            }
            Err(_) => missing.push(format!("page {}", page.display())),
        }
    }
    assert!(missing.is_empty(), "missing: {}", missing.join(", "));
}

#[test]
fn golden_checks() {
    let mut failures = Vec::new();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("check"))
        .expect("testdata/check exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "golden cases missing");
    for case in cases {
        let rule = case.file_name().unwrap().to_string_lossy().into_owned();
        let (text, bad) = run(&case, "bad.Dockerfile");
        if !bad.findings.iter().any(|f| f.rule == rule) {
            failures.push(format!(
                "{}: bad.Dockerfile does not trigger {rule}",
                case.display()
            ));
        }
        let (_, good) = run(&case, "good.Dockerfile");
        if !good.findings.is_empty() {
            let found: Vec<String> = good
                .findings
                .iter()
                .map(|f| format!("{} at line {}", f.rule, f.span.start.line))
                .collect();
            failures.push(format!(
                "{}: good.Dockerfile triggers {}",
                case.display(),
                found.join(", ")
            ));
        }
        let actual = check::render_text(&[Report {
            file: "bad.Dockerfile",
            source: &text,
            checked: &bad,
        }]);
        let path = case.join("bad.txt");
        rbuild_test_support::compare_golden(&path, &actual, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn clean_corpus_has_no_findings() {
    let dir = root().join("check-corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/check-corpus exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "corpus too small in {}", dir.display());
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let mut opts = CheckOptions::default();
        opts.plan.build_args.insert("VERSION".into(), "1.0".into());
        let checked = check::check(&text, &opts, &BTreeMap::<String, ImageConfig>::new())
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.render("Dockerfile", &text)));
        for f in &checked.findings {
            failures.push(format!(
                "{}:{}: {}: {}",
                file.display(),
                f.span.start.line,
                f.rule,
                f.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "false positives:\n{}",
        failures.join("\n")
    );
}

#[test]
fn directive_skips_rules_and_makes_findings_errors() {
    let text =
        "# check=skip=JSONArgsRecommended;error=true\nFROM alpine:3.19 AS Build\nCMD echo hi\n";
    let checked = check::check(
        text,
        &CheckOptions::default(),
        &BTreeMap::<String, ImageConfig>::new(),
    )
    .unwrap();
    let rules: Vec<&str> = checked.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, ["StageNameCasing"]);
    assert!(
        checked
            .findings
            .iter()
            .all(|f| f.severity == check::Severity::Error)
    );
    assert_eq!(checked.violated_rules(), ["StageNameCasing"]);
    // A comment above one instruction skips the rule there only.
    let text =
        "FROM alpine:3.19\n# check=skip=JSONArgsRecommended\nCMD echo a\nENTRYPOINT echo b\n";
    let checked = check::check(
        text,
        &CheckOptions::default(),
        &BTreeMap::<String, ImageConfig>::new(),
    )
    .unwrap();
    let lines: Vec<usize> = checked.findings.iter().map(|f| f.span.start.line).collect();
    assert_eq!(lines, [4]);
}
