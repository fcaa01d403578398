//! COPY, ADD and WORKDIR: the executor's file operations read the sources (context
//! selection, another stage's or image's snapshots, heredocs, downloads) and the parent's
//! snapshots, and write the result straight into a layer; ADD URLs are downloaded here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek as _, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use rbuild_cache::action::LayerRecord;
use rbuild_compiler::plan::CopyOp;
use rbuild_executor::diff::DiffOptions;
use rbuild_executor::fileop::{self, CopyRequest, CopySourceSpec, HostDir, ImageFs, SourceFs};
use rbuild_executor::idmap::IdMap;
use rbuild_executor::sandbox;
use rbuild_executor::snapshot::LowerView;

use crate::BuildRequest;
use crate::exec::{diff_options, store_layer};
use crate::snapshots::ensure_layer_snapshots;
use crate::solver::{InputData, StepEnv};

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
) -> anyhow::Result<Download> {
    let tmp = settings.store.tmp_dir();
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(&tmp)
        .with_context(|| format!("cannot create a temp file in {}", tmp.display()))?;
    let mut writer = file
        .as_file()
        .try_clone()
        .context("cannot open the download file")?;
    let mut resetter = file
        .as_file()
        .try_clone()
        .context("cannot open the download file")?;
    let mut reset = move || -> std::io::Result<()> {
        resetter.set_len(0)?;
        resetter.rewind().map(|_| ())
    };
    let rt = crate::registry::runtime()?;
    let fetched = rt
        .block_on(rbuild_registry::fetch::fetch(
            url,
            checksum,
            &mut writer,
            &mut reset,
            4,
        ))
        .with_context(|| format!("cannot download {url}"))?;
    writer.flush().context("cannot write the download")?;
    file.as_file_mut()
        .sync_all()
        .context("cannot write the download")?;
    Ok(Download {
        digest: fetched.digest,
        file,
        name: fetched.file_name,
        mtime: fetched.last_modified,
    })
}

/// The snapshots of `layers` (bottom first) as a read-only view (topmost first).
fn view_of(settings: &BuildRequest, layers: &[LayerRecord]) -> anyhow::Result<LowerView> {
    let mut dirs =
        ensure_layer_snapshots(&settings.store, layers, &settings.id_map, &settings.limits)
            .context("cannot prepare a file system to copy from")?;
    dirs.reverse();
    Ok(LowerView::new(dirs))
}

/// Runs a COPY or ADD step.
pub fn copy(env: &StepEnv<'_>, copy: &CopyOp) -> anyhow::Result<Option<LayerRecord>> {
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
        copy_layer(env, copy, &parent, &views, &opts, w).map_err(|e| format!("{e:#}"))
    };
    store_layer(settings, |w| {
        sandbox::layer_where_readable(&settings.id_map, "COPY", write, w)?
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| env.op.description.clone())
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
) -> anyhow::Result<Option<rbuild_executor::diff::LayerInfo>> {
    let mut trees: BTreeMap<usize, Box<dyn SourceFs>> = BTreeMap::new();
    for src in &copy.sources {
        let Some(i) = src.input else { continue };
        if trees.contains_key(&i) {
            continue;
        }
        match &env.inputs[i] {
            InputData::Context(selection) => {
                let allow: BTreeSet<PathBuf> =
                    selection.entries.iter().map(|e| e.path.clone()).collect();
                trees.insert(
                    i,
                    Box::new(HostDir::new(env.source.root.clone(), Some(allow))),
                );
            }
            InputData::Layers(_) => {
                let view = views
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("internal error: no view of input {i}"))?;
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
                        .ok_or_else(|| anyhow::anyhow!("internal error: no source tree"))?,
                    pattern: src.path.clone(),
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

/// Runs WORKDIR's directory creation.
pub fn mkdir(env: &StepEnv<'_>, path: &str, user: &str) -> anyhow::Result<Option<LayerRecord>> {
    let settings = env.settings;
    let parent = view_of(settings, &env.parent_layers())?;
    let opts = diff_options(settings);
    let write = |w: &mut dyn Write, id_map: &IdMap| {
        let mut opts = opts.clone();
        opts.id_map = id_map.clone();
        fileop::mkdir(path, user, &parent, &opts, w)
            .map(|o| o.layer)
            .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
    };
    store_layer(settings, |w| {
        sandbox::layer_where_readable(&settings.id_map, "WORKDIR", write, w)?
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("cannot create the working directory {path}"))
    })
}
