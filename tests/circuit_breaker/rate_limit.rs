//! Rate limits (429) cool the breaker down without tripping it; a server's own wait stretches
//! the open time.

use crate::support::{advance, ms, script, secs};
use tower::{Service, ServiceExt};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitOpen, CircuitState, RateLimited, SlidingWindow,
};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("llm")
        .sliding_window(SlidingWindow::count_based(4))
        .minimum_calls(2)
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1)
        .max_retry_after(secs(60))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_cools_down_for_the_servers_wait_without_counting() {
    let b = breaker();
    script(&b, "S");
    b.try_acquire().unwrap().record_rate_limited(Some(secs(2)));
    assert_eq!(b.state(), CircuitState::RateLimited);
    let err = b.try_acquire().unwrap_err();
    assert!(err.is_rate_limited());
    assert_eq!(err.retry_after(), Some(secs(2)));
    assert_eq!(
        err.to_string(),
        "circuit breaker `llm` is cooling down after a rate limit; retry in 2.000s"
    );
    let m = b.metrics();
    assert_eq!((m.calls, m.failed_calls, m.ignored_calls), (1, 0, 1));
    advance(ms(1_999)).await;
    assert!(b.try_acquire().is_err());
    advance(ms(1)).await;
    // Over: closed again, with the window it had.
    script(&b, "S");
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().calls, 2);
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_capped_and_defaults_when_absent() {
    let b = breaker();
    b.try_acquire()
        .unwrap()
        .record_rate_limited(Some(secs(3600)));
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(60)));
    b.reset();
    b.try_acquire().unwrap().record_rate_limited(None);
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(1)));
}

#[tokio::test(start_paused = true)]
async fn failures_still_in_flight_can_trip_during_a_cool_down() {
    let b = breaker();
    let a = b.try_acquire().unwrap();
    let c = b.try_acquire().unwrap();
    b.try_acquire().unwrap().record_rate_limited(Some(secs(5)));
    a.record(Outcome::Failure);
    c.record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
}

/// A probe answered with a 429 after an outage: the upstream is back but asks us to wait. The
/// breaker reports a rate-limit cool-down (never `Open` / `CircuitOpen`, which read as an
/// outage), counts no failed round, and closes with an empty window when the wait is over.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_probe_is_a_cool_down_not_an_outage() {
    let b = CircuitBreaker::builder("llm")
        .sliding_window(SlidingWindow::consecutive(2))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1)
        .open_time_growth(2.0, secs(100))
        .build()
        .unwrap();
    script(&b, "FF");
    assert_eq!(b.state(), CircuitState::Open);
    advance(secs(10)).await;
    b.try_acquire().unwrap().record_rate_limited(Some(secs(3)));
    assert_eq!(b.state(), CircuitState::RateLimited);
    let err = b.try_acquire().unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert!(err.into_box_error().is::<RateLimited>());
    assert_eq!(b.retry_after(), Some(secs(3)));
    assert_eq!(b.metrics().consecutive_reopens, 0);
    advance(secs(3)).await;
    script(&b, "F");
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "the outage's failures were cleared: one failure does not trip a consecutive(2) window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_servers_wait_stretches_the_open_time_up_to_the_cap() {
    let b = breaker();
    script(&b, "S");
    b.try_acquire()
        .unwrap()
        .record_with_retry_after(Outcome::Failure, Some(secs(30)));
    // 1 of 2 failed: trips at 0.5, and stays open for the server's 30 s, not 10 s.
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(30)));

    let b = breaker();
    script(&b, "S");
    b.try_acquire()
        .unwrap()
        .record_with_retry_after(Outcome::Failure, Some(secs(999)));
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(60)));

    // A shorter server wait does not shorten the breaker's own.
    let b = breaker();
    script(&b, "S");
    b.try_acquire()
        .unwrap()
        .record_with_retry_after(Outcome::Failure, Some(secs(1)));
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(10)));
}

#[tokio::test(start_paused = true)]
async fn the_service_returns_a_distinct_rate_limited_error() {
    let b = breaker();
    let mut svc = tower::ServiceBuilder::new()
        .layer(b.layer())
        .service_fn(|_: ()| async { Ok::<_, tower::BoxError>(()) });
    b.try_acquire().unwrap().record_rate_limited(Some(secs(2)));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<RateLimited>());
    assert!(!err.is::<CircuitOpen>());
    let limited = err.downcast_ref::<RateLimited>().unwrap();
    assert_eq!(limited.name(), "llm");
    assert_eq!(limited.retry_after(), Some(secs(2)));
}

#[tokio::test(start_paused = true)]
async fn a_reset_during_a_cool_down_starts_an_empty_window() {
    let b = CircuitBreaker::builder("llm")
        .sliding_window(SlidingWindow::consecutive(2))
        .build()
        .unwrap();
    script(&b, "F");
    b.try_acquire().unwrap().record_rate_limited(Some(secs(30)));
    assert_eq!(b.state(), CircuitState::RateLimited);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        b.metrics().calls,
        0,
        "the operator's reset empties the window"
    );
    // One failure after the reset is one, not the second of a run.
    script(&b, "F");
    assert_eq!(b.state(), CircuitState::Closed);
    // The end of a cool-down, by contrast, keeps the window.
    b.try_acquire().unwrap().record_rate_limited(Some(secs(1)));
    advance(secs(1)).await;
    script(&b, "F");
    assert_eq!(b.state(), CircuitState::Open);
}
