//! Runs the external conformance vectors in `../shared/conformance/` (BuildKit's parser
//! golden files and its shell-lexer vectors; the .dockerignore cases run in
//! rbuild-pathmatch's tests).
//!
//! The folder is found at `$RBUILD_CONFORMANCE_DIR`, or else `../shared/conformance` from
//! the project root (`rbuild_test_support::conformance_dir`). A missing folder fails in CI
//! (`CI=true`); elsewhere the test prints one line saying how to run it and passes.
//!
//! Each suite lives in its own file under `conformance/` and reports how many of its cases
//! passed. This file prints one summary line and fails on any miss.

#[path = "conformance/lexer_cases.rs"]
mod lexer_cases;
#[path = "conformance/parser_cases.rs"]
mod parser_cases;

use rbuild_test_support::Suite;

#[test]
fn conformance() {
    let Some(dir) = rbuild_test_support::conformance_dir("conformance") else {
        return;
    };
    let mut suites = parser_cases::suites(&dir);
    suites.extend(lexer_cases::suites(&dir));
    // The summary names the suites in this order whatever order they ran in.
    Suite::report(
        &mut suites,
        &[
            "parser",
            "negative",
            "extra",
            "envVarTest",
            "wordsTest",
            "process-word",
        ],
    );
}
