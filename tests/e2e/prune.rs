//! `rbuild prune` and `rbuild system df`: what goes, what stays, in which order, and that the
//! numbers are what `du` measures. Entries are aged by setting their times with `touch -d`
//! (the LRU clock is the modification time), never by sleeping.

use std::path::{Path, PathBuf};

use crate::support::{BASE, BuildEnv, Dir, fails, ok, rbuild, skopeo, tool, verified_blobs};

/// Sets the modification time of `paths` (symlinks themselves) to `ago` (`touch -d` syntax).
fn age(paths: &[PathBuf], ago: &str) {
    if paths.is_empty() {
        return;
    }
    ok(tool("touch", "coreutils")
        .arg("-h")
        .arg("-d")
        .arg(ago)
        .args(paths));
}

/// Ages every file and directory of the store.
fn age_all(root: &Path, ago: &str) {
    ok(tool("find", "findutils")
        .arg(root)
        .args(["-exec", "touch", "-h", "-d", ago, "{}", "+"]));
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let out = ok(tool("find", "findutils")
        .arg(root)
        .arg("-printf")
        .arg("%P %s\n"));
    let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `du -s -B1` of the store: its allocated size.
fn du(root: &Path) -> u64 {
    let out = ok(tool("du", "coreutils").args(["-s", "-B1"]).arg(root));
    out.stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a size")
}

fn df(root: &Path) -> serde_json::Value {
    let out = ok(rbuild(root).args(["system", "df", "--format", "json"]));
    serde_json::from_str(&out.stdout).expect("df json")
}

fn df_kind(df: &serde_json::Value, kind: &str) -> (u64, u64) {
    df["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|k| k["kind"] == kind)
        .map_or((0, 0), |k| {
            (
                k["count"].as_u64().expect("count"),
                k["bytes"].as_u64().expect("bytes"),
            )
        })
}

fn prune(root: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(rbuild(root).args(["prune", "--format", "json"]).args(args));
    serde_json::from_str(&out.stdout).expect("prune json")
}

fn freed(report: &serde_json::Value, kind: &str) -> u64 {
    report["freed"]
        .as_array()
        .expect("freed")
        .iter()
        .find(|k| k["kind"] == kind)
        .map_or(0, |k| k["count"].as_u64().expect("count"))
}

/// The action cache records, as (path, description, layer digest hex, diff id hex).
fn records(root: &Path) -> Vec<(PathBuf, String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let dir = root.join("cache-v1/keys");
    for e in std::fs::read_dir(&dir).expect("keys dir") {
        let path = e.expect("entry").path();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("json");
        let hex = |f: &str| {
            v["layer"][f]
                .as_str()
                .map(|d| d.trim_start_matches("sha256:").to_string())
        };
        let description = v["description"].as_str().unwrap_or_default().to_string();
        out.push((path.clone(), description, hex("digest"), hex("diff_id")));
    }
    out
}

/// The record whose step description contains `needle`; its record, blob and snapshot paths.
fn step_files(root: &Path, needle: &str) -> Vec<PathBuf> {
    let found: Vec<_> = records(root)
        .into_iter()
        .filter(|r| r.1.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "one record of {needle:?} expected");
    let (path, _, blob, diff) = found.into_iter().next().expect("one");
    let mut out = vec![path];
    out.extend(blob.map(|b| root.join("blobs/sha256").join(b)));
    if let Some(d) = diff {
        let snap = root.join("snapshots-v1").join(d);
        if snap.exists() {
            out.push(snap);
        }
    }
    out
}

fn has_record(root: &Path, needle: &str) -> bool {
    records(root).iter().any(|r| r.1.contains(needle))
}

/// df's total agrees with `du` within 2% + 64 KiB (du counts directories the same way;
/// the slack covers files a concurrent lease or lock adds between the two).
fn assert_df_matches_du(root: &Path) -> u64 {
    let d = df(root);
    let total = d["total_bytes"].as_u64().expect("total");
    let sum: u64 = d["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| k["bytes"].as_u64().expect("bytes"))
        .sum();
    assert_eq!(sum, total, "the kinds do not add up to the total: {d:#}");
    let measured = du(root);
    let slack = measured / 50 + (64 << 10);
    assert!(
        total.abs_diff(measured) <= slack,
        "system df says {total} bytes, du says {measured}: {d:#}"
    );
    total
}

#[test]
fn prune_frees_dangling_blobs_and_cache_and_tagged_images_survive() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo one > /one\nRUN head -c 300000 /dev/urandom > /old\n"
    ));
    env.build(&["-t", "app"]);
    // A new tail: the old image's last layer, config and manifest are no tag's any more.
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo one > /one\nRUN echo two > /two\n"
    ));
    let new = env.build(&["-t", "app"]);
    age_all(&env.root, "2 hours ago");
    let before_df = assert_df_matches_du(&env.root);
    let (dangling, _) = df_kind(&df(&env.root), "dangling");
    assert!(dangling >= 2, "the old manifest and config are dangling");

    // --dry-run reports and removes nothing.
    let files = tree(&env.root);
    let dry = prune(&env.root, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["total_bytes"].as_u64().expect("total") > 300_000,
        "{dry:#}"
    );
    assert_eq!(
        tree(&env.root),
        files,
        "a dry run changed the store ({dry:#})"
    );

    let report = prune(&env.root, &[]);
    assert_eq!(
        (&report["total_bytes"], &report["freed"]),
        (&dry["total_bytes"], &dry["freed"]),
        "the prune did not do what its dry run said"
    );
    assert!(freed(&report, "dangling") >= 2, "{report:#}");
    assert!(freed(&report, "build-cache") >= 1, "{report:#}");
    assert!(
        !has_record(&env.root, "/old"),
        "the old tail's record stays"
    );
    assert!(
        has_record(&env.root, "echo two"),
        "the tagged image's record went"
    );

    // The tagged images are whole: every blob verifies, skopeo reads them, they run.
    verified_blobs(&env.root);
    for name in ["docker.io/library/app:latest", "localhost/busybox:latest"] {
        let out = Dir::new();
        ok(skopeo()
            .arg("copy")
            .arg(format!("oci:{}:{name}", env.root.display()))
            .arg(format!("dir:{}", out.path().join("img").display())));
    }
    assert_eq!(env.sh("app", "cat /one /two"), "one\ntwo\n");
    let after_df = assert_df_matches_du(&env.root);
    assert!(
        after_df + 300_000 < before_df,
        "df did not drop by the pruned layer: {before_df} -> {after_df}"
    );
    // A rebuild of the tagged image is entirely from the cache.
    let again = env.build(&["-t", "app"]);
    assert_eq!(again.id, new.id);
    assert!(again.ran().is_empty(), "steps ran again: {:?}", again.ran());
}

