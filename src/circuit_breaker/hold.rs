//! Hold and replay: while the breaker rejects calls, a service can hold them (a bounded number,
//! for a bounded time) and let them through when the breaker permits again, instead of failing
//! them at once.

use super::CircuitOpen;
use super::state::Shared;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// How many calls a breaker may hold, and for how long; see
/// [`CircuitBreakerLayer::hold_while_open`](super::CircuitBreakerLayer::hold_while_open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// The most calls held at once, across every service of the breaker.
    pub max_held: usize,
    /// The longest a call is held before it fails with [`HoldRejected`].
    pub max_wait: Duration,
}

/// A held call gave up: the hold was full, or the breaker did not let it through in time.
#[derive(Debug, Clone)]
pub struct HoldRejected {
    name: Arc<str>,
    reason: HoldReason,
    rejection: CircuitOpen,
}

/// Why a call was not held, or stopped being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HoldReason {
    /// `max_held` calls were already held.
    Full {
        /// The limit.
        max_held: usize,
    },
    /// The call was held for `max_wait` and the breaker still rejected it.
    Expired {
        /// How long it was held.
        waited: Duration,
    },
}

impl HoldRejected {
    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the call was not let through.
    pub fn reason(&self) -> HoldReason {
        self.reason
    }

    /// The breaker's last rejection (its state and `retry_after`).
    pub fn rejection(&self) -> &CircuitOpen {
        &self.rejection
    }
}

impl fmt::Display for HoldRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            HoldReason::Full { max_held } => write!(
                f,
                "circuit breaker `{}` rejected the call and its hold is full ({max_held} calls held)",
                self.name
            ),
            HoldReason::Expired { waited } => write!(
                f,
                "circuit breaker `{}` still rejected the call after holding it for {:.3}s",
                self.name,
                waited.as_secs_f64()
            ),
        }
    }
}

/// The source is the breaker's last rejection ([`CircuitOpen`]), so that code walking the
/// chain (the retry policy, classifiers, `tower_breaker::rejection`) sees what the breaker said.
impl std::error::Error for HoldRejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}

/// The breaker's last rejection; held only if the call waited in the hold (not when the hold
/// was full).
impl crate::rejection::OwnRejection for HoldRejected {
    fn rejection(&self) -> crate::rejection::Rejection<'_> {
        let rejection = self.rejection.rejection();
        match self.reason {
            HoldReason::Expired { .. } => rejection.after_hold(),
            HoldReason::Full { .. } => rejection,
        }
    }
}

/// One held call: counted in the breaker's `held` until dropped.
pub(crate) struct Held {
    shared: Arc<Shared>,
    started: Instant,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
}

impl Held {
    /// Takes a place in the hold, or says why not.
    pub(crate) fn enter(
        shared: &Arc<Shared>,
        policy: &HoldPolicy,
        rejection: CircuitOpen,
    ) -> Result<Self, HoldRejected> {
        // The count only bounds itself (no other memory is published through it): each
        // update is atomic, which is all `max_held` needs; AcqRel is kept for clarity.
        let taken = shared
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < policy.max_held).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(HoldRejected {
                name: shared.name.clone(),
                reason: HoldReason::Full {
                    max_held: policy.max_held,
                },
                rejection,
            });
        }
        Ok(Self {
            shared: shared.clone(),
            started: Instant::now(),
            wait: None,
        })
    }

    /// Waits until the breaker changes state, its own wait is over, or the hold expires.
    /// `Ok(())` means: ask the breaker again.
    pub(crate) fn poll_wait(
        &mut self,
        cx: &mut std::task::Context<'_>,
        policy: &HoldPolicy,
        rejection: &CircuitOpen,
    ) -> Poll<Result<(), HoldRejected>> {
        let deadline = self
            .started
            .checked_add(policy.max_wait)
            .unwrap_or_else(|| self.started + crate::config::MAX_DURATION);
        if Instant::now() >= deadline {
            return Poll::Ready(Err(HoldRejected {
                name: self.shared.name.clone(),
                reason: HoldReason::Expired {
                    waited: self.started.elapsed(),
                },
                rejection: rejection.clone(),
            }));
        }
        let wait = self.wait.get_or_insert_with(|| {
            // Ask again when the breaker may let the call through without another call moving
            // it: its open wait or cool-down ends, or a stuck half-open round expires.
            let until = self
                .shared
                .next_change()
                .map_or(deadline, |at| at.min(deadline));
            Box::pin(changed_or(self.shared.clone(), until))
        });
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.wait = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Pairs with `enter`'s update (see there).
        self.shared.held.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("breaker", &self.shared.name)
            .field("since", &self.started)
            .finish()
    }
}

/// Resolves when the breaker changes state or at `until`, whichever is first. Registers for
/// the change before checking the state, so a transition in between is not missed.
async fn changed_or(shared: Arc<Shared>, until: Instant) {
    let mut changed = pin!(shared.changed.notified());
    changed.as_mut().enable();
    if shared.would_permit() {
        return;
    }
    let mut sleep = pin!(tokio::time::sleep_until(until));
    poll_fn(|cx| {
        if changed.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
