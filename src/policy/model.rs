//! The checked policy: every name resolved to an index, groups expanded, nothing left to look up.
//!
//! Both the compiler ([`crate::decision`]) and the reference evaluator ([`super::reference`]) start here.

pub use super::ast::Access;

/// Index of a scope kind in [`Model::kinds`].
pub type KindId = u16;
/// Index of an action in [`Model::actions`].
pub type ActionId = u32;
/// Index of a role in [`Model::roles`].
pub type RoleId = u32;

/// A scope kind, e.g. `project`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// Its name.
    pub name: String,
    /// The kind directly above it.
    pub parent: Option<KindId>,
}

/// An action, e.g. `view`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Its name.
    pub name: String,
    /// Read or write.
    pub access: Access,
}

/// A named group of actions, expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Every action it stands for, sorted, no duplicates.
    pub actions: Vec<ActionId>,
}

/// One grant of a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    /// The actions (groups and `*` expanded), sorted.
    pub actions: Vec<ActionId>,
    /// Applies only to resources at or beneath one of these kinds; empty: everywhere beneath the binding.
    pub on: Vec<KindId>,
}

/// A role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// Its name.
    pub name: String,
    /// The kind of scope instance it is bound at.
    pub kind: KindId,
    /// Read-only whatever it lists.
    pub observer: bool,
    /// Its own grants.
    pub grants: Vec<RoleGrant>,
    /// Roles whose grants it also has (not expanded here).
    pub includes: Vec<RoleId>,
}

/// What every principal may do on its own account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfRule {
    /// The actions.
    pub actions: Vec<ActionId>,
    /// The account kind: a resource `KIND:<principal id>/...` is the principal's own.
    pub kind: KindId,
}

/// A deny rule: wins over every grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRule {
    /// Named in the decisions it causes.
    pub name: String,
    /// The actions it forbids.
    pub actions: Vec<ActionId>,
    /// Only on resources at or beneath one of these kinds; empty: everywhere.
    pub on: Vec<KindId>,
}

/// The credential styles a deployment accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialRules {
    /// `Basic base64(email:key)`.
    pub basic_email_key: bool,
    /// `Basic base64(key:)`.
    pub basic_key: bool,
    /// `Authorization: apiToken <token>`.
    pub api_token: bool,
    /// A query parameter carrying the token, off unless declared.
    pub query_param: Option<String>,
    /// `Authorization: APIKEY:ORGANIZATION <key>`.
    pub apikey_organization: bool,
    /// The whole header value is the key; `Some(empty)`: any single token; else only these prefixes.
    pub raw_key: Option<Vec<String>>,
    /// `Authorization: Bearer <key>`.
    pub bearer: bool,
    /// Admin keys pick a workspace with this header.
    pub workspace_header: Option<String>,
}

/// Rules for API keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRules {
    /// Readable prefix of generated keys (`kw_` when unset).
    pub prefix: Option<String>,
    /// Keys may be restricted to one instance of this kind.
    pub scope_kind: Option<KindId>,
    /// New keys are read-only unless asked otherwise.
    pub read_only_by_default: bool,
    /// The action that lets a principal manage other principals' keys.
    pub manage_action: Option<ActionId>,
}

/// What an unauthenticated request is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// A status code (401 by default).
    Status(u16),
    /// 302 to this location (SEED's `/app/login`).
    Redirect(String),
}

impl Default for Unauthenticated {
    fn default() -> Self {
        Unauthenticated::Status(401)
    }
}

/// A checked policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// Scope kinds, in declaration order.
    pub kinds: Vec<Kind>,
    /// Actions.
    pub actions: Vec<Action>,
    /// Named groups.
    pub groups: Vec<Group>,
    /// Roles.
    pub roles: Vec<Role>,
    /// Self-access rules.
    pub self_rules: Vec<SelfRule>,
    /// Deny rules, in source order (the first that matches is named).
    pub denies: Vec<DenyRule>,
    /// Accepted credential styles.
    pub credentials: CredentialRules,
    /// Key rules.
    pub keys: KeyRules,
    /// The answer to unauthenticated requests.
    pub unauthenticated: Unauthenticated,
    /// HTTP routes: request → (action, resource).
    pub routes: Vec<Route>,
}

/// One piece of a resource template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// The value of the path parameter with this name.
    Path(String),
    /// The value of the query parameter with this name.
    Query(String),
}

/// An HTTP route: a method and path template, the action it performs and the resource it touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The method (`GET`, ...), or `None` for any.
    pub method: Option<String>,
    /// The path template in `matchit` syntax: `/api/orgs/{org}`, `{*rest}` at the end.
    pub path: String,
    /// The action.
    pub action: ActionId,
    /// The resource template.
    pub resource: Vec<TemplatePart>,
}

impl Model {
    /// The kind named `name`.
    pub fn kind(&self, name: &str) -> Option<KindId> {
        self.kinds
            .iter()
            .position(|k| k.name == name)
            .and_then(|i| KindId::try_from(i).ok())
    }

    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<ActionId> {
        self.actions
            .iter()
            .position(|a| a.name == name)
            .and_then(|i| ActionId::try_from(i).ok())
    }

    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<RoleId> {
        self.roles
            .iter()
            .position(|r| r.name == name)
            .and_then(|i| RoleId::try_from(i).ok())
    }

    /// True if `kind` is `ancestor` or lies beneath it in the kind tree.
    pub fn is_at_or_beneath(&self, kind: KindId, ancestor: KindId) -> bool {
        let mut k = Some(kind);
        let mut steps = 0;
        while let Some(cur) = k {
            if cur == ancestor {
                return true;
            }
            steps += 1;
            if steps > self.kinds.len() {
                return false;
            }
            k = self.kinds.get(usize::from(cur)).and_then(|x| x.parent);
        }
        false
    }
}
