//! End-to-end tests of the `rbuild` binary. One test binary; shared helpers in `support`.

mod build;
mod build_cache;
mod build_copy;
mod build_graph;
mod build_mounts;
mod build_output;
mod build_progress;
mod build_remote_cache;
mod build_repro;
mod build_secrets;
mod build_semantics;
mod buildkit_diff;
mod cli;
mod config;
mod distro;
mod docs;
mod errors;
mod login;
mod plan;
mod prune;
mod pullpush;
mod report;
mod rootless;
mod run;
mod store;
mod support;
