//! Policy diagnostics, one fixture per kind of mistake.
//!
//! `tests/data/policy/ok/NNNN_slug.policy` must load without errors; its sibling `.diag` holds the
//! canonical formatted text, then the rendered warnings if any. `tests/data/policy/err/NNNN_slug.policy`
//! must fail; its `.diag` holds the rendered report. `UPDATE_EXPECT=1 cargo test --test
//! policy_diagnostics` rewrites the `.diag` files; review the diff.

use std::path::{Path, PathBuf};

use keyward::diag::Report;
use keyward::policy::{self, LoadError, Policy};

/// Loads one fixture through the public entry point and renders what a user would see.
fn render(path: &Path) -> (bool, String) {
    match policy::load_file(path) {
        Ok(p) => {
            let mut out = p.formatted();
            // The canonical text is a fixed point of the formatter.
            let again = Policy::parse("<formatted>", &out)
                .map(|q| q.formatted())
                .unwrap_or_else(|r| r.render());
            assert_eq!(
                again,
                out,
                "{}: formatting is not idempotent",
                path.display()
            );
            if !p.warnings.is_empty() {
                let report = Report {
                    source: p.source.clone(),
                    diagnostics: p.warnings.clone(),
                };
                out.push_str("\n---- warnings ----\n");
                out.push_str(&report.render());
            }
            (true, out)
        }
        Err(LoadError::Invalid(report)) => (false, report.render()),
        Err(e) => (false, format!("{e}\n")),
    }
}

/// Compares every fixture in `dir` with its `.diag`; `ok` says whether the cases must load.
fn check(dir: &str, ok: bool) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    files.sort();
    for file in &files {
        // A path relative to the crate, so the rendered file names are the same on every machine.
        let rel = file.strip_prefix(root).unwrap_or(file);
        let (loaded, rendered) = render(rel);
        assert_eq!(
            loaded,
            ok,
            "{}: expected {}, got:\n{rendered}",
            rel.display(),
            if ok {
                "no errors"
            } else {
                "at least one error"
            }
        );
        expect_test::expect_file![file.with_extension("diag")].assert_eq(&rendered);
    }
    files.len()
}

#[test]
fn ok_cases() {
    assert!(check("tests/data/policy/ok", true) >= 5);
}

#[test]
fn err_cases() {
    assert!(check("tests/data/policy/err", false) >= 30);
}

/// The bundled policies load without errors or warnings.
#[test]
fn bundled_policies_are_clean() {
    for name in ["api-token", "cognitive3d", "seatsio", "seed-platform"] {
        let path = PathBuf::from(format!("policies/{name}.policy"));
        let p = policy::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
    }
}

/// A policy over the size limit is refused before parsing, from text and from a file.
#[test]
fn oversize_policy_is_refused() {
    let big = format!("scope a;\n{}", "#".repeat(policy::MAX_POLICY_BYTES));
    let report = Policy::parse("<big>", &big).err().map(|r| r.render());
    expect_test::expect![[r#"
        error: the policy is 8388617 bytes, more than the limit of 8388608
          ┌─ <big>:1:1
          │
        1 │ scope a;
          │ ^

    "#]]
    .assert_eq(&report.unwrap_or_default());

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("big.policy");
    std::fs::write(&path, &big).unwrap_or_else(|e| panic!("{e}"));
    match policy::load_file(&path) {
        Err(LoadError::Invalid(r)) => {
            assert_eq!(r.diagnostics.len(), 1);
            assert!(r.diagnostics[0].message.contains("more than the limit"));
        }
        other => panic!("expected a size error, got {other:?}"),
    }
}

/// A missing file is an I/O error naming the path.
#[test]
fn missing_file_names_the_path() {
    let e = policy::load_file(Path::new("tests/data/policy/no-such.policy"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with("cannot read policy `tests/data/policy/no-such.policy`: "),
        "{e}"
    );
}

/// Every error the parser reports points into the text and the renderer never fails, whatever the input.
#[test]
fn rendering_never_fails_on_odd_input() {
    for text in [
        "",
        "\n",
        "é",
        "role",
        "role r at",
        "scope a;\u{0}",
        "\"",
        "{",
        "}",
        "#",
    ] {
        if let Err(r) = Policy::parse("<odd>", text) {
            assert!(r.has_errors());
            let out = r.render();
            assert!(out.starts_with("error: "), "{text:?}: {out}");
            for d in &r.diagnostics {
                assert!(d.span.end <= text.len(), "{text:?}: {d:?}");
            }
        }
    }
}

/// The examples in `docs/policy-language.md` are valid: the opening example loads without errors or
/// warnings, and every other example (grammar templates in capitals and rendered reports aside) parses.
#[test]
fn language_reference_examples_parse() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/policy-language.md"
    ))
    .unwrap_or_default();
    let blocks: Vec<&str> = doc.split("```").skip(1).step_by(2).collect();
    assert!(blocks.len() > 15, "found {} examples", blocks.len());
    let first = blocks[0].trim_start_matches('\n');
    if let Err(r) = Policy::parse("<doc example>", first) {
        panic!("{}", r.render());
    }
    assert!(Policy::parse("<doc example>", first).is_ok_and(|p| p.warnings.is_empty()));
    let mut checked = 0;
    for b in &blocks[1..] {
        let template =
            b.contains("NAME") || b.contains("KIND") || b.contains("STYLE") || b.contains("CODE");
        if template || b.contains("error:") || b.contains("kind:id") {
            continue;
        }
        let (_, diags) = policy::syntax::parse(b);
        assert!(diags.is_empty(), "example does not parse:\n{b}\n{diags:?}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} examples checked");
}
