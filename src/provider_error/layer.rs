use super::{ProviderError, ProviderErrorBody};
use crate::BoxError;
use crate::config::ConfigError;
use bytes::{Buf, Bytes};
use http::{HeaderMap, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// The most bytes of an error body a [`ProviderErrorLayer`] reads by default: 16 KiB. The
/// providers' error bodies are a few hundred bytes; an error page or a stream is not read
/// past this.
pub const DEFAULT_MAX_ERROR_BODY: usize = 16 * 1024;

/// The largest bound [`ProviderErrorLayer::max_body`] accepts: 1 MiB.
pub const MAX_ERROR_BODY_LIMIT: usize = 1024 * 1024;

/// Reads what a provider's error body says: on a 4xx or 5xx answer, reads at most
/// [`max_body`](Self::max_body) bytes of the body (default [`DEFAULT_MAX_ERROR_BODY`]),
/// parses the OpenAI or Anthropic error shape, attaches a [`ProviderError`] extension and
/// gives the response back with the same bytes. A body declared (`Content-Length`) or found
/// longer than the bound is not read past it and not parsed; a body that is not such JSON is
/// passed on as it is. Successful answers are not touched (a `reqwest::Response` is returned
/// as it came; an `http::Response`'s body is wrapped in a pass-through
/// [`ProviderErrorBody`]).
///
/// It goes innermost, next to the client, so that each attempt is read: the `.llm()` stack
/// ([`StandardResilience`](crate::stack::StandardResilience)) puts it there. It also counts
/// each attempt for a failover's report ([`count_attempt`](crate::failover::count_attempt)).
///
/// Cloning is cheap; it holds no state.
#[derive(Debug, Clone, Copy)]
pub struct ProviderErrorLayer {
    max_body: usize,
}

impl Default for ProviderErrorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProviderErrorLayer {
    /// Reads at most [`DEFAULT_MAX_ERROR_BODY`] bytes of each error body.
    pub fn new() -> Self {
        Self {
            max_body: DEFAULT_MAX_ERROR_BODY,
        }
    }

    /// Reads at most `bytes` of each error body: 1 byte to [`MAX_ERROR_BODY_LIMIT`].
    ///
    /// ```
    /// use tower_breaker::provider_error::ProviderErrorLayer;
    ///
    /// assert!(ProviderErrorLayer::new().max_body(4096).is_ok());
    /// let err = ProviderErrorLayer::new().max_body(0).unwrap_err();
    /// assert_eq!(err.field(), "max_body");
    /// ```
    pub fn max_body(mut self, bytes: usize) -> Result<Self, ConfigError> {
        if !(1..=MAX_ERROR_BODY_LIMIT).contains(&bytes) {
            return Err(ConfigError::new(
                "ProviderErrorLayer",
                "max_body",
                bytes,
                format!("1 ..= {MAX_ERROR_BODY_LIMIT} bytes"),
            ));
        }
        self.max_body = bytes;
        Ok(self)
    }

    /// The bound on the bytes read of an error body.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body
    }
}

impl<S> Layer<S> for ProviderErrorLayer {
    type Service = ProviderErrorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProviderErrorService {
            inner,
            max_body: self.max_body,
        }
    }
}

/// The service of a [`ProviderErrorLayer`].
#[derive(Debug, Clone)]
pub struct ProviderErrorService<S> {
    inner: S,
    max_body: usize,
}

