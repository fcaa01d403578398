//! `--chown` and the WORKDIR owner: `user[:group]` resolved against the
//! parent's /etc/passwd and /etc/group, as BuildKit reads them:
//!
//! * a numeric user is used as it is and its group is the same number
//!   (`--chown=1000` is 1000:1000);
//! * a user name takes the uid and the primary group of its passwd entry;
//! * a group (name or number) replaces the group.
//!
//! Unlike BuildKit, which silently uses 0 for a name it cannot find, a name
//! that does not resolve is an error naming it.

use std::ffi::OsString;
use std::io::Read;

use super::FileOpError;
use super::source::{SourceFs, resolve_in};

/// The owner a `user[:group]` spec gives, reading names from `fs` (the parent
/// image's file system).
pub(crate) fn resolve(spec: &str, fs: &dyn SourceFs) -> Result<(u32, u32), FileOpError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() && group.is_none() {
        return Ok((0, 0));
    }
    let (uid, mut gid) = if user.is_empty() {
        (0, 0)
    } else if let Ok(n) = user.parse::<u32>() {
        (n, n)
    } else {
        let text = read_etc(fs, "passwd")?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[0] == user)
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
            .ok_or_else(|| FileOpError::UnknownUser {
                name: user.to_owned(),
            })?
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let text = read_etc(fs, "group")?;
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g)
                            .then(|| f[2].parse().ok())
                            .flatten()
                    })
                    .ok_or_else(|| FileOpError::UnknownGroup { name: g.to_owned() })?
            }
        };
    }
    Ok((uid, gid))
}

/// Reads `/etc/<name>` of `fs` following symlinks inside its root; an absent
/// file reads as empty. At most 10 MiB are read.
fn read_etc(fs: &dyn SourceFs, name: &str) -> Result<String, FileOpError> {
    let path = format!("/etc/{name}");
    let err = |source| FileOpError::ReadParent {
        path: path.clone().into(),
        source,
    };
    let comps =
        resolve_in(fs, &[OsString::from("etc"), OsString::from(name)], true).map_err(err)?;
    match fs.stat(&comps).map_err(err)? {
        Some(m) if m.kind == super::FileKind::File => {}
        _ => return Ok(String::new()),
    }
    let mut buf = Vec::new();
    fs.open(&comps)
        .map_err(err)?
        .take(10 << 20)
        .read_to_end(&mut buf)
        .map_err(err)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
