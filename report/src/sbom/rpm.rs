//! rpm's database (Fedora, RHEL and its rebuilds, Amazon Linux, openSUSE): `rpmdb.sqlite`
//! (rpm 4.16 and later) or the Berkeley DB hash file `Packages`, in `var/lib/rpm` or
//! `usr/lib/sysimage/rpm`. Each row holds a package's header blob, parsed by [`header`].
//!
//! The SQLite file is copied to a private temporary directory (with its `-wal` file when
//! the image has one) and opened read-only, untrusted: `Packages` must be a real table,
//! schema code is not trusted, the statement is interrupted past a number of steps, and a
//! row's value is bounded.

use std::collections::HashSet;
use std::sync::Arc;

use super::fs::{Captured, RPMDB_MAX_BYTES};
use super::{Ctx, Ecosystem, Package, SbomError, join_listed, purl_encode};
use crate::scan::Kind;

mod bdb;
mod header;

use header::{Header, HeaderError};

/// The directories rpm keeps its database in (the first is often a link to the second).
const DB_DIRS: [&str; 2] = ["var/lib/rpm", "usr/lib/sysimage/rpm"];

/// Header tags.
const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const LICENSE: u32 = 1014;
const ARCH: u32 = 1022;
const OLDFILENAMES: u32 = 1027;
const SOURCERPM: u32 = 1044;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;

/// How many SQLite virtual machine steps reading one database may take (in units of
/// [`SQLITE_STEPS_PER_CHECK`]): far more than a table of a million rows needs.
const SQLITE_CHECKS: u64 = 100_000;
const SQLITE_STEPS_PER_CHECK: i32 = 10_000;

/// What is wrong with an rpm database.
#[derive(Debug, thiserror::Error)]
enum RpmError {
    #[error("package record {record}: {source}")]
    Header {
        record: u64,
        #[source]
        source: HeaderError,
    },
    #[error("package record {record}: {message}")]
    Record { record: u64, message: String },
    #[error(transparent)]
    Bdb(#[from] bdb::BdbError),
    #[error("sqlite: {0}")]
    Sqlite(String),
}

impl From<rusqlite::Error> for RpmError {
    fn from(e: rusqlite::Error) -> RpmError {
        RpmError::Sqlite(e.to_string())
    }
}

impl From<std::io::Error> for RpmError {
    fn from(e: std::io::Error) -> RpmError {
        RpmError::Sqlite(format!("copying the database to a temporary file: {e}"))
    }
}

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Sqlite,
    Bdb,
}

/// A package as its header gives it.
#[derive(Debug)]
struct Entry {
    name: String,
    epoch: Option<u32>,
    version: String,
    release: String,
    arch: Option<String>,
    license: Option<String>,
    source: Option<String>,
    files: Vec<String>,
}

