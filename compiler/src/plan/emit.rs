//! Pass 2: the steps of the stages the target needs emitted as ops, in dependency order,
//! each with its definition digest and its op digest.

use super::digest::{definition_digest, op_digest};
use super::eval::{SourceRef, StageWork, Step, StepKind, source_kind_of};
use super::{Input, InputRole, Op, OpKind, Platform, StageBase};
use crate::instructions::{SourceKind, Span};

#[derive(Default)]
pub(super) struct Emitter {
    pub(super) ops: Vec<Op>,
}

impl Emitter {
    /// Emits the ops of stage `si` (`w`, whose `steps` were taken out), after the stages it
    /// depends on (`results`); returns the op that is the stage's result.
    pub(super) fn stage(
        &mut self,
        si: usize,
        w: &StageWork,
        steps: Vec<Step>,
        results: &[Option<usize>],
    ) -> usize {
        let mut current = match &w.base {
            StageBase::Scratch => {
                self.push(si, w.span, OpKind::Scratch, vec![], "FROM scratch".into())
            }
            StageBase::Image { reference } => self.push(
                si,
                w.span,
                OpKind::Image {
                    reference: reference.clone(),
                    platform: w.platform.clone(),
                },
                vec![],
                format!("FROM {reference}"),
            ),
            StageBase::Stage { index } => results[*index].expect("base stage emitted first"),
        };
        for step in steps {
            let span = step.span;
            match step.kind {
                StepKind::Exec(mut exec, mount_refs) => {
                    let mut inputs = vec![Input {
                        op: current,
                        role: InputRole::Parent,
                    }];
                    for (m, r) in exec.mounts.iter_mut().zip(mount_refs) {
                        let Some(r) = r else { continue };
                        let include = vec![m.mount.source.clone().unwrap_or_else(|| ".".into())];
                        let src = self.source(si, span, r, (include, vec![]), &w.platform, results);
                        m.input = Some(inputs.len());
                        inputs.push(Input {
                            op: src,
                            role: InputRole::Mount,
                        });
                    }
                    current = self.push(si, span, OpKind::Exec(exec), inputs, step.description);
                }
                StepKind::Copy {
                    mut op,
                    from,
                    remote,
                } => {
                    let mut inputs = vec![Input {
                        op: current,
                        role: InputRole::Parent,
                    }];
                    let local: Vec<String> = op
                        .sources
                        .iter()
                        .filter(|s| {
                            s.content.is_none() && source_kind_of(&s.path) == SourceKind::Local
                        })
                        .map(|s| s.path.clone())
                        .collect();
                    let local_input = if local.is_empty() {
                        None
                    } else {
                        let src = self.source(
                            si,
                            span,
                            from,
                            (local, op.excludes.clone()),
                            &w.platform,
                            results,
                        );
                        inputs.push(Input {
                            op: src,
                            role: InputRole::Source,
                        });
                        Some(inputs.len() - 1)
                    };
                    let mut remote_iter = remote.iter();
                    for s in &mut op.sources {
                        if s.content.is_some() {
                            continue;
                        }
                        if source_kind_of(&s.path) == SourceKind::Local {
                            s.input = local_input;
                        } else if let Some(kind) = remote_iter.next() {
                            let id = self.push(si, span, kind.clone(), vec![], s.path.clone());
                            inputs.push(Input {
                                op: id,
                                role: InputRole::Source,
                            });
                            s.input = Some(inputs.len() - 1);
                        }
                    }
                    current = self.push(si, span, OpKind::Copy(op), inputs, step.description);
                }
                StepKind::Mkdir(path, user) => {
                    current = self.push(
                        si,
                        span,
                        OpKind::Mkdir {
                            path: path.clone(),
                            user: user.clone(),
                        },
                        vec![Input {
                            op: current,
                            role: InputRole::Parent,
                        }],
                        step.description,
                    );
                }
                StepKind::Config(kw) => {
                    self.push(
                        si,
                        span,
                        OpKind::Config {
                            instruction: kw,
                            change: step.description.clone(),
                        },
                        vec![Input {
                            op: current,
                            role: InputRole::Parent,
                        }],
                        step.description,
                    );
                }
            }
        }
        current
    }

    /// The op a `--from` / mount source reads: the context (with what it selects), a stage's
    /// result (already emitted), or an image.
    fn source(
        &mut self,
        stage: usize,
        span: Span,
        from: SourceRef,
        (include, exclude): (Vec<String>, Vec<String>),
        platform: &Platform,
        results: &[Option<usize>],
    ) -> usize {
        match from {
            SourceRef::Context => self.push(
                stage,
                span,
                OpKind::Context {
                    include,
                    exclude,
                    name: None,
                },
                vec![],
                "context".into(),
            ),
            SourceRef::Named(name) => {
                let description = format!("context {name}");
                self.push(
                    stage,
                    span,
                    OpKind::Context {
                        include,
                        exclude,
                        name: Some(name),
                    },
                    vec![],
                    description,
                )
            }
            SourceRef::Stage(i) => results[i].expect("dependency emitted first"),
            SourceRef::Image(reference) => {
                let description = format!("FROM {reference}");
                self.push(
                    stage,
                    span,
                    OpKind::Image {
                        reference,
                        platform: platform.clone(),
                    },
                    vec![],
                    description,
                )
            }
        }
    }

    pub(super) fn push(
        &mut self,
        stage: usize,
        span: Span,
        kind: OpKind,
        inputs: Vec<Input>,
        description: String,
    ) -> usize {
        let definition = definition_digest(&kind);
        let digest = op_digest(&definition, &inputs, &self.ops);
        let id = self.ops.len();
        self.ops.push(Op {
            id,
            stage,
            span,
            kind,
            inputs,
            description,
            definition,
            digest,
        });
        id
    }
}
