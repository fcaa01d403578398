//! Image platforms: the `os/arch[/variant]` triples of `--platform`, `FROM --platform`, image
//! configs and index entries.
//!
//! Every [`Platform`] this crate hands out is normalised the way the OCI tooling normalises
//! (containerd's rules, which BuildKit and buildx apply to every `--platform`): Go's names for
//! the architecture (`aarch64` is `arm64`, `x86_64` is `amd64`, `armhf` is `arm/v7`), the
//! default variant filled in where the architecture has one that matters (`arm` is `arm/v7`),
//! and dropped where it adds nothing (`arm64/v8` is `arm64`, `amd64/v1` is `amd64`). Two
//! spellings of one platform therefore compare equal, print the same, and give the same
//! `TARGETPLATFORM`, `TARGETARCH` and `TARGETVARIANT`.
//!
//! [`Platform::candidates`] is the order in which the entries of an image index satisfy a
//! platform (an `arm/v7` machine also runs `arm/v6` and `arm/v5` binaries, an `amd64` one
//! `386`), and [`Platform::pick`] chooses an index entry by it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a platform specifier could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Not `os`, `arch`, `os/arch` or `os/arch/variant`, or a part holds characters a
    /// platform never has.
    #[error("invalid platform {spec:?}: {reason}")]
    Invalid {
        /// The specifier as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A single word that names neither a known operating system nor a known architecture.
    #[error(
        "invalid platform {spec:?}: neither a known operating system nor a known architecture (expected os/arch[/variant], e.g. linux/arm64)"
    )]
    Unknown {
        /// The specifier as given.
        spec: String,
    },
}

/// An image platform, normalised: `linux/amd64`, `linux/arm64`, `linux/arm/v7`. It reads
/// from and writes to the OCI platform object (`os`, `architecture`, `variant`), normalised
/// on the way in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "PlatformObject")]
pub struct Platform {
    /// The operating system (`linux`).
    pub os: String,
    /// The architecture in Go's names (`amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`,
    /// `riscv64`).
    pub architecture: String,
    /// The variant (`v7`, `v6`, `v8.2`), empty when there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// The platform object as an image config or index entry spells it.
#[derive(Deserialize)]
struct PlatformObject {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl From<PlatformObject> for Platform {
    fn from(o: PlatformObject) -> Self {
        Platform::new(&o.os, &o.architecture, o.variant.as_deref())
    }
}

/// Operating systems Go knows (a single-word `--platform` naming one keeps the host's
/// architecture).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Architectures Go knows, after normalisation (a single-word `--platform` naming one is a
/// Linux platform).
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "arm64",
    "arm64be",
    "armbe",
    "loong64",
    "mips",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "mipsle",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl Platform {
    /// A normalised platform from its parts, e.g. an index entry's or an image config's
    /// (`variant` empty or absent when there is none).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let (architecture, variant) = normalise_arch(architecture, variant.unwrap_or(""));
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Platform::new("linux", "amd64", None)
    }

    /// The platform of the machine this process runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            // Go's names for the rest are the ones Rust uses after normalisation
            // (`x86_64`, `aarch64`) or the same (`s390x`, `riscv64`, `arm`).
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// Parses a platform specifier as `--platform` and `FROM --platform` take it: `os/arch`,
    /// `os/arch/variant`, a lone architecture (`arm64`: a Linux platform) or a lone operating
    /// system (`linux`: the host's architecture), in any letter case.
    pub fn parse(spec: &str) -> Result<Self, PlatformError> {
        let invalid = |reason| PlatformError::Invalid {
            spec: spec.to_string(),
            reason,
        };
        let text = spec.trim();
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.contains('*') {
            return Err(invalid("wildcards are not supported"));
        }
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 3 {
            return Err(invalid("expected os/arch[/variant]"));
        }
        let fit = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !parts.iter().all(fit) {
            return Err(invalid(
                "each part must be letters, digits, '.', '_' or '-' (expected os/arch[/variant])",
            ));
        }
        match parts.as_slice() {
            [word] => {
                let lower = word.to_ascii_lowercase();
                let os = Platform::new(&lower, "", None).os;
                if KNOWN_OS.contains(&os.as_str()) {
                    let host = Platform::host();
                    return Ok(Platform { os, ..host });
                }
                let p = Platform::new("linux", &lower, None);
                if KNOWN_ARCH.contains(&p.architecture.as_str()) {
                    Ok(p)
                } else {
                    Err(PlatformError::Unknown {
                        spec: spec.to_string(),
                    })
                }
            }
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => unreachable!("one to three parts"),
        }
    }

