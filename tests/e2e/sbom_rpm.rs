//! `rbuild sbom` and `rbuild report` on busybox images carrying an rpm database: packages
//! built with `rpmbuild` and installed with `rpm --root` into a tree the image copies in two
//! layers, the inventory compared with what `rpm -qa` reads from the same tree; the same
//! headers loaded by `db5.3_load` into a Berkeley DB `Packages` file (rpm before 4.16) give
//! the same inventory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{BASE, BuildEnv, ok, tool, validate_spdx};

/// A spec file: name, epoch, licence, architecture, and files as (path, content).
fn spec(
    name: &str,
    epoch: Option<u32>,
    license: &str,
    arch: &str,
    files: &[(&str, &str)],
) -> String {
    let mut install = String::new();
    let mut listed = String::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (path, content) in files {
        let dir = Path::new(path).parent().unwrap().display().to_string();
        if dirs.insert(dir.clone()) {
            install.push_str(&format!("mkdir -p %{{buildroot}}{dir}\n"));
            listed.push_str(&format!("%dir {dir}\n"));
        }
        install.push_str(&format!("printf '{content}' > %{{buildroot}}{path}\n"));
        listed.push_str(&format!("{path}\n"));
    }
    format!(
        "Name: {name}\nVersion: 2.1\nRelease: 3.fc40\n{}Summary: test\nLicense: {license}\n\
         BuildArch: {arch}\n%description\ntest\n%install\n{install}%files\n{listed}",
        epoch.map_or(String::new(), |e| format!("Epoch: {e}\n"))
    )
}

