//! A Debian base image made on this machine from Debian's packages: `debootstrap
//! --variant=minbase` from the machine's apt mirror, trimmed the way distribution images are
//! (no package archives, no device nodes, no host resolv.conf/hostname), packed as a root file
//! system tarball (for `rbuild import`) and as an OCI layout made with umoci (for pushes to a
//! test registry, with `PATH` and `CMD ["bash"]` like Debian's published images).
//!
//! The result is cached under [`cache_dir`] in a folder named by a hash of its inputs (suite,
//! mirror, variant, extra packages, debootstrap's version and [`RECIPE`]), so a machine pays
//! for it once; an exclusive `flock` on a file beside it makes concurrent test processes build
//! it once, and threads of one process share it through a `OnceLock`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::Digest as _;

use crate::{Format, Registry, require_tool, run};

/// Bumped whenever the way the base is prepared changes, so older caches are not reused.
const RECIPE: &str = "rbuild-debian-base-2";

/// The suite the distro tier builds on.
pub const SUITE: &str = "bookworm";

/// Used when the machine's apt sources name no mirror for the suite.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// `PATH` of Debian's published images.
pub const DEBIAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The tag of the base in its OCI layout.
const TAG: &str = "bookworm";

/// Debian's slim images carry an apt configuration that deletes downloaded packages after each
/// install and keeps no binary caches; Dockerfiles undo it with `rm -f
/// /etc/apt/apt.conf.d/docker-clean` before caching /var/cache/apt in a cache mount. The base
/// has the same so that pattern means the same here.
const DOCKER_CLEAN: &str = "\
// Downloaded packages are removed after every dpkg run, and apt keeps no binary caches
// (they only grow an image's layers).
DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };
APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };
Dir::Cache::pkgcache \"\";
Dir::Cache::srcpkgcache \"\";
";

/// The directory the tests keep cached artefacts in: `$RBUILD_TEST_CACHE`, else
/// `$CARGO_TARGET_DIR/rbuild-test-cache`, else `target/rbuild-test-cache` in the workspace.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RBUILD_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("rbuild-test-cache")
}

/// What a base is made from: debootstrap's architecture, suite, mirror, variant and extra
/// packages.
struct Inputs<'a> {
    arch: &'a str,
    suite: &'a str,
    mirror: &'a str,
    variant: &'a str,
    packages: &'a [&'a str],
}

/// A cached Debian minbase: its root file system tarball and its OCI layout.
#[derive(Debug)]
pub struct DebianBase {
    dir: PathBuf,
}

impl DebianBase {
    /// The bookworm minbase, built on first use on this machine (needs root, debootstrap,
    /// umoci and tar; about a minute) and shared afterwards.
    pub fn bookworm() -> &'static DebianBase {
        static BASE: OnceLock<DebianBase> = OnceLock::new();
        BASE.get_or_init(|| {
            let mirror = apt_mirror(SUITE);
            DebianBase::get_or_build(SUITE, &mirror, "minbase", &[])
        })
    }

    /// The arm64 bookworm minbase, debootstrapped through the kernel's qemu handler (which
    /// the caller registers: `rbuild system binfmt --install arm64`); a few minutes on first
    /// use, then shared like [`DebianBase::bookworm`].
    pub fn bookworm_arm64() -> &'static DebianBase {
        static BASE: OnceLock<DebianBase> = OnceLock::new();
        BASE.get_or_init(|| {
            let mirror = apt_mirror(SUITE);
            DebianBase::get_or_build_for("arm64", SUITE, &mirror, "minbase", &[])
        })
    }

    /// The cached amd64 base for these inputs, built under an exclusive lock when missing.
    pub fn get_or_build(suite: &str, mirror: &str, variant: &str, packages: &[&str]) -> Self {
        Self::get_or_build_for("amd64", suite, mirror, variant, packages)
    }

    /// The cached base of architecture `arch` (Debian's and Go's name: `amd64`, `arm64`) for
    /// these inputs, built under an exclusive lock when missing.
    pub fn get_or_build_for(
        arch: &str,
        suite: &str,
        mirror: &str,
        variant: &str,
        packages: &[&str],
    ) -> Self {
        let debootstrap = require_tool("debootstrap", "debootstrap");
        require_tool("umoci", "umoci");
        let version = run(Command::new(&debootstrap).arg("--version"));
        let mut packages: Vec<&str> = packages.to_vec();
        packages.sort_unstable();
        let key = format!(
            "{RECIPE}\narch={arch}\nsuite={suite}\nmirror={mirror}\nvariant={variant}\npackages={}\n{}",
            packages.join(","),
            version.trim()
        );
        let hash = crate::hex(&sha2::Sha256::digest(key.as_bytes()));
        let cache = cache_dir();
        std::fs::create_dir_all(&cache)
            .unwrap_or_else(|e| panic!("cannot create the test cache {}: {e}", cache.display()));
        let dir = cache.join(format!("debian-{suite}-{arch}-{variant}-{}", &hash[..16]));
        let me = DebianBase { dir };
        if me.complete() {
            return me;
        }
        let lock_path = cache.join(format!(
            "debian-{suite}-{arch}-{variant}-{}.lock",
            &hash[..16]
        ));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("cannot open the lock {}: {e}", lock_path.display()));
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
        if !me.complete() {
            let inputs = Inputs {
                arch,
                suite,
                mirror,
                variant,
                packages: &packages,
            };
            me.build(&debootstrap, &key, &inputs);
        }
        drop(lock);
        me
    }

    fn complete(&self) -> bool {
        self.dir.join("complete").is_file()
    }

    fn build(&self, debootstrap: &Path, key: &str, inputs: &Inputs<'_>) {
        let Inputs {
            arch,
            suite,
            mirror,
            variant,
            packages,
        } = *inputs;
        assert_eq!(
            rustix::process::getuid().as_raw(),
            0,
            "building the Debian base image needs root (debootstrap)"
        );
        let tmp = self.dir.with_extension("tmp");
        if tmp.exists() {
            run(Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(&tmp));
        }
        std::fs::create_dir_all(&tmp).expect("create the base's build dir");
        let rootfs = tmp.join("rootfs");
        let log = tmp.join("debootstrap.log");
        let mut cmd = Command::new(debootstrap);
        cmd.arg(format!("--arch={arch}"))
            .arg(format!("--variant={variant}"));
        if !packages.is_empty() {
            cmd.arg(format!("--include={}", packages.join(",")));
        }
        cmd.arg(suite).arg(&rootfs).arg(mirror);
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run debootstrap");
        std::fs::write(&log, [out.stdout.as_slice(), &out.stderr].concat()).expect("write log");
        assert!(
            out.status.success(),
            "debootstrap {suite} from {mirror} failed ({}); its log is {}:\n{}",
            out.status,
            log.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        trim(&rootfs);
        run(Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-C"])
            .arg(&rootfs)
            .args(["-cf"])
            .arg(tmp.join("rootfs.tar"))
            .arg("."));
        let layout = tmp.join("oci");
        let image = format!("{}:{TAG}", layout.display());
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        run(Command::new("umoci").args(["new", "--image", &image]));
        run(Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(&rootfs)
            .arg("/"));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--architecture",
            arch,
            "--os",
            "linux",
            "--config.env",
            &format!("PATH={DEBIAN_PATH}"),
            "--config.cmd",
            "bash",
        ]));
        run(Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&rootfs));
        std::fs::write(tmp.join("complete"), key).expect("mark the base complete");
        if self.dir.exists() {
            run(Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(&self.dir));
        }
        std::fs::rename(&tmp, &self.dir).expect("move the base into the cache");
    }

    /// The root file system as a tar archive (numeric owners), for `rbuild import`.
    pub fn rootfs_tar(&self) -> PathBuf {
        self.dir.join("rootfs.tar")
    }

    /// The OCI image layout (tag `bookworm`).
    pub fn layout(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// `skopeo copy` of the base to `registry`/`dest` (e.g. `debian:bookworm`).
    pub fn push(&self, registry: &Registry, dest: &str) {
        crate::skopeo_push(&self.layout(), TAG, registry, dest, Format::DockerV2s2);
    }
}

