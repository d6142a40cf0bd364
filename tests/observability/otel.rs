//! The OpenTelemetry adapter, read through the SDK's in-memory exporter.

use crate::{OPEN_FOR, Value, half_open_and_close, key, scripted_breaker, trip_and_reject};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::opentelemetry::OpenTelemetryListener;

/// A meter provider exporting to memory, and a listener on its meter.
struct Otel {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
    listener: OpenTelemetryListener,
}

impl Otel {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter.clone())
            .build();
        let listener = OpenTelemetryListener::new(&provider.meter("tower-breaker-tests"));
        Self {
            provider,
            exporter,
            listener,
        }
    }

    /// Every data point of the latest export, by [`key`]. Histograms read as [count, sum].
    fn read(&self) -> BTreeMap<String, Value> {
        self.provider.force_flush().expect("flush");
        let exports = self.exporter.get_finished_metrics().expect("exported");
        let mut read = BTreeMap::new();
        let Some(latest) = exports.last() else {
            return read;
        };
        for metric in latest.scope_metrics().flat_map(|s| s.metrics()) {
            let name = metric.name();
            let attrs = |kvs: Vec<&opentelemetry::KeyValue>| -> Vec<(String, String)> {
                kvs.into_iter()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect()
            };
            let mut put = |labels: Vec<(String, String)>, value: Value| {
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                read.insert(key(name, &labels), value);
            };
            match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    for p in sum.data_points() {
                        put(attrs(p.attributes().collect()), Value::Counter(p.value()));
                    }
                }
                AggregatedMetrics::I64(MetricData::Sum(sum)) => {
                    for p in sum.data_points() {
                        put(
                            attrs(p.attributes().collect()),
                            Value::Gauge(p.value() as f64),
                        );
                    }
                }
                AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                    for p in gauge.data_points() {
                        put(
                            attrs(p.attributes().collect()),
                            Value::Gauge(p.value() as f64),
                        );
                    }
                }
                AggregatedMetrics::F64(MetricData::Gauge(gauge)) => {
                    for p in gauge.data_points() {
                        put(attrs(p.attributes().collect()), Value::Gauge(p.value()));
                    }
                }
                AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                    for p in histogram.data_points() {
                        put(
                            attrs(p.attributes().collect()),
                            Value::Histogram(vec![p.count() as f64, p.sum()]),
                        );
                    }
                }
                other => panic!("unexpected data for {name}: {other:?}"),
            }
        }
        read
    }
}

const CALLS: &str = "tower_breaker.circuit_breaker.calls";
const STATE: &str = "tower_breaker.circuit_breaker.state";
const TRANSITIONS: &str = "tower_breaker.circuit_breaker.transitions";

fn state(read: &BTreeMap<String, Value>, name: &str, state: &str) -> Value {
    read[&key(STATE, &[("name", name), ("state", state)])].clone()
}

/// Trip, reject 5, half-open, close: read after the trip and at the end; the open state's
/// gauge goes from 1 back to 0.
#[tokio::test(start_paused = true)]
async fn breaker_instruments_through_a_trip_and_a_recovery() {
    let otel = Otel::new();
    let breaker = scripted_breaker("llm", |b| b.on_event(otel.listener.clone()));
    let calls = |read: &BTreeMap<String, Value>, outcome: &str| {
        read[&key(CALLS, &[("name", "llm"), ("outcome", outcome)])].clone()
    };

    trip_and_reject(&breaker).await;
    let read = otel.read();
    assert_eq!(calls(&read, "success"), Value::Counter(1));
    assert_eq!(calls(&read, "failure"), Value::Counter(3));
    assert_eq!(calls(&read, "ignored"), Value::Counter(0));
    assert_eq!(calls(&read, "rejected"), Value::Counter(5));
    assert_eq!(
        read[&key(
            "tower_breaker.circuit_breaker.slow_calls",
            &[("name", "llm"), ("outcome", "success")]
        )],
        Value::Counter(1)
    );
    assert_eq!(state(&read, "llm", "open"), Value::Gauge(1.0));
    assert_eq!(state(&read, "llm", "closed"), Value::Gauge(0.0));
    assert_eq!(state(&read, "llm", "half_open"), Value::Gauge(0.0));

    half_open_and_close(&breaker).await;
    let read = otel.read();
    assert_eq!(calls(&read, "success"), Value::Counter(3));
    assert_eq!(calls(&read, "rejected"), Value::Counter(5));
    assert_eq!(state(&read, "llm", "open"), Value::Gauge(0.0));
    assert_eq!(state(&read, "llm", "half_open"), Value::Gauge(0.0));
    assert_eq!(state(&read, "llm", "closed"), Value::Gauge(1.0));
    for other in ["forced_open", "disabled", "metrics_only", "rate_limited"] {
        assert_eq!(state(&read, "llm", other), Value::Gauge(0.0), "{other}");
    }
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ] {
        assert_eq!(
            read[&key(TRANSITIONS, &[("name", "llm"), ("from", from), ("to", to)])],
            Value::Counter(1),
            "{from} -> {to}"
        );
    }
    assert_eq!(
        read[&key("tower_breaker.circuit_breaker.open", &[("name", "llm")])],
        Value::Histogram(vec![1.0, OPEN_FOR.as_secs_f64()])
    );
}

