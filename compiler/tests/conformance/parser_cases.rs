//! BuildKit's Dockerfile parser vectors: `dockerfile-parser/` golden dumps (suite
//! `parser`), `dockerfile-parser-negative/` (suite `negative`), and the tables of
//! `dockerfile-parser-extra/` (suite `extra`).
use std::path::Path;

use rbuild_compiler::parser::{self, Heredoc};
use serde_json::Value;

use super::Suite;

pub fn suites(dir: &Path) -> Vec<Suite> {
    vec![golden(dir), negative(dir), extra(dir)]
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn case_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases in {}", dir.display());
    dirs
}

fn name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn golden(dir: &Path) -> Suite {
    let mut suite = Suite::new("parser");
    for case in case_dirs(&dir.join("dockerfile-parser")) {
        let source = read(&case.join("Dockerfile"));
        let expected = read(&case.join("result"));
        let outcome = match parser::parse(&source) {
            Ok(parsed) => {
                let dump = parsed.dump();
                if dump == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "dump differs:\n--- expected\n{expected}--- got\n{dump}"
                    ))
                }
            }
            Err(e) => Err(format!("parse failed: {e}")),
        };
        suite.check(name(&case), outcome);
    }
    suite
}

fn negative(dir: &Path) -> Suite {
    let mut suite = Suite::new("negative");
    for case in case_dirs(&dir.join("dockerfile-parser-negative")) {
        let source = read(&case.join("Dockerfile"));
        let outcome = match parser::parse(&source) {
            Ok(parsed) => Err(format!("parsed, expected an error:\n{}", parsed.dump())),
            Err(_) => Ok(()),
        };
        suite.check(name(&case), outcome);
    }
    suite
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| s(x).to_string())
        .collect()
}

fn eq<T: PartialEq + std::fmt::Debug>(what: &str, expected: T, got: T) -> Result<(), String> {
    if expected == got {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected:?}, got {got:?}"))
    }
}

