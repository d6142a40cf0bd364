//! Overlapping transitions: what each winner publishes after its compare-and-swap (the
//! generation whose window is in place, a half-open round's deadline) only ever moves
//! forward, whatever the interleaving.

use super::ready_to_probe;
use loom::thread;
use std::time::Duration;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};

/// A probe's close and an operator's reset land together. Whichever wins last, the window of
/// the generation now current is the one in use: the next failure counts (and trips a
/// consecutive(1) breaker). Published with a plain store, the older close could land last
/// and every later record would be dropped.
#[test]
fn a_reset_racing_a_probes_close_leaves_the_newest_window_in_use() {
    loom::model(|| {
        let breaker = ready_to_probe(1, SlidingWindow::consecutive(1));
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        let b = breaker.clone();
        let closer = thread::spawn(move || probe.record(Outcome::Success));
        let resetter = thread::spawn(move || b.reset());
        closer.join().unwrap();
        resetter.join().unwrap();
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "a failure of the current generation was dropped"
        );
    });
}

/// Two half-open rounds back to back, the first one's opener preempted before it publishes
/// its deadline while a second thread ends that round and starts the next. The newer round's
/// deadline must survive: once it has passed, a full round is over (never a `HalfOpen`
/// rejection for ever).
#[test]
fn a_late_deadline_of_an_old_round_never_replaces_a_newer_ones() {
    loom::model(|| {
        let breaker = CircuitBreaker::builder("loom")
            .sliding_window(SlidingWindow::consecutive(1))
            .wait_in_open(Duration::from_millis(1))
            .permitted_calls_in_half_open(1)
            .max_wait_in_half_open(Some(Duration::from_millis(1)))
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        // The hand-moved clock (see `ready_to_probe`).
        tower_breaker::sync::advance(Duration::from_millis(2));

        let b1 = breaker.clone();
        let first = thread::spawn(move || b1.try_acquire().ok());
        let b2 = breaker.clone();
        let second = thread::spawn(move || {
            // End whatever round is running, trip again, and start the next round.
            b2.reset();
            if let Ok(permit) = b2.try_acquire() {
                permit.record(Outcome::Failure);
            }
            tower_breaker::sync::advance(Duration::from_millis(2));
            b2.try_acquire().ok()
        });
        let _first = first.join().unwrap();
        let _second = second.join().unwrap();

        tower_breaker::sync::advance(Duration::from_millis(2));
        if let Err(rejected) = breaker.try_acquire() {
            assert_ne!(
                rejected.state(),
                CircuitState::HalfOpen,
                "a round past its deadline still holds the breaker half-open"
            );
        }
    });
}
