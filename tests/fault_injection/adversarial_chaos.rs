//! Adversarial tests of `chaos`, from its public docs: injection rates at 0 and 1 over many
//! requests, an empty plan that cycles, latency at its bounds on paused time, a plan shared by
//! many concurrent tasks, and the future dropped during an injected delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_breaker::chaos::{ChaosError, ChaosLayer, Fault, FaultPlan};

/// A service that counts its calls (at `call`, as `service_fn` runs its closure).
fn counted(
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(n) }
    })
}

#[tokio::test(start_paused = true)]
async fn rates_zero_and_one_are_never_and_always_over_ten_thousand_requests() {
    for (rate, expected) in [(0.0, 0), (1.0, 10_000)] {
        let layer = ChaosLayer::<u32>::builder("c")
            .seed(7)
            .inject(Fault::error("boom"), rate)
            .build()
            .unwrap();
        let mut svc = layer.layer(counted(Arc::new(AtomicUsize::new(0))));
        let mut errors = 0;
        for n in 0..10_000 {
            if svc.ready().await.unwrap().call(n).await.is_err() {
                errors += 1;
            }
        }
        assert_eq!(errors, expected, "rate {rate}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_plan_that_cycles_is_healthy_not_a_panic() {
    let layer = ChaosLayer::<u32>::builder("c")
        .plan(FaultPlan::new().cycle())
        .build()
        .unwrap();
    let mut svc = layer.layer(counted(Arc::new(AtomicUsize::new(0))));
    for n in 0..10 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    }
}

#[tokio::test(start_paused = true)]
async fn a_latency_range_is_drawn_inclusive_of_both_ends_and_never_outside() {
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(13));
    let layer = ChaosLayer::<u32>::builder("c")
        .seed(1)
        .inject(Fault::latency_between(min, max), 1.0)
        .build()
        .unwrap();
    let mut svc = layer.layer(counted(Arc::new(AtomicUsize::new(0))));
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..2_000 {
        let start = Instant::now();
        svc.ready().await.unwrap().call(n).await.unwrap();
        let waited = start.elapsed();
        assert!(waited >= min && waited <= max, "{waited:?}");
        seen.insert(waited.as_millis());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [10, 11, 12, 13]);

    // A fixed delay of exactly the 24 h bound is taken; a nanosecond more is refused.
    let day = Duration::from_secs(24 * 3600);
    assert!(
        ChaosLayer::<u32>::builder("c")
            .inject(Fault::latency(day), 1.0)
            .build()
            .is_ok()
    );
    let err = ChaosLayer::<u32>::builder("c")
        .inject(Fault::latency(day + Duration::from_nanos(1)), 1.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "latency");
}

#[tokio::test(start_paused = true)]
async fn a_plan_shared_by_many_concurrent_tasks_gives_each_step_to_exactly_one_request() {
    let layer = ChaosLayer::<u32>::builder("c")
        .plan(
            FaultPlan::new()
                .then_times(30, Fault::error("planned"))
                .then_healthy(20),
        )
        .inject(Fault::error("random"), 0.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(counted(calls.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200u32 {
        let mut svc = svc.clone();
        tasks.spawn(async move { svc.ready().await?.call(n).await });
    }
    let mut planned = 0;
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result.unwrap() {
            let chaos = e.downcast_ref::<ChaosError>().expect("a ChaosError");
            assert_eq!(chaos.message(), "planned");
            planned += 1;
        }
    }
    assert_eq!(planned, 30);
    assert_eq!(calls.load(Ordering::SeqCst), 170);
}

#[tokio::test(start_paused = true)]
#[ignore = "defect: a latency fault calls the inner service at once and only delays its future: the upstream gets the request before the delay, even when the caller gives up during it"]
async fn a_call_dropped_during_its_injected_latency_never_reaches_the_inner_service() {
    let layer = ChaosLayer::<u32>::builder("c")
        .inject(Fault::latency(Duration::from_millis(100)), 1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(counted(calls.clone()));
    let mut future = tokio_test::task::spawn(svc.ready().await.unwrap().call(1));
    assert!(future.poll().is_pending());
    tokio::time::advance(Duration::from_millis(50)).await;
    drop(future);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the caller gave up during the delay"
    );
}