fn extra(dir: &Path) -> Suite {
    let mut suite = Suite::new("extra");
    let base = dir.join("dockerfile-parser-extra");
    let cases = json(&base.join("cases.json"));

    // Line numbers of the root and its children.
    let ln = &cases["line_numbers"];
    let source = read(&base.join(s(&ln["dockerfile_file"])));
    suite.check(
        "line_numbers",
        (|| {
            let parsed = parser::parse(&source).map_err(|e| e.to_string())?;
            eq(
                "root start",
                ln["root_start_line"].as_u64(),
                Some(parsed.span.start.line as u64),
            )?;
            eq(
                "root end",
                ln["root_end_line"].as_u64(),
                Some(parsed.span.end.line as u64),
            )?;
            let expected: Vec<(u64, u64)> = ln["children"]
                .as_array()
                .expect("children")
                .iter()
                .map(|c| (c[0].as_u64().expect("line"), c[1].as_u64().expect("line")))
                .collect();
            let got: Vec<(u64, u64)> = parsed
                .instructions
                .iter()
                .map(|n| (n.span.start.line as u64, n.span.end.line as u64))
                .collect();
            eq("children", expected, got)
        })(),
    );

    // Empty continuation lines warn.
    let ec = &cases["empty_continuation_warnings"];
    suite.check(
        "empty_continuation_warnings",
        (|| {
            let parsed = parser::parse(s(&ec["dockerfile"])).map_err(|e| e.to_string())?;
            let warnings = parsed.warnings();
            eq(
                "warning count",
                ec["warning_count"].as_u64(),
                Some(warnings.len() as u64),
            )?;
            for (i, subs) in ec["warnings_short_contain"]
                .as_array()
                .expect("list")
                .iter()
                .enumerate()
            {
                for sub in strings(subs) {
                    if !warnings[i].short.contains(&sub) {
                        return Err(format!("warning {i} {:?} lacks {sub:?}", warnings[i].short));
                    }
                }
            }
            let detail = s(&ec["warning0_detail0_contains"]);
            if !warnings[0].detail[0].contains(detail) {
                return Err(format!(
                    "detail {:?} lacks {detail:?}",
                    warnings[0].detail[0]
                ));
            }
            Ok(())
        })(),
    );

    // A line over the scanner limit.
    let lt = &cases["line_too_long"];
    let label =
        s(&lt["label"]["char"]).repeat(lt["label"]["repeat"].as_u64().expect("repeat") as usize);
    let text = s(&lt["dockerfile_template"]).replace("{LABEL}", &label);
    suite.check(
        "line_too_long",
        match parser::parse(&text) {
            Ok(_) => Err("parsed".into()),
            Err(e) => eq("error", s(&lt["error_equals"]).to_string(), e.to_string()),
        },
    );

    for (i, c) in cases["parse_words"]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .enumerate()
    {
        suite.check(
            format!("parse_words[{i}] {:?}", s(&c["input"])),
            eq(
                "words",
                strings(&c["expect"]),
                parser::parse_words(s(&c["input"]), '\\'),
            ),
        );
    }

    let dirs = &cases["directives"];
    for (i, c) in dirs["parse_all"]
        .as_array()
        .expect("parse_all")
        .iter()
        .enumerate()
    {
        let got = parser::DirectiveParser::default().parse_all(s(&c["input"]));
        let expected: Vec<(String, String)> = c["directives"]
            .as_array()
            .expect("directives")
            .iter()
            .map(|d| (s(&d["name"]).to_string(), s(&d["value"]).to_string()))
            .collect();
        suite.check(
            format!("directives.parse_all[{i}]"),
            match got {
                Ok(list) => eq(
                    "directives",
                    expected,
                    list.into_iter().map(|d| (d.name, d.value)).collect(),
                ),
                Err(e) => Err(format!("{e:?}")),
            },
        );
    }
    for key in ["detect_syntax", "parse_directive_check"] {
        for (i, c) in dirs[key].as_array().expect(key).iter().enumerate() {
            let mut input = s(&c["input"]).to_string();
            if c["input_bom"].as_bool() == Some(true) {
                input.insert(0, '\u{feff}');
            }
            let got = if key == "detect_syntax" {
                parser::detect_syntax(&input)
            } else {
                parser::parse_directive("check", &input)
            };
            suite.check(format!("directives.{key}[{i}]"), check_detected(c, got));
        }
    }

    let ja = &cases["json_arrays"];
    for (i, c) in ja["valid"].as_array().expect("valid").iter().enumerate() {
        suite.check(
            format!("json_arrays.valid[{i}]"),
            eq(
                "elements",
                Ok(strings(&c["expect"])),
                parser::parse_json_array(s(&c["input"])),
            ),
        );
    }
    for (i, c) in ja["not_string_arrays"]
        .as_array()
        .expect("not_string")
        .iter()
        .enumerate()
    {
        suite.check(
            format!("json_arrays.not_string_arrays[{i}]"),
            eq(
                "result",
                Err(parser::JsonArrayError::NotStringArray),
                parser::parse_json_array(s(c)),
            ),
        );
    }

    for (i, c) in cases["name_val"]["cases"]
        .as_array()
        .expect("name_val")
        .iter()
        .enumerate()
    {
        let text = format!("FROM scratch\n{} {}\n", s(&c["instruction"]), s(&c["args"]));
        let outcome = match (parser::parse(&text), c["error"].as_bool() == Some(true)) {
            (Err(_), true) => Ok(()),
            (Ok(p), true) => Err(format!("parsed: {}", p.dump())),
            (Err(e), false) => Err(e.to_string()),
            (Ok(p), false) => eq(
                "nodes",
                strings(&c["nodes"]),
                p.instructions[1].args.clone(),
            ),
        };
        suite.check(format!("name_val[{i}]"), outcome);
    }

    heredoc_cases(&mut suite, &json(&base.join("heredoc.json")));
    suite
}

