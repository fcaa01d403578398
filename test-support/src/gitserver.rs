//! A git server on loopback for the tests of git build inputs: one bare repository served
//! by `git http-backend` (smart HTTP) behind a small HTTP/1.1 server on a `TcpListener`,
//! optionally requiring a token as BuildKit sends it (`Authorization: basic
//! base64(x-access-token:TOKEN)`), and by `git daemon` (`git://`). A working clone beside it
//! makes the commits the tests push.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;

/// The repository's name under the server's root.
const REPO: &str = "repo.git";

/// A bare repository served over HTTP (and `git://` once [`GitServer::start_daemon`] ran).
#[derive(Debug)]
pub struct GitServer {
    dir: tempfile::TempDir,
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    daemon: Option<(Child, u16)>,
}

/// `git ARGS` in `dir` with no user or system configuration; asserts success, returns
/// stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(crate::require_tool("git", "git"))
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl GitServer {
    /// An empty repository served over HTTP; with `token`, every request must carry it.
    pub fn start(token: Option<&str>) -> GitServer {
        let dir = tempfile::tempdir().expect("temp dir");
        // The rootless tests' user reads nothing here (it fetches over the network), but
        // the commits' files must stay readable for the server.
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        git(&root, &["init", "-q", "--bare", "-b", "main", REPO]);
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("mkdir work");
        git(&work, &["init", "-q", "-b", "main"]);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let expected = token.map(|t| {
            let raw = format!("x-access-token:{t}");
            format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        {
            let (stop, requests, root) = (stop.clone(), requests.clone(), root.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let (root, expected) = (root.clone(), expected.clone());
                            std::thread::spawn(move || {
                                let _ = serve(stream, &root, expected.as_deref());
                            });
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    }
                }
            });
        }
        GitServer {
            dir,
            port,
            stop,
            requests,
            daemon: None,
        }
    }

    /// The working clone: write files here, then [`GitServer::commit`].
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Commits everything in the working clone and pushes `main` (and the tags) to the
    /// served repository; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        let work = self.work();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        self.push();
        git(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Tags the last commit (annotated) and pushes the tag.
    pub fn tag(&self, name: &str) {
        git(&self.work(), &["tag", "-a", "-m", name, name]);
        self.push();
    }

    fn push(&self) {
        let bare = self.repo_path();
        let bare = bare.to_str().expect("utf-8 path");
        git(&self.work(), &["push", "-q", "-f", "--tags", bare, "main"]);
    }

    /// The served bare repository's absolute path (what an ssh URL names).
    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("root").join(REPO)
    }

    /// `http://127.0.0.1:PORT/repo.git`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/{REPO}", self.port)
    }

    /// The host BuildKit's `GIT_AUTH_TOKEN.<host>` secrets name: `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many HTTP connections the server accepted.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Starts `git daemon` on loopback; returns `git://127.0.0.1:PORT/repo.git`.
    pub fn start_daemon(&mut self) -> String {
        if self.daemon.is_none() {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new(crate::require_tool("git", "git"))
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .args([
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--base-path={}",
                    self.dir.path().join("root").display()
                ))
                .arg(self.dir.path().join("root"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start git daemon");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "git daemon did not listen"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            self.daemon = Some((child, port));
        }
        let port = self.daemon.as_ref().map_or(0, |d| d.1);
        format!("git://127.0.0.1:{port}/{REPO}")
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some((child, _)) = &mut self.daemon {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request: checks the token, runs `git http-backend` as a CGI program, relays its
/// answer, closes the connection.
fn serve(stream: TcpStream, root: &Path, token: Option<&str>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut out = stream;
    if let Some(want) = token {
        let given = header("authorization").unwrap_or_default();
        let ok = given.split_once(' ').is_some_and(|(scheme, value)| {
            scheme.eq_ignore_ascii_case("basic") && format!("basic {value}") == want
        });
        if !ok {
            out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", &method)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(p) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", p);
    }
    if let Some(e) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", e);
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut answer = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut answer)?;
    let _ = writer.join();
    child.wait()?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| answer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, rest) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&answer[..i]).into_owned(),
            &answer[i + n..],
        ),
        None => (String::new(), &answer[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                response.extend_from_slice(h.trim_end().as_bytes());
                response.extend_from_slice(b"\r\n");
            }
            None => {}
        }
    }
    out.write_all(format!("HTTP/1.1 {status}\r\n").as_bytes())?;
    out.write_all(&response)?;
    out.write_all(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            rest.len()
        )
        .as_bytes(),
    )?;
    out.write_all(rest)?;
    out.flush()
}
