//! The config file: where it is found, precedence (flag > `RBUILD_*` variable > file >
//! default) with effects one can observe (where the store is, how layers are compressed),
//! and errors that name the file, line and key.

use std::path::Path;
use std::process::Command;

use crate::support::{BASE, BuildEnv, Dir, fails, ok};

/// `rbuild` with no store or config from the caller's environment.
fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    for var in [
        "RBUILD_ROOT",
        "RBUILD_CONFIG",
        "RBUILD_COMPRESSION",
        "RBUILD_JOBS",
        "RBUILD_GC_THRESHOLD",
        "RBUILD_GC_KEEP_STORAGE",
        "RBUILD_INSECURE_REGISTRIES",
        "XDG_CONFIG_HOME",
        "SOURCE_DATE_EPOCH",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn is_store(p: &Path) -> bool {
    p.join("index.json").is_file() && p.join("oci-layout").is_file()
}

#[test]
fn the_store_root_comes_from_flag_then_variable_then_file() {
    let dir = Dir::new();
    let file = dir.write(
        "conf/config.toml",
        format!("root = {:?}\n", dir.join("from-file").display().to_string()),
    );
    ok(bare().arg("--config").arg(&file).arg("images"));
    assert!(is_store(&dir.join("from-file")));
    // A relative root is relative to the file.
    let rel = dir.write("conf/rel.toml", "root = \"relative-store\"\n");
    ok(bare().arg("--config").arg(&rel).arg("images"));
    assert!(is_store(&dir.join("conf/relative-store")));
    // RBUILD_CONFIG names the file; the variable wins over the file.
    ok(bare()
        .env("RBUILD_CONFIG", &file)
        .env("RBUILD_ROOT", dir.join("from-env"))
        .arg("images"));
    assert!(is_store(&dir.join("from-env")));
    // The flag wins over both.
    ok(bare()
        .env("RBUILD_CONFIG", &file)
        .env("RBUILD_ROOT", dir.join("from-env-2"))
        .arg("--root")
        .arg(dir.join("from-flag"))
        .arg("images"));
    assert!(is_store(&dir.join("from-flag")));
    assert!(!dir.join("from-env-2").exists());
    // The default file: $XDG_CONFIG_HOME/rbuild/config.toml.
    dir.write(
        "xdg/rbuild/config.toml",
        format!("root = {:?}\n", dir.join("from-xdg").display().to_string()),
    );
    ok(bare().env("XDG_CONFIG_HOME", dir.join("xdg")).arg("images"));
    assert!(is_store(&dir.join("from-xdg")));
}

fn last_layer_media_type(env: &BuildEnv) -> String {
    let v = env.inspect("app");
    let layers = v["manifest"]["layers"].as_array().expect("layers").clone();
    layers.last().expect("a layer")["mediaType"]
        .as_str()
        .expect("media type")
        .to_string()
}

#[test]
fn compression_comes_from_flag_then_variable_then_file() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo hi > /hi\n"));
    let file = env
        .dir
        .write("config.toml", "[build]\ncompression = \"gzip\"\njobs = 2\n");
    let build = |extra: &[&str], var: Option<&str>| {
        let mut args = vec!["-t", "app", "--no-cache"];
        args.extend_from_slice(extra);
        let mut cmd = env.build_cmd(&args);
        cmd.env("RBUILD_CONFIG", &file)
            .env_remove("RBUILD_COMPRESSION");
        if let Some(v) = var {
            cmd.env("RBUILD_COMPRESSION", v);
        }
        ok(&mut cmd);
        last_layer_media_type(&env)
    };
    assert!(build(&[], None).ends_with("tar+gzip"), "file: gzip");
    assert!(
        build(&[], Some("zstd")).ends_with("tar+zstd"),
        "variable: zstd"
    );
    assert_eq!(
        build(&["--compression", "uncompressed"], Some("zstd")),
        "application/vnd.oci.image.layer.v1.tar",
        "flag: uncompressed"
    );
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let dir = Dir::new();
    let root = dir.join("store");
    let cases = [
        (
            "[build]\njobs = 2\njbos = 3\n",
            ":3:1: unknown key `build.jbos`",
        ),
        (
            "[gc]\nthreshold = \"lots\"\n",
            ":2:13: bad value for `gc.threshold`: \"lots\"",
        ),
        (
            "[build]\ncompression = 7\n",
            ":2:15: bad value for `build.compression`",
        ),
        (
            "[registry]\ninsecure = \"a:5000\"\n",
            ":2:12: bad value for `registry.insecure`",
        ),
        ("root = \n", ":1:"),
    ];
    for (text, expected) in cases {
        let file = dir.write("bad.toml", text);
        let r = fails(
            bare()
                .arg("--root")
                .arg(&root)
                .arg("--config")
                .arg(&file)
                .arg("images"),
        );
        let want = format!("{}{expected}", file.display());
        assert!(
            r.stderr.contains(&want),
            "{text:?}: {want:?} not in:\n{}",
            r.stderr
        );
    }
    // A named file that does not exist is an error too; a missing default file is not.
    let r = fails(
        bare()
            .arg("--config")
            .arg(dir.join("nope.toml"))
            .arg("images"),
    );
    assert!(r.stderr.contains("nope.toml"), "{}", r.stderr);
    ok(bare()
        .env("XDG_CONFIG_HOME", dir.join("empty"))
        .arg("--root")
        .arg(&root)
        .arg("images"));
    // Bad variables are named with their value.
    let r = fails(
        bare()
            .arg("--root")
            .arg(&root)
            .env("RBUILD_GC_THRESHOLD", "big")
            .arg("images"),
    );
    assert!(
        r.stderr.contains("RBUILD_GC_THRESHOLD=\"big\""),
        "{}",
        r.stderr
    );
}

