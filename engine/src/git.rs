//! Git repositories as build inputs: the build context (`rbuild build URL#REF:DIR`), a
//! named context (`--build-context NAME=URL#REF`) and `ADD URL#REF /dst`.
//!
//! A URL is a git repository as BuildKit tells: `http(s)://` whose path ends in `.git`,
//! `git://`, `ssh://`, or scp-like `user@host:path`. Its fragment is `REF[:SUBDIR]`. The
//! `git` program does the work (never through a shell): `git ls-remote` resolves REF to a
//! commit (a branch, a tag, `HEAD` by default; a full commit id as it is; an abbreviated
//! one after a full fetch), a shallow fetch of that commit (a full fetch when the server
//! refuses shallow ones) and a checkout. Checkouts are kept in the store's `git-v1/`, one
//! directory per commit (`<commit>` without `.git`, `<commit>-git` with it), so a build at
//! the same commit fetches nothing; `rbuild prune` removes them.
//!
//! git runs with a clean environment: no system or user configuration (an empty `HOME`),
//! no terminal prompt, no hooks, only the http, https, git and ssh protocols, and a
//! timeout. Credentials (`--secret id=GIT_AUTH_TOKEN[.HOST]`, `GIT_AUTH_HEADER[.HOST]`)
//! reach it as an `http.<url>.extraheader` set through `GIT_CONFIG_*` environment
//! variables, never on its command line, and every error text is scrubbed of them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::BuildRequest;
use crate::secrets::Secret;

/// How long one git command may run by default (a fetch of a large repository included):
/// [`BuildRequest::git_timeout`].
pub const GIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The secret ids BuildKit's Dockerfile frontend reads for git credentials.
const TOKEN_SECRET: &str = "GIT_AUTH_TOKEN";
const HEADER_SECRET: &str = "GIT_AUTH_HEADER";

/// Why a git repository could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The URL's scheme is not one git is used for here.
    #[error("{url}: unsupported git URL scheme {scheme}:// (use https, http, git or ssh)")]
    Scheme {
        /// The URL (credentials redacted).
        url: String,
        /// The scheme.
        scheme: String,
    },
    /// The URL carries a query, which BuildKit reads as options rbuild does not take.
    #[error(
        "{url}: git URL query parameters are not supported; give the ref and directory as #REF:DIR"
    )]
    Query {
        /// The URL (credentials redacted).
        url: String,
    },
    /// The fragment's directory leaves the repository.
    #[error("{url}: the directory {subdir:?} leaves the repository")]
    SubdirOutside {
        /// The URL (credentials redacted).
        url: String,
        /// The directory.
        subdir: String,
    },
    /// A component of the fragment's directory is a symbolic link.
    #[error("{url}: {path} in the repository is a symbolic link, not a directory")]
    SubdirSymlink {
        /// The URL (credentials redacted).
        url: String,
        /// The path in the repository.
        path: String,
    },
    /// The fragment's directory is not in the repository, or not a directory.
    #[error("{url}: {path} is not a directory of the repository at commit {commit}")]
    SubdirMissing {
        /// The URL (credentials redacted).
        url: String,
        /// The path in the repository.
        path: String,
        /// The commit checked out.
        commit: String,
    },
    /// An ssh URL without an ssh agent.
    #[error("{url}: fetching over ssh needs an ssh agent: pass --ssh default")]
    NoSshAgent {
        /// The URL (credentials redacted).
        url: String,
    },
    /// The ssh server's host key is not in `~/.ssh/known_hosts`, or differs from it.
    #[error(
        "{url}: the ssh host key of {host} is not in {} or does not match it (add it with ssh-keyscan after checking it)",
        known_hosts.display()
    )]
    HostKey {
        /// The URL (credentials redacted).
        url: String,
        /// The host as ssh names it in known_hosts (`[HOST]:PORT` off port 22).
        host: String,
        /// The known_hosts file checked.
        known_hosts: PathBuf,
    },
    /// The `git` program cannot be started.
    #[error("cannot run git for {url} (install the git package)")]
    Spawn {
        /// The URL (credentials redacted).
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("git {action} of {url} at {reference} failed: {stderr}")]
    Command {
        /// What it was doing (`ls-remote`, `fetch`, `checkout`...).
        action: &'static str,
        /// The URL (credentials redacted).
        url: String,
        /// The ref asked for.
        reference: String,
        /// Its last error lines (credentials scrubbed).
        stderr: String,
    },
    /// A git command ran out of time.
    #[error("git {action} of {url} at {reference} did not finish in {}s", limit.as_secs())]
    Timeout {
        /// What it was doing.
        action: &'static str,
        /// The URL (credentials redacted).
        url: String,
        /// The ref asked for.
        reference: String,
        /// The limit.
        limit: Duration,
    },
    /// The repository has no such branch, tag or commit.
    #[error("{url}: the repository has no branch, tag or commit {reference}")]
    UnknownRef {
        /// The URL (credentials redacted).
        url: String,
        /// The ref asked for.
        reference: String,
    },
    /// `ADD --checksum` does not match the commit.
    #[error("{url}: expected commit {expected}, {reference} is {commit}")]
    Checksum {
        /// The URL (credentials redacted).
        url: String,
        /// The ref.
        reference: String,
        /// `--checksum`.
        expected: String,
        /// The commit the ref resolved to.
        commit: String,
    },
    /// A directory of the store or a temp dir cannot be made, moved or removed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What failed.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store's gc lock cannot be taken.
    #[error(transparent)]
    Gc(#[from] rbuild_cache::gc::GcError),
}

