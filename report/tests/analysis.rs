//! The analysis on layers built here with known content: every number is checked to the byte.

use std::io::{Read, Write};

use rbuild_report::{
    FindingKind, Gate, ImageInput, LayerSource, Options, Report, analyze, diff, render,
};
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// Deterministic bytes that do not compress to nothing.
fn content(seed: u64, len: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

enum E {
    File(&'static str, Vec<u8>, u32),
    Dir(&'static str, u32),
    Link(&'static str, &'static str),
}

fn tar(entries: Vec<E>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            E::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            E::Link(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Two gzip members, as parallel compressors write them.
fn gzip_two_members(data: &[u8]) -> Vec<u8> {
    let half = data.len() / 2;
    let mut out = gzip(&data[..half]);
    out.extend(gzip(&data[half..]));
    out
}

struct Blobs(Vec<Vec<u8>>);

impl LayerSource for Blobs {
    fn open(&self, index: usize) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(&self.0[index][..]))
    }
}

struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    blobs: Blobs,
    tar_sizes: Vec<u64>,
}

fn image(layers: Vec<(Vec<u8>, Vec<u8>)>, history: serde_json::Value) -> Image {
    let tar_sizes = layers.iter().map(|(t, _)| t.len() as u64).collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": "sha256:00"},
        "layers": layers.iter().enumerate().map(|(i, (_, blob))| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "size": blob.len(),
            "digest": format!("sha256:{i:064}"),
        })).collect::<Vec<_>>(),
    });
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": (0..layers.len()).map(|i| format!("sha256:d{i:063}")).collect::<Vec<_>>()},
        "history": history,
    });
    Image {
        manifest: serde_json::to_vec(&manifest).unwrap(),
        config: serde_json::to_vec(&config).unwrap(),
        blobs: Blobs(layers.into_iter().map(|(_, b)| b).collect()),
        tar_sizes,
    }
}

fn run(img: &Image, name: &str) -> rbuild_report::Analysis {
    analyze(
        ImageInput {
            name,
            id: None,
            manifest: &img.manifest,
            config: &img.config,
            base_layers: None,
            layers: &img.blobs,
        },
        &Options::default(),
    )
    .expect("analysis")
}

