//! patternmatcher's `.dockerignore` vectors (`dockerignore/cases.json`, one case per object)
//! and BuildKit's end-to-end `.dockerignore` scenarios (`dockerignore/context-cases.json`,
//! one case per scenario, each case checking every expectation of its builds at the level
//! this crate works: which ignore file applies, whether it is valid, and exactly which
//! context files a `COPY . .` would see).
//!
//! `dockerignore/compile-cases.json` adds one case per pattern: rbuild classifies patterns
//! as Docker does (exact, prefix, suffix, or a wildcard program; the generated Go regexp text
//! itself is not compared, as rbuild does not generate one).
//!
//! `matcher` rows are checked with every variant rbuild has: whole-path evaluation, the walk
//! that hands each directory's record to its entries, and the walk call with no parent
//! record. Upstream's older single-boolean walk variant has no counterpart here.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rbuild_pathmatch::ignore::{
    MatchKind, Matcher, ParentMatches, clean_path, read_ignore_file, select_ignore_file,
};
use serde_json::Value;

use rbuild_test_support::Suite;

pub fn suites(dir: &Path) -> Vec<Suite> {
    let dir = dir.join("dockerignore");
    let read = |name: &str| -> Value {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let mut suite = Suite::new("dockerignore");
    for (i, case) in read("cases.json")
        .as_array()
        .expect("cases.json array")
        .iter()
        .enumerate()
    {
        let label = format!("cases.json #{i} {}", case["source"].as_str().unwrap_or(""));
        suite.check(label, pattern_case(case));
    }
    for case in read("compile-cases.json")
        .as_array()
        .expect("compile-cases.json array")
    {
        let pattern = case["pattern"].as_str().expect("pattern");
        suite.check(
            format_args!("compile-cases.json {pattern:?}"),
            classification(case),
        );
    }
    for case in read("context-cases.json")
        .as_array()
        .expect("context-cases.json array")
    {
        let label = format!("context {}", case["name"].as_str().unwrap_or(""));
        suite.check(label, context_case(case));
    }
    vec![suite]
}

fn classification(case: &Value) -> Result<(), String> {
    let pattern = case["pattern"].as_str().expect("pattern");
    let want = match case["match_type"].as_str().expect("match_type") {
        "exact" => MatchKind::Exact,
        "prefix" => MatchKind::Prefix,
        "suffix" => MatchKind::Suffix,
        "regexp" => MatchKind::Wildcard,
        other => panic!("unknown match_type {other}"),
    };
    let m = Matcher::new([pattern]).map_err(|e| e.to_string())?;
    let got = m.patterns()[0].match_kind();
    if got == want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {got:?}"))
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("string list")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn patterns_of(case: &Value) -> Vec<String> {
    match (case.get("patterns"), case.get("pattern")) {
        (Some(p), _) => strings(p),
        (None, Some(p)) => vec![p.as_str().expect("pattern").to_owned()],
        (None, None) => Vec::new(),
    }
}

fn pattern_case(case: &Value) -> Result<(), String> {
    let kind = case["kind"].as_str().expect("kind");
    let api = case["api"].as_str().expect("api");
    let patterns = patterns_of(case);
    match kind {
        "match" | "multi" => {
            let path = case["path"].as_str().expect("path");
            let want = case
                .get("match")
                .or_else(|| case.get("excluded"))
                .and_then(Value::as_bool)
                .expect("match/excluded");
            let m = Matcher::new(&patterns).map_err(|e| format!("building failed: {e}"))?;
            let results = match api {
                // The package-level helper: the path is cleaned, and `.` is never matched.
                "Matches" => vec![("is_excluded", m.is_excluded(path))],
                "matcher" => vec![
                    ("matches", m.matches(path)),
                    ("walk", walk(&m, path)),
                    (
                        "walk without context",
                        m.matches_with_parent(path, &ParentMatches::default())
                            .map(|r| r.0),
                    ),
                ],
                other => panic!("unknown api {other}"),
            };
            for (variant, got) in results {
                match got {
                    Ok(got) if got == want => {}
                    Ok(got) => {
                        return Err(format!(
                            "{patterns:?} vs {path:?} via {variant}: expected {want}, got {got}"
                        ));
                    }
                    Err(e) => {
                        return Err(format!("{patterns:?} vs {path:?} via {variant}: error {e}"));
                    }
                }
            }
            Ok(())
        }
        "error" => {
            let built = Matcher::new(&patterns);
            if case["new_ok"].as_bool() == Some(true) {
                let m = built.map_err(|e| format!("building must succeed, got {e}"))?;
                let path = case["path"].as_str().expect("path");
                let repeat = case["repeat"].as_u64().unwrap_or(1);
                for n in 0..repeat {
                    match m.matches(path) {
                        Err(e) if e.to_string().contains(&format!("{:?}", patterns[0])) => {}
                        Err(e) => {
                            return Err(format!(
                                "evaluation {n}: error does not name the pattern: {e}"
                            ));
                        }
                        Ok(v) => return Err(format!("evaluation {n}: expected an error, got {v}")),
                    }
                }
                return Ok(());
            }
            match (api, built) {
                (_, Err(e)) if e.to_string().contains(&format!("{:?}", patterns[0].trim())) => {
                    Ok(())
                }
                (_, Err(e)) => Err(format!("error does not name the pattern: {e}")),
                ("Matches", Ok(m)) => match m.is_excluded(case["path"].as_str().expect("path")) {
                    Err(_) => Ok(()),
                    Ok(v) => Err(format!("expected an error, got {v}")),
                },
                (_, Ok(_)) => Err(format!("expected {patterns:?} to be rejected")),
            }
        }
        "clean" => {
            let m = Matcher::new(&patterns).map_err(|e| format!("building failed: {e}"))?;
            if let Some(n) = case["expect_pattern_count"].as_u64() {
                if m.patterns().len() as u64 != n {
                    return Err(format!("expected {n} patterns, got {}", m.patterns().len()));
                }
            }
            if let Some(x) = case["expect_exclusions"].as_bool() {
                if m.has_exclusions() != x {
                    return Err(format!(
                        "expected has_exclusions {x}, got {}",
                        m.has_exclusions()
                    ));
                }
            }
            Ok(())
        }
        "readall" => {
            let got = case["content"]
                .as_str()
                .map(read_ignore_file)
                .unwrap_or_default();
            let want = strings(&case["expected"]);
            if got == want {
                Ok(())
            } else {
                Err(format!("expected {want:?}, got {got:?}"))
            }
        }
        other => panic!("unknown kind {other}"),
    }
}

/// Evaluates `path` the way a context walk does: each ancestor directory in turn (as Go's
/// `filepath.Dir` gives them), handing each one's record to the next.
fn walk(m: &Matcher, path: &str) -> Result<bool, rbuild_pathmatch::ignore::IgnoreError> {
    let mut record = ParentMatches::default();
    if let Some(i) = path.rfind('/') {
        let dir = clean_path(&path[..=i]);
        if dir != "." {
            let parts: Vec<&str> = dir.split('/').collect();
            for n in 1..=parts.len() {
                record = m.matches_with_parent(parts[..n].join("/"), &record)?.1;
            }
        }
    }
    m.matches_with_parent(path, &record).map(|r| r.0)
}

/// The files of `files` that a build of `dockerfile` sends (after its ignore file), found
/// by a walk of the context tree in sorted order that hands each directory's record to its
/// entries and skips nothing it must not skip. Also checks that whole-path evaluation agrees.
fn visible_files(
    files: &BTreeMap<String, String>,
    dockerfile: &str,
) -> Result<BTreeSet<String>, String> {
    let ignore = select_ignore_file(dockerfile, |p| files.contains_key(p));
    let patterns = ignore
        .as_ref()
        .map(|f| read_ignore_file(&files[f]))
        .unwrap_or_default();
    let m = Matcher::new(&patterns).map_err(|e| e.to_string())?;
    // Every directory and file of the tree, parents before children.
    let mut entries: BTreeSet<String> = BTreeSet::new();
    for f in files.keys() {
        let mut acc = String::new();
        for part in f.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            entries.insert(acc.clone());
        }
    }
    let mut records: BTreeMap<String, ParentMatches> = BTreeMap::new();
    let mut visible = BTreeSet::new();
    for e in &entries {
        let parent = match e.rsplit_once('/') {
            Some((dir, _)) => records[dir].clone(),
            None => ParentMatches::default(),
        };
        let (excluded, record) = m
            .matches_with_parent(e, &parent)
            .map_err(|err| err.to_string())?;
        if excluded != m.matches(e).map_err(|err| err.to_string())? {
            return Err(format!("walk and whole-path evaluation disagree on {e:?}"));
        }
        if !excluded && files.contains_key(e) {
            visible.insert(e.clone());
        }
        records.insert(e.clone(), record);
    }
    Ok(visible)
}

/// `[ -f x ]` and `[ ! -f x ]` tests of the scenario's RUN line, as (file, must exist).
fn run_checks(dockerfile_text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for line in dockerfile_text.lines() {
        let Some(cmd) = line.strip_prefix("RUN ") else {
            continue;
        };
        for test in cmd.split("&&") {
            let words: Vec<&str> = test.split_whitespace().collect();
            match words.as_slice() {
                ["[", "-f", f, "]"] => out.push((f.to_string(), true)),
                ["[", "!", "-f", f, "]"] => out.push((f.to_string(), false)),
                other => panic!("unexpected RUN test {other:?}"),
            }
        }
    }
    out
}

fn context_case(case: &Value) -> Result<(), String> {
    let files: BTreeMap<String, String> = case["files"]
        .as_object()
        .expect("files")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("content").to_owned()))
        .collect();
    let builds: Vec<&Value> = match case.get("builds") {
        Some(b) => b.as_array().expect("builds").iter().collect(),
        None => vec![case],
    };
    for build in builds {
        let dockerfile = build
            .get("dockerfile")
            .or_else(|| build["build"].get("dockerfile"))
            .and_then(Value::as_str)
            .expect("dockerfile");
        let success = build["expect_success"].as_bool().expect("expect_success");
        let visible = visible_files(&files, dockerfile);
        let visible = match (success, visible) {
            (false, Err(_)) => continue,
            (false, Ok(v)) => {
                return Err(format!(
                    "{dockerfile}: expected the build to fail, {v:?} would be sent"
                ));
            }
            (true, Err(e)) => return Err(format!("{dockerfile}: {e}")),
            (true, Ok(v)) => v,
        };
        if let Some(present) = case.get("expect_present").and_then(Value::as_object) {
            for name in present.keys() {
                if !visible.contains(name) {
                    return Err(format!(
                        "{dockerfile}: {name} should be copied, visible: {visible:?}"
                    ));
                }
            }
            // COPY . . copies exactly the visible files: nothing else may appear.
            let listed: BTreeSet<String> = present.keys().cloned().collect();
            if visible != listed {
                return Err(format!(
                    "{dockerfile}: COPY . . would see {visible:?}, expected {listed:?}"
                ));
            }
        }
        if let Some(absent) = case.get("expect_absent") {
            for name in strings(absent) {
                if visible.contains(&name) {
                    return Err(format!("{dockerfile}: {name} should be excluded"));
                }
            }
        }
        let checks = run_checks(&files[dockerfile]);
        for (name, exists) in &checks {
            if visible.contains(name) != *exists {
                return Err(format!(
                    "{dockerfile}: RUN test on {name} (exists: {exists}) fails; visible: {visible:?}"
                ));
            }
        }
        if case.get("builds").is_some() && checks.is_empty() {
            return Err(format!("{dockerfile}: no RUN test found"));
        }
        if case.get("builds").is_some() {
            let used = select_ignore_file(dockerfile, |p| files.contains_key(p));
            if used.as_deref() != Some(&format!("{dockerfile}.dockerignore")) {
                return Err(format!(
                    "{dockerfile}: expected its own ignore file, got {used:?}"
                ));
            }
        }
    }
    Ok(())
}
