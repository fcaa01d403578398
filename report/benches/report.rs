//! The report on a 1 GiB, 50,000-file, 20-layer image (target: under 3 s).
//!
//! `cargo bench -p rbuild-report`. The image is generated once as an OCI image layout (gzip
//! layers) in `RBUILD_BENCH_DIR` (kept, and reused when present) or in a temp directory, so
//! the same layers can be timed with `rbuild --root DIR report bench` and with
//! `tar -tvzf` as the baseline of reading each layer once.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rbuild_report::{ImageInput, LayerSource, Options, analyze};
use sha2::Digest as _;

const LAYERS: usize = 20;
const FILES_PER_LAYER: usize = 2_500;
const LAYER_BYTES: u64 = 50 * 1024 * 1024;
const LARGE_PER_LAYER: usize = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Bytes that compress about like program files: tokens drawn from a 64 KiB table.
fn fill(rng: &mut Rng, table: &[[u8; 16]], len: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < len {
        let r = rng.next();
        out.extend_from_slice(&table[(r as usize) % table.len()]);
        out.push((r >> 32) as u8);
    }
    out.truncate(len);
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Image {
    dir: PathBuf,
    manifest: Vec<u8>,
    config: Vec<u8>,
    blobs: Vec<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

fn generate(dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let table: Vec<[u8; 16]> = (0..4096)
        .map(|_| {
            let a = rng.next().to_le_bytes();
            let b = rng.next().to_le_bytes();
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&a);
            t[8..].copy_from_slice(&b);
            t
        })
        .collect();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    let mut buf = Vec::new();
    for layer in 0..LAYERS {
        let tmp = dir.join("layer.tmp");
        let gz =
            flate2::write::GzEncoder::new(File::create(&tmp).unwrap(), flate2::Compression::fast());
        let mut hashing = HashingWriter {
            inner: gz,
            hasher: sha2::Sha256::new(),
        };
        {
            let mut tar = tar::Builder::new(&mut hashing);
            let small = FILES_PER_LAYER - LARGE_PER_LAYER;
            let mut written = 0u64;
            for i in 0..FILES_PER_LAYER {
                let len = if i < small {
                    1024 + (rng.next() % 15_360) as usize
                } else {
                    let left = LAYER_BYTES.saturating_sub(written);
                    (left / (FILES_PER_LAYER - i) as u64) as usize
                };
                fill(&mut rng, &table, len, &mut buf);
                written += len as u64;
                // Every layer after the first overwrites 100 files of the layer below and
                // deletes 50 more.
                let path = if layer > 0 && i < 100 {
                    format!("l{}/d{}/f{i}", layer - 1, i % 50)
                } else {
                    format!("l{layer}/d{}/f{i}", i % 50)
                };
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(len as u64);
                h.set_mtime(0);
                tar.append_data(&mut h, &path, &buf[..]).unwrap();
            }
            if layer > 0 {
                for i in 100..150 {
                    let path = format!("l{}/d{}/.wh.f{i}", layer - 1, i % 50);
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(0);
                    tar.append_data(&mut h, &path, std::io::empty()).unwrap();
                }
            }
            tar.finish().unwrap();
        }
        let HashingWriter { inner, hasher } = hashing;
        inner.finish().unwrap().sync_all().unwrap();
        let diff_id = format!("sha256:{:x}", hasher.finalize());
        let blob = std::fs::read(&tmp).unwrap();
        let digest = sha256_hex(&blob);
        std::fs::rename(&tmp, blobs.join(&digest)).unwrap();
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "size": blob.len(),
            "digest": format!("sha256:{digest}"),
        }));
        diff_ids.push(diff_id);
        history.push(
            serde_json::json!({"created_by": format!("RUN /bin/sh -c step-{layer} # buildkit")}),
        );
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap();
    let config_digest = sha256_hex(&config);
    std::fs::write(blobs.join(&config_digest), &config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": format!("sha256:{config_digest}")},
        "layers": layers,
    }))
    .unwrap();
    let manifest_digest = sha256_hex(&manifest);
    std::fs::write(blobs.join(&manifest_digest), &manifest).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": manifest.len(),
            "digest": format!("sha256:{manifest_digest}"),
            "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/bench:latest"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn load(dir: PathBuf, temp: Option<tempfile::TempDir>) -> Image {
    if !dir.join("index.json").exists() {
        eprintln!("generating the benchmark image in {}", dir.display());
        generate(&dir);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest = std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = std::fs::read(blob(m["config"]["digest"].as_str().unwrap())).unwrap();
    let blobs = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap()))
        .collect();
    Image {
        dir,
        manifest,
        config,
        blobs,
        _temp: temp,
    }
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| match std::env::var_os("RBUILD_BENCH_DIR") {
        Some(dir) => load(PathBuf::from(dir), None),
        None => {
            let temp = tempfile::tempdir().unwrap();
            load(temp.path().to_path_buf(), Some(temp))
        }
    })
}

struct Files<'a>(&'a [PathBuf]);

impl LayerSource for Files<'_> {
    fn open(&self, index: usize) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(&self.0[index])?))
    }
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn report_1gib_50k_files_20_layers() -> u64 {
    let img = image();
    let analysis = analyze(
        ImageInput {
            name: "bench",
            id: None,
            manifest: &img.manifest,
            config: &img.config,
            base_layers: None,
            layers: &Files(&img.blobs),
        },
        &Options::default(),
    )
    .unwrap();
    let t = &analysis.report.totals;
    assert_eq!(t.layers, LAYERS);
    assert!(t.shipped_bytes >= LAYERS as u64 * LAYER_BYTES);
    t.final_bytes
}

fn main() {
    let img = image();
    eprintln!("benchmark image: {}", img.dir.display());
    divan::main();
}
