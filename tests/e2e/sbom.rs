//! `rbuild sbom`: the package inventory of a Debian image built with apt-get, compared with
//! what `dpkg-query` reads from the same file system unpacked; busybox images carrying apk,
//! Python and npm metadata and a Go binary's build information, a Go program built by
//! Debian's Go (its modules checked against `go version -m`); the SPDX and CycloneDX
//! documents checked by the reference validators (PyPI's spdx-tools and cyclonedx-python-lib,
//! which `.ci/setup` installs into /opt/rbuild-sbom-tools).

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_test_support::{DebianBase, Registry};
use serde_json::Value;

use crate::support::{BASE, BuildEnv, ok, validate_spdx, validator};

/// Checks a CycloneDX document against the 1.5 JSON schema (strict: no unknown fields) with
/// cyclonedx-python-lib's validator.
pub(crate) fn validate_cyclonedx(path: &Path) {
    const SCRIPT: &str = "import sys\n\
        from cyclonedx.schema import SchemaVersion\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
        print(error if error else 'valid')\n";
    let run = ok(validator("python").args(["-c", SCRIPT]).arg(path));
    assert_eq!(run.stdout.trim(), "valid", "{}", path.display());
}

/// `rbuild sbom --format FORMAT IMAGE` into a file of `env`'s directory (written twice: the
/// two runs must give the same bytes); returns the path.
pub(crate) fn sbom_file(env: &BuildEnv, image: &str, format: &str) -> PathBuf {
    let path = env.dir.join(format!("sbom-{format}.json"));
    let again = env.dir.join(format!("sbom-{format}-again.json"));
    for out in [&path, &again] {
        ok(env
            .rbuild()
            .args(["sbom", "--format", format, "-o"])
            .arg(out)
            .arg(image));
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap(),
        "two runs of rbuild sbom --format {format} differ"
    );
    path
}

pub(crate) fn inventory(env: &BuildEnv, image: &str) -> Value {
    let run = ok(env.rbuild().args(["sbom", "--format", "json", image]));
    serde_json::from_str(&run.stdout).expect("sbom json")
}

/// The package of `inventory` named `name`.
pub(crate) fn package<'v>(inventory: &'v Value, name: &str) -> &'v Value {
    inventory["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in {inventory:#}"))
}

/// The Dockerfile line of the layer that added `package`.
fn line_of(inventory: &Value, package: &Value) -> Option<u64> {
    inventory["layers"][package["layer"].as_u64().unwrap() as usize]["dockerfile_line"].as_u64()
}

