//! `rbuild build` outputs (`--output`, `--push`, `--metadata-file`, `--annotation`, the
//! compression flags), each read back by an independent tool: skopeo and umoci for OCI
//! layouts, skopeo `docker-archive:` for docker archives, GNU tar and busybox for file
//! systems, `gzip`/`zstd` for layer blobs, a real `docker-registry` for pushes.
//! Needs what `build.rs` needs plus skopeo, umoci, tar, gzip, zstd and docker-registry.

use std::path::Path;
use std::process::Command;

use rbuild_test_support::Registry;
use serde_json::Value;

use crate::support::{
    BASE, BUSYBOX, BuildEnv, Dir, busybox_rootfs, fails, filter, ok, rbuild, skopeo, tool, umoci,
    verified_blobs,
};

/// A Dockerfile whose final file system exercises what a flattening can get wrong: files
/// and a directory deleted (whiteouts), a directory emptied and recreated (opaque), a
/// directory replaced by a file, a file changed after being hard-linked (the link keeps
/// the old content), a surviving hard-link pair, symlinks, a fifo, setuid and odd modes,
/// owners other than root.
const FS_DOCKERFILE: &str = r#"FROM localhost/busybox:latest
RUN mkdir -p /data/sub /data/dir2/inner /gone /opq && echo a > /data/a && echo x > /gone/x \
 && echo keep > /opq/old && echo f > /data/f && echo in > /data/dir2/inner/file \
 && ln /data/a /data/hard && echo pair > /data/h1 && ln /data/h1 /data/h2 \
 && ln -s ../data/a /data/sym && ln -s /nowhere /data/dangling \
 && chmod 4755 /data/h1 && chown 1000:50 /data/a /data/sub && chmod 0700 /data/sub \
 && chmod 0640 /data/f && mkfifo /data/fifo
RUN rm -rf /gone /data/f /opq /data/dir2 && mkdir /opq && echo new > /opq/new \
 && echo changed > /data/a && echo now-a-file > /data/dir2 && touch /data/sub/late
"#;

/// What busybox sees of `data`, `opq` and `gone` under the current directory: every entry's
/// name (with link target), mode, owner, link count, type and size (for directories only
/// mode and owner: overlay shows merged directories with one link), then each file's md5.
const LIST: &str = "find data opq gone 2>/dev/null | sort | while read f; do \
     if [ -d \"$f\" ] && [ ! -L \"$f\" ]; then stat -c '%N %a %u:%g %F' \"$f\"; \
     else stat -c '%N %a %u:%g %h %F %s' \"$f\"; fi; done; \
     find data opq -type f | sort | xargs md5sum";

/// The same listing of a directory on the host, made by the same busybox (its applets
/// first on PATH).
fn host_listing(dir: &Path) -> String {
    let tools = Dir::new();
    busybox_rootfs(tools.path());
    let out = ok(Command::new(BUSYBOX)
        .args(["sh", "-c", LIST])
        .current_dir(dir)
        .env("PATH", tools.join("bin")));
    out.stdout
}

fn container_listing(env: &BuildEnv, image: &str) -> String {
    env.sh(image, &format!("cd / && {LIST}"))
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob in the layout")
}

/// The manifest named by an OCI layout's only index entry.
fn layout_manifest(layout: &Path) -> (Value, Value) {
    let index = json_file(&layout.join("index.json"));
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 1, "{index}");
    let entry = entries[0].clone();
    let manifest: Value =
        serde_json::from_slice(&blob(layout, entry["digest"].as_str().unwrap())).unwrap();
    (entry, manifest)
}

fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    ok(tool("tar", "tar")
        .args(["-xpf"])
        .arg(archive)
        .arg("-C")
        .arg(into)
        .arg("--numeric-owner"));
}

