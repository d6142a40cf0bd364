//! The response futures of [`Chaos`](super::Chaos).

use super::error::ChaosError;
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Sleep;
use tower_service::Service;

/// Waits out an injected delay, if any. The timer is boxed once, only when a latency fires.
fn poll_delay(delay: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    if let Some(sleep) = delay {
        ready!(sleep.as_mut().poll(cx));
        *delay = None;
    }
    Poll::Ready(())
}

fn polled_after_completion() -> BoxError {
    Box::new(ChaosError::new(
        Arc::from("chaos"),
        Arc::from("response future polled after completion"),
    ))
}

/// Calls the inner service once the delay is over: `ready` is the ready service taken out of
/// the [`Chaos`](super::Chaos) service and the request, held while the delay runs (a call
/// dropped meanwhile never reaches the inner service), or nothing when the call was made at
/// once (no delay) or is not made at all (an injected answer).
fn start_call<S, Req>(ready: &mut Option<(S, Req)>, mut inner: Pin<&mut Option<S::Future>>)
where
    S: Service<Req>,
{
    if let Some((mut service, req)) = ready.take() {
        inner.set(Some(service.call(req)));
    }
}

pin_project! {
    /// The response future of [`Chaos`](super::Chaos) in front of any service: an injected
    /// delay, then the injected error or the inner service's answer. The inner service is
    /// called after the delay: a call dropped during it never reaches the inner service.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        delay: Option<Pin<Box<Sleep>>>,
        error: Option<ChaosError>,
        ready: Option<(S, Req)>,
        #[pin]
        inner: Option<S::Future>,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    /// The inner service's answer, called already.
    pub(crate) fn called(inner: S::Future) -> Self {
        Self {
            delay: None,
            error: None,
            ready: None,
            inner: Some(inner),
        }
    }

    /// `error` after `delay`.
    pub(crate) fn failed(delay: Option<Pin<Box<Sleep>>>, error: ChaosError) -> Self {
        Self {
            delay,
            error: Some(error),
            ready: None,
            inner: None,
        }
    }

    /// The ready `service` called with `req` once `delay` is over.
    pub(crate) fn delayed(delay: Pin<Box<Sleep>>, service: S, req: Req) -> Self {
        Self {
            delay: Some(delay),
            error: None,
            ready: Some((service, req)),
            inner: None,
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("delayed", &self.delay.is_some())
            .field("error", &self.error)
            .field("called", &self.inner.is_some())
            .finish()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        ready!(poll_delay(this.delay, cx));
        if let Some(error) = this.error.take() {
            return Poll::Ready(Err(Box::new(error)));
        }
        start_call(this.ready, this.inner.as_mut());
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx).map_err(Into::into),
            None => Poll::Ready(Err(polled_after_completion())),
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_future::HttpResponseFuture;

#[cfg(feature = "http")]
mod http_future {
    use super::super::body::ChaosBody;
    use super::super::fault::StreamFault;
    use super::{poll_delay, polled_after_completion, start_call};
    use crate::BoxError;
    use http::Response;
    use pin_project_lite::pin_project;
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, ready};
    use tokio::time::Sleep;
    use tower_service::Service;

    pin_project! {
        /// The response future of [`Chaos`](crate::chaos::Chaos) in front of an HTTP
        /// service: an injected delay, then the injected status or error, or the inner
        /// service's response with its body wrapped in a [`ChaosBody`]. The inner service is
        /// called after the delay: a call dropped during it never reaches the inner service.
        pub struct HttpResponseFuture<S, Req, B>
        where
            S: Service<Req>,
        {
            delay: Option<Pin<Box<Sleep>>>,
            answer: Option<Result<Response<ChaosBody<B>>, BoxError>>,
            // The stream fault and the layer's name (for its errors), only when one fired.
            stream: Option<(StreamFault, Arc<str>)>,
            ready: Option<(S, Req)>,
            #[pin]
            inner: Option<S::Future>,
        }
    }

    impl<S: Service<Req>, Req, B> HttpResponseFuture<S, Req, B> {
        /// The inner service's response, called already, with `stream` on its body.
        pub(crate) fn called(inner: S::Future, stream: Option<(StreamFault, Arc<str>)>) -> Self {
            Self {
                delay: None,
                answer: None,
                stream,
                ready: None,
                inner: Some(inner),
            }
        }

        /// `answer` after `delay`; the inner service is not called.
        pub(crate) fn answered(
            delay: Option<Pin<Box<Sleep>>>,
            answer: Result<Response<ChaosBody<B>>, BoxError>,
        ) -> Self {
            Self {
                delay,
                answer: Some(answer),
                stream: None,
                ready: None,
                inner: None,
            }
        }

        /// The ready `service` called with `req` once `delay` is over, with `stream` on the
        /// response's body.
        pub(crate) fn delayed(
            delay: Pin<Box<Sleep>>,
            service: S,
            req: Req,
            stream: Option<(StreamFault, Arc<str>)>,
        ) -> Self {
            Self {
                delay: Some(delay),
                answer: None,
                stream,
                ready: Some((service, req)),
                inner: None,
            }
        }
    }

    impl<S: Service<Req>, Req, B> fmt::Debug for HttpResponseFuture<S, Req, B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HttpResponseFuture")
                .field("delayed", &self.delay.is_some())
                .field("answer", &self.answer.as_ref().map(|a| a.is_ok()))
                .field("stream", &self.stream.as_ref().map(|(fault, _)| fault))
                .field("called", &self.inner.is_some())
                .finish()
        }
    }

    impl<S, Req, B> Future for HttpResponseFuture<S, Req, B>
    where
        S: Service<Req, Response = Response<B>>,
        S::Error: Into<BoxError>,
    {
        type Output = Result<Response<ChaosBody<B>>, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut this = self.project();
            ready!(poll_delay(this.delay, cx));
            if let Some(answer) = this.answer.take() {
                return Poll::Ready(answer);
            }
            start_call(this.ready, this.inner.as_mut());
            let Some(inner) = this.inner.as_pin_mut() else {
                return Poll::Ready(Err(polled_after_completion()));
            };
            let response = ready!(inner.poll(cx)).map_err(Into::into)?;
            let stream = this.stream.take();
            Poll::Ready(Ok(response.map(|body| ChaosBody::wrap(body, stream))))
        }
    }
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_future::ReqwestResponseFuture;
#[cfg(feature = "reqwest")]
pub(crate) use self::reqwest_future::{AsHttp, IntoHttp};

