//! The admin API (feature `admin`): principals, keys, role bindings, workspaces and the audit log
//! over HTTP, as an axum [`Router`] a host mounts under any prefix (`keyward serve` uses
//! `/keyward/v1`). Described in `docs/openapi.yaml`; the rules are in `docs/admin-api.md`.
//!
//! Every call authenticates the caller's own key through [`Engine::authenticate`] (any credential
//! style the policy accepts) and is authorized by the policy's key-management action
//! (`keys { manage ACTION; }`):
//!
//! - the caller's **admin scopes** are the scopes of its role bindings where the policy allows it
//!   the manage action (with the key's own limits: a read-only or narrower key has fewer);
//! - a principal is **managed** by the caller when it is the caller, has no binding yet (a new
//!   principal, visible to every admin), or has a binding at or beneath an admin scope;
//! - key operations go through [`Engine::manage_keys`]: on its own keys the caller is checked by the
//!   policy's self rules, on another's keys at the admin scope that covers the target (or `?at=`);
//! - bindings and workspaces need the manage action at their own scope.
//!
//! Every 401 and 403 the router answers is recorded in the key table's audit log as an
//! [`Op::AccessDenied`](crate::store::Op::AccessDenied) entry (status, code, method, path without the
//! query, the presented key when known, the caller as actor), queued in memory by
//! [`KeyTable::record_denial`](crate::store::KeyTable::record_denial) and written in batches: `GET
//! /audit` writes the queue before reading, the host's [`KeyTable::flush`](crate::store::KeyTable::flush)
//! and dropping the table do too (`keyward serve` also every few seconds and at shutdown).
//!
//! Handlers call the key table directly, and every write waits until it is on disk (an fsync; a
//! batch import of 5,000 keys takes a few hundred milliseconds): `keyward serve` runs each admin call
//! on tokio's blocking pool so its forward-auth requests never queue behind one. A host that mounts
//! the router beside latency-sensitive routes should do the same (or give it its own runtime).
//!
//! **Invariant:** no handler panics and no response echoes a secret; a generated secret is returned
//! once, in the response that created it. Errors are `{"status":"error","code":..,"message":..}`.

pub mod json;

use std::collections::HashMap;
use std::sync::Arc;

use ::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::{
    Decision, Deny, Engine, Identity, ImportItem, ImportKeysError, KeyCommand, KeyCommandResult,
    ManageError,
};
use crate::store::{
    Actor, AuditQuery, KeyId, KeyKind, KeyRecord, NewDenial, NewKey, NewPrincipal, Principal,
    PrincipalId, StoreError, Workspace,
};
use crate::token::Secret;
use crate::Reason;

/// Largest request body accepted, in bytes; larger ones get 413 `too_large`. The batch import takes
/// up to [`IMPORT_BODY_LIMIT`].
pub const BODY_LIMIT: usize = 64 * 1024;
/// Most keys `POST /principals/{principal}/keys/import-batch` takes in one call; more get 413
/// `too_large`. The CLI's `key import` sends chunks of this size.
pub const IMPORT_BATCH_MAX: usize = 5_000;
/// Largest request body of the batch import, in bytes (larger ones get 413 `too_large`): room for
/// [`IMPORT_BATCH_MAX`] keys with secrets of the longest kind.
pub const IMPORT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Default and largest page of the audit log.
pub const AUDIT_PAGE: usize = 50;
/// Largest `limit` accepted by `GET /audit`.
pub const AUDIT_MAX: usize = 1000;
/// Default overlap of `POST /keys/{id}/rotate`, seconds.
pub const DEFAULT_OVERLAP: u64 = 86_400;

/// The note sent with every newly generated secret.
pub const SHOWN_ONCE: &str = "store it now, it will not be shown again";

/// Every endpoint, `(method, path)`, in the order of `docs/openapi.yaml`. The router is built from
/// this table, so the document and the real routes can be compared (tests/admin_openapi.rs).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/whoami"),
    ("GET", "/principals"),
    ("POST", "/principals"),
    ("GET", "/principals/{principal}"),
    ("DELETE", "/principals/{principal}"),
    ("GET", "/principals/{principal}/keys"),
    ("POST", "/principals/{principal}/keys"),
    ("POST", "/principals/{principal}/keys/import"),
    ("POST", "/principals/{principal}/keys/import-batch"),
    ("POST", "/principals/{principal}/bindings"),
    ("DELETE", "/principals/{principal}/bindings"),
    ("GET", "/keys"),
    ("GET", "/keys/{id}"),
    ("DELETE", "/keys/{id}"),
    ("POST", "/keys/{id}/rename"),
    ("POST", "/keys/{id}/deactivate"),
    ("POST", "/keys/{id}/activate"),
    ("POST", "/keys/{id}/rotate"),
    ("POST", "/keys/{id}/regenerate"),
    ("GET", "/workspaces"),
    ("POST", "/workspaces"),
    ("GET", "/workspaces/{public_key}"),
    ("DELETE", "/workspaces/{public_key}"),
    ("GET", "/audit"),
];