#[test]
fn local_and_tar_outputs_are_the_file_system_a_container_sees() {
    let env = BuildEnv::new();
    env.dockerfile(FS_DOCKERFILE);
    env.build(&["-t", "fs"]);
    // Overlay reports the hidden lower inode's link count for `data/hard`, whose partner
    // `data/a` was copied up and changed; in the flattened file system it is a file of its
    // own, with one link (as in the layers' tars).
    let expected = container_listing(&env, "fs").replace(
        "data/hard 644 1000:50 2 regular file 2",
        "data/hard 644 1000:50 1 regular file 2",
    );
    // The listing is not vacuous: it shows what the Dockerfile did.
    for line in [
        "'data/sym' -> '../data/a' 777 0:0 1 symbolic link",
        "'data/dangling' -> '/nowhere' 777 0:0 1 symbolic link",
        "\ndata/h1 4755 0:0 2 regular file 5\n",
        "\ndata/h2 4755 0:0 2 regular file 5\n",
        "\ndata/a 644 1000:50 1 regular file 8\n",
        "\ndata/hard 644 1000:50 1 regular file 2\n",
        "\ndata/sub 700 1000:50 directory\n",
        "\ndata/sub/late 644 0:0 1 regular empty file 0\n",
        "\ndata/dir2 644 0:0 1 regular file 11\n",
        "\ndata/fifo 644 0:0 1 fifo 0\n",
        "\nopq/new 644 0:0 1 regular file 4\n",
    ] {
        assert!(expected.contains(line), "{line:?} not in\n{expected}");
    }
    for absent in ["gone", "opq/old", "data/f'", "inner"] {
        assert!(!expected.contains(absent), "{absent:?} in\n{expected}");
    }

    let out = env.dir.join("out");
    let local = out.join("local");
    let tarball = out.join("fs.tar");
    // A symlink already in the destination must not lead the output out of it.
    let outside = env.dir.mkdir("outside");
    std::fs::create_dir_all(&local).unwrap();
    std::os::unix::fs::symlink(&outside, local.join("data")).unwrap();
    let images_before = ok(rbuild(&env.root).args(["images", "-q"])).stdout;
    let iidfile = env.dir.join("iid");
    let built = ok(&mut env.build_cmd(&[
        "-o",
        &format!("type=local,dest={}", local.display()),
        "-o",
        &format!("type=tar,dest={}", tarball.display()),
        "--iidfile",
        iidfile.to_str().unwrap(),
    ]));
    // As with buildx, file system outputs alone keep no image: no id anywhere, nothing new
    // in the store's list.
    assert_eq!(built.stdout, "", "{}", built.stderr);
    assert!(!iidfile.exists(), "an image id was written");
    assert!(
        built
            .stderr
            .lines()
            .any(|l| l.starts_with("built in ") && l.ends_with(" (outputs only, no image kept)")),
        "{}",
        built.stderr
    );
    assert!(!built.stderr.contains("image id"), "{}", built.stderr);
    assert_eq!(
        ok(rbuild(&env.root).args(["images", "-q"])).stdout,
        images_before
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "the output followed a symlink out of dest"
    );
    assert!(local.join("data").symlink_metadata().unwrap().is_dir());
    assert_eq!(host_listing(&local), expected);
    // The whole tree is the image's: busybox is there too.
    assert!(local.join("bin/busybox").is_file());

    // The tar: each path once, hard links as links, then the same tree once extracted.
    let listing = ok(tool("tar", "tar").arg("-tvf").arg(&tarball)).stdout;
    let mut names: Vec<&str> = listing
        .lines()
        .map(|l| {
            l.split(" -> ")
                .next()
                .unwrap()
                .split(" link to ")
                .next()
                .unwrap()
        })
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "a path appears twice:\n{listing}");
    assert!(
        listing.contains("data/h2 link to data/h1") || listing.contains("data/h1 link to data/h2"),
        "{listing}"
    );
    assert!(!listing.contains(".wh."), "{listing}");
    let extracted = env.dir.join("extracted");
    untar(&tarball, &extracted);
    assert_eq!(host_listing(&extracted), expected);

    // `-o DIR` is type=local; `-o -` (and dest=-) write a tar to stdout and no image id.
    let short = env.dir.join("short");
    assert_eq!(
        ok(&mut env.build_cmd(&["-o", short.to_str().unwrap()])).stdout,
        ""
    );
    assert_eq!(host_listing(&short), expected);
    let out = env.build_cmd(&["-o", "-"]).output().expect("run rbuild");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = filter(tool("tar", "tar").args(["-tf", "-"]), &out.stdout);
    let listed = String::from_utf8(listed).unwrap();
    assert!(listed.lines().any(|l| l == "data/h1"), "{listed}");
    // The stream is exactly one tar: what follows its end is the padding tar writes.
    let tar_file = env.dir.write("stdout.tar", &out.stdout);
    assert_eq!(
        std::fs::read(&tarball).unwrap(),
        std::fs::read(&tar_file).unwrap(),
        "the image id (or anything else) went to stdout"
    );
}

