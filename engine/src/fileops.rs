//! COPY, ADD and WORKDIR: the executor's file operations read the sources (context
//! selection, another stage's or image's snapshots, heredocs, downloads) and the parent's
//! snapshots, and write the result straight into a layer; ADD URLs are downloaded here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek as _, Write};
use std::path::PathBuf;

use rbuild_cache::action::LayerRecord;
use rbuild_compiler::plan::CopyOp;
use rbuild_executor::diff::DiffOptions;
use rbuild_executor::fileop::{self, CopyRequest, CopySourceSpec, HostDir, ImageFs, SourceFs};
use rbuild_executor::idmap::IdMap;
use rbuild_executor::sandbox;
use rbuild_executor::snapshot::LowerView;

use crate::BuildRequest;
use crate::exec::{ExecError, diff_options, store_layer};
use crate::registry::RuntimeError;
use crate::snapshots::{SnapshotError, ensure_layer_snapshots};
use crate::worker::{InputData, StepEnv};

/// Why a COPY, ADD or WORKDIR step (or an ADD download) failed.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// The store's temp dir cannot be made.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A temp file cannot be made in the store's temp dir.
    #[error("cannot create a temp file in {}", dir.display())]
    TempFile {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The downloaded file cannot be written.
    #[error("cannot write the download of {url}")]
    DownloadFile {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime did not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The download failed (or its checksum did not match).
    #[error("cannot download {url}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: rbuild_registry::fetch::FetchError,
    },
    /// The snapshots of a file system to copy from cannot be made.
    #[error("cannot prepare a file system to copy from")]
    View(#[source] Box<SnapshotError>),
    /// The user namespace that reads the files failed.
    #[error(transparent)]
    Namespace(#[from] rbuild_executor::sandbox::SandboxError),
    /// The COPY or ADD failed: its message comes from the process that wrote the layer.
    #[error("{step}")]
    Copy {
        /// The step (`COPY src /dst`).
        step: String,
        /// Why.
        #[source]
        source: StepMessage,
    },
    /// WORKDIR's directory cannot be made.
    #[error("cannot create the working directory {path}")]
    Workdir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: StepMessage,
    },
    /// The executor's file operation failed.
    #[error(transparent)]
    Executor(#[from] rbuild_executor::fileop::FileOpError),
    /// An input the step names was not handed to it.
    #[error("internal error: no source tree for input {input}")]
    NoInput {
        /// The input's index.
        input: usize,
    },
    /// The layer cannot be stored.
    #[error(transparent)]
    Layer(Box<ExecError>),
}

impl From<ExecError> for FileOpError {
    fn from(e: ExecError) -> Self {
        FileOpError::Layer(Box::new(e))
    }
}

/// The error of a layer written in another process (a user namespace), as its text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StepMessage(pub String);

/// A file fetched for `ADD <url>`.
#[derive(Debug)]
pub struct Download {
    /// `sha256:` of its content.
    pub digest: String,
    /// The file (in the store's tmp/, removed when the build ends).
    pub file: tempfile::NamedTempFile,
    /// The name docker gives it.
    pub name: String,
    /// Last-Modified.
    pub mtime: Option<i64>,
}

impl Download {
    /// The downloaded file's path.
    pub fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}

/// Downloads `url` (checked against `checksum`) into the store's tmp/.
pub fn download(
    settings: &BuildRequest,
    url: &str,
    checksum: Option<&str>,
) -> Result<Download, FileOpError> {
    let tmp = settings.store.tmp_dir();
    let file_error = |source| FileOpError::DownloadFile {
        url: url.to_string(),
        source,
    };
    std::fs::create_dir_all(&tmp).map_err(|source| FileOpError::CreateDir {
        path: tmp.clone(),
        source,
    })?;
    let mut file = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(&tmp)
        .map_err(|source| FileOpError::TempFile {
            dir: tmp.clone(),
            source,
        })?;
    let mut writer = file.as_file().try_clone().map_err(file_error)?;
    let mut resetter = file.as_file().try_clone().map_err(file_error)?;
    let mut reset = move || -> std::io::Result<()> {
        resetter.set_len(0)?;
        resetter.rewind().map(|_| ())
    };
    let store = &settings.store;
    // A copy downloaded before with an entity tag: the server is asked whether it changed.
    let before = store.downloaded(url);
    let opts = rbuild_registry::fetch::FetchOptions {
        checksum,
        attempts: 4,
        max_bytes: Some(settings.limits.max_layer_bytes),
        etag: before.as_ref().map(|r| r.etag.as_str()),
    };
    let fetch_error = |source| FileOpError::Fetch {
        url: url.to_string(),
        source,
    };
    let rt = crate::registry::runtime()?;
    let outcome = rt
        .block_on(rbuild_registry::fetch::fetch_with(
            url,
            &opts,
            &mut writer,
            &mut reset,
        ))
        .map_err(fetch_error)?;
    let fetched = match (outcome, &before) {
        (rbuild_registry::fetch::Outcome::Fetched(f), _) => f,
        (rbuild_registry::fetch::Outcome::NotModified, Some(before)) => {
            let name = rbuild_registry::fetch::url_file_name(url);
            match reuse_download(store, before, checksum, url, &mut writer) {
                Some(digest) => {
                    tracing::debug!("ADD {url}: not modified since the last download");
                    writer.flush().map_err(file_error)?;
                    return Ok(Download {
                        digest,
                        file,
                        name,
                        mtime: before.last_modified,
                    });
                }
                // The kept copy went (a prune) or does not match: downloaded in full.
                None => {
                    reset().map_err(file_error)?;
                    let opts = rbuild_registry::fetch::FetchOptions { etag: None, ..opts };
                    match rt
                        .block_on(rbuild_registry::fetch::fetch_with(
                            url,
                            &opts,
                            &mut writer,
                            &mut reset,
                        ))
                        .map_err(fetch_error)?
                    {
                        rbuild_registry::fetch::Outcome::Fetched(f) => f,
                        rbuild_registry::fetch::Outcome::NotModified => {
                            unreachable!("no entity tag was sent")
                        }
                    }
                }
            }
        }
        (rbuild_registry::fetch::Outcome::NotModified, None) => {
            unreachable!("no entity tag was sent")
        }
    };
    writer.flush().map_err(file_error)?;
    file.as_file_mut().sync_all().map_err(file_error)?;
    if let Some(etag) = &fetched.etag {
        keep_download(store, url, etag, &fetched, file.path());
    }
    Ok(Download {
        digest: fetched.digest,
        file,
        name: fetched.file_name,
        mtime: fetched.last_modified,
    })
}

/// Copies the kept content of a download the server says is unchanged into `out`: its
/// digest, or `None` when the blob went or does not satisfy `checksum`.
fn reuse_download(
    store: &rbuild_cache::Store,
    before: &rbuild_cache::downloads::Downloaded,
    checksum: Option<&str>,
    url: &str,
    out: &mut std::fs::File,
) -> Option<String> {
    let digest = before.digest.to_string();
    if checksum.is_some_and(|c| !c.eq_ignore_ascii_case(&digest)) {
        return None;
    }
    let mut blob = store.open_blob(&before.digest).ok()?;
    match std::io::copy(&mut blob, out) {
        Ok(n) if n == before.size => Some(digest),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("ADD {url}: cannot copy the kept download: {e}");
            None
        }
    }
}

/// Keeps a download that came with an entity tag as a blob, recorded for the URL, so that
/// the next build asks with `If-None-Match`. Failing to keep it costs only a download.
fn keep_download(
    store: &rbuild_cache::Store,
    url: &str,
    etag: &str,
    fetched: &rbuild_registry::fetch::Fetched,
    path: &std::path::Path,
) {
    let kept = std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|mut f| {
            let digest: rbuild_cache::Digest = fetched
                .digest
                .parse()
                .map_err(|e: rbuild_cache::DigestError| e.to_string())?;
            store
                .copy_blob(&mut f, Some(rbuild_cache::Expected::digest(digest)))
                .map_err(|e| crate::error::chain_text(&e))?;
            let record = rbuild_cache::downloads::Downloaded {
                etag: etag.to_string(),
                digest,
                size: fetched.size,
                last_modified: fetched.last_modified,
            };
            store
                .record_download(url, &record)
                .map_err(|e| crate::error::chain_text(&e))
        });
    if let Err(e) = kept {
        tracing::debug!("ADD {url}: the download is not kept for next time: {e}");
    }
}

