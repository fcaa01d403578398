//! Containers of `rbuild run`: `ROOT/containers-v1/<id>/`, each holding `container.json`
//! (what ran, when, how it ended) beside the directory its root file system lives in.
//!
//! This module keeps the records; the caller prepares and removes the file systems (which
//! may need the sandbox's id map).
//!
//! A container started in the background (`rbuild run -d`) also has `supervisor.lock`, which
//! its supervisor holds (an exclusive `flock`) for as long as it runs: a container recorded
//! as running whose lock is free lost its supervisor (`Dead`), whatever pid it had. Its
//! output is in `log.json`, one JSON object a line. Creating a container holds
//! `ROOT/containers-v1.lock`, so that two containers cannot take the same name.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use serde::{Deserialize, Serialize};

/// The folder of the store holding containers.
pub const CONTAINERS_DIR: &str = "containers-v1";
const RECORD: &str = "container.json";
const SUPERVISOR_LOCK: &str = "supervisor.lock";
/// The lock file beside [`CONTAINERS_DIR`] that creating a container holds.
pub const CREATE_LOCK: &str = "containers-v1.lock";
/// A container's log (`rbuild run -d`), in its directory.
pub const LOG: &str = "log.json";

/// Errors of [`Containers`]; each names the container or path.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    /// A file-system call failed.
    #[error("cannot access container path {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record does not parse.
    #[error("cannot parse container record {path}")]
    Parse {
        /// The record.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No container has this name or id (prefix).
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix matches more than one container.
    #[error("container id prefix {0} is ambiguous")]
    Ambiguous(String),
    /// The name is taken (docker's message).
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The id of the container that has it.
        id: String,
    },
    /// Another supervisor runs the container.
    #[error("container {0} is already running")]
    Running(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContainersError + '_ {
    move |source| ContainersError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How a container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Made; its supervisor starts it.
    Created,
    /// Prepared or running.
    Running,
    /// Ended with an exit code.
    Exited,
}

/// What is recorded about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Its name (given with `--name`, or generated).
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's manifest digest.
    pub image_digest: String,
    /// The argv it runs.
    pub command: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Running or exited.
    pub state: State,
    /// The exit code once exited.
    pub exit_code: Option<i32>,
    /// When it exited, seconds since the epoch.
    pub finished: Option<i64>,
    /// The pid of the `rbuild` process running it (to tell a crashed run): the supervisor
    /// of a detached container.
    pub pid: u32,
    /// Started in the background, under a supervisor (`rbuild run -d`).
    #[serde(default)]
    pub detached: bool,
    /// The host pid of the sandbox's init while it runs (whose namespaces `exec` joins).
    #[serde(default)]
    pub init_pid: Option<i32>,
    /// When it last started, seconds since the epoch.
    #[serde(default)]
    pub started: Option<i64>,
    /// The settings it runs with, as the command line resolved them (kept for `start`).
    #[serde(default)]
    pub config: serde_json::Value,
    /// The state of its health check, when it has one.
    #[serde(default)]
    pub health: Option<serde_json::Value>,
}

