//! `rbuild pull` / `rbuild push` against a real docker-registry, checked with skopeo and umoci.

use std::path::Path;

use rbuild_test_support::{BusyboxLayout, Format, PASSWORD, Registry, USER};
use serde_json::Value;

use crate::support::{Dir, fails, ok, rbuild, skopeo, umoci, verified_blobs};

fn images(root: &Path) -> Vec<Value> {
    let out = ok(rbuild(root).args(["images", "--format", "json"]));
    serde_json::from_str(&out.stdout).expect("images --format json")
}

/// The digest skopeo reads for an image (`docker://...` or `oci:...`).
fn skopeo_digest(image: &str, extra: &[String]) -> String {
    let out = ok(skopeo().arg("inspect").args(extra).arg(image));
    let v: Value = serde_json::from_str(&out.stdout).expect("skopeo inspect json");
    v["Digest"].as_str().expect("Digest").to_string()
}

/// Requests in the registry's access log after `from` bytes, as "METHOD PATH".
fn requests_since(registry: &Registry, from: usize) -> Vec<String> {
    let log = registry.log();
    log[from..]
        .lines()
        .filter_map(|l| {
            let start = l
                .find("\"HEAD /v2")
                .or_else(|| l.find("\"GET /v2"))
                .or_else(|| l.find("\"PUT /v2"))
                .or_else(|| l.find("\"POST /v2"))
                .or_else(|| l.find("\"PATCH /v2"))?;
            let rest = &l[start + 1..];
            let end = rest.find(" HTTP/")?;
            Some(rest[..end].to_string())
        })
        .collect()
}

#[test]
fn pull_then_push_elsewhere_is_read_by_skopeo_and_umoci_and_repush_only_heads() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let host = registry.host();
    let dir = Dir::new();
    let root = dir.join("store");
    let src = format!("{host}/busybox:latest");
    let registry_digest = skopeo_digest(&format!("docker://{src}"), &registry.skopeo_flags(""));

    let out = ok(rbuild(&root).args(["pull", &src]));
    assert_eq!(out.stdout, format!("{host}/busybox@{registry_digest}\n"));
    let listed = images(&root);
    assert!(
        listed.iter().any(|i| i["name"] == src.as_str()),
        "{listed:?}"
    );
    let local = skopeo_digest(&format!("oci:{}:{src}", root.display()), &[]);
    assert_eq!(local, registry_digest);

    // Push to another repository: the blobs are mounted from the one pulled from.
    let dest = format!("{host}/copy/busybox:v1");
    let before = registry.log().len();
    let out = ok(rbuild(&root).args(["push", &src, &dest]));
    assert_eq!(
        out.stdout,
        format!("{host}/copy/busybox@{registry_digest}\n")
    );
    let reqs = requests_since(&registry, before);
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("POST /v2/copy/busybox/blobs/uploads/?mount=")),
        "{reqs:?}"
    );
    let pushed = skopeo_digest(&format!("docker://{dest}"), &registry.skopeo_flags(""));
    assert_eq!(pushed, registry_digest);
    let copied = dir.join("copied");
    ok(skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{dest}"))
        .arg(format!("oci:{}:x", copied.display())));
    let bundle = dir.join("bundle");
    ok(umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:x", copied.display()))
        .arg(&bundle));
    assert_eq!(
        std::fs::read(bundle.join("rootfs/bin/busybox")).unwrap(),
        std::fs::read(crate::support::BUSYBOX).unwrap()
    );

    // A push from a store that did not pull (no source to mount from) uploads the bytes.
    let other_root = dir.join("other");
    ok(rbuild(&other_root).args(["pull", &src]));
    std::fs::remove_dir_all(other_root.join("sources-v1")).unwrap();
    let before = registry.log().len();
    ok(rbuild(&other_root).args(["push", &src, &format!("{host}/uploaded:1")]));
    let reqs = requests_since(&registry, before);
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("PUT /v2/uploaded/blobs/uploads/")),
        "{reqs:?}"
    );
    assert!(!reqs.iter().any(|r| r.contains("mount=")), "{reqs:?}");

    // Re-push unchanged: only HEADs (after the API-root ping of a new process).
    let before = registry.log().len();
    let started = std::time::Instant::now();
    ok(rbuild(&root).args(["push", &src, &dest]));
    let took = started.elapsed();
    let reqs = requests_since(&registry, before);
    let others: Vec<&String> = reqs
        .iter()
        .filter(|r| !r.starts_with("HEAD ") && r.as_str() != "GET /v2/")
        .collect();
    assert!(others.is_empty(), "re-push made {others:?}");
    assert_eq!(
        reqs.iter().filter(|r| r.starts_with("HEAD ")).count(),
        3,
        "{reqs:?}"
    );
    eprintln!("re-push of an unchanged image (whole process) took {took:?}");
}

