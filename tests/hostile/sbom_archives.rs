//! `rbuild sbom` on hostile Java archives and Rust executables: a jar whose metadata and
//! nested jar are deflate bombs, a jar with 250,000 entries, jars nested three deep, and
//! executables whose `.dep-v0` section (added with binutils' `objcopy`) inflates to 64 MiB
//! or names dependencies past the end of its list. The inventory skips what it cannot read,
//! with a warning naming it, and still lists the good archive beside it; nothing panics.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::limits::oci_archive;
use crate::support::{Dir, ok, rbuild};
use crate::{Entry, gzip, tar};

/// One zip entry: its name, its bytes once inflated, and whether to deflate them.
struct ZipEntry<'a> {
    name: &'a str,
    data: &'a [u8],
    deflate: bool,
}

fn deflated(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A zip archive, written field by field (APPNOTE 4.3): local headers, the central
/// directory, its end record.
fn zip(entries: &[ZipEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let mut crc = flate2::Crc::new();
        crc.update(e.data);
        let body = if e.deflate {
            deflated(e.data)
        } else {
            e.data.to_vec()
        };
        let method: u16 = if e.deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        let fields = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(&sig.to_le_bytes());
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&method.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes()); // time, date
            h.extend_from_slice(&crc.sum().to_le_bytes());
            h.extend_from_slice(&(body.len() as u32).to_le_bytes());
            h.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                h.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
                h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(e.name.as_bytes());
            h
        };
        out.extend_from_slice(&fields(0x0403_4b50, false));
        out.extend_from_slice(&body);
        central.extend_from_slice(&fields(0x0201_4b50, true));
    }
    let start = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disks
    let count = entries.len().min(0xffff) as u16;
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out
}

/// A jar holding one `pom.properties` for `group:artifact:1.0`, and `more` entries.
fn jar(group: &str, artifact: &str, more: &[ZipEntry<'_>]) -> Vec<u8> {
    let name = format!("META-INF/maven/{group}/{artifact}/pom.properties");
    let pom = format!("groupId={group}\nartifactId={artifact}\nversion=1.0\n");
    let mut entries = vec![ZipEntry {
        name: &name,
        data: pom.as_bytes(),
        deflate: true,
    }];
    entries.extend(more.iter().map(|e| ZipEntry { ..*e }));
    zip(&entries)
}

/// `rbuild sbom --format json` of an image of one layer holding `files` (path, bytes, mode):
/// the inventory's packages as `ecosystem name database` lines, and stderr.
fn inventory(files: &[(&str, &[u8], u32)]) -> (Vec<String>, String) {
    let mut entries = vec![Entry::dir("app")];
    for (path, data, mode) in files {
        let mut e = Entry::file(path, data);
        e.mode = *mode;
        entries.push(e);
    }
    let layer = gzip(&tar(&entries));
    let dir = Dir::new();
    let archive = oci_archive(&dir, &[&layer]);
    let started = Instant::now();
    let run = ok(rbuild(&dir.join("store"))
        .args(["sbom", "--format", "json"])
        .arg(format!("oci-archive:{}", archive.display())));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let inv: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let packages = inv["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p["ecosystem"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["database"].as_str().unwrap()
            )
        })
        .collect();
    (packages, run.stderr)
}

#[test]
fn java_archive_bombs_are_skipped_naming_the_entry() {
    let zeros = vec![0u8; 256 << 20];
    // Metadata that inflates to 16 MiB, and a nested jar that inflates to 256 MiB.
    let pom_bomb = zip(&[ZipEntry {
        name: "META-INF/maven/g/bomb/pom.properties",
        data: &zeros[..16 << 20],
        deflate: true,
    }]);
    let nested_bomb = jar(
        "g",
        "outer",
        &[ZipEntry {
            name: "WEB-INF/lib/inner.jar",
            data: &zeros,
            deflate: true,
        }],
    );
    assert!(
        pom_bomb.len() < 4 << 20 && nested_bomb.len() < 4 << 20,
        "{} {}",
        pom_bomb.len(),
        nested_bomb.len()
    );
    let good = jar("g", "good", &[]);
    let (packages, stderr) = inventory(&[
        ("app/pom-bomb.jar", &pom_bomb, 0o644),
        ("app/nested-bomb.war", &nested_bomb, 0o644),
        ("app/good.jar", &good, 0o644),
    ]);
    assert_eq!(
        packages,
        ["java good /app/good.jar", "java outer /app/nested-bomb.war"]
    );
    for needle in [
        "/app/pom-bomb.jar!/META-INF/maven/g/bomb/pom.properties: decompresses to more than 1048576 bytes",
        "/app/nested-bomb.war!/WEB-INF/lib/inner.jar: decompresses to more than 67108864 bytes",
    ] {
        assert!(stderr.contains(needle), "{needle}\n{stderr}");
    }
}

