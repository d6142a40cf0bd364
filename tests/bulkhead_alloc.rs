//! The bulkhead allocates nothing per call on the uncontended path (a free slot), and nothing
//! per wait once a service has waited once. Counted by a global allocator that wraps `System`
//! and counts per thread, so the test harness's other threads do not disturb the counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service, service_fn};
use tower_breaker::bulkhead::{Bulkhead, BulkheadEvent};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the counting touches only a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn inner()
-> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|n: u64| ready(Ok(n)))
}

/// `poll_ready`, `call`, and the future polled to the end, with a no-op waker.
fn call_once<S: Service<u64, Response = u64>>(svc: &mut S, n: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("not ready: {other:?}"),
    }
    let future = pin!(svc.call(n));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(answer)) => answer,
        Poll::Ready(Err(err)) => panic!("failed: {err:?}"),
        Poll::Pending => panic!("pending"),
    }
}

const CALLS: u64 = 1_000;

#[test]
fn a_call_with_a_free_slot_allocates_nothing() {
    let bulkhead = Bulkhead::builder("alloc")
        .max_concurrent(4)
        .max_queue(16)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut svc = bulkhead.layer().layer(inner());
    call_once(&mut svc, 0);
    let allocations = allocations_in(|| {
        for n in 0..CALLS {
            assert_eq!(call_once(&mut svc, n), n);
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
    call_once(&mut svc, 0);
    let allocations = allocations_in(|| {
        for n in 0..CALLS {
            call_once(&mut svc, n);
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
        assert_eq!(call_once(&mut svc, n), n);
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
