//! From an HTTP request (method, path, query) to the action and resource its route names.
//!
//! Paths are decoded and checked by [`super::path::normalize`] first; matching uses `matchit` (the
//! router axum uses). Parameter values that would change the resource's shape (`/`, `:`, control
//! characters) are refused, so a request reaches exactly the resource its route names, or nothing.

use std::collections::HashMap;

use ::http::Method;

use super::path::{normalize, PathError};
use crate::policy::model::{Model, TemplatePart};

/// Why a request matched no route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMiss {
    /// The path is malformed or tries to escape (dot segments, encoded separators).
    InvalidPath(PathError),
    /// No route matches this method and path.
    NoRoute,
    /// The route takes a query parameter the request does not carry (once).
    MissingParameter(String),
    /// A parameter's value would change the resource's shape.
    BadParameter(String),
}

/// What a matched request does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The action name.
    pub action: String,
    /// The resource path with the parameters filled in.
    pub resource: String,
}

struct Compiled {
    action: String,
    /// The template with path parameter names replaced by their positions.
    resource: Vec<Part>,
}

enum Part {
    Literal(String),
    Path(String),
    Query(String),
}

/// The routes of a policy, ready to match requests.
pub struct RouteTable {
    by_method: HashMap<Method, matchit::Router<usize>>,
    any: matchit::Router<usize>,
    routes: Vec<Compiled>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl RouteTable {
    /// Builds the table from a checked policy (the checker already refused overlapping routes).
    pub fn new(model: &Model) -> RouteTable {
        let mut table = RouteTable {
            by_method: HashMap::new(),
            any: matchit::Router::new(),
            routes: Vec::new(),
        };
        for route in &model.routes {
            let idx = table.routes.len();
            table.routes.push(Compiled {
                action: model.actions[route.action as usize].name.clone(),
                resource: route
                    .resource
                    .iter()
                    .map(|p| match p {
                        TemplatePart::Literal(l) => Part::Literal(l.clone()),
                        TemplatePart::Path(n) => Part::Path(n.clone()),
                        TemplatePart::Query(n) => Part::Query(n.clone()),
                    })
                    .collect(),
            });
            let router = match &route.method {
                None => &mut table.any,
                Some(m) => match Method::from_bytes(m.as_bytes()) {
                    Ok(m) => table.by_method.entry(m).or_default(),
                    Err(_) => continue,
                },
            };
            // Overlaps were refused by the checker; a conflict here leaves the later route out.
            let _ = router.insert(route.path.clone(), idx);
        }
        table
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True if the policy declares no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The action and resource for a request, or why there is none.
    pub fn resolve(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<Target, RouteMiss> {
        let path = normalize(path).map_err(RouteMiss::InvalidPath)?;
        let found = self
            .by_method
            .get(method)
            .and_then(|r| r.at(&path).ok())
            .or_else(|| self.any.at(&path).ok())
            .ok_or(RouteMiss::NoRoute)?;
        let route = &self.routes[*found.value];
        let mut resource = String::with_capacity(64);
        for part in &route.resource {
            match part {
                Part::Literal(l) => resource.push_str(l),
                Part::Path(name) => {
                    let v = found.params.get(name.as_str()).ok_or(RouteMiss::NoRoute)?;
                    push_value(&mut resource, name, v)?;
                }
                Part::Query(name) => {
                    let mut values = query
                        .into_iter()
                        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
                        .filter(|(k, _)| k == name.as_str())
                        .map(|(_, v)| v);
                    let (Some(v), None) = (values.next(), values.next()) else {
                        return Err(RouteMiss::MissingParameter(name.clone()));
                    };
                    push_value(&mut resource, name, &v)?;
                }
            }
        }
        Ok(Target {
            action: route.action.clone(),
            resource,
        })
    }
}

fn push_value(out: &mut String, name: &str, v: &str) -> Result<(), RouteMiss> {
    let shape_changing = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
    let bad = if v.is_ascii() {
        v.bytes().any(|b| shape_changing(char::from(b)))
    } else {
        v.chars().any(shape_changing)
    };
    if v.is_empty() || v.len() > 256 || bad {
        return Err(RouteMiss::BadParameter(name.to_string()));
    }
    out.push_str(v);
    Ok(())
}
