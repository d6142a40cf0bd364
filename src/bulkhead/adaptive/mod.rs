//! A bulkhead whose limit moves: it finds the upstream's capacity by itself.
//!
//! See [`AdaptiveBulkhead`].

mod layer;
mod limit;

#[cfg(feature = "http")]
pub use self::layer::HttpSignals;
pub use self::layer::{
    AdaptiveBulkheadLayer, AdaptiveBulkheadService, AdaptiveResponseFuture, ClassifySignal,
    DefaultSignals,
};
pub use self::limit::{Aimd, Gradient, LimitAlgorithm, LimitChange};

use self::limit::{Controller, Sample};
use super::error::{AcquireError, BulkheadFull, BulkheadTimeout};
use super::events::{BulkheadEvent, RejectionReason};
use crate::config::{Check, ConfigError, MAX_DURATION, MIN_DURATION};
use crate::events::{Listener, Listeners};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a finished call says about the upstream's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// The upstream answered: its latency is a sample.
    Success,
    /// The upstream is overloaded: a 429, a 529, a 503, a timeout. The limit backs off.
    Congestion,
    /// Says nothing about the upstream's load (a client error, a call cancelled, our own
    /// rejection): no sample.
    Ignore,
}

impl Signal {
    /// `success`, `congestion` or `ignore`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Success => "success",
            Signal::Congestion => "congestion",
            Signal::Ignore => "ignore",
        }
    }
}

/// Something an adaptive bulkhead's limit did. Delivered to every listener registered with
/// [`AdaptiveBuilder::on_limit_event`]; the calls themselves are reported as
/// [`BulkheadEvent`]s, as for a fixed bulkhead.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AdaptiveEvent {
    /// A finished call was taken as a sample.
    Sample {
        /// The bulkhead's name.
        name: Arc<str>,
        /// Its signal.
        signal: Signal,
        /// Time to its response head or first token.
        latency: Duration,
        /// Calls in flight when it started (itself included).
        inflight: u32,
    },
    /// The limit changed.
    LimitChanged {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The limit before.
        from: u32,
        /// The limit now.
        to: u32,
        /// Why.
        reason: LimitChange,
    },
}

/// A bulkhead whose limit follows the upstream's capacity: AIMD or a gradient controller
/// ([`LimitAlgorithm`]), driven by congestion signals (429, 529, timeouts) and by the time to
/// the response head or first token, never the total duration (which depends on how long
/// the answer is).
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::bulkhead::{AdaptiveBulkhead, Aimd, LimitAlgorithm, Signal};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let llm = AdaptiveBulkhead::builder("llm")
///     .algorithm(LimitAlgorithm::Aimd(Aimd::default()))
///     .initial_limit(4)
///     .limits(1, 100)
///     .build()?;
///
/// // Four calls in flight, all answered: the limit grows by one per call that started
/// // with at least half the slots in use (the first started alone: it says nothing).
/// let permits: Vec<_> = (0..4).map(|_| llm.try_acquire()).collect::<Result<_, _>>()?;
/// for mut permit in permits {
///     permit.first_token(); // time to first token: the latency signal
///     permit.record(Signal::Success);
/// }
/// assert_eq!(llm.limit(), 7);
///
/// // A 429: it backs off (once per round trip).
/// llm.try_acquire()?.record(Signal::Congestion);
/// assert_eq!(llm.limit(), 6);
/// # Ok(())
/// # }
/// ```
///
/// Calls beyond the limit wait in a queue (at most `max_queue`, at most `max_wait`) or are
/// rejected with [`BulkheadFull`] / [`BulkheadTimeout`], as with a fixed
/// [`Bulkhead`](super::Bulkhead), so retry policies and fallbacks treat them the same. The
/// fixed bulkhead is untouched by this one: its hot path stays one compare-and-swap.
///
/// Cost: a slot is a `tokio::sync::Semaphore` permit; each finished call takes one short
/// mutex to update the controller (LLM calls take hundreds of milliseconds; this a few
/// hundred nanoseconds).
#[derive(Clone)]
pub struct AdaptiveBulkhead {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    /// Free slots.
    semaphore: Semaphore,
    /// The whole limit now.
    limit: AtomicU32,
    inflight: AtomicU32,
    /// Slots to retire as calls finish, after the limit went down with every slot taken.
    debt: AtomicU32,
    queued: AtomicU32,
    max_queue: u32,
    max_wait: Duration,
    /// The controller's decrease epoch, read without its lock when a call starts.
    epoch: AtomicU64,
    controller: Mutex<Controller>,
    rejected_full: AtomicU64,
    rejected_timeout: AtomicU64,
    listeners: Listeners<BulkheadEvent>,
    limit_listeners: Listeners<AdaptiveEvent>,
}