#[test]
fn keep_storage_and_until_remove_least_recently_used_first() {
    let env = BuildEnv::new();
    // Three untagged builds, each with its own 256 KiB layer: build cache no tag shares.
    for name in ["xx", "yy", "zz"] {
        env.dockerfile(&format!(
            "FROM {BASE}\nRUN head -c 262144 /dev/urandom > /{name}\n"
        ));
        env.build(&[]);
    }
    age_all(&env.root, "10 hours ago");
    age(&step_files(&env.root, "/xx"), "3 hours ago");
    age(&step_files(&env.root, "/yy"), "2 hours ago");
    age(&step_files(&env.root, "/zz"), "1 hour ago");

    // until=150m: only x (and the 10-hour-old dangling documents) is old enough.
    prune(&env.root, &["--filter", "until=150m"]);
    assert!(!has_record(&env.root, "/xx"));
    assert!(has_record(&env.root, "/yy") && has_record(&env.root, "/zz"));

    // keep-storage a little under the current size: the least recently used (y) goes, z
    // stays, even though both are older than anything `until` would spare.
    let total = assert_df_matches_du(&env.root);
    let keep = (total - (64 << 10)).to_string();
    let report = prune(&env.root, &["--keep-storage", &keep]);
    assert_eq!(
        freed(&report, "build-cache"),
        2,
        "the record and its blob: {report:#}"
    );
    assert!(!has_record(&env.root, "/yy"));
    assert!(has_record(&env.root, "/zz"));
    assert!(assert_df_matches_du(&env.root) <= total - (64 << 10));

    // A size the store is already under removes nothing (read as buildx reads it: 1.5 TiB).
    let report = prune(&env.root, &["--keep-storage", "1.5tb"]);
    assert_eq!(report["total_bytes"], 0, "{report:#}");
    assert!(has_record(&env.root, "/zz"));

    verified_blobs(&env.root);
    ok(rbuild(&env.root).args(["run", "--rm", BASE, "true"]));

    // Bad filters and sizes are usage errors naming the value.
    let r = fails(rbuild(&env.root).args(["prune", "--filter", "until=soon"]));
    assert!(r.stderr.contains("until=soon"), "{}", r.stderr);
    let r = fails(rbuild(&env.root).args(["prune", "--keep-storage", "lots"]));
    assert!(r.stderr.contains("\"lots\""), "{}", r.stderr);
}

