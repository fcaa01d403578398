//! COPY, ADD and WORKDIR: the executor's file operations read the sources (context
//! selection, another stage's or image's snapshots, heredocs, downloads) and the parent's
//! snapshots, and write the result straight into a layer; ADD URLs are downloaded here.

use std::io::{Seek as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use rbuild_cache::action::LayerRecord;
use rbuild_compiler::plan::CopyOp;

use super::Settings;
use super::solver::StepEnv;

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
pub fn download(settings: &Settings, url: &str, checksum: Option<&str>) -> anyhow::Result<Download> {
    let tmp = settings.store.tmp_dir();
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(&tmp)
        .with_context(|| format!("cannot create a temp file in {}", tmp.display()))?;
    let mut writer = file.as_file().try_clone().context("cannot open the download file")?;
    let mut resetter = file.as_file().try_clone().context("cannot open the download file")?;
    let mut reset = move || -> std::io::Result<()> {
        resetter.set_len(0)?;
        resetter.rewind().map(|_| ())
    };
    let rt = crate::commands::registry::runtime()?;
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

/// Runs a COPY or ADD step.
pub fn copy(env: &StepEnv<'_>, _copy: &CopyOp) -> anyhow::Result<Option<LayerRecord>> {
    anyhow::bail!("{}: COPY is not available in this build of rbuild", env.op.description)
}

/// Runs WORKDIR's directory creation.
pub fn mkdir(env: &StepEnv<'_>, _path: &str, _user: &str) -> anyhow::Result<Option<LayerRecord>> {
    anyhow::bail!("{}: WORKDIR is not available in this build of rbuild", env.op.description)
}
