//! Typed instructions: each Dockerfile instruction with its flags parsed and checked.
//!
//! Input is a list of [`RawInstruction`]s (the parser's nodes, converted by
//! `from_ast`): keyword, `--flags`, arguments split the way BuildKit's parser splits
//! them, heredocs and location. [`lower`] turns each into an [`Instruction`], rejecting
//! unknown or repeated flags, flags that do not apply, malformed modes, mounts, network
//! and security modes and durations, each with the location of the offending text.
//!
//! Values that the planner expands with build variables (`--from`, `--chown`, `--chmod`,
//! `--mount`, paths, ...) are kept as written here; the planner checks them again after
//! expansion.

pub mod flags;
pub mod from_ast;

use serde::Serialize;

pub use flags::{
    CacheSharing, Chmod, Mount, MountType, NetworkMode, SecurityMode, parse_chmod, parse_duration,
    parse_mount,
};

pub use crate::parser::{Position, Span};

/// One `--name[=value]` flag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFlag {
    /// The name without `--`.
    pub name: String,
    /// The text after the first `=`.
    pub value: Option<String>,
    /// Where it is written.
    pub span: Span,
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word (`EOF`).
    pub name: String,
    /// The file descriptor it feeds (`3<<EOF`), 0 by default.
    pub file_descriptor: u64,
    /// Whether variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// Whether leading tabs are removed (`<<-`).
    pub chomp: bool,
    /// The body, each line with its `\n`.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed from each line when `chomp` is set.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction as the parser produced it (the input of [`lower`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawInstruction {
    /// The keyword in lower case.
    pub keyword: String,
    /// The leading `--flags`.
    pub flags: Vec<RawFlag>,
    /// The arguments as BuildKit's parser splits them.
    pub args: Vec<String>,
    /// Whether the arguments were in JSON (exec) form.
    pub json: bool,
    /// Heredocs following the instruction.
    pub heredocs: Vec<Heredoc>,
    /// The instruction under ONBUILD.
    pub onbuild: Option<Box<RawInstruction>>,
    /// The instruction text with continuations joined.
    pub original: String,
    /// From the keyword to the end of the instruction.
    pub span: Span,
}

/// A shell-or-exec command line (RUN, CMD, ENTRYPOINT, HEALTHCHECK CMD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    /// The JSON elements (exec form) or the one shell text (shell form).
    pub args: Vec<String>,
    /// Whether the command is in shell form and gets wrapped with the current SHELL.
    pub shell_form: bool,
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The image or stage, unexpanded.
    pub image: String,
    /// The stage name, lower-cased.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// One name of an `ARG` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The variable name.
    pub name: String,
    /// The default value, unexpanded (quotes kept).
    pub default: Option<String>,
}

/// `RUN [--mount=...]... [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// The `--mount` values, unexpanded, with their locations.
    #[serde(skip)]
    pub mounts: Vec<(String, Span)>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
    /// Heredocs following the command.
    pub heredocs: Vec<Heredoc>,
}

/// COPY and ADD options and operands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyArgs {
    /// The sources, unexpanded (`<<NAME` for heredocs).
    pub sources: Vec<String>,
    /// The destination, unexpanded.
    pub dest: String,
    /// `--from`: a stage name, index or image.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: Option<bool>,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
    /// Heredocs used as sources.
    pub heredocs: Vec<Heredoc>,
    /// Whether this is ADD (archives unpacked, URLs and git allowed).
    pub is_add: bool,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Cmd {
        /// The test command.
        command: CommandLine,
        /// `--interval` in nanoseconds.
        interval: Option<u64>,
        /// `--timeout` in nanoseconds.
        timeout: Option<u64>,
        /// `--start-period` in nanoseconds.
        start_period: Option<u64>,
        /// `--start-interval` in nanoseconds.
        start_interval: Option<u64>,
        /// `--retries`.
        retries: Option<u64>,
    },
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "lowercase")]
pub enum InstructionKind {
    /// FROM.
    From(From),
    /// ARG, one or more names.
    Arg(Vec<ArgDecl>),
    /// ENV pairs, unexpanded.
    Env(Vec<(String, String)>),
    /// LABEL pairs, unexpanded.
    Label(Vec<(String, String)>),
    /// RUN.
    Run(Run),
    /// CMD.
    Cmd(CommandLine),
    /// ENTRYPOINT.
    Entrypoint(CommandLine),
    /// SHELL (exec form only).
    Shell(Vec<String>),
    /// WORKDIR, unexpanded.
    Workdir(String),
    /// USER, unexpanded.
    User(String),
    /// EXPOSE ports, unexpanded.
    Expose(Vec<String>),
    /// VOLUME paths, unexpanded.
    Volume(Vec<String>),
    /// STOPSIGNAL, unexpanded.
    Stopsignal(String),
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// ONBUILD: the trigger text, stored as written.
    Onbuild(String),
    /// MAINTAINER (deprecated; sets the image author).
    Maintainer(String),
    /// COPY.
    Copy(CopyArgs),
    /// ADD.
    Add(CopyArgs),
}

