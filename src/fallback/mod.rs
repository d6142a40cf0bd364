//! Answer something useful when a call fails: from a function, from a cache of the last good
//! answers, or from a backup service.
//!
//! [`FallbackLayer`] sits outermost: it sees every error of the stack below it (an open
//! breaker, a full bulkhead, a timeout, the upstream's own error) and, when its predicate says
//! so, answers from its [`FallbackSource`] instead. Every answer it serves is reported to its
//! listeners as a [`FallbackEvent`].
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
//! use tower_breaker::fallback::FallbackLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder("llm")
//!     .sliding_window(SlidingWindow::consecutive(1))
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::from_fn(|_failed| Ok("the assistant is busy, try again soon")))
//!     .layer(breaker.layer())
//!     .service(service_fn(|_: ()| async { Err::<&str, _>("503") }));
//!
//! // The upstream fails, the breaker opens; the caller gets an answer either way.
//! assert_eq!(svc.ready().await?.call(()).await?, "the assistant is busy, try again soon");
//! assert_eq!(svc.ready().await?.call(()).await?, "the assistant is busy, try again soon");
//! # Ok(())
//! # }
//! ```
//!
//! A cache of good answers, served while the upstream is failing:
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::fallback::FallbackLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
//! let flag = fail.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::cache(|q: &String| Some(q.clone()), Duration::from_secs(300), 10_000))
//!     .service(service_fn(move |q: String| {
//!         let fail = flag.load(std::sync::atomic::Ordering::Relaxed);
//!         async move { if fail { Err("down") } else { Ok(format!("answer to {q}")) } }
//!     }));
//! assert_eq!(svc.ready().await?.call("weather".into()).await?, "answer to weather");
//! fail.store(true, std::sync::atomic::Ordering::Relaxed);
//! assert_eq!(svc.ready().await?.call("weather".into()).await?, "answer to weather"); // cached
//! assert!(svc.ready().await?.call("news".into()).await.is_err()); // nothing cached
//! # Ok(())
//! # }
//! ```

mod source;

pub use self::source::{Backup, Cache, FallbackSource, FromFn, Oneshot};

use crate::BoxError;
use crate::events::{Listener, Listeners};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// Decides which results get a fallback answer. Closures `Fn(&Result<Res, BoxError>) -> bool`
/// implement it.
///
/// ```
/// use tower_breaker::BoxError;
/// use tower_breaker::fallback::ShouldFallback;
///
/// /// Falls back on errors and on empty answers.
/// #[derive(Clone)]
/// struct ErrorOrEmpty;
///
/// impl ShouldFallback<String> for ErrorOrEmpty {
///     fn should_fallback(&self, result: &Result<String, BoxError>) -> bool {
///         result.as_ref().map_or(true, |s| s.is_empty())
///     }
/// }
/// assert!(ErrorOrEmpty.should_fallback(&Ok(String::new())));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot decide on a `Result<{Res}, BoxError>`",
    label = "no `ShouldFallback<{Res}>`",
    note = "closures `Fn(&Result<{Res}, BoxError>) -> bool` implement `ShouldFallback`; `OnError` and `OnRejection` take any response; `OnFailure(classifier)` needs a `Classify<{Res}, BoxError>`"
)]
pub trait ShouldFallback<Res> {
    /// True when `result` should be replaced by a fallback answer.
    fn should_fallback(&self, result: &Result<Res, BoxError>) -> bool;
}

impl<Res, F> ShouldFallback<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> bool,
{
    fn should_fallback(&self, result: &Result<Res, BoxError>) -> bool {
        self(result)
    }
}

/// Falls back on every error (the default predicate).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnError;

impl<Res> ShouldFallback<Res> for OnError {
    fn should_fallback(&self, result: &Result<Res, BoxError>) -> bool {
        result.is_err()
    }
}

/// Falls back only when the call was rejected without reaching the upstream: an open breaker
/// ([`CircuitOpen`](crate::circuit_breaker::CircuitOpen)), a rate-limit cool-down
/// ([`RateLimited`](crate::circuit_breaker::RateLimited)), a held call that gave up
/// ([`HoldRejected`](crate::circuit_breaker::HoldRejected)) or a full bulkhead, anywhere in the
/// error's `source()` chain ([`Rejection::of`](crate::rejection::Rejection::of)).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnRejection;