#[test]
fn after_prune_all_a_rebuild_runs_every_step_and_gives_the_same_image() {
    let env = BuildEnv::new();
    env.write("file.txt", "content\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY file.txt /file.txt\nRUN --mount=type=cache,target=/cache echo x > /cache/x && cp /file.txt /copy\nRUN echo done > /done\n"
    ));
    let build = |env: &BuildEnv| -> (String, Vec<(String, bool)>) {
        let run = ok(env
            .build_cmd(&["-t", "app"])
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        let steps = crate::support::steps(&run.stderr)
            .into_iter()
            .filter(|s| !s.instruction.starts_with("FROM") && s.label != "internal")
            .map(|s| (s.instruction, s.cached))
            .collect();
        (run.stdout.trim().to_string(), steps)
    };
    let (first, _) = build(&env);
    let mounts = std::fs::read_dir(env.root.join("mounts-v1")).expect("mounts-v1");
    assert!(mounts.count() > 0, "the cache mount was not made");
    age_all(&env.root, "1 day ago");
    let report = prune(&env.root, &["--all"]);
    assert!(freed(&report, "cache-mounts") >= 1, "{report:#}");
    assert!(freed(&report, "snapshots") >= 1, "{report:#}");
    assert!(records(&env.root).is_empty(), "records left after --all");
    let d = df(&env.root);
    assert_eq!(df_kind(&d, "build-cache").0, 0, "{d:#}");
    assert_eq!(df_kind(&d, "snapshots").0, 0, "{d:#}");
    assert_eq!(df_kind(&d, "cache-mounts").0, 0, "{d:#}");
    // Two images (busybox and app), however many blobs they have.
    assert_eq!(df_kind(&d, "images").0, 2, "{d:#}");
    verified_blobs(&env.root);

    let (second, steps) = build(&env);
    assert_eq!(second, first, "the rebuild gave another image");
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(
        steps.iter().all(|(_, cached)| !cached),
        "a step came from the cache: {steps:?}"
    );
    assert_eq!(env.sh("app", "cat /copy /done"), "content\ndone\n");
}

#[test]
fn a_build_prunes_the_store_when_it_outgrows_the_configured_threshold() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN head -c 300000 /dev/urandom > /old\n"
    ));
    env.build(&[]);
    assert!(has_record(&env.root, "/old"));
    age_all(&env.root, "1 day ago");
    let config = env.dir.write(
        "config.toml",
        "[gc]\nthreshold = \"64K\"\nkeep_storage = 0\n",
    );
    env.dockerfile(&format!("FROM {BASE}\nRUN echo new > /new\n"));
    let run = ok(env
        .build_cmd(&["-t", "app"])
        .env("RBUILD_CONFIG", &config)
        .env("RBUILD_LOG", "info"));
    assert!(run.stderr.contains("automatic gc"), "{}", run.stderr);
    // The old, untagged build went; what this build made and used stays.
    assert!(!has_record(&env.root, "/old"), "the old record survived");
    assert!(has_record(&env.root, "echo new"));
    assert_eq!(env.sh("app", "cat /new"), "new\n");
    verified_blobs(&env.root);
    // Below the threshold nothing is pruned.
    let config = env.dir.write("config.toml", "[gc]\nthreshold = \"1T\"\n");
    let run = ok(env
        .build_cmd(&["-t", "app"])
        .env("RBUILD_CONFIG", &config)
        .env("RBUILD_LOG", "info"));
    assert!(!run.stderr.contains("automatic gc"), "{}", run.stderr);
}

#[test]
fn prune_all_right_after_a_build_frees_what_the_build_used() {
    // A CI cleanup step: `rbuild build ... && rbuild prune --all`, with nothing aged.
    let env = BuildEnv::new();
    env.write("file.txt", "content\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY file.txt /file.txt\nRUN --mount=type=cache,target=/cache echo x > /cache/x && echo y > /y\n"
    ));
    env.build(&["-t", "app"]);
    let out = ok(rbuild(&env.root).args(["prune", "--all"]));
    assert!(!out.stdout.contains("kept"), "{}", out.stdout);
    let d = df(&env.root);
    for kind in [
        "build-cache",
        "snapshots",
        "cache-mounts",
        "contexts",
        "dangling",
    ] {
        assert_eq!(df_kind(&d, kind).0, 0, "{kind} left: {d:#}");
    }
    assert_eq!(df_kind(&d, "images").0, 2, "{d:#}");
    verified_blobs(&env.root);
    assert_eq!(env.sh("app", "cat /file.txt /y"), "content\ny\n");
    // And rmi right after a build removes the blobs at once, as prune would.
    ok(rbuild(&env.root).args(["rmi", "app"]));
    let report = prune(&env.root, &["--all"]);
    assert_eq!(report["in_use"], 0, "{report:#}");
}

#[test]
fn system_df_counts_images_not_their_blobs() {
    let env = BuildEnv::new();
    ok(rbuild(&env.root).args(["tag", BASE, "another:name"]));
    let text = ok(rbuild(&env.root).args(["system", "df"])).stdout;
    let row = text
        .lines()
        .find(|l| l.starts_with("images"))
        .unwrap_or_else(|| panic!("{text}"));
    // One image (two names), three blobs.
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{text}");
    assert_eq!(df_kind(&df(&env.root), "images").0, 1);
}