#[cfg(feature = "reqwest")]
mod reqwest_future {
    use super::super::body::ChaosBody;
    use super::HttpResponseFuture;
    use crate::BoxError;
    use pin_project_lite::pin_project;
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};
    use tower_service::Service;

    /// The URL of an upstream's `reqwest::Response`, kept while it is an `http::Response`.
    #[derive(Clone)]
    struct UpstreamUrl(reqwest::Url);

    pin_project! {
        /// A `reqwest::Client`'s response future, answering `http::Response`s (the URL kept
        /// in the extensions).
        pub struct IntoHttp<F> {
            #[pin]
            inner: F,
        }
    }

    impl<F> IntoHttp<F> {
        pub(crate) fn new(inner: F) -> Self {
            Self { inner }
        }
    }

    impl<F, E> Future for IntoHttp<F>
    where
        F: Future<Output = Result<reqwest::Response, E>>,
    {
        type Output = Result<http::Response<reqwest::Body>, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let response = ready!(self.project().inner.poll(cx))?;
            let url = response.url().clone();
            let mut response = http::Response::from(response);
            response.extensions_mut().insert(UpstreamUrl(url));
            Poll::Ready(Ok(response))
        }
    }

    /// A service of `reqwest::Request` to `reqwest::Response` (a `reqwest::Client`) seen as
    /// one answering `http::Response`s, for the HTTP layer's future.
    #[derive(Clone)]
    pub(crate) struct AsHttp<S>(pub(crate) S);

    impl<S> Service<reqwest::Request> for AsHttp<S>
    where
        S: Service<reqwest::Request, Response = reqwest::Response>,
    {
        type Response = http::Response<reqwest::Body>;
        type Error = S::Error;
        type Future = IntoHttp<S::Future>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, req: reqwest::Request) -> Self::Future {
            IntoHttp::new(self.0.call(req))
        }
    }

    pin_project! {
        /// The response future of [`Chaos`](crate::chaos::Chaos) in front of a
        /// `reqwest::Client`: an injected delay, then the injected status (with the request's
        /// URL) or error, or the client's response with its body wrapped in a [`ChaosBody`].
        /// The client is called after the delay: a call dropped during it sends nothing.
        pub struct ReqwestResponseFuture<S>
        where
            S: Service<reqwest::Request, Response = reqwest::Response>,
        {
            #[pin]
            inner: HttpResponseFuture<AsHttp<S>, reqwest::Request, reqwest::Body>,
            url: Option<reqwest::Url>,
        }
    }

    impl<S> ReqwestResponseFuture<S>
    where
        S: Service<reqwest::Request, Response = reqwest::Response>,
    {
        pub(crate) fn new(
            inner: HttpResponseFuture<AsHttp<S>, reqwest::Request, reqwest::Body>,
            url: reqwest::Url,
        ) -> Self {
            Self {
                inner,
                url: Some(url),
            }
        }
    }

    impl<S> fmt::Debug for ReqwestResponseFuture<S>
    where
        S: Service<reqwest::Request, Response = reqwest::Response>,
    {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReqwestResponseFuture")
                .field("inner", &self.inner)
                .field("url", &self.url)
                .finish()
        }
    }

    impl<S> Future for ReqwestResponseFuture<S>
    where
        S: Service<reqwest::Request, Response = reqwest::Response>,
        S::Error: Into<BoxError>,
    {
        type Output = Result<reqwest::Response, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let mut response: http::Response<ChaosBody<reqwest::Body>> =
                ready!(this.inner.poll(cx))?;
            let url = match response.extensions_mut().remove::<UpstreamUrl>() {
                Some(UpstreamUrl(url)) => Some(url),
                None => this.url.take(),
            };
            let response = response.map(reqwest::Body::wrap);
            Poll::Ready(Ok(match url {
                Some(url) => crate::http::reqwest::reqwest_response(response, url),
                None => reqwest::Response::from(response),
            }))
        }
    }
}
