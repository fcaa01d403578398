//! Throughput of the layer gzip writer with 1 and 2 threads on up to 64 MiB
//! of the host's binaries and libraries. `cargo run --release -p rbuild-executor --example gzip_speed`

use std::io::Write;
use std::time::Instant;

use rbuild_executor::compress::ParallelGzip;

fn main() -> std::io::Result<()> {
    // Real files: the host's /usr/bin and /usr/lib contents, up to 64 MiB.
    let mut data = Vec::with_capacity(64 << 20);
    for dir in ["/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/doc"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            if data.len() >= 64 << 20 {
                break;
            }
            if e.file_type().is_ok_and(|t| t.is_file()) {
                if let Ok(b) = std::fs::read(e.path()) {
                    data.extend_from_slice(&b);
                }
            }
        }
    }
    data.truncate(64 << 20);
    for threads in [1, 2] {
        let t = Instant::now();
        let mut w = ParallelGzip::new(Vec::new(), threads);
        w.write_all(&data)?;
        let out = w.finish()?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "threads {threads}: {:.0} MiB/s, ratio {:.3}",
            data.len() as f64 / s / (1 << 20) as f64,
            out.len() as f64 / data.len() as f64
        );
    }
    Ok(())
}
