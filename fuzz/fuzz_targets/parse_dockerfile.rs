//! Parsing any text never panics, gives the same result twice, and renders its
//! diagnostics without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_compiler::parser;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let first = parser::parse(source);
    let second = parser::parse(source);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.dump(), b.dump(), "dump is not stable");
            let _ = parser::validate_keywords(a);
            for node in &a.instructions {
                assert_eq!(node.arg_spans().len(), node.args.len());
                if let Some(sub) = &node.onbuild {
                    assert_eq!(sub.arg_spans().len(), sub.args.len());
                }
            }
            for w in a.warnings() {
                let _ = w.render("Dockerfile", source);
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "error is not stable");
            let _ = a.render("Dockerfile", source);
        }
        _ => panic!("parse result is not stable"),
    }
});
