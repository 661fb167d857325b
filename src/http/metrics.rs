//! Counters for `keyward serve`, rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Everything is a fixed array of atomics: recording a decision costs a few relaxed increments and no
//! lock, so `/metrics` never slows the forward-auth path down. The per-decision counters are sharded:
//! each thread increments its own shard (on cache lines of its own) and `/metrics` sums them, so two
//! workers never pass the same counter's line back and forth on every request.
//!
//! **Invariant:** label values come from fixed sets (outcomes, [`crate::Reason::code`]), never from a
//! request, so a client cannot grow the output or inject text into it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Every reason code, in the order of the counters. Codes not listed (a reason added later) are
/// counted under `other`.
const REASONS: &[&str] = &[
    "no_credential",
    "malformed_credential",
    "unknown_scheme",
    "bad_checksum",
    "malformed_key",
    "unknown_key",
    "inactive_key",
    "expired_key",
    "email_mismatch",
    "unknown_workspace",
    "workspace_header_needs_admin_key",
    "unknown_action",
    "invalid_resource",
    "deny_rule",
    "outside_key_scope",
    "outside_key_permissions",
    "read_only_key",
    "observer_cannot_write",
    "no_role",
    "key_management_disabled",
    "invalid_path",
    "no_route",
    "missing_parameter",
    "bad_parameter",
    "bad_original_request",
    "other",
];

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];

const N_REASONS: usize = REASONS.len();
const N_BUCKETS: usize = BUCKETS.len();
const SHARDS: usize = 16;

/// The counters one decision touches, for the threads that picked this shard.
#[derive(Debug)]
#[repr(align(128))]
struct Hot {
    allow: AtomicU64,
    pass: AtomicU64,
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    buckets: [AtomicU64; N_BUCKETS],
    deny: [AtomicU64; N_REASONS],
}

impl Hot {
    fn new() -> Self {
        Hot {
            allow: AtomicU64::new(0),
            pass: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            latency_sum_ns: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; N_BUCKETS],
            deny: [const { AtomicU64::new(0) }; N_REASONS],
        }
    }
}

/// This thread's shard: threads take shards in turn.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    MINE.with(|i| *i)
}

