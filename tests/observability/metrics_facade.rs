//! The `metrics` adapter, read through `metrics-util`'s debugging recorder.

use crate::{Value, half_open_and_close, key, read_metrics, scripted_breaker, trip_and_reject};
use metrics_util::debugging::DebuggingRecorder;
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::metrics::MetricsListener;

const CALLS: &str = "tower_breaker_circuit_breaker_calls_total";
const SLOW: &str = "tower_breaker_circuit_breaker_slow_calls_total";
const TRANSITIONS: &str = "tower_breaker_circuit_breaker_transitions_total";
const STATE: &str = "tower_breaker_circuit_breaker_state";
const OPEN_SECONDS: &str = "tower_breaker_circuit_breaker_open_seconds";

fn states(name: &str, current: CircuitState) -> Vec<(String, Value)> {
    [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "disabled",
        "metrics_only",
        "rate_limited",
    ]
    .into_iter()
    .map(|state| {
        let value = if state == current.as_str() { 1.0 } else { 0.0 };
        (
            key(STATE, &[("name", name), ("state", state)]),
            Value::Gauge(value),
        )
    })
    .collect()
}

/// Trip, reject 5, half-open, close: every series, exactly, read after the trip and at the end.
#[tokio::test(start_paused = true)]
async fn breaker_series_through_a_trip_and_a_recovery() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let listener = MetricsListener::new();
    let breaker = scripted_breaker("llm", |b| b.on_event(listener.clone()));
    let labels = |extra: &[(&'static str, &'static str)]| {
        let mut all = vec![("name", "llm")];
        all.extend_from_slice(extra);
        all
    };

    trip_and_reject(&breaker).await;
    let after_trip = read_metrics(&snapshotter);
    let mut expected: Vec<(String, Value)> = vec![
        (
            key(CALLS, &labels(&[("outcome", "success")])),
            Value::Counter(1),
        ),
        (
            key(CALLS, &labels(&[("outcome", "failure")])),
            Value::Counter(3),
        ),
        (
            key(CALLS, &labels(&[("outcome", "ignored")])),
            Value::Counter(0),
        ),
        (
            key(CALLS, &labels(&[("outcome", "rejected")])),
            Value::Counter(5),
        ),
        (
            key(SLOW, &labels(&[("outcome", "success")])),
            Value::Counter(1),
        ),
        (
            key(SLOW, &labels(&[("outcome", "failure")])),
            Value::Counter(0),
        ),
        (
            key(TRANSITIONS, &labels(&[("from", "closed"), ("to", "open")])),
            Value::Counter(1),
        ),
    ];
    expected.extend(states("llm", CircuitState::Open));
    assert_eq!(after_trip, expected.into_iter().collect());

    half_open_and_close(&breaker).await;
    // The debugging recorder drained every value it read: counters show what happened since,
    // and the state gauges only what was set since (the old states were set back to 0).
    let at_end = read_metrics(&snapshotter);
    let mut expected: Vec<(String, Value)> = vec![
        (
            key(CALLS, &labels(&[("outcome", "success")])),
            Value::Counter(2),
        ),
        (
            key(CALLS, &labels(&[("outcome", "failure")])),
            Value::Counter(0),
        ),
        (
            key(CALLS, &labels(&[("outcome", "ignored")])),
            Value::Counter(0),
        ),
        (
            key(CALLS, &labels(&[("outcome", "rejected")])),
            Value::Counter(0),
        ),
        (
            key(SLOW, &labels(&[("outcome", "success")])),
            Value::Counter(0),
        ),
        (
            key(SLOW, &labels(&[("outcome", "failure")])),
            Value::Counter(0),
        ),
        (
            key(TRANSITIONS, &labels(&[("from", "closed"), ("to", "open")])),
            Value::Counter(0),
        ),
        (
            key(
                TRANSITIONS,
                &labels(&[("from", "open"), ("to", "half_open")]),
            ),
            Value::Counter(1),
        ),
        (
            key(
                TRANSITIONS,
                &labels(&[("from", "half_open"), ("to", "closed")]),
            ),
            Value::Counter(1),
        ),
        (
            key(OPEN_SECONDS, &labels(&[])),
            Value::Histogram(vec![30.0]),
        ),
    ];
    expected.extend(states("llm", CircuitState::Closed));
    assert_eq!(at_end, expected.into_iter().collect());
}

