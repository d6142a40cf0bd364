use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Something a retry policy decided. Delivered to every [`Listener`](crate::events::Listener)
/// registered with [`Builder::on_event`](super::Builder::on_event); never built when there is
/// none. Each decision is also a `tracing` event (target `tower_breaker::retry`).
///
/// A first attempt that succeeds produces no event, and neither does a request that is never
/// eligible for a retry (not idempotent, not copyable, or `max_attempts(1)`): the policy does not
/// copy it and `tower::retry` hands its result straight back.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_breaker::backoff::Backoff;
/// use tower_breaker::retry::{RetryEvent, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let policy = RetryPolicy::builder()
///     .max_attempts(3)
///     .backoff(Backoff::constant(Duration::from_millis(100)))
///     .on_event(move |event: &RetryEvent| match event {
///         RetryEvent::Retrying { attempt, delay, .. } => {
///             sink.lock().unwrap().push(format!("attempt {attempt} failed, retry in {delay:?}"))
///         }
///         RetryEvent::GaveUp { attempt, reason, .. } => {
///             sink.lock().unwrap().push(format!("attempt {attempt} failed, {reason}"))
///         }
///         _ => {}
///     })
///     .build()?;
/// let mut svc = ServiceBuilder::new()
///     .retry(policy)
///     .service(service_fn(|_: ()| async { Err::<(), _>(tower::BoxError::from("down")) }));
/// assert!(svc.ready().await?.call(()).await.is_err());
/// assert_eq!(*seen.lock().unwrap(), [
///     "attempt 1 failed, retry in 100ms",
///     "attempt 2 failed, retry in 100ms",
///     "attempt 3 failed, max_attempts",
/// ]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RetryEvent {
    /// Attempt `attempt` failed; attempt `attempt + 1` starts after `delay`.
    Retrying {
        /// The policy's name.
        name: Arc<str>,
        /// The attempt that failed (1 for the first call).
        attempt: u32,
        /// How long the policy waits before the next attempt.
        delay: Duration,
        /// What failed.
        reason: RetryReason,
        /// True when the delay is the server's (`Retry-After`), false when it is the backoff's.
        server_delay: bool,
    },
    /// Attempt `attempt` failed and its result goes back to the caller.
    GaveUp {
        /// The policy's name.
        name: Arc<str>,
        /// The attempt whose result is returned (1 for the first call).
        attempt: u32,
        /// Why no further attempt is made.
        reason: GiveUpReason,
    },
    /// Attempt `attempt` (2 or more: a retry) did not fail; its result goes back to the caller.
    Succeeded {
        /// The policy's name.
        name: Arc<str>,
        /// The attempt that did not fail.
        attempt: u32,
    },
}

/// What failed, in a [`RetryEvent::Retrying`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The service returned an error that the classifier counts as a failure.
    Error,
    /// The service returned a response that the classifier counts as a failure (a 503, say).
    Response,
    /// A [`BulkheadFull`](crate::bulkhead::BulkheadFull) or
    /// [`BulkheadTimeout`](crate::bulkhead::BulkheadTimeout) rejection: our own bulkhead was
    /// saturated, the upstream was not called.
    BulkheadFull,
    /// Our circuit breaker's rate-limit cool-down rejected the call
    /// ([`RateLimited`](crate::circuit_breaker::RateLimited)), and it waits for the cool-down
    /// to end ([`Builder::wait_out_cool_downs`](super::Builder::wait_out_cool_downs)). The
    /// upstream was not called: this counts as no attempt.
    CoolDown,
}

impl RetryReason {
    /// The reason in `snake_case`, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Error => "error",
            RetryReason::Response => "response",
            RetryReason::BulkheadFull => "bulkhead_full",
            RetryReason::CoolDown => "cool_down",
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a failed attempt was not retried, in a [`RetryEvent::GaveUp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// That was the last of `max_attempts`.
    MaxAttempts,
    /// The next wait, plus the share of the deadline kept for the last attempt, does not fit in
    /// what is left of the deadline.
    Deadline,
    /// The retry budget is spent: too many of the recent calls were retries.
    BudgetExhausted,
    /// The request is not safe to send twice (a POST without an `Idempotency-Key`, say).
    NotIdempotent,
    /// Our circuit breaker rejected the call
    /// ([`CircuitOpen`](crate::circuit_breaker::CircuitOpen)): retrying cannot help before it
    /// probes again.
    CircuitOpen,
    /// Our circuit breaker is cooling down after a rate limit
    /// ([`RateLimited`](crate::circuit_breaker::RateLimited)).
    RateLimited,
    /// A bulkhead rejection, with `retry_bulkhead_full(false)`.
    BulkheadFull,
    /// An error that the classifier does not count as a failure.
    NotRetryable,
}

impl GiveUpReason {
    /// The reason in `snake_case`, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::MaxAttempts => "max_attempts",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::BudgetExhausted => "budget_exhausted",
            GiveUpReason::NotIdempotent => "not_idempotent",
            GiveUpReason::CircuitOpen => "circuit_open",
            GiveUpReason::RateLimited => "rate_limited",
            GiveUpReason::BulkheadFull => "bulkhead_full",
            GiveUpReason::NotRetryable => "not_retryable",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
