//! Resolving a Dockerfile `USER` against an image's /etc/passwd and /etc/group.

/// The ids a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (from /etc/group membership), sorted, without `gid`.
    pub groups: Vec<u32>,
    /// Home directory (`/` when the user is not in /etc/passwd).
    pub home: String,
}

/// Errors resolving a user; each names the user or group.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// A user name not in /etc/passwd.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name not in /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) like
/// Docker: names must exist; numeric ids need not (then gid 0 and home `/`).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|p| p.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|p| p.name == u)
                .ok_or_else(|| UserError::NoUser(u.to_owned()))?,
        ),
    };
    let (uid, mut gid, home, name) = match &entry {
        Some(p) => (p.uid, p.gid, p.home.to_owned(), Some(p.name)),
        None => (u.parse().unwrap_or(0), 0, "/".to_owned(), None),
    };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|(n, _, _)| *n == g)
                .map(|(_, id, _)| id)
                .ok_or_else(|| UserError::NoGroup(g.to_owned()))?,
        };
    }
    let mut groups: Vec<u32> = match name {
        Some(n) => group_entries(group)
            .filter(|(_, _, m)| m.contains(&n))
            .map(|(_, id, _)| id)
            .filter(|id| *id != gid)
            .collect(),
        None => Vec::new(),
    };
    groups.sort_unstable();
    groups.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:alice\nalice:x:1000:\nwheel:x:10:alice,bob\n";

    #[test]
    fn resolves_names_ids_and_groups() {
        assert_eq!(
            resolve_user("", PASSWD, GROUP).unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: "/root".into()
            }
        );
        assert_eq!(
            resolve_user("alice", PASSWD, GROUP).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                groups: vec![10, 100],
                home: "/home/alice".into()
            }
        );
        assert_eq!(
            resolve_user("1001", PASSWD, GROUP).unwrap().groups,
            vec![10]
        );
        assert_eq!(resolve_user("bob", PASSWD, GROUP).unwrap().gid, 100);
        let x = resolve_user("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((x.uid, x.gid, x.home.as_str()), (4242, 77, "/"));
        let y = resolve_user("4242", PASSWD, GROUP).unwrap();
        assert_eq!((y.uid, y.gid), (4242, 0));
        assert_eq!(resolve_user("alice:wheel", PASSWD, GROUP).unwrap().gid, 10);
        assert_eq!(
            resolve_user("alice:wheel", PASSWD, GROUP).unwrap().groups,
            vec![100]
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve_user("carol", PASSWD, GROUP),
            Err(UserError::NoUser("carol".into()))
        );
        assert_eq!(
            resolve_user("alice:staff", PASSWD, GROUP),
            Err(UserError::NoGroup("staff".into()))
        );
        assert_eq!(
            resolve_user("carol", PASSWD, GROUP)
                .unwrap_err()
                .to_string(),
            "unable to find user carol: no matching entries in passwd file"
        );
    }
}
