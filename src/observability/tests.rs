use super::instrument::*;
use super::translate::*;
use crate::Outcome;
use crate::bulkhead::{AdaptiveEvent, BulkheadEvent};
use crate::circuit_breaker::{CircuitBreakerEvent, CircuitState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Records the latest value of every series.
#[derive(Default)]
struct Memory(Arc<Mutex<BTreeMap<String, f64>>>);

#[derive(Clone)]
struct Series(Arc<Mutex<BTreeMap<String, f64>>>, String);

impl Series {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let value = map.entry(self.1.clone()).or_default();
        *value = f(*value);
    }
}

impl Memory {
    fn series(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = format!("{instrument:?}{{{name},{}}}", labels.join(","));
        Series(self.0.clone(), key)
    }
}

impl Backend for Memory {
    type Counter = Series;
    type Gauge = Series;
    type UpDown = Series;
    type Histogram = Series;
    type Level = Series;

    fn counter(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
        self.series(i, name, labels)
    }
    fn gauge(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
        self.series(i, name, labels)
    }
    fn up_down(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
        self.series(i, name, labels)
    }
    fn histogram(&self, i: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Series {
        self.series(i, name, labels)
    }
    fn level(&self, i: Instrument, name: &Arc<str>, key: &Arc<str>) -> Series {
        Series(self.0.clone(), format!("{i:?}{{{name},{KEY_LABEL}={key}}}"))
    }
    fn count(counter: &Series, n: u64) {
        counter.update(|v| v + n as f64);
    }
    fn set(gauge: &Series, value: u64) {
        gauge.update(|_| value as f64);
    }
    fn add(up_down: &Series, delta: i64) {
        up_down.update(|v| v + delta as f64);
    }
    fn record(histogram: &Series, value: f64) {
        histogram.update(|v| v + value);
    }
    fn set_level(level: &Series, value: f64) {
        level.update(|_| value);
    }
}

fn transition(from: CircuitState, to: CircuitState) -> CircuitBreakerEvent {
    CircuitBreakerEvent::StateTransition {
        name: Arc::from("b"),
        from,
        to,
    }
}

/// The state gauge after `events`: the states whose series reads 1.
fn current_states(events: &[CircuitBreakerEvent]) -> Vec<String> {
    let memory = Memory::default();
    let values = memory.0.clone();
    let core = Core::new(memory);
    for event in events {
        core.on_breaker(event);
    }
    let values = values.lock().unwrap_or_else(PoisonError::into_inner);
    values
        .iter()
        .filter(|(k, v)| k.starts_with("BreakerState") && **v == 1.0)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Two transitions that reach the listener in the wrong order still leave the gauge on
/// the breaker's real state.
#[test]
fn transitions_out_of_order_are_put_back_in_order() {
    use CircuitState::*;
    let in_order = [
        transition(Closed, Open),
        transition(Open, HalfOpen),
        transition(HalfOpen, Closed),
    ];
    let swapped = [
        transition(Closed, Open),
        transition(HalfOpen, Closed),
        transition(Open, HalfOpen),
    ];
    let expected = vec!["BreakerState{b,state=closed}".to_string()];
    assert_eq!(current_states(&in_order), expected);
    assert_eq!(current_states(&swapped), expected);
    let first_last = [
        transition(Open, HalfOpen),
        transition(HalfOpen, Open),
        transition(Closed, Open),
    ];
    assert_eq!(
        current_states(&first_last),
        vec!["BreakerState{b,state=open}".to_string()]
    );
}

fn recorded(name: &Arc<str>) -> CircuitBreakerEvent {
    CircuitBreakerEvent::CallRecorded {
        name: name.clone(),
        outcome: Outcome::Success,
        slow: false,
        elapsed: None,
    }
}

/// The series each thread remembers are told apart by listener, by kind of component and
/// by name; two `Arc`s of one name find one series; every thread counts into the same.
#[test]
fn remembered_series_belong_to_their_listener_component_and_name() {
    let (first, second) = (Memory::default(), Memory::default());
    let (first_values, second_values) = (first.0.clone(), second.0.clone());
    let (first, second) = (Core::new(first), Core::new(second));
    let name: Arc<str> = Arc::from("llm");
    let same_text: Arc<str> = Arc::from("llm");
    for _ in 0..3 {
        first.on_breaker(&recorded(&name));
    }
    first.on_breaker(&recorded(&same_text));
    second.on_breaker(&recorded(&name));
    first.on_bulkhead(&BulkheadEvent::CallPermitted {
        name: name.clone(),
        waited: std::time::Duration::ZERO,
    });
    std::thread::scope(|s| {
        s.spawn(|| first.on_breaker(&recorded(&name)));
    });
    let value = |values: &Arc<Mutex<BTreeMap<String, f64>>>, key: &str| {
        values.lock().unwrap_or_else(PoisonError::into_inner)[key]
    };
    let calls = "BreakerCalls{llm,outcome=success}";
    assert_eq!(value(&first_values, calls), 5.0);
    assert_eq!(value(&second_values, calls), 1.0);
    assert_eq!(
        value(&first_values, "BulkheadCalls{llm,outcome=permitted}"),
        1.0
    );
    assert_eq!(value(&first_values, "BulkheadActive{llm,}"), 1.0);
}

/// The adaptive limit's gauge follows its changes; samples and changes are counted by
/// signal and by reason.
#[test]
fn adaptive_limit_changes_and_samples_are_measured() {
    use crate::bulkhead::{LimitChange, Signal};
    let memory = Memory::default();
    let values = memory.0.clone();
    let core = Core::new(memory);
    let name: Arc<str> = Arc::from("llm");
    core.on_adaptive(&AdaptiveEvent::Sample {
        name: name.clone(),
        signal: Signal::Congestion,
        latency: std::time::Duration::from_millis(5),
        inflight: 3,
    });
    for (from, to) in [(20, 18), (18, 19)] {
        core.on_adaptive(&AdaptiveEvent::LimitChanged {
            name: name.clone(),
            from,
            to,
            reason: LimitChange::Congestion,
        });
    }
    let values = values.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(values.get("AdaptiveLimit{llm,}"), Some(&19.0));
    assert_eq!(
        values.get("AdaptiveSamples{llm,signal=congestion}"),
        Some(&1.0)
    );
    assert_eq!(
        values.get("AdaptiveLimitChanges{llm,reason=congestion}"),
        Some(&2.0)
    );
}

/// A Prometheus exporter of OpenTelemetry turns each OpenTelemetry name into the `metrics`
/// name: dots to underscores, the unit's suffix, `_total` on counters.
#[cfg(all(feature = "metrics", feature = "opentelemetry"))]
#[test]
fn prometheus_names_agree() {
    for instrument in Instrument::ALL {
        let mut name = instrument.otel_name().replace('.', "_");
        if instrument.otel_unit() == "s" {
            name.push_str("_seconds");
        }
        if instrument.kind() == Kind::Counter {
            name.push_str("_total");
        }
        assert_eq!(name, instrument.metrics_name());
    }
}

/// The rows of a markdown table in a module's docs whose first cell is a code span: (first
/// cell, second cell).
fn doc_table(source: &str) -> Vec<(String, String)> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let name = cells[0].trim_end_matches('`').to_string();
            (name, cells.get(1).map_or("", |c| c.trim()).to_string())
        })
        .collect()
}

