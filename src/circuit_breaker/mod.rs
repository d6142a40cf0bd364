//! A lock-free circuit breaker: closed, open, half-open, plus manual control.
//!
//! A [`CircuitBreaker`] watches the outcomes of calls to one upstream. While the upstream is
//! healthy the breaker is **closed** and lets every call through. When the calls in its
//! [`SlidingWindow`] fail too often (or are too slow) it **opens**: every call fails at once
//! with [`CircuitOpen`], in nanoseconds instead of a 30 s timeout, and the upstream gets time to
//! recover. After `wait_in_open` the next call finds it **half-open**: a bounded number of probe
//! calls go through, and their results close the breaker again or reopen it.
//!
//! The breaker is a cheap [`Clone`] handle to shared state and works without tower:
//!
//! ```
//! use std::time::Duration;
//! use tower_breaker::Outcome;
//! use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
//!
//! let breaker = CircuitBreaker::builder("openai")
//!     .sliding_window(SlidingWindow::consecutive(3))
//!     .wait_in_open(Duration::from_secs(30))
//!     .build()?;
//!
//! for _ in 0..3 {
//!     let permit = breaker.try_acquire().expect("closed");
//!     permit.record(Outcome::Failure);
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let err = breaker.try_acquire().unwrap_err();
//! assert_eq!(err.name(), "openai");
//! // About 30 s until the next probe (deadlines are whole milliseconds, rounded up).
//! assert!(err.retry_after().unwrap() > Duration::from_secs(29));
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! As tower middleware, [`CircuitBreakerLayer`] wraps any `Service` that is `Clone` (see
//! [`CircuitBreakerService`] for why). Its error type is
//! [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html); a rejection is a
//! boxed [`CircuitOpen`] (or a boxed [`RateLimited`] during a rate-limit cool-down):
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, SlidingWindow};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let breaker = CircuitBreaker::builder("upstream")
//!     .sliding_window(SlidingWindow::consecutive(1))
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err("upstream is down") } else { Ok("hello") }
//!     }));
//!
//! assert_eq!(svc.ready().await?.call(false).await?, "hello");
//! assert!(svc.ready().await?.call(true).await.is_err()); // trips the breaker
//! let err = svc.ready().await?.call(false).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>()); // rejected without calling the upstream
//! # Ok(())
//! # }
//! ```
//!
//! # Sharing
//!
//! Clones of a [`CircuitBreaker`], of its [`CircuitBreakerLayer`] and of every service the layer
//! wraps share **one** breaker. A layer applied to several services (as axum does for each
//! route) protects them all with the same breaker: one route's failures open it for every
//! route. For one breaker per route, build one breaker per route:
//!
//! ```
//! use tower::{ServiceBuilder, service_fn};
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//!
//! let chat = CircuitBreaker::builder("chat").build()?;
//! let embeddings = CircuitBreaker::builder("embeddings").build()?;
//! let chat_svc = ServiceBuilder::new()
//!     .layer(chat.layer())
//!     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("chat") }));
//! let embeddings_svc = ServiceBuilder::new()
//!     .layer(embeddings.layer())
//!     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>("embeddings") }));
//! # let _ = (chat_svc, embeddings_svc);
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # Rules
//!
//! - **Trip rules** ([`SlidingWindow`]): `consecutive(n)` failures; `count_based(n)`, the last
//!   n calls; `time_based(t)`, the calls of the last t in buckets. Rate windows trip when the
//!   failure rate or the slow-call rate is at least its threshold (inclusive), once the window
//!   holds `minimum_calls`. [`Outcome::Ignored`] counts toward nothing.
//! - **Outage rule** ([`Builder::consecutive_failure_threshold`], off by default, 15 in the
//!   [`StandardResilience`](crate::stack::StandardResilience) presets): beside the window, n
//!   failures in a row trip the breaker whatever the window holds. A rate over a long window
//!   sees an outage later the longer things went well (after 60 s of healthy traffic at 20
//!   calls a second, a 120 s window at 50 % must first hold 1,200 failures, about 34 s into
//!   the outage); a run of failures sees it within n failed attempts, whatever the history,
//!   while scattered failures almost never make one (at 5 %, a run of 15 comes once in about
//!   3 * 10^19 calls). Any success ends the run; ignored and slow calls leave it as it is; it
//!   starts again with each closed generation. Cost: one atomic load per success, a write
//!   only on a failure and on the success that ends a run.
//! - **Open**: calls fail with [`CircuitOpen`], which says how long until the next probe.
//!   The open time can grow with each consecutive reopen ([`Builder::open_time_growth`]) and be
//!   jittered ([`Builder::open_time_jitter`]). No background task: the first call after the
//!   wait moves the breaker to half-open.
//! - **Half-open**: at most `permitted_calls_in_half_open` probes per round. With a rate window
//!   the round closes the breaker when the probes' rates are under the thresholds and reopens it
//!   otherwise, deciding as soon as the result cannot change; with the consecutive rule any
//!   failed probe reopens and that many successes close. If the round has every slot taken and
//!   has not decided within `max_wait_in_half_open`, the breaker reopens as of that deadline;
//!   every reader (`state`, `is_call_permitted`, `retry_after`, held calls, failover) applies
//!   this one rule.
//! - **Generations**: each transition starts a generation; an outcome from an earlier one (a
//!   slow call admitted before the breaker opened) changes nothing, however many transitions
//!   came in between.
//! - **Manual control**: [`force_open`](CircuitBreaker::force_open),
//!   [`disable`](CircuitBreaker::disable), [`metrics_only`](CircuitBreaker::metrics_only),
//!   [`reset`](CircuitBreaker::reset).
//! - **Time** is `tokio::time::Instant`, so `tokio::time::pause()` drives the breaker in tests.