impl<Res> ShouldFallback<Res> for OnRejection {
    fn should_fallback(&self, result: &Result<Res, BoxError>) -> bool {
        matches!(result, Err(e) if crate::rejection::Rejection::of(e.as_ref()).is_some())
    }
}

/// Falls back on every error, and on every response that the classifier `C` counts as a
/// failure: with the retry policy's classifier ([`RetryOnStatus`](crate::retry::RetryOnStatus)
/// for HTTP), a 503, 529 or 429 that the retry gave up on gets a fallback answer instead of
/// reaching the caller as an `Ok`, which [`OnError`] would let through.
///
/// ```
/// use tower_breaker::{BoxError, Outcome};
/// use tower_breaker::fallback::{OnFailure, ShouldFallback};
///
/// // Any `Classify` works; here, a closure that fails empty answers.
/// let empty_is_failure = OnFailure(|r: &Result<String, BoxError>| match r {
///     Ok(s) if !s.is_empty() => Outcome::Success,
///     _ => Outcome::Failure,
/// });
/// assert!(empty_is_failure.should_fallback(&Ok(String::new())));
/// assert!(!empty_is_failure.should_fallback(&Ok("hello".to_string())));
/// assert!(empty_is_failure.should_fallback(&Err("down".into())));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OnFailure<C>(pub C);

impl<Res, C> ShouldFallback<Res> for OnFailure<C>
where
    C: crate::Classify<Res, BoxError>,
{
    fn should_fallback(&self, result: &Result<Res, BoxError>) -> bool {
        result.is_err() || self.0.classify(result) == crate::Outcome::Failure
    }
}

/// Marks an answer as served by a fallback (for HTTP, an extension on the response). The
/// default marks nothing.
pub trait MarkFallback<Res> {
    /// Called on every fallback answer before it is returned.
    fn mark(&self, res: &mut Res, served: &FallbackServed);
}

/// Marks nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMark;

impl<Res> MarkFallback<Res> for NoMark {
    fn mark(&self, _res: &mut Res, _served: &FallbackServed) {}
}

/// What a fallback answer replaced. Inserted as an extension on HTTP responses by
/// [`MarkExtension`] (feature `http`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackServed {
    /// The fallback's name.
    pub name: Arc<str>,
    /// The source that answered: "fn", "cache", "backup" or "custom".
    pub source: &'static str,
    /// Why: the error's message, or "rejected response".
    pub reason: String,
}

/// Inserts [`FallbackServed`] as an extension of every fallback `http::Response` (and, with the
/// `reqwest` feature, `reqwest::Response`).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkExtension;

#[cfg(feature = "http")]
impl<B> MarkFallback<http::Response<B>> for MarkExtension {
    fn mark(&self, res: &mut http::Response<B>, served: &FallbackServed) {
        res.extensions_mut().insert(served.clone());
    }
}

#[cfg(feature = "reqwest")]
impl MarkFallback<reqwest::Response> for MarkExtension {
    fn mark(&self, res: &mut reqwest::Response, served: &FallbackServed) {
        res.extensions_mut().insert(served.clone());
    }
}

/// A fallback answer was served.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// A failed call was answered by the fallback.
    Served(FallbackServed),
    /// The fallback itself failed; the caller gets its error.
    Failed {
        /// The fallback's name.
        name: Arc<str>,
        /// The fallback's error message.
        reason: String,
    },
}

/// Answers failed calls from a [`FallbackSource`].
///
/// Cloning the layer shares its source (and so a cache) between every service it wraps.
pub struct FallbackLayer<F, P = OnError, M = NoMark> {
    source: F,
    predicate: P,
    mark: M,
    name: Arc<str>,
    listeners: Listeners<FallbackEvent>,
}

