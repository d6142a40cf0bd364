//! The bulkhead used without tower: `try_acquire`, `acquire`, permits.

use crate::{MAX_WAIT, bulkhead, counts};
use std::time::Duration;
use tokio::time::{self, Instant};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower_breaker::bulkhead::AcquireError;

#[tokio::test(start_paused = true)]
async fn try_acquire_takes_free_slots_and_rejects_the_next() {
    let bulkhead = bulkhead(2, 5);
    let a = bulkhead.try_acquire().unwrap();
    let b = bulkhead.try_acquire().unwrap();
    assert_eq!(a.bulkhead_name(), "test");
    assert_eq!(counts(&bulkhead), (2, 0, 0, 0));
    // Never waits, even with room in the queue.
    let err = bulkhead.try_acquire().unwrap_err();
    assert_eq!(err.name(), "test");
    assert_eq!(counts(&bulkhead), (2, 0, 1, 0));
    drop(a);
    assert_eq!(counts(&bulkhead), (1, 0, 1, 0));
    let c = bulkhead.try_acquire().unwrap();
    drop((b, c));
    assert_eq!(counts(&bulkhead), (0, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn clones_of_the_handle_share_the_slots() {
    let bulkhead = bulkhead(1, 0);
    let clone = bulkhead.clone();
    let _permit = bulkhead.try_acquire().unwrap();
    assert!(clone.try_acquire().is_err());
    assert_eq!(counts(&clone), (1, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_for_a_slot() {
    let bulkhead = bulkhead(1, 1);
    let held = bulkhead.try_acquire().unwrap();
    let mut waiting = task::spawn(bulkhead.acquire());
    assert_pending!(waiting.poll());
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));
    time::advance(Duration::from_secs(3)).await;
    assert_pending!(waiting.poll());
    drop(held);
    assert!(waiting.is_woken());
    let permit = assert_ready_ok!(waiting.poll());
    assert_eq!(counts(&bulkhead), (1, 0, 0, 0));
    drop(permit);
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn acquire_times_out_after_exactly_max_wait() {
    let bulkhead = bulkhead(1, 1);
    let _held = bulkhead.try_acquire().unwrap();
    let start = Instant::now();
    let err = bulkhead.acquire().await.unwrap_err();
    assert_eq!(start.elapsed(), MAX_WAIT);
    let AcquireError::Timeout(timeout) = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(timeout.waited(), MAX_WAIT);
    assert_eq!(err.name(), "test");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(counts(&bulkhead), (1, 0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn acquire_rejects_when_the_queue_is_full() {
    let bulkhead = bulkhead(1, 1);
    let _held = bulkhead.try_acquire().unwrap();
    let mut first = task::spawn(bulkhead.acquire());
    assert_pending!(first.poll());
    let start = Instant::now();
    let err = bulkhead.acquire().await.unwrap_err();
    assert!(matches!(err, AcquireError::Full(_)));
    assert_eq!(Instant::now(), start);
    assert_eq!(counts(&bulkhead), (1, 1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn acquire_without_contention_does_not_wait() {
    let bulkhead = bulkhead(1, 0);
    let start = Instant::now();
    let permit = bulkhead.acquire().await.unwrap();
    assert_eq!(Instant::now(), start);
    drop(permit);
    // Fail fast: with no queue, a busy bulkhead rejects at once.
    let _held = bulkhead.try_acquire().unwrap();
    assert!(matches!(
        bulkhead.acquire().await,
        Err(AcquireError::Full(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn dropped_acquire_leaves_the_queue_and_the_slot_goes_on() {
    let bulkhead = bulkhead(1, 2);
    let held = bulkhead.try_acquire().unwrap();
    let mut first = task::spawn(bulkhead.acquire());
    let mut second = task::spawn(bulkhead.acquire());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    drop(first);
    assert_eq!(counts(&bulkhead), (1, 1, 0, 0));
    drop(held);
    assert!(second.is_woken());
    let permit = assert_ready_ok!(second.poll());
    assert_eq!(counts(&bulkhead), (1, 0, 0, 0));
    drop(permit);
}

#[tokio::test(start_paused = true)]
async fn acquire_is_fifo() {
    let bulkhead = bulkhead(1, 3);
    let held = bulkhead.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..3).map(|_| task::spawn(bulkhead.acquire())).collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }
    let mut permit = held;
    for i in 0..3 {
        drop(permit);
        for (j, w) in waiters.iter_mut().enumerate().skip(i + 1) {
            assert!(!w.is_woken(), "waiter {j} woken before waiter {i}");
            assert_pending!(w.poll());
        }
        permit = assert_ready!(waiters[i].poll()).unwrap();
    }
    drop(permit);
    assert_eq!(counts(&bulkhead), (0, 0, 0, 0));
}
