//! The tar limiter follows archives exactly as the `tar` crate reads them: GNU long names and
//! long links, ustar prefixes, PAX records, GNU sparse files with extension blocks, entries
//! read, skipped or sought over. It never stops a stream within its limits, and its entry
//! count and names are the reader's.

use std::io::{Cursor, Read, Seek, Write};

use rbuild_tarlimits::{LimitError, Limits};

/// A file with many holes, so that `tar` writes it as a GNU sparse entry with extension
/// blocks (a header holds 4 sparse records, each extension block 21).
fn sparse_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sparse");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..40u64 {
        f.seek(std::io::SeekFrom::Start(i * 64 * 1024)).unwrap();
        f.write_all(&[i as u8 + 1; 512]).unwrap();
    }
    f.set_len(40 * 64 * 1024 + 4096).unwrap();
    path
}

/// An archive with every way of naming an entry the `tar` crate writes or reads.
fn archive(dir: &std::path::Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let long_dir = format!("{}/", "long-directory-name/".repeat(12));
    let mut n = 0;
    let mut add = |b: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, name: &str, data: &[u8]| {
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(n);
        n += 1;
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&mut b, tar::Header::new_gnu(), "short", b"data");
    add(
        &mut b,
        tar::Header::new_gnu(),
        &format!("{long_dir}file"),
        &[1; 700],
    );
    add(
        &mut b,
        tar::Header::new_ustar(),
        &format!("{long_dir}ustar"),
        &[2; 513],
    );
    add(&mut b, tar::Header::new_old(), "old", &[3; 511]);
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    b.append_link(&mut link, "symlink", format!("{long_dir}target"))
        .unwrap();
    b.append_pax_extensions([
        ("path", format!("{long_dir}pax-named").as_bytes()),
        ("SCHILY.xattr.user.x", b"value".as_slice()),
    ])
    .unwrap();
    add(&mut b, tar::Header::new_ustar(), "ignored", &[4; 1500]);
    let mut dir_h = tar::Header::new_gnu();
    dir_h.set_entry_type(tar::EntryType::Directory);
    add(&mut b, dir_h, "dir/", b"");
    b.sparse(true);
    b.append_path_with_name(sparse_file(dir), "sparse").unwrap();
    add(&mut b, tar::Header::new_gnu(), "after-sparse", &[5; 100]);
    b.into_inner().unwrap()
}

/// Walks `bytes` with the tar crate through the limiter: (names, limiter's entry count).
fn walk(
    bytes: &[u8],
    limits: Limits,
    read_data: bool,
    seek: bool,
) -> std::io::Result<(Vec<String>, u64)> {
    let mut names = Vec::new();
    let count = if seek {
        let mut a = tar::Archive::new(limits.reader(Cursor::new(bytes)));
        for e in a.entries_with_seek()? {
            let mut e = e?;
            names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
            if read_data {
                std::io::copy(&mut e, &mut std::io::sink())?;
            }
        }
        a.into_inner().limiter().entries()
    } else {
        let mut a = tar::Archive::new(limits.reader(bytes));
        for e in a.entries()? {
            let mut e = e?;
            names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
            if read_data {
                let mut v = Vec::new();
                e.read_to_end(&mut v)?;
            }
        }
        a.into_inner().limiter().entries()
    };
    Ok((names, count))
}

#[test]
fn the_limiter_agrees_with_the_tar_reader() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = archive(dir.path());
    let mut plain = Vec::new();
    let mut sparse_blocks = false;
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let e = e.unwrap();
        if let Some(gnu) = e.header().as_gnu() {
            sparse_blocks |= e.header().entry_type().is_gnu_sparse() && gnu.is_extended();
        }
        plain.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
    }
    assert!(sparse_blocks, "no sparse entry with extension blocks");
    assert!(plain.iter().any(|n| n.ends_with("pax-named")), "{plain:?}");
    assert!(plain.iter().any(|n| n == "sparse"), "{plain:?}");
    for read_data in [true, false] {
        for seek in [true, false] {
            let (names, count) = walk(&bytes, Limits::default(), read_data, seek).unwrap();
            assert_eq!(names, plain, "read {read_data}, seek {seek}");
            assert_eq!(count, plain.len() as u64);
        }
    }
    // The longest name is 254 bytes, and it is 13 components deep.
    let longest = plain.iter().map(String::len).max().unwrap();
    let tight = Limits {
        max_path_bytes: longest - 1,
        ..Limits::default()
    };
    let e = walk(&bytes, tight, true, false).unwrap_err();
    assert!(
        matches!(LimitError::of(&e), Some(LimitError::NameTooLong { .. })),
        "{e}"
    );
    let exact = Limits {
        max_path_bytes: longest,
        max_path_depth: 13,
        max_entries: plain.len() as u64,
        max_layer_bytes: bytes.len() as u64,
    };
    walk(&bytes, exact, true, true).unwrap();
    let shallow = Limits {
        max_path_depth: 12,
        ..exact
    };
    let e = walk(&bytes, shallow, false, true).unwrap_err();
    assert!(
        matches!(
            LimitError::of(&e),
            Some(LimitError::TooDeep { depth: 13, .. })
        ),
        "{e}"
    );
    let few = Limits {
        max_entries: plain.len() as u64 - 1,
        ..exact
    };
    let e = walk(&bytes, few, false, false).unwrap_err();
    assert!(
        matches!(LimitError::of(&e), Some(LimitError::TooManyEntries { .. })),
        "{e}"
    );
}