/// The table in a module's docs lists every instrument of the catalogue, in its order, as
/// `row` writes the instrument's first two cells.
fn assert_docs_table_is_the_catalogue(
    source: &str,
    row: impl Fn(Instrument) -> (&'static str, &'static str),
) {
    let catalogue: Vec<(String, String)> = Instrument::ALL
        .iter()
        .map(|&i| {
            let (name, kind) = row(i);
            (name.to_string(), kind.to_string())
        })
        .collect();
    assert_eq!(doc_table(source), catalogue);
}

/// The table in the `metrics` module docs: `metrics` names and kinds.
#[cfg(feature = "metrics")]
#[test]
fn the_metrics_docs_table_is_the_catalogue() {
    assert_docs_table_is_the_catalogue(include_str!("metrics.rs"), |i| {
        let kind = match i.kind() {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::UpDown | Kind::Level => "gauge",
            Kind::Histogram => "histogram",
        };
        (i.metrics_name(), kind)
    });
}

/// The table in the `opentelemetry` module docs: OpenTelemetry names and the instruments
/// they are made as.
#[cfg(feature = "opentelemetry")]
#[test]
fn the_opentelemetry_docs_table_is_the_catalogue() {
    assert_docs_table_is_the_catalogue(include_str!("opentelemetry.rs"), |i| {
        let kind = match i.kind() {
            Kind::Counter => "`Counter<u64>`",
            Kind::Gauge => "`Gauge<u64>`",
            Kind::UpDown => "`UpDownCounter<i64>`",
            Kind::Histogram => "`Histogram<f64>`",
            Kind::Level => "`Gauge<f64>`",
        };
        (i.otel_name(), kind)
    });
}

/// Levels reported out of order (read under the governor's lock, reported after it) leave
/// each gauge on the latest level; a budget with no known limit gets no series.
#[cfg(feature = "quota")]
#[test]
fn quota_levels_out_of_order_leave_the_latest_level() {
    use crate::quota::QuotaEvent;
    let memory = Memory::default();
    let values = memory.0.clone();
    let core = Core::new(memory);
    let level = |seq, requests| QuotaEvent::LevelsChanged {
        name: Arc::from("openai"),
        key: Arc::from("gpt"),
        requests_left: Some(requests),
        tokens_left: None,
        seq,
    };
    core.on_quota(&level(0, 10.0));
    core.on_quota(&level(2, 8.0));
    core.on_quota(&level(1, 9.0));
    let values = values.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(values.get("QuotaRequestsLeft{openai,key=gpt}"), Some(&8.0));
    assert!(!values.keys().any(|k| k.starts_with("QuotaTokensLeft")));
}
