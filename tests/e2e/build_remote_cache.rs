//! `--cache-to` / `--cache-from`: the action cache shared between two stores ("machines")
//! through a real `docker-registry` and through a directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_test_support::{BusyboxLayout, Format, Registry};
use serde_json::Value;

use crate::support::{Built, Dir, ok, rbuild, skopeo, steps};

/// A "machine": its own store and its own context directory (at a path of its own).
struct Machine {
    root: PathBuf,
    ctx: PathBuf,
}

impl Machine {
    fn new(dir: &Dir, name: &str, ctx_rel: &str) -> Machine {
        let root = dir.join(format!("{name}-store"));
        let ctx = dir.mkdir(ctx_rel);
        Machine { root, ctx }
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.ctx.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = rbuild(&self.root);
        cmd.env("RBUILD_LOG", "info");
        cmd.args(["build", "--progress", "plain"])
            .args(args)
            .arg(&self.ctx);
        cmd
    }

    fn build(&self, args: &[&str]) -> Built {
        let run = ok(&mut self.cmd(args));
        let id = run.stdout.trim().to_string();
        assert!(id.starts_with("sha256:"), "{}", run.stdout);
        Built {
            id,
            steps: steps(&run.stderr),
            stderr: run.stderr,
        }
    }

    /// How many times the RUN steps with the `marker` cache mount ran in this store: each
    /// appends a line to `log` in the mount, which lives on the host in `mounts-v1/`.
    fn marker_runs(&self) -> usize {
        let dir = self.root.join("mounts-v1");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut n = 0;
        for e in entries {
            let p = e.expect("entry").path().join("log");
            if p.exists() {
                n += std::fs::read_to_string(&p)
                    .expect("read marker log")
                    .lines()
                    .count();
            }
        }
        n
    }

