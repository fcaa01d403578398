//! Parser behaviour the conformance vectors do not cover: MAINTAINER, STOPSIGNAL, SHELL,
//! heredoc edge cases, spans, rendered diagnostics (snapshots), and a property test that
//! parsing never panics and is deterministic.

use proptest::prelude::*;
use rbuild_compiler::parser::{self, ParseErrorKind, parse};

fn dump(src: &str) -> String {
    match parse(src) {
        Ok(p) => p.dump(),
        Err(e) => panic!("parse failed: {e}\n{src}"),
    }
}

#[test]
fn maintainer_stopsignal_shell_user_workdir() {
    let src = "FROM x\nMAINTAINER  Jane Doe <jane@example.com>  \nSTOPSIGNAL SIGKILL\n\
               SHELL [\"/bin/bash\", \"-c\"]\nSHELL /bin/sh -c\nUSER 1000:1000\nWORKDIR /a b\n";
    assert_eq!(
        dump(src),
        "(from \"x\")\n(maintainer \"Jane Doe <jane@example.com>\")\n(stopsignal \"SIGKILL\")\n\
         (shell \"/bin/bash\" \"-c\")\n(shell \"/bin/sh -c\")\n(user \"1000:1000\")\n\
         (workdir \"/a b\")\n"
    );
    let p = parse(src).unwrap();
    assert!(p.instructions[3].json);
    assert!(!p.instructions[4].json);
}

#[test]
fn empty_arguments_give_bare_keywords() {
    assert_eq!(
        dump("FROM x\nMAINTAINER\nSTOPSIGNAL\nSHELL\nCMD []\nHEALTHCHECK\nONBUILD\nENV\n"),
        "(from \"x\")\n(maintainer)\n(stopsignal)\n(shell)\n(cmd)\n(healthcheck)\n(onbuild)\n(env)\n"
    );
}

#[test]
fn flags_are_split_with_spans() {
    let src = "FROM x\nCOPY --from=build --chown=1:2 --chmod=755 --link \\\n  --exclude=*.md --parents a b/\n";
    let p = parse(src).unwrap();
    let copy = &p.instructions[1];
    let names: Vec<_> = copy.flags.iter().map(|f| (f.name(), f.value())).collect();
    assert_eq!(
        names,
        [
            ("from", Some("build")),
            ("chown", Some("1:2")),
            ("chmod", Some("755")),
            ("link", None),
            ("exclude", Some("*.md")),
            ("parents", None),
        ]
    );
    assert_eq!(copy.args, ["a", "b/"]);
    assert_eq!(
        (
            copy.flags[0].span.start.line,
            copy.flags[0].span.start.column
        ),
        (2, 6)
    );
    assert_eq!(
        (
            copy.flags[4].span.start.line,
            copy.flags[4].span.start.column
        ),
        (3, 3)
    );
    assert_eq!(
        (copy.flags[4].span.end.line, copy.flags[4].span.end.column),
        (3, 17)
    );
    assert_eq!(
        (copy.args_span.start.line, copy.args_span.start.column),
        (3, 28)
    );
    assert_eq!((copy.span.start.line, copy.span.end.line), (2, 3));
}

#[test]
fn argument_spans() {
    let src = "FROM x\nEXPOSE  80 \\\n  443/tcp\nENV A=1 BB=\"2 3\"\nENV K some value\nRUN [\"a\", \"b\"]\n";
    let p = parse(src).unwrap();
    let cols = |n: usize| -> Vec<(usize, usize, usize)> {
        p.instructions[n]
            .arg_spans()
            .iter()
            .map(|s| (s.start.line, s.start.column, s.end.column))
            .collect()
    };
    assert_eq!(cols(1), [(2, 9, 11), (3, 3, 10)]);
    assert_eq!(
        cols(2),
        [
            (4, 5, 6),
            (4, 7, 8),
            (4, 6, 7),
            (4, 9, 11),
            (4, 12, 17),
            (4, 11, 12)
        ]
    );
    assert_eq!(cols(3), [(5, 5, 6), (5, 7, 17), (5, 17, 17)]);
    assert_eq!(cols(4), [(6, 5, 15), (6, 5, 15)]);
    assert_eq!(p.instructions[2].args_text(), "A=1 BB=\"2 3\"");
}

