//! The layer's contract with the inner service, in process with paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_breaker::chaos::{ChaosError, ChaosLayer, Fault, FaultPlan};
use tower_layer::Layer;

#[tokio::test(start_paused = true)]
async fn a_latency_fault_delays_the_inner_future_before_its_first_poll() {
    let start = Instant::now();
    let layer = ChaosLayer::builder("slow")
        .plan(FaultPlan::new().then(Fault::latency(Duration::from_secs(2))))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: ()| async move {
        Ok::<_, std::convert::Infallible>(start.elapsed())
    }));
    let polled_at = svc.oneshot(()).await.unwrap();
    assert_eq!(polled_at, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn an_answer_fault_never_calls_the_inner_service_and_clones_share_the_plan() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = ChaosLayer::builder("shared")
        .plan(FaultPlan::new().then_times(3, Fault::error("down")))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(move |_: ()| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(()) }
    }));
    // Three clones (and a second service from the same layer) take the three steps.
    let other = layer.layer(service_fn(|_: ()| async {
        Ok::<_, std::convert::Infallible>(())
    }));
    for mut s in [svc.clone(), svc.clone()] {
        let err = s.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(err.is::<ChaosError>());
    }
    assert!(other.oneshot(()).await.unwrap_err().is::<ChaosError>());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    svc.oneshot(()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_injected_status_keeps_the_inner_service_untouched_and_says_it_was_injected() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = ChaosLayer::http("status")
        .plan(FaultPlan::new().then(Fault::overloaded()))
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(move |_: http::Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        }
    }));
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    assert!(response.body().is_injected());
    assert_eq!(response.headers()["content-type"], "application/json");
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.body().is_injected());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
