//! Throughput of the parallel gzip writers on a 200 MiB tar of the host's files (binaries,
//! libraries, documentation: what layers hold), with 1 and 2 threads: the best wall time and the least CPU time of three runs.
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

/// The CPU time this process has used, user and system, in seconds (from `/proc/self/stat`,
/// clock ticks of 1/100 s): on a shared machine it varies less than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// The best wall time and the least CPU time of three runs, and the output's length.
fn time(data: &[u8], mut run: impl FnMut(&[u8]) -> Vec<u8>) -> (f64, f64, usize) {
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    let mut len = 0;
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu_seconds());
        len = run(data).len();
        wall = wall.min(t.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_seconds() - c);
    }
    (wall, cpu, len)
}

/// `size` bytes that deflate cannot shrink (xorshift), as in compressed or encrypted files.
fn random(size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    for (what, data) in [
        ("tar of /usr", host_tar(200 << 20)),
        ("of random bytes", random(200 << 20)),
    ] {
        measure(what, &data);
    }
    Ok(())
}

fn measure(what: &str, data: &[u8]) {
    let mib = data.len() as f64 / (1 << 20) as f64;
    println!("input: {mib:.0} MiB {what}");
    for threads in [1, 2] {
        let (s, cpu, len) = time(data, |d| {
            let mut w = rbuild_compress::ParallelGzip::new(Vec::new(), threads);
            w.write_all(d).expect("compress");
            w.finish().expect("finish")
        });
        println!(
            "rbuild_compress::ParallelGzip, {threads} thread(s): {s:.2} s wall, {cpu:.2} s CPU, {:.0} MiB/s, ratio {:.3}",
            mib / s,
            len as f64 / data.len() as f64
        );
    }
}
