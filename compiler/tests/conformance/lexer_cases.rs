//! BuildKit's shell-lexer vectors: `shell-lex/envVarTest` (one word), `shell-lex/wordsTest`
//! (word splitting) and `shell-lex/process-word-cases.json` (modifiers, with the variables
//! each word used). One case per data line or JSON object; Windows-only (`W`) lines are not
//! run, as on Unix upstream.
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rbuild_compiler::shell::Lexer;

use super::Suite;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn suites(dir: &Path) -> Vec<Suite> {
    let dir = dir.join("shell-lex");
    vec![
        env_var_test(&read(&dir.join("envVarTest"))),
        words_test(&read(&dir.join("wordsTest"))),
        process_word(&read(&dir.join("process-word-cases.json"))),
    ]
}

fn env_var_test(text: &str) -> Suite {
    let mut suite = Suite::new("envVarTest");
    let env: HashMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');
    for (n, line) in text.split('\n').enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "envVarTest line {}: not 3 fields", n + 1);
        let (platform, source, expected) = (fields[0], fields[1], fields[2]);
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("envVarTest line {}: unknown platform {other:?}", n + 1),
        }
        let got = lexer.process_word(source, &env);
        let outcome = match (expected, got) {
            ("error", Err(_)) => Ok(()),
            ("error", Ok(v)) => Err(format!("expected an error, got {:?}", v.value)),
            (want, Ok(v)) if v.value == want => Ok(()),
            (want, Ok(v)) => Err(format!("expected {want:?}, got {:?}", v.value)),
            (want, Err(e)) => Err(format!("expected {want:?}, got error {e}")),
        };
        suite.check(format_args!("line {} {source:?}", n + 1), outcome);
    }
    suite
}

fn words_test(text: &str) -> Suite {
    let mut suite = Suite::new("wordsTest");
    let mut env: Vec<(String, String)> = Vec::new();
    let lexer = Lexer::new('\\');
    for (n, line) in text.split('\n').enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        if line.is_empty() && n + 1 == text.split('\n').count() {
            break; // the newline that ends the file
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(
            parts.len(),
            2,
            "wordsTest line {}: not exactly one '|'",
            n + 1
        );
        let input = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        let got = match lexer.process_words(input, env.as_slice()) {
            Ok(w) => w.words,
            Err(_) => vec!["error".to_string()],
        };
        let outcome = if got == expected {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, got {got:?}"))
        };
        suite.check(format_args!("line {} {input:?}", n + 1), outcome);
    }
    suite
}

fn process_word(text: &str) -> Suite {
    let mut suite = Suite::new("process-word");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(text).expect("process-word-cases.json");
    let lexer = Lexer::new('\\');
    for (i, case) in cases.iter().enumerate() {
        let input = case["input"].as_str().expect("input");
        let env: HashMap<String, String> = case["envs"]
            .as_object()
            .expect("envs")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("env value").to_string()))
            .collect();
        let names = |key: &str| -> Option<BTreeSet<String>> {
            case.get(key).map(|v| {
                v.as_array()
                    .expect("name list")
                    .iter()
                    .map(|n| n.as_str().expect("name").to_string())
                    .collect()
            })
        };
        let got = lexer.process_word(input, &env);
        let outcome = if case["error"].as_bool() == Some(true) {
            match got {
                Ok(v) => Err(format!("expected an error, got {:?}", v.value)),
                Err(e) => match case["error_contains"].as_str() {
                    Some(want) if !e.to_string().contains(want) => Err(format!(
                        "error {:?} does not contain {want:?}",
                        e.to_string()
                    )),
                    _ => Ok(()),
                },
            }
        } else {
            let want = case["expected"].as_str().expect("expected");
            match got {
                Err(e) => Err(format!("expected {want:?}, got error {e}")),
                Ok(v) if v.value != want => Err(format!("expected {want:?}, got {:?}", v.value)),
                Ok(v) => match (names("matched"), names("unmatched")) {
                    (Some(m), Some(u)) if m != v.vars.matched || u != v.vars.unmatched => {
                        Err(format!(
                            "expected matched {m:?} unmatched {u:?}, got {:?} {:?}",
                            v.vars.matched, v.vars.unmatched
                        ))
                    }
                    _ => Ok(()),
                },
            }
        };
        suite.check(format_args!("#{i} {input:?}"), outcome);
    }
    suite
}
