//! Selecting the context entries one COPY/ADD reads, and the digest that keys it.
//!
//! Sources are paths or Go `filepath.Match` globs (`*`, `?`, `[...]`, `[^...]`, `\`)
//! relative to the context root; a leading `/` means the root, as in Docker. A glob matches
//! paths with as many components as it has; a matched directory brings its whole subtree. A
//! glob without a match and a missing path are errors naming the source, as in Docker; so is
//! a source that leaves the context (`../x`).
//!
//! `--exclude` patterns use `.dockerignore` syntax and are matched against the path relative
//! to the source that selected the entry (the source directory for a directory, the base
//! name for a file), as BuildKit applies them during its copy walk.
//!
//! `--parents` changes only where the files land, not which ones are read, so the selection
//! and its digest do not depend on it (the op's definition records the flag).
//!
//! The digest covers, for each selected entry in path order: its path relative to the
//! context root, its kind, its permission bits (setuid/setgid/sticky included), its link
//! target and its content hash. Not mtime, ctime, inode, device, the absolute host path, or
//! the host uid/gid: Docker gives files copied from the context 0:0 unless `--chown` says
//! otherwise (and `--chown` is part of the op's definition), so the owner on the host never
//! changes the result, and keeping it out lets two machines with different checkout users
//! share cache entries. The same digest results on any machine for the same files.

use std::collections::BTreeSet;

use rbuild_pathmatch::glob;
use rbuild_pathmatch::ignore::{IgnoreError, Matcher};

use super::{Context, Entry, EntryKind};

const SCHEMA: &[u8] = b"rbuild-context-selection-v1\0";

/// Selecting a COPY's sources failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A source names a path outside the context.
    #[error("source {source_path} is outside the build context")]
    OutsideContext {
        /// The source as written.
        source_path: String,
    },
    /// A plain source names nothing in the context (or something `.dockerignore` excludes).
    #[error("{source_path} is not in the build context")]
    NotFound {
        /// The source as written.
        source_path: String,
        /// The ignore file's pattern that excludes it, when it exists but is excluded.
        excluded_by: Option<Excluded>,
        /// The context path closest to it (a likely typo), when it is not excluded.
        closest: Option<String>,
    },
    /// A glob source is malformed.
    #[error("invalid pattern {pattern} in source")]
    BadPattern {
        /// The glob as written.
        pattern: String,
    },
    /// An `--exclude` pattern is malformed.
    #[error("invalid --exclude pattern")]
    Exclude {
        /// The cause (names the pattern).
        #[source]
        source: IgnoreError,
    },
}

/// The ignore file's pattern that excluded a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// The ignore file.
    pub file: std::path::PathBuf,
    /// The pattern's line in it (1-based).
    pub line: usize,
    /// The pattern as written (cleaned, with its `!`).
    pub pattern: String,
}

/// The entries one COPY/ADD reads from the context and their digest.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Selected entries, sorted by path bytes, each once.
    pub entries: Vec<Entry>,
    /// BLAKE3 over what of those entries can change the COPY's result (see the module docs).
    pub digest: blake3::Hash,
}

impl Context {
    /// Selects the entries of `sources` (paths and globs relative to the context root),
    /// minus those matching `excludes`, and computes their digest.
    pub fn select(
        &self,
        sources: &[String],
        excludes: &[String],
    ) -> Result<Selection, SelectError> {
        let exclude = if excludes.is_empty() {
            None
        } else {
            Some(Matcher::new(excludes).map_err(|source| SelectError::Exclude { source })?)
        };
        let mut picked: BTreeSet<usize> = BTreeSet::new();
        for source in sources {
            let cleaned = clean_source(source)?;
            if cleaned.contains(['*', '?', '[', '\\']) {
                if glob::syntax_error(cleaned.as_bytes()).is_some() {
                    return Err(SelectError::BadPattern {
                        pattern: source.clone(),
                    });
                }
                // A glob that matches nothing selects nothing, as in BuildKit (a path
                // without wildcards must exist).
                let want = cleaned.split('/').count();
                for (i, e) in self.entries.iter().enumerate() {
                    let p = e.path_bytes();
                    if p.split(|&b| b == b'/').count() == want
                        && glob::matches_checked(cleaned.as_bytes(), p)
                    {
                        self.add_subtree(i, &exclude, &mut picked)?;
                    }
                }
            } else if cleaned == "." {
                for (i, e) in self.entries.iter().enumerate() {
                    if !excluded(&exclude, e.path_bytes())? {
                        picked.insert(i);
                    }
                }
            } else {
                let not_found = || self.not_found(source, &cleaned);
                match self.find(cleaned.as_bytes()) {
                    Some(i) if self.entries[i].kind != EntryKind::Symlink => {
                        self.add_subtree(i, &exclude, &mut picked)?;
                    }
                    found => {
                        // A named source that is a symlink, or lies below one, is followed
                        // inside the context as docker does: the link (whose target is part
                        // of the digest) and what it leads to are both read.
                        if let Some(i) = found {
                            picked.insert(i);
                        }
                        self.add_links_on_path(cleaned.as_bytes(), &mut picked);
                        let target = self.resolve(cleaned.as_bytes()).ok_or_else(not_found)?;
                        let j = self.find(&target).ok_or_else(not_found)?;
                        self.add_subtree(j, &exclude, &mut picked)?;
                    }
                }
            }
        }
        let entries: Vec<Entry> = picked
            .into_iter()
            .map(|i| self.entries[i].clone())
            .collect();
        let digest = selection_digest(&entries);
        Ok(Selection { entries, digest })
    }

