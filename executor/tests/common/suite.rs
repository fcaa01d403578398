//! The sandbox checks, run with each snapshotter and as root or not.

use std::path::PathBuf;
use std::process::Command as Proc;
use std::time::{Duration, Instant};

use rbuild_executor::idmap::{IdMap, MappingKind};
use rbuild_executor::mounts::{ExtraMount, ExtraMountKind};
use rbuild_executor::sandbox::{Command, Network, SandboxError};
use rbuild_executor::snapshot::SnapshotterKind;

use super::*;

/// A base image and a place for steps.
pub struct Ctx {
    pub kind: SnapshotterKind,
    pub id_map: IdMap,
    pub base: PathBuf,
    pub tmp: tempfile::TempDir,
    n: std::cell::Cell<u32>,
}

impl Ctx {
    pub fn new(kind: SnapshotterKind) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("rbuild-exec-")
            .tempdir()
            .unwrap();
        let id_map = IdMap::for_current_user();
        let base = snapshot(tmp.path(), "base", &busybox_tar(), &id_map);
        Ctx {
            kind,
            id_map,
            base,
            tmp,
            n: std::cell::Cell::new(0),
        }
    }

    pub fn spec(&self, script: &str) -> RunSpec {
        let mut s = sh(script);
        s.id_map = self.id_map.clone();
        s
    }

    pub fn run(&self, spec: &RunSpec) -> Result<RunResult, SandboxError> {
        self.run_on(std::slice::from_ref(&self.base), spec)
    }

    pub fn run_on(&self, layers: &[PathBuf], spec: &RunSpec) -> Result<RunResult, SandboxError> {
        self.n.set(self.n.get() + 1);
        let step = self.tmp.path().join(format!("step{}", self.n.get()));
        run_in(self.kind, layers, &step, spec)
    }

    pub fn layer(&self, r: &mut RunResult) -> Vec<Ent> {
        layer_entries(&mut r.root, &self.id_map)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Steps hold files of subordinate ids: removed from inside the namespace.
        let r = rbuild_executor::sandbox::remove_tree(self.tmp.path(), &self.id_map);
        if !std::thread::panicking() {
            r.expect("remove the test's directories");
            assert!(!self.tmp.path().exists());
        }
    }
}

pub fn output_and_exit_code(c: &Ctx) {
    let r = c
        .run(&c.spec("echo hello; echo world; echo oops >&2; printf 'no newline'; exit 3"))
        .unwrap();
    assert_eq!(r.stdout, ["hello", "world", "no newline"]);
    assert_eq!(r.stderr, ["oops"]);
    assert_eq!(r.outcome.exit_code, 3);
    assert!(!r.outcome.timed_out && !r.outcome.cancelled);
    let r = c.run(&c.spec("kill -9 $$")).unwrap();
    assert_eq!(r.outcome.exit_code, 128 + 9);
}

pub fn exec_form_and_missing_binary(c: &Ctx) {
    let mut s = c.spec("");
    s.command = Command::Exec(vec!["echo".into(), "exec".into(), "form".into()]);
    let r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["exec form"]);
    s.command = Command::Exec(vec!["no-such-binary".into()]);
    let e = c.run(&s).err().expect("a missing binary is an error");
    assert!(e.to_string().contains("no-such-binary"), "{e}");
    assert!(matches!(e, SandboxError::Exec { code: 127, .. }), "{e:?}");
    s.command = Command::Exec(vec!["/etc/passwd".into()]);
    let e = c
        .run(&s)
        .err()
        .expect("a file that is not executable is an error");
    assert!(matches!(e, SandboxError::Exec { code: 126, .. }), "{e:?}");
}

pub fn env_and_workdir(c: &Ctx) {
    let mut s = c.spec("echo \"$FOO\"; pwd; echo $HOME; ls -ld . | cut -c1-10");
    s.env = vec!["FOO=bar baz".into()];
    s.workdir = "/srv/app/dir".into();
    let mut r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["bar baz", "/srv/app/dir", "/root", "drwxr-xr-x"]);
    let l = c.layer(&mut r);
    assert_eq!(names(&l), ["srv/", "srv/app/", "srv/app/dir/"]);
}

