//! What the `metrics` and `opentelemetry` adapters share: the catalogue of instruments, and the
//! translation of every component's events into measurements. Each adapter only says how to
//! make and move one series ([`Backend`]).
//!
//! Series that move on every call (a breaker's call counters, a bulkhead's counters and gauges)
//! are made once per component name and kept; the rest (transitions, retries, fallbacks) are
//! looked up when they happen, which is rare.
//!
//! Finding a component's kept series is on every call's path, so each thread remembers the
//! last few it used ([`Recent`]): found by the identity of the event's name (`Arc::ptr_eq`, no
//! hash) without a lock; only the first event of a name on a thread takes the map's lock.

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "opentelemetry")]
pub mod opentelemetry;

use crate::Outcome;
use crate::bulkhead::{AdaptiveEvent, BulkheadEvent, RejectionReason};
#[cfg(feature = "chaos")]
use crate::chaos::ChaosEvent;
use crate::circuit_breaker::{CircuitBreakerEvent, CircuitState};
use crate::fallback::FallbackEvent;
#[cfg(feature = "quota")]
use crate::quota::QuotaEvent;
#[cfg(feature = "retry")]
use crate::retry::RetryEvent;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::time::Instant;

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
}

impl Instrument {
    pub(crate) const ALL: [Instrument; 16] = [
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
            Instrument::ChaosFaults => "tower_breaker.chaos.faults",
        }
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            Instrument::BreakerState | Instrument::AdaptiveLimit => Kind::Gauge,
            Instrument::BulkheadActive | Instrument::BulkheadQueued => Kind::UpDown,
            Instrument::BreakerOpenTime => Kind::Histogram,
            _ => Kind::Counter,
        }
    }

    /// The OpenTelemetry unit (UCUM).
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn otel_unit(self) -> &'static str {
        match self {
            Instrument::BreakerOpenTime => "s",
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

/// Makes and moves series in one metrics system. A series is an instrument bound to the
/// `name` label and a few fixed labels.
pub(crate) trait Backend: Send + Sync + 'static {
    type Counter: Send + Sync + 'static;
    type Gauge: Send + Sync + 'static;
    type UpDown: Send + Sync + 'static;
    type Histogram: Send + Sync + 'static;

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

    /// Adds `n` (0 makes the series exist, so that it reads 0 rather than nothing).
    fn count(counter: &Self::Counter, n: u64);
    fn set(gauge: &Self::Gauge, value: u64);
    fn add(up_down: &Self::UpDown, delta: i64);
    fn record(histogram: &Self::Histogram, value: f64);
}

/// The series of one breaker that move on every call, and what the state gauge needs.
struct BreakerSeries<B: Backend> {
    success: B::Counter,
    failure: B::Counter,
    ignored: B::Counter,
    rejected: B::Counter,
    slow_success: B::Counter,
    slow_failure: B::Counter,
    track: Mutex<StateTrack>,
}

/// The breaker's state as the listener has seen it.
///
/// Transitions are decided one at a time (one compare-and-swap each), but the thread that won
/// one reports it afterwards, so two transitions close together can reach the listener in the
/// wrong order. A transition that does not start where the last one ended waits in `pending`
/// until the one before it arrives, so that the gauge ends on the breaker's real state.
struct StateTrack {
    current: CircuitState,
    pending: Vec<(CircuitState, CircuitState)>,
    opened_at: Option<Instant>,
}

/// More pending transitions than this means one was never reported (it cannot happen while
/// the listener is registered from the start); the gauge then follows the arrival order.
const MAX_PENDING: usize = 8;

struct BulkheadSeries<B: Backend> {
    permitted: B::Counter,
    rejected_full: B::Counter,
    rejected_timeout: B::Counter,
    active: B::UpDown,
    queued: B::UpDown,
}

/// The shared part of every adapter: turns events into measurements.
pub(crate) struct Core<B: Backend> {
    backend: B,
    /// Tells this core's entries in the threads' [`Recent`] lists from another core's.
    id: u64,
    breakers: RwLock<HashMap<Arc<str>, Arc<BreakerSeries<B>>>>,
    bulkheads: RwLock<HashMap<Arc<str>, Arc<BulkheadSeries<B>>>>,
}

