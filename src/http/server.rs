//! `keyward serve` (feature `server`): a forward-auth server for nginx `auth_request`, Traefik
//! ForwardAuth and Envoy's HTTP ext_authz.
//!
//! ```text
//! proxy ──GET /auth (X-Original-Method, X-Original-URI, Authorization, ...)──▶ keyward
//!       ◀── 200 X-Keyward-Principal / -Key / -Role ── allow
//!       ◀── the policy's status, Location and JSON body ── deny
//! ```
//!
//! Endpoints: `/auth` (Traefik, Envoy with headers, anything that relays the deny response as is),
//! `/auth/nginx` (denials are 401 or 403 only, as `auth_request` requires; `/auth/nginx/deny` then
//! renders the policy's own response for `error_page`), `ENVOY_PREFIX/...` (Envoy's `path_prefix`:
//! the original method and path arrive as the request's own), `/healthz` and `/metrics`.
//!
//! **Invariant:** a decision log line or metric never holds a secret: no `Authorization` header, no
//! query string (a key may travel there), only ids, names and reason codes.
//!
//! **Invariant:** when several configured original-URI (or method) headers are present they must
//! agree; otherwise the request is refused. A proxy sets only its own header and forwards the
//! client's others, so trusting the first one found would let a client choose what is authorized.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use ::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use ::http::{HeaderMap, Method, Request, Response, StatusCode};
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::log::DecisionEvent;
use super::metrics::{Metrics, Outcome};
use super::{HttpDecision, Unmatched};
use crate::engine::{DenyResponse, Engine, EngineError, EngineOptions};

/// Limits that keep one client from holding the server: each answered with a clear status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes: larger ones get 431. At least
    /// 8192 is used whatever is set (hyper's smallest read buffer).
    pub max_header_bytes: usize,
    /// Time a client has to send a request head once it started one: 408 after it. An idle
    /// keep-alive connection is closed silently after the same time.
    pub request_timeout: Duration,
    /// Connections served at once; one more is answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Everything `keyward serve` needs.
