//! The bound on calls that wait out a breaker's rate-limit cool-down instead of failing fast
//! (`Builder::wait_out_cool_downs`).

use std::fmt;
use std::sync::Arc;
// Plain std atomics: a counter with one compare-and-swap loop, outside the loom models.
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` calls waiting at once; shared by every clone of a policy.
pub(crate) struct CoolDownWaits {
    max: usize,
    waiting: Arc<AtomicUsize>,
}

impl CoolDownWaits {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A place among the waiting calls, or `None` when `max` calls already wait.
    pub(crate) fn try_take(&self) -> Option<WaitSlot> {
        let mut current = self.waiting.load(Ordering::Relaxed);
        loop {
            if current >= self.max {
                return None;
            }
            // Relaxed: the count guards nothing but itself.
            match self.waiting.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(WaitSlot {
                        waiting: self.waiting.clone(),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// The most calls waiting at once.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

impl fmt::Debug for CoolDownWaits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoolDownWaits")
            .field("max", &self.max)
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

/// One waiting call's place, given back when the wait ends or is dropped.
pub(crate) struct WaitSlot {
    waiting: Arc<AtomicUsize>,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_wait_and_a_dropped_slot_is_given_back() {
        let waits = CoolDownWaits::new(2);
        let a = waits.try_take();
        let b = waits.try_take();
        assert!(a.is_some() && b.is_some());
        assert!(waits.try_take().is_none());
        drop(a);
        assert!(waits.try_take().is_some());
        assert!(CoolDownWaits::new(0).try_take().is_none());
    }
}