/// The snapshots of `layers` (bottom first) as a read-only view (topmost first).
fn view_of(settings: &BuildRequest, layers: &[LayerRecord]) -> Result<LowerView, FileOpError> {
    let mut dirs = ensure_layer_snapshots(
        &settings.store,
        layers,
        &settings.id_map,
        &settings.limits,
        settings.layer_scans(),
    )
    .map_err(|e| FileOpError::View(Box::new(e)))?;
    dirs.reverse();
    Ok(LowerView::new(dirs))
}

/// Runs a COPY or ADD step.
pub fn copy(env: &StepEnv<'_>, copy: &CopyOp) -> Result<Option<LayerRecord>, FileOpError> {
    let settings = env.settings;
    let parent = if copy.link {
        LowerView::new(Vec::new())
    } else {
        view_of(settings, &env.parent_layers())?
    };
    // One source tree per input: the context (only what the COPY selected) or another
    // stage's or image's file system.
    let mut views: BTreeMap<usize, LowerView> = BTreeMap::new();
    for src in &copy.sources {
        if let Some(i) = src.input
            && let InputData::Layers(layers) = &env.inputs[i]
            && !views.contains_key(&i)
        {
            views.insert(i, view_of(settings, layers)?);
        }
    }
    let opts = diff_options(settings);
    // Without root, the files of the stages and of the parent are read from inside the
    // build's user namespace, where files of every mapped owner can be read.
    let write = |w: &mut dyn Write, id_map: &IdMap| {
        let mut opts = opts.clone();
        opts.id_map = id_map.clone();
        copy_layer(env, copy, &parent, &views, &opts, w).map_err(|e| crate::error::chain_text(&e))
    };
    store_layer(settings, |w| {
        sandbox::layer_where_readable(&settings.id_map, "COPY", write, w)?.map_err(|e| {
            FileOpError::Copy {
                step: env.op.description.clone(),
                source: StepMessage(e),
            }
        })
    })
}

