//! The bounds that keep planning a hostile Dockerfile within bounded memory, stack and time.
//!
//! Variable expansion can double a value on every line (`ENV A2=${A1}${A1}`), a RUN step
//! carries the whole environment of its stage, and a stage built on another inherits its
//! config and history, so without bounds a few hundred bytes of Dockerfile could ask for
//! gigabytes. Each bound is checked where the growth happens and crossing it is a located
//! error naming the variable or the instruction; nothing is truncated.
//!
//! | bound | value | checked |
//! | --- | --- | --- |
//! | growth of one expanded word (also a default, pattern or replacement inside it) | 1 MiB beyond its written length | by the lexer ([`crate::shell::Limits`]) |
//! | `${...}` nesting inside modifiers | 128 levels | by the lexer |
//! | growth of one instruction's expanded words together (EXPOSE port ranges included) | 2 MiB beyond its written length | per instruction |
//! | a stage's environment: ENV (inherited included) and ARGs with values, as `NAME=value` | 8 MiB | at every ENV, ARG and FROM; the same for the global ARGs |
//! | expansion work of the whole Dockerfile: one unit per byte copied, 16 per pattern-matching step | 2^28 units | by the lexer, from a budget the planner keeps |
//! | the plan's metadata: op definitions, descriptions, histories, inherited images | 128 MiB, each string counted 32 bytes over its length | at every step and stage |

use super::{CopyOp, ExecOp, ImageConfig, StageImage};

/// How many bytes expansion may add to one word beyond its length as written.
pub const MAX_WORD_GROWTH: usize = 1 << 20;

/// How many bytes expansion may add to the words of one instruction together, beyond
/// their length as written.
pub const MAX_INSTRUCTION_GROWTH: usize = 2 << 20;

/// The largest environment of a stage: its ENV entries (inherited ones included) and its
/// ARGs with values, counted as `NAME=value` bytes. The global ARGs have the same bound.
pub const MAX_ENVIRONMENT: usize = 8 << 20;

/// The work all expansions of one Dockerfile may do together, in the units of
/// [`crate::shell::Limits::max_work`]: one per byte copied from a value or a replacement,
/// [`crate::shell::STEP_COST`] per pattern-matching step.
pub const MAX_EXPANSION_WORK: u64 = 1 << 28;

/// The largest plan, in [`weight`] units: every op definition, description, history entry
/// and inherited image config.
pub const MAX_PLAN_SIZE: usize = 128 << 20;

/// What a string costs beyond its bytes, so that many small strings count for the memory
/// they take.
const STRING_OVERHEAD: usize = 32;

/// The cost of one string in [`MAX_PLAN_SIZE`] units.
pub(crate) fn weight(s: &str) -> usize {
    s.len() + STRING_OVERHEAD
}

/// The cost of a list of strings.
pub(crate) fn weight_all<S: AsRef<str>>(list: &[S]) -> usize {
    list.iter().map(|s| weight(s.as_ref())).sum()
}

fn weight_opt(s: Option<&str>) -> usize {
    s.map_or(0, weight)
}

/// The cost of an image config and history a stage inherits.
pub(crate) fn image_weight(image: &StageImage) -> usize {
    config_weight(&image.config)
        + image
            .history
            .iter()
            .map(|h| weight(&h.created_by))
            .sum::<usize>()
        + weight_opt(image.author.as_deref())
}

fn config_weight(c: &ImageConfig) -> usize {
    weight_all(&c.env)
        + c.labels
            .iter()
            .map(|(k, v)| weight(k) + weight(v))
            .sum::<usize>()
        + c.exposed_ports.keys().map(|k| weight(k)).sum::<usize>()
        + c.volumes.keys().map(|k| weight(k)).sum::<usize>()
        + weight_all(&c.on_build)
        + c.cmd.as_deref().map_or(0, weight_all)
        + c.entrypoint.as_deref().map_or(0, weight_all)
        + weight_all(&c.shell)
        + c.healthcheck.as_ref().map_or(0, |h| weight_all(&h.test))
        + weight(&c.user)
        + weight(&c.working_dir)
        + weight(&c.stop_signal)
}

/// The cost of a COPY/ADD definition.
pub(crate) fn copy_weight(c: &CopyOp) -> usize {
    c.sources
        .iter()
        .map(|s| weight(&s.path) + weight_opt(s.content.as_deref()))
        .sum::<usize>()
        + weight(&c.dest)
        + weight_opt(c.chown.as_deref())
        + weight_all(&c.excludes)
}

/// The cost of a RUN definition: argv, the environment it carries, mounts and files.
pub(crate) fn exec_weight(x: &ExecOp) -> usize {
    weight_all(&x.argv)
        + weight_all(&x.env)
        + weight_all(&x.proxy_env)
        + weight(&x.user)
        + weight(&x.cwd)
        + x.mounts
            .iter()
            .map(|m| {
                weight(&m.mount.target)
                    + weight_opt(m.mount.source.as_deref())
                    + weight_opt(m.mount.from.as_deref())
                    + weight_opt(m.mount.id.as_deref())
                    + weight_opt(m.mount.env.as_deref())
            })
            .sum::<usize>()
        + x.files
            .iter()
            .map(|f| weight(&f.path) + weight(&f.content))
            .sum::<usize>()
}
