//! `rbuild load` of archives that expand without bound: a compressed archive, and a docker
//! archive whose layer file is a compressed bomb. Both stop at `RBUILD_MAX_LAYER_SIZE` naming
//! what passed it, and leave neither blobs nor temp files behind.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Dir, fails, rbuild};
use crate::{Entry, sha256, tar};

/// `members` gzip members of `chunk` zeros each, after a member holding `head`.
fn gzip_bomb(head: &[u8], chunk: usize, members: usize) -> Vec<u8> {
    let gz = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    };
    let one = gz(&vec![0u8; chunk]);
    let mut out = gz(head);
    for _ in 0..members {
        out.extend_from_slice(&one);
    }
    out
}

/// A docker archive (`docker save` layout) whose one layer file holds `layer`.
fn docker_archive(layer: &[u8]) -> Vec<u8> {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": crate::host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(b"never reached")]},
    }))
    .expect("json");
    let config_name = format!("{}.json", &sha256(&config)["sha256:".len()..]);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": ["bomb:latest"], "Layers": ["l/layer.tar"],
    }]))
    .expect("json");
    let mut b = ::tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("manifest.json", &manifest[..]),
        (config_name.as_str(), &config[..]),
        ("l/layer.tar", layer),
    ] {
        let mut h = ::tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, bytes).expect("tar");
    }
    b.into_inner().expect("tar")
}

fn assert_nothing_left(root: &Path) {
    for dir in ["blobs/sha256", "tmp"] {
        let n = std::fs::read_dir(root.join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(n, 0, "{dir} is not empty after a refused load");
    }
}

#[test]
fn compressed_bombs_stop_at_the_limit_on_load() {
    let dir = Dir::new();
    let root = dir.join("store");
    // A gzip-compressed archive that expands to 8 GiB (mostly zeros after a real archive).
    let inner = docker_archive(&tar(&[Entry::file("f", b"x")]));
    let outer = dir.write("outer.tar.gz", gzip_bomb(&inner, 16 << 20, 512));
    // A plain archive whose layer is a gzip stream of 8 GiB.
    let layer = gzip_bomb(&tar(&[Entry::file("f", b"x")]), 16 << 20, 512);
    let plain = dir.write("layer-bomb.tar", docker_archive(&layer));
    for (archive, entry) in [(&outer, "the archive"), (&plain, "l/layer.tar")] {
        let started = Instant::now();
        let r = fails(
            rbuild(&root)
                .env("RBUILD_MAX_LAYER_SIZE", "16M")
                .args(["load", "-i"])
                .arg(archive),
        );
        assert!(
            r.stderr.contains(&format!(
                "{entry} in archive {} is larger than 16777216 bytes uncompressed",
                archive.display()
            )),
            "{}",
            r.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the limit came late"
        );
        assert_nothing_left(&root);
    }
}