type Handler = MethodRouter<Arc<Engine>>;

fn handler(method: &str, path: &str) -> Option<Handler> {
    Some(match (method, path) {
        ("GET", "/whoami") => get(whoami),
        ("GET", "/principals") => get(list_principals),
        ("POST", "/principals") => post(add_principal),
        ("GET", "/principals/{principal}") => get(show_principal),
        ("DELETE", "/principals/{principal}") => delete(remove_principal),
        ("GET", "/principals/{principal}/keys") => get(list_keys_of),
        ("POST", "/principals/{principal}/keys") => post(create_key),
        ("POST", "/principals/{principal}/keys/import") => post(import_key),
        ("POST", "/principals/{principal}/keys/import-batch") => post(import_batch),
        ("POST", "/principals/{principal}/bindings") => post(bind),
        ("DELETE", "/principals/{principal}/bindings") => delete(unbind),
        ("GET", "/keys") => get(list_keys),
        ("GET", "/keys/{id}") => get(show_key),
        ("DELETE", "/keys/{id}") => delete(delete_key),
        ("POST", "/keys/{id}/rename") => post(rename_key),
        ("POST", "/keys/{id}/deactivate") => post(deactivate_key),
        ("POST", "/keys/{id}/activate") => post(activate_key),
        ("POST", "/keys/{id}/rotate") => post(rotate_key),
        ("POST", "/keys/{id}/regenerate") => post(regenerate_key),
        ("GET", "/workspaces") => get(list_workspaces),
        ("POST", "/workspaces") => post(add_workspace),
        ("GET", "/workspaces/{public_key}") => get(show_workspace),
        ("DELETE", "/workspaces/{public_key}") => delete(remove_workspace),
        ("GET", "/audit") => get(audit),
        _ => return None,
    })
}

/// The admin API over `engine`, to mount under any prefix: `Router::new().nest("/keyward/v1",
/// keyward::http::admin::router(engine))`.
pub fn router(engine: Arc<Engine>) -> Router {
    let mut paths: Vec<(&str, Handler)> = Vec::new();
    for (method, path) in ROUTES {
        let Some(h) = handler(method, path) else {
            continue;
        };
        match paths.iter_mut().find(|(p, _)| p == path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(h),
            None => paths.push((path, h)),
        }
    }
    let mut router = Router::new();
    for (path, mr) in paths {
        router = router.route(path, mr);
    }
    router
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&engine),
            record_refusals,
        ))
        .with_state(engine)
}

/// Queues every refusal (401 or 403) the router answers for the key table's audit log, with the
/// request's method and path (never its query string, which may carry a credential, nor any header).
/// The path is the one the host received ([`OriginalUri`], so it includes the mount prefix).
async fn record_refusals(State(e): State<Arc<Engine>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |o| o.0.clone());
    let mut resp = next.run(req).await;
    if let Some(r) = resp.extensions_mut().remove::<Refusal>() {
        e.table().record_denial(NewDenial {
            actor: r.principal.map_or(Actor::Anonymous, Actor::Principal),
            status: resp.status().as_u16(),
            code: r.code,
            method: method.as_str(),
            path: uri.path(),
            key: r.key,
        });
    }
    resp
}

/// Marks a response as a refusal for [`record_refusals`] (a response extension, never sent).
#[derive(Debug, Clone, Copy)]
struct Refusal {
    code: &'static str,
    principal: Option<PrincipalId>,
    key: Option<KeyId>,
}

// ---- errors -------------------------------------------------------------------------------------

