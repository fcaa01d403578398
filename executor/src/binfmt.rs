//! Running other architectures' binaries: the kernel's binfmt_misc handlers and Debian's qemu
//! user-mode emulators.
//!
//! A RUN step of a foreign stage (an `arm64` stage on an `amd64` machine) runs its binaries
//! through an emulator the kernel starts for it: binfmt_misc matches the first bytes of every
//! executed file against its registered handlers and runs the handler's interpreter with the
//! file. The sandbox can use a handler only when it has the fix-binary flag (`F`): the kernel
//! opened the interpreter when it was registered, so it needs no path inside the step's root
//! file system. [`handler_for`] finds one for a platform by matching the ELF header that
//! platform's binaries start with; [`install`] registers Debian's `qemu-user-static` handlers
//! (as root). No emulator is ever downloaded: the handlers name files of the host's packages.

use std::path::{Path, PathBuf};

use rbuild_compiler::plan::Platform;

/// Where the kernel's binfmt_misc file system is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Where Debian's `qemu-user-static` puts its handler definitions (systemd's binfmt.d format).
pub const DEBIAN_BINFMT_D: &str = "/usr/lib/binfmt.d";

/// Why emulation is unavailable or cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// No usable handler for the platform.
    #[error(
        "cannot run binaries for {platform} on this {host} machine: no emulator for {platform} is registered with the kernel's binfmt_misc{detail}; as root, run `apt-get install qemu-user-static` and `rbuild system binfmt --install {arch}`"
    )]
    NoHandler {
        /// The platform asked for.
        platform: String,
        /// This machine's platform.
        host: String,
        /// The architecture to install.
        arch: String,
        /// What was found instead (a handler without the fix-binary flag, a disabled one).
        detail: String,
    },
    /// rbuild knows no qemu emulator for the architecture.
    #[error("no qemu user-mode emulator is known for architecture {arch:?}")]
    UnknownArch {
        /// The architecture.
        arch: String,
    },
    /// Debian's handler definition is missing: the package is not installed.
    #[error(
        "{path}: no such file: install Debian's qemu-user-static (`apt-get install qemu-user-static`) for the {arch} emulator"
    )]
    MissingDefinition {
        /// The definition file.
        path: PathBuf,
        /// The architecture.
        arch: String,
    },
    /// A handler definition or binfmt_misc entry cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A handler definition is not in binfmt_misc's `:name:type:offset:magic:mask:interpreter:flags` form.
    #[error("{path}: not a binfmt_misc handler definition: {line:?}")]
    BadDefinition {
        /// The file.
        path: PathBuf,
        /// The line.
        line: String,
    },
    /// binfmt_misc cannot be mounted or written (not root, or the kernel lacks it).
    #[error(
        "cannot register the {name} handler with binfmt_misc ({path}): registering handlers needs root"
    )]
    Register {
        /// The handler's name.
        name: String,
        /// The file written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A registered binfmt_misc handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Its name (`qemu-aarch64`).
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interpreter the kernel runs.
    pub interpreter: PathBuf,
    /// Its flags (`OPF`).
    pub flags: String,
    /// Where in the file the magic starts.
    pub offset: usize,
    /// The bytes to match (magic handlers only; empty for extension handlers).
    pub magic: Vec<u8>,
    /// The mask applied before matching (all ones when the entry has none).
    pub mask: Vec<u8>,
}

impl Handler {
    /// Whether the kernel opened the interpreter at registration (`F`), so that it runs in
    /// any mount namespace.
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }

    /// Whether a file starting with `header` is run by this handler.
    pub fn matches(&self, header: &[u8]) -> bool {
        if self.magic.is_empty() {
            return false;
        }
        self.magic.iter().enumerate().all(|(i, m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header
                .get(self.offset + i)
                .is_some_and(|b| b & mask == m & mask)
        })
    }
}

/// The ELF identification an architecture's executables start with: class, byte order and
/// machine (`e_machine`), as an executable (`ET_EXEC`) header's first 20 bytes.
fn elf_header(arch: &str) -> Option<[u8; 20]> {
    // (64-bit, little-endian, e_machine)
    let (wide, little, machine): (bool, bool, u16) = match arch {
        "amd64" => (true, true, 62),
        "386" => (false, true, 3),
        "arm64" => (true, true, 183),
        "arm" => (false, true, 40),
        "ppc64le" => (true, true, 21),
        "ppc64" => (true, false, 21),
        "s390x" => (true, false, 22),
        "riscv64" => (true, true, 243),
        "mips64le" => (true, true, 8),
        "mipsle" => (false, true, 8),
        "loong64" => (true, true, 258),
        _ => return None,
    };
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if wide { 2 } else { 1 };
    h[5] = if little { 1 } else { 2 };
    h[6] = 1;
    let (etype, mach) = if little {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    } else {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    };
    h[16..18].copy_from_slice(&etype);
    h[18..20].copy_from_slice(&mach);
    Some(h)
}