/// A git repository URL with its `#REF:SUBDIR` fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// The URL without the fragment: what git fetches.
    pub remote: String,
    /// REF (`None`: the remote's `HEAD`).
    pub reference: Option<String>,
    /// SUBDIR, cleaned (`None`: the repository's root).
    pub subdir: Option<String>,
    /// `ssh://` or scp-like.
    ssh: bool,
    /// The host (with its port) for `GIT_AUTH_TOKEN.<host>`.
    host: String,
}

/// The scheme of `text` (`^[A-Za-z0-9]+://`), lower-cased.
fn scheme_of(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once("://")?;
    (!scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| scheme.to_ascii_lowercase())
}

/// `user@host:path` as git and BuildKit read scp-like URLs: (user, host, path).
fn scp_like(text: &str) -> Option<(&str, &str, &str)> {
    let (user, rest) = text.split_once('@')?;
    let (host, path) = rest.split_once(':')?;
    let user_ok = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (user_ok && host_ok).then_some((user, host, path))
}

/// Whether `text` names a git repository rather than a path or an archive URL: `git://`,
/// `ssh://`, `user@host:path`, or `http(s)://` whose path ends in `.git`, as BuildKit's
/// Dockerfile frontend tells them.
pub fn is_git_url(text: &str) -> bool {
    match scheme_of(text).as_deref() {
        Some("git" | "ssh") => true,
        Some("http" | "https") => {
            let path = text.split(['#', '?']).next().unwrap_or_default();
            path.ends_with(".git")
        }
        Some(_) => false,
        None => scp_like(text).is_some(),
    }
}

/// `text` with the credentials of its user part replaced by `xxxxx` (the password, or an
/// http(s) user name alone, which is how tokens are often given).
pub fn redact(text: &str) -> String {
    let Some(scheme) = scheme_of(text) else {
        return text.to_string();
    };
    let start = scheme.len() + 3;
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_string();
    };
    let user = &rest[..at];
    let shown = match user.split_once(':') {
        Some((name, _)) => format!("{name}:xxxxx"),
        None if scheme == "http" || scheme == "https" => "xxxxx".to_string(),
        None => user.to_string(),
    };
    format!("{}{shown}{}", &text[..start], &rest[at..])
}