impl fmt::Debug for AdaptiveBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveBulkhead")
            .field("name", &self.shared.name)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// Builds an [`AdaptiveBulkhead`]; see [`AdaptiveBulkhead::builder`].
pub struct AdaptiveBuilder {
    name: Arc<str>,
    algorithm: LimitAlgorithm,
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    max_queue: u32,
    max_wait: Duration,
    listeners: Listeners<BulkheadEvent>,
    limit_listeners: Listeners<AdaptiveEvent>,
}

impl fmt::Debug for AdaptiveBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveBuilder")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("initial_limit", &self.initial_limit)
            .field("min_limit", &self.min_limit)
            .field("max_limit", &self.max_limit)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl AdaptiveBuilder {
    /// How the limit moves: default [`LimitAlgorithm::Gradient`] with Netflix's defaults.
    pub fn algorithm(mut self, algorithm: LimitAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The limit to start from: default 20; within the limits.
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The least and the most the limit may be: default 1 and 1,000; allowed
    /// 1 ..= 1,000,000, `min <= max`.
    pub fn limits(mut self, min: u32, max: u32) -> Self {
        self.min_limit = min;
        self.max_limit = max;
        self
    }

    /// How many calls may wait for a slot: default 0 (fail fast); allowed 0 ..= 1,000,000.
    pub fn max_queue(mut self, calls: u32) -> Self {
        self.max_queue = calls;
        self
    }

    /// How long a call waits for a slot at most: default 5 s; allowed 1 ms ..= 24 h.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Adds a listener for the calls' events (the same as a fixed bulkhead's, so the
    /// `metrics` and OpenTelemetry listeners count them).
    pub fn on_event(mut self, listener: impl Listener<BulkheadEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Adds a listener for the limit's events (samples and changes).
    pub fn on_limit_event(mut self, listener: impl Listener<AdaptiveEvent>) -> Self {
        self.limit_listeners.push(Arc::new(listener));
        self
    }

    /// Checks every value and builds the bulkhead.
    pub fn build(self) -> Result<AdaptiveBulkhead, ConfigError> {
        let check = Check {
            component: &self.name,
        };
        let max_calls = u64::from(super::config::MAX_CALLS);
        let min = check.range_u64("min_limit", u64::from(self.min_limit), 1, max_calls)? as u32;
        let max = check.range_u64(
            "max_limit",
            u64::from(self.max_limit),
            u64::from(min),
            max_calls,
        )? as u32;
        let initial = check.range_u64(
            "initial_limit",
            u64::from(self.initial_limit),
            u64::from(min),
            u64::from(max),
        )? as u32;
        let max_queue =
            check.range_u64("max_queue", u64::from(self.max_queue), 0, max_calls)? as u32;
        let max_wait = check.duration("max_wait", self.max_wait, MIN_DURATION, MAX_DURATION)?;
        self.algorithm.check(&check)?;
        Ok(AdaptiveBulkhead {
            shared: Arc::new(Shared {
                name: self.name,
                semaphore: Semaphore::new(initial as usize),
                limit: AtomicU32::new(initial),
                inflight: AtomicU32::new(0),
                debt: AtomicU32::new(0),
                queued: AtomicU32::new(0),
                max_queue,
                max_wait,
                epoch: AtomicU64::new(0),
                controller: Mutex::new(Controller::new(self.algorithm, initial, min, max)),
                rejected_full: AtomicU64::new(0),
                rejected_timeout: AtomicU64::new(0),
                listeners: self.listeners,
                limit_listeners: self.limit_listeners,
            }),
        })
    }
}

/// A snapshot of an adaptive bulkhead.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveMetrics {
    /// The limit now.
    pub limit: u32,
    /// Calls holding a slot.
    pub active: u32,
    /// Calls waiting for a slot.
    pub queued: u32,
    /// Calls rejected for lack of room, since the bulkhead was built.
    pub rejected_full: u64,
    /// Calls rejected after `max_wait`, since the bulkhead was built.
    pub rejected_timeout: u64,
    /// The gradient controller's long latency average (zero for AIMD).
    pub long_latency: Duration,
}

impl AdaptiveBulkhead {
    /// A builder with the defaults, for the bulkhead named `name`.
    ///
    /// | setting | default |
    /// |---|---|
    /// | `algorithm` | [`Gradient`] (tolerance 1.5, smoothing 0.2, long window 600, queue 4, backoff 0.9) |
    /// | `initial_limit` | 20 |
    /// | `limits` | 1 ..= 1,000 |
    /// | `max_queue` | 0 (fail fast) |
    /// | `max_wait` | 5 s |
    pub fn builder(name: impl Into<Arc<str>>) -> AdaptiveBuilder {
        AdaptiveBuilder {
            name: name.into(),
            algorithm: LimitAlgorithm::default(),
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1_000,
            max_queue: 0,
            max_wait: Duration::from_secs(5),
            listeners: Listeners::new(),
            limit_listeners: Listeners::new(),
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// A snapshot of the limit and the counters.
    pub fn metrics(&self) -> AdaptiveMetrics {
        let s = &self.shared;
        let long = s
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .long_latency();
        AdaptiveMetrics {
            limit: s.limit.load(Ordering::Relaxed),
            active: s.inflight.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            rejected_full: s.rejected_full.load(Ordering::Relaxed),
            rejected_timeout: s.rejected_timeout.load(Ordering::Relaxed),
            long_latency: Duration::try_from_secs_f64(long).unwrap_or_default(),
        }
    }

    /// Takes a free slot now, or fails with [`BulkheadFull`]. Never waits.
    pub fn try_acquire(&self) -> Result<AdaptivePermit, BulkheadFull> {
        match self.shared.semaphore.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(self.shared.permitted(Duration::ZERO))
            }
            Err(_) => Err(self.shared.reject_full()),
        }
    }

    /// Takes a slot, waiting in the queue for at most `max_wait` when every slot is busy.
    /// Dropping the future leaves the queue.
    pub async fn acquire(&self) -> Result<AdaptivePermit, AcquireError> {
        let s = &self.shared;
        if let Ok(permit) = s.semaphore.try_acquire() {
            permit.forget();
            return Ok(s.permitted(Duration::ZERO));
        }
        let place = s.enter_queue().map_err(AcquireError::Full)?;
        let since = Instant::now();
        let acquired = tokio::time::timeout(s.max_wait, s.semaphore.acquire()).await;
        drop(place);
        match acquired {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(s.permitted(since.elapsed()))
            }
            // The semaphore is never closed.
            Ok(Err(_)) => Err(AcquireError::Full(s.reject_full())),
            Err(_) => Err(AcquireError::Timeout(s.reject_timeout(since.elapsed()))),
        }
    }

    /// A layer that wraps services with this bulkhead (shared, not copied).
    pub fn layer(&self) -> AdaptiveBulkheadLayer {
        AdaptiveBulkheadLayer::new(self.clone())
    }
}

