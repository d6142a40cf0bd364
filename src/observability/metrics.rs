//! Counters, gauges and histograms for every component, through the
//! [`metrics`](https://docs.rs/metrics) facade, so that any exporter works (Prometheus,
//! StatsD, Datadog, ...).
//!
//! A [`MetricsListener`] is an event [`Listener`](crate::events::Listener) for every component. Register one (clones
//! share everything) with each component's `on_event` when you build it:
//!
//! ```
//! use tower_breaker::bulkhead::Bulkhead;
//! use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
//! use tower_breaker::metrics::MetricsListener;
//!
//! // Install your exporter's recorder first (for example
//! // `metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()`).
//! let metrics = MetricsListener::new();
//! let breaker = CircuitBreaker::builder("openai")
//!     .sliding_window(SlidingWindow::consecutive(5))
//!     .on_event(metrics.clone())
//!     .build()?;
//! let bulkhead = Bulkhead::builder("openai")
//!     .max_concurrent(10)
//!     .on_event(metrics.clone())
//!     .build()?;
//! # let _ = (breaker, bulkhead);
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! The same listener goes on a [`RetryPolicy`](crate::retry::RetryPolicy) builder (feature
//! `retry`), a [`FallbackLayer`](crate::fallback::FallbackLayer), and the template of
//! [`KeyedCircuitBreakers`](crate::keyed::KeyedCircuitBreakers) (each key's breaker then has
//! its own series, named `<name>:<key>`). `examples/prometheus.rs` serves the result on
//! `/metrics` from an axum server.
//!
//! # Metrics
//!
//! Every series has a `name` label: the component's name. Labels in the table are the others.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `tower_breaker_circuit_breaker_calls_total` | counter | `outcome`: `success`, `failure`, `ignored`, `rejected` | calls through a breaker, counted when recorded (a dropped permit is `ignored`) or rejected |
//! | `tower_breaker_circuit_breaker_slow_calls_total` | counter | `outcome`: `success`, `failure` | calls slower than `slow_call_duration` (also counted in `calls_total`) |
//! | `tower_breaker_circuit_breaker_transitions_total` | counter | `from`, `to`: a state | state transitions, manual ones included (a reset of a closed breaker is `closed` to `closed`) |
//! | `tower_breaker_circuit_breaker_state` | gauge | `state`: `closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`, `rate_limited` | 1 for the current state, 0 for every other |
//! | `tower_breaker_circuit_breaker_open_seconds` | histogram | | time spent open, recorded each time the breaker leaves `open` |
//! | `tower_breaker_bulkhead_calls_total` | counter | `outcome`: `permitted`, `rejected_full`, `rejected_timeout` | calls through a bulkhead |
//! | `tower_breaker_bulkhead_active_calls` | gauge | | calls holding a slot now |
//! | `tower_breaker_bulkhead_queued_calls` | gauge | | calls waiting for a slot now |
//! | `tower_breaker_retry_attempts_total` | counter | `reason`: `error`, `response`, `bulkhead_full` | retries (attempts after the first), by what failed |
//! | `tower_breaker_retry_calls_total` | counter | `outcome`: `succeeded`, or why the policy gave up: `max_attempts`, `deadline`, `budget_exhausted`, `not_idempotent`, `circuit_open`, `rate_limited`, `bulkhead_full`, `not_retryable` | calls whose first attempt failed, by how they ended |
//! | `tower_breaker_fallback_calls_total` | counter | `outcome`: `served`, `failed` | fallback answers served, and fallbacks that failed themselves |
//! | `tower_breaker_adaptive_limit` | gauge | | an [adaptive bulkhead](crate::bulkhead::AdaptiveBulkhead)'s limit, set at each change (register the listener with `on_limit_event`; its calls go through `on_event` as a bulkhead's) |
//! | `tower_breaker_adaptive_samples_total` | counter | `signal`: `success`, `congestion`, `ignore` | finished calls taken as signals by an adaptive bulkhead |
//! | `tower_breaker_adaptive_limit_changes_total` | counter | `reason`: `congestion`, `latency`, `growth` | changes of an adaptive bulkhead's limit |
//! | `tower_breaker_quota_calls_total` | counter | `outcome`: `admitted`, `waited`, `rejected`, `rate_limited` | calls through a [quota governor](crate::quota) (feature `quota`): admitted at once, admitted after a wait, rejected; and 429s that paused a key |
//! | `tower_breaker_quota_requests_left` | gauge | `key`: the quota key | requests a key has left, as its [governor](crate::quota) believes: set at each admission, answer, refund or usage report (a [`LevelsChanged`](crate::quota::QuotaEvent::LevelsChanged) event), equal to [`Quota::snapshot`](crate::quota::Quota::snapshot)'s `requests_available` then; negative while calls wait for their turn; no series until a limit is known, and the last level kept if the limit is removed |
//! | `tower_breaker_quota_tokens_left` | gauge | `key`: the quota key | tokens a key has left, likewise |
//! | `tower_breaker_stream_first_token_seconds` | histogram | | time to first token of each guarded stream ([`StreamGuardLayer`](crate::stream::StreamGuardLayer), feature `stream`): from the call, or from the response head behind the `.llm()` stack's breaker |
//! | `tower_breaker_stream_calls_total` | counter | `outcome`: `completed`, `first_token_timeout`, `idle`, `truncated`, `failed`, `dropped` | guarded streams, by how they ended (`failed`: the upstream's body failed; `dropped`: the caller stopped reading before the end) |
//! | `tower_breaker_chaos_faults_total` | counter | `fault`: `error`, `latency`, `status`, `stall_before_first_byte`, `stall_mid_stream`, `cut`, `trickle`, `keepalive_only` | faults injected by a chaos layer (feature `chaos`) |
//!
//! Register the listener with a [`Quota`](crate::quota::Quota)'s and a
//! [`StreamGuardLayer`](crate::stream::StreamGuardLayer)'s `on_event` for their series; a
//! stack that guards streams (`.llm()`) takes it with `on_stream_event` too.
//!
//! ## The `key` label
//!
//! The quota gauges have one series per governor and key: a key is a model, a provider or an
//! API key, as the governor's key function makes it. A governor keeps at most `max_keys` keys
//! at once (default 1,000; the least recently used goes first), but the series of a key it
//! forgot stay, in the listener (one small entry per key) and in the exporter, as every
//! series does. So the number of series is the number of keys ever seen: key by a bounded
//! set (models, providers, API keys), never by user or request.
//!
//! A quota gauge is set when the governor changes a key's levels, not between: a budget
//! refills on its own, unreported, so a key with no calls shows its level at its last change.
//! [`Quota::snapshot`](crate::quota::Quota::snapshot) reads it now.
//!
//! Every metric is described (unit and help text) to the recorder installed when
//! [`MetricsListener::new`] runs. A breaker's series appear with its first event, all at once
//! (its `state` gauge starts at `closed`); a bulkhead's likewise.
//!
//! # Cost
//!
//! Nothing while no listener is registered: components build no event then (see
//! [`events`](crate::events)), and the bench `benches/observability.rs` shows a breaker without
//! a listener costs the same with this feature on or off. With the listener, a call finds
//! its component's series (made once per name and kept) in a short list of the series its
//! thread used last, by the address of the event's name: no lock, no hash, no allocation;
//! only a thread's first event for a name takes a lock and hashes the name. Then comes the
//! recorder's increment. The listener keeps one small entry per breaker and bulkhead name it
//! has seen, and each thread remembers at most 8.
//!
//! The rarer series (transitions, retries, fallbacks, quota calls, stream outcomes and time to
//! first token: at most a few per call) are looked up in the recorder at each event, which
//! for the `metrics` facade builds the label list (one small allocation). A quota key's level
//! gauges are kept per key, in an entry found by a hash of the governor's name and the key
//! under a read lock; the event itself reuses the key's name, made once per key.
//!
//! # Install the recorder first
//!
//! The `metrics` facade binds a series to the recorder installed when the series is first
//! used. Install your exporter's recorder before the first call through a component (as every
//! `metrics` exporter asks); series first used before that are not exported.
//!
//! # Snapshots
//!
//! Every handle also has a `metrics()` snapshot, free of any exporter and of any listener (a
//! breaker's or a bulkhead's is a few atomic loads: no lock, no allocation). What "taken at one
//! point" means for each:
//!
//! - [`CircuitBreaker::metrics`](crate::circuit_breaker::CircuitBreaker::metrics): the state
//!   and the window counts are of one generation, and the counts agree with each other; the
//!   lifetime counters are read just after. See
//!   [`CircuitBreakerMetrics`](crate::circuit_breaker::CircuitBreakerMetrics).
//! - [`Bulkhead::metrics`](crate::bulkhead::Bulkhead::metrics): `active` and `queued` are each
//!   exact, from two reads; a call changing hands between them can be in both or neither. The
//!   rejection counters are read after. See [`BulkheadMetrics`](crate::bulkhead::BulkheadMetrics).
//! - [`KeyedCircuitBreakers::metrics`](crate::keyed::KeyedCircuitBreakers::metrics): one
//!   breaker snapshot per key, taken one after the other, one shard of the registry at a time
//!   under its read lock (keys of that shard are neither added nor evicted meanwhile), not all
//!   at one instant; it allocates the list.
//!
//! The listeners' series are the running totals of the events, so they can differ from a
//! snapshot by the calls in flight.

use super::instrument::{Backend, Instrument, KEY_LABEL, Kind, Labels};
use super::translate::{Core, forward_events};
use ::metrics::{Label, SharedString, Unit};
use std::fmt;
use std::sync::Arc;

/// Reports every event of the components it is registered with to the `metrics` facade. A
/// cheap [`Clone`]: clones share one set of series. See the [module docs](self) for the
/// metrics.
///
/// ```
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::metrics::MetricsListener;
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// metrics::with_local_recorder(&recorder, || {
///     let breaker = CircuitBreaker::builder("llm")
///         .on_event(MetricsListener::new())
///         .build()
///         .unwrap();
///     breaker.try_acquire().unwrap().record(Outcome::Success);
/// });
/// let calls = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
///     let key = key.key();
///     let success = key.labels().any(|l| l.key() == "outcome" && l.value() == "success");
///     (key.name() == "tower_breaker_circuit_breaker_calls_total" && success).then_some(value)
/// });
/// assert_eq!(calls, Some(DebugValue::Counter(1)));
/// ```
#[derive(Clone)]
pub struct MetricsListener {
    core: Arc<Core<Facade>>,
}

impl MetricsListener {
    /// A listener with no series yet. Describes every metric (unit and help text) to the
    /// recorder installed now.
    pub fn new() -> Self {
        for instrument in Instrument::ALL {
            let name = instrument.metrics_name();
            let help = instrument.description();
            match instrument.kind() {
                Kind::Counter => ::metrics::describe_counter!(name, Unit::Count, help),
                Kind::Gauge | Kind::UpDown | Kind::Level => {
                    ::metrics::describe_gauge!(name, Unit::Count, help)
                }
                Kind::Histogram => ::metrics::describe_histogram!(name, Unit::Seconds, help),
            }
        }
        Self {
            core: Arc::new(Core::new(Facade)),
        }
    }
}

impl Default for MetricsListener {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MetricsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetricsListener").field(&self.core).finish()
    }
}

