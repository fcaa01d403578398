//! `RUN --mount=type=secret`: the step sees the value; the value is in no blob of the
//! store, not in the image config or history, not in the build's output.

use std::path::Path;

use crate::support::{BASE, BuildEnv, gunzip};

const VALUE: &str = "tok-9f3c1e77-very-secret-value";
const ENV_VALUE: &str = "env-4b2d88a1-another-secret";

/// Every file under `root` (decompressing gzip and zstd blobs) checked not to contain
/// `needle`; returns how many files were scanned.
pub(crate) fn scan_for(root: &Path, needle: &[u8]) -> usize {
    let mut scanned = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("entry");
            let path = entry.path();
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            scanned += 1;
            let mut views = vec![bytes.clone()];
            if bytes.starts_with(&[0x1f, 0x8b]) {
                views.push(gunzip(&bytes));
            }
            if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                views.push(crate::support::filter(
                    crate::support::tool("zstd", "zstd").arg("-dc"),
                    &bytes,
                ));
            }
            for v in views {
                assert!(
                    !v.windows(needle.len()).any(|w| w == needle),
                    "the secret is in {}",
                    path.display()
                );
            }
        }
    }
    scanned
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let env = BuildEnv::new();
    let secret_file = env.dir.write("token.txt", VALUE);
    env.dockerfile(&format!(
        r#"FROM {BASE}
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-file; echo "in output: $(cat /run/secrets/tok | wc -c)"
RUN --mount=type=secret,id=fromenv,target=/etc/creds cat /etc/creds > /seen-env
RUN --mount=type=secret,id=tok,env=TOKEN echo "$TOKEN" > /seen-as-env
RUN --mount=type=secret,id=tok test -s /run/secrets/tok && echo mounted > /listing
"#
    ));
    let run = crate::support::ok(
        env.build_cmd(&[
            "-t",
            "img",
            "--secret",
            &format!("id=tok,src={}", secret_file.display()),
            "--secret",
            "id=fromenv,env=RBUILD_E2E_SECRET",
        ])
        .env("RBUILD_E2E_SECRET", ENV_VALUE),
    );
    // The steps saw the values (written into the image here only to check that).
    assert_eq!(
        env.sh(
            "img",
            "cat /seen-file; echo; cat /seen-env; echo; cat /seen-as-env"
        ),
        format!("{VALUE}\n{ENV_VALUE}\n{VALUE}\n")
    );
    // Not in the build's output (the step printed only the length).
    assert!(
        run.stderr.contains(&format!("in output: {}", VALUE.len())),
        "{}",
        run.stderr
    );
    for v in [VALUE, ENV_VALUE] {
        assert!(!run.stderr.contains(v), "{}", run.stderr);
        assert!(!run.stdout.contains(v));
    }
    // Not in the config or history.
    let config = serde_json::to_string(&env.config("img")).unwrap();
    assert!(
        !config.contains(VALUE) && !config.contains(ENV_VALUE),
        "{config}"
    );
    // Mount points of secrets leave nothing behind in the image.
    assert_eq!(
        env.sh(
            "img",
            "cat /listing; for p in /run/secrets/tok /run/secrets/fromenv /etc/creds; do [ -e $p ] && echo $p left || echo absent; done"
        ),
        "mounted\nabsent\nabsent\nabsent\n"
    );

    // Build an image that does not copy the secret into a file, then check every blob.
    let clean = BuildEnv::new();
    let f = clean.dir.write("token.txt", VALUE);
    clean.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=secret,id=tok,required=true sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sum\nRUN --mount=type=secret,id=e,env=E printf %s \"$E\" | sha256sum | cut -d' ' -f1 > /e.sum\n"
    ));
    let built = crate::support::ok(
        clean
            .build_cmd(&[
                "-t",
                "clean",
                "--secret",
                &format!("id=tok,src={}", f.display()),
                "--secret",
                "id=e,env=RBUILD_E2E_SECRET",
            ])
            .env("RBUILD_E2E_SECRET", ENV_VALUE),
    );
    let sum = |v: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(v.as_bytes()));
    assert_eq!(
        clean.sh("clean", "cat /tok.sum /e.sum"),
        format!("{}\n{}\n", sum(VALUE), sum(ENV_VALUE))
    );
    // Every file of the store: blobs (layers decompressed), the action cache, snapshots.
    // The secret file itself lives outside the store.
    std::fs::remove_file(&f).unwrap();
    let scanned = scan_for(&clean.root, VALUE.as_bytes());
    assert!(scanned >= 6, "only {scanned} files scanned");
    scan_for(&clean.root, ENV_VALUE.as_bytes());
    assert!(!built.stderr.contains(VALUE) && !built.stderr.contains(ENV_VALUE));
}

#[test]
fn a_missing_required_secret_is_an_error_and_an_optional_one_is_absent() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=secret,id=nothere,required=true cat /run/secrets/nothere\n"
    ));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("nothere"), "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=secret,id=nothere ls /run/secrets/nothere 2>/dev/null || echo absent > /r\n"
    ));
    env.build(&["-t", "opt"]);
    assert_eq!(env.sh("opt", "cat /r"), "absent\n");
}

#[test]
fn secret_values_do_not_enter_cache_keys() {
    // Changing a secret's value does not re-run the step (as BuildKit): the key names only
    // the secret's id.
    let env = BuildEnv::new();
    let f = env.dir.write("s", "one");
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=secret,id=s wc -c < /run/secrets/s > /len\n"
    ));
    let arg = format!("id=s,src={}", f.display());
    env.build(&["--secret", &arg]);
    std::fs::write(&f, "different").unwrap();
    let built = env.build(&["--secret", &arg]);
    assert_eq!(built.ran(), Vec::<String>::new(), "{}", built.stderr);
}

#[test]
fn a_quoted_secret_field_may_hold_commas_and_a_misplaced_quote_is_named() {
    // buildx reads `--secret` as one CSV record: a field in double quotes holds commas, and
    // a quote is written twice inside it.
    let env = BuildEnv::new();
    let f = env.dir.write("a,b \"c\".txt", VALUE);
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mount=type=secret,id=s sha256sum /run/secrets/s | cut -d' ' -f1 > /sum\n"
    ));
    let src = f.display().to_string().replace('"', "\"\"");
    env.build(&["-t", "quoted", "--secret", &format!("id=s,\"src={src}\"")]);
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(VALUE.as_bytes()));
    assert_eq!(env.sh("quoted", "cat /sum"), format!("{sum}\n"));

    // A quote inside a field is refused naming the flag and the field (buildx refuses it
    // too), rather than splitting the path at its comma.
    let out = env.build_fails(&["--secret", &format!("id=s,src=\"{}\"", f.display())]);
    assert!(
        out.stderr.contains("invalid --secret") && out.stderr.contains("field 2"),
        "{}",
        out.stderr
    );
}