impl<F: Clone, P: Clone, M: Clone> Clone for FallbackLayer<F, P, M> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            predicate: self.predicate.clone(),
            mark: self.mark.clone(),
            name: self.name.clone(),
            listeners: self.listeners.clone(),
        }
    }
}

impl<F: fmt::Debug, P: fmt::Debug, M: fmt::Debug> fmt::Debug for FallbackLayer<F, P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("predicate", &self.predicate)
            .field("mark", &self.mark)
            .finish()
    }
}

impl<F> FallbackLayer<F> {
    /// A fallback answering from `source`, on every error.
    pub fn new(source: F) -> Self {
        Self {
            source,
            predicate: OnError,
            mark: NoMark,
            name: Arc::from("fallback"),
            listeners: Listeners::new(),
        }
    }
}

impl<G> FallbackLayer<FromFn<G>> {
    /// Answers from `f(failed)`: a static answer, a "temporarily unavailable" answer, or the
    /// error passed on (`Err`) when the function has nothing better.
    pub fn from_fn(f: G) -> Self {
        Self::new(FromFn::new(f))
    }
}

impl<K, Res, KF> FallbackLayer<Cache<K, Res, KF>> {
    /// Keeps a recent good answer for each key `key(&request)` (`None`: not cached) and serves
    /// it for a failed call while it is younger than `ttl`. At most `max_entries` answers are
    /// kept (at least 1). A stored answer is replaced by a newer good one at most once per
    /// eighth of `ttl`, so good calls in between cost no lock and no clone; see [`Cache`].
    pub fn cache(key: KF, ttl: Duration, max_entries: usize) -> Self {
        Self::new(Cache::new(key, ttl, max_entries.max(1)))
    }
}

impl<S> FallbackLayer<Backup<S>> {
    /// Calls `backup` with a clone of the request when a call fails.
    pub fn backup(backup: S) -> Self {
        Self::new(Backup::new(backup))
    }
}

impl<F, P, M> FallbackLayer<F, P, M> {
    /// Which results get a fallback answer. Default: [`OnError`].
    pub fn on<P2>(self, predicate: P2) -> FallbackLayer<F, P2, M> {
        FallbackLayer {
            source: self.source,
            predicate,
            mark: self.mark,
            name: self.name,
            listeners: self.listeners,
        }
    }

    /// How fallback answers are marked. Default: [`NoMark`].
    pub fn mark<M2>(self, mark: M2) -> FallbackLayer<F, P, M2> {
        FallbackLayer {
            source: self.source,
            predicate: self.predicate,
            mark,
            name: self.name,
            listeners: self.listeners,
        }
    }