impl Entry {
    /// `[EPOCH:]VERSION-RELEASE`, as `rpm -q --qf '%{EVR}'` prints it.
    fn evr(&self) -> String {
        match self.epoch {
            Some(e) => format!("{e}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }

    fn key(&self) -> Key {
        (self.name.clone(), self.evr(), self.arch.clone())
    }
}

/// A package as (name, EVR, architecture).
type Key = (String, String, Option<String>);

/// The package of one header blob; `None` for rpm's `gpg-pubkey` pseudo-packages.
fn entry(record: u64, blob: &[u8]) -> Result<Option<Entry>, RpmError> {
    let bad = |source| RpmError::Header { record, source };
    let h = Header::parse(blob).map_err(bad)?;
    let text = |tag| h.string(tag).map_err(bad);
    let Some(name) = text(NAME)? else {
        return Err(RpmError::Record {
            record,
            message: "no name".to_string(),
        });
    };
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    if name.is_empty() || name.contains(['/', '\n']) {
        return Err(RpmError::Record {
            record,
            message: format!("invalid package name {name:?}"),
        });
    }
    let missing = |what: &str| RpmError::Record {
        record,
        message: format!("package {name} has no {what}"),
    };
    let version = text(VERSION)?.ok_or_else(|| missing("version"))?;
    let release = text(RELEASE)?.ok_or_else(|| missing("release"))?;
    let epoch = h
        .int32s(EPOCH)
        .map_err(bad)?
        .and_then(|e| e.first().copied());

    let mut files = Vec::new();
    match (
        h.strings(BASENAMES).map_err(bad)?,
        h.strings(DIRNAMES).map_err(bad)?,
        h.int32s(DIRINDEXES).map_err(bad)?,
    ) {
        (Some(base), Some(dirs), Some(index)) => {
            if base.len() != index.len() {
                return Err(RpmError::Record {
                    record,
                    message: format!(
                        "package {name}: {} file names but {} directory indexes",
                        base.len(),
                        index.len()
                    ),
                });
            }
            for (base, i) in base.iter().zip(index) {
                let Some(dir) = dirs.get(i as usize) else {
                    return Err(RpmError::Record {
                        record,
                        message: format!(
                            "package {name}: directory index {i} of {} directories",
                            dirs.len()
                        ),
                    });
                };
                files.push(format!("{dir}{base}"));
            }
        }
        _ => files = h.strings(OLDFILENAMES).map_err(bad)?.unwrap_or_default(),
    }
    Ok(Some(Entry {
        name,
        epoch,
        version,
        release,
        arch: text(ARCH)?,
        license: text(LICENSE)?,
        source: text(SOURCERPM)?,
        files,
    }))
}

/// The header blobs of a Berkeley DB `Packages` file, as (record, blob); record 0 holds
/// rpm's next package number, not a package.
fn bdb_blobs(bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, RpmError> {
    Ok(bdb::records(bytes)?
        .into_iter()
        .filter(|(k, _)| *k != 0)
        .map(|(k, v)| (u64::from(k), v))
        .collect())
}

/// The header blobs of an `rpmdb.sqlite` (and its write-ahead log), as (record, blob).
fn sqlite_blobs(db: &[u8], wal: Option<&[u8]>) -> Result<Vec<(u64, Vec<u8>)>, RpmError> {
    use rusqlite::{Connection, OpenFlags, limits::Limit};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rpmdb.sqlite");
    std::fs::write(&path, db)?;
    if let Some(wal) = wal {
        std::fs::write(dir.path().join("rpmdb.sqlite-wal"), wal)?;
    }
    let mut conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )?;
    // A row's value may not be larger than the files (nor than rpm's header bound).
    let size = db.len() + wal.map_or(0, <[u8]>::len);
    let max_value = size.clamp(1024, 0x1000_0000) as i32;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, max_value)?;
    let mut checks = 0u64;
    conn.progress_handler(
        SQLITE_STEPS_PER_CHECK,
        Some(move || {
            checks += 1;
            checks > SQLITE_CHECKS
        }),
    )?;
    let (kind, root): (String, i64) = conn
        .query_row(
            "SELECT type, rootpage FROM sqlite_schema WHERE name = 'Packages'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => {
                RpmError::Sqlite("no table Packages".to_string())
            }
            e => e.into(),
        })?;
    if kind != "table" || root <= 0 {
        return Err(RpmError::Sqlite(format!(
            "Packages is a {kind} (root page {root}), not a table"
        )));
    }
    let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(row) = rows.next()? {
        let record: i64 = row.get(0)?;
        let blob: Vec<u8> = row.get(1)?;
        total += blob.len();
        if total > size {
            return Err(RpmError::Sqlite(
                "the rows hold more bytes than the file".to_string(),
            ));
        }
        out.push((record as u64, blob));
    }
    Ok(out)
}

