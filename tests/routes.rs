//! The route table: requests to (action, resource), and every way a request is refused before any
//! resource is named. Table-driven.
#![cfg(feature = "tower")]

use http::Method;
use keyward::http::{RouteMiss, RouteTable, Target};
use keyward::policy::Policy;

const POLICY: &str = r#"
scope organization;
scope project under organization;
scope file under project;
action view: read;
action update: write;
route GET "/api/organizations/{org}/projects/{project}" => view on "organization:{org}/project:{project}";
route PUT "/api/organizations/{org}/projects/{project}" => update on "organization:{org}/project:{project}";
route GET "/api/organizations/{org}/settings" => view on "organization:{org}";
route GET "/api/organizations/{org}/members" => view on "organization:{org}";
route * "/api/v3/properties" => view on "organization:{?organization_id}";
route GET "/api/projects/{id}/files/{file}" => view on "organization:{?org}/project:{id}/file:{file}";
route GET "/api/projects/{pid}/export" => view on "organization:{?org}/project:{pid}";
"#;

#[test]
fn requests_to_targets() {
    let policy = Policy::parse("routes.policy", POLICY).expect("policy checks");
    let table = RouteTable::new(&policy.model);
    assert_eq!(table.len(), 7);
    let ok = |action: &str, resource: &str| {
        Ok(Target {
            action: action.into(),
            resource: resource.into(),
        })
    };
    type Row<'a> = (Method, &'a str, Option<&'a str>, Result<Target, RouteMiss>);
    let rows: Vec<Row> = vec![
        (
            Method::GET,
            "/api/organizations/6/projects/3",
            None,
            ok("view", "organization:6/project:3"),
        ),
        (
            Method::PUT,
            "/api/organizations/6/projects/3",
            None,
            ok("update", "organization:6/project:3"),
        ),
        (
            Method::GET,
            "/api/organizations/6/projects/3/",
            None,
            ok("view", "organization:6/project:3"),
        ),
        (
            Method::DELETE,
            "/api/organizations/6/projects/3",
            None,
            Err(RouteMiss::NoRoute),
        ),
        (
            Method::GET,
            "/api/organizations/6/settings",
            None,
            ok("view", "organization:6"),
        ),
        (
            Method::GET,
            "/api/organizations/6/members",
            None,
            ok("view", "organization:6"),
        ),
        (
            Method::GET,
            "/api/organizations/caf%C3%A9/settings",
            None,
            ok("view", "organization:café"),
        ),
        (
            Method::POST,
            "/api/v3/properties",
            Some("organization_id=6&page=2"),
            ok("view", "organization:6"),
        ),
        (
            Method::GET,
            "/api/v3/properties",
            Some("page=2"),
            Err(RouteMiss::MissingParameter("organization_id".into())),
        ),
        (
            Method::GET,
            "/api/v3/properties",
            Some("organization_id=6&organization_id=7"),
            Err(RouteMiss::MissingParameter("organization_id".into())),
        ),
        (
            Method::GET,
            "/api/v3/properties",
            Some("organization_id=6%2Fproject:1"),
            Err(RouteMiss::BadParameter("organization_id".into())),
        ),
        (
            Method::GET,
            "/api/v3/properties",
            Some("organization_id=6:7"),
            Err(RouteMiss::BadParameter("organization_id".into())),
        ),
        (
            Method::GET,
            "/api/projects/3/files/a.txt",
            Some("org=6"),
            ok("view", "organization:6/project:3/file:a.txt"),
        ),
        (
            Method::GET,
            "/api/projects/3/export",
            Some("org=6"),
            ok("view", "organization:6/project:3"),
        ),
        // Escapes are refused before matching.
        (
            Method::GET,
            "/api/organizations/6/projects/../../7/settings",
            None,
            Err(RouteMiss::InvalidPath(
                keyward::http::path::PathError::DotSegment,
            )),
        ),
        (
            Method::GET,
            "/api/organizations/6/projects/%2e%2e/settings",
            None,
            Err(RouteMiss::InvalidPath(
                keyward::http::path::PathError::DotSegment,
            )),
        ),
        (
            Method::GET,
            "/api/organizations/6%2Fprojects%2F3/settings",
            None,
            Err(RouteMiss::InvalidPath(
                keyward::http::path::PathError::EncodedSeparator,
            )),
        ),
        (
            Method::GET,
            "/api//organizations/6/settings",
            None,
            Err(RouteMiss::InvalidPath(
                keyward::http::path::PathError::EmptySegment,
            )),
        ),
        (
            Method::GET,
            "/api/organizations/6:1/settings",
            None,
            Err(RouteMiss::BadParameter("org".into())),
        ),
        (
            Method::GET,
            "/api/organizations/a%20b/settings",
            None,
            Err(RouteMiss::BadParameter("org".into())),
        ),
        (Method::GET, "/nothing/here", None, Err(RouteMiss::NoRoute)),
    ];
    for (method, path, query, want) in rows {
        assert_eq!(
            table.resolve(&method, path, query),
            want,
            "{method} {path} {query:?}"
        );
    }
}