/// A typed instruction with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What it does.
    pub kind: InstructionKind,
    /// The instruction text as written (continuations joined).
    pub original: String,
    /// Where it is.
    pub span: Span,
}

impl Instruction {
    /// The keyword in upper case (`RUN`).
    pub fn keyword(&self) -> &'static str {
        match &self.kind {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::User(_) => "USER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::Stopsignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
        }
    }
}

/// Why an instruction is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionErrorKind {
    /// The keyword is not a Dockerfile instruction.
    #[error("unknown instruction {keyword:?}")]
    UnknownInstruction {
        /// The keyword as written, upper-cased.
        keyword: String,
    },
    /// A flag that the instruction does not take.
    #[error("unknown flag --{flag} for {instruction}")]
    UnknownFlag {
        /// The instruction.
        instruction: &'static str,
        /// The flag name.
        flag: String,
    },
    /// A single-valued flag given twice.
    #[error("flag --{flag} of {instruction} given more than once")]
    DuplicateFlag {
        /// The instruction.
        instruction: &'static str,
        /// The flag name.
        flag: String,
    },
    /// A flag without its `=value`.
    #[error("flag --{flag} of {instruction} needs a value")]
    FlagNeedsValue {
        /// The instruction.
        instruction: &'static str,
        /// The flag name.
        flag: String,
    },
    /// A boolean flag with a value other than true/false.
    #[error("flag --{flag} expects true or false, not {value:?}")]
    BadBool {
        /// The flag name.
        flag: String,
        /// The value.
        value: String,
    },
    /// A flag value that does not parse.
    #[error("invalid --{flag} value {value:?}: {reason}")]
    BadFlagValue {
        /// The flag name.
        flag: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Too few (or too many) arguments.
    #[error("{instruction} {expected}")]
    BadArguments {
        /// The instruction.
        instruction: &'static str,
        /// What it needs.
        expected: &'static str,
    },
    /// A flag that only applies to some sources.
    #[error("{instruction} --{flag} {reason}")]
    FlagNotApplicable {
        /// The instruction.
        instruction: &'static str,
        /// The flag.
        flag: String,
        /// When it applies.
        reason: &'static str,
    },
    /// An invalid stage name after `AS`.
    #[error(
        "invalid stage name {name:?}: it must start with a letter and contain only letters, digits, '-', '_' and '.'"
    )]
    BadStageName {
        /// The name.
        name: String,
    },
    /// An instruction ONBUILD cannot hold.
    #[error("{keyword} is not allowed as an ONBUILD trigger")]
    BadTrigger {
        /// The trigger keyword.
        keyword: String,
    },
    /// HEALTHCHECK with an unknown type word.
    #[error("unknown HEALTHCHECK type {word:?} (expected CMD or NONE)")]
    BadHealthcheckType {
        /// The word.
        word: String,
    },
    /// A name that must not be empty or contain `=`.
    #[error("{instruction} has an invalid name {name:?}")]
    BadName {
        /// The instruction.
        instruction: &'static str,
        /// The name.
        name: String,
    },
    /// A heredoc source without a matching heredoc.
    #[error("{instruction} source {source_word:?} names no heredoc")]
    MissingHeredoc {
        /// The instruction.
        instruction: &'static str,
        /// The `<<NAME` word.
        source_word: String,
    },
}

/// An invalid instruction with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct InstructionError {
    /// What is wrong.
    pub kind: InstructionErrorKind,
    /// Where.
    pub span: Span,
}

impl InstructionError {
    fn new(kind: InstructionErrorKind, span: Span) -> Self {
        InstructionError { kind, span }
    }

