//! `rbuild login` / `rbuild logout` against a real registry with htpasswd and TLS.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use rbuild_test_support::{PASSWORD, Registry, USER};

fn rbuild(config_dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("DOCKER_CONFIG", config_dir)
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rbuild");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_checks_credentials_and_logout_removes_them() {
    let registry = Registry::start_with_auth();
    let dir = tempfile::tempdir().unwrap();
    let host = registry.host();
    let ca = registry.ca_pem();
    let ca = ca.to_str().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"auths":{"other.example":{"auth":"eDp5"}},"psFormat":"x"}"#,
    )
    .unwrap();

    let bad = rbuild(
        dir.path(),
        &[
            "login",
            "-u",
            USER,
            "--password-stdin",
            "--tls-ca",
            ca,
            &host,
        ],
        "wrong-password\n",
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!("cannot log in to {host}")),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-password"), "{stderr}");
    assert!(!std::fs::read_to_string(&config).unwrap().contains(&host));

    let ok = rbuild(
        dir.path(),
        &[
            "login",
            "-u",
            USER,
            "--password-stdin",
            "--tls-ca",
            ca,
            &host,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(ok.stdout.is_empty());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(written["auths"][&host]["auth"], auth.as_str());
    assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
    assert_eq!(written["psFormat"], "x");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = rbuild(dir.path(), &["logout", &host], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert!(written["auths"].get(&host).is_none(), "{written}");
    assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
    let again = rbuild(dir.path(), &["logout", &host], "");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("not logged in to {host}")));
}

/// With `credsStore` set, login hands the credentials to `docker-credential-<name> store` and
/// logout to `erase`; config.json gets no secret.
#[test]
fn login_uses_the_configured_credential_helper() {
    use std::os::unix::fs::PermissionsExt as _;

    let registry = Registry::start_with_auth();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = dir.path().join("helper.log");
    let helper = bin.join("docker-credential-rbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nprintf '%s ' \"$1\" >> {log}\ncat >> {log}\necho >> {log}\n",
            log = record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"credsStore":"rbtest"}"#).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host = registry.host();
    let ca = registry.ca_pem();

    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .args(args)
            .env("DOCKER_CONFIG", dir.path())
            .env("PATH", &path)
            .env_remove("REGISTRY_AUTH_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        &[
            "login",
            "-u",
            USER,
            "--password-stdin",
            "--tls-ca",
            ca.to_str().unwrap(),
            &host,
        ],
        PASSWORD,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["logout", &host], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let stored: serde_json::Value =
        serde_json::from_str(lines[0].strip_prefix("store ").unwrap()).unwrap();
    assert_eq!(stored["ServerURL"], host.as_str());
    assert_eq!(stored["Username"], USER);
    assert_eq!(stored["Secret"], PASSWORD);
    assert_eq!(lines[1], format!("erase {host}"));
    assert!(!std::fs::read_to_string(&config).unwrap().contains(PASSWORD));
}
