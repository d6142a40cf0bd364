//! The hot path allocates nothing: a counting global allocator watches the breaker's calls in
//! the closed and open states, at handle level and through the tower service.
//!
//! Only allocations made by the test's own thread while it is measuring are counted (a
//! thread-local flag), so the test harness and tests running in parallel do not disturb the
//! count. Each test warms up first, so one-time work (tracing callsite registration, lazy
//! statics) is not charged to the steady state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service, service_fn};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};
use tower_breaker::{BoxError, Outcome};

/// Calls measured per test, after as many warm-up calls.
const CALLS: u64 = 1_000;

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
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Runs `call` `CALLS` times to warm up, then `CALLS` times measured; returns the allocations
/// of the measured calls.
fn allocations_per_calls(mut call: impl FnMut(u64)) -> u64 {
    for i in 0..CALLS {
        call(i);
    }
    allocations_in(|| {
        for i in CALLS..2 * CALLS {
            call(i);
        }
    })
}

fn breaker(window: SlidingWindow) -> CircuitBreaker {
    CircuitBreaker::builder("alloc")
        .sliding_window(window)
        .minimum_calls(10)
        .wait_in_open(Duration::from_secs(3600))
        .build()
        .expect("valid config")
}

/// Every closed-state window, with a slow-call rule on the count window so that its timing
/// path is measured too.
fn closed_breakers() -> Vec<(&'static str, CircuitBreaker)> {
    let timed = CircuitBreaker::builder("alloc")
        .sliding_window(SlidingWindow::count_based(100))
        .minimum_calls(10)
        .slow_call_duration(Duration::from_secs(60))
        .build()
        .expect("valid config");
    vec![
        ("count", breaker(SlidingWindow::count_based(100))),
        ("count + slow-call rule", timed),
        (
            "time",
            breaker(SlidingWindow::time_based(Duration::from_secs(60))),
        ),
        ("consecutive", breaker(SlidingWindow::consecutive(5))),
    ]
}

/// Mostly successes, with failures (one in ten: under every threshold, never five in a row)
/// and ignored calls, so that the window's aggregate really moves.
fn outcome(i: u64) -> Outcome {
    match i % 10 {
        0 => Outcome::Failure,
        5 => Outcome::Ignored,
        _ => Outcome::Success,
    }
}

/// A breaker tripped open by a failure, and one forced open.
fn open_breakers() -> Vec<(&'static str, CircuitBreaker)> {
    let tripped = breaker(SlidingWindow::consecutive(1));
    tripped
        .try_acquire()
        .expect("closed")
        .record(Outcome::Failure);
    assert_eq!(tripped.state(), CircuitState::Open);
    let forced = breaker(SlidingWindow::count_based(100));
    forced.force_open();
    vec![("tripped", tripped), ("forced", forced)]
}

type Inner = tower::util::ServiceFn<fn(()) -> Ready<Result<(), Infallible>>>;

fn inner() -> Inner {
    service_fn(|()| ready(Ok(())))
}

/// One call as a tower client makes it: `poll_ready`, `call`, and the future polled to the
/// end. The inner future is ready at once, so one poll with a no-op waker finishes it.
fn call_once<S>(svc: &mut S) -> Result<(), BoxError>
where
    S: Service<(), Response = (), Error = BoxError>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(result) => result?,
        Poll::Pending => panic!("poll_ready is pending"),
    }
    let future = pin!(svc.call(()));
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

#[test]
fn handle_closed_allocates_nothing() {
    for (window, breaker) in closed_breakers() {
        let allocations = allocations_per_calls(|i| {
            let permit = breaker.try_acquire().expect("closed");
            permit.record(outcome(i));
        });
        assert_eq!(breaker.state(), CircuitState::Closed, "{window} window");
        assert_eq!(
            allocations, 0,
            "{window} window: allocations in {CALLS} calls"
        );
    }
}

#[test]
fn handle_dropped_permit_allocates_nothing() {
    for (window, breaker) in closed_breakers() {
        let allocations = allocations_per_calls(|_| {
            drop(breaker.try_acquire().expect("closed"));
        });
        assert_eq!(
            allocations, 0,
            "{window} window: allocations in {CALLS} calls"
        );
    }
}

#[test]
fn handle_open_allocates_nothing() {
    for (state, breaker) in open_breakers() {
        let allocations = allocations_per_calls(|_| {
            let err: CircuitOpen = breaker.try_acquire().expect_err("open");
            drop(err);
        });
        assert_eq!(allocations, 0, "{state} open: allocations in {CALLS} calls");
    }
}

#[test]
fn service_closed_allocates_nothing() {
    for (window, breaker) in closed_breakers() {
        let mut svc = breaker.layer().layer(inner());
        let allocations = allocations_per_calls(|_| {
            call_once(&mut svc).expect("closed");
        });
        assert_eq!(breaker.state(), CircuitState::Closed, "{window} window");
        assert_eq!(
            allocations, 0,
            "{window} window: allocations in {CALLS} calls"
        );
    }
}

#[test]
fn service_dropped_future_allocates_nothing() {
    let breaker = breaker(SlidingWindow::count_based(100));
    let mut svc = breaker.layer().layer(inner());
    let allocations = allocations_per_calls(|_| {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        drop(svc.call(()));
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} calls");
}

#[test]
fn service_open_allocates_only_the_boxed_error() {
    for (state, breaker) in open_breakers() {
        let mut svc = breaker.layer().layer(inner());
        let allocations = allocations_per_calls(|_| {
            let err = call_once(&mut svc).expect_err("open");
            assert!(err.is::<CircuitOpen>());
        });
        // The service's error type is `BoxError` (house style: `err.is::<CircuitOpen>()`), so
        // each rejection boxes its `CircuitOpen`: exactly one allocation, the `Box` itself.
        // Nothing else on the path allocates: the name in `CircuitOpen` is a shared
        // `Arc<str>`, and the rejection is decided without a lock or a boxed future.
        assert_eq!(
            allocations, CALLS,
            "{state} open: allocations in {CALLS} calls"
        );
    }
}