    /// Renders `file:line:col: message`, the source line and a caret; an unknown instruction
    /// gets a "did you mean" hint.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let hint = match &self.kind {
            InstructionErrorKind::UnknownInstruction { keyword } => {
                crate::parser::suggest_keyword(&keyword.to_ascii_lowercase())
                    .map(|best| format!("did you mean {}?", best.to_ascii_uppercase()))
            }
            _ => None,
        };
        crate::parser::render_diagnostic(
            &self.to_string(),
            self.span,
            hint.as_deref(),
            file_name,
            source,
        )
    }
}

/// Renders a located message in the parser's style, then each related place as
/// `note: file:line:col: ...` with its own source line and caret.
pub fn render_located(
    message: &str,
    span: Span,
    notes: &[(Span, String)],
    file_name: &str,
    source: &str,
) -> String {
    let mut out = crate::parser::render_diagnostic(message, span, None, file_name, source);
    for (nspan, note) in notes {
        out.push_str("\nnote: ");
        out.push_str(&crate::parser::render_diagnostic(
            note, *nspan, None, file_name, source,
        ));
    }
    out.push('\n');
    out
}

/// The flags an instruction accepts: (name, takes a list, boolean).
fn allowed_flags(keyword: &str) -> &'static [(&'static str, bool, bool)] {
    match keyword {
        "FROM" => &[("platform", false, false)],
        "RUN" => &[
            ("mount", true, false),
            ("network", false, false),
            ("security", false, false),
        ],
        "COPY" => &[
            ("from", false, false),
            ("chown", false, false),
            ("chmod", false, false),
            ("link", false, true),
            ("parents", false, true),
            ("exclude", true, false),
        ],
        "ADD" => &[
            ("from", false, false),
            ("chown", false, false),
            ("chmod", false, false),
            ("link", false, true),
            ("parents", false, true),
            ("exclude", true, false),
            ("checksum", false, false),
            ("keep-git-dir", false, true),
            ("unpack", false, true),
        ],
        "HEALTHCHECK" => &[
            ("interval", false, false),
            ("timeout", false, false),
            ("start-period", false, false),
            ("start-interval", false, false),
            ("retries", false, false),
        ],
        _ => &[],
    }
}

/// The flags of one instruction, checked against what it accepts.
struct Flags<'a> {
    values: Vec<(&'static str, &'a RawFlag)>,
}

impl<'a> Flags<'a> {
    fn check(keyword: &'static str, raw: &'a [RawFlag]) -> Result<Self, InstructionError> {
        let allowed = allowed_flags(keyword);
        let mut values: Vec<(&'static str, &'a RawFlag)> = Vec::new();
        for flag in raw {
            let Some(&(name, multi, boolean)) = allowed.iter().find(|(n, _, _)| *n == flag.name)
            else {
                return Err(InstructionError::new(
                    InstructionErrorKind::UnknownFlag {
                        instruction: keyword,
                        flag: flag.name.clone(),
                    },
                    flag.span,
                ));
            };
            if !multi && values.iter().any(|(n, _)| *n == name) {
                return Err(InstructionError::new(
                    InstructionErrorKind::DuplicateFlag {
                        instruction: keyword,
                        flag: flag.name.clone(),
                    },
                    flag.span,
                ));
            }
            if !boolean && flag.value.is_none() {
                return Err(InstructionError::new(
                    InstructionErrorKind::FlagNeedsValue {
                        instruction: keyword,
                        flag: flag.name.clone(),
                    },
                    flag.span,
                ));
            }
            values.push((name, flag));
        }
        Ok(Flags { values })
    }

    fn string(&self, name: &str) -> Option<(String, Span)> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| (f.value.clone().unwrap_or_default(), f.span))
    }

    fn list(&self, name: &str) -> Vec<(String, Span)> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, f)| (f.value.clone().unwrap_or_default(), f.span))
            .collect()
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, InstructionError> {
        let Some((_, f)) = self.values.iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        match f.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(InstructionError::new(
                InstructionErrorKind::BadBool {
                    flag: f.name.clone(),
                    value: f.value.clone().unwrap_or_default(),
                },
                f.span,
            )),
        }
    }

    fn bad_value(&self, name: &str, reason: String) -> InstructionError {
        let (value, span) = self.string(name).unwrap_or_default();
        InstructionError::new(
            InstructionErrorKind::BadFlagValue {
                flag: name.to_string(),
                value,
                reason,
            },
            span,
        )
    }

    fn duration(&self, name: &str) -> Result<Option<u64>, InstructionError> {
        let Some((value, _)) = self.string(name) else {
            return Ok(None);
        };
        let ns = parse_duration(&value).map_err(|r| self.bad_value(name, r))?;
        if ns != 0 && ns < 1_000_000 {
            return Err(self.bad_value(name, "it must be 0 or at least 1ms".into()));
        }
        Ok(Some(ns))
    }
}

