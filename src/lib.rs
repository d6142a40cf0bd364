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
//! - [`outcome`]: [`Outcome`] and the [`Classify`] trait that turns results into outcomes.
//! - [`events`]: the [`Listener`](events::Listener) trait every component reports to.
//!
//! # Feature flags
//!
//! The core depends only on `tower-layer`, `tower-service`, `pin-project-lite`, `tokio`
//! (`sync`, `time`) and `tracing`.
//!
//! | feature | enables |
//! |---|---|
//! | `full` | every feature below |
//!
//! (Further features, such as `http`, `metrics` and `axum`, arrive with the components that
//! need them; see the changelog.)

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod circuit_breaker;
pub mod config;
pub mod events;
pub mod outcome;
mod sync;

pub use config::ConfigError;
pub use outcome::{Classify, Outcome};

/// The boxed error type returned by the services in this crate (the same as
/// `tower::BoxError`); test for a cause with `err.is::<CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