/// Active and queued calls move up and down as calls come and go.
#[tokio::test(start_paused = true)]
async fn bulkhead_instruments_follow_the_queue() {
    let otel = Otel::new();
    let bulkhead = Bulkhead::builder("tools")
        .max_concurrent(1)
        .max_queue(2)
        .max_wait(Duration::from_secs(5))
        .on_event(otel.listener.clone())
        .build()
        .unwrap();
    let gauges = |read: &BTreeMap<String, Value>| {
        let get = |metric: &str| read[&key(metric, &[("name", "tools")])].clone();
        (
            get("tower_breaker.bulkhead.active_calls"),
            get("tower_breaker.bulkhead.queued_calls"),
        )
    };

    let held = bulkhead.try_acquire().unwrap();
    let mut first = task::spawn(bulkhead.acquire());
    let mut second = task::spawn(bulkhead.acquire());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert!(bulkhead.try_acquire().is_err());
    assert_eq!(gauges(&otel.read()), (Value::Gauge(1.0), Value::Gauge(2.0)));

    drop(held);
    let permit = assert_ready_ok!(first.poll());
    assert_eq!(gauges(&otel.read()), (Value::Gauge(1.0), Value::Gauge(1.0)));

    tokio::time::advance(Duration::from_secs(5)).await;
    assert_ready_err!(second.poll());
    drop(permit);
    let read = otel.read();
    assert_eq!(gauges(&read), (Value::Gauge(0.0), Value::Gauge(0.0)));
    let calls = |outcome: &str| {
        read[&key(
            "tower_breaker.bulkhead.calls",
            &[("name", "tools"), ("outcome", outcome)],
        )]
            .clone()
    };
    assert_eq!(calls("permitted"), Value::Counter(2));
    assert_eq!(calls("rejected_full"), Value::Counter(1));
    assert_eq!(calls("rejected_timeout"), Value::Counter(1));
}

/// The instruments carry the names, units and descriptions the docs list.
#[tokio::test(start_paused = true)]
async fn instrument_names_and_units() {
    let otel = Otel::new();
    let breaker = scripted_breaker("units", |b| b.on_event(otel.listener.clone()));
    trip_and_reject(&breaker).await;
    half_open_and_close(&breaker).await;
    otel.provider.force_flush().unwrap();
    let exports = otel.exporter.get_finished_metrics().unwrap();
    let latest = exports.last().expect("an export");
    let mut units: Vec<(String, String)> = latest
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .map(|m| (m.name().to_string(), m.unit().to_string()))
        .collect();
    units.sort();
    let expected = [
        ("tower_breaker.circuit_breaker.calls", "{call}"),
        ("tower_breaker.circuit_breaker.open", "s"),
        ("tower_breaker.circuit_breaker.slow_calls", "{call}"),
        ("tower_breaker.circuit_breaker.state", ""),
        ("tower_breaker.circuit_breaker.transitions", "{transition}"),
    ];
    assert_eq!(
        units,
        expected
            .iter()
            .map(|(n, u)| (n.to_string(), u.to_string()))
            .collect::<Vec<_>>()
    );
}

/// Injected faults reach OpenTelemetry as `tower_breaker.chaos.faults`, by kind.
#[cfg(feature = "chaos")]
#[tokio::test(start_paused = true)]
async fn chaos_faults_are_counted_by_kind() {
    use tower::{Service, ServiceExt};
    use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};

    let otel = Otel::new();
    let layer = ChaosLayer::builder("staging")
        .plan(
            FaultPlan::new()
                .then(Fault::error("x"))
                .then(Fault::latency(Duration::from_millis(5))),
        )
        .on_event(otel.listener.clone())
        .build()
        .unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_: ()| async {
            Ok::<_, tower::BoxError>(())
        }));
    for _ in 0..3 {
        let _ = svc.ready().await.unwrap().call(()).await;
    }
    let read = otel.read();
    for fault in ["error", "latency"] {
        assert_eq!(
            read[&key(
                "tower_breaker.chaos.faults",
                &[("fault", fault), ("name", "staging")]
            )],
            Value::Counter(1),
            "{fault}"
        );
    }
}

/// A stream's time to first token and a quota key's levels reach OpenTelemetry: a histogram
/// in seconds and two `f64` gauges with a `key` attribute.
#[cfg(all(feature = "stream", feature = "quota"))]
#[tokio::test(start_paused = true)]
async fn first_token_and_quota_levels_reach_opentelemetry() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{BoxError, Service, ServiceExt};
    use tower_breaker::quota::Quota;
    use tower_breaker::stream::StreamGuardLayer;

    let otel = Otel::new();
    let quota = Quota::<&str>::builder("openai")
        .requests_per_window(10)
        .tokens_per_window(1_000)
        .on_event(otel.listener.clone())
        .build()
        .unwrap();
    let _permit = quota.acquire(&"gpt", 100).await.unwrap();

    let guard = StreamGuardLayer::builder()
        .name("openai")
        .on_event(otel.listener.clone())
        .build()
        .unwrap();
    let mut client = tower::ServiceBuilder::new()
        .layer(guard)
        .service(tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
            Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::from_static(
                sse.as_bytes(),
            ))))
        }));
    let response = client.ready().await.unwrap().call(()).await.unwrap();
    response.into_body().collect().await.unwrap();

    let read = otel.read();
    let labels = [("key", "gpt"), ("name", "openai")];
    assert_eq!(
        read[&key("tower_breaker.quota.requests_left", &labels)],
        Value::Gauge(9.0)
    );
    assert_eq!(
        read[&key("tower_breaker.quota.tokens_left", &labels)],
        Value::Gauge(900.0)
    );
    assert_eq!(
        read[&key("tower_breaker.stream.first_token", &[("name", "openai")])],
        Value::Histogram(vec![1.0, 0.3])
    );
    assert_eq!(
        read[&key(
            "tower_breaker.stream.calls",
            &[("name", "openai"), ("outcome", "completed")]
        )],
        Value::Counter(1)
    );
}