impl GitUrl {
    /// Parses a git URL with its fragment (`URL#REF:SUBDIR`). SUBDIR is cleaned as a path
    /// inside the repository; one that climbs out of it (`..`) is refused, where BuildKit
    /// clamps it to the root.
    pub fn parse(text: &str) -> Result<GitUrl, GitError> {
        let shown = redact(text);
        let (base, fragment) = match text.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (text, None),
        };
        let (ssh, host) = match scheme_of(base) {
            Some(scheme) => {
                if !matches!(scheme.as_str(), "http" | "https" | "git" | "ssh") {
                    return Err(GitError::Scheme { url: shown, scheme });
                }
                let rest = &base[scheme.len() + 3..];
                let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
                let host = authority.rsplit('@').next().unwrap_or_default();
                (scheme == "ssh", host.to_string())
            }
            None => match scp_like(base) {
                Some((_, host, _)) => (true, host.to_string()),
                None => {
                    return Err(GitError::Scheme {
                        url: shown,
                        scheme: String::new(),
                    });
                }
            },
        };
        if base.contains('?') {
            return Err(GitError::Query { url: shown });
        }
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(f) => {
                let (r, dir) = match f.split_once(':') {
                    Some((r, d)) => (r, Some(d)),
                    None => (f, None),
                };
                let subdir = match dir {
                    Some(d) => clean_subdir(d).ok_or_else(|| GitError::SubdirOutside {
                        url: shown.clone(),
                        subdir: d.to_string(),
                    })?,
                    None => None,
                };
                ((!r.is_empty()).then(|| r.to_string()), subdir)
            }
        };
        Ok(GitUrl {
            remote: base.to_string(),
            reference,
            subdir,
            ssh,
            host,
        })
    }

    /// The URL for messages (credentials redacted).
    pub fn shown(&self) -> String {
        redact(&self.remote)
    }

    /// The ref for messages (`HEAD` by default).
    pub fn reference_shown(&self) -> &str {
        self.reference.as_deref().unwrap_or("HEAD")
    }
}

/// SUBDIR as a relative path without `.` or empty parts (`Some(None)` for the root), or
/// `None` when it has a `..` part, which could leave the repository.
fn clean_subdir(dir: &str) -> Option<Option<String>> {
    let mut parts = Vec::new();
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some((!parts.is_empty()).then(|| parts.join("/")))
}

/// Whether `text` is a full commit id (sha1 or sha256, lower-case hex).
fn is_commit(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A checkout of a repository at one commit, in the store.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The commit.
    pub commit: String,
    /// The directory the build reads: the checkout, or its SUBDIR.
    pub root: PathBuf,
}

/// How git is run: its empty home, the credential header, the ssh agent.
struct Runner<'a> {
    url: &'a GitUrl,
    timeout: Duration,
    home: &'a Path,
    config: Vec<(String, String)>,
    ssh_sock: Option<PathBuf>,
    /// Secret values, scrubbed from every error text.
    scrub: Vec<Vec<u8>>,
}

impl Runner<'_> {
    /// Runs `git ARGS` (in `dir`), returns stdout; the error names `action`, the URL and
    /// the ref, with git's last error lines.
    fn run(
        &self,
        dir: Option<&Path>,
        action: &'static str,
        args: &[&str],
    ) -> Result<Vec<u8>, GitError> {
        let url = self.url.shown();
        let reference = self.url.reference_shown().to_string();
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", self.home)
            .env("XDG_CONFIG_HOME", self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
            .env("LC_ALL", "C");
        let mut config: Vec<(String, String)> = vec![
            ("core.hooksPath".into(), "/dev/null".into()),
            ("advice.detachedHead".into(), "false".into()),
            ("init.defaultBranch".into(), "main".into()),
        ];
        config.extend(self.config.iter().cloned());
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        if let Some(sock) = &self.ssh_sock {
            cmd.env("SSH_AUTH_SOCK", sock);
            let known = known_hosts();
            cmd.env(
                "GIT_SSH_COMMAND",
                format!(
                    "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='{}'",
                    known.display().to_string().replace('\'', "")
                ),
            );
        }
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        tracing::debug!("git {action} of {url} at {reference}");
        let mut child = cmd.spawn().map_err(|source| GitError::Spawn {
            url: url.clone(),
            source,
        })?;
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let out_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut buf);
            }
            buf
        });
        let err_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut buf);
            }
            buf
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() > self.timeout => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(source) => {
                    return Err(GitError::Spawn { url, source });
                }
            }
        };
        let Some(status) = status else {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            return Err(GitError::Timeout {
                action,
                url,
                reference,
                limit: self.timeout,
            });
        };
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        if status.success() {
            return Ok(stdout);
        }
        if self.ssh_sock.is_some()
            && String::from_utf8_lossy(&stderr).contains("Host key verification failed")
        {
            return Err(GitError::HostKey {
                url,
                host: ssh_host(&self.url.host),
                known_hosts: known_hosts(),
            });
        }
        let mut stderr = self.scrubbed(&stderr);
        if stderr.contains("could not read Username") || stderr.contains("Authentication failed") {
            stderr.push_str(&format!(
                " (the server wants credentials: pass --secret id={TOKEN_SECRET}.{host} or \
                 id={HEADER_SECRET}.{host}, or without .{host})",
                host = self.url.host
            ));
        }
        Err(GitError::Command {
            action,
            url,
            reference,
            stderr,
        })
    }

    /// git's last error lines, without any secret value or the raw URL's credentials.
    fn scrubbed(&self, stderr: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(stderr).into_owned();
        text = text.replace(&self.url.remote, &self.url.shown());
        for secret in &self.scrub {
            let s = String::from_utf8_lossy(secret);
            if !s.trim().is_empty() {
                text = text.replace(s.trim(), "xxxxx");
            }
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(4)..];
        let joined = tail.join("; ");
        if joined.is_empty() {
            "no error output".into()
        } else {
            joined
        }
    }
}

