//! A best-practice client stack in one call, and `ServiceBuilder` methods for each layer.
//!
//! [`StandardResilience`] is modelled on the standard HTTP resilience handler of .NET (Polly
//! v8): from the outside in,
//!
//! 1. **total timeout**: the whole call, retries and waits included, never takes longer;
//! 2. **retry**: exponential backoff with jitter, `Retry-After`, a budget, idempotency rules
//!    ([`RetryPolicy`]);
//! 3. **circuit breaker**: fails fast while the upstream is down; each retry is a call it
//!    counts, and it stops retries from piling onto a dead upstream (they fail with
//!    `CircuitOpen`, which the policy never retries);
//! 4. **bulkhead**: a cap on the calls in flight;
//! 5. **attempt timeout**: one try never takes longer, so a hung call counts as a failure.
//!
//! In front of all of them a [`BreakerGate`] asks the breaker first: while it is open, a call
//! fails at once with `CircuitOpen` before the timeout and the retry layer do any work.
//!
//! Each part has a documented default and can be replaced; [`Builder::build`] checks that the
//! parts fit together.
//!
//! Outside them all, one `tracing` span per call, `tower_breaker.call`, into which each part
//! records what it decided (attempts, breaker state at admission, outcome, error kind); see
//! [`call_span`](crate::call_span).
//!
//! ```
//! use std::time::Duration;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//! use tower_breaker::stack::StandardResilience;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let resilience = StandardResilience::builder("search")
//!     .attempt_timeout(Duration::from_secs(2))
//!     .total_timeout(Duration::from_secs(10))
//!     .build()?;
//! let mut client = resilience.layer(service_fn(|q: String| async move {
//!     Ok::<_, tower::BoxError>(format!("results for {q}"))
//! }));
//! assert_eq!(client.ready().await?.call("rust".into()).await?, "results for rust");
//! # Ok(())
//! # }
//! ```
//!
//! The layers one at a time, in a `ServiceBuilder`:
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceBuilder, service_fn};
//! use tower_breaker::bulkhead::Bulkhead;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::ServiceBuilderExt;
//!
//! let breaker = CircuitBreaker::builder("search").build()?;
//! let bulkhead = Bulkhead::builder("search").max_concurrent(32).build()?;
//! let svc = ServiceBuilder::new()
//!     .circuit_breaker(&breaker)
//!     .bulkhead(&bulkhead)
//!     .service(service_fn(|q: String| async move { Ok::<_, tower::BoxError>(q) }));
//! # let _ = svc;
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```

mod gate;
mod keyed;

pub use self::gate::{BreakerGate, BreakerGateFuture};
pub use self::keyed::{KeyedBuilder, KeyedStandardResilience, KeyedStandardResilienceService};

use crate::bulkhead::BulkheadEvent;
use crate::bulkhead::{Bulkhead, BulkheadService};
use crate::call_span::{CallSpan, CallSpanLayer};
use crate::circuit_breaker::CircuitBreakerEvent;
use crate::circuit_breaker::{
    Builder as BreakerBuilder, CircuitBreaker, CircuitBreakerService, ClassifyNow, SlidingWindow,
};
use crate::config::{Check, ConfigError};
use crate::events::Listener;
use crate::outcome::{Classify, DefaultClassifier, Outcome};
use crate::retry::RetryEvent;
use crate::retry::{Backoff, Cloneable, RetryPolicy};
use std::fmt;
use std::time::Duration;
use tower::retry::Retry;
use tower::timeout::Timeout;
use tower_layer::{Identity, Layer};

/// `ServiceBuilder` methods for this crate's layers; the same trait as
/// [`tower_breaker::ServiceBuilderExt`](crate::ServiceBuilderExt), re-exported here.
pub use crate::builder_ext::ServiceBuilderExt;

impl<C, P, R, I> crate::builder_ext::sealed::StandardStack for StandardResilience<C, P, R, I> {}

/// Total timeout, retry, circuit breaker, bulkhead and attempt timeout, in that order; see the
/// [module docs](self). A `Layer`: every service it wraps shares the one breaker, bulkhead and
/// retry budget.
///
/// Each part can be set, and read back for health checks and metrics:
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_breaker::bulkhead::Bulkhead;
/// use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
/// use tower_breaker::stack::StandardResilience;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let resilience = StandardResilience::builder("completions")
///     .breaker(CircuitBreaker::builder("completions").sliding_window(SlidingWindow::consecutive(5)))
///     .bulkhead(Bulkhead::builder("completions").max_concurrent(32))
///     .attempt_timeout(Duration::from_secs(20))
///     .build()?;
/// let breaker = resilience.breaker().clone();
/// let mut client = ServiceBuilder::new()
///     .layer(resilience)
///     .service(service_fn(|q: String| async move { Ok::<_, tower::BoxError>(q.len()) }));
/// assert_eq!(client.ready().await?.call("hello".into()).await?, 5);
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # Ok(())
/// # }
/// ```
pub struct StandardResilience<
    C = DefaultClassifier,
    P = Cloneable,
    R = ClassifyNow<StackClassifier>,
    I = Identity,
