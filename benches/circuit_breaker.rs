//! Per-call cost of the circuit breaker against tower's `ConcurrencyLimit`, `tower-resilience`
//! and `failsafe`, all in one criterion run and one group so that the ratios are comparable.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench circuit_breaker
//! ```
//!
//! - Every service, breaker and runtime is built outside the timed loop.
//! - Single-threaded services are driven without a runtime: `poll_ready`, `call` and one poll of
//!   the future with a no-op waker (every inner future here is ready at once). That measures the
//!   middleware, not an executor. `tower-resilience`'s futures (a boxed `async` block around an
//!   uncontended `tokio::sync::Mutex`) complete on that first poll too, so no runtime is needed.
//! - `handle/*` is the breaker used without tower: `try_acquire` + `record`. It is the
//!   apples-to-apples comparison with `failsafe`, whose API is handle-level (`call(closure)`).
//! - `two_threads/*`: two OS threads meet at a spinning rendezvous, then each makes N calls
//!   (at least 2,000) on clones of one shared breaker; the figure is the wall time from the
//!   common start to the last finish over 2N calls. A sample in which the threads ran side by
//!   side for less than 90% of the time (a busy machine) is run again, up to 5 times; samples
//!   that never were are counted and reported on stderr.
//!   With two threads `tower-resilience`'s mutex is contended and its futures return `Pending`,
//!   so every service contender there (the bare service too) is driven two ways: `runtime`,
//!   inside a current-thread tokio runtime per thread (one `block_on` per batch of N calls),
//!   where a `Pending` parks the thread until the other wakes it; and `spin`, polling with a
//!   no-op waker and spinning on `Pending`, which never parks. The handle-level contenders need
//!   neither.
//!
//! Overhead = time per call minus `bare/service_fn` (or minus `bare/closure` at handle level).
//! The figures and the targets they are held to are in `benches/README.md`.

#[path = "support/two_threads.rs"]
mod two_threads;

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::limit::ConcurrencyLimit;
use tower::util::ServiceFn;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use two_threads::{apart_since_reset, two_threads_each};

/// Long enough that an opened breaker stays open for the whole run.
const OPEN_FOR: Duration = Duration::from_secs(3600);

/// The inner service of every contender: answers at once.
fn bare() -> ServiceFn<impl Fn(()) -> Ready<Result<(), Infallible>> + Copy + Send + Sync + 'static>
{
    service_fn(|()| ready(Ok(())))
}

/// One call the way a tower client makes it: `poll_ready`, `call`, poll the future to the end.
/// Nothing here waits, so one poll with a no-op waker finishes it.
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

fn ours(window: SlidingWindow) -> CircuitBreaker {
    CircuitBreaker::builder("bench")
        .sliding_window(window)
        .wait_in_open(OPEN_FOR)
        .build()
        .expect("valid config")
}

/// A breaker tripped open the ordinary way (one failure under `consecutive(1)`), so that a
/// rejection pays the clock read of the `Open` state, not the cheaper `ForcedOpen` path.
fn ours_open() -> CircuitBreaker {
    let breaker = ours(SlidingWindow::consecutive(1));
    breaker
        .try_acquire()
        .expect("closed")
        .record(Outcome::Failure);
    assert!(breaker.try_acquire().is_err(), "the breaker should be open");
    breaker
}

type ResilienceLayer = tower_resilience::circuitbreaker::CircuitBreakerLayer;
type ResilienceHandle = tower_resilience::circuitbreaker::CircuitBreakerHandle;

/// `tower-resilience` with its defaults (count window of 100), one shared circuit per layer.
fn resilience() -> (ResilienceLayer, ResilienceHandle) {
    ResilienceLayer::builder()
        .wait_duration_in_open(OPEN_FOR)
        .build_with_handle()
        .expect("valid config")
}

