//! Inputs that are small on the wire and unbounded once read: names of thousands of bytes or
//! hundreds of directories deep, a tar extension header that claims a gigabyte, gzip bombs,
//! an endless stdin, and registries that send a blob or a manifest a byte at a time. Every
//! reader of layers and archives (`report`, `run`, `load`, build outputs, ADD) stops at the
//! same limits with an error naming the layer or archive and the limit crossed, in bounded
//! memory and time; a stalled transfer ends naming the blob and the registry, or resumes.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_test_support::Registry;

use crate::layers::{bomb, pulled};
use crate::registry::{MANIFEST_TYPE, Response, Server, blob_of, image_of};
use crate::support::{self, Dir, Run, ok, rbuild};
use crate::{Blob, gzip, push_layout, sha256, write_layout};

/// The documented limits (SECURITY.md, "Resource limits against bombs").
const MAX_PATH_BYTES: usize = 4096;
const MAX_PATH_DEPTH: usize = 256;

/// A tar of `names` (a name ending in `/` is a directory, any other an empty file), written
/// as the `tar` crate writes GNU archives: names past 100 bytes go into GNU long-name
/// entries.
fn gnu_tar(names: &[String]) -> Vec<u8> {
    let mut b = ::tar::Builder::new(Vec::new());
    for name in names {
        let mut h = ::tar::Header::new_gnu();
        let dir = name.ends_with('/');
        h.set_entry_type(if dir {
            ::tar::EntryType::Directory
        } else {
            ::tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty())
            .expect("tar entry");
    }
    b.into_inner().expect("tar")
}

/// Directories `d/d/.../d/` nested `depth` deep, each an entry of its own.
fn nested(depth: usize) -> Vec<String> {
    (1..=depth).map(|n| "d/".repeat(n)).collect()
}

/// Hostile layers whose every name fits in a few hundred kilobytes, and what the error says
/// about each: (what, tar, needle).
fn deep_layers() -> Vec<(&'static str, Vec<u8>, String)> {
    let components = 100_000;
    let long = format!("{}f", "a/".repeat(components));
    vec![
        (
            "directories nested past the depth limit",
            gnu_tar(&nested(MAX_PATH_DEPTH + 44)),
            format!(
                "has {} path components, more than the {MAX_PATH_DEPTH} allowed",
                MAX_PATH_DEPTH + 1
            ),
        ),
        (
            "a name longer than the path limit",
            gnu_tar(&[format!("{}/f", "x".repeat(4998))]),
            format!("has a name of 5000 bytes, more than the {MAX_PATH_BYTES} allowed"),
        ),
        (
            "one entry 100,000 components deep",
            gnu_tar(std::slice::from_ref(&long)),
            format!(
                "has a name of {} bytes, more than the {MAX_PATH_BYTES} allowed",
                long.len()
            ),
        ),
    ]
}

/// What an extension-header bomb claims.
const CLAIMED: u64 = 1 << 30;

/// A gzip layer that opens with a GNU long-name header claiming [`CLAIMED`] bytes, all of
/// them sent (zeros): a tar reader that takes the name whole holds a gigabyte.
fn long_name_bomb() -> Blob {
    let mut h = ::tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(::tar::EntryType::GNULongName);
    h.set_mode(0o644);
    h.set_size(CLAIMED);
    h.set_cksum();
    let chunk = 16 << 20;
    bomb(
        false,
        h.as_bytes(),
        chunk,
        (CLAIMED / chunk as u64) as usize + 1,
    )
}

/// The error a long-name bomb must give.
fn bomb_needle() -> String {
    format!("a GNU long name of {CLAIMED} bytes, more than the 1048576 allowed")
}

/// `cmd` with its data segment limited to 512 MiB (`prlimit --data`): a reader that holds a
/// hostile header whole dies instead of reporting the limit.
fn memory_limited(cmd: &Command) -> Command {
    let mut limited = support::tool("prlimit", "util-linux");
    limited
        .arg(format!("--data={}", 512u64 << 20))
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    limited.stdin(Stdio::null());
    limited
}

/// Runs `cmd`; asserts it failed with `code` within `limit` and that stderr holds `needles`.
fn refused_in(cmd: &mut Command, code: i32, limit: Duration, needles: &[&str]) -> Run {
    let started = Instant::now();
    let run = support::finish_cmd(cmd);
    assert_eq!(run.code, code, "{cmd:?}:\n{}", run.stderr);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "the error does not say {n:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        started.elapsed() < limit,
        "{cmd:?} took {:?}",
        started.elapsed()
    );
    run
}

