//! `keyward authorize`: one request, its decision and how it was reached.

use std::process::ExitCode;

use http::{HeaderMap, HeaderName, HeaderValue};
use keyward::engine::Explanation;
use keyward::{Decision, Engine, EngineOptions, Request};
use serde_json::{json, Value};

use crate::args::AuthorizeArgs;
use crate::out::{check_db_dir, load_policy, pepper, print_json, Create};
use crate::{CliError, CmdResult};

/// Parses `Name: value` arguments into a header map. Values are never echoed (they hold secrets).
pub fn headers(args: &[String]) -> Result<HeaderMap, CliError> {
    let mut map = HeaderMap::new();
    for h in args {
        let Some((name, value)) = h.split_once(':') else {
            return Err(CliError::new(format!(
                "--header `{}` is not `Name: value`",
                h.chars().take(40).collect::<String>()
            )));
        };
        let name = name.trim();
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| CliError::new(format!("--header: `{name}` is not a valid header name")))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            CliError::new(format!(
                "--header: the value of `{name}` is not a valid header value"
            ))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

pub fn explanation_json(e: &Explanation, engine: &Engine) -> Value {
    let mut v = match &e.decision {
        Decision::Allow(a) => json!({
            "decision": "allow",
            "principal": a.principal,
            "key": a.key,
            "role": a.role.as_ref(),
            "granted_at": a.granted_at.as_ref(),
            "style": a.style.code(),
            "workspace": a.workspace.as_deref(),
            "via_query": a.via_query(),
            "reason": null,
            "response": null,
        }),
        Decision::Deny(d) => {
            let r = engine.deny_response(d);
            json!({
                "decision": "deny",
                "principal": d.principal,
                "key": d.key,
                "reason": {
                    "code": d.reason.code(),
                    "message": d.reason.to_string(),
                    "authentication": d.reason.is_authentication(),
                    "credential_code": d.reason.credential_code(),
                },
                "response": { "status": r.status, "location": r.location, "body": r.body },
            })
        }
    };
    v["steps"] = json!(e.steps);
    v
}

pub fn run(args: &AuthorizeArgs) -> CmdResult {
    let headers = headers(&args.headers)?;
    let policy = load_policy(&args.policy)?;
    let dir = crate::out::db_dir(&args.db)?;
    check_db_dir(dir, Create::No)?;
    let options = EngineOptions {
        pepper: pepper(&args.db)?,
    };
    let engine = Engine::open(dir, policy, options)?;
    let req = Request::new(&headers, &args.action, &args.resource)
        .with_query(args.query.as_deref())
        .with_context(args.context.as_deref());
    let e = engine.explain(&req);
    if args.json {
        print_json(&explanation_json(&e, &engine));
    } else {
        println!("{e}");
        match &e.decision {
            Decision::Deny(d) => {
                let r = engine.deny_response(d);
                match &r.location {
                    Some(to) => println!("  http: {} Location: {to}  {}", r.status, r.body),
                    None => println!("  http: {}  {}", r.status, r.body),
                }
            }
            Decision::Allow(a) if a.via_query() => println!(
                "  note: the key came in the query string; keys in URLs end up in access logs"
            ),
            Decision::Allow(_) => {}
        }
    }
    Ok(if e.decision.is_allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