/// Manual control: every transition is counted and the gauge follows, a reset of a closed
/// breaker included.
#[tokio::test(start_paused = true)]
async fn manual_states_move_the_gauge() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let breaker = scripted_breaker("manual", |b| b.on_event(MetricsListener::new()));

    breaker.force_open();
    breaker.force_open(); // already forced open: no transition
    breaker.disable();
    breaker.metrics_only();
    breaker.reset();
    breaker.reset();

    let read = read_metrics(&snapshotter);
    let transition = |from: &'static str, to: &'static str| {
        read[&key(
            TRANSITIONS,
            &[("name", "manual"), ("from", from), ("to", to)],
        )]
            .clone()
    };
    assert_eq!(transition("closed", "forced_open"), Value::Counter(1));
    assert_eq!(transition("forced_open", "disabled"), Value::Counter(1));
    assert_eq!(transition("disabled", "metrics_only"), Value::Counter(1));
    assert_eq!(transition("metrics_only", "closed"), Value::Counter(1));
    assert_eq!(transition("closed", "closed"), Value::Counter(1));
    for (key, value) in states("manual", CircuitState::Closed) {
        assert_eq!(read[&key], value, "{key}");
    }
    // Never opened automatically: no open time.
    assert!(!read.contains_key(&key(OPEN_SECONDS, &[("name", "manual")])));
}

/// Slots taken and queued, read while two calls wait, agree with the bulkhead's own snapshot.
#[tokio::test(start_paused = true)]
async fn bulkhead_gauges_and_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let bulkhead = Bulkhead::builder("tools")
        .max_concurrent(1)
        .max_queue(2)
        .max_wait(Duration::from_secs(5))
        .on_event(MetricsListener::new())
        .build()
        .unwrap();

    let held = bulkhead.try_acquire().unwrap();
    let mut first = task::spawn(bulkhead.acquire());
    let mut second = task::spawn(bulkhead.acquire());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert!(bulkhead.try_acquire().is_err()); // a full queue
    let snapshot = bulkhead.metrics();
    assert_eq!((snapshot.active, snapshot.queued), (1, 2));

    let read = read_metrics(&snapshotter);
    let series = |metric: &str, outcome: Option<&'static str>| {
        let mut labels = vec![("name", "tools")];
        labels.extend(outcome.map(|o| ("outcome", o)));
        read[&key(metric, &labels)].clone()
    };
    const CALLS: &str = "tower_breaker_bulkhead_calls_total";
    assert_eq!(series(CALLS, Some("permitted")), Value::Counter(1));
    assert_eq!(series(CALLS, Some("rejected_full")), Value::Counter(1));
    assert_eq!(series(CALLS, Some("rejected_timeout")), Value::Counter(0));
    assert_eq!(
        series("tower_breaker_bulkhead_active_calls", None),
        Value::Gauge(1.0)
    );
    assert_eq!(
        series("tower_breaker_bulkhead_queued_calls", None),
        Value::Gauge(2.0)
    );

    // The first waiter gets the slot, the second gives up after max_wait.
    drop(held);
    let permit = assert_ready_ok!(first.poll());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_ready_err!(second.poll());
    drop(permit);
    let read = read_metrics(&snapshotter);
    // Counters since the last read.
    assert_eq!(
        read[&key(CALLS, &[("name", "tools"), ("outcome", "permitted")])],
        Value::Counter(1)
    );
    assert_eq!(
        read[&key(CALLS, &[("name", "tools"), ("outcome", "rejected_timeout")])],
        Value::Counter(1)
    );
}

