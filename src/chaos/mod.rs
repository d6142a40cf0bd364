//! Fault injection: check that your timeouts, retries, breakers and fallbacks work before an
//! outage checks it for you.
//!
//! A [`ChaosLayer`] sits in front of a service (your client's transport in staging, or a mock
//! upstream in tests) and, per request, injects faults, each with its own injection rate and
//! optional `enabled` switch:
//!
//! - any service ([`ChaosLayer::builder`]): an error ([`Fault::error`]), latency, fixed or in
//!   a range ([`Fault::latency`], [`Fault::latency_between`]);
//! - HTTP services ([`ChaosLayer::http`], feature `http`): a status with headers (429 with
//!   `Retry-After`, `retry-after-ms` and the OpenAI / Anthropic rate-limit headers, 503, 529),
//!   and streamed (SSE) body faults: a stall before the first byte, a stall mid-stream, a cut
//!   without the terminal event (`data: [DONE]`, `message_stop`), a trickle of one event per
//!   interval, keepalive comments only.
//!
//! Every decision comes from a seeded sequence: the `n`th request gets the same faults in
//! every run with the same seed, whatever the timing. For tests that need an exact story, a
//! [`FaultPlan`] scripts the first requests ("503, 503, 429 with `Retry-After: 2`, then
//! healthy"). Delays use `tokio::time`, so paused time drives them. Every injected fault is
//! reported as a [`ChaosEvent`] (and counted by the `metrics` / OpenTelemetry listeners).
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::chaos::{ChaosError, ChaosLayer, Fault, FaultPlan};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // 10% errors and 20% of calls 50..250 ms slower, reproducible with seed 7. The type
//! // parameter is the request type (the `enabled` closures see it).
//! let chaos = ChaosLayer::<String>::builder("staging")
//!     .seed(7)
//!     .inject(Fault::error("connection reset"), 0.1)
//!     .inject(Fault::latency_between(Duration::from_millis(50), Duration::from_millis(250)), 0.2)
//!     .build()?;
//! # let _ = chaos;
//!
//! // An exact script: two errors, then healthy.
//! let chaos = ChaosLayer::builder("script")
//!     .plan(FaultPlan::new().then_times(2, Fault::error("down")))
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(chaos)
//!     .service(service_fn(|q: &'static str| async move { Ok::<_, tower::BoxError>(q) }));
//! for _ in 0..2 {
//!     let err = svc.ready().await?.call("hi").await.unwrap_err();
//!     assert!(err.is::<ChaosError>());
//! }
//! assert_eq!(svc.ready().await?.call("hi").await?, "hi");
//! # Ok(())
//! # }
//! ```
//!
//! In front of an HTTP service, switched on by a request header:
//!
//! ```
//! # #[cfg(feature = "http")]
//! # {
//! use std::time::Duration;
//! use tower_breaker::chaos::{ChaosLayer, Fault, RateLimit};
//!
//! let chaos = ChaosLayer::http("openai-staging")
//!     .enabled_when(|req: &http::request::Parts| req.headers.contains_key("x-chaos"))
//!     .inject(Fault::service_unavailable(), 0.05)
//!     .inject(
//!         Fault::rate_limited(Some(Duration::from_secs(2)))
//!             .openai_limits(RateLimit::new(500, 0, Duration::from_secs(2)), RateLimit::new(30_000, 0, Duration::from_secs(2))),
//!         0.05,
//!     )
//!     .inject(Fault::cut_after(3), 0.1)
//!     .build()?;
//! # let _ = chaos;
//! # }
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # Where it goes
//!
//! The HTTP layer goes in front of a service of `http::Request` to `http::Response` (a
//! hyper-util client, or the server side: an axum app, a staging mock of the provider), or,
//! with the `reqwest` feature, in front of a `reqwest::Client` (a `Service<reqwest::Request>`
//! answering `reqwest::Response`, which converts to and from `http::Response`): statuses and
//! stream faults then reach your real client in staging without a second server. The
//! `enabled` closures see the request's method, URI and headers.
//!
//! ```
//! # #[cfg(feature = "reqwest")]
//! # {
//! use tower::ServiceBuilder;
//! use tower_breaker::chaos::{ChaosLayer, Fault};
//!
//! let chaos = ChaosLayer::http("openai-staging")
//!     .inject(Fault::service_unavailable(), 0.05)
//!     .inject(Fault::cut_after(3), 0.1)
//!     .build()?;
//! let client = ServiceBuilder::new().layer(chaos).service(reqwest::Client::new());
//! # let _ = client;
//! # }
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # How faults combine
//!
//! For each request every fault draws its own number, so each fires at its own rate. Latency
//! faults add up and come first. Then the first error or status (in the order the faults
//! were added) answers instead of the inner service, which is not called. Otherwise the inner
//! service answers, and the first stream fault that fired alters its body. So a status fault
//! added after an error fault at rate `e` fires on `rate * (1 - e)` of the requests.
//!
//! # The inner service
//!
//! A latency fault comes before the inner call: the inner service is called when the delay
//! is over, so a caller that gives up during the delay (a timeout, a dropped future) sends
//! nothing upstream, and an injected error or status after a delay never calls it. tower
//! lets `call` follow only the `poll_ready` that reported ready, so a delayed call takes the
//! ready inner service with it and leaves a clone behind, to be polled ready before its own
//! call (as tower's `Buffer` and `Steer` document). Hence the bound: the inner service must
//! be `Clone` (hyper-util's client, `reqwest::Client`, an axum `Router` and `service_fn`
//! over a `Clone` closure are; wrap one that is not in `tower::buffer::Buffer`). Only a call
//! a latency fault delays uses it, but the types cannot tell which layers have one.

mod error;
mod events;
mod fault;
pub mod future;
mod inject;
mod layer;
mod service;

#[cfg(feature = "http")]
mod body;

pub use self::error::ChaosError;
pub use self::events::ChaosEvent;
pub use self::fault::{Fault, FaultKind, FaultPlan};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::fault::{RateLimit, StatusFault, StreamFault};
pub use self::layer::{ChaosBuilder, ChaosLayer};
pub use self::service::Chaos;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::body::ChaosBody;
