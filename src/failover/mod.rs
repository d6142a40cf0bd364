//! Try an ordered list of providers: the first whose breaker permits gets the call, and the
//! next one gets it when that fails.
//!
//! Each provider is a service (usually its own stack: breaker, bulkhead, timeout, and an
//! adapter that rewrites the request, say the model name) plus, optionally, a handle to its
//! breaker. A provider whose breaker would reject the call (open, rate-limited, or half-open
//! with every probe slot taken) is skipped without a network call. When every provider fails,
//! the error is an [`AllProvidersFailed`] that lists each provider and why.
//!
//! All providers must have one service type: box heterogeneous stacks with
//! `tower::util::BoxCloneService`.
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn, util::BoxCloneService};
//! use tower_breaker::BoxError;
//! use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
//! use tower_breaker::failover::Failover;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let primary = CircuitBreaker::builder("primary")
//!     .sliding_window(SlidingWindow::consecutive(1))
//!     .build()?;
//! let down = ServiceBuilder::new()
//!     .layer(primary.layer())
//!     .service(service_fn(|_: String| async { Err::<String, BoxError>("503".into()) }));
//! let backup = service_fn(|q: String| async move { Ok::<_, BoxError>(format!("backup: {q}")) });
//!
//! let mut failover = Failover::builder()
//!     .provider("primary", Some(primary.clone()), BoxCloneService::new(down))
//!     .provider("backup", None, BoxCloneService::new(backup))
//!     .build();
//!
//! assert_eq!(failover.ready().await?.call("hi".into()).await?, "backup: hi");
//! // The primary's breaker is now open: it is skipped without a call.
//! assert_eq!(failover.available(), vec!["backup"]);
//! assert_eq!(failover.ready().await?.call("hi".into()).await?, "backup: hi");
//! # Ok(())
//! # }
//! ```

mod future;

pub use self::future::ResponseFuture;

use crate::BoxError;
use crate::circuit_breaker::CircuitBreaker;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

type Adapter<Req> = Arc<dyn Fn(Req) -> Req + Send + Sync>;
type FailOver<Res> = Arc<dyn Fn(&Result<Res, BoxError>) -> bool + Send + Sync>;

pub(crate) struct Provider<S, Req> {
    pub(crate) name: Arc<str>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) service: S,
    pub(crate) adapter: Option<Adapter<Req>>,
}

pub(crate) struct Shared<S, Req, Res> {
    pub(crate) providers: Vec<Provider<S, Req>>,
    pub(crate) fail_over: Option<FailOver<Res>>,
}

/// An ordered list of providers; see the [module docs](self). Cheap to clone: clones share
/// the providers.
pub struct Failover<S, Req, Res> {
    shared: Arc<Shared<S, Req, Res>>,
}

impl<S, Req, Res> Clone for Failover<S, Req, Res> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S, Req, Res> fmt::Debug for Failover<S, Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("providers", &self.names())
            .finish()
    }
}

impl<S, Req, Res> Failover<S, Req, Res> {
    /// An empty builder.
    pub fn builder() -> Builder<S, Req, Res> {
        Builder {
            providers: Vec::new(),
            fail_over: None,
        }
    }

    /// The providers' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.shared.providers.iter().map(|p| &*p.name).collect()
    }

    /// The providers whose breakers would permit a call now (those without a breaker always
    /// would), in order.
    pub fn available(&self) -> Vec<&str> {
        self.shared
            .providers
            .iter()
            .filter(|p| p.breaker.as_ref().is_none_or(|b| b.is_call_permitted()))
            .map(|p| &*p.name)
            .collect()
    }
}

/// Builds a [`Failover`].
pub struct Builder<S, Req, Res> {
    providers: Vec<Provider<S, Req>>,
    fail_over: Option<FailOver<Res>>,
}

impl<S, Req, Res> fmt::Debug for Builder<S, Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res> Builder<S, Req, Res> {
    /// Adds a provider. `breaker` is the handle of the breaker inside `service` (if any); it
    /// is only asked whether it would permit a call, so that an open provider is skipped
    /// without a call.
    pub fn provider(
        mut self,
        name: impl Into<Arc<str>>,
        breaker: Option<CircuitBreaker>,
        service: S,
    ) -> Self {
        self.providers.push(Provider {
            name: name.into(),
            breaker,
            service,
            adapter: None,
        });
        self
    }

    /// Adds a provider whose requests are rewritten by `adapter` first (for example, to name
    /// this provider's model).
    pub fn provider_with_adapter(
        mut self,
        name: impl Into<Arc<str>>,
        breaker: Option<CircuitBreaker>,
        service: S,
        adapter: impl Fn(Req) -> Req + Send + Sync + 'static,
    ) -> Self {
        self.providers.push(Provider {
            name: name.into(),
            breaker,
            service,
            adapter: Some(Arc::new(adapter)),
        });
        self
    }

    /// Which results move on to the next provider. Default: every error. Use it to fail over
    /// on answers that are errors in disguise (an HTTP 503 that a service returned as `Ok`).
    pub fn fail_over_when(
        mut self,
        predicate: impl Fn(&Result<Res, BoxError>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.fail_over = Some(Arc::new(predicate));
        self
    }

    /// The failover. With no provider, every call fails with [`AllProvidersFailed`].
    pub fn build(self) -> Failover<S, Req, Res> {
        Failover {
            shared: Arc::new(Shared {
                providers: self.providers,
                fail_over: self.fail_over,
            }),
        }
    }
}

impl<S, Req, Res> Service<Req> for Failover<S, Req, Res>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, Res>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each provider is polled ready inside the call, once it is chosen.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.shared.clone(), req)
    }
}

/// Why one provider did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    /// The provider's name.
    pub provider: Arc<str>,
    /// True when it was skipped without a call (its breaker would not permit one, or its own
    /// breaker or bulkhead rejected the call: [`Rejection::of`](crate::rejection::Rejection::of)).
    pub skipped: bool,
    /// What went wrong.
    pub reason: String,
    /// When the provider's breaker expects to let a call through again, if known.
    pub retry_after: Option<Duration>,
}

/// Every provider failed or was skipped. Lists each one and why.
#[derive(Debug, Clone)]
pub struct AllProvidersFailed {
    pub(crate) failures: Vec<ProviderFailure>,
}

impl AllProvidersFailed {
    /// One entry per provider, in order.
    pub fn failures(&self) -> &[ProviderFailure] {
        &self.failures
    }

    /// The soonest any provider expects to take calls again, for a `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.failures.iter().filter_map(|f| f.retry_after).min()
    }
}

impl fmt::Display for AllProvidersFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return f.write_str("no provider is configured");
        }
        f.write_str("every provider failed: ")?;
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let how = if failure.skipped { "skipped" } else { "failed" };
            write!(f, "{} {how}: {}", failure.provider, failure.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for AllProvidersFailed {}
