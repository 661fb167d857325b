//! The engine: what a host calls on every request. Credential → key → principal → decision.
//!
//! ```text
//! headers, query ──credential::extract──▶ Presented (style, email?, key, workspace?)
//!                 ──token::classify────▶ checksum of generated keys checked before any lookup
//!                 ──hash (BLAKE3, pepper)─▶ cache or key table ─▶ key record (active? expired?)
//!                 ──owner───────────────▶ principal + bindings (cached, resolved against the policy)
//!                 ──CompiledPolicy::decide▶ Allow { principal, key, role, granted_at } | Deny(reason)
//! ```
//!
//! **Invariant:** the hot path ([`Engine::authorize`]) takes `&self`, holds no lock across storage
//! reads, and allocates nothing on a warm cache beyond what the credential decoding needs.

mod cache;
mod explain;
mod manage;
pub(crate) mod memo;
mod reason;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderMap;

pub use explain::Explanation;
pub use manage::{ImportItem, ImportKeysError, KeyCommand, KeyCommandResult, ManageError};
pub use reason::{Allow, Decision, Deny, DenyResponse, Reason};

use crate::credential::{self, CredentialError, Presented, Style, Styles};
use crate::decision::{CompiledPolicy, Forbidden, KeyLimits, Outcome, Via};
use crate::diag::Report;
use crate::policy::model::Unauthenticated;
use crate::policy::{self, Policy};
use crate::store::{KeyTable, PrincipalId, StoreError, StoreOptions};
use crate::text::{Name, NameBuf};
use crate::token::{self, KeyFormat, TokenError};
use cache::{Cache, CachedKey, CachedPrincipal, IdText, SmallText};

/// Everything that can stop an engine from opening or reloading.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The key table could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] policy::LoadError),
    /// The policy text has errors.
    #[error("{0}")]
    Invalid(Report),
    /// The policy's key prefix is not usable.
    #[error("the policy's key prefix is not usable: {0}")]
    KeyFormat(TokenError),
}

/// Options for [`Engine::open`].
#[derive(Clone, Default)]
pub struct EngineOptions {
    /// Server-side secret mixed into every key hash. A table must always be opened with the same one.
    pub pepper: Option<[u8; 32]>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("pepper", &self.pepper.map(|_| "<redacted>"))
            .finish()
    }
}

/// One request to authorize: its credential-bearing parts, the action and the resource.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The request's headers (`Authorization`, the workspace header).
    pub headers: &'a HeaderMap,
    /// The query string without `?`, if the policy accepts a query parameter credential.
    pub query: Option<&'a str>,
    /// The action, e.g. `view`.
    pub action: &'a str,
    /// The resource path, e.g. `organization:6/project:3`; relative to the context when one is set
    /// and the path starts beneath it; `.` is the context itself.
    pub resource: &'a str,
    /// A scope the request acts in, chosen by the host (SEED's `organization_id` → `organization:6`).
    /// A workspace selected by the credential takes precedence.
    pub context: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request with headers, action and resource.
    pub fn new(headers: &'a HeaderMap, action: &'a str, resource: &'a str) -> Self {
        Request {
            headers,
            query: None,
            action,
            resource,
            context: None,
        }
    }

    /// A request from an `http` request head (headers and the URI's query string).
    pub fn from_parts(parts: &'a http::request::Parts, action: &'a str, resource: &'a str) -> Self {
        Request {
            headers: &parts.headers,
            query: parts.uri.query(),
            action,
            resource,
            context: None,
        }
    }

    /// Sets the query string.
    pub fn with_query(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }

    /// Sets the context scope (e.g. `organization:6`).
    pub fn with_context(mut self, context: Option<&'a str>) -> Self {
        self.context = context;
        self
    }
}

/// The policy in force: its text, model, compiled tables and derived settings. Replaced as a whole.
#[derive(Debug)]
pub struct PolicyState {
    /// The checked policy.
    pub policy: Policy,
    /// Its compiled tables.
    pub compiled: CompiledPolicy,
    styles: Styles,
    key_format: KeyFormat,
    generation: u64,
    #[cfg(feature = "tower")]
    routes: crate::http::RouteTable,
}