pub fn user_switching_and_ownership(c: &Ctx) {
    // The image's file owned by alice keeps its owner and mode.
    let r = c
        .run(&c.spec("stat -c '%u:%g %a' /data/alice-secret"))
        .unwrap();
    assert_eq!(r.stdout, ["1000:1000 600"]);
    let mut s = c.spec("cat /data/alice-secret; id -u; id -g; id -G; touch /tmp/by-alice; umask");
    s.user = "alice".into();
    let mut r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["secret", "1000", "1000", "1000 50", "0022"]);
    let l = c.layer(&mut r);
    let f = l
        .iter()
        .find(|e| e.name == "tmp/by-alice")
        .expect("tmp/by-alice in the layer");
    assert_eq!((f.uid, f.gid, f.mode), (1000, 1000, 0o644));
    let tmp = l
        .iter()
        .find(|e| e.name == "tmp/")
        .expect("tmp/ in the layer");
    assert_eq!(tmp.mode, 0o1777, "copied-up dir keeps its mode");

    let mut s = c.spec("touch /owned && chown 1234:5678 /owned && chmod 4750 /owned; id -u");
    s.user = "0:0".into();
    let mut r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["0"]);
    let l = c.layer(&mut r);
    let f = l.iter().find(|e| e.name == "owned").unwrap();
    assert_eq!((f.uid, f.gid, f.mode), (1234, 5678, 0o4750));

    let mut s = c.spec("true");
    s.user = "nosuchuser".into();
    let e = c.run(&s).err().expect("unknown user is an error");
    assert!(e.to_string().contains("nosuchuser"), "{e}");
}

pub fn whiteout_after_rm(c: &Ctx) {
    let mut r = c.run(&c.spec("rm /data/a && echo new > /data/n")).unwrap();
    let l = c.layer(&mut r);
    assert_eq!(names(&l), ["data/", "data/.wh.a", "data/n"]);
    assert_eq!(l[2].data, b"new\n");
}

pub fn opaque_dir(c: &Ctx) {
    let mut r = c
        .run(&c.spec("rm -rf /data/sub && mkdir /data/sub && touch /data/sub/new"))
        .unwrap();
    let l = c.layer(&mut r);
    let n = names(&l);
    if c.kind == SnapshotterKind::Overlay {
        assert_eq!(
            n,
            [
                "data/",
                "data/sub/",
                "data/sub/.wh..wh..opq",
                "data/sub/new"
            ]
        );
    } else {
        // The copy snapshotter cannot tell a recreated dir from a changed one:
        // it deletes the old children one by one, with the same result.
        assert_eq!(n, ["data/", "data/sub/", "data/sub/.wh.c", "data/sub/new"]);
    }
}

pub fn hard_links(c: &Ctx) {
    let mut r = c
        .run(&c.spec("echo x > /h1 && ln /h1 /h2 && ln /h1 /tmp/h3"))
        .unwrap();
    let l = c.layer(&mut r);
    let h1 = l.iter().find(|e| e.name == "h1").unwrap();
    assert_eq!((h1.kind, h1.data.as_slice()), ('f', &b"x\n"[..]));
    for n in ["h2", "tmp/h3"] {
        let h = l.iter().find(|e| e.name == n).unwrap();
        assert_eq!((h.kind, h.link.as_deref()), ('h', Some("h1")), "{n}");
    }
}

pub fn network_none_has_only_lo(c: &Ctx) {
    let mut s = c.spec(
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ip link show lo | head -1",
    );
    s.network = Network::None;
    let r = c.run(&s).unwrap();
    assert_eq!(r.stdout[0], "lo");
    assert_eq!(r.stdout.len(), 2, "{:?}", r.stdout);
    assert!(r.stdout[1].contains("UP"), "{:?}", r.stdout);
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    let mut s = c.spec("tail -n +3 /proc/net/dev | wc -l");
    s.network = Network::Host;
    let r = c.run(&s).unwrap();
    assert_eq!(r.stdout, [host_ifaces.to_string()], "the host's network");
}

