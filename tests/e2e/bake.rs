//! `rbuild bake`: a compose project of three services over one base stage builds in one
//! process, the shared RUN once; a bake HCL file with inherits, variables, a function,
//! `--set` and `--print`; a `target:` context; `--metadata-file`; `--push` to a registry.

use crate::support::{BuildEnv, Step, fails, ok, steps};

/// The Dockerfile of the three services: a `base` stage whose RUN prints a marker, and one
/// stage per service over it.
const SERVICES_DOCKERFILE: &str = "\
FROM localhost/busybox:latest AS base
RUN echo BASE-STEP-RAN && date +%s%N > /base-marker
FROM base AS app
ARG GREETING
RUN echo \"app $GREETING\" > /role
FROM base AS worker
RUN echo worker > /role
FROM base AS migrate
RUN echo migrate > /role
";

const COMPOSE: &str = "\
services:
  app:
    image: localhost/app:${TAG:-latest}
    build:
      context: .
      target: app
      args:
        GREETING: ${GREETING}
  worker:
    image: localhost/worker:${TAG:-latest}
    build:
      context: .
      target: worker
  migrate:
    image: localhost/migrate
    build:
      context: .
      target: migrate
  db:
    image: postgres:16
";

fn three_services(env: &BuildEnv) {
    env.dockerfile(SERVICES_DOCKERFILE);
    env.write("compose.yaml", COMPOSE);
    env.write(".env", "GREETING=hello-from-dotenv\nTAG=from-dotenv\n");
    // The environment wins over .env, as in compose.
    let run = ok(env.rbuild().current_dir(&env.ctx).env("TAG", "v1").args([
        "bake",
        "--progress",
        "plain",
    ]));
    let all = steps(&run.stderr);
    let base: Vec<&Step> = all
        .iter()
        .filter(|s| s.instruction.contains("BASE-STEP-RAN"))
        .collect();
    assert_eq!(base.len(), 3, "one base step per target:\n{}", run.stderr);
    let ran: Vec<&&Step> = base.iter().filter(|s| s.done && !s.cached).collect();
    assert_eq!(ran.len(), 1, "the base RUN runs once:\n{}", run.stderr);
    let printed = all
        .iter()
        .flat_map(|s| &s.output)
        .filter(|line| line.as_str() == "BASE-STEP-RAN")
        .count();
    assert_eq!(printed, 1, "the base RUN's output once:\n{}", run.stderr);
    for target in ["app", "worker", "migrate"] {
        assert!(
            all.iter()
                .filter(|s| !s.label.is_empty() && s.label != "internal")
                .any(|s| s.label.starts_with(&format!("{target} "))),
            "steps labelled with {target}:\n{}",
            run.stderr
        );
    }
    assert!(
        all.iter()
            .filter(|s| !s.label.is_empty() && s.label != "internal")
            .all(|s| ["app ", "worker ", "migrate "]
                .iter()
                .any(|p| s.label.starts_with(p))),
        "every step names its target:\n{}",
        run.stderr
    );
    // stdout: one `TARGET ID` line per target; db has no build section.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    for (line, target) in lines.iter().zip(["app", "migrate", "worker"]) {
        let (name, id) = line.split_once(' ').expect("TARGET ID");
        assert_eq!(name, target);
        assert!(id.starts_with("sha256:"), "{line}");
    }
    let marker = env.sh("localhost/app:v1", "cat /base-marker");
    assert_eq!(env.sh("localhost/worker:v1", "cat /base-marker"), marker);
    assert_eq!(
        env.sh("localhost/migrate:latest", "cat /base-marker"),
        marker
    );
    assert_eq!(
        env.sh("localhost/app:v1", "cat /role"),
        "app hello-from-dotenv\n"
    );
    assert_eq!(env.sh("localhost/worker:v1", "cat /role"), "worker\n");
    assert_eq!(env.sh("localhost/migrate", "cat /role"), "migrate\n");
}

#[test]
fn compose_services_share_their_base_run_once() {
    three_services(&BuildEnv::new());
}

#[test]
fn compose_services_share_their_base_run_once_rootless() {
    three_services(&BuildEnv::rootless());
}

const BAKE_HCL: &str = r#"
variable "TAG" { default = "dev" }
variable "REPO" { default = "localhost" }
function "image" {
  params = [name]
  result = "${REPO}/${name}:${TAG}"
}
group "default" { targets = ["app"] }
target "common" {
  context = "."
  args = { FROM_COMMON = "c", LEVEL = "low" }
  labels = { team = "core" }
}
target "app" {
  inherits = ["common"]
  tags = [image("hclapp")]
  args = { LEVEL = upper("high") }
  target = "final"
}
"#;