/// The known_hosts file ssh checks host keys against: the caller's `~/.ssh/known_hosts`
/// (`/dev/null` without a `HOME`: no host is known).
fn known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
        .unwrap_or_else(|| PathBuf::from("/dev/null"))
}

/// `HOST[:PORT]` as ssh names it in known_hosts: `[HOST]:PORT` off port 22.
fn ssh_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port)) if port != "22" && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("[{name}]:{port}")
        }
        Some((name, _)) => name.to_string(),
        None => host.to_string(),
    }
}

/// The `Authorization` header of the first credential secret given, in BuildKit's order:
/// `GIT_AUTH_HEADER.<host>`, `GIT_AUTH_TOKEN.<host>`, `GIT_AUTH_HEADER`, `GIT_AUTH_TOKEN`.
/// A token is sent as `basic base64(x-access-token:TOKEN)`; a header secret is the whole
/// header value (`bearer ...`, `basic ...`).
fn auth_header(url: &GitUrl, secrets: &BTreeMap<String, Secret>) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let names = [
        (format!("{HEADER_SECRET}.{}", url.host), false),
        (format!("{TOKEN_SECRET}.{}", url.host), true),
        (HEADER_SECRET.to_string(), false),
        (TOKEN_SECRET.to_string(), true),
    ];
    for (name, token) in names {
        let Some(secret) = secrets.get(&name) else {
            continue;
        };
        let value = String::from_utf8_lossy(secret.bytes()).trim().to_string();
        let header = if token {
            let mut raw = b"x-access-token:".to_vec();
            raw.extend_from_slice(value.as_bytes());
            format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        } else {
            value
        };
        return Some((header, secret.bytes().to_vec()));
    }
    None
}

/// What `git ls-remote` said a ref is: its commit, and the ref to fetch it by.
fn resolve(runner: &Runner<'_>, url: &GitUrl) -> Result<Resolved, GitError> {
    let unknown = || GitError::UnknownRef {
        url: url.shown(),
        reference: url.reference_shown().to_string(),
    };
    let Some(reference) = url.reference.as_deref() else {
        let out = runner.run(None, "ls-remote", &["ls-remote", "--", &url.remote, "HEAD"])?;
        let text = String::from_utf8_lossy(&out);
        return text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(sha, r)| *r == "HEAD" && is_commit(sha))
            .map(|(sha, _)| Resolved::Commit {
                commit: sha.to_string(),
                fetch: "HEAD".into(),
            })
            .ok_or_else(unknown);
    };
    if is_commit(reference) {
        return Ok(Resolved::Commit {
            commit: reference.to_string(),
            fetch: reference.to_string(),
        });
    }
    let peeled = format!("{reference}^{{}}");
    let out = runner.run(
        None,
        "ls-remote",
        &["ls-remote", "--", &url.remote, reference, &peeled],
    )?;
    let text = String::from_utf8_lossy(&out);
    let trimmed = reference.strip_prefix("refs/").unwrap_or(reference);
    let partial = format!("refs/{trimmed}");
    let head = format!(
        "refs/heads/{}",
        reference.strip_prefix("refs/heads/").unwrap_or(reference)
    );
    let tag = format!(
        "refs/tags/{}",
        reference.strip_prefix("refs/tags/").unwrap_or(reference)
    );
    let annotated = format!("{tag}^{{}}");
    let (mut exact, mut branch, mut tagged, mut peeled_tag) = (None, None, None, None);
    for (sha, name) in text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(sha, _)| is_commit(sha))
    {
        if name == partial {
            exact = Some((sha, name));
        } else if name == head {
            branch = Some((sha, name));
        } else if name == tag {
            tagged = Some((sha, name));
        } else if name == annotated {
            peeled_tag = Some(sha);
        }
    }
    // As git checkout: a branch before a tag of the same name; an annotated tag's commit.
    let found = match (exact, branch, tagged) {
        (Some((sha, name)), _, _) | (None, Some((sha, name)), _) => {
            let sha = if name == tag {
                peeled_tag.unwrap_or(sha)
            } else {
                sha
            };
            Some((sha, name))
        }
        (None, None, Some((sha, name))) => Some((peeled_tag.unwrap_or(sha), name)),
        _ => None,
    };
    if let Some((sha, name)) = found {
        return Ok(Resolved::Commit {
            commit: sha.to_string(),
            fetch: name.to_string(),
        });
    }
    if reference.len() >= 4 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Resolved::Abbreviated(reference.to_ascii_lowercase()));
    }
    Err(unknown())
}

