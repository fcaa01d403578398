//! Measures the overhead of a no-op RUN step (`/bin/true`): prepare the root
//! file system, run the sandbox, write the (empty) layer. Prints the median
//! and the spread of 20 runs after 2 warm-up runs.
//!
//! `cargo run --release -p rbuild-executor --example noop_run`
//! (needs /bin/busybox from Debian's busybox-static).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rbuild_executor::diff::DiffOptions;
use rbuild_executor::idmap::IdMap;
use rbuild_executor::sandbox::{self, Command, RunSpec, Sandbox};
use rbuild_executor::snapshot::{self, SnapshotterKind};
use rbuild_executor::unpack::{UnpackOptions, apply_layer};

fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    for d in ["bin", "etc", "tmp"] {
        add(d, tar::EntryType::Directory, 0o755, b"", None);
    }
    let bb =
        std::fs::read("/bin/busybox").expect("/bin/busybox is missing: install busybox-static");
    add("bin/busybox", tar::EntryType::Regular, 0o755, &bb, None);
    for l in ["true", "sh"] {
        add(
            &format!("bin/{l}"),
            tar::EntryType::Symlink,
            0o777,
            b"",
            Some("busybox"),
        );
    }
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
        None,
    );
    add(
        "etc/group",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:\n",
        None,
    );
    b.into_inner().unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = std::env::temp_dir().join(format!("rbuild-noop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let base: PathBuf = tmp.join("base");
    std::fs::create_dir_all(&base)?;
    let id_map = IdMap::for_current_user();
    let mut o = UnpackOptions::new("base");
    o.id_map = id_map.clone();
    o.ignore_chown_errors = true;
    apply_layer(&base_layer()[..], &base, &o)?;
    let kind = SnapshotterKind::detect();
    let (mut prep, mut run, mut diff, mut total, mut native) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..22 {
        let step = tmp.join(format!("step{i}"));
        let mut spec = RunSpec::new(Command::Exec(vec!["/bin/true".into()]));
        spec.id_map = id_map.clone();
        let t0 = Instant::now();
        let mut root = snapshot::prepare(
            kind,
            std::slice::from_ref(&base),
            &step,
            &spec.mountpoints(),
        )?;
        let t1 = Instant::now();
        let outcome = Sandbox::run(&spec, &root, &mut |_, _| {})?;
        let t2 = Instant::now();
        let info =
            sandbox::write_layer(&mut root, &DiffOptions::default(), &id_map, std::io::sink())?;
        let t3 = Instant::now();
        assert_eq!(outcome.exit_code, 0);
        assert_eq!(info.entries, 0, "a no-op step has an empty layer");
        let n0 = Instant::now();
        std::process::Command::new("/bin/busybox")
            .arg("true")
            .status()?;
        let n1 = Instant::now();
        if i >= 2 {
            prep.push(t1 - t0);
            run.push(t2 - t1);
            diff.push(t3 - t2);
            total.push(t3 - t0);
            native.push(n1 - n0);
        }
    }
    sandbox::remove_tree(&tmp, &id_map)?;
    println!(
        "snapshotter: {kind:?}, id mapping: {:?}, runs: {}",
        id_map.kind,
        total.len()
    );
    println!("prepare  median {:?}", median(prep));
    println!("sandbox  median {:?}", median(run));
    println!("diff     median {:?}", median(diff));
    let (min, max) = (*total.iter().min().unwrap(), *total.iter().max().unwrap());
    let n = median(native.clone());
    let t = median(total);
    println!("total    median {t:?} (min {min:?}, max {max:?})");
    println!(
        "native `busybox true` median {n:?}; overhead {:?}",
        t.saturating_sub(n)
    );
    Ok(())
}
