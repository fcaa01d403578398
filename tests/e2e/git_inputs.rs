//! Git repositories as build inputs, fetched from a real git server on loopback (`git
//! http-backend` behind a small HTTP server, and `git daemon`): the build context
//! `URL#REF:SUBDIR` at a branch, a tag, a full and an abbreviated commit; a named context;
//! `ADD URL#REF /dst` with and without `--keep-git-dir`; credentials from `--secret`; the
//! checkouts cached by commit and removed by `rbuild prune`; over ssh (a real sshd on
//! loopback), through the `--ssh default` agent and checked against `~/.ssh/known_hosts`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild_test_support::{GitServer, SshGitServer};

use crate::support::{BASE, BuildEnv, fails, ok};

/// A repository whose `sub/` holds a Dockerfile copying `sub/hello.txt`, tagged `v1`; then
/// a second commit changing `hello.txt`. Returns the server and the two commits.
fn two_commits(token: Option<&str>) -> (GitServer, String, String) {
    let server = GitServer::start(token);
    let work = server.work();
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(
        work.join("sub/Dockerfile"),
        format!("FROM {BASE}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copy.txt\n"),
    )
    .unwrap();
    std::fs::write(work.join("sub/hello.txt"), "first\n").unwrap();
    std::fs::write(work.join("top.txt"), "top\n").unwrap();
    let first = server.commit("first");
    server.tag("v1");
    std::fs::write(work.join("sub/hello.txt"), "second\n").unwrap();
    let second = server.commit("second");
    (server, first, second)
}

/// Names of the checkout directories the store keeps.
fn checkouts(env: &BuildEnv) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.root.join("git-v1"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn context_at_branch_tag_and_commits(env: &BuildEnv) {
    let (server, first, second) = two_commits(None);
    let url = server.http_url();
    env.build_context(&["-t", "main"], &format!("{url}#main:sub"));
    assert_eq!(
        env.sh("main", "cat /hello.txt /copy.txt"),
        "second\nsecond\n"
    );
    env.build_context(&["-t", "tag"], &format!("{url}#v1:sub"));
    assert_eq!(env.sh("tag", "cat /hello.txt"), "first\n");
    env.build_context(&["-t", "full"], &format!("{url}#{first}:sub"));
    assert_eq!(env.sh("full", "cat /hello.txt"), "first\n");
    env.build_context(&["-t", "short"], &format!("{url}#{}:sub", &first[..10]));
    assert_eq!(env.sh("short", "cat /hello.txt"), "first\n");
    // Without a ref: the remote's HEAD; `-f` names a file of the checkout's SUBDIR.
    env.build_context(
        &["-t", "head", "-f", "./Dockerfile"],
        &format!("{url}#:sub"),
    );
    assert_eq!(env.sh("head", "cat /hello.txt"), "second\n");
    assert_eq!(checkouts(env), {
        let mut v = vec![first, second];
        v.sort();
        v
    });
}

#[test]
fn context_at_branch_tag_and_commits_as_root() {
    context_at_branch_tag_and_commits(&BuildEnv::new());
}

#[test]
fn context_at_branch_tag_and_commits_rootless() {
    context_at_branch_tag_and_commits(&BuildEnv::rootless());
}

#[test]
fn same_commit_is_cached_new_commit_reruns_and_prune_removes_checkouts() {
    let env = BuildEnv::new();
    let server = GitServer::start(None);
    let work = server.work();
    std::fs::write(
        work.join("Dockerfile"),
        format!(
            "FROM {BASE}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a2.txt\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b2.txt\n"
        ),
    )
    .unwrap();
    std::fs::write(work.join("a.txt"), "a\n").unwrap();
    std::fs::write(work.join("b.txt"), "b\n").unwrap();
    let one = server.commit("one");
    let url = format!("{}#main", server.http_url());
    let first = env.build_context(&["-t", "img"], &url);
    assert_eq!(first.ran().len(), 4, "{}", first.stderr);
    let again = env.build_context(&["-t", "img"], &url);
    assert_eq!(again.ran(), Vec::<String>::new(), "{}", again.stderr);
    assert_eq!(again.id, first.id);

    std::fs::write(work.join("b.txt"), "b changed\n").unwrap();
    let two = server.commit("two");
    let changed = env.build_context(&["-t", "img"], &url);
    assert_eq!(
        changed.ran(),
        vec!["COPY b.txt /b.txt", "RUN /bin/sh -c cat /b.txt > /b2.txt"],
        "{}",
        changed.stderr
    );
    assert_eq!(env.sh("img", "cat /a2.txt /b2.txt"), "a\nb changed\n");
    let mut both = vec![one, two];
    both.sort();
    assert_eq!(checkouts(&env), both);

    let pruned = ok(env.rbuild().args(["prune", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&pruned.stdout).unwrap();
    let git = report["freed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "git-checkouts")
        .unwrap_or_else(|| panic!("no git checkouts freed: {}", pruned.stdout));
    assert_eq!(git["count"], 2, "{}", pruned.stdout);
    assert_eq!(checkouts(&env), Vec::<String>::new());
    // Fetched again after the prune.
    env.build_context(&["-t", "img"], &url);
    assert_eq!(checkouts(&env).len(), 1);
}

#[test]
fn git_daemon_context_and_named_git_context() {
    let env = BuildEnv::new();
    let (mut server, _, _) = two_commits(None);
    let daemon = server.start_daemon();
    env.build_context(&["-t", "daemon"], &format!("{daemon}#v1:sub"));
    assert_eq!(env.sh("daemon", "cat /hello.txt"), "first\n");

    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY --from=src sub/hello.txt /from-src.txt\nCOPY --from=src top.txt /top.txt\n"
    ));
    let spec = format!("src={}#v1", server.http_url());
    env.build(&["-t", "named", "--build-context", &spec]);
    assert_eq!(
        env.sh("named", "cat /from-src.txt /top.txt"),
        "first\ntop\n"
    );
    let spec = format!("src={daemon}#main");
    env.build(&["-t", "named", "--build-context", &spec]);
    assert_eq!(env.sh("named", "cat /from-src.txt"), "second\n");
}

#[test]
fn add_git_with_and_without_keep_git_dir() {
    let env = BuildEnv::new();
    let (server, _, second) = two_commits(None);
    let url = server.http_url();
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         ADD {url}#main /src\n\
         ADD --keep-git-dir=true {url}#main /kept\n\
         ADD --chown=1000:1000 {url}#v1:sub /owned/\n"
    ));
    env.build(&["-t", "img"]);
    assert_eq!(
        env.sh(
            "img",
            "cat /src/sub/hello.txt /src/top.txt; test -e /src/.git || echo no-git"
        ),
        "second\ntop\nno-git\n"
    );
    assert_eq!(
        env.sh(
            "img",
            "cat /kept/sub/hello.txt; test -d /kept/.git && echo has-git"
        ),
        "second\nhas-git\n"
    );
    assert_eq!(
        env.sh(
            "img",
            "cat /owned/hello.txt; stat -c %u:%g /owned/hello.txt; ls /owned"
        ),
        "first\n1000:1000\nDockerfile\nhello.txt\n"
    );
    // The kept .git is at the commit, with the remote's URL and no fetch leftovers.
    let head = env.sh(
        "img",
        "cat /kept/.git/HEAD; test -e /kept/.git/FETCH_HEAD || echo none",
    );
    assert_eq!(head, format!("{second}\nnone\n"));
    assert!(
        env.sh("img", "cat /kept/.git/config").contains(&url),
        "the origin remote is the URL"
    );
    // The same commit: every step from the cache.
    let again = env.build(&["-t", "img"]);
    assert_eq!(again.ran(), Vec::<String>::new(), "{}", again.stderr);
}

