//! Open, half-open and the way back: probes, generations, timeouts, growth.

use crate::support::{advance, ms, script, secs};
use std::sync::{Arc, Mutex};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitState, SlidingWindow,
};

/// Trips on one failure, waits 10 s, `probes` probes per round.
fn breaker(window: SlidingWindow, probes: u32) -> CircuitBreaker {
    CircuitBreaker::builder("probe")
        .sliding_window(window)
        .minimum_calls(1)
        .failure_rate_threshold(0.5)
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(probes)
        .max_wait_in_half_open(Some(secs(30)))
        .build()
        .unwrap()
}

async fn trip_and_wait(breaker: &CircuitBreaker) {
    script(breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
    advance(secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_exact() {
    let b = breaker(SlidingWindow::consecutive(1), 1);
    script(&b, "F");
    advance(ms(9_999)).await;
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(ms(1)));
    advance(ms(1)).await;
    assert!(b.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn n_probes_are_admitted_and_the_next_is_rejected() {
    let b = breaker(SlidingWindow::count_based(10), 3);
    trip_and_wait(&b).await;
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert!(probes.iter().all(|p| p.is_probe()));
    let err = b.try_acquire().unwrap_err();
    assert_eq!(err.state(), CircuitState::HalfOpen);
    assert_eq!(b.metrics().probes_in_flight, 3);
    drop(probes);
}

#[tokio::test(start_paused = true)]
async fn concurrent_acquires_admit_exactly_n() {
    let b = breaker(SlidingWindow::count_based(10), 4);
    trip_and_wait(&b).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.try_acquire().ok() })
        })
        .collect();
    let mut admitted = Vec::new();
    for t in tasks {
        if let Some(p) = t.await.unwrap() {
            admitted.push(p);
        }
    }
    assert_eq!(admitted.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn consecutive_rule_closes_after_n_successes_and_reopens_on_any_failure() {
    let b = breaker(SlidingWindow::consecutive(1), 3);
    trip_and_wait(&b).await;
    script(&b, "SS");
    assert_eq!(b.state(), CircuitState::HalfOpen);
    script(&b, "S");
    assert_eq!(b.state(), CircuitState::Closed);

    trip_and_wait(&b).await;
    script(&b, "SSF");
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn rate_rule_decides_as_soon_as_the_result_is_certain() {
    // 4 probes, threshold 0.5: two failures make 2/4 = 0.5, a certain reopen.
    let b = breaker(SlidingWindow::count_based(10), 4);
    trip_and_wait(&b).await;
    script(&b, "SF");
    assert_eq!(b.state(), CircuitState::HalfOpen);
    script(&b, "F");
    assert_eq!(b.state(), CircuitState::Open);

    // Three successes: even a fourth failure would make only 1/4. Closes early.
    advance(secs(10)).await;
    script(&b, "SS");
    assert_eq!(b.state(), CircuitState::HalfOpen);
    script(&b, "S");
    assert_eq!(b.state(), CircuitState::Closed);
    // The window starts empty after closing.
    assert_eq!(b.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn rate_rule_waits_for_every_probe_when_it_must() {
    // 4 probes, threshold 0.3: after S, S, F the rate is 1/4 or 2/4: undecided until the last.
    let b = CircuitBreaker::builder("probe")
        .sliding_window(SlidingWindow::count_based(10))
        .minimum_calls(1)
        .failure_rate_threshold(0.3)
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(4)
        .build()
        .unwrap();
    trip_and_wait(&b).await;
    let probes: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    let mut probes = probes.into_iter();
    probes.next().unwrap().record(Outcome::Success);
    probes.next().unwrap().record(Outcome::Success);
    probes.next().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    probes.next().unwrap().record(Outcome::Success); // 1/4 = 0.25 < 0.3
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn ignored_and_dropped_probes_give_their_slot_back() {
    let b = breaker(SlidingWindow::count_based(10), 1);
    trip_and_wait(&b).await;
    let probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    probe.record(Outcome::Ignored);
    assert_eq!(b.state(), CircuitState::HalfOpen);

    let probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(probe); // a cancelled call
    assert_eq!(b.metrics().ignored_calls, 2);

    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_stale_outcome_cannot_close_the_breaker() {
    let b = breaker(SlidingWindow::count_based(10), 1);
    // A slow call admitted while closed...
    let slow = b.try_acquire().unwrap();
    // ...the breaker trips meanwhile and goes half-open...
    trip_and_wait(&b).await;
    let probe = b.try_acquire().unwrap();
    // ...then the old call succeeds. It belongs to a finished generation: nothing changes.
    slow.record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_eq!(b.metrics().probes_in_flight, 1);
    probe.record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_stale_failure_cannot_trip_a_breaker_that_just_closed() {
    let b = breaker(SlidingWindow::count_based(10), 1);
    let old = b.try_acquire().unwrap();
    trip_and_wait(&b).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::Closed);
    old.record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_settles_is_undone_by_max_wait_in_half_open() {
    let b = breaker(SlidingWindow::count_based(10), 1);
    trip_and_wait(&b).await;
    let hung = b.try_acquire().unwrap();
    advance(ms(29_999)).await;
    assert_eq!(b.try_acquire().unwrap_err().state(), CircuitState::HalfOpen);
    advance(ms(1)).await;
    // The round timed out: the breaker reopens for another wait.
    let err = b.try_acquire().unwrap_err();
    assert_eq!(err.state(), CircuitState::Open);
    assert_eq!(err.retry_after(), Some(secs(10)));
    assert_eq!(b.state(), CircuitState::Open);
    // The hung probe finally succeeds: too late, a new generation has begun.
    hung.record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::Open);
    advance(secs(10)).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_time_grows_with_each_reopen_up_to_the_cap_and_resets_on_close() {
    let b = CircuitBreaker::builder("growth")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1)
        .open_time_growth(2.0, secs(35))
        .build()
        .unwrap();
    script(&b, "F");
    let mut waits = Vec::new();
    for _ in 0..4 {
        let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
        waits.push(wait);
        advance(wait).await;
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(waits, vec![secs(10), secs(20), secs(35), secs(35)]);
    assert_eq!(b.metrics().consecutive_reopens, 4);
    advance(secs(35)).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().consecutive_reopens, 0);
    script(&b, "F");
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(10)));
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_open_times_within_bounds_and_is_seeded() {
    let waits = |seed: u64| {
        let b = CircuitBreaker::builder("jitter")
            .sliding_window(SlidingWindow::consecutive(1))
            .wait_in_open(secs(100))
            .open_time_jitter(0.2)
            .jitter_seed(seed)
            .build()
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..20 {
            script(&b, "F");
            out.push(b.try_acquire().unwrap_err().retry_after().unwrap());
            b.reset();
        }
        out
    };
    let a = waits(7);
    assert_eq!(a, waits(7), "same seed, same waits");
    assert_ne!(a, waits(8));
    for w in &a {
        assert!(*w >= secs(80) && *w <= secs(120), "{w:?}");
    }
    assert!(a.iter().any(|w| *w != a[0]), "jitter varies");
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_reported_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let b = CircuitBreaker::builder("events")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1)
        .on_event(move |e: &CircuitBreakerEvent| {
            if let CircuitBreakerEvent::StateTransition { name, from, to } = e {
                assert_eq!(&**name, "events");
                sink.lock().unwrap().push((*from, *to));
            }
        })
        .build()
        .unwrap();
    script(&b, "F");
    advance(secs(10)).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    b.force_open();
    b.disable();
    b.metrics_only();
    b.reset();
    use CircuitState::*;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed),
            (Closed, ForcedOpen),
            (ForcedOpen, Disabled),
            (Disabled, MetricsOnly),
            (MetricsOnly, Closed),
        ]
    );
}