#[test]
fn run_mount_network_security_flags() {
    let src = "FROM x\nRUN --mount=type=cache,target=/root/.cache --network=none --security=insecure make\n";
    let p = parse(src).unwrap();
    let raws: Vec<_> = p.instructions[1]
        .flags
        .iter()
        .map(|f| f.raw.as_str())
        .collect();
    assert_eq!(
        raws,
        [
            "--mount=type=cache,target=/root/.cache",
            "--network=none",
            "--security=insecure"
        ]
    );
    assert_eq!(p.instructions[1].args, ["make"]);
}

#[test]
fn keywords_are_case_insensitive_and_kept_as_written() {
    let p = parse("fRoM x\nHealthCheck --interval=5s CMD curl -f http://localhost/\n").unwrap();
    assert_eq!(p.instructions[0].keyword, "fRoM");
    assert_eq!(p.instructions[0].keyword_lower, "from");
    assert_eq!(p.instructions[1].args, ["CMD", "curl -f http://localhost/"]);
    assert_eq!(p.instructions[1].flags[0].raw, "--interval=5s");
}

#[test]
fn bom_and_crlf() {
    let src = "\u{feff}# escape=`\r\nFROM x\r\nRUN a `\r\n  b\r\n";
    let p = parse(src).unwrap();
    assert_eq!(p.escape, '`');
    assert_eq!(p.dump(), "(from \"x\")\n(run \"a   b\")\n");
    assert_eq!(p.directives.escape.as_ref().map(|d| d.line), Some(1));
}

#[test]
fn directives_after_other_lines_are_comments() {
    let p = parse(
        "# syntax=docker/dockerfile:1\n# check=skip=all\n\n# escape=`\nFROM x\nRUN a \\\n b\n",
    )
    .unwrap();
    assert_eq!(p.escape, '\\');
    assert!(p.directives.escape.is_none());
    assert_eq!(
        p.directives.syntax.as_ref().map(|d| d.value.as_str()),
        Some("docker/dockerfile:1")
    );
    assert_eq!(
        p.directives.check.as_ref().map(|d| d.value.as_str()),
        Some("skip=all")
    );
    assert_eq!(p.dump(), "(from \"x\")\n(run \"a  b\")\n");
}

#[test]
fn heredoc_with_crlf_keeps_raw_body() {
    let p = parse("FROM x\r\nRUN <<EOF\r\necho hi\r\nEOF\r\nRUN true\r\n").unwrap();
    assert_eq!(p.instructions[1].heredocs[0].content, "echo hi\r\n");
    assert_eq!(p.instructions[2].args, ["true"]);
    assert_eq!(p.instructions[1].span.end.line, 4);
}

#[test]
fn heredoc_under_onbuild_and_copy() {
    let src = "FROM x\nONBUILD RUN <<EOF\necho a\nEOF\nCOPY <<A <<-B /dst\nalpha\nA\n\tbeta\n\tB\n";
    let p = parse(src).unwrap();
    assert_eq!(p.instructions[1].heredocs[0].content, "echo a\n");
    assert_eq!(
        p.instructions[1].onbuild.as_ref().unwrap().keyword_lower,
        "run"
    );
    let copy = &p.instructions[2];
    assert_eq!(copy.heredocs.len(), 2);
    assert_eq!(copy.heredocs[1].content, "\tbeta\n");
    assert!(copy.heredocs[1].chomp);
    assert_eq!(parser::chomp(&copy.heredocs[1].content), "beta\n");
    assert_eq!(
        p.dump(),
        "(from \"x\")\n(onbuild (run \"<<EOF\"))\n(copy \"<<A\" \"<<-B\" \"/dst\")\n"
    );
}

#[test]
fn heredoc_terminator_must_match_exactly() {
    // A trailing space makes it body text, so the heredoc is unterminated.
    let err = parse("FROM x\nRUN <<EOF\necho\nEOF \n").unwrap_err();
    assert_eq!(
        err.kind,
        ParseErrorKind::UnterminatedHeredoc { name: "EOF".into() }
    );
    // Without `-`, a tab-indented terminator does not end the body.
    assert!(parse("FROM x\nRUN <<EOF\n\tEOF\n").is_err());
}

#[test]
fn heredoc_not_read_for_other_instructions_or_json() {
    let p = parse("FROM x\nCMD <<EOF\nRUN [\"<<EOF\"]\n").unwrap();
    assert!(p.instructions.iter().all(|n| n.heredocs.is_empty()));
    assert_eq!(p.instructions.len(), 3);
}

