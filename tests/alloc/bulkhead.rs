//! The bulkhead allocates nothing per call on the uncontended path (a free slot), and nothing
//! per wait once a service has waited once.

use crate::{CALLS, allocations_in, call_once, inner};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service};
use tower_breaker::bulkhead::{Bulkhead, BulkheadEvent};

#[test]
fn a_call_with_a_free_slot_allocates_nothing() {
    let bulkhead = Bulkhead::builder("alloc")
        .max_concurrent(4)
        .max_queue(16)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut svc = bulkhead.layer().layer(inner());
    call_once(&mut svc, 0).expect("a slot");
    let allocations = allocations_in(|| {
        for n in 0..CALLS {
            assert_eq!(call_once(&mut svc, n).expect("a slot"), n);
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(bulkhead.metrics().active, 0);
}

#[test]
fn listeners_add_no_allocation() {
    let seen = Arc::new(AtomicU64::new(0));
    let sink = seen.clone();
    let bulkhead = Bulkhead::builder("alloc")
        .max_concurrent(4)
        .on_event(move |_: &BulkheadEvent| {
            sink.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let mut svc = bulkhead.layer().layer(inner());
    call_once(&mut svc, 0).expect("a slot");
    let allocations = allocations_in(|| {
        for n in 0..CALLS {
            call_once(&mut svc, n).expect("a slot");
        }
    });
    assert_eq!(allocations, 0);
    // Permitted and finished, for every call.
    assert_eq!(seen.load(Ordering::Relaxed), 2 * (CALLS + 1));
}

#[test]
fn try_acquire_and_drop_allocate_nothing() {
    let bulkhead = Bulkhead::builder("alloc")
        .max_concurrent(2)
        .build()
        .unwrap();
    drop(bulkhead.try_acquire());
    let allocations = allocations_in(|| {
        for _ in 0..CALLS {
            let a = bulkhead.try_acquire().unwrap();
            let b = bulkhead.try_acquire().unwrap();
            drop((a, b));
        }
    });
    assert_eq!(allocations, 0);
}

#[test]
fn a_rejected_call_allocates_only_its_boxed_error() {
    let bulkhead = Bulkhead::builder("alloc")
        .max_concurrent(1)
        .build()
        .unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    let mut svc = bulkhead.layer().layer(inner());
    let mut cx = Context::from_waker(Waker::noop());
    let mut reject = || {
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let future = pin!(svc.call(0));
        assert!(matches!(future.poll(&mut cx), Poll::Ready(Err(_))));
    };
    reject();
    let allocations = allocations_in(|| {
        for _ in 0..CALLS {
            reject();
        }
    });
    assert_eq!(allocations, CALLS, "one `Box<BulkheadFull>` per rejection");
}

#[test]
fn a_service_allocates_its_wait_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _context = runtime.enter();
    let bulkhead = Bulkhead::builder("alloc")
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut svc = bulkhead.layer().layer(inner());
    let mut cx = Context::from_waker(Waker::noop());
    // Waits for the slot, which is then given back; then calls.
    let mut wait_then_call = |n: u64| {
        let held = bulkhead.try_acquire().unwrap();
        assert!(svc.poll_ready(&mut cx).is_pending());
        assert_eq!(bulkhead.metrics().queued, 1);
        drop(held);
        assert_eq!(call_once(&mut svc, n).expect("a slot"), n);
    };
    let first = allocations_in(|| wait_then_call(0));
    assert!(first >= 1, "the first wait allocates its slot");
    let later = allocations_in(|| {
        for n in 1..=CALLS {
            wait_then_call(n);
        }
    });
    assert_eq!(later, 0, "later waits reuse it");
}
