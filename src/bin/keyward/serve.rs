//! `keyward serve`: the forward-auth server and the admin API, from the library's `http::server`.

use std::process::ExitCode;
use std::time::Duration;

use http::HeaderName;
use keyward::http::server::{self, Limits, ServeOptions};
use keyward::http::Unmatched;

use crate::args::ServeArgs;
use crate::out::pepper_from;
use crate::{CliError, CmdResult};

fn header_names(names: &[String], what: &str) -> Result<Option<Vec<HeaderName>>, CliError> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|n| {
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| CliError::new(format!("`{n}` is not a header name ({what})")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(a: &ServeArgs) -> CmdResult {
    let mut opts = ServeOptions::new(&a.db, &a.policy, a.listen);
    opts.pepper = pepper_from(a.pepper_file.as_deref())?;
    opts.envoy_prefix = a.envoy_prefix.clone();
    if let Some(h) = header_names(&a.original_uri_headers, "--original-uri-header")? {
        opts.original_uri_headers = h;
    }
    if let Some(h) = header_names(&a.original_method_headers, "--original-method-header")? {
        opts.original_method_headers = h;
    }
    if a.pass_unmatched {
        opts.unmatched = Unmatched::PassThrough;
    }
    opts.admin_prefix = if a.no_admin_api {
        None
    } else {
        Some(a.admin_prefix.clone())
    };
    if a.request_timeout == 0 {
        return Err(CliError::new("--request-timeout must be at least 1 second"));
    }
    opts.limits = Limits {
        max_header_bytes: a.max_header_bytes,
        request_timeout: Duration::from_secs(a.request_timeout),
        max_connections: a.max_connections,
    };
    opts.workers = a.workers;
    opts.log_decisions = !a.no_log_decisions;
    opts.detail_headers = a.detail_headers;
    server::run(opts).map_err(|e| match e {
        server::ServeError::Engine(keyward::engine::EngineError::Policy(
            keyward::policy::LoadError::Invalid(report),
        )) => CliError::new(format!(
            "policy `{}` has {} error(s)",
            a.policy.display(),
            report.error_count()
        ))
        .with_detail(report.render()),
        other => CliError::new(other.to_string()),
    })?;
    Ok(ExitCode::SUCCESS)
}