> {
    /// Wraps the client, inside the attempt timeout (`.llm()`: a `ProviderErrorLayer`).
    innermost: I,
    total_timeout: Duration,
    attempt_timeout: Duration,
    retry: RetryPolicy<C, P>,
    breaker: CircuitBreaker,
    recorder: R,
    bulkhead: Bulkhead,
    /// Outermost: one span per call, named after the stack.
    span: CallSpanLayer,
}

impl<C: Clone, P: Clone, R: Clone, I: Clone> Clone for StandardResilience<C, P, R, I> {
    fn clone(&self) -> Self {
        Self {
            span: self.span.clone(),
            innermost: self.innermost.clone(),
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry.clone(),
            breaker: self.breaker.clone(),
            recorder: self.recorder.clone(),
            bulkhead: self.bulkhead.clone(),
        }
    }
}

impl<C, P, R, I> fmt::Debug for StandardResilience<C, P, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardResilience")
            .field("total_timeout", &self.total_timeout)
            .field("retry", &self.retry.name())
            .field("breaker", &self.breaker.name())
            .field("bulkhead", &self.bulkhead.name())
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl StandardResilience {
    /// A builder with the defaults below, for calls named `name` (the breaker, bulkhead and
    /// retry policy take this name).
    ///
    /// | part | default |
    /// |---|---|
    /// | total timeout | 30 s |
    /// | retry | 4 attempts (3 retries), exponential from 2 s with full jitter, capped at 30 s; a budget of 20 % of calls (min 10/s); the total timeout as its deadline |
    /// | circuit breaker | time window 30 s, failure rate 10 %, at least 100 calls, or 15 failures in a row (an outage is seen within 15 failed attempts, whatever the history), 5 s open, 10 probes |
    /// | bulkhead | 1,000 calls in flight, no queue |
    /// | attempt timeout | 10 s |
    pub fn builder(name: &str) -> Builder {
        Builder {
            name: name.to_string(),
            total_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            retry: RetryPolicy::builder().name(name).max_attempts(4).backoff(
                Backoff::exponential(Duration::from_secs(2), Duration::from_secs(30)).full_jitter(),
            ),
            breaker: CircuitBreaker::builder(name)
                .sliding_window(SlidingWindow::time_based(Duration::from_secs(30)))
                .failure_rate_threshold(0.1)
                .minimum_calls(100)
                .consecutive_failure_threshold(Some(15))
                .wait_in_open(Duration::from_secs(5))
                .permitted_calls_in_half_open(10),
            bulkhead: Bulkhead::builder(name).max_concurrent(1_000).max_queue(0),
            recorder: ClassifyNow(StackClassifier),
            innermost: Identity::new(),
        }
    }
}

