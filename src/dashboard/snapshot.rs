//! What the dashboard shows: the snapshot of every registered component, as JSON.

use crate::circuit_breaker::{CircuitBreakerMetrics, CircuitState};
use serde::Serialize;
use std::collections::BTreeMap;

/// Every registered component at one tick: what `snapshot.json` answers and each event of the
/// stream carries. Built by [`Dashboard::snapshot`](super::Dashboard::snapshot).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DashboardSnapshot {
    /// Counts the dashboard's samples (shared by every client), from 1.
    pub seq: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// The interval between two events of the stream, in milliseconds.
    pub tick_ms: u64,
    /// The breakers registered one by one.
    pub breakers: Vec<BreakerView>,
    /// The bulkheads.
    pub bulkheads: Vec<BulkheadView>,
    /// The adaptive bulkheads.
    pub adaptive: Vec<AdaptiveView>,
    /// The keyed registries, aggregated.
    pub keyed: Vec<KeyedView>,
    /// The quota governors, aggregated.
    pub quotas: Vec<QuotaView>,
    /// The hedges.
    pub hedges: Vec<HedgeView>,
}

/// One circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerView {
    /// The breaker's name.
    pub name: String,
    /// Its state: `closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`,
    /// `rate_limited`.
    pub state: &'static str,
    /// The colour the page shows the state in (CSS hex).
    pub colour: &'static str,
    /// How long it has been in this state, in milliseconds (see `in_state_at_least`).
    pub in_state_ms: u64,
    /// True when the state held before the dashboard first looked: the breaker has been in it
    /// for at least `in_state_ms`.
    pub in_state_at_least: bool,
    /// Failed calls / calls in the window, once it holds `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// Slow calls / calls in the window, once it holds `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failed_calls: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
    /// How long until it lets a call through again, in milliseconds, when known.
    pub retry_after_ms: Option<u64>,
    /// Its recent samples, oldest first, one per tick (at most `history` of them).
    pub history: Vec<HistoryPoint>,
}

/// One sample of a breaker's history, for its sparkline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// The state then.
    pub state: &'static str,
    /// The failure rate then, when known.
    pub failure_rate: Option<f64>,
}

/// One bulkhead.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BulkheadView {
    /// The bulkhead's name.
    pub name: String,
    /// Calls holding a slot now.
    pub active: u32,
    /// The number of slots.
    pub max_concurrent: u32,
    /// Calls waiting for a slot now.
    pub queued: u32,
    /// The most calls that may wait.
    pub max_queue: u32,
    /// Calls rejected because every slot and the queue were full, since it was built.
    pub rejected_full: u64,
    /// Calls rejected after waiting `max_wait`, since it was built.
    pub rejected_timeout: u64,
}

/// One adaptive bulkhead.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AdaptiveView {
    /// Its name.
    pub name: String,
    /// The concurrency limit now.
    pub limit: u32,
    /// Calls holding a slot now.
    pub active: u32,
    /// Calls waiting for a slot now.
    pub queued: u32,
    /// Calls rejected because it was full, since it was built.
    pub rejected_full: u64,
    /// Calls rejected after waiting, since it was built.
    pub rejected_timeout: u64,
}

/// A keyed registry: how many keys are in each state, and the worst keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KeyedView {
    /// The template breaker's name.
    pub name: String,
    /// Keys kept now.
    pub keys: usize,
    /// Keys evicted since it was built.
    pub evicted: u64,
    /// The number of keys in each state (states with no key are left out).
    pub states: BTreeMap<&'static str, usize>,
    /// The worst keys (open first, then by failure rate), at most `max_keys_listed`.
    pub listed: Vec<KeyedBreakerView>,
    /// Keys not listed.
    pub more: usize,
}

/// One key of a keyed registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KeyedBreakerView {
    /// The key.
    pub key: String,
    /// Its breaker's state.
    pub state: &'static str,
    /// The state's colour.
    pub colour: &'static str,
    /// Failed calls / calls in the window, once it holds `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// Slow calls / calls in the window, once it holds `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window.
    pub calls: u32,
    /// Calls rejected since the key's breaker was built.
    pub rejected: u64,
}

/// A quota governor: its key count and the keys with the least left.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QuotaView {
    /// The governor's name.
    pub name: String,
    /// Keys kept now.
    pub keys: usize,
    /// The keys with the least left (as a share of their limit), at most `max_keys_listed`.
    pub listed: Vec<QuotaKeyView>,
    /// Keys not listed.
    pub more: usize,
}