/// A place in the wait queue, given back when dropped.
struct QueuePlace<'a>(&'a Shared);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
        self.0.listeners.emit(|| BulkheadEvent::CallLeftQueue {
            name: self.0.name.clone(),
        });
    }
}

impl Shared {
    fn permitted(self: &Arc<Self>, waited: Duration) -> AdaptivePermit {
        let inflight = self.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        self.listeners.emit(|| BulkheadEvent::CallPermitted {
            name: self.name.clone(),
            waited,
        });
        AdaptivePermit {
            shared: self.clone(),
            start: Instant::now(),
            inflight,
            epoch: self.epoch.load(Ordering::Acquire),
            latency: None,
        }
    }

    fn enter_queue(&self) -> Result<QueuePlace<'_>, BulkheadFull> {
        let taken = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                (q < self.max_queue).then_some(q + 1)
            });
        if taken.is_err() {
            return Err(self.reject_full());
        }
        self.listeners.emit(|| BulkheadEvent::CallQueued {
            name: self.name.clone(),
        });
        Ok(QueuePlace(self))
    }

    #[cold]
    fn reject_full(&self) -> BulkheadFull {
        self.rejected_full.fetch_add(1, Ordering::Relaxed);
        self.listeners.emit(|| BulkheadEvent::CallRejected {
            name: self.name.clone(),
            reason: RejectionReason::Full,
        });
        BulkheadFull::new(
            self.name.clone(),
            self.limit.load(Ordering::Relaxed),
            self.max_queue,
        )
    }

    #[cold]
    fn reject_timeout(&self, waited: Duration) -> BulkheadTimeout {
        self.rejected_timeout.fetch_add(1, Ordering::Relaxed);
        self.listeners.emit(|| BulkheadEvent::CallRejected {
            name: self.name.clone(),
            reason: RejectionReason::Timeout,
        });
        BulkheadTimeout::new(self.name.clone(), waited)
    }

    /// Gives a slot back: retired if the limit went down meanwhile, else freed.
    fn release(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        let retired = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_ok();
        if !retired {
            self.semaphore.add_permits(1);
        }
        self.listeners.emit(|| BulkheadEvent::CallFinished {
            name: self.name.clone(),
        });
    }

    /// Feeds one sample to the controller and applies a new limit.
    fn sample(&self, signal: Signal, latency: Duration, inflight: u32, epoch: u64) {
        self.limit_listeners.emit(|| AdaptiveEvent::Sample {
            name: self.name.clone(),
            signal,
            latency,
            inflight,
        });
        if signal == Signal::Ignore {
            return;
        }
        let mut controller = self
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from = controller.limit();
        let changed = controller.on_sample(Sample {
            latency,
            inflight,
            congestion: signal == Signal::Congestion,
            epoch,
        });
        self.epoch.store(controller.epoch, Ordering::Release);
        let Some(reason) = changed else { return };
        let to = controller.limit();
        // Applied under the controller's lock, so changes apply in order.
        self.resize(from, to);
        drop(controller);
        tracing::debug!(bulkhead = %self.name, from, to, reason = reason.as_str(), "adaptive limit changed");
        self.limit_listeners.emit(|| AdaptiveEvent::LimitChanged {
            name: self.name.clone(),
            from,
            to,
            reason,
        });
    }

    /// Moves the slots from `from` to `to`. Every slot is free in the semaphore, held by a
    /// permit, or owed as debt: free + held = limit + debt at all times.
    fn resize(&self, from: u32, to: u32) {
        self.limit.store(to, Ordering::Relaxed);
        if to > from {
            let mut grow = to - from;
            // Pay the debt first: those slots are still held, they just stay.
            let paid = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |d| {
                    Some(d - d.min(grow))
                })
                .map_or(0, |before| before.min(grow));
            grow -= paid;
            if grow > 0 {
                self.semaphore.add_permits(grow as usize);
            }
        } else {
            let mut shrink = from - to;
            while shrink > 0 {
                match self.semaphore.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        shrink -= 1;
                    }
                    Err(_) => break,
                }
            }
            if shrink > 0 {
                self.debt.fetch_add(shrink, Ordering::AcqRel);
            }
        }
    }
}

