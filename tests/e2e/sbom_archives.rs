//! `rbuild sbom` of Java archives and of Rust executables built with `cargo auditable`: a
//! Debian image with Debian's jars (apt-get) and a war made here with `zip` holding a nested
//! jar, checked against the archives' own `pom.properties` and `MANIFEST.MF` as `unzip -p`
//! prints them; a Rust program with a crates.io dependency, a path dependency and a build
//! dependency built with `cargo auditable build --offline` (the crates.io crate comes from the
//! local cargo cache that building rbuild filled), checked against `cargo tree`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rbuild_test_support::{DebianBase, Registry};
use serde_json::Value;

use crate::sbom::{inventory, package, sbom_file, validate_cyclonedx, write_tree};
use crate::support::{BASE, BuildEnv, ok, tool, validate_spdx};

/// `key=value` lines of a properties file.
fn property(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The main-section attribute `key` of a manifest (continuation lines joined).
fn attribute(text: &str, key: &str) -> Option<String> {
    let joined = text.replace("\r\n", "\n").replace("\n ", "");
    joined
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_string))
}

/// `unzip -p ARCHIVE ENTRY`.
fn unzip_p(archive: &Path, entry: &str) -> Vec<u8> {
    let out = tool("unzip", "unzip")
        .arg("-p")
        .arg(archive)
        .arg(entry)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unzip -p {} {entry}",
        archive.display()
    );
    out.stdout
}

/// What the archive's own metadata says, as `name version purl database` lines: one per
/// `pom.properties`, else the manifest's `Implementation-Title` and `-Version`.
fn expected(archive: &Path, database: &str) -> Vec<String> {
    let list = ok(tool("unzip", "unzip").arg("-Z1").arg(archive)).stdout;
    let mut out = Vec::new();
    for entry in list.lines() {
        let parts: Vec<&str> = entry.split('/').collect();
        if let ["META-INF", "maven", _, _, "pom.properties"] = parts.as_slice() {
            let text = String::from_utf8(unzip_p(archive, entry)).unwrap();
            let group = property(&text, "groupId").unwrap();
            let name = property(&text, "artifactId").unwrap();
            let version = property(&text, "version").unwrap();
            out.push(format!(
                "{name} {version} pkg:maven/{group}/{name}@{version} {database}"
            ));
        }
    }
    if out.is_empty() {
        let text = String::from_utf8(unzip_p(archive, "META-INF/MANIFEST.MF")).unwrap();
        let name = attribute(&text, "Implementation-Title").unwrap();
        let version = attribute(&text, "Implementation-Version").unwrap();
        out.push(format!(
            "{name} {version} pkg:maven/{name}@{version} {database}"
        ));
    }
    out
}

