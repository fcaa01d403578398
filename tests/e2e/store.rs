//! The image store commands: import, images, tag, rmi, inspect, save, load; read and written
//! by skopeo and umoci as an independent check.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Dir, busybox_rootfs, fails, ok, rbuild, skopeo, umoci, verified_blobs};

/// A store with busybox imported as `busybox:latest`; returns (dir, root).
fn store_with_busybox() -> (Dir, std::path::PathBuf) {
    let dir = Dir::new();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    let root = dir.join("store");
    ok(rbuild(&root).args(["import"]).arg(&rootfs).arg("busybox"));
    (dir, root)
}

fn images_json(root: &Path) -> Vec<Value> {
    let out = ok(rbuild(root).args(["images", "--format", "json"]));
    serde_json::from_str::<Vec<Value>>(&out.stdout).expect("images --format json is a JSON array")
}

fn names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = images_json(root)
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn imported_busybox_is_read_by_skopeo_and_umoci() {
    let (dir, root) = store_with_busybox();
    let oci_ref = format!("oci:{}:docker.io/library/busybox:latest", root.display());
    let inspect = ok(skopeo().args(["inspect", &oci_ref]));
    let info: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);

    let bundle = dir.join("bundle");
    let image = format!("{}:docker.io/library/busybox:latest", root.display());
    ok(umoci()
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let unpacked = bundle.join("rootfs/bin/busybox");
    let meta = std::fs::symlink_metadata(&unpacked).expect("busybox unpacked");
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read(&unpacked).unwrap(),
        std::fs::read(crate::support::BUSYBOX).unwrap()
    );
    let sh = std::fs::read_link(bundle.join("rootfs/bin/sh")).expect("sh applet is a symlink");
    assert_eq!(sh, Path::new("busybox"));
    // The unpacked busybox runs.
    let echo = ok(std::process::Command::new(&unpacked).args(["echo", "hi"]));
    assert_eq!(echo.stdout, "hi\n");
}

