//! `AuthLayer`: put keyward in front of any tower service (an axum router, say) in one line.
//!
//! Allowed requests go on with the [`Allow`] decision and the matched [`Target`] in their extensions
//! (the [`Authorized`] extractor hands them to axum handlers); denied requests are answered at once
//! with the policy's status (401, 403, or a 302 to the login page) and the JSON error body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::body::Body;
use axum::extract::FromRequestParts;
use tower::{Layer, Service};

use super::{HttpDecision, Target, Unmatched};
use crate::engine::{Allow, Engine};

/// A tower layer that authorizes every request with an [`Engine`] and the policy's routes.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    engine: Arc<Engine>,
    unmatched: Unmatched,
}

impl AuthLayer {
    /// A layer over `engine`; requests that match no route are denied.
    pub fn new(engine: Arc<Engine>) -> Self {
        AuthLayer {
            engine,
            unmatched: Unmatched::Deny,
        }
    }

    /// Lets requests that match no route through unchecked (for public endpoints).
    pub fn pass_unmatched(mut self) -> Self {
        self.unmatched = Unmatched::PassThrough;
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            engine: Arc::clone(&self.engine),
            unmatched: self.unmatched,
        }
    }
}

/// The service [`AuthLayer`] wraps around an inner service.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    engine: Arc<Engine>,
    unmatched: Unmatched,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let decision = self.engine.authorize_http(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
            self.unmatched,
        );
        match decision {
            HttpDecision::Allow(allow, target) => {
                req.extensions_mut().insert(Authorized { allow, target });
            }
            HttpDecision::PassThrough => {}
            HttpDecision::Deny(_, resp) => {
                return Box::pin(async move { Ok(deny_response(resp)) });
            }
        }
        // The clone that was polled ready is the one that serves (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

/// Builds the HTTP response for a denial.
pub fn deny_response(resp: crate::engine::DenyResponse) -> Response<Body> {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::FORBIDDEN);
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(loc) = resp.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        out.headers_mut().insert(header::LOCATION, loc);
    }
    out
}

/// The decision for an allowed request, put in its extensions by [`AuthLayer`]; an axum extractor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// Who, with which key, by which role.
    pub allow: Allow,
    /// The action and resource the route mapped the request to.
    pub target: Target,
}

impl<S: Send + Sync> FromRequestParts<S> for Authorized {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut ::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Authorized>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the route is not behind keyward's AuthLayer",
        ))
    }
}
