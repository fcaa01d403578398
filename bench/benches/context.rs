//! Context indexing: no-op re-index, re-index after touching every file, cold index.
//!
//! The tree is generated once (fixed seed) in `$TMPDIR/rbuild-bench-context-<files>` and
//! reused by later runs: `RBUILD_BENCH_CONTEXT_FILES` files (default 100000, about 1 GB;
//! 10000 gives a quick 100 MB run), in 100-file directories, mostly small files plus one
//! 512 KiB file in every hundred.
//!
//! ```text
//! RBUILD_BENCH_CONTEXT_FILES=10000 cargo bench -p rbuild-bench --bench context
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_cache::Store;
use rbuild_cache::context::{IndexOptions, index_context};

fn main() {
    divan::main();
}

fn file_count() -> usize {
    std::env::var("RBUILD_BENCH_CONTEXT_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn file_rel(i: usize) -> PathBuf {
    PathBuf::from(format!("d{}/s{}/f{i}.dat", i / 1000, (i / 100) % 10))
}

/// The generated context (created on first use).
fn tree() -> &'static Path {
    static TREE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        let n = file_count();
        let dir = std::env::temp_dir().join(format!("rbuild-bench-context-{n}"));
        let done = dir.with_extension("complete");
        if done.exists() {
            return dir;
        }
        let _ = fs::remove_dir_all(&dir);
        let mut xof = blake3::Hasher::new_keyed(&[7; 32]).finalize_xof();
        let mut total = 0u64;
        let mut buf = Vec::new();
        for i in 0..n {
            let mut word = [0u8; 8];
            xof.fill(&mut word);
            let size = if i % 100 == 99 {
                512 * 1024
            } else {
                1024 + (u64::from_le_bytes(word) % 8192) as usize
            };
            buf.resize(size, 0);
            xof.fill(&mut buf);
            let path = dir.join(file_rel(i));
            if i % 100 == 0 {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
            }
            fs::write(&path, &buf).unwrap();
            total += size as u64;
        }
        touch_all(&dir, n, 3600);
        fs::write(&done, b"").unwrap();
        eprintln!(
            "generated {n} files, {} MB, in {}",
            total >> 20,
            dir.display()
        );
        dir
    })
}

/// Sets every file's mtime `ago` seconds in the past.
fn touch_all(dir: &Path, n: usize, ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(ago);
    for i in 0..n {
        let f = fs::File::options()
            .write(true)
            .open(dir.join(file_rel(i)))
            .unwrap();
        f.set_modified(t).unwrap();
    }
}

fn fresh_store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    (tmp, store)
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn noop_reindex(bencher: divan::Bencher<'_, '_>) {
    let dir = tree();
    let (_tmp, store) = fresh_store();
    index_context(&store, dir, &IndexOptions::default()).unwrap();
    bencher.bench_local(|| {
        let ctx = index_context(&store, dir, &IndexOptions::default()).unwrap();
        assert_eq!(ctx.stats().hashed, 0);
        ctx
    });
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn touch_all_reindex(bencher: divan::Bencher<'_, '_>) {
    let dir = tree();
    let n = file_count();
    let (_tmp, store) = fresh_store();
    index_context(&store, dir, &IndexOptions::default()).unwrap();
    let mut ago = 1800;
    bencher
        .with_inputs(|| {
            ago += 1;
            touch_all(dir, n, ago);
        })
        .bench_local_values(|()| {
            let ctx = index_context(&store, dir, &IndexOptions::default()).unwrap();
            assert_eq!(ctx.stats().hashed, n);
            ctx
        });
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn cold_index(bencher: divan::Bencher<'_, '_>) {
    let dir = tree();
    bencher
        .with_inputs(fresh_store)
        .bench_local_values(|(tmp, store)| {
            let ctx = index_context(&store, dir, &IndexOptions::default()).unwrap();
            assert_eq!(ctx.stats().hashed, file_count());
            (ctx, tmp)
        });
}
