//! Reproducibility checks (`rbuild build --reproducible-check`): the base images of a build
//! are copied into a fresh store ([`copy_images`]), the build is run again there with no
//! cache, and the two images are compared ([`compare`]). A difference is named down to the
//! first layer that differs (its index and the Dockerfile line of its history entry) and the
//! first entry of its tar stream that differs (path and what: content, mode, owner, mtime,
//! xattrs, type, link), or else the first field of the config or manifest that differs.

use std::io::{self, Read};

use oci_spec::image::Descriptor;
use rbuild_cache::{Digest, Expected, Store, StoreError};
use rbuild_tarlimits::Limits;
use serde_json::Value;

/// Why two images could not be compared, or a base image not copied.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    /// A base image could not be copied into the fresh store.
    #[error("cannot copy base image {image} into the store of the reproducibility check")]
    CopyBase {
        /// The base image's name.
        image: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// A manifest, index or config could not be read.
    #[error("cannot read {digest} of the {build}")]
    Document {
        /// Its digest.
        digest: String,
        /// `build` or `rebuild`.
        build: &'static str,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// A document is not the JSON it should be.
    #[error("{digest} of the {build} is not valid JSON")]
    Json {
        /// Its digest.
        digest: String,
        /// `build` or `rebuild`.
        build: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A layer could not be read as a tar stream.
    #[error("cannot read layer {digest} of the {build}")]
    Layer {
        /// Its digest.
        digest: String,
        /// `build` or `rebuild`.
        build: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The two builds of a check.
const BUILD: &str = "build";
const REBUILD: &str = "rebuild";

/// Copies each image (a name and its descriptor in `from`) into `to` with every blob it
/// reaches, and names it there as in `from` when `from` still names it so. Nothing is pulled.
pub fn copy_images(
    from: &Store,
    to: &Store,
    images: &[(String, Descriptor)],
) -> Result<(), ReproError> {
    for (name, descriptor) in images {
        let err = |source| ReproError::CopyBase {
            image: name.clone(),
            source,
        };
        for digest in from.reachable(descriptor, false).map_err(err)? {
            if to.has_blob(&digest) {
                continue;
            }
            let mut blob = from.open_blob(&digest).map_err(err)?;
            to.copy_blob(&mut blob, Some(Expected::digest(digest)))
                .map_err(err)?;
        }
        if from
            .resolve(name)
            .is_ok_and(|d| d.digest() == descriptor.digest())
        {
            to.tag(name, descriptor).map_err(err)?;
        }
    }
    Ok(())
}

/// The outcome of a comparison, per image (one for each platform of an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compared {
    /// The platform (`os/arch[/variant]`) of an index's image; `None` for a lone manifest.
    pub platform: Option<String>,
    /// The build's manifest digest.
    pub built: String,
    /// The rebuild's manifest digest.
    pub rebuilt: String,
    /// What differs first, when the digests differ.
    pub difference: Option<String>,
}

/// Compares the image `built` of `store` with the image `rebuilt` of `fresh`: for an index,
/// each platform's manifest with the rebuild's of the same platform.
pub fn compare(
    store: &Store,
    built: &Descriptor,
    fresh: &Store,
    rebuilt: &Descriptor,
    limits: &Limits,
) -> Result<Vec<Compared>, ReproError> {
    let a = manifests(store, built, BUILD)?;
    let b = manifests(fresh, rebuilt, REBUILD)?;
    if a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| x.0 != y.0) {
        let names = |m: &[(Option<String>, Descriptor)]| {
            m.iter()
                .map(|(p, _)| p.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Ok(vec![Compared {
            platform: None,
            built: built.digest().to_string(),
            rebuilt: rebuilt.digest().to_string(),
            difference: Some(format!(
                "the build has images for [{}], the rebuild for [{}]",
                names(&a),
                names(&b)
            )),
        }]);
    }
    let mut out = Vec::new();
    for ((platform, x), (_, y)) in a.into_iter().zip(b) {
        let difference = if x.digest() == y.digest() {
            None
        } else {
            Some(first_difference(store, &x, fresh, &y, limits)?)
        };
        out.push(Compared {
            platform,
            built: x.digest().to_string(),
            rebuilt: y.digest().to_string(),
            difference,
        });
    }
    Ok(out)
}

/// The image manifests `descriptor` stands for, with their platforms when it is an index.
fn manifests(
    store: &Store,
    descriptor: &Descriptor,
    build: &'static str,
) -> Result<Vec<(Option<String>, Descriptor)>, ReproError> {
    if rbuild_cache::is_manifest(descriptor.media_type()) {
        return Ok(vec![(None, descriptor.clone())]);
    }
    let err = |source| ReproError::Document {
        digest: descriptor.digest().to_string(),
        build,
        source,
    };
    let digest = rbuild_cache::descriptor_digest(descriptor).map_err(err)?;
    let index = store.read_index_blob(&digest).map_err(err)?;
    Ok(index
        .manifests()
        .iter()
        .filter(|m| rbuild_cache::is_manifest(m.media_type()))
        .map(|m| {
            let platform = m.platform().as_ref().map(|p| {
                let mut text = format!("{}/{}", p.os(), p.architecture());
                if let Some(v) = p.variant() {
                    text = format!("{text}/{v}");
                }
                text
            });
            (platform, m.clone())
        })
        .collect())
}

/// A JSON document of the store.
fn document(store: &Store, digest: &str, build: &'static str) -> Result<Value, ReproError> {
    let parsed: Digest = digest.parse().map_err(|_| ReproError::Json {
        digest: digest.to_string(),
        build,
        source: serde::de::Error::custom("not a digest"),
    })?;
    let bytes = store
        .read_blob(&parsed)
        .map_err(|source| ReproError::Document {
            digest: digest.to_string(),
            build,
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|source| ReproError::Json {
        digest: digest.to_string(),
        build,
        source,
    })
}

/// What differs first between two manifests whose digests differ.
fn first_difference(
    store: &Store,
    built: &Descriptor,
    fresh: &Store,
    rebuilt: &Descriptor,
    limits: &Limits,
) -> Result<String, ReproError> {
    let ma = document(store, built.digest().as_ref(), BUILD)?;
    let mb = document(fresh, rebuilt.digest().as_ref(), REBUILD)?;
    let layers = |m: &Value| m["layers"].as_array().cloned().unwrap_or_default();
    let (la, lb) = (layers(&ma), layers(&mb));
    let config_a = document(store, ma["config"]["digest"].as_str().unwrap_or(""), BUILD)?;
    let history: Vec<&Value> = config_a["history"]
        .as_array()
        .map(|h| h.iter().filter(|e| e["empty_layer"] != true).collect())
        .unwrap_or_default();
    for index in 0..la.len().max(lb.len()) {
        let (a, b) = (la.get(index), lb.get(index));
        if a.map(|l| &l["digest"]) == b.map(|l| &l["digest"]) {
            continue;
        }
        let step = history.get(index).map_or_else(
            || "no history entry".to_string(),
            |h| {
                let line = h["comment"].as_str().unwrap_or("the base image");
                let created_by = h["created_by"].as_str().unwrap_or("");
                format!("{line}: {created_by}")
            },
        );
        let what = match (a, b) {
            (Some(a), Some(b)) => first_entry_difference(store, a, fresh, b, limits)?,
            (Some(_), None) => "only the build has it".to_string(),
            _ => "only the rebuild has it".to_string(),
        };
        return Ok(format!("layer {index} ({step}) differs: {what}"));
    }
    if ma["config"]["digest"] != mb["config"]["digest"] {
        let config_b = document(
            fresh,
            mb["config"]["digest"].as_str().unwrap_or(""),
            REBUILD,
        )?;
        return Ok(format!(
            "the config differs: {}",
            json_difference("", &config_a, &config_b)
        ));
    }
    Ok(format!(
        "the manifest differs: {}",
        json_difference("", &ma, &mb)
    ))
}

/// The first path where two JSON values differ, and both values there.
fn json_difference(path: &str, a: &Value, b: &Value) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (x.get(k), y.get(k));
                if va != vb {
                    let here = format!("{path}.{k}");
                    return json_difference(
                        &here,
                        va.unwrap_or(&Value::Null),
                        vb.unwrap_or(&Value::Null),
                    );
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let (va, vb) = (x.get(i), y.get(i));
                if va != vb {
                    return json_difference(
                        &format!("{path}[{i}]"),
                        va.unwrap_or(&Value::Null),
                        vb.unwrap_or(&Value::Null),
                    );
                }
            }
        }
        _ => {}
    }
    format!("{path} is {a} in the build, {b} in the rebuild")
}

/// One tar entry's header as compared: everything but the content.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    path: Vec<u8>,
    kind: u8,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    link: Option<Vec<u8>>,
    xattrs: Vec<(String, Vec<u8>)>,
    size: u64,
}

impl Header {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Header> {
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                if let Ok(key) = ext.key()
                    && key.starts_with("SCHILY.xattr.")
                {
                    xattrs.push((key.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        xattrs.sort();
        let header = entry.header();
        Ok(Header {
            path: entry.path_bytes().into_owned(),
            kind: header.entry_type().as_byte(),
            mode: header.mode()?,
            owner: (header.uid()?, header.gid()?),
            mtime: header.mtime()?,
            link: entry.link_name_bytes().map(|l| l.into_owned()),
            xattrs,
            size: entry.size(),
        })
    }

    /// What of `self` differs from `other`, for an entry of the same path.
    fn difference(&self, other: &Header) -> Option<String> {
        let show = |b: &Option<Vec<u8>>| {
            b.as_deref()
                .map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
        };
        if self.kind != other.kind {
            Some(format!(
                "type {:?} in the build, {:?} in the rebuild",
                self.kind as char, other.kind as char
            ))
        } else if self.mode != other.mode {
            Some(format!(
                "mode {:o} in the build, {:o} in the rebuild",
                self.mode, other.mode
            ))
        } else if self.owner != other.owner {
            Some(format!(
                "owner {}:{} in the build, {}:{} in the rebuild",
                self.owner.0, self.owner.1, other.owner.0, other.owner.1
            ))
        } else if self.mtime != other.mtime {
            Some(format!(
                "mtime {} in the build, {} in the rebuild",
                self.mtime, other.mtime
            ))
        } else if self.link != other.link {
            Some(format!(
                "link target {:?} in the build, {:?} in the rebuild",
                show(&self.link),
                show(&other.link)
            ))
        } else if self.xattrs != other.xattrs {
            let names = |x: &[(String, Vec<u8>)]| {
                x.iter()
                    .map(|(k, _)| k.trim_start_matches("SCHILY.xattr.").to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            Some(format!(
                "xattrs [{}] in the build, [{}] in the rebuild",
                names(&self.xattrs),
                names(&other.xattrs)
            ))
        } else if self.size != other.size {
            Some(format!(
                "content: {} bytes in the build, {} in the rebuild",
                self.size, other.size
            ))
        } else {
            None
        }
    }
}

/// A layer's uncompressed tar stream, bounded by `limits`.
fn open_layer(
    store: &Store,
    layer: &Value,
    limits: &Limits,
    build: &'static str,
) -> Result<tar::Archive<Box<dyn Read>>, ReproError> {
    let digest = layer["digest"].as_str().unwrap_or("");
    let err = |source| ReproError::Layer {
        digest: digest.to_string(),
        build,
        source,
    };
    let parsed: Digest = digest
        .parse()
        .map_err(|_| err(io::Error::other("not a digest")))?;
    let file = store
        .open_blob(&parsed)
        .map_err(|e| err(io::Error::other(e)))?;
    let plain = rbuild_compress::decompress(file, layer["mediaType"].as_str()).map_err(err)?;
    Ok(tar::Archive::new(Box::new(limits.reader(plain))))
}

/// The first entry of two layers' tar streams that differs, walked side by side: its path
/// and what differs.
fn first_entry_difference(
    store: &Store,
    a: &Value,
    fresh: &Store,
    b: &Value,
    limits: &Limits,
) -> Result<String, ReproError> {
    let (da, db) = (
        a["digest"].as_str().unwrap_or(""),
        b["digest"].as_str().unwrap_or(""),
    );
    let ea = |source| ReproError::Layer {
        digest: da.to_string(),
        build: BUILD,
        source,
    };
    let eb = |source| ReproError::Layer {
        digest: db.to_string(),
        build: REBUILD,
        source,
    };
    let mut ta = open_layer(store, a, limits, BUILD)?;
    let mut tb = open_layer(fresh, b, limits, REBUILD)?;
    let mut xs = ta.entries().map_err(ea)?;
    let mut ys = tb.entries().map_err(eb)?;
    loop {
        let (x, y) = (xs.next(), ys.next());
        let (mut x, mut y) = match (x, y) {
            (None, None) => {
                return Ok("every entry is the same; the tar streams differ between them".into());
            }
            (Some(x), None) => {
                let mut x = x.map_err(ea)?;
                let path = show(&Header::of(&mut x).map_err(ea)?.path);
                return Ok(format!("/{path}: only in the build"));
            }
            (None, Some(y)) => {
                let mut y = y.map_err(eb)?;
                let path = show(&Header::of(&mut y).map_err(eb)?.path);
                return Ok(format!("/{path}: only in the rebuild"));
            }
            (Some(x), Some(y)) => (x.map_err(ea)?, y.map_err(eb)?),
        };
        let (hx, hy) = (
            Header::of(&mut x).map_err(ea)?,
            Header::of(&mut y).map_err(eb)?,
        );
        let path = show(&hx.path);
        if hx.path != hy.path {
            return Ok(format!(
                "/{path} in the build where the rebuild has /{}",
                show(&hy.path)
            ));
        }
        if let Some(what) = hx.difference(&hy) {
            return Ok(format!("/{path}: {what}"));
        }
        if !same_content(&mut x, &mut y).map_err(ea)? {
            return Ok(format!("/{path}: content"));
        }
    }
}

/// A tar path as shown, without `./` or a leading `/`.
fn show(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    text.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Whether two readers give the same bytes (read to the end of both when they do).
fn same_content(a: &mut impl Read, b: &mut impl Read) -> io::Result<bool> {
    let mut x = vec![0u8; 64 * 1024];
    let mut y = vec![0u8; 64 * 1024];
    loop {
        let n = fill(a, &mut x)?;
        let m = fill(b, &mut y)?;
        if x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the reader ends; the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_difference_names_the_first_differing_path() {
        let a = json!({"history": [{"created_by": "a"}, {"created_by": "b"}], "os": "linux"});
        let b = json!({"history": [{"created_by": "a"}, {"created_by": "c"}], "os": "linux"});
        assert_eq!(
            json_difference("", &a, &b),
            ".history[1].created_by is \"b\" in the build, \"c\" in the rebuild"
        );
    }
}