/// Removes what a distribution image does not ship: downloaded packages and package lists,
/// device nodes (a container runtime provides /dev), the host's resolv.conf and hostname
/// copied in by debootstrap; adds the apt configuration of Debian's images
/// ([`DOCKER_CLEAN`]).
fn trim(rootfs: &Path) {
    for (dir, keep) in [
        ("var/cache/apt/archives", &["partial", "lock"]),
        ("var/lib/apt/lists", &["partial", "lock"]),
    ] {
        let dir = rootfs.join(dir);
        for entry in std::fs::read_dir(&dir).expect("read an apt directory") {
            let entry = entry.expect("apt directory entry");
            if !keep.iter().any(|k| entry.file_name() == *k) {
                std::fs::remove_file(entry.path()).expect("remove a package or package list");
            }
        }
    }
    let dev = rootfs.join("dev");
    for entry in std::fs::read_dir(&dev).expect("read the base's /dev") {
        let path = entry.expect("dev entry").path();
        run(Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&path));
    }
    for file in ["etc/resolv.conf", "etc/hostname"] {
        let _ = std::fs::remove_file(rootfs.join(file));
    }
    std::fs::write(rootfs.join("etc/apt/apt.conf.d/docker-clean"), DOCKER_CLEAN)
        .expect("write docker-clean");
}

/// The first mirror the machine's apt sources (`/etc/apt/sources.list` and the deb822 files
/// in `/etc/apt/sources.list.d/`) name for `suite`, or deb.debian.org's.
pub fn apt_mirror(suite: &str) -> String {
    let mut texts = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let deb822 = path.extension().is_some_and(|e| e == "sources");
            if let Ok(text) = std::fs::read_to_string(&path) {
                texts.push((deb822, text));
            }
        }
    }
    texts
        .iter()
        .find_map(|(deb822, text)| {
            if *deb822 {
                mirror_deb822(text, suite)
            } else {
                mirror_one_line(text, suite)
            }
        })
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

fn mirror_deb822(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let types = field("Types")?;
        let suites = field("Suites")?;
        if !types.split_whitespace().any(|t| t == "deb")
            || !suites.split_whitespace().any(|s| s == suite)
        {
            return None;
        }
        field("URIs")?.split_whitespace().next().map(str::to_string)
    })
}

fn mirror_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line
            .split_whitespace()
            .filter(|w| !w.starts_with('[') && !w.ends_with(']'));
        if words.next()? != "deb" {
            return None;
        }
        let uri = words.next()?;
        (words.next()? == suite).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_read_from_both_source_formats() {
        let deb822 = "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_deb822(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_deb822(deb822, "trixie"), None);
        let one = "deb-src http://src.example/debian bookworm main\ndeb [arch=amd64] http://one.example/debian bookworm main\n";
        assert_eq!(
            mirror_one_line(one, "bookworm").as_deref(),
            Some("http://one.example/debian")
        );
    }
}