#[test]
fn add_git_checksum_is_the_commit() {
    let env = BuildEnv::new();
    let (server, first, _) = two_commits(None);
    let url = server.http_url();
    env.dockerfile(&format!(
        "FROM {BASE}\nADD --checksum={first} {url}#v1 /src\n"
    ));
    env.build(&["-t", "img"]);
    assert_eq!(env.sh("img", "cat /src/sub/hello.txt"), "first\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nADD --checksum={first} {url}#main /src\n"
    ));
    let run = env.build_fails(&["-t", "img"]);
    assert!(
        run.stderr.contains(&format!("expected commit {first}")),
        "{}",
        run.stderr
    );
}

#[test]
fn token_from_a_secret_reaches_the_server() {
    let env = BuildEnv::new();
    let token = "tok-3f9a1c";
    let (server, _, _) = two_commits(Some(token));
    let file = env.dir.write("token", token);
    let url = format!("{}#main:sub", server.http_url());
    // By host, as BuildKit names it, and without the host.
    let by_host = format!("id=GIT_AUTH_TOKEN.{},src={}", server.host(), file.display());
    env.build_context(&["-t", "img", "--secret", &by_host], &url);
    assert_eq!(env.sh("img", "cat /hello.txt"), "second\n");
    let plain = format!("id=GIT_AUTH_TOKEN,src={}", file.display());
    env.build_context(&["-t", "img", "--secret", &plain, "--no-cache"], &url);
    assert!(server.requests() > 0);
    // A header secret is the whole header value.
    let header = env.dir.write(
        "header",
        format!(
            "basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("x-access-token:{token}")
            )
        ),
    );
    let secret = format!("id=GIT_AUTH_HEADER,src={}", header.display());
    env.build_context(&["-t", "img", "--secret", &secret], &url);
}