/// A retry policy and a fallback: attempts by reason, how the call ended, fallbacks served.
#[cfg(feature = "retry")]
#[tokio::test(start_paused = true)]
async fn retry_and_fallback_series() {
    use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
    use tower_breaker::fallback::FallbackLayer;
    use tower_breaker::retry::{Backoff, RetryPolicy};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let listener = MetricsListener::new();
    let policy = RetryPolicy::builder()
        .name("llm-retry")
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .on_event(listener.clone())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::from_fn(|_| Ok("the assistant is busy"))
                .name("llm-fallback")
                .on_event(listener.clone()),
        )
        .retry(policy)
        .service(service_fn(|_: ()| async {
            Err::<&str, BoxError>("503".into())
        }));

    for _ in 0..2 {
        let answer = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(answer, "the assistant is busy");
    }

    let read = read_metrics(&snapshotter);
    assert_eq!(
        read[&key(
            "tower_breaker_retry_attempts_total",
            &[("name", "llm-retry"), ("reason", "error")]
        )],
        Value::Counter(4)
    );
    assert_eq!(
        read[&key(
            "tower_breaker_retry_calls_total",
            &[("name", "llm-retry"), ("outcome", "max_attempts")]
        )],
        Value::Counter(2)
    );
    assert_eq!(
        read[&key(
            "tower_breaker_fallback_calls_total",
            &[("name", "llm-fallback"), ("outcome", "served")]
        )],
        Value::Counter(2)
    );
}

/// A keyed registry's template carries the listener to every key's breaker: one set of series
/// per key.
#[tokio::test(start_paused = true)]
async fn keyed_breakers_have_a_series_each() {
    use tower_breaker::Outcome;
    use tower_breaker::keyed::KeyedCircuitBreakers;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let template = CircuitBreaker::builder("model")
        .sliding_window(SlidingWindow::consecutive(1))
        .on_event(MetricsListener::new());
    let keyed = KeyedCircuitBreakers::<String>::builder(template)
        .build()
        .unwrap();
    keyed
        .get(&"big".to_string())
        .try_acquire()
        .unwrap()
        .record(Outcome::Failure);
    keyed
        .get(&"small".to_string())
        .try_acquire()
        .unwrap()
        .record(Outcome::Success);

    let read = read_metrics(&snapshotter);
    assert_eq!(
        read[&key(STATE, &[("name", "model:big"), ("state", "open")])],
        Value::Gauge(1.0)
    );
    assert_eq!(
        read[&key(STATE, &[("name", "model:small"), ("state", "closed")])],
        Value::Gauge(1.0)
    );
    assert_eq!(
        read[&key(CALLS, &[("name", "model:small"), ("outcome", "success")])],
        Value::Counter(1)
    );
}

/// Every injected fault is counted by kind.
#[cfg(feature = "chaos")]
#[tokio::test(start_paused = true)]
async fn chaos_faults_are_counted_by_kind() {
    use tower::{Service, ServiceExt};
    use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = ChaosLayer::builder("staging")
        .plan(
            FaultPlan::new()
                .then_times(2, Fault::error("x"))
                .then_all([Fault::latency(Duration::from_millis(5)), Fault::error("y")]),
        )
        .on_event(MetricsListener::new())
        .build()
        .unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_: ()| async {
            Ok::<_, tower::BoxError>(())
        }));
    for _ in 0..4 {
        let _ = svc.ready().await.unwrap().call(()).await;
    }
    let read = read_metrics(&snapshotter);
    let faults = |kind| {
        read[&key(
            "tower_breaker_chaos_faults_total",
            &[("name", "staging"), ("fault", kind)],
        )]
            .clone()
    };
    assert_eq!(faults("error"), Value::Counter(3));
    assert_eq!(faults("latency"), Value::Counter(1));
}