pub fn proc_shows_only_the_sandbox(c: &Ctx) {
    let r = c
        .run(&c.spec("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; echo $$"))
        .unwrap();
    let pids: Vec<u32> = r.stdout[0]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids[0], 1, "{pids:?}");
    // init, the shell and the pipeline's processes: nothing from the host.
    assert!(pids.iter().all(|p| *p < 10), "{pids:?}");
    assert_eq!(r.stdout[1], "2", "the command is pid 2, under our init");
}

/// A number no other concurrent test uses, to find our processes on the host.
fn unique_marker(base: u32) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{}", base + (std::process::id() % 10_000) * 100 + n)
}

fn host_has_process_with_arg(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
            .unwrap_or(false)
    })
}

/// A pipe the caller has open while a sandbox starts must not be held by the
/// sandbox's processes: once the caller closes its write end, the reader sees
/// the end of file at once, not when the sandbox ends. (Build steps run in
/// parallel; a step's output pipe held by a parallel step's sandbox hid the
/// step's end, and a failure, until the other step finished.)
pub fn the_callers_descriptors_stay_out_of_the_sandbox(c: &Ctx) {
    use std::io::Read;
    // A sleep of 4.N seconds, N unique: it ends on its own, and shows the sandbox runs.
    let marker = format!("4.{}", unique_marker(7_000_000));
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut reader = std::fs::File::from(reader);
    let spec = c.spec(&format!("sleep {marker}"));
    let cancel = spec.cancel.clone();
    let watcher = std::thread::spawn(move || {
        let t = Instant::now();
        while !host_has_process_with_arg(&marker) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the sandbox did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(writer);
        let t = Instant::now();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        let waited = t.elapsed();
        cancel.cancel();
        waited
    });
    c.run(&spec).unwrap();
    let waited = watcher.join().unwrap();
    assert!(
        waited < Duration::from_secs(2),
        "the pipe's end of file came only after {waited:?}: the sandbox held its write end"
    );
}

pub fn background_process_is_killed(c: &Ctx) {
    let marker = unique_marker(4_000_000);
    let t = Instant::now();
    let r = c
        .run(&c.spec(&format!("sleep {marker} >/dev/null 2>&1 & echo started")))
        .unwrap();
    assert_eq!(r.stdout, ["started"]);
    assert!(t.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !host_has_process_with_arg(&marker),
        "the background sleep survived"
    );
    // Even when it keeps the output pipe open.
    let r = c
        .run(&c.spec(&format!("sleep {marker} & echo started")))
        .unwrap();
    assert_eq!(r.stdout, ["started"]);
    assert!(!host_has_process_with_arg(&marker));
}

pub fn timeout_and_cancel_kill_everything(c: &Ctx) {
    let marker = unique_marker(6_000_000);
    let mut s = c.spec(&format!("sleep {marker} & sleep {marker}"));
    s.timeout = Some(Duration::from_millis(500));
    let t = Instant::now();
    let r = c.run(&s).unwrap();
    assert!(r.outcome.timed_out);
    assert_eq!(r.outcome.exit_code, 128 + 9);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!host_has_process_with_arg(&marker));

    let s = c.spec(&format!("sleep {marker}"));
    let h = s.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        h.cancel();
    });
    let t = Instant::now();
    let r = c.run(&s).unwrap();
    canceller.join().unwrap();
    assert!(r.outcome.cancelled);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!host_has_process_with_arg(&marker));
}