#[derive(Clone)]
pub struct ServeOptions {
    /// The key table directory.
    pub db: PathBuf,
    /// The policy file; reloaded on SIGHUP and when it changes.
    pub policy: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Server-side secret mixed into every key hash (the table's own).
    pub pepper: Option<[u8; 32]>,
    /// Headers carrying the original request's method, in order (`X-Original-Method` for nginx,
    /// `X-Forwarded-Method` for Traefik). Without any, the request's own method is used.
    pub original_method_headers: Vec<HeaderName>,
    /// Headers carrying the original request's path and query (`X-Original-URI`, `X-Forwarded-Uri`).
    pub original_uri_headers: Vec<HeaderName>,
    /// Envoy's `path_prefix` (e.g. `/ext_authz`): a request under it is the original request, its
    /// path with the prefix removed. `None` disables it.
    pub envoy_prefix: Option<String>,
    /// What to do with requests that match no route.
    pub unmatched: Unmatched,
    /// Header size, request time and connection limits.
    pub limits: Limits,
    /// How often to look at the policy file for changes; `None` reloads only on SIGHUP.
    pub watch_interval: Option<Duration>,
    /// Reload the policy on SIGHUP (Unix).
    pub reload_on_sighup: bool,
    /// Worker threads of the runtime [`run`] builds; `None` for one per core.
    pub workers: Option<usize>,
    /// Log every decision (`info` on target `keyward::decision`).
    pub log_decisions: bool,
    /// Also answer an allow with `X-Keyward-Scope`, `X-Keyward-Action` and `X-Keyward-Resource`
    /// (off: `X-Keyward-Principal`, `-Key`, `-Role` and, for workspace keys, `-Workspace` only).
    /// Each header costs the server and the proxy a little on every request; turn these on when
    /// the upstream reads them.
    pub detail_headers: bool,
    /// Where decision lines go: `tracing` events (the default, for a host's own subscriber), or
    /// straight to the writer of [`run`]'s subscriber, which sets this.
    pub decision_sink: super::log::DecisionSink,
    /// Time in-flight requests get to finish on shutdown before their connections are dropped.
    pub shutdown_grace: Duration,
    /// Where to mount the admin API (feature `admin`), e.g. `/keyward/v1`; `None` leaves it out.
    pub admin_prefix: Option<String>,
    /// How often the admin API's refused calls, queued in memory, are written to the audit log
    /// ([`KeyTable::write_denials`](crate::store::KeyTable::write_denials)); they are also written when
    /// the log is read through the API and at shutdown. `None`: only then.
    pub refusal_write_interval: Option<Duration>,
    /// How often the keys' last-used times, kept in memory, are written to the key table (one batch
    /// each time; also at shutdown). `None`: only at shutdown. A crash loses at most this much of
    /// them; they are approximate by design.
    pub last_used_write_interval: Option<Duration>,
}

impl ServeOptions {
    /// Defaults for everything but the key table, the policy and the address.
    pub fn new(db: impl Into<PathBuf>, policy: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServeOptions {
            db: db.into(),
            policy: policy.into(),
            listen,
            pepper: None,
            original_method_headers: vec![
                HeaderName::from_static("x-original-method"),
                HeaderName::from_static("x-forwarded-method"),
            ],
            original_uri_headers: vec![
                HeaderName::from_static("x-original-uri"),
                HeaderName::from_static("x-forwarded-uri"),
            ],
            envoy_prefix: None,
            unmatched: Unmatched::Deny,
            limits: Limits::default(),
            watch_interval: Some(Duration::from_secs(1)),
            reload_on_sighup: true,
            workers: None,
            log_decisions: true,
            detail_headers: false,
            decision_sink: super::log::DecisionSink::Tracing,
            shutdown_grace: Duration::from_secs(10),
            admin_prefix: Some("/keyward/v1".to_string()),
            refusal_write_interval: Some(Duration::from_secs(5)),
            last_used_write_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("db", &self.db)
            .field("policy", &self.policy)
            .field("listen", &self.listen)
            .field("pepper", &self.pepper.map(|_| "<redacted>"))
            .field("original_method_headers", &self.original_method_headers)
            .field("original_uri_headers", &self.original_uri_headers)
            .field("envoy_prefix", &self.envoy_prefix)
            .field("unmatched", &self.unmatched)
            .field("limits", &self.limits)
            .field("watch_interval", &self.watch_interval)
            .field("reload_on_sighup", &self.reload_on_sighup)
            .field("workers", &self.workers)
            .field("log_decisions", &self.log_decisions)
            .field("detail_headers", &self.detail_headers)
            .field("decision_sink", &self.decision_sink)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("admin_prefix", &self.admin_prefix)
            .field("refusal_write_interval", &self.refusal_write_interval)
            .field("last_used_write_interval", &self.last_used_write_interval)
            .finish()
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The key table or the policy could not be opened.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The options are inconsistent.
    #[error("invalid option: {0}")]
    Config(String),
    /// The async runtime or a signal handler could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    /// Writing the keys' last-used times at shutdown failed.
    #[error("cannot write the keys' last-used times at shutdown: {0}")]
    Flush(crate::store::StoreError),
}

/// Runs `keyward serve` until SIGTERM or SIGINT: builds its own runtime, installs a `tracing`
/// subscriber (`RUST_LOG`, default `info`) unless one is set, serves, shuts down gracefully and
/// writes the pending last-used times and refused admin calls. Blocking.
pub fn run(mut opts: ServeOptions) -> Result<(), ServeError> {
    // Lines are batched for a background thread (never dropped: a writer that falls behind makes
    // loggers wait); the guard writes what is left when `run` returns. A line reaches stderr within
    // 20 ms (see `http::log::LogWriter`) of its hand-over: at once for most lines, and for the
    // decision lines a worker stages, when it goes idle or every 4 KB or 64 requests.
    let (writer, _flush_on_return) =
        super::log::LogWriter::new(io::stderr()).map_err(ServeError::Runtime)?;
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        // Decisions go through their own cheap formatter (see `http::log`), everything else
        // through the general one.
        let general = tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target() != super::log::TARGET
            }));
        let installed = tracing_subscriber::registry()
            .with(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with(general)
            .with(super::log::DecisionLog::new(writer.clone()))
            .try_init();
        // With this subscriber in place, decision lines skip the event dispatch: the same bytes,
        // at the levels its filter lets through (`RUST_LOG=keyward::decision=off` still works).
        if installed.is_ok() {
            opts.decision_sink = super::log::DecisionSink::Direct {
                writer,
                info: tracing::enabled!(target: "keyward::decision", tracing::Level::INFO),
                warn: tracing::enabled!(target: "keyward::decision", tracing::Level::WARN),
            };
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = opts.workers {
        rt.worker_threads(n.max(1));
    }
    // Workers stage their log lines and hand them over when they go idle or stop, and every
    // `STAGE_BYTES` or `STAGE_TICKS` requests (see `http::log::stage_lines_on_this_thread`). The
    // runtime is dropped, its workers stopped, before the log writer's guard (declared first).
    rt.on_thread_start(super::log::stage_lines_on_this_thread)
        .on_thread_park(super::log::hand_over_staged)
        .on_thread_stop(super::log::hand_over_staged);
    let rt = rt.enable_all().build().map_err(ServeError::Runtime)?;
    rt.block_on(run_async(opts))
}

/// [`run`] on the caller's runtime: serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run_async(opts: ServeOptions) -> Result<(), ServeError> {
    let server = Server::bind(opts).await?;
    tracing::info!(addr = %server.local_addr(), "keyward serve listening");
    wait_for_stop_signal().await?;
    tracing::info!("stop signal: shutting down");
    server.shutdown().await
}

#[cfg(unix)]
async fn wait_for_stop_signal() -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> Result<(), ServeError> {
    tokio::signal::ctrl_c().await.map_err(ServeError::Runtime)
}

/// State every connection shares.
struct Shared {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    opts: ServeOptions,
    /// The lengths of the original method and URI header names, a bit each (see [`original`]).
    original_name_lengths: u64,
    reload: Reloader,
    /// The admin API, nested under `opts.admin_prefix`.
    #[cfg(feature = "admin")]
    admin: Option<axum::Router>,
}

type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// A running server: its address, its engine and metrics; stop it with [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the key table and the policy named in `opts`, binds and starts serving on the current
    /// tokio runtime. Port 0 picks a free port: see [`Server::local_addr`].
    pub async fn bind(opts: ServeOptions) -> Result<Server, ServeError> {
        let engine = Engine::open_files(
            &opts.db,
            &opts.policy,
            EngineOptions {
                pepper: opts.pepper,
            },
        )?;
        let engine = Arc::new(engine);
        // Read every page of the key table once, beside serving, so the first lookups of each key
        // do not pay for bringing its page in (see `KeyTable::settle`).
        let settling = Arc::clone(&engine);
        let _ = std::thread::Builder::new()
            .name("keyward-settle".into())
            .spawn(move || {
                let started = Instant::now();
                match settling.table().settle() {
                    Ok(n) => tracing::info!(
                        entries = n,
                        millis = started.elapsed().as_millis() as u64,
                        "read the key table once"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the key table at start-up failed")
                    }
                }
            });
        Server::bind_with_engine(engine, opts).await
    }