mod call;
mod config;
mod error;
mod events;
mod future;
mod hold;
mod layer;
mod load_aware;
mod record;
mod service;
mod state;
mod window;

pub use self::config::{Builder, SlidingWindow};
pub use self::error::{CircuitOpen, RateLimited};
pub use self::events::CircuitBreakerEvent;
pub use self::future::ResponseFuture;
pub use self::hold::{HoldPolicy, HoldReason, HoldRejected};
pub use self::layer::CircuitBreakerLayer;
pub use self::load_aware::{LoadAwareThresholds, Tier};
pub use self::record::{ClassifyNow, RecordOutcome};
pub use self::service::CircuitBreakerService;
pub use self::state::CircuitBreakerMetrics;

#[cfg(feature = "retry")]
pub(crate) use self::state::Admission;
pub(crate) use self::state::Shared;
#[cfg(feature = "shared-state")]
pub(crate) use self::state::{Fleet, FleetAttachment, FleetLink, LocalState, Remote, UNBOUNDED};
use self::state::{Hint, Kind, Ticket};
use crate::Outcome;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through and are counted.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A bounded number of probe calls go through; their results decide.
    HalfOpen,
    /// Calls are rejected until [`CircuitBreaker::reset`] (manual control).
    ForcedOpen,
    /// Calls go through and nothing is recorded (manual control).
    Disabled,
    /// Calls go through and are counted, but the breaker never trips (manual control).
    MetricsOnly,
    /// The upstream rate-limited us (429): calls are rejected until its `Retry-After` has
    /// passed, then the breaker is closed again, with the window it had. The rate limits
    /// themselves count toward nothing; calls already in flight still record their outcomes
    /// (and failures among them can still open the breaker).
    RateLimited,
}

impl CircuitState {
    /// The state's name in `snake_case`, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
            CircuitState::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A circuit breaker: a cheap `Clone` handle to shared state. See the [module docs](self).
///
/// Used without tower: ask for a [`Permit`], make the call, record its outcome.
///
/// ```
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
///
/// let breaker = CircuitBreaker::builder("openai")
///     .sliding_window(SlidingWindow::consecutive(2))
///     .build()?;
/// for _ in 0..2 {
///     let permit = breaker.try_acquire().expect("closed");
///     // ... make the call; it failed:
///     permit.record(Outcome::Failure);
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// let open = breaker.try_acquire().unwrap_err();
/// let wait = open.retry_after().expect("the rest of the open wait");
/// assert_eq!(wait.as_secs_f64().round(), 60.0); // the default wait, to the millisecond
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl CircuitBreaker {
    /// A builder with the defaults, for the breaker named `name` (the name is in every error,
    /// event and log line).
    ///
    /// | setting | default |
    /// |---|---|
    /// | `sliding_window` | `count_based(100)` |
    /// | `failure_rate_threshold` | 0.5 |
    /// | `slow_call_rate_threshold` | 1.0 |
    /// | `slow_call_duration` | none (no slow-call rule) |
    /// | `minimum_calls` | 100 |
    /// | `wait_in_open` | 60 s |
    /// | `permitted_calls_in_half_open` | 10 |
    /// | `max_wait_in_half_open` | 120 s |
    /// | `open_time_growth` | none |
    /// | `open_time_jitter` | 0.0 |
    pub fn builder(name: impl Into<Arc<str>>) -> Builder {
        Builder::new(name)
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Asks to make one call. On success the [`Permit`] must be given the call's outcome with
    /// [`Permit::record`]; a permit dropped unrecorded counts as [`Outcome::Ignored`].
    ///
    /// Closed: one atomic load, no allocation. Open: the same load, a clock read and an error.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        self.shared
            .acquire_as::<_, true>(|ticket| Permit::new(&self.shared, ticket))
    }

    /// True when a call would be admitted now. Reserves nothing: use it to choose between
    /// providers, then [`try_acquire`](Self::try_acquire) to call.
    pub fn is_call_permitted(&self) -> bool {
        self.shared.would_permit()
    }

    /// How long until the breaker lets a call through again: the rest of the open wait or
    /// rate-limit cool-down; `None` when it would permit one now, or when the time is not
    /// known (forced open, half-open with every slot taken).
    pub fn retry_after(&self) -> Option<Duration> {
        self.shared.retry_after()
    }

    /// The length of the breaker's time-based window, if it has one.
    pub fn time_window(&self) -> Option<Duration> {
        match self.shared.settings.window {
            config::WindowKind::Time { length, .. } => Some(length),
            _ => None,
        }
    }

    /// The current state. An open breaker whose wait is over still reads `Open` until the next
    /// call moves it to half-open. A half-open round past `max_wait_in_half_open` with every
    /// slot taken reads `Open`: reading the state applies the expiry rule (and may make that
    /// transition).
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> CircuitBreakerMetrics {
        self.shared.metrics()
    }

    /// Rejects every call until [`reset`](Self::reset) (or another manual state).
    pub fn force_open(&self) {
        self.shared.force(state::Tag::ForcedOpen);
    }

    /// Lets every call through and records nothing, until another state is chosen.
    pub fn disable(&self) {
        self.shared.force(state::Tag::Disabled);
    }

    /// Lets every call through and records outcomes, but never trips.
    pub fn metrics_only(&self) {
        self.shared.force(state::Tag::MetricsOnly);
    }

    /// Back to closed with an empty window and a new generation (from any state, a
    /// rate-limit cool-down included): outcomes of calls admitted before the reset are
    /// dropped.
    pub fn reset(&self) {
        self.shared.force(state::Tag::Closed);
    }

    /// A layer that wraps services with this breaker (shared, not copied).
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }
}