pub fn generated_etc_files_stay_out_of_the_layer(c: &Ctx) {
    let mut r = c.run(&c.spec("hostname; grep -c localhost /etc/hosts; cat /etc/hostname; echo extra >> /etc/hosts; touch /etc/new")).unwrap();
    assert_eq!(r.stdout, ["rbuild", "2", "rbuild"]);
    let l = c.layer(&mut r);
    assert_eq!(names(&l), ["etc/", "etc/new"]);
    if let rbuild_executor::snapshot::RootSource::Overlay { upper, .. } = &r.root.source {
        let mut found = Vec::new();
        for e in std::fs::read_dir(upper.join("etc")).unwrap() {
            found.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
        assert_eq!(found, ["new"], "no stub files in the upper dir");
        for d in ["proc", "sys", "dev"] {
            assert!(!upper.join(d).exists(), "{d} stub in the upper dir");
        }
    }
    // Nothing at all changed: an empty layer.
    let mut r = c.run(&c.spec("cat /etc/hosts >/dev/null")).unwrap();
    assert!(c.layer(&mut r).is_empty());
}

pub fn dev_sys_and_security(c: &Ctx) {
    let r = c
        .run(&c.spec(
            "ls /dev | tr '\\n' ' '; echo; echo x > /dev/null && head -c 4 /dev/zero | wc -c; \
             touch /sys/x 2>/dev/null && echo sys-rw || echo sys-ro; \
             grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '",
        ))
        .unwrap();
    let devs: Vec<&str> = r.stdout[0].split_whitespace().collect();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin",
        "stdout", "stderr",
    ] {
        assert!(devs.contains(&d), "/dev lacks {d}: {devs:?}");
    }
    assert_eq!(r.stdout[1], "4");
    assert_eq!(r.stdout[2], "sys-ro");
    assert_eq!(r.stdout[3], "CapEff: 00000000a80425fb");
    assert_eq!(r.stdout[4], "CapBnd: 00000000a80425fb");
    assert_eq!(r.stdout[5], "NoNewPrivs: 1");
    if c.id_map.kind == MappingKind::Single {
        return;
    }
    let mut s = c.spec("grep -E '^CapEff' /proc/self/status | tr -s '\\t' ' '");
    s.user = "alice".into();
    assert_eq!(c.run(&s).unwrap().stdout, ["CapEff: 0000000000000000"]);
}

/// Docker's masked and read-only kernel paths: what exists on this host is hidden or
/// read-only in the sandbox. Writing the global `core_pattern` (the same value back, so
/// the host is unchanged if it succeeds) must fail on a read-only mount, for root and for
/// every id mapping.
pub fn kernel_interfaces_are_masked_and_read_only(c: &Ctx) {
    let r = c
        .run(&c.spec(
            "v=$(cat /proc/sys/kernel/core_pattern); \
             (echo \"$v\" > /proc/sys/kernel/core_pattern) 2>&1 || true; \
             (echo 1 > /proc/sys/net/ipv4/ip_forward) 2>&1 || true; \
             (: > /proc/irq/default_smp_affinity) 2>&1 || true; \
             for p in /proc/acpi /proc/asound /proc/interrupts /proc/kcore /proc/keys \
                 /proc/latency_stats /proc/sched_debug /proc/scsi /proc/timer_list \
                 /proc/timer_stats /sys/devices/virtual/powercap /sys/firmware; do \
               if [ -d $p ]; then echo \"$p $(ls -A $p | wc -l)\"; \
               elif [ -e $p ]; then echo \"$p $(cat $p | wc -c)\"; fi; \
             done",
        ))
        .unwrap();
    assert_eq!(r.outcome.exit_code, 0, "{:?}", r.stderr);
    for (i, what) in ["core_pattern", "ip_forward", "default_smp_affinity"]
        .iter()
        .enumerate()
    {
        let line = &r.stdout[i];
        assert!(line.contains(what), "{what}: {line}");
        if c.id_map.kind == MappingKind::Root {
            // Root passes every permission check: only the read-only mount stops it.
            assert!(line.contains("Read-only file system"), "{what}: {line}");
        } else {
            assert!(
                line.contains("Read-only file system") || line.contains("Permission denied"),
                "{what}: {line}"
            );
        }
    }
    let masked = &r.stdout[3..];
    let host_has = |p: &str| std::path::Path::new(p).exists();
    let expected: Vec<&str> = rbuild_executor::mounts::MASKED_PATHS
        .iter()
        .copied()
        .filter(|p| host_has(p))
        .collect();
    assert!(
        !expected.is_empty(),
        "the host has none of the masked paths"
    );
    let seen: Vec<&str> = masked
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(seen, expected, "{masked:?}");
    for line in masked {
        assert!(line.ends_with(" 0"), "not masked: {line}");
    }
}

