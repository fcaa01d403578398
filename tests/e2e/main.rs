//! End-to-end tests of the `rbuild` binary. One test binary; shared helpers in `support`.

mod login;
mod pullpush;
mod store;
mod support;