fn history() -> serde_json::Value {
    json!([
        {"created_by": "/bin/sh -c #(nop) ADD file:0123 in / "},
        {"created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
        {"created_by": "RUN /bin/sh -c make-big # buildkit", "comment": "Dockerfile:3"},
        {"created_by": "/bin/sh -c #(nop)  ENV A=b", "empty_layer": true},
        {"created_by": "RUN /bin/sh -c rm big/blob && chmod 755 big/chmod # buildkit", "comment": "Dockerfile:5"},
        {"created_by": "COPY . /app # buildkit", "comment": "Dockerfile:6"},
        {"created_by": "CMD [\"/app/main\"]", "empty_layer": true}
    ])
}

/// A busybox-like base, a layer that writes 10 MiB files and an apt-like cache, a layer that
/// deletes, overwrites and chmods them, and a COPY layer with a `.git` directory.
fn wasteful() -> Image {
    let dup = content(99, MIB);
    let chmodded = content(3, 10 * MIB);
    let l0 = tar(vec![
        E::Dir("bin", 0o755),
        E::File("bin/sh", content(1, 1000), 0o755),
        E::File("bin/su", content(2, 200), 0o4755),
        E::Dir("etc", 0o755),
        E::File("etc/passwd", content(4, 100), 0o644),
        E::Dir("shared", 0o777),
        E::Dir("tmp", 0o1777),
    ]);
    let l1 = tar(vec![
        E::Dir("big", 0o755),
        E::File("big/blob", content(10, 10 * MIB), 0o644),
        E::File("big/over", content(11, 10 * MIB), 0o644),
        E::File("big/chmod", chmodded.clone(), 0o644),
        E::File(
            "var/lib/apt/lists/deb_Packages",
            content(12, 3 * MIB),
            0o644,
        ),
        E::File("var/cache/apt/archives/x.deb", content(13, 2 * MIB), 0o644),
        E::File("dup/a", dup.clone(), 0o644),
        E::File("opt/x/f1", content(14, 4096), 0o644),
    ]);
    let l2 = tar(vec![
        E::File("big/.wh.blob", Vec::new(), 0o644),
        E::File("big/over", content(21, 5 * MIB), 0o644),
        E::File("big/chmod", chmodded, 0o755),
        E::File("dup/b", dup, 0o644),
    ]);
    let l3 = tar(vec![
        E::File("opt/x/new", content(31, 10), 0o644),
        // An opaque marker after an entry of its own layer: hides only what is below.
        E::File("opt/x/.wh..wh..opq", Vec::new(), 0o644),
        E::File("app/.git/config", content(32, 100), 0o644),
        E::File("app/main", content(33, 500), 0o755),
        E::Link("app/main-link", "app/main"),
    ]);
    let zstd = zstd::encode_all(&l3[..], 3).unwrap();
    let gz0 = gzip(&l0);
    let gz1 = gzip(&l1);
    let gz2 = gzip_two_members(&l2);
    image(vec![(l0, gz0), (l1, gz1), (l2, gz2), (l3, zstd)], history())
}

#[test]
fn waste_is_counted_to_the_byte() {
    let img = wasteful();
    let analysis = run(&img, "wasteful");
    let r: &Report = &analysis.report;
    let t = &r.totals;
    let l0 = 1000 + 200 + 100;
    let l1 = 3 * 10 * MIB + 3 * MIB + 2 * MIB + MIB + 4096;
    let l2 = 5 * MIB + 10 * MIB + MIB;
    let l3 = 10 + 100 + 500;
    assert_eq!(t.shipped_bytes, l0 + l1 + l2 + l3);
    // deleted 10 MiB, overwritten 10 MiB, chmodded 10 MiB copy, opaque-hidden 4096.
    assert_eq!(t.shadowed_bytes, 3 * 10 * MIB + 4096);
    assert_eq!(t.final_bytes, t.shipped_bytes - t.shadowed_bytes);
    assert_eq!(t.duplicate_bytes, MIB);
    assert_eq!(t.wasted_bytes, 3 * 10 * MIB + 4096 + MIB);
    assert_eq!(t.efficiency, t.final_bytes as f64 / t.shipped_bytes as f64);
    // bin/sh bin/su etc/passwd big/over big/chmod, 2 apt files, dup/a dup/b opt/x/new
    // app/.git/config app/main; the hard link is no regular file.
    assert_eq!(t.final_files, 12);
    // Entries the tars list (implied parent directories are not entries): 7 of layer 0,
    // big/ big/over big/chmod and 3 more of layer 1, dup/b, 4 of layer 3.
    assert_eq!(t.final_entries, 7 + 6 + 1 + 4);
    assert_eq!(t.layers, 4);
    for (layer, size) in r.layers.iter().zip(&img.tar_sizes) {
        assert_eq!(layer.uncompressed_bytes, *size, "layer {}", layer.index);
    }
    for (layer, blob) in r.layers.iter().zip(&img.blobs.0) {
        assert_eq!(layer.compressed_bytes, blob.len() as u64);
    }

    let [b0, b1, b2, b3] = &r.layers[..] else {
        panic!("4 layers")
    };
    assert_eq!((b0.files, b0.added_bytes, b0.removed_bytes), (3, l0, 0));
    assert_eq!(b1.shipped_bytes, l1);
    assert_eq!(b1.shadowed_bytes, 3 * 10 * MIB + 4096);
    assert_eq!(b1.final_bytes, l1 - 3 * 10 * MIB - 4096);
    assert_eq!((b2.removed_files, b2.removed_bytes), (1, 10 * MIB));
    assert_eq!((b2.modified_files, b2.modified_bytes), (2, 15 * MIB));
    assert_eq!((b2.added_files, b2.added_bytes), (1, MIB));
    assert_eq!(b2.shadowed_bytes, 0);
    assert_eq!((b3.removed_files, b3.removed_bytes), (1, 4096));
    assert_eq!(b3.shipped_bytes, l3);

    // History matched past the empty layers, with Dockerfile lines.
    assert_eq!(b0.instruction.as_deref(), Some("ADD file:0123 in /"));
    assert_eq!(
        b2.instruction.as_deref(),
        Some("RUN /bin/sh -c rm big/blob && chmod 755 big/chmod")
    );
    assert_eq!(b2.dockerfile_line, Some(5));
    assert_eq!(b3.instruction.as_deref(), Some("COPY . /app"));
    // The base ends at CMD ["sh"].
    assert_eq!(r.base.layers, 1);
    assert_eq!(r.base.source, rbuild_report::BaseSource::History);
    assert!(b0.base && !b1.base);

    // The final file system.
    assert_eq!(r.largest_files[0].path, "/big/chmod");
    assert_eq!(r.largest_files[0].bytes, 10 * MIB);
    assert_eq!(r.largest_files[0].layer, 2);
    let big = r.largest_dirs.iter().find(|d| d.path == "/big").unwrap();
    assert_eq!((big.bytes, big.files), (15 * MIB, 2));
    let var = r.largest_dirs.iter().find(|d| d.path == "/var").unwrap();
    assert_eq!(var.bytes, 5 * MIB);
    assert_eq!(r.duplicates.len(), 1);
    assert_eq!(r.duplicates[0].copies, 2);
    assert_eq!(r.duplicates[0].wasted_bytes, MIB);

    // Findings, with their layers and exact bytes.
    let find = |kind: FindingKind, layer: usize| {
        r.findings
            .iter()
            .filter(|f| f.kind == kind && f.layer == Some(layer))
            .collect::<Vec<_>>()
    };
    let deleted = find(FindingKind::DeletedLater, 1);
    assert_eq!(
        deleted.len(),
        1,
        "4096 opaque-hidden bytes are below the threshold"
    );
    assert_eq!(
        (deleted[0].bytes, deleted[0].later_layer),
        (10 * MIB, Some(2))
    );
    assert_eq!(deleted[0].paths, vec!["/big/blob"]);
    assert_eq!(deleted[0].dockerfile_line, Some(3));
    let meta = find(FindingKind::MetadataOnlyCopy, 1);
    assert_eq!((meta[0].bytes, meta[0].files), (10 * MIB, 1));
    assert!(meta[0].fix.contains("--chmod"), "{}", meta[0].fix);
    let over = find(FindingKind::Overwritten, 1);
    assert_eq!(over[0].bytes, 10 * MIB);
    let caches = find(FindingKind::PackageCache, 1);
    let mut cache_bytes: Vec<u64> = caches.iter().map(|f| f.bytes).collect();
    cache_bytes.sort();
    assert_eq!(cache_bytes, vec![2 * MIB, 3 * MIB]);
    assert!(
        caches
            .iter()
            .all(|f| f.fix.contains("rm -rf /var/lib/apt/lists"))
    );
    let git = find(FindingKind::Dockerignore, 3);
    assert_eq!((git[0].bytes, git[0].files), (100, 1));
    assert!(git[0].fix.contains(".git/"));
    let suid = find(FindingKind::Setuid, 0);
    assert_eq!(suid[0].paths, vec!["/bin/su"]);
    let world = find(FindingKind::WorldWritable, 0);
    assert_eq!(world[0].paths, vec!["/shared"], "/tmp is sticky");
    let dup = find(FindingKind::Duplicate, 2);
    assert_eq!(
        (dup[0].bytes, dup[0].paths.clone()),
        (MIB, vec!["/dup/b".to_string()])
    );
    assert!(find(FindingKind::Toolchain, 1).is_empty());

    // Every format renders; the JSON round-trips.
    let text = render::text(r);
    assert!(text.contains("Efficiency:"), "{text}");
    assert!(text.contains("/big/chmod"), "{text}");
    let json = serde_json::to_string(r).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.totals.shadowed_bytes, t.shadowed_bytes);
    let html = render::html(&analysis);
    assert!(html.contains("id=\"treemap\""));
    assert!(
        !html.contains("http://") && !html.contains("https://")
            || html.contains("http://www.w3.org/2000/svg")
    );
    assert!(!html.contains("src=\""), "no external resources");
}