/// With its own network namespace, the sandbox mounts a sysfs of its own: the host's
/// interfaces are not listed in /sys/class/net.
pub fn network_none_has_its_own_sysfs(c: &Ctx) {
    let mut s = c.spec("ls /sys/class/net; touch /sys/x 2>&1 | grep -c Read-only");
    s.network = Network::None;
    let r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["lo", "1"], "{:?}", r.stderr);
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        host.iter().any(|n| n != "lo"),
        "the host has only lo: {host:?}"
    );
}

pub fn extra_mounts(c: &Ctx) {
    let src = c.tmp.path().join("bind-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "from host\n").unwrap();
    let mut s = c.spec("cat /mnt/in/hello; touch /mnt/in/x 2>/dev/null && echo rw || echo ro; touch /scratch/y && echo tmp-ok");
    s.mounts = vec![
        ExtraMount {
            kind: ExtraMountKind::Bind {
                source: src.clone(),
            },
            target: "/mnt/in".into(),
            readonly: true,
        },
        ExtraMount {
            kind: ExtraMountKind::Tmpfs { size: 1 << 20 },
            target: "/scratch".into(),
            readonly: false,
        },
    ];
    let mut r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["from host", "ro", "tmp-ok"]);
    assert!(!src.join("x").exists());
    let l = c.layer(&mut r);
    assert!(
        l.is_empty(),
        "mount points are not in the layer: {:?}",
        names(&l)
    );
}

pub fn layers_stack(c: &Ctx) {
    // A second layer made by a run, then used as a lower.
    let mut r = c
        .run(&c.spec("echo one > /data/one && rm /data/b"))
        .unwrap();
    let mut blob = Vec::new();
    let opts = rbuild_executor::diff::DiffOptions {
        id_map: c.id_map.clone(),
        ..Default::default()
    };
    let info =
        rbuild_executor::sandbox::write_layer(&mut r.root, &opts, &c.id_map, &mut blob).unwrap();
    let digests = info.digests.expect("a gzip layer is hashed by its writer");
    assert_ne!(digests.digest, digests.diff_id);
    let reader = rbuild_compress::decompress(&blob[..], Some(info.media_type)).unwrap();
    let l2 = c.tmp.path().join("l2");
    std::fs::create_dir(&l2).unwrap();
    let mut o = rbuild_executor::unpack::UnpackOptions::new("l2");
    o.id_map = c.id_map.clone();
    o.ignore_chown_errors = rustix::process::getuid().as_raw() != 0;
    rbuild_executor::unpack::apply_layer(reader, &l2, &o).unwrap();
    let r = c
        .run_on(&[c.base.clone(), l2], &c.spec("ls /data | tr '\\n' ' '"))
        .unwrap();
    assert_eq!(r.stdout, ["a alice-secret one sub "]);
}

pub fn lower_whiteouts_and_opaque_dirs_hide_what_is_below(c: &Ctx) {
    let tar = Tar::default()
        .dir("data", 0o755)
        .file("data/.wh.a", 0, b"")
        .dir("data/sub", 0o755)
        .file("data/sub/.wh..wh..opq", 0, b"")
        .file("data/sub/only", 0o644, b"only\n")
        .build();
    let l2 = snapshot(c.tmp.path(), "l2-opaque", &tar, &c.id_map);
    let r = c
        .run_on(
            &[c.base.clone(), l2],
            &c.spec("ls /data | tr '\\n' ' '; echo; ls /data/sub"),
        )
        .unwrap();
    assert_eq!(r.stdout, ["alice-secret b sub ", "only"]);
}

fn overlay_mount(lowers: Vec<PathBuf>, scratch: Option<PathBuf>, subpath: &str) -> ExtraMountKind {
    ExtraMountKind::Overlay {
        lowers,
        scratch,
        subpath: subpath.into(),
    }
}

fn mount(kind: ExtraMountKind, target: &str) -> ExtraMount {
    ExtraMount {
        kind,
        target: target.into(),
        readonly: false,
    }
}

/// Every regular file under `dir` whose content contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            found.extend(files_containing(&p, needle));
        } else if ft.is_file()
            && std::fs::read(&p)
                .map(|d| d.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        {
            found.push(p);
        }
    }
    found
}

