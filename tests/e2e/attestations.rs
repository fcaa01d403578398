//! Attestations (`build --sbom --provenance`, `--attest`): the attestation manifests in
//! BuildKit's layout beside each image of the index, the SBOM statement checked by
//! pyspdxtools, the provenance's materials (base images by digest, `ADD URL` downloads by
//! checksum), the store, `save`/`load`, `--push` read back by skopeo and umoci, `pull
//! --all-platforms`, two-platform builds, `local` outputs, and that no secret reaches a
//! blob.

use std::path::Path;

use rbuild_test_support::{DebianBase, Registry};
use serde_json::{Value, json};

use crate::support::{
    BASE, BuildEnv, Dir, Http, as_root_and_rootless, ok, rbuild, skopeo, umoci, validate_spdx,
};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// A blob of the OCI layout at `layout`.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest} of {}: {e}", layout.display()))
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(layout, digest)).expect("a JSON blob")
}

/// The descriptor `index.json` of `layout` names `name` with.
fn named(layout: &Path, name: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {index:#}"))
        .clone()
}

/// What an index holds: its image entries and its attestation manifests, each checked to
/// be in BuildKit's layout, paired with their statements by predicate type.
struct Attested {
    images: Vec<Value>,
    /// (the attestation manifest's descriptor, {predicate type: statement}).
    attestations: Vec<(Value, serde_json::Map<String, Value>)>,
}

fn attested(layout: &Path, index_digest: &str) -> Attested {
    let index = json_blob(layout, index_digest);
    let (attestations, images): (Vec<Value>, Vec<Value>) = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .partition(|d| d["platform"]["os"] == "unknown");
    let mut out = Vec::new();
    for a in &attestations {
        assert_eq!(
            a["platform"],
            json!({"architecture": "unknown", "os": "unknown"})
        );
        assert_eq!(
            a["annotations"]["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        let subject = a["annotations"]["vnd.docker.reference.digest"]
            .as_str()
            .unwrap();
        assert!(
            images.iter().any(|i| i["digest"] == subject),
            "{subject} names no image of {index:#}"
        );
        let manifest = json_blob(layout, a["digest"].as_str().unwrap());
        assert_eq!(manifest["mediaType"], a["mediaType"]);
        let config = json_blob(layout, manifest["config"]["digest"].as_str().unwrap());
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(
            config,
            json!({
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>(),
                },
            })
        );
        let mut statements = serde_json::Map::new();
        for layer in layers {
            assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
            let statement = json_blob(layout, layer["digest"].as_str().unwrap());
            assert_eq!(statement["_type"], "https://in-toto.io/Statement/v0.1");
            assert_eq!(
                layer["annotations"]["in-toto.io/predicate-type"],
                statement["predicateType"]
            );
            for s in statement["subject"].as_array().unwrap() {
                assert_eq!(
                    format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap()),
                    subject
                );
            }
            statements.insert(
                statement["predicateType"].as_str().unwrap().to_string(),
                statement,
            );
        }
        out.push((a.clone(), statements));
    }
    Attested {
        images,
        attestations: out,
    }
}

/// Writes a statement's SPDX predicate to a file and validates it; returns the document.
fn checked_spdx(dir: &Path, statement: &Value) -> Value {
    let path = dir.join("sbom-predicate.spdx.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&statement["predicate"]).unwrap(),
    )
    .unwrap();
    validate_spdx(&path);
    statement["predicate"].clone()
}

const SLSA1: &str = "https://slsa.dev/provenance/v1";
const SPDX: &str = "https://spdx.dev/Document";

fn busybox_sbom_and_max_provenance(rootless: bool) {
    const BODY: &[u8] = b"fetched by ADD\n";
    let server = Http::start(BODY, "Wed, 21 Oct 2015 07:28:00 GMT");
    let url = server.url("tool.txt");
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let dockerfile = format!("FROM {BASE}\nADD {url} /dl/tool.txt\nRUN echo built > /built\n");
    env.dockerfile(&dockerfile);
    let built = env.build(&[
        "-t",
        "localhost/att:1",
        "--sbom",
        "--provenance=mode=max",
        "--build-arg",
        "VERSION=1.2",
    ]);
    let top = named(&env.root, "localhost/att:1");
    assert_eq!(top["digest"], built.id.as_str());
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    let a = attested(&env.root, &built.id);
    assert_eq!(a.images.len(), 1);
    assert_eq!(
        a.images[0]["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    let [(_, statements)] = &a.attestations[..] else {
        panic!("one attestation manifest: {:?}", a.attestations)
    };
    assert_eq!(
        statements.keys().collect::<Vec<_>>(),
        [SLSA1, SPDX],
        "{statements:#?}"
    );
    let sbom = &statements[SPDX];
    assert_eq!(
        sbom["subject"][0]["name"],
        "pkg:docker/localhost/att@1?platform=linux%2Famd64"
    );
    let doc = checked_spdx(&env.dir.join("."), sbom);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");

    let p = &statements[SLSA1]["predicate"];
    let definition = &p["buildDefinition"];
    assert_eq!(
        definition["buildType"],
        "https://github.com/rbuild/rbuild/blob/main/docs/attestations.md"
    );
    let base = named(&env.root, BASE);
    let base_hex = base["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    assert_eq!(
        definition["resolvedDependencies"],
        json!([
            {"uri": "pkg:docker/localhost/busybox@latest?platform=linux%2Famd64",
             "digest": {"sha256": base_hex}},
            {"uri": url, "digest": {"sha256": sha256(BODY)}},
        ])
    );
    let external = &definition["externalParameters"];
    assert_eq!(
        external["configSource"],
        json!({"path": "Dockerfile", "digest": {"sha256": sha256(dockerfile.as_bytes())}})
    );
    assert_eq!(
        external["request"]["args"],
        json!({"build-arg:VERSION": "1.2", "platform": "linux/amd64"})
    );
    assert_eq!(external["request"]["frontend"], "dockerfile.v0");
    let steps = definition["internalParameters"]["buildConfig"]["steps"]
        .as_array()
        .unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["op"]["description"] == "RUN /bin/sh -c echo built > /built"),
        "{steps:#?}"
    );
    let run = &p["runDetails"];
    assert_eq!(
        run["builder"]["version"]["rbuild"],
        env!("CARGO_PKG_VERSION")
    );
    let source = &run["metadata"]["rbuild_metadata"]["source"]["infos"][0];
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(source["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(text, dockerfile.as_bytes());
    let started = run["metadata"]["startedOn"].as_str().unwrap();
    let finished = run["metadata"]["finishedOn"].as_str().unwrap();
    assert!(started <= finished, "{started} {finished}");

    // The store's readers pick the image, never the attestation manifest.
    assert_eq!(
        env.sh("localhost/att:1", "cat /built /dl/tool.txt"),
        "built\nfetched by ADD\n"
    );
    let images: Value =
        serde_json::from_str(&ok(env.rbuild().args(["images", "--format", "json"])).stdout)
            .unwrap();
    let listed = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "localhost/att:1")
        .unwrap();
    assert_eq!(listed["platforms"], json!(["linux/amd64"]));
    ok(env.rbuild().args(["sbom", "localhost/att:1"]));

    // save and load keep the index and its attestations.
    let saved = env.dir.mkdir("saved");
    if let Some(user) = env.user {
        ok(std::process::Command::new("chown").arg(user).arg(&saved));
    }
    let archive = saved.join("att.tar");
    ok(env
        .rbuild()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("localhost/att:1"));
    let other = env.dir.join("loaded");
    ok(rbuild(&other).args(["load", "-i"]).arg(&archive));
    assert_eq!(
        named(&other, "localhost/att:1")["digest"],
        built.id.as_str()
    );
    let again = attested(&other, &built.id);
    assert_eq!(again.attestations.len(), 1);
    assert_eq!(
        ok(rbuild(&other).args(["run", "--rm", "localhost/att:1", "cat", "/built"])).stdout,
        "built\n"
    );
}

as_root_and_rootless!(busybox_sbom_and_max_provenance);

#[test]
fn debian_sbom_lists_dpkg_packages_and_a_push_keeps_the_attestations() {
    let registry = Registry::start();
    let host = registry.host();
    DebianBase::bookworm().push(&registry, "debian:bookworm");
    let env = BuildEnv::new();
    env.write("hello.txt", "hello\n");
    env.dockerfile(&format!(
        "FROM {host}/debian:bookworm\nCOPY hello.txt /hello.txt\n"
    ));
    let name = format!("{host}/deb:1");
    env.build(&[
        "-t",
        &name,
        "--attest",
        "type=sbom",
        "--attest",
        "type=provenance,version=v0.2",
        "--build-arg",
        "VERSION=2",
        "--push",
    ]);
    let flags = registry.skopeo_flags("");
    let raw: Value = serde_json::from_str(
        &ok(skopeo()
            .args(["inspect", "--raw"])
            .args(&flags)
            .arg(format!("docker://{name}")))
        .stdout,
    )
    .unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw:#}");

    // skopeo copy --all keeps the attestation manifest; its statements are about the
    // pushed (gzip) manifest.
    let dir = Dir::new();
    let copied = dir.join("copied");
    ok(skopeo()
        .args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:x", copied.display())));
    let top = named(&copied, "x");
    let a = attested(&copied, top["digest"].as_str().unwrap());
    let image = json_blob(&copied, a.images[0]["digest"].as_str().unwrap());
    assert_eq!(
        image["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let statements = &a.attestations[0].1;
    let doc = checked_spdx(dir.path(), &statements[SPDX]);
    let names: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for package in ["bash", "dpkg", "libc6", "coreutils"] {
        assert!(names.contains(&package), "{package} missing from {names:?}");
    }
    assert!(names.len() > 80, "{names:?}");

    // v0.2, mode=min: the materials, no build arg values.
    let p = &statements["https://slsa.dev/provenance/v0.2"]["predicate"];
    let base_digest = ok(skopeo()
        .args(["inspect", "--format", "{{.Digest}}"])
        .args(&flags)
        .arg(format!("docker://{host}/debian:bookworm")))
    .stdout;
    assert_eq!(
        p["materials"],
        json!([{
            "uri": format!("pkg:docker/{host}/debian@bookworm?platform=linux%2Famd64"),
            "digest": {"sha256": base_digest.trim().strip_prefix("sha256:").unwrap()},
        }])
    );
    assert_eq!(
        p["invocation"]["parameters"]["args"],
        json!({"platform": "linux/amd64"})
    );
    assert_eq!(p["metadata"]["completeness"]["parameters"], false);
    assert!(p.get("buildConfig").is_none(), "{p:#}");

    // `rbuild push` of the stored index makes the same attestation manifests for the
    // manifests it compresses: the same index digest as the build's push.
    let again = format!("{host}/again:1");
    let pushed = ok(env.rbuild().args(["push", &name, &again])).stdout;
    assert_eq!(
        pushed.trim(),
        format!("{host}/again@{}", top["digest"].as_str().unwrap())
    );

    // umoci unpacks the image (skopeo picks the platform's manifest, not the attestation).
    let single = dir.join("single");
    ok(skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:x", single.display())));
    let bundle = dir.join("bundle");
    ok(umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:x", single.display()))
        .arg(&bundle));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "hello\n"
    );

    // pull --all-platforms keeps the whole index; a plain pull takes the image.
    let pulled = dir.join("pulled");
    ok(rbuild(&pulled).args(["pull", "--all-platforms", &name]));
    let index = named(&pulled, &format!("{host}/deb:1"));
    assert_eq!(index["digest"], top["digest"]);
    assert_eq!(
        attested(&pulled, index["digest"].as_str().unwrap())
            .attestations
            .len(),
        1
    );
    let plain = dir.join("plain");
    ok(rbuild(&plain).args(["pull", &name]));
    assert_eq!(
        ok(rbuild(&plain).args(["run", "--rm", &name, "cat", "/hello.txt"])).stdout,
        "hello\n"
    );
}

/// A build with `--sbom` reads the package metadata of the base layers it unpacks as they
/// stream by, instead of decompressing their blobs again for the SBOM; the attached SBOM
/// equals `rbuild sbom`'s reading of the stored image from its blobs.
fn debian_sbom_reads_the_base_while_it_is_unpacked(rootless: bool) {
    let registry = Registry::start();
    let host = registry.host();
    DebianBase::bookworm().push(&registry, "debian:bookworm");
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    env.dockerfile(&format!(
        "FROM {host}/debian:bookworm\nRUN echo built > /built && rm /usr/share/doc/bash/copyright\n"
    ));
    let mut cmd = env.build_cmd(&["-t", "localhost/deb-tee:1", "--sbom"]);
    cmd.env("RBUILD_LOG", "rbuild_engine=debug,rbuild_report=debug");
    let run = ok(&mut cmd);
    let id = run.stdout.trim();
    // The test tier's Debian base is one layer.
    let debian_layers = 1;
    for layer in 0..debian_layers {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&format!("layer {layer} (sha256:"))
                    && l.contains("packages taken from an earlier read")),
            "the base layer {layer} was read again:\n{}",
            run.stderr
        );
    }
    // The RUN's layer was made by the build, not unpacked: read from its blob.
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.contains(&format!("layer {debian_layers} (sha256:"))
                && l.contains("packages taken from an earlier read")),
        "{}",
        run.stderr
    );

    let a = attested(&env.root, id);
    let attached = checked_spdx(env.root.parent().unwrap(), &a.attestations[0].1[SPDX]);
    let read = ok(env
        .rbuild()
        .args(["sbom", "--format", "spdx-json", "localhost/deb-tee:1"]))
    .stdout;
    let read: Value = serde_json::from_str(&read).unwrap();
    for part in ["packages", "files", "relationships"] {
        assert_eq!(attached[part], read[part], "{part} differ");
    }
    let packages = attached["packages"].as_array().unwrap();
    assert!(packages.iter().any(|p| p["name"] == "bash"), "{attached:#}");
    assert!(packages.len() > 80, "{}", packages.len());
}

