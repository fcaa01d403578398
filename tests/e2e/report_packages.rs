//! `rbuild report`'s packages section and package findings: a Debian image built with
//! apt-get, its package bytes checked against the file system unpacked by `-o type=local`
//! (and dpkg's Installed-Size), and a busybox image carrying an apk database written by hand.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use rbuild_test_support::{DebianBase, Registry};
use serde_json::Value;

use crate::report::{chromium, content};
use crate::support::{BASE, BuildEnv, ok};

const MIB: u64 = 1024 * 1024;

fn report(env: &BuildEnv, image: &str, format: &str) -> String {
    ok(env
        .rbuild()
        .args(["report", "--top", "1000", "--format", format, image]))
    .stdout
}

fn report_json(env: &BuildEnv, image: &str) -> Value {
    serde_json::from_str(&report(env, image, "json")).expect("report json")
}

/// The packages section's entry for `name`.
fn package<'v>(report: &'v Value, name: &str) -> &'v Value {
    report["packages"]["largest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in {:#}", report["packages"]))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The regular file `path` (absolute, of the image) names in the unpacked `rootfs`: the
/// directories on the way resolved inside it (Debian's links there are relative), the last
/// component not followed.
fn regular_file(rootfs: &Path, path: &str) -> Option<std::fs::Metadata> {
    let root = std::fs::canonicalize(rootfs).unwrap();
    let path = Path::new(path.trim_start_matches('/'));
    let parent = std::fs::canonicalize(root.join(path.parent()?)).ok()?;
    assert!(
        parent.starts_with(&root),
        "{} leads out of the image",
        path.display()
    );
    let meta = std::fs::symlink_metadata(parent.join(path.file_name()?)).ok()?;
    meta.is_file().then_some(meta)
}

/// The regular files that `listed` (absolute paths of the image) name in the unpacked
/// `rootfs`, each once (a hard link is the file it links): (bytes, files).
fn listed_size(rootfs: &Path, listed: &[String]) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut bytes, mut files) = (0, 0);
    for meta in listed.iter().filter_map(|p| regular_file(rootfs, p)) {
        if seen.insert((meta.dev(), meta.ino())) {
            bytes += meta.len();
            files += 1;
        }
    }
    (bytes, files)
}

/// Whether `path` of the image names a regular file of `rootfs` not in `claimed`; claims it.
fn claimed_once(rootfs: &Path, path: &str, claimed: &mut HashSet<(u64, u64)>) -> bool {
    regular_file(rootfs, path).is_some_and(|meta| claimed.insert((meta.dev(), meta.ino())))
}

#[test]
fn debian_package_bytes_match_the_unpacked_image() {
    let env = BuildEnv::new();
    let registry = Registry::start();
    DebianBase::bookworm().push(&registry, "debian:bookworm");
    env.dockerfile(&format!(
        "FROM {}/debian:bookworm\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello jq gcc\n",
        registry.host()
    ));
    env.build(&["-t", "apt"]);
    let local = env.dir.join("rootfs");
    ok(&mut env.build_cmd(&["-o", &format!("type=local,dest={}", local.display())]));
    let admin = local.join("var/lib/dpkg");
    let installed = ok(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", "${Package} ${Installed-Size}\\n"]))
    .stdout;
    let installed: BTreeMap<&str, u64> = installed
        .lines()
        .map(|l| {
            let (name, kib) = l.split_once(' ').unwrap();
            (name, kib.parse().unwrap())
        })
        .collect();

    let r = report_json(&env, "apt");
    let section = &r["packages"];
    assert_eq!(u(&section["count"]), installed.len() as u64, "{section:#}");
    // Every byte of the final file system is some package's or no package's.
    let listed: u64 = section["largest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| u(&p["bytes"]))
        .sum();
    assert_eq!(u(&section["owned_bytes"]), listed);
    assert_eq!(
        listed + u(&section["unowned_bytes"]),
        u(&r["totals"]["final_bytes"])
    );
    // A file several packages list (gcc-12 and gcc-12-base share documentation) is the
    // first's in the status file.
    let status = std::fs::read_to_string(admin.join("status")).unwrap();
    let mut claimed = HashSet::new();
    let mut expected = BTreeMap::new();
    for name in status.lines().filter_map(|l| l.strip_prefix("Package: ")) {
        let list = std::fs::read_to_string(admin.join(format!("info/{name}.list")))
            .or_else(|_| std::fs::read_to_string(admin.join(format!("info/{name}:amd64.list"))))
            .unwrap_or_default();
        let mine: Vec<String> = list
            .lines()
            .filter(|path| claimed_once(&local, path, &mut claimed))
            .map(str::to_string)
            .collect();
        expected.insert(name, listed_size(&local, &mine));
    }
    for name in ["hello", "jq", "gcc-12", "cpp-12"] {
        let p = package(&r, name);
        let (bytes, files) = expected[name];
        assert_eq!((u(&p["bytes"]), u(&p["files"])), (bytes, files), "{p:#}");
        // dpkg's estimate rounds every file up to a KiB: the same order of magnitude.
        let kib = installed[name];
        assert!(
            bytes / 1024 <= kib * 2 && bytes / 1024 >= kib / 4,
            "{name}: {bytes} bytes, Installed-Size {kib} KiB"
        );
        assert_eq!(p["ecosystem"], "deb");
        assert_eq!(p["dockerfile_line"], 2, "{p:#}");
        assert!(
            p["instruction"]
                .as_str()
                .unwrap()
                .contains("apt-get install -y --no-install-recommends hello jq gcc"),
            "{p:#}"
        );
    }
    assert_eq!(package(&r, "bash")["layer"], 0);
    assert!(u(&package(&r, "cpp-12")["bytes"]) > 10 * MIB);

    let text = report(&env, "apt", "text");
    let gcc = package(&r, "gcc-12");
    let line = format!(
        "gcc-12 {}  from `RUN /bin/sh -c apt-get update && apt-get install -y --no-in…` (line 2, layer 1)",
        gcc["version"].as_str().unwrap()
    );
    assert!(text.contains("\nPackages ("), "{text}");
    // The compilers are findings that name their packages; the files they own are not
    // reported again by path.
    let messages: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "toolchain")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    let gcc_finding = format!(
        "gcc-12 {} ({}, {} files) added by layer 1 (Dockerfile line 2)",
        gcc["version"].as_str().unwrap(),
        rbuild_options::size::image(u(&gcc["bytes"])),
        gcc["files"]
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(&gcc_finding) && m.ends_with("is a compiler")),
        "{gcc_finding}\n{messages:#?}"
    );
    assert!(
        !messages.iter().any(|m| m.contains("the GCC compiler")),
        "{messages:#?}"
    );
    assert!(text.contains(&line), "{line}\n{text}");
}