#[test]
fn gates_fail_on_the_measured_numbers() {
    let analysis = run(&wasteful(), "wasteful");
    let r = &analysis.report;
    let gate: Gate = "efficiency<0.9".parse().unwrap();
    let why = gate.check(r).expect("efficiency is about 0.6");
    let expected = format!("efficiency is {:.4}", r.totals.efficiency);
    assert!(why.contains(&expected), "{why}");
    assert!(r.totals.efficiency > 0.42 && r.totals.efficiency < 0.43);
    let gate: Gate = "wasted>20MB".parse().unwrap();
    assert!(gate.check(r).is_some());
    let gate: Gate = format!("wasted>{}", r.totals.wasted_bytes).parse().unwrap();
    assert!(gate.check(r).is_none(), "the bound is exclusive");
    let gate: Gate = "size>300MB".parse().unwrap();
    assert!(gate.check(r).is_none());
}

#[test]
fn bzip2_and_xz_layers_are_read_like_gzip() {
    // Recognised from their first bytes, as gzip and zstd are; an archive made with
    // `tar cjf` or `tar cJf` and imported elsewhere can hold such layers.
    let l0 = tar(vec![E::File("a", content(1, 1000), 0o644)]);
    let l1 = tar(vec![E::File("b", content(2, 2000), 0o644)]);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&l0).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&l1).unwrap();
    let img = image(
        vec![
            (l0.clone(), bz.finish().unwrap()),
            (l1.clone(), xz.finish().unwrap()),
        ],
        json!([]),
    );
    let r = run(&img, "bzip2-xz").report;
    assert_eq!(r.totals.final_bytes, 3000);
    assert_eq!(r.totals.final_files, 2);
}