forward_events!(MetricsListener);

/// The `metrics` facade: every series is registered with the recorder installed at the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facade;

/// The labels of a series: `name`, the fixed `labels`, and the dynamic `key` of a level.
fn key_labels(name: &Arc<str>, labels: Labels<'_>, key: Option<&Arc<str>>) -> Vec<Label> {
    let mut all = Vec::with_capacity(2 + labels.len());
    all.push(Label::new("name", SharedString::from(name.clone())));
    all.extend(
        labels
            .iter()
            .map(|&(key, value)| Label::from_static_parts(key, value)),
    );
    if let Some(key) = key {
        all.push(Label::new(KEY_LABEL, SharedString::from(key.clone())));
    }
    all
}

impl Backend for Facade {
    type Counter = ::metrics::Counter;
    type Gauge = ::metrics::Gauge;
    type UpDown = ::metrics::Gauge;
    type Histogram = ::metrics::Histogram;
    type Level = ::metrics::Gauge;

    fn counter(
        &self,
        instrument: Instrument,
        name: &Arc<str>,
        labels: Labels<'_>,
    ) -> Self::Counter {
        ::metrics::counter!(instrument.metrics_name(), key_labels(name, labels, None))
    }

    fn gauge(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Self::Gauge {
        ::metrics::gauge!(instrument.metrics_name(), key_labels(name, labels, None))
    }

    fn up_down(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Self::UpDown {
        ::metrics::gauge!(instrument.metrics_name(), key_labels(name, labels, None))
    }

    fn histogram(
        &self,
        instrument: Instrument,
        name: &Arc<str>,
        labels: Labels<'_>,
    ) -> Self::Histogram {
        ::metrics::histogram!(instrument.metrics_name(), key_labels(name, labels, None))
    }

    fn level(&self, instrument: Instrument, name: &Arc<str>, key: &Arc<str>) -> Self::Level {
        ::metrics::gauge!(instrument.metrics_name(), key_labels(name, &[], Some(key)))
    }

    fn count(counter: &Self::Counter, n: u64) {
        counter.increment(n);
    }

    fn set(gauge: &Self::Gauge, value: u64) {
        gauge.set(value as f64);
    }

    fn add(up_down: &Self::UpDown, delta: i64) {
        if delta >= 0 {
            up_down.increment(delta as f64);
        } else {
            up_down.decrement(delta.unsigned_abs() as f64);
        }
    }

    fn record(histogram: &Self::Histogram, value: f64) {
        histogram.record(value);
    }

    fn set_level(level: &Self::Level, value: f64) {
        level.set(value);
    }
}
