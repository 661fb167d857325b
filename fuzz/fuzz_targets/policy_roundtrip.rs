//! Anything that parses without errors formats, and the formatted text parses back to the same tree
//! (`ast::Policy` equality ignores spans); formatting is idempotent.
#![no_main]

use keyward::policy::{format::format, syntax, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (ast, diags) = syntax::parse(text);
    if diags.iter().any(|d| d.is_error()) {
        return;
    }
    let formatted = format(&ast);
    let (again, diags2) = syntax::parse(&formatted);
    let errors: Vec<_> = diags2.iter().filter(|d| d.is_error()).collect();
    assert!(
        errors.is_empty(),
        "formatted text does not parse: {errors:?}\n--- input\n{text}\n--- formatted\n{formatted}"
    );
    assert_eq!(
        ast, again,
        "round trip changed the tree\n--- formatted\n{formatted}"
    );
    let twice = format(&again);
    assert_eq!(formatted, twice, "formatting is not idempotent");

    // A policy that checks keeps checking after formatting, with the same model.
    if let Ok(p) = Policy::parse("<fuzz>", text) {
        match Policy::parse("<formatted>", &formatted) {
            Ok(q) => assert_eq!(p.model, q.model, "formatting changed the meaning"),
            Err(r) => panic!("formatted policy is refused:\n{}", r.render()),
        }
    }
});