/// Builds the package of `spec` with rpmbuild under `top`; returns its path.
fn rpmbuild(top: &Path, name: &str, spec: &str) -> std::path::PathBuf {
    let file = top.join(format!("{name}.spec"));
    std::fs::create_dir_all(top).unwrap();
    std::fs::write(&file, spec).unwrap();
    ok(tool("rpmbuild", "rpm")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(&file));
    let mut found = Vec::new();
    for arch in std::fs::read_dir(top.join("RPMS")).unwrap() {
        for rpm in std::fs::read_dir(arch.unwrap().path()).unwrap() {
            let rpm = rpm.unwrap().path();
            if rpm
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{name}-"))
            {
                found.push(rpm);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

fn rpm(root: &Path) -> Command {
    let mut cmd = tool("rpm", "rpm");
    cmd.arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"]);
    cmd
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    ok(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to));
}

/// `rpm -qa` of the tree: "NAME EVR ARCH LICENSE SOURCERPM" per package, and each
/// package's files that are not directories of the tree.
fn rpm_query(root: &Path) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let out = ok(rpm(root).args([
        "-qa",
        "--qf",
        "%{NAME} %{EVR} %{ARCH} %{LICENSE} %{SOURCERPM}\\n",
    ]))
    .stdout;
    let mut packages: Vec<String> = out.lines().map(str::to_string).collect();
    packages.sort();
    let out = ok(rpm(root).args(["-qa", "--qf", "[%{=NAME} %{FILENAMES}\\n]"])).stdout;
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let (name, path) = line.split_once(' ').unwrap();
        let on_disk = root.join(path.trim_start_matches('/'));
        if !std::fs::symlink_metadata(&on_disk).unwrap().is_dir() {
            files
                .entry(name.to_string())
                .or_default()
                .push(path.to_string());
        }
    }
    for list in files.values_mut() {
        list.sort();
    }
    (packages, files)
}

/// The rpm packages of an inventory, as `rpm_query` gives them.
fn listed(inv: &Value) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let rpms: Vec<&Value> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "rpm")
        .collect();
    let mut packages: Vec<String> = rpms
        .iter()
        .map(|p| {
            let licenses: Vec<&str> = p["licenses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            format!(
                "{} {} {} {} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                licenses.join(" "),
                p["source"].as_str().unwrap()
            )
        })
        .collect();
    packages.sort();
    let files = rpms
        .iter()
        .map(|p| {
            let files = p["files"].as_array().unwrap();
            (
                p["name"].as_str().unwrap().to_string(),
                files
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    (packages, files)
}

fn inventory(env: &BuildEnv, image: &str) -> Value {
    serde_json::from_str(&ok(env.rbuild().args(["sbom", "--format", "json", image])).stdout)
        .expect("sbom json")
}

/// The Dockerfile line of the layer that added each rpm package.
fn lines(inv: &Value) -> Vec<String> {
    let mut out: Vec<String> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "rpm")
        .map(|p| {
            let layer = &inv["layers"][p["layer"].as_u64().unwrap() as usize];
            format!(
                "{} {} line {}",
                p["name"].as_str().unwrap(),
                p["database"].as_str().unwrap(),
                layer["dockerfile_line"]
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn rpm_inventory_matches_rpm_query_for_sqlite_and_berkeley_db() {
    let env = BuildEnv::new();
    let top = env.dir.join("rpmbuild");
    let hello = rpmbuild(
        &top,
        "hello",
        &spec(
            "hello",
            Some(1),
            "MIT AND GPL-2.0-or-later",
            "x86_64",
            &[
                ("/usr/bin/hello", "hi\\n"),
                ("/usr/share/hello/README", "read me\\n"),
            ],
        ),
    );
    // Enough files that world's header spans several Berkeley DB overflow pages.
    let bulk: Vec<String> = (0..200)
        .map(|i| format!("/usr/share/world/data-file-{i:03}.txt"))
        .collect();
    let mut world_files = vec![
        ("/usr/bin/world", "world\\n"),
        ("/usr/share/world/data.txt", "data\\n"),
    ];
    world_files.extend(bulk.iter().map(|p| (p.as_str(), "x")));
    let world = rpmbuild(
        &top,
        "world",
        &spec("world", None, "Apache-2.0", "x86_64", &world_files),
    );
    let notes = rpmbuild(
        &top,
        "notes",
        &spec(
            "notes",
            Some(0),
            "CC0-1.0",
            "noarch",
            &[("/usr/share/notes/a.txt", "a\\n")],
        ),
    );

    // Layer 1 holds hello; layer 2 adds world and notes.
    let rootfs = env.dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/os-release"), "ID=fedora\nVERSION_ID=40\n").unwrap();
    let install = |rpms: &[&Path]| {
        ok(rpm(&rootfs)
            .args(["-i", "--nodeps", "--nosignature"])
            .args(rpms));
    };
    install(&[&hello]);
    copy_tree(&rootfs, &env.ctx.join("layer1"));
    install(&[&world, &notes]);
    copy_tree(&rootfs, &env.ctx.join("layer2"));
    assert!(rootfs.join("var/lib/rpm/rpmdb.sqlite").is_file());
    let (expected, expected_files) = rpm_query(&rootfs);
    assert_eq!(expected.len(), 3, "{expected:?}");

    env.dockerfile(&format!("FROM {BASE}\nCOPY layer1/ /\nCOPY layer2/ /\n"));
    env.build(&["-t", "rpm"]);
    let inv = inventory(&env, "rpm");
    assert_eq!(listed(&inv), (expected.clone(), expected_files.clone()));
    assert_eq!(
        lines(&inv),
        [
            "hello /var/lib/rpm/rpmdb.sqlite line 2",
            "notes /var/lib/rpm/rpmdb.sqlite line 3",
            "world /var/lib/rpm/rpmdb.sqlite line 3",
        ]
    );
    let purls: Vec<&str> = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["purl"].as_str().unwrap())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:rpm/fedora/hello@2.1-3.fc40?arch=x86_64&distro=fedora-40&epoch=1",
            "pkg:rpm/fedora/notes@2.1-3.fc40?arch=noarch&distro=fedora-40&epoch=0",
            "pkg:rpm/fedora/world@2.1-3.fc40?arch=x86_64&distro=fedora-40",
        ]
    );

    // The SBOM documents of the image pass the reference validators.
    let spdx = env.dir.join("rpm.spdx.json");
    ok(env
        .rbuild()
        .args(["sbom", "--format", "spdx-json", "-o"])
        .arg(&spdx)
        .arg("rpm"));
    validate_spdx(&spdx);
    let cdx = env.dir.join("rpm.cdx.json");
    ok(env
        .rbuild()
        .args(["sbom", "--format", "cyclonedx-json", "-o"])
        .arg(&cdx)
        .arg("rpm"));
    crate::sbom::validate_cyclonedx(&cdx);

    // The same headers in a Berkeley DB hash file, keyed by package number in the machine's
    // byte order, as rpm before 4.16 kept them.
    let rows = ok(tool("sqlite3", "sqlite3")
        .arg(rootfs.join("var/lib/rpm/rpmdb.sqlite"))
        .arg("SELECT hnum, lower(hex(blob)) FROM Packages ORDER BY hnum"))
    .stdout;
    let mut dump = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    for row in rows.lines() {
        let (hnum, blob) = row.split_once('|').unwrap();
        let key: u32 = hnum.parse().unwrap();
        let key: String = key
            .to_ne_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        dump.push_str(&format!(" {key}\n {blob}\n"));
    }
    dump.push_str("DATA=END\n");
    // world's header is stored on a chain of several 4 kB overflow pages.
    assert!(rows.lines().any(|r| r.len() > 4 * 4096), "{rows}");
    let bdb = env.ctx.join("bdb");
    copy_tree(&env.ctx.join("layer2"), &bdb);
    for name in ["rpmdb.sqlite", "rpmdb.sqlite-wal", "rpmdb.sqlite-shm"] {
        let _ = std::fs::remove_file(bdb.join("var/lib/rpm").join(name));
    }
    let dump_file = env.dir.join("packages.dump");
    std::fs::write(&dump_file, dump).unwrap();
    ok(tool("db5.3_load", "db-util")
        .args(["-t", "hash", "-f"])
        .arg(&dump_file)
        .arg(bdb.join("var/lib/rpm/Packages")));
    env.dockerfile(&format!("FROM {BASE}\nCOPY bdb/ /\n"));
    env.build(&["-t", "rpm-bdb"]);
    let inv = inventory(&env, "rpm-bdb");
    assert_eq!(listed(&inv), (expected, expected_files));
    assert_eq!(
        lines(&inv),
        [
            "hello /var/lib/rpm/Packages line 2",
            "notes /var/lib/rpm/Packages line 2",
            "world /var/lib/rpm/Packages line 2",
        ]
    );

    // `rbuild report`: the packages section counts them, and --diff against the image of
    // layer 1 alone names the two added.
    env.dockerfile(&format!("FROM {BASE}\nCOPY layer1/ /\n"));
    env.build(&["-t", "rpm:1"]);
    let report: Value =
        serde_json::from_str(&ok(env.rbuild().args(["report", "--format", "json", "rpm"])).stdout)
            .unwrap();
    assert_eq!(report["packages"]["count"], 3, "{:#}", report["packages"]);
    let diff: Value = serde_json::from_str(
        &ok(env
            .rbuild()
            .args(["report", "--diff", "--format", "json", "rpm:1", "rpm"]))
        .stdout,
    )
    .unwrap();
    let changes: Vec<String> = diff["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p["status"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["new_version"],
                p["new_bytes"]
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "added world \"2.1-3.fc40\" 211",
            "added notes \"0:2.1-3.fc40\" 2",
        ]
    );
}