/// The packages of one database file, in record order.
fn entries(format: Format, db: &[u8], wal: Option<&[u8]>) -> Result<Vec<Entry>, RpmError> {
    let blobs = match format {
        Format::Sqlite => sqlite_blobs(db, wal)?,
        Format::Bdb => bdb_blobs(db)?,
    };
    let mut out = Vec::new();
    for (record, blob) in blobs {
        if let Some(e) = entry(record, &blob)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// The content of a database file, or `None` when it is not a regular file of the image.
fn content<'a>(ctx: &'a Ctx<'_>, real: &str) -> Result<Option<(&'a [u8], u32)>, SbomError> {
    let Some(node) = ctx.fs.nodes.get(real) else {
        return Ok(None);
    };
    if node.kind != Kind::File {
        return Ok(None);
    }
    match node.content.as_deref() {
        Some(Captured::TooLarge(bytes)) => Err(SbomError::TooLarge {
            path: real.to_string(),
            layer: ctx.layer_name(node.layer),
            bytes: *bytes,
            limit: RPMDB_MAX_BYTES.max(ctx.options.max_database_bytes),
        }),
        _ => ctx.read(real),
    }
}

/// Reads rpm's database, if the image has one.
pub(crate) fn read(ctx: &Ctx<'_>, packages: &mut Vec<Package>) -> Result<(), SbomError> {
    let mut seen = HashSet::new();
    let mut dbs = Vec::new();
    for dir in DB_DIRS {
        let Some(real) = ctx.fs.resolve(dir, true) else {
            continue;
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        // rpm reads one backend: SQLite when it is there.
        let sqlite = format!("{real}/rpmdb.sqlite");
        let bdb = format!("{real}/Packages");
        if let Some((bytes, layer)) = content(ctx, &sqlite)? {
            let wal = content(ctx, &format!("{sqlite}-wal"))?.map(|(b, _)| b);
            dbs.push((sqlite, Format::Sqlite, bytes, wal, layer));
        } else if let Some((bytes, layer)) = content(ctx, &bdb)? {
            dbs.push((bdb, Format::Bdb, bytes, None, layer));
        }
    }
    let namespace = ctx.distro.map(|d| d.id.clone());
    let distro_qualifier = ctx.distro.map(|d| match &d.version_id {
        Some(v) => format!("{}-{v}", d.id),
        None => d.id.clone(),
    });
    for (db, format, bytes, wal, db_layer) in dbs {
        let failed = |e: RpmError| SbomError::Database {
            path: db.clone(),
            layer: ctx.layer_name(db_layer),
            message: e.to_string(),
        };
        let found = entries(format, bytes, wal).map_err(failed)?;
        let versions = versions(ctx, &db, format, bytes, &found);
        for entry in found {
            if packages.len() >= ctx.options.max_packages {
                return Err(SbomError::TooManyPackages {
                    path: db,
                    layer: ctx.layer_name(db_layer),
                    limit: ctx.options.max_packages,
                });
            }
            let layer = super::added_by(&versions, db_layer, &entry.key());
            packages.push(package(
                ctx,
                &db,
                db_layer,
                entry,
                namespace.as_deref(),
                distro_qualifier.as_deref(),
                layer,
            ));
        }
    }
    Ok(())
}

/// Every version of a database file, bottom to top, as the packages it lists (`None`: a
/// version too large to have been kept, or one that cannot be read).
fn versions(
    ctx: &Ctx<'_>,
    db: &str,
    format: Format,
    top: &[u8],
    found: &[Entry],
) -> Vec<(u32, Option<HashSet<Key>>)> {
    let Some(versions) = ctx.fs.versions.get(db) else {
        return Vec::new();
    };
    let top_keys: HashSet<Key> = found.iter().map(Entry::key).collect();
    versions
        .iter()
        .map(|(li, content): &(u32, Arc<Captured>)| match &**content {
            Captured::Bytes(bytes) if bytes.as_slice() == top => (*li, Some(top_keys.clone())),
            Captured::Bytes(bytes) => (
                *li,
                entries(format, bytes, None)
                    .ok()
                    .map(|e| e.iter().map(Entry::key).collect()),
            ),
            _ => (*li, None),
        })
        .collect()
}

/// The inventory's package of an rpm header.
fn package(
    ctx: &Ctx<'_>,
    db: &str,
    db_layer: u32,
    entry: Entry,
    namespace: Option<&str>,
    distro: Option<&str>,
    layer: u32,
) -> Package {
    let mut purl = String::from("pkg:rpm/");
    if let Some(ns) = namespace {
        purl.push_str(&purl_encode(ns, false));
        purl.push('/');
    }
    purl.push_str(&format!(
        "{}@{}",
        purl_encode(&entry.name, false),
        purl_encode(&format!("{}-{}", entry.version, entry.release), false)
    ));
    // Qualifiers in the canonical (sorted) order.
    let mut qualifiers = Vec::new();
    if let Some(arch) = &entry.arch {
        qualifiers.push(format!("arch={}", purl_encode(arch, false)));
    }
    if let Some(d) = distro {
        qualifiers.push(format!("distro={}", purl_encode(d, false)));
    }
    if let Some(e) = entry.epoch {
        qualifiers.push(format!("epoch={e}"));
    }
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for listed in &entry.files {
        match join_listed("", listed) {
            Some(path) => {
                // Directories are shared between packages: only what they hold counts.
                let dir = ctx.fs.get(&path).is_some_and(|(_, n)| n.kind == Kind::Dir);
                if !dir && seen.insert(path.clone()) {
                    files.push(format!("/{path}"));
                }
            }
            None => tracing::warn!(
                "/{db} (written by {}): package {} lists {listed:?}, outside the image: left out",
                ctx.layer_name(db_layer),
                entry.name
            ),
        }
    }
    files.sort();
    let evr = entry.evr();
    Package {
        ecosystem: Ecosystem::Rpm,
        name: entry.name,
        version: evr,
        architecture: entry.arch,
        source: entry.source,
        purl,
        licenses: entry
            .license
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
        files,
        database: format!("/{db}"),
        layer: layer as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::header::tests::{blob, int32, string, string_array};
    use super::*;

    #[test]
    fn a_header_gives_the_package_and_its_files() {
        let b = blob(&[
            string(NAME, "hello"),
            string(VERSION, "2.1"),
            string(RELEASE, "3.fc40"),
            int32(EPOCH, &[1]),
            string(ARCH, "x86_64"),
            string(LICENSE, "MIT AND GPL-2.0-or-later"),
            string(SOURCERPM, "hello-2.1-3.fc40.src.rpm"),
            string_array(BASENAMES, &["hello", "README"]),
            string_array(DIRNAMES, &["/usr/bin/", "/usr/share/doc/hello/"]),
            int32(DIRINDEXES, &[0, 1]),
        ]);
        let e = entry(1, &b).unwrap().unwrap();
        assert_eq!(e.evr(), "1:2.1-3.fc40");
        assert_eq!(e.files, ["/usr/bin/hello", "/usr/share/doc/hello/README"]);
        assert_eq!(e.license.as_deref(), Some("MIT AND GPL-2.0-or-later"));

        let b = blob(&[string(NAME, "gpg-pubkey"), string(VERSION, "1")]);
        assert!(entry(2, &b).unwrap().is_none());

        let b = blob(&[
            string(NAME, "x"),
            string(VERSION, "1"),
            string(RELEASE, "1"),
            string_array(BASENAMES, &["a"]),
            string_array(DIRNAMES, &["/"]),
            int32(DIRINDEXES, &[5]),
        ]);
        let err = entry(3, &b).unwrap_err().to_string();
        assert_eq!(
            err,
            "package record 3: package x: directory index 5 of 1 directories"
        );
    }

    #[test]
    fn rows_still_in_the_write_ahead_log_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        // Larger than the main file: the bound on a value counts the log too.
        let header = blob(&[string(NAME, "hello"), string(LICENSE, &"x".repeat(20_000))]);
        conn.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)",
        )
        .unwrap();
        conn.execute("INSERT INTO Packages VALUES (1, ?1)", [&header])
            .unwrap();
        // Copied while the writer still has them open, as a layer would capture them.
        let db = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("rpmdb.sqlite-wal")).unwrap();
        assert!(
            wal.len() > header.len() && header.len() > db.len(),
            "{}",
            db.len()
        );
        assert_eq!(sqlite_blobs(&db, Some(&wal)).unwrap(), [(1, header)]);
        let without = sqlite_blobs(&db, None).unwrap_err().to_string();
        assert_eq!(without, "sqlite: no table Packages");
        drop(conn);
    }
}
