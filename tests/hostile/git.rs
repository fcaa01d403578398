//! Git inputs that must fail cleanly: a ref the repository does not have, a repository
//! that needs a token (none given, or a wrong one, which is never printed), a SUBDIR that
//! climbs out of the checkout, and a SUBDIR that is a symbolic link out of it.

use std::time::{Duration, Instant};

use rbuild_test_support::GitServer;

use crate::support::{BASE, BuildEnv};

/// A repository with `sub/Dockerfile` and `sub/hello.txt`.
fn repo(token: Option<&str>) -> GitServer {
    let server = GitServer::start(token);
    let work = server.work();
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(
        work.join("sub/Dockerfile"),
        format!("FROM {BASE}\nCOPY hello.txt /hello.txt\n"),
    )
    .unwrap();
    std::fs::write(work.join("sub/hello.txt"), "hello\n").unwrap();
    server.commit("first");
    server
}

#[test]
fn unknown_ref_names_the_url_and_the_ref() {
    let env = BuildEnv::new();
    let server = repo(None);
    let url = server.http_url();
    let run = env.build_context_fails(&[], &format!("{url}#no-such-branch:sub"));
    assert!(
        run.stderr.contains(&format!(
            "{url}: the repository has no branch, tag or commit no-such-branch"
        )),
        "{}",
        run.stderr
    );
    env.dockerfile(&format!("FROM {BASE}\nADD {url}#v9.9.9 /src\n"));
    let run = env.build_fails(&[]);
    assert!(
        run.stderr.contains("Dockerfile:2")
            && run.stderr.contains(&format!(
                "{url}: the repository has no branch, tag or commit v9.9.9"
            )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_repository_needing_a_token_fails_without_one_and_never_prints_a_wrong_one() {
    let env = BuildEnv::new();
    let server = repo(Some("right-token-0d1e"));
    let url = format!("{}#main:sub", server.http_url());
    let started = Instant::now();
    let run = env.build_context_fails(&[], &url);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no prompt, no hang"
    );
    assert!(
        run.stderr.contains(&server.http_url()) && run.stderr.contains("ls-remote"),
        "{}",
        run.stderr
    );

    let wrong = "wrong-token-7c2b5a";
    let file = env.dir.write("token", wrong);
    let secret = format!("id=GIT_AUTH_TOKEN,src={}", file.display());
    let mut cmd = env.rbuild();
    cmd.env("RBUILD_LOG", "trace")
        .args(["build", "--progress", "plain", "--secret", &secret])
        .arg(&url);
    let run = crate::support::fails(&mut cmd);
    assert!(run.stderr.contains(&server.http_url()), "{}", run.stderr);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(wrong), "the token is printed: {text}");
        // Nor its encoded header.
        assert!(
            !text.contains("eC1hY2Nlc3MtdG9rZW46"),
            "the header is printed: {text}"
        );
    }
}

