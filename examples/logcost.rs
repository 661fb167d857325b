//! The cost of one decision log event as `keyward serve` writes it (the `http::log` layer) and as
//! `tracing-subscriber`'s general formatter would: `cargo run --release --features server
//! --example logcost [layer|fmt]`. Writes to /dev/null through `keyward serve`'s batching writer.
use std::time::Instant;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::io::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "layer".into());
    let sink = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let (writer, _flush) = keyward::http::log::LogWriter::new(sink)?;
    let filter = tracing_subscriber::EnvFilter::new("info");
    if mode == "fmt" {
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false),
            )
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(keyward::http::log::DecisionLog::new(writer))
            .init();
    }
    let n = 1_000_000u64;
    let role: std::sync::Arc<str> = "org_admin".into();
    let scope: std::sync::Arc<str> = "domain:1/organization:6".into();
    let started = Instant::now();
    for i in 0..n {
        tracing::info!(target: "keyward::decision", outcome = "allow",
            principal = i, key = i + 1, role = &*role, scope = &*scope, action = "view",
            resource = "domain:1/organization:6/project:3", method = "GET",
            path = "/api/v3/organizations/6/", style = "basic_email_key", micros = 3u64);
    }
    println!(
        "{mode}: {:.0} ns per decision event",
        started.elapsed().as_nanos() as f64 / n as f64
    );
    Ok(())
}
