//! The records each layer makes into the current span.
//!
//! Each record is an inlined check of the global max level (one relaxed load: `OFF` while no
//! subscriber is set) in front of an out-of-line body, so that the closed path with no
//! subscriber grows by a load and a branch, and no more code.

use std::time::Duration;
use tracing::Span;

/// True when some subscriber may want a span (the global max level is not `OFF`).
#[inline(always)]
fn wanted() -> bool {
    tracing::level_enabled!(tracing::Level::ERROR)
}

/// The current span, when a subscriber may want what is recorded into it.
#[inline]
pub(crate) fn interested() -> Option<Span> {
    if !wanted() {
        return None;
    }
    current()
}

#[cold]
#[inline(never)]
fn current() -> Option<Span> {
    let span = Span::current();
    (!span.is_disabled()).then_some(span)
}

/// A breaker admitted an attempt in `state`.
#[inline]
pub(crate) fn record_admitted(name: &str, state: impl FnOnce() -> &'static str) {
    if wanted() {
        admitted(name, state);
    }
}

#[cold]
#[inline(never)]
fn admitted(name: &str, state: impl FnOnce() -> &'static str) {
    if let Some(span) = current() {
        span.record("breaker.name", name);
        span.record("breaker.state", state());
    }
}

/// A breaker refused an attempt in `state`. (`error.kind` is the call's, recorded by
/// `CallSpan` when the call ends: a retry may still succeed after a cool-down's rejection.)
#[inline]
pub(crate) fn record_rejected(name: &str, state: &'static str) {
    if let Some(span) = interested() {
        span.record("breaker.name", name);
        span.record("breaker.state", state);
    }
}

/// The retry policy is about to send attempt `attempts`.
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
#[inline]
pub(crate) fn record_attempts(attempts: u32) {
    if wanted() {
        attempted(attempts);
    }
}

#[cfg_attr(not(feature = "retry"), allow(dead_code))]
#[cold]
#[inline(never)]
fn attempted(attempts: u32) {
    if let Some(span) = current() {
        span.record("attempts", attempts);
    }
}

/// A quota made the call wait `wait` for its turn.
#[cfg_attr(not(feature = "quota"), allow(dead_code))]
pub(crate) fn record_quota_wait(wait: Duration) {
    if let Some(span) = interested() {
        span.record("quota.wait_ms", millis(wait));
    }
}

/// A stream sent its first token `ttft` after its attempt started, recorded into `span` (the
/// span current when the guarded body was made: the body is read after the call returns).
#[cfg_attr(not(feature = "stream"), allow(dead_code))]
pub(crate) fn record_ttft(span: &Span, ttft: Duration) {
    span.record("ttft_ms", millis(ttft));
}

/// Whole milliseconds, saturating (a `u64` of milliseconds outlasts any call).
#[cfg_attr(not(any(feature = "quota", feature = "stream")), allow(dead_code))]
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