#[test]
fn pulls_try_the_configured_mirrors_first_then_the_registry() {
    use rbuild_test_support::{BusyboxLayout, Format, Registry};
    let mirror = Registry::start();
    let origin = Registry::start();
    let layout = BusyboxLayout::build();
    // Only the mirror has `mirrored`; only the origin has `direct`.
    layout.push_with_skopeo(&mirror, "team/mirrored:1", Format::Oci);
    layout.push_with_skopeo(&origin, "team/direct:1", Format::Oci);
    let dir = Dir::new();
    let root = dir.join("store");
    // The first mirror listens nowhere (a closed loopback port): it is skipped.
    let file = dir.write(
        "config.toml",
        format!(
            "[registry.mirrors]\n{:?} = [\"127.0.0.1:1\", {:?}]\n",
            origin.host(),
            mirror.host()
        ),
    );
    let pull = |name: &str| {
        ok(bare()
            .arg("--root")
            .arg(&root)
            .arg("--config")
            .arg(&file)
            .args(["pull", &format!("{}/team/{name}:1", origin.host())]))
    };
    // From the mirror, named as asked.
    pull("mirrored");
    // Not on the mirror: from the registry itself.
    pull("direct");
    let images = ok(bare()
        .arg("--root")
        .arg(&root)
        .args(["images", "--format", "json"]));
    for name in ["mirrored", "direct"] {
        assert!(
            images
                .stdout
                .contains(&format!("{}/team/{name}", origin.host())),
            "{name} not in {}",
            images.stdout
        );
    }
    assert!(
        mirror.log().contains("team/direct"),
        "the mirror was not asked first for the image it lacks"
    );
    // Without the config, the origin alone cannot serve `mirrored`.
    let r = fails(
        bare()
            .arg("--root")
            .arg(dir.join("other"))
            .args(["pull", &format!("{}/team/mirrored:1", origin.host())]),
    );
    assert!(r.stderr.contains("team/mirrored"), "{}", r.stderr);
}