/// Writes the layer of a COPY or ADD to `out`; `views` are the file systems of the stages
/// and images it copies from, `opts.id_map` maps their owners back.
fn copy_layer(
    env: &StepEnv<'_>,
    copy: &CopyOp,
    parent: &LowerView,
    views: &BTreeMap<usize, LowerView>,
    opts: &DiffOptions,
    out: &mut dyn Write,
) -> Result<Option<rbuild_executor::diff::LayerInfo>, FileOpError> {
    let mut trees: BTreeMap<usize, Box<dyn SourceFs>> = BTreeMap::new();
    for src in &copy.sources {
        let Some(i) = src.input else { continue };
        if trees.contains_key(&i) {
            continue;
        }
        match &env.inputs[i] {
            InputData::Context(selection, files) => {
                let allow: BTreeSet<PathBuf> =
                    selection.entries.iter().map(|e| e.path.clone()).collect();
                trees.insert(i, Box::new(HostDir::new(files.root.clone(), Some(allow))));
            }
            InputData::Layers(_) => {
                let view = views
                    .get(&i)
                    .cloned()
                    .ok_or(FileOpError::NoInput { input: i })?;
                trees.insert(i, Box::new(ImageFs::new(view, opts.id_map.clone())));
            }
            InputData::Download(_) => {}
        }
    }
    let mut sources = Vec::new();
    for src in &copy.sources {
        let spec = match src.input {
            None => CopySourceSpec::Inline {
                name: src.path.clone(),
                content: src.content.clone().unwrap_or_default().into_bytes(),
            },
            Some(i) => match &env.inputs[i] {
                InputData::Download(d) => CopySourceSpec::Download {
                    name: d.name.clone(),
                    path: d.path(),
                    mtime: d.mtime,
                },
                _ => CopySourceSpec::Tree {
                    fs: trees
                        .get(&i)
                        .map(|b| b.as_ref())
                        .ok_or(FileOpError::NoInput { input: i })?,
                    // ADD of a git repository copies the checkout's content.
                    pattern: if is_git_input(env, i) {
                        ".".to_string()
                    } else {
                        src.path.clone()
                    },
                },
            },
        };
        sources.push(spec);
    }
    let req = CopyRequest {
        sources,
        dest: copy.dest.clone(),
        chown: copy.chown.clone(),
        chmod: copy.chmod.clone(),
        parents: copy.parents,
        excludes: copy.excludes.clone(),
        add: copy.add,
        unpack: copy.unpack,
        link: copy.link,
        limits: env.settings.limits,
    };
    Ok(fileop::copy(&req, parent, opts, out)?.layer)
}

/// Whether input `i` of the step is a git checkout (`ADD URL#REF`).
fn is_git_input(env: &StepEnv<'_>, i: usize) -> bool {
    env.op.inputs.get(i).is_some_and(|x| {
        matches!(
            env.plan.ops[x.op].kind,
            rbuild_compiler::plan::OpKind::Git { .. }
        )
    })
}

/// Runs WORKDIR's directory creation.
pub fn mkdir(
    env: &StepEnv<'_>,
    path: &str,
    user: &str,
) -> Result<Option<LayerRecord>, FileOpError> {
    let settings = env.settings;
    let parent = view_of(settings, &env.parent_layers())?;
    let opts = diff_options(settings);
    let write = |w: &mut dyn Write, id_map: &IdMap| {
        let mut opts = opts.clone();
        opts.id_map = id_map.clone();
        fileop::mkdir(path, user, &parent, &opts, w)
            .map(|o| o.layer)
            .map_err(|e| crate::error::chain_text(&e))
    };
    store_layer(settings, |w| {
        sandbox::layer_where_readable(&settings.id_map, "WORKDIR", write, w)?.map_err(|e| {
            FileOpError::Workdir {
                path: path.to_string(),
                source: StepMessage(e),
            }
        })
    })
}
