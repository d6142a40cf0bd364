//! `ServiceBuilder` methods for this crate's layers, in the style of tower-http's
//! `ServiceBuilderExt`.

use crate::bulkhead::{Bulkhead, BulkheadLayer};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use tower::ServiceBuilder;
use tower::layer::util::Stack;

/// `ServiceBuilder` methods for this crate's layers, in the style of tower-http.
///
/// The breaker and bulkhead methods need no feature; `standard_resilience` needs `stack`.
///
/// ```
/// use tower::{ServiceBuilder, service_fn};
/// use tower_breaker::ServiceBuilderExt;
/// use tower_breaker::bulkhead::Bulkhead;
/// use tower_breaker::circuit_breaker::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("search").build()?;
/// let bulkhead = Bulkhead::builder("search").max_concurrent(32).build()?;
/// let svc = ServiceBuilder::new()
///     .circuit_breaker(&breaker) // outside: an open breaker rejects before a slot is taken
///     .bulkhead(&bulkhead)
///     .service(service_fn(|q: String| async move { Ok::<_, tower::BoxError>(q) }));
/// # let _ = svc;
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds `breaker.layer()`: one breaker shared by every service built.
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Adds `bulkhead.layer()`.
    fn bulkhead(self, bulkhead: &Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// Adds a [`StandardResilience`](crate::stack::StandardResilience) stack, or its per-key
    /// form (feature `stack`).
    #[cfg(feature = "stack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
    fn standard_resilience<T: sealed::StandardStack>(self, stack: T)
    -> ServiceBuilder<Stack<T, L>>;
}

// The stack module implements `StandardStack` for its types: it depends on this module, never
// the other way round.
pub(crate) mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}

    /// The one-call stacks of `crate::stack`, which `standard_resilience` takes.
    #[cfg(feature = "stack")]
    pub trait StandardStack {}
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(breaker.layer())
    }

    fn bulkhead(self, bulkhead: &Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(bulkhead.layer())
    }

    #[cfg(feature = "stack")]
    fn standard_resilience<T: sealed::StandardStack>(
        self,
        stack: T,
    ) -> ServiceBuilder<Stack<T, L>> {
        self.layer(stack)
    }
}
