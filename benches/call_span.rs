//! What the span per call costs the standard stack's closed path with no subscriber: the
//! stack as `StandardResilience` builds it (a `CallSpan` outermost) against the same parts
//! put together by hand without it (the stack as it was before the span), on an in-memory
//! service, measured in interleaved rounds so that a busy machine slows both alike; the
//! median of the per-round ratios is printed.
//!
//! ```text
//! CARGO_BUILD_JOBS=2 cargo bench --bench call_span --features stack
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Instant;
use tower::retry::Retry;
use tower::timeout::Timeout;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_breaker::circuit_breaker::ClassifyNow;
use tower_breaker::stack::{StackClassifier, StandardResilience};

const CALLS_PER_ROUND: u32 = 20_000;
const ROUNDS: usize = 31;

/// Times `CALLS_PER_ROUND` calls of `svc`, one after the other; ns per call.
fn round<S>(rt: &tokio::runtime::Runtime, svc: &mut S) -> f64
where
    S: Service<u32, Response = u32>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..CALLS_PER_ROUND {
            let answer = svc.ready().await.unwrap().call(i).await.unwrap();
            black_box(answer);
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS_PER_ROUND)
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let inner = service_fn(|x: u32| async move { Ok::<_, Infallible>(x) });
    let stack = StandardResilience::builder("bench").build().unwrap();

    // The stack's parts, in its order, without the span (`StandardResilience::layer` before it).
    let attempt = Timeout::new(inner, stack.attempt_timeout());
    let limited = stack.bulkhead().layer().layer(attempt);
    let guarded = stack
        .breaker()
        .layer()
        .record_with(ClassifyNow(StackClassifier))
        .layer(limited);
    let mut without = Timeout::new(
        Retry::new(stack.retry().clone(), guarded),
        stack.total_timeout(),
    );
    let mut with = stack.layer(inner);

    for _ in 0..3 {
        round(&rt, &mut without);
        round(&rt, &mut with);
    }
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        // Alternate which goes first.
        let (x, y) = if r % 2 == 0 {
            let x = round(&rt, &mut without);
            (x, round(&rt, &mut with))
        } else {
            let y = round(&rt, &mut with);
            (round(&rt, &mut without), y)
        };
        a.push(x);
        b.push(y);
        ratios.push(y / x);
    }
    let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "standard stack, closed, no subscriber: without span {:.1} ns/call (fastest round {:.1}), with span {:.1} ns/call (fastest {:.1}), ratio with/without {:.3} (median of {ROUNDS} rounds of {CALLS_PER_ROUND} calls)",
        median(&mut a),
        fastest(&a),
        median(&mut b),
        fastest(&b),
        median(&mut ratios),
    );
}
