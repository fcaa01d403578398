//! The planner's bounds (`rbuild_compiler::plan::limits`): crossing one is an error at the
//! line that crosses it, naming the variable or the instruction, and planning hostile text
//! stays within bounded memory, stack and time.

use std::collections::BTreeMap;

use rbuild_compiler::instructions::from_ast::{SourceError, plan_source};
use rbuild_compiler::plan::limits::{MAX_ENVIRONMENT, MAX_INSTRUCTION_GROWTH, MAX_PLAN_SIZE};
use rbuild_compiler::plan::{
    ImageConfig, NoBaseConfigs, OpKind, Plan, PlanError, PlanErrorKind, PlanOptions,
};

fn plan(text: &str) -> Result<Plan, SourceError> {
    plan_source(text, &PlanOptions::default(), &NoBaseConfigs)
}

/// The planning error of `text`, with the line it points at.
fn plan_error(text: &str) -> (PlanErrorKind, usize) {
    match plan(text) {
        Err(SourceError::Plan(PlanError {
            kind,
            span: Some(span),
            ..
        })) => (*kind, span.start.line),
        other => panic!("expected a located planning error, got {other:?}"),
    }
}

/// `FROM scratch`, then `A1` of 16 bytes and `A2`..`A{last}` each doubling the one
/// before (`A17` is 1 MiB), written as `line(n)` makes each.
fn doubling(first: &str, last: usize, line: impl Fn(usize) -> String) -> String {
    let mut text = format!("FROM scratch\n{first}\n");
    for n in 2..=last {
        text.push_str(&line(n));
        text.push('\n');
    }
    text
}

fn env_doubling(last: usize) -> String {
    doubling("ENV A1=0123456789abcdef", last, |n| {
        format!("ENV A{n}=${{A{}}}${{A{}}}", n - 1, n - 1)
    })
}

fn growth_error(kind: PlanErrorKind) -> String {
    match kind {
        PlanErrorKind::Expand(e) => e.to_string(),
        other => panic!("expected an expansion error, got {other:?}"),
    }
}

#[test]
fn doubling_values_fail_at_the_line_that_crosses_the_limit() {
    // Up to 1 MiB the values are built; A18 would be 2 MiB (line 19).
    let text = env_doubling(17);
    let p = plan(&text).expect("values up to 1 MiB plan");
    assert!(
        p.stages[0]
            .image
            .config
            .env
            .iter()
            .any(|e| e.len() == 4 + (1 << 20))
    );
    let (kind, line) = plan_error(&env_doubling(39));
    assert_eq!(line, 19);
    assert_eq!(
        growth_error(kind),
        r#"cannot expand "${A17}${A17}": expanding $A17 makes the word more than 1 MiB longer than written"#
    );
    // ARG without braces.
    let text = doubling("ARG A1=0123456789abcdef", 39, |n| {
        format!("ARG A{n}=$A{}$A{}", n - 1, n - 1)
    });
    let (kind, line) = plan_error(&text);
    assert_eq!(line, 19);
    assert!(growth_error(kind).contains("expanding $A17"));
    // Global ARGs, before any FROM.
    let mut text = String::from("ARG A1=0123456789abcdef\n");
    for n in 2..40 {
        text.push_str(&format!("ARG A{n}=$A{}$A{}\n", n - 1, n - 1));
    }
    text.push_str("FROM scratch\n");
    let (kind, line) = plan_error(&text);
    assert_eq!(line, 18);
    assert!(growth_error(kind).contains("expanding $A17"));
    // A COPY heredoc body.
    let text = format!("{}COPY <<EOF /big\n$A17$A17\nEOF\n", env_doubling(17));
    let (kind, line) = plan_error(&text);
    assert_eq!(line, 19);
    assert!(growth_error(kind).contains("expanding $A17"));
}

#[test]
fn the_environment_is_bounded_and_the_error_names_the_variable() {
    let mut text = env_doubling(17);
    for n in 1..=10 {
        text.push_str(&format!("ENV B{n}=$A17\n"));
    }
    let (kind, line) = plan_error(&text);
    let PlanErrorKind::EnvironmentTooLarge { name, limit, .. } = kind else {
        panic!("{kind:?}");
    };
    assert_eq!(limit, MAX_ENVIRONMENT);
    // A1..A17 hold 2 MiB; each B adds 1 MiB.
    assert_eq!(name, "B6");
    assert_eq!(line, 18 + 6);
    // ARGs count as well.
    let mut text = env_doubling(17);
    for n in 1..=10 {
        text.push_str(&format!("ARG C{n}=$A17\n"));
    }
    let (kind, _) = plan_error(&text);
    assert!(
        matches!(&kind, PlanErrorKind::EnvironmentTooLarge { name, .. } if name == "C6"),
        "{kind:?}"
    );
    assert_eq!(
        kind.to_string(),
        "setting C6 makes the stage's environment (ENV and ARG) larger than 8 MiB"
    );
    // So does the environment a base image brings.
    let config = ImageConfig {
        env: (0..9)
            .map(|i| format!("V{i}={}", "x".repeat(1 << 20)))
            .collect(),
        ..Default::default()
    };
    let bases = BTreeMap::from([("big".to_string(), config)]);
    let err = plan_source("FROM big\nRUN true\n", &PlanOptions::default(), &bases).unwrap_err();
    let SourceError::Plan(err) = err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&*err.kind, PlanErrorKind::BaseEnvironmentTooLarge { image, .. } if image == "big"),
        "{err:?}"
    );
    assert_eq!(err.span.map(|s| s.start.line), Some(1));
}

