//! Arbitrary bytes into the policy parser and checker: diagnostics, never a panic or a hang.
#![no_main]

use keyward::decision::CompiledPolicy;
use keyward::diag::{Report, Source};
use keyward::policy::{check, syntax, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Non-UTF-8 is refused before parsing (`policy::load_file`); lossy decoding still feeds the parser
    // the rest of such inputs, replacement characters included.
    let text = String::from_utf8_lossy(data);

    // The stages on their own: the checker must also survive the partial tree of a broken file.
    let (ast, diags) = syntax::parse(&text);
    let (_model, check_diags) = check::check(&ast, &text);
    for d in diags.iter().chain(&check_diags) {
        assert!(!d.message.is_empty(), "empty diagnostic message");
        assert!(d.span.start <= d.span.end, "reversed span {:?}", d.span);
        assert!(d.span.end <= text.len(), "span {:?} past the end", d.span);
    }
    let report = Report {
        source: Source::new("<fuzz>", text.as_ref()),
        diagnostics: diags.into_iter().chain(check_diags).collect(),
    };
    let _ = report.render();

    // The whole pipeline, as `Engine::reload_text` runs it.
    match Policy::parse("<fuzz>", &text) {
        Ok(policy) => {
            let compiled = CompiledPolicy::compile(&policy.model);
            let _ = compiled.parse_resource("a:1/b:2");
            let _ = policy.formatted();
        }
        // Its report holds a subset of the diagnostics rendered above.
        Err(report) => assert!(report.has_errors(), "refused without an error"),
    }
});
