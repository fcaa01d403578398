//! Throughput of the parallel gzip writers on a 200 MiB tar of the host's files (binaries,
//! libraries, documentation: what layers hold), with 1 and 2 threads, best of three.
//! `cargo run --release -p rbuild-bench --example gzip_writers`

use std::io::Write;
use std::time::Instant;

/// A tar of regular files under the host's `/usr`, cut at `size` bytes.
fn host_tar(size: usize) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::with_capacity(size + (1 << 20)));
    let mut todo = vec![std::path::PathBuf::from("/usr")];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if out.get_ref().len() >= size {
                break;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => {
                    let Ok(data) = std::fs::read(e.path()) else {
                        continue;
                    };
                    let mut h = tar::Header::new_gnu();
                    h.set_size(data.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    let name = e.path();
                    let rel = name.strip_prefix("/").unwrap_or(&name);
                    if out.append_data(&mut h, rel, &data[..]).is_err() {
                        continue;
                    }
                }
                _ => {}
            }
        }
    }
    let mut data = out.into_inner().expect("an in-memory tar");
    data.truncate(size);
    data
}

fn time(data: &[u8], mut run: impl FnMut(&[u8]) -> Vec<u8>) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut len = 0;
    for _ in 0..3 {
        let t = Instant::now();
        len = run(data).len();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, len)
}

fn main() -> std::io::Result<()> {
    let data = host_tar(200 << 20);
    let mib = data.len() as f64 / (1 << 20) as f64;
    println!("input: {mib:.0} MiB tar of /usr");
    for threads in [1, 2] {
        let (s, len) = time(&data, |d| {
            let mut w = rbuild_compress::ParallelGzip::new(Vec::new(), threads);
            w.write_all(d).expect("compress");
            w.finish().expect("finish")
        });
        println!(
            "rbuild_compress::ParallelGzip, {threads} thread(s): {s:.2} s, {:.0} MiB/s, ratio {:.3}",
            mib / s,
            len as f64 / data.len() as f64
        );
    }
    Ok(())
}
