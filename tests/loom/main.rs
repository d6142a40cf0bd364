//! `loom` models of the lock-free cores (breaker and bulkhead). Run with
//! `RUSTFLAGS="--cfg tower_breaker_loom" cargo test --release --lib` (they are compiled into the
//! library's tests, see `src/lib.rs`); every interleaving
//! of the real atomics (swapped for loom's by `crate::sync`) is explored up to
//! `LOOM_MAX_PREEMPTIONS`.
#![cfg(tower_breaker_loom)]

mod bulkhead;
mod transitions;

use loom::thread;
use std::time::Duration;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};

/// A breaker that has tripped and whose (1 ms) wait is over: the next call starts a round.
pub(crate) fn ready_to_probe(probes: u32, window: SlidingWindow) -> CircuitBreaker {
    let breaker = CircuitBreaker::builder("loom")
        .sliding_window(window)
        .minimum_calls(1)
        .wait_in_open(Duration::from_millis(1))
        .permitted_calls_in_half_open(probes)
        .max_wait_in_half_open(None)
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), CircuitState::Open);
    // The library's clock in the loom build is moved by hand (`crate::sync::advance`): no
    // real sleep.
    tower_breaker::sync::advance(Duration::from_millis(2));
    breaker
}

#[test]
fn half_open_never_admits_more_than_n() {
    loom::model(|| {
        let breaker = ready_to_probe(2, SlidingWindow::count_based(4));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = breaker.clone();
                thread::spawn(move || b.try_acquire().ok())
            })
            .collect();
        let permits: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        // The first caller moves Open -> HalfOpen and takes a slot; exactly one more fits.
        assert_eq!(permits.len(), 2);
        assert!(permits.iter().all(|p| p.is_probe()));
        assert_eq!(breaker.metrics().probes_in_flight, 2);
    });
}

#[test]
fn a_released_slot_is_taken_at_most_once() {
    loom::model(|| {
        let breaker = ready_to_probe(1, SlidingWindow::count_based(4));
        let probe = breaker.try_acquire().unwrap();
        let b1 = breaker.clone();
        let releaser = thread::spawn(move || probe.record(Outcome::Ignored));
        let b2 = breaker.clone();
        let a = thread::spawn(move || b1.try_acquire().ok());
        let b = thread::spawn(move || b2.try_acquire().ok());
        releaser.join().unwrap();
        let admitted: Vec<_> = [a.join().unwrap(), b.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert!(admitted.len() <= 1, "one slot, {} admitted", admitted.len());
        let in_flight = breaker.metrics().probes_in_flight;
        assert_eq!(in_flight as usize, admitted.len());
    });
}

#[test]
fn concurrent_probe_outcomes_decide_the_round_exactly_once() {
    loom::model(|| {
        let breaker = ready_to_probe(2, SlidingWindow::consecutive(1));
        let p1 = breaker.try_acquire().unwrap();
        let p2 = breaker.try_acquire().unwrap();
        let t1 = thread::spawn(move || p1.record(Outcome::Success));
        let t2 = thread::spawn(move || p2.record(Outcome::Success));
        t1.join().unwrap();
        t2.join().unwrap();
        // Both successes counted: two successes of two close the breaker, once.
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.metrics().probes_in_flight, 0);
    });
}

#[test]
fn no_outcome_is_lost_or_counted_twice_in_the_count_window() {
    loom::model(|| {
        // A window of 2 and 3 records: two writers can race on one slot.
        let breaker = CircuitBreaker::builder("loom")
            .sliding_window(SlidingWindow::count_based(2))
            .minimum_calls(2)
            .failure_rate_threshold(1.0)
            .build()
            .unwrap();
        let b1 = breaker.clone();
        let b2 = breaker.clone();
        let t1 = thread::spawn(move || {
            b1.try_acquire().unwrap().record(Outcome::Success);
            b1.try_acquire().unwrap().record(Outcome::Success);
        });
        let t2 = thread::spawn(move || b2.try_acquire().unwrap().record(Outcome::Failure));
        t1.join().unwrap();
        t2.join().unwrap();
        let m = breaker.metrics();
        // Two of the three outcomes are in the window, whichever interleaving happened.
        assert_eq!(m.calls, 2);
        assert!(m.failed_calls <= 1);
        assert_eq!(m.successful_calls + m.failed_calls, 2);
    });
}
