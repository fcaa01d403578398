//! User and group id mappings between a sandbox's user namespace and the host.

use std::path::Path;

/// One contiguous range of a mapping: `size` ids starting at `container`
/// inside the namespace correspond to ids starting at `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the user namespace.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// How the sandbox's user namespace is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingKind {
    /// The caller is root: the maps are written directly.
    Root,
    /// An unprivileged caller with subordinate ids: written by newuidmap/newgidmap.
    Subordinate,
    /// An unprivileged caller without subordinate ids: only its own id is mapped (to 0).
    Single,
}

/// The uid and gid maps of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// uid ranges.
    pub uids: Vec<IdRange>,
    /// gid ranges.
    pub gids: Vec<IdRange>,
    /// How the maps are installed.
    pub kind: MappingKind,
}

fn map_one(ranges: &[IdRange], id: u32, to_host: bool) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let (from, to) = if to_host {
            (r.container, r.host)
        } else {
            (r.host, r.container)
        };
        let off = id.checked_sub(from)?;
        (off < r.size).then(|| to + off)
    })
}

impl IdMap {
    /// The identity mapping of the whole id space, used when running as root.
    pub fn identity() -> Self {
        let full = vec![IdRange {
            container: 0,
            host: 0,
            size: u32::MAX,
        }];
        IdMap {
            uids: full.clone(),
            gids: full,
            kind: MappingKind::Root,
        }
    }

    /// Root's mapping onto a subordinate range: container ids `0..size` are host uids
    /// `uid..uid+size` and host gids `gid..gid+size` (docker's `userns-remap`). Written
    /// directly by root; container root is an unprivileged id on the host.
    pub fn remapped(uid: u32, gid: u32, size: u32) -> Self {
        let range = |host| {
            vec![IdRange {
                container: 0,
                host,
                size,
            }]
        };
        IdMap {
            uids: range(uid),
            gids: range(gid),
            kind: MappingKind::Root,
        }
    }