fn upper(keyword: &str) -> Option<&'static str> {
    Some(match keyword {
        "from" => "FROM",
        "arg" => "ARG",
        "env" => "ENV",
        "label" => "LABEL",
        "run" => "RUN",
        "cmd" => "CMD",
        "entrypoint" => "ENTRYPOINT",
        "shell" => "SHELL",
        "workdir" => "WORKDIR",
        "user" => "USER",
        "expose" => "EXPOSE",
        "volume" => "VOLUME",
        "stopsignal" => "STOPSIGNAL",
        "healthcheck" => "HEALTHCHECK",
        "onbuild" => "ONBUILD",
        "maintainer" => "MAINTAINER",
        "copy" => "COPY",
        "add" => "ADD",
        _ => return None,
    })
}

/// Whether `name` is a valid stage name (BuildKit's `^[a-z][a-z0-9-_.]*$`, after
/// lower-casing).
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Lowers every instruction, stopping at the first error.
pub fn lower(raw: &[RawInstruction]) -> Result<Vec<Instruction>, InstructionError> {
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        out.push(lower_one(r)?);
    }
    Ok(out)
}

fn command_line(raw: &RawInstruction, args: &[String]) -> CommandLine {
    CommandLine {
        args: args.to_vec(),
        shell_form: !raw.json,
    }
}

fn key_values(
    raw: &RawInstruction,
    keyword: &'static str,
) -> Result<Vec<(String, String)>, InstructionError> {
    if raw.args.is_empty() || raw.args.len() % 3 != 0 {
        return Err(InstructionError::new(
            InstructionErrorKind::BadArguments {
                instruction: keyword,
                expected: "requires at least one name=value pair",
            },
            raw.span,
        ));
    }
    let mut pairs = Vec::new();
    for t in raw.args.chunks(3) {
        if t[0].is_empty() {
            return Err(InstructionError::new(
                InstructionErrorKind::BadName {
                    instruction: keyword,
                    name: t[0].clone(),
                },
                raw.span,
            ));
        }
        pairs.push((t[0].clone(), t[1].clone()));
    }
    Ok(pairs)
}