#[test]
fn debian_inventory_matches_dpkg_query() {
    let env = BuildEnv::new();
    let registry = Registry::start();
    DebianBase::bookworm().push(&registry, "debian:bookworm");
    env.dockerfile(&format!(
        "FROM {}/debian:bookworm\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello jq\n",
        registry.host()
    ));
    let id = env.build(&["-t", "apt"]).id;
    let local = env.dir.join("rootfs");
    // The same build (from the cache) unpacked into a directory.
    ok(&mut env.build_cmd(&["-o", &format!("type=local,dest={}", local.display())]));

    let expected = ok(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            local.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version}\\n"]))
    .stdout;
    let mut expected: Vec<&str> = expected.lines().collect();
    expected.sort_unstable();
    let inv = inventory(&env, "apt");
    let mut listed: Vec<String> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "deb")
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, expected);
    assert!(expected.len() > 80, "{expected:?}");

    // hello and jq come from the RUN on line 2; the base's packages from the base's layer.
    for name in ["hello", "jq", "libjq1", "libonig5"] {
        let p = package(&inv, name);
        assert_eq!(line_of(&inv, p), Some(2), "{p:#}");
        let layer = &inv["layers"][p["layer"].as_u64().unwrap() as usize];
        assert!(
            layer["instruction"]
                .as_str()
                .unwrap()
                .contains("apt-get install -y --no-install-recommends hello jq"),
            "{layer:#}"
        );
    }
    assert_eq!(package(&inv, "bash")["layer"], 0);
    let jq = package(&inv, "jq");
    assert_eq!(
        jq["purl"],
        format!(
            "pkg:deb/debian/jq@{}?arch=amd64&distro=debian-12",
            jq["version"].as_str().unwrap().replace('+', "%2B")
        )
    );
    assert!(
        jq["files"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/usr/bin/jq")),
        "{jq:#}"
    );
    // The licences are the License: fields of jq's machine-readable copyright file.
    let copyright = std::fs::read_to_string(local.join("usr/share/doc/jq/copyright")).unwrap();
    assert!(copyright.starts_with("Format: "), "{copyright}");
    let licenses: std::collections::BTreeSet<&str> = copyright
        .lines()
        .filter_map(|l| l.strip_prefix("License:"))
        .map(str::trim)
        .collect();
    assert!(!licenses.is_empty());
    assert_eq!(jq["licenses"], serde_json::json!(licenses));

    // The regular files no .list names, counted on the unpacked file system, where a listed
    // path through a link (/bin/ls on a merged /usr) names the file the link leads to.
    let mut owned = std::collections::HashSet::new();
    for entry in std::fs::read_dir(local.join("var/lib/dpkg/info")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "list") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if let Ok(real) = std::fs::canonicalize(local.join(line.trim_start_matches('/'))) {
                    owned.insert(real);
                }
            }
        }
    }
    let local = std::fs::canonicalize(&local).unwrap();
    let files = regular_files(&local);
    let unowned = files.iter().filter(|f| !owned.contains(*f)).count();
    assert_eq!(inv["files"], files.len());
    assert_eq!(inv["unowned_files"], unowned);
    assert!(unowned < files.len() / 4, "{unowned} of {}", files.len());
    assert_eq!(inv["image"]["id"], id);

    let spdx = sbom_file(&env, "apt", "spdx-json");
    validate_spdx(&spdx);
    let doc: Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    assert_eq!(
        doc["packages"].as_array().unwrap().len(),
        expected.len() + 1
    );
    let cdx = sbom_file(&env, "apt", "cyclonedx-json");
    validate_cyclonedx(&cdx);
    let doc: Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    assert_eq!(doc["components"].as_array().unwrap().len(), expected.len());
    assert_eq!(doc["metadata"]["component"]["type"], "container");
}

/// The regular files under `dir`, recursively (links not followed).
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// An executable that carries Go build information as the Go 1.18+ linker writes it (the
/// strings inline), its magic straddling the first 256 KiB: a main module, a dependency and
/// a dependency replaced by another version.
fn go_binary() -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &[u8]) {
        let mut len = text.len();
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(text);
    }
    let mut out = b"\x7fELF\x02\x01\x01\0".to_vec();
    out.resize(256 * 1024 - 5, 0);
    out.extend_from_slice(b"\xff Go buildinf:");
    out.extend_from_slice(&[8, 2]);
    out.resize(out.len() + 16, 0);
    string(&mut out, b"go1.21.5");
    let mut modinfo = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    modinfo.extend_from_slice(
        b"path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
          dep\tgithub.com/pkg/errors\tv0.9.1\th1:abc=\n\
          dep\tgolang.org/x/sys\tv0.15.0\th1:def=\n\
          =>\tgolang.org/x/sys\tv0.16.0\th1:ghi=\n\
          build\tGOOS=linux\n",
    );
    modinfo.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
    string(&mut out, &modinfo);
    out.resize(out.len() + 4096, 0);
    out
}

/// Writes `files` (path, content) under `dir`.
pub(crate) fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