impl<C, P, R, I> StandardResilience<C, P, R, I> {
    /// The circuit breaker (for health reports, metrics, manual control).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy<C, P> {
        &self.retry
    }

    /// The timeout of the whole call.
    pub fn total_timeout(&self) -> Duration {
        self.total_timeout
    }

    /// The timeout of one attempt.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// Wraps `inner`, like [`Layer::layer`], but checks here that the parts fit `inner`'s
    /// requests and responses. A mismatch is then an error at this call that names the
    /// request type (a `.http()` stack around a `reqwest::Client`: "`Client:
    /// Service<http::Request<_>>` is not satisfied", with a pointer to its
    /// `Service<reqwest::Request>`), instead of a missing `oneshot` method on the stack's type.
    ///
    /// ```
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// let client = StandardResilience::builder("api").reqwest().build()?.service(reqwest::Client::new());
    /// # let _ = client;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    ///
    /// ```compile_fail,E0277
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// // `.http()` copies `http::Request`s; a reqwest client needs `.reqwest()`.
    /// let client = StandardResilience::builder("api").http().build()?.service(reqwest::Client::new());
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn service<S, Req>(&self, inner: S) -> StandardResilienceService<I::Service, C, P, R>
    where
        I: Layer<S>,
        I::Service: tower_service::Service<Req>,
        <I::Service as tower_service::Service<Req>>::Error: Into<crate::BoxError>,
        R: crate::circuit_breaker::RecordOutcome<
                <I::Service as tower_service::Service<Req>>::Response,
                crate::BoxError,
            > + Clone,
        P: crate::retry::Protocol<Req, R::Response, crate::BoxError> + Clone,
        C: Classify<R::Response, crate::BoxError> + Clone,
    {
        self.layer(inner)
    }
}

/// How the stack's breaker counts results by default: `Ok` is a success, an error a failure,
/// except a rejection by the stack's own bulkhead (`BulkheadFull`, `BulkheadTimeout`) or by
/// another breaker further in (`CircuitOpen`, `RateLimited`), found in the error or its
/// `source()` chain: that call never reached the upstream, so it is [`Outcome::Ignored`].
///
/// ([`DefaultClassifier`] counts every error, so a burst that fills the bulkhead would open
/// the breaker of a healthy upstream. The HTTP flavour's
/// [`HttpClassifier`](crate::http::HttpClassifier) already ignores these rejections.)
///
/// ```
/// use tower_breaker::bulkhead::Bulkhead;
/// use tower_breaker::stack::StackClassifier;
/// use tower_breaker::{BoxError, Classify, Outcome};
///
/// let bulkhead = Bulkhead::builder("search").max_concurrent(1).build()?;
/// let _slot = bulkhead.try_acquire()?;
/// let full: BoxError = Box::new(bulkhead.try_acquire().unwrap_err());
/// assert_eq!(StackClassifier.classify(&Err::<(), _>(full)), Outcome::Ignored);
/// let down: BoxError = "connection refused".into();
/// assert_eq!(StackClassifier.classify(&Err::<(), _>(down)), Outcome::Failure);
/// assert_eq!(StackClassifier.classify(&Ok::<_, BoxError>(())), Outcome::Success);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StackClassifier;

impl<Res, E: 'static> Classify<Res, E> for StackClassifier {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) if crate::rejection::Rejection::of_any(error).is_some() => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        }
    }
}

/// The service a [`StandardResilience`] makes.
pub type StandardResilienceService<
    S,
    C = DefaultClassifier,
    P = Cloneable,
    R = ClassifyNow<StackClassifier>,
> = CallSpan<
    BreakerGate<
        Timeout<Retry<RetryPolicy<C, P>, CircuitBreakerService<BulkheadService<Timeout<S>>, R>>>,
    >,
>;

impl<S, C: Clone, P: Clone, R: Clone, I: Layer<S>> Layer<S> for StandardResilience<C, P, R, I> {
    type Service = StandardResilienceService<I::Service, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let attempt = Timeout::new(self.innermost.layer(inner), self.attempt_timeout);
        let limited = self.bulkhead.layer().layer(attempt);
        let guarded = self
            .breaker
            .layer()
            .record_with(self.recorder.clone())
            .layer(limited);
        let retried = Retry::new(self.retry.clone(), guarded);
        let total = Timeout::new(retried, self.total_timeout);
        // Outermost: one span per call, which the layers inside record into; then the gate,
        // which rejects while the breaker is open before the timeouts and the retry do any work.
        let gated = BreakerGate::new(total, self.breaker.clone(), self.retry.shared.clone());
        self.span.layer(gated)
    }
}