    /// The error for a named source that is not in the context: which ignore pattern
    /// excludes it when it exists, else the closest path of its directory.
    fn not_found(&self, source: &str, cleaned: &str) -> SelectError {
        let excluded_by = self.ignore.as_ref().and_then(|(matcher, lines)| {
            let i = matcher.deciding_pattern(cleaned.as_bytes()).ok()??;
            super::file::exists_in(&self.root, std::path::Path::new(cleaned)).then(|| Excluded {
                file: self.ignore_file.clone().unwrap_or_default(),
                line: lines.get(i).copied().unwrap_or(0),
                pattern: matcher.patterns()[i].source().to_string(),
            })
        });
        let closest = excluded_by
            .is_none()
            .then(|| self.closest(cleaned))
            .flatten();
        SelectError::NotFound {
            source_path: source.to_string(),
            excluded_by,
            closest,
        }
    }

    /// The path of the context closest to `wanted` among the entries of its directory.
    fn closest(&self, wanted: &str) -> Option<String> {
        let dir = wanted.rsplit_once('/').map_or("", |(d, _)| d);
        let siblings: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| {
                let p = std::str::from_utf8(e.path_bytes()).ok()?;
                let parent = p.rsplit_once('/').map_or("", |(d, _)| d);
                (parent == dir).then(|| p.to_string())
            })
            .collect();
        rbuild_compiler::suggest::closest(wanted, siblings.iter().map(String::as_str))
            .map(str::to_string)
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path_bytes().cmp(path))
            .ok()
    }

    /// The symlinks met while resolving `path` component by component, added so a change of
    /// their targets changes the digest.
    fn add_links_on_path(&self, path: &[u8], picked: &mut BTreeSet<usize>) {
        let mut prefix = Vec::new();
        for comp in path.split(|&b| b == b'/') {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(comp);
            if let Some(i) = self.find(&prefix)
                && self.entries[i].kind == EntryKind::Symlink
            {
                picked.insert(i);
            }
        }
    }

    /// Resolves `path` (clean, relative) through the context's symlinks, never leaving the
    /// context: an absolute target starts at the context root and `..` stops there, as if
    /// the context were `/`. `None` when it leads nowhere (or loops).
    fn resolve(&self, path: &[u8]) -> Option<Vec<u8>> {
        let mut todo: Vec<Vec<u8>> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .rev()
            .collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            if comp == b".." {
                done.pop();
                continue;
            }
            done.push(comp);
            let joined = done.join(&b'/');
            let i = self.find(&joined)?;
            let e = &self.entries[i];
            if e.kind != EntryKind::Symlink {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return None;
            }
            done.pop();
            let target = e.link_target.as_deref()?;
            let target = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
            if target.starts_with(b"/") {
                done.clear();
            }
            for c in target
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .rev()
            {
                todo.push(c.to_vec());
            }
        }
        if done.is_empty() {
            return None;
        }
        Some(done.join(&b'/'))
    }

    /// Adds entry `i` and, for a directory, everything below it; `--exclude` patterns are
    /// matched relative to the source.
    fn add_subtree(
        &self,
        i: usize,
        exclude: &Option<Matcher>,
        picked: &mut BTreeSet<usize>,
    ) -> Result<(), SelectError> {
        let top = &self.entries[i];
        let top_path = top.path_bytes();
        let base = top_path
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(top_path, |k| &top_path[k + 1..]);
        if top.kind != EntryKind::Dir {
            if !excluded(exclude, base)? {
                picked.insert(i);
            }
            return Ok(());
        }
        picked.insert(i);
        let mut prefix = top_path.to_vec();
        prefix.push(b'/');
        let start = self
            .entries
            .partition_point(|e| e.path_bytes() < prefix.as_slice());
        for (j, e) in self.entries.iter().enumerate().skip(start) {
            let Some(rel) = e.path_bytes().strip_prefix(prefix.as_slice()) else {
                break;
            };
            if !excluded(exclude, rel)? {
                picked.insert(j);
            }
        }
        Ok(())
    }
}

fn excluded(exclude: &Option<Matcher>, rel: &[u8]) -> Result<bool, SelectError> {
    match exclude {
        None => Ok(false),
        Some(m) => m
            .matches(rel)
            .map_err(|source| SelectError::Exclude { source }),
    }
}

/// The digest of a selection (see the module docs for what it covers).
fn selection_digest(entries: &[Entry]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(SCHEMA);
    h.update(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        let p = e.path_bytes();
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
        h.update(&[match e.kind {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
        }]);
        h.update(&e.mode.to_le_bytes());
        let link = e
            .link_target
            .as_deref()
            .map(|t| std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str()))
            .unwrap_or_default();
        h.update(&(link.len() as u64).to_le_bytes());
        h.update(link);
        h.update(e.hash.as_ref().map_or(&[0u8; 32], |x| x.as_bytes()));
    }
    h.finalize()
}

/// Cleans a source lexically, relative to the context root; refuses one that leaves it.
fn clean_source(source: &str) -> Result<String, SelectError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(SelectError::OutsideContext {
                        source_path: source.to_owned(),
                    });
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok(".".to_owned());
    }
    let joined = parts.join("/");
    debug_assert_eq!(rbuild_pathmatch::clean_path(&joined), joined.as_str());
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_inside_the_context() {
        assert_eq!(clean_source("/a/./b/").unwrap(), "a/b");
        assert_eq!(clean_source("a/../b").unwrap(), "b");
        assert_eq!(clean_source("./").unwrap(), ".");
        assert!(matches!(
            clean_source("../x"),
            Err(SelectError::OutsideContext { .. })
        ));
        assert!(matches!(
            clean_source("a/../../x"),
            Err(SelectError::OutsideContext { .. })
        ));
    }
}
