//! Events, the `metrics` adapter and the OpenTelemetry adapter, with paused tokio time so every
//! value is exact.
//!
//! The `metrics` tests use `metrics-util`'s debugging recorder, installed for the test's own
//! thread (each test runs on a current-thread runtime), so tests do not see each other's
//! series. Its snapshots drain what they read (counters and gauges restart at 0), so each
//! `metrics` test reads once, or only counts deltas after the first read. The OpenTelemetry
//! tests use the SDK's in-memory exporter, whose cumulative values can be read any number of
//! times.

#[path = "../support/mod.rs"]
mod support;

mod adversarial_events;
mod events;
mod metrics_facade;
mod otel;
#[cfg(feature = "quota")]
mod quota;
#[cfg(feature = "stream")]
mod stream;

use metrics_util::debugging::{DebugValue, Snapshotter};
use std::collections::BTreeMap;
use std::time::Duration;
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};

/// A series' key: `metric{label=value,...}` with the labels sorted.
pub(crate) fn key(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{metric}{{{}}}", labels.join(","))
}

/// A value read from either system.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Counter(u64),
    Gauge(f64),
    /// Every value recorded (`metrics`), or (count, sum) for OpenTelemetry.
    Histogram(Vec<f64>),
}

/// Everything the debugging recorder holds, by [`key`].
pub(crate) fn read_metrics(snapshotter: &Snapshotter) -> BTreeMap<String, Value> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(composite, _, _, value)| {
            let key_ = composite.key();
            let labels: Vec<(&str, &str)> = key_.labels().map(|l| (l.key(), l.value())).collect();
            let value = match value {
                DebugValue::Counter(n) => Value::Counter(n),
                DebugValue::Gauge(g) => Value::Gauge(g.into_inner()),
                DebugValue::Histogram(h) => {
                    Value::Histogram(h.into_iter().map(|v| v.into_inner()).collect())
                }
            };
            (key(key_.name(), &labels), value)
        })
        .collect()
}

/// The scripted breaker: trips after 3 consecutive failures, stays open 30 s, closes after 2
/// successful probes, and calls taking 2 s or more are slow.
pub(crate) fn scripted_breaker(
    name: &str,
    configure: impl FnOnce(
        tower_breaker::circuit_breaker::Builder,
    ) -> tower_breaker::circuit_breaker::Builder,
) -> CircuitBreaker {
    let builder = CircuitBreaker::builder(name)
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(OPEN_FOR)
        .permitted_calls_in_half_open(2)
        .slow_call_duration(Duration::from_secs(2));
    configure(builder).build().expect("valid config")
}

pub(crate) const OPEN_FOR: Duration = Duration::from_secs(30);

/// Trip: one slow success (3 s), then 3 failures; the breaker opens. Then 5 calls are rejected.
pub(crate) async fn trip_and_reject(breaker: &CircuitBreaker) {
    let slow = breaker.try_acquire().expect("closed");
    support::advance(Duration::from_secs(3)).await;
    slow.record(Outcome::Success);
    support::record(breaker, Outcome::Failure, 3);
    assert_eq!(breaker.state(), CircuitState::Open);
    for _ in 0..5 {
        assert!(breaker.try_acquire().is_err());
    }
}

/// Half-open after the wait, then close: two probes succeed.
pub(crate) async fn half_open_and_close(breaker: &CircuitBreaker) {
    support::advance(OPEN_FOR).await;
    let first = breaker.try_acquire().expect("first probe");
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let second = breaker.try_acquire().expect("second probe");
    first.record(Outcome::Success);
    second.record(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
}