/// Builds a [`StandardResilience`]; see [`StandardResilience::builder`].
pub struct Builder<
    C = DefaultClassifier,
    P = Cloneable,
    R = ClassifyNow<StackClassifier>,
    I = Identity,
> {
    innermost: I,
    name: String,
    total_timeout: Duration,
    attempt_timeout: Duration,
    retry: crate::retry::Builder<C, P>,
    breaker: BreakerBuilder,
    bulkhead: crate::bulkhead::Builder,
    recorder: R,
}

impl<C, P, R, I> fmt::Debug for Builder<C, P, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("total_timeout", &self.total_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<C, P, R, I> Builder<C, P, R, I> {
    /// The timeout of the whole call, retries and waits included. Default 30 s.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }

    /// The timeout of one attempt. Default 10 s; at most the total timeout.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Replaces the retry policy's builder.
    pub fn retry<C2, P2>(self, retry: crate::retry::Builder<C2, P2>) -> Builder<C2, P2, R, I> {
        Builder {
            innermost: self.innermost,
            name: self.name,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry,
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            recorder: self.recorder,
        }
    }

    /// Replaces the circuit breaker's builder. A time-based window must be at least twice the
    /// attempt timeout, so that one hung attempt cannot outlast the window it is counted in.
    pub fn breaker(mut self, breaker: BreakerBuilder) -> Self {
        self.breaker = breaker;
        self
    }

    /// Replaces the bulkhead's builder.
    pub fn bulkhead(mut self, bulkhead: crate::bulkhead::Builder) -> Self {
        self.bulkhead = bulkhead;
        self
    }

    /// Changes the retry policy's builder, keeping every default not touched by `configure`
    /// (where [`retry`](Self::retry) replaces the builder and its defaults).
    ///
    /// ```
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// let stack = StandardResilience::builder("search")
    ///     .configure_retry(|retry| retry.max_attempts(2))
    ///     .configure_breaker(|breaker| breaker.minimum_calls(20))
    ///     .configure_bulkhead(|bulkhead| bulkhead.max_concurrent(64))
    ///     .build()?;
    /// assert_eq!(stack.retry().max_attempts(), 2);
    /// assert_eq!(stack.bulkhead().metrics().max_concurrent, 64);
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn configure_retry(
        mut self,
        configure: impl FnOnce(crate::retry::Builder<C, P>) -> crate::retry::Builder<C, P>,
    ) -> Self {
        self.retry = configure(self.retry);
        self
    }

    /// Changes the circuit breaker's builder, keeping every default not touched by `configure`.
    pub fn configure_breaker(
        mut self,
        configure: impl FnOnce(BreakerBuilder) -> BreakerBuilder,
    ) -> Self {
        self.breaker = configure(self.breaker);
        self
    }

    /// Changes the bulkhead's builder, keeping every default not touched by `configure`.
    pub fn configure_bulkhead(
        mut self,
        configure: impl FnOnce(crate::bulkhead::Builder) -> crate::bulkhead::Builder,
    ) -> Self {
        self.bulkhead = configure(self.bulkhead);
        self
    }

    /// Adds a listener to the breaker, the bulkhead and the retry policy (a
    /// `MetricsListener`, an `OpenTelemetryListener`, or your own type implementing
    /// [`Listener`] for the three event types); every default stays. A stack that guards
    /// streams (`.llm()`, feature `stream`) reports its stream guard's events to the listeners
    /// of `on_stream_event`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use tower_breaker::bulkhead::BulkheadEvent;
    /// use tower_breaker::circuit_breaker::CircuitBreakerEvent;
    /// use tower_breaker::events::Listener;
    /// use tower_breaker::retry::RetryEvent;
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// #[derive(Clone, Default)]
    /// struct Count(Arc<AtomicUsize>);
    /// impl Listener<CircuitBreakerEvent> for Count {
    ///     fn on_event(&self, _: &CircuitBreakerEvent) { self.0.fetch_add(1, Ordering::Relaxed); }
    /// }
    /// impl Listener<BulkheadEvent> for Count {
    ///     fn on_event(&self, _: &BulkheadEvent) { self.0.fetch_add(1, Ordering::Relaxed); }
    /// }
    /// impl Listener<RetryEvent> for Count {
    ///     fn on_event(&self, _: &RetryEvent) { self.0.fetch_add(1, Ordering::Relaxed); }
    /// }
    ///
    /// let stack = StandardResilience::builder("search").on_event(Count::default()).build()?;
    /// # let _ = stack;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn on_event<L>(self, listener: L) -> Self
    where
        L: Listener<CircuitBreakerEvent> + Listener<BulkheadEvent> + Listener<RetryEvent> + Clone,
    {
        self.on_breaker_event(listener.clone())
            .on_bulkhead_event(listener.clone())
            .on_retry_event(listener)
    }

    /// Adds a listener for the breaker's events; every default stays.
    pub fn on_breaker_event(mut self, listener: impl Listener<CircuitBreakerEvent>) -> Self {
        self.breaker = self.breaker.on_event(listener);
        self
    }

    /// Adds a listener for the bulkhead's events; every default stays.
    pub fn on_bulkhead_event(mut self, listener: impl Listener<BulkheadEvent>) -> Self {
        self.bulkhead = self.bulkhead.on_event(listener);
        self
    }

    /// Adds a listener for the retry policy's events (every retry and every give-up); every
    /// default stays.
    pub fn on_retry_event(mut self, listener: impl Listener<RetryEvent>) -> Self {
        self.retry = self.retry.on_event(listener);
        self
    }

    /// How the breaker records results (for HTTP, an
    /// [`HttpClassifier`](crate::http::HttpClassifier)); see
    /// [`RecordOutcome`](crate::circuit_breaker::RecordOutcome).
    ///
    /// It replaces the recorder, and with it the listeners given to `on_stream_event` before:
    /// call `record_with` first, then `on_stream_event`.
    pub fn record_with<R2>(self, recorder: R2) -> Builder<C, P, R2, I> {
        Builder {
            innermost: self.innermost,
            name: self.name,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry,
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            recorder,
        }
    }

    /// Builds every part and checks that they fit: the attempt timeout is no longer than the
    /// total timeout, and a time-based breaker window is at least twice the attempt timeout.
    pub fn build(self) -> Result<StandardResilience<C, P, R, I>, ConfigError> {
        self.check_timeouts()?;
        let breaker = self.breaker.build()?;
        check_window(&self.name, self.attempt_timeout, &breaker)?;
        let retry = with_deadline(self.retry, self.total_timeout);
        Ok(StandardResilience {
            innermost: self.innermost,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            // The retry knows the breaker its attempts go through: no attempt sleeps toward it
            // once it opens, and it waits for the end of a cool-down.
            retry: retry.breaker(&breaker).build()?,
            breaker,
            recorder: self.recorder,
            bulkhead: self.bulkhead.build()?,
            span: CallSpanLayer::new(&self.name),
        })
    }

    /// Checks that the timeouts fit each other.
    fn check_timeouts(&self) -> Result<(), ConfigError> {
        let check = Check {
            component: &self.name,
        };
        check.duration(
            "total_timeout",
            self.total_timeout,
            crate::config::MIN_DURATION,
            crate::config::MAX_DURATION,
        )?;
        check.duration(
            "attempt_timeout",
            self.attempt_timeout,
            crate::config::MIN_DURATION,
            self.total_timeout,
        )?;
        Ok(())
    }
}

/// Checks that a time-based window of `breaker` (the stack's, or a key's in a per-key stack)
/// is at least twice the attempt timeout.
fn check_window(
    name: &str,
    attempt_timeout: Duration,
    breaker: &CircuitBreaker,
) -> Result<(), ConfigError> {
    match breaker.time_window() {
        Some(window) if window < attempt_timeout * 2 => Err(ConfigError::new(
            name,
            "breaker.sliding_window",
            window,
            format!(
                "at least twice the attempt timeout ({:?})",
                attempt_timeout * 2
            ),
        )),
        _ => Ok(()),
    }
}

/// The retry's builder with the total timeout as its deadline unless one is set: a retry that
/// cannot start in time gives up with its error, and a cool-down is waited out only if it
/// ends in time.
fn with_deadline<C, P>(
    retry: crate::retry::Builder<C, P>,
    total_timeout: Duration,
) -> crate::retry::Builder<C, P> {
    match retry.has_deadline() {
        true => retry,
        false => retry.deadline(total_timeout),
    }
}

#[cfg(feature = "http")]
impl Builder {
    /// The HTTP flavour: the retry policy retries 408, 429 and 5xx answers and honours
    /// `Retry-After` and idempotency ([`crate::retry::Builder::http`]), and the breaker uses
    /// the default [`HttpClassifier`](crate::http::HttpClassifier) (429 is a rate limit,
    /// streamed bodies are recorded when they end).
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(
        self,
    ) -> Builder<crate::retry::RetryOnStatus, crate::retry::HttpRequests, crate::http::HttpClassifier>
    {
        Builder {
            name: self.name,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry.http(),
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            recorder: crate::http::HttpClassifier::new(),
            innermost: self.innermost,
        }
    }
}

#[cfg(feature = "reqwest")]
impl Builder {
    /// The HTTP flavour for `reqwest::Client` (a tower `Service<reqwest::Request>`): the rules
    /// of [`http`](Self::http), with requests copied by `try_clone`
    /// ([`crate::retry::Builder::reqwest`]) and `reqwest::Response`s classified by the
    /// [`HttpClassifier`](crate::http::HttpClassifier).
    ///
    /// ```
    /// use tower::Layer;
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// let client = StandardResilience::builder("search")
    ///     .reqwest()
    ///     .build()?
    ///     .layer(reqwest::Client::new());
    /// # let _ = client;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn reqwest(
        self,
    ) -> Builder<
        crate::retry::RetryOnStatus,
        crate::retry::ReqwestRequests,
        crate::http::HttpClassifier,
    > {
        Builder {
            name: self.name,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
            retry: self.retry.reqwest(),
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            recorder: crate::http::HttpClassifier::new(),
            innermost: self.innermost,
        }
    }
}

