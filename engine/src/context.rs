//! Where the build context and the Dockerfile come from: a directory (the Dockerfile in it
//! or anywhere with `-f`, or on stdin with `-f -`), or stdin (`rbuild build -`): a tar
//! archive, plain or compressed, unpacked into a private temp dir of the store (a relative
//! `-f` names a file of the archive), or a bare Dockerfile with an empty context, as docker
//! does. The Dockerfile is read as [`crate::dockerfile::read_dockerfile`] says: resolved
//! inside its directory, a regular file of at most 16 MiB.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rbuild_cache::context::file::{self, MAX_DOCKERFILE_SIZE};
use rbuild_cache::context::{Context, IndexOptions, index_context};

use crate::BuildRequest;
use crate::dockerfile::DockerfileError;
use crate::exec::ExecError;

/// Why the context or the Dockerfile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// `-` as the context and `-f -`.
    #[error("the context and the Dockerfile cannot both come from stdin")]
    BothStdin,
    /// The context directory cannot be used.
    #[error("cannot use {} as the build context", path.display())]
    Use {
        /// The context argument.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context argument is not a directory.
    #[error(
        "the build context {} is not a directory (use - to read a tar archive from stdin)",
        path.display()
    )]
    NotADirectory {
        /// The context argument.
        path: PathBuf,
    },
    /// The context cannot be indexed.
    #[error("cannot read the build context {}", path.display())]
    Index {
        /// The context directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: rbuild_cache::context::ContextError,
    },
    /// The Dockerfile cannot be read.
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    /// A directory or temp file of the store cannot be made.
    #[error("cannot create {}", path.display())]
    Create {
        /// The directory (or where the temp file goes).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context on stdin cannot be read or unpacked.
    #[error("cannot {action}")]
    Stdin {
        /// What failed (`read the build context from stdin`...).
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context on stdin or at a URL is larger than the layer size limit.
    #[error("the build context read from {origin} is larger than {limit} bytes")]
    TooLarge {
        /// `stdin` or the URL.
        origin: String,
        /// The limit.
        limit: u64,
    },
    /// The context archive from stdin or a URL cannot be read or unpacked.
    #[error("cannot {action} the build context from {origin}")]
    Archive {
        /// What failed (`read`, `unpack`).
        action: &'static str,
        /// `stdin` or the URL.
        origin: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context URL cannot be downloaded.
    #[error("cannot download the build context {url}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: Box<rbuild_registry::fetch::FetchError>,
    },
    /// The runtime of downloads cannot start.
    #[error(transparent)]
    Runtime(#[from] crate::registry::RuntimeError),
    /// The temp dir of a stdin context cannot be made.
    #[error(transparent)]
    StepDir(Box<ExecError>),
    /// A `--build-context` is not `NAME=VALUE`, or its NAME is not an image-like name.
    #[error("invalid --build-context {spec:?}: {reason}")]
    BadNamedContext {
        /// The flag's value.
        spec: String,
        /// Why.
        reason: String,
    },
    /// A `--build-context` names an image that is not a valid reference.
    #[error("invalid --build-context {spec:?}: {reference:?} is not an image reference")]
    NamedContextReference {
        /// The flag's value.
        spec: String,
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: crate::names::NameError,
    },
    /// A `--build-context` has a scheme rbuild does not read.
    #[error(
        "invalid --build-context {spec:?}: unsupported context source {scheme}:// (use a \
         directory, docker-image://REF or oci-layout://DIR[:TAG|@DIGEST])"
    )]
    NamedContextScheme {
        /// The flag's value.
        spec: String,
        /// The scheme.
        scheme: String,
    },
    /// A directory `--build-context` cannot be used.
    #[error("cannot use {} as build context {name:?}", path.display())]
    NamedContextDir {
        /// The context's name.
        name: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory `--build-context` is not a directory.
    #[error("build context {name:?}: {} is not a directory", path.display())]
    NamedContextNotADirectory {
        /// The context's name.
        name: String,
        /// The path.
        path: PathBuf,
    },
    /// An `oci-layout://` context names a directory without an `index.json`.
    #[error("build context {name:?}: {} is not an OCI image layout (no index.json)", path.display())]
    NamedContextNotALayout {
        /// The context's name.
        name: String,
        /// The path.
        path: PathBuf,
    },
    /// A named context's directory cannot be indexed.
    #[error("cannot read build context {name:?} ({})", path.display())]
    NamedContextIndex {
        /// The context's name.
        name: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<rbuild_cache::context::ContextError>,
    },
    /// An `oci-layout://` context's directory cannot be read into the store.
    #[error("cannot read the OCI layout {} of build context {name:?}", path.display())]
    OciLayout {
        /// The context's name.
        name: String,
        /// The layout directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<rbuild_cache::archive::ArchiveError>,
    },
    /// An `oci-layout://` context's layout has no image of the tag or digest asked for.
    #[error(
        "the OCI layout {} of build context {name:?} has no image {wanted} (it has: {found})",
        path.display()
    )]
    OciLayoutImage {
        /// The context's name.
        name: String,
        /// The layout directory.
        path: PathBuf,
        /// The tag or digest asked for.
        wanted: String,
        /// What the layout's index names.
        found: String,
    },
    /// A git repository context cannot be fetched or checked out.
    #[error(transparent)]
    Git(Box<crate::git::GitError>),
    /// A git named context cannot be fetched or checked out.
    #[error("build context {name:?}")]
    NamedContextGit {
        /// The context's name.
        name: String,
        /// Why.
        #[source]
        source: Box<crate::git::GitError>,
    },
    /// An op names a named context the build was not given (an internal error).
    #[error("the plan reads build context {name:?}, which the build was not given")]
    UnknownNamedContext {
        /// The context's name.
        name: String,
    },
}