#[test]
fn apk_python_npm_and_go_metadata_of_a_busybox_image() {
    let env = BuildEnv::new();
    write_tree(
        &env.ctx,
        &[
            (
                "apk/installed",
                "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nF:lib\n\
                 R:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\n\
                 P:busybox-extras\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\
                 F:usr/bin\nR:telnet\n\n",
            ),
            (
                "os-release",
                "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
            ),
            (
                "site/Requests-2.31.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\n\
                 Requests is an HTTP library.\nLicense: not a header\n",
            ),
            (
                "site/Requests-2.31.0.dist-info/RECORD",
                "requests/__init__.py,sha256=abc,5\n\
                 Requests-2.31.0.dist-info/METADATA,,\n\
                 \"requests/odd,name.py\",,\n\
                 ../../../bin/req,,\n",
            ),
            ("site/requests/__init__.py", "pass\n"),
            ("site/requests/odd,name.py", "pass\n"),
            (
                "site/six.egg-info/PKG-INFO",
                "Metadata-Version: 1.0\nName: six\nVersion: 1.16.0\nLicense: MIT\n",
            ),
            (
                "node_modules/left-pad/package.json",
                r#"{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}"#,
            ),
            ("node_modules/left-pad/index.js", "module.exports = 1;\n"),
            (
                "node_modules/@types/node/package.json",
                r#"{"name": "@types/node", "version": "20.1.0", "license": {"type": "MIT"}}"#,
            ),
            (
                "node_modules/@types/node/node_modules/inner/package.json",
                r#"{"name": "inner", "version": "0.1.0"}"#,
            ),
            (
                "node_modules/left-pad/test/package.json",
                r#"{"name": "fixture", "version": "9.9.9"}"#,
            ),
        ],
    );
    let app = env.write("app", go_binary());
    std::fs::set_permissions(&app, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         COPY os-release /etc/os-release\n\
         COPY apk/ /lib/apk/db/\n\
         COPY site/ /usr/lib/python3.11/site-packages/\n\
         COPY node_modules/ /app/node_modules/\n\
         RUN printf 'P:zlib\\nV:1.3.1-r0\\nA:x86_64\\nL:Zlib\\nF:lib\\nR:libz.so.1\\n\\n' >> /lib/apk/db/installed\n\
         COPY app /usr/local/bin/app\n"
    ));
    env.build(&["-t", "langs"]);
    let inv = inventory(&env, "langs");
    let summary: Vec<String> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {} {} line {}",
                p["ecosystem"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["purl"].as_str().unwrap(),
                p["licenses"],
                line_of(&inv, p).unwrap()
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "apk busybox-extras 1.36.1-r15 pkg:apk/alpine/busybox-extras@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1 [\"GPL-2.0-only\"] line 3",
            "apk musl 1.2.4-r2 pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1 [\"MIT\"] line 3",
            "apk zlib 1.3.1-r0 pkg:apk/alpine/zlib@1.3.1-r0?arch=x86_64&distro=alpine-3.19.1 [\"Zlib\"] line 6",
            "python Requests 2.31.0 pkg:pypi/requests@2.31.0 [\"Apache 2.0\"] line 4",
            "python six 1.16.0 pkg:pypi/six@1.16.0 [\"MIT\"] line 4",
            "npm @types/node 20.1.0 pkg:npm/%40types/node@20.1.0 [\"MIT\"] line 5",
            "npm inner 0.1.0 pkg:npm/inner@0.1.0 [] line 5",
            "npm left-pad 1.3.0 pkg:npm/left-pad@1.3.0 [\"WTFPL\"] line 5",
            "go example.com/app (devel) pkg:golang/example.com/app [] line 7",
            "go github.com/pkg/errors v0.9.1 pkg:golang/github.com/pkg/errors@v0.9.1 [] line 7",
            "go golang.org/x/sys v0.16.0 pkg:golang/golang.org/x/sys@v0.16.0 [] line 7",
        ]
    );
    assert_eq!(
        package(&inv, "musl")["files"],
        serde_json::json!(["/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1"])
    );
    assert_eq!(
        package(&inv, "Requests")["files"],
        serde_json::json!([
            "/usr/bin/req",
            "/usr/lib/python3.11/site-packages/Requests-2.31.0.dist-info/METADATA",
            "/usr/lib/python3.11/site-packages/requests/__init__.py",
            "/usr/lib/python3.11/site-packages/requests/odd,name.py",
        ])
    );
    assert_eq!(
        package(&inv, "@types/node")["files"],
        serde_json::json!(["/app/node_modules/@types/node/package.json"])
    );
    assert_eq!(
        package(&inv, "left-pad")["files"],
        serde_json::json!([
            "/app/node_modules/left-pad/index.js",
            "/app/node_modules/left-pad/package.json",
            "/app/node_modules/left-pad/test/package.json",
        ])
    );
    assert_eq!(
        package(&inv, "github.com/pkg/errors")["files"],
        serde_json::json!(["/usr/local/bin/app"])
    );
    assert_eq!(package(&inv, "github.com/pkg/errors")["source"], "go1.21.5");
    // busybox itself is no package here (nor a Go binary): its files are unowned.
    assert!(
        inv["unowned"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/bin/busybox")),
        "{:#}",
        inv["unowned"]
    );

    let table = ok(env.rbuild().args(["sbom", "langs"])).stdout;
    assert!(table.contains("Packages: 11;"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("apk ") && l.contains("zlib") && l.contains("Dockerfile:6")),
        "{table}"
    );

    let spdx = sbom_file(&env, "langs", "spdx-json");
    validate_spdx(&spdx);
    let doc: Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    let relationships = doc["relationships"].as_array().unwrap();
    assert_eq!(relationships[0]["relationshipType"], "DESCRIBES");
    assert_eq!(
        relationships
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count(),
        11
    );
    assert_eq!(
        doc["creationInfo"]["creators"][0],
        format!("Tool: rbuild-{}", env!("CARGO_PKG_VERSION"))
    );
    let cdx = sbom_file(&env, "langs", "cyclonedx-json");
    validate_cyclonedx(&cdx);
    let doc: Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    let requests = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Requests")
        .unwrap();
    assert_eq!(requests["purl"], "pkg:pypi/requests@2.31.0");
    assert_eq!(
        requests["licenses"],
        serde_json::json!([{"license": {"id": "Apache-2.0"}}])
    );
}

