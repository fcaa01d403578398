//! The owner a step asked for, kept on the file itself in single-id mode.
//!
//! Without subordinate ids the sandbox's user namespace maps one id, so `chown` to any other
//! owner cannot happen on disk. The sandbox's seccomp supervisor records the requested owner
//! instead, as the extended attribute [`OWNER_XATTR`] (`"UID:GID"`) on the inode: it moves
//! with the inode on rename and hard links, goes with unlink, and overlayfs copies it up.
//! Unpacking a layer in single-id mode records its owners the same way. The layer writer
//! takes the owner from it in single-id mode; no `user.rbuild.*` attribute is ever written
//! into a layer or taken from one.

use crate::idmap::{IdMap, MappingKind};

/// The attribute holding the recorded owner, `"UID:GID"` in decimal.
pub(crate) const OWNER_XATTR: &str = "user.rbuild.owner";

/// Attributes with this prefix are rbuild's own bookkeeping, never image content.
pub(crate) const RESERVED_XATTR_PREFIX: &str = "user.rbuild.";

/// Whether `name` is one of rbuild's own attributes.
pub(crate) fn is_reserved_xattr(name: &str) -> bool {
    name.starts_with(RESERVED_XATTR_PREFIX)
}

/// The owner recorded in an [`OWNER_XATTR`] value; `None` when it is not `"UID:GID"`.
pub(crate) fn parse(value: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (u, g) = text.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// Takes rbuild's own attributes out of `xattrs` (read from a file of a snapshot) and returns
/// the owner recorded among them. A recorded owner counts only in single-id mode, where every
/// step runs as the namespace's root and could give the file any owner; in the other modes
/// the file's own owner is the truth and the attribute is dropped.
pub(crate) fn take_recorded(
    xattrs: &mut Vec<(String, Vec<u8>)>,
    id_map: &IdMap,
) -> Option<(u32, u32)> {
    let single = id_map.kind == MappingKind::Single;
    let mut owner = None;
    xattrs.retain(|(name, value)| {
        if !is_reserved_xattr(name) {
            return true;
        }
        if single && name == OWNER_XATTR {
            owner = parse(value);
        }
        false
    });
    owner
}

/// The [`OWNER_XATTR`] value for an owner.
pub(crate) fn format(uid: u32, gid: u32) -> String {
    format!("{uid}:{gid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_garbage_is_refused() {
        assert_eq!(parse(format(1234, 42).as_bytes()), Some((1234, 42)));
        assert_eq!(parse(b"0:0"), Some((0, 0)));
        for bad in [
            &b""[..],
            b"1",
            b"1:",
            b":2",
            b"a:b",
            b"1:2:3",
            b"-1:0",
            b"\xff:0",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(is_reserved_xattr(OWNER_XATTR));
        assert!(!is_reserved_xattr("user.other"));
        let read = || {
            vec![
                ("security.capability".to_owned(), b"c".to_vec()),
                (OWNER_XATTR.to_owned(), b"100:101".to_vec()),
                ("user.rbuild.other".to_owned(), b"x".to_vec()),
            ]
        };
        let mut x = read();
        assert_eq!(
            take_recorded(&mut x, &IdMap::single(1000, 1000)),
            Some((100, 101))
        );
        assert_eq!(x, vec![("security.capability".to_owned(), b"c".to_vec())]);
        let mut x = read();
        assert_eq!(take_recorded(&mut x, &IdMap::identity()), None);
        assert_eq!(x, vec![("security.capability".to_owned(), b"c".to_vec())]);
    }
}
