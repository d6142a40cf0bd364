//! The bulkhead's shared state: one atomic word for the free slots and the count of waiters,
//! and a fair semaphore that hands slots to the waiters in arrival order.
//!
//! ```text
//!  63                     32 31                       0
//! +-------------------------+--------------------------+
//! |    waiters (<= 1e6)     |    free slots (<= 1e6)   |
//! +-------------------------+--------------------------+
//! ```
//!
//! - **Free slots** are taken and given back by compare-and-swap on the word: with a slot free,
//!   a call costs one CAS to take it and one to give it back, no lock.
//! - **Waiters**: a caller that finds no free slot takes a place in the queue by the same CAS
//!   (only while the queue has room: the count is exact and bounded), then waits on the
//!   `tokio::sync::Semaphore`, which starts with no permits. Its waiters are served in arrival
//!   order, and a waiter dropped while queued leaves at once (giving back a permit it was just
//!   handed). A [`QueueGuard`] gives the place back on every way out of the wait.
//! - **Giving a slot back**: while anyone waits the slot goes to the semaphore, so to the first
//!   waiter; otherwise back to the word. So a free slot is never left in the word while someone
//!   waits (a waiter is only counted when the word has no free slot, and from then on slots go
//!   to the semaphore), and a newcomer never overtakes the queue.
//! - A slot given to the semaphore just as its last waiter left (a waiter gives its place back
//!   before it leaves the semaphore, which returns a slot it was just handed) stays there. A
//!   caller that finds no free slot in the word and nobody waiting takes one from the semaphore
//!   before it queues, so such a slot is used by the next caller; it counts as free in the
//!   metrics.
//!
//! Every slot is in one place at a time: free in the word, available in the semaphore, handed
//! to a waiter, or held by a [`Permit`]; so at most `max_concurrent` permits exist.

