//! Applying any layer never panics and never touches anything outside the destination: a
//! canary directory beside it keeps exactly its one file, and the parent directory holds
//! nothing new.
//!
//! Input: a first byte of 0 or 1 makes the rest a raw tar stream (whiteouts deleted or in
//! overlay form); any other first byte makes the rest a list of entries built with names,
//! link targets and sizes from hostile pieces (`..`, `/`, the canary's absolute path, lying
//! size fields, truncation), so the fuzzer does not have to learn tar checksums.
#![no_main]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rbuild_executor::unpack::{OverlayXattr, UnpackOptions, WhiteoutMode, apply_layer};

const PIECES: &[&str] = &[
    "a",
    "b",
    "..",
    ".",
    "",
    "etc",
    "passwd",
    "l",
    "d",
    "canary",
    "keep",
    ".wh.a",
    ".wh..wh..opq",
    ".wh...",
    ".wh..",
    ".wh.",
    "wh",
    "a\0b",
];

/// Link targets; `{canary}` stands for the canary directory's absolute path.
const TARGETS: &[&str] = &[
    "/",
    "..",
    "../..",
    "../canary",
    "../canary/keep",
    "{canary}",
    "{canary}/keep",
    "/etc",
    "/etc/passwd",
    "a",
    "l",
    "l/keep",
    "d/..",
    ".",
    "",
];

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Link,
    Fifo,
    Char,
    Block,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: Kind,
    absolute: bool,
    name: Vec<u8>,
    target: u8,
    target_tail: Option<u8>,
    data: Vec<u8>,
    /// When set, the header's size field says this instead of the data's length.
    lie: Option<u16>,
    mode: u16,
}

#[derive(Arbitrary, Debug)]
struct Layer {
    overlay: bool,
    entries: Vec<Entry>,
    /// Cut the stream this many bytes before its end.
    truncate: Option<u16>,
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{value:0width$o}", width = field.len() - 1);
    let s = s.as_bytes();
    let s = &s[s.len().saturating_sub(field.len() - 1)..];
    field[..s.len()].copy_from_slice(s);
    field[s.len()] = 0;
}

fn build(layer: &Layer, canary: &Path) -> Vec<u8> {
    let canary = canary.to_string_lossy();
    let mut out = Vec::new();
    for e in layer.entries.iter().take(24) {
        let mut name = String::new();
        if e.absolute {
            name.push('/');
        }
        for (i, p) in e.name.iter().take(6).enumerate() {
            if i > 0 {
                name.push('/');
            }
            name.push_str(PIECES[*p as usize % PIECES.len()]);
        }
        let mut target = TARGETS[e.target as usize % TARGETS.len()].replace("{canary}", &canary);
        if let Some(t) = e.target_tail {
            target.push('/');
            target.push_str(PIECES[t as usize % PIECES.len()]);
        }
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name.as_bytes()[..n]);
        octal(&mut h[100..108], u64::from(e.mode & 0o7777));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        let data: &[u8] = match e.kind {
            Kind::File | Kind::Other(_) => &e.data[..e.data.len().min(4096)],
            _ => &[],
        };
        let size = e.lie.map_or(data.len() as u64, u64::from);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = match e.kind {
            Kind::File => b'0',
            Kind::Link => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
            Kind::Other(b) => b,
        };
        let t = target.len().min(100);
        h[157..157 + t].copy_from_slice(&target.as_bytes()[..t]);
        h[257..265].copy_from_slice(b"ustar\x0000");
        octal(&mut h[329..337], 1);
        octal(&mut h[337..345], 3);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..155], sum);
        h[155] = b' ';
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    if let Some(cut) = layer.truncate {
        out.truncate(out.len().saturating_sub(usize::from(cut)));
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let arena = tempfile::Builder::new()
        .prefix("rbuild-fuzz-unpack-")
        .tempdir_in(scratch_dir())
        .expect("temp dir");
    let root = arena.path().join("root");
    let canary = arena.path().join("canary");
    std::fs::create_dir(&root).expect("mkdir root");
    std::fs::create_dir(&canary).expect("mkdir canary");
    std::fs::write(canary.join("keep"), b"canary").expect("write canary");
    let canary_mode = std::fs::metadata(canary.join("keep"))
        .expect("canary")
        .mode()
        & 0o7777;
    let (tar, overlay) = match mode {
        0 | 1 => (rest.to_vec(), mode == 1),
        _ => {
            let Ok(layer) = Layer::arbitrary_take_rest(Unstructured::new(rest)) else {
                return;
            };
            (build(&layer, &canary), layer.overlay)
        }
    };
    let mut opts = UnpackOptions::new("sha256:fuzz");
    opts.ignore_chown_errors = true;
    opts.limits.max_layer_bytes = 1 << 20;
    opts.limits.max_entries = 256;
    opts.whiteouts = if overlay {
        WhiteoutMode::Overlay(OverlayXattr::User)
    } else {
        WhiteoutMode::Delete
    };
    if let Err(e) = apply_layer(&tar[..], &root, &opts) {
        let msg = e.to_string();
        assert!(
            msg.contains("sha256:fuzz"),
            "error without the layer: {msg}"
        );
    }
    assert_eq!(
        names(arena.path()),
        ["canary", "root"],
        "something was made beside the root"
    );
    assert_eq!(names(&canary), ["keep"], "the canary directory changed");
    let md = std::fs::symlink_metadata(canary.join("keep")).expect("canary file");
    assert!(
        md.is_file() && md.len() == 6,
        "the canary file was replaced"
    );
    assert_eq!(md.nlink(), 1, "the canary file was hard-linked");
    assert_eq!(
        md.mode() & 0o7777,
        canary_mode,
        "the canary file's mode changed"
    );
    assert_eq!(
        std::fs::read(canary.join("keep")).expect("read canary"),
        b"canary"
    );
    assert!(
        std::fs::symlink_metadata(&root).expect("root").is_dir(),
        "the root was replaced"
    );
});

/// A tmpfs when there is one (`/dev/shm`): several times faster than a disk for the many
/// small files made and removed per input.
fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
