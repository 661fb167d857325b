//! `keyward serve` as a tiny binary over [`keyward::http::server::run`], for tests, CI and the load
//! benchmark (the real CLI subcommand calls the same function).
//!
//! ```text
//! serve --db DIR --policy FILE --listen ADDR [--unmatched pass] [--envoy-prefix /ext_authz]
//!       [--max-connections N] [--request-timeout-ms N] [--max-header-bytes N] [--workers N]
//!       [--no-decision-log] [--no-watch] [--detail-headers]
//! serve fixtures --db DIR --policy FILE --product NAME     # prints NAME='secret' lines
//! serve load-fixtures --db DIR --policy FILE --count N [--sample K]  # N SEED users (benchmark)
//! ```

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/fixtures.rs"]
mod fixtures;

use std::collections::HashMap;
use std::time::Duration;

use keyward::http::server::{run, ServeOptions};
use keyward::http::Unmatched;
use keyward::{Engine, EngineOptions};

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), fixtures::Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.first().map(String::as_str) {
        Some("fixtures") | Some("load-fixtures") => Some(args.remove(0)),
        _ => None,
    };
    let mut flags = HashMap::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument `{a}`").into());
        };
        let value = match name {
            "no-decision-log" | "no-watch" | "detail-headers" => String::new(),
            _ => it.next().ok_or(format!("`--{name}` needs a value"))?,
        };
        flags.insert(name.to_string(), value);
    }
    let need = |k: &str| flags.get(k).cloned().ok_or(format!("`--{k}` is required"));
    let db = need("db")?;
    let policy = need("policy")?;
    match command.as_deref() {
        Some("fixtures") => {
            let e = Engine::open_files(&db, &policy, EngineOptions::default())?;
            for (k, v) in fixtures::install(&e, &need("product")?)? {
                println!("{k}='{v}'");
            }
            return Ok(());
        }
        Some("load-fixtures") => {
            let e = Engine::open_files(&db, &policy, EngineOptions::default())?;
            let n: u64 = need("count")?.parse()?;
            fixtures::install_load(&e, n)?;
            // `--sample K`: print K users spread over the N as `login:key` lines for the load generator.
            let k: u64 = flags.get("sample").map_or(Ok(0), |s| s.parse())?;
            for j in 0..k.min(n) {
                let i = j * (n / k.min(n).max(1));
                println!(
                    "{}:{}:{}",
                    fixtures::load_login(i),
                    fixtures::load_key(i),
                    i % 50
                );
            }
            return Ok(());
        }
        _ => {}
    }
    let mut opts = ServeOptions::new(db, policy, need("listen")?.parse()?);
    if flags.get("unmatched").map(String::as_str) == Some("pass") {
        opts.unmatched = Unmatched::PassThrough;
    }
    opts.envoy_prefix = flags.get("envoy-prefix").cloned();
    if let Some(n) = flags.get("max-connections") {
        opts.limits.max_connections = n.parse()?;
    }
    if let Some(n) = flags.get("request-timeout-ms") {
        opts.limits.request_timeout = Duration::from_millis(n.parse()?);
    }
    if let Some(n) = flags.get("max-header-bytes") {
        opts.limits.max_header_bytes = n.parse()?;
    }
    if let Some(n) = flags.get("workers") {
        opts.workers = Some(n.parse()?);
    }
    opts.log_decisions = !flags.contains_key("no-decision-log");
    opts.detail_headers = flags.contains_key("detail-headers");
    if flags.contains_key("no-watch") {
        opts.watch_interval = None;
    }
    run(opts)?;
    Ok(())
}
