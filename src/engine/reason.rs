//! Decisions and their reasons: what a host gets back from every authorization.

use std::fmt;
use std::sync::Arc;

use crate::credential::{CredentialError, Style};
use crate::decision::ResourceError;
use crate::store::{KeyId, PrincipalId};
use crate::text::Name;
use crate::token::TokenError;

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow(Allow),
    /// The request is refused.
    Deny(Deny),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The reason, for a denial.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(d) => Some(&d.reason),
        }
    }
}

/// Who was allowed, with which key, and by what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    /// The authenticated principal.
    pub principal: PrincipalId,
    /// The key it used (its id, never its secret).
    pub key: KeyId,
    /// The role that granted the action, or `self` for self access.
    pub role: Name,
    /// The scope instance the granting role is bound at (or the principal's own account).
    pub granted_at: Name,
    /// How the credential arrived.
    pub style: Style,
    /// The workspace the request acts on (seats.io), if any.
    pub workspace: Option<Arc<str>>,
}

impl Allow {
    /// True when the key came in the query string: the host may want to warn that keys in URLs end up
    /// in access logs.
    pub fn via_query(&self) -> bool {
        self.style == Style::QueryParam
    }
}

/// A refusal: the reason, and who was identified before it (for audit and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    /// Why.
    pub reason: Reason,
    /// The principal, when authentication got that far.
    pub principal: Option<PrincipalId>,
    /// The key, when authentication got that far.
    pub key: Option<KeyId>,
}

impl Deny {
    pub(crate) fn unauthenticated(reason: Reason) -> Self {
        Deny {
            reason,
            principal: None,
            key: None,
        }
    }
}

/// Why a request was refused. Authentication failures (401) and authorization failures (403) are
/// told apart by [`Reason::is_authentication`]; each reason has a stable [`Reason::code`] and a plain
/// [`Reason`]`: Display` message that never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    // ---- unauthenticated ----
    /// No credential anywhere in the request.
    NoCredential,
    /// The credential could not be read (several headers, too long, bad base64, ...).
    MalformedCredential(CredentialError),
    /// The `Authorization` scheme is not one the policy accepts or knows.
    UnknownScheme(CredentialError),
    /// A generated-format key whose checksum is wrong: forged or mistyped, rejected before any lookup.
    BadChecksum,
    /// The key's text is malformed (wrong length for its prefix, forbidden characters).
    MalformedKey(TokenError),
    /// No such key.
    UnknownKey,
    /// The key is deactivated.
    InactiveKey,
    /// The key has expired.
    ExpiredKey,
    /// Basic `email:key` where the key belongs to someone else.
    EmailMismatch,
    /// The workspace header names no known workspace.
    UnknownWorkspace,
    /// The workspace header was sent with a key that is not an admin key.
    WorkspaceHeaderNeedsAdminKey,
    // ---- forbidden ----
    /// The action is not declared in the policy.
    UnknownAction(String),
    /// The resource path is malformed or does not follow the scope hierarchy.
    InvalidResource(ResourceError),
    /// The named deny rule forbids it.
    DenyRule(String),
    /// The resource lies outside the key's scope.
    OutsideKeyScope,
    /// The action is outside the key's permissions.
    OutsideKeyPermissions,
    /// A read-only key cannot write.
    ReadOnlyKey,
    /// The only role that would allow it is an observer role, and the action writes.
    ObserverCannotWrite,
    /// No role at or above the resource grants the action.
    NoRole,
    /// The policy declares no key-management action (`keys { manage ACTION; }`).
    KeyManagementDisabled,
    /// The request path is malformed or tries to escape its route (HTTP front).
    InvalidPath(String),
    /// No route matches the request (HTTP front; deny by default).
    NoRoute,
    /// The route takes a query parameter the request lacks or repeats (HTTP front).
    MissingParameter(String),
    /// A path or query parameter's value would change the resource's shape (HTTP front).
    BadParameter(String),
}

