//! [`Core`]: the translation of every component's events into measurements, shared by the
//! adapters.

use super::instrument::{Backend, Instrument, STATES};
use super::recent::{Component, with_entry};
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
#[cfg(feature = "stream")]
use crate::stream::StreamEvent;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::time::Instant;

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

/// The level gauges of one quota key, and the number of the last level they show.
#[cfg(feature = "quota")]
struct QuotaLevels<B: Backend> {
    seq: Option<u64>,
    /// Made at the first level known (a budget with no known limit has no series).
    requests: Option<B::Level>,
    tokens: Option<B::Level>,
}

/// A quota key's series, by governor name and key.
#[cfg(feature = "quota")]
type QuotaLevelMap<B> = RwLock<HashMap<(Arc<str>, Arc<str>), Arc<Mutex<QuotaLevels<B>>>>>;

/// The shared part of every adapter: turns events into measurements.
pub(crate) struct Core<B: Backend> {
    backend: B,
    /// Tells this core's entries in the threads' [`Recent`] lists from another core's.
    id: u64,
    breakers: RwLock<HashMap<Arc<str>, Arc<BreakerSeries<B>>>>,
    bulkheads: RwLock<HashMap<Arc<str>, Arc<BulkheadSeries<B>>>>,
    /// One entry per quota key seen, kept (as the recorder keeps its series).
    #[cfg(feature = "quota")]
    quota_levels: QuotaLevelMap<B>,
}

impl<B: Backend> fmt::Debug for Core<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Core");
        s.field("breakers", &entries(&self.breakers))
            .field("bulkheads", &entries(&self.bulkheads));
        #[cfg(feature = "quota")]
        s.field("quota_keys", &entries(&self.quota_levels));
        s.finish()
    }
}

fn entries<K, S>(map: &RwLock<HashMap<K, S>>) -> usize {
    map.read().unwrap_or_else(PoisonError::into_inner).len()
}

/// Never reused, so a core built where a dropped one was is not taken for it.
static NEXT_CORE_ID: AtomicU64 = AtomicU64::new(1);

impl<B: Backend> Core<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self {
            backend,
            id: NEXT_CORE_ID.fetch_add(1, Ordering::Relaxed),
            breakers: RwLock::new(HashMap::new()),
            bulkheads: RwLock::new(HashMap::new()),
            #[cfg(feature = "quota")]
            quota_levels: RwLock::new(HashMap::new()),
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
            QuotaEvent::LevelsChanged {
                name,
                key,
                requests_left,
                tokens_left,
                seq,
            } => {
                self.quota_levels(name, key, *seq, *requests_left, *tokens_left);
                return;
            }
        };
        let counter = self
            .backend
            .counter(Instrument::QuotaCalls, name, &[("outcome", outcome)]);
        B::count(&counter, 1);
    }

    /// Moves a quota key's level gauges, unless a later level (a higher `seq`) is already
    /// shown: levels can arrive out of order (see [`QuotaEvent::LevelsChanged`]).
    #[cfg(feature = "quota")]
    fn quota_levels(
        &self,
        name: &Arc<str>,
        key: &Arc<str>,
        seq: u64,
        requests: Option<f64>,
        tokens: Option<f64>,
    ) {
        let id = (name.clone(), key.clone());
        let found = self
            .quota_levels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        let entry = match found {
            Some(entry) => entry,
            None => self
                .quota_levels
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_insert_with(|| {
                    Arc::new(Mutex::new(QuotaLevels {
                        seq: None,
                        requests: None,
                        tokens: None,
                    }))
                })
                .clone(),
        };
        let mut levels = entry.lock().unwrap_or_else(PoisonError::into_inner);
        if levels.seq.is_some_and(|shown| shown >= seq) {
            return;
        }
        levels.seq = Some(seq);
        let QuotaLevels {
            requests: requests_series,
            tokens: tokens_series,
            ..
        } = &mut *levels;
        for (value, series, instrument) in [
            (requests, requests_series, Instrument::QuotaRequestsLeft),
            (tokens, tokens_series, Instrument::QuotaTokensLeft),
        ] {
            if let Some(value) = value {
                let series =
                    series.get_or_insert_with(|| self.backend.level(instrument, name, key));
                B::set_level(series, value);
            }
        }
    }

    // -- stream guard -------------------------------------------------------------------------

    #[cfg(feature = "stream")]
    pub(crate) fn on_stream(&self, event: &StreamEvent) {
        match event {
            StreamEvent::FirstToken { name, ttft } => {
                let histogram = self
                    .backend
                    .histogram(Instrument::StreamFirstToken, name, &[]);
                B::record(&histogram, ttft.as_secs_f64());
            }
            end => {
                let counter = self.backend.counter(
                    Instrument::StreamCalls,
                    end.name(),
                    &[("outcome", end.outcome())],
                );
                B::count(&counter, 1);
            }
        }
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

/// Implements [`Listener`](crate::events::Listener) for every component's events on an
/// adapter whose `core` field is an `Arc<Core<_>>`: both adapters forward the same events.
macro_rules! forward_events {
    ($listener:ty) => {
        impl $crate::events::Listener<$crate::circuit_breaker::CircuitBreakerEvent> for $listener {
            fn on_event(&self, event: &$crate::circuit_breaker::CircuitBreakerEvent) {
                self.core.on_breaker(event);
            }
        }

        impl $crate::events::Listener<$crate::bulkhead::BulkheadEvent> for $listener {
            fn on_event(&self, event: &$crate::bulkhead::BulkheadEvent) {
                self.core.on_bulkhead(event);
            }
        }

        #[cfg(feature = "retry")]
        #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
        impl $crate::events::Listener<$crate::retry::RetryEvent> for $listener {
            fn on_event(&self, event: &$crate::retry::RetryEvent) {
                self.core.on_retry(event);
            }
        }

        impl $crate::events::Listener<$crate::bulkhead::AdaptiveEvent> for $listener {
            fn on_event(&self, event: &$crate::bulkhead::AdaptiveEvent) {
                self.core.on_adaptive(event);
            }
        }

        #[cfg(feature = "quota")]
        #[cfg_attr(docsrs, doc(cfg(feature = "quota")))]
        impl $crate::events::Listener<$crate::quota::QuotaEvent> for $listener {
            fn on_event(&self, event: &$crate::quota::QuotaEvent) {
                self.core.on_quota(event);
            }
        }

        impl $crate::events::Listener<$crate::fallback::FallbackEvent> for $listener {
            fn on_event(&self, event: &$crate::fallback::FallbackEvent) {
                self.core.on_fallback(event);
            }
        }

        #[cfg(feature = "stream")]
        #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
        impl $crate::events::Listener<$crate::stream::StreamEvent> for $listener {
            fn on_event(&self, event: &$crate::stream::StreamEvent) {
                self.core.on_stream(event);
            }
        }

        #[cfg(feature = "chaos")]
        #[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
        impl $crate::events::Listener<$crate::chaos::ChaosEvent> for $listener {
            fn on_event(&self, event: &$crate::chaos::ChaosEvent) {
                self.core.on_chaos(event);
            }
        }
    };
}
pub(crate) use forward_events;