as_root_and_rootless!(debian_sbom_reads_the_base_while_it_is_unpacked);

/// The SPDX statements of the attestation manifest of the image `image_digest` in the index
/// `index_digest` of the store at `root`, in layer order, validated.
fn spdx_statements(root: &Path, index_digest: &str) -> Vec<Value> {
    let index = json_blob(root, index_digest);
    let a = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["platform"]["os"] == "unknown")
        .expect("an attestation manifest")
        .clone();
    let manifest = json_blob(root, a["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["annotations"]["in-toto.io/predicate-type"] == SPDX)
        .map(|l| {
            let statement = json_blob(root, l["digest"].as_str().unwrap());
            assert_eq!(
                format!(
                    "sha256:{}",
                    statement["subject"][0]["digest"]["sha256"]
                        .as_str()
                        .unwrap()
                ),
                a["annotations"]["vnd.docker.reference.digest"]
                    .as_str()
                    .unwrap()
            );
            let dir = Dir::new();
            checked_spdx(dir.path(), &statement);
            statement
        })
        .collect()
}

fn package_names(statement: &Value) -> Vec<String> {
    statement["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

/// `ARG BUILDKIT_SBOM_SCAN_STAGE` (BuildKit's switch) and `--sbom=scan-stages=true` add an
/// SBOM of the stages the image is built from, after the image's own; a stage not built
/// gets none.
#[test]
fn stage_sboms_follow_buildkits_scan_stage_arg() {
    let registry = Registry::start();
    let host = registry.host();
    DebianBase::bookworm().push(&registry, "debian:bookworm");
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {host}/debian:bookworm AS build\n\
         ARG BUILDKIT_SBOM_SCAN_STAGE=true\n\
         RUN env > /build-env && echo tool > /tool\n\
         FROM {BASE} AS helper\n\
         RUN echo helper > /helper\n\
         FROM {BASE} AS unused\n\
         ARG BUILDKIT_SBOM_SCAN_STAGE=true\n\
         FROM {BASE}\n\
         COPY --from=build /tool /build-env /\n\
         COPY --from=helper /helper /helper\n"
    ));
    let built = env.build(&["-t", "localhost/stages:1", "--sbom"]);
    // BuildKit's switch stays out of the steps' environment.
    assert!(
        !env.sh("localhost/stages:1", "cat /build-env")
            .contains("BUILDKIT_SBOM"),
        "the scan switch reached a RUN"
    );
    let statements = spdx_statements(&env.root, &built.id);
    assert_eq!(statements.len(), 2, "{statements:#?}");
    let (image, build) = (&statements[0], &statements[1]);
    assert_eq!(image["predicate"]["name"], "localhost/stages:1");
    assert_eq!(
        build["predicate"]["name"],
        "localhost/stages:1 (stage build)"
    );
    let in_image = package_names(image);
    let in_build = package_names(build);
    for package in ["bash", "dpkg", "libc6"] {
        assert!(in_build.iter().any(|n| n == package), "{in_build:?}");
        assert!(!in_image.iter().any(|n| n == package), "{in_image:?}");
    }

    // --sbom=scan-stages=true: every stage built, in stage order; `unused` is not built.
    let out = env.dir.join("out");
    ok(&mut env.build_cmd(&[
        "-t",
        "localhost/stages:2",
        "--sbom=scan-stages=true",
        "-o",
        &format!("type=local,dest={}", out.display()),
    ]));
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".spdx.json"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "sbom-build.spdx.json",
            "sbom-helper.spdx.json",
            "sbom.spdx.json"
        ]
    );
    let helper: Value =
        serde_json::from_slice(&std::fs::read(out.join("sbom-helper.spdx.json")).unwrap()).unwrap();
    assert_eq!(helper["predicateType"], SPDX);
    assert_eq!(
        helper["predicate"]["name"],
        "localhost/stages:2 (stage helper)"
    );
    let built = env.build(&["-t", "localhost/stages:3", "--sbom=scan-stages=true"]);
    assert_eq!(spdx_statements(&env.root, &built.id).len(), 3);

    // Without --sbom nothing is scanned, whatever the ARG says.
    let plain = env.build(&["-t", "localhost/stages:4"]);
    assert_eq!(
        json_blob(&env.root, &plain.id)["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let bad = env.build_fails(&["--sbom=scan-stages=maybe"]);
    assert!(
        bad.stderr.contains("scan-stages takes true or false"),
        "{}",
        bad.stderr
    );
}

#[test]
fn two_platforms_get_one_attestation_manifest_each_and_local_outputs_get_files() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    env.dockerfile("FROM scratch\nCOPY a.txt /a.txt\n");
    let built = env.build(&[
        "-t",
        "localhost/multi:1",
        "--platform",
        "linux/amd64,linux/arm64",
        "--sbom",
        "--provenance",
    ]);
    let a = attested(&env.root, &built.id);
    assert_eq!(a.images.len(), 2);
    assert_eq!(a.attestations.len(), 2);
    for (image, platform) in a.images.iter().zip(["linux/amd64", "linux/arm64"]) {
        let (_, statements) = a
            .attestations
            .iter()
            .find(|(d, _)| d["annotations"]["vnd.docker.reference.digest"] == image["digest"])
            .expect("an attestation manifest per image");
        let qualifier = platform.replace('/', "%2F");
        for s in statements.values() {
            assert_eq!(
                s["subject"][0]["name"],
                format!("pkg:docker/localhost/multi@1?platform={qualifier}")
            );
        }
        assert_eq!(
            statements[SLSA1]["predicate"]["buildDefinition"]["externalParameters"]["request"]["args"]
                ["platform"],
            platform
        );
    }

    // type=local: the statements beside each platform's files, as BuildKit writes them.
    let out = env.dir.join("out");
    ok(&mut env.build_cmd(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--sbom",
        "--provenance",
        "-o",
        &format!("type=local,dest={}", out.display()),
    ]));
    for platform in ["linux_amd64", "linux_arm64"] {
        assert_eq!(
            std::fs::read_to_string(out.join(platform).join("a.txt")).unwrap(),
            "a\n"
        );
        let statement: Value = serde_json::from_slice(
            &std::fs::read(out.join(platform).join("provenance.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(statement["predicateType"], SLSA1);
        let sbom: Value = serde_json::from_slice(
            &std::fs::read(out.join(platform).join("sbom.spdx.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(sbom["predicateType"], SPDX);
    }
    // type=tar of one platform: the statements at the top, after the files.
    let tarball = env.dir.join("out.tar");
    ok(&mut env.build_cmd(&[
        "--provenance",
        "-o",
        &format!("type=tar,dest={}", tarball.display()),
    ]));
    let mut archive = tar::Archive::new(std::fs::File::open(&tarball).unwrap());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "provenance.json" {
            let statement: Value = serde_json::from_reader(&mut entry).unwrap();
            assert_eq!(statement["predicateType"], SLSA1);
        }
        names.push(name);
    }
    assert_eq!(names, ["a.txt", "provenance.json"]);
    // Without the flags nothing changes: a one-platform build is a plain manifest.
    let plain = env.build(&["-t", "localhost/plain:1", "--platform", "linux/amd64"]);
    assert_eq!(
        named(&env.root, "localhost/plain:1")["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(plain.id, named(&env.root, "localhost/plain:1")["digest"]);
}

#[test]
fn no_secret_reaches_a_blob_or_the_provenance() {
    const SECRET: &str = "s3cret-file-value-7f1c";
    const TOKEN: &str = "ghp_tokenvalue0123456789";
    const PASSWORD: &str = "db-password-value-9a2e";
    const PROXY_PASSWORD: &str = "proxypass-4b7d";
    let env = BuildEnv::new();
    let secret = env.dir.write("secret.txt", SECRET);
    // DB_PASSWORD is used by a RUN step (so the image history names it, as docker's does);
    // GITHUB_TOKEN and the proxy are not used at all.
    env.dockerfile(&format!(
        "FROM {BASE}\nARG DB_PASSWORD\n\
         RUN --mount=type=secret,id=s test \"$(wc -c < /run/secrets/s)\" -eq {} && test -n \"$DB_PASSWORD\" && echo ok > /ok\n",
        SECRET.len()
    ));
    let built = env.build(&[
        "-t",
        "localhost/secrets:1",
        "--sbom",
        "--provenance=mode=max",
        "--secret",
        &format!("id=s,src={}", secret.display()),
        "--build-arg",
        &format!("GITHUB_TOKEN={TOKEN}"),
        "--build-arg",
        &format!("DB_PASSWORD={PASSWORD}"),
        "--build-arg",
        &format!("HTTP_PROXY=http://user:{PROXY_PASSWORD}@proxy.invalid:3128"),
        "--build-arg",
        "FLAVOUR=plain",
    ]);
    let a = attested(&env.root, &built.id);
    let provenance = &a.attestations[0].1[SLSA1];
    let text = provenance.to_string();
    for value in [SECRET, TOKEN, PASSWORD, PROXY_PASSWORD] {
        assert!(!text.contains(value), "{value} in the provenance: {text}");
    }
    let request = &provenance["predicate"]["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(
        request["args"],
        json!({"build-arg:FLAVOUR": "plain", "platform": "linux/amd64"})
    );
    assert_eq!(request["secrets"], json!([{"id": "s"}]));
    // No blob of the store holds the secret, the token or the proxy's password (the
    // password is in the history of the step that uses it, by docker's rules).
    for entry in std::fs::read_dir(env.root.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for value in [SECRET, TOKEN, PROXY_PASSWORD] {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{value} is in {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_git_context_and_an_added_repository_are_named_by_their_commits() {
    let server = rbuild_test_support::GitServer::start(None);
    let url = server.http_url();
    let work = server.work();
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(work.join("sub/hello.txt"), "hello\n").unwrap();
    let dockerfile = format!("FROM {BASE}\nCOPY hello.txt /hello.txt\nADD {url}#v1 /repo\n");
    std::fs::write(work.join("sub/Dockerfile"), &dockerfile).unwrap();
    let commit = server.commit("first");
    server.tag("v1");
    let env = BuildEnv::new();
    let built = env.build_context(
        &["-t", "localhost/git:1", "--provenance"],
        &format!("{url}#v1:sub"),
    );
    let a = attested(&env.root, &built.id);
    let definition = &a.attestations[0].1[SLSA1]["predicate"]["buildDefinition"];
    assert_eq!(
        definition["externalParameters"]["configSource"],
        json!({
            "uri": format!("{url}#v1:sub"),
            "path": "Dockerfile",
            "digest": {"sha1": commit},
            "dockerfileDigest": {"sha256": sha256(dockerfile.as_bytes())},
        })
    );
    let deps = definition["resolvedDependencies"].as_array().unwrap();
    assert!(
        deps.contains(&json!({"uri": format!("{url}#v1"), "digest": {"sha1": commit}})),
        "{deps:#?}"
    );
    assert!(
        definition["externalParameters"]["request"]
            .get("locals")
            .is_none()
    );
}
