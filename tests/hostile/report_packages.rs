//! `rbuild report` on an image whose package database is hostile: a dpkg status file of
//! 100 MB. The packages section is left out with a warning naming the file and its layer;
//! the size report is written as without package databases.

use crate::limits::oci_archive;
use crate::sbom::huge_dpkg_status;
use crate::sha256;
use crate::support::{Dir, ok, rbuild};

#[test]
fn a_huge_dpkg_status_leaves_the_packages_out_of_the_report() {
    let (status, layer) = huge_dpkg_status();
    let dir = Dir::new();
    let archive = oci_archive(&dir, &[&layer]);
    let run = ok(rbuild(&dir.join("store"))
        .args(["report", "--format", "json"])
        .arg(format!("oci-archive:{}", archive.display())));
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["totals"]["final_bytes"], status.len());
    assert!(report.get("packages").is_none(), "{:#}", report["packages"]);
    let needle = format!(
        "packages not counted: /var/lib/dpkg/status (written by layer 0 ({})) is {} bytes, more than the 33554432 allowed",
        sha256(&layer.bytes),
        status.len()
    );
    assert!(run.stderr.contains(&needle), "{}", run.stderr);
}
