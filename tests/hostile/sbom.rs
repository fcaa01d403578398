//! `rbuild sbom` on images whose package databases are hostile: a dpkg status file of
//! 100 MB, a `.list` naming paths above the root, and a /var/lib/dpkg linked to a directory
//! of the machine that holds a status file of its own. The inventory stays bounded, names
//! what it refuses, and reads nothing but the image's layers.

use std::path::Path;

use crate::limits::oci_archive;
use crate::support::{Dir, fails, ok, rbuild};
use crate::{Blob, Entry, gzip, sha256, tar};

/// A status paragraph of an installed package.
fn installed(name: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\
         Description: test\n\n"
    )
}

fn sbom(root: &Path, archive: &Path) -> std::process::Command {
    let mut cmd = rbuild(root);
    cmd.args(["sbom", "--format", "json"])
        .arg(format!("oci-archive:{}", archive.display()));
    cmd
}

/// A layer holding a dpkg status file of 100 MB, and that file.
pub(crate) fn huge_dpkg_status() -> (String, Blob) {
    let mut status = String::with_capacity(100 << 20);
    let mut n = 0;
    while status.len() < 100 << 20 {
        status.push_str(&installed(&format!("pkg{n}")));
        n += 1;
    }
    let layer = gzip(&tar(&[
        Entry::dir("var"),
        Entry::dir("var/lib"),
        Entry::dir("var/lib/dpkg"),
        Entry::file("var/lib/dpkg/status", status.as_bytes()),
    ]));
    (status, layer)
}

#[test]
fn a_huge_dpkg_status_is_refused_naming_it_and_its_layer() {
    let (status, layer) = huge_dpkg_status();
    let dir = Dir::new();
    let archive = oci_archive(&dir, &[&layer]);
    let run = fails(&mut sbom(&dir.join("store"), &archive));
    assert_eq!(run.stdout, "");
    let needle = format!(
        "/var/lib/dpkg/status (written by layer 0 ({})) is {} bytes, more than the 33554432 allowed",
        sha256(&layer.bytes),
        status.len()
    );
    assert!(run.stderr.contains(&needle), "{}", run.stderr);
}

#[test]
fn list_paths_above_the_root_are_left_out() {
    let layer = gzip(&tar(&[
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/tool", b"#!/bin/sh\n"),
        Entry::dir("var"),
        Entry::dir("var/lib"),
        Entry::dir("var/lib/dpkg"),
        Entry::dir("var/lib/dpkg/info"),
        Entry::file("var/lib/dpkg/status", installed("tool").as_bytes()),
        Entry::file(
            "var/lib/dpkg/info/tool.list",
            b"/.\n/usr\n/usr/bin\n/usr/bin/tool\n/../../etc/passwd\n/usr/../../../etc/shadow\n",
        ),
    ]));
    let dir = Dir::new();
    let archive = oci_archive(&dir, &[&layer]);
    let run = ok(&mut sbom(&dir.join("store"), &archive));
    let inv: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(inv["packages"][0]["name"], "tool");
    assert_eq!(
        inv["packages"][0]["files"],
        serde_json::json!(["/usr/bin/tool"])
    );
    assert!(
        run.stderr
            .contains("\"/../../etc/passwd\" is outside the image: left out"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_dpkg_directory_linked_out_of_the_root_is_read_inside_the_image() {
    // The machine has a dpkg directory at HOST/dpkg; the image links /var/lib/dpkg to it,
    // once by an absolute target and once by climbing with `..`, and has a directory of its
    // own at that path (inside the image).
    let host = Dir::new();
    let host_dpkg = host.mkdir("dpkg");
    std::fs::write(host_dpkg.join("status"), installed("from-the-machine")).unwrap();
    let inside = host_dpkg
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let climbing = format!("../../../../../../..{}", host_dpkg.display());
    for target in [host_dpkg.to_str().unwrap(), climbing.as_str()] {
        let mut entries = vec![Entry::dir("var"), Entry::dir("var/lib")];
        let mut path = String::new();
        for part in inside.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            entries.push(Entry::dir(&path));
        }
        entries.push(Entry::file(
            &format!("{inside}/status"),
            installed("from-the-image").as_bytes(),
        ));
        entries.push(Entry::symlink("var/lib/dpkg", target));
        let layer = gzip(&tar(&entries));
        let dir = Dir::new();
        let archive = oci_archive(&dir, &[&layer]);
        let run = ok(&mut sbom(&dir.join("store"), &archive));
        let inv: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        let names: Vec<&str> = inv["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["from-the-image"], "link to {target}");
        assert_eq!(inv["packages"][0]["database"], format!("/{inside}/status"));
    }
}