/// Lowers one instruction.
pub fn lower_one(raw: &RawInstruction) -> Result<Instruction, InstructionError> {
    let span = raw.span;
    let Some(keyword) = upper(&raw.keyword) else {
        return Err(InstructionError::new(
            InstructionErrorKind::UnknownInstruction {
                keyword: raw.keyword.to_uppercase(),
            },
            span,
        ));
    };
    let flags = Flags::check(keyword, &raw.flags)?;
    let bad_args = |expected: &'static str| {
        InstructionError::new(
            InstructionErrorKind::BadArguments {
                instruction: keyword,
                expected,
            },
            span,
        )
    };
    let args = &raw.args;
    let one_text = || -> Result<String, InstructionError> {
        match args.as_slice() {
            [a] if !a.trim().is_empty() => Ok(a.clone()),
            _ => Err(bad_args("requires exactly one argument")),
        }
    };
    let kind = match keyword {
        "FROM" => {
            let (image, name) = match args.as_slice() {
                [image] => (image.clone(), None),
                [image, r#as, name] if r#as.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(InstructionError::new(
                            InstructionErrorKind::BadStageName { name: name.clone() },
                            span,
                        ));
                    }
                    (image.clone(), Some(lower))
                }
                _ => {
                    return Err(bad_args(
                        "requires either one argument, or three: FROM <image> AS <name>",
                    ));
                }
            };
            InstructionKind::From(From {
                image,
                name,
                platform: flags.string("platform").map(|(v, _)| v),
            })
        }
        "ARG" => {
            if args.is_empty() {
                return Err(bad_args("requires at least one argument"));
            }
            let mut decls = Vec::new();
            for word in args {
                let (name, default) = match word.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (word.clone(), None),
                };
                if name.is_empty() {
                    return Err(InstructionError::new(
                        InstructionErrorKind::BadName {
                            instruction: keyword,
                            name,
                        },
                        span,
                    ));
                }
                decls.push(ArgDecl { name, default });
            }
            InstructionKind::Arg(decls)
        }
        "ENV" => InstructionKind::Env(key_values(raw, keyword)?),
        "LABEL" => InstructionKind::Label(key_values(raw, keyword)?),
        "RUN" => {
            if args.is_empty() {
                return Err(bad_args("requires at least one argument"));
            }
            let network = match flags.string("network") {
                Some((v, _)) => {
                    Some(NetworkMode::parse(&v).map_err(|r| flags.bad_value("network", r))?)
                }
                None => None,
            };
            let security = match flags.string("security") {
                Some((v, _)) => {
                    Some(SecurityMode::parse(&v).map_err(|r| flags.bad_value("security", r))?)
                }
                None => None,
            };
            let mounts = flags.list("mount");
            for (i, (value, mspan)) in mounts.iter().enumerate() {
                if value.contains('$') {
                    continue;
                }
                let parsed = parse_mount::<()>(value, i, |s| Ok(s.to_string()));
                if let Ok(Err(reason)) = parsed {
                    return Err(InstructionError::new(
                        InstructionErrorKind::BadFlagValue {
                            flag: "mount".into(),
                            value: value.clone(),
                            reason,
                        },
                        *mspan,
                    ));
                }
            }
            InstructionKind::Run(Run {
                command: command_line(raw, args),
                mounts,
                network,
                security,
                heredocs: raw.heredocs.clone(),
            })
        }
        "CMD" => InstructionKind::Cmd(command_line(raw, args)),
        "ENTRYPOINT" => InstructionKind::Entrypoint(command_line(raw, args)),
        "SHELL" => {
            if !raw.json {
                return Err(bad_args("requires the arguments in JSON form"));
            }
            if args.is_empty() {
                return Err(bad_args("requires at least one argument"));
            }
            InstructionKind::Shell(args.clone())
        }
        "WORKDIR" => InstructionKind::Workdir(one_text()?),
        "USER" => InstructionKind::User(one_text()?),
        "STOPSIGNAL" => InstructionKind::Stopsignal(one_text()?),
        "MAINTAINER" => InstructionKind::Maintainer(one_text()?),
        "EXPOSE" => {
            if args.is_empty() {
                return Err(bad_args("requires at least one argument"));
            }
            InstructionKind::Expose(args.clone())
        }
        "VOLUME" => {
            if args.is_empty() || args.iter().all(|a| a.trim().is_empty()) {
                return Err(bad_args("requires at least one argument"));
            }
            InstructionKind::Volume(args.iter().filter(|a| !a.is_empty()).cloned().collect())
        }
        "HEALTHCHECK" => lower_healthcheck(raw, &flags)?,
        "ONBUILD" => {
            let Some(inner) = &raw.onbuild else {
                return Err(bad_args("requires an instruction to run as a trigger"));
            };
            let inner_kw = inner.keyword.to_ascii_uppercase();
            if matches!(inner_kw.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(InstructionError::new(
                    InstructionErrorKind::BadTrigger { keyword: inner_kw },
                    inner.span,
                ));
            }
            // The trigger is checked now so that a bad one fails here, not in a later build.
            lower_one(inner)?;
            InstructionKind::Onbuild(trigger_text(raw, inner))
        }
        "COPY" | "ADD" => lower_copy(raw, keyword, &flags)?,
        _ => unreachable!("every keyword of upper() is handled"),
    };
    Ok(Instruction {
        kind,
        original: raw.original.clone(),
        span,
    })
}

/// The trigger as BuildKit stores it: the text after `ONBUILD`, with the trigger keyword
/// upper-cased.
fn trigger_text(raw: &RawInstruction, inner: &RawInstruction) -> String {
    let orig = raw.original.trim_start();
    let after = orig
        .get(raw.keyword.len()..)
        .unwrap_or(inner.original.as_str())
        .trim_start();
    let (kw, rest) = after.split_at(after.find(char::is_whitespace).unwrap_or(after.len()));
    format!("{}{}", kw.to_ascii_uppercase(), rest)
}