    /// Serves an engine the caller already opened (tests, hosts that manage keys in-process).
    /// `opts.db` and `opts.pepper` are not used; `opts.policy` is still the file reloads read.
    pub async fn bind_with_engine(
        engine: Arc<Engine>,
        opts: ServeOptions,
    ) -> Result<Server, ServeError> {
        if let Some(p) = &opts.envoy_prefix {
            let reserved = ["/auth", "/healthz", "/metrics"];
            if !p.starts_with('/')
                || p.len() < 2
                || p.ends_with('/')
                || reserved.iter().any(|r| r.starts_with(p.as_str()))
            {
                return Err(ServeError::Config(format!(
                    "the Envoy prefix `{p}` must start with `/`, not end with one, and not cover \
                     `/auth`, `/healthz` or `/metrics`"
                )));
            }
        }
        if let Some(p) = &opts.admin_prefix {
            let reserved = ["/auth", "/healthz", "/metrics"];
            if !p.starts_with('/')
                || p.len() < 2
                || p.ends_with('/')
                || reserved
                    .iter()
                    .any(|r| r.starts_with(p.as_str()) || p.starts_with(r))
                || opts.envoy_prefix.as_deref() == Some(p.as_str())
            {
                return Err(ServeError::Config(format!(
                    "the admin API prefix `{p}` must start with `/`, not end with one, and not \
                     overlap `/auth`, `/healthz`, `/metrics` or the Envoy prefix"
                )));
            }
        }
        if opts.limits.max_connections == 0 {
            return Err(ServeError::Config(
                "max connections must be at least 1".into(),
            ));
        }
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let reload = Reloader::new(&engine, &opts.policy);
        #[cfg(feature = "admin")]
        let admin = opts.admin_prefix.as_deref().map(|prefix| {
            axum::Router::new().nest(prefix, crate::http::admin::router(Arc::clone(&engine)))
        });
        let original_name_lengths = opts
            .original_uri_headers
            .iter()
            .chain(&opts.original_method_headers)
            .fold(0, |m, n| m | name_length_bit(n.as_str().len()));
        let shared = Arc::new(Shared {
            engine,
            metrics,
            opts,
            original_name_lengths,
            reload,
            #[cfg(feature = "admin")]
            admin,
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        if let Some(every) = shared.opts.watch_interval {
            background.push(tokio::spawn(watch_policy(
                Arc::clone(&shared),
                every,
                stop_rx.clone(),
            )));
        }
        #[cfg(unix)]
        if shared.opts.reload_on_sighup {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Runtime)?;
            let s = Arc::clone(&shared);
            let mut stop_rx = stop_rx.clone();
            background.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = hup.recv() => {
                            if r.is_none() { break; }
                            tracing::info!("SIGHUP: reloading the policy");
                            let _ = s.reload.reload(&s, true);
                        }
                        _ = stop_rx.changed() => break,
                    }
                }
            }));
        }
        #[cfg(feature = "admin")]
        if let (Some(every), Some(_)) = (shared.opts.refusal_write_interval, &shared.admin) {
            background.push(tokio::spawn(periodically(
                Arc::clone(&shared),
                every,
                stop_rx.clone(),
                write_refusals,
            )));
        }
        if let Some(every) = shared.opts.last_used_write_interval {
            background.push(tokio::spawn(periodically(
                Arc::clone(&shared),
                every,
                stop_rx.clone(),
                write_last_used,
            )));
        }
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop_rx));
        Ok(Server {
            addr,
            shared,
            stop,
            accept,
            background,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine it serves (its key table takes changes at once).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Its counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Reloads the policy file now, as SIGHUP does. On error the old policy keeps serving.
    pub fn reload(&self) -> Result<(), EngineError> {
        self.shared.reload.reload(&self.shared, true)
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), closes idle
    /// connections and writes the pending last-used times and the admin API's queued refusals.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        for b in self.background {
            let _ = b.await;
        }
        let table = self.shared.engine.table();
        match table
            .write_denials()
            .and_then(|n| table.flush().map(|()| n))
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                entries = n,
                "wrote the refused admin calls to the audit log"
            ),
            Err(e) => tracing::error!(error = %e, "cannot write the refused admin calls"),
        }
        match self.shared.engine.flush_last_used() {
            Ok(n) => {
                tracing::info!(keys = n, "wrote the keys' last-used times");
                Ok(())
            }
            Err(e) => {
                self.shared.metrics.flush_error();
                Err(ServeError::Flush(e))
            }
        }
    }
}

