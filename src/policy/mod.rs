//! The policy language: `.policy` text → syntax tree → checked [`Model`].
//!
//! Stages: [`syntax::parse`] (nom 8; never fails as a whole, returns what it could read and a diagnostic
//! per definition it could not), [`check::check`] (names, duplicates, cycles, grants that can never
//! apply), then [`crate::decision::CompiledPolicy::compile`] turns the model into lookup tables.
//! [`reference`](mod@reference) interprets the model directly and is the yardstick the compiled form is tested against.
//!
//! **Invariant:** this module does no I/O except [`load_file`]; it never panics on any input.

pub mod ast;
pub mod check;
pub mod format;
pub mod model;
pub mod reference;
pub mod syntax;

use std::path::Path;

use crate::diag::{Diagnostic, Report, Source};
pub use model::Model;

/// Largest policy text accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 8 * 1024 * 1024;

/// A policy that parsed and checked without errors.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The text it came from.
    pub source: Source,
    /// Its syntax tree.
    pub ast: ast::Policy,
    /// Its checked meaning.
    pub model: Model,
    /// Warnings (never errors) found on the way.
    pub warnings: Vec<Diagnostic>,
}

impl Policy {
    /// Parses and checks a policy text; `name` labels diagnostics (a path, or `<string>`).
    ///
    /// On failure the [`Report`] holds every error found, each with line, column and a caret.
    pub fn parse(name: &str, text: &str) -> Result<Policy, Report> {
        let source = Source::new(name, text);
        if text.len() > MAX_POLICY_BYTES {
            return Err(Report {
                source,
                diagnostics: vec![Diagnostic::error(
                    format!(
                        "the policy is {} bytes, more than the limit of {MAX_POLICY_BYTES}",
                        text.len()
                    ),
                    0..0,
                )],
            });
        }
        let (ast, mut diags) = syntax::parse(text);
        let (model, check_diags) = check::check(&ast, text);
        // Semantic errors on a partial tree would mostly echo the syntax errors: show them only
        // when the syntax is clean, but always show everything the parser found.
        if diags.iter().any(Diagnostic::is_error) {
            return Err(Report {
                source,
                diagnostics: diags,
            });
        }
        diags.extend(check_diags);
        match model {
            Some(model) => Ok(Policy {
                source,
                ast,
                model,
                warnings: diags,
            }),
            None => Err(Report {
                source,
                diagnostics: diags,
            }),
        }
    }

    /// The canonical text of this policy (what `keyward fmt` prints).
    pub fn formatted(&self) -> String {
        format::format(&self.ast)
    }
}

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read policy `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("policy `{path}` is not valid UTF-8 (byte {offset})")]
    NotUtf8 {
        /// The path.
        path: String,
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// The policy has errors.
    #[error("{0}")]
    Invalid(Report),
}

/// Reads, parses and checks a policy file.
pub fn load_file(path: &Path) -> Result<Policy, LoadError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: name.clone(),
        source,
    })?;
    if meta.len() > MAX_POLICY_BYTES as u64 {
        return Err(LoadError::Invalid(Report {
            source: Source::new(name, ""),
            diagnostics: vec![Diagnostic::error(
                format!(
                    "the policy is {} bytes, more than the limit of {MAX_POLICY_BYTES}",
                    meta.len()
                ),
                0..0,
            )],
        }));
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: name.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| LoadError::NotUtf8 {
        path: name.clone(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    Policy::parse(&name, &text).map_err(LoadError::Invalid)
}
