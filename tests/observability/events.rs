//! The events every component reports, and that none is built without a listener.

use crate::{half_open_and_close, scripted_breaker, trip_and_reject};
use metrics_util::debugging::DebuggingRecorder;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreakerEvent, CircuitState};
use tower_breaker::metrics::MetricsListener;

/// Counts events by kind.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    fn listener(&self) -> impl Fn(&CircuitBreakerEvent) + Send + Sync + 'static {
        let tally = self.0.clone();
        move |event: &CircuitBreakerEvent| {
            let kind = match event {
                CircuitBreakerEvent::CallPermitted { state, .. } => format!("permitted {state}"),
                CircuitBreakerEvent::CallRejected { state, .. } => format!("rejected {state}"),
                CircuitBreakerEvent::CallRecorded { outcome, slow, .. } => {
                    format!("recorded {outcome:?}{}", if *slow { " slow" } else { "" })
                }
                CircuitBreakerEvent::StateTransition { from, to, .. } => format!("{from} -> {to}"),
                CircuitBreakerEvent::Reset { .. } => "reset".to_string(),
                CircuitBreakerEvent::Forced { state, .. } => format!("forced {state}"),
                other => format!("{other:?}"),
            };
            *tally.lock().unwrap().entry(kind).or_default() += 1;
        }
    }

    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Every kind of breaker event, counted, for the scripted trip and recovery.
#[tokio::test(start_paused = true)]
async fn every_breaker_event_of_a_trip_and_a_recovery() {
    let tally = Tally::default();
    let breaker = scripted_breaker("events", |b| b.on_event(tally.listener()));
    trip_and_reject(&breaker).await;
    half_open_and_close(&breaker).await;
    let expected: BTreeMap<String, u64> = [
        ("permitted closed", 4),
        ("permitted half_open", 2),
        ("recorded Success slow", 1),
        ("recorded Failure", 3),
        ("recorded Success", 2),
        ("rejected open", 5),
        ("closed -> open", 1),
        ("open -> half_open", 1),
        ("half_open -> closed", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(tally.take(), expected);
}

/// Manual control reports the transition, then what was done by hand.
#[test]
fn manual_control_reports_reset_and_forced_states() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let breaker = scripted_breaker("manual", |b| {
        b.on_event(move |e: &CircuitBreakerEvent| match e {
            CircuitBreakerEvent::StateTransition { from, to, .. } => {
                sink.lock().unwrap().push(format!("{from} -> {to}"))
            }
            CircuitBreakerEvent::Reset { name } => {
                sink.lock().unwrap().push(format!("reset {name}"))
            }
            CircuitBreakerEvent::Forced { name, state } => {
                sink.lock().unwrap().push(format!("forced {name} {state}"))
            }
            CircuitBreakerEvent::CallPermitted { state, .. } => {
                sink.lock().unwrap().push(format!("permitted {state}"))
            }
            _ => {}
        })
    });
    breaker.force_open();
    breaker.force_open();
    breaker.disable();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    breaker.metrics_only();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    breaker.reset();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "closed -> forced_open",
            "forced manual forced_open",
            "forced_open -> disabled",
            "forced manual disabled",
            "permitted disabled",
            "disabled -> metrics_only",
            "forced manual metrics_only",
            "permitted metrics_only",
            "metrics_only -> closed",
            "reset manual",
        ]
    );
}

/// No listener, no event: a breaker without one behaves exactly like one with a listener, and
/// nothing about it reaches a metrics recorder. (The bench `observability` measures the cost.)
#[tokio::test(start_paused = true)]
async fn no_listener_no_event() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let tally = Tally::default();
    let metrics = MetricsListener::new();
    let listened = scripted_breaker("listened", |b| {
        b.on_event(tally.listener()).on_event(metrics.clone())
    });
    let silent = scripted_breaker("silent", |b| b);
    for breaker in [&listened, &silent] {
        trip_and_reject(breaker).await;
        half_open_and_close(breaker).await;
    }

    // The listened breaker reported every step; the silent one, driven the same way, none.
    assert_eq!(tally.take().values().sum::<u64>(), 20);
    let names: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, ..)| {
            key.key()
                .labels()
                .find(|l| l.key() == "name")
                .map(|l| l.value().to_string())
        })
        .collect();
    assert!(names.iter().all(|n| n == "listened"), "{names:?}");
    assert!(!names.is_empty());

    // Both ended in the same place.
    let (a, b) = (listened.metrics(), silent.metrics());
    assert_eq!(a.state, CircuitState::Closed);
    assert_eq!(a, b);
}
