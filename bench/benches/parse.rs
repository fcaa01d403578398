//! Parser throughput: a deterministic generated 5,000-line Dockerfile.
//!
//! Run with `cargo bench -p rbuild-bench --bench parse`.

use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

#[divan::bench]
fn parse_5000_lines(bencher: Bencher<'_, '_>) {
    let text = rbuild_bench::generate_dockerfile(5_000);
    bencher
        .counter(divan::counter::BytesCount::new(text.len()))
        .bench(|| rbuild_compiler::parser::parse(black_box(&text)).map(|p| p.instructions.len()));
}

#[divan::bench]
fn parse_and_dump_5000_lines(bencher: Bencher<'_, '_>) {
    let text = rbuild_bench::generate_dockerfile(5_000);
    bencher.bench(|| rbuild_compiler::parser::parse(black_box(&text)).map(|p| p.dump().len()));
}
