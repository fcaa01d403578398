//! Runs the external `.dockerignore` conformance vectors in `../shared/conformance/`
//! (patternmatcher's cases and BuildKit's end-to-end `.dockerignore` scenarios; see
//! `conformance/ignore_cases.rs`).
//!
//! The folder is found at `$RBUILD_CONFORMANCE_DIR`, or else `../shared/conformance` from
//! the project root (`rbuild_test_support::conformance_dir`). A missing folder fails in CI
//! (`CI=true`); elsewhere the test prints one line saying how to run it and passes.

#[path = "conformance/ignore_cases.rs"]
mod ignore_cases;

use rbuild_test_support::Suite;

#[test]
fn conformance() {
    let Some(dir) = rbuild_test_support::conformance_dir("conformance") else {
        return;
    };
    let mut suites = ignore_cases::suites(&dir);
    Suite::report(&mut suites, &["dockerignore"]);
}
