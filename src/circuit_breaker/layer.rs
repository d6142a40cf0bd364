use super::{CircuitBreaker, CircuitBreakerService, ClassifyNow};
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
}

impl CircuitBreakerLayer {
    /// A layer for `breaker` with the default classifier (`Ok` succeeds, `Err` fails).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            recorder: ClassifyNow::default(),
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
        }
    }

    /// The breaker this layer uses.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, R: Clone> Layer<S> for CircuitBreakerLayer<R> {
    type Service = CircuitBreakerService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::with_recorder(inner, self.breaker.clone(), self.recorder.clone())
    }
}