/// An error answer: status, stable code, one-line message (never a secret).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For a refusal (401, 403): the principal and key the engine identified, if any.
    refused: Option<(Option<PrincipalId>, Option<KeyId>)>,
    /// For the batch import: the 0-based index of the key refused, sent as `index`.
    index: Option<usize>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            refused: None,
            index: None,
        }
    }

    /// The error is about the key at `index` of a batch: the message starts with `item N: ` and the
    /// answer has `"index": N`.
    fn item(self, index: Option<usize>) -> Self {
        match index {
            Some(i) => ApiError {
                message: format!("item {i}: {}", self.message),
                index: Some(i),
                ..self
            },
            None => self,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} `{}` not found", clip(id)),
        )
    }

    /// 401 for authentication failures, 403 for authorization failures.
    fn deny(d: &Deny) -> Self {
        let status = if d.reason.is_authentication() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        ApiError {
            refused: Some((d.principal, d.key)),
            ..ApiError::new(status, d.reason.code(), d.reason.to_string())
        }
    }

    fn store(e: StoreError) -> Self {
        use StoreError as E;
        match e {
            E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            E::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::InvalidName { .. } => ApiError::bad_request("invalid_name", e.to_string()),
            E::InvalidScope { .. } => ApiError::bad_request("invalid_scope", e.to_string()),
            E::InvalidExpiry { .. } => ApiError::bad_request("invalid_expiry", e.to_string()),
            E::Token(_) => ApiError::bad_request("invalid_key", e.to_string()),
            E::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            e => {
                tracing::error!(target: "keyward::admin", error = %e, "key table error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the key table failed; see the server log",
                )
            }
        }
    }

    fn manage(e: ManageError) -> Self {
        match e {
            ManageError::Forbidden(d) => ApiError::deny(&d),
            ManageError::Store(e) => ApiError::store(e),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "status": "error", "code": self.code, "message": self.message });
        if let Some(i) = self.index {
            body["index"] = json!(i);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some((principal, key)) = self.refused {
            resp.extensions_mut().insert(Refusal {
                code: self.code,
                principal,
                key,
            });
        }
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, v: Value) -> ApiResult {
    let mut resp = (status, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// User input echoed in messages: at most 128 characters, control characters escaped.
fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(128)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > 128 {
        out.push_str("...");
    }
    out
}

async fn no_such_endpoint(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        format!("no admin endpoint at `{}`", clip(uri.path())),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

// ---- request parts ------------------------------------------------------------------------------

/// Reads the body (at most [`BODY_LIMIT`] bytes) and parses it as JSON. `secret_inside` keeps
/// serde's message (which may quote input) out of the answer.
async fn body<T: DeserializeOwned>(b: Body, secret_inside: bool) -> Result<T, ApiError> {
    body_within(b, BODY_LIMIT, secret_inside).await
}

/// [`body`], at most `limit` bytes.
async fn body_within<T: DeserializeOwned>(
    b: Body,
    limit: usize,
    secret_inside: bool,
) -> Result<T, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(b, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes or unreadable"),
        )
    })?;
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = if secret_inside {
            format!(
                "the body is not the expected JSON object (line {}, column {})",
                e.line(),
                e.column()
            )
        } else {
            format!("the body is not the expected JSON object: {e}")
        };
        ApiError::bad_request("malformed_request", message)
    })
}

/// The query string's parameters; a repeated parameter is refused.
fn query(uri: &Uri, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            // Credential parameters (e.g. `apiToken`) pass through untouched.
            continue;
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_request(
                "malformed_request",
                format!("the query parameter `{}` is repeated", clip(&k)),
            ));
        }
    }
    Ok(out)
}

fn parse_u64(name: &str, text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "malformed_request",
            format!(
                "`{name}` must be a non-negative integer, not `{}`",
                clip(text)
            ),
        )
    })
}