// ---- policy reloads ----------------------------------------------------------------------------

/// Reloads the policy file; remembers the bytes it last tried so a watch does not retry a refused
/// file until it changes again.
struct Reloader {
    path: PathBuf,
    last: parking_lot::Mutex<Option<blake3::Hash>>,
}

impl Reloader {
    fn new(engine: &Engine, path: &std::path::Path) -> Self {
        // The engine was opened from this file (or from text the caller chose): remember its bytes
        // so the first watch tick does not reload the same policy.
        let _ = engine;
        let last = std::fs::read(path).ok().map(|b| blake3::hash(&b));
        Reloader {
            path: path.to_path_buf(),
            last: parking_lot::Mutex::new(last),
        }
    }

    /// Reloads if `force` or the file's bytes changed since the last attempt.
    fn reload(&self, shared: &Shared, force: bool) -> Result<(), EngineError> {
        let mut last = self.last.lock();
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                if force {
                    tracing::error!(policy = %self.path.display(), error = %e,
                        "cannot read the policy; the old one keeps serving");
                    shared.metrics.reload(false);
                }
                return Err(EngineError::Policy(crate::policy::LoadError::Io {
                    path: self.path.display().to_string(),
                    source: e,
                }));
            }
        };
        let hash = blake3::hash(&bytes);
        if !force && *last == Some(hash) {
            return Ok(());
        }
        *last = Some(hash);
        let name = self.path.display().to_string();
        let result = match std::str::from_utf8(&bytes) {
            Ok(text) => shared.engine.reload_text(&name, text),
            Err(_) => shared.engine.reload_file(&self.path),
        };
        match &result {
            Ok(()) => {
                shared.metrics.reload(true);
                tracing::info!(policy = %name, routes = shared.engine.policy().routes().len(),
                    "policy reloaded");
            }
            Err(e) => {
                shared.metrics.reload(false);
                tracing::error!(policy = %name, "policy refused; the old one keeps serving:\n{e}");
            }
        }
        result
    }
}

