//! The metrics snapshot: read from the engine, never written by it.

use super::Shared;
use super::word::Tag;
use crate::circuit_breaker::CircuitState;
use crate::circuit_breaker::config::WindowKind;
use crate::sync::{Ordering, now};

/// A snapshot of a breaker's counters, taken at one point.
///
/// What "one point" means, field by field:
///
/// - `state` and `probes_in_flight` come from one atomic read of the breaker's state word.
/// - The window counts (`calls`, `failed_calls`, `slow_calls`, `successful_calls`, and the rates
///   made from them) agree with each other: for `count_based` and `consecutive` windows they
///   are one atomic read; a `time_based` window adds up its buckets, each one atomic read, so a
///   call recorded during the snapshot is in it or not, never half in it.
/// - The state and the window counts are of one generation: if a transition happens while the
///   snapshot is taken, the window is read again. (Right after a transition to closed, the old
///   window may still be emptying for a moment.)
/// - `not_permitted_calls`, `ignored_calls` and `consecutive_reopens` are separate counters read
///   just after; a call that ends during the snapshot may be in one and not yet in another.
///
/// It costs a few atomic loads (a `time_based` window: one per bucket) and one clock read; it
/// takes no lock and allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerMetrics {
    /// The state when the snapshot was taken.
    pub state: CircuitState,
    /// Calls in the window (for the consecutive rule: the current run of failures).
    pub calls: u32,
    /// Failed calls in the window.
    pub failed_calls: u32,
    /// Successful calls in the window.
    pub successful_calls: u32,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u32,
    /// `failed_calls / calls`, or `None` while the window holds fewer than `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`, or `None` while the window holds fewer than `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Calls rejected since the breaker was built.
    pub not_permitted_calls: u64,
    /// Calls that ended `Ignored` (or were dropped unrecorded) since the breaker was built.
    pub ignored_calls: u64,
    /// Probes admitted in the current half-open round and not yet settled.
    pub probes_in_flight: u32,
    /// Failed half-open rounds since the breaker last closed (drives open-time growth).
    pub consecutive_reopens: u64,
}

impl Shared {
    pub(crate) fn metrics(&self) -> CircuitBreakerMetrics {
        let now = now();
        // The state word is read again after the window: if a transition came in between, the
        // window is read again (a few times at most), so that the state and the counts are of
        // one generation.
        let mut word = self.current();
        let mut counts = self.window.counts(now);
        for _ in 0..3 {
            let after = self.load();
            if after.generation() == word.generation() {
                word = after;
                break;
            }
            word = after;
            counts = self.window.counts(now);
        }
        let rated = counts.calls > 0
            && counts.calls >= self.settings.minimum_calls
            && !matches!(self.settings.window, WindowKind::Consecutive(_));
        let rate = |n: u32| rated.then(|| n as f64 / counts.calls as f64);
        let probes = if word.tag() == Tag::HalfOpen {
            let p = word.probes();
            p.admitted.saturating_sub(p.settled)
        } else {
            0
        };
        CircuitBreakerMetrics {
            state: word.state(),
            calls: counts.calls,
            failed_calls: counts.failures,
            successful_calls: counts.calls.saturating_sub(counts.failures),
            slow_calls: counts.slow,
            failure_rate: rate(counts.failures),
            slow_call_rate: rate(counts.slow),
            not_permitted_calls: self.not_permitted.sum(),
            // Relaxed: statistics, documented as read just after the state.
            ignored_calls: self.ignored.load(Ordering::Relaxed),
            probes_in_flight: probes,
            consecutive_reopens: self.reopens.load(Ordering::Relaxed),
        }
    }
}