#[test]
fn oci_and_docker_outputs_are_read_by_skopeo_and_umoci_and_the_store_is_not_named() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo built > /built && mkdir /d && echo x > /d/x\nRUN rm -r /d\n"
    ));
    let oci_tar = env.dir.join("image.oci.tar");
    let oci_dir = env.dir.join("layout");
    let docker = env.dir.join("image.docker.tar");
    let meta = env.dir.join("meta.json");
    env.build(&[
        "-t",
        "example.com/app:1",
        "-o",
        &format!("type=oci,dest={}", oci_tar.display()),
        "-o",
        &format!("type=oci,dest={},tar=false", oci_dir.display()),
        "-o",
        &format!("type=docker,dest={}", docker.display()),
        "--annotation",
        "manifest-descriptor:org.example.where=index",
        "--metadata-file",
        meta.to_str().unwrap(),
    ]);
    // No type=image output: the name is not in the store.
    let out = fails(rbuild(&env.root).args(["inspect", "example.com/app:1"]));
    assert!(out.stderr.contains("example.com/app:1"), "{}", out.stderr);

    // The OCI directory: skopeo and umoci read it; layers default to gzip.
    let (entry, manifest) = layout_manifest(&oci_dir);
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "example.com/app:1"
    );
    assert_eq!(entry["annotations"]["org.example.where"], "index");
    for t in layer_types(&manifest) {
        assert_eq!(t, "application/vnd.oci.image.layer.v1.tar+gzip");
    }
    let inspected: Value = serde_json::from_str(
        &ok(skopeo()
            .arg("inspect")
            .arg(format!("oci:{}:example.com/app:1", oci_dir.display())))
        .stdout,
    )
    .unwrap();
    assert_eq!(inspected["Digest"], entry["digest"]);
    let bundle = env.dir.join("bundle");
    ok(umoci()
        .args(["unpack", "--image"])
        .arg(format!("{}:example.com/app:1", oci_dir.display()))
        .arg(&bundle));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/built")).unwrap(),
        "built\n"
    );
    assert!(!bundle.join("rootfs/d").exists(), "whiteout not applied");

    // The OCI tar holds the same manifest.
    let inspected_tar: Value = serde_json::from_str(
        &ok(skopeo()
            .arg("inspect")
            .arg(format!("oci-archive:{}", oci_tar.display())))
        .stdout,
    )
    .unwrap();
    assert_eq!(inspected_tar["Digest"], entry["digest"]);
    let from_tar = env.dir.join("from-tar");
    untar(&oci_tar, &from_tar);
    let bundle2 = env.dir.join("bundle2");
    ok(umoci()
        .args(["unpack", "--image"])
        .arg(format!("{}:example.com/app:1", from_tar.display()))
        .arg(&bundle2));
    assert!(bundle2.join("rootfs/built").is_file());

    // The docker archive: RepoTags from -t, the same config.
    let raw = ok(skopeo()
        .args(["inspect", "--config"])
        .arg(format!("docker-archive:{}", docker.display())))
    .stdout;
    let config: Value = serde_json::from_str(&raw).unwrap();
    let oci_config = blob(&oci_dir, manifest["config"]["digest"].as_str().unwrap());
    let oci_config: Value = serde_json::from_slice(&oci_config).unwrap();
    assert_eq!(config["rootfs"], oci_config["rootfs"]);
    let listing = ok(tool("tar", "tar")
        .arg("-xOf")
        .arg(&docker)
        .arg("manifest.json"))
    .stdout;
    let docker_manifest: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(docker_manifest[0]["RepoTags"][0], "example.com/app:1");

    // The metadata file: the config digest is the one every output holds.
    let m = json_file(&meta);
    assert_eq!(
        m["containerimage.config.digest"],
        manifest["config"]["digest"]
    );
    assert_eq!(m["image.name"], "example.com/app:1");
    let outputs = m["rbuild.outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3, "{m}");
    assert_eq!(outputs[1]["digest"], entry["digest"]);
    assert_eq!(outputs[1]["dest"], oci_dir.to_str().unwrap());
}

