//! Retries that don't make outages worse: a `tower::retry::Policy` with backoff and jitter, a
//! retry budget, a deadline, `Retry-After`, and idempotency rules.
//!
//! Naive retries turn a 503 into an outage: each failed call becomes three or four, all at
//! once, against an upstream that is already struggling. [`RetryPolicy`] retries only what is
//! safe, spreads retries out, and stops when retrying cannot help. It is an ordinary
//! [`tower::retry::Policy`](https://docs.rs/tower/latest/tower/retry/trait.Policy.html), so it
//! goes in `tower::retry::RetryLayer` or `ServiceBuilder::retry`.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_breaker::backoff::Backoff;
//! use tower_breaker::retry::{RetryBudget, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)                                   // total attempts, the first included
//!     .backoff(Backoff::exponential(Duration::from_millis(500), Duration::from_secs(8)).full_jitter())
//!     .deadline(Duration::from_secs(30))                 // for all attempts and waits
//!     .reserve_for_last_attempt(0.25)                    // keep 25 % of it for the last try
//!     .budget(RetryBudget::new(0.2, 3))                  // retries <= 20 % of calls, min 3/s
//!     .build()?;
//!
//! // An upstream that fails twice, then answers.
//! let calls = Arc::new(AtomicUsize::new(0));
//! let seen = calls.clone();
//! let mut client = ServiceBuilder::new()
//!     .retry(policy)
//!     .service(service_fn(move |prompt: String| {
//!         let n = seen.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n < 2 { Err(tower::BoxError::from("503")) } else { Ok(format!("echo: {prompt}")) }
//!         }
//!     }));
//!
//! let answer = client.ready().await?.call("hi".to_string()).await?;
//! assert_eq!(answer, "echo: hi");
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # The rules, in the order they are applied to a result
//!
//! 1. **Rejections by our own middleware**, recognised by
//!    [`Rejection::of`](crate::rejection::Rejection::of) in a boxed error and its `source()`
//!    chain. A [`CircuitOpen`](crate::circuit_breaker::CircuitOpen),
//!    [`RateLimited`](crate::circuit_breaker::RateLimited) or
//!    [`HoldRejected`](crate::circuit_breaker::HoldRejected) is never retried: the breaker said
//!    the upstream is down, so fail fast (or go to a fallback). With
//!    [`wait_out_cool_downs`](Builder::wait_out_cool_downs), a `RateLimited` from the policy's
//!    own breaker waits for the cool-down's end instead, when the deadline leaves room and
//!    the bound of waiting calls allows (no attempt counted, no budget token spent). A [`BulkheadFull`](crate::bulkhead::BulkheadFull) or
//!    [`BulkheadTimeout`](crate::bulkhead::BulkheadTimeout) is retried after the backoff unless
//!    `retry_bulkhead_full(false)`.
//! 2. **Classification.** Only results that the classifier counts as
//!    [`Outcome::Failure`](crate::Outcome::Failure) are retried; by default every `Err` and no
//!    `Ok`. For HTTP, [`RetryOnStatus`] (with [`Builder::http`]) adds 408, 429, 500, 502, 503
//!    and 504 responses.
//! 3. **Attempts.** At most `max_attempts` in all, the first call included.
//! 4. **Idempotency.** A request the [`Protocol`] does not call idempotent is sent once: for
//!    HTTP, a POST or PATCH needs an `Idempotency-Key` header ([`IdempotencyKeyLayer`] adds
//!    one). `retry_non_idempotent(true)` overrides.
//! 5. **The delay.** The server's `Retry-After` / `retry-after-ms` on a 429 or 503, capped by
//!    `max_server_delay`; otherwise the [`Backoff`]'s next delay. With a
//!    [`breaker`](Builder::breaker) whose rate-limit cool-down outlasts that delay, the wait
//!    runs to the cool-down's end, the very instant the breaker admits calls again.
//! 6. **The deadline.** If the wait would not end before the deadline with
//!    `reserve_for_last_attempt` of it still left, give up now instead of sleeping.
//! 7. **The budget.** A retry takes a token from the [`RetryBudget`]; none left, fail fast.
//!
//! A failed response is dropped, and its body released, before the wait: `tower::retry`
//! drops the result as soon as the policy has decided. A request that cannot be copied (a
//! streamed body) is sent once and its result returned as it is; it is never dropped. Each
//! decision is a [`RetryEvent`] for the listeners and a `tracing` event.
//!
//! # With a circuit breaker
//!
//! Put the breaker **inside** the retry layer: retries then count as calls, the breaker opens
//! after its threshold, and every retry after that fails fast with `CircuitOpen`, which the
//! policy does not retry. An upstream that is down sees the breaker's threshold plus its
//! half-open probes, not the threshold times `max_attempts`.
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceBuilder, service_fn};
//! use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
//! use tower_breaker::retry::RetryPolicy;
//!
//! # fn main() -> Result<(), tower_breaker::ConfigError> {
//! let breaker = CircuitBreaker::builder("upstream")
//!     .sliding_window(SlidingWindow::consecutive(5))
//!     .build()?;
//! let client = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))       // the whole call, waits included
//!     .retry(RetryPolicy::builder().build()?) // outside the breaker
//!     .layer(breaker.layer())                 // counts every attempt, fails fast when open
//!     .timeout(Duration::from_secs(10))       // one attempt
//!     .service(service_fn(|req: String| async move { Ok::<_, tower::BoxError>(req) }));
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

mod budget;
mod config;
mod cool_down;
mod events;
pub mod future;
#[cfg(feature = "http")]
mod idempotency;
mod policy;
mod protocol;
#[cfg(feature = "http")]
mod protocol_http;
mod protocol_keyed;
#[cfg(feature = "http")]
mod protocol_llm;
#[cfg(feature = "reqwest")]
mod protocol_reqwest;

pub use self::budget::RetryBudget;
pub use self::config::Builder;
pub use self::events::{GiveUpReason, RetryEvent, RetryReason};
pub use self::future::RetryDelay;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::idempotency::{IdempotencyKey, IdempotencyKeyLayer};
pub use self::policy::RetryPolicy;
// Only the stack's gate accounts for calls it rejects before the policy sees them.
#[cfg(feature = "stack")]
pub(crate) use self::policy::Shared as PolicyShared;
pub use self::protocol::{Cloneable, Protocol};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::protocol_http::{
    HttpRequests, IDEMPOTENCY_KEY, RetryOnStatus, X_SHOULD_RETRY, is_idempotent,
};
pub use self::protocol_keyed::BreakerPerKey;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::protocol_llm::{LLM_MAX_SERVER_DELAY, LlmRequests};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use self::protocol_reqwest::ReqwestRequests;
/// The backoff types, re-exported so that one `use tower_breaker::retry::{..}` is enough.
pub use crate::backoff::{Backoff, Jitter};