#[test]
fn a_prune_during_a_build_leaves_the_checkouts_it_uses() {
    let env = BuildEnv::new();
    let (server, _, second) = two_commits(None);
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         COPY --from=src top.txt /top.txt\n\
         RUN sleep 3\n\
         RUN --mount=from=src,target=/m cat /m/sub/hello.txt > /hello.txt\n"
    ));
    let spec = format!("src={}#main", server.http_url());
    let mut cmd = env.build_cmd(&["-t", "img", "--build-context", &spec]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while checkouts(&env) != vec![second.clone()] {
        assert!(std::time::Instant::now() < deadline, "no checkout appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pruned = ok(env.rbuild().args(["prune", "--all"]));
    assert!(pruned.stdout.contains("in use"), "{}", pruned.stdout);
    assert_eq!(checkouts(&env), vec![second.clone()]);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.sh("img", "cat /top.txt /hello.txt"), "top\nsecond\n");
    // Once no build uses it, a prune takes it.
    ok(env.rbuild().args(["prune"]));
    assert_eq!(checkouts(&env), Vec::<String>::new());
}

/// `cmd` reaching `ssh`'s agent through `SSH_AUTH_SOCK`, with `home` as its `HOME` (where
/// rbuild reads `.ssh/known_hosts`).
fn over_ssh<'a>(cmd: &'a mut Command, ssh: &SshGitServer, home: &Path) -> &'a mut Command {
    cmd.env("SSH_AUTH_SOCK", ssh.agent_sock()).env("HOME", home)
}

#[test]
fn ssh_context_and_add_through_the_agent() {
    let env = BuildEnv::new();
    let (server, _, _) = two_commits(None);
    let ssh = SshGitServer::start(&server);
    let url = ssh.url();
    let mut cmd = env.rbuild();
    cmd.args([
        "build",
        "--progress",
        "plain",
        "-t",
        "ctx",
        "--ssh",
        "default",
    ])
    .arg(format!("{url}#main:sub"));
    let context = ok(over_ssh(&mut cmd, &ssh, &ssh.home()));
    assert_eq!(
        env.sh("ctx", "cat /hello.txt /copy.txt"),
        "second\nsecond\n",
        "{}",
        ssh.log()
    );

    env.dockerfile(&format!(
        "FROM {BASE}\nADD {url}#v1 /src\nADD --keep-git-dir=true {url}#main /kept\n"
    ));
    let mut cmd = env.build_cmd(&["-t", "add", "--ssh", "default"]);
    let add = ok(over_ssh(&mut cmd, &ssh, &ssh.home()));
    assert_eq!(
        env.sh(
            "add",
            "cat /src/sub/hello.txt /src/top.txt /kept/sub/hello.txt"
        ),
        "first\ntop\nsecond\n"
    );
    assert!(
        env.sh("add", "cat /kept/.git/config").contains(&url),
        "the origin remote is the URL"
    );
    assert!(
        ssh.log().contains("Accepted publickey for root"),
        "{}",
        ssh.log()
    );

    // The key stays in the agent: not in any output, the image or the store's checkouts.
    let key = ssh.private_key().lines().nth(1).expect("a key body line");
    for run in [&context, &add] {
        assert!(!run.stdout.contains(key) && !run.stderr.contains(key));
    }
    let found = env.sh(
        "add",
        &format!("find / -xdev -type f -exec grep -lF '{key}' {{}} + ; true"),
    );
    assert_eq!(found, "", "files of the image hold the private key");
    let grep = Command::new("grep")
        .args(["-rlF", key])
        .arg(&env.root)
        .output()
        .unwrap();
    assert_eq!(
        grep.status.code(),
        Some(1),
        "the store holds the private key: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

#[test]
fn ssh_to_an_unknown_host_key_fails_naming_the_host() {
    let env = BuildEnv::new();
    let (server, _, _) = two_commits(None);
    let ssh = SshGitServer::start(&server);
    let url = ssh.url();
    let started = Instant::now();
    let mut cmd = env.rbuild();
    cmd.args(["build", "--progress", "plain", "--ssh", "default"])
        .arg(format!("{url}#main:sub"));
    let run = fails(over_ssh(&mut cmd, &ssh, &ssh.stranger_home()));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let host = format!("[127.0.0.1]:{}", ssh.port());
    let known_hosts = ssh.stranger_home().join(".ssh/known_hosts");
    assert!(
        run.stderr.contains(&format!(
            "{url}: the ssh host key of {host} is not in {}",
            known_hosts.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!ssh.log().contains("Accepted publickey"), "{}", ssh.log());

    // Without an agent: refused before anything connects.
    let mut cmd = env.rbuild();
    cmd.args(["build", "--progress", "plain"])
        .arg(format!("{url}#main:sub"))
        .env("HOME", ssh.home());
    let run = fails(&mut cmd);
    assert!(
        run.stderr.contains(&format!(
            "{url}: fetching over ssh needs an ssh agent: pass --ssh default"
        )),
        "{}",
        run.stderr
    );
}
