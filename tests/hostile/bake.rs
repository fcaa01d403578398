//! `rbuild bake` on bad files: each is refused with an error naming the file and line, the
//! loop or the unknown name, before anything is built; a compose context outside the
//! file's directory is allowed (as in compose) with the Dockerfile taken relative to it; a
//! target name that is a path is refused, as buildx refuses it.

use crate::support::{BuildEnv, Dir, fails, ok, rbuild};

/// `rbuild bake --print` in `dir` with `files` written there; must fail; returns stderr.
fn refused(files: &[(&str, &str)], args: &[&str]) -> String {
    let dir = Dir::new();
    for (name, text) in files {
        dir.write(name, text);
    }
    let run = fails(
        rbuild(&dir.join("store"))
            .current_dir(dir.path())
            .args(["bake", "--print"])
            .args(args),
    );
    assert_eq!(run.stdout, "", "nothing printed on stdout");
    run.stderr
}

#[test]
fn an_unknown_compose_build_key_is_an_error_at_its_line() {
    let err = refused(
        &[(
            "compose.yaml",
            "services:\n  app:\n    image: localhost/app\n    build:\n      context: .\n      dockerfille: Dockerfile.app\n",
        )],
        &[],
    );
    assert!(err.contains("compose.yaml:6:"), "{err}");
    assert!(err.contains("dockerfille"), "{err}");
}

#[test]
fn an_hcl_syntax_error_names_its_line() {
    let err = refused(
        &[(
            "docker-bake.hcl",
            "target \"app\" {\n  context = \".\"\n  tags = [\"a\" \"b\"]\n}\n",
        )],
        &[],
    );
    assert!(err.contains("docker-bake.hcl:3:"), "{err}");
}

#[test]
fn an_inherits_cycle_is_named() {
    let err = refused(
        &[(
            "docker-bake.hcl",
            "target \"a\" {\n  inherits = [\"b\"]\n}\ntarget \"b\" {\n  inherits = [\"a\"]\n}\n",
        )],
        &["a"],
    );
    assert!(err.contains("inherits cycle: a -> b -> a"), "{err}");
}

#[test]
fn a_target_context_cycle_is_named() {
    let err = refused(
        &[(
            "docker-bake.hcl",
            "target \"a\" {\n  contexts = { x = \"target:b\" }\n}\ntarget \"b\" {\n  contexts = { y = \"target:a\" }\n}\n",
        )],
        &["a"],
    );
    assert!(err.contains("target: context cycle: a -> b -> a"), "{err}");
}

#[test]
fn variables_that_use_each_other_are_named() {
    let err = refused(
        &[(
            "docker-bake.hcl",
            "variable \"A\" { default = B }\nvariable \"B\" { default = A }\ntarget \"t\" {}\n",
        )],
        &["t"],
    );
    assert!(err.contains("variables cannot be evaluated: A, B"), "{err}");
}

#[test]
fn an_unknown_target_lists_the_known_ones() {
    let err = refused(
        &[(
            "compose.yaml",
            "services:\n  app:\n    build: .\n  worker:\n    build: .\n  db:\n    image: postgres\n",
        )],
        &["nope"],
    );
    assert!(
        err.contains("no target or group named \"nope\"; known: app, default, worker"),
        "{err}"
    );
}

#[test]
fn a_compose_context_may_leave_the_file_dir_and_the_dockerfile_is_relative_to_it() {
    let env = BuildEnv::new();
    env.write(
        "docker/Dockerfile",
        "FROM localhost/busybox:latest\nCOPY marker /marker\n",
    );
    env.write("marker", "from the context\n");
    // A Dockerfile at the same path relative to the compose file must not be used.
    env.write(
        "deploy/docker/Dockerfile",
        "FROM localhost/busybox:latest\nRUN exit 9\n",
    );
    env.write(
        "deploy/compose.yaml",
        "services:\n  app:\n    image: localhost/upctx\n    build:\n      context: ..\n      dockerfile: docker/Dockerfile\n",
    );
    ok(env
        .rbuild()
        .current_dir(env.ctx.join("deploy"))
        .args(["bake", "--progress", "plain"]));
    assert_eq!(
        env.sh("localhost/upctx", "cat /marker"),
        "from the context\n"
    );
}

#[test]
fn a_target_name_that_is_a_path_is_refused() {
    let err = refused(
        &[(
            "docker-bake.hcl",
            "target \"../../escaped\" {\n  dockerfile-inline = \"FROM scratch\\n\"\n}\n",
        )],
        &[],
    );
    assert!(
        err.contains("docker-bake.hcl: target \"../../escaped\": only letters, digits"),
        "{err}"
    );
    let err = refused(
        &[("compose.yaml", "services:\n  ../up:\n    build: .\n")],
        &[],
    );
    assert!(
        err.contains("compose.yaml: service \"../up\": only letters, digits"),
        "{err}"
    );
}