impl Reason {
    /// True for authentication failures (HTTP 401 or the policy's redirect), false for authorization
    /// failures (403).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            Reason::NoCredential
                | Reason::MalformedCredential(_)
                | Reason::UnknownScheme(_)
                | Reason::BadChecksum
                | Reason::MalformedKey(_)
                | Reason::UnknownKey
                | Reason::InactiveKey
                | Reason::ExpiredKey
                | Reason::EmailMismatch
                | Reason::UnknownWorkspace
                | Reason::WorkspaceHeaderNeedsAdminKey
        )
    }

    /// A stable snake_case code for scripts, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoCredential => "no_credential",
            Reason::MalformedCredential(_) => "malformed_credential",
            Reason::UnknownScheme(_) => "unknown_scheme",
            Reason::BadChecksum => "bad_checksum",
            Reason::MalformedKey(_) => "malformed_key",
            Reason::UnknownKey => "unknown_key",
            Reason::InactiveKey => "inactive_key",
            Reason::ExpiredKey => "expired_key",
            Reason::EmailMismatch => "email_mismatch",
            Reason::UnknownWorkspace => "unknown_workspace",
            Reason::WorkspaceHeaderNeedsAdminKey => "workspace_header_needs_admin_key",
            Reason::UnknownAction(_) => "unknown_action",
            Reason::InvalidResource(_) => "invalid_resource",
            Reason::DenyRule(_) => "deny_rule",
            Reason::OutsideKeyScope => "outside_key_scope",
            Reason::OutsideKeyPermissions => "outside_key_permissions",
            Reason::ReadOnlyKey => "read_only_key",
            Reason::ObserverCannotWrite => "observer_cannot_write",
            Reason::NoRole => "no_role",
            Reason::KeyManagementDisabled => "key_management_disabled",
            Reason::InvalidPath(_) => "invalid_path",
            Reason::NoRoute => "no_route",
            Reason::MissingParameter(_) => "missing_parameter",
            Reason::BadParameter(_) => "bad_parameter",
        }
    }

    /// The detail code of the credential error behind this reason, if any.
    pub fn credential_code(&self) -> Option<&'static str> {
        match self {
            Reason::MalformedCredential(e) | Reason::UnknownScheme(e) => Some(e.code()),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoCredential => f.write_str("no credential in the request"),
            // `CredentialError::Malformed` already says "malformed credential: ...".
            Reason::MalformedCredential(e @ CredentialError::Malformed { .. }) => write!(f, "{e}"),
            Reason::MalformedCredential(e) => write!(f, "malformed credential: {e}"),
            Reason::UnknownScheme(e) => write!(f, "{e}"),
            Reason::BadChecksum => {
                f.write_str("the key's checksum is wrong: it was mistyped or forged")
            }
            Reason::MalformedKey(e) => write!(f, "malformed key: {e}"),
            Reason::UnknownKey => f.write_str("unknown key"),
            Reason::InactiveKey => f.write_str("the key is deactivated"),
            Reason::ExpiredKey => f.write_str("the key has expired"),
            Reason::EmailMismatch => f.write_str("the key does not belong to this email"),
            Reason::UnknownWorkspace => f.write_str("unknown workspace key"),
            Reason::WorkspaceHeaderNeedsAdminKey => {
                f.write_str("a workspace header needs an admin key; this key is not one")
            }
            Reason::UnknownAction(a) => write!(f, "unknown action `{a}`"),
            Reason::InvalidResource(e) => write!(f, "invalid resource: {e}"),
            Reason::DenyRule(name) => write!(f, "forbidden by deny rule `{name}`"),
            Reason::OutsideKeyScope => f.write_str("the resource is outside the key's scope"),
            Reason::OutsideKeyPermissions => {
                f.write_str("the action is outside the key's permissions")
            }
            Reason::ReadOnlyKey => f.write_str("the key is read-only and the action writes"),
            Reason::ObserverCannotWrite => {
                f.write_str("an observer role is read-only and the action writes")
            }
            Reason::NoRole => f.write_str("no role at or above the resource grants this action"),
            Reason::KeyManagementDisabled => {
                f.write_str("the policy does not allow managing keys through the engine")
            }
            Reason::InvalidPath(why) => write!(f, "invalid request path: {why}"),
            Reason::NoRoute => f.write_str("no route matches this request"),
            Reason::MissingParameter(p) => {
                write!(f, "the route needs exactly one query parameter `{p}`")
            }
            Reason::BadParameter(p) => write!(f, "the value of parameter `{p}` is not a valid id"),
        }
    }
}

/// How to answer a denied request over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyResponse {
    /// 401, 403, 302 (redirect) or the policy's chosen 4xx.
    pub status: u16,
    /// The `Location` header, for a redirect.
    pub location: Option<String>,
    /// `{"status": "error", "code": "...", "message": "..."}`.
    pub body: String,
}
