//! Source text, byte spans and located diagnostics, rendered with file:line:column, the source line
//! and a caret by `codespan-reporting`.
//!
//! **Invariant:** nothing here knows about policies; it depends on nothing else in the crate.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

/// A byte range into a [`Source`].
pub type Span = Range<usize>;

/// A named text that diagnostics point into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Where the text came from: a file path, or a label such as `<string>`.
    pub name: Arc<str>,
    /// The whole text.
    pub text: Arc<str>,
}

impl Source {
    /// Makes a source from a name and its text.
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The 1-based line and column (in characters) of a byte offset, clamped to the text.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the policy still loads.
    Warning,
    /// The policy is refused.
    Error,
}

/// One finding about a source text, located by a byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, lowercase, no final period, user input in backticks.
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// A short label printed under the caret (often what was expected).
    pub label: Option<String>,
    /// An extra sentence on how to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message, span)
        }
    }

    /// Adds the label printed under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a help sentence.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Diagnostics together with the source they point into; `Display` renders them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The text the spans point into.
    pub source: Source,
    /// The findings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// True if any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Renders every diagnostic: `error: message`, `┌─ file:line:column`, the line and carets.
    pub fn render(&self) -> String {
        let file = SimpleFile::new(self.source.name.as_ref(), self.source.text.as_ref());
        let config = Config::default();
        let mut out = String::new();
        for d in &self.diagnostics {
            let len = self.source.text.len();
            let mut span = d.span.start.min(len)..d.span.end.min(len);
            if span.end < span.start {
                span.end = span.start;
            }
            let mut label = Label::primary((), span);
            if let Some(l) = &d.label {
                label = label.with_message(l.clone());
            }
            let base = match d.severity {
                Severity::Error => CsDiagnostic::error(),
                Severity::Warning => CsDiagnostic::warning(),
            };
            let mut cs = base
                .with_message(d.message.clone())
                .with_labels(vec![label]);
            if let Some(h) = &d.help {
                cs = cs.with_notes(vec![format!("help: {h}")]);
            }
            if term::emit_to_string(&mut out, &config, &file, &cs).is_err() {
                // The renderer only fails on spans outside the text; fall back to a plain line.
                let (line, col) = self.source.line_col(d.span.start);
                out.push_str(&format!(
                    "error: {}\n  at {}:{line}:{col}\n",
                    d.message, self.source.name
                ));
            }
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Report {}
