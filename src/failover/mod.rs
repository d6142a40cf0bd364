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
//! `tower::util::BoxCloneSyncService`. (A `BoxCloneService` is not `Sync`, so a `Failover`
//! of them, which shares its providers behind an `Arc`, and its futures are not `Send`: no
//! `tokio::spawn`, no axum handler.)
//!
//! # What the caller learns
//!
//! - With a [`FailoverProtocol`] that marks answers ([`HttpRequests`] for `http::Response`
//!   and `reqwest::Response`), the answer carries a [`FailoverReport`] extension: which
//!   provider answered, and each provider tried or skipped, with its attempts.
//! - When a provider's answer is an `Ok` that [`fail_over_when`](Builder::fail_over_when)
//!   rejects (a 4xx, say) and no later provider answers better, the caller gets that answer
//!   (the last one rejected, with its status and body), not an error.
//! - When every provider fails with an error or is skipped, the error is an
//!   [`AllProvidersFailed`] that lists each one and why.
//!
//! # Providers chosen per request
//!
//! [`providers_for`](Builder::providers_for) picks the list for each request by name (a
//! fallback model named in the request, a route's own order) from one `Failover`.
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

mod attempts;
mod future;
mod protocol;

pub use self::attempts::count_attempt;
pub use self::future::ResponseFuture;
#[cfg(feature = "http")]
pub use self::protocol::HttpRequests;
pub use self::protocol::{Cloneable, FailoverProtocol, TryLast};

use crate::BoxError;
use crate::circuit_breaker::CircuitBreaker;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

type Adapter<Req> = Arc<dyn Fn(Req) -> Req + Send + Sync>;
type FailOver<Res> = Arc<dyn Fn(&Result<Res, BoxError>) -> bool + Send + Sync>;
type Select<Req> = Arc<dyn Fn(&Req) -> Option<Vec<Arc<str>>> + Send + Sync>;

pub(crate) struct Provider<S, Req> {
    pub(crate) name: Arc<str>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) service: S,
    pub(crate) adapter: Option<Adapter<Req>>,
}

pub(crate) struct Shared<S, Req, Res, P> {
    pub(crate) providers: Vec<Provider<S, Req>>,
    pub(crate) fail_over: Option<FailOver<Res>>,
    pub(crate) select: Option<Select<Req>>,
    pub(crate) protocol: P,
}

/// An ordered list of providers; see the [module docs](self). Cheap to clone: clones share
/// the providers.
///
/// When every provider fails, the error lists each one's failure:
///
/// ```
/// use tower::{Service, ServiceExt, service_fn, util::BoxCloneService};
/// use tower_breaker::BoxError;
/// use tower_breaker::failover::{AllProvidersFailed, Failover};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let down = |name: &'static str| {
///     BoxCloneService::new(service_fn(move |_: String| async move {
///         Err::<String, BoxError>(format!("{name} is down").into())
///     }))
/// };
/// let mut failover = Failover::builder()
///     .provider("openai", None, down("openai"))
///     .provider("anthropic", None, down("anthropic"))
///     .build();
/// assert_eq!(failover.names(), ["openai", "anthropic"]);
///
/// let err = failover.ready().await?.call("hi".into()).await.unwrap_err();
/// let all = err.downcast_ref::<AllProvidersFailed>().expect("every provider failed");
/// assert_eq!(all.failures().len(), 2);
/// # Ok(())
/// # }
/// ```
pub struct Failover<S, Req, Res, P = Cloneable> {
    shared: Arc<Shared<S, Req, Res, P>>,
}

impl<S, Req, Res, P> Clone for Failover<S, Req, Res, P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S, Req, Res, P> fmt::Debug for Failover<S, Req, Res, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("providers", &self.names())
            .finish()
    }
}

impl<S, Req, Res> Failover<S, Req, Res> {
    /// An empty builder, with the [`Cloneable`] protocol.
    pub fn builder() -> Builder<S, Req, Res> {
        Builder {
            providers: Vec::new(),
            fail_over: None,
            select: None,
            protocol: Cloneable,
        }
    }
}