fn failsafe_open() -> impl failsafe::CircuitBreaker {
    let policy =
        failsafe::failure_policy::consecutive_failures(1, failsafe::backoff::constant(OPEN_FOR));
    let breaker = failsafe::Config::new().failure_policy(policy).build();
    let _ = breaker.call(|| Err::<(), ()>(()));
    assert!(!breaker.is_call_permitted(), "failsafe should be open");
    breaker
}

/// Benchmarks one two-thread contender and says how many of its samples ran mostly apart.
fn bench_two_threads<W, M>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: M)
where
    M: Fn() -> W,
    W: FnMut(u64) + Send,
{
    apart_since_reset();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| two_threads_each(iters, |_| make()))
    });
    let (apart, samples) = apart_since_reset();
    // The bare service's calls take a nanosecond: its threads finish before they overlap.
    if apart > 0 && !name.contains("bare") {
        eprintln!(
            "note: {name}: the two threads ran side by side for less than 90% of {apart} of \
             {samples} samples (a busy machine); the figure understates contention"
        );
    }
}

/// A worker that makes `n` calls on `svc` inside its own current-thread runtime.
fn runtime_worker<S>(mut svc: S) -> impl FnMut(u64) + Send
where
    S: Service<()> + Send,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    move |n| {
        rt.block_on(async {
            for _ in 0..n {
                let ready = svc.ready().await.expect("ready");
                ready.call(()).await.expect("closed");
            }
        })
    }
}

/// A worker that makes `n` calls on `svc` with no runtime: it polls with a no-op waker and
/// spins until the service is ready and the future done.
fn spin_worker<S>(mut svc: S) -> impl FnMut(u64) + Send
where
    S: Service<()> + Send,
    S::Error: std::fmt::Debug,
{
    move |n| {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..n {
            loop {
                match svc.poll_ready(&mut cx) {
                    Poll::Ready(result) => break result.expect("ready"),
                    Poll::Pending => std::hint::spin_loop(),
                }
            }
            let mut future = pin!(svc.call(()));
            let result = loop {
                match future.as_mut().poll(&mut cx) {
                    Poll::Ready(result) => break result,
                    Poll::Pending => std::hint::spin_loop(),
                }
            };
            result.expect("closed");
        }
    }
}