#[test]
fn import_is_reproducible_with_source_date_epoch() {
    let dir = Dir::new();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    dir.write("rootfs/etc/motd", "hello\n");
    std::fs::set_permissions(
        dir.join("rootfs/etc/motd"),
        std::fs::Permissions::from_mode(0o4711),
    )
    .unwrap();
    let a = ok(rbuild(&dir.join("a"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("import")
        .arg(&rootfs)
        .arg("x"));
    let b = ok(rbuild(&dir.join("b"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("import")
        .arg(&rootfs)
        .arg("x"));
    assert_eq!(a.stdout, b.stdout, "same tree, same epoch: same image id");
    assert!(a.stdout.starts_with("sha256:"));
    let inspect = ok(rbuild(&dir.join("a")).args(["inspect", "x"]));
    let info: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(info[0]["config"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(info[0]["id"].as_str().unwrap(), a.stdout.trim());
    assert_eq!(
        info[0]["manifest"]["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The setuid bit survives a round trip through umoci.
    let bundle = dir.join("bundle");
    ok(umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!(
            "{}:docker.io/library/x:latest",
            dir.join("a").display()
        ))
        .arg(&bundle));
    let mode = std::fs::metadata(bundle.join("rootfs/etc/motd"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4711);
}

#[test]
fn import_reads_plain_gzip_and_zstd_tarballs() {
    let dir = Dir::new();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    let tar = dir.join("rootfs.tar");
    ok(crate::support::tool("tar", "tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    ok(crate::support::tool("gzip", "gzip").arg("-k").arg(&tar));
    ok(crate::support::tool("zstd", "zstd")
        .arg("-q")
        .arg("-k")
        .arg(&tar));
    let root = dir.join("store");
    let mut diff_ids = Vec::new();
    for (file, name) in [
        ("rootfs.tar", "plain"),
        ("rootfs.tar.gz", "gz"),
        ("rootfs.tar.zst", "zst"),
    ] {
        ok(rbuild(&root).arg("import").arg(dir.join(file)).arg(name));
        let info: Value =
            serde_json::from_str(&ok(rbuild(&root).args(["inspect", name])).stdout).unwrap();
        diff_ids.push(
            info[0]["config"]["rootfs"]["diff_ids"][0]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let image = format!("{}:docker.io/library/{name}:latest", root.display());
        let bundle = dir.join(format!("bundle-{name}"));
        ok(umoci()
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle));
        assert!(
            bundle.join("rootfs/bin/busybox").is_file(),
            "{file}: busybox missing"
        );
    }
    assert_eq!(
        diff_ids[0], diff_ids[1],
        "gzip input must give the same layer content"
    );
    assert_eq!(
        diff_ids[0], diff_ids[2],
        "zstd input must give the same layer content"
    );
    // Not a tar: a clear error naming the file.
    let junk = dir.write("junk.bin", vec![b'x'; 2000]);
    let run = fails(rbuild(&root).arg("import").arg(&junk).arg("junk"));
    assert!(
        run.stderr.contains("junk.bin") && run.stderr.contains("not a tar"),
        "{}",
        run.stderr
    );
}

#[test]
fn tag_images_rmi() {
    let (_dir, root) = store_with_busybox();
    ok(rbuild(&root).args(["tag", "busybox", "localhost:5000/tools/bb:v1"]));
    assert_eq!(
        names(&root),
        [
            "docker.io/library/busybox:latest",
            "localhost:5000/tools/bb:v1"
        ]
    );
    let table = ok(rbuild(&root).arg("images")).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("IMAGE ID") && lines[0].ends_with("SIZE")
    );
    let images = images_json(&root);
    let id = images[0]["id"].as_str().unwrap();
    assert_eq!(images[0]["id"], images[1]["id"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("busybox ") && l.contains(" latest ") && l.contains(&id[7..19])),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("localhost:5000/tools/bb ") && l.contains(" v1 ")),
        "{table}"
    );
    // Just imported: "less than a second ago", "a second ago", "5 seconds ago"...
    assert!(
        table.lines().skip(1).all(|l| l.contains("second ago")
            || l.contains("seconds ago")
            || l.contains("minute ago")),
        "{table}"
    );
    let blobs = verified_blobs(&root);
    assert_eq!(blobs.len(), 3);

    // Removing one name keeps the blobs the other still uses.
    let run = ok(rbuild(&root).args(["rmi", "busybox"]));
    assert_eq!(run.stdout, "Untagged: busybox:latest\n");
    assert_eq!(verified_blobs(&root), blobs);
    // The last name takes the blobs with it.
    let run = ok(rbuild(&root).args(["rmi", "localhost:5000/tools/bb:v1"]));
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("Deleted: sha256:"))
            .count(),
        3,
        "{}",
        run.stdout
    );
    assert!(verified_blobs(&root).is_empty());
    assert!(images_json(&root).is_empty());

    let run = fails(rbuild(&root).args(["rmi", "busybox"]));
    assert!(
        run.stderr
            .contains("error: no image named docker.io/library/busybox:latest"),
        "{}",
        run.stderr
    );
    let run = fails(rbuild(&root).args(["tag", "nothing", "x"]));
    assert!(run.stderr.contains("nothing"), "{}", run.stderr);
}

#[test]
fn save_is_read_by_skopeo_in_both_formats() {
    let (dir, root) = store_with_busybox();
    ok(rbuild(&root).args(["tag", "busybox", "example.com/me/bb:2"]));
    let docker = dir.join("docker.tar");
    let oci = dir.join("oci.tar");
    ok(rbuild(&root)
        .args(["save", "busybox", "example.com/me/bb:2", "-o"])
        .arg(&docker));
    ok(rbuild(&root)
        .args(["save", "--format", "oci", "busybox", "-o"])
        .arg(&oci));

    let manifest: Value = serde_json::from_slice(
        &ok(crate::support::tool("tar", "tar")
            .arg("-xOf")
            .arg(&docker)
            .arg("manifest.json"))
        .stdout
        .into_bytes(),
    )
    .unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest", "example.com/me/bb:2"])
    );

    let info: Value = serde_json::from_str(
        &ok(skopeo()
            .arg("inspect")
            .arg(format!("docker-archive:{}", docker.display())))
        .stdout,
    )
    .unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
    // A full copy out of the docker archive checks every layer against its diff_id.
    let copied = dir.join("copied");
    ok(skopeo()
        .arg("copy")
        .arg(format!(
            "docker-archive:{}:busybox:latest",
            docker.display()
        ))
        .arg(format!("oci:{}:bb", copied.display())));
    ok(umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:bb", copied.display()))
        .arg(dir.join("b1")));
    assert!(dir.join("b1/rootfs/bin/busybox").is_file());

    let info: Value = serde_json::from_str(
        &ok(skopeo()
            .arg("inspect")
            .arg(format!("oci-archive:{}", oci.display())))
        .stdout,
    )
    .unwrap();
    assert_eq!(info["Architecture"], rbuild_arch());
    ok(skopeo()
        .arg("copy")
        .arg(format!("oci-archive:{}", oci.display()))
        .arg(format!("oci:{}:bb2", copied.display())));

    // What skopeo wrote is a store rbuild reads, names as they are.
    let listed = names(&copied);
    assert_eq!(listed, ["bb", "bb2"]);
    let info: Value =
        serde_json::from_str(&ok(rbuild(&copied).args(["inspect", "bb2"])).stdout).unwrap();
    assert_eq!(info[0]["name"], "bb2");
    ok(rbuild(&copied).args(["tag", "bb", "example.com/again:1"]));
    let out = dir.join("again.tar");
    ok(rbuild(&copied)
        .args(["save", "example.com/again:1", "-o"])
        .arg(&out));
    ok(skopeo()
        .arg("inspect")
        .arg(format!("docker-archive:{}", out.display())));
}

fn rbuild_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn load_reads_archives_written_by_skopeo_and_rbuild() {
    let (dir, root) = store_with_busybox();
    let src = format!("oci:{}:docker.io/library/busybox:latest", root.display());
    let docker = dir.join("skopeo-docker.tar");
    let oci = dir.join("skopeo-oci.tar");
    ok(skopeo().arg("copy").arg(&src).arg(format!(
        "docker-archive:{}:example.com/from/docker:v2",
        docker.display()
    )));
    ok(skopeo().arg("copy").arg(&src).arg(format!(
        "oci-archive:{}:example.com/from/oci:v3",
        oci.display()
    )));

    let fresh = dir.join("fresh");
    let run = ok(rbuild(&fresh).arg("load").arg("-i").arg(&docker));
    assert_eq!(run.stdout, "Loaded image: example.com/from/docker:v2\n");
    let run = ok(rbuild(&fresh).arg("load").arg("-i").arg(&oci));
    assert_eq!(run.stdout, "Loaded image: example.com/from/oci:v3\n");
    assert_eq!(
        names(&fresh),
        ["example.com/from/docker:v2", "example.com/from/oci:v3"]
    );
    verified_blobs(&fresh);
    for name in ["example.com/from/docker:v2", "example.com/from/oci:v3"] {
        let bundle = dir.join(name.replace(['/', ':'], "_"));
        ok(umoci()
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{name}", fresh.display()))
            .arg(&bundle));
        assert!(bundle.join("rootfs/bin/busybox").is_file(), "{name}");
    }

    // An OCI archive whose ref.name is only a tag names no repository: loaded by id.
    let bare = dir.join("bare.tar");
    ok(skopeo()
        .arg("copy")
        .arg(&src)
        .arg(format!("oci-archive:{}:latest", bare.display())));
    let run = ok(rbuild(&fresh).arg("load").arg("-i").arg(&bare));
    let id = images_json(&root)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(run.stdout, format!("Loaded image ID: {id}\n"));
    assert!(run.stderr.contains("\"latest\""), "{}", run.stderr);

    // rbuild's own archives round-trip, from a file and from stdin.
    let mine = dir.join("mine.tar");
    ok(rbuild(&root).args(["save", "busybox", "-o"]).arg(&mine));
    let again = dir.join("again");
    ok(rbuild(&again).args(["load", "-i"]).arg(&mine));
    let stdin = std::fs::File::open(&mine).unwrap();
    let run = ok(rbuild(&dir.join("again2"))
        .arg("load")
        .stdin(Stdio::from(stdin)));
    assert_eq!(run.stdout, "Loaded image: busybox:latest\n");
    let original = images_json(&root)[0]["id"].clone();
    assert_eq!(
        images_json(&again)[0]["id"],
        original,
        "the image id survives save and load"
    );
}

#[test]
fn load_refuses_a_tampered_archive() {
    let (dir, root) = store_with_busybox();
    let archive = dir.join("oci.tar");
    ok(rbuild(&root)
        .args(["save", "--format", "oci", "busybox", "-o"])
        .arg(&archive));
    // Flip one byte in the middle of the largest member (the layer).
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let fresh = dir.join("fresh");
    let run = fails(rbuild(&fresh).args(["load", "-i"]).arg(&archive));
    assert!(
        run.stderr.contains("oci.tar") && run.stderr.contains("sha256:"),
        "{}",
        run.stderr
    );
    assert!(images_json(&fresh).is_empty());
    // Whatever got in before the bad blob is verified; the bad blob is not there.
    verified_blobs(&fresh);
    assert!(
        std::fs::read_dir(fresh.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temp file left"
    );
}

#[test]
fn eight_processes_tag_and_import_into_one_root() {
    let (dir, root) = store_with_busybox();
    let small = dir.mkdir("small");
    dir.write("small/hello.txt", "hello\n");
    std::thread::scope(|s| {
        for p in 0..8 {
            let root = root.clone();
            let small = small.clone();
            s.spawn(move || {
                ok(rbuild(&root)
                    .arg("import")
                    .arg(&small)
                    .arg(format!("imported/p{p}")));
                for i in 0..4 {
                    ok(rbuild(&root).args(["tag", "busybox", &format!("example.com/p{p}/t:{i}")]));
                }
            });
        }
    });
    let names = names(&root);
    assert_eq!(names.len(), 1 + 8 + 8 * 4, "{names:?}");
    for p in 0..8 {
        assert!(names.contains(&format!("docker.io/imported/p{p}:latest")));
        for i in 0..4 {
            assert!(
                names.contains(&format!("example.com/p{p}/t:{i}")),
                "p{p}:{i} lost"
            );
        }
    }
    verified_blobs(&root);
    assert!(
        std::fs::read_dir(root.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temp file left"
    );
}

/// A cheap pseudo-random number from the standard library's hasher seed.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) % n
}

#[test]
fn killed_imports_leave_a_usable_store() {
    let (dir, root) = store_with_busybox();
    let big = dir.mkdir("big");
    // About 120 MB in 240 files of compressible but not trivial content.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for f in 0..240 {
        let mut data = Vec::with_capacity(512 * 1024);
        while data.len() < 512 * 1024 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            data.extend_from_slice(format!("{:016x} line {f}\n", seed % 1000).as_bytes());
        }
        dir.write(format!("big/d{}/f{f}", f % 10), data);
    }
    let started = Instant::now();
    ok(rbuild(&dir.join("timing"))
        .arg("import")
        .arg(&big)
        .arg("timing"));
    let full = started.elapsed().as_millis() as u64;
    for round in 0..4 {
        let delay = random_below(full.max(50));
        let mut child = rbuild(&root)
            .arg("import")
            .arg(&big)
            .arg(format!("big{round}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The store still works: list, import, save and load.
        let listed = names(&root);
        assert!(listed.contains(&"docker.io/library/busybox:latest".to_string()));
        for name in listed.iter().filter(|n| n.contains("big")) {
            ok(rbuild(&root).args(["inspect", name]));
        }
        verified_blobs(&root);
        ok(rbuild(&root)
            .arg("import")
            .arg(dir.join("big/d0"))
            .arg(format!("after{round}")));
        let archive = dir.join(format!("after{round}.tar"));
        ok(rbuild(&root)
            .args(["save", &format!("after{round}"), "-o"])
            .arg(&archive));
        ok(rbuild(&dir.join(format!("loaded{round}")))
            .args(["load", "-i"])
            .arg(&archive));
    }
    // Leftover temp files are cleaned once old enough and unlocked.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for entry in std::fs::read_dir(root.join("tmp")).unwrap() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(old).unwrap();
    }
    ok(rbuild(&root).arg("images"));
    assert!(
        std::fs::read_dir(root.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "leftovers not cleaned"
    );
    verified_blobs(&root);
}

#[test]
fn an_image_has_one_id_everywhere_and_it_finds_the_image() {
    let env = crate::support::BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {}\nRUN echo one > /one\n",
        crate::support::BASE
    ));
    let iidfile = env.dir.join("iid");
    let built = env.build(&["-t", "app", "--iidfile", iidfile.to_str().unwrap()]);
    let id = built.id.as_str();
    // The summary, stdout (checked by `build`) and --iidfile.
    assert!(
        built.stderr.contains(&format!("\n  image id  {id}\n")),
        "{}",
        built.stderr
    );
    assert_eq!(std::fs::read_to_string(&iidfile).unwrap(), id);
    // images (JSON, table, -q) and inspect.
    let images = images_json(&env.root);
    let app = images
        .iter()
        .find(|i| i["name"] == "docker.io/library/app:latest")
        .expect("app listed");
    assert_eq!(app["id"], id);
    let table = ok(rbuild(&env.root).arg("images")).stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("app ") && l.contains(&format!(" {} ", &id[7..19]))),
        "{table}"
    );
    let quiet = ok(rbuild(&env.root).args(["images", "-q"])).stdout;
    assert!(quiet.lines().any(|l| l == &id[7..19]), "{quiet}");
    assert_eq!(env.inspect("app")["id"], id);
    // The manifest digest, as docker's containerd store names images.
    assert_eq!(env.inspect("app")["manifestDescriptor"]["digest"], id);
    // import prints the same kind of id.
    let rootfs = env.dir.mkdir("rootfs2");
    busybox_rootfs(&rootfs);
    let imported = ok(rbuild(&env.root).arg("import").arg(&rootfs).arg("bb2"));
    assert_eq!(
        env.inspect("bb2")["id"].as_str().unwrap(),
        imported.stdout.trim()
    );
    // A prefix of the id finds the image: run, tag, inspect, rmi.
    let prefix = &id[7..19];
    assert_eq!(env.sh(prefix, "cat /one"), "one\n");
    ok(rbuild(&env.root).args(["tag", prefix, "app:copy"]));
    assert_eq!(env.inspect("app:copy")["id"], id);
    assert_eq!(env.inspect(prefix)["id"], id);
    ok(rbuild(&env.root).args(["rmi", "app:copy"]));
    let run = ok(rbuild(&env.root).args(["rmi", prefix]));
    assert!(
        run.stdout.contains("Untagged: app:latest"),
        "{}",
        run.stdout
    );
}

/// Sets the modification time of every file of `dir` (links themselves) to `when`.
fn set_times(dir: &Path, when: &str) {
    ok(crate::support::tool("find", "findutils")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", when, "{}", "+"]));
}

#[test]
fn importing_the_same_tree_twice_gives_the_same_image() {
    let dir = Dir::new();
    let rootfs = dir.mkdir("rootfs");
    busybox_rootfs(&rootfs);
    dir.write("rootfs/etc/motd", "hello\n");
    set_times(&rootfs, "2024-01-02 03:04:05 UTC");
    set_times(&rootfs.join("etc/motd"), "2024-03-04 05:06:07 UTC");
    let root = dir.join("store");
    // Imported twice, a second apart, into two stores: the same image, created at the
    // newest file's time.
    let twice = |source: &Path, other: &str| -> String {
        let first = ok(rbuild(&root).arg("import").arg(source).arg(other)).stdout;
        std::thread::sleep(Duration::from_millis(1100));
        let second = ok(rbuild(&dir.join(other))
            .arg("import")
            .arg(source)
            .arg(other))
        .stdout;
        assert_eq!(first, second, "{} imported twice", source.display());
        let inspect = ok(rbuild(&root).args(["inspect", other]));
        let info: Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(info[0]["config"]["created"], "2024-03-04T05:06:07Z");
        first
    };
    let first = twice(&rootfs, "a");
    // A tarball of it too.
    let tarball = dir.join("rootfs.tar");
    ok(crate::support::tool("tar", "tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    twice(&tarball, "t");
    // SOURCE_DATE_EPOCH still decides when given, clamping newer files.
    let clamped = ok(rbuild(&root)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("import")
        .arg(&rootfs)
        .arg("c"));
    assert_ne!(clamped.stdout, first);
    let inspect = ok(rbuild(&root).args(["inspect", "c"]));
    let info: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(info[0]["config"]["created"], "2023-11-14T22:13:20Z");
}