fn lower_healthcheck(
    raw: &RawInstruction,
    flags: &Flags<'_>,
) -> Result<InstructionKind, InstructionError> {
    let Some(word) = raw.args.first() else {
        return Err(InstructionError::new(
            InstructionErrorKind::BadArguments {
                instruction: "HEALTHCHECK",
                expected: "requires CMD or NONE",
            },
            raw.span,
        ));
    };
    match word.to_ascii_uppercase().as_str() {
        "NONE" => {
            if raw.args.len() > 1 {
                return Err(InstructionError::new(
                    InstructionErrorKind::BadArguments {
                        instruction: "HEALTHCHECK",
                        expected: "NONE takes no arguments",
                    },
                    raw.span,
                ));
            }
            if let Some((_, f)) = flags.values.first() {
                return Err(InstructionError::new(
                    InstructionErrorKind::FlagNotApplicable {
                        instruction: "HEALTHCHECK",
                        flag: f.name.clone(),
                        reason: "cannot be used with NONE",
                    },
                    f.span,
                ));
            }
            Ok(InstructionKind::Healthcheck(Healthcheck::None))
        }
        "CMD" => {
            let rest = &raw.args[1..];
            if rest.is_empty() {
                return Err(InstructionError::new(
                    InstructionErrorKind::BadArguments {
                        instruction: "HEALTHCHECK",
                        expected: "CMD requires a command",
                    },
                    raw.span,
                ));
            }
            let retries = match flags.string("retries") {
                Some((v, _)) => Some(v.parse::<u64>().map_err(|_| {
                    flags.bad_value("retries", "it must be a non-negative integer".into())
                })?),
                None => None,
            };
            Ok(InstructionKind::Healthcheck(Healthcheck::Cmd {
                command: command_line(raw, rest),
                interval: flags.duration("interval")?,
                timeout: flags.duration("timeout")?,
                start_period: flags.duration("start-period")?,
                start_interval: flags.duration("start-interval")?,
                retries,
            }))
        }
        _ => Err(InstructionError::new(
            InstructionErrorKind::BadHealthcheckType { word: word.clone() },
            raw.span,
        )),
    }
}

fn lower_copy(
    raw: &RawInstruction,
    keyword: &'static str,
    flags: &Flags<'_>,
) -> Result<InstructionKind, InstructionError> {
    let is_add = keyword == "ADD";
    let args: Vec<&String> = raw.args.iter().filter(|a| !a.is_empty()).collect();
    if args.len() < 2 {
        return Err(InstructionError::new(
            InstructionErrorKind::BadArguments {
                instruction: keyword,
                expected: "requires at least two arguments, but only one was provided. Destination could not be determined",
            },
            raw.span,
        ));
    }
    let (dest, sources) = args.split_last().expect("two or more arguments");
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    if !raw.json {
        for s in &sources {
            if let Some(name) = heredoc_name(s)
                && !raw.heredocs.iter().any(|h| h.name == name)
            {
                return Err(InstructionError::new(
                    InstructionErrorKind::MissingHeredoc {
                        instruction: keyword,
                        source_word: s.clone(),
                    },
                    raw.span,
                ));
            }
        }
    }
    let chmod = flags.string("chmod");
    if let Some((v, _)) = &chmod
        && !v.contains('$')
    {
        parse_chmod(v).map_err(|r| flags.bad_value("chmod", r))?;
    }
    Ok(InstructionKind::Copy(CopyArgs {
        sources,
        dest: dest.to_string(),
        from: flags.string("from").map(|(v, _)| v),
        chown: flags.string("chown").map(|(v, _)| v),
        chmod: chmod.map(|(v, _)| v),
        link: flags.boolean("link")?.unwrap_or(false),
        parents: flags.boolean("parents")?.unwrap_or(false),
        excludes: flags.list("exclude").into_iter().map(|(v, _)| v).collect(),
        checksum: flags.string("checksum").map(|(v, _)| v),
        keep_git_dir: flags.boolean("keep-git-dir")?,
        unpack: flags.boolean("unpack")?,
        heredocs: if raw.json {
            Vec::new()
        } else {
            raw.heredocs.clone()
        },
        is_add,
    }))
    .map(|k| match k {
        InstructionKind::Copy(c) if is_add => InstructionKind::Add(c),
        other => other,
    })
}

/// The heredoc name of a `<<NAME`, `<<-NAME`, `<<"NAME"` or `3<<NAME` word.
pub fn heredoc_name(word: &str) -> Option<String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    (!name.is_empty()).then_some(name)
}

