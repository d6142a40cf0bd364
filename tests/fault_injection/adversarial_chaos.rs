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

/// A `counted` service behind a layer that delays every call by 100 ms.
fn delayed_100ms(
    calls: &Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError> + use<> {
    ChaosLayer::<u32>::builder("c")
        .inject(Fault::latency(Duration::from_millis(100)), 1.0)
        .build()
        .unwrap()
        .layer(counted(calls.clone()))
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_during_its_injected_latency_never_reaches_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = delayed_100ms(&calls);
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

/// The injected latency comes before the inner call: not at `call`, not before the delay is
/// over, and exactly once after it.
#[tokio::test(start_paused = true)]
async fn the_inner_service_is_called_when_the_injected_latency_is_over() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = delayed_100ms(&calls);
    let mut future = tokio_test::task::spawn(svc.ready().await.unwrap().call(7));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not at `call`");
    assert!(future.poll().is_pending());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(future.poll().is_pending());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "not before the delay is over"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(future.poll().map(Result::unwrap), std::task::Poll::Ready(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// tower's rule holds across the delay: the delayed call goes to the inner service that
/// reported ready (a `tower_test` mock panics otherwise), and the service left behind is
/// polled ready before its own call; a second call goes out while the first still waits.
#[tokio::test(start_paused = true)]
async fn a_delayed_call_goes_to_the_inner_service_that_was_ready() {
    let layer = ChaosLayer::<u32>::builder("c")
        .plan(FaultPlan::new().then(Fault::latency(Duration::from_millis(100))))
        .build()
        .unwrap();
    let (mut svc, mut handle) = tower_test::mock::spawn_with(|mock| layer.layer(mock));
    handle.allow(2);
    assert!(svc.poll_ready().is_ready());
    let mut delayed = tokio_test::task::spawn(svc.call(1));
    assert!(delayed.poll().is_pending());
    assert!(
        handle.poll_request().is_pending(),
        "nothing sent during the delay"
    );
    // The second request has no fault: it goes at once, through the service left behind.
    assert!(svc.poll_ready().is_ready());
    let mut prompt = tokio_test::task::spawn(svc.call(2));
    assert!(prompt.poll().is_pending());
    let (request, respond) = handle.next_request().await.expect("the second request");
    assert_eq!(request, 2);
    respond.send_response(20);
    assert_eq!(prompt.await.unwrap(), 20);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(delayed.poll().is_pending());
    let (request, respond) = handle.next_request().await.expect("the first request");
    assert_eq!(request, 1);
    respond.send_response(10);
    assert_eq!(delayed.await.unwrap(), 10);
}

/// The latency also comes before an injected error, and the inner service is never called.
#[tokio::test(start_paused = true)]
async fn an_injected_error_comes_after_the_latency_without_calling_the_inner_service() {
    let layer = ChaosLayer::<u32>::builder("c")
        .inject(Fault::latency(Duration::from_millis(100)), 1.0)
        .inject(Fault::error("down"), 1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(counted(calls.clone()));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<ChaosError>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// The HTTP layer: a request dropped during its latency never reaches the inner service; a
/// status after a latency answers without calling it; an undropped request reaches it after
/// the delay, its body under the stream fault that fired.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_http_layer_calls_the_inner_service_after_the_latency_or_never() {
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = service_fn({
        let calls = calls.clone();
        move |_: http::Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(http::Response::new(String::from("hi"))) }
        }
    });
    let latency = Fault::latency(Duration::from_millis(100));
    let layer = ChaosLayer::http("h")
        .plan(
            FaultPlan::new()
                .then(latency.clone())
                .then_all([latency.clone(), Fault::service_unavailable().into()])
                .then(latency),
        )
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    let request = || http::Request::new(String::new());

    let mut dropped = tokio_test::task::spawn(svc.ready().await.unwrap().call(request()));
    assert!(dropped.poll().is_pending());
    tokio::time::advance(Duration::from_millis(50)).await;
    drop(dropped);

    let start = Instant::now();
    let status = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(status.status(), 503);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "neither reached the inner service"
    );

    let mut answered = tokio_test::task::spawn(svc.ready().await.unwrap().call(request()));
    assert!(answered.poll().is_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    tokio::time::advance(Duration::from_millis(100)).await;
    let response = match answered.poll() {
        std::task::Poll::Ready(response) => response.unwrap(),
        std::task::Poll::Pending => panic!("the delay is over"),
    };
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