/// An OCI archive holding an image of `layers`.
pub(crate) fn oci_archive(dir: &Dir, layers: &[&Blob]) -> PathBuf {
    let layout = dir.mkdir("layout");
    write_layout(&layout, layers);
    let mut b = ::tar::Builder::new(Vec::new());
    b.append_dir_all(".", &layout).expect("tar the layout");
    let bytes = b.into_inner().expect("tar");
    std::fs::remove_dir_all(&layout).expect("remove layout");
    dir.write("image.tar", bytes)
}

fn report(root: &Path, image: &str) -> Command {
    let mut cmd = rbuild(root);
    cmd.args(["report", "--format", "json", image]);
    cmd
}

#[test]
fn report_stops_at_path_and_size_limits() {
    let minute = Duration::from_secs(60);
    for (what, layer, needle) in deep_layers() {
        let dir = Dir::new();
        let layer = gzip(&layer);
        let archive = oci_archive(&dir, &[&layer]);
        let image = format!("oci-archive:{}", archive.display());
        let digest = sha256(&layer.bytes);
        let r = refused_in(
            &mut report(&dir.join("store"), &image),
            1,
            minute,
            &[&digest, &needle],
        );
        assert_eq!(r.stdout, "", "{what}: a report was written");
    }

    // A gzip bomb: past RBUILD_MAX_LAYER_SIZE, the layer is refused instead of read whole.
    let mut h = ::tar::Header::new_gnu();
    h.set_path("zeros").expect("path");
    h.set_size(4 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let layer = bomb(false, h.as_bytes(), 16 << 20, 64);
    let dir = Dir::new();
    let archive = oci_archive(&dir, &[&layer]);
    refused_in(
        report(
            &dir.join("store"),
            &format!("oci-archive:{}", archive.display()),
        )
        .env("RBUILD_MAX_LAYER_SIZE", "16M"),
        1,
        minute,
        &[
            &sha256(&layer.bytes),
            "larger than 16777216 bytes uncompressed",
            "RBUILD_MAX_LAYER_SIZE",
        ],
    );

    // A header that claims a gigabyte is refused before it is read, from a registry too.
    let layer = long_name_bomb();
    let registry = Registry::start();
    let layout = Dir::new();
    write_layout(layout.path(), &[&layer]);
    let reference = push_layout(layout.path(), &registry, "hostile/bomb:latest");
    let dir = Dir::new();
    refused_in(
        &mut memory_limited(&report(
            &dir.join("store"),
            &format!("docker://{reference}"),
        )),
        1,
        minute,
        &[&sha256(&layer.bytes), &bomb_needle()],
    );
}

#[test]
fn run_refuses_deep_paths_and_header_bombs() {
    for (_, layer, needle) in deep_layers() {
        pulled(&gzip(&layer)).refused(&[&needle]);
    }
    let p = pulled(&long_name_bomb());
    refused_in(
        &mut memory_limited(&p.cmd("true")),
        125,
        Duration::from_secs(60),
        &[&format!("cannot unpack layer {}", p.layer), &bomb_needle()],
    );
    p.arena.assert_confined();
}

/// A build of `dockerfile` in a context holding `files`, with `root` as the store.
fn build(root: &Path, dockerfile: &str, files: &[(&str, &[u8])]) -> (Dir, Command) {
    let dir = Dir::new();
    let ctx = dir.mkdir("ctx");
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    for (name, bytes) in files {
        std::fs::write(ctx.join(name), bytes).expect("write context file");
    }
    let mut cmd = rbuild(root);
    cmd.args(["build", "--progress", "plain", "--output"])
        .arg(format!("type=tar,dest={}", dir.join("out.tar").display()))
        .arg(&ctx);
    (dir, cmd)
}

#[test]
fn build_outputs_and_add_refuse_deep_paths_and_header_bombs() {
    let minute = Duration::from_secs(60);
    for (what, layer, needle) in deep_layers() {
        // The final file system of an image whose base has the layer.
        let p = pulled(&gzip(&layer));
        let (dir, mut cmd) = build(&p.arena.root, &format!("FROM {}\n", p.reference), &[]);
        refused_in(&mut cmd, 1, minute, &[&p.layer, &needle]);
        assert!(
            !dir.join("out.tar").exists(),
            "{what}: an output was written"
        );
        // ADD of a local archive.
        let store = Dir::new();
        let (_dir, mut cmd) = build(
            store.path(),
            "FROM scratch\nADD hostile.tar /\n",
            &[("hostile.tar", &layer)],
        );
        refused_in(&mut cmd, 1, minute, &["hostile.tar", &needle]);
    }
    let layer = long_name_bomb();
    let p = pulled(&layer);
    let (_dir, cmd) = build(&p.arena.root, &format!("FROM {}\n", p.reference), &[]);
    refused_in(
        &mut memory_limited(&cmd),
        1,
        minute,
        &[&p.layer, &bomb_needle()],
    );
    let store = Dir::new();
    let (_dir, cmd) = build(
        store.path(),
        "FROM scratch\nADD bomb.tar.gz /\n",
        &[("bomb.tar.gz", &layer.bytes)],
    );
    refused_in(
        &mut memory_limited(&cmd),
        1,
        minute,
        &["bomb.tar.gz", &bomb_needle()],
    );
}

/// The files of a store's blob and temp directories.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    ["blobs/sha256", "tmp"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).into_iter().flatten())
        .map(|e| e.expect("dir entry").path())
        .collect()
}