/// A resolved ref.
enum Resolved {
    /// A commit, fetched by `fetch` (a ref name, or the commit itself).
    Commit { commit: String, fetch: String },
    /// An abbreviated commit id: found after a full fetch.
    Abbreviated(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GitError {
    let path = path.to_path_buf();
    move |source| GitError::Io {
        action,
        path,
        source,
    }
}

/// Fetches the repository at `url`'s ref into the store (once per commit) and returns the
/// directory to read: its SUBDIR when the URL names one (every component a real directory,
/// never a symbolic link). `.git` is kept with `keep_git_dir` (at the checkout's root, as
/// BuildKit keeps it only without SUBDIR).
pub fn checkout(
    settings: &BuildRequest,
    url: &GitUrl,
    keep_git_dir: bool,
) -> Result<Checkout, GitError> {
    let tmp = settings.store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(&tmp)
        .map_err(io("create a temp dir in", &tmp))?;
    let home = work.path().join("home");
    std::fs::create_dir(&home).map_err(io("create", &home))?;
    let ssh_sock = if url.ssh {
        Some(
            settings
                .ssh
                .get("default")
                .cloned()
                .ok_or_else(|| GitError::NoSshAgent { url: url.shown() })?,
        )
    } else {
        None
    };
    let mut runner = Runner {
        url,
        timeout: settings.git_timeout,
        home: &home,
        config: Vec::new(),
        ssh_sock,
        scrub: Vec::new(),
    };
    if !url.ssh
        && let Some((header, raw)) = auth_header(url, &settings.secrets)
    {
        runner.config.push((
            format!("http.{}.extraheader", token_scope(&url.remote)),
            format!("Authorization: {header}"),
        ));
        runner.scrub.push(raw);
        runner.scrub.push(header.into_bytes());
    }
    let resolved = resolve(&runner, url)?;
    let store_dir = settings
        .store
        .root()
        .join(rbuild_cache::gc::GIT_CHECKOUTS_DIR);
    std::fs::create_dir_all(&store_dir).map_err(io("create", &store_dir))?;
    let suffix = if keep_git_dir { "-git" } else { "" };
    if let Resolved::Commit { commit, .. } = &resolved
        && let Some(found) = cached(settings, &store_dir.join(format!("{commit}{suffix}")))?
    {
        tracing::debug!("{} at {commit}: checkout from the store", url.shown());
        return select(url, commit, found);
    }
    let repo = work.path().join("checkout");
    std::fs::create_dir(&repo).map_err(io("create", &repo))?;
    runner.run(Some(&repo), "init", &["init", "-q", "--template=", "."])?;
    let commit = fetch(&runner, &repo, url, &resolved)?;
    let dest = store_dir.join(format!("{commit}{suffix}"));
    if let Some(found) = cached(settings, &dest)? {
        return select(url, &commit, found);
    }
    runner.run(
        Some(&repo),
        "checkout",
        &["checkout", "-q", "--detach", &commit, "--"],
    )?;
    let git_dir = repo.join(".git");
    if keep_git_dir {
        let _ = std::fs::remove_file(git_dir.join("FETCH_HEAD"));
        runner.run(
            Some(&repo),
            "remote add",
            &["remote", "add", "origin", &url.shown()],
        )?;
        runner.run(
            Some(&repo),
            "reflog expire",
            &["reflog", "expire", "--all", "--expire=now"],
        )?;
    } else {
        std::fs::remove_dir_all(&git_dir).map_err(io("remove", &git_dir))?;
    }
    // Listed as used before it appears, under the gc lock: a concurrent prune leaves it.
    let _gc = rbuild_cache::gc::GcLock::shared(settings.store.root())?;
    rbuild_cache::gc::record_use(&dest);
    match std::fs::rename(&repo, &dest) {
        Ok(()) => {}
        // Another build published the same commit meanwhile: the same files.
        Err(e) if dest.is_dir() => tracing::debug!("{} is there already: {e}", dest.display()),
        Err(e) => return Err(io("move the checkout to", &dest)(e)),
    }
    select(url, &commit, dest)
}

/// BuildKit's scope of the credential header: the remote, or all of github.com.
fn token_scope(remote: &str) -> &str {
    for prefix in ["https://github.com/", "https://www.github.com/"] {
        if remote.starts_with(prefix) {
            return prefix;
        }
    }
    remote
}

/// The checkout at `dest` when the store has it, marked used (under the gc lock).
fn cached(settings: &BuildRequest, dest: &Path) -> Result<Option<PathBuf>, GitError> {
    let _gc = rbuild_cache::gc::GcLock::shared(settings.store.root())?;
    if dest.is_dir() && rbuild_cache::gc::touch(dest).is_ok() {
        return Ok(Some(dest.to_path_buf()));
    }
    Ok(None)
}

/// Fetches the commit into `repo`: shallow by ref (or commit), else everything; returns the
/// commit.
fn fetch(
    runner: &Runner<'_>,
    repo: &Path,
    url: &GitUrl,
    resolved: &Resolved,
) -> Result<String, GitError> {
    let has = |commit: &str| {
        let spec = format!("{commit}^{{commit}}");
        runner
            .run(Some(repo), "cat-file", &["cat-file", "-e", &spec])
            .is_ok()
    };
    if let Resolved::Commit { commit, fetch } = resolved {
        let shallow = runner.run(
            Some(repo),
            "fetch",
            &[
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "--",
                &url.remote,
                fetch,
            ],
        );
        match shallow {
            Ok(_) if has(commit) => return Ok(commit.clone()),
            Ok(_) => tracing::debug!("{} moved during the fetch", url.shown()),
            Err(e) => tracing::debug!("shallow fetch refused, fetching everything: {e}"),
        }
    }
    runner.run(
        Some(repo),
        "fetch",
        &[
            "fetch",
            "-q",
            "--tags",
            "--",
            &url.remote,
            "+refs/heads/*:refs/remotes/origin/*",
        ],
    )?;
    let commit = match resolved {
        Resolved::Commit { commit, .. } => commit.clone(),
        Resolved::Abbreviated(prefix) => {
            let spec = format!("{prefix}^{{commit}}");
            let out = runner
                .run(
                    Some(repo),
                    "rev-parse",
                    &["rev-parse", "-q", "--verify", "--end-of-options", &spec],
                )
                .map_err(|_| GitError::UnknownRef {
                    url: url.shown(),
                    reference: url.reference_shown().to_string(),
                })?;
            let commit = String::from_utf8_lossy(&out).trim().to_string();
            if !is_commit(&commit) {
                return Err(GitError::UnknownRef {
                    url: url.shown(),
                    reference: url.reference_shown().to_string(),
                });
            }
            commit
        }
    };
    if !has(&commit) {
        return Err(GitError::UnknownRef {
            url: url.shown(),
            reference: url.reference_shown().to_string(),
        });
    }
    Ok(commit)
}

/// The directory to read: the checkout, or its SUBDIR, each component a real directory.
fn select(url: &GitUrl, commit: &str, dir: PathBuf) -> Result<Checkout, GitError> {
    let mut root = dir;
    if let Some(sub) = &url.subdir {
        let mut walked = String::new();
        for part in sub.split('/') {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(part);
            root.push(part);
            match std::fs::symlink_metadata(&root) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(GitError::SubdirSymlink {
                        url: url.shown(),
                        path: walked,
                    });
                }
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(GitError::SubdirMissing {
                        url: url.shown(),
                        path: walked,
                        commit: commit.to_string(),
                    });
                }
            }
        }
    }
    Ok(Checkout {
        commit: commit.to_string(),
        root,
    })
}

