//! `rbuild check` on hostile input: Dockerfile text and context names with terminal control
//! characters, a context full of symbolic links (to secrets outside it, and in a loop), and a
//! secret file's content, which is never read or shown.
use std::os::unix::fs::symlink;

use crate::support::{Dir, ok, rbuild};

#[test]
fn check_output_escapes_control_characters_and_never_shows_secret_content() {
    let dir = Dir::new();
    let ctx = dir.path().join("ctx");
    dir.write(
        "ctx/Dockerfile",
        "FROM alpine:3.19 AS Bu\x1b[2Jild\nENV TOK\x1b]0;pwned\x07EN_KEY=1\nCOPY . /app\n",
    );
    dir.write("ctx/.env", "API_TOKEN=hunter2-do-not-print\n");
    dir.write("ctx/evil\x1b[31m.pem", "-----BEGIN PRIVATE KEY-----\n");
    // Links are listed as links, never followed: to a secret outside, and a loop.
    dir.write("outside/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    symlink(dir.path().join("outside/id_rsa"), ctx.join("id_rsa")).unwrap();
    symlink(dir.path().join("outside"), ctx.join("outside-dir")).unwrap();
    symlink(&ctx, ctx.join("loop")).unwrap();
    let run = ok(rbuild(dir.path()).arg("check").arg(&ctx));
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "raw control characters in: {text:?}"
        );
        assert!(!text.contains("hunter2"), "secret content shown: {text}");
        assert!(!text.contains("BEGIN"), "key content shown: {text}");
    }
    assert!(run.stdout.contains("\\x1b[2J"), "{}", run.stdout);
    assert!(run.stdout.contains("SecretFileCopied"), "{}", run.stdout);
    assert!(run.stdout.contains(".env"), "{}", run.stdout);
    assert!(run.stdout.contains("evil\\x1b[31m.pem"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("id_rsa"),
        "a link was followed: {}",
        run.stdout
    );
    // The data formats keep the exact text.
    let json = ok(rbuild(dir.path())
        .args(["check", "--format", "json"])
        .arg(&ctx));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let messages: Vec<&str> = v["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("Bu\x1b[2Jild")),
        "{messages:?}"
    );
}