impl From<crate::git::GitError> for ContextError {
    fn from(e: crate::git::GitError) -> Self {
        ContextError::Git(Box::new(e))
    }
}

impl ContextError {
    /// What the user can do about it (the variable that sets the limit crossed).
    pub fn hint(&self) -> Option<&str> {
        match self {
            ContextError::TooLarge { .. } => Some(crate::error::LAYER_SIZE_HINT),
            _ => None,
        }
    }
}

fn stdin_error(action: &'static str) -> impl FnOnce(std::io::Error) -> ContextError {
    move |source| ContextError::Stdin { action, source }
}

/// The CONTEXT argument.
#[derive(Debug, Clone)]
pub enum ContextArg {
    /// A directory.
    Dir(PathBuf),
    /// `-`: stdin.
    Stdin,
    /// An `http://` or `https://` URL of a tar archive (or of a Dockerfile).
    Url(String),
    /// A git repository (`URL#REF:SUBDIR`), checked out when the build starts.
    Git(crate::git::GitUrl),
}

impl ContextArg {
    /// Checks the argument against `-f` (both cannot be stdin).
    pub fn new(arg: &Path, file: Option<&Path>) -> Result<ContextArg, ContextError> {
        if let Some(text) = arg.to_str()
            && crate::git::is_git_url(text)
        {
            return Ok(ContextArg::Git(crate::git::GitUrl::parse(text)?));
        }
        if let Some(text) = arg.to_str()
            && (text.starts_with("https://") || text.starts_with("http://"))
        {
            return Ok(ContextArg::Url(text.to_string()));
        }
        if arg.as_os_str() == "-" {
            if file.is_some_and(|f| f.as_os_str() == "-") {
                return Err(ContextError::BothStdin);
            }
            return Ok(ContextArg::Stdin);
        }
        let md = std::fs::metadata(arg).map_err(|source| ContextError::Use {
            path: arg.to_path_buf(),
            source,
        })?;
        if !md.is_dir() {
            return Err(ContextError::NotADirectory {
                path: arg.to_path_buf(),
            });
        }
        Ok(ContextArg::Dir(arg.to_path_buf()))
    }
}

/// What a `--build-context NAME=VALUE` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContextArg {
    /// A local directory: its files (after its own `.dockerignore`).
    Dir(PathBuf),
    /// `docker-image://REF`: an image, taken from the store or pulled as a base image is.
    Image(String),
    /// `oci-layout://DIR[:TAG|@DIGEST]`: an image of an OCI image layout directory, copied
    /// into the store (verified) when the build starts.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// `:TAG` or `@DIGEST` (default: the `latest` tag, or the layout's only image).
        select: Option<String>,
    },
    /// A git repository (`URL#REF:SUBDIR`), checked out when the build starts.
    Git(crate::git::GitUrl),
    /// An image already in the store, by its descriptor (a bake target built first, for
    /// another target's `target:NAME` context).
    Stored(oci_spec::image::Descriptor),
}

