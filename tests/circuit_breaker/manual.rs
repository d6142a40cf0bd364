//! Manual control: forced open, disabled, metrics-only, reset.

use crate::support::{record, script};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("manual")
        .sliding_window(SlidingWindow::count_based(4))
        .minimum_calls(2)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_until_reset() {
    let b = breaker();
    b.force_open();
    let err = b.try_acquire().unwrap_err();
    assert_eq!(err.state(), CircuitState::ForcedOpen);
    assert_eq!(err.retry_after(), None);
    tokio::time::advance(std::time::Duration::from_secs(3600)).await;
    assert!(b.try_acquire().is_err(), "forced open never times out");
    b.reset();
    assert!(b.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn disabled_permits_everything_and_records_nothing() {
    let b = breaker();
    b.disable();
    record(&b, Outcome::Failure, 50);
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_eq!(b.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_records_but_never_trips() {
    let b = breaker();
    b.metrics_only();
    record(&b, Outcome::Failure, 50);
    let m = b.metrics();
    assert_eq!(m.state, CircuitState::MetricsOnly);
    assert_eq!((m.calls, m.failed_calls), (4, 4));
    assert_eq!(m.failure_rate, Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn reset_empties_the_window_and_drops_earlier_permits() {
    let b = breaker();
    script(&b, "S");
    let before = b.try_acquire().unwrap();
    b.reset();
    assert_eq!(b.metrics().calls, 0);
    before.record(Outcome::Failure);
    assert_eq!(
        b.metrics().calls,
        0,
        "outcome of an earlier generation is dropped"
    );
    script(&b, "F");
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_an_open_breaker() {
    let b = breaker();
    script(&b, "FF");
    assert_eq!(b.state(), CircuitState::Open);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert!(b.try_acquire().is_ok());
}
