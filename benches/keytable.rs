//! Key table benchmark: bulk import of N keys (1,000,000 by default, `KEYWARD_BENCH_KEYS` to change) with
//! `KeyTable::import_keys` in chunks of 10,000 keys (one durable mutation each), then
//! `key_by_hash` on random existing hashes (the engine's cache-miss path), and database size per key.
//! `KEYWARD_BENCH_CACHE_MIB` sets `StoreOptions::cache_capacity` (default: the store's default).
//!
//! Prints the import wall time, bytes per key, and the median / p99 / p99.9 / max of 100,000 individually
//! timed lookups (twice: right after the import, then in the steady state; each also without the samples
//! during which the thread was preempted); then runs a criterion benchmark of the same lookup.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use keyward::store::{Actor, KeyTable, NewKey, NewPrincipal, PrincipalKind, StoreOptions};
use keyward::token::KeyHash;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS_PER_OWNER: u64 = 1000;
const CHUNK: u64 = 10_000;
const SAMPLES: usize = 100_000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A SEED-style 40-hex secret, distinct for every `i`.
fn secret(i: u64) -> String {
    format!("{:016x}{:024x}", splitmix(i), i)
}

fn dir_size(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

/// Involuntary context switches of the calling thread so far.
fn preemptions() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut usage) != 0 {
            return 0;
        }
        usage.ru_nivcsw
    }
}

/// Times `key_by_hash` on every hash; prints median, p99, p99.9 and max, over all samples and over the
/// samples during which the thread was not preempted (this machine is shared, so some are).
fn lookups(
    table: &KeyTable,
    hashes: &[KeyHash],
    what: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut all = Vec::with_capacity(hashes.len());
    let mut on_cpu = Vec::with_capacity(hashes.len());
    let mut found = 0usize;
    for h in hashes {
        let before = preemptions();
        let t0 = Instant::now();
        let rec = table.key_by_hash(h)?;
        let t = t0.elapsed();
        all.push(t);
        if preemptions() == before {
            on_cpu.push(t);
        }
        found += usize::from(rec.is_some());
    }
    assert_eq!(found, hashes.len(), "every sampled key must be found");
    let show = |times: &mut Vec<Duration>| {
        times.sort_unstable();
        format!(
            "median {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us",
            percentile(times, 0.5).as_secs_f64() * 1e6,
            percentile(times, 0.99).as_secs_f64() * 1e6,
            percentile(times, 0.999).as_secs_f64() * 1e6,
            percentile(times, 1.0).as_secs_f64() * 1e6,
        )
    };
    println!(
        "key_by_hash, {what}, {} random keys: {}",
        hashes.len(),
        show(&mut all)
    );
    println!(
        "key_by_hash, {what}, the {} lookups not preempted: {}",
        on_cpu.len(),
        show(&mut on_cpu)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::var("KEYWARD_BENCH_KEYS") {
        Ok(v) => v.trim().replace('_', "").parse()?,
        Err(_) => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("keys");
    let mut options = StoreOptions::default();
    if let Ok(mib) = std::env::var("KEYWARD_BENCH_CACHE_MIB") {
        options.cache_capacity = mib.trim().parse::<u64>()? * 1024 * 1024;
    }
    println!(
        "cache_capacity: {} MiB",
        options.cache_capacity / (1024 * 1024)
    );
    let table = KeyTable::open(&path, options)?;

    let owners = n.div_ceil(KEYS_PER_OWNER).max(1);
    let start = Instant::now();
    let owner_ids = table.bulk(|b| {
        (0..owners)
            .map(|o| {
                b.add_principal(
                    Actor::System,
                    NewPrincipal {
                        kind: PrincipalKind::User,
                        login: format!("user{o}@example.org"),
                        default_workspace: None,
                    },
                )
                .map(|p| p.id)
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut i = 0;
    while i < n {
        let end = (i + CHUNK).min(n);
        let chunk: Vec<(NewKey, String)> = (i..end)
            .map(|k| {
                let owner = owner_ids
                    .get((k / KEYS_PER_OWNER) as usize)
                    .copied()
                    .unwrap_or(1);
                (NewKey::new(owner, format!("key {k}")), secret(k))
            })
            .collect();
        table.import_keys(Actor::System, chunk)?;
        i = end;
    }
    let import = start.elapsed();
    println!(
        "import: {n} keys ({owners} owners) in {:.2} s ({:.1} us/key)",
        import.as_secs_f64(),
        import.as_secs_f64() * 1e6 / n as f64
    );

    table.flush()?;
    let (apparent, allocated) = dir_size(&path)?;
    println!(
        "size: {apparent} bytes apparent ({:.0} B/key), {allocated} bytes allocated ({:.0} B/key)",
        apparent as f64 / n as f64,
        allocated as f64 / n as f64
    );

    let settle = Instant::now();
    let entries = table.settle()?;
    println!(
        "settle: read {entries} entries in {:.2} s; import + settle {:.2} s",
        settle.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    // Four passes over other random keys each: after `settle` the first is already the steady state
    // (without it, the first paid for consolidating the pages the import left fragmented: p99 62 µs).
    let mut rng = 0x1234_5678_u64;
    let mut hashes: Vec<KeyHash> = Vec::new();
    for pass in [
        "first pass after import",
        "second pass",
        "third pass",
        "fourth pass",
    ] {
        hashes = (0..SAMPLES)
            .map(|_| {
                rng = splitmix(rng);
                table.hash(&secret(rng % n))
            })
            .collect();
        lookups(&table, &hashes, pass)?;
    }

    let mut c = Criterion::default().configure_from_args();
    let mut next = 0usize;
    c.bench_function(&format!("key_by_hash/{n}"), |b| {
        b.iter(|| {
            next = (next + 1) % hashes.len();
            let h = hashes.get(next).copied().unwrap_or(KeyHash([0; 32]));
            black_box(table.key_by_hash(black_box(&h)).ok().flatten())
        })
    });
    c.final_summary();
    Ok(())
}
