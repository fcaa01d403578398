//! Pull and push times of a large image against a local `docker-registry`, next to
//! `skopeo copy` of the same data.
//!
//! `cargo run --release -p rbuild-registry --example transfer_bench -- [MiB]` (default 300).
//! Needs docker-registry, skopeo, umoci and busybox-static.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use rbuild_registry::{
    BlobSink, BlobSource, BlobTarget, Client, ClientOptions, CredentialStore, Descriptor, Digest,
    PullOptions, PushImage, PushOptions, Reference,
};
use rbuild_test_support::{BusyboxLayout, Format, Registry, run};

/// Blobs as files in a directory (`sha256/HEX`), written to a temp name and renamed.
struct DirBlobs(PathBuf);

impl DirBlobs {
    fn path(&self, d: &Digest) -> PathBuf {
        self.0.join(d.digest())
    }
}

struct FileSink {
    tmp: PathBuf,
    dest_dir: PathBuf,
    file: io::BufWriter<File>,
}

impl BlobSink for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn reset(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_mut().set_len(0)?;
        self.file.get_mut().seek(SeekFrom::Start(0))?;
        Ok(())
    }
    fn commit(mut self: Box<Self>, digest: &Digest) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.tmp, self.dest_dir.join(digest.digest()))
    }
    fn abort(self: Box<Self>) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl BlobTarget for DirBlobs {
    fn has(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
    fn sink(&self, d: &Descriptor) -> io::Result<Box<dyn BlobSink>> {
        let tmp = self.0.join(format!(".tmp-{}", d.digest().digest()));
        Ok(Box::new(FileSink {
            file: io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?),
            tmp,
            dest_dir: self.0.clone(),
        }))
    }
}

impl BlobSource for DirBlobs {
    fn open(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut f = File::open(self.path(digest))?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("{label:<40} {:>8.2} s", start.elapsed().as_secs_f64());
    out
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map_or(300, |s| s.parse().expect("size in MiB"));
    let registry = Registry::start();
    let layout = time("build layout (umoci)", || {
        BusyboxLayout::build_with_extra(mib << 20)
    });
    time("seed: skopeo copy oci -> registry", || {
        layout.push_with_skopeo(&registry, "big:src", Format::Oci)
    });
    let host = registry.host();
    let work = tempfile::tempdir().expect("temp dir");

    time("skopeo copy registry -> oci dir (pull)", || {
        run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{host}/big:src"),
            &format!("oci:{}:x", work.path().join("skopeo-oci").display()),
        ]))
    });
    // Pushes go to fresh registries so nothing can be skipped or mounted.
    let skopeo_dest = Registry::start();
    let rbuild_dest = Registry::start();
    let rbuild_dest_mono = Registry::start();
    time("skopeo copy oci dir -> registry (push)", || {
        run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:x", work.path().join("skopeo-oci").display()),
            &format!("docker://{}/big/skopeo:1", skopeo_dest.host()),
        ]))
    });

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = Client::new(ClientOptions {
        credentials: CredentialStore::anonymous(),
        ..ClientOptions::default()
    });
    let dir = work.path().join("rbuild-blobs");
    std::fs::create_dir_all(&dir).expect("blob dir");
    let blobs = DirBlobs(dir);
    let src = Reference::parse(&format!("{host}/big:src")).expect("reference");
    let image = time("rbuild pull registry -> files", || {
        rt.block_on(client.pull(&src, &blobs, &PullOptions::default()))
            .expect("pull")
    });
    let push = PushImage::from_manifest(&image.manifest).expect("manifest");
    let dest =
        Reference::parse(&format!("{}/big/rbuild:1", rbuild_dest.host())).expect("reference");
    let r = time("rbuild push files -> registry (chunked)", || {
        rt.block_on(client.push(&dest, &push, &blobs, &PushOptions::default()))
            .expect("push")
    });
    assert_eq!(r.uploaded.len(), 2);
    let r = time("rbuild re-push (unchanged)", || {
        rt.block_on(client.push(&dest, &push, &blobs, &PushOptions::default()))
            .expect("push")
    });
    assert_eq!(r.existing.len(), 2);
    let mono = Client::new(ClientOptions {
        credentials: CredentialStore::anonymous(),
        chunked_upload_threshold: u64::MAX,
        ..ClientOptions::default()
    });
    let dest =
        Reference::parse(&format!("{}/big/rbuild:1", rbuild_dest_mono.host())).expect("reference");
    time("rbuild push files -> registry (one PUT)", || {
        rt.block_on(mono.push(&dest, &push, &blobs, &PushOptions::default()))
            .expect("push")
    });
    let layer = image.image_manifest.layers()[0].size();
    eprintln!("layer size: {:.1} MiB", layer as f64 / (1 << 20) as f64);
}