const ARGS_DOCKERFILE: &str = "\
FROM localhost/busybox:latest AS final
ARG FROM_COMMON
ARG LEVEL
ARG EXTRA
RUN echo \"$FROM_COMMON $LEVEL $EXTRA\" > /args
";

#[test]
fn bake_hcl_inherits_variables_functions_set_and_print() {
    let env = BuildEnv::new();
    env.dockerfile(ARGS_DOCKERFILE);
    env.write("docker-bake.hcl", BAKE_HCL);
    let print = ok(env.rbuild().current_dir(&env.ctx).env("TAG", "rel").args([
        "bake",
        "--print",
        "--set",
        "app.args.EXTRA=e",
    ]));
    let v: serde_json::Value = serde_json::from_str(&print.stdout).expect("--print is JSON");
    assert_eq!(v["group"]["default"]["targets"], serde_json::json!(["app"]));
    let app = &v["target"]["app"];
    assert_eq!(app["context"], ".");
    assert_eq!(app["dockerfile"], "Dockerfile");
    assert_eq!(app["target"], "final");
    assert_eq!(app["tags"], serde_json::json!(["localhost/hclapp:rel"]));
    assert_eq!(
        app["args"],
        serde_json::json!({"FROM_COMMON": "c", "LEVEL": "HIGH", "EXTRA": "e"})
    );
    assert_eq!(app["labels"], serde_json::json!({"team": "core"}));
    assert!(app.get("inherits").is_none(), "{app}");
    assert!(
        v["target"].get("common").is_none(),
        "only what is built: {v}"
    );

    let meta = env.dir.join("meta.json");
    let run = ok(env.rbuild().current_dir(&env.ctx).env("TAG", "rel").args([
        "bake",
        "--progress",
        "plain",
        "--set",
        "*.args.EXTRA=e",
        "--metadata-file",
        meta.to_str().unwrap(),
    ]));
    assert_eq!(env.sh("localhost/hclapp:rel", "cat /args"), "c HIGH e\n");
    let labels = &env.config("localhost/hclapp:rel")["config"]["Labels"];
    assert_eq!(labels["team"], "core", "{labels}");
    let id = run
        .stdout
        .trim()
        .strip_prefix("app ")
        .expect("app ID")
        .to_string();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(m["app"]["containerimage.digest"], id.as_str(), "{m}");
    assert_eq!(m["app"]["image.name"], "localhost/hclapp:rel", "{m}");
}

#[test]
fn a_target_context_is_built_first_and_used() {
    let env = BuildEnv::new();
    env.write(
        "docker-bake.hcl",
        r#"
target "base" {
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN echo from-base > /b\n"
}
target "app" {
  contexts = { basectx = "target:base" }
  dockerfile-inline = "FROM basectx\nRUN cat /b > /seen\n"
  tags = ["localhost/ctxapp"]
}
"#,
    );
    let run = ok(env
        .rbuild()
        .current_dir(&env.ctx)
        .args(["bake", "--progress", "plain", "app"]));
    assert_eq!(env.sh("localhost/ctxapp", "cat /seen"), "from-base\n");
    assert!(run.stdout.contains("base sha256:"), "{}", run.stdout);
    assert!(run.stdout.contains("app sha256:"), "{}", run.stdout);
}

#[test]
fn a_failing_target_fails_the_bake_with_its_name() {
    let env = BuildEnv::new();
    env.write(
        "docker-bake.hcl",
        r#"
group "default" { targets = ["good", "bad"] }
target "good" {
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN sleep 30\n"
}
target "bad" {
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN exit 3\n"
}
"#,
    );
    let started = std::time::Instant::now();
    let run = fails(
        env.rbuild()
            .current_dir(&env.ctx)
            .args(["bake", "--progress", "plain"]),
    );
    assert!(run.stderr.contains("target bad failed"), "{}", run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the other target is stopped, not waited for"
    );
}