#[test]
fn heredoc_on_continued_line() {
    let p = parse("FROM x\nRUN cat \\\n <<EOF > /f\nbody\nEOF\n").unwrap();
    assert_eq!(p.instructions[1].heredocs[0].content, "body\n");
    assert_eq!(p.instructions[1].args, ["cat  <<EOF > /f"]);
}

#[test]
fn continuation_at_eof_and_lone_escape() {
    assert_eq!(dump("FROM x\nRUN a \\"), "(from \"x\")\n(run \"a\")\n");
    assert_eq!(dump("FROM x\n\\\n"), "(from \"x\")\n(\"\")\n");
}

#[test]
fn empty_continuation_warning_renders_with_location() {
    let src = "FROM x\nRUN a \\\n\n  b\n";
    let p = parse(src).unwrap();
    assert_eq!(p.warnings().len(), 1);
    insta::assert_snapshot!(p.warnings()[0].render("Dockerfile", src));
}

#[test]
fn unknown_instructions_parse_and_fail_validation() {
    let src = "FORM alpine\nRUN x\n";
    let p = parse(src).unwrap();
    assert_eq!(p.dump(), "(form \"\")\n(run \"x\")\n");
    let err = parser::validate_keywords(&p).unwrap_err();
    assert_eq!(err.hint.as_deref(), Some("did you mean FROM?"));
    let p = parse("FROM x\nONBUILD CPY a b\n").unwrap();
    let err = parser::validate_keywords(&p).unwrap_err();
    assert_eq!(err.hint.as_deref(), Some("did you mean COPY?"));
    assert_eq!(err.span.start.column, 9);
    let p = parse("FROM x\nXYZZYQ a\n").unwrap();
    assert_eq!(parser::validate_keywords(&p).unwrap_err().hint, None);
}

fn testdata(kind: &str) -> Vec<(String, std::path::PathBuf)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/parser")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .map(|p| {
            (
                p.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                p,
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no Dockerfiles in {}", dir.display());
    files
}

/// `testdata/parser/ok/NAME.Dockerfile` dumps to `NAME.dump`.
#[test]
fn testdata_dumps() {
    for (name, path) in testdata("ok") {
        let src = std::fs::read_to_string(&path).expect("read Dockerfile");
        let expected = std::fs::read_to_string(path.with_extension("dump")).expect("read .dump");
        let parsed = parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        parser::validate_keywords(&parsed).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.dump(), expected, "{name}");
    }
}

/// Each `testdata/parser/errors/NAME.Dockerfile` fails to parse or validate; the rendered
/// diagnostic is snapshotted as `errors-NAME`.
#[test]
fn testdata_error_snapshots() {
    for (name, path) in testdata("errors") {
        let src = std::fs::read_to_string(&path).expect("read Dockerfile");
        let err = match parse(&src) {
            Err(e) => e,
            Ok(p) => parser::validate_keywords(&p).expect_err(&name),
        };
        insta::assert_snapshot!(format!("errors-{name}"), err.render("Dockerfile", &src));
    }
}

/// ONBUILD sub-instructions and `${` on a line scanned for heredocs nest recursively; both
/// stop at `parser::MAX_NESTING` with a located error instead of overflowing the stack.
#[test]
fn nesting_is_bounded() {
    let onbuild = |n: usize| format!("FROM x\n{}RUN true\n", "ONBUILD ".repeat(n));
    let p = parse(&onbuild(parser::MAX_NESTING)).expect("128 nested ONBUILDs parse");
    assert!(p.dump().contains("true"), "{}", p.dump());
    for n in [parser::MAX_NESTING + 1, 8_000] {
        let err = parse(&onbuild(n)).unwrap_err();
        assert_eq!(
            err.kind,
            ParseErrorKind::TooDeep {
                what: "ONBUILD",
                limit: parser::MAX_NESTING
            }
        );
        assert_eq!(err.span.start.line, 2);
        assert_eq!(err.span.start.column, 1 + 8 * parser::MAX_NESTING);
    }
    let nest = |n: usize| {
        format!(
            "FROM x\nCOPY <<EOF {}x{} /d\nbody\nEOF\n",
            "${a:-".repeat(n),
            "}".repeat(n)
        )
    };
    let p = parse(&nest(parser::MAX_NESTING)).expect("128 nested ${ parse");
    assert_eq!(p.instructions[1].heredocs.len(), 1);
    let err = parse(&nest(10_000)).unwrap_err();
    assert_eq!(
        err.kind,
        ParseErrorKind::TooDeep {
            what: "${...}",
            limit: parser::MAX_NESTING
        }
    );
    assert_eq!(err.span.start.line, 2);
    assert!(err.render("Dockerfile", &nest(10_000)).len() < 1000);
}

