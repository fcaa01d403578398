//! Image reference parsing never panics, and what it accepts is normalised: printing and
//! re-parsing (full or familiar form) gives the same reference, the registry is a bare host
//! and the repository's components can be put in a URL path as they are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_registry::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let r = match Reference::parse(input) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let printed = r.to_string();
    assert_eq!(
        Reference::parse(&printed).as_ref(),
        Ok(&r),
        "{input:?} prints as {printed:?}, which does not parse back"
    );
    let familiar = r.familiar();
    assert_eq!(
        Reference::parse(&familiar).as_ref(),
        Ok(&r),
        "{input:?} has the familiar form {familiar:?}, which does not parse back"
    );
    let name = Reference::parse(&r.name()).expect("the name parses");
    assert_eq!(
        (name.registry(), name.repository()),
        (r.registry(), r.repository())
    );
    for host in [r.registry(), r.api_host()] {
        assert!(!host.is_empty(), "{input:?}: empty registry");
        assert!(
            !host.contains(['/', '@', '?', '#', '%', '\\']) && !host.contains(char::is_whitespace),
            "{input:?}: registry {host:?} is not a bare host"
        );
    }
    for c in r.repository().split('/') {
        assert!(
            !c.is_empty() && c != "." && c != "..",
            "{input:?}: repository component {c:?}"
        );
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)),
            "{input:?}: repository component {c:?} needs escaping"
        );
    }
    match (r.digest(), r.tag()) {
        (Some(d), _) => assert_eq!(r.api_reference(), d.to_string()),
        (None, Some(t)) => {
            assert_eq!(r.api_reference(), t);
            assert_eq!(r.with_tag(t).as_ref(), Ok(&r));
        }
        (None, None) => panic!("{input:?}: neither tag nor digest"),
    }
});
