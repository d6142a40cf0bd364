//! The future a [`RetryPolicy`](super::RetryPolicy) hands to `tower::retry`: the wait before
//! the next attempt.
//!
//! `tower::retry::Retry` drives it for you; driving the policy by hand looks like this:
//!
//! ```
//! use std::time::Duration;
//! use tower::retry::Policy;
//! use tower_breaker::backoff::Backoff;
//! use tower_breaker::retry::{RetryDelay, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let mut policy = RetryPolicy::builder()
//!     .backoff(Backoff::constant(Duration::from_millis(100)))
//!     .build()?;
//! let mut request = "hi".to_string();
//! // Before the first attempt: a copy to retry with (this also starts the deadline's clock).
//! let copy = Policy::<String, (), tower::BoxError>::clone_request(&mut policy, &request);
//! assert_eq!(copy.as_deref(), Some("hi"));
//!
//! let mut result: Result<(), tower::BoxError> = Err("upstream is down".into());
//! let delay: RetryDelay = policy.retry(&mut request, &mut result).expect("worth a retry");
//! let start = tokio::time::Instant::now();
//! delay.await;
//! assert_eq!(start.elapsed(), Duration::from_millis(100));
//! # Ok(())
//! # }
//! ```

use super::cool_down::WaitSlot;
use crate::circuit_breaker::CircuitBreaker;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// The wait before a retry: a `tokio::time::Sleep` until an instant, or nothing for a zero
    /// delay (no timer is registered). Paused tokio time drives it.
    ///
    /// Named so that it can appear in types, but made only by the policy.
    pub struct RetryDelay {
        #[pin]
        kind: Kind,
        // A place among the calls waiting out a cool-down, given back when the wait is over
        // (`tower::retry` drops the delay before the next attempt) or dropped.
        slot: Option<WaitSlot>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Now,
        Sleep { #[pin] sleep: Sleep },
        // Boxed once per retry (never on the first attempt): the breaker's watch is an
        // `async` block, whose type cannot be named here.
        Watch { #[pin] sleep: Sleep, opened: Pin<Box<dyn Future<Output = ()> + Send + Sync>> },
    }
}

impl RetryDelay {
    /// A wait until `wake`; none when it has come. Needs a tokio runtime with time enabled
    /// unless it has.
    pub(crate) fn until(wake: Instant) -> Self {
        let kind = if wake <= Instant::now() {
            Kind::Now
        } else {
            Kind::Sleep {
                sleep: tokio::time::sleep_until(wake),
            }
        };
        Self { kind, slot: None }
    }

    /// A wait until `wake` that ends early when `breaker` starts rejecting calls that would be
    /// made then (it opened): the next attempt then fails at once with its error. `wake` is
    /// the instant itself, not a delay read again from another clock: when it is the end of
    /// the breaker's cool-down, the breaker admits the call made at it.
    pub(crate) fn watching(
        wake: Instant,
        breaker: &CircuitBreaker,
        slot: Option<WaitSlot>,
    ) -> Self {
        let sleep = tokio::time::sleep_until(wake);
        let opened = Box::pin(breaker.rejecting_at(wake));
        Self {
            kind: Kind::Watch { sleep, opened },
            slot,
        }
    }
}
impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().kind.project() {
            KindProj::Now => Poll::Ready(()),
            KindProj::Sleep { sleep } => sleep.poll(cx),
            KindProj::Watch { sleep, opened } => {
                if sleep.poll(cx).is_ready() || opened.as_mut().poll(cx).is_ready() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl fmt::Debug for RetryDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deadline = match &self.kind {
            Kind::Now => None,
            Kind::Sleep { sleep } | Kind::Watch { sleep, .. } => Some(sleep.deadline()),
        };
        f.debug_struct("RetryDelay")
            .field("deadline", &deadline)
            .finish()
    }
}