/// Tells a COPY/ADD source apart: a URL, a git repository, or a local path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A path or glob in the context or another stage.
    Local,
    /// An `http(s)://` URL (ADD only).
    Url,
    /// A git repository (ADD only).
    Git,
}

/// Classifies an ADD source like BuildKit: git for `git@`, `git://` and URLs ending in
/// `.git` (or with a `.git#` fragment), URL for other `http(s)://`.
pub fn source_kind(src: &str) -> SourceKind {
    let lower = src.to_ascii_lowercase();
    let is_url = lower.starts_with("http://") || lower.starts_with("https://");
    let path = lower.split('#').next().unwrap_or_default();
    if lower.starts_with("git@")
        || lower.starts_with("git://")
        || lower.starts_with("ssh://")
        || (is_url && (path.ends_with(".git") || lower.contains(".git#")))
    {
        SourceKind::Git
    } else if is_url {
        SourceKind::Url
    } else {
        SourceKind::Local
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A tiny line splitter that builds [`RawInstruction`]s the way the parser does for
    //! the simple cases unit tests use (no quotes in ENV/LABEL, no line continuations).
    use super::*;

    pub(crate) fn split(line_no: usize, line: &str) -> RawInstruction {
        let line = line.trim();
        let (kw, mut rest) = line.split_at(line.find(' ').unwrap_or(line.len()));
        let mut flags = Vec::new();
        loop {
            rest = rest.trim_start();
            if !rest.starts_with("--") {
                break;
            }
            let end = rest.find(' ').unwrap_or(rest.len());
            let word = &rest[2..end];
            let col = line.len() - rest.len() + 1;
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.to_string(), None),
            };
            flags.push(RawFlag {
                name,
                value,
                span: Span::on_line(line_no, col, end),
            });
            rest = &rest[end..];
        }
        let rest = rest.trim();
        let keyword = kw.to_ascii_lowercase();
        let json_args: Option<Vec<String>> = rest
            .starts_with('[')
            .then(|| serde_json::from_str(rest).ok())
            .flatten();
        let words = || {
            rest.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let mut json = false;
        let mut onbuild = None;
        let args = match keyword.as_str() {
            "run" | "cmd" | "entrypoint" | "shell" | "add" | "copy" | "volume"
                if json_args.is_some() =>
            {
                json = true;
                json_args.unwrap_or_default()
            }
            "run" | "cmd" | "entrypoint" | "shell" => {
                if rest.is_empty() {
                    vec![]
                } else {
                    vec![rest.to_string()]
                }
            }
            "env" | "label" if !rest.split_whitespace().next().unwrap_or("").contains('=') => {
                let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                vec![k.to_string(), v.trim().to_string(), String::new()]
            }
            "env" | "label" => words()
                .into_iter()
                .flat_map(|w| {
                    let (k, v) = w.split_once('=').unwrap_or((&w, ""));
                    [k.to_string(), v.to_string(), "=".to_string()]
                })
                .collect(),
            "workdir" | "user" | "maintainer" | "stopsignal" => vec![rest.to_string()],
            "healthcheck" => {
                let (first, more) = rest.split_once(' ').unwrap_or((rest, ""));
                let more = more.trim();
                let mut a = vec![first.to_string()];
                if let Ok(v) = serde_json::from_str::<Vec<String>>(more) {
                    json = true;
                    a.extend(v);
                } else if !more.is_empty() {
                    a.push(more.to_string());
                }
                a
            }
            "onbuild" => {
                onbuild = Some(Box::new(split(line_no, rest)));
                vec![]
            }
            _ => words(),
        };
        RawInstruction {
            keyword,
            flags,
            args,
            json,
            heredocs: Vec::new(),
            onbuild,
            original: line.to_string(),
            span: Span::on_line(line_no, 1, line.len()),
        }
    }

    /// Splits a whole Dockerfile (one instruction per line; `#` comments skipped) and
    /// attaches `<<NAME` heredoc bodies that follow RUN/COPY/ADD lines.
    pub(crate) fn dockerfile(text: &str) -> Vec<RawInstruction> {
        let mut out: Vec<RawInstruction> = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let mut raw = split(i, line);
            if matches!(raw.keyword.as_str(), "run" | "copy" | "add") && !raw.json {
                let names: Vec<String> = line.split_whitespace().filter_map(heredoc_name).collect();
                for name in names {
                    let mut content = String::new();
                    while i < lines.len() && lines[i].trim_start_matches('\t') != name {
                        content.push_str(lines[i]);
                        content.push('\n');
                        i += 1;
                    }
                    i += 1;
                    raw.heredocs.push(Heredoc {
                        name,
                        file_descriptor: 0,
                        expand: true,
                        chomp: false,
                        content,
                    });
                }
            }
            out.push(raw);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::split;
    use super::*;

    fn lower_line(line: &str) -> Result<Instruction, InstructionError> {
        lower_one(&split(1, line))
    }

    #[test]
    fn lowers_common_instructions() {
        let i = lower_line("FROM --platform=linux/arm64 alpine AS Build").unwrap();
        assert_eq!(
            i.kind,
            InstructionKind::From(From {
                image: "alpine".into(),
                name: Some("build".into()),
                platform: Some("linux/arm64".into())
            })
        );
        let i = lower_line("COPY --from=build --chmod=755 --link a b /dst/").unwrap();
        let InstructionKind::Copy(c) = i.kind else {
            panic!("not a copy: {:?}", i.kind)
        };
        assert_eq!(c.sources, ["a", "b"]);
        assert_eq!(c.dest, "/dst/");
        assert!(c.link);
        let i = lower_line("HEALTHCHECK --interval=5s --retries=3 CMD curl -f x").unwrap();
        assert!(matches!(
            i.kind,
            InstructionKind::Healthcheck(Healthcheck::Cmd {
                interval: Some(5_000_000_000),
                retries: Some(3),
                ..
            })
        ));
        let i = lower_line("ONBUILD run echo hi").unwrap();
        assert_eq!(i.kind, InstructionKind::Onbuild("RUN echo hi".into()));
    }

    #[test]
    fn flag_errors_are_located() {
        let err = lower_line("COPY --form=x a b").unwrap_err();
        assert_eq!(
            err.kind,
            InstructionErrorKind::UnknownFlag {
                instruction: "COPY",
                flag: "form".into()
            }
        );
        assert_eq!(err.span.start.column, 6);
        for bad in [
            "COPY --chmod=9 a b",
            "COPY --chmod=u+q a b",
            "RUN --network=bridge true",
            "RUN --security=maybe true",
            "RUN --mount=type=nfs,target=/x true",
            "RUN --mount=type=cache,sharing=maybe true",
            "HEALTHCHECK --interval=5 CMD true",
            "HEALTHCHECK --interval=10us CMD true",
            "HEALTHCHECK --retries=-1 CMD true",
            "HEALTHCHECK --timeout=1s NONE",
            "HEALTHCHECK BOGUS",
            "COPY --link=maybe a b",
            "COPY --from=a --from=b a b",
            "COPY --chown a b",
            "ADD --keep-git-dir=perhaps a b",
            "WORKDIR --x=1 /a",
            "ONBUILD FROM alpine",
            "ONBUILD ONBUILD RUN x",
            "FROM a AS 1bad",
            "FROM a b",
            "COPY onlyone",
            "SHELL /bin/bash -c",
            "FOO bar",
            "EXPOSE",
        ] {
            let err = lower_line(bad).expect_err(bad);
            assert!(err.span.start.line == 1, "{bad}: {err}");
            let rendered = err.render("Dockerfile", bad);
            assert!(rendered.starts_with("Dockerfile:1:"), "{rendered}");
            assert!(rendered.contains('^'), "{rendered}");
        }
    }

    #[test]
    fn classifies_sources() {
        assert_eq!(source_kind("https://x/a.tar"), SourceKind::Url);
        assert_eq!(source_kind("https://github.com/a/b.git"), SourceKind::Git);
        assert_eq!(source_kind("git@github.com:a/b"), SourceKind::Git);
        assert_eq!(source_kind("https://h/r.git#v1:dir"), SourceKind::Git);
        assert_eq!(source_kind("src/*.rs"), SourceKind::Local);
    }

    #[test]
    fn heredoc_names() {
        assert_eq!(heredoc_name("<<EOF").as_deref(), Some("EOF"));
        assert_eq!(heredoc_name("<<-'EOF'").as_deref(), Some("EOF"));
        assert_eq!(heredoc_name("3<<\"X\"").as_deref(), Some("X"));
        assert_eq!(heredoc_name("file"), None);
    }
}