#[test]
fn compression_keys_and_flags_choose_layer_media_types() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN seq 1 20000 > /numbers\n"));
    // The imported base layer is gzip; the built layer is stored uncompressed.
    let id = env.build(&["-t", "plain"]).id;
    let store_manifest: Value = serde_json::from_slice(
        &std::fs::read(env.root.join("blobs/sha256").join(&id[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        layer_types(&store_manifest),
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar"
        ]
    );

    // zstd at level 19: the built layer converts, the base's gzip layer stays.
    let z = env.dir.join("z");
    env.build(&[
        "-o",
        &format!(
            "type=oci,dest={},tar=false,compression=zstd,compression-level=19",
            z.display()
        ),
    ]);
    let (_, m) = layout_manifest(&z);
    assert_eq!(
        layer_types(&m),
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    let top = blob(&z, m["layers"][1]["digest"].as_str().unwrap());
    let tar = filter(tool("zstd", "zstd").args(["-d", "-c"]), &top);
    let names = String::from_utf8(filter(tool("tar", "tar").args(["-tf", "-"]), &tar)).unwrap();
    assert_eq!(names.trim(), "numbers");
    let level19_size = top.len();

    // force-compression: the base's layer is re-compressed too; the flags work as the keys.
    let f = env.dir.join("f");
    env.build(&[
        "--compression",
        "zstd",
        "--force-compression",
        "-o",
        &format!("type=oci,dest={},tar=false", f.display()),
    ]);
    let (_, m) = layout_manifest(&f);
    assert_eq!(
        layer_types(&m),
        [
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    let base = blob(&f, m["layers"][0]["digest"].as_str().unwrap());
    let base_tar = filter(tool("zstd", "zstd").args(["-d", "-c"]), &base);
    let names =
        String::from_utf8(filter(tool("tar", "tar").args(["-tf", "-"]), &base_tar)).unwrap();
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{names}"
    );
    // The default level (3) gives another blob than level 19.
    let top3 = blob(&f, m["layers"][1]["digest"].as_str().unwrap());
    assert_ne!(top3.len(), level19_size);

    // gzip, uncompressed, and a gzip level; each decompresses with the gzip tool.
    let g = env.dir.join("g");
    env.build(&[
        "-o",
        &format!(
            "type=oci,dest={},tar=false,compression=gzip,compression-level=1",
            g.display()
        ),
    ]);
    let (_, m) = layout_manifest(&g);
    let top = blob(&g, m["layers"][1]["digest"].as_str().unwrap());
    let tar = filter(tool("gzip", "gzip").arg("-dc"), &top);
    assert!(String::from_utf8_lossy(&tar).contains("numbers"));
    let u = env.dir.join("u");
    env.build(&[
        "-o",
        &format!(
            "type=oci,dest={},tar=false,compression=uncompressed,force-compression=true",
            u.display()
        ),
    ]);
    let (_, m) = layout_manifest(&u);
    assert_eq!(
        layer_types(&m),
        [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar"
        ]
    );
    // The image output honours the keys too: the store gets gzip layers.
    let id = env.build(&["-o", "type=image,name=gz,compression=gzip"]).id;
    let inspected = env.inspect("gz");
    assert_eq!(inspected["manifestDescriptor"]["digest"], id.as_str());
    let m: Value = serde_json::from_slice(
        &std::fs::read(env.root.join("blobs/sha256").join(&id[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        layer_types(&m),
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ]
    );
    assert_eq!(env.sh("gz", "tail -n1 /numbers"), "20000\n");
}

#[test]
fn push_sends_every_tag_and_metadata_and_annotations_match_the_registry() {
    let registry = Registry::start();
    let host = registry.host();
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo pushed > /p\n"));
    let meta = env.dir.join("meta.json");
    let one = format!("{host}/app:1");
    let two = format!("{host}/other/app:2");
    let built = env.build(&[
        "-t",
        &one,
        "-t",
        &two,
        "--push",
        "--metadata-file",
        meta.to_str().unwrap(),
        "--annotation",
        "org.example.team=builders",
        "--annotation",
        "manifest:org.opencontainers.image.title=app",
    ]);
    let m = json_file(&meta);
    let flags = registry.skopeo_flags("");
    let mut digests = Vec::new();
    let mut layers = Vec::new();
    for name in [&one, &two] {
        let raw = ok(skopeo()
            .arg("inspect")
            .arg("--raw")
            .args(&flags)
            .arg(format!("docker://{name}")))
        .stdout;
        let manifest: Value = serde_json::from_str(&raw).unwrap();
        layers.push(manifest["layers"].clone());
        assert_eq!(manifest["annotations"]["org.example.team"], "builders");
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.title"],
            "app"
        );
        assert_eq!(
            layer_types(&manifest),
            [
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.v1.tar+gzip"
            ]
        );
        assert_eq!(
            m["containerimage.config.digest"],
            manifest["config"]["digest"]
        );
        let inspected: Value = serde_json::from_str(
            &ok(skopeo()
                .arg("inspect")
                .args(&flags)
                .arg(format!("docker://{name}")))
            .stdout,
        )
        .unwrap();
        digests.push(inspected["Digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(m["containerimage.digest"], digests[0].as_str());
    assert_eq!(
        m["containerimage.descriptor"]["digest"],
        digests[0].as_str()
    );
    assert_eq!(m["image.name"], format!("{one},{two}"));
    let pushed = m["rbuild.pushed"].as_array().unwrap();
    assert_eq!(pushed.len(), 2);
    assert_eq!(pushed[0]["reference"], one.as_str());
    assert_eq!(pushed[1]["digest"], digests[0].as_str());
    // The store keeps the built (uncompressed) image under both names; its id is printed.
    assert_eq!(m["rbuild.image.id"], built.id.as_str());
    assert_eq!(
        env.inspect(&one)["manifestDescriptor"]["digest"],
        built.id.as_str()
    );
    assert!(m["rbuild.duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(m["rbuild.warnings"].is_array());
    // Pulled back by skopeo, the image has the file.
    let copied = env.dir.join("copied");
    ok(skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{two}"))
        .arg(format!("oci:{}:x", copied.display())));
    let bundle = env.dir.join("bundle");
    ok(umoci()
        .args(["unpack", "--image"])
        .arg(format!("{}:x", copied.display()))
        .arg(&bundle));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/p")).unwrap(),
        "pushed\n"
    );
    // The gzip form of the built layer went up while it was made and was not kept: the
    // store has only the uncompressed layer. A re-push finds it in the registry (HEADs only).
    let gz = layers[0][1]["digest"].as_str().unwrap();
    let blobs = verified_blobs(&env.root);
    assert!(!blobs.iter().any(|b| gz.ends_with(b.as_str())), "{gz} kept");
    // The second name mounted it from the first instead of converting it again.
    let log = registry.log();
    assert!(!log.contains("\"PATCH /v2/other/app/"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("POST /v2/other/app/blobs/uploads/?")
                && l.contains(gz.trim_start_matches("sha256:"))),
        "{log}"
    );
    let log_before = registry.log().len();
    let repushed = ok(rbuild(&env.root).args(["-q", "push", &one]));
    assert_eq!(repushed.stdout.trim(), format!("{host}/app@{}", digests[0]));
    let log = registry.log();
    for upload in ["\"POST /v2", "\"PATCH /v2", "\"PUT /v2/app/blobs"] {
        assert!(!log[log_before..].contains(upload), "re-push sent {upload}");
    }
    assert!(log[log_before..].contains(&format!("\"HEAD /v2/app/blobs/{gz}")));

    // A push that fails names the reference.
    let bad = "127.0.0.1:1/nothing:here";
    let out = env.build_fails(&["-t", bad, "--push"]);
    assert!(
        out.stderr.contains("cannot push 127.0.0.1:1/nothing:here"),
        "{}",
        out.stderr
    );
}

#[test]
fn output_errors_are_clear() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\n"));
    for (args, says) in [
        (
            vec!["-o", "type=floppy,dest=x"],
            "unknown output type \"floppy\"",
        ),
        (vec!["-o", "type=oci"], "needs dest="),
        (vec!["-o", "type=local"], "needs dest="),
        (
            vec!["-o", "type=oci,dest=/proc/rbuild-no/out.tar"],
            "cannot write output type=oci to /proc/rbuild-no/out.tar",
        ),
        (
            vec!["-o", "type=local,dest=/proc/rbuild-no/dir"],
            "cannot write output type=local to /proc/rbuild-no/dir",
        ),
        (vec!["--push"], "pushing needs a name"),
        (vec!["--annotation", "index:k=v"], "single-platform"),
        (
            vec!["--format", "docker", "--annotation", "k=v"],
            "--annotation needs --format oci",
        ),
        (
            vec!["--annotation", "manifest[linux/s390x]:k=v"],
            "is for platform linux/s390x",
        ),
        (
            vec!["-o", "-", "-o", "type=oci,dest=-"],
            "only one output can be written to stdout",
        ),
        (
            vec!["--compression", "gzip", "--compression-level", "42"],
            "out of range",
        ),
    ] {
        let out = fails(&mut env.build_cmd(&args));
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    // A dest that is a file where a directory is needed.
    let file = env.dir.write("a-file", "x");
    let out =
        fails(&mut env.build_cmd(&["-o", &format!("type=local,dest={}/sub", file.display())]));
    assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);
    // --label reaches the config.
    env.build(&[
        "-t",
        "labelled",
        "--label",
        "org.example.l=v",
        "--label",
        "empty",
    ]);
    let config = env.config("labelled");
    assert_eq!(config["config"]["Labels"]["org.example.l"], "v");
    assert_eq!(config["config"]["Labels"]["empty"], "");
}