/// The outcome of one forward-auth request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed (200).
    Allow,
    /// Denied, with the reason code.
    Deny(&'static str),
    /// No route matched and unmatched requests pass through.
    PassThrough,
}

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    hot: Box<[Hot]>,
    reload_ok: AtomicU64,
    reload_error: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    header_timeouts: AtomicU64,
    flush_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn reason_index(code: &str) -> usize {
    REASONS
        .iter()
        .position(|r| *r == code)
        .unwrap_or(REASONS.len() - 1)
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Metrics {
            hot: (0..SHARDS).map(|_| Hot::new()).collect(),
            reload_ok: AtomicU64::new(0),
            reload_error: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            flush_errors: AtomicU64::new(0),
        }
    }

    /// Records one decision and how long it took.
    pub fn decision(&self, outcome: Outcome, took: Duration) {
        let hot = &self.hot[shard_index() % self.hot.len().max(1)];
        match outcome {
            Outcome::Allow => &hot.allow,
            Outcome::PassThrough => &hot.pass,
            Outcome::Deny(code) => &hot.deny[reason_index(code)],
        }
        .fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            hot.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        hot.latency_count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        hot.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The sum over the shards of one counter.
    fn sum(&self, counter: impl Fn(&Hot) -> &AtomicU64) -> u64 {
        self.hot
            .iter()
            .map(|h| counter(h).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Records a policy reload attempt.
    pub fn reload(&self, ok: bool) {
        if ok {
            &self.reload_ok
        } else {
            &self.reload_error
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn flush_error(&self) {
        self.flush_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of decisions with this outcome so far (tests, `/metrics`).
    pub fn count(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Allow => self.sum(|h| &h.allow),
            Outcome::PassThrough => self.sum(|h| &h.pass),
            Outcome::Deny(code) => {
                let i = reason_index(code);
                self.sum(|h| &h.deny[i])
            }
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP keyward_decisions_total Forward-auth decisions by outcome and reason code.\n\
             # TYPE keyward_decisions_total counter"
        );
        let _ = writeln!(
            out,
            "keyward_decisions_total{{outcome=\"allow\",reason=\"\"}} {}",
            self.sum(|h| &h.allow)
        );
        let _ = writeln!(
            out,
            "keyward_decisions_total{{outcome=\"pass_through\",reason=\"no_route\"}} {}",
            self.sum(|h| &h.pass)
        );
        for (i, code) in REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "keyward_decisions_total{{outcome=\"deny\",reason=\"{code}\"}} {}",
                self.sum(|h| &h.deny[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP keyward_decision_duration_seconds Time to answer a forward-auth request, from \
             its head to its response.\n# TYPE keyward_decision_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.sum(|h| &h.buckets[i]);
            let _ = writeln!(
                out,
                "keyward_decision_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.sum(|h| &h.latency_count);
        let _ = writeln!(
            out,
            "keyward_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             keyward_decision_duration_seconds_sum {}\n\
             keyward_decision_duration_seconds_count {count}",
            self.sum(|h| &h.latency_sum_ns) as f64 / 1e9
        );
        let counters: [(&str, &str, String); 6] = [
            (
                "keyward_policy_reloads_total",
                "Policy reload attempts by result; a refused policy leaves the old one serving.",
                format!(
                    "keyward_policy_reloads_total{{result=\"ok\"}} {}\n\
                     keyward_policy_reloads_total{{result=\"error\"}} {}",
                    get(&self.reload_ok),
                    get(&self.reload_error)
                ),
            ),
            (
                "keyward_connections_total",
                "Connections accepted.",
                format!("keyward_connections_total {}", get(&self.connections_total)),
            ),
            (
                "keyward_connections_refused_total",
                "Connections answered 503 because the connection limit was reached.",
                format!(
                    "keyward_connections_refused_total {}",
                    get(&self.connections_refused)
                ),
            ),
            (
                "keyward_header_timeouts_total",
                "Connections closed because a request head did not arrive in time (408).",
                format!(
                    "keyward_header_timeouts_total {}",
                    get(&self.header_timeouts)
                ),
            ),
            (
                "keyward_last_used_flush_errors_total",
                "Failed writes of the keys' last-used times.",
                format!(
                    "keyward_last_used_flush_errors_total {}",
                    get(&self.flush_errors)
                ),
            ),
            (
                "keyward_connections_open",
                "Connections open now.",
                format!("keyward_connections_open {}", get(&self.connections_open)),
            ),
        ];
        for (name, help, lines) in counters {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{lines}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_counter() {
        // Codes the engine can produce today; a new one falls into `other` until it is listed.
        for code in ["no_credential", "no_role", "bad_parameter", "deny_rule"] {
            assert_ne!(reason_index(code), REASONS.len() - 1, "{code}");
        }
        let m = Metrics::new();
        m.decision(Outcome::Deny("no_role"), Duration::from_micros(3));
        m.decision(Outcome::Allow, Duration::from_micros(30));
        m.decision(Outcome::Deny("brand_new_code"), Duration::from_secs(1));
        let text = m.render();
        assert!(text.contains("keyward_decisions_total{outcome=\"deny\",reason=\"no_role\"} 1"));
        assert!(text.contains("keyward_decisions_total{outcome=\"deny\",reason=\"other\"} 1"));
        assert!(text.contains("keyward_decision_duration_seconds_bucket{le=\"0.000005\"} 1"));
        assert!(text.contains("keyward_decision_duration_seconds_bucket{le=\"0.00005\"} 2"));
        assert!(text.contains("keyward_decision_duration_seconds_bucket{le=\"+Inf\"} 3"));
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let m = Metrics::new();
        std::thread::scope(|s| {
            for _ in 0..SHARDS + 3 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        m.decision(Outcome::Allow, Duration::from_micros(1));
                        m.decision(Outcome::Deny("no_role"), Duration::from_micros(1));
                    }
                });
            }
        });
        let n = (SHARDS as u64 + 3) * 1000;
        assert_eq!(m.count(Outcome::Allow), n);
        assert_eq!(m.count(Outcome::Deny("no_role")), n);
        let text = m.render();
        assert!(text.contains(&format!(
            "keyward_decision_duration_seconds_count {}",
            2 * n
        )));
    }
}