use super::error::{BulkheadFull, BulkheadTimeout};
use super::events::{BulkheadEvent, RejectionReason};
use super::{BulkheadMetrics, Permit};
use crate::events::Listeners;
use crate::sync::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) max_concurrent: u32,
    pub(crate) max_wait: Duration,
    max_queue: u32,
    /// Free slots (low half) and waiters (high half).
    slots: AtomicU64,
    /// Slots for the waiters, handed over in arrival order. Starts empty.
    pub(crate) semaphore: Semaphore,
    rejected_full: AtomicU64,
    rejected_timeout: AtomicU64,
    listeners: Listeners<BulkheadEvent>,
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        max_concurrent: u32,
        max_queue: u32,
        max_wait: Duration,
        listeners: Listeners<BulkheadEvent>,
    ) -> Self {
        Self {
            name,
            max_concurrent,
            max_wait,
            max_queue,
            slots: AtomicU64::new(max_concurrent as u64),
            semaphore: Semaphore::new(0),
            rejected_full: AtomicU64::new(0),
            rejected_timeout: AtomicU64::new(0),
            listeners,
        }
    }

    /// Takes a free slot, if there is one: from the word, or one left with the semaphore.
    #[inline]
    pub(crate) fn try_permit(self: &Arc<Self>) -> Option<Permit> {
        let mut word = self.slots.load(Ordering::Relaxed);
        while word & FREE_MASK != 0 {
            match self.slots.compare_exchange_weak(
                word,
                word - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.permitted(Duration::ZERO)),
                Err(actual) => word = actual,
            }
        }
        // A slot in the semaphore while someone waits is theirs (they may not have reached
        // the semaphore yet): only take one when nobody does.
        if word >> WAITERS_SHIFT == 0 {
            self.try_semaphore()
        } else {
            None
        }
    }

    /// Takes a slot that was given to the semaphore as its last waiter left.
    #[cold]
    fn try_semaphore(self: &Arc<Self>) -> Option<Permit> {
        match self.semaphore.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Some(self.permitted(Duration::ZERO))
            }
            // `NoPermits`, or `Closed`, which cannot happen: the semaphore is never closed.
            Err(_) => None,
        }
    }

    /// Wraps a slot that was just taken from the word, or from the semaphore and forgotten.
    #[inline]
    pub(crate) fn permitted(self: &Arc<Self>, waited: Duration) -> Permit {
        self.listeners.emit(|| BulkheadEvent::CallPermitted {
            name: self.name.clone(),
            waited,
        });
        Permit {
            shared: self.clone(),
        }
    }

    /// Gives a slot back: to the first waiter if anyone waits, else to the word.
    #[inline]
    pub(crate) fn release(&self) {
        let mut word = self.slots.load(Ordering::Relaxed);
        loop {
            if word >> WAITERS_SHIFT != 0 {
                self.semaphore.add_permits(1);
                break;
            }
            match self.slots.compare_exchange_weak(
                word,
                word + 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        self.listeners.emit(|| BulkheadEvent::CallFinished {
            name: self.name.clone(),
        });
    }

    /// For a caller that found no free slot: takes one if it has come free since, or a place in
    /// the queue if there is room, or rejects the call (counted). One CAS decides.
    pub(crate) fn enter_queue(self: &Arc<Self>) -> Result<Entry, BulkheadFull> {
        let mut word = self.slots.load(Ordering::Relaxed);
        loop {
            let (next, queued) = if word & FREE_MASK != 0 {
                (word - 1, false)
            } else if word >> WAITERS_SHIFT < self.max_queue as u64 {
                (word + WAITER, true)
            } else {
                return Err(self.reject_full());
            };
            match self
                .slots
                .compare_exchange_weak(word, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if queued => {
                    self.listeners.emit(|| BulkheadEvent::CallQueued {
                        name: self.name.clone(),
                    });
                    return Ok(Entry::Queued(QueueGuard {
                        shared: self.clone(),
                    }));
                }
                Ok(_) => return Ok(Entry::Slot(self.permitted(Duration::ZERO))),
                Err(actual) => word = actual,
            }
        }
    }

    /// Gives back a place taken by [`enter_queue`](Self::enter_queue); only [`QueueGuard`]
    /// calls it.
    fn leave_queue(&self) {
        self.slots.fetch_sub(WAITER, Ordering::Relaxed);
        self.listeners.emit(|| BulkheadEvent::CallLeftQueue {
            name: self.name.clone(),
        });
    }

    /// Counts and reports a rejection for lack of room.
    #[cold]
    pub(crate) fn reject_full(&self) -> BulkheadFull {
        self.rejected_full.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            bulkhead = %self.name,
            max_concurrent = self.max_concurrent,
            max_queue = self.max_queue,
            "call rejected: bulkhead full"
        );
        self.listeners.emit(|| BulkheadEvent::CallRejected {
            name: self.name.clone(),
            reason: RejectionReason::Full,
        });
        BulkheadFull::new(self.name.clone(), self.max_concurrent, self.max_queue)
    }

    /// Counts and reports a waiter that gave up after `max_wait`.
    #[cold]
    pub(crate) fn reject_timeout(&self, waited: Duration) -> BulkheadTimeout {
        self.rejected_timeout.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            bulkhead = %self.name,
            waited_ms = waited.as_millis() as u64,
            "call rejected: no slot came free within max_wait"
        );
        self.listeners.emit(|| BulkheadEvent::CallRejected {
            name: self.name.clone(),
            reason: RejectionReason::Timeout,
        });
        BulkheadTimeout::new(self.name.clone(), waited)
    }

    pub(crate) fn max_queue(&self) -> u32 {
        self.max_queue
    }

    pub(crate) fn metrics(&self) -> BulkheadMetrics {
        let word = self.slots.load(Ordering::Relaxed);
        let free = (word & FREE_MASK) as usize + self.semaphore.available_permits();
        BulkheadMetrics {
            active: (self.max_concurrent as usize).saturating_sub(free) as u32,
            queued: (word >> WAITERS_SHIFT) as u32,
            rejected_full: self.rejected_full.load(Ordering::Relaxed),
            rejected_timeout: self.rejected_timeout.load(Ordering::Relaxed),
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("max_wait", &self.max_wait)
            .field("metrics", &self.metrics())
            .field("listeners", &self.listeners)
            .finish()
    }
}

/// The free slots in the word.
const FREE_MASK: u64 = (1 << 32) - 1;
const WAITERS_SHIFT: u32 = 32;
/// One waiter in the word.
const WAITER: u64 = 1 << WAITERS_SHIFT;

/// What [`Shared::enter_queue`] got.
pub(crate) enum Entry {
    /// A slot came free.
    Slot(Permit),
    /// A place in the queue: now wait on the semaphore.
    Queued(QueueGuard),
}

/// A place in the wait queue, given back when dropped: on a slot, on a timeout, and when the
/// waiting future or service is dropped.
pub(crate) struct QueueGuard {
    shared: Arc<Shared>,
}

impl QueueGuard {
    #[cfg(tower_breaker_loom)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.shared.leave_queue();
    }
}

impl fmt::Debug for QueueGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueGuard")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}