/// Parses one `--build-context NAME=VALUE` into the key the planner matches names with
/// ([`rbuild_compiler::plan::named_context_key`]) and what it names. VALUE is
/// `docker-image://REF`, `oci-layout://DIR[:TAG|@DIGEST]` (DIR must hold an `index.json`)
/// or a local directory (checked here: it must exist and be a directory); another
/// `SCHEME://` is refused by name.
pub fn parse_named_context(spec: &str) -> Result<(String, NamedContextArg), ContextError> {
    let bad = |reason: &str| ContextError::BadNamedContext {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (name, value) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=VALUE"))?;
    if value.is_empty() {
        return Err(bad("the value is empty"));
    }
    let key = rbuild_compiler::plan::named_context_key(name).ok_or_else(|| {
        bad("the name must be a lower-case image name other than scratch and context")
    })?;
    if let Some(reference) = value.strip_prefix("docker-image://") {
        crate::names::normalize_name(reference).map_err(|source| {
            ContextError::NamedContextReference {
                spec: spec.to_string(),
                reference: reference.to_string(),
                source,
            }
        })?;
        return Ok((key, NamedContextArg::Image(reference.to_string())));
    }
    if let Some(rest) = value.strip_prefix("oci-layout://") {
        let (dir, select) = match rest.rsplit_once('@') {
            Some((dir, digest)) => {
                digest.parse::<rbuild_cache::Digest>().map_err(|_| {
                    bad(&format!(
                        "{digest:?} is not a sha256 digest of the OCI layout"
                    ))
                })?;
                (dir, Some(digest.to_string()))
            }
            None => match rest.rsplit_once(':') {
                Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => {
                    (dir, Some(tag.to_string()))
                }
                _ => (rest, None),
            },
        };
        let dir = PathBuf::from(dir);
        if !dir.join("index.json").is_file() {
            return Err(ContextError::NamedContextNotALayout {
                name: key,
                path: dir,
            });
        }
        return Ok((key, NamedContextArg::OciLayout { dir, select }));
    }
    if crate::git::is_git_url(value) {
        let url =
            crate::git::GitUrl::parse(value).map_err(|source| ContextError::NamedContextGit {
                name: key.clone(),
                source: Box::new(source),
            })?;
        return Ok((key, NamedContextArg::Git(url)));
    }
    if let Some((scheme, _)) = value.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(ContextError::NamedContextScheme {
            spec: spec.to_string(),
            scheme: scheme.to_string(),
        });
    }
    let path = PathBuf::from(value);
    let md = std::fs::metadata(&path).map_err(|source| ContextError::NamedContextDir {
        name: key.clone(),
        path: path.clone(),
        source,
    })?;
    if !md.is_dir() {
        return Err(ContextError::NamedContextNotADirectory { name: key, path });
    }
    Ok((key, NamedContextArg::Dir(path)))
}

/// What the planner is told of the named contexts: images by reference (an OCI layout's
/// image as `NAME@DIGEST`, which [`Source::loaded_images`] resolves), directories as local
/// files.
pub fn plan_contexts(
    named: &BTreeMap<String, NamedContextArg>,
    source: &Source,
) -> BTreeMap<String, rbuild_compiler::plan::NamedContext> {
    named
        .iter()
        .filter_map(|(k, v)| {
            let planned = match v {
                NamedContextArg::Dir(_) | NamedContextArg::Git(_) => {
                    rbuild_compiler::plan::NamedContext::Local
                }
                NamedContextArg::Image(reference) => rbuild_compiler::plan::NamedContext::Image {
                    reference: reference.clone(),
                },
                NamedContextArg::OciLayout { .. } | NamedContextArg::Stored(_) => {
                    rbuild_compiler::plan::NamedContext::Image {
                        reference: source.oci.get(k)?.0.clone(),
                    }
                }
            };
            Some((k.clone(), planned))
        })
        .collect()
}

