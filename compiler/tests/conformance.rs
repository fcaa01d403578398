//! Runs the external conformance vectors in `../shared/conformance/` (BuildKit's parser
//! golden files, its shell-lexer vectors, and patternmatcher's .dockerignore cases).
//!
//! The folder is found at `$RBUILD_CONFORMANCE_DIR`, or else `../shared/conformance` from
//! the project root (`rbuild_test_support::conformance_dir`). A missing folder fails in CI
//! (`CI=true`); elsewhere the test prints one line saying how to run it and passes.
//!
//! Each suite lives in its own file under `conformance/` and reports how many of its cases
//! passed. This file prints one summary line and fails on any miss.

#[path = "conformance/ignore_cases.rs"]
mod ignore_cases;
#[path = "conformance/lexer_cases.rs"]
mod lexer_cases;
#[path = "conformance/parser_cases.rs"]
mod parser_cases;

/// The outcome of one suite of vectors.
#[derive(Debug)]
pub struct Suite {
    /// The name used in the summary line (`parser`, `negative`, `extra`, ...).
    pub name: &'static str,
    pub passed: usize,
    pub total: usize,
    /// One line per failed case: which case, what was expected, what came out.
    pub failures: Vec<String>,
}

impl Suite {
    pub fn new(name: &'static str) -> Self {
        Suite {
            name,
            passed: 0,
            total: 0,
            failures: Vec::new(),
        }
    }

    /// Records one case: `Ok(())` passed, `Err(why)` failed.
    pub fn check(&mut self, case: impl std::fmt::Display, outcome: Result<(), String>) {
        self.total += 1;
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{}: {case}: {why}", self.name)),
        }
    }
}

#[test]
fn conformance() {
    let Some(dir) = rbuild_test_support::conformance_dir("conformance") else {
        return;
    };
    let mut suites = parser_cases::suites(&dir);
    suites.extend(lexer_cases::suites(&dir));
    suites.extend(ignore_cases::suites(&dir));
    // The summary names the suites in this order whatever order they ran in.
    const ORDER: [&str; 7] = [
        "parser",
        "negative",
        "extra",
        "envVarTest",
        "wordsTest",
        "process-word",
        "dockerignore",
    ];
    suites.sort_by_key(|s| {
        ORDER
            .iter()
            .position(|n| *n == s.name)
            .unwrap_or(ORDER.len())
    });
    let summary: Vec<String> = suites
        .iter()
        .map(|s| format!("{} {}/{}", s.name, s.passed, s.total))
        .collect();
    println!("conformance: {}", summary.join(", "));
    eprintln!("conformance: {}", summary.join(", "));
    let failures: Vec<&String> = suites.iter().flat_map(|s| &s.failures).collect();
    for f in &failures {
        eprintln!("{f}");
    }
    for name in ORDER {
        let suite = suites.iter().find(|s| s.name == name);
        assert!(
            suite.is_some_and(|s| s.total > 0),
            "suite {name} ran no case"
        );
    }
    assert!(
        failures.is_empty(),
        "{} conformance case(s) failed",
        failures.len()
    );
}
