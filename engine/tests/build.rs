//! The engine as a library: builds through `rbuild_engine::build` into a store of the test's
//! own, without the command line, and checks the image in the store.

use std::io::Read as _;
use std::path::Path;

use rbuild_cache::Store;
use rbuild_engine::{BuildRequest, NoEvents};

/// A base image in `store`: busybox (from Debian's busybox-static) imported as `name`.
fn import_busybox(store: &Store, dir: &Path, name: &str) {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox: install the Debian package busybox-static");
    for applet in ["sh", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let options = rbuild_cache::import::ImportOptions::new(Some(0), "busybox");
    let imported =
        rbuild_cache::import::import_dir(store, &rootfs, &options).expect("import the base");
    store.tag(name, &imported.manifest).unwrap();
}

/// The files of an image's top layer, by name.
fn top_layer_files(store: &Store, reference: &str) -> Vec<(String, String)> {
    let descriptor = store.resolve(reference).unwrap();
    let (_, manifest) = store.image_manifest(&descriptor).unwrap();
    let layer = manifest.layers().last().expect("a layer");
    let digest = rbuild_cache::descriptor_digest(layer).unwrap();
    let blob = store.open_blob(&digest).unwrap();
    let reader = rbuild_compress::decompress(blob, Some(layer.media_type().as_ref())).unwrap();
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        if entry.header().entry_type().is_file() {
            entry.read_to_string(&mut text).unwrap();
        }
        out.push((name, text));
    }
    out
}

#[test]
fn a_dockerfile_builds_into_a_store_without_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    import_busybox(&store, dir.path(), "localhost/base:latest");
    let context = dir.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM localhost/base:latest\nARG WHO=engine\nCOPY hello.txt /\nRUN echo \"built by $WHO\" > /by.txt\n",
    )
    .unwrap();
    let mut request = BuildRequest::new(store.clone(), &context).unwrap();
    request.tags.push("localhost/app:1".into());
    request
        .plan_options
        .build_args
        .insert("WHO".into(), "a library".into());
    let built = rbuild_engine::build(&request, &NoEvents::default()).expect("the build");
    assert!(built.makes_image);
    assert_eq!(
        store
            .resolve("localhost/app:1")
            .unwrap()
            .digest()
            .to_string(),
        built.id
    );
    assert_eq!(
        top_layer_files(&store, "localhost/app:1"),
        [("by.txt".to_string(), "built by a library\n".to_string())]
    );
    // Built again, every step comes from the cache and the image is the same.
    let again = rbuild_engine::build(&request, &NoEvents::default()).unwrap();
    assert_eq!(again.id, built.id);
}
