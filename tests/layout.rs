//! The workspace's layout rules (`.ci/check-layout`): which workspace crates each library
//! may depend on, `unsafe` only in `executor/src/sys.rs`, and the lint attributes of every
//! crate root. The first test checks this repository; the others give the script a made-up
//! workspace with each kind of breach and check it names every one, and nothing else.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

/// Runs `.ci/check-layout` with `args`.
fn check_layout(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("python3")
        .arg(root.join(".ci/check-layout"))
        .args(args)
        .output()
        .expect("run .ci/check-layout with python3 (apt-get install python3)")
}

/// The breaches the script reported, one per line, without its prefix.
fn breaches(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| l.strip_prefix("check-layout: ").unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn the_workspace_keeps_its_layout() {
    let out = check_layout(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A made-up workspace: each crate a directory with a `src/lib.rs` (or the binary's
/// `src/main.rs`) holding `root`, and `deps` as (name, kind) pairs; its metadata as cargo
/// prints it.
struct Workspace {
    dir: tempfile::TempDir,
    packages: Vec<Value>,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
            packages: Vec::new(),
        }
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn crate_(&mut self, name: &str, dir: &str, root: &str, deps: &[(&str, Option<&str>)]) {
        let (file, kind) = if name == "rbuild" {
            ("src/main.rs", "bin")
        } else {
            ("src/lib.rs", "lib")
        };
        let src = format!("{dir}/{file}");
        self.write(&src, root);
        let base = self.dir.path();
        let dependencies: Vec<Value> = deps
            .iter()
            .map(|(dep, kind)| {
                json!({"name": dep, "kind": kind, "path": base.join(dep).to_str().unwrap()})
            })
            .collect();
        self.packages.push(json!({
            "name": name,
            "id": format!("path+file://{}#{name}@0.1.0", base.join(dir).display()),
            "dependencies": dependencies,
            "targets": [{"kind": [kind], "src_path": base.join(&src).to_str().unwrap()}],
        }));
    }

    /// Runs the check on this workspace.
    fn check(&self) -> Output {
        let members: Vec<&Value> = self.packages.iter().map(|p| &p["id"]).collect();
        let meta = json!({"packages": self.packages, "workspace_members": members});
        let path = self.dir.path().join("metadata.json");
        std::fs::write(&path, meta.to_string()).unwrap();
        let root = self.dir.path().to_str().unwrap();
        check_layout(&["--root", root, "--metadata", path.to_str().unwrap()])
    }

    /// Runs the check, which must fail; the breaches it named.
    fn refused(&self) -> Vec<String> {
        let out = self.check();
        assert_eq!(out.status.code(), Some(1), "{:?}", breaches(&out));
        breaches(&out)
    }
}

/// The root of the binary and the dev-only crates.
const FORBID: &str = "#![forbid(unsafe_code)]\n";
/// The root of a library.
const LIBRARY: &str = "#![forbid(unsafe_code)]\n#![warn(missing_docs)]\n";
const EXECUTOR: &str = "#![deny(unsafe_code)]\n#![warn(missing_docs)]\n\n\
    // The only module allowed unsafe code.\n#[allow(unsafe_code)]\nmod sys;\n";

/// A workspace that keeps every rule, with the executor's `sys.rs` holding unsafe code.
fn good() -> Workspace {
    let mut w = Workspace::new();
    let compiler = ("rbuild-compiler", None);
    let pathmatch = ("rbuild-pathmatch", None);
    let compress = ("rbuild-compress", None);
    let tarlimits = ("rbuild-tarlimits", None);
    let support = ("rbuild-test-support", Some("dev"));
    w.crate_("rbuild-pathmatch", "pathmatch", LIBRARY, &[support]);
    w.crate_("rbuild-compress", "compress", LIBRARY, &[]);
    w.crate_("rbuild-tarlimits", "tarlimits", LIBRARY, &[]);
    w.crate_(
        "rbuild-compiler",
        "compiler",
        LIBRARY,
        &[pathmatch, support],
    );
    w.crate_(
        "rbuild-cache",
        "cache",
        LIBRARY,
        &[compiler, pathmatch, compress, tarlimits],
    );
    w.crate_(
        "rbuild-executor",
        "executor",
        EXECUTOR,
        &[compiler, pathmatch, compress, tarlimits],
    );
    w.write("executor/src/sys.rs", "pub fn f() { unsafe { g() } }\n");
    w.crate_("rbuild-registry", "registry", LIBRARY, &[support]);
    w.crate_("rbuild-report", "report", LIBRARY, &[compress, tarlimits]);
    let all = [
        compiler,
        ("rbuild-cache", None),
        ("rbuild-executor", None),
        ("rbuild-registry", None),
        ("rbuild-report", None),
    ];
    w.crate_("rbuild-engine", "engine", LIBRARY, &all);
    w.crate_("rbuild-test-support", "test-support", FORBID, &[]);
    w.crate_("rbuild-bench", "bench", FORBID, &[compiler]);
    w.crate_(
        "rbuild",
        ".",
        "#![forbid(unsafe_code)]\nfn main() {}\n",
        &all,
    );
    w
}

#[test]
fn a_workspace_that_keeps_the_rules_passes() {
    let w = good();
    // `unsafe` in comments, strings, raw strings, byte strings and identifiers is no code.
    w.write(
        "cache/src/text.rs",
        "// unsafe\n/* unsafe /* nested unsafe */ */\n#![forbid(unsafe_code)]\n\
         const A: &str = \"unsafe\";\nconst B: &str = r#\"a \" unsafe\"#;\n\
         const C: &[u8] = b\"unsafe\";\nconst D: char = '\"';\nfn r#unsafe<'a>(_: &'a str) {}\n",
    );
    let out = w.check();
    assert!(out.status.success(), "{:?}", breaches(&out));
}

#[test]
fn every_forbidden_dependency_is_named() {
    let mut w = good();
    w.packages.clear();
    w.crate_(
        "rbuild-compiler",
        "compiler",
        LIBRARY,
        &[
            ("rbuild-report", None),
            ("rbuild-tarlimits", None),
            ("rbuild-test-support", Some("dev")),
        ],
    );
    w.crate_(
        "rbuild-cache",
        "cache",
        LIBRARY,
        &[("rbuild-compiler", None), ("rbuild-registry", None)],
    );
    w.crate_(
        "rbuild-executor",
        "executor",
        EXECUTOR,
        &[("rbuild-engine", Some("build"))],
    );
    w.crate_(
        "rbuild-registry",
        "registry",
        LIBRARY,
        &[("rbuild-cache", Some("dev")), ("rbuild-test-support", None)],
    );
    w.crate_("rbuild-report", "report", LIBRARY, &[("rbuild", None)]);
    w.crate_("rbuild-engine", "engine", LIBRARY, &[("rbuild", None)]);
    w.crate_("rbuild-ignore", "ignore", LIBRARY, &[]);
    w.crate_(
        "rbuild-pathmatch",
        "pathmatch",
        LIBRARY,
        &[("rbuild-compiler", None)],
    );
    w.crate_(
        "rbuild-compress",
        "compress",
        LIBRARY,
        &[("rbuild-pathmatch", Some("build"))],
    );
    w.crate_(
        "rbuild-tarlimits",
        "tarlimits",
        LIBRARY,
        &[("rbuild-compress", None)],
    );
    w.crate_("rbuild-test-support", "test-support", FORBID, &[]);
    w.crate_("rbuild", ".", FORBID, &[]);
    assert_eq!(
        w.refused(),
        [
            "rbuild-cache has a normal dependency on rbuild-registry: forbidden by \
             rbuild-cache's row of the dependency table",
            "rbuild-compiler has a normal dependency on rbuild-report: forbidden by \
             rbuild-compiler's row of the dependency table",
            "rbuild-compiler has a normal dependency on rbuild-tarlimits: forbidden by \
             rbuild-compiler's row of the dependency table",
            "rbuild-compress has a build dependency on rbuild-pathmatch: rbuild-compress \
             depends on no workspace crate",
            "rbuild-engine has a normal dependency on rbuild: no library depends on the binary",
            "rbuild-executor has a build dependency on rbuild-engine: forbidden by \
             rbuild-executor's row of the dependency table",
            "rbuild-ignore: a workspace member with no row in the dependency table \
             (RULES in .ci/check-layout)",
            "rbuild-pathmatch has a normal dependency on rbuild-compiler: rbuild-pathmatch \
             depends on no workspace crate",
            "rbuild-registry has a dev dependency on rbuild-cache: forbidden by \
             rbuild-registry's row of the dependency table",
            "rbuild-registry has a normal dependency on rbuild-test-support: \
             rbuild-test-support is dev-only and never shipped",
            "rbuild-report has a normal dependency on rbuild: no library depends on the binary",
            "rbuild-tarlimits has a normal dependency on rbuild-compress: rbuild-tarlimits \
             depends on no workspace crate",
        ]
    );
}

#[test]
fn unsafe_code_outside_the_executors_sys_module_is_named() {
    let w = good();
    w.write(
        "cache/src/store.rs",
        "// unsafe in a comment is fine\nfn f() {\n    unsafe { g() }\n}\n",
    );
    w.write(
        "executor/src/user.rs",
        "const S: &str = \"}\";\n#[unsafe(no_mangle)]\npub extern \"C\" fn h() {}\n",
    );
    w.write("fuzz/fuzz_targets/a.rs", "unsafe impl Send for X {}\n");
    assert_eq!(
        w.refused(),
        [
            "cache/src/store.rs:3: unsafe code outside executor/src/sys.rs",
            "executor/src/user.rs:2: unsafe code outside executor/src/sys.rs",
            "fuzz/fuzz_targets/a.rs:1: unsafe code outside executor/src/sys.rs",
        ]
    );
}

#[test]
fn a_crate_root_without_its_lint_attributes_is_named() {
    let w = good();
    w.write("cache/src/lib.rs", "#![warn(missing_docs)]\n");
    w.write("report/src/lib.rs", "#![forbid(unsafe_code)]\n");
    w.write(
        "executor/src/lib.rs",
        "#![warn(missing_docs)]\n#[allow(unsafe_code)]\nmod sys;\n#[allow(unsafe_code)]\nmod user;\n",
    );
    w.write("src/main.rs", "fn main() {}\n");
    assert_eq!(
        w.refused(),
        [
            "cache/src/lib.rs: the crate root lacks #![forbid(unsafe_code)]",
            "executor/src/lib.rs: the crate root lacks #![deny(unsafe_code)]",
            "executor/src/lib.rs: #[allow(unsafe_code)] must be on `mod sys;` alone",
            "report/src/lib.rs: the library's root lacks #![warn(missing_docs)]",
            "src/main.rs: the crate root lacks #![forbid(unsafe_code)]",
        ]
    );
}
