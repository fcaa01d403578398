//! What the README and the quick start promise: the documents cite only what the repository
//! holds, the release profile ships no debug info, and the quick start, run twice, says
//! what it did and finds every step cached the second time.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Dir, ok};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Markdown files of the repository that people read first.
const DOCS: &[&str] = &[
    "README.md",
    "ARCHITECTURE.md",
    "SECURITY.md",
    "docs/progress-json.md",
    "docs/attestations.md",
    "bench/README.md",
    "compiler/src/plan/SCHEMA.md",
    "report/SCHEMA.md",
];

/// Link targets (`](x)`) and code spans (`` `x` ``) that name a Markdown file.
fn cited_documents(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (open, close) in [("](", ')'), ("`", '`')] {
        let mut rest = text;
        while let Some(i) = rest.find(open) {
            rest = &rest[i + open.len()..];
            let Some(end) = rest.find(close) else { break };
            let target = rest[..end].split('#').next().unwrap_or_default();
            if target.ends_with(".md") && !target.contains(char::is_whitespace) {
                out.push(target.to_string());
            }
            if open == "`" {
                rest = &rest[end + 1..];
            }
        }
    }
    out
}

#[test]
fn documents_cite_only_files_in_the_repository() {
    let root = repo().canonicalize().unwrap();
    let mut checked = 0;
    for doc in DOCS {
        let text = read(doc);
        let dir = Path::new(doc).parent().unwrap_or(Path::new(""));
        for cited in cited_documents(&text) {
            let found = [root.join(dir).join(&cited), root.join(&cited)]
                .into_iter()
                .filter_map(|p| p.canonicalize().ok())
                .find(|p| p.starts_with(&root));
            assert!(
                found.is_some(),
                "{doc} cites {cited}, which is not a file of the repository"
            );
            checked += 1;
        }
    }
    assert!(checked > 5, "too few citations found: {checked}");
}

#[test]
fn readme_says_how_to_install_and_what_rbuild_needs() {
    let readme = read("README.md");
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let rust = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    for needed in [
        "cargo install --path .".to_string(),
        "./target/release/rbuild".to_string(),
        format!("Rust {rust}"),
        "uidmap".to_string(),
        "user namespaces".to_string(),
        "bash scripts/quickstart".to_string(),
        "bash .ci/setup && cargo test --workspace".to_string(),
    ] {
        assert!(
            readme.contains(&needed),
            "README.md does not say {needed:?}"
        );
    }
    // The quick start's `-o type=local` line says what the build really does.
    assert!(
        readme.contains("-o type=local,dest=out testdata/hello   # the file system only, no image"),
        "README.md"
    );
}

#[test]
fn the_release_profile_ships_no_debug_info_and_profiling_keeps_line_tables() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let profiles = manifest["profile"].as_table().unwrap();
    let release = profiles["release"].as_table().unwrap();
    assert_eq!(
        release.get("strip").and_then(|s| s.as_str()),
        Some("debuginfo"),
        "{release:?}"
    );
    assert!(
        release
            .get("debug")
            .is_none_or(|d| d.as_bool() == Some(false) || d.as_integer() == Some(0)),
        "{release:?}"
    );
    let profiling = profiles["profiling"].as_table().unwrap();
    assert_eq!(profiling["inherits"].as_str(), Some("release"));
    assert_eq!(profiling["debug"].as_str(), Some("line-tables-only"));
    assert_eq!(
        profiling.get("strip").and_then(|s| s.as_str()),
        Some("none")
    );
    // The benchmark scripts build what they measure with a profile that exists.
    assert!(
        read("bench/run").contains("target/release/rbuild"),
        "bench/run"
    );
}

/// Runs `scripts/quickstart` with the binary under test and a store of its own.
fn quickstart(store: &Path) -> crate::support::Run {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/quickstart"))
        .arg("--root")
        .arg(store)
        .env("RBUILD", env!("CARGO_BIN_EXE_rbuild"))
        .env_remove("RBUILD_ROOT")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RBUILD_LOG")
        .env_remove("RBUILD_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent/rbuild-tests");
    ok(&mut cmd)
}

#[test]
fn the_quick_start_run_twice_finds_every_step_cached() {
    let script = read("scripts/quickstart");
    assert!(
        !script.contains(".ci/setup"),
        "the quick start installs the test tools"
    );
    // What rbuild needs to run is listed once, and the test setup installs it first.
    assert!(
        script.contains("bash scripts/install-deps"),
        "scripts/quickstart"
    );
    let setup = read(".ci/setup");
    assert!(setup.contains("scripts/install-deps"), ".ci/setup");
    assert!(!setup.contains("uidmap "), ".ci/setup lists uidmap again");
    let dir = Dir::new();
    let store = dir.join("store");
    let first = quickstart(&store);
    let all = format!("{}{}", first.stdout, first.stderr);
    assert!(
        !first.stdout.lines().any(|l| l.starts_with("sha256:")),
        "bare digests: {all}"
    );
    assert!(all.contains("HELLO FROM RBUILD"), "{all}");
    let summary = &first.stdout[first
        .stdout
        .find("Quick start done")
        .unwrap_or_else(|| panic!("{all}"))..];
    assert!(summary.contains("Try next:"), "{summary}");
    assert!(summary.contains(&store.display().to_string()), "{summary}");

    let second = quickstart(&store);
    let all = format!("{}{}", second.stdout, second.stderr);
    let steps = all
        .lines()
        .find(|l| l.trim_start().starts_with("steps ") && l.contains(" run, "))
        .unwrap_or_else(|| panic!("{all}"));
    let words: Vec<&str> = steps.split_whitespace().collect();
    // "steps 0 run, N cached, N in all"
    assert_eq!(words[1], "0", "{all}");
    assert_eq!(words[3], words[5], "{all}");
    assert!(
        second.stdout.contains("every step came from the cache"),
        "{all}"
    );
}
