//! Planning any text never panics, is deterministic (the same op digests twice, whatever the
//! target), and every error renders with its location.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_compiler::instructions::from_ast::plan_source;
use rbuild_compiler::plan::{NoBaseConfigs, PlanOptions, render_dot, render_json, render_text};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    // A first line `#target=NAME` picks --target, so pruning is fuzzed too.
    let mut options = PlanOptions::default();
    if let Some(rest) = source.strip_prefix("#target=") {
        options.target = rest.lines().next().map(str::to_string);
    }
    options
        .build_args
        .insert("FUZZ".to_string(), "value with spaces".to_string());
    let first = plan_source(source, &options, &NoBaseConfigs);
    let second = plan_source(source, &options, &NoBaseConfigs);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            let digests = |p: &rbuild_compiler::plan::Plan| {
                p.ops
                    .iter()
                    .map(|o| o.digest.to_string())
                    .collect::<Vec<_>>()
            };
            assert_eq!(digests(a), digests(b), "op digests are not deterministic");
            let _ = render_text(a);
            let _ = render_json(a);
            let _ = render_dot(a);
            for w in &a.warnings {
                let _ = w.render("Dockerfile", source);
            }
        }
        (Err(a), Err(b)) => {
            let (ra, rb) = (
                a.render("Dockerfile", source),
                b.render("Dockerfile", source),
            );
            assert_eq!(ra, rb, "error is not stable");
            assert!(
                ra.starts_with("Dockerfile:"),
                "error without a location: {ra}"
            );
        }
        _ => panic!("planning the same text twice gave different outcomes"),
    }
});