/// Leave to make one call through a [`CircuitBreaker`]; see [`CircuitBreaker::try_acquire`].
///
/// It remembers the generation it was admitted in: if the breaker has changed state since,
/// its outcome is dropped. Records exactly once: [`record`](Self::record) takes it by value,
/// and dropping it unrecorded counts as [`Outcome::Ignored`] (a cancelled call), which gives a
/// half-open probe slot back.
#[must_use = "a permit records the call's outcome; dropping it counts the call as Ignored"]
pub struct Permit {
    /// `None` once settled, so that `Drop` does nothing. (Not a separate flag: with one,
    /// a permit grew from 40 to 48 bytes, and it is moved several times per call.)
    shared: Option<Arc<Shared>>,
    ticket: Ticket,
    start: Option<Instant>,
}

impl Permit {
    /// A permit for `ticket`, its slow-call clock (if the breaker times calls) started now.
    #[inline]
    pub(crate) fn new(shared: &Arc<Shared>, ticket: Ticket) -> Self {
        Self {
            start: shared.times_calls().then(crate::sync::now),
            shared: Some(shared.clone()),
            ticket,
        }
    }

    /// Records this admission into the call's span, if a subscriber wants it: the breaker's
    /// name and the state the ticket was admitted in.
    #[inline]
    pub(crate) fn record_admission(&self) {
        if let Some(shared) = &self.shared {
            // The state's name: the span module names no breaker type.
            crate::call_span::record_admitted(&shared.name, || {
                match self.ticket.kind {
                    state::Kind::Probe => CircuitState::HalfOpen,
                    state::Kind::Passthrough => CircuitState::Disabled,
                    state::Kind::Normal if shared.state() == CircuitState::MetricsOnly => {
                        CircuitState::MetricsOnly
                    }
                    state::Kind::Normal => CircuitState::Closed,
                }
                .as_str()
            });
        }
    }

    /// Records the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(shared) = self.shared.take() {
            shared.record(self.ticket, outcome, self.start);
        }
    }

    /// Records an outcome that came with the server's own wait (for example a 503 with
    /// `Retry-After`). If this outcome opens the breaker, it stays open at least
    /// `retry_after` (capped by `max_retry_after`).
    pub fn record_with_retry_after(self, outcome: Outcome, retry_after: Option<Duration>) {
        let hint = retry_after.map_or(Hint::None, Hint::ServerWait);
        self.settle(outcome, hint);
    }

    /// Records a rate limit (429, gRPC `RESOURCE_EXHAUSTED`): the call counts as
    /// [`Outcome::Ignored`] and the breaker rejects calls with state
    /// [`CircuitState::RateLimited`] until `retry_after` has passed (capped by
    /// `max_retry_after`; `rate_limit_cooldown` when `None`). A rate-limited half-open probe
    /// reopens the breaker for that wait without counting as a failed round.
    pub fn record_rate_limited(self, retry_after: Option<Duration>) {
        self.settle(Outcome::Ignored, Hint::RateLimited(retry_after));
    }

    #[inline]
    fn settle(mut self, outcome: Outcome, hint: Hint) {
        if let Some(shared) = self.shared.take() {
            shared.settle(self.ticket, outcome, hint, self.start);
        }
    }

    /// The name of the breaker this permit belongs to.
    pub fn breaker_name(&self) -> &str {
        // Always `Some`: only settling takes it, and settling consumes the permit.
        self.shared.as_deref().map_or("", |shared| &shared.name)
    }

    /// True when this permit holds a half-open probe slot.
    pub fn is_probe(&self) -> bool {
        self.ticket.kind == Kind::Probe
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.settle(self.ticket, Outcome::Ignored, Hint::None, None);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker_name())
            .field("generation", &self.ticket.generation)
            .field("probe", &self.is_probe())
            .finish()
    }
}
