//! `keyward check` and `keyward fmt`.

use std::path::Path;
use std::process::ExitCode;

use keyward::diag::{Diagnostic, Report, Severity};
use keyward::policy::{self, LoadError, Policy};
use serde_json::{json, Value};

use crate::args::{CheckArgs, FmtArgs};
use crate::out::print_json;
use crate::CmdResult;

fn diag_json(report: &Report, d: &Diagnostic) -> Value {
    let (line, column) = report.source.line_col(d.span.start);
    json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "message": d.message,
        "line": line,
        "column": column,
        "span": [d.span.start, d.span.end],
        "label": d.label,
        "help": d.help,
    })
}

/// Loads one file: the policy, or the report of its errors, or an i/o message.
enum Loaded {
    Ok(Box<Policy>),
    Invalid(Report),
    Unreadable(String),
}

fn load(path: &Path) -> Loaded {
    match policy::load_file(path) {
        Ok(p) => Loaded::Ok(Box::new(p)),
        Err(LoadError::Invalid(r)) => Loaded::Invalid(r),
        Err(e) => Loaded::Unreadable(e.to_string()),
    }
}

pub fn check(args: &CheckArgs) -> CmdResult {
    let mut code = 0u8;
    let mut results = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        match load(path) {
            Loaded::Ok(p) => {
                let report = Report {
                    source: p.source.clone(),
                    diagnostics: p.warnings.clone(),
                };
                if args.json {
                    results.push(json!({
                        "file": name,
                        "ok": true,
                        "errors": 0,
                        "warnings": p.warnings.len(),
                        "diagnostics": p.warnings.iter().map(|d| diag_json(&report, d)).collect::<Vec<_>>(),
                    }));
                } else {
                    if !p.warnings.is_empty() {
                        eprint!("{}", report.render());
                    }
                    let m = &p.model;
                    println!(
                        "{name}: ok ({} scopes, {} actions, {} roles{})",
                        m.kinds.len(),
                        m.actions.len(),
                        m.roles.len(),
                        match p.warnings.len() {
                            0 => String::new(),
                            1 => ", 1 warning".to_owned(),
                            n => format!(", {n} warnings"),
                        }
                    );
                }
            }
            Loaded::Invalid(report) => {
                code = code.max(1);
                let errors = report.error_count();
                if args.json {
                    results.push(json!({
                        "file": name,
                        "ok": false,
                        "errors": errors,
                        "warnings": report.diagnostics.len() - errors,
                        "diagnostics": report.diagnostics.iter().map(|d| diag_json(&report, d)).collect::<Vec<_>>(),
                    }));
                } else {
                    eprint!("{}", report.render());
                    println!(
                        "{name}: {errors} error{}",
                        if errors == 1 { "" } else { "s" }
                    );
                }
            }
            Loaded::Unreadable(msg) => {
                code = 2;
                if args.json {
                    results.push(json!({ "file": name, "ok": false, "error": msg }));
                } else {
                    eprintln!("error: {msg}");
                }
            }
        }
    }
    if args.json {
        print_json(&json!({ "ok": code == 0, "files": results }));
    }
    Ok(ExitCode::from(code))
}

pub fn fmt(args: &FmtArgs) -> CmdResult {
    let mut code = 0u8;
    let mut differ = 0usize;
    for path in &args.files {
        let name = path.display().to_string();
        let policy = match load(path) {
            Loaded::Ok(p) => p,
            Loaded::Invalid(report) => {
                eprint!("{}", report.render());
                eprintln!("error: `{name}` has errors; not formatted");
                code = code.max(1);
                continue;
            }
            Loaded::Unreadable(msg) => {
                eprintln!("error: {msg}");
                code = 2;
                continue;
            }
        };
        let formatted = policy.formatted();
        if formatted.as_str() == policy.source.text.as_ref() {
            continue;
        }
        differ += 1;
        if args.check {
            println!("{name}");
            code = code.max(1);
        } else if let Err(e) = std::fs::write(path, formatted) {
            eprintln!("error: cannot write `{name}`: {e}");
            code = 2;
        } else {
            println!("formatted {name}");
        }
    }
    if args.check && differ > 0 {
        eprintln!(
            "{differ} file{} not formatted; run `keyward fmt` on {}",
            if differ == 1 { " is" } else { "s are" },
            if differ == 1 { "it" } else { "them" }
        );
    }
    Ok(ExitCode::from(code))
}
