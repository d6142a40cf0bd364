//! `loom` models of the bulkhead's slot and queue accounting: the atomic word that holds the
//! free slots and the count of waiters (`src/bulkhead/state.rs`), run through the real code.
//!
//! What is modelled: taking a free slot (`loom_try_permit`, the first step of `poll_ready`,
//! and `try_acquire`), the admission step of a caller that
//! found none (`loom_enter_queue`: a slot that came free, a place in the queue, or `Full`),
//! giving a slot back (`Permit`'s drop: to the word, or to the waiters' semaphore while anyone
//! waits), giving a place back (dropping it), and a waiter taking a slot handed to the waiters
//! (`LoomPlace::try_take`, which is what the waiter's acquire future does when it is polled
//! first in line). Every interleaving of these on the word is explored.
//!
//! What is not: the inside of `tokio::sync::Semaphore` (its waiter list and FIFO order; it has
//! its own loom suite), and the timer. Those run, but as plain code between loom's steps.
#![cfg(tower_breaker_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::sync::Arc;
use std::time::Duration;
use tower_breaker::bulkhead::{Bulkhead, LoomEntry, Permit};

/// Explores the model with at most 3 preemptions per execution (unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise): enough for every race here, which needs one or two, and the waiters' spin
/// loops would otherwise make the search unbounded.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn bulkhead(slots: u32, queue: u32) -> Bulkhead {
    Bulkhead::builder("loom")
        .max_concurrent(slots)
        .max_queue(queue)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A caller that waits (spinning, as loom requires) until it gets a slot, unless the queue is
/// full. `None` when rejected.
fn acquire_or_wait(bulkhead: &Bulkhead) -> Option<Permit> {
    // The service's `poll_ready`, step by step.
    if let Some(permit) = bulkhead.loom_try_permit() {
        return Some(permit);
    }
    let mut place = match bulkhead.loom_enter_queue() {
        Ok(LoomEntry::Slot(permit)) => return Some(permit),
        Ok(LoomEntry::Queued(place)) => place,
        Err(_full) => return None,
    };
    loop {
        match place.try_take() {
            Ok(permit) => return Some(permit),
            Err(still_waiting) => place = still_waiting,
        }
        // A slot must come: if it were left free in the word while this caller waits on the
        // semaphore, this loop would never end and loom would report it.
        thread::yield_now();
    }
}

/// Holds a slot, checking that no more than `slots` are ever held at once.
fn hold(permit: Permit, held: &AtomicUsize, slots: usize) {
    let now = held.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(now <= slots, "{now} slots held, {slots} exist");
    held.fetch_sub(1, Ordering::SeqCst);
    drop(permit);
}