impl PolicyState {
    fn new(policy: Policy, generation: u64) -> Result<Self, EngineError> {
        let compiled = CompiledPolicy::compile(&policy.model);
        let c = &policy.model.credentials;
        let styles = Styles {
            basic_email_key: c.basic_email_key,
            basic_key: c.basic_key,
            api_token: c.api_token,
            query_param: c.query_param.clone(),
            apikey_organization: c.apikey_organization,
            raw_key: c.raw_key.clone(),
            bearer: c.bearer,
            workspace_header: c.workspace_header.clone(),
        };
        let key_format = match &policy.model.keys.prefix {
            Some(p) => KeyFormat::new(p.clone()).map_err(EngineError::KeyFormat)?,
            None => KeyFormat::default(),
        };
        Ok(PolicyState {
            #[cfg(feature = "tower")]
            routes: crate::http::RouteTable::new(&policy.model),
            policy,
            compiled,
            styles,
            key_format,
            generation,
        })
    }

    /// The credential styles this policy accepts.
    pub fn styles(&self) -> &Styles {
        &self.styles
    }

    /// The policy's HTTP routes.
    #[cfg(feature = "tower")]
    pub fn routes(&self) -> &crate::http::RouteTable {
        &self.routes
    }
}

/// An authenticated caller: who, with which key, acting where.
#[derive(Clone, Debug)]
pub struct Identity {
    key: Arc<CachedKey>,
    principal: Arc<CachedPrincipal>,
    style: Style,
    /// The selected workspace: (public key, scope path).
    workspace: Option<(Arc<str>, Arc<str>)>,
}

/// A workspace a request acts on: (public key, scope path).
type SelectedWorkspace = (Arc<str>, Arc<str>);

/// An authenticated caller as a decision reads it: borrowed entries (from an [`Identity`], or from
/// the cache while its shard is read-locked).
struct Who<'a> {
    key: &'a CachedKey,
    principal: &'a CachedPrincipal,
    style: Style,
    workspace: Option<(Arc<str>, Arc<str>)>,
}

impl Identity {
    fn who(&self) -> Who<'_> {
        Who {
            key: &self.key,
            principal: &self.principal,
            style: self.style,
            workspace: self.workspace.clone(),
        }
    }

    /// The principal's id.
    pub fn principal(&self) -> PrincipalId {
        self.principal.id
    }

    /// The principal's login.
    pub fn login(&self) -> &str {
        &self.principal.principal.login
    }

    /// The key's id.
    pub fn key(&self) -> crate::store::KeyId {
        self.key.id
    }

    /// How the credential arrived.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The public key of the workspace the request acts on, if any.
    pub fn workspace(&self) -> Option<&str> {
        self.workspace.as_ref().map(|(k, _)| k.as_ref())
    }
}

/// The authorization engine. `Send + Sync`; share it with an `Arc`. Every method takes `&self`.
pub struct Engine {
    table: Arc<KeyTable>,
    state: ArcSwap<PolicyState>,
    cache: Arc<Cache>,
    /// Credentials read before (see `memo`).
    memo: memo::Memo,
    generation: AtomicU64,
    /// Serialises reloads, so two racing ones cannot install their policies out of order.
    reloading: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("table", &self.table)
            .field("policy", &self.state.load().policy.source.name)
            .finish_non_exhaustive()
    }
}

/// True when the decision got past authentication (the key was found and its checks passed).
fn authenticated(d: &Decision) -> bool {
    match d {
        Decision::Allow(_) => true,
        Decision::Deny(d) => !d.reason.is_authentication(),
    }
}