fn key_id(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<u64, ApiError> {
    let Path(text) = p.map_err(|_| ApiError::bad_request("malformed_request", "bad key id"))?;
    parse_u64("id", &text)
}

fn path_text(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    p.map(|Path(t)| t).map_err(|_| {
        ApiError::bad_request("malformed_request", "the path parameter is not valid UTF-8")
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---- the caller and its rights ------------------------------------------------------------------

/// An authenticated caller with its admin scopes.
struct Caller<'a> {
    engine: &'a Engine,
    ident: Identity,
    /// The policy's manage action, if key management is enabled.
    manage: Option<String>,
    /// The scopes of the caller's bindings where it may perform the manage action.
    admin: Vec<String>,
    /// Whether a self rule grants the manage action (users manage their own keys).
    self_manage: bool,
}

fn covers(scope: &str, path: &str) -> bool {
    path == scope
        || path
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl<'a> Caller<'a> {
    fn authenticate(engine: &'a Engine, headers: &HeaderMap, uri: &Uri) -> Result<Self, ApiError> {
        let ident = engine.authenticate(headers, uri.query()).map_err(|d| {
            tracing::warn!(
                target: "keyward::admin",
                code = d.reason.code(),
                path = %uri.path(),
                "admin call refused: not authenticated"
            );
            ApiError::deny(&d)
        })?;
        let state = engine.policy();
        let model = &state.policy.model;
        let manage_id = model.keys.manage_action;
        let manage = manage_id.map(|a| model.actions[a as usize].name.clone());
        let self_manage =
            manage_id.is_some_and(|a| model.self_rules.iter().any(|r| r.actions.contains(&a)));
        let mut admin = Vec::new();
        if let Some(action) = &manage {
            for b in engine.table().bindings_of(ident.principal())? {
                if !admin.contains(&b.scope)
                    && engine
                        .authorize_identity(&ident, action, &b.scope, None)
                        .is_allowed()
                {
                    admin.push(b.scope);
                }
            }
        }
        Ok(Caller {
            engine,
            ident,
            manage,
            admin,
            self_manage,
        })
    }

    fn id(&self) -> PrincipalId {
        self.ident.principal()
    }

    fn forbid(&self, reason: Reason, what: &str) -> ApiError {
        let d = Deny {
            reason,
            principal: Some(self.id()),
            key: Some(self.ident.key()),
        };
        self.refused(&d, what)
    }

    fn refused(&self, d: &Deny, what: &str) -> ApiError {
        tracing::warn!(
            target: "keyward::admin",
            principal = self.id(),
            key = self.ident.key(),
            code = d.reason.code(),
            what,
            "admin call refused"
        );
        ApiError::deny(d)
    }

    fn manage_action(&self) -> Result<&str, ApiError> {
        match &self.manage {
            Some(a) => Ok(a),
            None => Err(self.forbid(Reason::KeyManagementDisabled, "manage")),
        }
    }

    /// The caller must be an administrator somewhere.
    fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        self.manage_action()?;
        if self.admin.is_empty() {
            return Err(self.forbid(Reason::NoRole, what));
        }
        Ok(())
    }

    /// The manage action must be allowed at `scope`.
    fn require_at(&self, scope: &str, what: &str) -> Result<(), ApiError> {
        let action = self.manage_action()?;
        match self
            .engine
            .authorize_identity(&self.ident, action, scope, None)
        {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(d) => Err(self.refused(&d, what)),
        }
    }

    /// Whether the caller manages `p`: itself, a principal without bindings (for admins), or one
    /// bound at or beneath an admin scope.
    fn manages(&self, p: &Principal) -> Result<bool, ApiError> {
        if p.id == self.id() {
            return Ok(true);
        }
        if self.admin.is_empty() {
            return Ok(false);
        }
        let bindings = self.engine.table().bindings_of(p.id)?;
        Ok(bindings.is_empty()
            || bindings
                .iter()
                .any(|b| self.admin.iter().any(|s| covers(s, &b.scope))))
    }

    /// A principal by login or id that the caller manages; others are reported as not found, so
    /// logins do not leak.
    fn principal(&self, text: &str) -> Result<Principal, ApiError> {
        let t = self.engine.table();
        let found = match t.principal_by_login(text)? {
            Some(p) => Some(p),
            None => match text.parse::<u64>() {
                Ok(id) => t.principal(id)?,
                Err(_) => None,
            },
        };
        match found {
            Some(p) if self.manages(&p)? => Ok(p),
            _ => Err(ApiError::not_found("principal", text)),
        }
    }

    /// A key by id whose owner the caller manages.
    fn key(&self, id: u64) -> Result<(KeyRecord, Principal), ApiError> {
        let t = self.engine.table();
        if let Some(k) = t.key(id)? {
            if let Some(owner) = t.principal(k.owner)? {
                if self.manages(&owner)? {
                    return Ok((k, owner));
                }
            }
        }
        Err(ApiError::not_found("key", &id.to_string()))
    }

    /// Where `manage_keys` checks the action for keys of `target` (optionally one `key`): `None` for
    /// the caller's own keys under a self rule; else `at` when given, or the first admin scope that
    /// covers one of the target's bindings (any, for a principal without bindings) and the key's
    /// scope.
    fn key_scope(
        &self,
        target: &Principal,
        key: Option<&KeyRecord>,
        at: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        self.manage_action()?;
        if let Some(at) = at {
            return Ok(Some(at.to_string()));
        }
        if target.id == self.id() && self.self_manage {
            return Ok(None);
        }
        let bindings = self.engine.table().bindings_of(target.id)?;
        let found = self.admin.iter().find(|s| {
            (target.id == self.id()
                || bindings.is_empty()
                || bindings.iter().any(|b| covers(s, &b.scope)))
                && key
                    .and_then(|k| k.scope.as_deref())
                    .is_none_or(|ks| covers(s, ks))
        });
        match found {
            Some(s) => Ok(Some(s.clone())),
            None => Err(self.forbid(Reason::NoRole, "manage keys")),
        }
    }

    fn run(
        &self,
        target: &Principal,
        key: Option<&KeyRecord>,
        at: Option<&str>,
        cmd: KeyCommand,
    ) -> Result<KeyCommandResult, ApiError> {
        let scope = self.key_scope(target, key, at)?;
        self.engine
            .manage_keys(&self.ident, target.id, scope.as_deref(), cmd)
            .map_err(|e| match e {
                ManageError::Forbidden(d) => self.refused(&d, "manage keys"),
                e => ApiError::manage(e),
            })
    }

    fn actor(&self) -> Actor {
        Actor::Principal(self.id())
    }
}

fn caller<'a>(engine: &'a Engine, req: &Request) -> Result<Caller<'a>, ApiError> {
    Caller::authenticate(engine, req.headers(), req.uri())
}

fn at_param(uri: &Uri) -> Result<Option<String>, ApiError> {
    Ok(query(uri, &["at"])?.remove("at"))
}

// ---- handlers -----------------------------------------------------------------------------------

async fn whoami(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    ok(
        StatusCode::OK,
        json!({
            "principal": c.id(),
            "login": c.ident.login(),
            "key": c.ident.key(),
            "manage_action": c.manage,
            "admin_scopes": c.admin,
            "self_manage": c.self_manage,
        }),
    )
}

fn principal_full(e: &Engine, p: &Principal) -> Result<Value, ApiError> {
    let t = e.table();
    let mut v = json::principal_json(p);
    v["bindings"] = json!(t
        .bindings_of(p.id)?
        .iter()
        .map(|b| json!({ "role": b.role, "scope": b.scope }))
        .collect::<Vec<_>>());
    v["keys"] = json!(t.keys_of(p.id)?.len());
    Ok(v)
}

async fn list_principals(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    let mut out = Vec::new();
    for p in e.table().list_principals()? {
        if c.manages(&p)? {
            out.push(principal_full(&e, &p)?);
        }
    }
    ok(StatusCode::OK, json!(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPrincipalBody {
    login: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    default_workspace: Option<String>,
}

async fn add_principal(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    c.require_admin("add principal")?;
    let b: NewPrincipalBody = body(req.into_body(), false).await?;
    let kind = match b.kind.as_deref() {
        None => crate::store::PrincipalKind::User,
        Some(k) => json::kind_from_name(k).ok_or_else(|| {
            ApiError::bad_request(
                "malformed_request",
                format!(
                    "unknown principal kind `{}`: user, service-account, workspace, organization or company",
                    clip(k)
                ),
            )
        })?,
    };
    if let Some(pk) = &b.default_workspace {
        let ws = e
            .table()
            .workspace(pk)?
            .ok_or_else(|| ApiError::not_found("workspace", pk))?;
        c.require_at(&ws.scope, "add principal")?;
    }
    let p = e.table().add_principal(
        c.actor(),
        NewPrincipal {
            kind,
            login: b.login,
            default_workspace: b.default_workspace,
        },
    )?;
    ok(StatusCode::CREATED, principal_full(&e, &p)?)
}

async fn show_principal(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    ok(StatusCode::OK, principal_full(&e, &p)?)
}

async fn remove_principal(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    c.require_admin("remove principal")?;
    // Every binding and every scoped key of the principal must lie in the caller's admin scopes.
    let t = e.table();
    let keys = t.keys_of(p.id)?;
    let scopes = t
        .bindings_of(p.id)?
        .into_iter()
        .map(|b| b.scope)
        .chain(keys.iter().filter_map(|k| k.scope.clone()));
    for s in scopes {
        if !c.admin.iter().any(|a| covers(a, &s)) {
            return Err(c.forbid(Reason::NoRole, "remove principal"));
        }
    }
    let removed = t.remove_principal(c.actor(), p.id)?;
    let mut v = json::principal_json(&removed);
    v["keys_removed"] = json!(keys.len());
    ok(StatusCode::OK, v)
}

fn keys_json(keys: &[KeyRecord]) -> Value {
    let now = now();
    json!(keys
        .iter()
        .map(|k| json::key_json(k, now))
        .collect::<Vec<_>>())
}

async fn list_keys_of(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    let at = at_param(req.uri())?;
    match c.run(&p, None, at.as_deref(), KeyCommand::List)? {
        KeyCommandResult::Listed(keys) => ok(StatusCode::OK, keys_json(&keys)),
        _ => Err(internal()),
    }
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected result",
    )
}

async fn list_keys(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    let t = e.table();
    let mut out = Vec::new();
    for p in t.list_principals()? {
        if !c.manages(&p)? {
            continue;
        }
        // Only the principals whose keys the policy lets the caller list.
        if c.run(&p, None, None, KeyCommand::List).is_ok() {
            out.extend(t.keys_of(p.id)?);
        }
    }
    out.sort_by_key(|k| k.id);
    ok(StatusCode::OK, keys_json(&out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    #[serde(default)]
    read_only: Option<bool>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    admin: Option<bool>,
    /// Only for import.
    #[serde(default)]
    secret: Option<String>,
}

impl NewKeyBody {
    fn new_key(&self, owner: PrincipalId) -> NewKey {
        let mut k = NewKey::new(owner, self.name.clone());
        k.permissions = self
            .permissions
            .as_ref()
            .map(|ps| {
                ps.iter()
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|ps| !ps.is_empty());
        k.scope.clone_from(&self.scope);
        k.expires_at = self.expires_at;
        if self.admin == Some(true) {
            k.kind = KeyKind::Admin;
        }
        k
    }
}

fn secret_json(rec: &KeyRecord, secret: &Secret) -> Value {
    json!({
        "key": json::key_json(rec, now()),
        "secret": secret.expose(),
        "note": SHOWN_ONCE,
    })
}

async fn create_key(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    let at = at_param(req.uri())?;
    let b: NewKeyBody = body(req.into_body(), false).await?;
    if b.secret.is_some() {
        return Err(ApiError::bad_request(
            "malformed_request",
            "`secret` is only accepted by the import endpoint",
        ));
    }
    let cmd = KeyCommand::Create {
        new: b.new_key(p.id),
        read_only: b.read_only,
    };
    match c.run(&p, None, at.as_deref(), cmd)? {
        KeyCommandResult::Created(rec, secret) => {
            ok(StatusCode::CREATED, secret_json(&rec, &secret))
        }
        _ => Err(internal()),
    }
}

async fn import_key(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    let at = at_param(req.uri())?;
    let mut b: NewKeyBody = body(req.into_body(), true).await?;
    let Some(secret) = b.secret.take().map(Secret::new) else {
        return Err(ApiError::bad_request(
            "malformed_request",
            "the body needs the `secret` to import",
        ));
    };
    let cmd = KeyCommand::Import {
        new: b.new_key(p.id),
        read_only: b.read_only,
        secret,
    };
    match c.run(&p, None, at.as_deref(), cmd)? {
        KeyCommandResult::Updated(rec) => ok(StatusCode::CREATED, json::key_json(&rec, now())),
        _ => Err(internal()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBatchBody {
    keys: Vec<NewKeyBody>,
}

/// Many secrets for one principal: authorized once, written as one mutation with one
/// `keys_imported` audit entry, all or nothing. `?dry_run=true` checks everything and writes nothing.
async fn import_batch(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    // A caller with no claim on the target's keys (not its own, no admin scope over it) is refused
    // before a body of up to IMPORT_BODY_LIMIT bytes is read; the policy decides after.
    let (parts, b) = req.into_parts();
    let c = Caller::authenticate(&e, &parts.headers, &parts.uri)?;
    let p = c.principal(&path_text(p)?)?;
    let mut q = query(&parts.uri, &["at", "dry_run"])?;
    let at = q.remove("at");
    let dry_run = match q.remove("dry_run").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "malformed_request",
                format!("`dry_run` must be true or false, not `{}`", clip(other)),
            ))
        }
    };
    let scope = c.key_scope(&p, None, at.as_deref())?;
    let ImportBatchBody { keys } = body_within(b, IMPORT_BODY_LIMIT, true).await?;
    if keys.is_empty() {
        return Err(ApiError::bad_request(
            "malformed_request",
            "`keys` is empty: nothing to import",
        ));
    }
    if keys.len() > IMPORT_BATCH_MAX {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the batch holds {} keys, more than the {IMPORT_BATCH_MAX} allowed",
                keys.len()
            ),
        ));
    }
    let count = keys.len();
    let mut items = Vec::with_capacity(count);
    for (i, mut k) in keys.into_iter().enumerate() {
        let Some(secret) = k.secret.take().map(Secret::new) else {
            return Err(ApiError::bad_request(
                "malformed_request",
                "the key needs the `secret` to import",
            )
            .item(Some(i)));
        };
        items.push(ImportItem {
            new: k.new_key(p.id),
            read_only: k.read_only,
            secret,
        });
    }
    let refused = |err: ImportKeysError| {
        let api = match err.error {
            ManageError::Forbidden(d) => c.refused(&d, "import keys"),
            other => ApiError::manage(other),
        };
        api.item(err.index)
    };
    if dry_run {
        e.check_import_keys(&c.ident, p.id, scope.as_deref(), items)
            .map_err(refused)?;
        return ok(StatusCode::OK, json!({ "checked": count }));
    }
    let recs = e
        .import_keys(&c.ident, p.id, scope.as_deref(), items)
        .map_err(refused)?;
    ok(StatusCode::CREATED, json!({ "keys": keys_json(&recs) }))
}

async fn show_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let (k, owner) = c.key(key_id(id)?)?;
    let at = at_param(req.uri())?;
    // Seeing a key needs the right to list its owner's keys.
    c.run(&owner, Some(&k), at.as_deref(), KeyCommand::List)?;
    ok(StatusCode::OK, json::key_json(&k, now()))
}

/// Runs a command on one key; returns the key before the change and the result.
fn on_key(
    c: &Caller<'_>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: &Uri,
    cmd: impl FnOnce(&KeyRecord) -> KeyCommand,
) -> Result<(KeyRecord, KeyCommandResult), ApiError> {
    let (k, owner) = c.key(key_id(id)?)?;
    let at = at_param(uri)?;
    let result = c.run(&owner, Some(&k), at.as_deref(), cmd(&k))?;
    Ok((k, result))
}

fn updated(result: KeyCommandResult) -> ApiResult {
    match result {
        KeyCommandResult::Updated(rec) | KeyCommandResult::Deleted(rec) => {
            ok(StatusCode::OK, json::key_json(&rec, now()))
        }
        _ => Err(internal()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

async fn rename_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    // Authenticate before reading the body.
    let (parts, b) = req.into_parts();
    let c = Caller::authenticate(&e, &parts.headers, &parts.uri)?;
    let RenameBody { name } = body(b, false).await?;
    let (_, r) = on_key(&c, id, &parts.uri, |k| KeyCommand::Rename(k.id, name))?;
    updated(r)
}

async fn deactivate_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let (_, r) = on_key(&caller(&e, &req)?, id, req.uri(), |k| {
        KeyCommand::Deactivate(k.id)
    })?;
    updated(r)
}

async fn activate_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let (_, r) = on_key(&caller(&e, &req)?, id, req.uri(), |k| {
        KeyCommand::Activate(k.id)
    })?;
    updated(r)
}

async fn delete_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let (_, r) = on_key(&caller(&e, &req)?, id, req.uri(), |k| {
        KeyCommand::Delete(k.id)
    })?;
    updated(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    overlap: Option<u64>,
}

async fn rotate_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let (parts, b) = req.into_parts();
    let c = Caller::authenticate(&e, &parts.headers, &parts.uri)?;
    let RotateBody { overlap } = body(b, false).await?;
    let until = now().saturating_add(overlap.unwrap_or(DEFAULT_OVERLAP));
    let (old, r) = on_key(&c, id, &parts.uri, |k| KeyCommand::Rotate(k.id, until))?;
    match r {
        KeyCommandResult::Created(rec, secret) => {
            let mut v = secret_json(&rec, &secret);
            v["old"] = json::key_json(&old, now());
            v["old_valid_until"] = json!(until);
            ok(StatusCode::OK, v)
        }
        _ => Err(internal()),
    }
}

