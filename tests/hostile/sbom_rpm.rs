//! `rbuild sbom` on images whose rpm database is hostile: a header blob whose offsets point
//! outside it, an `rpmdb.sqlite` whose `Packages` is a view, and a Berkeley DB `Packages`
//! whose overflow page chain loops. Each is a clear error naming the file, its layer and
//! the record or page; none panics or hangs.

use std::path::Path;

use crate::limits::oci_archive;
use crate::support::{Dir, fails, ok, rbuild, tool};
use crate::{Entry, gzip, sha256, tar};

/// A layer holding `var/lib/rpm/NAME`.
fn rpmdb_layer(name: &str, bytes: &[u8]) -> crate::Blob {
    gzip(&tar(&[
        Entry::dir("var"),
        Entry::dir("var/lib"),
        Entry::dir("var/lib/rpm"),
        Entry::file(&format!("var/lib/rpm/{name}"), bytes),
    ]))
}

/// Runs `rbuild sbom` on an image of one layer holding `var/lib/rpm/NAME`; it must fail
/// with `message` about that file and layer.
fn refused(name: &str, bytes: &[u8], message: &str) {
    let dir = Dir::new();
    let layer = rpmdb_layer(name, bytes);
    let archive = oci_archive(&dir, &[&layer]);
    let run = fails(
        rbuild(&dir.join("store"))
            .args(["sbom", "--format", "json"])
            .arg(format!("oci-archive:{}", archive.display())),
    );
    assert_eq!(run.stdout, "");
    let needle = format!(
        "/var/lib/rpm/{name} (written by layer 0 ({})): {message}",
        sha256(&layer.bytes)
    );
    assert!(run.stderr.contains(&needle), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// An `rpmdb.sqlite` made by the sqlite3 tool from `sql`.
fn sqlite(dir: &Path, sql: &str) -> Vec<u8> {
    let db = dir.join("rpmdb.sqlite");
    ok(tool("sqlite3", "sqlite3").arg(&db).arg(sql));
    std::fs::read(db).unwrap()
}

/// A header blob of one NAME entry whose string lies at `offset` in a 4-byte data store.
fn header_pointing_at(offset: u32) -> Vec<u8> {
    let mut blob = Vec::new();
    for n in [1u32, 4, 1000, 6, offset, 1] {
        blob.extend_from_slice(&n.to_be_bytes());
    }
    blob.extend_from_slice(b"abc\0");
    blob
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const PACKAGES_TABLE: &str =
    "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);";

#[test]
fn a_header_pointing_outside_itself_is_an_error_naming_the_record() {
    let dir = Dir::new();
    let db = sqlite(
        dir.path(),
        &format!(
            "{PACKAGES_TABLE} INSERT INTO Packages VALUES (7, x'{}');",
            hex(&header_pointing_at(100))
        ),
    );
    refused(
        "rpmdb.sqlite",
        &db,
        "package record 7: tag 1000: offset 100 is past the data store",
    );
    // The index count says more entries than the blob holds.
    let mut blob = header_pointing_at(0);
    blob[3] = 200;
    let db = sqlite(
        &dir.mkdir("second"),
        &format!(
            "{PACKAGES_TABLE} INSERT INTO Packages VALUES (8, x'{}');",
            hex(&blob)
        ),
    );
    refused(
        "rpmdb.sqlite",
        &db,
        "package record 8: header of 28 bytes is shorter than its 3212-byte index and data store",
    );
}

#[test]
fn an_rpmdb_sqlite_whose_packages_is_a_view_is_refused() {
    let dir = Dir::new();
    let db = sqlite(
        dir.path(),
        &format!(
            "CREATE TABLE real (hnum INTEGER PRIMARY KEY, blob BLOB); \
             INSERT INTO real VALUES (1, x'{}'); \
             CREATE VIEW Packages AS SELECT * FROM real;",
            hex(&header_pointing_at(0))
        ),
    );
    refused(
        "rpmdb.sqlite",
        &db,
        "sqlite: Packages is a view (root page 0), not a table",
    );
}

#[test]
fn a_berkeley_db_overflow_chain_that_loops_is_an_error() {
    // A real hash database from db5.3_load: one record of 10000 bytes, on a chain of three
    // 4 kB overflow pages.
    let dir = Dir::new();
    let dump = format!(
        "VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=4096\nHEADER=END\n {}\n {}\nDATA=END\n",
        hex(&1u32.to_ne_bytes()),
        hex(&vec![0x5a; 10_000])
    );
    let dump_file = dir.write("dump", dump);
    let file = dir.join("Packages");
    ok(tool("db5.3_load", "db-util")
        .args(["-t", "hash", "-f"])
        .arg(&dump_file)
        .arg(&file));
    let mut bytes = std::fs::read(&file).unwrap();
    let overflow: Vec<usize> = (0..bytes.len() / 4096)
        .filter(|p| bytes[p * 4096 + 25] == 7)
        .collect();
    assert_eq!(overflow.len(), 3, "{overflow:?}");
    // The middle page of the chain holds nothing and leads to itself: without a bound on
    // the pages visited, reading would never end.
    let first = overflow
        .iter()
        .find(|p| !overflow.iter().any(|q| next(&bytes, *q) == **p as u32))
        .copied()
        .unwrap();
    let middle = next(&bytes, first) as usize;
    let page = middle * 4096;
    bytes[page + 16..page + 20].copy_from_slice(&(middle as u32).to_ne_bytes());
    bytes[page + 22..page + 24].copy_from_slice(&0u16.to_ne_bytes());
    // The error names the hash page holding the record.
    let bucket = (1..bytes.len() / 4096)
        .find(|p| bytes[p * 4096 + 25] == 13 && bytes[p * 4096 + 20..p * 4096 + 22] != [0, 0])
        .unwrap();
    refused(
        "Packages",
        &bytes,
        &format!("page {bucket}: overflow chain loops"),
    );
}

/// The next page of a page of a little- or big-endian (the machine's) database.
fn next(bytes: &[u8], page: usize) -> u32 {
    let at = page * 4096 + 16;
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
}