/// The budgets of one quota key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QuotaKeyView {
    /// The key.
    pub key: String,
    /// Requests per window, when known.
    pub requests_limit: Option<u64>,
    /// Requests that fit now (negative: owed to waiting calls).
    pub requests_left: f64,
    /// Tokens per window, when known.
    pub tokens_limit: Option<u64>,
    /// Tokens that fit now (negative: owed to waiting calls).
    pub tokens_left: f64,
    /// How long the key still pauses after a 429, in milliseconds.
    pub paused_ms: u64,
}

/// One hedge.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HedgeView {
    /// The name it was registered under.
    pub name: String,
    /// Calls made.
    pub calls: u64,
    /// Second attempts started.
    pub hedges: u64,
    /// `hedges / calls` (0 before the first call).
    pub hedge_rate: f64,
    /// Calls answered by the second attempt.
    pub hedge_wins: u64,
    /// Hedges due but refused (budget, breaker, not idempotent).
    pub declined: u64,
}

/// The colour of a state on the page.
pub(super) fn colour(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "#2e7d32",
        CircuitState::HalfOpen => "#f9a825",
        CircuitState::Open => "#c62828",
        CircuitState::ForcedOpen => "#6a1b9a",
        CircuitState::RateLimited => "#ef6c00",
        CircuitState::Disabled => "#757575",
        CircuitState::MetricsOnly => "#1565c0",
        // `CircuitState` is non-exhaustive: a state added later shows grey until it has its
        // own colour.
        #[allow(unreachable_patterns)]
        _ => "#757575",
    }
}

/// How bad a state is, for ordering keys: the worst first.
pub(super) fn severity(state: CircuitState) -> u8 {
    match state {
        CircuitState::Open | CircuitState::ForcedOpen => 0,
        CircuitState::RateLimited => 1,
        CircuitState::HalfOpen => 2,
        _ => 3,
    }
}

pub(super) fn keyed_view(
    name: String,
    evicted: u64,
    mut keys: Vec<(String, CircuitBreakerMetrics)>,
    max_listed: usize,
) -> KeyedView {
    let mut states = BTreeMap::new();
    for (_, m) in &keys {
        *states.entry(m.state.as_str()).or_insert(0) += 1;
    }
    let total = keys.len();
    // Worst first: the state, then the failure rate (unknown last), then the key for a
    // stable order from tick to tick.
    keys.sort_by(|(ka, a), (kb, b)| {
        severity(a.state)
            .cmp(&severity(b.state))
            .then_with(|| {
                let ra = a.failure_rate.unwrap_or(-1.0);
                let rb = b.failure_rate.unwrap_or(-1.0);
                rb.total_cmp(&ra)
            })
            .then_with(|| ka.cmp(kb))
    });
    keys.truncate(max_listed);
    let listed: Vec<KeyedBreakerView> = keys
        .into_iter()
        .map(|(key, m)| KeyedBreakerView {
            key,
            state: m.state.as_str(),
            colour: colour(m.state),
            failure_rate: m.failure_rate,
            slow_call_rate: m.slow_call_rate,
            calls: m.calls,
            rejected: m.not_permitted_calls,
        })
        .collect();
    KeyedView {
        name,
        keys: total,
        evicted,
        states,
        more: total - listed.len(),
        listed,
    }
}

#[cfg(feature = "quota")]
/// The share of a key's tightest budget that is left (1.0 when no limit is known).
fn share_left(q: &QuotaKeyView) -> f64 {
    let share = |limit: Option<u64>, left: f64| match limit {
        Some(l) if l > 0 => left / l as f64,
        _ => 1.0,
    };
    let paused = if q.paused_ms > 0 { -1.0 } else { f64::INFINITY };
    share(q.requests_limit, q.requests_left)
        .min(share(q.tokens_limit, q.tokens_left))
        .min(paused)
}

#[cfg(feature = "quota")]
pub(super) fn quota_view(
    name: String,
    mut keys: Vec<QuotaKeyView>,
    max_listed: usize,
) -> QuotaView {
    let total = keys.len();
    keys.sort_by(|a, b| {
        share_left(a)
            .total_cmp(&share_left(b))
            .then_with(|| a.key.cmp(&b.key))
    });
    keys.truncate(max_listed);
    QuotaView {
        name,
        keys: total,
        more: total - keys.len(),
        listed: keys,
    }
}