/// `RUN --mount=type=bind,from=stage[,rw]` and of the context: read-only
/// merged views, writable views whose writes land in scratch only, a subpath
/// (directory or file), and nothing of it in the layer.
pub fn overlay_extra_mounts(c: &Ctx) {
    let tar = Tar::default()
        .dir("data", 0o755)
        .file("data/.wh.a", 0, b"")
        .file("data/new", 0o640, b"new\n")
        .build();
    let top = snapshot(c.tmp.path(), "stage-top", &tar, &c.id_map);
    let stage = vec![top.clone(), c.base.clone()];
    let ctx = c.tmp.path().join("context");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("main.c"), "int main;\n").unwrap();
    rustix::fs::chmod(&ctx, rustix::fs::Mode::from_raw_mode(0o750)).unwrap();
    let scratch = c.tmp.path().join("scratch-stage");
    let scratch_ctx = c.tmp.path().join("scratch-ctx");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::create_dir(&scratch_ctx).unwrap();
    let mut s = c.spec(
        "ls /stage/data | tr '\\n' ' '; echo; cat /stage/data/new; \
         touch /stage/x 2>/dev/null && echo rw || echo ro; \
         echo changed > /rw/data/new && rm /rw/data/b && touch /rw/added && cat /rw/data/new; \
         ls /rw/data | tr '\\n' ' '; echo; \
         ls /sub; cat /file; \
         cat /src/main.c; touch /src/x 2>/dev/null && echo rw || echo ro; \
         stat -c %a /ctxrw; echo out > /ctxrw/built.o && cat /ctxrw/built.o",
    );
    s.mounts = vec![
        mount(overlay_mount(stage.clone(), None, ""), "/stage"),
        mount(
            overlay_mount(stage.clone(), Some(scratch.clone()), ""),
            "/rw",
        ),
        mount(overlay_mount(stage.clone(), None, "/data/sub"), "/sub"),
        mount(
            overlay_mount(stage.clone(), None, "data/../data/new"),
            "/file",
        ),
        mount(overlay_mount(vec![ctx.clone()], None, ""), "/src"),
        mount(
            overlay_mount(vec![ctx.clone()], Some(scratch_ctx.clone()), ""),
            "/ctxrw",
        ),
    ];
    let mut r = c.run(&s).unwrap();
    assert_eq!(
        r.stdout,
        [
            "alice-secret b new sub ",
            "new",
            "ro",
            "changed",
            "alice-secret new sub ",
            "c",
            "new",
            "int main;",
            "ro",
            "750",
            "out"
        ],
        "stderr: {:?}",
        r.stderr
    );
    let l = c.layer(&mut r);
    assert!(l.is_empty(), "mounts leave nothing: {:?}", names(&l));
    // Nothing reached the lowers or the context.
    assert_eq!(std::fs::read(top.join("data/new")).unwrap(), b"new\n");
    assert_eq!(std::fs::read(c.base.join("data/b")).unwrap(), b"b\n");
    let ctx_names: Vec<_> = std::fs::read_dir(&ctx)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(ctx_names, ["main.c"]);
    // The writes are in the scratch dirs, which the caller deletes.
    let (changed, built) = match c.kind {
        SnapshotterKind::Overlay => (
            scratch.join("upper/data/new"),
            scratch_ctx.join("upper/built.o"),
        ),
        SnapshotterKind::Copy => (
            scratch.join("tree/data/new"),
            scratch_ctx.join("tree/built.o"),
        ),
    };
    assert_eq!(std::fs::read(changed).unwrap(), b"changed\n");
    assert_eq!(std::fs::read(built).unwrap(), b"out\n");
}

