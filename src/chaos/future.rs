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

pin_project! {
    /// The response future of [`Chaos`](super::Chaos) in front of any service: an injected
    /// delay, then the injected error or the inner service's answer.
    pub struct ResponseFuture<F> {
        delay: Option<Pin<Box<Sleep>>>,
        error: Option<ChaosError>,
        #[pin]
        inner: Option<F>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        delay: Option<Pin<Box<Sleep>>>,
        error: Option<ChaosError>,
        inner: Option<F>,
    ) -> Self {
        Self {
            delay,
            error,
            inner,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("delayed", &self.delay.is_some())
            .field("error", &self.error)
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        ready!(poll_delay(this.delay, cx));
        if let Some(error) = this.error.take() {
            return Poll::Ready(Err(Box::new(error)));
        }
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
    use super::{poll_delay, polled_after_completion};
    use crate::BoxError;
    use http::Response;
    use pin_project_lite::pin_project;
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, ready};
    use tokio::time::Sleep;

    pin_project! {
        /// The response future of [`Chaos`](crate::chaos::Chaos) in front of an HTTP
        /// service: an injected delay, then the injected status or error, or the inner
        /// service's response with its body wrapped in a [`ChaosBody`].
        pub struct HttpResponseFuture<F, B> {
            delay: Option<Pin<Box<Sleep>>>,
            answer: Option<Result<Response<ChaosBody<B>>, BoxError>>,
            // The stream fault and the layer's name (for its errors), only when one fired.
            stream: Option<(StreamFault, Arc<str>)>,
            #[pin]
            inner: Option<F>,
        }
    }

    impl<F, B> HttpResponseFuture<F, B> {
        pub(crate) fn new(
            delay: Option<Pin<Box<Sleep>>>,
            answer: Option<Result<Response<ChaosBody<B>>, BoxError>>,
            stream: Option<(StreamFault, Arc<str>)>,
            inner: Option<F>,
        ) -> Self {
            Self {
                delay,
                answer,
                stream,
                inner,
            }
        }
    }

    impl<F, B> fmt::Debug for HttpResponseFuture<F, B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HttpResponseFuture")
                .field("delayed", &self.delay.is_some())
                .field("answer", &self.answer.as_ref().map(|a| a.is_ok()))
                .field("stream", &self.stream.as_ref().map(|(fault, _)| fault))
                .finish()
        }
    }

    impl<F, B, E> Future for HttpResponseFuture<F, B>
    where
        F: Future<Output = Result<Response<B>, E>>,
        E: Into<BoxError>,
    {
        type Output = Result<Response<ChaosBody<B>>, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            ready!(poll_delay(this.delay, cx));
            if let Some(answer) = this.answer.take() {
                return Poll::Ready(answer);
            }
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
pub(crate) use self::reqwest_future::IntoHttp;
#[cfg(feature = "reqwest")]
pub use self::reqwest_future::ReqwestResponseFuture;

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

    pin_project! {
        /// The response future of [`Chaos`](crate::chaos::Chaos) in front of a
        /// `reqwest::Client`: an injected delay, then the injected status (with the request's
        /// URL) or error, or the client's response with its body wrapped in a [`ChaosBody`].
        pub struct ReqwestResponseFuture<F> {
            #[pin]
            inner: HttpResponseFuture<IntoHttp<F>, reqwest::Body>,
            url: Option<reqwest::Url>,
        }
    }

    impl<F> ReqwestResponseFuture<F> {
        pub(crate) fn new(
            inner: HttpResponseFuture<IntoHttp<F>, reqwest::Body>,
            url: reqwest::Url,
        ) -> Self {
            Self {
                inner,
                url: Some(url),
            }
        }
    }

    impl<F> fmt::Debug for ReqwestResponseFuture<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReqwestResponseFuture")
                .field("inner", &self.inner)
                .field("url", &self.url)
                .finish()
        }
    }

    impl<F, E> Future for ReqwestResponseFuture<F>
    where
        F: Future<Output = Result<reqwest::Response, E>>,
        E: Into<BoxError>,
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
