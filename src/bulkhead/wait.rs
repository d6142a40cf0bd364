//! A service's wait for a slot: the semaphore's acquire future and the `max_wait` timer, in
//! one box that the service allocates at its first wait and reuses for every later one.
//!
//! The semaphore's acquire future has no name, so it cannot be a field of the service. Boxing
//! it per wait would allocate on every contended call; instead the box holds a [`Slot`] whose
//! future is replaced in place (`Pin::set`) at the start of each wait. No `unsafe` is needed:
//! the concrete type is only known inside `Slot`, which is reached through the [`Wait`] trait.

use super::state::Shared;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// A slot was taken (and forgotten): wrap it in a `Permit`.
    Slot,
    /// `max_wait` passed first.
    TimedOut,
}

pub(crate) trait Wait: Send + Sync {
    /// Starts a wait for a slot of `shared` that ends at `deadline`, dropping any earlier one.
    fn start(self: Pin<&mut Self>, shared: Arc<Shared>, deadline: Instant);

    /// Polls the wait. After it has ended, the caller gives its place in the queue back, then
    /// calls [`finish`](Wait::finish).
    fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitEnd>;

    /// Leaves the semaphore's queue (returning a slot it was just handed, if any) and
    /// deregisters the timer: the slot holds nothing until the next `start`.
    fn finish(self: Pin<&mut Self>);
}

/// A new, idle wait slot (one allocation).
pub(crate) fn new() -> Pin<Box<dyn Wait>> {
    Box::pin(slot(acquire_slot))
}

/// Waits for a slot of `shared`; `true` when one was taken.
async fn acquire_slot(shared: Arc<Shared>) -> bool {
    match shared.semaphore.acquire().await {
        Ok(permit) => {
            permit.forget();
            true
        }
        // The semaphore is never closed.
        Err(_) => false,
    }
}

pin_project! {
    struct Slot<F, M> {
        #[pin]
        acquire: Option<F>,
        // Dropped as soon as the wait ends, so that no stale timer wakes the task later.
        #[pin]
        sleep: Option<Sleep>,
        make: M,
    }
}

/// Names `F` through `M`'s return type, which a struct literal cannot.
fn slot<F, M>(make: M) -> Slot<F, M>
where
    M: Fn(Arc<Shared>) -> F,
{
    Slot {
        acquire: None,
        sleep: None,
        make,
    }
}

impl<F, M> Wait for Slot<F, M>
where
    M: Fn(Arc<Shared>) -> F + Send + Sync,
    F: Future<Output = bool> + Send + Sync,
{
    fn start(self: Pin<&mut Self>, shared: Arc<Shared>, deadline: Instant) {
        let mut this = self.project();
        this.acquire.set(Some((this.make)(shared)));
        this.sleep.set(Some(tokio::time::sleep_until(deadline)));
    }

    fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitEnd> {
        let mut this = self.project();
        // The slot first: a slot and the deadline arriving together is a slot.
        let end = match this.acquire.as_mut().as_pin_mut().map(|a| a.poll(cx)) {
            Some(Poll::Ready(true)) => WaitEnd::Slot,
            Some(Poll::Pending) => match this.sleep.as_mut().as_pin_mut().map(|s| s.poll(cx)) {
                Some(Poll::Pending) => return Poll::Pending,
                _ => WaitEnd::TimedOut,
            },
            // Not started, or (never in practice) the semaphore closed: no slot will come.
            Some(Poll::Ready(false)) | None => WaitEnd::TimedOut,
        };
        Poll::Ready(end)
    }

    fn finish(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.acquire.set(None);
        this.sleep.set(None);
    }
}