/// `RUN --mount=type=secret`: the content, owner and mode are visible, the
/// file is read-only, and neither it nor its mount point (nor /run, which the
/// image lacks) is in the layer or anywhere on disk.
pub fn secret_mounts(c: &Ctx) {
    let secret = |content: &[u8], uid, gid, mode| ExtraMountKind::Secret {
        content: content.to_vec(),
        uid,
        gid,
        mode,
    };
    let mounts = vec![
        mount(
            secret(b"s3cr3t-token\n", 1000, 50, 0o440),
            "/run/secrets/token",
        ),
        mount(secret(b"npm-s3cr3t\n", 0, 0, 0o400), "/root/.npmrc"),
    ];
    let mut s = c.spec(
        "cat /run/secrets/token; stat -c '%u:%g %a' /run/secrets/token /root/.npmrc; \
         echo x > /run/secrets/token 2>/dev/null && echo rw || echo ro; \
         grep -c ' /run/secrets/token ' /proc/mounts; cat /root/.npmrc; \
         ls /run/secrets; touch /run/secrets/other 2>/dev/null; ls / | grep -c private",
    );
    s.mounts = mounts.clone();
    let mut r = c.run(&s).unwrap();
    assert_eq!(
        r.stdout,
        [
            "s3cr3t-token",
            "1000:50 440",
            "0:0 400",
            "ro",
            "1",
            "npm-s3cr3t",
            "token",
            "0"
        ],
        "stderr: {:?}",
        r.stderr
    );
    let l = c.layer(&mut r);
    // The command wrote /run/secrets/other: its parents are real changes.
    assert_eq!(names(&l), ["run/", "run/secrets/", "run/secrets/other"]);
    assert!(files_containing(c.tmp.path(), b"s3cr3t").is_empty());

    // A command that only reads leaves nothing.
    let mut s = c.spec("cat /run/secrets/token /root/.npmrc >/dev/null");
    s.mounts = mounts.clone();
    let mut r = c.run(&s).unwrap();
    assert_eq!(r.outcome.exit_code, 0);
    let l = c.layer(&mut r);
    assert!(l.is_empty(), "a secret leaves nothing: {:?}", names(&l));
    if let rbuild_executor::snapshot::RootSource::Bind { tree } = &r.root.source {
        assert!(!tree.join("run").exists(), "the /run stub is removed");
        assert_eq!(std::fs::read(tree.join("root/.npmrc")).ok(), None);
    }
    if let rbuild_executor::snapshot::RootSource::Overlay { upper, .. } = &r.root.source {
        assert_eq!(std::fs::read_dir(upper).unwrap().count(), 0);
    }
    assert!(files_containing(c.tmp.path(), b"s3cr3t").is_empty());

    // The owner's permission bits apply: alice (1000:1000, group 50) can read
    // the 0440 token, not the 0400 root file.
    if c.id_map.kind != MappingKind::Single {
        let mut s = c.spec("cat /run/secrets/token; cat /root/.npmrc 2>/dev/null || echo denied");
        s.user = "alice".into();
        s.mounts = mounts;
        let r = c.run(&s).unwrap();
        assert_eq!(r.stdout, ["s3cr3t-token", "denied"]);
    }
}

/// The parent of a mount target is a symlink out of the root: the mount
/// lands inside the root where the symlink leads, and nothing on the host.
pub fn mount_targets_stay_in_the_root(c: &Ctx) {
    let marker = format!("rbuild-escape-{}", unique_marker(8_000_000));
    let host_path = std::path::Path::new("/tmp").join(&marker);
    let tar = Tar::default()
        .symlink("run", &format!("/../../../../../../tmp/{marker}"))
        .symlink("mnt", "../../../../tmp")
        .build();
    let evil = snapshot(c.tmp.path(), "evil", &tar, &c.id_map);
    let mut s = c.spec("cat /run/secrets/x; ls /mnt/view/data/sub");
    s.mounts = vec![
        mount(
            ExtraMountKind::Secret {
                content: b"inside\n".to_vec(),
                uid: 0,
                gid: 0,
                mode: 0o400,
            },
            "/run/secrets/x",
        ),
        mount(overlay_mount(vec![c.base.clone()], None, ""), "/mnt/view"),
    ];
    let r = c.run_on(&[c.base.clone(), evil], &s).unwrap();
    assert_eq!(r.stdout, ["inside", "c"], "stderr: {:?}", r.stderr);
    assert!(!host_path.exists(), "{} was created", host_path.display());
    assert!(!std::path::Path::new("/tmp/view").exists());
}

