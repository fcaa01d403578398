//! The final file system's bytes by package: the inventory of `rbuild sbom`, made from the
//! same walk of the layers as the size analysis, joined with the final file sizes.

use std::collections::BTreeMap;

use crate::analyze::Node;
use crate::model::{LayerReport, PackageSize, Packages};
use crate::sbom::{Ecosystem, Inventory, Owners};
use crate::scan::Kind;

/// The packages of an image and which of them owns each final path.
pub(crate) struct PackageIndex {
    pub inventory: Inventory,
    pub owners: Owners,
    /// One per package of the inventory, in its order.
    pub sizes: Vec<PackageSize>,
    pub unowned_bytes: u64,
    pub unowned_files: u64,
}

impl PackageIndex {
    /// Sums the final regular files each package owns.
    pub(crate) fn new(
        inventory: Inventory,
        owners: Owners,
        state: &BTreeMap<Box<str>, Node>,
        layers: &[LayerReport],
    ) -> PackageIndex {
        let mut sizes: Vec<PackageSize> = inventory
            .packages
            .iter()
            .map(|p| {
                let layer = layers.get(p.layer);
                PackageSize {
                    ecosystem: p.ecosystem.name().to_string(),
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    bytes: 0,
                    files: 0,
                    layer: p.layer,
                    instruction: layer.and_then(|l| l.instruction.clone()),
                    dockerfile_line: layer.and_then(|l| l.dockerfile_line),
                }
            })
            .collect();
        let mut unowned_bytes = 0;
        let mut unowned_files = 0;
        for (path, node) in state {
            if node.kind != Kind::File {
                continue;
            }
            match owners.get(&**path) {
                Some(&i) => {
                    sizes[i].bytes += node.size;
                    sizes[i].files += 1;
                }
                None => {
                    unowned_bytes += node.size;
                    unowned_files += 1;
                }
            }
        }
        PackageIndex {
            inventory,
            owners,
            sizes,
            unowned_bytes,
            unowned_files,
        }
    }

    /// The package that owns a path of the final file system.
    pub(crate) fn owner(&self, path: &str) -> Option<usize> {
        self.owners.get(path).copied()
    }

    /// The packages section of the report: the `top` largest.
    pub(crate) fn section(&self, final_bytes: u64, top: usize) -> Packages {
        Packages {
            count: self.sizes.len(),
            owned_bytes: final_bytes - self.unowned_bytes,
            unowned_bytes: self.unowned_bytes,
            unowned_files: self.unowned_files,
            largest: largest(&self.sizes, top),
        }
    }

    /// What kind of build tool package `index` is, when it is one.
    pub(crate) fn toolchain(&self, index: usize) -> Option<&'static str> {
        let p = &self.inventory.packages[index];
        toolchain_kind(p.ecosystem, &p.name)
    }
}

/// The `top` packages with the most bytes, largest first (then by name).
pub(crate) fn largest(sizes: &[PackageSize], top: usize) -> Vec<PackageSize> {
    let mut by_size: Vec<&PackageSize> = sizes.iter().filter(|p| p.bytes > 0).collect();
    by_size.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.version.cmp(&b.version))
    });
    by_size.into_iter().take(top).cloned().collect()
}

/// Whether a system package is a build tool that a final image does not need, and which
/// kind: a compiler, an assembler and linker, development headers, a build driver.
pub(crate) fn toolchain_kind(ecosystem: Ecosystem, name: &str) -> Option<&'static str> {
    // `gcc`, `gcc-12`, `gcc-12-x86-64-linux-gnu`: the name or the name and a suffix.
    let family = |base: &str| {
        name == base
            || name
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('-'))
    };
    let (compilers, drivers): (&[&str], &[&str]) = match ecosystem {
        Ecosystem::Deb => (
            &["gcc", "g++", "cpp", "clang", "gfortran", "rustc", "golang"],
            &["build-essential", "cargo"],
        ),
        Ecosystem::Apk => (
            &["gcc", "g++", "clang", "go", "rust"],
            &["build-base", "cargo"],
        ),
        Ecosystem::Rpm => (&["gcc", "cpp", "clang", "rust", "golang"], &["cargo"]),
        Ecosystem::Python | Ecosystem::Npm | Ecosystem::Go | Ecosystem::Java | Ecosystem::Cargo => {
            return None;
        }
    };
    if compilers.iter().any(|b| family(b)) {
        Some("a compiler")
    } else if family("binutils") || family("lld") {
        Some("an assembler and linker")
    } else if family("llvm") || drivers.contains(&name) {
        Some("a build toolchain")
    } else if name.ends_with("-dev") || (ecosystem == Ecosystem::Rpm && name.ends_with("-devel")) {
        Some("development headers")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_tools_are_told_by_name() {
        let deb = |n| toolchain_kind(Ecosystem::Deb, n);
        assert_eq!(deb("gcc-12"), Some("a compiler"));
        assert_eq!(deb("gcc"), Some("a compiler"));
        assert_eq!(deb("g++-12"), Some("a compiler"));
        assert_eq!(deb("cpp-12"), Some("a compiler"));
        assert_eq!(deb("clang-15"), Some("a compiler"));
        assert_eq!(
            deb("binutils-x86-64-linux-gnu"),
            Some("an assembler and linker")
        );
        assert_eq!(deb("libc6-dev"), Some("development headers"));
        assert_eq!(deb("build-essential"), Some("a build toolchain"));
        assert_eq!(deb("gccgo"), None);
        assert_eq!(deb("libgcc-s1"), None);
        assert_eq!(deb("libllvm15"), None);
        assert_eq!(deb("cpputest"), None);
        assert_eq!(
            toolchain_kind(Ecosystem::Apk, "build-base"),
            Some("a build toolchain")
        );
        assert_eq!(toolchain_kind(Ecosystem::Apk, "go"), Some("a compiler"));
        assert_eq!(toolchain_kind(Ecosystem::Npm, "gcc"), None);
        let rpm = |n| toolchain_kind(Ecosystem::Rpm, n);
        assert_eq!(rpm("gcc-c++"), Some("a compiler"));
        assert_eq!(rpm("glibc-devel"), Some("development headers"));
        assert_eq!(rpm("libgcc"), None);
    }
}