/// The credential of a request, as the policy's styles read it.
fn present(
    state: &PolicyState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Presented, Deny> {
    credential::extract(headers, query, &state.styles).map_err(|e| {
        Deny::unauthenticated(match e {
            CredentialError::Missing => Reason::NoCredential,
            e @ (CredentialError::UnknownScheme { .. }
            | CredentialError::StyleNotAccepted { .. }) => Reason::UnknownScheme(e),
            e => Reason::MalformedCredential(e),
        })
    })
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// True if the email of a Basic `email:key` names `principal` (its login, ignoring case).
pub(crate) fn email_matches(email: &str, principal: &CachedPrincipal) -> bool {
    if email.is_ascii() {
        email.eq_ignore_ascii_case(principal.login_lower.as_str())
    } else {
        email.to_lowercase() == principal.login_lower.as_str()
    }
}

/// How often (seconds) a key's in-memory last-used time is refreshed.
const LAST_USED_GRANULARITY: u64 = 60;

impl Engine {
    /// Opens the key table in `dir` (created if missing) under `policy`.
    pub fn open(
        dir: impl AsRef<Path>,
        policy: Policy,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let state = PolicyState::new(policy, 1)?;
        let table = KeyTable::open(
            dir,
            StoreOptions {
                pepper: options.pepper,
                key_format: state.key_format.clone(),
                ..StoreOptions::default()
            },
        )?;
        Ok(Engine::assemble(table, state))
    }

    /// Opens the key table in `dir` under the policy file `policy_path`.
    pub fn open_files(
        dir: impl AsRef<Path>,
        policy_path: impl AsRef<Path>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let policy = policy::load_file(policy_path.as_ref())?;
        Engine::open(dir, policy, options)
    }

    /// An engine over a temporary key table that disappears when dropped (demos and tests).
    pub fn temporary(policy: Policy, options: EngineOptions) -> Result<Engine, EngineError> {
        let state = PolicyState::new(policy, 1)?;
        let table = KeyTable::temporary(StoreOptions {
            pepper: options.pepper,
            key_format: state.key_format.clone(),
            ..StoreOptions::default()
        })?;
        Ok(Engine::assemble(table, state))
    }

    /// Wraps an already open key table.
    pub fn with_table(table: KeyTable, policy: Policy) -> Result<Engine, EngineError> {
        Ok(Engine::assemble(table, PolicyState::new(policy, 1)?))
    }

    fn assemble(table: KeyTable, state: PolicyState) -> Engine {
        let cache = Arc::new(Cache::new());
        let hook = Arc::clone(&cache);
        table.subscribe(Box::new(move |change| hook.invalidate(change)));
        Engine {
            table: Arc::new(table),
            state: ArcSwap::from_pointee(state),
            cache,
            memo: memo::Memo::new(),
            generation: AtomicU64::new(1),
            reloading: parking_lot::Mutex::new(()),
        }
    }

    /// The key table. Mutations made through it are seen by the very next decision.
    pub fn table(&self) -> &KeyTable {
        &self.table
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<PolicyState> {
        self.state.load_full()
    }

    /// The policy in force, for the duration of one request: unlike [`Engine::policy`] this writes
    /// no shared reference count (threads deciding at once would pass that line between cores on
    /// every request).
    #[cfg(feature = "tower")]
    pub(crate) fn policy_now(&self) -> arc_swap::Guard<Arc<PolicyState>> {
        self.state.load()
    }

    /// Replaces the policy, atomically: decisions already running finish under the old one, every
    /// later decision uses the new one.
    pub fn reload(&self, policy: Policy) -> Result<(), EngineError> {
        let _one_at_a_time = self.reloading.lock();
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let state = PolicyState::new(policy, generation)?;
        self.state.store(Arc::new(state));
        self.cache.clear();
        Ok(())
    }

    /// Parses, checks and installs a policy text. A policy with errors is refused and the old one
    /// keeps serving; the report says why.
    pub fn reload_text(&self, name: &str, text: &str) -> Result<(), EngineError> {
        let policy = Policy::parse(name, text).map_err(EngineError::Invalid)?;
        self.reload(policy)
    }

    /// Reloads the policy from a file, keeping the old one on any error.
    pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<(), EngineError> {
        let policy = policy::load_file(path.as_ref())?;
        self.reload(policy)
    }

    /// Authenticates and authorizes one request.
    ///
    /// On a warm cache the decision is made on the entries themselves — the key entry the memo
    /// holds (once it is seen not retired: a revocation that returned before is seen), or the
    /// cache's while its shard is read-locked: no reference count is taken, so threads deciding for
    /// the same keys do not pass those entries' cache lines back and forth. Anything else (a miss, a
    /// stale owner, an entry of an older policy) takes the owning path below.
    ///
    /// A credential this thread has read before under this policy skips decoding, hashing and the
    /// key cache's lookup (the memo: a keyed tag of its headers → its key entry, no secret; about
    /// 3 MB per thread and engine at most, held by each thread that decides).
    pub fn authorize(&self, req: &Request<'_>) -> Decision {
        self.authorize_in(&self.state.load(), req)
    }

    /// [`Self::authorize`] under `state`.
    pub(crate) fn authorize_in(&self, state: &PolicyState, req: &Request<'_>) -> Decision {
        let tag = self.memo.tag(&state.styles, req.headers, req.query);
        self.authorize_tagged(state, req, tag, unix_now())
    }

    /// The memo's tag of a request's credential headers alone (its query must pass
    /// [`Self::memo_tag_for_query`] before the tag is used), its set's line on its way.
    #[cfg(feature = "tower")]
    pub(crate) fn memo_tag_headers(
        &self,
        state: &PolicyState,
        headers: &HeaderMap,
    ) -> Option<memo::Tag> {
        let tag = self.memo.tag_headers(&state.styles, headers)?;
        self.memo.prefetch(&tag);
        Some(tag)
    }

    /// `tag` (from [`Self::memo_tag_headers`]) if the request's query may be memoised too; then
    /// starts loading the key entry it is remembered with and its owner's lines (see `memo`).
    #[cfg(feature = "tower")]
    pub(crate) fn memo_tag_for_query(
        &self,
        state: &PolicyState,
        tag: Option<memo::Tag>,
        query: Option<&str>,
    ) -> Option<memo::Tag> {
        let tag = tag.filter(|_| !memo::query_may_hold_credential(&state.styles, query))?;
        self.memo.prefetch_entry(&tag);
        Some(tag)
    }

    /// [`Self::authorize_in`] with the memo's tag of `req`'s headers and query (`None`: not
    /// memoised), at `now` (unix seconds: a caller that has read the clock passes that reading).
    pub(crate) fn authorize_tagged(
        &self,
        state: &PolicyState,
        req: &Request<'_>,
        tag: Option<memo::Tag>,
        now: u64,
    ) -> Decision {
        // A credential read before: straight to its key entry and the checks (see `memo`).
        if let Some(tag) = &tag {
            let mut hit = None;
            self.memo.with(tag, state.generation, |key, claim| {
                // The tag matched the credential this entry was found for: no hash to compare.
                hit = self.decide_warm(state, claim, None, key, req, now);
            });
            if let Some(decision) = hit {
                return decision;
            }
        }
        let presented = match present(state, req.headers, req.query) {
            Ok(p) => p,
            Err(d) => return Decision::Deny(d),
        };
        let hash = match self.hash_presented(state, &presented) {
            Ok(h) => h,
            Err(d) => return Decision::Deny(d),
        };
        let remember = |key: &Arc<CachedKey>| {
            if let Some(tag) = &tag {
                self.memo.insert(tag, state.generation, &presented, key);
            }
        };
        let warm = self.cache.with_key(&hash, |key| {
            let decision =
                self.decide_warm(state, presented.claim(), Some(&hash), key, req, now)?;
            if authenticated(&decision) {
                remember(key);
            }
            Some(decision)
        });
        if let Some(Some(decision)) = warm {
            return decision;
        }
        match self.identify_hashed(state, &presented, hash) {
            Ok(ident) => {
                remember(&ident.key);
                self.decide_in(state, &ident.who(), req.action, req.resource, req.context)
            }
            Err(d) => Decision::Deny(d),
        }
    }

    /// The decision on a cached key entry (borrowed under its shard's lock), or `None` when the
    /// entry was resolved under another policy and must be read again. `hash` is the presented
    /// key's, compared with the entry's; `None` when the memo found the entry by this very
    /// credential (it was compared when the memo learnt it).
    fn decide_warm(
        &self,
        state: &PolicyState,
        claim: memo::Claim<'_>,
        hash: Option<&token::KeyHash>,
        key: &CachedKey,
        req: &Request<'_>,
        now: u64,
    ) -> Option<Decision> {
        // The principal entry's header and its first binding (on the next line), loaded side by
        // side rather than one after the other (see `prefetch`).
        let owner: &CachedPrincipal = &key.principal;
        crate::prefetch::line(owner);
        crate::prefetch::line(owner.bindings.first_inline());
        if key.generation != state.generation || !key.principal.is_current(state.generation) {
            return None;
        }
        let principal = &key.principal;
        Some(match self.check(claim, hash, key, principal, now) {
            Ok(workspace) => self.decide_in(
                state,
                &Who {
                    key,
                    principal,
                    style: claim.style,
                    workspace,
                },
                req.action,
                req.resource,
                req.context,
            ),
            Err(d) => Decision::Deny(d),
        })
    }

    /// Authenticates a request's credential without authorizing anything.
    pub fn authenticate(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Identity, Deny> {
        let state = self.state.load();
        self.authenticate_in(&state, headers, query)
    }

    /// Authorizes an already authenticated caller.
    pub fn authorize_identity(
        &self,
        ident: &Identity,
        action: &str,
        resource: &str,
        context: Option<&str>,
    ) -> Decision {
        let state = self.state.load();
        self.decide_in(&state, &ident.who(), action, resource, context)
    }

    fn authenticate_in(
        &self,
        state: &PolicyState,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, Deny> {
        let presented = present(state, headers, query)?;
        let hash = self.hash_presented(state, &presented)?;
        self.identify_hashed(state, &presented, hash)
    }

    /// Checks the key's format (a forged checksum costs no lookup) and hashes it.
    fn hash_presented(&self, state: &PolicyState, p: &Presented) -> Result<token::KeyHash, Deny> {
        let secret = p.key.expose();
        match token::classify(secret, &state.key_format) {
            Ok(_) => Ok(self.table.hash(secret)),
            Err(TokenError::BadChecksum) => Err(Deny::unauthenticated(Reason::BadChecksum)),
            Err(e) => Err(Deny::unauthenticated(Reason::MalformedKey(e))),
        }
    }

    /// The owning path: the key's entry (cached, or read and cached), its owner, the checks.
    fn identify_hashed(
        &self,
        state: &PolicyState,
        p: &Presented,
        hash: token::KeyHash,
    ) -> Result<Identity, Deny> {
        let key = match self.cached_key(state, &hash) {
            Ok(Some(k)) => k,
            Ok(None) | Err(_) => return Err(Deny::unauthenticated(Reason::UnknownKey)),
        };
        let principal = if key.principal.is_current(state.generation) {
            Arc::clone(&key.principal)
        } else {
            // Checked first as `check` would, so an inactive key is not reported as unknown when
            // its owner's entry is being replaced.
            if key.hash != hash {
                return Err(Deny::unauthenticated(Reason::UnknownKey));
            }
            match self.reresolve_owner(state, &key) {
                Ok(Some(p)) => p,
                Ok(None) | Err(_) => {
                    return Err(Deny {
                        reason: Reason::UnknownKey,
                        principal: Some(key.owner),
                        key: Some(key.id),
                    })
                }
            }
        };
        let workspace = self.check(p.claim(), Some(&hash), &key, &principal, unix_now())?;
        Ok(Identity {
            key,
            principal,
            style: p.style,
            workspace,
        })
    }

    /// What every decision checks about the key and its owner, on borrowed entries: the hash again
    /// in constant time (when one was presented; see `decide_warm`), active, unexpired at `now` (unix
    /// seconds), the email of a Basic `email:key`, the workspace header (admin keys only). Returns the
    /// workspace the request acts on; records the use.
    fn check(
        &self,
        p: memo::Claim<'_>,
        hash: Option<&token::KeyHash>,
        key: &CachedKey,
        principal: &CachedPrincipal,
        now: u64,
    ) -> Result<Option<SelectedWorkspace>, Deny> {
        // The map lookup matched on the hash; compare it again in constant time.
        if hash.is_some_and(|h| key.hash != *h) {
            return Err(Deny::unauthenticated(Reason::UnknownKey));
        }
        let deny = |reason| Deny {
            reason,
            principal: Some(key.owner),
            key: Some(key.id),
        };
        if !key.active {
            return Err(deny(Reason::InactiveKey));
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(deny(Reason::ExpiredKey));
        }
        if p.email
            .is_some_and(|email| !email_matches(email, principal))
        {
            return Err(deny(Reason::EmailMismatch));
        }
        let workspace = match p.workspace {
            Some(public_key) => {
                if !key.admin {
                    return Err(deny(Reason::WorkspaceHeaderNeedsAdminKey));
                }
                match self.cached_workspace(public_key) {
                    Some(ws) => Some((
                        Arc::from(ws.public_key.as_str()),
                        Arc::from(ws.scope.as_str()),
                    )),
                    None => return Err(deny(Reason::UnknownWorkspace)),
                }
            }
            None => principal.default_workspace.as_deref().cloned(),
        };
        // Written at most once per granularity: otherwise only read, like the rest of the entry.
        if key.last_used.load(Ordering::Relaxed) + LAST_USED_GRANULARITY <= now {
            key.last_used.store(now, Ordering::Relaxed);
        }
        Ok(workspace)
    }

    /// Re-checks an identity obtained earlier: its key must still exist, be active and unexpired, and
    /// its principal's bindings are read afresh. Used before acting on a stored `Identity`.
    pub(crate) fn refresh(&self, state: &PolicyState, ident: &Identity) -> Result<Identity, Deny> {
        let deny = |reason| Deny {
            reason,
            principal: Some(ident.principal()),
            key: Some(ident.key()),
        };
        let key = match self.cached_key(state, &ident.key.hash) {
            Ok(Some(k)) if k.id == ident.key.id => k,
            _ => return Err(deny(Reason::UnknownKey)),
        };
        if !key.active {
            return Err(deny(Reason::InactiveKey));
        }
        if key.expires_at.is_some_and(|t| t <= unix_now()) {
            return Err(deny(Reason::ExpiredKey));
        }
        let principal = match self.cached_principal(state, key.owner) {
            Ok(Some(p)) => p,
            _ => return Err(deny(Reason::UnknownKey)),
        };
        Ok(Identity {
            key,
            principal,
            style: ident.style,
            workspace: ident.workspace.clone(),
        })
    }

    fn decide_in(
        &self,
        state: &PolicyState,
        ident: &Who<'_>,
        action: &str,
        resource: &str,
        context: Option<&str>,
    ) -> Decision {
        let deny = |reason| {
            Decision::Deny(Deny {
                reason,
                principal: Some(ident.principal.id),
                key: Some(ident.key.id),
            })
        };
        let compiled = &state.compiled;
        let Some(action_id) = compiled.action(action) else {
            return deny(Reason::UnknownAction(action.chars().take(64).collect()));
        };
        let context = ident
            .workspace
            .as_ref()
            .map(|(_, s)| s.as_ref())
            .or(context);
        let joined;
        let resource = match context {
            Some(ctx) => match absolute(compiled, ctx, resource) {
                Some(j) => {
                    joined = j;
                    joined.as_str()
                }
                None => resource,
            },
            None => resource,
        };
        let parsed = match compiled.parse_resource(resource) {
            Ok(r) => r,
            Err(e) => return deny(Reason::InvalidResource(e)),
        };
        let (limits_owned, bindings_owned);
        let limits: &KeyLimits = if ident.key.generation == state.generation {
            ident.key.limits()
        } else {
            limits_owned = resolve_limits(compiled, &ident.key.record);
            &limits_owned
        };
        let principal = ident.principal;
        // An entry resolved under an older policy is resolved again here (once), not trusted.
        let bindings: &[crate::decision::Binding] = if principal.generation == state.generation {
            &principal.bindings
        } else {
            bindings_owned = resolve_bindings(compiled, &principal.stored_bindings);
            &bindings_owned
        };
        match compiled.decide(
            principal.id_text.as_str(),
            bindings,
            limits,
            action_id,
            &parsed,
        ) {
            Outcome::Allow(via) => {
                let (role, granted_at) = match via {
                    Via::Binding(i) => {
                        let b = &bindings[i];
                        let role = Name::new(compiled.role_name(b.role).map_or("", |r| &**r));
                        (role, Name::new(b.scope.as_str()))
                    }
                    Via::SelfAccess => {
                        let (kind, id) = parsed.first();
                        let kind = &compiled.model().kinds[kind as usize].name;
                        let mut scope = NameBuf::new();
                        for part in [kind.as_str(), ":", id] {
                            scope.push_str(part);
                        }
                        (Name::new("self"), scope.finish())
                    }
                };
                Decision::Allow(Allow {
                    principal: principal.id,
                    key: ident.key.id,
                    role,
                    granted_at,
                    style: ident.style,
                    workspace: ident.workspace.as_ref().map(|(k, _)| Arc::clone(k)),
                })
            }
            Outcome::Deny(f) => deny(match f {
                Forbidden::UnknownAction => Reason::UnknownAction(action.to_string()),
                Forbidden::InvalidResource(e) => Reason::InvalidResource(e),
                Forbidden::DenyRule(i) => Reason::DenyRule(
                    compiled
                        .model()
                        .denies
                        .get(i as usize)
                        .map_or_else(String::new, |d| d.name.clone()),
                ),
                Forbidden::OutsideKeyScope => Reason::OutsideKeyScope,
                Forbidden::OutsideKeyPermissions => Reason::OutsideKeyPermissions,
                Forbidden::ReadOnlyKey => Reason::ReadOnlyKey,
                Forbidden::ObserverCannotWrite => Reason::ObserverCannotWrite,
                Forbidden::NoRole => Reason::NoRole,
            }),
        }
    }

    /// How to answer a denial over HTTP under the current policy: 401 (or the policy's redirect or
    /// status) for authentication failures, 403 for authorization failures, with the JSON error body.
    pub fn deny_response(&self, deny: &Deny) -> DenyResponse {
        let state = self.state.load();
        let body = serde_json::json!({
            "status": "error",
            "code": deny.reason.code(),
            "message": deny.reason.to_string(),
        })
        .to_string();
        let bad_request = matches!(
            deny.reason,
            Reason::InvalidPath(_) | Reason::MissingParameter(_) | Reason::BadParameter(_)
        );
        if bad_request {
            return DenyResponse {
                status: 400,
                location: None,
                body,
            };
        }
        if !deny.reason.is_authentication() {
            return DenyResponse {
                status: 403,
                location: None,
                body,
            };
        }
        match &state.policy.model.unauthenticated {
            Unauthenticated::Status(s) => DenyResponse {
                status: *s,
                location: None,
                body,
            },
            Unauthenticated::Redirect(to) => DenyResponse {
                status: 302,
                location: Some(to.clone()),
                body,
            },
        }
    }

    /// Writes the batched last-used times to the key table (one write). Returns how many keys.
    pub fn flush_last_used(&self) -> Result<usize, StoreError> {
        let dirty = self.cache.take_dirty_last_used();
        if !dirty.is_empty() {
            self.table.record_last_used(&dirty)?;
        }
        Ok(dirty.len())
    }

    /// Number of keys and principals held in memory.
    pub fn cached(&self) -> (usize, usize) {
        self.cache.len()
    }

    // ---- cache fills ----------------------------------------------------------------------------

    fn cached_key(
        &self,
        state: &PolicyState,
        hash: &token::KeyHash,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        if let Some(k) = self.cache.key(hash) {
            if k.generation == state.generation {
                return Ok(Some(k));
            }
        }
        let seq = self.table.seq();
        let Some(record) = self.table.key_by_hash(hash)? else {
            return Ok(None);
        };
        let Some(principal) = self.cached_principal(state, record.owner)? else {
            return Ok(None);
        };
        let limits = resolve_limits(&state.compiled, &record);
        let entry = Arc::new(CachedKey::new(record, principal, state.generation, limits));
        let current = state.generation;
        self.cache.insert_key(Arc::clone(&entry), || {
            self.table.seq() == seq && self.state.load().generation == current
        });
        Ok(Some(entry))
    }

    /// `key`'s owner resolved afresh (its cached entry went stale), and `key`'s cache entry replaced
    /// by one pointing at the fresh resolution.
    fn reresolve_owner(
        &self,
        state: &PolicyState,
        key: &CachedKey,
    ) -> Result<Option<Arc<CachedPrincipal>>, StoreError> {
        let seq = self.table.seq();
        let Some(principal) = self.cached_principal(state, key.owner)? else {
            return Ok(None);
        };
        let entry = Arc::new(key.with_principal(Arc::clone(&principal)));
        let current = state.generation;
        self.cache.insert_key(entry, || {
            self.table.seq() == seq && self.state.load().generation == current
        });
        Ok(Some(principal))
    }

    fn cached_principal(
        &self,
        state: &PolicyState,
        id: PrincipalId,
    ) -> Result<Option<Arc<CachedPrincipal>>, StoreError> {
        if let Some(p) = self.cache.principal(id) {
            if p.is_current(state.generation) {
                return Ok(Some(p));
            }
        }
        let seq = self.table.seq();
        let Some(principal) = self.table.principal(id)? else {
            return Ok(None);
        };
        let stored = self.table.bindings_of(id)?;
        let bindings = resolve_bindings(&state.compiled, &stored);
        let default_workspace = match &principal.default_workspace {
            Some(pk) => self.table.workspace(pk)?.map(|ws| {
                Arc::new((
                    Arc::from(ws.public_key.as_str()),
                    Arc::from(ws.scope.as_str()),
                ))
            }),
            None => None,
        };
        let entry = Arc::new(CachedPrincipal {
            stale: AtomicBool::new(false),
            generation: state.generation,
            id: principal.id,
            id_text: IdText::new(principal.id),
            bindings: bindings.into_iter().collect(),
            login_lower: SmallText::new(&principal.login.to_lowercase()),
            default_workspace,
            principal,
            stored_bindings: stored,
        });
        let current = state.generation;
        Ok(Some(self.cache.insert_principal(entry, || {
            self.table.seq() == seq && self.state.load().generation == current
        })))
    }

    fn cached_workspace(&self, public_key: &str) -> Option<Arc<crate::store::Workspace>> {
        if let Some(ws) = self.cache.workspace(public_key) {
            return Some(ws);
        }
        let seq = self.table.seq();
        let ws = Arc::new(self.table.workspace(public_key).ok()??);
        self.cache
            .insert_workspace(Arc::clone(&ws), || self.table.seq() == seq);
        Some(ws)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Best effort: the last-used times are approximate by design.
        let _ = self.flush_last_used();
    }
}

fn resolve_limits(compiled: &CompiledPolicy, record: &crate::store::KeyRecord) -> KeyLimits {
    compiled.resolve_key_limits(
        record.read_only,
        record.permissions.as_deref(),
        record.scope.as_deref(),
    )
}

fn resolve_bindings(
    compiled: &CompiledPolicy,
    stored: &[crate::store::Binding],
) -> Vec<crate::decision::Binding> {
    stored
        .iter()
        .filter_map(|b| compiled.resolve_binding(&b.role, &b.scope))
        .collect()
}

/// Joins a context scope and a resource that starts beneath it; `.` is the context itself. `None`
/// when the resource is already absolute (its first kind is not a child of the context's last kind).
fn absolute(compiled: &CompiledPolicy, context: &str, resource: &str) -> Option<String> {
    if resource == "." {
        return Some(context.to_string());
    }
    let ctx_kind = context.rsplit('/').next()?.split_once(':')?.0;
    let first_kind = resource.split('/').next()?.split_once(':')?.0;
    let ctx = compiled.kind(ctx_kind)?;
    let first = compiled.kind(first_kind)?;
    if compiled.model().kinds[first as usize].parent == Some(ctx) {
        Some(format!("{context}/{resource}"))
    } else {
        None
    }
}
