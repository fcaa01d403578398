//! Planning throughput: a deterministic 200-stage, 5,000-instruction Dockerfile.
//!
//! Run with `cargo bench -p rbuild-bench --bench plan`.

use divan::{Bencher, black_box};
use rbuild_compiler::instructions::from_ast::{ParserTriggers, plan_source, raw_instructions};
use rbuild_compiler::plan::{NoBaseConfigs, PlanOptions, Planner, ShellExpander};

fn main() {
    divan::main();
}

/// 200 stages of 25 instructions: global ARGs in FROM, stage ARG/ENV, WORKDIR, RUN with a
/// cache mount, COPY from the context and from two earlier stages, LABEL and EXPOSE.
fn dockerfile() -> String {
    let mut s = String::from("ARG BASE=alpine:3.19\nARG V=1\n");
    for i in 0..200 {
        if i % 3 == 0 {
            s.push_str(&format!("FROM --platform=$BUILDPLATFORM $BASE AS s{i}\n"));
        } else {
            s.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
        }
        s.push_str("ARG V\nENV STAGE_V=$V PATH=/opt/bin:$PATH\nWORKDIR /src/app\n");
        for j in 0..20 {
            match j % 5 {
                0 => s.push_str(&format!(
                    "RUN --mount=type=cache,target=/root/.cache make step{j} V=$V\n"
                )),
                1 => s.push_str(&format!("COPY --chown=1000:1000 src/{j}/*.rs ./src/{j}/\n")),
                2 if i > 1 => s.push_str(&format!("COPY --from=s{} /out/{j} /in/{j}\n", i / 2)),
                3 => s.push_str(&format!("LABEL step{j}=\"$V\"\n")),
                4 if i > 0 => s.push_str(&format!("COPY --from=s{} /out/{j} /prev/{j}\n", i - 1)),
                _ => s.push_str(&format!("EXPOSE {}/tcp\n", 8000 + j)),
            }
        }
        s.push_str("CMD [\"/bin/app\"]\n");
    }
    s
}

#[divan::bench]
fn plan_200_stages(bencher: Bencher<'_, '_>) {
    let text = dockerfile();
    let parsed = rbuild_compiler::parser::parse(&text).expect("the generated Dockerfile parses");
    let (raw, escape) = raw_instructions(&parsed);
    assert!(raw.len() >= 5_000);
    let planner = Planner::new(&ShellExpander, &ParserTriggers);
    let options = PlanOptions::default();
    bencher.bench(|| {
        planner
            .plan(black_box(&raw), escape, &options)
            .map(|p| p.ops.len())
    });
}

#[divan::bench]
fn parse_and_plan_200_stages(bencher: Bencher<'_, '_>) {
    let text = dockerfile();
    let options = PlanOptions::default();
    bencher.bench(|| plan_source(black_box(&text), &options, &NoBaseConfigs).map(|p| p.ops.len()));
}