/// `RUN --mount=type=ssh`: the agent's socket bound into the sandbox works
/// (ssh-add talks to a real ssh-agent through it).
pub fn ssh_agent_socket_bind(c: &Ctx) {
    let dir = c.tmp.path().join("agent");
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("agent.sock");
    let mut agent = Proc::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent is missing: install the Debian package openssh-client");
    let t = Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The host's /usr (for ssh-add and its libraries) over an image whose
    // /lib and /lib64 lead into it.
    let tar = Tar::default()
        .symlink("lib", "usr/lib")
        .symlink("lib64", "usr/lib64")
        .build();
    let libs = snapshot(c.tmp.path(), "libs", &tar, &c.id_map);
    let mut s = c.spec(
        "test -S /run/buildkit/ssh_agent.0 && echo socket; \
         SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0 /usr/bin/ssh-add -l; echo $?",
    );
    s.mounts = vec![
        ExtraMount {
            kind: ExtraMountKind::Bind {
                source: sock.clone(),
            },
            target: "/run/buildkit/ssh_agent.0".into(),
            readonly: true,
        },
        ExtraMount {
            kind: ExtraMountKind::Bind {
                source: "/usr".into(),
            },
            target: "/usr".into(),
            readonly: true,
        },
    ];
    let r = c.run_on(&[c.base.clone(), libs], &s);
    let _ = agent.kill();
    let _ = agent.wait();
    let mut r = r.unwrap();
    assert_eq!(
        r.stdout,
        ["socket", "The agent has no identities.", "1"],
        "stderr: {:?}",
        r.stderr
    );
    let l = c.layer(&mut r);
    assert!(l.is_empty(), "{:?}", names(&l));
}

/// A new cache mount directory gets a container user's owner, mapped to the
/// host through the id map.
pub fn set_owner_maps_container_ids(c: &Ctx) {
    let dir = c.tmp.path().join("cache-dir");
    std::fs::create_dir(&dir).unwrap();
    rbuild_executor::sandbox::set_owner(&dir, 1000, 50, 0o750, &c.id_map).unwrap();
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (Some(md.uid()), Some(md.gid()), md.mode() & 0o7777),
        (c.id_map.host_uid(1000), c.id_map.host_gid(50), 0o750)
    );
    // Seen from a sandbox, through a bind mount, it is alice's.
    let mut s = c.spec("stat -c '%u:%g %a' /cache; touch /cache/f && stat -c %u /cache/f");
    s.user = "alice".into();
    s.mounts = vec![mount(
        ExtraMountKind::Bind {
            source: dir.clone(),
        },
        "/cache",
    )];
    let r = c.run(&s).unwrap();
    assert_eq!(r.stdout, ["1000:50 750", "1000"], "stderr: {:?}", r.stderr);
}

/// Unmounts on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// A read-only bind of a host directory is read-only in the mounts below it
/// too (the build context may hold one): nothing reaches the host.
pub fn readonly_binds_cover_submounts(c: &Ctx) {
    let src = c.tmp.path().join("with-submount");
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &sub,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("mount a tmpfs (this test runs as root)");
    let _m = Mounted(sub.clone());
    std::fs::write(sub.join("f"), b"host\n").unwrap();
    let mut s = c.spec(
        "cat /ctx/sub/f; for p in /ctx/x /ctx/sub/x /ctx/sub/f; do \
         (echo w > $p) 2>/dev/null && echo rw || echo ro; done",
    );
    s.mounts = vec![
        ExtraMount {
            kind: ExtraMountKind::Bind {
                source: src.clone(),
            },
            target: "/ctx".into(),
            readonly: true,
        },
        mount(overlay_mount(vec![src.clone()], None, ""), "/ctx2"),
    ];
    let r = c.run(&s).unwrap();
    assert_eq!(
        r.stdout,
        ["host", "ro", "ro", "ro"],
        "stderr: {:?}",
        r.stderr
    );
    let mut s = c.spec("(echo w > /ctx2/sub/f) 2>/dev/null && echo rw || echo ro");
    s.mounts = vec![mount(overlay_mount(vec![src.clone()], None, ""), "/ctx2")];
    assert_eq!(c.run(&s).unwrap().stdout, ["ro"]);
    assert_eq!(std::fs::read(sub.join("f")).unwrap(), b"host\n");
    assert!(!sub.join("x").exists() && !src.join("x").exists());
}
