//! The catalogue of instruments, their names in `metrics` and OpenTelemetry, and the
//! [`Backend`] an adapter implements to make and move one series.

use crate::circuit_breaker::CircuitState;
use std::sync::Arc;

/// Every instrument, with its names in both worlds. The table in the module docs of
/// `tower_breaker::metrics` lists the same, and a test checks that they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instrument {
    BreakerCalls,
    BreakerSlowCalls,
    BreakerTransitions,
    BreakerState,
    BreakerOpenTime,
    BulkheadCalls,
    BulkheadActive,
    BulkheadQueued,
    RetryAttempts,
    RetryCalls,
    FallbackCalls,
    AdaptiveLimit,
    AdaptiveSamples,
    AdaptiveLimitChanges,
    QuotaCalls,
    QuotaRequestsLeft,
    QuotaTokensLeft,
    StreamFirstToken,
    StreamCalls,
    ChaosFaults,
}

/// How an instrument is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up.
    Counter,
    /// Set to a value (the state gauge).
    Gauge,
    /// Moved up and down (active and queued calls).
    UpDown,
    /// A distribution, in seconds.
    Histogram,
    /// Set to a value that may be fractional or negative, with a `key` label besides `name`
    /// (a quota key's level).
    Level,
}

impl Instrument {
    pub(crate) const ALL: [Instrument; 20] = [
        Instrument::BreakerCalls,
        Instrument::BreakerSlowCalls,
        Instrument::BreakerTransitions,
        Instrument::BreakerState,
        Instrument::BreakerOpenTime,
        Instrument::BulkheadCalls,
        Instrument::BulkheadActive,
        Instrument::BulkheadQueued,
        Instrument::RetryAttempts,
        Instrument::RetryCalls,
        Instrument::FallbackCalls,
        Instrument::AdaptiveLimit,
        Instrument::AdaptiveSamples,
        Instrument::AdaptiveLimitChanges,
        Instrument::QuotaCalls,
        Instrument::QuotaRequestsLeft,
        Instrument::QuotaTokensLeft,
        Instrument::StreamFirstToken,
        Instrument::StreamCalls,
        Instrument::ChaosFaults,
    ];