#[test]
fn load_refuses_long_member_names_header_bombs_and_endless_stdin() {
    let minute = Duration::from_secs(60);
    // An archive member with a name past the path limit.
    let dir = Dir::new();
    let name = format!("{}/manifest.json", "x".repeat(5000));
    let mut b = ::tar::Builder::new(Vec::new());
    let mut h = ::tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, &name, &b"[]"[..]).expect("tar");
    let archive = dir.write("long.tar", b.into_inner().expect("tar"));
    let root = dir.join("store");
    refused_in(
        rbuild(&root).args(["load", "-i"]).arg(&archive),
        1,
        minute,
        &[
            &archive.display().to_string(),
            &format!("a name of {} bytes", name.len()),
        ],
    );
    assert_eq!(leftovers(&root), Vec::<PathBuf>::new());

    // A compressed archive that opens with a header claiming a gigabyte.
    let bomb = dir.write("bomb.tar.gz", long_name_bomb().bytes);
    refused_in(
        &mut memory_limited(rbuild(&root).args(["load", "-i"]).arg(&bomb)),
        1,
        minute,
        &[&bomb.display().to_string(), &bomb_needle()],
    );
    assert_eq!(leftovers(&root), Vec::<PathBuf>::new());

    // stdin that never ends: spooled only up to the limit.
    let mut child = rbuild(&root)
        .env("RBUILD_MAX_LAYER_SIZE", "16M")
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rbuild load");
    let mut stdin = child.stdin.take().expect("stdin");
    let started = Instant::now();
    // Gives up after 1 GiB, which a spool without a limit takes whole.
    let writer = std::thread::spawn(move || {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            if stdin.write_all(&zeros).is_err() {
                return;
            }
        }
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    writer.join().expect("writer");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the archive read from stdin is larger than 16777216 bytes"),
        "{stderr}"
    );
    assert!(started.elapsed() < minute);
    assert_eq!(leftovers(&root), Vec::<PathBuf>::new());
}