    /// Root's subordinate ranges in `/etc/subuid` and `/etc/subgid` (the entries of `root`
    /// or uid 0) as a [`IdMap::remapped`] mapping; the smaller of the two sizes is used.
    pub fn root_subordinate() -> Result<Self, String> {
        let read = |f: &str| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            parse_subid(&text, 0, Some("root")).ok_or_else(|| {
                format!("{f} has no range for root (add a line such as root:100000:65536)")
            })
        };
        let (uid, usize) = read("/etc/subuid")?;
        let (gid, gsize) = read("/etc/subgid")?;
        Ok(Self::remapped(uid, gid, usize.min(gsize)))
    }

    /// The mapping as seen from inside a user namespace that has this one: the identity,
    /// but for a single-id mapping the one id alone (still of kind
    /// [`MappingKind::Single`], so owners recorded on files count there too).
    pub fn inside(&self) -> Self {
        match self.kind {
            MappingKind::Single => Self::single(0, 0),
            MappingKind::Root | MappingKind::Subordinate => Self::identity(),
        }
    }

    /// Whether container ids are host ids.
    pub fn is_identity(&self) -> bool {
        *self == Self::identity()
    }

    /// The uid and gid maps as one line each (`uid 0 100000 65536`), to record which
    /// mapping files on disk were made with.
    pub fn describe(&self) -> String {
        let line = |what: &str, r: &[IdRange]| -> String {
            let ranges: Vec<String> = r
                .iter()
                .map(|r| format!("{} {} {}", r.container, r.host, r.size))
                .collect();
            format!("{what} {}\n", ranges.join(" "))
        };
        line("uid", &self.uids) + &line("gid", &self.gids)
    }

    /// Maps only `uid`/`gid` of the caller to 0 inside.
    pub fn single(uid: u32, gid: u32) -> Self {
        IdMap {
            uids: vec![IdRange {
                container: 0,
                host: uid,
                size: 1,
            }],
            gids: vec![IdRange {
                container: 0,
                host: gid,
                size: 1,
            }],
            kind: MappingKind::Single,
        }
    }

    /// The mapping for the current process: identity as root; otherwise the
    /// caller's id as 0 plus its `/etc/subuid` and `/etc/subgid` ranges as 1..;
    /// a single-id mapping when there are none.
    pub fn for_current_user() -> Self {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        if uid == 0 {
            return Self::identity();
        }
        let name = user_name(uid);
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
        let su = parse_subid(&subuid, uid, name.as_deref());
        let sg = parse_subid(&subgid, uid, name.as_deref());
        match (su, sg) {
            (Some((us, uc)), Some((gs, gc))) if has_tool("newuidmap") && has_tool("newgidmap") => {
                IdMap {
                    uids: vec![
                        IdRange {
                            container: 0,
                            host: uid,
                            size: 1,
                        },
                        IdRange {
                            container: 1,
                            host: us,
                            size: uc,
                        },
                    ],
                    gids: vec![
                        IdRange {
                            container: 0,
                            host: gid,
                            size: 1,
                        },
                        IdRange {
                            container: 1,
                            host: gs,
                            size: gc,
                        },
                    ],
                    kind: MappingKind::Subordinate,
                }
            }
            _ => {
                // A build says so once in its progress ([`IdMap::single_id_note`]).
                tracing::debug!(
                    uid,
                    "no subordinate id ranges in /etc/subuid and /etc/subgid (or newuidmap/newgidmap missing): \
                     using a single-id mapping"
                );
                Self::single(uid, gid)
            }
        }
    }

    /// For a single-id mapping, what a build says about it (once, as a progress warning):
    /// whose ids are missing and what the sandbox does instead; `None` for the other kinds.
    pub fn single_id_note(&self) -> Option<String> {
        if self.kind != MappingKind::Single {
            return None;
        }
        let uid = self.uids.first().map_or(0, |r| r.host);
        let who = user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
        Some(format!(
            "no subordinate ids for {who} in /etc/subuid and /etc/subgid (or newuidmap/newgidmap \
             missing): single-id mode, owners recorded by seccomp"
        ))
    }

    /// The host uid for a uid inside the namespace.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        map_one(&self.uids, id, true)
    }
    /// The host gid for a gid inside the namespace.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        map_one(&self.gids, id, true)
    }
    /// The uid inside the namespace for a host uid.
    pub fn container_uid(&self, id: u32) -> Option<u32> {
        map_one(&self.uids, id, false)
    }
    /// The gid inside the namespace for a host gid.
    pub fn container_gid(&self, id: u32) -> Option<u32> {
        map_one(&self.gids, id, false)
    }

    /// The map in `/proc/PID/uid_map` text form.
    pub fn uid_map_text(&self) -> String {
        ranges_text(&self.uids)
    }
    /// The map in `/proc/PID/gid_map` text form.
    pub fn gid_map_text(&self) -> String {
        ranges_text(&self.gids)
    }
}

fn ranges_text(r: &[IdRange]) -> String {
    r.iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect()
}

fn has_tool(name: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(name).exists())
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

/// Finds the first `/etc/subuid`-format range for a user (by name or uid).
pub fn parse_subid(text: &str, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        if f.len() != 3 {
            return None;
        }
        let who = f[0] == uid.to_string() || Some(f[0]) == name;
        let start = f[1].parse().ok()?;
        let count: u32 = f[2].parse().ok()?;
        (who && count > 0).then_some((start, count))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let m = IdMap {
            uids: vec![
                IdRange {
                    container: 0,
                    host: 1000,
                    size: 1,
                },
                IdRange {
                    container: 1,
                    host: 100000,
                    size: 65536,
                },
            ],
            gids: vec![],
            kind: MappingKind::Subordinate,
        };
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1), Some(100000));
        assert_eq!(m.host_uid(65536), Some(165535));
        assert_eq!(m.host_uid(65537), None);
        assert_eq!(m.container_uid(100005), Some(6));
        assert_eq!(m.container_uid(5), None);
        assert_eq!(m.uid_map_text(), "0 1000 1\n1 100000 65536\n");
        assert_eq!(IdMap::identity().host_uid(4_000_000), Some(4_000_000));
    }

    #[test]
    fn subid_lookup_by_name_or_uid() {
        let t = "alice:100000:65536\n1001:200000:1000\nbad line\n";
        assert_eq!(parse_subid(t, 1000, Some("alice")), Some((100000, 65536)));
        assert_eq!(parse_subid(t, 1001, Some("bob")), Some((200000, 1000)));
        assert_eq!(parse_subid(t, 1002, Some("carol")), None);
    }
}