impl<B: Backend> fmt::Debug for Core<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("breakers", &entries(&self.breakers))
            .field("bulkheads", &entries(&self.bulkheads))
            .finish()
    }
}

fn entries<S>(map: &RwLock<HashMap<Arc<str>, S>>) -> usize {
    map.read().unwrap_or_else(PoisonError::into_inner).len()
}

/// Never reused, so a core built where a dropped one was is not taken for it.
static NEXT_CORE_ID: AtomicU64 = AtomicU64::new(1);

/// Series a thread remembers (a few components per thread is the common case; more still
/// work, through the map).
const RECENT: usize = 8;

/// Which kind of component a remembered series is for (a breaker and a bulkhead may share
/// a name).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Component {
    Breaker,
    Bulkhead,
}

/// The series this thread used last, each with the name (an `Arc` clone, so that its address
/// stays this name's while it is remembered) and the core it came from.
struct Recent {
    entries: Vec<Remembered>,
    next: usize,
}

struct Remembered {
    core: u64,
    component: Component,
    name: Arc<str>,
    series: Arc<dyn Any + Send + Sync>,
}

std::thread_local! {
    static THREAD_RECENT: RefCell<Recent> = const {
        RefCell::new(Recent { entries: Vec::new(), next: 0 })
    };
}

impl Recent {
    fn find(
        &self,
        core: u64,
        component: Component,
        name: &Arc<str>,
    ) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.entries
            .iter()
            .find(|r| r.core == core && r.component == component && Arc::ptr_eq(&r.name, name))
            .map(|r| &r.series)
    }

    fn remember(&mut self, entry: Remembered) {
        if self.entries.len() < RECENT {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(RECENT);
            }
            self.entries.push(entry);
        } else {
            self.next = (self.next + 1) % RECENT;
            self.entries[self.next] = entry;
        }
    }
}

/// Runs `f` on `name`'s entry of `map`, made by `make` on first use. The common case is this
/// thread's [`Recent`] list: no lock, no hash. Otherwise a read lock and a hash (a write lock
/// for a new name), and the entry is remembered.
fn with_entry<S: Send + Sync + 'static, R>(
    core: u64,
    component: Component,
    map: &RwLock<HashMap<Arc<str>, Arc<S>>>,
    name: &Arc<str>,
    make: impl FnOnce() -> S,
    f: impl Fn(&S) -> R,
) -> R {
    // `try_`: a thread whose locals are gone (an event from a thread-local's destructor), or
    // an event raised while this thread's list is being changed, takes the map's path.
    let hit = THREAD_RECENT.try_with(|recent| {
        let recent = recent.try_borrow().ok()?;
        let series = recent.find(core, component, name)?.downcast_ref::<S>()?;
        Some(f(series))
    });
    if let Ok(Some(result)) = hit {
        return result;
    }
    let series = {
        let read = map.read().unwrap_or_else(PoisonError::into_inner);
        read.get(&**name).cloned()
    };
    let series = series.unwrap_or_else(|| {
        let mut write = map.write().unwrap_or_else(PoisonError::into_inner);
        write
            .entry(name.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    });
    let _ = THREAD_RECENT.try_with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            recent.remember(Remembered {
                core,
                component,
                name: name.clone(),
                series: series.clone(),
            });
        }
    });
    f(&series)
}