/// The apk database of the busybox image: two packages sharing a file, a compiler, a
/// documentation package.
const APK_DB: &str = "P:tools\nV:1.0-r0\nA:x86_64\nF:opt/tools\nR:a\nR:shared\n\n\
     P:tools-doc\nV:1.0-r0\nA:x86_64\nF:opt/tools\nR:shared\nF:usr/share/doc/tools\nR:manual.html\n\n\
     P:gcc\nV:13.2.1_git20231014-r0\nA:x86_64\nF:usr/libexec/gcc/x86_64-alpine-linux-musl/13\nR:cc1\n\n";

#[test]
fn busybox_package_bytes_and_findings_name_packages() {
    let env = BuildEnv::new();
    env.write("apk/installed", APK_DB);
    env.write("tools/a", content(1, 300_000));
    env.write("tools/shared", content(2, 1000));
    env.write("loose", content(3, 5000));
    env.write("manual.html", content(4, 5 * MIB));
    env.write("cc1", content(5, 3 * MIB));
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         COPY apk/ /lib/apk/db/\n\
         COPY tools/ /opt/tools/\n\
         COPY loose /opt/loose\n\
         COPY manual.html /usr/share/doc/tools/manual.html\n\
         COPY cc1 /usr/libexec/gcc/x86_64-alpine-linux-musl/13/cc1\n"
    ));
    env.build(&["-t", "apk"]);
    let local = env.dir.join("rootfs");
    ok(&mut env.build_cmd(&["-o", &format!("type=local,dest={}", local.display())]));
    let r = report_json(&env, "apk");
    let summary: Vec<String> = r["packages"]["largest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {} bytes {} files line {}",
                p["ecosystem"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["bytes"],
                p["files"],
                p["dockerfile_line"]
            )
        })
        .collect();
    // The file both list is the first's (tools); the packages came with the database on
    // line 2.
    assert_eq!(
        summary,
        [
            format!("apk tools-doc 1.0-r0 {} bytes 1 files line 2", 5 * MIB),
            format!(
                "apk gcc 13.2.1_git20231014-r0 {} bytes 1 files line 2",
                3 * MIB
            ),
            "apk tools 1.0-r0 301000 bytes 2 files line 2".to_string(),
        ]
    );
    // No package lists busybox, the base's files or /opt/loose.
    let mut all = Vec::new();
    let mut pending = vec![local.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                all.push(format!(
                    "/{}",
                    entry.path().strip_prefix(&local).unwrap().display()
                ));
            }
        }
    }
    let owned = [
        "/opt/tools/a",
        "/opt/tools/shared",
        "/usr/share/doc/tools/manual.html",
    ];
    let unowned: Vec<String> = all
        .into_iter()
        .filter(|p| !owned.contains(&p.as_str()) && !p.ends_with("/cc1"))
        .collect();
    let (bytes, files) = listed_size(&local, &unowned);
    assert_eq!(u(&r["packages"]["unowned_bytes"]), bytes);
    assert_eq!(u(&r["packages"]["unowned_files"]), files);
    assert_eq!(u(&r["packages"]["count"]), 3);

    // The compiler is named by its package, once: no finding of the same bytes by path.
    let findings: Vec<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "toolchain" || f["kind"] == "docs")
        .map(|f| {
            format!(
                "{}: {} | {}",
                f["kind"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
                f["fix"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        findings,
        [
            "toolchain: gcc 13.2.1_git20231014-r0 (3.15MB, 1 files) added by layer 1 (Dockerfile line 2) `COPY apk/ /lib/apk/db/` is a compiler | build in a separate stage (`FROM ... AS build`) and COPY --from=build only the artifacts into the final stage, which does not install `gcc`",
            "docs: 5.24MB of documentation, manual pages and translations (1 files) in layer 4 (Dockerfile line 5) `COPY manual.html /usr/share/doc/tools/manual.html`, most from tools-doc 5.24MB | keep them out of the install: for apt, a `/etc/dpkg/dpkg.cfg.d/` file with `path-exclude=/usr/share/doc/*`, `path-exclude=/usr/share/man/*`, `path-exclude=/usr/share/locale/*` (and `path-include=/usr/share/doc/*/copyright`) before `apt-get install`; or delete them in the same RUN that installs them",
        ],
        "{:#}",
        r["findings"]
    );

    // The HTML treemap colours by package on request; each cell names its package.
    let html = env.dir.join("report.html");
    ok(env
        .rbuild()
        .args(["report", "apk", "--format", "html", "-o"])
        .arg(&html));
    for (hash, colour) in [("", "layer"), ("#by=package", "package")] {
        let url = format!("file://{}{hash}", html.display());
        let profile = env.dir.join(format!("profile-{colour}"));
        let dom = ok(chromium(&profile).args(["--dump-dom", &url])).stdout;
        assert!(
            dom.contains("data-ok=\"1\""),
            "{}",
            &dom[..dom.len().min(2000)]
        );
        assert!(
            dom.contains(&format!("data-colour=\"{colour}\"")),
            "{colour}"
        );
        assert!(
            dom.contains(
                "data-path=\"/usr/share/doc/tools/manual.html\" data-layer=\"4\" data-package=\"tools-doc 1.0-r0\""
            ),
            "{}",
            &dom[..dom.len().min(4000)]
        );
    }

    // The next version: tools upgraded, tools-doc gone, zlib new.
    env.write(
        "apk/installed",
        APK_DB
            .replace("P:tools\nV:1.0-r0", "P:tools\nV:1.1-r0")
            .replace("P:tools-doc\nV:1.0-r0\nA:x86_64\nF:opt/tools\nR:shared\nF:usr/share/doc/tools\nR:manual.html\n\n", "")
            + "P:zlib\nV:1.3.1-r0\nA:x86_64\nF:lib\nR:libz.so.1\n\n",
    );
    env.write("tools/a", content(1, 200_000));
    env.write("libz.so.1", content(6, 100_000));
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         COPY apk/ /lib/apk/db/\n\
         COPY tools/ /opt/tools/\n\
         COPY loose /opt/loose\n\
         COPY libz.so.1 /lib/libz.so.1\n\
         COPY cc1 /usr/libexec/gcc/x86_64-alpine-linux-musl/13/cc1\n"
    ));
    env.build(&["-t", "apk:2"]);
    let diff: Value = serde_json::from_str(
        &ok(env
            .rbuild()
            .args(["report", "--diff", "--format", "json", "apk", "apk:2"]))
        .stdout,
    )
    .unwrap();
    let changes: Vec<String> = diff["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} -> {} {} -> {} ({})",
                p["status"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["old_version"],
                p["new_version"],
                p["old_bytes"],
                p["new_bytes"],
                p["delta"]
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            format!(
                "removed tools-doc \"1.0-r0\" -> null {} -> 0 (-{})",
                5 * MIB,
                5 * MIB
            ),
            "upgraded tools \"1.0-r0\" -> \"1.1-r0\" 301000 -> 201000 (-100000)".to_string(),
            "added zlib null -> \"1.3.1-r0\" 0 -> 100000 (100000)".to_string(),
        ]
    );
    let text = ok(env.rbuild().args(["report", "--diff", "apk", "apk:2"])).stdout;
    assert!(
        text.contains("\nPackages\n  -    -5.24MB  tools-doc 1.0-r0  (5.24MB -> 0B)\n  ~     -100kB  tools 1.0-r0 -> 1.1-r0  (301kB -> 201kB)\n  +     +100kB  zlib 1.3.1-r0  (0B -> 100kB)\n"),
        "{text}"
    );
}
