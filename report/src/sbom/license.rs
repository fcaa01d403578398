//! Licence names as packages declare them, and their SPDX identifiers.
//!
//! Debian's copyright files use short names of their own (`GPL-2+`, `Expat`, `BSD-3-clause`);
//! Python and npm metadata often use SPDX identifiers already. A name this table knows
//! becomes its SPDX identifier; any other becomes `LicenseRef-NAME` in SPDX documents (with
//! the name as its extracted text) and a licence `name` in CycloneDX.

/// Known names (compared without case) and the SPDX identifier each stands for.
const KNOWN: &[(&str, &str)] = &[
    ("0BSD", "0BSD"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("AGPL-3.0", "AGPL-3.0-only"),
    ("AGPL-3.0-only", "AGPL-3.0-only"),
    ("AGPL-3.0-or-later", "AGPL-3.0-or-later"),
    ("Apache 2.0", "Apache-2.0"),
    ("Apache License 2.0", "Apache-2.0"),
    ("Apache-2", "Apache-2.0"),
    ("Apache-2.0", "Apache-2.0"),
    ("Artistic-2.0", "Artistic-2.0"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("BSL-1.0", "BSL-1.0"),
    ("CC0", "CC0-1.0"),
    ("CC0-1.0", "CC0-1.0"),
    ("curl", "curl"),
    ("Expat", "MIT"),
    ("FSFAP", "FSFAP"),
    ("FSFUL", "FSFUL"),
    ("FSFULLR", "FSFULLR"),
    ("GFDL-1.2+", "GFDL-1.2-or-later"),
    ("GFDL-1.3", "GFDL-1.3-only"),
    ("GFDL-1.3+", "GFDL-1.3-or-later"),
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-2.0", "GPL-2.0-only"),
    ("GPL-2.0-only", "GPL-2.0-only"),
    ("GPL-2.0-or-later", "GPL-2.0-or-later"),
    ("GPL-2.0+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("GPL-3.0", "GPL-3.0-only"),
    ("GPL-3.0-only", "GPL-3.0-only"),
    ("GPL-3.0-or-later", "GPL-3.0-or-later"),
    ("GPL-3.0+", "GPL-3.0-or-later"),
    ("ISC", "ISC"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-2.1-only", "LGPL-2.1-only"),
    ("LGPL-2.1-or-later", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("LGPL-3.0-only", "LGPL-3.0-only"),
    ("LGPL-3.0-or-later", "LGPL-3.0-or-later"),
    ("MIT", "MIT"),
    ("MIT License", "MIT"),
    ("MIT-0", "MIT-0"),
    ("MPL-1.1", "MPL-1.1"),
    ("MPL-2.0", "MPL-2.0"),
    ("OpenSSL", "OpenSSL"),
    ("PSF-2.0", "PSF-2.0"),
    ("Python-2.0", "Python-2.0"),
    ("Unlicense", "Unlicense"),
    ("WTFPL", "WTFPL"),
    ("X11", "X11"),
    ("Zlib", "Zlib"),
];

/// The SPDX identifier a licence name stands for, when this table knows it.
pub fn spdx_id(name: &str) -> Option<&'static str> {
    let name = name.trim();
    KNOWN
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, id)| *id)
}

/// `text` as the tail of an SPDX identifier: every character but ASCII letters, digits, `.`
/// and `-` made a `-`.
pub(crate) fn id_tail(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The `LicenseRef-` identifier of a name SPDX has no identifier for (see [`id_tail`]).
pub fn license_ref(name: &str) -> String {
    format!("LicenseRef-{}", id_tail(name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_spdx() {
        assert_eq!(spdx_id("GPL-2+"), Some("GPL-2.0-or-later"));
        assert_eq!(spdx_id("bsd-3-clause"), Some("BSD-3-Clause"));
        assert_eq!(spdx_id("Expat"), Some("MIT"));
        assert_eq!(spdx_id("public-domain"), None);
        assert_eq!(
            license_ref("GPL-2+ or Artistic"),
            "LicenseRef-GPL-2--or-Artistic"
        );
    }
}
