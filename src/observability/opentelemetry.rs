//! The instruments of [`metrics`](crate::metrics), through an OpenTelemetry
//! [`Meter`](::opentelemetry::metrics::Meter).
//!
//! An [`OpenTelemetryListener`] is an event [`Listener`](crate::events::Listener) for every component. Make one from
//! your meter and register it (clones share everything) with each component's `on_event`:
//!
//! ```
//! use opentelemetry::global;
//! use tower_breaker::circuit_breaker::CircuitBreaker;
//! use tower_breaker::opentelemetry::OpenTelemetryListener;
//!
//! let otel = OpenTelemetryListener::new(&global::meter("my-service"));
//! let breaker = CircuitBreaker::builder("openai").on_event(otel.clone()).build()?;
//! # let _ = breaker;
//! # Ok::<_, tower_breaker::ConfigError>(())
//! ```
//!
//! # Instruments
//!
//! Every data point has a `name` attribute (the component's name); the other attributes, and
//! what each instrument means, are those of the table in [`metrics`](crate::metrics#metrics).
//! The names follow OpenTelemetry's conventions; a Prometheus exporter turns each into the
//! name in that table.
//!
//! | instrument | kind | unit |
//! |---|---|---|
//! | `tower_breaker.circuit_breaker.calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.circuit_breaker.slow_calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.circuit_breaker.transitions` | `Counter<u64>` | `{transition}` |
//! | `tower_breaker.circuit_breaker.state` | `Gauge<u64>` | |
//! | `tower_breaker.circuit_breaker.open` | `Histogram<f64>` | `s` |
//! | `tower_breaker.bulkhead.calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.bulkhead.active_calls` | `UpDownCounter<i64>` | `{call}` |
//! | `tower_breaker.bulkhead.queued_calls` | `UpDownCounter<i64>` | `{call}` |
//! | `tower_breaker.retry.attempts` | `Counter<u64>` | `{attempt}` |
//! | `tower_breaker.retry.calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.fallback.calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.adaptive.limit` | `Gauge<u64>` | `{call}` |
//! | `tower_breaker.adaptive.samples` | `Counter<u64>` | `{sample}` |
//! | `tower_breaker.adaptive.limit_changes` | `Counter<u64>` | `{change}` |
//! | `tower_breaker.quota.calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.quota.requests_left` | `Gauge<f64>` | `{request}` |
//! | `tower_breaker.quota.tokens_left` | `Gauge<f64>` | `{token}` |
//! | `tower_breaker.stream.first_token` | `Histogram<f64>` | `s` |
//! | `tower_breaker.stream.calls` | `Counter<u64>` | `{call}` |
//! | `tower_breaker.chaos.faults` | `Counter<u64>` | `{fault}` |
//!
//! The quota gauges also have a `key` attribute, one data point per key (see
//! [the `key` label](crate::metrics#the-key-label) for what bounds them).
//!
//! The open-time histogram's buckets are 1, 5, 10, 30, 60, 120, 300, 600, 1800 and 3600
//! seconds; the time-to-first-token histogram's 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60
//! and 120 seconds (a view can change them).
//!
//! # Cost
//!
//! As for [`metrics`](crate::metrics#cost): nothing without a listener. With one, the
//! attributes of the series that move on every call are built once per component name and
//! kept.

use super::instrument::{Backend, Instrument, KEY_LABEL, Kind, Labels};
use super::translate::{Core, forward_events};
use ::opentelemetry::KeyValue;
use ::opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
use std::fmt;
use std::sync::Arc;

/// Bucket bounds of the open-time histogram, in seconds.
const OPEN_TIME_BOUNDS: [f64; 10] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Bucket bounds of the time-to-first-token histogram, in seconds: from a fast model's
/// tenths of a second to a reasoning model's minutes.
const FIRST_TOKEN_BOUNDS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The bucket bounds of a histogram.
fn bounds(instrument: Instrument) -> &'static [f64] {
    match instrument {
        Instrument::StreamFirstToken => &FIRST_TOKEN_BOUNDS,
        _ => &OPEN_TIME_BOUNDS,
    }
}