/// The name Debian's qemu package gives an architecture's emulator (`qemu-aarch64`).
pub fn qemu_name(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "qemu-x86_64",
        "386" => "qemu-i386",
        "arm64" => "qemu-aarch64",
        "arm" => "qemu-arm",
        "ppc64le" => "qemu-ppc64le",
        "ppc64" => "qemu-ppc64",
        "s390x" => "qemu-s390x",
        "riscv64" => "qemu-riscv64",
        "mips64le" => "qemu-mips64el",
        "mipsle" => "qemu-mipsel",
        "loong64" => "qemu-loongarch64",
        _ => return None,
    })
}

/// The handlers registered with the kernel (none when binfmt_misc is not mounted).
pub fn handlers() -> Result<Vec<Handler>, BinfmtError> {
    handlers_in(Path::new(BINFMT_DIR))
}

/// The handlers registered in the binfmt_misc directory `dir`.
pub fn handlers_in(dir: &Path) -> Result<Vec<Handler>, BinfmtError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        let path = entry.path();
        let text = std::fs::read_to_string(&path).map_err(|source| BinfmtError::Read {
            path: path.clone(),
            source,
        })?;
        out.push(parse_entry(&name, &text));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a binfmt_misc entry file (`enabled`, `interpreter PATH`, `flags: OPF`, `offset N`,
/// `magic HEX`, `mask HEX`).
fn parse_entry(name: &str, text: &str) -> Handler {
    let mut h = Handler {
        name: name.to_string(),
        enabled: false,
        interpreter: PathBuf::new(),
        flags: String::new(),
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in text.lines() {
        let (key, value) = line.split_once([' ', ':']).unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "enabled" => h.enabled = true,
            "interpreter" => h.interpreter = PathBuf::from(value),
            "flags" => h.flags = value.to_string(),
            "offset" => h.offset = value.parse().unwrap_or(0),
            "magic" => h.magic = hex_bytes(value),
            "mask" => h.mask = hex_bytes(value),
            _ => {}
        }
    }
    h
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Whether this machine runs `platform`'s binaries itself, without an emulator.
pub fn runs_natively(platform: &Platform) -> bool {
    Platform::host().runs(platform)
}

/// The enabled fix-binary handler that runs `platform`'s executables, or why there is none.
/// `Ok(None)` when the machine runs them natively.
pub fn handler_for(platform: &Platform) -> Result<Option<Handler>, BinfmtError> {
    if runs_natively(platform) {
        return Ok(None);
    }
    let host = Platform::host();
    let no_handler = |detail: String| BinfmtError::NoHandler {
        platform: platform.to_string(),
        host: host.to_string(),
        arch: platform.architecture.clone(),
        detail,
    };
    let Some(header) = elf_header(&platform.architecture) else {
        return Err(no_handler(String::new()));
    };
    let matching: Vec<Handler> = handlers()?
        .into_iter()
        .filter(|h| h.matches(&header))
        .collect();
    if let Some(h) = matching.iter().find(|h| h.enabled && h.fix_binary()) {
        return Ok(Some(h.clone()));
    }
    let detail = match matching.first() {
        Some(h) if !h.enabled => format!(" (handler {} is disabled)", h.name),
        Some(h) => format!(
            " (handler {} lacks the fix-binary flag F, so the sandbox cannot reach {})",
            h.name,
            h.interpreter.display()
        ),
        None => String::new(),
    };
    Err(no_handler(detail))
}

/// A handler definition of systemd's binfmt.d format, ready to be written to `register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The handler's name (the line's first field).
    pub name: String,
    /// The whole line.
    pub line: String,
    /// Its flags (the last field).
    pub flags: String,
}

/// Debian's definition of the qemu handler for `arch`, read from `dir`
/// ([`DEBIAN_BINFMT_D`]).
pub fn debian_definition(dir: &Path, arch: &str) -> Result<Definition, BinfmtError> {
    let qemu = qemu_name(arch).ok_or_else(|| BinfmtError::UnknownArch {
        arch: arch.to_string(),
    })?;
    let path = dir.join(format!("{qemu}.conf"));
    let text = std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BinfmtError::MissingDefinition {
                path: path.clone(),
                arch: arch.to_string(),
            }
        } else {
            BinfmtError::Read {
                path: path.clone(),
                source,
            }
        }
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .unwrap_or("")
        .to_string();
    let fields: Vec<&str> = line.split(':').collect();
    if line.len() < 2 || fields.len() != 8 || !fields[0].is_empty() || fields[1].is_empty() {
        return Err(BinfmtError::BadDefinition { path, line });
    }
    Ok(Definition {
        name: fields[1].to_string(),
        flags: fields[7].to_string(),
        line,
    })
}