/// The container folder of one store.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    /// The container folder under the store root `root` (created if missing).
    pub fn open(root: &Path) -> Result<Containers, ContainersError> {
        let dir = root.join(CONTAINERS_DIR);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Containers { dir })
    }

    /// A container's directory.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Creates the directory of a new container and writes its record; fails when the
    /// name is taken (by a container created at the same time too).
    pub fn create(&self, record: &Record) -> Result<PathBuf, ContainersError> {
        let lock_path = self.dir.with_file_name(CREATE_LOCK);
        let lock = open_lock(&lock_path)?;
        flock(&lock, FlockOperation::LockExclusive).map_err(|e| io_err(&lock_path)(e.into()))?;
        if let Some(other) = self.list()?.iter().find(|r| r.name == record.name) {
            return Err(ContainersError::NameInUse {
                name: record.name.clone(),
                id: other.id.clone(),
            });
        }
        let p = self.path(&record.id);
        std::fs::create_dir(&p).map_err(io_err(&p))?;
        self.save(record)?;
        Ok(p)
    }

    /// Rewrites a container's record atomically.
    pub fn save(&self, record: &Record) -> Result<(), ContainersError> {
        let dest = self.path(&record.id).join(RECORD);
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| ContainersError::Parse {
            path: dest.clone(),
            source,
        })?;
        crate::atomic::write(&dest, None, None, &bytes).map_err(io_err(&dest))
    }

    /// All containers with a readable record, oldest first.
    pub fn list(&self) -> Result<Vec<Record>, ContainersError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let p = entry.path().join(RECORD);
            let bytes = match std::fs::read(&p) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&p)(e)),
            };
            let r: Record = serde_json::from_slice(&bytes)
                .map_err(|source| ContainersError::Parse { path: p, source })?;
            out.push(r);
        }
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// The container named `what`, or whose id starts with `what`.
    pub fn find(&self, what: &str) -> Result<Record, ContainersError> {
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name == what || r.id == what) {
            return Ok(r.clone());
        }
        let mut hits = all.into_iter().filter(|r| r.id.starts_with(what));
        match (hits.next(), hits.next()) {
            (Some(r), None) if !what.is_empty() => Ok(r),
            (Some(_), Some(_)) => Err(ContainersError::Ambiguous(what.into())),
            _ => Err(ContainersError::NotFound(what.into())),
        }
    }

    /// Removes a container's record first (so a half-removed container is no longer
    /// listed), then returns its directory for the caller to remove.
    pub fn forget(&self, id: &str) -> Result<PathBuf, ContainersError> {
        let p = self.path(id).join(RECORD);
        std::fs::remove_file(&p).map_err(io_err(&p))?;
        Ok(self.path(id))
    }

    /// Takes the supervisor's lock of a container, for as long as the file is open; fails
    /// with [`ContainersError::Running`] when another process keeps holding it (a moment's
    /// holder, [`Containers::supervised`], is waited for).
    pub fn supervise(&self, id: &str) -> Result<File, ContainersError> {
        let path = self.path(id).join(SUPERVISOR_LOCK);
        let lock = open_lock(&path)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(lock),
                Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR)
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(ContainersError::Running(id.into()));
                }
                Err(e) => return Err(io_err(&path)(e.into())),
            }
        }
    }

    /// Whether a supervisor holds the container's lock (it runs).
    pub fn supervised(&self, id: &str) -> bool {
        let path = self.path(id).join(SUPERVISOR_LOCK);
        match File::open(&path) {
            Ok(f) => flock(&f, FlockOperation::NonBlockingLockShared).is_err(),
            Err(_) => false,
        }
    }

    /// Waits until no supervisor holds the container's lock, at most `timeout` (`None`:
    /// as long as it takes); returns whether it is free.
    pub fn wait_unsupervised(&self, id: &str, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut pause = Duration::from_millis(5);
        loop {
            if !self.supervised(id) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

fn open_lock(path: &Path) -> Result<File, ContainersError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str, created: i64) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            image_digest: "sha256:00".into(),
            command: vec!["true".into()],
            created,
            state: State::Running,
            exit_code: None,
            finished: None,
            pid: 1,
            detached: false,
            init_pid: None,
            started: None,
            config: serde_json::Value::Null,
            health: None,
        }
    }

    #[test]
    fn create_find_save_forget() {
        let root = tempfile::tempdir().unwrap();
        let c = Containers::open(root.path()).unwrap();
        c.create(&record("abc1", "one", 2)).unwrap();
        c.create(&record("abd2", "two", 1)).unwrap();
        assert!(matches!(
            c.create(&record("ff", "one", 3)),
            Err(ContainersError::NameInUse { .. })
        ));
        let names: Vec<_> = c.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["two", "one"]);
        assert_eq!(c.find("one").unwrap().id, "abc1");
        assert_eq!(c.find("abd").unwrap().name, "two");
        assert!(matches!(c.find("ab"), Err(ContainersError::Ambiguous(_))));
        assert!(matches!(c.find("zz"), Err(ContainersError::NotFound(_))));
        let mut r = c.find("one").unwrap();
        r.state = State::Exited;
        r.exit_code = Some(3);
        c.save(&r).unwrap();
        assert_eq!(c.find("abc1").unwrap().exit_code, Some(3));
        let dir = c.forget("abc1").unwrap();
        assert!(dir.is_dir());
        assert!(matches!(c.find("one"), Err(ContainersError::NotFound(_))));
    }
}
