//! Measures `fileop::copy` of a large build context (`COPY . /app`):
//! 100,000 files, about 1 GB, written as a gzip and as an uncompressed layer.
//!
//! ```text
//! cargo run --release -p rbuild-executor --example copy_bench [DIR] [FILES] [BYTES_PER_FILE]
//! ```
//!
//! The tree is generated once in DIR (default `/tmp/rbuild-copy-bench`) and
//! reused. The layer goes to a counting sink: only hashing and compression
//! cost, as when the engine streams it into the store.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rbuild_compress::Compression;
use rbuild_executor::diff::DiffOptions;
use rbuild_executor::fileop::{CopyRequest, CopySourceSpec, HostDir, copy};
use rbuild_executor::snapshot::LowerView;

struct Sink(u64);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Source-like content: words from a small vocabulary with pseudo-random
/// choices, so that it compresses about as well as code (3-4x).
fn content(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn ", "let ", "mut ", "self", ".iter()", "match ", "=> ", "{\n", "}\n", "return ",
        "Some(", "None", "Ok(", "Err(", "impl ", "pub ", "struct ", "0x", "//", " ",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        if x % 5 == 0 {
            out.extend_from_slice(format!("{:x}", x >> 40).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn generate(dir: &Path, files: usize, size: usize) -> io::Result<()> {
    let marker = dir.join(format!(".complete-{files}-{size}"));
    if marker.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    eprintln!(
        "generating {files} files of {size} bytes in {}",
        dir.display()
    );
    for i in 0..files {
        let sub = dir.join(format!("d{:03}/s{:02}", i % 400, (i / 400) % 25));
        if i < 10_000 {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(sub.join(format!("f{i}.rs")), content(i as u64, size))?;
    }
    std::fs::write(marker, b"")?;
    Ok(())
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// User + system CPU seconds of this process (all threads).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = 100.0; // USER_HZ, which /proc always uses on Linux
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / ticks
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/rbuild-copy-bench".into()),
    );
    let files: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let size: usize = args.next().map_or(Ok(10_000), |s| s.parse())?;
    generate(&dir, files, size)?;
    let parent_dir = tempfile::tempdir()?;
    let parent = LowerView::new(vec![parent_dir.path().to_owned()]);
    let host = HostDir::new(dir.clone(), None);
    let only = std::env::var("COPY_BENCH_COMPRESSION").ok();
    for (label, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        let req = CopyRequest::new(
            vec![CopySourceSpec::Tree {
                fs: &host,
                pattern: ".".into(),
            }],
            "/app",
        );
        let opts = DiffOptions {
            compression,
            ..DiffOptions::default()
        };
        let t = Instant::now();
        let c0 = cpu_secs();
        let mut sink = Sink(0);
        let r = copy(&req, &parent, &opts, &mut sink)?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - c0;
        let layer = r.layer.expect("a layer");
        println!(
            "{label:5} files {} bytes {} tar {} blob {} in {:.2}s wall, {:.2}s CPU ({:.0} MB/s of content), peak RSS {} MiB",
            r.files,
            r.bytes,
            layer.uncompressed_size,
            layer.size,
            secs,
            cpu,
            r.bytes as f64 / secs / 1e6,
            peak_rss_mib()
        );
    }
    Ok(())
}
