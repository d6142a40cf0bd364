use super::{CircuitBreaker, CircuitBreakerService, ClassifyNow, HoldPolicy};
use std::time::Duration;
use tower_layer::Layer;

/// Wraps services with a [`CircuitBreaker`].
///
/// Every service this layer makes, and every clone of the layer, shares the one breaker it was
/// built with (see [Sharing](super#sharing)).
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_breaker::{Outcome, circuit_breaker::{CircuitBreaker, CircuitBreakerLayer}};
///
/// let breaker = CircuitBreaker::builder("search").build()?;
/// // Count only server errors as failures.
/// let layer = CircuitBreakerLayer::new(breaker).classify(|r: &Result<u16, std::io::Error>| match r {
///     Ok(status) if *status >= 500 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// });
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(tower::service_fn(|_: ()| async { Ok::<u16, std::io::Error>(200) }));
/// # let _ = svc;
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<R = ClassifyNow> {
    breaker: CircuitBreaker,
    recorder: R,
    hold: Option<HoldPolicy>,
}

impl CircuitBreakerLayer {
    /// A layer for `breaker` with the default classifier (`Ok` succeeds, `Err` fails).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            recorder: ClassifyNow::default(),
            hold: None,
        }
    }
}

impl<R> CircuitBreakerLayer<R> {
    /// Uses `classifier` to turn each result into an [`Outcome`](crate::Outcome), recorded as
    /// soon as the result is there.
    pub fn classify<C>(self, classifier: C) -> CircuitBreakerLayer<ClassifyNow<C>> {
        self.record_with(ClassifyNow(classifier))
    }

    /// Uses `recorder` to record each result, possibly later (at the end of a streamed body);
    /// see [`RecordOutcome`](super::RecordOutcome).
    pub fn record_with<R2>(self, recorder: R2) -> CircuitBreakerLayer<R2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            recorder,
            hold: self.hold,
        }
    }

    /// Hold and replay: while the breaker rejects calls (open, half-open with every slot
    /// taken, or cooling down after a rate limit), `poll_ready` holds the call instead of
    /// failing it, and lets it through as soon as the breaker permits. At most `max_held`
    /// calls are held at once across the breaker; a call held for `max_wait` fails. Both
    /// failures are a [`HoldRejected`](super::HoldRejected) error. Nothing is lost silently:
    /// every held call ends in a response or that error. A forced-open breaker is not held
    /// for. Default: off (rejections fail at once).
    ///
    /// Held calls that wake when the open wait is over become the probes that close the
    /// breaker, so no other traffic is needed for recovery.
    pub fn hold_while_open(mut self, max_held: usize, max_wait: Duration) -> Self {
        // Longer than a day is "forever" here, and keeps deadline arithmetic from overflowing.
        let max_wait = max_wait.min(crate::config::MAX_DURATION);
        self.hold = Some(HoldPolicy { max_held, max_wait });
        self
    }

    /// The breaker this layer uses.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, R: Clone> Layer<S> for CircuitBreakerLayer<R> {
    type Service = CircuitBreakerService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let mut service = CircuitBreakerService::with_recorder(
            inner,
            self.breaker.clone(),
            self.recorder.clone(),
        );
        service.hold = self.hold;
        service
    }
}