/// A Go program built by Debian's Go in a test stage, with a dependency vendored from
/// Debian's `golang-github-pkg-errors-dev`: the inventory of the final image lists the
/// modules `go version -m` reads from the same binary, with the binary's Go version and
/// the COPY line that brought it.
#[test]
fn a_go_binary_built_by_debians_go_lists_the_modules_go_version_reads() {
    let env = BuildEnv::new();
    let registry = Registry::start();
    DebianBase::bookworm().push(&registry, "debian:bookworm");
    env.write(
        "go.mod",
        "module example.com/app\n\ngo 1.19\n\nrequire github.com/pkg/errors v0.9.1\n",
    );
    env.write(
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/pkg/errors\"\n)\n\n\
         func main() { fmt.Println(errors.New(\"built\")) }\n",
    );
    env.dockerfile(&format!(
        "FROM {}/debian:bookworm AS build\n\
         RUN apt-get update && apt-get install -y --no-install-recommends golang-go golang-github-pkg-errors-dev\n\
         WORKDIR /src\n\
         COPY go.mod main.go ./\n\
         RUN mkdir -p vendor/github.com/pkg \
             && cp -r /usr/share/gocode/src/github.com/pkg/errors vendor/github.com/pkg/errors \
             && printf '# github.com/pkg/errors v0.9.1\\n## explicit\\ngithub.com/pkg/errors\\n' > vendor/modules.txt \
             && CGO_ENABLED=0 GOCACHE=/tmp/go-cache GOFLAGS=-mod=vendor go build -o /app . \
             && go version -m /app > /app.modules\n\
         FROM {BASE}\n\
         COPY --from=build /app /usr/local/bin/app\n\
         COPY --from=build /app.modules /app.modules\n",
        registry.host()
    ));
    env.build(&["-t", "goapp"]);
    assert_eq!(env.sh("goapp", "/usr/local/bin/app"), "built\n");

    // `go version -m`: the Go version, then `mod` (the main module) and `dep` lines.
    let modules = env.sh("goapp", "cat /app.modules");
    let go_version = modules
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .map(|(_, v)| v.trim().to_string())
        .expect("a go version line");
    assert!(go_version.starts_with("go1.19"), "{modules}");
    let mut expected: Vec<(String, String)> = modules
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.trim().split('\t').collect();
            match fields.as_slice() {
                ["mod" | "dep", path, version, ..] => Some((path.to_string(), version.to_string())),
                _ => None,
            }
        })
        .collect();
    expected.sort();
    assert_eq!(
        expected,
        [
            ("example.com/app".to_string(), "(devel)".to_string()),
            ("github.com/pkg/errors".to_string(), "v0.9.1".to_string())
        ],
        "{modules}"
    );

    let inv = inventory(&env, "goapp");
    let go: Vec<&Value> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "go")
        .collect();
    let mut listed: Vec<(String, String)> = go
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, expected);
    for p in &go {
        assert_eq!(p["source"], go_version.as_str(), "{p:#}");
        assert_eq!(
            p["files"],
            serde_json::json!(["/usr/local/bin/app"]),
            "{p:#}"
        );
        assert_eq!(line_of(&inv, p), Some(7), "{p:#}");
    }
    assert_eq!(
        package(&inv, "github.com/pkg/errors")["purl"],
        "pkg:golang/github.com/pkg/errors@v0.9.1"
    );
    validate_spdx(&sbom_file(&env, "goapp", "spdx-json"));
    validate_cyclonedx(&sbom_file(&env, "goapp", "cyclonedx-json"));
}