    /// Parses a comma-separated list (`linux/amd64,linux/arm64`), dropping repeats (two
    /// spellings of one platform are one) and keeping the first order.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, PlatformError> {
        let mut out: Vec<Platform> = Vec::new();
        for spec in list.split(',') {
            let p = Platform::parse(spec)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The platforms whose images run here, best first: this one, then the older variants of
    /// its architecture and the narrower architectures its machines also run (`amd64` runs
    /// `386`; `arm/v7` runs `v6` and `v5`; `arm64` runs 32-bit `arm` up to `v8`). Index entries
    /// are chosen in this order, as containerd and BuildKit choose them.
    pub fn candidates(&self) -> Vec<Platform> {
        let with_variant = |arch: &str, variant: String| Platform {
            os: self.os.clone(),
            architecture: arch.to_string(),
            variant,
        };
        let mut out = vec![self.clone()];
        match self.architecture.as_str() {
            "amd64" => {
                if let Some(n) = variant_number(&self.variant) {
                    for v in (1..n).rev() {
                        let variant = if v == 1 {
                            String::new()
                        } else {
                            format!("v{v}")
                        };
                        out.push(with_variant("amd64", variant));
                    }
                }
                out.push(with_variant("386", String::new()));
            }
            "arm" => {
                if let Some(n) = variant_number(&self.variant) {
                    for v in (5..n).rev() {
                        out.push(with_variant("arm", format!("v{v}")));
                    }
                }
            }
            "arm64" => {
                let variants = arm64_variants(&self.variant);
                if !variants.is_empty() {
                    out = variants
                        .into_iter()
                        .map(|v| with_variant("arm64", v))
                        .collect();
                    // Every arm64 machine of a known variant runs 32-bit arm code up to v8.
                    out.extend(with_variant("arm", "v8".into()).candidates());
                }
            }
            _ => {}
        }
        out
    }

    /// The automatic build arguments that describe this platform, as BuildKit defines them
    /// for `prefix` `TARGET` and `BUILD`: `{prefix}PLATFORM` (`linux/arm/v7`), `{prefix}OS`,
    /// `{prefix}OSVERSION` (empty: the platform has no OS version), `{prefix}ARCH`,
    /// `{prefix}VARIANT` (empty when there is none).
    pub fn args(&self, prefix: &str) -> [(String, String); 5] {
        [
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}OSVERSION"), String::new()),
            (format!("{prefix}ARCH"), self.architecture.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone()),
        ]
    }

    /// Where an index entry of `entry`'s platform stands among [`Self::candidates`]: `Some(0)`
    /// for this very platform, `None` when its images do not run here.
    pub fn rank(&self, entry: &Platform) -> Option<usize> {
        self.candidates().iter().position(|c| c == entry)
    }

    /// Whether images of `other` run on this platform (see [`Self::candidates`]).
    pub fn runs(&self, other: &Platform) -> bool {
        self.rank(other).is_some()
    }

    /// The best of `entries` for this platform (the first of the best-ranked ones, as an
    /// index lists them), or `None` when none runs here.
    pub fn pick<'a, T>(&self, entries: impl IntoIterator<Item = (T, &'a Platform)>) -> Option<T> {
        let candidates = self.candidates();
        let mut best: Option<(usize, T)> = None;
        for (item, p) in entries {
            if let Some(rank) = candidates.iter().position(|c| c == p)
                && best.as_ref().is_none_or(|(b, _)| rank < *b)
            {
                best = Some((rank, item));
            }
        }
        best.map(|(_, item)| item)
    }
}

