//! `rbuild report` on images stacked by umoci and archived by skopeo (not written by rbuild's
//! own layer code), checked to the byte; `--fail-on`, `--diff`, and the HTML page in a real
//! headless chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Dir, busybox_rootfs, ok, rbuild, skopeo, tool, umoci};

const MIB: u64 = 1024 * 1024;

/// Deterministic bytes that do not compress to nothing.
pub(crate) fn content(seed: u64, len: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

fn image_ref(root: &Path, name: &str) -> String {
    format!("{}:docker.io/library/{name}", root.display())
}

/// Unpacks `from` with umoci, lets `change` edit the root file system, repacks as `to` with
/// `created_by` in the history.
fn umoci_layer(
    dir: &Dir,
    root: &Path,
    from: &str,
    to: &str,
    created_by: &str,
    change: impl Fn(&Path),
) {
    let bundle = dir.join(format!("bundle-{}", to.replace(':', "-")));
    ok(umoci()
        .args(["unpack", "--rootless", "--image", &image_ref(root, from)])
        .arg(&bundle));
    change(&bundle.join("rootfs"));
    ok(umoci()
        .args(["repack", "--image", &image_ref(root, to)])
        .args(["--history.created_by", created_by])
        .arg(&bundle));
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// busybox (imported), then a umoci layer writing three 10 MiB files, an apt list and a
/// 1 MiB file, then a umoci layer deleting one 10 MiB file, overwriting one with 4 MiB,
/// chmodding the third and copying the 1 MiB content to a second path.
fn wasteful_store() -> (Dir, PathBuf, u64) {
    let dir = Dir::new();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    let busybox = std::fs::metadata(rootfs.join("bin/busybox")).unwrap().len();
    let root = dir.join("store");
    ok(rbuild(&root).arg("import").arg(&rootfs).arg("busybox"));
    umoci_layer(
        &dir,
        &root,
        "busybox:latest",
        "app:v1",
        "RUN /bin/sh -c make # buildkit",
        |fs| {
            std::fs::create_dir_all(fs.join("data")).unwrap();
            std::fs::write(fs.join("data/deleted"), content(1, 10 * MIB)).unwrap();
            std::fs::write(fs.join("data/overwritten"), content(2, 10 * MIB)).unwrap();
            std::fs::write(fs.join("data/chmodded"), content(3, 10 * MIB)).unwrap();
            chmod(&fs.join("data/chmodded"), 0o644);
            std::fs::create_dir_all(fs.join("var/lib/apt/lists")).unwrap();
            std::fs::write(
                fs.join("var/lib/apt/lists/deb_Packages"),
                content(4, 3 * MIB),
            )
            .unwrap();
            std::fs::write(fs.join("data/one"), content(5, MIB)).unwrap();
        },
    );
    umoci_layer(
        &dir,
        &root,
        "app:v1",
        "app:v2",
        "RUN /bin/sh -c cleanup # buildkit",
        |fs| {
            std::fs::remove_file(fs.join("data/deleted")).unwrap();
            std::fs::write(fs.join("data/overwritten"), content(6, 4 * MIB)).unwrap();
            chmod(&fs.join("data/chmodded"), 0o755);
            std::fs::write(fs.join("data/two"), content(5, MIB)).unwrap();
        },
    );
    (dir, root, busybox)
}

fn report_json(root: &Path, image: &str) -> Value {
    let out = ok(rbuild(root).args(["report", "--format", "json", image]));
    serde_json::from_str(&out.stdout).expect("report --format json is JSON")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a number"))
}

#[test]
fn report_counts_umoci_layers_to_the_byte() {
    let (_dir, root, busybox) = wasteful_store();
    let r = report_json(&root, "app:v2");
    assert_eq!(r["schema"], 1);
    assert_eq!(r["image"]["name"], "docker.io/library/app:v2");
    let t = &r["totals"];
    assert_eq!(u(&t["layers"]), 3);
    let shipped = busybox + 30 * MIB + 3 * MIB + MIB + 4 * MIB + 10 * MIB + MIB;
    let final_bytes = busybox + 4 * MIB + 10 * MIB + 3 * MIB + MIB + MIB;
    assert_eq!(u(&t["shipped_bytes"]), shipped);
    assert_eq!(u(&t["final_bytes"]), final_bytes);
    assert_eq!(u(&t["shadowed_bytes"]), 30 * MIB);
    assert_eq!(u(&t["duplicate_bytes"]), MIB);
    assert_eq!(u(&t["wasted_bytes"]), 31 * MIB);
    let efficiency = t["efficiency"].as_f64().unwrap();
    assert!((efficiency - final_bytes as f64 / shipped as f64).abs() < 1e-12);

    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers[0]["instruction"], "rbuild import");
    assert_eq!(layers[1]["instruction"], "RUN /bin/sh -c make");
    assert_eq!(u(&layers[1]["shadowed_bytes"]), 30 * MIB);
    assert_eq!(u(&layers[2]["removed_bytes"]), 10 * MIB);
    assert_eq!(u(&layers[2]["modified_bytes"]), 14 * MIB);
    assert_eq!(u(&layers[2]["added_bytes"]), MIB);
    // The compressed sizes are the blobs' sizes in the manifest.
    let inspect: Value =
        serde_json::from_str(&ok(rbuild(&root).args(["inspect", "app:v2"])).stdout).unwrap();
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(
            layer["compressed_bytes"],
            inspect[0]["manifest"]["layers"][i]["size"]
        );
    }

    let kinds: Vec<(&str, u64, Option<u64>)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap(),
                u(&f["bytes"]),
                f["layer"].as_u64(),
            )
        })
        .collect();
    for expected in [
        ("deleted-later", 10 * MIB, Some(1)),
        ("overwritten", 10 * MIB, Some(1)),
        ("metadata-only-copy", 10 * MIB, Some(1)),
        ("package-cache", 3 * MIB, Some(1)),
        ("duplicate", MIB, Some(2)),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} not in {kinds:?}");
    }
    let largest = &r["largest_files"][0];
    assert_eq!(largest["path"], "/data/chmodded");
    assert_eq!(u(&largest["layer"]), 2);

    // The text report says the same.
    let text = ok(rbuild(&root).args(["report", "app:v2"])).stdout;
    assert!(text.contains("Wasted:     32.5MB"), "{text}");
    assert!(text.contains("metadata-only-copy"), "{text}");
}

