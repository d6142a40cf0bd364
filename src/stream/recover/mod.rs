//! Recovering an answer whose stream fails after its first token (feature `stream`).
//!
//! The [`StreamGuard`](super::StreamGuard) turns a stream cut mid-answer, a stall after some
//! tokens and a missing end event into errors, and a [`Failover`](crate::failover::Failover)
//! moves on from a provider that fails before its first token. After the first token, the
//! caller already has part of the answer. [`RecoverLayer`], outside the failover, chooses
//! what happens then ([`RecoveryMode`]):
//!
//! - [`Error`](RecoveryMode::Error) (the default): the caller streams the answer, and a
//!   failure is the body's error after the tokens already sent;
//! - [`Restart`](RecoveryMode::Restart): the answer is read whole before the caller sees it,
//!   and a failed stream sends the request again, the provider that failed tried last; the
//!   caller gets one complete answer, or [`AnswerIncomplete`], never a truncated success.
//!
//! One [`deadline`](RecoverBuilder::deadline) covers the whole call: every provider, retry and
//! restart. Every answer carries a [`RecoveryReport`]: the provider and model that produced
//! it, its usage, and each attempt (with the usage a failed stream reported), so a failed
//! attempt is never billed as the answer.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full, StreamBody};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::BoxError;
//! use tower_breaker::stream::StreamGuardLayer;
//! use tower_breaker::stream::recover::{RecoverLayer, RecoveryMode, RecoveryReport};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! const TOKEN: &str = "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
//! // The first call is cut after a token; the second answers in full.
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = calls.clone();
//! let upstream = service_fn(move |_: http::Request<String>| {
//!     let cut = counter.fetch_add(1, Ordering::SeqCst) == 0;
//!     async move {
//!         let body = if cut { TOKEN.to_string() } else { format!("{TOKEN}data: [DONE]\n\n") };
//!         Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::from(body))))
//!     }
//! });
//! let mut client = ServiceBuilder::new()
//!     .layer(RecoverLayer::builder().mode(RecoveryMode::Restart).deadline(Duration::from_secs(60)).build()?)
//!     .layer(StreamGuardLayer::builder().build()?)
//!     .service(upstream);
//!
//! let answer = client.ready().await?.call(http::Request::new(String::new())).await?;
//! let report = answer.extensions().get::<RecoveryReport>().cloned().unwrap();
//! assert_eq!(report.restarts, 1);
//! assert_eq!(report.attempts.len(), 2);
//! let body = answer.into_body().collect().await?.to_bytes();
//! assert!(body.ends_with(b"data: [DONE]\n\n"));
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod report;
mod service;

pub use self::body::RecoveredBody;
pub use self::error::{AnswerIncomplete, DeadlineExceeded, MalformedEvent};
pub use self::report::{Attempt, AttemptOutcome, RecoveryReport, Usage};
pub use self::service::{
    DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_RESTARTS, Recover, RecoverBuilder, RecoverLayer,
    RecoveryMode, ResponseFuture,
};