/// The number of a `vN` variant.
fn variant_number(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

/// The arm64 variants an arm64 machine of `variant` runs, best first, normalised (`v8` is
/// empty): a `v9.x` machine runs `v9.x`..`v9` and then the `v8` line up to `v8.(x+5)`; a
/// `v8.x` one `v8.x`..`v8`. Empty for a variant outside those lines.
fn arm64_variants(variant: &str) -> Vec<String> {
    let text = if variant.is_empty() { "v8" } else { variant };
    let Some(rest) = text.strip_prefix('v') else {
        return Vec::new();
    };
    let (major, minor) = match rest.split_once('.') {
        Some((a, b)) => (a.parse::<u32>().ok(), b.parse::<u32>().ok()),
        None => (rest.parse::<u32>().ok(), Some(0)),
    };
    let lines: Vec<(u32, u32)> = match (major, minor) {
        (Some(8), Some(m)) if m <= 9 => vec![(8, m)],
        (Some(9), Some(m)) if m <= 7 => vec![(9, m), (8, (m + 5).min(9))],
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for (major, top) in lines {
        for m in (0..=top).rev() {
            let v = match (major, m) {
                (8, 0) => String::new(),
                (_, 0) => format!("v{major}"),
                _ => format!("v{major}.{m}"),
            };
            out.push(v);
        }
    }
    out
}

/// Go's name and the normalised variant of an architecture.
fn normalise_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" | "i686" | "x86" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn spellings_of_one_platform_are_one() {
        for (spec, want) in [
            ("linux/amd64", "linux/amd64"),
            ("Linux/X86_64", "linux/amd64"),
            ("linux/x86-64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("amd64", "linux/amd64"),
            ("x86_64", "linux/amd64"),
            ("linux/arm64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64/8", "linux/arm64"),
            ("aarch64", "linux/arm64"),
            ("arm64", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("armhf", "linux/arm/v7"),
            ("armel", "linux/arm/v6"),
            ("arm", "linux/arm/v7"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/v5", "linux/arm/v5"),
            ("i386", "linux/386"),
            ("linux/i386", "linux/386"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("riscv64", "linux/riscv64"),
            ("macos/arm64", "darwin/arm64"),
            ("windows/amd64", "windows/amd64"),
            (" linux/s390x ", "linux/s390x"),
        ] {
            assert_eq!(p(spec).to_string(), want, "{spec}");
        }
        assert_eq!(p("linux/arm64/v8"), p("arm64"));
        assert_eq!(p("linux").os, "linux");
        assert_eq!(p("linux").architecture, Platform::host().architecture);
        assert_eq!(p("windows").os, "windows");
    }

    #[test]
    fn bad_specifiers_are_refused_naming_the_input() {
        for spec in [
            "",
            "linux//v7",
            "linux/amd64/v1/x",
            "linux/*",
            "li nux/amd64",
            "/amd64",
        ] {
            let err = Platform::parse(spec).unwrap_err();
            assert!(
                matches!(err, PlatformError::Invalid { .. }),
                "{spec}: {err}"
            );
        }
        let err = Platform::parse("pentium").unwrap_err();
        assert_eq!(
            err,
            PlatformError::Unknown {
                spec: "pentium".into()
            }
        );
        assert!(err.to_string().contains("\"pentium\""), "{err}");
    }

    #[test]
    fn lists_drop_repeats_and_keep_order() {
        let l = Platform::parse_list("linux/arm64,linux/amd64,linux/arm64/v8,aarch64").unwrap();
        let texts: Vec<String> = l.iter().map(Platform::to_string).collect();
        assert_eq!(texts, ["linux/arm64", "linux/amd64"]);
        let err = Platform::parse_list("linux/amd64,,linux/arm64").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn candidates_follow_what_each_machine_runs() {
        let texts = |spec: &str| -> Vec<String> {
            p(spec)
                .candidates()
                .iter()
                .map(Platform::to_string)
                .collect()
        };
        assert_eq!(texts("linux/amd64"), ["linux/amd64", "linux/386"]);
        assert_eq!(
            texts("linux/amd64/v3"),
            [
                "linux/amd64/v3",
                "linux/amd64/v2",
                "linux/amd64",
                "linux/386"
            ]
        );
        assert_eq!(
            texts("linux/arm/v7"),
            ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
        );
        assert_eq!(texts("linux/arm/v5"), ["linux/arm/v5"]);
        assert_eq!(
            texts("linux/arm64"),
            [
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5"
            ]
        );
        assert_eq!(
            texts("linux/arm64/v8.2")[..3],
            ["linux/arm64/v8.2", "linux/arm64/v8.1", "linux/arm64"]
        );
        let v9 = texts("linux/arm64/v9.1");
        assert_eq!(
            v9[..3],
            ["linux/arm64/v9.1", "linux/arm64/v9", "linux/arm64/v8.6"]
        );
        assert!(v9.contains(&"linux/arm64".to_string()));
        assert_eq!(texts("linux/s390x"), ["linux/s390x"]);
        assert!(!p("linux/amd64").runs(&p("linux/arm64")));
        assert!(!p("linux/386").runs(&p("linux/amd64")));
        assert!(p("linux/arm64").runs(&p("linux/arm/v7")));
        assert!(!p("windows/amd64").runs(&p("linux/amd64")));
    }

    #[test]
    fn pick_takes_the_best_ranked_then_the_first_listed() {
        let index = [
            ("a", p("linux/386")),
            ("b", p("linux/arm/v6")),
            ("c", Platform::new("linux", "arm", Some("v7"))),
            ("d", Platform::new("linux", "arm64", Some("v8"))),
            ("e", p("linux/arm64")),
            ("f", p("linux/amd64")),
        ];
        let pick = |spec: &str| p(spec).pick(index.iter().map(|(n, pl)| (*n, pl)));
        assert_eq!(pick("linux/amd64"), Some("f"));
        assert_eq!(pick("linux/arm64/v8"), Some("d"));
        assert_eq!(pick("linux/arm/v7"), Some("c"));
        assert_eq!(pick("linux/arm/v6"), Some("b"));
        assert_eq!(pick("linux/arm/v5"), None);
        assert_eq!(pick("linux/amd64/v2"), Some("f"));
        assert_eq!(pick("linux/s390x"), None);
        let only_386 = [("x", p("linux/386"))];
        assert_eq!(
            p("linux/amd64").pick(only_386.iter().map(|(n, pl)| (*n, pl))),
            Some("x")
        );
    }

    #[test]
    fn automatic_args_describe_the_platform() {
        let args = p("armhf").args("TARGET");
        let find = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(find("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(find("TARGETOS"), Some("linux"));
        assert_eq!(find("TARGETOSVERSION"), Some(""));
        assert_eq!(find("TARGETARCH"), Some("arm"));
        assert_eq!(find("TARGETVARIANT"), Some("v7"));
        let args = p("linux/arm64/v8").args("BUILD");
        assert_eq!(
            args[0],
            ("BUILDPLATFORM".to_string(), "linux/arm64".to_string())
        );
        assert_eq!(args[4], ("BUILDVARIANT".to_string(), String::new()));
    }

    #[test]
    fn serialises_without_an_empty_variant() {
        let json = serde_json::to_string(&p("linux/amd64")).unwrap();
        assert_eq!(json, r#"{"os":"linux","architecture":"amd64"}"#);
        let back: Platform = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p("linux/amd64"));
        let arm: Platform =
            serde_json::from_str(r#"{"os":"linux","architecture":"arm","variant":"v7"}"#).unwrap();
        assert_eq!(arm, p("armhf"));
        let arm64: Platform =
            serde_json::from_str(r#"{"os":"linux","architecture":"aarch64","variant":"v8"}"#)
                .unwrap();
        assert_eq!(arm64.to_string(), "linux/arm64");
    }
}