#[test]
fn fail_on_exits_3_with_the_reason() {
    let (_dir, root, _) = wasteful_store();
    let run = rbuild(&root)
        .args([
            "report",
            "app:v2",
            "--fail-on",
            "wasted>20MB",
            "--fail-on",
            "size>1GB",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("wasted>20MB") && stderr.contains("wasted is 32.5MB (32505856 bytes)"),
        "{stderr}"
    );
    assert!(!stderr.contains("size>1GB"), "{stderr}");
    assert!(!run.stdout.is_empty(), "the report is still printed");
    // The efficiency is about 0.41 (it depends on the size of busybox).
    let efficiency = report_json(&root, "app:v2")["totals"]["efficiency"]
        .as_f64()
        .unwrap();
    let below = format!("efficiency<{:.4}", efficiency - 0.0001);
    let run = rbuild(&root)
        .args(["report", "app:v2", "--fail-on", &below])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{below}");
    let above = format!("efficiency<{:.4}", efficiency + 0.0001);
    let run = rbuild(&root)
        .args(["report", "app:v2", "--fail-on", &above])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{above}");
    let run = rbuild(&root)
        .args(["report", "app:v2", "--fail-on", "bigness>1"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown metric \"bigness\""));
}

#[test]
fn diff_says_what_grew() {
    let (_dir, root, _) = wasteful_store();
    let out = ok(rbuild(&root).args(["report", "--diff", "app:v1", "app:v2", "--format", "json"]));
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(u(&d["shared_layers"]), 2);
    assert_eq!(d["added_layers"].as_array().unwrap().len(), 1);
    let paths = d["paths"].as_array().unwrap();
    let delta = |p: &str| {
        paths
            .iter()
            .find(|x| x["path"] == p)
            .unwrap_or_else(|| panic!("{p} not in {paths:?}"))["delta"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(delta("/data/deleted"), -(10 * MIB as i64));
    assert_eq!(delta("/data/overwritten"), -(6 * MIB as i64));
    assert_eq!(delta("/data/two"), MIB as i64);
    let data = d["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["path"] == "/data")
        .unwrap();
    assert_eq!(data["delta"].as_i64().unwrap(), -(15 * MIB as i64));
    let text = ok(rbuild(&root).args(["report", "--diff", "busybox", "app:v2"])).stdout;
    assert!(text.contains("Layers: 1 shared"), "{text}");
    assert!(text.contains("+ #2"), "{text}");
}

#[test]
fn archives_from_skopeo_report_like_the_store() {
    let (dir, root, _) = wasteful_store();
    let from_store = report_json(&root, "app:v2");
    let oci = dir.join("app-oci.tar");
    let docker = dir.join("app-docker.tar");
    let src = format!("oci:{}", image_ref(&root, "app:v2"));
    ok(skopeo().args(["copy", &src, &format!("oci-archive:{}", oci.display())]));
    ok(skopeo().args([
        "copy",
        &src,
        &format!("docker-archive:{}:app:v2", docker.display()),
    ]));
    for arg in [
        format!("oci-archive:{}", oci.display()),
        format!("docker-archive:{}", docker.display()),
    ] {
        // No store is touched: --root points at a directory that must stay absent.
        let r = report_json(&dir.join("no-store"), &arg);
        assert!(!dir.join("no-store").exists());
        for key in [
            "shipped_bytes",
            "final_bytes",
            "shadowed_bytes",
            "duplicate_bytes",
        ] {
            assert_eq!(r["totals"][key], from_store["totals"][key], "{arg}: {key}");
        }
        assert_eq!(r["layers"][2]["instruction"], "RUN /bin/sh -c cleanup");
    }
    // docker archives hold uncompressed layers: compressed = uncompressed there.
    let r = report_json(
        &dir.join("no-store"),
        &format!("docker-archive:{}", docker.display()),
    );
    assert_eq!(
        r["totals"]["compressed_bytes"],
        r["totals"]["uncompressed_bytes"]
    );
}

#[test]
fn base_image_from_the_label() {
    let (_dir, root, _) = wasteful_store();
    ok(umoci().args([
        "config",
        "--image",
        &image_ref(&root, "app:v2"),
        "--tag",
        "docker.io/library/app:labelled",
        "--config.label",
        "org.opencontainers.image.base.name=docker.io/library/app:v1",
    ]));
    let r = report_json(&root, "app:labelled");
    assert_eq!(r["base"]["source"], "annotation");
    assert_eq!(r["base"]["name"], "docker.io/library/app:v1");
    assert_eq!(u(&r["base"]["layers"]), 2);
    assert_eq!(r["layers"][1]["base"], true);
    assert_eq!(r["layers"][2]["base"], false);
}

#[test]
fn registry_images_are_pulled_on_demand() {
    let (dir, root, _) = wasteful_store();
    let from_store = report_json(&root, "app:v2");
    let registry = rbuild_test_support::Registry::start();
    let remote = format!("{}/app:v2", registry.host());
    ok(skopeo().args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", image_ref(&root, "app:v2")),
        &format!("docker://{remote}"),
    ]));

    // docker://REF reads the registry into a temporary store: --root stays absent.
    let no_store = dir.join("no-store");
    let r = report_json(&no_store, &format!("docker://{remote}"));
    assert!(!no_store.exists());
    for key in [
        "shipped_bytes",
        "final_bytes",
        "shadowed_bytes",
        "duplicate_bytes",
    ] {
        assert_eq!(r["totals"][key], from_store["totals"][key], "{key}");
    }

    // A plain name that is not in the store is pulled into it, as `rbuild run` does.
    let other = dir.join("other-store");
    let r = report_json(&other, &remote);
    assert_eq!(
        r["totals"]["final_bytes"],
        from_store["totals"]["final_bytes"]
    );
    let listed = ok(rbuild(&other).args(["images", "--format", "json"]));
    assert!(listed.stdout.contains(&remote), "{}", listed.stdout);

    // A name the registry does not have fails and names it.
    let missing = format!("{}/nothing:1", registry.host());
    let run = crate::support::fails(rbuild(&other).args(["report", &missing]));
    assert!(run.stderr.contains("nothing"), "{}", run.stderr);
}

pub(crate) fn chromium(profile: &Path) -> Command {
    let mut cmd = tool("chromium", "chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let (dir, root, _) = wasteful_store();
    let html = dir.join("report.html");
    ok(rbuild(&root)
        .args(["report", "app:v2", "--format", "html", "-o"])
        .arg(&html));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("src=\""), "no external resources");
    let url = format!("file://{}", html.display());
    let dom = ok(chromium(&dir.mkdir("profile-1")).args(["--dump-dom", &url])).stdout;
    assert!(
        dom.contains("data-ok=\"1\""),
        "the page script did not finish:\n{}",
        &dom[..dom.len().min(2000)]
    );
    let html_tag = &dom[dom.find("<html").unwrap()..];
    let html_tag = &html_tag[..html_tag.find('>').unwrap()];
    assert!(!html_tag.contains("data-error"), "script error: {html_tag}");
    let leaves = dom.matches("class=\"tm\"").count();
    assert!(leaves >= 5, "treemap has {leaves} cells");
    assert!(
        dom.contains("data-path=\"/data/chmodded\""),
        "the largest file is drawn"
    );
    assert!(dom.contains("id=\"timeline-svg\""));
    assert_eq!(dom.matches("class=\"layer-row\"").count(), 3);
    let shot = dir.join("report.png");
    ok(chromium(&dir.mkdir("profile-2"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("RBUILD_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("copy the screenshot");
    }
}

/// `rbuild build --report`: an image rbuild built with known waste (a 2 MiB context file
/// copied, deleted by a later RUN; an apt list left behind; a 1 MiB file duplicated) is
/// reported to the byte, each layer and finding tied to its Dockerfile line, the base's
/// layers told apart by the manifest's base annotation; `--fail-on` exits 3.
#[test]
fn build_report_maps_layers_to_dockerfile_lines() {
    use crate::support::{BASE, BuildEnv};
    let env = BuildEnv::new();
    env.write("big.bin", content(7, 2 * MIB));
    env.write("one.bin", content(8, MIB));
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         COPY big.bin /data/big.bin\n\
         RUN rm /data/big.bin\n\
         COPY one.bin /data/one.bin\n\
         RUN cp /data/one.bin /data/copy.bin\n\
         RUN mkdir -p /var/lib/apt/lists && head -c 100000 /data/one.bin > /var/lib/apt/lists/pkgs\n"
    ));
    let file = env.dir.join("report.json");
    let built = env.build(&[
        "-t",
        "wasteful",
        "--report",
        "--report-format",
        "json",
        "--report-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(built.ran().len(), 5, "{}", built.stderr);
    let r: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let t = &r["totals"];
    assert_eq!(u(&t["shadowed_bytes"]), 2 * MIB);
    assert_eq!(u(&t["duplicate_bytes"]), MIB);
    assert_eq!(u(&t["wasted_bytes"]), 3 * MIB);
    assert_eq!(r["base"]["source"], "annotation");
    assert_eq!(u(&r["base"]["layers"]), 1);
    let layers = r["layers"].as_array().unwrap();
    let lines: Vec<Option<u64>> = layers
        .iter()
        .map(|l| l["dockerfile_line"].as_u64())
        .collect();
    // The RUN deleting a file is a layer (a whiteout); every built layer names its line.
    assert_eq!(lines, [None, Some(2), Some(3), Some(4), Some(5), Some(6)]);
    let finding = |kind: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} finding in {}", r["findings"]))
            .clone()
    };
    let deleted = finding("deleted-later");
    assert_eq!(u(&deleted["bytes"]), 2 * MIB);
    assert_eq!(u(&deleted["dockerfile_line"]), 2);
    assert_eq!(finding("package-cache")["dockerfile_line"], 6);
    assert_eq!(u(&finding("duplicate")["bytes"]), MIB);

    // The same build from the cache, gated: exit 3 with the reason, the image id on stdout.
    let out = env
        .build_cmd(&["-t", "wasteful", "--fail-on", "wasted>2MB"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fails --fail-on \"wasted>2MB\""),
        "{stderr}"
    );
    assert!(stderr.contains("Dockerfile line 2"), "{stderr}");
}