#[test]
fn whiteouts_of_directories_and_replacements() {
    let l0 = tar(vec![
        E::File("d/a", content(1, 100), 0o644),
        E::File("d/sub/b", content(2, 200), 0o644),
        E::File("dx/c", content(3, 300), 0o644),
        E::File("f", content(4, 400), 0o644),
        E::File("g/h", content(5, 500), 0o644),
    ]);
    // Deleting d takes d/a and d/sub/b but not dx/c; a directory replaces the file f; a file
    // replaces the directory g and its content.
    let l1 = tar(vec![
        E::File(".wh.d", Vec::new(), 0o644),
        E::Dir("f", 0o755),
        E::File("g", content(6, 60), 0o644),
    ]);
    // A whiteout of the whole root (opaque root) hides everything below.
    let l2 = tar(vec![
        E::File("new", content(7, 7), 0o644),
        E::File(".wh..wh..opq", Vec::new(), 0o644),
    ]);
    let img = image(
        vec![
            (l0.clone(), gzip(&l0)),
            (l1.clone(), gzip(&l1)),
            (l2.clone(), l2.clone()),
        ],
        json!([]),
    );
    let r = run(&img, "whiteouts").report;
    assert_eq!(r.layers[1].removed_bytes, 100 + 200 + 400 + 500);
    assert_eq!(r.layers[1].removed_files, 4);
    assert_eq!(r.layers[2].removed_bytes, 300 + 60);
    assert_eq!(r.totals.final_bytes, 7);
    assert_eq!(r.totals.final_entries, 1);
    assert_eq!(r.totals.shadowed_bytes, 1500 + 60);
    assert_eq!(r.base.layers, 0);
    assert_eq!(r.base.source, rbuild_report::BaseSource::Unknown);
}

#[test]
fn diff_shows_what_grew() {
    let full = wasteful();
    let old_layers: Vec<(Vec<u8>, Vec<u8>)> = (0..2)
        .map(|i| (Vec::new(), full.blobs.0[i].clone()))
        .collect();
    let hist = json!([
        {"created_by": "/bin/sh -c #(nop) ADD file:0123 in / "},
        {"created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
        {"created_by": "RUN /bin/sh -c make-big # buildkit"}
    ]);
    let old = image(old_layers, hist);
    let (a, b) = (run(&old, "old"), run(&full, "new"));
    let d = diff(&a, &b, 50);
    assert_eq!(d.shared_layers, 2);
    assert_eq!(d.added_layers.len(), 2);
    assert!(d.removed_layers.is_empty());
    let path = |p: &str| d.paths.iter().find(|x| x.path == p).unwrap();
    assert_eq!(path("/big/blob").delta, -(10 * MIB as i64));
    assert_eq!(path("/big/over").delta, -(5 * MIB as i64));
    assert_eq!(path("/dup/b").delta, MIB as i64);
    assert!(
        d.paths.iter().all(|x| x.path != "/big/chmod"),
        "a chmod changes no content"
    );
    let big = d.dirs.iter().find(|x| x.path == "/big").unwrap();
    assert_eq!(big.delta, -(15 * MIB as i64));
    assert_eq!(
        d.totals.final_bytes.1 as i64 - d.totals.final_bytes.0 as i64,
        b.report.totals.final_bytes as i64 - a.report.totals.final_bytes as i64
    );
    let text = render::diff_text(&d);
    assert!(text.contains("/big/blob"), "{text}");
}

#[test]
fn a_broken_layer_names_it() {
    let mut img = wasteful();
    img.blobs.0[2].truncate(1000);
    let err = analyze(
        ImageInput {
            name: "broken",
            id: None,
            manifest: &img.manifest,
            config: &img.config,
            base_layers: None,
            layers: &img.blobs,
        },
        &Options::default(),
    )
    .unwrap_err();
    let text = format!("{err}");
    assert!(
        text.contains("layer 2") && text.contains("broken"),
        "{text}"
    );
}

/// Blobs whose uncompressed streams go through a counting check, as `rbuild report` passes
/// its own.
struct Checked {
    blobs: Blobs,
    checked: std::sync::atomic::AtomicUsize,
}

impl LayerSource for Checked {
    fn open(&self, index: usize) -> std::io::Result<Box<dyn Read + Send + '_>> {
        self.blobs.open(index)
    }
    fn check<'r>(&self, tar: Box<dyn Read + 'r>) -> Box<dyn Read + 'r> {
        self.checked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tar
    }
}