/// How many calls the `.llm()` preset lets wait out a rate-limit cool-down at once.
#[cfg(feature = "stream")]
const LLM_COOL_DOWN_WAITS: usize = 32;

/// What the LLM presets return.
#[cfg(feature = "stream")]
type LlmBuilder = Builder<
    crate::retry::RetryOnStatus,
    crate::retry::LlmRequests,
    crate::stream::StreamRecorder,
    crate::provider_error::ProviderErrorLayer,
>;

#[cfg(feature = "stream")]
impl Builder {
    /// The preset for LLM APIs (OpenAI-compatible; [`llm_anthropic`](Self::llm_anthropic) for
    /// Anthropic), over `reqwest::Client` or any `http::Request` client (feature `stream`):
    ///
    /// | part | setting |
    /// |---|---|
    /// | retry | the official SDKs' rules ([`crate::retry::Builder::llm`]): 408, 409, 429, 5xx and 529, `x-should-retry` on an error status, `retry-after-ms` / `Retry-After` up to 60 s, POST completions retried, 0.5 s doubling to 8 s, 3 attempts; budget 20 % of calls (min 10/s); it gives up at once when the breaker opens; during a 429 cool-down up to 32 new calls whose deadline outlasts it wait for its end ([`wait_out_cool_downs`](crate::retry::Builder::wait_out_cool_downs)), the others fail fast |
    /// | circuit breaker | [`HttpClassifier`](crate::http::HttpClassifier) (429 is a cool-down, streams recorded at their end); time window 120 s, failure rate 50 %, at least 10 calls, or 15 failures in a row, 15 s open, 3 probes |
    /// | streams | `text/event-stream` answers guarded inside the breaker ([`StreamRecorder::llm`](crate::stream::StreamRecorder::llm)): first token within 60 s of the head, at most 30 s between tokens, and [`SseRules::openai`](crate::stream::SseRules::openai): a stream that ends without `[DONE]` or a `finish_reason` fails with `StreamTruncated` and counts as a failure. JSON answers pass untouched |
    /// | bulkhead | 1,000 calls in flight, no queue |
    /// | attempt timeout | 60 s, to the response head (a stream's body is held to the guard's deadlines instead) |
    /// | total timeout | 180 s |
    /// | provider errors | a [`ProviderErrorLayer`](crate::provider_error::ProviderErrorLayer) innermost: reads at most 16 KiB of each error body; `context_length_exceeded`, content-policy refusals and `insufficient_quota` are never retried, and `insufficient_quota` counts as a breaker failure, not a cool-down |
    ///
    /// Every part can then be changed with the `configure_*` and `on_*event` methods, which
    /// keep the rest; the stream guard with [`record_with`](Builder::record_with) and a
    /// [`StreamRecorder`](crate::stream::StreamRecorder) of your own.
    ///
    /// ```
    /// use tower::Layer;
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// let openai = StandardResilience::builder("openai").llm().build()?.layer(reqwest::Client::new());
    /// # let _ = openai;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    pub fn llm(self) -> LlmBuilder {
        self.llm_with(crate::stream::SseRules::openai())
    }

    /// [`llm`](Self::llm) for Anthropic's Messages API: the same parts, with streams held to
    /// [`SseRules::anthropic`](crate::stream::SseRules::anthropic) (a stream that ends without
    /// `message_stop` is `StreamTruncated`, a failure).
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    pub fn llm_anthropic(self) -> LlmBuilder {
        self.llm_with(crate::stream::SseRules::anthropic())
    }

    fn llm_with(self, rules: crate::stream::SseRules) -> LlmBuilder {
        Builder {
            innermost: crate::provider_error::ProviderErrorLayer::new(),
            total_timeout: Duration::from_secs(180),
            attempt_timeout: Duration::from_secs(60),
            retry: self.retry.llm().wait_out_cool_downs(LLM_COOL_DOWN_WAITS),
            breaker: self
                .breaker
                .sliding_window(SlidingWindow::time_based(Duration::from_secs(120)))
                .failure_rate_threshold(0.5)
                .minimum_calls(10)
                .wait_in_open(Duration::from_secs(15))
                .permitted_calls_in_half_open(3),
            bulkhead: self.bulkhead,
            recorder: crate::stream::StreamRecorder::llm_named(self.name.as_str().into(), rules),
            name: self.name,
        }
    }
}

