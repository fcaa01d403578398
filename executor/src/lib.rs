//! rbuild's executor: it turns image layers into directories, runs commands
//! in namespaced sandboxes on top of them, and turns what the commands changed
//! back into OCI layers.
//!
//! - [`unpack::apply_layer`] applies a layer tar to a snapshot directory,
//!   confined to it whatever the tar says.
//! - [`snapshot`] prepares a writable root file system from snapshots: native
//!   overlayfs inside the sandbox's user namespace, or a copy.
//! - [`sandbox::Sandbox::run`] runs one process in new user, mount, pid, ipc,
//!   uts (and optionally network) namespaces, streaming its output.
//! - [`diff::write_layer`] writes the changes as a normalised, compressed
//!   layer and returns its digests.
//! - [`fileop::copy`] and [`fileop::mkdir`] compute COPY/ADD/WORKDIR from
//!   the source trees and a read-only view of the parent and write the result
//!   directly as a layer, without mounting anything.
//!
//! ```no_run
//! use rbuild_executor::unpack::{apply_layer, UnpackOptions};
//! let tar = std::fs::File::open("layer.tar")?;
//! let stats = apply_layer(tar, std::path::Path::new("/tmp/snap"), &UnpackOptions::new("sha256:abc"))?;
//! println!("{} entries", stats.entries);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod binfmt;
pub mod cgroup;
pub mod diff;
pub mod fileop;
pub mod idmap;
pub mod mounts;
mod owner;
mod rootfs;
pub mod sandbox;
pub mod snapshot;
// The one module allowed `unsafe`: every system call the rest of the crate needs that
// rustix does not wrap, each block with its SAFETY comment.
#[allow(unsafe_code)]
mod sys;
pub mod unpack;
pub mod user;
