//! Closed-state cost of a breaker that shares its state with a fleet, against the same breaker
//! without a store, in one criterion run and one group.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --features redis --bench shared_state
//! ```
//!
//! With `TOWER_BREAKER_REDIS_URL` set (for example `redis://127.0.0.1:6379/`), a breaker on a
//! `RedisStore` is measured too; without it, the store is a `MemoryStore`. The sync task runs on
//! a background runtime during the measurement, as in production (it reads the fleet state
//! every `sync_interval`, here 50 ms so it runs often). Calls are made the way
//! `benches/circuit_breaker.rs` makes them: `poll_ready`, `call`, one poll of the future, with
//! no executor in the timed loop. Figures are in `benches/README.md`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::convert::Infallible;
use std::future::{Future, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service, service_fn};
use tower_breaker::Outcome;
use tower_breaker::circuit_breaker::{CircuitBreaker, SlidingWindow};
use tower_breaker::shared_state::{MemoryStore, RedisStore, SharedState};

#[inline(always)]
fn call_once<S: Service<()>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("poll_ready is not ready"),
    }
    let future = pin!(svc.call(()));
    match future.poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the response future is pending"),
    }
}

fn builder() -> tower_breaker::circuit_breaker::Builder {
    CircuitBreaker::builder("bench").sliding_window(SlidingWindow::count_based(100))
}

fn shared_state(c: &mut Criterion) {
    // The sync tasks live here, on their own thread, for the whole run.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = runtime.enter();
    let interval = Duration::from_millis(50);
    let mut contenders = vec![
        ("local", builder().build().expect("breaker")),
        (
            "memory_store",
            builder()
                .shared_state(SharedState::new(MemoryStore::new()).sync_interval(interval))
                .build()
                .expect("breaker"),
        ),
    ];
    // Opt-in fleet failure rate: a listener counts every recorded call.
    contenders.push((
        "memory_store_fleet_rate",
        builder()
            .shared_state(
                SharedState::new(MemoryStore::new())
                    .sync_interval(interval)
                    .fleet_failure_rate(Duration::from_secs(60)),
            )
            .build()
            .expect("breaker"),
    ));
    if let Ok(url) = std::env::var("TOWER_BREAKER_REDIS_URL") {
        let store = RedisStore::builder(url)
            .prefix("tower-breaker-bench")
            .build()
            .expect("redis store");
        contenders.push((
            "redis_store",
            builder()
                .shared_state(SharedState::new(store).sync_interval(interval))
                .build()
                .expect("breaker"),
        ));
    } else {
        eprintln!("TOWER_BREAKER_REDIS_URL not set: measuring the MemoryStore only");
    }
    // The local breaker again, last: drift over the run shows as a gap between the two.
    contenders.push(("local_again", builder().build().expect("breaker")));
    let mut group = c.benchmark_group("shared_state_closed");
    for (name, breaker) in &contenders {
        group.bench_function(format!("handle/{name}"), |b| {
            b.iter(|| {
                black_box(breaker.try_acquire())
                    .expect("closed")
                    .record(Outcome::Success)
            })
        });
        let mut svc = breaker
            .layer()
            .layer(service_fn(|()| ready(Ok::<_, Infallible>(()))));
        group.bench_function(format!("service/{name}"), |b| {
            b.iter(|| black_box(call_once(&mut svc)).is_ok())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500));
    targets = shared_state
}
criterion_main!(benches);