/// Runs the blocking `job` every `every`, off the workers, until the server stops. The first run is
/// one interval after the start.
async fn periodically(
    shared: Arc<Shared>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    job: fn(&Shared),
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: nothing has been done yet
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || job(&s)).await;
            }
            _ = stop.changed() => break,
        }
    }
}

/// Writes the admin API's queued refusals to the audit log (one batch).
#[cfg(feature = "admin")]
fn write_refusals(s: &Shared) {
    if let Err(e) = s.engine.table().write_denials() {
        tracing::error!(error = %e, "cannot write the refused admin calls");
    }
}

/// Writes the keys' last-used times kept in memory (one batch).
fn write_last_used(s: &Shared) {
    if let Err(e) = s.engine.flush_last_used() {
        s.metrics.flush_error();
        tracing::error!(error = %e, "cannot write the keys' last-used times");
    }
}

async fn watch_policy(shared: Arc<Shared>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = Arc::clone(&shared);
                // File reads and the policy compile are blocking work: keep them off the workers.
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = s.reload.reload(&s, false);
                })
                .await;
            }
            _ = stop.changed() => break,
        }
    }
}

// ---- connections -------------------------------------------------------------------------------

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let max = shared.opts.limits.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let (stream, _peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let s = Arc::clone(&shared);
                let stop = stop.clone();
                tokio::spawn(async move {
                    s.metrics.connection_opened();
                    serve_connection(stream, &s, stop).await;
                    s.metrics.connection_closed();
                    drop(permit);
                });
            }
            Err(_) => {
                shared.metrics.connection_refused();
                tokio::spawn(refuse(stream));
            }
        }
    }
    drop(listener);
    // Graceful: every connection was told to stop; wait for them all, up to the grace period.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let grace = shared.opts.shutdown_grace;
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
}