/// Reports every event of the components it is registered with to OpenTelemetry instruments
/// made from one [`Meter`]. A cheap [`Clone`]: clones share the instruments. See the
/// [module docs](self).
///
/// ```
/// use opentelemetry::metrics::MeterProvider;
/// use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
/// use tower_breaker::Outcome;
/// use tower_breaker::circuit_breaker::CircuitBreaker;
/// use tower_breaker::opentelemetry::OpenTelemetryListener;
///
/// let exporter = InMemoryMetricExporter::default();
/// let provider = SdkMeterProvider::builder().with_periodic_exporter(exporter.clone()).build();
/// let otel = OpenTelemetryListener::new(&provider.meter("example"));
/// let breaker = CircuitBreaker::builder("llm").on_event(otel).build()?;
/// breaker.try_acquire().unwrap().record(Outcome::Success);
///
/// provider.force_flush().unwrap();
/// let exported = exporter.get_finished_metrics().unwrap();
/// let names: Vec<String> = exported
///     .iter()
///     .flat_map(|r| r.scope_metrics())
///     .flat_map(|s| s.metrics())
///     .map(|m| m.name().to_string())
///     .collect();
/// assert!(names.contains(&"tower_breaker.circuit_breaker.calls".to_string()));
/// # Ok::<_, tower_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct OpenTelemetryListener {
    core: Arc<Core<Otel>>,
}

impl OpenTelemetryListener {
    /// Makes every instrument from `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            core: Arc::new(Core::new(Otel::new(meter))),
        }
    }
}

impl fmt::Debug for OpenTelemetryListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OpenTelemetryListener")
            .field(&self.core)
            .finish()
    }
}

forward_events!(OpenTelemetryListener);

/// An instrument bound to one set of attributes.
pub(crate) struct Series<I> {
    instrument: I,
    attributes: Box<[KeyValue]>,
}

/// Every instrument, made once from the meter.
pub(crate) struct Otel {
    meter: Meter,
    counters: Vec<(Instrument, Counter<u64>)>,
    gauges: Vec<(Instrument, Gauge<u64>)>,
    up_downs: Vec<(Instrument, UpDownCounter<i64>)>,
    histograms: Vec<(Instrument, Histogram<f64>)>,
    levels: Vec<(Instrument, Gauge<f64>)>,
}

impl Otel {
    fn new(meter: &Meter) -> Self {
        let mut otel = Otel {
            meter: meter.clone(),
            counters: Vec::new(),
            gauges: Vec::new(),
            up_downs: Vec::new(),
            histograms: Vec::new(),
            levels: Vec::new(),
        };
        for instrument in Instrument::ALL {
            match instrument.kind() {
                Kind::Counter => {
                    let made = otel.make_counter(instrument);
                    otel.counters.push((instrument, made));
                }
                Kind::Gauge => {
                    let made = otel.make_gauge(instrument);
                    otel.gauges.push((instrument, made));
                }
                Kind::UpDown => {
                    let made = otel.make_up_down(instrument);
                    otel.up_downs.push((instrument, made));
                }
                Kind::Histogram => {
                    let made = otel.make_histogram(instrument);
                    otel.histograms.push((instrument, made));
                }
                Kind::Level => {
                    let made = otel.make_level(instrument);
                    otel.levels.push((instrument, made));
                }
            }
        }
        otel
    }

    fn make_counter(&self, i: Instrument) -> Counter<u64> {
        self.meter
            .u64_counter(i.otel_name())
            .with_unit(i.otel_unit())
            .with_description(i.description())
            .build()
    }

    fn make_gauge(&self, i: Instrument) -> Gauge<u64> {
        self.meter
            .u64_gauge(i.otel_name())
            .with_unit(i.otel_unit())
            .with_description(i.description())
            .build()
    }

