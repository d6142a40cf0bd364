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
//! # Guides
//!
//! The depth behind the README, one page per subject (an LLM API, the standard stack and the
//! order of layers, the breaker's rules, retries, streaming, fallbacks and failover, quotas,
//! observability, chaos, Redis, performance): [`tower_breaker::guide`][guide], with all
//! features (as on docs.rs).
//!
//! [guide]: https://docs.rs/tower-breaker/latest/tower_breaker/guide/index.html
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
//! - [`stream`] (feature `stream`): streamed LLM calls: time-to-first-token and idle deadlines,
//!   a stream cut before its `[DONE]` counted as a failure, failover before the first token,
//!   hedging.
//! - [`keyed`]: one breaker per key (provider, model, host), bounded in number.
//! - [`chaos`] (feature `chaos`): fault injection, seeded or scripted: errors, latency, and
//!   with `http` statuses with rate-limit headers and SSE stream faults.
//! - [`health`]: a registry and report of breakers and bulkheads; an axum `/health` handler.
//! - [`dashboard`] (feature `dashboard`): a live page (SSE) and a JSON snapshot of every
//!   breaker, bulkhead, keyed registry, quota, adaptive limit and hedge, on axum.
//! - `stack` (feature `stack`): `StandardResilience`, the whole client stack in one call.
//! - [`shared_state`] (feature `shared-state`): breakers shared across replicas: a trip on one
//!   opens the breaker on every replica. The [`StateStore`](shared_state::StateStore) trait,
//!   an in-process [`MemoryStore`](shared_state::MemoryStore), and the
//!   [`SharedState`](shared_state::SharedState) settings a breaker builder takes.
//! - [`RedisStore`](shared_state::RedisStore) (feature `redis`, in [`shared_state`]): the
//!   fleet's state in Redis, with a reconnecting connection and pub/sub notices; over TLS
//!   (`rediss://`) with feature `redis-tls`.
//! - [`outcome`]: [`Outcome`] and the [`Classify`] trait that turns results into outcomes.
//! - [`events`]: the [`Listener`](events::Listener) trait every component reports to.
//! - [`call_span`]: one `tracing` span per call (`tower_breaker.call`), into which the breaker,
//!   the retry, the quota and the stream guard record the attempts, the breaker's state at
//!   admission, the quota's wait, the time to first token, the outcome and the error's kind;
//!   the standard stack opens it, and costs nothing with no subscriber.
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
//! (`sync`, `time`), `tracing`, and `tower` with no feature (for
//! [`ServiceBuilderExt`]).
//!
//! | feature | enables |
//! |---|---|
//! | `full` | every feature below |
//! | `http` | [`http`]: HTTP response classification ([`HttpClassifier`](http::HttpClassifier)), `Retry-After` parsing, bodies that record the breaker's outcome when the stream ends; a [bulkhead](bulkhead#http-responses) permit held until an `http::Response` body ends |
//! | `reqwest` | the same classification for `reqwest::Response` / `reqwest::Error` (implies `http`) |
//! | `grpc` | [`grpc`]: `grpc-status` from headers or trailers ([`GrpcClassifier`](grpc::GrpcClassifier)), for tonic channels (implies `http`) |
//! | `retry` | [`retry`]: [`RetryPolicy`](retry::RetryPolicy), a `tower::retry::Policy` with [backoff] and jitter, a retry budget, a deadline, and never a retry of an open circuit; with `http`, `Retry-After` and idempotency rules ([`IdempotencyKeyLayer`](retry::IdempotencyKeyLayer)); with `reqwest`, `reqwest::Request` copied by `try_clone` |
//! | `stream` | [`stream`]: [`StreamGuardLayer`](stream::StreamGuardLayer) (time-to-first-token and idle deadlines, SSE completion rules for OpenAI and Anthropic streams), [`Hedge`](stream::Hedge) (implies `http` and `retry`) |
//! | `metrics` | [`metrics`]: [`MetricsListener`](metrics::MetricsListener), counters, gauges and histograms for every component through the `metrics` facade (any exporter) |
//! | `opentelemetry` | [`opentelemetry`]: [`OpenTelemetryListener`](opentelemetry::OpenTelemetryListener), the same instruments through an OpenTelemetry `Meter` |
//! | `reqwest-middleware` | [`reqwest_middleware`]: breaker, bulkhead and retry middleware for `reqwest-middleware`'s `ClientWithMiddleware` (implies `reqwest`, `retry`) |
//! | `stack` | `stack`: `StandardResilience` (total timeout, retry, breaker, bulkhead, attempt timeout) and `ServiceBuilderExt::standard_resilience` (implies `retry`) |
//! | `chaos` | [`chaos`]: [`ChaosLayer`](chaos::ChaosLayer), fault injection with per-fault injection rates, switches, seeds and scripted plans; with `http`, statuses (429 with rate-limit headers, 503, 529) and SSE body faults |
//! | `serde` | `Serialize` / `Deserialize` for [`health`] reports |
//! | `axum` | an axum `/health` handler answering 200, or 503 when unhealthy (implies `serde`) |
//! | `dashboard` | [`dashboard`]: a live HTML page, a stream of snapshots (SSE) and a JSON snapshot of every registered component, as one axum router (implies `axum`) |
//! | `shared-state` | [`shared_state`]: breakers shared across replicas through a [`StateStore`](shared_state::StateStore), with an in-process [`MemoryStore`](shared_state::MemoryStore) (tokio's `rt` for the sync task) |
//! | `redis` | [`RedisStore`](shared_state::RedisStore): the fleet's state in Redis (implies `shared-state`) |
//! | `redis-tls` | `RedisStore` over TLS (`rediss://` URLs) with rustls and its `ring` provider; no OpenSSL (implies `redis`) |
//! | `quota` | [`quota`]: [`Quota`](quota::Quota) and [`QuotaLayer`](quota::QuotaLayer), request and token budgets per key; with `http`, paced by the providers' rate-limit headers; with `shared-state`, one quota for many replicas |

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
pub mod call_span;
#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
pub mod chaos;
pub mod circuit_breaker;
pub mod config;
mod counter;
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub mod dashboard;
pub mod events;
pub mod failover;
pub mod fallback;
// The guides' examples need most features; docs.rs builds with all of them.
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
#[cfg(feature = "full")]
pub mod guide;
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
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod provider_error;
#[cfg(feature = "quota")]
#[cfg_attr(docsrs, doc(cfg(feature = "quota")))]
pub mod quota;
mod random;
pub mod rejection;
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod reqwest_middleware;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod settings;
#[cfg(feature = "shared-state")]
#[cfg_attr(docsrs, doc(cfg(feature = "shared-state")))]
pub mod shared_state;
#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
pub mod stack;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub mod stream;
mod sync;
#[cfg(any(feature = "quota", feature = "shared-state"))]
mod token_bucket;

