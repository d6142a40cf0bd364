use super::classify::ResponseClass;
use crate::circuit_breaker::Permit;
use crate::{BoxError, Outcome};
use ::http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How a recorded body that ends cleanly counts: the end-of-stream half of classification,
/// as `tower_http::classify::ClassifyEos`. [`RecordingBody`] calls it once, when its body ends
/// (with the trailers, if any); an error or an idle timeout is a failure whatever it says.
///
/// HTTP uses [`SuccessOnEos`]: a clean end is a success. gRPC
/// ([`GrpcEos`](crate::grpc::GrpcEos), feature `grpc`) reads `grpc-status` from the trailers.
///
/// ```
/// use http::HeaderMap;
/// use tower_breaker::http::{ClassifyEos, ResponseClass};
///
/// /// A stream whose trailers say `x-partial: 1` was cut short by the server.
/// #[derive(Clone)]
/// struct PartialIsFailure;
///
/// impl ClassifyEos for PartialIsFailure {
///     fn classify_eos(&self, trailers: Option<&HeaderMap>) -> ResponseClass {
///         match trailers.and_then(|t| t.get("x-partial")) {
///             Some(value) if value == "1" => ResponseClass::Failure,
///             _ => ResponseClass::Success,
///         }
///     }
/// }
/// # let mut trailers = HeaderMap::new();
/// # trailers.insert("x-partial", "1".parse().unwrap());
/// # assert_eq!(PartialIsFailure.classify_eos(Some(&trailers)), ResponseClass::Failure);
/// ```
pub trait ClassifyEos {
    /// The class of a body that ended cleanly, with its trailers if it had any.
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> ResponseClass;
}

/// HTTP's end of stream: a body that ends cleanly is a success; trailers are not looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SuccessOnEos;

impl ClassifyEos for SuccessOnEos {
    #[inline]
    fn classify_eos(&self, _trailers: Option<&HeaderMap>) -> ResponseClass {
        ResponseClass::Success
    }
}

/// Records `permit` for a body that ended cleanly, as `end` classifies it.
fn finish<E: ClassifyEos>(end: &E, permit: Permit, trailers: Option<&HeaderMap>) {
    end.classify_eos(trailers).record(permit, trailers);
}

/// What a body still has to record.
struct Recording<E> {
    permit: Permit,
    end: E,
    idle_timeout: Option<Duration>,
}

pin_project! {
    /// A response body that records its call's outcome on the circuit breaker when it ends.
    ///
    /// Made by [`HttpClassifier`](super::HttpClassifier) (and
    /// [`GrpcClassifier`](crate::grpc::GrpcClassifier)) for responses whose head was a
    /// success. It holds the call's [`Permit`] (and so a half-open probe slot) until:
    ///
    /// | the body | records |
    /// |---|---|
    /// | ends cleanly (last frame, or trailers) | as `E` says ([`ClassifyEos`]): HTTP `Success`, gRPC the trailers' `grpc-status` |
    /// | yields an error | `Failure` |
    /// | yields nothing for the classifier's `body_idle_timeout` while being read | `Failure`, and the body yields [`BodyIdleTimeout`] |
    /// | is dropped before its end by our own caller | `Ignored` (the permit's drop) |
    ///
    /// A body whose head was already recorded (a failure, a rate limit, an empty body) passes
    /// its frames through unchanged.
    ///
    /// Errors are boxed ([`BoxError`]), as in `tower_http::timeout::TimeoutBody`: the idle
    /// timeout adds an error the inner body type cannot express. The body is `Unpin` when the
    /// inner body is.
    pub struct RecordingBody<B, E = SuccessOnEos> {
        #[pin]
        inner: B,
        recording: Option<Recording<E>>,
        // Boxed so that the body stays `Unpin` (callers use `BodyExt::frame` directly) and
        // small when no idle timeout is set: allocated once, on the first wait, then reset in
        // place.
        idle: Option<Pin<Box<Sleep>>>,
        idle_armed: bool,
        timed_out: bool,
    }
}

impl<B: Body, E: ClassifyEos> RecordingBody<B, E> {
    pub(crate) fn new(inner: B, permit: Permit, end: E, idle_timeout: Option<Duration>) -> Self {
        let mut body = Self::recorded(inner);
        if body.inner.is_end_stream() {
            // An empty body may never be polled: it has ended cleanly, without trailers.
            finish(&end, permit, None);
        } else {
            body.recording = Some(Recording {
                permit,
                end,
                idle_timeout,
            });
        }
        body
    }
}