impl<B: Backend> Core<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self {
            backend,
            id: NEXT_CORE_ID.fetch_add(1, Ordering::Relaxed),
            breakers: RwLock::new(HashMap::new()),
            bulkheads: RwLock::new(HashMap::new()),
        }
    }

    // -- circuit breaker ----------------------------------------------------------------------

    pub(crate) fn on_breaker(&self, event: &CircuitBreakerEvent) {
        match event {
            CircuitBreakerEvent::CallRecorded {
                name,
                outcome,
                slow,
                ..
            } => self.with_breaker(name, |s| {
                B::count(
                    match outcome {
                        Outcome::Success => &s.success,
                        Outcome::Failure => &s.failure,
                        Outcome::Ignored => &s.ignored,
                    },
                    1,
                );
                if *slow {
                    match outcome {
                        Outcome::Success => B::count(&s.slow_success, 1),
                        Outcome::Failure => B::count(&s.slow_failure, 1),
                        // Ignored calls are never timed.
                        Outcome::Ignored => {}
                    }
                }
            }),
            CircuitBreakerEvent::CallRejected { name, .. } => {
                self.with_breaker(name, |s| B::count(&s.rejected, 1));
            }
            CircuitBreakerEvent::StateTransition { name, from, to } => {
                self.transition(name, *from, *to);
            }
            // Counted when they are recorded; reset and forced states are transitions too.
            CircuitBreakerEvent::CallPermitted { .. }
            | CircuitBreakerEvent::Reset { .. }
            | CircuitBreakerEvent::Forced { .. } => {}
        }
    }

    fn with_breaker<R>(&self, name: &Arc<str>, f: impl Fn(&BreakerSeries<B>) -> R) -> R {
        with_entry(
            self.id,
            Component::Breaker,
            &self.breakers,
            name,
            || self.new_breaker(name),
            f,
        )
    }

    /// A breaker seen for the first time. Every breaker starts closed, and the listener is
    /// registered when it is built, so closed is its state until the first transition.
    fn new_breaker(&self, name: &Arc<str>) -> BreakerSeries<B> {
        let calls = |outcome| {
            self.backend
                .counter(Instrument::BreakerCalls, name, &[("outcome", outcome)])
        };
        let slow = |outcome| {
            self.backend
                .counter(Instrument::BreakerSlowCalls, name, &[("outcome", outcome)])
        };
        for state in STATES {
            self.set_state(name, state, state == CircuitState::Closed);
        }
        let series = BreakerSeries {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: calls("rejected"),
            slow_success: slow("success"),
            slow_failure: slow("failure"),
            track: Mutex::new(StateTrack {
                current: CircuitState::Closed,
                pending: Vec::new(),
                opened_at: None,
            }),
        };
        for counter in [
            &series.success,
            &series.failure,
            &series.ignored,
            &series.rejected,
            &series.slow_success,
            &series.slow_failure,
        ] {
            B::count(counter, 0);
        }
        series
    }

    fn set_state(&self, name: &Arc<str>, state: CircuitState, current: bool) {
        let gauge =
            self.backend
                .gauge(Instrument::BreakerState, name, &[("state", state.as_str())]);
        B::set(&gauge, u64::from(current));
    }

    fn transition(&self, name: &Arc<str>, from: CircuitState, to: CircuitState) {
        let counter = self.backend.counter(
            Instrument::BreakerTransitions,
            name,
            &[("from", from.as_str()), ("to", to.as_str())],
        );
        B::count(&counter, 1);
        let now = Instant::now();
        self.with_breaker(name, |s| {
            let mut track = s.track.lock().unwrap_or_else(PoisonError::into_inner);
            track.pending.push((from, to));
            while let Some(i) = track.pending.iter().position(|&(f, _)| f == track.current) {
                let (from, to) = track.pending.remove(i);
                self.apply(name, &mut track, from, to, now);
            }
            if track.pending.len() > MAX_PENDING {
                for (from, to) in std::mem::take(&mut track.pending) {
                    self.apply(name, &mut track, from, to, now);
                }
            }
        });
    }

    /// One transition, in order: the state gauge, and the open time when it leaves open.
    fn apply(
        &self,
        name: &Arc<str>,
        track: &mut StateTrack,
        from: CircuitState,
        to: CircuitState,
        now: Instant,
    ) {
        if from == CircuitState::Open {
            if let Some(opened) = track.opened_at.take() {
                let histogram = self
                    .backend
                    .histogram(Instrument::BreakerOpenTime, name, &[]);
                B::record(
                    &histogram,
                    now.saturating_duration_since(opened).as_secs_f64(),
                );
            }
        }
        if to == CircuitState::Open {
            track.opened_at = Some(now);
        }
        if from != track.current {
            // Out of order for good (see `MAX_PENDING`): clear the state the gauge shows.
            self.set_state(name, track.current, false);
        }
        if from != to {
            self.set_state(name, from, false);
            self.set_state(name, to, true);
        }
        track.current = to;
    }

    // -- bulkhead -----------------------------------------------------------------------------

    pub(crate) fn on_bulkhead(&self, event: &BulkheadEvent) {
        match event {
            BulkheadEvent::CallPermitted { name, .. } => self.with_bulkhead(name, |s| {
                B::count(&s.permitted, 1);
                B::add(&s.active, 1);
            }),
            BulkheadEvent::CallFinished { name } => {
                self.with_bulkhead(name, |s| B::add(&s.active, -1));
            }
            BulkheadEvent::CallRejected { name, reason } => self.with_bulkhead(name, |s| {
                B::count(
                    match reason {
                        RejectionReason::Full => &s.rejected_full,
                        RejectionReason::Timeout => &s.rejected_timeout,
                    },
                    1,
                );
            }),
            BulkheadEvent::CallQueued { name } => {
                self.with_bulkhead(name, |s| B::add(&s.queued, 1));
            }
            BulkheadEvent::CallLeftQueue { name } => {
                self.with_bulkhead(name, |s| B::add(&s.queued, -1));
            }
        }
    }

    fn with_bulkhead<R>(&self, name: &Arc<str>, f: impl Fn(&BulkheadSeries<B>) -> R) -> R {
        with_entry(
            self.id,
            Component::Bulkhead,
            &self.bulkheads,
            name,
            || self.new_bulkhead(name),
            f,
        )
    }

    fn new_bulkhead(&self, name: &Arc<str>) -> BulkheadSeries<B> {
        let calls = |outcome| {
            self.backend
                .counter(Instrument::BulkheadCalls, name, &[("outcome", outcome)])
        };
        let series = BulkheadSeries {
            permitted: calls("permitted"),
            rejected_full: calls("rejected_full"),
            rejected_timeout: calls("rejected_timeout"),
            active: self.backend.up_down(Instrument::BulkheadActive, name, &[]),
            queued: self.backend.up_down(Instrument::BulkheadQueued, name, &[]),
        };
        for counter in [
            &series.permitted,
            &series.rejected_full,
            &series.rejected_timeout,
        ] {
            B::count(counter, 0);
        }
        B::add(&series.active, 0);
        B::add(&series.queued, 0);
        series
    }

    // -- adaptive bulkhead and quota ----------------------------------------------------------

    pub(crate) fn on_adaptive(&self, event: &AdaptiveEvent) {
        match event {
            AdaptiveEvent::Sample { name, signal, .. } => {
                let counter = self.backend.counter(
                    Instrument::AdaptiveSamples,
                    name,
                    &[("signal", signal.as_str())],
                );
                B::count(&counter, 1);
            }
            AdaptiveEvent::LimitChanged {
                name, to, reason, ..
            } => {
                let counter = self.backend.counter(
                    Instrument::AdaptiveLimitChanges,
                    name,
                    &[("reason", reason.as_str())],
                );
                B::count(&counter, 1);
                let gauge = self.backend.gauge(Instrument::AdaptiveLimit, name, &[]);
                B::set(&gauge, u64::from(*to));
            }
        }
    }

    #[cfg(feature = "quota")]
    pub(crate) fn on_quota(&self, event: &QuotaEvent) {
        let (name, outcome) = match event {
            QuotaEvent::Admitted { name, wait, .. } if wait.is_zero() => (name, "admitted"),
            QuotaEvent::Admitted { name, .. } => (name, "waited"),
            QuotaEvent::Rejected { name, .. } => (name, "rejected"),
            QuotaEvent::RateLimited { name, .. } => (name, "rate_limited"),
            QuotaEvent::LimitsLearned { .. } => return,
        };
        let counter = self
            .backend
            .counter(Instrument::QuotaCalls, name, &[("outcome", outcome)]);
        B::count(&counter, 1);
    }

    // -- retry and fallback -------------------------------------------------------------------

    #[cfg(feature = "retry")]
    pub(crate) fn on_retry(&self, event: &RetryEvent) {
        let (instrument, name, label) = match event {
            RetryEvent::Retrying { name, reason, .. } => {
                (Instrument::RetryAttempts, name, ("reason", reason.as_str()))
            }
            RetryEvent::GaveUp { name, reason, .. } => {
                (Instrument::RetryCalls, name, ("outcome", reason.as_str()))
            }
            RetryEvent::Succeeded { name, .. } => {
                (Instrument::RetryCalls, name, ("outcome", "succeeded"))
            }
        };
        B::count(&self.backend.counter(instrument, name, &[label]), 1);
    }

    pub(crate) fn on_fallback(&self, event: &FallbackEvent) {
        let (name, outcome) = match event {
            FallbackEvent::Served(served) => (&served.name, "served"),
            FallbackEvent::Failed { name, .. } => (name, "failed"),
        };
        let counter =
            self.backend
                .counter(Instrument::FallbackCalls, name, &[("outcome", outcome)]);
        B::count(&counter, 1);
    }

    // -- chaos --------------------------------------------------------------------------------

    #[cfg(feature = "chaos")]
    pub(crate) fn on_chaos(&self, event: &ChaosEvent) {
        let ChaosEvent::FaultInjected { name, fault, .. } = event;
        let counter =
            self.backend
                .counter(Instrument::ChaosFaults, name, &[("fault", fault.as_str())]);
        B::count(&counter, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Records the latest value of every series.
    #[derive(Default)]
    struct Memory(Arc<Mutex<BTreeMap<String, f64>>>);

    #[derive(Clone)]
    struct Series(Arc<Mutex<BTreeMap<String, f64>>>, String);

    impl Series {
        fn update(&self, f: impl FnOnce(f64) -> f64) {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let value = map.entry(self.1.clone()).or_default();
            *value = f(*value);
        }
    }

    impl Memory {
        fn series(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let key = format!("{instrument:?}{{{name},{}}}", labels.join(","));
            Series(self.0.clone(), key)
        }
    }

    impl Backend for Memory {
        type Counter = Series;
        type Gauge = Series;
        type UpDown = Series;
        type Histogram = Series;

        fn counter(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
            self.series(i, name, labels)
        }
        fn gauge(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
            self.series(i, name, labels)
        }
        fn up_down(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
            self.series(i, name, labels)
        }
        fn histogram(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
            self.series(i, name, labels)
        }
        fn count(counter: &Series, n: u64) {
            counter.update(|v| v + n as f64);
        }
        fn set(gauge: &Series, value: u64) {
            gauge.update(|_| value as f64);
        }
        fn add(up_down: &Series, delta: i64) {
            up_down.update(|v| v + delta as f64);
        }
        fn record(histogram: &Series, value: f64) {
            histogram.update(|v| v + value);
        }
    }

    fn transition(from: CircuitState, to: CircuitState) -> CircuitBreakerEvent {
        CircuitBreakerEvent::StateTransition {
            name: Arc::from("b"),
            from,
            to,
        }
    }

    /// The state gauge after `events`: the states whose series reads 1.
    fn current_states(events: &[CircuitBreakerEvent]) -> Vec<String> {
        let memory = Memory::default();
        let values = memory.0.clone();
        let core = Core::new(memory);
        for event in events {
            core.on_breaker(event);
        }
        let values = values.lock().unwrap_or_else(PoisonError::into_inner);
        values
            .iter()
            .filter(|(k, v)| k.starts_with("BreakerState") && **v == 1.0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Two transitions that reach the listener in the wrong order still leave the gauge on
    /// the breaker's real state.
    #[test]
    fn transitions_out_of_order_are_put_back_in_order() {
        use CircuitState::*;
        let in_order = [
            transition(Closed, Open),
            transition(Open, HalfOpen),
            transition(HalfOpen, Closed),
        ];
        let swapped = [
            transition(Closed, Open),
            transition(HalfOpen, Closed),
            transition(Open, HalfOpen),
        ];
        let expected = vec!["BreakerState{b,state=closed}".to_string()];
        assert_eq!(current_states(&in_order), expected);
        assert_eq!(current_states(&swapped), expected);
        let first_last = [
            transition(Open, HalfOpen),
            transition(HalfOpen, Open),
            transition(Closed, Open),
        ];
        assert_eq!(
            current_states(&first_last),
            vec!["BreakerState{b,state=open}".to_string()]
        );
    }

    fn recorded(name: &Arc<str>) -> CircuitBreakerEvent {
        CircuitBreakerEvent::CallRecorded {
            name: name.clone(),
            outcome: Outcome::Success,
            slow: false,
            elapsed: None,
        }
    }

    /// The series each thread remembers are told apart by listener, by kind of component and
    /// by name; two `Arc`s of one name find one series; every thread counts into the same.
    #[test]
    fn remembered_series_belong_to_their_listener_component_and_name() {
        let (first, second) = (Memory::default(), Memory::default());
        let (first_values, second_values) = (first.0.clone(), second.0.clone());
        let (first, second) = (Core::new(first), Core::new(second));
        let name: Arc<str> = Arc::from("llm");
        let same_text: Arc<str> = Arc::from("llm");
        for _ in 0..3 {
            first.on_breaker(&recorded(&name));
        }
        first.on_breaker(&recorded(&same_text));
        second.on_breaker(&recorded(&name));
        first.on_bulkhead(&BulkheadEvent::CallPermitted {
            name: name.clone(),
            waited: std::time::Duration::ZERO,
        });
        std::thread::scope(|s| {
            s.spawn(|| first.on_breaker(&recorded(&name)));
        });
        let value = |values: &Arc<Mutex<BTreeMap<String, f64>>>, key: &str| {
            values.lock().unwrap_or_else(PoisonError::into_inner)[key]
        };
        let calls = "BreakerCalls{llm,outcome=success}";
        assert_eq!(value(&first_values, calls), 5.0);
        assert_eq!(value(&second_values, calls), 1.0);
        assert_eq!(
            value(&first_values, "BulkheadCalls{llm,outcome=permitted}"),
            1.0
        );
        assert_eq!(value(&first_values, "BulkheadActive{llm,}"), 1.0);
    }

    /// The adaptive limit's gauge follows its changes; samples and changes are counted by
    /// signal and by reason.
    #[test]
    fn adaptive_limit_changes_and_samples_are_measured() {
        use crate::bulkhead::{LimitChange, Signal};
        let memory = Memory::default();
        let values = memory.0.clone();
        let core = Core::new(memory);
        let name: Arc<str> = Arc::from("llm");
        core.on_adaptive(&AdaptiveEvent::Sample {
            name: name.clone(),
            signal: Signal::Congestion,
            latency: std::time::Duration::from_millis(5),
            inflight: 3,
        });
        for (from, to) in [(20, 18), (18, 19)] {
            core.on_adaptive(&AdaptiveEvent::LimitChanged {
                name: name.clone(),
                from,
                to,
                reason: LimitChange::Congestion,
            });
        }
        let values = values.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(values.get("AdaptiveLimit{llm,}"), Some(&19.0));
        assert_eq!(
            values.get("AdaptiveSamples{llm,signal=congestion}"),
            Some(&1.0)
        );
        assert_eq!(
            values.get("AdaptiveLimitChanges{llm,reason=congestion}"),
            Some(&2.0)
        );
    }

    /// A Prometheus exporter of OpenTelemetry turns each OpenTelemetry name into the `metrics`
    /// name: dots to underscores, the unit's suffix, `_total` on counters.
    #[cfg(all(feature = "metrics", feature = "opentelemetry"))]
    #[test]
    fn prometheus_names_agree() {
        for instrument in Instrument::ALL {
            let mut name = instrument.otel_name().replace('.', "_");
            if instrument.otel_unit() == "s" {
                name.push_str("_seconds");
            }
            if instrument.kind() == Kind::Counter {
                name.push_str("_total");
            }
            assert_eq!(name, instrument.metrics_name());
        }
    }
}
