//! The HTTP front (feature `tower`): a route table from requests to (action, resource), a tower layer
//! for Rust hosts, and (feature `server`) the forward-auth server behind `keyward serve`.
//!
//! **Invariant:** nothing here is compiled into the core unless a feature asks for it; the engine
//! itself never depends on this module.

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "server")]
mod clock;
pub mod layer;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod metrics;
pub mod path;
pub mod routes;
#[cfg(feature = "server")]
pub mod server;
mod swar;

use std::sync::Arc;

use ::http::{HeaderMap, Method};

use crate::engine::{Allow, Decision, Deny, DenyResponse, Engine, Reason};
pub use layer::{AuthLayer, AuthService, Authorized};
pub use routes::{RouteMiss, RouteTable, Target};

/// The outcome of an HTTP request checked against the policy's routes and the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpDecision {
    /// Allowed: the decision and what the route mapped the request to.
    Allow(Allow, Target),
    /// Denied: the reason and the response to send.
    Deny(Deny, DenyResponse),
    /// No route matched and the caller chose to let such requests through unchecked.
    PassThrough,
}

/// What to do with a request that matches no route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmatched {
    /// Deny it (403 `no_route`): deny by default.
    #[default]
    Deny,
    /// Let it through without checking anything (public endpoints the routes do not list).
    PassThrough,
}

/// The first step of an HTTP decision (see [`Engine::early`]).
pub(crate) struct Early {
    state: arc_swap::Guard<Arc<crate::engine::PolicyState>>,
    tag: Option<crate::engine::memo::Tag>,
}

impl Engine {
    /// Checks an HTTP request: its route gives the action and resource, then the engine decides.
    pub fn authorize_http(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        unmatched: Unmatched,
    ) -> HttpDecision {
        let early = self.early(headers);
        let now = crate::engine::unix_now();
        self.authorize_http_early(early, method, path, query, headers, unmatched, now)
    }

    /// The first step of a decision, taken from the credential headers alone: the policy in force
    /// and the credential's memo tag, with the memo's lines on their way. A caller with other work
    /// to do before [`Self::authorize_http_early`] (reading the original request from a proxy's
    /// headers) takes it first, so that work hides a cache miss (see `prefetch`).
    pub(crate) fn early(&self, headers: &HeaderMap) -> Early {
        let state = self.policy_now();
        let tag = self.memo_tag_headers(&state, headers);
        Early { state, tag }
    }

    /// [`Self::authorize_http`] after [`Self::early`] on the same `headers`, at `now` (unix seconds,
    /// for a caller that has read the clock).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn authorize_http_early(
        &self,
        early: Early,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        unmatched: Unmatched,
        now: u64,
    ) -> HttpDecision {
        let Early { state, tag } = early;
        // The key entry and its owner load while the route resolves.
        let tag = self.memo_tag_for_query(&state, tag, query);
        let deny = |reason: Reason| {
            let d = Deny {
                reason,
                principal: None,
                key: None,
            };
            let r = self.deny_response(&d);
            HttpDecision::Deny(d, r)
        };
        let target = match state.routes().resolve(method, path, query) {
            Ok(t) => t,
            Err(RouteMiss::NoRoute) if unmatched == Unmatched::PassThrough => {
                return HttpDecision::PassThrough
            }
            Err(RouteMiss::NoRoute) => return deny(Reason::NoRoute),
            Err(RouteMiss::InvalidPath(e)) => return deny(Reason::InvalidPath(e.to_string())),
            Err(RouteMiss::MissingParameter(p)) => return deny(Reason::MissingParameter(p)),
            Err(RouteMiss::BadParameter(p)) => return deny(Reason::BadParameter(p)),
        };
        let req = crate::Request::new(headers, &target.action, &target.resource).with_query(query);
        match self.authorize_tagged(&state, &req, tag, now) {
            Decision::Allow(a) => HttpDecision::Allow(a, target),
            Decision::Deny(d) => {
                let r = self.deny_response(&d);
                HttpDecision::Deny(d, r)
            }
        }
    }
}

/// A shared engine, as the layer and the server hold it.
pub type SharedEngine = Arc<Engine>;
