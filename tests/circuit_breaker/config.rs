//! Every out-of-range builder value is an error naming the field and the allowed range.

use std::time::Duration;
use tower_breaker::circuit_breaker::{
    Builder, CircuitBreaker, LoadAwareThresholds, SlidingWindow, Tier,
};

type Case = (&'static str, Box<dyn FnOnce(Builder) -> Builder>);

fn field_of(build: impl FnOnce(Builder) -> Builder) -> String {
    let err = build(CircuitBreaker::builder("cfg")).build().unwrap_err();
    assert!(err.to_string().contains("allowed"), "{err}");
    assert!(err.to_string().contains("`cfg`"), "{err}");
    err.field().to_string()
}

#[test]
fn out_of_range_values_name_their_field() {
    let cases: Vec<Case> = vec![
        (
            "sliding_window",
            Box::new(|b| b.sliding_window(SlidingWindow::count_based(0))),
        ),
        (
            "sliding_window",
            Box::new(|b| b.sliding_window(SlidingWindow::count_based(2_000_000))),
        ),
        (
            "sliding_window",
            Box::new(|b| b.sliding_window(SlidingWindow::consecutive(0))),
        ),
        (
            "sliding_window",
            Box::new(|b| b.sliding_window(SlidingWindow::time_based(Duration::ZERO))),
        ),
        (
            "sliding_window",
            Box::new(|b| b.sliding_window(SlidingWindow::time_based(Duration::from_secs(400_000)))),
        ),
        (
            "sliding_window.buckets",
            Box::new(|b| {
                b.sliding_window(SlidingWindow::time_based(Duration::from_secs(1)).buckets(0))
            }),
        ),
        (
            "sliding_window.buckets",
            Box::new(|b| {
                b.sliding_window(SlidingWindow::time_based(Duration::from_secs(1)).buckets(65))
            }),
        ),
        (
            "sliding_window.buckets",
            Box::new(|b| {
                b.sliding_window(SlidingWindow::time_based(Duration::from_millis(5)).buckets(10))
            }),
        ),
        (
            "failure_rate_threshold",
            Box::new(|b| b.failure_rate_threshold(0.0)),
        ),
        (
            "failure_rate_threshold",
            Box::new(|b| b.failure_rate_threshold(1.01)),
        ),
        (
            "failure_rate_threshold",
            Box::new(|b| b.failure_rate_threshold(f64::NAN)),
        ),
        (
            "slow_call_rate_threshold",
            Box::new(|b| b.slow_call_rate_threshold(-0.5)),
        ),
        (
            "slow_call_duration",
            Box::new(|b| b.slow_call_duration(Duration::ZERO)),
        ),
        ("minimum_calls", Box::new(|b| b.minimum_calls(0))),
        ("wait_in_open", Box::new(|b| b.wait_in_open(Duration::ZERO))),
        ("wait_in_open", Box::new(|b| b.wait_in_open(Duration::MAX))),
        (
            "permitted_calls_in_half_open",
            Box::new(|b| b.permitted_calls_in_half_open(0)),
        ),
        (
            "permitted_calls_in_half_open",
            Box::new(|b| b.permitted_calls_in_half_open(1001)),
        ),
        (
            "max_wait_in_half_open",
            Box::new(|b| b.max_wait_in_half_open(Some(Duration::ZERO))),
        ),
        (
            "open_time_growth.multiplier",
            Box::new(|b| b.open_time_growth(0.5, Duration::from_secs(600))),
        ),
        (
            "open_time_growth.multiplier",
            Box::new(|b| b.open_time_growth(f64::INFINITY, Duration::from_secs(600))),
        ),
        (
            "open_time_growth.max",
            Box::new(|b| b.open_time_growth(2.0, Duration::from_secs(1))),
        ),
        ("open_time_jitter", Box::new(|b| b.open_time_jitter(1.0))),
        ("open_time_jitter", Box::new(|b| b.open_time_jitter(-0.1))),
        (
            "load_aware",
            Box::new(|b| b.load_aware(LoadAwareThresholds::standard())),
        ),
        (
            "load_aware.tiers",
            Box::new(|b| {
                b.sliding_window(SlidingWindow::time_based(Duration::from_secs(60)))
                    .load_aware(LoadAwareThresholds::new(vec![]))
            }),
        ),
        (
            "load_aware.tiers.max_calls_per_minute",
            Box::new(|b| {
                b.sliding_window(SlidingWindow::time_based(Duration::from_secs(60)))
                    .load_aware(LoadAwareThresholds::new(vec![
                        Tier {
                            max_calls_per_minute: 10.0,
                            failures: 3,
                            wait_in_open: Duration::from_secs(1),
                        },
                        Tier {
                            max_calls_per_minute: 5.0,
                            failures: 3,
                            wait_in_open: Duration::from_secs(1),
                        },
                    ]))
            }),
        ),
        (
            "load_aware.tiers.failures",
            Box::new(|b| {
                b.sliding_window(SlidingWindow::time_based(Duration::from_secs(60)))
                    .load_aware(LoadAwareThresholds::new(vec![Tier {
                        max_calls_per_minute: f64::INFINITY,
                        failures: 0,
                        wait_in_open: Duration::from_secs(1),
                    }]))
            }),
        ),
    ];
    for (field, build) in cases {
        assert_eq!(field_of(build), field);
    }
}

#[test]
fn the_message_names_field_value_and_range() {
    let err = CircuitBreaker::builder("openai")
        .permitted_calls_in_half_open(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `permitted_calls_in_half_open` for `openai`: 0 (allowed: 1 ..= 1000)"
    );
    assert_eq!(err.value(), "0");
    assert_eq!(err.allowed(), "1 ..= 1000");
}

#[test]
fn the_issue_example_builds() {
    let breaker = CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::count_based(100))
        .failure_rate_threshold(0.5)
        .slow_call_rate_threshold(1.0)
        .slow_call_duration(Duration::from_secs(60))
        .minimum_calls(100)
        .wait_in_open(Duration::from_secs(60))
        .permitted_calls_in_half_open(10)
        .max_wait_in_half_open(Some(Duration::from_secs(120)))
        .build();
    assert!(breaker.is_ok());
    assert!(
        CircuitBreaker::builder("x")
            .max_wait_in_half_open(None)
            .build()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn every_documented_time_window_length_builds_with_the_default_buckets() {
    use tower_breaker::Outcome;
    use tower_breaker::circuit_breaker::CircuitState;
    for length in (1..=12)
        .map(Duration::from_millis)
        .chain([Duration::from_secs(60), Duration::from_secs(24 * 60 * 60)])
    {
        let breaker = CircuitBreaker::builder("cfg")
            .sliding_window(SlidingWindow::time_based(length))
            .minimum_calls(2)
            .build()
            .unwrap_or_else(|e| panic!("time_based({length:?}): {e}"));
        assert_eq!(breaker.time_window(), Some(length));
        // The window works: two failures within it trip the breaker.
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(breaker.state(), CircuitState::Open, "{length:?}");
    }
    // Buckets asked for explicitly are still checked: a bucket is at least 1 ms.
    let err = CircuitBreaker::builder("cfg")
        .sliding_window(SlidingWindow::time_based(Duration::from_millis(5)).buckets(10))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "sliding_window.buckets");
}