async fn regenerate_key(
    State(e): State<Arc<Engine>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let (old, r) = on_key(&caller(&e, &req)?, id, req.uri(), |k| {
        KeyCommand::Regenerate(k.id)
    })?;
    match r {
        KeyCommandResult::Created(rec, secret) => {
            let mut v = secret_json(&rec, &secret);
            v["old"] = json::key_json(&old, now());
            ok(StatusCode::OK, v)
        }
        _ => Err(internal()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindBody {
    role: String,
    scope: String,
}

fn check_binding(e: &Engine, role: &str, scope: &str) -> Result<(), ApiError> {
    let state = e.policy();
    if state.compiled.role(role).is_none() {
        return Err(ApiError::bad_request(
            "unknown_role",
            format!("the policy has no role `{}`", clip(role)),
        ));
    }
    if state.compiled.resolve_binding(role, scope).is_none() {
        return Err(ApiError::bad_request(
            "invalid_scope",
            format!(
                "role `{}` cannot be bound at `{}`: the scope is not a path to an instance of the role's scope kind",
                clip(role),
                clip(scope)
            ),
        ));
    }
    Ok(())
}

fn binding_json(p: &Principal, role: &str, scope: &str) -> Value {
    json!({ "principal": p.id, "login": p.login, "role": role, "scope": scope })
}

async fn bind(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    let BindBody { role, scope } = body(req.into_body(), false).await?;
    check_binding(&e, &role, &scope)?;
    c.require_at(&scope, "bind")?;
    e.table().bind(c.actor(), p.id, &role, &scope)?;
    ok(StatusCode::CREATED, binding_json(&p, &role, &scope))
}

async fn unbind(
    State(e): State<Arc<Engine>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let p = c.principal(&path_text(p)?)?;
    let mut q = query(req.uri(), &["role", "scope"])?;
    let (Some(role), Some(scope)) = (q.remove("role"), q.remove("scope")) else {
        return Err(ApiError::bad_request(
            "malformed_request",
            "the query needs `role` and `scope`",
        ));
    };
    c.require_at(&scope, "unbind")?;
    e.table().unbind(c.actor(), p.id, &role, &scope)?;
    ok(StatusCode::OK, binding_json(&p, &role, &scope))
}

async fn list_workspaces(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    let action = c.manage_action()?.to_owned();
    let out: Vec<Value> = e
        .table()
        .list_workspaces()?
        .iter()
        .filter(|w| {
            e.authorize_identity(&c.ident, &action, &w.scope, None)
                .is_allowed()
        })
        .map(json::workspace_json)
        .collect();
    ok(StatusCode::OK, json!(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceBody {
    public_key: String,
    name: String,
    scope: String,
    #[serde(default)]
    company: Option<String>,
}

async fn add_workspace(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    let b: WorkspaceBody = body(req.into_body(), false).await?;
    c.require_at(&b.scope, "add workspace")?;
    let company = match &b.company {
        Some(text) => Some(c.principal(text)?.id),
        None => None,
    };
    let w = e.table().add_workspace(
        c.actor(),
        Workspace {
            public_key: b.public_key,
            name: b.name,
            scope: b.scope,
            company,
        },
    )?;
    ok(StatusCode::CREATED, json::workspace_json(&w))
}

fn visible_workspace(c: &Caller<'_>, e: &Engine, pk: &str) -> Result<Workspace, ApiError> {
    let action = c.manage_action()?;
    match e.table().workspace(pk)? {
        Some(w)
            if e.authorize_identity(&c.ident, action, &w.scope, None)
                .is_allowed() =>
        {
            Ok(w)
        }
        _ => Err(ApiError::not_found("workspace", pk)),
    }
}

async fn show_workspace(
    State(e): State<Arc<Engine>>,
    pk: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let w = visible_workspace(&c, &e, &path_text(pk)?)?;
    ok(StatusCode::OK, json::workspace_json(&w))
}

async fn remove_workspace(
    State(e): State<Arc<Engine>>,
    pk: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> ApiResult {
    let c = caller(&e, &req)?;
    let w = visible_workspace(&c, &e, &path_text(pk)?)?;
    let w = e.table().remove_workspace(c.actor(), &w.public_key)?;
    ok(StatusCode::OK, json::workspace_json(&w))
}

async fn audit(State(e): State<Arc<Engine>>, req: Request) -> ApiResult {
    let c = caller(&e, &req)?;
    c.manage_action()?;
    let q = query(req.uri(), &["principal", "limit", "before"])?;
    let limit = match q.get("limit") {
        Some(l) => parse_u64("limit", l)?.min(AUDIT_MAX as u64) as usize,
        None => AUDIT_PAGE,
    };
    let mut before = match q.get("before") {
        Some(b) => Some(parse_u64("before", b)?),
        None => None,
    };
    let principal = match q.get("principal") {
        Some(text) => Some(c.principal(text)?.id),
        None => None,
    };
    if principal.is_none() {
        // Without a filter, only administrators read the log (filtered to what they manage).
        c.require_admin("audit")?;
    }
    let t = e.table();
    // Refusals are queued in memory: write them first, so the log read below is up to date.
    if let Err(err) = t.write_denials() {
        tracing::error!(target: "keyward::admin", error = %err, "cannot write the queued refusals");
    }
    // With a filter every entry of that (managed) principal is shown. Without one, an entry is
    // shown when the caller manages every principal its operation concerns (the actor aside; for a
    // refused call, the principal refused is what it concerns).
    let mut seen: HashMap<PrincipalId, bool> = HashMap::new();
    let mut out = Vec::new();
    let mut next = None;
    'pages: while out.len() < limit {
        let page = t.audit(AuditQuery {
            principal,
            limit: limit.max(64),
            before,
        })?;
        let Some(last) = page.last() else { break };
        let last_seq = last.seq;
        for entry in &page {
            let mut visible = true;
            let concerned = if principal.is_some() {
                Vec::new()
            } else if entry.op.is_denial() {
                match entry.actor {
                    Actor::Principal(id) => vec![id],
                    _ => Vec::new(),
                }
            } else {
                entry.op.principals()
            };
            for pid in concerned {
                let v = match seen.get(&pid) {
                    Some(v) => *v,
                    None => {
                        let v = match t.principal(pid)? {
                            Some(p) => c.manages(&p)?,
                            // Removed principals: administrators only.
                            None => !c.admin.is_empty(),
                        };
                        seen.insert(pid, v);
                        v
                    }
                };
                visible &= v;
            }
            if visible {
                out.push(json::audit_json(entry));
                if out.len() == limit {
                    next = Some(entry.seq);
                    break 'pages;
                }
            }
        }
        before = Some(last_seq);
        if last_seq <= 1 {
            break;
        }
    }
    ok(
        StatusCode::OK,
        json!({ "entries": out, "next_before": next.filter(|s| *s > 1) }),
    )
}
