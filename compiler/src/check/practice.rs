//! Best-practice rules on a parse of the shell in RUN.

use super::{CheckConfig, Cx};

pub(super) fn run(_cx: &mut Cx<'_>, _config: &CheckConfig) {}