fn circuit_breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker");

    // -- baselines ------------------------------------------------------------------------------
    group.bench_function("bare/service_fn", |b| bench_service(b, bare()));
    group.bench_function("bare/closure", |b| {
        let f = black_box(|| Ok::<(), ()>(()));
        b.iter(|| black_box(f()))
    });
    group.bench_function("tower/concurrency_limit", |b| {
        bench_service(b, ConcurrencyLimit::new(bare(), 1024))
    });

    // -- ours, as a tower service ---------------------------------------------------------------
    group.bench_function("ours/service/closed_count", |b| {
        bench_service(
            b,
            ours(SlidingWindow::count_based(100)).layer().layer(bare()),
        )
    });
    group.bench_function("ours/service/closed_time", |b| {
        let window = SlidingWindow::time_based(Duration::from_secs(60));
        bench_service(b, ours(window).layer().layer(bare()))
    });
    group.bench_function("ours/service/closed_consecutive", |b| {
        bench_service(b, ours(SlidingWindow::consecutive(5)).layer().layer(bare()))
    });
    group.bench_function("ours/service/closed_time_outage_rule", |b| {
        let breaker = CircuitBreaker::builder("bench")
            .sliding_window(SlidingWindow::time_based(Duration::from_secs(60)))
            .consecutive_failure_threshold(Some(15))
            .wait_in_open(OPEN_FOR)
            .build()
            .expect("valid config");
        bench_service(b, breaker.layer().layer(bare()))
    });
    group.bench_function("ours/service/open", |b| {
        bench_service(b, ours_open().layer().layer(bare()))
    });

    // -- ours, handle level (no tower) ----------------------------------------------------------
    group.bench_function("ours/handle/closed_count", |b| {
        let breaker = ours(SlidingWindow::count_based(100));
        b.iter(|| {
            let permit = breaker.try_acquire().expect("closed");
            permit.record(black_box(Outcome::Success));
        })
    });
    group.bench_function("ours/handle/closed_count_outage_rule", |b| {
        let breaker = CircuitBreaker::builder("bench")
            .sliding_window(SlidingWindow::count_based(100))
            .consecutive_failure_threshold(Some(15))
            .wait_in_open(OPEN_FOR)
            .build()
            .expect("valid config");
        b.iter(|| {
            let permit = breaker.try_acquire().expect("closed");
            permit.record(black_box(Outcome::Success));
        })
    });
    group.bench_function("ours/handle/open", |b| {
        let breaker = ours_open();
        b.iter(|| black_box(breaker.try_acquire()).is_err())
    });

    // -- tower-resilience -----------------------------------------------------------------------
    group.bench_function("tower_resilience/closed", |b| {
        let (layer, _handle) = resilience();
        bench_service(b, layer.layer(bare()))
    });
    group.bench_function("tower_resilience/open", |b| {
        let (layer, handle) = resilience();
        futures_util::FutureExt::now_or_never(handle.force_open()).expect("uncontended lock");
        assert!(handle.is_open());
        bench_service(b, layer.layer(bare()))
    });

    // -- failsafe (handle level) ----------------------------------------------------------------
    group.bench_function("failsafe/closed", |b| {
        let breaker = failsafe::Config::new().build();
        b.iter(|| black_box(breaker.call(|| Ok::<(), ()>(()))).is_ok())
    });
    group.bench_function("failsafe/open", |b| {
        let breaker = failsafe_open();
        b.iter(|| black_box(breaker.call(|| Ok::<(), ()>(()))).is_err())
    });

    // -- two threads on one shared breaker ------------------------------------------------------
    // `runtime`: each thread runs its calls in a current-thread tokio runtime (one `block_on`
    // per batch), so a contended lock parks the thread and is woken by the other one.
    // `spin`: each thread polls with a no-op waker and spins on `Pending`, so a contended lock
    // costs the hand-off, never a thread wake-up: `tower-resilience`'s best case.
    bench_two_threads(&mut group, "two_threads/runtime/bare/service_fn", || {
        runtime_worker(bare())
    });
    let layer = ours(SlidingWindow::count_based(100)).layer();
    bench_two_threads(&mut group, "two_threads/runtime/ours/closed_count", || {
        runtime_worker(layer.layer(bare()))
    });
    let (resilience_layer, _handle) = resilience();
    bench_two_threads(
        &mut group,
        "two_threads/runtime/tower_resilience/closed",
        || runtime_worker(resilience_layer.layer(bare())),
    );
    let layer = ours(SlidingWindow::count_based(100)).layer();
    bench_two_threads(&mut group, "two_threads/spin/ours/closed_count", || {
        spin_worker(layer.layer(bare()))
    });
    let (resilience_layer, _handle) = resilience();
    bench_two_threads(
        &mut group,
        "two_threads/spin/tower_resilience/closed",
        || spin_worker(resilience_layer.layer(bare())),
    );
    let breaker = ours(SlidingWindow::count_based(100));
    bench_two_threads(&mut group, "two_threads/handle/ours/closed_count", || {
        let breaker = breaker.clone();
        move |n| {
            for _ in 0..n {
                let permit = breaker.try_acquire().expect("closed");
                permit.record(black_box(Outcome::Success));
            }
        }
    });
    let breaker = failsafe::Config::new().build();
    bench_two_threads(&mut group, "two_threads/handle/failsafe/closed", || {
        let breaker = breaker.clone();
        move |n| {
            for _ in 0..n {
                black_box(breaker.call(|| Ok::<(), ()>(()))).expect("closed");
            }
        }
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500));
    targets = circuit_breaker
}
criterion_main!(benches);
