//! Layer diffs from a hand-made overlay upper dir: normalisation, whiteouts,
//! opaque dirs, hard links, long names, digests, compression.

use std::io::Read;
use std::path::Path;

use rbuild_compress::{Compression, ManifestFormat, decompress};
use rbuild_executor::diff::{DiffOptions, write_layer};

fn make_upper(dir: &Path) {
    let long = "n".repeat(150);
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("opq")).unwrap();
    std::fs::write(dir.join("etc/conf"), "conf\n").unwrap();
    std::fs::write(dir.join("opq/new"), "new\n").unwrap();
    std::fs::hard_link(dir.join("etc/conf"), dir.join("link")).unwrap();
    std::fs::write(dir.join(&long), "long\n").unwrap();
    std::os::unix::fs::symlink("etc/conf", dir.join("sym")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("etc/gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    rustix::fs::setxattr(
        dir.join("opq"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        dir.join("etc/conf"),
        "user.keep",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        dir.join("etc"),
        "user.overlay.impure",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn layer(upper: &Path, opts: &DiffOptions) -> (Vec<u8>, rbuild_executor::diff::LayerInfo) {
    let mut out = Vec::new();
    let info = write_layer(upper, &[], opts, &mut out).unwrap();
    (out, info)
}

#[test]
fn normalised_layer_with_whiteouts_links_and_pax() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    make_upper(&upper);
    let opts = DiffOptions {
        compression: Compression::None,
        ..Default::default()
    };
    let (tar_bytes, info) = layer(&upper, &opts);
    let digests = info.digests.expect("hashed by the writer (no sink_hashes)");
    assert_eq!(
        digests.diff_id, digests.digest,
        "uncompressed: both digests agree"
    );
    assert_eq!(digests.diff_id, rbuild_digest::Digest::of(&tar_bytes));
    assert_eq!(info.size, tar_bytes.len() as u64);

    let mut a = tar::Archive::new(&tar_bytes[..]);
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert!(
            h.username_bytes().unwrap_or_default().is_empty()
                && h.groupname_bytes().unwrap_or_default().is_empty()
        );
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let xattrs: Vec<String> = e
            .pax_extensions()
            .unwrap()
            .map(|exts| exts.map(|x| x.unwrap().key().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert!(
            !xattrs.iter().any(|k| k.contains("overlay")),
            "{name}: {xattrs:?}"
        );
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        seen.push((name, h.entry_type().as_byte() as char, link, xattrs));
    }
    let long = "n".repeat(150);
    let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/conf",
            "etc/.wh.gone",
            "link",
            long.as_str(),
            "opq/",
            "opq/.wh..wh..opq",
            "opq/new",
            "sym"
        ]
    );
    assert_eq!(seen[1].3, ["SCHILY.xattr.user.keep"]);
    assert_eq!(
        (seen[3].1, seen[3].2.as_deref()),
        ('1', Some("etc/conf")),
        "hard link kept"
    );
    assert_eq!(seen[4].3, ["path"], "long names travel in a PAX record");
    assert_eq!((seen[8].1, seen[8].2.as_deref()), ('2', Some("etc/conf")));

    // Same change, same bytes.
    let (again, info2) = layer(&upper, &opts);
    assert_eq!(again, tar_bytes);
    assert_eq!(info2, info);
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    make_upper(&upper);
    let opts = DiffOptions {
        compression: Compression::None,
        source_date_epoch: Some(1_000_000),
        ..Default::default()
    };
    let (bytes, _) = layer(&upper, &opts);
    let mut a = tar::Archive::new(&bytes[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= 1_000_000);
    }
    // Touching files later does not change the clamped layer.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(upper.join("etc/conf"), "conf\n").unwrap();
    let (again, _) = layer(&upper, &opts);
    assert_eq!(again, bytes);
}

#[test]
fn compressed_digests_in_one_pass() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    make_upper(&upper);
    // Enough data for several parallel gzip members.
    let big: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(upper.join("big"), &big).unwrap();
    let (plain, pinfo) = layer(
        &upper,
        &DiffOptions {
            compression: Compression::None,
            ..Default::default()
        },
    );
    for c in [Compression::Gzip, Compression::Zstd] {
        let (blob, info) = layer(
            &upper,
            &DiffOptions {
                compression: c,
                threads: 2,
                sink_hashes: false,
                ..Default::default()
            },
        );
        let (digests, plain_digests) = (info.digests.unwrap(), pinfo.digests.unwrap());
        assert_eq!(digests.diff_id, plain_digests.diff_id, "{c:?}");
        assert_eq!(digests.digest, rbuild_digest::Digest::of(&blob));
        assert_eq!(info.media_type, c.media_type(ManifestFormat::Oci).unwrap());
        assert_eq!(info.uncompressed_size, plain.len() as u64);
        let mut back = Vec::new();
        decompress(&blob[..], None)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain, "{c:?}");
    }
}

#[test]
fn a_hashing_sink_leaves_only_uncompressed_digests_to_it() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    make_upper(&upper);
    let with = |compression| DiffOptions {
        compression,
        sink_hashes: true,
        ..Default::default()
    };
    let (_, plain) = layer(&upper, &with(Compression::None));
    assert_eq!(plain.digests, None, "the sink's digest is both");
    let (blob, gz) = layer(&upper, &with(Compression::Gzip));
    let digests = gz
        .digests
        .expect("a compressed layer's diff_id is not its digest");
    assert_eq!(digests.digest, rbuild_digest::Digest::of(&blob));
    let (tar_bytes, _) = layer(&upper, &with(Compression::None));
    assert_eq!(digests.diff_id, rbuild_digest::Digest::of(&tar_bytes));
}
