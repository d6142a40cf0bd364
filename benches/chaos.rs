//! Per-call cost of a `ChaosLayer` when no fault fires, against the bare service, in one
//! criterion run and one group so that the ratios are comparable.
//!
//! ```text
//! CARGO_TARGET_DIR=target-bench cargo bench --all-features --bench chaos -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - Every service is built outside the timed loop and wraps the same ready `service_fn`; each
//!   call is `poll_ready`, `call` and one poll of the future with a no-op waker (no executor).
//! - `any/*`: a `u64` service. `rate_0` has three faults (error, latency, error) at injection
//!   rate 0.0, so every call draws three numbers and none fires: the cost a staging layer adds
//!   to the calls it leaves alone. `switched_off` has the same faults and a layer-wide
//!   `enabled_when` returning false: one closure call.
//! - `http/*`: an `http::Request<()>` to `http::Response<()>` service; the layer splits and
//!   rejoins the request for its switches and wraps the response body (`ChaosBody`).
//!
//! Overhead = time per call minus the matching `bare`. Figures in `benches/README.md`.

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use std::convert::Infallible;
use std::future::{Future, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service, service_fn};
use tower_breaker::chaos::{ChaosLayer, Fault};

/// One call the way a tower client makes it: `poll_ready`, `call`, poll the future to the end.
#[inline(always)]
fn call_once<R, S: Service<R>>(svc: &mut S, req: R, cx: &mut Context<'_>) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("poll_ready is not ready"),
    }
    let future = pin!(svc.call(black_box(req)));
    match future.poll(cx) {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => panic!("the response future is pending"),
    }
}

fn bench<R, S: Service<R>>(b: &mut Bencher<'_>, mut svc: S, make: impl Fn() -> R) {
    let mut cx = Context::from_waker(Waker::noop());
    b.iter(|| black_box(call_once(&mut svc, make(), &mut cx)));
}

/// Three faults that never fire.
fn quiet<V>(name: &str) -> tower_breaker::chaos::ChaosBuilder<V> {
    ChaosLayer::builder(name)
        .seed(1)
        .inject(Fault::error("never"), 0.0)
        .inject(Fault::latency(Duration::from_millis(10)), 0.0)
        .inject(Fault::error("never either"), 0.0)
}

fn chaos(c: &mut Criterion) {
    let mut group = c.benchmark_group("chaos");
    let bare = service_fn(|n: u64| ready(Ok::<_, Infallible>(n)));
    group.bench_function("any/bare", |b| bench(b, bare, || 7u64));
    let layer = quiet::<u64>("rate_0").build().unwrap();
    group.bench_function("any/rate_0", |b| bench(b, layer.layer(bare), || 7u64));
    let off = quiet::<u64>("off").enabled_when(|_| false).build().unwrap();
    group.bench_function("any/switched_off", |b| bench(b, off.layer(bare), || 7u64));

    let http_bare =
        service_fn(|_req: http::Request<()>| ready(Ok::<_, Infallible>(http::Response::new(()))));
    let request = || http::Request::new(());
    group.bench_function("http/bare", |b| bench(b, http_bare, request));
    let mut builder = ChaosLayer::http("rate_0").seed(1);
    for fault in [
        Fault::service_unavailable().into(),
        Fault::latency(Duration::from_millis(10)),
        Fault::cut_after(3),
    ] {
        builder = builder.inject(fault, 0.0);
    }
    let layer = builder.build().unwrap();
    group.bench_function("http/rate_0", |b| bench(b, layer.layer(http_bare), request));
    group.finish();
}

criterion_group!(benches, chaos);
criterion_main!(benches);
