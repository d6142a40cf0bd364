//! The hot paths allocate nothing: one counting global allocator watches the breaker's calls
//! in the closed and open states (at handle level and through the tower service), the
//! bulkhead's, and the other per-call paths (keyed lookups, fallback, metrics listener).
//!
//! Only allocations made by the test's own thread while it is measuring are counted (a
//! thread-local flag), so the test harness and tests running in parallel do not disturb the
//! count. Each test warms up first, so one-time work (tracing callsite registration, lazy
//! statics) is not charged to the steady state.

mod breaker;
mod bulkhead;
mod hot_paths;
#[cfg(feature = "quota")]
mod quota;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use tower::{Service, service_fn};

/// Calls measured per test, after as many warm-up calls.
pub(crate) const CALLS: u64 = 1_000;

thread_local! {
    // `const` initialisers with no destructor: reading them never allocates, which the
    // allocator below relies on.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// `System`, plus a count of the allocations (not frees) made while `MEASURING` is set on the
/// allocating thread.
struct CountingAllocator;

impl CountingAllocator {
    fn note() {
        // `try_with`: during thread teardown the thread-locals may already be gone.
        let _ = MEASURING.try_with(|measuring| {
            if measuring.get() {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            }
        });
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the only
// addition is a thread-local counter, which neither allocates nor touches the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note();
        // SAFETY: as for `alloc`; `ptr` came from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns how many allocations this thread made meanwhile.
pub(crate) fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Runs `call` `CALLS` times to warm up, then `CALLS` times measured; returns the allocations
/// of the measured calls.
pub(crate) fn allocations_per_calls(mut call: impl FnMut(u64)) -> u64 {
    for i in 0..CALLS {
        call(i);
    }
    allocations_in(|| {
        for i in CALLS..2 * CALLS {
            call(i);
        }
    })
}

/// The inner service of every test: answers its request at once.
pub(crate) type Inner = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

pub(crate) fn inner() -> Inner {
    service_fn(|n| ready(Ok(n)))
}

/// One call as a tower client makes it: `poll_ready`, `call`, and the future polled to the
/// end. Every inner future here is ready at once, so one poll with a no-op waker finishes it.
pub(crate) fn call_once<S: Service<R>, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(result) => result?,
        Poll::Pending => panic!("poll_ready is pending"),
    }
    let future = pin!(svc.call(req));
    match future.poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the response future is pending"),
    }
}

#[test]
fn the_counter_counts() {
    // Guards every other test: a counter that saw nothing would pass them all.
    let allocations = allocations_in(|| {
        let boxed = std::hint::black_box(Box::new(7_u64));
        drop(boxed);
    });
    assert_eq!(allocations, 1);
    // Allocations of other threads, made while this one measures, are not counted.
    let (go, done) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            go.wait();
            drop(std::hint::black_box(vec![1_u8; 64]));
            done.wait();
        });
        let allocations = allocations_in(|| {
            go.wait();
            done.wait();
        });
        assert_eq!(allocations, 0);
    });
}