impl<B, E> RecordingBody<B, E> {
    /// A body whose call is already recorded: frames pass through.
    pub(crate) fn recorded(inner: B) -> Self {
        Self {
            inner,
            recording: None,
            idle: None,
            idle_armed: false,
            timed_out: false,
        }
    }

    /// True while the body still holds its permit (its outcome is not recorded yet).
    pub fn holds_permit(&self) -> bool {
        self.recording.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably. Reading frames from it directly bypasses the recording.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The inner body. A permit still held is dropped: the call counts as `Ignored`.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B, E> Body for RecordingBody<B, E>
where
    B: Body,
    B::Error: Into<BoxError>,
    E: ClassifyEos,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if *this.timed_out {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.idle_armed = false;
                match frame {
                    Some(Ok(frame)) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            if let Some(recording) = this.recording.take() {
                                finish(&recording.end, recording.permit, Some(trailers));
                            }
                        } else if this.inner.is_end_stream() {
                            if let Some(recording) = this.recording.take() {
                                finish(&recording.end, recording.permit, None);
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(error)) => {
                        if let Some(recording) = this.recording.take() {
                            recording.permit.record(Outcome::Failure);
                        }
                        Poll::Ready(Some(Err(error.into())))
                    }
                    None => {
                        if let Some(recording) = this.recording.take() {
                            finish(&recording.end, recording.permit, None);
                        }
                        Poll::Ready(None)
                    }
                }
            }
            Poll::Pending => {
                let Some(idle) = this.recording.as_ref().and_then(|r| r.idle_timeout) else {
                    return Poll::Pending;
                };
                if !*this.idle_armed {
                    // The timer starts when the caller starts waiting, not at the last frame.
                    match (this.idle.as_mut(), Instant::now().checked_add(idle)) {
                        (Some(sleep), Some(deadline)) => sleep.as_mut().reset(deadline),
                        (None, Some(deadline)) => {
                            *this.idle = Some(Box::pin(tokio::time::sleep_until(deadline)))
                        }
                        // A deadline past the end of time: never.
                        (_, None) => return Poll::Pending,
                    }
                    *this.idle_armed = true;
                }
                let expired = this
                    .idle
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                *this.timed_out = true;
                *this.idle_armed = false;
                let breaker = match this.recording.take() {
                    Some(recording) => {
                        let name = recording.permit.breaker_name().to_owned();
                        recording.permit.record(Outcome::Failure);
                        name
                    }
                    None => String::new(),
                };
                Poll::Ready(Some(Err(Box::new(BodyIdleTimeout { breaker, idle }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.timed_out {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

impl<B, E> fmt::Debug for RecordingBody<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingBody")
            .field("holds_permit", &self.holds_permit())
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}

/// A recorded response body yielded nothing for the classifier's `body_idle_timeout` while it
/// was being read: the upstream stalled mid-stream. The call counted as a failure.
///
/// ```
/// use std::time::Duration;
/// use http_body_util::{BodyExt, StreamBody};
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::http::{BodyIdleTimeout, HttpClassifier};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let breaker = CircuitBreaker::builder("llm").build()?;
/// let classifier = HttpClassifier::builder().body_idle_timeout(Duration::from_secs(30)).build()?;
///
/// // A stream that never sends anything.
/// let stalled = StreamBody::new(futures_util::stream::pending::<
///     Result<http_body::Frame<bytes::Bytes>, std::io::Error>,
/// >());
/// let response = classifier.record_response(http::Response::new(stalled), breaker.try_acquire()?);
/// let err = response.into_body().collect().await.unwrap_err();
/// let err = err.downcast_ref::<BodyIdleTimeout>().unwrap();
/// assert_eq!(err.idle(), Duration::from_secs(30));
/// assert_eq!(breaker.metrics().failed_calls, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BodyIdleTimeout {
    breaker: String,
    idle: Duration,
}

impl BodyIdleTimeout {
    /// The name of the breaker the call was recorded on.
    pub fn breaker_name(&self) -> &str {
        &self.breaker
    }

    /// How long the body was silent.
    pub fn idle(&self) -> Duration {
        self.idle
    }
}

impl fmt::Display for BodyIdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response body behind circuit breaker `{}` sent nothing for {:.3}s",
            self.breaker,
            self.idle.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyIdleTimeout {}