    /// The name in events and logs. Default "fallback".
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a listener for [`FallbackEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<FallbackEvent>) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The source (for example, to inspect a cache).
    pub fn source(&self) -> &F {
        &self.source
    }
}

impl<S, F: Clone, P: Clone, M: Clone> Layer<S> for FallbackLayer<F, P, M> {
    type Service = Fallback<S, F, P, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            config: Arc::new(self.clone()),
        }
    }
}

/// A service that answers failed calls from a fallback source; made by [`FallbackLayer`].
pub struct Fallback<S, F, P = OnError, M = NoMark> {
    inner: S,
    /// Shared with every call's future: one count increment per call, where a copy of the
    /// layer cloned its source, predicate, mark and listener list.
    config: Arc<FallbackLayer<F, P, M>>,
}

impl<S: Clone, F: Clone, P: Clone, M: Clone> Clone for Fallback<S, F, P, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, F: fmt::Debug, P: fmt::Debug, M: fmt::Debug> fmt::Debug
    for Fallback<S, F, P, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, F, P, M> Fallback<S, F, P, M> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, P, M, Req> Service<Req> for Fallback<S, F, P, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: FallbackSource<Req, S::Response> + Clone,
    P: ShouldFallback<S::Response> + Clone,
    M: MarkFallback<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F, P, M, Req, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // An inner service that cannot become ready has no request to answer for: pass the
        // error on.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let prepared = self.config.source.prepare(&req);
        ResponseFuture {
            state: State::Calling {
                future: self.inner.call(req),
                prepared: Some(prepared),
            },
            config: self.config.clone(),
            _types: PhantomData,
        }
    }
}

pin_project! {
    /// The future of a [`Fallback`] call.
    pub struct ResponseFuture<Fut, F, P, M, Req, Res>
    where
        F: FallbackSource<Req, Res>,
    {
        #[pin]
        state: State<Fut, F::State, F::Future>,
        config: Arc<FallbackLayer<F, P, M>>,
        _types: PhantomData<fn(Req) -> Res>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, St, FF> {
        Calling { #[pin] future: Fut, prepared: Option<St> },
        Falling { #[pin] future: FF, served: Option<FallbackServed> },
    }
}

impl<Fut, F, P, M, Req, Res> fmt::Debug for ResponseFuture<Fut, F, P, M, Req, Res>
where
    F: FallbackSource<Req, Res>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("fallback", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl<Fut, F, P, M, Req, Res, E> Future for ResponseFuture<Fut, F, P, M, Req, Res>
where
    Fut: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    F: FallbackSource<Req, Res>,
    P: ShouldFallback<Res>,
    M: MarkFallback<Res>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, prepared } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let Some(prepared) = prepared.take() else {
                        return Poll::Ready(Err("fallback future polled after completion".into()));
                    };
                    if !this.config.predicate.should_fallback(&result) {
                        if let Ok(res) = &result {
                            this.config.source.succeeded(&prepared, res);
                        }
                        return Poll::Ready(result);
                    }
                    let served = FallbackServed {
                        name: this.config.name.clone(),
                        source: this.config.source.kind(),
                        reason: match &result {
                            Err(e) => e.to_string(),
                            Ok(_) => "rejected response".to_string(),
                        },
                    };
                    let future = this.config.source.answer(prepared, result);
                    this.state.set(State::Falling {
                        future,
                        served: Some(served),
                    });
                }
                StateProj::Falling { future, served } => {
                    let result = ready!(future.poll(cx));
                    let served = served.take();
                    return Poll::Ready(match (result, served) {
                        (Ok(mut res), Some(served)) => {
                            tracing::debug!(
                                fallback = %served.name,
                                source = served.source,
                                reason = %served.reason,
                                "fallback answer served"
                            );
                            this.config.mark.mark(&mut res, &served);
                            this.config.listeners.emit(|| FallbackEvent::Served(served));
                            Ok(res)
                        }
                        (Ok(res), None) => Ok(res),
                        (Err(e), _) => {
                            this.config.listeners.emit(|| FallbackEvent::Failed {
                                name: this.config.name.clone(),
                                reason: e.to_string(),
                            });
                            Err(e)
                        }
                    });
                }
            }
        }
    }
}

/// The `Retry-After` of [`service_unavailable`] when neither the error nor the failed
/// response says how long to wait: 5 s, the open time of the standard stack's breaker
/// ([`StandardResilience`](crate::stack::StandardResilience)). Pick your own with
/// [`service_unavailable_after`] (your breaker's `wait_in_open`, say).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A ready-made "service temporarily unavailable" answer for HTTP: a `503` with an empty body
/// and always a `Retry-After`, in whole seconds rounded up (at least 1), taken from, in order:
///
/// 1. the error, when it knows one ([`retry_after_of`]: an open breaker, a rate-limit
///    cool-down, a failover whose providers are all down, a held call that gave up);
/// 2. the failed response's own `retry-after-ms` or `Retry-After` (a 503 or 429 that the
///    retry gave up on before the breaker opened);
/// 3. otherwise [`DEFAULT_RETRY_AFTER`] (5 s); [`service_unavailable_after`] sets another.
///
/// For `http::Response<B>` (any `B: Default`) and, with the `reqwest` feature,
/// `reqwest::Response`. Use it with [`FallbackLayer::from_fn`]:
///
/// ```
/// use tower_breaker::fallback::{FallbackLayer, MarkExtension, service_unavailable};
///
/// let layer = FallbackLayer::from_fn(service_unavailable::<http::Response<String>>).mark(MarkExtension);
/// # let _ = layer;
/// ```
///
/// Over reqwest, with [`OnFailure`] so that a 503 or 429 the retry gave up on is answered too:
///
/// ```
/// use tower_breaker::fallback::{FallbackLayer, MarkExtension, OnFailure, service_unavailable};
/// use tower_breaker::retry::RetryOnStatus;
///
/// let layer = FallbackLayer::from_fn(service_unavailable::<reqwest::Response>)
///     .on(OnFailure(RetryOnStatus::llm()))
///     .mark(MarkExtension);
/// # let _ = layer;
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn service_unavailable<R: UnavailableResponse>(
    failed: Result<R, BoxError>,
) -> Result<R, BoxError> {
    unavailable(failed, DEFAULT_RETRY_AFTER)
}

/// [`service_unavailable`] with `default` as the `Retry-After` when neither the error nor the
/// failed response has one.
///
/// ```
/// use std::time::Duration;
/// use tower_breaker::fallback::{FallbackLayer, service_unavailable_after};
///
/// // The breaker's own open time: clients come back when it probes.
/// let layer = FallbackLayer::from_fn(service_unavailable_after::<http::Response<String>>(
///     Duration::from_secs(15),
/// ));
/// # let _ = layer;
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn service_unavailable_after<R: UnavailableResponse>(
    default: Duration,
) -> impl Fn(Result<R, BoxError>) -> Result<R, BoxError> + Clone + Send + Sync + 'static {
    move |failed| unavailable(failed, default)
}

#[cfg(feature = "http")]
fn unavailable<R: UnavailableResponse>(
    failed: Result<R, BoxError>,
    default: Duration,
) -> Result<R, BoxError> {
    let wait = match &failed {
        Err(e) => retry_after_of(e.as_ref()),
        Ok(res) => res.retry_after(),
    }
    .unwrap_or(default);
    // Whole seconds, rounded up so that clients do not come back early; never 0, which would
    // invite them straight back to a service that just failed.
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    Ok(R::service_unavailable(Some(secs)))
}

/// A response type [`service_unavailable`] can build: `http::Response<B>` with a `Default`
/// body, and `reqwest::Response` (feature `reqwest`).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[diagnostic::on_unimplemented(
    message = "`service_unavailable` cannot build a `{Self}`",
    label = "not an HTTP response type with an empty body",
    note = "use it with `http::Response<B>` where `B: Default`, or `reqwest::Response` (feature `reqwest`)"
)]
pub trait UnavailableResponse: Sized {
    /// A 503 with an empty body and, when given, a `Retry-After` of `retry_after_secs`.
    fn service_unavailable(retry_after_secs: Option<u64>) -> Self;

