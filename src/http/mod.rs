//! HTTP responses for circuit breakers: classification, `Retry-After`, and bodies that record
//! their outcome when the stream ends (feature `http`).
//!
//! A breaker is only as good as its idea of failure. [`HttpClassifier`] has the right defaults
//! for HTTP upstreams, AI APIs above all: 5xx, 408 and 529 are failures; 429 is a rate limit
//! that cools the breaker down for the server's `Retry-After` without counting a failure; other
//! 4xx are successes (the upstream answered); errors are failures. A success is recorded when
//! its body ends, so a stream that dies halfway counts as a failure.
//!
//! [`CircuitBreaker::http_layer`] sets it up in one line:
//!
//! ```
//! use std::convert::Infallible;
//! use http_body_util::BodyExt;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, RateLimited, SlidingWindow};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder("llm")
//!     .sliding_window(SlidingWindow::consecutive(2))
//!     .build()?;
//! // A stand-in upstream that answers with the status it is asked for.
//! let upstream = service_fn(|status: u16| async move {
//!     let response = http::Response::builder()
//!         .status(status)
//!         .header("retry-after", "2")
//!         .body(format!("status {status}"))
//!         .expect("a valid response");
//!     Ok::<_, Infallible>(response)
//! });
//! let mut client = ServiceBuilder::new().layer(breaker.http_layer()).service(upstream);
//!
//! // A success is recorded when its body has been read to the end.
//! let response = client.ready().await?.call(200).await?;
//! assert!(response.body().holds_permit());
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "status 200");
//!
//! // 429: a cool-down of the server's 2 s, not a failure.
//! client.ready().await?.call(429).await?;
//! assert_eq!(breaker.state(), CircuitState::RateLimited);
//! let err = client.ready().await?.call(200).await.unwrap_err();
//! assert!(err.is::<RateLimited>());
//! breaker.reset();
//!
//! // 503 twice: open, for at least the server's `Retry-After`.
//! client.ready().await?.call(503).await?;
//! client.ready().await?.call(503).await?;
//! let err = client.ready().await?.call(200).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! # Ok(())
//! # }
//! ```
//!
//! # Defaults
//!
//! | response | counts as |
//! |---|---|
//! | 5xx, 408, 529 | failure; with `Retry-After`, the breaker (if this opens it) stays open at least that long |
//! | 429 | rate limit: calls fail at once with [`RateLimited`](crate::circuit_breaker::RateLimited) until `Retry-After` has passed (capped by the breaker's `max_retry_after`) |
//! | other 4xx, 1xx, 2xx, 3xx | success, recorded when the body ends |
//! | body error, or silent for `body_idle_timeout` | failure |
//! | body dropped early by the caller | ignored |
//! | service error | failure (timeouts, connection errors), ignored if it never reached the upstream ([`DefaultErrorClassifier`]) |
//!
//! Every rule can be changed with [`HttpClassifier::builder`].
//!
//! # Streams that stall
//!
//! A timeout layer bounds the wait for the response head only. For an upstream that stops
//! sending mid-stream, set [`body_idle_timeout`](HttpClassifierBuilder::body_idle_timeout):
//! the body then fails with [`BodyIdleTimeout`] and the call counts as a failure. Without it, a
//! stalled stream holds its permit until the caller gives up and drops the body, which counts
//! as `Ignored`. It is off by default because a healthy stream can pause for long (a model
//! thinking before its first token); pick a bound above the longest healthy pause.
//!
//! # Slow calls
//!
//! With a slow-call rule, a streamed call's duration runs until its body ends, not until its
//! head: set `slow_call_duration` for whole streams, or use
//! [`record_at_body_end(false)`](HttpClassifierBuilder::record_at_body_end).
//!
//! # reqwest
//!
//! With the `reqwest` feature, `HttpClassifier` also records `reqwest::Response`s (the
//! `Service<reqwest::Request>` of `reqwest::Client`), with the same rules, so
//! `ServiceBuilder::new().layer(breaker.http_layer()).service(reqwest::Client::new())` works as
//! it is. `reqwest::Error`s are failures (timeouts, connect errors), except builder errors.

mod body;
mod classify;
mod replay;
#[cfg(feature = "reqwest")]
pub(crate) mod reqwest;
pub(crate) mod retry_after;

pub use self::body::{BodyIdleTimeout, ClassifyEos, RecordingBody, SuccessOnEos};
pub(crate) use self::classify::KeyOutOfQuota;
pub use self::classify::{
    ClassifyError, DefaultErrorClassifier, HttpClassifier, HttpClassifierBuilder, ResponseClass,
};
pub(crate) use self::replay::Replay;
#[cfg(feature = "reqwest")]
pub(crate) use self::reqwest::{from_http_keeping_url, into_http_keeping_url};
pub use self::retry_after::{MAX_RETRY_AFTER, retry_after, retry_after_at};

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};

impl CircuitBreaker {
    /// A layer for this breaker that classifies HTTP responses with the default
    /// [`HttpClassifier`] and records streamed bodies when they end. For other rules:
    /// `breaker.layer().record_with(HttpClassifier::builder()/* ... */.build()?)`.
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_breaker::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder("openai").build()?;
    /// let client = ServiceBuilder::new()
    ///     .layer(breaker.http_layer())
    ///     .service(reqwest::Client::new());
    /// # let _ = client;
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http_layer(&self) -> CircuitBreakerLayer<HttpClassifier> {
        self.layer().record_with(HttpClassifier::new())
    }
}
