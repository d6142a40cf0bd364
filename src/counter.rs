//! An exact event counter whose increments are usually a plain load and store.
//!
//! A `fetch_add` is a locked read-modify-write: on the rejection path of an open breaker it
//! was about a seventh of the whole cost. A relaxed load + store is several times cheaper but
//! loses increments when two threads race. This counter keeps both: a few slots, each claimed
//! for good by the first thread that counts into it, which from then on is the only writer of
//! that slot's count and can add with a load and a store. A thread whose slot another thread
//! owns counts with `fetch_add` into a shared count. The total is the sum of all of them, so no
//! increment is ever lost; a thread that exits keeps its slot (and its count).

use crate::sync::{AtomicU64, Ordering};
use std::cell::Cell;

/// Slots per counter: threads that count concurrently and all get the cheap path (more
/// threads still count exactly, through `fetch_add`). A power of two.
const SLOTS: usize = 4;

/// Thread ids start at 1; 0 marks a free slot and a thread that has no id yet.
static NEXT_THREAD_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[cfg(not(all(test, tower_breaker_loom)))]
std::thread_local! {
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
}
#[cfg(all(test, tower_breaker_loom))]
loom::thread_local! {
    static THREAD_ID: Cell<u64> = Cell::new(0);
}

/// This thread's id, never reused; 0 when the thread's locals are already gone (a count made
/// from another thread-local's destructor), which counts through the shared count.
#[inline]
fn thread_id() -> u64 {
    match THREAD_ID.try_with(Cell::get) {
        Ok(0) => new_thread_id(),
        Ok(id) => id,
        Err(_) => 0,
    }
}

#[cold]
fn new_thread_id() -> u64 {
    let id = NEXT_THREAD_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match THREAD_ID.try_with(|cell| cell.set(id)) {
        Ok(()) => id,
        Err(_) => 0,
    }
}

struct Slot {
    /// The thread that owns `count` (0: nobody yet).
    owner: AtomicU64,
    /// Written only by `owner`.
    count: AtomicU64,
}

pub(crate) struct Counter {
    slots: [Slot; SLOTS],
    /// Increments by threads that own no slot.
    shared: AtomicU64,
}

impl Counter {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot {
                owner: AtomicU64::new(0),
                count: AtomicU64::new(0),
            }),
            shared: AtomicU64::new(0),
        }
    }

    /// Adds one.
    #[inline]
    pub(crate) fn increment(&self) {
        let id = thread_id();
        let slot = &self.slots[id as usize % SLOTS];
        if id != 0 && slot.owner.load(Ordering::Relaxed) == id {
            // Only this thread writes this count: a load and a store lose nothing.
            let n = slot.count.load(Ordering::Relaxed);
            slot.count.store(n.wrapping_add(1), Ordering::Relaxed);
        } else {
            self.increment_unowned(slot, id);
        }
    }

    #[cold]
    fn increment_unowned(&self, slot: &Slot, id: u64) {
        let claimed = id != 0
            && slot
                .owner
                .compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        let count = if claimed { &slot.count } else { &self.shared };
        // Also the first increment of a new owner: no other thread writes its count.
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// The total. Increments that happen before the call (by any thread) are in it; one made
    /// during it may or may not be.
    pub(crate) fn sum(&self) -> u64 {
        self.slots
            .iter()
            .fold(self.shared.load(Ordering::Relaxed), |sum, slot| {
                sum.wrapping_add(slot.count.load(Ordering::Relaxed))
            })
    }
}

#[cfg(all(test, not(tower_breaker_loom)))]
mod tests {
    use super::Counter;

    #[test]
    fn counts_every_increment_of_many_threads() {
        let counter = Counter::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        counter.increment();
                    }
                });
            }
        });
        assert_eq!(counter.sum(), 80_000);
        counter.increment();
        assert_eq!(counter.sum(), 80_001);
    }
}

#[cfg(all(test, tower_breaker_loom))]
mod loom_models {
    use super::Counter;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn no_increment_is_lost() {
        loom::model(|| {
            let counter = Arc::new(Counter::new());
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let counter = counter.clone();
                    thread::spawn(move || {
                        counter.increment();
                        counter.increment();
                    })
                })
                .collect();
            counter.increment();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(counter.sum(), 5);
        });
    }
}