/// What [`install`] did for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The handler was registered now.
    Registered(String),
    /// A handler of that name was there already (left as it is).
    Present(String),
    /// The machine runs the architecture natively.
    Native,
}

/// Registers Debian's qemu handlers for `arches` (Go names: `arm64`, `arm`, `riscv64`),
/// mounting binfmt_misc first when it is not mounted. Needs root. A definition without the
/// fix-binary flag gets it, since sandboxes need it.
pub fn install(arches: &[String]) -> Result<Vec<(String, Installed)>, BinfmtError> {
    let dir = Path::new(BINFMT_DIR);
    let register = dir.join("register");
    if !register.exists() {
        rustix::mount::mount(
            "binfmt_misc",
            dir,
            "binfmt_misc",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .map_err(|e| BinfmtError::Register {
            name: "binfmt_misc".into(),
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
    }
    let mut out = Vec::new();
    for arch in arches {
        let platform = Platform::new("linux", arch, None);
        if runs_natively(&platform) {
            out.push((arch.clone(), Installed::Native));
            continue;
        }
        let def = debian_definition(Path::new(DEBIAN_BINFMT_D), &platform.architecture)?;
        if dir.join(&def.name).exists() {
            out.push((arch.clone(), Installed::Present(def.name)));
            continue;
        }
        let line = if def.flags.contains('F') {
            def.line.clone()
        } else {
            format!("{}F", def.line)
        };
        std::fs::write(&register, line.as_bytes()).map_err(|source| BinfmtError::Register {
            name: def.name.clone(),
            path: register.clone(),
            source,
        })?;
        out.push((arch.clone(), Installed::Registered(def.name)));
    }
    Ok(out)
}

/// The architectures Debian's qemu-user-static offers emulators for, among those rbuild
/// knows, in Go's names.
pub fn known_arches() -> &'static [&'static str] {
    &[
        "amd64", "386", "arm64", "arm", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le",
        "mipsle", "loong64",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn entries_parse_and_match_their_architecture_only() {
        let h = parse_entry("qemu-aarch64", AARCH64);
        assert!(h.enabled && h.fix_binary());
        assert_eq!(h.flags, "POF");
        assert_eq!(
            h.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        assert_eq!(h.magic.len(), 20);
        assert!(h.matches(&elf_header("arm64").unwrap()));
        for other in ["amd64", "arm", "riscv64", "s390x", "ppc64le"] {
            assert!(!h.matches(&elf_header(other).unwrap()), "{other}");
        }
        // A shared object (ET_DYN) matches too: the mask lets e_type be 2 or 3.
        let mut dynamic = elf_header("arm64").unwrap();
        dynamic[16] = 3;
        assert!(h.matches(&dynamic));
        let off = parse_entry(
            "x",
            "disabled\ninterpreter /x\nflags: \noffset 0\nmagic 7f454c46\n",
        );
        assert!(!off.enabled && !off.fix_binary());
        assert!(
            off.matches(&elf_header("s390x").unwrap()),
            "no mask: every byte counts"
        );
    }

    #[test]
    fn debian_definitions_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("qemu-aarch64.conf"),
            "# comment\n:qemu-aarch64:M::\\x7f\\x45\\x4c\\x46:\\xff\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n",
        )
        .unwrap();
        let d = debian_definition(dir.path(), "arm64").unwrap();
        assert_eq!(d.name, "qemu-aarch64");
        assert_eq!(d.flags, "OPF");
        let err = debian_definition(dir.path(), "riscv64").unwrap_err();
        assert!(err.to_string().contains("qemu-riscv64.conf"), "{err}");
        assert!(
            err.to_string().contains("apt-get install qemu-user-static"),
            "{err}"
        );
        std::fs::write(dir.path().join("qemu-arm.conf"), "qemu-arm M 0\n").unwrap();
        let err = debian_definition(dir.path(), "arm").unwrap_err();
        assert!(matches!(err, BinfmtError::BadDefinition { .. }), "{err}");
        assert!(matches!(
            debian_definition(dir.path(), "sparc").unwrap_err(),
            BinfmtError::UnknownArch { .. }
        ));
    }

    #[test]
    fn every_known_arch_has_a_header_and_an_emulator_name() {
        for arch in known_arches() {
            assert!(elf_header(arch).is_some(), "{arch}");
            assert!(qemu_name(arch).is_some(), "{arch}");
        }
        assert!(runs_natively(&Platform::host()));
    }
}