/// Two callers race for one slot with one place in the queue: at most one holds it at a time,
/// a waiter is always handed the slot, and afterwards every count is back to zero.
#[test]
fn one_slot_two_callers() {
    model(|| {
        let bulkhead = bulkhead(1, 1);
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let bulkhead = bulkhead.clone();
                let held = held.clone();
                thread::spawn(move || {
                    let permit = acquire_or_wait(&bulkhead).expect("one place for one waiter");
                    hold(permit, &held, 1);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let metrics = bulkhead.metrics();
        assert_eq!((metrics.active, metrics.queued), (0, 0));
        assert_eq!(metrics.rejected_full, 0);
        // The slot is free again, wherever it ended up.
        drop(bulkhead.try_acquire().expect("the slot is free"));
    });
}

/// A slot given back while a caller takes a place in the queue is never lost: either the
/// caller sees it free in the word, or it goes to the waiters and the caller takes it there.
#[test]
fn release_racing_with_enqueue_hands_the_slot_over() {
    model(|| {
        let bulkhead = bulkhead(1, 1);
        let permit = bulkhead.try_acquire().unwrap();
        let releaser = thread::spawn(move || drop(permit));
        let waiter = {
            let bulkhead = bulkhead.clone();
            thread::spawn(move || {
                let permit = acquire_or_wait(&bulkhead).expect("room in the queue");
                assert_eq!(bulkhead.metrics().active, 1);
                drop(permit);
            })
        };
        releaser.join().unwrap();
        waiter.join().unwrap();
        let metrics = bulkhead.metrics();
        assert_eq!((metrics.active, metrics.queued), (0, 0));
    });
}

/// A waiter that gives up while the slot is given back: the slot may go to the waiters just as
/// the last one leaves, and must still be usable by the next caller, who never waits for it.
#[test]
fn a_waiter_giving_up_strands_no_slot() {
    model(|| {
        let bulkhead = bulkhead(1, 1);
        let permit = bulkhead.try_acquire().unwrap();
        let releaser = thread::spawn(move || drop(permit));
        let quitter = {
            let bulkhead = bulkhead.clone();
            thread::spawn(move || match bulkhead.loom_enter_queue() {
                Ok(LoomEntry::Queued(place)) => drop(place),
                Ok(LoomEntry::Slot(permit)) => drop(permit),
                Err(full) => panic!("the queue had room: {full}"),
            })
        };
        releaser.join().unwrap();
        quitter.join().unwrap();
        let metrics = bulkhead.metrics();
        assert_eq!((metrics.active, metrics.queued), (0, 0));
        let permit = bulkhead.try_acquire().expect("no slot stranded");
        assert_eq!(bulkhead.metrics().active, 1);
        drop(permit);
    });
}

/// The queue's bound is exact under racing callers: with one place, two callers never both
/// hold it, every rejection is counted once, and every place is given back.
#[test]
fn queue_bound_is_exact() {
    model(|| {
        let bulkhead = bulkhead(1, 1);
        let _busy = bulkhead.try_acquire().unwrap();
        let in_queue = Arc::new(AtomicUsize::new(0));
        let rejected = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let bulkhead = bulkhead.clone();
                let in_queue = in_queue.clone();
                let rejected = rejected.clone();
                thread::spawn(move || match bulkhead.loom_enter_queue() {
                    Ok(LoomEntry::Queued(place)) => {
                        let now = in_queue.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 1, "{now} callers in a queue of 1");
                        assert!(bulkhead.metrics().queued <= 1);
                        in_queue.fetch_sub(1, Ordering::SeqCst);
                        drop(place);
                    }
                    Ok(LoomEntry::Slot(_)) => panic!("the only slot is busy"),
                    Err(_full) => {
                        rejected.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let metrics = bulkhead.metrics();
        assert_eq!(metrics.queued, 0);
        assert_eq!(metrics.active, 1);
        assert_eq!(
            metrics.rejected_full,
            rejected.load(Ordering::SeqCst) as u64
        );
        assert!(
            rejected.load(Ordering::SeqCst) <= 1,
            "the first caller always gets the place"
        );
    });
}

/// Two slots, three callers (one of which can be rejected when both slots are busy and the
/// single place is taken): never more than two held, and everything comes back.
#[test]
fn two_slots_three_callers() {
    model(|| {
        let bulkhead = bulkhead(2, 1);
        let held = Arc::new(AtomicUsize::new(0));
        let rejected = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let bulkhead = bulkhead.clone();
                let held = held.clone();
                let rejected = rejected.clone();
                thread::spawn(move || match acquire_or_wait(&bulkhead) {
                    Some(permit) => hold(permit, &held, 2),
                    None => {
                        rejected.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let metrics = bulkhead.metrics();
        assert_eq!((metrics.active, metrics.queued), (0, 0));
        assert_eq!(
            metrics.rejected_full,
            rejected.load(Ordering::SeqCst) as u64
        );
        let a = bulkhead.try_acquire().expect("both slots are free");
        let b = bulkhead.try_acquire().expect("both slots are free");
        drop((a, b));
    });
}
