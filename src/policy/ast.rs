//! The syntax tree of a `.policy` file, as written: names are still strings, each with its span.
//!
//! Equality ignores spans, so `parse(format(p)) == p` compares meaning, not layout.

use crate::diag::Span;

/// Where something was written. Two locations always compare equal, so trees compare by meaning.
#[derive(Clone, Debug, Default)]
pub struct Loc(pub Span);

impl PartialEq for Loc {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Loc {}

/// A name (identifier or string) with where it was written. Equality and hashing ignore the span.
#[derive(Clone, Debug, Eq)]
pub struct Name {
    /// The text, without quotes.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

impl Name {
    /// A name with an empty span, for building trees in code.
    pub fn new(text: impl Into<String>) -> Self {
        Name {
            text: text.into(),
            span: 0..0,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// A whole policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Top-level definitions in source order.
    pub items: Vec<Item>,
    /// Comments, each with the index of the item it stands before (`items.len()`: at the end).
    /// A comment written inside a definition is kept, moved before that definition.
    pub comments: Vec<(usize, String)>,
}

/// One top-level definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// `scope project under organization;`
    Scope(ScopeDecl),
    /// `action view, list: read;`
    Action(ActionDecl),
    /// `group edit = update, create;`
    Group(GroupDecl),
    /// `role member at organization { grant view; }`
    Role(RoleDecl),
    /// `self view, update on user;`
    SelfAccess(SelfDecl),
    /// `deny immutable_sessions: update on session;`
    Deny(DenyDecl),
    /// `credentials { basic email_key; }`
    Credentials(CredentialsDecl),
    /// `keys { scope organization; }`
    Keys(KeysDecl),
    /// `unauthenticated redirect "/app/login";`
    Unauthenticated(UnauthenticatedDecl),
    /// `route GET "/api/orgs/{org}" => view on "organization:{org}";`
    Route(RouteDecl),
}

/// `scope NAME [under PARENT];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeDecl {
    /// The kind's name.
    pub name: Name,
    /// The kind directly above it, if any.
    pub parent: Option<Name>,
}

/// Whether an action reads or changes state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Observer roles and read-only keys keep these.
    Read,
    /// Observer roles and read-only keys lose these.
    Write,
}

/// `action NAME, ...: read|write;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionDecl {
    /// The actions declared.
    pub names: Vec<Name>,
    /// Read or write; `None` when the file left it out (an error the checker reports).
    pub access: Option<Access>,
}

/// A list of actions in a grant, deny or self rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionList {
    /// `*`: every declared action.
    All(Loc),
    /// Action or group names.
    Names(Vec<Name>),
}

/// `group NAME = ACTION-OR-GROUP, ...;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDecl {
    /// The group's name.
    pub name: Name,
    /// Its members: actions or other groups.
    pub members: Vec<Name>,
}

/// `role NAME at KIND [observer] [includes ROLE, ...] { grant ...; }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleDecl {
    /// The role's name.
    pub name: Name,
    /// The scope kind it is bound at.
    pub kind: Name,
    /// Read-only whatever it lists.
    pub observer: bool,
    /// Roles whose grants this one also has.
    pub includes: Vec<Name>,
    /// Its grants.
    pub grants: Vec<Grant>,
}

/// `grant ACTIONS [on KIND, ...];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// What it allows.
    pub actions: ActionList,
    /// Limited to resources at or beneath these kinds; empty means everywhere beneath the binding.
    pub on: Vec<Name>,
    /// The whole grant.
    pub span: Loc,
}

/// `self ACTIONS on KIND;`: every principal may do these on its own account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfDecl {
    /// The actions.
    pub actions: ActionList,
    /// The kind whose instance id is the principal's id (e.g. `user`).
    pub kind: Name,
}

/// `deny NAME: ACTIONS [on KIND, ...];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyDecl {
    /// Named in every decision it causes.
    pub name: Name,
    /// What it forbids.
    pub actions: ActionList,
    /// Limited to resources at or beneath these kinds; empty means everywhere.
    pub on: Vec<Name>,
}

/// A credential style a deployment accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialDecl {
    /// `basic email_key;`: `Basic base64(email:key)`.
    BasicEmailKey(Loc),
    /// `basic key;`: `Basic base64(key:)`, password ignored.
    BasicKey(Loc),
    /// `api_token;`: `Authorization: apiToken <token>`.
    ApiToken(Loc),
    /// `query "NAME";`: the token in a query parameter.
    Query(Name),
    /// `apikey_organization;`: `Authorization: APIKEY:ORGANIZATION <key>`.
    ApiKeyOrganization(Loc),
    /// `raw_key ["PREFIX", ...];`: the whole header value is the key.
    RawKey(Vec<Name>, Loc),
    /// `bearer;`: `Authorization: Bearer <key>`.
    Bearer(Loc),
    /// `workspace_header "X-Workspace-Key";`: admin keys pick a workspace with it.
    WorkspaceHeader(Name),
}

/// `credentials { ... }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsDecl {
    /// The styles, in source order.
    pub styles: Vec<CredentialDecl>,
    /// The `credentials` keyword.
    pub span: Loc,
}

/// One rule in a `keys { ... }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRule {
    /// `prefix "kw_";`: readable prefix of generated keys.
    Prefix(Name),
    /// `scope KIND;`: keys may be restricted to an instance of this kind.
    Scope(Name),
    /// `read_only;`: new keys are read-only unless asked otherwise.
    ReadOnlyByDefault(Loc),
    /// `manage ACTION;`: the action that lets a principal manage other principals' keys.
    Manage(Name),
}

/// `keys { ... }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysDecl {
    /// The rules, in source order.
    pub rules: Vec<KeyRule>,
    /// The `keys` keyword.
    pub span: Loc,
}

/// What an unauthenticated request is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnauthenticatedDecl {
    /// `unauthenticated status 401;`
    Status(u16, Loc),
    /// `unauthenticated redirect "/app/login";` (302)
    Redirect(Name),
}

/// `route METHOD "PATH" => ACTION on "RESOURCE";`: maps an HTTP request to an action and a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDecl {
    /// `GET`, `POST`, ... or `*` for any method.
    pub method: Name,
    /// The path template, e.g. `/api/organizations/{org}`.
    pub path: Name,
    /// The action the request performs.
    pub action: Name,
    /// The resource template, e.g. `organization:{org}/project:{project}`; `{?name}` takes a query
    /// parameter.
    pub resource: Name,
}
