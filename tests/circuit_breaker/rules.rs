//! Trip rules: consecutive failures, count window, time window, thresholds, minimum calls.

use crate::support::{advance, ms, record, script, secs};
use std::sync::{Arc, Mutex};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitState, LoadAwareThresholds, SlidingWindow,
};

fn count_breaker(size: u32, minimum: u32, threshold: f64) -> CircuitBreaker {
    CircuitBreaker::builder("count")
        .sliding_window(SlidingWindow::count_based(size))
        .minimum_calls(minimum)
        .failure_rate_threshold(threshold)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_starts_over() {
    let breaker = CircuitBreaker::builder("consecutive")
        .sliding_window(SlidingWindow::consecutive(3))
        .build()
        .unwrap();
    script(&breaker, "FFSFF");
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().failed_calls, 2);
    script(&breaker, "I"); // ignored: neither resets nor counts
    assert_eq!(breaker.metrics().failed_calls, 2);
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn count_window_evicts_the_oldest_call() {
    let breaker = count_breaker(4, 4, 0.5);
    script(&breaker, "FSSS");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls), (4, 1));
    assert_eq!(m.failure_rate, Some(0.25));
    // The first failure falls out as the fifth call comes in.
    script(&breaker, "S");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls, m.successful_calls), (4, 0, 4));
    script(&breaker, "F");
    assert_eq!(breaker.metrics().failed_calls, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
    // [S, S, F, F]: 2 of 4 = 0.5, inclusive threshold.
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_long_run_of_successes_flushes_old_failures() {
    let breaker = count_breaker(10, 10, 0.5);
    script(&breaker, "FFFF");
    record(&breaker, Outcome::Success, 1000);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls), (10, 0));
    // Five new failures in the last ten calls trip it.
    script(&breaker, "FFFF");
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn threshold_is_inclusive_and_waits_for_minimum_calls() {
    // 10 calls of room, rates checked from 5 calls on, threshold 0.4.
    let breaker = count_breaker(10, 5, 0.4);
    script(&breaker, "FFFF");
    // 100 % failures, but only 4 calls: below minimum_calls.
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().failure_rate, None);

    let breaker = count_breaker(10, 5, 0.4);
    script(&breaker, "SSSF");
    script(&breaker, "S"); // 1/5 = 0.2
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "F"); // 2/6 = 0.33 < 0.4
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "SSSF"); // 3/10 = 0.3
    assert_eq!(breaker.state(), CircuitState::Closed);
    // Window [S F S S S F S S S F] -> evict S, add F: 4/10 = 0.4 exactly.
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn minimum_calls_larger_than_a_count_window_uses_the_window_size() {
    let breaker = count_breaker(4, 100, 0.5);
    script(&breaker, "SSFF");
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_calls_never_count() {
    let breaker = count_breaker(4, 4, 0.5);
    script(&breaker, "FIIIIIIIIIF");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls, m.ignored_calls), (2, 2, 9));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_calls_older_than_the_window() {
    let breaker = CircuitBreaker::builder("time")
        .sliding_window(SlidingWindow::time_based(secs(10)))
        .minimum_calls(3)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    script(&breaker, "FF");
    assert_eq!(breaker.metrics().calls, 2);
    // A gap longer than the window: both failures are gone, even with no calls in between.
    advance(secs(11)).await;
    assert_eq!(breaker.metrics().calls, 0);
    script(&breaker, "F");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls), (1, 1));
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "FF");
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_slides_bucket_by_bucket() {
    // 10 s in 10 buckets of 1 s.
    let breaker = CircuitBreaker::builder("time")
        .sliding_window(SlidingWindow::time_based(secs(10)))
        .minimum_calls(1000)
        .build()
        .unwrap();
    for _ in 0..10 {
        script(&breaker, "SF");
        advance(secs(1)).await;
    }
    // t = 10 s: the bucket of t = 0 has left; nine buckets of 2 calls remain.
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls), (18, 9));
    advance(ms(4500)).await;
    // t = 14.5 s: buckets of t = 5 .. 9 remain.
    assert_eq!(breaker.metrics().calls, 10);
    advance(secs(5)).await;
    assert_eq!(breaker.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn time_window_survives_a_gap_of_many_tag_periods() {
    // 1 ms buckets: 65,536 epochs pass in about 66 s. Stale buckets must never come back.
    let breaker = CircuitBreaker::builder("time")
        .sliding_window(SlidingWindow::time_based(ms(10)))
        .minimum_calls(1000)
        .build()
        .unwrap();
    script(&breaker, "FFFF");
    advance(ms(65_536)).await;
    assert_eq!(breaker.metrics().calls, 0);
    script(&breaker, "S");
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_on_the_slow_call_rate() {
    let breaker = CircuitBreaker::builder("slow")
        .sliding_window(SlidingWindow::count_based(4))
        .minimum_calls(4)
        .slow_call_duration(secs(2))
        .slow_call_rate_threshold(0.5)
        .build()
        .unwrap();
    script(&breaker, "SS");
    for _ in 0..2 {
        let permit = breaker.try_acquire().unwrap();
        advance(secs(2)).await; // exactly the limit: slow (inclusive)
        permit.record(Outcome::Success);
    }
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failed_calls, m.slow_calls), (4, 0, 2));
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn load_aware_thresholds_follow_the_request_rate() {
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let sink = transitions.clone();
    let breaker = CircuitBreaker::builder("tiers")
        .sliding_window(SlidingWindow::time_based(secs(60)))
        .load_aware(LoadAwareThresholds::standard())
        .on_event(move |e: &CircuitBreakerEvent| {
            if let CircuitBreakerEvent::StateTransition { to, .. } = e {
                sink.lock().unwrap().push(*to);
            }
        })
        .build()
        .unwrap();
    // Low traffic (3 calls a minute): 3 failures trip, and the breaker stays open 60 s.
    script(&breaker, "FF");
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
    let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
    assert_eq!(wait, secs(60));

    // Medium traffic (50 calls in the window): 5 failures trip, 30 s open.
    let breaker = CircuitBreaker::builder("tiers")
        .sliding_window(SlidingWindow::time_based(secs(60)))
        .load_aware(LoadAwareThresholds::standard())
        .build()
        .unwrap();
    record(&breaker, Outcome::Success, 46);
    script(&breaker, "FFFF");
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(secs(30))
    );

    // High traffic (200 calls): 10 failures, 15 s.
    let breaker = CircuitBreaker::builder("tiers")
        .sliding_window(SlidingWindow::time_based(secs(60)))
        .load_aware(LoadAwareThresholds::standard())
        .build()
        .unwrap();
    record(&breaker, Outcome::Success, 191);
    record(&breaker, Outcome::Failure, 9);
    assert_eq!(breaker.state(), CircuitState::Closed);
    script(&breaker, "F");
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(secs(15))
    );
    assert_eq!(*transitions.lock().unwrap(), vec![CircuitState::Open]);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_rejects_with_its_name_and_the_wait() {
    let breaker = CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(60))
        .build()
        .unwrap();
    script(&breaker, "F");
    advance(secs(15)).await;
    let err = breaker.try_acquire().unwrap_err();
    assert_eq!(err.name(), "openai");
    assert_eq!(err.state(), CircuitState::Open);
    assert_eq!(err.retry_after(), Some(secs(45)));
    assert_eq!(
        err.to_string(),
        "circuit breaker `openai` is open; next probe in 45.000s"
    );
    assert_eq!(breaker.metrics().not_permitted_calls, 1);
    assert!(!breaker.is_call_permitted());
    advance(secs(45)).await;
    assert!(breaker.is_call_permitted());
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}