/// Answers a connection over the limit with 503 and closes it without resetting it.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"status":"error","code":"too_many_connections","message":"too many connections; retry later"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent so closing does not reset the connection before it reads.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let stream = Arc::new(stream);
    let io = SharedIo::new(Arc::clone(&stream));
    let mid_request = Arc::clone(&io.mid_request);
    let limits = shared.opts.limits;
    let s = Arc::clone(shared);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        #[cfg(feature = "admin")]
        if let Some(admin) = admin_for(&s, req.uri().path()) {
            use tower::ServiceExt;
            let req = req.map(Body::new);
            // Admin calls write the key table and wait for each write to reach the disk: they run
            // on the blocking pool, so the forward-auth requests of this worker do not wait for an
            // fsync (or for a batch import) behind them.
            let fut: ResponseFuture = Box::pin(async move {
                let rt = tokio::runtime::Handle::current();
                let answered =
                    tokio::task::spawn_blocking(move || rt.block_on(admin.oneshot(req))).await;
                Ok::<_, Infallible>(match answered {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    Err(e) => {
                        tracing::error!(error = %e, "an admin call did not finish");
                        json_error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            "the admin call did not finish; see the server log",
                        )
                    }
                })
            });
            return fut;
        }
        let resp = handle(&s, &mut req);
        let fut: ResponseFuture = Box::pin(async move { Ok::<_, Infallible>(resp) });
        fut
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192) + 4096)
        .max_header_size(limits.max_header_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            shared.metrics.header_timeout();
            // The client started a request and did not finish its head in time: tell it.
            if mid_request.load(Ordering::Relaxed) {
                let body = r#"{"status":"error","code":"request_timeout","message":"the request head did not arrive in time"}"#;
                let resp = format!(
                    "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
                     connection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.try_write(resp.as_bytes());
            }
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// A `TcpStream` shared between hyper and the connection task, so the task can still answer 408
/// after hyper gave up on a slow request head. Tracks whether request bytes arrived since the last
/// response was written (a request is in progress) or not (the connection is idle).
struct SharedIo {
    stream: Arc<TcpStream>,
    mid_request: Arc<AtomicBool>,
}

impl SharedIo {
    fn new(stream: Arc<TcpStream>) -> Self {
        SharedIo {
            stream,
            mid_request: Arc::new(AtomicBool::new(false)),
        }
    }

    fn set_mid_request(&self, v: bool) {
        self.mid_request.store(v, Ordering::Relaxed);
    }
}

/// The most a connection reads per call (see `SharedIo::poll_read`).
const READ_CHUNK: usize = 2048;

impl AsyncRead for SharedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            // hyper hands over its whole spare buffer (16 KiB and more) uninitialised on every read,
            // and this crate reads only into initialised memory (no `unsafe`): zeroing all of it
            // was a third of `/healthz`'s instructions. A request head fits in 2 KiB nearly always;
            // a longer one takes more reads.
            let n = buf.remaining().min(READ_CHUNK);
            match this.stream.try_read(buf.initialize_unfilled_to(n)) {
                Ok(n) => {
                    buf.advance(n);
                    if n > 0 {
                        this.set_mid_request(true);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_write_ready(cx))?;
            match this.stream.try_write(buf) {
                Ok(n) => {
                    this.set_mid_request(false);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_write_ready(cx))?;
            match this.stream.try_write_vectored(bufs) {
                Ok(n) => {
                    this.set_mid_request(false);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket is closed when the connection task drops its last handle, right after.
        Poll::Ready(Ok(()))
    }
}

// ---- requests ----------------------------------------------------------------------------------

const X_KEYWARD_PRINCIPAL: HeaderName = HeaderName::from_static("x-keyward-principal");
const X_KEYWARD_KEY: HeaderName = HeaderName::from_static("x-keyward-key");
const X_KEYWARD_ROLE: HeaderName = HeaderName::from_static("x-keyward-role");
const X_KEYWARD_SCOPE: HeaderName = HeaderName::from_static("x-keyward-scope");
const X_KEYWARD_ACTION: HeaderName = HeaderName::from_static("x-keyward-action");
const X_KEYWARD_RESOURCE: HeaderName = HeaderName::from_static("x-keyward-resource");
const X_KEYWARD_WORKSPACE: HeaderName = HeaderName::from_static("x-keyward-workspace");
const X_KEYWARD_STATUS: HeaderName = HeaderName::from_static("x-keyward-status");
const X_KEYWARD_LOCATION: HeaderName = HeaderName::from_static("x-keyward-location");

/// How a forward-auth endpoint answers a denial.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The policy's status, `Location` and body (Traefik, Envoy, nginx's `error_page` re-render).
    Relay,
    /// 401 or 403 only, the policy's status and location in `X-Keyward-*` headers (`auth_request`).
    Nginx,
}

fn handle(shared: &Shared, req: &mut Request<Incoming>) -> Response<Body> {
    // A worker that stages its log lines hands them over every so many requests, logged or not.
    super::log::tick();
    let path = req.uri().path();
    if let Some(prefix) = &shared.opts.envoy_prefix {
        if let Some(rest) = path.strip_prefix(prefix.as_str()) {
            if rest.starts_with('/') {
                let skip = path.len() - rest.len();
                return forward_auth(shared, req, Some(skip), Mode::Relay, true);
            }
        }
    }
    match path {
        "/auth" => forward_auth(shared, req, None, Mode::Relay, true),
        "/auth/nginx" => forward_auth(shared, req, None, Mode::Nginx, true),
        // nginx's `error_page` asks again for the response to send: already counted and logged.
        "/auth/nginx/deny" => forward_auth(shared, req, None, Mode::Relay, false),
        "/healthz" => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_string(),
        ),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "keyward serves /auth, /auth/nginx, /healthz and /metrics",
        ),
    }
}

/// The request the proxy asks about.
struct Original<'a> {
    method: Method,
    path: &'a str,
    query: Option<&'a str>,
}

/// A header name's length as a bit of a mask (none for 64 bytes and more: such names are compared).
fn name_length_bit(len: usize) -> u64 {
    1u64.checked_shl(len as u32).unwrap_or(0)
}

/// The original method and URI from the configured headers. All configured headers present must
/// agree (see the module's invariant). One pass over the request's headers (a proxy sends few).
fn original<'a>(shared: &Shared, req: &'a Request<Incoming>) -> Result<Original<'a>, &'static str> {
    let (mut uri, mut method): (Option<&str>, Option<&str>) = (None, None);
    let (uri_names, method_names) = (
        &shared.opts.original_uri_headers,
        &shared.opts.original_method_headers,
    );
    // Most of a request's headers are none of these: a mask of the names' lengths turns them
    // away before any text is compared.
    let lengths = shared.original_name_lengths;
    let is = |names: &[HeaderName], name: &str| names.iter().any(|n| n.as_str() == name);
    for (name, value) in req.headers() {
        let name = name.as_str();
        if lengths & name_length_bit(name.len()) == 0 && name.len() < 64 {
            continue;
        }
        let slot = if is(uri_names, name) {
            &mut uri
        } else if is(method_names, name) {
            &mut method
        } else {
            continue;
        };
        let v = value
            .to_str()
            .map_err(|_| "an original method or URI header is not visible ASCII")?;
        match slot {
            Some(seen) if *seen != v => {
                return Err(
                    "the original method or URI headers disagree (a client may have sent one)",
                )
            }
            _ => *slot = Some(v),
        }
    }
    let uri = uri.ok_or("the request names no original URI (X-Original-URI or X-Forwarded-Uri)")?;
    let method = match method {
        Some(m) => {
            Method::from_bytes(m.as_bytes()).map_err(|_| "the original method is invalid")?
        }
        None => req.method().clone(),
    };
    let (path, query) = match super::swar::find(uri.as_bytes(), b'?') {
        Some(at) => (&uri[..at], Some(&uri[at + 1..])),
        None => (uri, None),
    };
    Ok(Original {
        method,
        path,
        query,
    })
}

