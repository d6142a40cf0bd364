use super::{AdaptiveBulkhead, AdaptivePermit, Signal};
use crate::BoxError;
use crate::bulkhead::AcquireError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// Turns a call's result into a [`Signal`] for the adaptive limit. Closures
/// `Fn(Result<&Res, &BoxError>) -> Signal` are classifiers.
///
/// ```
/// use tower_breaker::BoxError;
/// use tower_breaker::bulkhead::{ClassifySignal, Signal};
///
/// let by_status = |result: Result<&u16, &BoxError>| match result {
///     Ok(429 | 529) => Signal::Congestion,
///     Ok(_) => Signal::Success,
///     Err(_) => Signal::Ignore,
/// };
/// assert_eq!(by_status.classify(Ok(&529)), Signal::Congestion);
/// ```
pub trait ClassifySignal<Res> {
    /// The signal of one call's result.
    fn classify(&self, result: Result<&Res, &BoxError>) -> Signal;
}

impl<Res, F: Fn(Result<&Res, &BoxError>) -> Signal> ClassifySignal<Res> for F {
    fn classify(&self, result: Result<&Res, &BoxError>) -> Signal {
        self(result)
    }
}

/// The default classifier: an answer is a success; a timeout (tokio's, tower's, an I/O
/// `TimedOut`, and with the `stream` feature the stream guard's
/// [`FirstTokenTimeout`](crate::stream::FirstTokenTimeout) and
/// [`StreamIdle`](crate::stream::StreamIdle): a provider that stalls before or between tokens
/// is overloaded) is congestion; other errors say nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSignals;

impl<Res> ClassifySignal<Res> for DefaultSignals {
    fn classify(&self, result: Result<&Res, &BoxError>) -> Signal {
        match result {
            Ok(_) => Signal::Success,
            Err(error) if is_timeout(error) => Signal::Congestion,
            Err(_) => Signal::Ignore,
        }
    }
}

/// True when `error`, or an error it wraps, is a timeout.
fn is_timeout(error: &BoxError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = current {
        if e.is::<tokio::time::error::Elapsed>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        #[cfg(feature = "stack")]
        if e.is::<tower::timeout::error::Elapsed>() {
            return true;
        }
        #[cfg(feature = "stream")]
        if e.is::<crate::stream::FirstTokenTimeout>() || e.is::<crate::stream::StreamIdle>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Classifies `http::Response`s (feature `http`): 429, 503 and 529 are congestion, other
/// answers successes; errors as [`DefaultSignals`].
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpSignals;

#[cfg(feature = "http")]
impl<B> ClassifySignal<::http::Response<B>> for HttpSignals {
    fn classify(&self, result: Result<&::http::Response<B>, &BoxError>) -> Signal {
        match result {
            Ok(response) if matches!(response.status().as_u16(), 429 | 503 | 529) => {
                Signal::Congestion
            }
            other => DefaultSignals.classify(other),
        }
    }
}

/// Wraps services with an [`AdaptiveBulkhead`]. Clones share the bulkhead.
///
/// The slot is taken in the response future (so `poll_ready` is the inner service's, and the
/// ready inner service moves into the future, which needs it to be `Clone`); the latency
/// sample is the time until the inner future answers, which for an HTTP client is the
/// response head. For a streamed answer, the slot is given back at the head too; to hold it
/// until the stream ends and sample the time to first token, use the handle
/// ([`AdaptiveBulkhead::acquire`], [`AdaptivePermit::first_token`]).
#[derive(Debug, Clone)]
pub struct AdaptiveBulkheadLayer<C = DefaultSignals> {
    bulkhead: AdaptiveBulkhead,
    classifier: C,
}

impl AdaptiveBulkheadLayer {
    /// A layer for `bulkhead`, classifying with [`DefaultSignals`].
    pub fn new(bulkhead: AdaptiveBulkhead) -> Self {
        Self {
            bulkhead,
            classifier: DefaultSignals,
        }
    }
}

impl<C> AdaptiveBulkheadLayer<C> {
    /// Classifies results with `classifier` (for HTTP: [`HttpSignals`]).
    pub fn classify<C2>(self, classifier: C2) -> AdaptiveBulkheadLayer<C2> {
        AdaptiveBulkheadLayer {
            bulkhead: self.bulkhead,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveBulkheadLayer<C> {
    type Service = AdaptiveBulkheadService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveBulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// The service of an [`AdaptiveBulkheadLayer`].
#[derive(Debug, Clone)]
pub struct AdaptiveBulkheadService<S, C = DefaultSignals> {
    inner: S,
    bulkhead: AdaptiveBulkhead,
    classifier: C,
}

impl<S, C> AdaptiveBulkheadService<S, C> {
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

type Acquire = Pin<Box<dyn Future<Output = Result<AdaptivePermit, AcquireError>> + Send>>;

impl<S, C, Req> Service<Req> for AdaptiveBulkheadService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: ClassifySignal<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdaptiveResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let classifier = self.classifier.clone();
        let kind = match self.bulkhead.shared.semaphore.try_acquire() {
            Ok(permit) => {
                permit.forget();
                let permit = self.bulkhead.shared.permitted(std::time::Duration::ZERO);
                Kind::Calling {
                    future: ready.call(req),
                    permit: Some(permit),
                }
            }
            Err(_) if self.bulkhead.shared.max_queue == 0 => Kind::Rejected {
                error: Some(self.bulkhead.shared.reject_full().into()),
            },
            Err(_) => {
                let bulkhead = self.bulkhead.clone();
                Kind::Waiting {
                    acquire: Box::pin(async move { bulkhead.acquire().await }),
                    service: Some(ready),
                    req: Some(req),
                }
            }
        };
        AdaptiveResponseFuture { kind, classifier }
    }
}

pin_project! {
    /// The future of an [`AdaptiveBulkheadService`] call: waits for a slot when it must,
    /// calls the inner service, and records the result's signal and latency.
    pub struct AdaptiveResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Waiting { acquire: Acquire, service: Option<S>, req: Option<Req> },
        Calling { #[pin] future: S::Future, permit: Option<AdaptivePermit> },
        Rejected { error: Option<BoxError> },
    }
}

fn polled_after_completion() -> BoxError {
    "adaptive bulkhead future polled after completion".into()
}

impl<S, Req, C> Future for AdaptiveResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: ClassifySignal<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Waiting {
                    acquire,
                    service,
                    req,
                } => {
                    let acquired = ready!(acquire.as_mut().poll(cx));
                    let (Some(mut service), Some(req)) = (service.take(), req.take()) else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let next = match acquired {
                        Ok(permit) => Kind::Calling {
                            future: service.call(req),
                            permit: Some(permit),
                        },
                        Err(AcquireError::Full(e)) => Kind::Rejected {
                            error: Some(e.into()),
                        },
                        Err(AcquireError::Timeout(e)) => Kind::Rejected {
                            error: Some(e.into()),
                        },
                    };
                    this.kind.set(next);
                }
                KindProj::Calling { future, permit } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    if let Some(permit) = permit.take() {
                        permit.record(this.classifier.classify(result.as_ref()));
                    }
                    return Poll::Ready(result);
                }
                KindProj::Rejected { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(polled_after_completion)));
                }
            }
        }
    }
}

impl<S, Req, C> fmt::Debug for AdaptiveResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Waiting { .. } => "waiting",
            Kind::Calling { .. } => "calling",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("AdaptiveResponseFuture")
            .field("state", &state)
            .finish()
    }
}