impl<S> ProviderErrorService<S> {
    /// Wraps `inner` with the default bound.
    pub fn new(inner: S) -> Self {
        ProviderErrorLayer::new().layer(inner)
    }

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

impl<S, Req> Service<Req> for ProviderErrorService<S>
where
    S: Service<Req>,
    S::Response: ProviderResponse,
{
    type Response = <S::Response as ProviderResponse>::Output;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        crate::failover::count_attempt();
        ResponseFuture {
            future: self.inner.call(req),
            reading: None,
            max_body: self.max_body,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A response whose error body a [`ProviderErrorLayer`] can read: `http::Response<B>` (a body
/// with byte chunks, `Unpin`: hyper's, axum's, `reqwest::Body`, `Full`) and, with the
/// `reqwest` feature, `reqwest::Response`. Sealed.
pub trait ProviderResponse: sealed::Sealed + Sized {
    /// The body that is read.
    type Body: Body<Error: Into<BoxError>> + Unpin;
    /// The response the layer gives back.
    type Output;
    /// The response as `http::Response`.
    #[doc(hidden)]
    fn into_http(self) -> http::Response<Self::Body>;
    /// The response back in the caller's type, its body read or not.
    #[doc(hidden)]
    fn from_http(response: http::Response<ProviderErrorBody<Self::Body>>) -> Self::Output;
    /// A response passed on as it is.
    #[doc(hidden)]
    fn untouched(self) -> Self::Output;
    /// Its status.
    #[doc(hidden)]
    fn status_code(&self) -> StatusCode;
    /// Its headers.
    #[doc(hidden)]
    fn header_map(&self) -> &HeaderMap;
}

impl<B> sealed::Sealed for http::Response<B> {}

impl<B> ProviderResponse for http::Response<B>
where
    B: Body<Error: Into<BoxError>> + Unpin,
{
    type Body = B;
    type Output = http::Response<ProviderErrorBody<B>>;

    fn into_http(self) -> http::Response<B> {
        self
    }

    fn from_http(response: http::Response<ProviderErrorBody<B>>) -> Self::Output {
        response
    }

    fn untouched(self) -> Self::Output {
        self.map(ProviderErrorBody::untouched)
    }

    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn header_map(&self) -> &HeaderMap {
        self.headers()
    }
}

#[cfg(feature = "reqwest")]
impl sealed::Sealed for reqwest::Response {}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl ProviderResponse for reqwest::Response {
    type Body = reqwest::Body;
    type Output = reqwest::Response;

    fn into_http(self) -> http::Response<reqwest::Body> {
        crate::http::into_http_keeping_url(self)
    }

    fn from_http(response: http::Response<ProviderErrorBody<reqwest::Body>>) -> Self {
        crate::http::from_http_keeping_url(response.map(reqwest::Body::wrap))
    }

    fn untouched(self) -> Self {
        self
    }

    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn header_map(&self) -> &HeaderMap {
        self.headers()
    }
}

/// An error body being read.
struct Reading<B> {
    head: http::response::Parts,
    body: B,
    read: VecDeque<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
}

pin_project! {
    /// The future of a [`ProviderErrorService`] call.
    pub struct ResponseFuture<F, R: ProviderResponse> {
        #[pin]
        future: F,
        reading: Option<Reading<R::Body>>,
        max_body: usize,
    }
}

impl<F, R: ProviderResponse> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("reading", &self.reading.as_ref().map(|r| r.len))
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    R: ProviderResponse,
{
    type Output = Result<R::Output, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let max = *this.max_body;
        let mut reading = match this.reading.take() {
            Some(reading) => reading,
            None => {
                let response = ready!(this.future.poll(cx))?;
                let status = response.status_code();
                if !(status.is_client_error() || status.is_server_error()) {
                    return Poll::Ready(Ok(response.untouched()));
                }
                let declared = response
                    .header_map()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                if declared.is_some_and(|len| len > max as u64) {
                    // Longer than the bound: not read at all.
                    return Poll::Ready(Ok(response.untouched()));
                }
                let (head, body) = response.into_http().into_parts();
                Reading {
                    head,
                    body,
                    read: VecDeque::new(),
                    len: 0,
                    trailers: None,
                    error: None,
                }
            }
        };
        match reading.poll_read(max, cx) {
            Poll::Pending => {
                *this.reading = Some(reading);
                Poll::Pending
            }
            Poll::Ready(ended) => Poll::Ready(Ok(R::from_http(reading.finish(ended, max)))),
        }
    }
}

impl<B> Reading<B>
where
    B: Body<Error: Into<BoxError>> + Unpin,
{
    /// Reads frames until the body ends (true), fails, or has given more than `max` bytes.
    fn poll_read(&mut self, max: usize, cx: &mut Context<'_>) -> Poll<bool> {
        while self.len <= max && self.error.is_none() {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(true),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        self.len = self.len.saturating_add(bytes.len());
                        self.read.push_back(bytes);
                    }
                    // Trailers are the last frame.
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        return Poll::Ready(true);
                    }
                },
                Some(Err(e)) => self.error = Some(e.into()),
            }
        }
        Poll::Ready(false)
    }

    /// The response with what was read (parsed when the whole body was read), then the rest.
    fn finish(self, ended: bool, max: usize) -> http::Response<ProviderErrorBody<B>> {
        let Reading {
            mut head,
            body,
            read,
            len,
            trailers,
            error,
        } = self;
        if ended && error.is_none() && len <= max {
            let whole: Bytes = match read.len() {
                1 => read[0].clone(),
                _ => read.iter().flat_map(|b| b.iter().copied()).collect(),
            };
            if let Some(parsed) = ProviderError::parse(&whole) {
                if parsed.kind == super::ProviderErrorKind::InsufficientQuota {
                    // What the HTTP classifier reads (it names nothing of this module).
                    head.extensions.insert(crate::http::KeyOutOfQuota);
                }
                head.extensions.insert(parsed);
            }
        }
        let rest = (!ended && error.is_none()).then_some(body);
        http::Response::from_parts(head, ProviderErrorBody::read(read, trailers, error, rest))
    }
}
