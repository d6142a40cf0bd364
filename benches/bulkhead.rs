//! Per-call cost of the bulkhead against a bare `service_fn`, tower's `ConcurrencyLimit` and
//! `tower-resilience`'s bulkhead, in one criterion run and one group so that the ratios are
//! comparable.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench bulkhead -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - Every service is built outside the timed loop, with 10 slots (and, where the middleware
//!   has them, a queue and a 5 s maximum wait), so that every call finds a free slot: this is
//!   the uncontended path that every call pays.
//! - Each call is `poll_ready`, `call` and one poll of the future with a no-op waker (every inner
//!   future here is ready at once): the middleware is measured, not an executor. The thread is
//!   inside a current-thread runtime's context (`Runtime::enter`, nothing is spawned or
//!   blocked on) only because `tower-resilience` builds a `tokio::time::Sleep` for its maximum
//!   wait on every call; ours reads no clock on this path.
//! - `handle/*`: the bulkhead without tower, `try_acquire` and drop of the permit.
//! - `*adaptive*`: the adaptive bulkhead (gradient controller, limit 10 of 1 ..= 1,000), each
//!   call a sample for the controller: what the moving limit costs beside the fixed one.
//!
//! Overhead = time per call minus `bulkhead/service_fn`. Figures in `benches/README.md`.

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::limit::ConcurrencyLimit;
use tower::util::ServiceFn;
use tower::{Layer, Service, service_fn};
use tower_breaker::bulkhead::{AdaptiveBulkhead, Bulkhead, Signal};

const SLOTS: u32 = 10;
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The inner service of every contender: answers at once.
fn bare() -> ServiceFn<impl Fn(u64) -> Ready<Result<u64, Infallible>> + Copy + Send + Sync + 'static>
{
    service_fn(|n: u64| ready(Ok(n)))
}

/// One call the way a tower client makes it: `poll_ready`, `call`, poll the future to the end.
#[inline(always)]
fn call_once<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>) -> Result<S::Response, S::Error> {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(_)) => panic!("poll_ready failed"),
        Poll::Pending => panic!("poll_ready is pending"),
    }
    let future = pin!(svc.call(black_box(7)));
    match future.poll(cx) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the response future is pending"),
    }
}

/// An adaptive bulkhead starting at the fixed one's 10 slots.
fn adaptive() -> AdaptiveBulkhead {
    AdaptiveBulkhead::builder("bench")
        .initial_limit(SLOTS)
        .max_queue(100)
        .max_wait(MAX_WAIT)
        .build()
        .expect("a valid bulkhead")
}

fn bench_service<S: Service<u64>>(b: &mut Bencher<'_>, mut svc: S) {
    let mut cx = Context::from_waker(Waker::noop());
    b.iter(|| black_box(call_once(&mut svc, &mut cx)).is_ok());
}

fn ours() -> Bulkhead {
    Bulkhead::builder("bench")
        .max_concurrent(SLOTS)
        .max_queue(100)
        .max_wait(MAX_WAIT)
        .build()
        .expect("valid config")
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _context = runtime.enter();

    let mut group = c.benchmark_group("bulkhead");
    group.bench_function("service_fn", |b| bench_service(b, bare()));
    group.bench_function("tower_concurrency_limit", |b| {
        bench_service(b, ConcurrencyLimit::new(bare(), SLOTS as usize))
    });
    group.bench_function("tower_breaker", |b| {
        bench_service(b, ours().layer().layer(bare()))
    });
    group.bench_function("tower_resilience", |b| {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(SLOTS as usize)
            .max_wait_duration(MAX_WAIT)
            .name("bench")
            .build()
            .expect("valid config");
        bench_service(b, layer.layer(bare()))
    });
    group.bench_function("tower_breaker_adaptive", |b| {
        bench_service(b, adaptive().layer().layer(bare()))
    });
    group.finish();

    let mut group = c.benchmark_group("handle");
    group.bench_function("try_acquire_drop", |b| {
        let bulkhead = ours();
        b.iter(|| drop(black_box(bulkhead.try_acquire())));
    });
    group.bench_function("tokio_semaphore_try_acquire_owned", |b| {
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(SLOTS as usize));
        b.iter(|| drop(black_box(semaphore.clone().try_acquire_owned())));
    });
    group.bench_function("adaptive_try_acquire_record", |b| {
        let bulkhead = adaptive();
        b.iter(|| {
            if let Ok(permit) = black_box(bulkhead.try_acquire()) {
                permit.record(Signal::Success);
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = bulkhead;
    config = Criterion::default();
    targets = benches
}
criterion_main!(bulkhead);