#[cfg(feature = "stream")]
impl<C, P, R, I> Builder<C, P, crate::stream::StreamRecorder<R>, I> {
    /// Adds a listener for the stream guard's events (the first token of each streamed
    /// answer, and how it ended: [`StreamEvent`](crate::stream::StreamEvent)), for stacks that
    /// guard streams ([`llm`](Builder::llm), [`llm_anthropic`](Builder::llm_anthropic), or a
    /// [`StreamRecorder`](crate::stream::StreamRecorder) of your own). The presets name the
    /// guard after the stack. Call it after [`record_with`](Builder::record_with), which
    /// replaces the recorder and the listeners added to it.
    ///
    /// [`on_event`](Self::on_event) takes a listener of the breaker's, the bulkhead's and the
    /// retry's events only (every stack has those); give a metrics listener to both:
    ///
    /// ```
    /// # #[cfg(feature = "metrics")]
    /// # fn demo() -> Result<(), tower_breaker::ConfigError> {
    /// use tower_breaker::metrics::MetricsListener;
    /// use tower_breaker::stack::StandardResilience;
    ///
    /// let metrics = MetricsListener::new();
    /// let stack = StandardResilience::builder("openai")
    ///     .llm()
    ///     .on_event(metrics.clone())
    ///     .on_stream_event(metrics)
    ///     .build()?;
    /// # let _ = stack;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
    pub fn on_stream_event(mut self, listener: impl Listener<crate::stream::StreamEvent>) -> Self {
        self.recorder.add_listener(std::sync::Arc::new(listener));
        self
    }
}