impl<S, Req, Res, P> Failover<S, Req, Res, P> {
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
pub struct Builder<S, Req, Res, P = Cloneable> {
    providers: Vec<Provider<S, Req>>,
    fail_over: Option<FailOver<Res>>,
    select: Option<Select<Req>>,
    protocol: P,
}

impl<S, Req, Res, P> fmt::Debug for Builder<S, Req, Res, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res, P> Builder<S, Req, Res, P> {
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
    /// on answers that are errors in disguise (an HTTP 503 that a service returned as `Ok`);
    /// for LLM APIs, [`fail_over_on_provider_error`](crate::provider_error::fail_over_on_provider_error)
    /// (feature `http`). When no later provider answers better, the caller gets the last
    /// answer this rejected, as it is (its status and body), rather than an error.
    pub fn fail_over_when(
        mut self,
        predicate: impl Fn(&Result<Res, BoxError>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.fail_over = Some(Arc::new(predicate));
        self
    }

    /// Chooses the providers for each request, by name and in order: `None` keeps the
    /// builder's list. A name no provider has is reported as skipped ("no provider named ...")
    /// in the [`AllProvidersFailed`] error and the [`FailoverReport`]. One `Failover` so
    /// serves every route, each with its own list (a fallback model named in the request, say):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower::{Service, ServiceExt, service_fn, util::BoxCloneService};
    /// use tower_breaker::BoxError;
    /// use tower_breaker::failover::Failover;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let model = |name: &'static str| {
    ///     BoxCloneService::new(service_fn(move |q: (Option<&'static str>, String)| async move {
    ///         Ok::<_, BoxError>(format!("{name}: {}", q.1))
    ///     }))
    /// };
    /// let mut failover = Failover::builder()
    ///     .provider("gpt-4o", None, model("gpt-4o"))
    ///     .provider("gpt-4o-mini", None, model("gpt-4o-mini"))
    ///     .provider("claude", None, model("claude"))
    ///     // The request names its own fallback: that model first, then the default order.
    ///     .providers_for(|q: &(Option<&'static str>, String)| {
    ///         q.0.map(|first| vec![Arc::from(first), Arc::from("gpt-4o")])
    ///     })
    ///     .build();
    /// let answer = failover.ready().await?.call((Some("claude"), "hi".into())).await?;
    /// assert_eq!(answer, "claude: hi");
    /// let answer = failover.ready().await?.call((None, "hi".into())).await?;
    /// assert_eq!(answer, "gpt-4o: hi");
    /// # Ok(())
    /// # }
    /// ```
    pub fn providers_for(
        mut self,
        select: impl Fn(&Req) -> Option<Vec<Arc<str>>> + Send + Sync + 'static,
    ) -> Self {
        self.select = Some(Arc::new(select));
        self
    }

    /// How requests are copied and answers marked; see [`FailoverProtocol`]. Default:
    /// [`Cloneable`].
    pub fn protocol<P2>(self, protocol: P2) -> Builder<S, Req, Res, P2> {
        Builder {
            providers: self.providers,
            fail_over: self.fail_over,
            select: self.select,
            protocol,
        }
    }

    /// The [`HttpRequests`] protocol: `http::Request<B>` copied by `Clone`, `reqwest::Request`
    /// by `try_clone`, attempts counted, and a [`FailoverReport`] extension on the answer.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> Builder<S, Req, Res, HttpRequests> {
        self.protocol(HttpRequests)
    }

    /// The failover. With no provider, every call fails with [`AllProvidersFailed`].
    pub fn build(self) -> Failover<S, Req, Res, P> {
        Failover {
            shared: Arc::new(Shared {
                providers: self.providers,
                fail_over: self.fail_over,
                select: self.select,
                protocol: self.protocol,
            }),
        }
    }
}

impl<S, Req, Res, P> Service<Req> for Failover<S, Req, Res, P>
where
    S: Service<Req, Response = Res> + Clone,
    S::Error: Into<BoxError>,
    P: FailoverProtocol<Req, Res>,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, Res, P>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each provider is polled ready inside the call, once it is chosen.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.shared.clone(), req)
    }
}

/// What a failover did for one call; an extension of the answer with a protocol that marks
/// answers ([`HttpRequests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverReport {
    /// The provider whose answer this is.
    pub provider: Arc<str>,
    /// Each provider tried or skipped, in order (the one that answered included).
    pub tried: Vec<ProviderTry>,
}

impl FailoverReport {
    /// The entry of the provider named `name`, if it was tried or skipped.
    pub fn get(&self, name: &str) -> Option<&ProviderTry> {
        self.tried.iter().find(|t| &*t.provider == name)
    }
}

/// One provider in a [`FailoverReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderTry {
    /// The provider's name.
    pub provider: Arc<str>,
    /// What became of it.
    pub outcome: TryOutcome,
    /// The attempts it made, retries included, as counted by [`count_attempt`] in the
    /// provider's stack (the `.llm()` stack's innermost layer counts); at least 1 for a
    /// provider that was called; 0 when skipped.
    pub attempts: u32,
}

/// What became of one provider in a failover call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryOutcome {
    /// Its answer is the one returned.
    Answered,
    /// It answered, but the answer was rejected ([`Builder::fail_over_when`]) and the next
    /// provider was tried.
    Rejected,
    /// It failed with this error.
    Failed(String),
    /// It was not called: its breaker would not permit a call, its own middleware rejected the
    /// call, or the request could not be copied for it.
    Skipped(String),
}

/// Why one provider did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