#[test]
fn an_instruction_is_bounded_after_expansion() {
    let text = format!("{}LABEL a=$A17 b=$A17 c=$A17\n", env_doubling(17));
    let (kind, line) = plan_error(&text);
    assert_eq!(
        kind,
        PlanErrorKind::InstructionTooLarge {
            limit: MAX_INSTRUCTION_GROWTH
        }
    );
    assert_eq!(line, 19);
    // Port ranges are written short and listed in full.
    plan("FROM scratch\nEXPOSE 1-65535/tcp 1-65535/udp\n").expect("two full ranges");
    let (kind, line) = plan_error(&format!(
        "FROM scratch\nEXPOSE {}\n",
        "1-65535 ".repeat(8000)
    ));
    assert!(
        matches!(kind, PlanErrorKind::InstructionTooLarge { .. }),
        "{kind:?}"
    );
    assert_eq!(line, 2);
}

#[test]
fn the_plan_is_bounded() {
    // Every RUN carries the stage's environment.
    let mut text = String::from("FROM scratch\n");
    for i in 0..20_000 {
        text.push_str(&format!("ENV K{i}={}\nRUN true\n", "v".repeat(100)));
    }
    let (kind, line) = plan_error(&text);
    assert_eq!(
        kind,
        PlanErrorKind::PlanTooLarge {
            limit: MAX_PLAN_SIZE
        }
    );
    assert!(text.lines().nth(line - 1).unwrap().starts_with("RUN"));
    // Every stage built on another copies its config and history.
    let mut text = String::from("FROM scratch AS s0\n");
    for i in 1..5_000 {
        text.push_str(&format!("FROM s{} AS s{i}\nENV K{i}=v\n", i - 1));
    }
    let (kind, line) = plan_error(&text);
    assert!(
        matches!(kind, PlanErrorKind::PlanTooLarge { .. }),
        "{kind:?}"
    );
    assert!(text.lines().nth(line - 1).unwrap().starts_with("FROM"));
}

#[test]
fn expansion_work_is_bounded_for_the_whole_dockerfile() {
    // Each line copies 1 MiB twenty times and throws it away.
    let mut text = env_doubling(17);
    for _ in 0..100 {
        text.push_str(&format!("ENV X={}\n", "${NO:+$A17}".repeat(20)));
    }
    let (kind, line) = plan_error(&text);
    assert!(
        matches!(kind, PlanErrorKind::ExpansionWork { .. }),
        "{kind:?}"
    );
    // 2^28 units: about 256 lines of 1 MiB; the first ones fit.
    assert!(line > 18 + 5, "{line}");
}

#[test]
fn long_stage_chains_plan_on_a_small_stack() {
    let mut text = String::from("FROM scratch AS s0\n");
    for i in 1..50_000 {
        text.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
    }
    let stages = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || plan(&text).map(|p| p.stages.iter().filter(|s| s.built).count()))
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert_eq!(stages.expect("the chain plans"), 50_000);
}

#[test]
fn many_env_and_arg_instructions_keep_their_order_and_values() {
    let mut text = String::from("FROM scratch\n");
    for i in 0..30_000 {
        text.push_str(&format!("ENV E{i}={i}\nARG A{}={i}\n", i % 100));
    }
    text.push_str("ENV E7=seven\nARG A3\nRUN true\n");
    let p = plan(&text).expect("plans");
    let run = p.ops.iter().find_map(|o| match &o.kind {
        OpKind::Exec(x) => Some(x),
        _ => None,
    });
    let env = &run.expect("a RUN op").env;
    assert_eq!(
        env.len(),
        1 + 30_000 + 100,
        "PATH, every ENV, every ARG that had a value"
    );
    assert_eq!(
        env[0],
        format!("PATH={}", rbuild_compiler::plan::config::DEFAULT_PATH)
    );
    // As BuildKit's state environment: each name where it was last set. ENV E7 was set
    // again at the end; the ARGs were last set in the final hundred lines, between the
    // ENVs of those lines; ARG A3 declared again without a value keeps A3's value.
    assert_eq!(env[1..4], ["E0=0", "E1=1", "E2=2"]);
    assert_eq!(
        env[env.len() - 3..],
        ["E29999=29999", "A99=29999", "E7=seven"]
    );
    let a3 = env
        .iter()
        .position(|e| e == "A3=29903")
        .expect("A3 is kept");
    assert_eq!(env[a3 - 1], "E29903=29903");
}

#[test]
fn diagnostics_quoting_expanded_values_stay_short() {
    for line in [
        "COPY --chmod=$A17 a /b",
        "EXPOSE x$A17",
        "RUN --mount=type=$A17 true",
    ] {
        let text = format!("{}{line}\n", env_doubling(17));
        let err = plan(&text).expect_err(line);
        assert!(
            err.to_string().len() > 1 << 20,
            "{line}: the value is in the error"
        );
        let shown = err.render("Dockerfile", &text);
        assert!(shown.len() < 2000, "{line}: {}", &shown[..2000]);
        assert!(shown.lines().next().unwrap().ends_with("..."), "{shown}");
        assert!(shown.starts_with("Dockerfile:19:"), "{shown}");
    }
}