    fn make_up_down(&self, i: Instrument) -> UpDownCounter<i64> {
        self.meter
            .i64_up_down_counter(i.otel_name())
            .with_unit(i.otel_unit())
            .with_description(i.description())
            .build()
    }

    fn make_histogram(&self, i: Instrument) -> Histogram<f64> {
        self.meter
            .f64_histogram(i.otel_name())
            .with_unit(i.otel_unit())
            .with_description(i.description())
            .with_boundaries(bounds(i).to_vec())
            .build()
    }

    fn make_level(&self, i: Instrument) -> Gauge<f64> {
        self.meter
            .f64_gauge(i.otel_name())
            .with_unit(i.otel_unit())
            .with_description(i.description())
            .build()
    }
}

/// The instrument made for `instrument`. Every instrument is made in [`Otel::new`] with the
/// kind the catalogue gives it, so `make` (a fresh instrument of the right name) only runs if
/// the catalogue asks for a kind it did not declare.
fn find<T: Clone>(made: &[(Instrument, T)], instrument: Instrument, make: impl FnOnce() -> T) -> T {
    made.iter()
        .find(|(i, _)| *i == instrument)
        .map_or_else(make, |(_, t)| t.clone())
}

fn attributes(name: &Arc<str>, labels: Labels<'_>) -> Box<[KeyValue]> {
    std::iter::once(KeyValue::new("name", name.clone()))
        .chain(labels.iter().map(|&(key, value)| KeyValue::new(key, value)))
        .collect()
}

impl Backend for Otel {
    type Counter = Series<Counter<u64>>;
    type Gauge = Series<Gauge<u64>>;
    type UpDown = Series<UpDownCounter<i64>>;
    type Histogram = Series<Histogram<f64>>;
    type Level = Series<Gauge<f64>>;

    fn counter(
        &self,
        instrument: Instrument,
        name: &Arc<str>,
        labels: Labels<'_>,
    ) -> Self::Counter {
        Series {
            instrument: find(&self.counters, instrument, || self.make_counter(instrument)),
            attributes: attributes(name, labels),
        }
    }

    fn gauge(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Self::Gauge {
        Series {
            instrument: find(&self.gauges, instrument, || self.make_gauge(instrument)),
            attributes: attributes(name, labels),
        }
    }

    fn up_down(&self, instrument: Instrument, name: &Arc<str>, labels: Labels<'_>) -> Self::UpDown {
        Series {
            instrument: find(&self.up_downs, instrument, || self.make_up_down(instrument)),
            attributes: attributes(name, labels),
        }
    }

    fn histogram(
        &self,
        instrument: Instrument,
        name: &Arc<str>,
        labels: Labels<'_>,
    ) -> Self::Histogram {
        Series {
            instrument: find(&self.histograms, instrument, || {
                self.make_histogram(instrument)
            }),
            attributes: attributes(name, labels),
        }
    }

    fn level(&self, instrument: Instrument, name: &Arc<str>, key: &Arc<str>) -> Self::Level {
        let attributes = [
            KeyValue::new("name", name.clone()),
            KeyValue::new(KEY_LABEL, key.clone()),
        ];
        Series {
            instrument: find(&self.levels, instrument, || self.make_level(instrument)),
            attributes: Box::new(attributes),
        }
    }

    fn count(counter: &Self::Counter, n: u64) {
        counter.instrument.add(n, &counter.attributes);
    }

    fn set(gauge: &Self::Gauge, value: u64) {
        gauge.instrument.record(value, &gauge.attributes);
    }

    fn add(up_down: &Self::UpDown, delta: i64) {
        up_down.instrument.add(delta, &up_down.attributes);
    }

    fn record(histogram: &Self::Histogram, value: f64) {
        histogram.instrument.record(value, &histogram.attributes);
    }

    fn set_level(level: &Self::Level, value: f64) {
        level.instrument.record(value, &level.attributes);
    }
}
