//! End-to-end tests of the `rbuild` binary. One test binary; shared helpers in `support`.

mod login;
mod plan;
mod pullpush;
mod report;
mod run;
mod store;
mod support;