#[test]
fn pull_picks_the_platform_from_an_index_and_by_digest() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_tag_with_skopeo("multi", &registry, "multi:1", Format::Oci);
    let host = registry.host();
    let dir = Dir::new();
    let root = dir.join("store");
    let name = format!("{host}/multi:1");
    ok(rbuild(&root).args(["pull", "--platform", "linux/arm64", &name]));
    let inspect = ok(rbuild(&root).args(["inspect", &name]));
    assert!(inspect.stdout.contains("\"arm64\""), "{}", inspect.stdout);
    // The store names the registry's index, with the arm64 image present: another tool
    // reading the store picks that platform.
    let info: Value = serde_json::from_str(
        &ok(skopeo()
            .args(["--override-arch", "arm64", "inspect", "--config"])
            .arg(format!("oci:{}:{name}", root.display())))
        .stdout,
    )
    .unwrap();
    assert_eq!(info["architecture"], "arm64");

    let bad = fails(rbuild(&root).args(["pull", "--platform", "linux/s390x", &name]));
    assert!(bad.stderr.contains("linux/s390x"), "{}", bad.stderr);

    // By digest: named name@digest.
    let digest = skopeo_digest(
        &format!("docker://{name}"),
        &[
            "--tls-verify=false".to_string(),
            "--override-arch=amd64".to_string(),
        ],
    );
    let by_digest = format!("{host}/multi@{digest}");
    ok(rbuild(&root).args(["pull", &by_digest]));
    let listed = images(&root);
    assert!(
        listed
            .iter()
            .any(|i| i["tag"] == digest.as_str() || i["name"] == by_digest.as_str()),
        "{listed:?}"
    );
    ok(skopeo()
        .args(["inspect"])
        .arg(format!("oci:{}:{by_digest}", root.display())));
}

#[test]
fn login_then_pull_and_push_over_tls_with_htpasswd() {
    let registry = Registry::start_with_auth();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:1", Format::DockerV2s2);
    let host = registry.host();
    let dir = Dir::new();
    let config = dir.mkdir("docker");
    let root = dir.join("store");
    let ca = registry.ca_pem();
    let run = |args: &[&str]| {
        let mut cmd = rbuild(&root);
        cmd.env("DOCKER_CONFIG", &config)
            .env_remove("REGISTRY_AUTH_FILE")
            .args(args)
            .arg("--tls-ca")
            .arg(&ca);
        cmd
    };
    let name = format!("{host}/busybox:1");
    let denied = fails(&mut run(&["pull", &name]));
    assert!(denied.stderr.contains(&host), "{}", denied.stderr);

    let mut login = run(&["login", "-u", USER, "--password-stdin", &host]);
    login.stdin(std::process::Stdio::piped());
    login.stdout(std::process::Stdio::piped());
    login.stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pulled = ok(&mut run(&["pull", &name]));
    let out = ok(&mut run(&["push", &name, &format!("{host}/pushed:2")]));
    let digest = pulled.stdout.trim().rsplit('@').next().unwrap().to_string();
    assert!(
        out.stdout.trim().ends_with(&digest),
        "{} vs {}",
        out.stdout,
        digest
    );
    let creds = format!("--creds={USER}:{PASSWORD}");
    let seen = skopeo_digest(
        &format!("docker://{host}/pushed:2"),
        &["--tls-verify=false".to_string(), creds],
    );
    assert_eq!(seen, digest);
    assert!(!pulled.stderr.contains(PASSWORD) && !out.stderr.contains(PASSWORD));
}

#[test]
fn a_blob_that_does_not_match_its_digest_never_enters_the_store() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    // Damage the layer in the registry's storage (same size, one byte flipped).
    let blobs = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256");
    let mut largest: Option<(u64, std::path::PathBuf)> = None;
    for prefix in std::fs::read_dir(&blobs).unwrap() {
        for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let data = blob.unwrap().path().join("data");
            let len = std::fs::metadata(&data).unwrap().len();
            if largest.as_ref().is_none_or(|(l, _)| len > *l) {
                largest = Some((len, data));
            }
        }
    }
    let (_, layer) = largest.expect("a layer in the registry");
    let layer_hex = layer
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let dir = Dir::new();
    let root = dir.join("store");
    let out = fails(rbuild(&root).args(["pull", &format!("{}/busybox", registry.host())]));
    assert!(out.stderr.contains(&layer_hex), "{}", out.stderr);
    let stored = verified_blobs(&root);
    assert!(!stored.contains(&layer_hex), "{stored:?}");
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert!(images(&root).is_empty());
}