#[test]
fn a_java_archive_of_250000_entries_is_skipped() {
    let names: Vec<String> = (0..250_000).map(|i| format!("c/{i}")).collect();
    let entries: Vec<ZipEntry<'_>> = names
        .iter()
        .map(|n| ZipEntry {
            name: n,
            data: b"",
            deflate: false,
        })
        .collect();
    let crowded = jar("g", "crowded", &entries);
    let good = jar("g", "good", &[]);
    let (packages, stderr) = inventory(&[
        ("app/crowded.jar", &crowded, 0o644),
        ("app/good.jar", &good, 0o644),
    ]);
    assert_eq!(packages, ["java good /app/good.jar"]);
    assert!(
        stderr.contains("/app/crowded.jar: more than 200000 entries"),
        "{stderr}"
    );
}

#[test]
fn nested_java_archives_are_read_one_level_deep() {
    let inner = jar("g", "inner", &[]);
    let middle = jar(
        "g",
        "middle",
        &[ZipEntry {
            name: "lib/inner.jar",
            data: &inner,
            deflate: false,
        }],
    );
    let outer = jar(
        "g",
        "outer",
        &[ZipEntry {
            name: "lib/middle.jar",
            data: &middle,
            deflate: true,
        }],
    );
    // Not a zip at all, beside them.
    let (packages, stderr) = inventory(&[
        ("app/outer.ear", &outer, 0o644),
        ("app/broken.jar", b"PK\x03\x04 not really", 0o644),
    ]);
    assert_eq!(
        packages,
        [
            "java middle /app/outer.ear!/lib/middle.jar",
            "java outer /app/outer.ear"
        ],
        "{stderr}"
    );
    assert!(stderr.contains("/app/broken.jar: "), "{stderr}");
}

/// `/bin/true` with a `.dep-v0` section holding `payload`, added by `objcopy`.
fn with_dep_section(dir: &Dir, payload: &[u8]) -> Vec<u8> {
    let section = dir.write("section", payload);
    let out = dir.join("audited");
    ok(Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".dep-v0={}", section.display()))
        .arg("/bin/true")
        .arg(&out));
    std::fs::read(out).unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn hostile_cargo_auditable_sections_are_skipped_naming_the_binary() {
    let dir = Dir::new();
    let good_json = br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true,"dependencies":[1]},{"name":"itoa","version":"1.0.11","source":"crates.io"},{"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"}]}"#;
    let good = with_dep_section(&dir, &zlib(good_json));
    // 64 MiB of spaces: JSON-shaped, and far past what is inflated.
    let bomb = with_dep_section(&dir, &zlib(&vec![b' '; 64 << 20]));
    let out_of_range = with_dep_section(
        &dir,
        &zlib(br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true,"dependencies":[18446744073709551615]}]}"#),
    );
    let not_zlib = with_dep_section(&dir, b"{\"packages\":[]}");
    assert!(bomb.len() < 4 << 20);
    let (packages, stderr) = inventory(&[
        ("app/good", &good, 0o755),
        ("app/bomb", &bomb, 0o755),
        ("app/out-of-range", &out_of_range, 0o755),
        ("app/not-zlib", &not_zlib, 0o755),
    ]);
    assert_eq!(packages, ["cargo app /app/good", "cargo itoa /app/good"]);
    for needle in [
        "/app/bomb: .dep-v0 section decompresses to more than 8388608 bytes",
        "/app/out-of-range: .dep-v0 section: package app depends on index 18446744073709551615, past the 1 packages",
        "/app/not-zlib: .dep-v0 section: ",
    ] {
        assert!(stderr.contains(needle), "{needle}\n{stderr}");
    }
}