    /// The wait this (failed) response asks for: its `retry-after-ms` or `Retry-After`
    /// ([`crate::http::retry_after`]). The default: none.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

#[cfg(feature = "http")]
impl<B: Default> UnavailableResponse for http::Response<B> {
    fn service_unavailable(retry_after_secs: Option<u64>) -> Self {
        let mut res = http::Response::new(B::default());
        *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        if let Some(secs) = retry_after_secs {
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        res
    }

    fn retry_after(&self) -> Option<Duration> {
        crate::http::retry_after(self.headers())
    }
}

#[cfg(feature = "reqwest")]
impl UnavailableResponse for reqwest::Response {
    fn service_unavailable(retry_after_secs: Option<u64>) -> Self {
        reqwest::Response::from(http::Response::<reqwest::Body>::service_unavailable(
            retry_after_secs,
        ))
    }

    fn retry_after(&self) -> Option<Duration> {
        crate::http::retry_after(self.headers())
    }
}

/// The wait an error of this crate carries, if any: a rejection's
/// ([`Rejection::retry_after`](crate::rejection::Rejection::retry_after), found anywhere in the
/// `source()` chain), or the soonest of a failover's providers.
pub fn retry_after_of(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    if let Some(rejection) = crate::rejection::Rejection::of(error) {
        return rejection.retry_after();
    }
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(e) = error.downcast_ref::<crate::failover::AllProvidersFailed>() {
            return e.retry_after();
        }
        next = error.source();
    }
    None
}