    /// The name for the `metrics` facade (Prometheus style).
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_name(self) -> &'static str {
        match self {
            Instrument::BreakerCalls => "tower_breaker_circuit_breaker_calls_total",
            Instrument::BreakerSlowCalls => "tower_breaker_circuit_breaker_slow_calls_total",
            Instrument::BreakerTransitions => "tower_breaker_circuit_breaker_transitions_total",
            Instrument::BreakerState => "tower_breaker_circuit_breaker_state",
            Instrument::BreakerOpenTime => "tower_breaker_circuit_breaker_open_seconds",
            Instrument::BulkheadCalls => "tower_breaker_bulkhead_calls_total",
            Instrument::BulkheadActive => "tower_breaker_bulkhead_active_calls",
            Instrument::BulkheadQueued => "tower_breaker_bulkhead_queued_calls",
            Instrument::RetryAttempts => "tower_breaker_retry_attempts_total",
            Instrument::RetryCalls => "tower_breaker_retry_calls_total",
            Instrument::FallbackCalls => "tower_breaker_fallback_calls_total",
            Instrument::AdaptiveLimit => "tower_breaker_adaptive_limit",
            Instrument::AdaptiveSamples => "tower_breaker_adaptive_samples_total",
            Instrument::AdaptiveLimitChanges => "tower_breaker_adaptive_limit_changes_total",
            Instrument::QuotaCalls => "tower_breaker_quota_calls_total",
            Instrument::QuotaRequestsLeft => "tower_breaker_quota_requests_left",
            Instrument::QuotaTokensLeft => "tower_breaker_quota_tokens_left",
            Instrument::StreamFirstToken => "tower_breaker_stream_first_token_seconds",
            Instrument::StreamCalls => "tower_breaker_stream_calls_total",
            Instrument::ChaosFaults => "tower_breaker_chaos_faults_total",
        }
    }

    /// The OpenTelemetry name. A Prometheus exporter turns it into the `metrics` name (dots to
    /// underscores, `_total` on counters, `_seconds` from the unit).
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn otel_name(self) -> &'static str {
        match self {
            Instrument::BreakerCalls => "tower_breaker.circuit_breaker.calls",
            Instrument::BreakerSlowCalls => "tower_breaker.circuit_breaker.slow_calls",
            Instrument::BreakerTransitions => "tower_breaker.circuit_breaker.transitions",
            Instrument::BreakerState => "tower_breaker.circuit_breaker.state",
            Instrument::BreakerOpenTime => "tower_breaker.circuit_breaker.open",
            Instrument::BulkheadCalls => "tower_breaker.bulkhead.calls",
            Instrument::BulkheadActive => "tower_breaker.bulkhead.active_calls",
            Instrument::BulkheadQueued => "tower_breaker.bulkhead.queued_calls",
            Instrument::RetryAttempts => "tower_breaker.retry.attempts",
            Instrument::RetryCalls => "tower_breaker.retry.calls",
            Instrument::FallbackCalls => "tower_breaker.fallback.calls",
            Instrument::AdaptiveLimit => "tower_breaker.adaptive.limit",
            Instrument::AdaptiveSamples => "tower_breaker.adaptive.samples",
            Instrument::AdaptiveLimitChanges => "tower_breaker.adaptive.limit_changes",
            Instrument::QuotaCalls => "tower_breaker.quota.calls",
            Instrument::QuotaRequestsLeft => "tower_breaker.quota.requests_left",
            Instrument::QuotaTokensLeft => "tower_breaker.quota.tokens_left",
            Instrument::StreamFirstToken => "tower_breaker.stream.first_token",
            Instrument::StreamCalls => "tower_breaker.stream.calls",
            Instrument::ChaosFaults => "tower_breaker.chaos.faults",
        }
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            Instrument::BreakerState | Instrument::AdaptiveLimit => Kind::Gauge,
            Instrument::BulkheadActive | Instrument::BulkheadQueued => Kind::UpDown,
            Instrument::BreakerOpenTime | Instrument::StreamFirstToken => Kind::Histogram,
            Instrument::QuotaRequestsLeft | Instrument::QuotaTokensLeft => Kind::Level,
            _ => Kind::Counter,
        }
    }

    /// The OpenTelemetry unit (UCUM).
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn otel_unit(self) -> &'static str {
        match self {
            Instrument::BreakerOpenTime | Instrument::StreamFirstToken => "s",
            Instrument::QuotaRequestsLeft => "{request}",
            Instrument::QuotaTokensLeft => "{token}",
            Instrument::BreakerTransitions => "{transition}",
            // No unit: "1" would make a Prometheus exporter append `_ratio`.
            Instrument::BreakerState => "",
            Instrument::RetryAttempts => "{attempt}",
            Instrument::AdaptiveLimit => "{call}",
            Instrument::AdaptiveSamples => "{sample}",
            Instrument::AdaptiveLimitChanges => "{change}",
            Instrument::ChaosFaults => "{fault}",
            _ => "{call}",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Instrument::BreakerCalls => {
                "Calls through a circuit breaker, by outcome: success, failure, ignored, rejected."
            }
            Instrument::BreakerSlowCalls => {
                "Calls slower than the breaker's slow_call_duration, by outcome: success, failure."
            }
            Instrument::BreakerTransitions => "Circuit breaker state transitions, by from and to.",
            Instrument::BreakerState => {
                "1 for the circuit breaker's current state, 0 for every other state."
            }
            Instrument::BreakerOpenTime => {
                "Time a circuit breaker stayed open, recorded each time it leaves the open state."
            }
            Instrument::BulkheadCalls => {
                "Calls through a bulkhead, by outcome: permitted, rejected_full, rejected_timeout."
            }
            Instrument::BulkheadActive => "Calls holding a bulkhead slot now.",
            Instrument::BulkheadQueued => "Calls waiting for a bulkhead slot now.",
            Instrument::RetryAttempts => {
                "Retries scheduled by a retry policy (attempts after the first), by reason."
            }
            Instrument::RetryCalls => {
                "Calls a retry policy finished after a failure, by outcome: succeeded, or why it gave up."
            }
            Instrument::FallbackCalls => "Fallback answers, by outcome: served, failed.",
            Instrument::AdaptiveLimit => "The concurrency limit of an adaptive bulkhead now.",
            Instrument::AdaptiveSamples => {
                "Finished calls an adaptive bulkhead took as signals, by signal: success, congestion, ignore."
            }
            Instrument::AdaptiveLimitChanges => {
                "Changes of an adaptive bulkhead's limit, by reason: congestion, latency, growth."
            }
            Instrument::QuotaCalls => {
                "Calls through a quota governor, by outcome: admitted, waited, rejected, rate_limited."
            }
            Instrument::QuotaRequestsLeft => {
                "Requests a quota key has left, as its governor believes, set at each change (negative: owed to waiting calls)."
            }
            Instrument::QuotaTokensLeft => {
                "Tokens a quota key has left, as its governor believes, set at each change (negative: owed to waiting calls)."
            }
            Instrument::StreamFirstToken => "Time to first token of guarded streams.",
            Instrument::StreamCalls => {
                "Guarded streams, by outcome: completed, first_token_timeout, idle, truncated, failed, dropped."
            }
            Instrument::ChaosFaults => {
                "Faults injected by a chaos layer, by fault: error, latency, status, stall_before_first_byte, stall_mid_stream, cut, trickle, keepalive_only."
            }
        }
    }
}

