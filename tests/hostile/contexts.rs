//! Named build contexts that try to make rbuild read outside them: an `oci-layout://`
//! directory whose blob is a link to a file elsewhere.

use crate::support::{BASE, BuildEnv};

#[test]
fn an_oci_layout_context_follows_no_link_out_of_the_layout() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo layout > /marker\n"));
    let layout = env.dir.join("layout");
    let dest = format!("type=oci,tar=false,dest={}", layout.display());
    env.build(&["-t", "localhost/layout:v1", "-o", &dest]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    // The manifest's blob moves out of the layout and a link takes its place: its bytes are
    // exactly right, so only following the link could make the build succeed.
    let blob = layout.join("blobs/sha256").join(hex);
    let outside = env.dir.join("outside-manifest");
    std::fs::rename(&blob, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &blob).unwrap();

    let other = BuildEnv::new();
    other.dockerfile("FROM base\nRUN cat /marker\n");
    let spec = format!("base=oci-layout://{}", layout.display());
    let run = other.build_fails(&["--build-context", &spec]);
    assert!(
        run.stderr.contains(&format!(
            "cannot read the OCI layout {} of build context \"base\"",
            layout.display()
        )) && run.stderr.contains(hex),
        "{}",
        run.stderr
    );
    // Put back as a file, the same layout builds.
    std::fs::remove_file(&blob).unwrap();
    std::fs::rename(&outside, &blob).unwrap();
    other.build(&["--build-context", &spec]);
}