    /// The action cache's keys (`cache-v1/keys/*.json` names).
    fn keys(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.join("cache-v1/keys"))
            .expect("keys dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }
}

/// Requests in the registry's access log after `from` bytes, as "METHOD PATH".
fn requests_since(registry: &Registry, from: usize) -> Vec<String> {
    registry.log()[from..]
        .lines()
        .filter_map(|l| {
            let start = [
                "\"HEAD /v2",
                "\"GET /v2",
                "\"PUT /v2",
                "\"POST /v2",
                "\"PATCH /v2",
            ]
            .iter()
            .filter_map(|m| l.find(m))
            .min()?;
            let rest = &l[start + 1..];
            let end = rest.find(" HTTP/")?;
            Some(rest[..end].to_string())
        })
        .collect()
}

fn blob_gets(requests: &[String], repository: &str) -> Vec<String> {
    let prefix = format!("GET /v2/{repository}/blobs/");
    let mut out: Vec<String> = requests
        .iter()
        .filter_map(|r| r.strip_prefix(&prefix).map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn registry_with_busybox() -> (Registry, String) {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let host = registry.host();
    (registry, host)
}

fn skopeo_raw(registry: &Registry, image: &str) -> Value {
    let out = ok(skopeo()
        .args(["inspect", "--raw"])
        .args(registry.skopeo_flags(""))
        .arg(format!("docker://{image}")));
    serde_json::from_str(&out.stdout).expect("skopeo inspect --raw json")
}

fn dockerfile(host: &str) -> String {
    format!(
        "FROM {host}/busybox:latest AS builder\n\
         RUN --mount=type=cache,id=marker,target=/m echo builder >> /m/log; echo built > /built\n\
         RUN echo only in the builder > /junk\n\
         FROM {host}/busybox:latest\n\
         WORKDIR /app\n\
         COPY --from=builder /built /app/built\n\
         COPY app.txt /app/app.txt\n\
         RUN --mount=type=cache,id=marker,target=/m echo final >> /m/log; cat /app/app.txt /app/built > /app/out\n\
         CMD [\"cat\", \"/app/out\"]\n"
    )
}

fn image_layers(root: &Path, image: &str) -> Vec<String> {
    let out = ok(rbuild(root).args(["inspect", image]));
    let v: Value = serde_json::from_str(&out.stdout).expect("inspect json");
    let v = v.get(0).cloned().unwrap_or(v);
    v["manifest"]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn a_second_machine_builds_from_the_registry_cache_without_running_anything() {
    let (registry, host) = registry_with_busybox();
    let dir = Dir::new();
    let a = Machine::new(&dir, "a", "a/ctx");
    let b = Machine::new(&dir, "b", "elsewhere/deeper/b-ctx");
    for m in [&a, &b] {
        m.write("Dockerfile", &dockerfile(&host));
        m.write("app.txt", "v1\n");
    }
    let cache_ref = format!("{host}/cache:main");

    let built_a = a.build(&[
        "-t",
        "app",
        "--cache-to",
        &format!("type=registry,ref={cache_ref},mode=max"),
    ]);
    assert_eq!(built_a.ran().len(), 6, "{}", built_a.stderr);
    assert_eq!(a.marker_runs(), 2);
    assert!(
        built_a.stderr.contains("exported 6 cache records"),
        "{}",
        built_a.stderr
    );

    // The artifact: an OCI manifest with rbuild's artifact and config types, readable by
    // skopeo, whose layers are gzip blobs.
    let manifest = skopeo_raw(&registry, &cache_ref);
    assert_eq!(manifest["artifactType"], "application/vnd.rbuild.cache.v1");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.rbuild.cache.config.v1+json"
    );
    let artifact_layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(artifact_layers.len(), 6, "{manifest}");
    assert!(
        artifact_layers
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip")
    );

    // Machine B: the same commit in another directory, another store.
    let log_from = registry.log().len();
    // B also exports its cache (mode=max) to another repository: the builder stage's
    // layers, never fetched, are mounted from the imported cache, not downloaded.
    let cache_b = format!("{host}/cache-b:main");
    let built_b = b.build(&[
        "-t",
        "app",
        "--cache-from",
        &cache_ref,
        "--cache-to",
        &format!("type=registry,ref={cache_b},mode=max"),
    ]);
    assert_eq!(built_b.ran(), Vec::<String>::new(), "{}", built_b.stderr);
    assert_eq!(b.marker_runs(), 0, "a RUN executed on machine B");
    assert_eq!(built_b.id, built_a.id, "{}", built_b.stderr);
    // B fetched the cache's manifest and config, then only the blobs of the final image's
    // own layers (COPY --from, COPY, RUN; WORKDIR /app adds one too): never the builder
    // stage's two layers.
    let requests = requests_since(&registry, log_from);
    let gets = blob_gets(&requests, "cache");
    let final_layers = image_layers(&b.root, "app");
    let base_layers = image_layers(&b.root, &format!("{host}/busybox:latest"));
    let own = final_layers.len() - base_layers.len();
    assert_eq!(gets.len(), 1 + own, "{requests:#?}");
    assert!(own < artifact_layers.len());
    let manifest_b = skopeo_raw(&registry, &cache_b);
    assert_eq!(manifest_b["layers"], manifest["layers"]);
    assert_eq!(
        ok(rbuild(&b.root).args(["run", "--rm", "app"])).stdout,
        "v1\nbuilt\n"
    );
    // The store's image is complete; the records of the fetched layers are local now
    // (the builder stage's stay remote: their layers were never needed).
    ok(skopeo().arg("inspect").arg(format!(
        "oci:{}:docker.io/library/app:latest",
        b.root.display()
    )));
    // A push to another repository of the registry mounts the cached layers from the
    // cache's repository instead of uploading them.
    let pushed = ok(rbuild(&b.root).env("RBUILD_LOG", "info").args([
        "push",
        "app",
        &format!("{host}/app:from-b"),
    ]));
    let mounted: usize = pushed
        .stderr
        .split(" blobs uploaded, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no push summary: {}", pushed.stderr));
    assert_eq!(mounted, own, "{}", pushed.stderr);
    let keys = b.keys();
    assert_eq!(keys.len(), own, "{keys:?}");
    let rebuilt = b.build(&["-t", "app", "--cache-from", &cache_ref]);
    assert_eq!(rebuilt.ran(), Vec::<String>::new(), "{}", rebuilt.stderr);
    assert_eq!(rebuilt.id, built_a.id);

    // One source file changes on B: only the steps after the COPY that reads it run.
    b.write("app.txt", "v2\n");
    let log_from = registry.log().len();
    let changed = b.build(&["-t", "app2", "--cache-from", &cache_ref]);
    assert_eq!(
        changed.ran(),
        [
            "COPY app.txt /app/app.txt",
            "RUN /bin/sh -c echo final >> /m/log; cat /app/app.txt /app/built > /app/out"
        ],
        "{}",
        changed.stderr
    );
    assert_eq!(b.marker_runs(), 1);
    assert_eq!(
        ok(rbuild(&b.root).args(["run", "--rm", "app2"])).stdout,
        "v2\nbuilt\n"
    );
    // The layers below the changed COPY were already fetched: no layer blob again.
    let gets = blob_gets(&requests_since(&registry, log_from), "cache");
    assert_eq!(gets.len(), 1, "only the config: {gets:?}");
}

#[test]
fn keys_are_the_same_from_other_directories_and_stores() {
    let (_registry, host) = registry_with_busybox();
    let dir = Dir::new();
    let a = Machine::new(&dir, "a", "ctx");
    let b = Machine::new(&dir, "some/other/place/b", "x/y/z/ctx");
    for m in [&a, &b] {
        m.write("Dockerfile", &dockerfile(&host));
        m.write("app.txt", "v1\n");
        m.write("sub/data.txt", "data\n");
    }
    let extra = format!(
        "{}ARG V=1\nENV PATH_SEEN=/app\nADD sub /sub\nRUN --network=none ls -la /sub > /ls\nCOPY --link app.txt /linked\n",
        dockerfile(&host)
    );
    for m in [&a, &b] {
        m.write("Dockerfile", &extra);
    }
    let built_a = a.build(&["--build-arg", "V=2"]);
    let built_b = b.build(&["--build-arg", "V=2"]);
    assert_eq!(built_a.ran().len(), built_b.ran().len());
    let (ka, kb) = (a.keys(), b.keys());
    assert!(ka.len() >= 7, "{ka:?}");
    assert_eq!(ka, kb, "cache keys depend on the machine");
}

#[test]
fn concurrent_exports_to_one_ref_leave_a_readable_cache() {
    let (registry, host) = registry_with_busybox();
    let dir = Dir::new();
    let cache_ref = format!("{host}/cache:shared");
    let machines: Vec<Machine> = ["x", "y"]
        .iter()
        .map(|n| {
            let m = Machine::new(&dir, n, &format!("{n}/ctx"));
            m.write(
                "Dockerfile",
                &format!(
                    "FROM {host}/busybox:latest\nRUN head -c 300000 /dev/urandom > /rand-{n}\nRUN echo {n} > /name\n"
                ),
            );
            m
        })
        .collect();
    let children: Vec<_> = machines
        .iter()
        .map(|m| {
            m.cmd(&["--cache-to", &format!("type=registry,ref={cache_ref}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn build")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let manifest = skopeo_raw(&registry, &cache_ref);
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );
    // A third machine imports it: one of the two builds is entirely cached (the last
    // writer's), the other runs everything; both give working images.
    let mut all_cached = 0;
    for (n, m) in ["x", "y"].iter().zip(&machines) {
        let c = Machine {
            root: dir.join("c-store"),
            ctx: m.ctx.clone(),
        };
        let built = c.build(&["-t", n, "--cache-from", &cache_ref]);
        assert!(
            !built.stderr.contains("cache import"),
            "the import failed: {}",
            built.stderr
        );
        match built.ran().len() {
            0 => all_cached += 1,
            2 => {}
            k => panic!("{k} steps ran: {}", built.stderr),
        }
        assert_eq!(
            ok(rbuild(&c.root).args(["run", "--rm", n, "cat", "/name"])).stdout,
            format!("{n}\n")
        );
    }
    assert_eq!(all_cached, 1);
}

#[test]
fn local_directory_caches_round_trip_and_bad_imports_only_warn() {
    let (registry, host) = registry_with_busybox();
    let dir = Dir::new();
    let a = Machine::new(&dir, "a", "a/ctx");
    let b = Machine::new(&dir, "b", "b/ctx");
    for m in [&a, &b] {
        m.write("Dockerfile", &dockerfile(&host));
        m.write("app.txt", "v1\n");
    }
    let cache_dir = dir.join("ci-cache");
    let built_a = a.build(&[
        "--cache-to",
        &format!("type=local,dest={},mode=min", cache_dir.display()),
    ]);
    // The directory is an OCI layout other tools read.
    ok(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", cache_dir.display())));

    // Bad sources: a missing ref, an image that is no cache, a missing directory. Each is
    // a warning; the build runs every step and its result is right.
    let bad = b.build(&[
        "--cache-from",
        &format!("{host}/nothing:here"),
        "--cache-from",
        &format!("type=registry,ref={host}/busybox:latest"),
        "--cache-from",
        &format!("type=local,src={}", dir.join("missing").display()),
    ]);
    assert_eq!(bad.ran().len(), 6, "{}", bad.stderr);
    assert_eq!(
        bad.stderr.matches("cache import").count(),
        3,
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("holds no inline cache"),
        "{}",
        bad.stderr
    );

    // A fresh store importing the directory (mode=min: the final stage's steps only).
    let c = Machine {
        root: dir.join("c-store"),
        ctx: b.ctx.clone(),
    };
    let built_c = c.build(&[
        "--cache-from",
        &format!("type=local,src={}", cache_dir.display()),
    ]);
    assert_eq!(
        built_c.ran(),
        [
            "RUN /bin/sh -c echo builder >> /m/log; echo built > /built",
            "RUN /bin/sh -c echo only in the builder > /junk"
        ],
        "{}",
        built_c.stderr
    );
    assert_eq!(built_c.id, built_a.id);

    // Corrupt layer blobs (same size, other bytes): each fetch fails verification, the
    // build goes on without those records, and no local record names a missing blob.
    let mut corrupted = 0;
    for entry in std::fs::read_dir(cache_dir.join("blobs/sha256")).expect("blobs") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read blob");
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&path, bytes).expect("corrupt layer");
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 4);
    let e = Machine {
        root: dir.join("e-store"),
        ctx: b.ctx.clone(),
    };
    let built_e = e.build(&[
        "-t",
        "e",
        "--cache-from",
        &format!("type=local,src={}", cache_dir.display()),
    ]);
    assert!(
        built_e.stderr.contains("cannot fetch cached layer"),
        "{}",
        built_e.stderr
    );
    assert_eq!(
        ok(rbuild(&e.root).args(["run", "--rm", "e"])).stdout,
        "v1\nbuilt\n"
    );
    for key in e.keys() {
        let record: Value = serde_json::from_slice(
            &std::fs::read(e.root.join("cache-v1/keys").join(&key)).expect("record"),
        )
        .expect("record json");
        if let Some(digest) = record["layer"]["digest"].as_str() {
            let hex = digest.strip_prefix("sha256:").expect("sha256");
            assert!(
                e.root.join("blobs/sha256").join(hex).exists(),
                "record {key} names missing blob {digest}"
            );
        }
    }

    // A corrupt config (its bytes no longer match the digest the manifest names): a
    // warning, and nothing enters the local cache from it.
    for entry in std::fs::read_dir(cache_dir.join("blobs/sha256")).expect("blobs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read(&path).expect("read blob");
        if text.starts_with(b"{\"schema\"") {
            let mut bad = text.clone();
            bad.extend_from_slice(b" ");
            std::fs::write(&path, bad).expect("corrupt config");
        }
    }
    let d = Machine {
        root: dir.join("d-store"),
        ctx: b.ctx.clone(),
    };
    let built_d = d.build(&[
        "--cache-from",
        &format!("type=local,src={}", cache_dir.display()),
    ]);
    assert!(
        built_d.stderr.contains("cache import"),
        "{}",
        built_d.stderr
    );
    assert_eq!(built_d.ran().len(), 6, "{}", built_d.stderr);
    drop(registry);
}

#[test]
fn inline_cache_travels_in_the_pushed_image_config() {
    let (registry, host) = registry_with_busybox();
    let dir = Dir::new();
    let a = Machine::new(&dir, "a", "a/ctx");
    let b = Machine::new(&dir, "b", "b/ctx");
    for m in [&a, &b] {
        m.write("Dockerfile", &dockerfile(&host));
        m.write("app.txt", "v1\n");
    }
    let image = format!("{host}/app:inline");
    let built_a = a.build(&["--cache-to", &format!("type=inline,ref={image}")]);
    let config = {
        let out = ok(skopeo()
            .args(["inspect", "--raw", "--config"])
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{image}")));
        serde_json::from_str::<Value>(&out.stdout).expect("config json")
    };
    let records = config["rbuild.cache.v1"]["records"]
        .as_object()
        .expect("inline records in the pushed config");
    assert_eq!(records.len(), 4, "{config}");
    // The pushed image runs like the built one (its config differs by the records only).
    let c_root = dir.join("c-store");
    assert_eq!(
        ok(rbuild(&c_root).args(["run", "--rm", &image])).stdout,
        "v1\nbuilt\n"
    );

    // B imports the image as a cache: the final stage's steps are hits; the builder stage
    // (not in an image's own records) runs, and the image is the same.
    let built_b = b.build(&["--cache-from", &image]);
    assert_eq!(
        built_b.ran(),
        [
            "RUN /bin/sh -c echo builder >> /m/log; echo built > /built",
            "RUN /bin/sh -c echo only in the builder > /junk"
        ],
        "{}",
        built_b.stderr
    );
    assert_eq!(built_b.id, built_a.id);

    // An image built FROM it does not inherit the records.
    b.write(
        "Dockerfile",
        &format!("FROM {image}\nRUN echo child > /child\n"),
    );
    let child = b.build(&["-t", "child"]);
    let out = ok(rbuild(&b.root).args(["inspect", "child"]));
    assert!(!out.stdout.contains("rbuild.cache.v1"), "{}", child.stderr);
}

#[test]
fn bad_cache_flags_are_usage_errors_naming_the_flag() {
    let dir = Dir::new();
    dir.write("Dockerfile", "FROM scratch\n");
    for (flag, value, says) in [
        (
            "--cache-to",
            "type=registry,ref=x,mode=all",
            "--cache-to mode=\"all\"",
        ),
        (
            "--cache-from",
            "type=local,path=/x",
            "--cache-from key \"path\"",
        ),
        ("--cache-to", "type=local", "type=local needs dest="),
    ] {
        let out = crate::support::fails(
            rbuild(&dir.join("store"))
                .args(["build", flag, value])
                .arg(dir.path()),
        );
        assert!(out.stderr.contains(says), "{value}: {}", out.stderr);
    }
}
