//! From an HTTP request (method, path, query) to the action and resource its route names.
//!
//! Paths are decoded and checked by [`super::path::normalize`] first; matching uses `matchit` (the
//! router axum uses). Parameter values that would change the resource's shape (`/`, `:`, control
//! characters) are refused, so a request reaches exactly the resource its route names, or nothing.

use ::http::Method;

use super::path::{normalize, PathError};
use crate::policy::model::{Model, TemplatePart};
use crate::text::{Name, NameBuf};

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
    pub action: Name,
    /// The resource path with the parameters filled in.
    pub resource: Name,
}

struct Compiled {
    action: Name,
    /// The template with path parameter names replaced by their positions.
    resource: Vec<Part>,
}

enum Part {
    Literal(String),
    /// A path parameter: its name, and its position among the route path's parameters.
    Path(String, usize),
    Query(String),
}

/// The routes of a policy, ready to match requests.
pub struct RouteTable {
    /// One router per method a route names (few: a list beats hashing the method).
    by_method: Vec<(Method, matchit::Router<usize>)>,
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
            by_method: Vec::new(),
            any: matchit::Router::new(),
            routes: Vec::new(),
        };
        for route in &model.routes {
            let idx = table.routes.len();
            table.routes.push(Compiled {
                action: Name::new(&model.actions[route.action as usize].name),
                resource: route
                    .resource
                    .iter()
                    .map(|p| match p {
                        TemplatePart::Literal(l) => Part::Literal(l.clone()),
                        TemplatePart::Path(n) => Part::Path(
                            n.clone(),
                            param_names(&route.path)
                                .position(|p| p == n.as_str())
                                .unwrap_or(usize::MAX),
                        ),
                        TemplatePart::Query(n) => Part::Query(n.clone()),
                    })
                    .collect(),
            });
            let router = match &route.method {
                None => &mut table.any,
                Some(m) => match Method::from_bytes(m.as_bytes()) {
                    Ok(m) => match table.by_method.iter().position(|(have, _)| *have == m) {
                        Some(at) => &mut table.by_method[at].1,
                        None => {
                            table.by_method.push((m, matchit::Router::new()));
                            &mut table.by_method.last_mut().expect("just pushed").1
                        }
                    },
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
            .iter()
            .find(|(m, _)| m == method)
            .and_then(|(_, r)| r.at(&path).ok())
            .or_else(|| self.any.at(&path).ok())
            .ok_or(RouteMiss::NoRoute)?;
        let route = &self.routes[*found.value];
        let mut resource = NameBuf::new();
        for part in &route.resource {
            match part {
                Part::Literal(l) => resource.push_str(l),
                Part::Path(name, at) => {
                    // By position, confirmed by name (by name alone when they disagree).
                    let v = match found.params.iter().nth(*at) {
                        Some((k, v)) if k == name.as_str() => v,
                        _ => found.params.get(name.as_str()).ok_or(RouteMiss::NoRoute)?,
                    };
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
            resource: resource.finish(),
        })
    }
}

/// The names of a `matchit` path template's parameters (`{name}`, `{*name}`), in order.
fn param_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.trim_start_matches('*'))
}

fn push_value(out: &mut NameBuf, name: &str, v: &str) -> Result<(), RouteMiss> {
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