#[test]
fn import_and_a_build_context_from_stdin_keep_the_limits() {
    let minute = Duration::from_secs(60);
    let dir = Dir::new();
    let root = dir.join("store");
    // A tarball that expands past RBUILD_MAX_LAYER_SIZE, and one with too deep a name.
    let mut h = ::tar::Header::new_gnu();
    h.set_path("zeros").expect("path");
    h.set_size(1 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let expanding = dir.write(
        "rootfs.tar.gz",
        bomb(false, h.as_bytes(), 16 << 20, 64).bytes,
    );
    refused_in(
        rbuild(&root)
            .env("RBUILD_MAX_LAYER_SIZE", "16M")
            .arg("import")
            .arg(&expanding)
            .arg("bomb:latest"),
        1,
        minute,
        &[
            &expanding.display().to_string(),
            "larger than 16777216 bytes uncompressed",
            "RBUILD_MAX_LAYER_SIZE",
        ],
    );
    let (_, deep, needle) = deep_layers().swap_remove(0);
    let deep_tar = dir.write("deep.tar", &deep);
    refused_in(
        rbuild(&root)
            .arg("import")
            .arg(&deep_tar)
            .arg("deep:latest"),
        1,
        minute,
        &[&deep_tar.display().to_string(), &needle],
    );
    assert_eq!(leftovers(&root), Vec::<PathBuf>::new());

    // `rbuild build -` with a context tar whose names are too deep.
    let mut context = gnu_tar(&nested(MAX_PATH_DEPTH + 1));
    context.truncate(context.len() - 1024);
    let mut b = ::tar::Builder::new(context);
    let mut h = ::tar::Header::new_gnu();
    h.set_size(13);
    h.set_mode(0o644);
    b.append_data(&mut h, "Dockerfile", &b"FROM scratch\n"[..])
        .expect("tar");
    let context = dir.write("context.tar", b.into_inner().expect("tar"));
    let r = refused_in(
        rbuild(&root)
            .args(["build", "--progress", "plain", "-"])
            .stdin(std::fs::File::open(&context).expect("open context")),
        1,
        minute,
        &[&needle],
    );
    assert_eq!(r.stdout, "", "an image was built");
}

#[test]
fn a_cache_import_skips_layers_past_the_size_limit() {
    let dir = Dir::new();
    let ctx = dir.mkdir("ctx");
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY data /data\n").expect("write");
    std::fs::write(ctx.join("data"), vec![7u8; 64 << 10]).expect("write");
    let cache = dir.join("cache");
    let build = |store: &str, cache_arg: &str, cache_spec: String| {
        let mut cmd = rbuild(&dir.join(store));
        cmd.args(["build", "--progress", "plain", cache_arg, &cache_spec])
            .arg(&ctx);
        cmd
    };
    ok(&mut build(
        "a",
        "--cache-to",
        format!("type=local,dest={},mode=max", cache.display()),
    ));
    let from = format!("type=local,src={}", cache.display());
    // A fetch of the 64 KiB layer would write it whole: past the limit, the record is left
    // out and the step runs here.
    let limited = ok(build("b", "--cache-from", from.clone()).env("RBUILD_MAX_LAYER_SIZE", "32K"));
    assert!(
        limited.stderr.contains(
            "1 records name layers larger than 32768 bytes (RBUILD_MAX_LAYER_SIZE) and were ignored"
        ),
        "{}",
        limited.stderr
    );
    assert_eq!(
        support::ran(&support::steps(&limited.stderr)),
        ["COPY data /data"],
        "{}",
        limited.stderr
    );
    // Within the limit, the same import is a cache hit.
    let hit = ok(&mut build("c", "--cache-from", from));
    assert_eq!(
        support::ran(&support::steps(&hit.stderr)),
        Vec::<String>::new(),
        "{}",
        hit.stderr
    );
}

/// Runs `cmd` for at most `limit` (killing it then, as a hung transfer would never end).
fn within(cmd: &mut Command, limit: Duration) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rbuild");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            child.kill().expect("kill rbuild");
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{cmd:?} still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `rbuild pull REFERENCE` with a stall timeout of `seconds`, killed after a minute.
fn pull_within_a_minute(root: &Path, reference: &str, seconds: u32) -> Run {
    within(
        rbuild(root)
            .env("RBUILD_STALL_TIMEOUT", seconds.to_string())
            .arg("pull")
            .arg(reference),
        Duration::from_secs(60),
    )
}

/// A layer of 64 KiB that gzip cannot shrink.
fn incompressible_layer() -> Blob {
    let mut data = Vec::with_capacity(64 << 10);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 64 << 10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    gzip(&crate::tar(&[crate::Entry::file("noise", &data)]))
}

/// A registry serving a one-layer image whose layer `blob` answers (given the request and
/// the layer's bytes); manifests and the config are served whole.
fn registry_with(
    blob: impl Fn(&crate::registry::Request, &[u8]) -> Response + Send + Sync + 'static,
) -> (Server, String) {
    let layer = incompressible_layer();
    let digest = sha256(&layer.bytes);
    let (manifest, blobs) = image_of(layer);
    let d = digest.clone();
    let server = Server::start("127.0.0.1", move |req| {
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        if req.path.contains("/manifests/") {
            return Response::new(200, manifest.clone()).header("Content-Type", MANIFEST_TYPE);
        }
        match blob_of(&req.path) {
            Some(b) if b == d => blob(req, &blobs[b]),
            Some(b) => match blobs.get(b) {
                Some(bytes) => Response::new(200, bytes.clone()),
                None => Response::new(404, ""),
            },
            None => Response::new(404, ""),
        }
    });
    (server, digest)
}

#[test]
fn a_trickling_blob_ends_at_the_stall_timeout_naming_blob_and_registry() {
    let (server, layer) = registry_with(|_, bytes| {
        Response::new(200, bytes.to_vec()).trickle(0, Duration::from_secs(1))
    });
    let dir = Dir::new();
    let root = dir.join("store");
    let started = Instant::now();
    let r = pull_within_a_minute(&root, &format!("{}/slow/image:latest", server.addr), 1);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("blob {layer}"))
            && r.stderr.contains(&server.addr)
            && r.stderr.contains("stalled"),
        "{}",
        r.stderr
    );
    // A few attempts of one second each, resumed without a backoff.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!support::verified_blobs(&root).contains(&layer["sha256:".len()..].to_owned()));
}

