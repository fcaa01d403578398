//! COPY and ADD evaluated into a copy step: heredoc, context, stage, image, URL and git
//! sources, the flags that apply to them, and the destination against the working
//! directory.

use super::{SourceRef, StageWork, Step, StepKind, join_clean, record, source_kind_of};
use crate::instructions::{self, CopyArgs, Instruction, SourceKind};
use crate::plan::context::Ctx;
use crate::plan::scope::Scope;
use crate::plan::{CopyOp, CopySource, OpKind, PlanError, PlanErrorKind, Planner};

impl Planner<'_> {
    pub(super) fn eval_copy(
        &self,
        ctx: &Ctx<'_>,
        index: usize,
        ins: &Instruction,
        c: &CopyArgs,
        scope: &mut Scope,
        work: &mut StageWork,
    ) -> Result<(), PlanError> {
        let span = ins.span;
        let kw = ins.keyword();
        let lookup = |n: &str| scope.lookup(n);
        let ex = |w: &str| ctx.expand(w, &lookup, span);
        let mut sources = Vec::new();
        let mut remote = Vec::new();
        let mut any_remote = false;
        let mut any_git = false;
        for s in &c.sources {
            if let Some(name) = instructions::heredoc_name(s)
                && let Some(h) = c.heredocs.iter().find(|h| h.name == name)
            {
                let body = h.body();
                let content = if h.expand {
                    ctx.expand_heredoc(&body, &lookup, span)?
                } else {
                    body
                };
                sources.push(CopySource {
                    path: name,
                    input: None,
                    content: Some(content),
                });
                continue;
            }
            let path = ex(s)?;
            let kind = if c.is_add {
                source_kind_of(&path)
            } else {
                SourceKind::Local
            };
            match kind {
                SourceKind::Local => {}
                SourceKind::Url => {
                    any_remote = true;
                    remote.push(OpKind::Http {
                        url: path.clone(),
                        checksum: None,
                    });
                }
                SourceKind::Git => {
                    any_remote = true;
                    any_git = true;
                    remote.push(OpKind::Git {
                        url: path.clone(),
                        keep_git_dir: c.keep_git_dir.unwrap_or(false),
                        checksum: None,
                    });
                }
            }
            sources.push(CopySource {
                path,
                input: None,
                content: None,
            });
        }
        let not_applicable = |flag: &'static str, reason: &'static str| {
            PlanError::at(
                PlanErrorKind::FlagNotApplicable {
                    instruction: kw,
                    flag,
                    reason,
                },
                span,
            )
        };
        if c.from.is_some() && any_remote {
            return Err(not_applicable(
                "from",
                "cannot be used with a URL or git source",
            ));
        }
        if c.checksum.is_some() && !any_remote {
            return Err(not_applicable(
                "checksum",
                "can only be used with a URL or git source",
            ));
        }
        if c.keep_git_dir.is_some() && !any_git {
            return Err(not_applicable(
                "keep-git-dir",
                "can only be used with a git source",
            ));
        }
        if let Some(ck) = &c.checksum {
            let ck = ex(ck)?;
            for r in &mut remote {
                match r {
                    OpKind::Http { checksum, .. } | OpKind::Git { checksum, .. } => {
                        *checksum = Some(ck.clone())
                    }
                    _ => {}
                }
            }
        }
        let mut from_value = None;
        let from = match &c.from {
            Some(f) => {
                let value = ex(f)?;
                from_value = Some(value.clone());
                if value.is_empty() {
                    return Err(PlanError::at(
                        PlanErrorKind::EmptyValue {
                            instruction: kw,
                            what: "--from",
                        },
                        span,
                    ));
                }
                ctx.resolve_from(&value, index, span, &mut work.deps)?
            }
            None => SourceRef::Context,
        };
        let chown = match &c.chown {
            Some(v) => Some(ex(v)?).filter(|v| !v.is_empty()),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(v) => {
                let value = ex(v)?;
                Some(instructions::parse_chmod(&value).map_err(|reason| {
                    PlanError::at(
                        PlanErrorKind::BadFlagValue {
                            flag: "chmod",
                            value,
                            reason,
                        },
                        span,
                    )
                })?)
            }
            None => None,
        };
        let mut excludes = Vec::new();
        for e in &c.excludes {
            excludes.push(ex(e)?);
        }
        let dest_raw = ex(&c.dest)?;
        let cwd = if scope.image.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            scope.image.config.working_dir.clone()
        };
        let mut dest = join_clean(&cwd, &dest_raw);
        if (dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".") && dest != "/" {
            dest.push('/');
        }
        let mut description = String::from(kw);
        if let Some(f) = &from_value {
            description.push_str(&format!(" --from={f}"));
        }
        if let Some(o) = &chown {
            description.push_str(&format!(" --chown={o}"));
        }
        if let Some(m) = &chmod {
            description.push_str(&format!(" --chmod={}", m.canonical()));
        }
        for s in &sources {
            description.push(' ');
            if s.content.is_some() {
                description.push_str("<<");
            }
            description.push_str(&s.path);
        }
        description.push(' ');
        description.push_str(&dest);
        let op = CopyOp {
            add: c.is_add,
            sources,
            dest,
            chown,
            chmod,
            link: c.link,
            parents: c.parents,
            excludes,
            unpack: c.unpack,
        };
        let step = Step {
            span,
            kind: StepKind::Copy { op, from, remote },
            description,
        };
        record(ctx, scope, work, step, false)
    }
}
