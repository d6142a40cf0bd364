//! What events and metrics cost a closed breaker's call: a breaker with no listener, one with
//! the `metrics` listener (feeding a real Prometheus recorder), one with the OpenTelemetry
//! listener (a real SDK meter), one with a trivial closure, and a bare `service_fn`, all in one
//! criterion run and one group so that the figures are comparable.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench observability \
//!     --features metrics,opentelemetry -- --warm-up-time 1 --measurement-time 3
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench observability \
//!     -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The second command builds with the features off: the listener contenders are left out, and
//! `*/no_listener` is then the figure "with the feature off". No component code depends on
//! these features (they only add the adapter modules), so both runs build the same hot path.
//!
//! Services are driven without a runtime, as in `benches/circuit_breaker.rs`: `poll_ready`,
//! `call`, one poll with a no-op waker. `handle/*` is `try_acquire` + `record` without tower.
//! The figures are in `benches/README.md` under "Observability".

#[path = "support/two_threads.rs"]
mod two_threads;

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::util::ServiceFn;
use tower::{Layer, Service, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{Builder, CircuitBreaker, CircuitBreakerEvent, SlidingWindow};

fn bare() -> ServiceFn<impl Fn(()) -> Ready<Result<(), Infallible>> + Copy + Send + Sync + 'static>
{
    service_fn(|()| ready(Ok(())))
}

#[inline(always)]
fn call_once<S: Service<()>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(_)) => panic!("poll_ready failed"),
        Poll::Pending => panic!("poll_ready is pending"),
    }
    let future = pin!(svc.call(()));
    match future.poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the response future is pending"),
    }
}

fn bench_service<S: Service<()>>(b: &mut Bencher<'_>, mut svc: S) {
    b.iter(|| black_box(call_once(&mut svc)).is_ok());
}

fn bench_handle(b: &mut Bencher<'_>, breaker: CircuitBreaker) {
    b.iter(|| match breaker.try_acquire() {
        Ok(permit) => permit.record(black_box(Outcome::Success)),
        Err(_) => panic!("the breaker is closed"),
    });
}

/// The breaker of every contender: the default count window, as in `closed_count` of
/// `benches/circuit_breaker.rs`.
fn breaker(configure: impl FnOnce(Builder) -> Builder) -> CircuitBreaker {
    configure(CircuitBreaker::builder("bench").sliding_window(SlidingWindow::count_based(100)))
        .build()
        .expect("valid config")
}

#[cfg(feature = "metrics")]
fn metrics_listener() -> tower_breaker::metrics::MetricsListener {
    use std::sync::OnceLock;
    // One global recorder for the process, installed before the listener describes its
    // metrics and before the first call.
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).expect("no other recorder");
    });
    tower_breaker::metrics::MetricsListener::new()
}

#[cfg(feature = "opentelemetry")]
fn otel_listener() -> (
    tower_breaker::opentelemetry::OpenTelemetryListener,
    opentelemetry_sdk::metrics::SdkMeterProvider,
) {
    use opentelemetry::metrics::MeterProvider;
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(opentelemetry_sdk::metrics::InMemoryMetricExporter::default())
        .build();
    let listener =
        tower_breaker::opentelemetry::OpenTelemetryListener::new(&provider.meter("bench"));
    (listener, provider)
}

fn observability(c: &mut Criterion) {
    let mut group = c.benchmark_group("observability");

    group.bench_function("bare/service_fn", |b| bench_service(b, bare()));

    group.bench_function("service/no_listener", |b| {
        bench_service(b, breaker(|b| b).layer().layer(bare()))
    });
    group.bench_function("service/closure_listener", |b| {
        let listener = |e: &CircuitBreakerEvent| {
            black_box(e);
        };
        bench_service(b, breaker(|b| b.on_event(listener)).layer().layer(bare()))
    });
    #[cfg(feature = "metrics")]
    group.bench_function("service/metrics_listener", |b| {
        let listener = metrics_listener();
        bench_service(b, breaker(|b| b.on_event(listener)).layer().layer(bare()))
    });
    #[cfg(feature = "opentelemetry")]
    group.bench_function("service/otel_listener", |b| {
        let (listener, _provider) = otel_listener();
        bench_service(b, breaker(|b| b.on_event(listener)).layer().layer(bare()))
    });

    group.bench_function("handle/no_listener", |b| bench_handle(b, breaker(|b| b)));
    #[cfg(feature = "metrics")]
    group.bench_function("handle/metrics_listener", |b| {
        let listener = metrics_listener();
        bench_handle(b, breaker(|b| b.on_event(listener)))
    });

    // Two threads, each with its own breaker, one listener for both: what the listener's
    // lookup of the breaker's series costs when two threads report at once. The reference is
    // the lookup this crate used before, rebuilt here: a read lock and a hash of the name.
    #[cfg(feature = "metrics")]
    {
        let shared = metrics_listener();
        group.bench_function("two_threads/handle/metrics_listener", |b| {
            b.iter_custom(|iters| {
                two_threads::two_threads(iters, &|thread, n| {
                    let name = format!("bench-{thread}");
                    let breaker = CircuitBreaker::builder(name)
                        .on_event(shared.clone())
                        .build()
                        .expect("valid config");
                    record_n(&breaker, n);
                })
            })
        });
        let reference = std::sync::Arc::new(reference::LockedListener::default());
        group.bench_function("two_threads/handle/reference_locked_listener", |b| {
            b.iter_custom(|iters| {
                two_threads::two_threads(iters, &|thread, n| {
                    let name = format!("bench-{thread}");
                    let breaker = CircuitBreaker::builder(name)
                        .on_event(reference::Shared(reference.clone()))
                        .build()
                        .expect("valid config");
                    record_n(&breaker, n);
                })
            })
        });
    }

    group.finish();
}

#[cfg(feature = "metrics")]
fn record_n(breaker: &CircuitBreaker, n: u64) {
    for _ in 0..n {
        match breaker.try_acquire() {
            Ok(permit) => permit.record(black_box(Outcome::Success)),
            Err(_) => panic!("the breaker is closed"),
        }
    }
}

/// The `metrics` listener's series lookup as it was: a read lock on one map and a hash of the
/// name per event, then the recorder's increment.
#[cfg(feature = "metrics")]
mod reference {
    use std::collections::HashMap;
    use std::sync::{Arc, RwLock};
    use tower_breaker::circuit_breaker::CircuitBreakerEvent;
    use tower_breaker::events::Listener;

    #[derive(Default)]
    pub(crate) struct LockedListener {
        series: RwLock<HashMap<Arc<str>, metrics::Counter>>,
    }

    pub(crate) struct Shared(pub(crate) Arc<LockedListener>);

    impl Listener<CircuitBreakerEvent> for Shared {
        fn on_event(&self, event: &CircuitBreakerEvent) {
            let CircuitBreakerEvent::CallRecorded { name, .. } = event else {
                return;
            };
            if let Some(counter) = self.0.series.read().expect("not poisoned").get(&**name) {
                counter.increment(1);
                return;
            }
            let mut series = self.0.series.write().expect("not poisoned");
            series
                .entry(name.clone())
                .or_insert_with(
                    || metrics::counter!("reference_calls_total", "name" => name.to_string()),
                )
                .increment(1);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = observability
}
criterion_main!(benches);
