//! `docs/openapi.yaml` and the real admin routes agree: the same (method, path) pairs, each one
//! answered by the router (401 without a credential, never 404 or 405), every other method on
//! those paths refused with 405, and every documented schema reference resolvable.
#![cfg(feature = "admin")]

#[path = "support/server.rs"]
mod server;

use std::collections::BTreeSet;

use serde_yaml::Value;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read openapi.yaml"))
        .expect("openapi.yaml parses")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let paths = doc["paths"].as_mapping().expect("paths");
    for (path, item) in paths {
        let path = path.as_str().expect("path string");
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.to_owned()));
            }
        }
    }
    out
}

#[test]
fn document_and_routes_name_the_same_endpoints() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    assert_eq!(doc["servers"][0]["url"], "/keyward/v1");
    let real: BTreeSet<(String, String)> = keyward::http::admin::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let documented = documented(&doc);
    let missing: Vec<_> = real.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&real).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.yaml documents routes that do not exist: {extra:?}"
    );
}

#[test]
fn every_documented_endpoint_is_served_and_other_methods_are_refused() {
    let addr = server::serve_admin(server::bundled("api-token"));
    let doc = document();
    let documented = documented(&doc);
    let concrete = |p: &str| {
        p.replace("{principal}", "someone")
            .replace("{id}", "1")
            .replace("{public_key}", "pk")
    };
    for (method, path) in &documented {
        let r = server::send(
            addr,
            method,
            &format!("/keyward/v1{}", concrete(path)),
            &[],
            None,
        );
        r.error(401, "no_credential");
    }
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for m in METHODS {
            let m = m.to_uppercase();
            if documented.contains(&(m.clone(), path.clone())) {
                continue;
            }
            let r = server::send(
                addr,
                &m,
                &format!("/keyward/v1{}", concrete(path)),
                &[],
                None,
            );
            r.error(405, "method_not_allowed");
        }
    }
    // Every documented operation lists 401 and describes its errors with the shared schema.
    for (method, path) in &documented {
        let op = &doc["paths"][path.as_str()][method.to_lowercase().as_str()];
        assert!(
            op["responses"].get("401").is_some(),
            "{method} {path} does not document 401"
        );
        assert!(op["operationId"].as_str().is_some(), "{method} {path}");
    }
}

#[test]
fn every_schema_reference_resolves() {
    let doc = document();
    let text = serde_yaml::to_string(&doc).expect("yaml");
    for r in text.split("$ref: ").skip(1) {
        let target = r
            .split_whitespace()
            .next()
            .expect("ref")
            .trim_matches(|c| c == '\'' || c == '"');
        let mut node = &doc;
        for part in target.trim_start_matches("#/").split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "unresolved reference {target}");
    }
}