#[test]
fn layers_past_the_limits_are_refused_naming_the_layer() {
    let img = image(
        vec![
            {
                let t = tar(vec![E::File("a/f", content(1, 100), 0o644)]);
                let g = gzip(&t);
                (t, g)
            },
            {
                let t = tar(vec![E::File("d/d/d/d/d/d/d/d/d/d/f", Vec::new(), 0o644)]);
                let g = gzip(&t);
                (t, g)
            },
        ],
        json!([]),
    );
    let source = Checked {
        blobs: Blobs(img.blobs.0.clone()),
        checked: Default::default(),
    };
    let with = |limits: rbuild_report::Limits| {
        analyze(
            ImageInput {
                name: "limited",
                id: None,
                manifest: &img.manifest,
                config: &img.config,
                base_layers: None,
                layers: &source,
            },
            &Options {
                limits,
                ..Options::default()
            },
        )
        .map_err(|e| {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text += &format!(": {c}");
                cause = c.source();
            }
            text
        })
    };
    let defaults = rbuild_report::Limits::default();
    with(defaults).unwrap();
    assert_eq!(source.checked.load(std::sync::atomic::Ordering::Relaxed), 2);
    let layer1 = format!("sha256:{:064}", 1);
    let e = with(rbuild_report::Limits {
        max_path_depth: 10,
        ..defaults
    })
    .unwrap_err();
    assert!(
        e.contains(&format!("layer {layer1}: entry \"d/d/d/d/d/d/d/d/d/d/f\" has 11 path components, more than the 10 allowed")),
        "{e}"
    );
    let e = with(rbuild_report::Limits {
        max_path_bytes: 20,
        ..defaults
    })
    .unwrap_err();
    assert!(
        e.contains("has a name of 21 bytes, more than the 20 allowed"),
        "{e}"
    );
    let e = with(rbuild_report::Limits {
        max_layer_bytes: 1500,
        ..defaults
    })
    .unwrap_err();
    assert!(
        e.contains(&format!(
            "layer sha256:{:064} is larger than 1500 bytes uncompressed",
            0
        )),
        "{e}"
    );
    let e = with(rbuild_report::Limits {
        max_entries: 0,
        ..defaults
    })
    .unwrap_err();
    assert!(e.contains("has more than 0 entries"), "{e}");
}

/// Package metadata past the per-layer bound leaves the packages out; the sizes stand.
#[test]
fn too_much_package_metadata_leaves_the_packages_out() {
    let status = "Package: a\nStatus: install ok installed\nVersion: 1\n\n";
    let layer = tar(vec![
        E::Dir("var/lib/dpkg/info", 0o755),
        E::File("var/lib/dpkg/status", status.as_bytes().to_vec(), 0o644),
        E::File("var/lib/dpkg/info/a.list", b"/usr/bin/a\n".to_vec(), 0o644),
        E::File("usr/bin/a", content(1, 5000), 0o755),
    ]);
    let blob = gzip(&layer);
    let img = image(vec![(layer, blob)], json!([]));
    let with = |package_metadata_bytes: u64| {
        analyze(
            ImageInput {
                name: "meta",
                id: None,
                manifest: &img.manifest,
                config: &img.config,
                base_layers: None,
                layers: &img.blobs,
            },
            &Options {
                package_metadata_bytes,
                ..Options::default()
            },
        )
        .expect("analysis")
        .report
    };
    let packages = with(1 << 20).packages.expect("packages");
    assert_eq!(packages.count, 1);
    assert_eq!(packages.largest[0].name, "a");
    assert_eq!(packages.largest[0].bytes, 5000);
    let report = with(status.len() as u64);
    assert!(report.packages.is_none());
    assert_eq!(report.totals.final_bytes, 5000 + status.len() as u64 + 11);
}