#[test]
fn subdir_climbing_out_is_refused() {
    let env = BuildEnv::new();
    let server = repo(None);
    let run = env.build_context_fails(&[], &format!("{}#main:sub/../../..", server.http_url()));
    assert!(
        run.stderr.contains("leaves the repository") && run.stderr.contains("sub/../../.."),
        "{}",
        run.stderr
    );
    let spec = format!("x={}#main:../etc", server.http_url());
    env.dockerfile(&format!("FROM {BASE}\n"));
    let run = env.build_fails(&["--build-context", &spec]);
    assert!(
        run.stderr.contains("leaves the repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn subdir_that_is_a_symlink_out_of_the_checkout_is_refused() {
    let env = BuildEnv::new();
    let server = repo(None);
    // A directory outside the checkout with a Dockerfile that would copy a file of it.
    let outside = env.dir.mkdir("outside");
    std::fs::write(
        outside.join("Dockerfile"),
        format!("FROM {BASE}\nCOPY secret.txt /leak.txt\n"),
    )
    .unwrap();
    std::fs::write(outside.join("secret.txt"), "host file\n").unwrap();
    std::os::unix::fs::symlink(&outside, server.work().join("escape")).unwrap();
    std::os::unix::fs::symlink("../..", server.work().join("sub/up")).unwrap();
    server.commit("links");
    for sub in ["escape", "sub/up"] {
        let run = env.build_context_fails(
            &["-t", "leak"],
            &format!("{}#main:{sub}", server.http_url()),
        );
        assert!(
            run.stderr.contains("symbolic link") && run.stderr.contains(sub),
            "{}",
            run.stderr
        );
    }
    env.dockerfile(&format!(
        "FROM {BASE}\nADD {}#main:escape /x\n",
        server.http_url()
    ));
    let run = env.build_fails(&[]);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
}

#[test]
fn the_token_reaches_git_through_its_environment_never_its_arguments() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = BuildEnv::new();
    let token = "argv-token-5e8d21";
    let server = repo(Some(token));
    // A `git` first on PATH that records its arguments and configuration variables, then
    // runs the real git.
    let real = rbuild_test_support::require_tool("git", "git");
    let bin = env.dir.mkdir("bin");
    let log = env.dir.mkdir("log");
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}/argv\nenv | grep '^GIT_CONFIG_' >> {log}/env\nexec {real} \"$@\"\n",
            log = log.display(),
            real = real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = env.dir.write("token", token);
    let secret = format!("id=GIT_AUTH_TOKEN.{},src={}", server.host(), file.display());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = env.rbuild();
    cmd.env("PATH", path).args([
        "build",
        "--progress",
        "plain",
        "-t",
        "img",
        "--secret",
        &secret,
    ]);
    cmd.arg(format!("{}#main:sub", server.http_url()));
    crate::support::ok(&mut cmd);
    assert_eq!(env.sh("img", "cat /hello.txt"), "hello\n");
    let argv = std::fs::read_to_string(log.join("argv")).unwrap();
    assert!(
        argv.contains("ls-remote") && argv.contains("fetch"),
        "{argv}"
    );
    let header = "eC1hY2Nlc3MtdG9rZW46"; // base64 of "x-access-token:"
    assert!(!argv.contains(token) && !argv.contains(header), "{argv}");
    let config = std::fs::read_to_string(log.join("env")).unwrap();
    assert!(
        config.contains(&format!("http.{}.extraheader", server.http_url()))
            && config.contains(&format!("Authorization: basic {header}")),
        "{config}"
    );
}

#[test]
fn an_ssh_url_without_an_agent_is_refused() {
    let env = BuildEnv::new();
    let run = env.build_context_fails(&[], "git@127.0.0.1:repo.git#main");
    assert!(
        run.stderr.contains("git@127.0.0.1:repo.git")
            && run
                .stderr
                .contains("needs an ssh agent: pass --ssh default"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_server_that_never_answers_ends_at_the_git_timeout() {
    let env = BuildEnv::new();
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let url = format!("http://127.0.0.1:{port}/silent.git");
    let started = Instant::now();
    let mut cmd = env.rbuild();
    cmd.env("RBUILD_GIT_TIMEOUT", "3s")
        .args(["build", "--progress", "plain"])
        .arg(format!("{url}#main"));
    let run = crate::support::fails(&mut cmd);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        run.stderr.contains(&format!(
            "git ls-remote of {url} at main did not finish in 3s"
        )),
        "{}",
        run.stderr
    );
    let mut cmd = env.rbuild();
    cmd.env("RBUILD_GIT_TIMEOUT", "soon")
        .args(["build", "--progress", "plain"])
        .arg(format!("{url}#main"));
    let run = crate::support::fails(&mut cmd);
    assert!(
        run.stderr.contains("RBUILD_GIT_TIMEOUT=\"soon\""),
        "{}",
        run.stderr
    );
}