#[test]
fn eight_parallel_pulls_into_one_store_keep_one_copy_of_each_blob() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    let bigger = BusyboxLayout::build_with_extra(4 << 20);
    let host = registry.host();
    let mut names = Vec::new();
    for (i, repo) in [
        "a/busybox:1",
        "b/busybox:1",
        "a/busybox:2",
        "busybox:latest",
    ]
    .iter()
    .enumerate()
    {
        let format = if i % 2 == 0 {
            Format::Oci
        } else {
            Format::DockerV2s2
        };
        layout.push_with_skopeo(&registry, repo, format);
        names.push(format!("{host}/{repo}"));
    }
    // A second image: the same busybox layer plus another.
    for repo in ["big:1", "c/big:1", "big:2", "d/big:3"] {
        bigger.push_with_skopeo(&registry, repo, Format::Oci);
        names.push(format!("{host}/{repo}"));
    }
    let dir = Dir::new();
    let root = dir.join("store");
    let children: Vec<(String, std::process::Child)> = names
        .iter()
        .map(|n| {
            let child = rbuild(&root)
                .args(["pull", n])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (n.clone(), child)
        })
        .collect();
    for (name, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "pull of {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = images(&root);
    assert_eq!(listed.len(), 8, "{listed:?}");
    // Exactly the blobs the eight images need, each once and each hashing to its name.
    let stored = verified_blobs(&root);
    let mut needed = std::collections::BTreeSet::new();
    for name in &names {
        // The store's view (skopeo's oci: transport lists OCI media types only).
        let out = ok(rbuild(&root).args(["inspect", name]));
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let manifest = &v[0]["manifest"];
        needed.insert(manifest["config"]["digest"].as_str().unwrap()[7..].to_string());
        for l in manifest["layers"].as_array().unwrap() {
            needed.insert(l["digest"].as_str().unwrap()[7..].to_string());
        }
        needed.insert(v[0]["descriptor"]["digest"].as_str().unwrap()[7..].to_string());
    }
    let stored_set: std::collections::BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len());
    assert_eq!(stored_set, needed);
}

#[test]
fn run_pulls_a_missing_image_and_pull_always_refetches_a_moved_tag() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_tag_with_skopeo("latest", &registry, "tools:1", Format::Oci);
    let dir = Dir::new();
    let root = dir.join("store");
    let name = format!("{}/tools:1", registry.host());

    let out = ok(rbuild(&root).args(["run", "--rm", &name, "echo", "pulled and ran"]));
    assert_eq!(out.stdout, "pulled and ran\n");
    assert!(
        images(&root).iter().any(|i| i["name"] == name.as_str()),
        "{:?}",
        images(&root)
    );
    let fetches = requests_since(&registry, 0)
        .iter()
        .filter(|l| l.contains("GET") && l.contains("/blobs/"))
        .count();
    assert!(fetches >= 2, "config and layer fetched");

    // Present now: the default policy does not go back to the registry for blobs.
    let before = registry.log().len();
    ok(rbuild(&root).args(["run", "--rm", &name, "true"]));
    assert!(
        requests_since(&registry, before).is_empty(),
        "{:?}",
        requests_since(&registry, before)
    );
    // --pull always asks the registry again (the manifest), and still runs.
    ok(rbuild(&root).args(["run", "--rm", "--pull", "always", &name, "true"]));
    assert!(
        requests_since(&registry, before)
            .iter()
            .any(|l| l.contains("/manifests/1")),
        "{:?}",
        requests_since(&registry, before)
    );
    // --pull never on a missing image fails with exit code 125 and names the image.
    let missing = format!("{}/nothing:1", registry.host());
    let out = rbuild(&root)
        .args(["run", "--rm", "--pull", "never", &missing, "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing"));
}

/// The names in the store's record of where pulled images came from.
fn pull_sources(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(root.join("sources-v1")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn prune_forgets_where_a_removed_image_came_from_and_keeps_the_others() {
    let registry = Registry::start();
    let host = registry.host();
    BusyboxLayout::build().push_with_skopeo(&registry, "kept:1", Format::Oci);
    BusyboxLayout::build_with_extra(1000).push_with_skopeo(&registry, "gone:1", Format::Oci);
    let dir = Dir::new();
    let root = dir.join("store");
    let pulled = |name: &str| {
        let out = ok(rbuild(&root).args(["pull", &format!("{host}/{name}")]));
        out.stdout
            .trim()
            .rsplit_once("@sha256:")
            .unwrap()
            .1
            .to_string()
    };
    let kept = pulled("kept:1");
    let gone = pulled("gone:1");
    let mut both = vec![kept.clone(), gone.clone()];
    both.sort();
    assert_eq!(pull_sources(&root), both);

    ok(rbuild(&root).args(["rmi", &format!("{host}/gone:1")]));
    ok(rbuild(&root).args(["prune"]));
    assert_eq!(pull_sources(&root), std::slice::from_ref(&kept));
    assert_eq!(
        std::fs::read_to_string(root.join("sources-v1").join(&kept)).unwrap(),
        format!("{host}/kept\n")
    );
    verified_blobs(&root);
}