#[test]
fn bake_push_sends_every_target_and_metadata_names_the_pushed_digests() {
    let registry = rbuild_test_support::Registry::start();
    let host = registry.host();
    let env = BuildEnv::new();
    env.write(
        "docker-bake.hcl",
        format!(
            r#"
group "default" {{ targets = ["api", "web"] }}
target "api" {{
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN echo api > /role\n"
  tags = ["{host}/bake/api:1", "{host}/bake/api:latest"]
}}
target "web" {{
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN echo web > /role\n"
  tags = ["{host}/bake/web:1"]
}}
"#
        ),
    );
    let meta = env.dir.join("meta.json");
    ok(env.rbuild().current_dir(&env.ctx).args([
        "bake",
        "--progress",
        "plain",
        "--push",
        "--metadata-file",
        meta.to_str().unwrap(),
    ]));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    let flags = registry.skopeo_flags("");
    let mut seen = Vec::new();
    for (target, tags) in [("api", &["1", "latest"][..]), ("web", &["1"][..])] {
        for tag in tags {
            let name = format!("{host}/bake/{target}:{tag}");
            let inspected: serde_json::Value = serde_json::from_str(
                &ok(crate::support::skopeo()
                    .arg("inspect")
                    .args(&flags)
                    .arg(format!("docker://{name}")))
                .stdout,
            )
            .unwrap();
            let digest = inspected["Digest"].as_str().expect("a digest").to_string();
            assert_eq!(m[target]["containerimage.digest"], digest.as_str(), "{m}");
            let pushed = m[target]["rbuild.pushed"]
                .as_array()
                .unwrap_or_else(|| panic!("no pushed list for {target}: {m}"));
            assert!(
                pushed
                    .iter()
                    .any(|p| p["reference"] == name.as_str() && p["digest"] == digest.as_str()),
                "{name} at {digest} not in {m}"
            );
            seen.push(digest);
        }
    }
    assert_eq!(seen[0], seen[1], "both api tags name one manifest");
    assert_ne!(seen[0], seen[2], "api and web differ");
}

/// A target's `attest` list and bake's `--sbom`/`--provenance` shorthands (buildx's
/// `--set *.attest=...`) attach attestations to every target's image; a later entry of a
/// type replaces an earlier one.
#[test]
fn bake_attest_fields_and_flags_attach_attestations() {
    let env = BuildEnv::new();
    env.write(
        "docker-bake.hcl",
        r#"
group "default" { targets = ["api", "web"] }
target "common" {
  attest = ["type=provenance,mode=max"]
}
target "api" {
  inherits = ["common"]
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN echo api > /role\n"
  tags = ["localhost/att-api"]
  attest = ["type=sbom"]
}
target "web" {
  dockerfile-inline = "FROM localhost/busybox:latest\nRUN echo web > /role\n"
  tags = ["localhost/att-web"]
}
"#,
    );
    let printed: serde_json::Value = serde_json::from_str(
        &ok(env
            .rbuild()
            .current_dir(&env.ctx)
            .args(["bake", "--print", "--provenance=min"]))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        printed["target"]["api"]["attest"],
        serde_json::json!([
            "type=provenance,mode=max",
            "type=sbom",
            "type=provenance,mode=min"
        ])
    );
    assert_eq!(
        printed["target"]["web"]["attest"],
        serde_json::json!(["type=provenance,mode=min"])
    );

    ok(env.rbuild().current_dir(&env.ctx).args([
        "bake",
        "--progress",
        "plain",
        "--set",
        "api.attest=type=provenance,mode=max",
    ]));
    // The predicate types of each image's attestation manifest.
    let kinds = |image: &str| -> Vec<String> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.root.join("index.json")).unwrap()).unwrap();
        let top = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == image)
            .unwrap_or_else(|| panic!("{image} is not in {index:#}"))
            .clone();
        let blob = |d: &serde_json::Value| -> serde_json::Value {
            let hex = d["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap();
            serde_json::from_slice(&std::fs::read(env.root.join("blobs/sha256").join(hex)).unwrap())
                .unwrap()
        };
        let doc = blob(&top);
        let Some(manifests) = doc["manifests"].as_array() else {
            return Vec::new();
        };
        let attestation = manifests
            .iter()
            .find(|d| d["platform"]["os"] == "unknown")
            .expect("an attestation manifest");
        blob(attestation)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let statement = blob(l);
                let mut kind = statement["predicateType"].as_str().unwrap().to_string();
                // Only mode=max records the build's steps.
                let p = &statement["predicate"]["buildDefinition"];
                if p.is_object() {
                    let max = p["internalParameters"]["buildConfig"].is_object();
                    kind.push_str(if max { " max" } else { " min" });
                }
                kind
            })
            .collect()
    };
    assert_eq!(
        kinds("localhost/att-api:latest"),
        [
            "https://spdx.dev/Document",
            "https://slsa.dev/provenance/v1 max"
        ]
    );
    assert!(kinds("localhost/att-web:latest").is_empty());

    // The shorthands apply to every target.
    ok(env.rbuild().current_dir(&env.ctx).args([
        "bake",
        "--progress",
        "plain",
        "--sbom",
        "--provenance=false",
    ]));
    assert_eq!(
        kinds("localhost/att-web:latest"),
        ["https://spdx.dev/Document"]
    );
    assert_eq!(
        kinds("localhost/att-api:latest"),
        ["https://spdx.dev/Document"]
    );
}
