//! The command line, as clap derive types. Every command has an example in its `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "keyward",
    subcommand_required = true,
    arg_required_else_help = false,
    version,
    about = "Authorization for APIs called with API keys: policies, key table, decisions",
    after_help = "Examples:
  keyward check policies/*.policy
  keyward principal add alice@example.com --db ./keys
  keyward key create --db ./keys --owner alice@example.com --name ci --policy api.policy
  keyward authorize --db ./keys --policy api.policy --header 'Authorization: apiToken kw_...' \\
      --action read_data --resource environment:1/project:3
  keyward demo

Exit codes: 0 success or allow, 1 deny or a negative check, 2 error (usage, i/o, not found, ...).
Pepper: --pepper-file FILE or the KEYWARD_PEPPER environment variable (64 hex characters)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check policy files; print every diagnostic with its location
    #[command(
        after_help = "Example:\n  keyward check policies/seed-platform.policy policies/seatsio.policy\n\n\
Exit code 1 if any file has an error, 2 if a file cannot be read."
    )]
    Check(CheckArgs),
    /// Rewrite policy files in canonical format
    #[command(
        after_help = "Examples:\n  keyward fmt my.policy\n  keyward fmt --check policies/*.policy   # exit 1 and name the files that differ"
    )]
    Fmt(FmtArgs),
    /// Decide one request against a policy and the key table, and explain the decision
    #[command(
        after_help = "Example:\n  keyward authorize --db ./keys --policy policies/seed-platform.policy \\\n      \
--header 'Authorization: Basic dXNlckBzZWVkLXBsYXRmb3JtLm9yZzpiNThm...' \\\n      \
--context organization:6 --action view --resource cycle:1\n\n\
Exit code 0 allow, 1 deny, 2 error."
    )]
    Authorize(AuthorizeArgs),
    /// Add, list or remove principals (users, service accounts, workspaces, companies)
    #[command(subcommand, subcommand_required = true, arg_required_else_help = false)]
    Principal(PrincipalCommand),
    /// Grant a role at a scope to a principal
    #[command(
        after_help = "Example:\n  keyward bind --db ./keys alice@example.com member organization:6\n\n\
PRINCIPAL is a login or a numeric id. With --policy the role and scope are checked against it."
    )]
    Bind(BindArgs),
    /// Remove a role binding
    #[command(
        after_help = "Example:\n  keyward unbind --db ./keys alice@example.com member organization:6"
    )]
    Unbind(BindArgs),
    /// Add, list or remove workspaces (addressed by their public key)
    #[command(subcommand, subcommand_required = true, arg_required_else_help = false)]
    Workspace(WorkspaceCommand),
    /// Create, import, list and manage API keys
    #[command(subcommand, subcommand_required = true, arg_required_else_help = false)]
    Key(KeyCommand),
    /// Show the audit log, newest first
    #[command(
        after_help = "Examples:\n  keyward audit --db ./keys --limit 20\n  keyward audit --db ./keys --principal alice@example.com --json"
    )]
    Audit(AuditArgs),
    /// Walk through the four bundled policies on a temporary key table
    #[command(after_help = "Example:\n  keyward demo")]
    Demo,
    /// Answer forward-auth requests from nginx, Traefik or Envoy, and serve the admin API
    #[command(
        after_help = "Example:\n  keyward serve --db ./keys --policy app.policy --listen 127.0.0.1:9000\n\n\
Endpoints: /auth (Traefik ForwardAuth; the policy's status and body), /auth/nginx (nginx auth_request:\n\
401/403 only), /healthz, /metrics (Prometheus), the admin API under /keyward/v1, and with\n\
--envoy-prefix P every request under P (Envoy ext_authz). SIGHUP or a change of the policy file\n\
reloads it; a broken policy is refused and the old one keeps serving. SIGTERM/SIGINT stop gracefully.\n\
Logs go to stderr (RUST_LOG, default info); they never contain a key or the Authorization header."
    )]
    Serve(ServeArgs),
}

/// Arguments of `keyward serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The key table directory
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// A file holding the pepper, 64 hex characters (overrides KEYWARD_PEPPER)
    #[arg(long, value_name = "FILE")]
    pub pepper_file: Option<PathBuf>,
    /// The policy file (with its `route` declarations)
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Envoy ext_authz path prefix, e.g. /ext_authz
    #[arg(long, value_name = "PREFIX")]
    pub envoy_prefix: Option<String>,
    /// Headers naming the original request's URI, in order (default X-Original-URI, X-Forwarded-Uri)
    #[arg(long = "original-uri-header", value_name = "NAME")]
    pub original_uri_headers: Vec<String>,
    /// Headers naming the original request's method (default X-Original-Method, X-Forwarded-Method)
    #[arg(long = "original-method-header", value_name = "NAME")]
    pub original_method_headers: Vec<String>,
    /// Let requests that match no route through unchecked (default: deny them)
    #[arg(long)]
    pub pass_unmatched: bool,
    /// Where to mount the admin API
    #[arg(long, value_name = "PREFIX", default_value = "/keyward/v1")]
    pub admin_prefix: String,
    /// Do not serve the admin API
    #[arg(long)]
    pub no_admin_api: bool,
    /// Largest request head accepted, in bytes (larger: 431)
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Time a client gets to send its request head, in seconds (slower: 408)
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub request_timeout: u64,
    /// Most connections served at once (more: 503)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Worker threads (default: one per core)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Do not log each decision
    #[arg(long)]
    pub no_log_decisions: bool,
    /// Also answer an allow with X-Keyward-Scope, X-Keyward-Action and X-Keyward-Resource
    #[arg(long)]
    pub detail_headers: bool,
}

/// Where the key table is, and its pepper; or the admin API serving it.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// The key table directory
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "server",
        conflicts_with = "server"
    )]
    pub db: Option<PathBuf>,
    /// Go through the admin API of a running server instead, e.g. http://127.0.0.1:8080/keyward/v1
    /// (the caller's key from KEYWARD_KEY, KEYWARD_AUTHORIZATION or --key-file)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// With --server: a file holding the caller's key (sent as `Bearer KEY`)
    #[arg(long, value_name = "FILE", requires = "server")]
    pub key_file: Option<PathBuf>,
    /// A file holding the pepper, 64 hex characters (overrides KEYWARD_PEPPER); --db only
    #[arg(long, value_name = "FILE")]
    pub pepper_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy files
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the diagnostics as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FmtArgs {
    /// Do not write; exit 1 and name the files that are not formatted
    #[arg(long)]
    pub check: bool,
    /// Policy files
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The policy file
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// A request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The query string, without `?`
    #[arg(long, value_name = "Q")]
    pub query: Option<String>,
    /// The scope the request acts in, e.g. organization:6
    #[arg(long, value_name = "SCOPE")]
    pub context: Option<String>,
    /// The action, e.g. view
    #[arg(long)]
    pub action: String,
    /// The resource path, e.g. organization:6/project:3
    #[arg(long)]
    pub resource: String,
    /// Print the decision as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Add a principal
    #[command(
        after_help = "Examples:\n  keyward principal add --db ./keys alice@example.com\n  \
keyward principal add --db ./keys acme --kind company"
    )]
    Add(PrincipalAddArgs),
    /// List principals with their role bindings
    #[command(after_help = "Example:\n  keyward principal list --db ./keys --json")]
    List(ListArgs),
    /// Remove a principal with its keys and bindings
    #[command(after_help = "Example:\n  keyward principal remove --db ./keys alice@example.com")]
    Remove(PrincipalRefArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    User,
    ServiceAccount,
    Workspace,
    Organization,
    Company,
}

#[derive(Args, Debug)]
pub struct PrincipalAddArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Its login, e.g. an email (unique, case-insensitive)
    pub login: String,
    /// What kind of principal
    #[arg(long, value_enum, default_value = "user")]
    pub kind: Kind,
    /// Public key of the workspace it acts on by default
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub default_workspace: Option<String>,
    /// Print the new principal as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PrincipalRefArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A login or a numeric id
    pub principal: String,
}

#[derive(Args, Debug)]
pub struct BindArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A login or a numeric id
    pub principal: String,
    /// The role name
    pub role: String,
    /// The scope instance, e.g. organization:6
    pub scope: String,
    /// Check the role and scope against this policy
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Add a workspace
    #[command(
        after_help = "Example:\n  keyward workspace add --db ./keys pk-main --name Main \
--scope company:1/workspace:1 --company acme"
    )]
    Add(WorkspaceAddArgs),
    /// List workspaces
    #[command(after_help = "Example:\n  keyward workspace list --db ./keys")]
    List(ListArgs),
    /// Remove a workspace
    #[command(after_help = "Example:\n  keyward workspace remove --db ./keys pk-main")]
    Remove(WorkspaceRemoveArgs),
}

#[derive(Args, Debug)]
pub struct WorkspaceAddArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Its public (non-secret) key, as sent in the workspace header
    pub public_key: String,
    /// Its display name
    #[arg(long)]
    pub name: String,
    /// The resource path it stands for, e.g. company:1/workspace:1
    #[arg(long)]
    pub scope: String,
    /// The company principal owning it (login or id)
    #[arg(long)]
    pub company: Option<String>,
}

#[derive(Args, Debug)]
pub struct WorkspaceRemoveArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Its public key
    pub public_key: String,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a key; its secret is printed once
    #[command(
        after_help = "Examples:\n  keyward key create --db ./keys --owner alice@example.com --name ci\n  \
keyward key create --db ./keys --owner 3 --name reports --permission read_data,read_reports --expires-in 90d \\\n      \
--policy policies/api-token.policy\n\n\
--policy takes the key prefix from the policy (`keys { prefix ...; }`); without it keys start with kw_."
    )]
    Create(KeyCreateArgs),
    /// Import existing secrets, from stdin or a file (never from the command line)
    #[command(
        after_help = "Examples:\n  keyward key import --db ./keys --owner ws-main --name legacy < secret.txt\n  \
keyward key import --db ./keys --owner ws-main --file keys.txt   # one secret per line\n\n\
With several secrets the keys are named NAME-1, NAME-2, ... in line order. Blank lines are skipped."
    )]
    Import(KeyImportArgs),
    /// List keys (never their secrets)
    #[command(after_help = "Example:\n  keyward key list --db ./keys --owner alice@example.com")]
    List(KeyListArgs),
    /// Rename a key
    #[command(after_help = "Example:\n  keyward key rename --db ./keys 4 deploy-2024")]
    Rename(KeyRenameArgs),
    /// Deactivate a key: refused from the next request on
    #[command(after_help = "Example:\n  keyward key deactivate --db ./keys 4")]
    Deactivate(KeyIdArgs),
    /// Re-activate a key
    #[command(after_help = "Example:\n  keyward key activate --db ./keys 4")]
    Activate(KeyIdArgs),
    /// Replace a key; the old one keeps working during the overlap
    #[command(after_help = "Example:\n  keyward key rotate --db ./keys 4 --overlap 24h")]
    Rotate(KeyRotateArgs),
    /// Replace a key at once (the old one stops working now)
    #[command(after_help = "Example:\n  keyward key regenerate --db ./keys 4")]
    Regenerate(KeySecretArgs),
    /// Delete a key
    #[command(after_help = "Example:\n  keyward key delete --db ./keys 4")]
    Delete(KeyIdArgs),
}

/// Restrictions of a new key.
#[derive(Args, Debug)]
pub struct KeyLimitArgs {
    /// The key may only perform read actions
    #[arg(long)]
    pub read_only: bool,
    /// Limit the key to these actions (repeatable or comma-separated)
    #[arg(long = "permission", value_name = "ACTION", value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// Limit the key to a resource path, e.g. organization:6
    #[arg(long, value_name = "PATH")]
    pub scope: Option<String>,
    /// The key expires after this long: 3600s, 90m, 12h, 30d
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// A company admin key (acts on any workspace of its company)
    #[arg(long)]
    pub admin: bool,
}

#[derive(Args, Debug)]
pub struct KeyCreateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The owner (login or id)
    #[arg(long)]
    pub owner: String,
    /// The key's name, unique among the owner's keys
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub limits: KeyLimitArgs,
    /// Take the key prefix from this policy (--db only: with --server, the server's policy decides)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print the key and its secret as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeyImportArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The owner (login or id)
    #[arg(long)]
    pub owner: String,
    /// The key's name (NAME-1, NAME-2, ... for several secrets)
    #[arg(long, default_value = "imported")]
    pub name: String,
    /// Read the secrets from this file, one per line (default: stdin)
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub limits: KeyLimitArgs,
    /// Check the secrets against this policy's key prefix
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Refused: other users can read the command line; use stdin or --file
    #[arg(long, hide = true, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Print the imported keys as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeyListArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only this principal's keys (login or id)
    #[arg(long)]
    pub owner: Option<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeyIdArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The key's id (see `keyward key list`)
    pub id: u64,
}

#[derive(Args, Debug)]
pub struct KeyRenameArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The key's id
    pub id: u64,
    /// The new name
    pub name: String,
}

#[derive(Args, Debug)]
pub struct KeyRotateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The key's id
    pub id: u64,
    /// How long the old key keeps working: 3600s, 90m, 12h, 30d
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub overlap: String,
    /// Take the key prefix from this policy (--db only: with --server, the server's policy decides)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print the new key and its secret as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KeySecretArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The key's id
    pub id: u64,
    /// Take the key prefix from this policy (--db only: with --server, the server's policy decides)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print the new key and its secret as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only entries concerning this principal (login or id)
    #[arg(long)]
    pub principal: Option<String>,
    /// At most this many entries
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}