/// The packages of `ecosystem` as `name version purl database` lines, sorted.
fn listed(inv: &Value, ecosystem: &str) -> Vec<String> {
    let mut out: Vec<String> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == ecosystem)
        .map(|p| {
            format!(
                "{} {} {} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["purl"].as_str().unwrap(),
                p["database"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs `cmd` in `dir`, failing the test with its output when it fails.
fn run_in(dir: &Path, cmd: &mut Command) -> String {
    ok(cmd.current_dir(dir)).stdout
}

#[test]
fn debian_jars_and_a_war_with_a_nested_jar() {
    let env = BuildEnv::new();
    let registry = Registry::start();
    DebianBase::bookworm().push(&registry, "debian:bookworm");

    // A library jar with Maven metadata, inside a war that has only a manifest.
    let lib = env.dir.join("lib");
    let pom = "#Created by Apache Maven 3.8.7\nartifactId=greeter-core\ngroupId=com.example.greeter\nversion=2.4.1\n";
    for (path, text) in [
        ("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n"),
        (
            "META-INF/maven/com.example.greeter/greeter-core/pom.properties",
            pom,
        ),
        ("com/example/greeter/Greeter.class", "not really a class"),
    ] {
        std::fs::create_dir_all(lib.join(path).parent().unwrap()).unwrap();
        std::fs::write(lib.join(path), text).unwrap();
    }
    let war_dir = env.dir.join("war");
    std::fs::create_dir_all(war_dir.join("WEB-INF/lib")).unwrap();
    std::fs::create_dir_all(war_dir.join("META-INF")).unwrap();
    run_in(
        &lib,
        tool("zip", "zip")
            .args(["-q", "-r", "-X"])
            .arg(war_dir.join("WEB-INF/lib/greeter-core-2.4.1.jar"))
            .args(["META-INF", "com"]),
    );
    std::fs::write(
        war_dir.join("META-INF/MANIFEST.MF"),
        "Manifest-Version: 1.0\r\nImplementation-Title: greeter-web\r\nImplementation-Version: 1.0.0-SNAPSHOT\r\n\r\n",
    )
    .unwrap();
    std::fs::write(war_dir.join("WEB-INF/web.xml"), "<web-app/>\n").unwrap();
    run_in(
        &war_dir,
        tool("zip", "zip")
            .args(["-q", "-r", "-X"])
            .arg(env.ctx.join("app.war"))
            .args(["META-INF", "WEB-INF"]),
    );

    env.dockerfile(&format!(
        "FROM {}/debian:bookworm\n\
         RUN apt-get update && apt-get install -y --no-install-recommends libcommons-lang3-java\n\
         COPY app.war /srv/app.war\n",
        registry.host()
    ));
    env.build(&["-t", "jars"]);
    let local = env.dir.join("rootfs");
    ok(&mut env.build_cmd(&["-o", &format!("type=local,dest={}", local.display())]));

    // The oracle: every regular *.jar and *.war of the file system, read with unzip.
    let mut want = Vec::new();
    let mut pending = vec![local.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "jar" || e == "war") {
                let database = format!("/{}", path.strip_prefix(&local).unwrap().display());
                want.extend(expected(&path, &database));
            }
        }
    }
    let nested = env.dir.join("nested.jar");
    std::fs::write(
        &nested,
        unzip_p(
            &local.join("srv/app.war"),
            "WEB-INF/lib/greeter-core-2.4.1.jar",
        ),
    )
    .unwrap();
    want.extend(expected(
        &nested,
        "/srv/app.war!/WEB-INF/lib/greeter-core-2.4.1.jar",
    ));
    want.sort();
    let inv = inventory(&env, "jars");
    assert_eq!(listed(&inv, "java"), want);
    // Debian's library, the war and the jar inside it.
    assert_eq!(want.len(), 3, "{want:#?}");
    assert!(
        want.contains(
            &"commons-lang3 3.12.0 pkg:maven/org.apache.commons/commons-lang3@3.12.0 /usr/share/java/commons-lang3.jar"
                .to_string()
        ),
        "{want:#?}"
    );
    assert!(
        want.contains(
            &"greeter-web 1.0.0-SNAPSHOT pkg:maven/greeter-web@1.0.0-SNAPSHOT /srv/app.war"
                .to_string()
        ),
        "{want:#?}"
    );
    let war = package(&inv, "greeter-core");
    assert_eq!(war["files"], serde_json::json!(["/srv/app.war"]));
    // The war belongs to no Debian package: its artifacts own it.
    assert!(
        !inv["unowned"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/srv/app.war"))
    );

    validate_spdx(&sbom_file(&env, "jars", "spdx-json"));
    validate_cyclonedx(&sbom_file(&env, "jars", "cyclonedx-json"));
}

#[test]
fn rust_binary_built_with_cargo_auditable() {
    let env = BuildEnv::new();
    let project = env.dir.join("audited");
    // memchr at the version rbuild itself locks, so that it is in the local cargo cache.
    let memchr = {
        let lock =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
                .unwrap();
        let at = lock.find("name = \"memchr\"\nversion = \"").unwrap();
        let rest = &lock[at + "name = \"memchr\"\nversion = \"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    write_tree(
        &project,
        &[
            (
                "Cargo.toml",
                &format!(
                    "[package]\nname = \"audited\"\nversion = \"0.3.1\"\nedition = \"2021\"\n\n\
                     [dependencies]\nmemchr = \"={memchr}\"\ngreeting = {{ path = \"greeting\" }}\n\n\
                     [build-dependencies]\nstamp = {{ path = \"stamp\" }}\n"
                ),
            ),
            (
                "src/main.rs",
                "fn main() {\n    let text = greeting::text();\n    println!(\"{} {:?} {}\", text, memchr::memchr(b'o', text.as_bytes()), env!(\"STAMP\"));\n}\n",
            ),
            (
                "build.rs",
                "fn main() {\n    println!(\"cargo:rustc-env=STAMP={}\", stamp::STAMP);\n}\n",
            ),
            (
                "greeting/Cargo.toml",
                "[package]\nname = \"greeting\"\nversion = \"1.2.0\"\nedition = \"2021\"\n",
            ),
            (
                "greeting/src/lib.rs",
                "pub fn text() -> &'static str {\n    \"hello\"\n}\n",
            ),
            (
                "stamp/Cargo.toml",
                "[package]\nname = \"stamp\"\nversion = \"0.9.0\"\nedition = \"2021\"\n",
            ),
            ("stamp/src/lib.rs", "pub const STAMP: &str = \"s\";\n"),
        ],
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["auditable", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "the tests need cargo-auditable: .ci/setup installs it (cargo install --locked cargo-auditable)"
    );
    let target = env.dir.join("target");
    run_in(
        &project,
        Command::new(&cargo)
            .args(["auditable", "build", "--offline", "--quiet"])
            .env("CARGO_TARGET_DIR", &target),
    );
    let app = env.ctx.join("audited");
    std::fs::copy(target.join("debug/audited"), &app).unwrap();

    // The oracle: the crates `cargo tree` says are linked (normal dependencies only).
    let tree = run_in(
        &project,
        Command::new(&cargo).args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ]),
    );
    let want: BTreeSet<String> = tree
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap();
            let version = words.next().unwrap().trim_start_matches('v');
            format!("{name} {version} pkg:cargo/{name}@{version} /usr/local/bin/audited")
        })
        .collect();
    assert_eq!(want.len(), 3, "{tree}");
    assert!(!tree.contains("stamp"), "{tree}");

    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY audited /usr/local/bin/audited\n"
    ));
    env.build(&["-t", "rusty"]);
    let inv = inventory(&env, "rusty");
    let got: BTreeSet<String> = listed(&inv, "cargo").into_iter().collect();
    assert_eq!(got, want);
    let memchr_pkg = package(&inv, "memchr");
    assert_eq!(
        memchr_pkg["files"],
        serde_json::json!(["/usr/local/bin/audited"])
    );
    assert!(memchr_pkg["source"].is_null(), "{memchr_pkg:#}");
    let greeting = package(&inv, "greeting");
    assert_eq!(greeting["source"], "local");

    validate_spdx(&sbom_file(&env, "rusty", "spdx-json"));
    validate_cyclonedx(&sbom_file(&env, "rusty", "cyclonedx-json"));
}
