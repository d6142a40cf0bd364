//! The breaker: nothing allocated per call, closed or open, at handle level or through the
//! tower service (except the boxed error of a rejection).

use crate::{CALLS, allocations_per_calls, call_once, inner};
use std::task::{Context, Waker};
use std::time::Duration;
use tower::{Layer, Service};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};

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
        let allocations = allocations_per_calls(|i| {
            call_once(&mut svc, i).expect("closed");
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
        drop(svc.call(0));
    });
    assert_eq!(allocations, 0, "allocations in {CALLS} calls");
}

#[test]
fn service_open_allocates_only_the_boxed_error() {
    for (state, breaker) in open_breakers() {
        let mut svc = breaker.layer().layer(inner());
        let allocations = allocations_per_calls(|_| {
            let err = call_once(&mut svc, 0).expect_err("open");
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