// The loom models live in tests/loom but run inside the library's tests, the only build where
// `crate::sync` is loom's (`loom` is a dev-dependency). They name the crate `tower_breaker`,
// as an integration test would.
#[cfg(all(test, tower_breaker_loom))]
extern crate self as tower_breaker;
#[cfg(all(test, tower_breaker_loom))]
#[path = "../tests/loom/main.rs"]
mod loom_models;

pub use builder_ext::ServiceBuilderExt;

/// Every `rust` code block of README.md, compiled (and, unless marked `no_run`, run) as a doc
/// test, so that the README cannot drift from the API. Not part of the rendered docs.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use config::ConfigError;

/// Every error type of this crate that is a rejection, for [`rejection::Rejection`]. The crate
/// root knows every module; listing them here lets `rejection` sit below all of them. A new
/// rejection type implements `rejection::OwnRejection` next to its definition and is added
/// here.
pub(crate) const REJECTIONS: &[rejection::Recogniser] = &[
    rejection::Recogniser::of::<circuit_breaker::CircuitOpen>(),
    rejection::Recogniser::of::<circuit_breaker::RateLimited>(),
    rejection::Recogniser::of::<circuit_breaker::HoldRejected>(),
    rejection::Recogniser::of::<bulkhead::BulkheadFull>(),
    rejection::Recogniser::of::<bulkhead::BulkheadTimeout>(),
    rejection::Recogniser::of::<bulkhead::AcquireError>(),
    #[cfg(feature = "quota")]
    rejection::Recogniser::of::<quota::QuotaExceeded>(),
];
pub use outcome::{Classify, Outcome};

/// The boxed error type returned by the services in this crate (the same as
/// `tower::BoxError`); test for a cause with `err.is::<CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
