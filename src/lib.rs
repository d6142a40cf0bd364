//! Resilience middleware for [`tower`](https://docs.rs/tower): circuit breakers that fail fast
//! when an upstream is down, built for services that call things that fail, above all AI/LLM
//! APIs with outages, rate limits and slow answers.
//!
//! Without protection, calls keep going to a struggling upstream, each one waiting for its
//! timeout; retries pile on; tasks and connections fill up, and one failing provider takes the
//! whole service down. A [`CircuitBreaker`](circuit_breaker::CircuitBreaker) notices the
//! failures, rejects calls in nanoseconds while the upstream recovers, lets a bounded number of
//! probes through after a cool-down, and closes again when they succeed.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, SlidingWindow};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder("openai")
//!     .sliding_window(SlidingWindow::count_based(20))
//!     .minimum_calls(10)
//!     .failure_rate_threshold(0.5)
//!     .wait_in_open(Duration::from_secs(30))
//!     .permitted_calls_in_half_open(3)
//!     .build()?;
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(breaker.layer())                    // fail fast while the upstream is down
//!     .timeout(Duration::from_secs(10))          // a hung call counts as a failure
//!     .service(service_fn(|prompt: String| async move {
//!         Ok::<_, std::io::Error>(format!("echo: {prompt}"))
//!     }));
//!
//! let answer = client.ready().await?.call("hi".to_string()).await?;
//! assert_eq!(answer, "echo: hi");
//!
//! // When the breaker is open, the error says so, and when to try again:
//! breaker.force_open();
//! let err = client.ready().await?.call("hi".to_string()).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! - [`circuit_breaker`]: the breaker handle, its builder, windows, and the tower layer.
//! - [`bulkhead`]: at most N calls at once, a bounded wait queue with a maximum wait, and the
//!   tower layer.
//! - [`backoff`]: constant, linear and exponential delays with jitter, usable on their own.
//! - [`retry`] (feature `retry`): a `tower::retry::Policy` with backoff, jitter, a budget, a
//!   deadline, `Retry-After` and idempotency rules, that does not make outages worse.
//! - [`fallback`]: answer failed calls from a function, a TTL cache or a backup service.
//! - [`failover`]: an ordered list of providers; open ones are skipped without a call.
//! - [`keyed`]: one breaker per key (provider, model, host), bounded in number.
//! - [`chaos`] (feature `chaos`): fault injection, seeded or scripted: errors, latency, and
//!   with `http` statuses with rate-limit headers and SSE stream faults.
//! - [`health`]: a registry and report of breakers and bulkheads; an axum `/health` handler.
//! - `stack` (feature `stack`): `StandardResilience`, the whole client stack in one call.
//! - [`outcome`]: [`Outcome`] and the [`Classify`] trait that turns results into outcomes.
//! - [`events`]: the [`Listener`](events::Listener) trait every component reports to.
//! - [`rejection`]: tells this crate's own rejections (open breaker, full bulkhead, ...) from
//!   the upstream's failures, for every component and for your own error handling.
//!
//! # The recommended order
//!
//! From the outside in: fallback, total timeout, retry, circuit breaker, bulkhead, attempt
//! timeout. The fallback sees every failure below it; the total timeout bounds the caller's
//! wait; each retry is a call the breaker counts, and once it opens retries fail at once with
//! `CircuitOpen`, which the policy never retries; an open breaker rejects before a bulkhead slot
//! is taken; the attempt timeout turns a hung call into a failure the breaker counts.
//!
//! # Feature flags
//!
//! The core depends only on `tower-layer`, `tower-service`, `pin-project-lite`, `tokio`
//! (`sync`, `time`) and `tracing`.
//!
//! | feature | enables |
//! |---|---|
//! | `full` | every feature below |
//! | `http` | [`http`]: HTTP response classification ([`HttpClassifier`](http::HttpClassifier)), `Retry-After` parsing, bodies that record the breaker's outcome when the stream ends; a [bulkhead](bulkhead#http-responses) permit held until an `http::Response` body ends |
//! | `reqwest` | the same classification for `reqwest::Response` / `reqwest::Error` (implies `http`) |
//! | `grpc` | [`grpc`]: `grpc-status` from headers or trailers ([`GrpcClassifier`](grpc::GrpcClassifier)), for tonic channels (implies `http`) |
//! | `retry` | [`retry`]: [`RetryPolicy`](retry::RetryPolicy), a `tower::retry::Policy` with [backoff] and jitter, a retry budget, a deadline, and never a retry of an open circuit; with `http`, `Retry-After` and idempotency rules ([`IdempotencyKeyLayer`](retry::IdempotencyKeyLayer)); with `reqwest`, `reqwest::Request` copied by `try_clone` |
//! | `metrics` | [`metrics`]: [`MetricsListener`](metrics::MetricsListener), counters, gauges and histograms for every component through the `metrics` facade (any exporter) |
//! | `opentelemetry` | [`opentelemetry`]: [`OpenTelemetryListener`](opentelemetry::OpenTelemetryListener), the same instruments through an OpenTelemetry `Meter` |
//! | `stack` | `stack`: `StandardResilience` (total timeout, retry, breaker, bulkhead, attempt timeout) and `ServiceBuilderExt::standard_resilience` (implies `retry`) |
//! | `chaos` | [`chaos`]: [`ChaosLayer`](chaos::ChaosLayer), fault injection with per-fault injection rates, switches, seeds and scripted plans; with `http`, statuses (429 with rate-limit headers, 503, 529) and SSE body faults |
//! | `serde` | `Serialize` / `Deserialize` for [`health`] reports |
//! | `axum` | an axum `/health` handler answering 200, or 503 when unhealthy (implies `serde`) |

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
mod builder_ext;
pub mod bulkhead;
#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
pub mod chaos;
pub mod circuit_breaker;
pub mod config;
mod counter;
pub mod events;
pub mod failover;
pub mod fallback;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
pub mod health;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod keyed;
#[cfg(any(feature = "metrics", feature = "opentelemetry"))]
mod observability;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use observability::metrics;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use observability::opentelemetry;
pub mod outcome;
#[cfg(feature = "quota")]
#[cfg_attr(docsrs, doc(cfg(feature = "quota")))]
pub mod quota;
pub mod rejection;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "shared-state")]
#[cfg_attr(docsrs, doc(cfg(feature = "shared-state")))]
pub mod shared_state;
#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
pub mod stack;
mod sync;

pub use builder_ext::ServiceBuilderExt;
pub use config::ConfigError;
pub use outcome::{Classify, Outcome};

/// The boxed error type returned by the services in this crate (the same as
/// `tower::BoxError`); test for a cause with `err.is::<CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