#[test]
fn snapshot_line_too_long() {
    let src = format!("FROM x\nLABEL a={}\n", "b".repeat(70_000));
    let err = parse(&src).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dockerfile line greater than max allowed size of 65535"
    );
    insta::assert_snapshot!(err.render("Dockerfile", &src));
}

#[test]
fn line_limit_is_exact() {
    let ok = format!("FROM x\nLABEL a={}\n", "b".repeat(65_535 - 8));
    assert!(parse(&ok).is_ok());
    let bad = format!("FROM x\nLABEL a={}\n", "b".repeat(65_536 - 8));
    assert!(matches!(
        parse(&bad).unwrap_err().kind,
        ParseErrorKind::LineTooLong { .. }
    ));
    // A too-long first line means the file has no instructions, as in BuildKit.
    let first = "a".repeat(70_000);
    assert_eq!(
        parse(&first).unwrap_err().kind,
        ParseErrorKind::NoInstructions
    );
}

/// Snippets the mutation property test starts from (also the fuzz corpus seeds).
const CORPUS: &[&str] = &[
    "FROM alpine:3 AS build\nRUN apk add --no-cache \\\n    curl \\\n    git\n",
    "# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN a `\n  b\n",
    "FROM x\nCOPY --from=build --chown=1:1 [\"a b\", \"/c\"]\n",
    "FROM x\nRUN <<EOF\necho hi\nEOF\nCOPY <<-'A' <<B /d\n\tx\n\tA\ny\nB\n",
    "FROM x\nENV A=1 B=\"2 3\" C='4'\nLABEL k v w\nARG X=\"y z\" W\n",
    "FROM x\nHEALTHCHECK --interval=5s CMD [\"curl\", \"-f\"]\nONBUILD COPY . /a\n",
    "FROM x\nCMD [ \"echo\", [ \"nested\" ] ]\nEXPOSE 80/tcp 443\n",
    "\u{feff}FROM x\r\nRUN a \\\r\n\r\n b\r\nVOLUME [\"/v\"]\r\n",
    "FROM x\nRUN --mount=type=secret,id=a --network=none cat /run/secrets/a\n",
];

fn mutated() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "\\", "`", "\"", "'", "<<", "<<-", "[", "]", "\n", "\r\n", "#", "--", "=", " ", "\t",
        "EOF", "\u{feff}", "é", "\0", "{", "$", "${",
    ];
    let edit = (
        0..4usize,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<u8>(),
    );
    (
        prop::sample::select(CORPUS),
        prop::collection::vec(edit, 0..12),
    )
        .prop_map(|(seed, edits)| {
            let mut bytes = seed.as_bytes().to_vec();
            for (op, at, piece, byte) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 => {
                        let p = PIECES[piece.index(PIECES.len())];
                        bytes.splice(i..i, p.bytes());
                    }
                    1 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    2 if i < bytes.len() => {
                        let end = (i + 1 + piece.index(16)).min(bytes.len());
                        let dup: Vec<u8> = bytes[i..end].to_vec();
                        bytes.splice(i..i, dup);
                    }
                    _ => bytes.insert(i, byte),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

fn check_stable(src: &str) {
    let first = parse(src).map(|p| p.dump());
    let second = parse(src).map(|p| p.dump());
    assert_eq!(first, second);
    if let Ok(p) = parse(src) {
        let _ = parser::validate_keywords(&p);
        for node in &p.instructions {
            assert_eq!(node.arg_spans().len(), node.args.len());
            if let Some(sub) = &node.onbuild {
                assert_eq!(sub.arg_spans().len(), sub.args.len());
            }
        }
        for w in p.warnings() {
            let _ = w.render("Dockerfile", src);
        }
    } else if let Err(e) = parse(src) {
        let _ = e.render("Dockerfile", src);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_dockerfiles_never_panic_and_parse_stably(src in mutated()) {
        check_stable(&src);
    }

    #[test]
    fn random_text_never_panics(src in "(?s)[ -~\t\r\n\\\\`\"'<\\[\\]#é\u{feff}\u{a0}]{0,200}") {
        check_stable(&src);
    }
}
