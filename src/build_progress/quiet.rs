//! `quiet`: nothing on stderr; the caller still gets the summary.

use super::view::View;

/// Shows nothing.
#[derive(Debug)]
pub(super) struct Quiet;

impl View for Quiet {}
