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
    /// A path parameter, by name.
    Path(String),
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
                        TemplatePart::Path(n) => Part::Path(n.clone()),
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
                Part::Path(name) => {
                    // By name (the checker refused a name twice in a path): `get` checks one
                    // text's UTF-8, where walking the parameters checked each name's and value's.
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
            resource: resource.finish(),
        })
    }
}

/// True if `c` would change a resource's shape (a separator) or has no place in one.
fn shape_changing(c: char) -> bool {
    c == '/' || c == ':' || c.is_whitespace() || c.is_control()
}

/// [`shape_changing`] for any character of `v`: one pass over the bytes, where every ASCII
/// whitespace or control character is at most a space or DEL; characters beyond ASCII (Unicode
/// has spaces and controls there) are checked one by one.
fn has_shape_changing(v: &str) -> bool {
    let (mut ascii, mut bad) = (true, false);
    for b in v.bytes() {
        ascii &= b < 0x80;
        bad |= b <= b' ' || b == 0x7f || b == b'/' || b == b':';
    }
    bad || (!ascii && v.chars().any(shape_changing))
}

fn push_value(out: &mut NameBuf, name: &str, v: &str) -> Result<(), RouteMiss> {
    if v.is_empty() || v.len() > 256 || has_shape_changing(v) {
        return Err(RouteMiss::BadParameter(name.to_string()));
    }
    out.push_str(v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The byte pass agrees with the character check, ASCII or not.
        #[test]
        fn the_byte_pass_agrees_with_the_characters(
            v in proptest::prop_oneof!["[a-z0-9:/ \t\u{7f}\u{1}]{0,12}", "\\PC{0,8}", ".{0,8}"]
        ) {
            proptest::prop_assert_eq!(has_shape_changing(&v), v.chars().any(shape_changing));
        }
    }

    #[test]
    fn separators_spaces_and_controls_are_refused() {
        for (v, bad) in [
            ("42", false),
            ("café", false),
            ("a/b", true),
            ("a:b", true),
            ("a b", true),
            ("a\u{7f}", true),
            ("a\u{a0}b", true),  // no-break space
            ("a\u{85}b", true),  // a C1 control
            ("a\u{2028}", true), // line separator
        ] {
            assert_eq!(has_shape_changing(v), bad, "{v:?}");
        }
    }
}
