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

    /// Adds a [`StandardResilience`](crate::stack::StandardResilience) stack (feature `stack`).
    #[cfg(feature = "stack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
    fn standard_resilience<C, P, R, I>(
        self,
        stack: crate::stack::StandardResilience<C, P, R, I>,
    ) -> ServiceBuilder<Stack<crate::stack::StandardResilience<C, P, R, I>, L>>;
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
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
    fn standard_resilience<C, P, R, I>(
        self,
        stack: crate::stack::StandardResilience<C, P, R, I>,
    ) -> ServiceBuilder<Stack<crate::stack::StandardResilience<C, P, R, I>, L>> {
        self.layer(stack)
    }
}
