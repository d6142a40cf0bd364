use super::{CircuitBreaker, CircuitBreakerService};
use crate::outcome::DefaultClassifier;
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
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer for `breaker` with the default classifier (`Ok` succeeds, `Err` fails).
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Uses `classifier` to turn each result into an [`Outcome`](crate::Outcome).
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker this layer uses.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::with_classifier(inner, self.breaker.clone(), self.classifier.clone())
    }
}
