//! Streaming LLM calls (feature `stream`): time-to-first-token and idle deadlines, truncated
//! streams counted as failures, failover before the first token, and stream-aware hedging.
//!
//! A streamed completion fails in ways a status code never shows: headers, then no token for
//! minutes; keepalive comments (`: ping`) that keep the connection alive while nothing is
//! produced; a stream cut mid-answer that ends "cleanly". [`StreamGuardLayer`] catches all
//! three on `http::Response` bodies (and `reqwest::Response`, with the `reqwest` feature).
//! It guards streams only: a 2xx whose `content-type` is `text/event-stream`, or that has no
//! `content-type` (taken as the stream the call asked for); an `application/json` answer (a
//! non-streamed completion through the same client) and error statuses pass untouched, and
//! [`stream_when`](StreamGuardBuilder::stream_when) sets a rule of your own.
//!
//!
//! - **time to first token**: the first *token* (a server-sent `data:` event the
//!   [`SseRules`] call a token: content, such as text, tool-call arguments or reasoning; not
//!   the headers, not a comment, not an empty event, not OpenAI's role-only chunk) must come
//!   within [`first_token_timeout`](StreamGuardBuilder::first_token_timeout) of the call, or
//!   the call fails with [`FirstTokenTimeout`];
//! - **idle**: after that, each token must follow the last within
//!   [`idle_timeout`](StreamGuardBuilder::idle_timeout) (keepalives and empty events do not
//!   count), or the body fails with [`StreamIdle`];
//! - **completion**: a stream that ends before its complete event (`data: [DONE]` or a
//!   `finish_reason` for [`SseRules::openai`], `message_stop` for [`SseRules::anthropic`]) fails
//!   with [`StreamTruncated`], never a clean end.
//!
//! Put the guard **inside** the circuit breaker's layer: each of these errors then reaches the
//! breaker's [`RecordingBody`](crate::http::RecordingBody) (or its error classifier) and counts
//! as a failure, and the caller can tell them apart with `err.is::<FirstTokenTimeout>()`.
//!
//! By default the guard's response future resolves at the first token, with the frames read so
//! far kept in the body. So a [`Failover`](crate::failover::Failover) around guarded providers
//! moves on from a provider that misses its first-token deadline before the caller has seen a
//! byte, and once the caller has the response, it is committed to that provider: nothing is
//! spliced or repeated. [`Hedge`] races a second attempt against a slow first token.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, StreamBody};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::BoxError;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::stream::{FirstTokenTimeout, SseRules, StreamGuardLayer, StreamTruncated};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // An upstream whose answer depends on the request: "stall" sends headers and keepalives
//! // only, "cut" ends without `[DONE]`, anything else answers in full.
//! let upstream = service_fn(|kind: &'static str| async move {
//!     let frames: Vec<&'static str> = match kind {
//!         "stall" => vec![": keepalive\n\n"; 1],
//!         "cut" => vec!["data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n"],
//!         _ => vec![
//!             "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n",
//!             "data: [DONE]\n\n",
//!         ],
//!     };
//!     let stall = kind == "stall";
//!     let frames = futures_util::stream::iter(frames)
//!         .map(|f| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(f.as_bytes()))))
//!         .chain(futures_util::stream::iter(stall.then_some(())).flat_map(|_| futures_util::stream::pending()));
//!     Ok::<_, BoxError>(http::Response::new(StreamBody::new(Box::pin(frames))))
//! });
//! # use futures_util::StreamExt;
//!
//! let breaker = CircuitBreaker::builder("openai").build()?;
//! let guard = StreamGuardLayer::builder()
//!     .first_token_timeout(Duration::from_secs(10))
//!     .idle_timeout(Duration::from_secs(30))
//!     .rules(SseRules::openai())
//!     .build()?;
//! let mut client = ServiceBuilder::new()
//!     .layer(breaker.http_layer()) // outside: it records what the guard finds
//!     .layer(guard)
//!     .service(upstream);
//!
//! let ok = client.ready().await?.call("ok").await?;
//! assert!(ok.into_body().collect().await?.to_bytes().ends_with(b"data: [DONE]\n\n"));
//!
//! let err = client.ready().await?.call("stall").await.unwrap_err();
//! assert!(err.is::<FirstTokenTimeout>());
//!
//! let cut = client.ready().await?.call("cut").await?; // the first token came
//! let err = cut.into_body().collect().await.unwrap_err();
//! assert!(err.is::<StreamTruncated>());
//!
//! let metrics = breaker.metrics();
//! assert_eq!((metrics.successful_calls, metrics.failed_calls), (1, 2));
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod events;
mod hedge;
mod record;
pub mod recover;
mod rules;
mod service;
mod sse;

pub use self::body::GuardedBody;
pub use self::error::{FirstTokenTimeout, StreamIdle, StreamTruncated};
pub use self::events::StreamEvent;
pub use self::hedge::{Hedge, HedgeBuilder, HedgeDelay, HedgeStats};
pub use self::record::StreamRecorder;
pub use self::rules::SseRules;
pub use self::service::{GuardResponse, StreamGuard, StreamGuardBuilder, StreamGuardLayer};
pub use self::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};

/// The response futures of [`StreamGuard`] and [`Hedge`].
pub mod future {
    pub use super::hedge::ResponseFuture as HedgeResponseFuture;
    pub use super::service::ResponseFuture;
}