/// npm lockfiles of applications (`package-lock.json` version 3, `npm-shrinkwrap.json`
/// version 1) name the packages not installed beside them; installed ones are read from
/// their own `package.json` once, development dependencies and workspace links are left
/// out, and lockfiles inside `node_modules` are not read.
#[test]
fn npm_lockfiles_name_the_packages_not_installed() {
    let env = BuildEnv::new();
    write_tree(
        &env.ctx,
        &[
            (
                "app/package-lock.json",
                r#"{
  "name": "shop", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
  "packages": {
    "": {"name": "shop", "version": "1.0.0", "dependencies": {"express": "^4.18.2"}},
    "node_modules/express": {"version": "4.18.2", "license": "MIT", "resolved": "https://registry.npmjs.org/express/-/express-4.18.2.tgz"},
    "node_modules/express/node_modules/debug": {"version": "2.6.9", "license": "MIT"},
    "node_modules/@babel/core": {"version": "7.23.0", "license": "MIT"},
    "node_modules/left-pad": {"version": "1.3.0", "license": "WTFPL"},
    "node_modules/jest": {"version": "29.7.0", "dev": true},
    "node_modules/shared": {"resolved": "packages/shared", "link": true},
    "packages/shared": {"name": "shared", "version": "0.0.1"}
  }
}"#,
            ),
            (
                "app/node_modules/left-pad/package.json",
                r#"{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}"#,
            ),
            (
                "app/node_modules/left-pad/package-lock.json",
                r#"{"lockfileVersion": 3, "packages": {"node_modules/hidden": {"version": "1.0.0"}}}"#,
            ),
            (
                "app/node_modules/.package-lock.json",
                r#"{"lockfileVersion": 3, "packages": {"node_modules/mirror": {"version": "1.0.0"}}}"#,
            ),
            (
                "legacy/npm-shrinkwrap.json",
                r#"{
  "name": "legacy", "version": "0.1.0", "lockfileVersion": 1,
  "dependencies": {
    "lodash": {"version": "4.17.21"},
    "request": {"version": "2.88.2", "dependencies": {"qs": {"version": "6.5.3"}}},
    "mocha": {"version": "10.2.0", "dev": true}
  }
}"#,
            ),
        ],
    );
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY app/ /srv/app/\nCOPY legacy/ /srv/legacy/\n"
    ));
    env.build(&["-t", "locks"]);
    let inv = inventory(&env, "locks");
    let npm: Vec<String> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "npm")
        .map(|p| {
            format!(
                "{} {} {} {} {} {} line {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["purl"].as_str().unwrap(),
                p["licenses"],
                p["database"].as_str().unwrap(),
                p["files"].as_array().unwrap().len(),
                line_of(&inv, p).unwrap()
            )
        })
        .collect();
    assert_eq!(
        npm,
        [
            "@babel/core 7.23.0 pkg:npm/%40babel/core@7.23.0 [\"MIT\"] /srv/app/package-lock.json 0 line 2",
            "debug 2.6.9 pkg:npm/debug@2.6.9 [\"MIT\"] /srv/app/package-lock.json 0 line 2",
            "express 4.18.2 pkg:npm/express@4.18.2 [\"MIT\"] /srv/app/package-lock.json 0 line 2",
            "left-pad 1.3.0 pkg:npm/left-pad@1.3.0 [\"WTFPL\"] /srv/app/node_modules/left-pad/package.json 2 line 2",
            "lodash 4.17.21 pkg:npm/lodash@4.17.21 [] /srv/legacy/npm-shrinkwrap.json 0 line 3",
            "qs 6.5.3 pkg:npm/qs@6.5.3 [] /srv/legacy/npm-shrinkwrap.json 0 line 3",
            "request 2.88.2 pkg:npm/request@2.88.2 [] /srv/legacy/npm-shrinkwrap.json 0 line 3",
        ]
    );
    validate_spdx(&sbom_file(&env, "locks", "spdx-json"));
    validate_cyclonedx(&sbom_file(&env, "locks", "cyclonedx-json"));
}