fn check_detected(c: &Value, got: Option<parser::DetectedDirective>) -> Result<(), String> {
    let found = c["found"].as_bool().expect("found");
    eq("found", found, got.is_some())?;
    let (reference, cmdline, line) = match &got {
        Some(d) => (d.reference.clone(), d.cmdline.clone(), Some(d.line as u64)),
        None => (String::new(), String::new(), None),
    };
    if let Some(r) = c.get("ref") {
        eq("ref", s(r).to_string(), reference)?;
    }
    if let Some(cl) = c.get("cmdline") {
        eq("cmdline", s(cl).to_string(), cmdline)?;
    }
    if let Some(l) = c.get("line") {
        eq("line", l.as_u64(), line)?;
    }
    Ok(())
}

fn heredoc_fields(h: &Heredoc) -> (String, u64, bool, bool, String) {
    (
        h.name.clone(),
        h.file_descriptor,
        h.expand,
        h.chomp,
        h.content.clone(),
    )
}

fn expected_heredocs(v: &Value) -> Vec<(String, u64, bool, bool, String)> {
    match v {
        Value::Null => Vec::new(),
        v => v
            .as_array()
            .expect("heredocs")
            .iter()
            .map(|h| {
                (
                    s(&h["name"]).to_string(),
                    h["file_descriptor"].as_u64().expect("fd"),
                    h["expand"].as_bool().expect("expand"),
                    h["chomp"].as_bool().expect("chomp"),
                    s(&h["content"]).to_string(),
                )
            })
            .collect(),
    }
}

fn heredoc_cases(suite: &mut Suite, hd: &Value) {
    for key in ["extracts", "json_form_has_no_heredocs"] {
        let group = &hd[key];
        let parsed = parser::parse(s(&group["dockerfile"]));
        for c in group["children"].as_array().expect("children") {
            let index = c["child_index"].as_u64().expect("index") as usize;
            let outcome = match &parsed {
                Err(e) => Err(format!("parse failed: {e}")),
                Ok(p) => match p.instructions.get(index) {
                    None => Err(format!("no child {index}")),
                    Some(node) => eq(
                        "heredocs",
                        expected_heredocs(&c["heredocs"]),
                        node.heredocs.iter().map(heredoc_fields).collect(),
                    ),
                },
            };
            suite.check(format!("heredoc.{key}[{index}]"), outcome);
        }
    }
    for (i, c) in hd["chomp"].as_array().expect("chomp").iter().enumerate() {
        suite.check(
            format!("heredoc.chomp[{i}]"),
            eq(
                "chomped",
                s(&c["expected"]).to_string(),
                parser::chomp(s(&c["input"])),
            ),
        );
    }
    for (i, c) in hd["parse_heredoc_word"]
        .as_array()
        .expect("words")
        .iter()
        .enumerate()
    {
        let word = s(&c["word"]);
        let got = parser::parse_heredoc_word(word);
        let outcome = match (s(&c["result"]), got) {
            ("heredoc", Ok(Some(h))) => eq("name", s(&c["name"]).to_string(), h.name),
            ("error", Err(_)) | ("none", Ok(None)) => Ok(()),
            (want, got) => Err(format!("expected {want}, got {got:?}")),
        };
        suite.check(format!("heredoc.parse_heredoc_word[{i}] {word:?}"), outcome);
    }
    for (i, c) in hd["heredocs_from_line"]
        .as_array()
        .expect("lines")
        .iter()
        .enumerate()
    {
        let line = s(&c["line"]);
        let outcome = match parser::heredocs_from_line(line) {
            Ok(docs) => eq(
                "names",
                strings(&c["names"]),
                docs.into_iter().map(|d| d.name).collect(),
            ),
            Err(e) => Err(format!("{e:?}")),
        };
        suite.check(format!("heredoc.heredocs_from_line[{i}] {line:?}"), outcome);
    }
}
