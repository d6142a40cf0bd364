//! The breaker's rules as pure functions of its settings, its counts and the time: when the
//! window trips, how a half-open round decides, how long the breaker stays open. No atomics,
//! no clock: the engine reads those and asks here.

use super::word::{Hint, Probes};
use crate::circuit_breaker::config::{Settings, WindowKind};
use crate::circuit_breaker::window::Counts;
use std::time::Duration;

/// What a settled probe makes of its half-open round.
pub(super) enum Decision {
    Undecided,
    Close,
    Reopen,
}

/// `part / whole >= ppm / 1e6`, in integers.
#[inline]
pub(super) fn at_least(part: u32, whole: u32, ppm: u64) -> bool {
    whole > 0 && part as u64 * 1_000_000 >= ppm * whole as u64
}

/// A duration in whole milliseconds, rounded up so that a wait is never cut short.
pub(super) fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// True when a window holding `counts` trips the breaker.
pub(super) fn should_trip(s: &Settings, counts: Counts) -> bool {
    match s.window {
        WindowKind::Consecutive(n) => counts.failures >= n,
        WindowKind::Time { length, .. } if s.load_aware.is_some() => s
            .load_aware
            .as_ref()
            .and_then(|load| load.tier(counts.calls, length))
            .is_some_and(|tier| counts.failures >= tier.failures),
        _ => {
            counts.calls >= s.minimum_calls
                && (at_least(counts.failures, counts.calls, s.failure_ppm)
                    || at_least(counts.slow, counts.calls, s.slow_ppm))
        }
    }
}

/// True when a run of `run` failures trips the breaker under the outage rule's `limit`
/// (`consecutive_failure_threshold`; 0 is off).
#[inline]
pub(super) fn run_trips(limit: u32, run: u32) -> bool {
    limit != 0 && run >= limit
}

/// The open time of a trip before growth and jitter: the load-aware tier's for the calls the
/// window holds, or `wait_in_open`.
pub(super) fn trip_wait(s: &Settings, calls: impl FnOnce() -> u32) -> Duration {
    match (&s.load_aware, s.window) {
        (Some(load), WindowKind::Time { length, .. }) => load
            .tier(calls(), length)
            .map_or(s.wait_in_open, |t| t.wait_in_open),
        _ => s.wait_in_open,
    }
}

/// Decides a half-open round of `limit` slots as soon as its result can no longer change.
/// `failed` says whether the probe just settled failed.
pub(super) fn decide(s: &Settings, limit: u32, p: Probes, failed: bool) -> Decision {
    let n = limit.max(1);
    if let WindowKind::Consecutive(_) = s.window {
        return if failed {
            Decision::Reopen
        } else if p.settled - p.failures >= n {
            Decision::Close
        } else {
            Decision::Undecided
        };
    }
    let remaining = n.saturating_sub(p.settled);
    let slow_rule = s.slow_call_duration.is_some();
    let reopen =
        at_least(p.failures, n, s.failure_ppm) || (slow_rule && at_least(p.slow, n, s.slow_ppm));
    if reopen {
        return Decision::Reopen;
    }
    let could_fail = at_least(p.failures + remaining, n, s.failure_ppm)
        || (slow_rule && at_least(p.slow + remaining, n, s.slow_ppm));
    if could_fail {
        Decision::Undecided
    } else {
        Decision::Close
    }
}

/// True when every one of a half-open round's `limit` slots is taken: the next call is
/// rejected, and the round may expire.
#[inline]
pub(super) fn round_is_full(p: Probes, limit: u32) -> bool {
    p.admitted >= limit
}

/// The expiry rule: a full round (`round_is_full`) that has not decided by its deadline
/// (`max_wait_in_half_open` after it began; ms since the breaker was built) is over, and the
/// breaker reopens as of that deadline, as a failed round.
#[inline]
pub(super) fn round_expired(deadline_ms: u64, now_ms: u64) -> bool {
    now_ms >= deadline_ms
}

/// `base`, grown for the `reopens`-th consecutive reopen and jittered; `random` (a number in
/// `[0, 1)`) is drawn only when jitter is on.
pub(super) fn open_time(
    s: &Settings,
    base: Duration,
    reopens: u64,
    random: impl FnOnce() -> f64,
) -> Duration {
    let mut open = base;
    if let Some((multiplier, max)) = s.growth {
        let exponent = i32::try_from(reopens).unwrap_or(i32::MAX);
        let secs = base.as_secs_f64() * multiplier.powi(exponent);
        open = Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max));
    }
    if s.jitter > 0.0 {
        let factor = 1.0 + s.jitter * (2.0 * random() - 1.0);
        open = Duration::try_from_secs_f64(open.as_secs_f64() * factor).unwrap_or(open);
    }
    open.max(Duration::from_millis(1))
}

/// A wait the server asked for, capped by `max_retry_after` and at least 1 ms.
pub(super) fn server_wait(s: &Settings, wait: Duration) -> Duration {
    wait.min(s.max_retry_after).max(Duration::from_millis(1))
}

/// The open time, stretched to the server's own wait when it gave one.
pub(super) fn at_least_server_wait(s: &Settings, open: Duration, hint: Hint) -> Duration {
    match hint {
        Hint::ServerWait(wait) => open.max(server_wait(s, wait)),
        _ => open,
    }
}