/// Answers a forward-auth request: about the request the proxy's headers describe, or (Envoy, with
/// `envoy_skip` the length of the configured prefix) about the request's own method and URI.
/// Not inlined: one copy for every endpoint, its cold paths apart from the hot one.
#[inline(never)]
fn forward_auth(
    shared: &Shared,
    req: &mut Request<Incoming>,
    envoy_skip: Option<usize>,
    mode: Mode,
    record: bool,
) -> Response<Body> {
    let headers = req.headers();
    let started = Instant::now();
    // The credential's memo lines load while the original request is read (see `prefetch`).
    let early = shared.engine.early(headers);
    let original = match envoy_skip {
        Some(skip) => Ok(Original {
            method: req.method().clone(),
            path: req.uri().path().get(skip..).unwrap_or("/"),
            query: req.uri().query(),
        }),
        None => original(shared, req),
    };
    let original = match original {
        Ok(o) => o,
        Err(why) => {
            if record {
                shared
                    .metrics
                    .decision(Outcome::Deny("bad_original_request"), started.elapsed());
                if shared.opts.log_decisions {
                    DecisionEvent::BadOriginal { detail: why }.log(&shared.opts.decision_sink);
                }
            }
            let status = if mode == Mode::Nginx {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            return json_error(status, "bad_original_request", why);
        }
    };
    let started_at = super::clock::since_epoch(started);
    let decision = shared.engine.authorize_http_early(
        early,
        &original.method,
        original.path,
        original.query,
        headers,
        shared.opts.unmatched,
        started_at.as_secs(),
    );
    if record {
        let took = started.elapsed();
        let micros = took.as_micros() as u64;
        let (method, path) = (original.method.as_str(), clip(original.path));
        let event = match &decision {
            HttpDecision::Allow(allow, target) => {
                shared.metrics.decision(Outcome::Allow, took);
                DecisionEvent::Allow {
                    principal: allow.principal,
                    key: allow.key,
                    role: &allow.role,
                    scope: &allow.granted_at,
                    action: &target.action,
                    resource: &target.resource,
                    method,
                    path,
                    style: allow.style.code(),
                    micros,
                }
            }
            HttpDecision::PassThrough => {
                shared.metrics.decision(Outcome::PassThrough, took);
                DecisionEvent::PassThrough { method, path }
            }
            HttpDecision::Deny(deny, resp) => {
                let reason = deny.reason.code();
                shared.metrics.decision(Outcome::Deny(reason), took);
                DecisionEvent::Deny {
                    reason,
                    detail: deny.reason.credential_code().unwrap_or(""),
                    principal: deny.principal,
                    key: deny.key,
                    status: resp.status,
                    method,
                    path,
                    micros,
                }
            }
        };
        if shared.opts.log_decisions {
            event.log_at(&shared.opts.decision_sink, Some(started_at + took));
        }
    }
    // Answer (after the log line: the time to decide is the decision's alone). The decision is
    // read where it lies (moving its ~200 bytes out of the enum was a copy per request).
    match decision {
        HttpDecision::Allow(ref allow, ref target) => {
            // The request's header map, emptied, holds the answer's: hyper parses the
            // connection's next request into the answer's map, and the request's has room for
            // a request's headers (a map made for three grew on every request there).
            let mut h = std::mem::take(req.headers_mut());
            identity_headers(&mut h, allow.principal, allow.key, &allow.role);
            if shared.opts.detail_headers {
                put(&mut h, X_KEYWARD_SCOPE, &allow.granted_at);
                put(&mut h, X_KEYWARD_ACTION, &target.action);
                put(&mut h, X_KEYWARD_RESOURCE, &target.resource);
            }
            if let Some(ws) = &allow.workspace {
                put(&mut h, X_KEYWARD_WORKSPACE, ws);
            }
            let mut r = Response::new(Body::empty());
            *r.headers_mut() = h;
            r
        }
        HttpDecision::PassThrough => Response::new(Body::empty()),
        HttpDecision::Deny(deny, resp) => match mode {
            Mode::Relay => super::layer::deny_response(resp),
            Mode::Nginx => nginx_deny(deny.reason.is_authentication(), &resp),
        },
    }
}

fn nginx_deny(authentication: bool, resp: &DenyResponse) -> Response<Body> {
    let status = if authentication {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let mut r = super::layer::deny_response(resp.clone());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(X_KEYWARD_STATUS, HeaderValue::from(resp.status));
    if let Some(loc) = r.headers_mut().remove(LOCATION) {
        r.headers_mut().insert(X_KEYWARD_LOCATION, loc);
    }
    r
}

/// Empties `h` and sets `X-Keyward-Principal`, `-Key` and `-Role` (left out if the role cannot be a
/// header value).
fn identity_headers(h: &mut HeaderMap, principal: u64, key: u64, role: &str) {
    h.clear();
    h.insert(X_KEYWARD_PRINCIPAL, HeaderValue::from(principal));
    h.insert(X_KEYWARD_KEY, HeaderValue::from(key));
    if let Some(r) = role_header(role) {
        h.insert(X_KEYWARD_ROLE, r);
    }
}

thread_local! {
    /// Role names as header values, built once per thread (a policy names few roles): a clone
    /// shares the bytes, where building one checks and copies them (~500 instructions).
    static ROLE_HEADERS: RefCell<Vec<(Box<str>, HeaderValue)>> = const { RefCell::new(Vec::new()) };
}

/// Roles a thread keeps header values for (after a reload renames roles, the list starts over).
const ROLE_HEADERS_KEPT: usize = 64;

/// `role` as a header value (`None` if it cannot be one).
fn role_header(role: &str) -> Option<HeaderValue> {
    let build = || HeaderValue::from_bytes(role.as_bytes()).ok();
    ROLE_HEADERS
        .try_with(|cell| {
            let Ok(mut kept) = cell.try_borrow_mut() else {
                return build();
            };
            if let Some((_, v)) = kept.iter().find(|(r, _)| **r == *role) {
                return Some(v.clone());
            }
            let v = build()?;
            if kept.len() >= ROLE_HEADERS_KEPT {
                kept.clear();
            }
            kept.push((role.into(), v.clone()));
            Some(v)
        })
        .unwrap_or_else(|_| build())
}

/// Adds a header from text the policy or the request supplied; bytes that cannot be in a header are
/// left out rather than failing the answer.
fn put(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
        h.insert(name, v);
    }
}

/// A path cut to a length fit for a log line.
fn clip(path: &str) -> &str {
    if path.len() <= 200 {
        return path; // no more bytes, so no more characters
    }
    match path.char_indices().nth(200) {
        Some((i, _)) => &path[..i],
        None => path,
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"status": "error", "code": code, "message": message}).to_string();
    text(status, "application/json", body)
}

/// The admin router when `path` lies under the configured admin prefix.
#[cfg(feature = "admin")]
fn admin_for(shared: &Shared, path: &str) -> Option<axum::Router> {
    let prefix = shared.opts.admin_prefix.as_deref()?;
    let rest = path.strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    shared.admin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_replace_the_request_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic c2VjcmV0Og=="),
        );
        h.insert(X_KEYWARD_ROLE, HeaderValue::from_static("forged"));
        identity_headers(&mut h, 17, 42, "member");
        assert_eq!(h.len(), 3);
        assert_eq!(h[X_KEYWARD_PRINCIPAL], "17");
        assert_eq!(h[X_KEYWARD_KEY], "42");
        assert_eq!(h[X_KEYWARD_ROLE], "member");
        // A role that cannot be a header value is left out, not kept from before.
        identity_headers(&mut h, 1, 2, "bad\nrole");
        assert_eq!((h.len(), h.get(X_KEYWARD_ROLE)), (2, None));
        identity_headers(&mut h, 3, 4, "owner");
        assert_eq!(h[X_KEYWARD_ROLE], "owner");
    }
}
