//! Variable expansion never panics and stays within its limits. The input is text: an
//! optional first byte below 0x20 picks the lexer's modes, then lines `NAME=word` are
//! expanded in order into the environment (as ENV lines are, so values can double), and the
//! last line is expanded with `process_word` and `process_words`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use rbuild_compiler::shell::{Lexer, Limits, ShellError};

/// Small bounds, so that each input runs fast and crossing them is common.
const LIMITS: Limits = Limits {
    max_growth: 64 << 10,
    max_depth: 128,
    max_work: 1 << 22,
};

fn is_limit(e: &ShellError) -> bool {
    matches!(
        e,
        ShellError::TooLong { .. } | ShellError::TooMuchWork { .. }
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (modes, text) = match text.as_bytes().first() {
        Some(&b) if b < 0x20 && b != b'\n' => (b, &text[1..]),
        _ => (0, text),
    };
    let lexer = Lexer::new(if modes & 16 != 0 { '`' } else { '\\' })
        .raw_quotes(modes & 1 != 0)
        .raw_escapes(modes & 2 != 0)
        .skip_unset(modes & 4 != 0)
        .skip_process_quotes(modes & 8 != 0)
        .limits(LIMITS);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let word = lines.pop().unwrap_or_default();
    let mut env: HashMap<String, String> = HashMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if let Ok(e) = lexer.process_word(value, &env) {
            assert!(e.value.len() <= value.len() + LIMITS.max_growth);
            env.insert(name.to_string(), e.value);
        }
    }
    let one = lexer.process_word(word, &env);
    let many = lexer.process_words(word, &env);
    assert_eq!(
        one,
        lexer.process_word(word, &env),
        "expansion is not stable"
    );
    match &one {
        Ok(e) => {
            assert!(
                e.value.len() <= word.len() + LIMITS.max_growth,
                "grew too much"
            );
            assert!(e.work <= LIMITS.max_work, "worked too much");
            assert!(e.vars.matched.is_disjoint(&e.vars.unmatched));
        }
        Err(e) => {
            assert_eq!(e.word(), word);
            assert!(e.to_string().starts_with("failed to process "));
        }
    }
    match &many {
        Ok(w) => {
            let total: usize = w.words.iter().map(String::len).sum();
            assert!(total <= word.len() + LIMITS.max_growth, "grew too much");
            assert!(w.work <= LIMITS.max_work, "worked too much");
        }
        Err(e) => assert_eq!(e.word(), word),
    }
    let limited =
        one.as_ref().err().is_some_and(is_limit) || many.as_ref().err().is_some_and(is_limit);
    if !limited {
        assert_eq!(
            one.is_ok(),
            many.is_ok(),
            "process_word and process_words disagree"
        );
    }
});