/// One slot of an [`AdaptiveBulkhead`]. Tell it how the call went with
/// [`record`](Self::record); dropped without a record, the slot is given back and no sample
/// is taken.
#[must_use = "a permit holds a slot until it is recorded or dropped"]
pub struct AdaptivePermit {
    shared: Arc<Shared>,
    start: Instant,
    inflight: u32,
    epoch: u64,
    latency: Option<Duration>,
}

impl AdaptivePermit {
    /// Marks the first token (or the response head) now: its time since the slot was taken
    /// is the call's latency sample. The first mark counts.
    pub fn first_token(&mut self) {
        if self.latency.is_none() {
            self.latency = Some(self.start.elapsed());
        }
    }

    /// Sets the latency sample directly (the first mark counts).
    pub fn record_latency(&mut self, latency: Duration) {
        if self.latency.is_none() {
            self.latency = Some(latency);
        }
    }

    /// Records how the call went and gives the slot back. The latency is the first-token
    /// mark, or else the time since the slot was taken.
    pub fn record(mut self, signal: Signal) {
        self.first_token();
        let latency = self.latency.unwrap_or_default();
        self.shared
            .sample(signal, latency, self.inflight, self.epoch);
    }

    /// The name of the bulkhead this slot belongs to.
    pub fn bulkhead_name(&self) -> &str {
        &self.shared.name
    }
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for AdaptivePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit")
            .field("bulkhead", &self.shared.name)
            .field("inflight", &self.inflight)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulkhead(initial: u32) -> AdaptiveBulkhead {
        AdaptiveBulkhead::builder("a")
            .algorithm(LimitAlgorithm::Aimd(Aimd::default()))
            .initial_limit(initial)
            .limits(1, 100)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn shrinking_with_every_slot_held_retires_slots_as_calls_finish() {
        let b = bulkhead(10);
        let mut held: Vec<_> = (0..10).map(|_| b.try_acquire().expect("free")).collect();
        // Congestion: 10 -> 9 with every slot held.
        held.pop().expect("held").record(Signal::Congestion);
        assert_eq!(b.limit(), 9);
        // The congestion call's slot was retired, not freed.
        assert!(b.try_acquire().is_err());
        drop(held.pop());
        let one = b.try_acquire().expect("9 - 8 held = 1 free");
        assert!(b.try_acquire().is_err());
        drop(one);
        drop(held);
        let all: Vec<_> = (0..9).map(|_| b.try_acquire().expect("free")).collect();
        assert!(b.try_acquire().is_err());
        assert_eq!(b.metrics().active, 9);
        drop(all);
        assert_eq!(b.metrics().active, 0);
    }

    proptest::proptest! {
        /// Whatever calls take, record and drop, every slot is in one place: free in the
        /// semaphore, held by a permit, or owed as debt after a shrink; no more permits exist
        /// than the limit and the debt; and a debt is only owed while no slot is free.
        #[test]
        fn slots_are_conserved_as_the_limit_moves(
            gradient in proptest::prelude::any::<bool>(),
            ops in proptest::collection::vec((0u8..4, 0usize..64, 1u64..2_000), 1..300),
        ) {
            let algorithm = if gradient {
                LimitAlgorithm::Gradient(Gradient::default())
            } else {
                LimitAlgorithm::Aimd(Aimd::default())
            };
            let b = AdaptiveBulkhead::builder("p")
                .algorithm(algorithm)
                .initial_limit(8)
                .limits(1, 40)
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            let mut held: Vec<AdaptivePermit> = Vec::new();
            for (op, index, ms) in ops {
                match op {
                    0 | 1 => {
                        if let Ok(p) = b.try_acquire() {
                            held.push(p);
                        }
                    }
                    _ if held.is_empty() => {}
                    2 => {
                        let mut p = held.swap_remove(index % held.len());
                        p.record_latency(Duration::from_millis(ms));
                        let signal = if ms % 7 == 0 { Signal::Congestion } else { Signal::Success };
                        p.record(signal);
                    }
                    _ => drop(held.swap_remove(index % held.len())),
                }
                let s = &b.shared;
                let free = s.semaphore.available_permits() as u64;
                let limit = u64::from(s.limit.load(Ordering::Relaxed));
                let debt = u64::from(s.debt.load(Ordering::Relaxed));
                proptest::prop_assert_eq!(free + held.len() as u64, limit + debt);
                proptest::prop_assert!(debt == 0 || free == 0, "debt {} with {} free", debt, free);
                proptest::prop_assert_eq!(u64::from(s.inflight.load(Ordering::Relaxed)), held.len() as u64);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_a_slot_the_limit_adds() {
        let b = AdaptiveBulkhead::builder("a")
            .algorithm(LimitAlgorithm::Aimd(Aimd::default()))
            .initial_limit(1)
            .max_queue(1)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let first = b.try_acquire().expect("free");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(b.metrics().queued, 1);
        // A success at full use grows the limit to 2: one slot for the waiter, and the first
        // call's slot comes back too.
        first.record(Signal::Success);
        assert!(waiter.await.expect("joined").is_ok());
        assert_eq!(b.limit(), 2);
    }
}