/// Where an open range (`bytes=N-`) starts.
fn range_start(range: &str) -> usize {
    range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .expect("an open range")
}

#[test]
fn a_blob_that_stalls_once_resumes_with_a_range_request() {
    let (server, layer) = registry_with(|req, bytes| match req.headers.get("range") {
        // The first answer stops after 20 KiB (one byte a second from there).
        None => Response::new(200, bytes.to_vec()).trickle(20 << 10, Duration::from_secs(1)),
        Some(range) => {
            let from = range_start(range);
            Response::new(206, bytes[from..].to_vec()).header(
                "Content-Range",
                format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
            )
        }
    });
    let dir = Dir::new();
    let root = dir.join("store");
    let r = pull_within_a_minute(&root, &format!("{}/slow/image:latest", server.addr), 1);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|q| q.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    let from = range_start(&ranges[0]);
    assert!((20 << 10..(20 << 10) + 16).contains(&from), "{from}");
    assert!(support::verified_blobs(&root).contains(&layer["sha256:".len()..].to_owned()));
}

#[test]
fn a_trickling_manifest_ends_at_the_stall_timeout_naming_it() {
    let (manifest, _) = image_of(incompressible_layer());
    let server = Server::start("127.0.0.1", move |req| {
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        Response::new(200, manifest.clone())
            .header("Content-Type", MANIFEST_TYPE)
            .trickle(10, Duration::from_secs(1))
    });
    let dir = Dir::new();
    let reference = format!("{}/slow/image:latest", server.addr);
    let started = Instant::now();
    let r = pull_within_a_minute(&dir.join("store"), &reference, 2);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("manifest {reference}")) && r.stderr.contains("stalled"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