/// Every breaker state, for the state gauge (one series per state).
pub(crate) const STATES: [CircuitState; 7] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::ForcedOpen,
    CircuitState::Disabled,
    CircuitState::MetricsOnly,
    CircuitState::RateLimited,
];

/// The labels of a series besides `name`; every value is a fixed word.
pub(crate) type Labels<'a> = &'a [(&'static str, &'static str)];

/// The label of a [`Kind::Level`] series whose value is not a fixed word: a quota's key.
#[cfg_attr(not(feature = "quota"), allow(dead_code))]
pub(crate) const KEY_LABEL: &str = "key";

/// Makes and moves series in one metrics system. A series is an instrument bound to the
/// `name` label and a few fixed labels; a level, to `name` and a dynamic [`KEY_LABEL`].
pub(crate) trait Backend: Send + Sync + 'static {
    type Counter: Send + Sync + 'static;
    type Gauge: Send + Sync + 'static;
    type UpDown: Send + Sync + 'static;
    type Histogram: Send + Sync + 'static;
    type Level: Send + Sync + 'static;

    fn counter(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>)
    -> Self::Counter;
    fn gauge(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Self::Gauge;
    fn up_down(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Self::UpDown;
    fn histogram(
        &self,
        instrument: Instrument,
        name: &Arc<str>,
        labels: Labels<'_>,
    ) -> Self::Histogram;
    /// A level series, labelled `name` and `key` (one series per key: the caller bounds them).
    #[cfg_attr(not(feature = "quota"), allow(dead_code))]
    fn level(&self, instrument: Instrument, name: &Arc<str>, key: &Arc<str>) -> Self::Level;

    /// Adds `n` (0 makes the series exist, so that it reads 0 rather than nothing).
    fn count(counter: &Self::Counter, n: u64);
    fn set(gauge: &Self::Gauge, value: u64);
    fn add(up_down: &Self::UpDown, delta: i64);
    fn record(histogram: &Self::Histogram, value: f64);
    #[cfg_attr(not(feature = "quota"), allow(dead_code))]
    fn set_level(level: &Self::Level, value: f64);
}