/// Copies the image `select` names (a tag or digest; default `latest`, or the only image)
/// of the OCI layout `dir` into the store, every blob verified; returns the reference the
/// plan uses for it (`NAME@DIGEST`, as BuildKit names it) and its descriptor. Only the
/// layout's `oci-layout`, `index.json` and regular files under `blobs/` are read.
fn load_oci_layout(
    settings: &BuildRequest,
    name: &str,
    dir: &Path,
    select: Option<&str>,
) -> Result<(String, oci_spec::image::Descriptor), ContextError> {
    let read_err = |source: std::io::Error| ContextError::NamedContextDir {
        name: name.to_string(),
        path: dir.to_path_buf(),
        source,
    };
    let tmp = settings.store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(|source| ContextError::Create {
        path: tmp.clone(),
        source,
    })?;
    let spool = tempfile::NamedTempFile::new_in(&tmp).map_err(|source| ContextError::Create {
        path: tmp.clone(),
        source,
    })?;
    {
        let mut b = tar::Builder::new(std::io::BufWriter::new(spool.as_file()));
        b.follow_symlinks(false);
        for file in ["oci-layout", "index.json"] {
            if dir.join(file).is_file() {
                b.append_path_with_name(dir.join(file), file)
                    .map_err(read_err)?;
            }
        }
        let blobs = dir.join("blobs");
        for alg in std::fs::read_dir(&blobs).map_err(read_err)? {
            let alg = alg.map_err(read_err)?;
            if !alg.file_type().map_err(read_err)?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(alg.path()).map_err(read_err)? {
                let blob = blob.map_err(read_err)?;
                if !blob.file_type().map_err(read_err)?.is_file() {
                    continue;
                }
                let inner = format!(
                    "blobs/{}/{}",
                    alg.file_name().to_string_lossy(),
                    blob.file_name().to_string_lossy()
                );
                b.append_path_with_name(blob.path(), inner)
                    .map_err(read_err)?;
            }
        }
        b.into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .map_err(read_err)?;
    }
    let loaded = rbuild_cache::archive::load_with(&settings.store, spool.path(), &settings.limits)
        .map_err(|source| ContextError::OciLayout {
            name: name.to_string(),
            path: dir.to_path_buf(),
            source: Box::new(source),
        })?;
    let wanted = select.unwrap_or("latest");
    let matches = |l: &rbuild_cache::archive::Loaded| {
        if wanted.starts_with("sha256:") {
            l.descriptor.digest().to_string() == wanted
        } else {
            l.names
                .iter()
                .any(|n| n == wanted || n.ends_with(&format!(":{wanted}")))
        }
    };
    let found = match loaded.iter().find(|l| matches(l)) {
        Some(l) => l,
        None if select.is_none() && loaded.len() == 1 => &loaded[0],
        None => {
            return Err(ContextError::OciLayoutImage {
                name: name.to_string(),
                path: dir.to_path_buf(),
                wanted: wanted.to_string(),
                found: loaded
                    .iter()
                    .map(|l| match l.names.first() {
                        Some(n) => format!("{n} ({})", l.descriptor.digest()),
                        None => l.descriptor.digest().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let reference = format!("{name}@{}", found.descriptor.digest());
    Ok((reference, found.descriptor.clone()))
}

/// A directory named context: where it is and its index, built on first use.
#[derive(Debug)]
struct NamedDir {
    root: PathBuf,
    index: OnceLock<Context>,
}

/// The files a context op reads: the directory they are in and their selection.
#[derive(Debug, Clone)]
pub struct ContextFiles {
    /// The context's directory.
    pub root: PathBuf,
    /// Whether an ignore file hides part of it (a bind mount then sees only the selection).
    pub filtered: bool,
}

/// The Dockerfile and the context directory of one build.
#[derive(Debug)]
pub struct Source {
    /// The Dockerfile's name for diagnostics (`Dockerfile`, the `-f` path, `<stdin>`).
    pub dockerfile_name: String,
    /// Its text.
    pub dockerfile_text: String,
    /// The Dockerfile's path for `<Dockerfile>.dockerignore` (`None`: CONTEXT/Dockerfile;
    /// `-`: from stdin).
    pub dockerfile_path: Option<PathBuf>,
    /// The context directory (a temp dir for stdin contexts).
    pub root: PathBuf,
    /// Keeps a stdin or URL context's temp dir alive.
    _temp: Option<super::exec::StepDir>,
    /// The URL of a downloaded context.
    url: Option<String>,
    index: OnceLock<Context>,
    /// The directory named contexts, by key.
    named: BTreeMap<String, NamedDir>,
    /// The `oci-layout://` contexts' images, by key: the reference the plan uses and the
    /// image.
    oci: BTreeMap<String, (String, oci_spec::image::Descriptor)>,
}

impl Source {
    /// The context index, built on first use (a build that copies nothing never walks the
    /// context). The solver reports the special files it skipped as warnings.
    pub fn index(&self, settings: &BuildRequest) -> Result<&Context, ContextError> {
        if let Some(c) = self.index.get() {
            return Ok(c);
        }
        let opts = IndexOptions {
            dockerfile: self.dockerfile_path.clone(),
            ..IndexOptions::default()
        };
        let started = std::time::Instant::now();
        let ctx = index_context(&settings.store, &self.root, &opts).map_err(|source| {
            ContextError::Index {
                path: self.root.clone(),
                source,
            }
        })?;
        let stats = ctx.stats();
        tracing::debug!(
            "context indexed in {:.2?}: {} entries, {} stated, {} hashed",
            started.elapsed(),
            ctx.entries().len(),
            stats.stated,
            stats.hashed
        );
        Ok(self.index.get_or_init(|| ctx))
    }

    /// The index of the build context (`None`) or of the directory named context `name`,
    /// with where its files are. A named context's `.dockerignore` at its root applies to
    /// it, as BuildKit reads it; `<Dockerfile>.dockerignore` is the build context's only.
    pub fn context_index(
        &self,
        settings: &BuildRequest,
        name: Option<&str>,
    ) -> Result<(&Context, ContextFiles), ContextError> {
        let Some(name) = name else {
            let index = self.index(settings)?;
            let files = ContextFiles {
                root: self.root.clone(),
                filtered: index.ignore_file().is_some(),
            };
            return Ok((index, files));
        };
        let dir = self
            .named
            .get(name)
            .ok_or_else(|| ContextError::UnknownNamedContext {
                name: name.to_string(),
            })?;
        let index = match dir.index.get() {
            Some(c) => c,
            None => {
                let opts = IndexOptions::default();
                let ctx = index_context(&settings.store, &dir.root, &opts).map_err(|source| {
                    ContextError::NamedContextIndex {
                        name: name.to_string(),
                        path: dir.root.clone(),
                        source: Box::new(source),
                    }
                })?;
                dir.index.get_or_init(|| ctx)
            }
        };
        let files = ContextFiles {
            root: dir.root.clone(),
            filtered: index.ignore_file().is_some(),
        };
        Ok((index, files))
    }

    /// The images the build loaded for its `oci-layout://` contexts, by the reference the
    /// plan names them with: base images that are not looked up by name.
    pub fn loaded_images(&self) -> BTreeMap<String, oci_spec::image::Descriptor> {
        self.oci.values().cloned().collect()
    }

    /// The URL a downloaded or git context came from (a git context's ends in `#COMMIT`).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// A stable name of the context for explain records.
    pub fn identity(&self) -> String {
        if let Some(url) = &self.url {
            url.clone()
        } else if self._temp.is_some() {
            "<stdin>".into()
        } else {
            self.root.display().to_string()
        }
    }
}

/// Reads the Dockerfile and locates (or unpacks) the context and the directory named
/// contexts.
pub fn load(settings: &BuildRequest) -> Result<Source, ContextError> {
    let mut source = load_main(settings)?;
    for (name, arg) in &settings.named_contexts {
        let path = match arg {
            NamedContextArg::Dir(path) => path,
            NamedContextArg::Image(_) => continue,
            NamedContextArg::Git(url) => {
                let checkout = crate::git::checkout(settings, url, false).map_err(|source| {
                    ContextError::NamedContextGit {
                        name: name.clone(),
                        source: Box::new(source),
                    }
                })?;
                tracing::debug!(
                    "build context {name:?}: {} at {}",
                    url.shown(),
                    checkout.commit
                );
                source.named.insert(
                    name.clone(),
                    NamedDir {
                        root: checkout.root,
                        index: OnceLock::new(),
                    },
                );
                continue;
            }
            NamedContextArg::OciLayout { dir, select } => {
                let loaded = load_oci_layout(settings, name, dir, select.as_deref())?;
                source.oci.insert(name.clone(), loaded);
                continue;
            }
            NamedContextArg::Stored(descriptor) => {
                let reference = format!("{name}@{}", descriptor.digest());
                source
                    .oci
                    .insert(name.clone(), (reference, descriptor.clone()));
                continue;
            }
        };
        let root = std::fs::canonicalize(path).map_err(|source| ContextError::NamedContextDir {
            name: name.clone(),
            path: path.clone(),
            source,
        })?;
        source.named.insert(
            name.clone(),
            NamedDir {
                root,
                index: OnceLock::new(),
            },
        );
    }
    Ok(source)
}

fn load_main(settings: &BuildRequest) -> Result<Source, ContextError> {
    let file = settings.file.as_deref();
    match &settings.context {
        ContextArg::Dir(dir) => {
            let root = std::fs::canonicalize(dir).map_err(|source| ContextError::Use {
                path: dir.clone(),
                source,
            })?;
            let (name, text) = crate::dockerfile::read_dockerfile(file, &root)?;
            let dockerfile_path = file.map(|f| {
                if f.as_os_str() == "-" || f.is_absolute() {
                    f.to_path_buf()
                } else {
                    std::env::current_dir().unwrap_or_default().join(f)
                }
            });
            Ok(Source {
                dockerfile_name: display_name(&name, file),
                dockerfile_text: text,
                dockerfile_path,
                root,
                _temp: None,
                url: None,
                index: OnceLock::new(),
                named: BTreeMap::new(),
                oci: BTreeMap::new(),
            })
        }
        ContextArg::Stdin => from_stdin(settings, file),
        ContextArg::Url(url) => from_url(settings, url, file),
        ContextArg::Git(url) => from_git(settings, url, file),
    }
}

/// `rbuild build URL#REF:SUBDIR`: the context is the checkout of the commit REF names (its
/// SUBDIR), kept in the store; the Dockerfile is read from it (a relative `-f` names a file
/// of the checkout, as BuildKit reads it).
fn from_git(
    settings: &BuildRequest,
    url: &crate::git::GitUrl,
    file: Option<&Path>,
) -> Result<Source, ContextError> {
    let checkout = crate::git::checkout(settings, url, false)?;
    let root = checkout.root;
    let (name, text) = match file {
        Some(f) if f.is_relative() && f.as_os_str() != "-" => {
            crate::dockerfile::read_dockerfile_in(&root, f, &f.display().to_string())?
        }
        _ => crate::dockerfile::read_dockerfile(file, &root)?,
    };
    Ok(Source {
        dockerfile_name: display_name(&name, file),
        dockerfile_text: text,
        dockerfile_path: file.map(Path::to_path_buf),
        root,
        _temp: None,
        url: Some(format!("{}#{}", url.shown(), checkout.commit)),
        index: OnceLock::new(),
        named: BTreeMap::new(),
        oci: BTreeMap::new(),
    })
}

fn display_name(name: &str, file: Option<&Path>) -> String {
    match file {
        None => "Dockerfile".into(),
        Some(_) => name.to_string(),
    }
}

fn from_stdin(settings: &BuildRequest, file: Option<&Path>) -> Result<Source, ContextError> {
    let tmp = settings.store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(create_error(&tmp))?;
    let mut spool = tempfile::tempfile_in(&tmp).map_err(create_error(&tmp))?;
    let limit = settings.limits.max_layer_bytes;
    let copied = std::io::copy(
        &mut std::io::stdin().lock().take(limit.saturating_add(1)),
        &mut spool,
    )
    .map_err(stdin_error("read the build context from stdin"))?;
    if copied > limit {
        return Err(ContextError::TooLarge {
            origin: "stdin".into(),
            limit,
        });
    }
    from_spool(settings, spool, file, None)
}

/// `rbuild build URL`: the context is the tar archive (plain or compressed) at `url`, or,
/// when the file there is not an archive, it is the Dockerfile and the context is empty, as
/// docker has it. The download is the one ADD makes (redirects, retries), bounded by the
/// layer size limit.
fn from_url(
    settings: &BuildRequest,
    url: &str,
    file: Option<&Path>,
) -> Result<Source, ContextError> {
    let tmp = settings.store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(create_error(&tmp))?;
    let spool = tempfile::tempfile_in(&tmp).map_err(create_error(&tmp))?;
    let limit = settings.limits.max_layer_bytes;
    let url_error = |source| ContextError::Url {
        url: url.to_string(),
        source,
    };
    let mut writer = Capped {
        inner: spool.try_clone().map_err(create_error(&tmp))?,
        left: limit,
    };
    let mut resetter = spool.try_clone().map_err(create_error(&tmp))?;
    let mut reset = move || -> std::io::Result<()> {
        resetter.set_len(0)?;
        resetter.rewind().map(|_| ())
    };
    let rt = crate::registry::runtime()?;
    let fetched = rt.block_on(rbuild_registry::fetch::fetch(
        url,
        None,
        &mut writer,
        &mut reset,
        4,
    ));
    if writer.left == 0
        && matches!(
            fetched,
            Err(rbuild_registry::fetch::FetchError::Write { .. })
        )
    {
        return Err(ContextError::TooLarge {
            origin: url.to_string(),
            limit,
        });
    }
    fetched.map_err(|e| url_error(Box::new(e)))?;
    let mut spool = spool;
    spool.rewind().map_err(create_error(&tmp))?;
    from_spool(settings, spool, file, Some(url))
}

/// A writer that refuses to write more than `left` bytes.
struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W: std::io::Write> std::io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.left = 0;
            return Err(std::io::Error::other("the build context is too large"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn create_error(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError {
    let path = path.to_path_buf();
    move |source| ContextError::Create { path, source }
}

/// The context from a spooled archive or Dockerfile read from stdin (`url` `None`) or
/// downloaded from `url`.
fn from_spool(
    settings: &BuildRequest,
    mut spool: std::fs::File,
    file: Option<&Path>,
    url: Option<&str>,
) -> Result<Source, ContextError> {
    let origin = url.unwrap_or("stdin").to_string();
    let archive_error = |action: &'static str| {
        let origin = origin.clone();
        move |source| ContextError::Archive {
            action,
            origin,
            source,
        }
    };
    spool
        .rewind()
        .map_err(stdin_error("read the spooled context"))?;
    let mut head = Vec::new();
    rbuild_compress::decompress(&spool, None)
        .map_err(archive_error("read"))?
        .take(512)
        .read_to_end(&mut head)
        .map_err(archive_error("read"))?;
    spool
        .rewind()
        .map_err(stdin_error("read the spooled context"))?;
    let dir = super::exec::StepDir::new(settings, "context-")
        .map_err(|e| ContextError::StepDir(Box::new(e)))?;
    // The context proper is a subdirectory: the step dir also holds its lock file.
    let ctx = dir.path().join("context");
    std::fs::create_dir(&ctx).map_err(create_error(&ctx))?;
    if is_tar(&head) {
        let reader = rbuild_compress::decompress(&spool, None).map_err(archive_error("read"))?;
        let mut archive = tar::Archive::new(settings.limits.reader(reader));
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        // tar's unpack refuses entries that would land outside the directory (`..`,
        // absolute paths, paths through symlinks it created).
        archive.unpack(&ctx).map_err(archive_error("unpack"))?;
        let root = ctx.clone();
        // A relative `-f` names a file of the archive, as with docker.
        let (name, text) = match file {
            Some(f) if f.is_relative() => {
                crate::dockerfile::read_dockerfile_in(&root, f, &f.display().to_string())?
            }
            _ => crate::dockerfile::read_dockerfile(file, &root)?,
        };
        Ok(Source {
            dockerfile_name: display_name(&name, file),
            dockerfile_text: text,
            dockerfile_path: file.map(Path::to_path_buf),
            root,
            _temp: Some(dir),
            url: url.map(str::to_string),
            index: OnceLock::new(),
            named: BTreeMap::new(),
            oci: BTreeMap::new(),
        })
    } else {
        // A bare Dockerfile: the context is empty.
        let shown = url.unwrap_or("<stdin>");
        let bytes =
            file::read_capped(&spool, MAX_DOCKERFILE_SIZE, Path::new(shown)).map_err(|source| {
                match url {
                    None => DockerfileError::Stdin(source),
                    Some(u) => DockerfileError::Read {
                        file: u.to_string(),
                        source,
                    },
                }
            })?;
        let (_, text) = crate::dockerfile::decode_dockerfile(shown, bytes)?;
        Ok(Source {
            dockerfile_name: shown.into(),
            dockerfile_text: text,
            dockerfile_path: Some(PathBuf::from("-")),
            root: ctx,
            _temp: Some(dir),
            url: url.map(str::to_string),
            index: OnceLock::new(),
            named: BTreeMap::new(),
            oci: BTreeMap::new(),
        })
    }
}

/// Whether a 512-byte block is a tar header: its checksum field matches.
fn is_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_are_told_from_dockerfiles() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "Dockerfile", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(is_tar(&bytes[..512]));
        let mut text = b"FROM scratch\n".to_vec();
        text.resize(512, b' ');
        assert!(!is_tar(&text));
    }
}