/// Checks `ADD --checksum` against the commit (a prefix of it, as BuildKit compares).
pub fn check_checksum(url: &GitUrl, commit: &str, checksum: Option<&str>) -> Result<(), GitError> {
    match checksum {
        Some(c) if !commit.starts_with(c) => Err(GitError::Checksum {
            url: url.shown(),
            reference: url.reference_shown().to_string(),
            expected: c.to_string(),
            commit: commit.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_told_from_paths_and_archives() {
        for yes in [
            "https://example.com/a/b.git",
            "https://example.com/a/b.git#main:sub",
            "http://127.0.0.1:8080/repo.git#v1",
            "git://example.com/repo",
            "ssh://git@example.com/repo",
            "git@github.com:moby/buildkit.git",
        ] {
            assert!(is_git_url(yes), "{yes}");
        }
        for no in [
            "https://example.com/archive.tar.gz",
            "https://example.com/a.git/file",
            "ftp://example.com/r.git",
            "./dir",
            "/abs/path",
            "ctx",
        ] {
            assert!(!is_git_url(no), "{no}");
        }
    }

    #[test]
    fn fragments_give_the_ref_and_a_directory_inside() {
        let u = GitUrl::parse("https://h/r.git#v1.0:/a/./b/").unwrap();
        assert_eq!(u.remote, "https://h/r.git");
        assert_eq!(u.reference.as_deref(), Some("v1.0"));
        assert_eq!(u.subdir.as_deref(), Some("a/b"));
        assert_eq!(u.host, "h");
        let u = GitUrl::parse("https://h/r.git").unwrap();
        assert_eq!((u.reference, u.subdir), (None, None));
        let u = GitUrl::parse("https://h/r.git#:dir").unwrap();
        assert_eq!((u.reference, u.subdir.as_deref()), (None, Some("dir")));
        let u = GitUrl::parse("git@github.com:o/r.git#main").unwrap();
        assert!(u.ssh);
        assert_eq!(u.host, "github.com");
        assert!(matches!(
            GitUrl::parse("https://h/r.git#main:a/../../x"),
            Err(GitError::SubdirOutside { .. })
        ));
        assert!(matches!(
            GitUrl::parse("https://h/r.git?ref=main"),
            Err(GitError::Query { .. })
        ));
    }

    #[test]
    fn ssh_hosts_are_named_as_known_hosts_names_them() {
        assert_eq!(ssh_host("127.0.0.1:2222"), "[127.0.0.1]:2222");
        assert_eq!(ssh_host("example.com:22"), "example.com");
        assert_eq!(ssh_host("github.com"), "github.com");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact("https://user:s3cret@h/r.git#main"),
            "https://user:xxxxx@h/r.git#main"
        );
        assert_eq!(redact("https://tok3n@h/r.git"), "https://xxxxx@h/r.git");
        assert_eq!(redact("ssh://git@h/r.git"), "ssh://git@h/r.git");
        assert_eq!(redact("https://h/r.git"), "https://h/r.git");
        let err = GitUrl::parse("https://u:s3cret@h/r.git#x:../y").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn tokens_become_basic_headers_in_buildkit_order() {
        let url = GitUrl::parse("http://127.0.0.1:9/r.git").unwrap();
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "GIT_AUTH_TOKEN".to_string(),
            crate::secrets::parse_secrets(&["id=GIT_AUTH_TOKEN,env=PATH".into()]).unwrap()
                ["GIT_AUTH_TOKEN"]
                .clone(),
        );
        let (header, _) = auth_header(&url, &secrets).unwrap();
        assert!(header.starts_with("basic "), "{header}");
        let host = crate::secrets::parse_secrets(&["id=x,env=HOME".into()]).unwrap()["x"].clone();
        secrets.insert("GIT_AUTH_HEADER.127.0.0.1:9".to_string(), host);
        let (header, _) = auth_header(&url, &secrets).unwrap();
        assert_eq!(header, std::env::var("HOME").unwrap());
    }
}
