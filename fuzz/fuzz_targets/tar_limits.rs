//! The tar limiter is sound for any stream: every entry the `tar` crate returns through it has
//! a name, a link target and a depth within the limits, there are no more entries than the
//! limit, and nothing panics. (It is also exact for archives real writers make; that is
//! `compiler/tests/limits.rs`.)
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rbuild_tarlimits::Limits;

const LIMITS: Limits = Limits {
    max_layer_bytes: 1 << 20,
    max_entries: 16,
    max_path_bytes: 64,
    max_path_depth: 4,
};

fn trimmed(name: &[u8]) -> &[u8] {
    let end = name.len() - name.iter().rev().take_while(|&&b| b == b'/').count();
    &name[..end]
}

fuzz_target!(|data: &[u8]| {
    let mut archive = tar::Archive::new(LIMITS.reader(data));
    let Ok(entries) = archive.entries() else {
        return;
    };
    let mut seen = 0u64;
    for (i, entry) in entries.enumerate() {
        let Ok(mut entry) = entry else {
            return;
        };
        let kind = entry.header().entry_type();
        if !kind.is_pax_global_extensions() {
            seen += 1;
        }
        assert!(seen <= LIMITS.max_entries, "entry {seen} passed the limit");
        let name = entry.path_bytes().into_owned();
        assert!(
            trimmed(&name).len() <= LIMITS.max_path_bytes,
            "a name of {} bytes passed",
            name.len()
        );
        let depth = name
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .count();
        assert!(depth <= LIMITS.max_path_depth, "a name {depth} deep passed");
        if kind.is_hard_link() || kind.is_symlink() {
            let link = entry.link_name_bytes().map_or(0, |l| l.len());
            assert!(link <= LIMITS.max_path_bytes, "a link of {link} bytes passed");
        }
        if i % 2 == 0 {
            let _ = entry.read_to_end(&mut Vec::new());
        }
    }
});
