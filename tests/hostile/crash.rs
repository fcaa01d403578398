//! Builds killed with SIGKILL at many points (base lookup, context walk, COPY and RUN layer
//! writes, the action cache and index updates, image assembly), each followed by a rebuild
//! that must succeed without any repair and give exactly the image an uninterrupted build
//! gives. `RBUILD_KILL_ROUNDS` sets how many kills (default 16).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{BASE, BuildEnv, ok, rbuild, verified_blobs};

fn dockerfile() -> String {
    format!(
        "FROM {BASE}\n\
         COPY big.bin /data/big.bin\n\
         RUN head -c 20000000 /data/big.bin > /data/copy && sleep 0.2\n\
         RUN echo done > /done\n"
    )
}

fn write_context(env: &BuildEnv) {
    let mut data = Vec::with_capacity(8 << 20);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while data.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    env.write("big.bin", &data);
    env.dockerfile(&dockerfile());
}

fn build(env: &BuildEnv) -> std::process::Command {
    let mut cmd = rbuild(&env.root);
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--progress", "quiet", "-t", "crash", "--no-cache"])
        .arg(&env.ctx);
    cmd
}

#[test]
fn killed_builds_never_need_repair() {
    let rounds: u32 = std::env::var("RBUILD_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);

    // The reference: an uninterrupted build (every later build runs every step again with
    // --no-cache, so it must reproduce this digest from scratch). Its time spreads the kills
    // over a whole build.
    let env = BuildEnv::new();
    write_context(&env);
    let started = Instant::now();
    let expected = ok(&mut build(&env)).stdout;
    let full = started.elapsed();

    for round in 0..rounds {
        let at = full.mul_f64(f64::from(round) / f64::from(rounds.max(1)));
        let mut child = build(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rbuild");
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        // Every kill leaves a store that the next build uses as it is.
        let id = ok(&mut build(&env)).stdout;
        assert_eq!(id, expected, "round {round}: killed after {at:?}");
    }

    // Without --no-cache the store's records are used and agree too.
    let mut cached = rbuild(&env.root);
    cached
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--progress", "quiet", "-t", "crash"])
        .arg(&env.ctx);
    assert_eq!(ok(&mut cached).stdout, expected);
    // Every blob verifies; the image runs; no step dir of a killed build is left behind
    // (the next build removed them), and no sandbox outlived its build.
    let blobs = verified_blobs(&env.root);
    assert!(!blobs.is_empty());
    let run = ok(rbuild(&env.root).args(["run", "--rm", "crash", "cat", "/done"]));
    assert_eq!(run.stdout, "done\n");
    let leftovers: Vec<String> = std::fs::read_dir(env.root.join("tmp"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("step-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left in tmp/: {leftovers:?}");
    std::thread::sleep(Duration::from_millis(100));
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines()
            .any(|l| l.contains("head -c 20000000 /data/big.bin")),
        "a sandbox outlived its killed build:\n{ps}"
    );
}
