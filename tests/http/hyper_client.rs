//! A hyper-util client behind `CircuitBreaker::http_layer`, against real hyper and raw TCP
//! servers. Paused tokio time where the breaker's clock matters: nothing here arms a timer, so
//! real sockets still make progress and the breaker's waits are exact.

use crate::server::{DONE, Log, get, hyper_client, post_stream, sse_then_reset};
use crate::support::upstream::Upstream;
use crate::support::{advance, ms, secs};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_breaker::Outcome;
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitOpen, CircuitState, RateLimited, SlidingWindow,
};
use tower_breaker::http::{BodyIdleTimeout, HttpClassifier};

/// Reads `body` until `needle` has arrived; returns what was read.
async fn read_until<B>(body: &mut B, needle: &str) -> String
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut seen = String::new();
    while !seen.contains(needle) {
        let frame = body.frame().await.expect("the body ended early").unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_503_trips_the_breaker_and_later_calls_never_reach_the_server() {
    let down = ChaosLayer::http("down")
        .inject(Fault::status(503).header("retry-after", "120"), 1.0)
        .build()
        .unwrap();
    let server = Upstream::with_chaos(down).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("upstream")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(secs(30))
        .max_retry_after(secs(300))
        .on_event(log.listener())
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());

    for _ in 0..3 {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(get(&server.url("/")))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        // A failure is recorded at the head: the body holds nothing.
        assert!(!response.body().holds_permit());
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    for _ in 0..5 {
        let err = client
            .ready()
            .await
            .unwrap()
            .call(get(&server.url("/")))
            .await
            .unwrap_err();
        let open = err.downcast_ref::<CircuitOpen>().expect("CircuitOpen");
        // Open for the server's 120 s, not the breaker's own 30 s.
        assert_eq!(open.retry_after(), Some(secs(120)));
    }
    assert_eq!(server.hits(), 3, "rejected calls never reach the server");
    assert_eq!(log.outcomes(), vec![Outcome::Failure; 3]);
    assert_eq!(breaker.metrics().not_permitted_calls, 5);
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_cools_the_breaker_down_for_retry_after_without_tripping() {
    let limited = Arc::new(AtomicBool::new(true));
    let flag = limited.clone();
    let storm = ChaosLayer::http("storm")
        .inject_when(Fault::rate_limited(Some(secs(2))), 1.0, move |_| {
            flag.load(Ordering::SeqCst)
        })
        .build()
        .unwrap();
    let server = Upstream::with_chaos(storm).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("llm")
        .sliding_window(SlidingWindow::count_based(10))
        .minimum_calls(3)
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());

    // The storm: ten calls in flight at once, all answered 429.
    let storm = futures_util::future::join_all((0..10).map(|_| {
        let client = client.clone();
        let url = server.url("/v1/models");
        async move { client.oneshot(get(&url)).await }
    }))
    .await;
    for response in storm {
        assert_eq!(response.unwrap().status(), 429);
    }
    assert_eq!(server.hits(), 10);
    assert_eq!(breaker.state(), CircuitState::RateLimited);
    let metrics = breaker.metrics();
    assert_eq!((metrics.failed_calls, metrics.ignored_calls), (0, 10));

    // During the cool-down, calls fail at once and never reach the server.
    let err = client
        .clone()
        .oneshot(get(&server.url("/v1/models")))
        .await
        .unwrap_err();
    let limited_err = err.downcast_ref::<RateLimited>().expect("RateLimited");
    assert_eq!(limited_err.retry_after(), Some(secs(2)));
    assert_eq!(limited_err.name(), "llm");
    advance(ms(1_999)).await;
    let err = client
        .clone()
        .oneshot(get(&server.url("/v1/models")))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<RateLimited>().unwrap().retry_after(),
        Some(ms(1))
    );
    assert_eq!(server.hits(), 10);

    // After 2 s the upstream is called again.
    advance(ms(1)).await;
    limited.store(false, Ordering::SeqCst);
    let response = client
        .clone()
        .oneshot(get(&server.url("/v1/models")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    assert_eq!(server.hits(), 11);
    assert_eq!(breaker.state(), CircuitState::Closed);
    // Never open: rate limit, then closed again.
    assert_eq!(
        log.states(),
        vec![CircuitState::RateLimited, CircuitState::Closed]
    );
}

#[tokio::test]
async fn a_stream_reset_after_three_events_is_a_failure() {
    let (addr, reset) = sse_then_reset(3).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("sse")
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());

    let response = client
        .oneshot(get(&format!("http://{addr}/events")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let seen = read_until(&mut body, "data: 3").await;
    assert!(seen.contains("data: 1") && seen.contains("data: 2"));
    assert!(body.holds_permit());
    assert!(log.outcomes().is_empty(), "nothing recorded mid-stream");

    reset.send(()).unwrap();
    let err = loop {
        match body.frame().await {
            Some(Ok(_)) => continue,
            Some(Err(err)) => break err,
            None => panic!("a reset connection must not end cleanly"),
        }
    };
    assert!(err.is::<hyper::Error>(), "{err}");
    assert_eq!(log.outcomes(), vec![Outcome::Failure]);
    assert_eq!(breaker.metrics().failed_calls, 1);
}

#[tokio::test]
async fn a_stream_that_ends_cleanly_is_a_success() {
    let server = Upstream::start().await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("sse")
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());

    let response = client
        .oneshot(post_stream(&server.chat_url()))
        .await
        .unwrap();
    assert!(response.body().holds_permit());
    assert!(log.outcomes().is_empty());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().ends_with(DONE));
    assert_eq!(log.outcomes(), vec![Outcome::Success]);
    assert_eq!(breaker.metrics().successful_calls, 1);
}

#[tokio::test]
async fn a_body_dropped_early_by_the_caller_is_ignored() {
    // One event, then the stream stays open.
    let server =
        Upstream::with_plan(FaultPlan::new().then(Fault::stall_after(1, secs(3600)))).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("sse")
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());

    let response = client
        .oneshot(post_stream(&server.chat_url()))
        .await
        .unwrap();
    let mut body = response.into_body();
    read_until(&mut body, "\n\n").await;
    drop(body);
    assert_eq!(log.outcomes(), vec![Outcome::Ignored]);
    let metrics = breaker.metrics();
    assert_eq!((metrics.calls, metrics.ignored_calls), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_streamed_probe_holds_the_half_open_slot_until_its_body_ends() {
    // A 503, then a probe whose stream sends one event and stalls for 30 s.
    let server = Upstream::with_plan(
        FaultPlan::new()
            .then(Fault::service_unavailable())
            .then(Fault::stall_after(1, secs(30))),
    )
    .await;
    let breaker = CircuitBreaker::builder("probe")
        .sliding_window(SlidingWindow::consecutive(1))
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());

    client
        .clone()
        .oneshot(post_stream(&server.chat_url()))
        .await
        .unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    advance(secs(10)).await;

    // The probe's head is a 200; its body is still streaming.
    let probe = client
        .clone()
        .oneshot(post_stream(&server.chat_url()))
        .await
        .unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let mut body = probe.into_body();
    read_until(&mut body, "\n\n").await;
    let err = client
        .clone()
        .oneshot(post_stream(&server.chat_url()))
        .await
        .unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(
        open.state(),
        CircuitState::HalfOpen,
        "the slot is still held"
    );
    assert_eq!(server.hits(), 2);

    // After the stall the stream ends cleanly: the probe succeeds and the breaker closes.
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&rest).unwrap().ends_with(DONE));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_stream_that_stalls_fails_after_the_body_idle_timeout() {
    let server =
        Upstream::with_plan(FaultPlan::new().then(Fault::stall_after(1, secs(3600)))).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("sse")
        .on_event(log.listener())
        .build()
        .unwrap();
    let classifier = HttpClassifier::builder()
        .body_idle_timeout(ms(200))
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.layer().record_with(classifier))
        .service(hyper_client());

    let response = client
        .oneshot(post_stream(&server.chat_url()))
        .await
        .unwrap();
    let mut body = response.into_body();
    read_until(&mut body, "\n\n").await;
    let started = tokio::time::Instant::now();
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(started.elapsed() >= ms(200));
    let idle = err
        .downcast_ref::<BodyIdleTimeout>()
        .expect("BodyIdleTimeout");
    assert_eq!((idle.idle(), idle.breaker_name()), (ms(200), "sse"));
    assert_eq!(log.outcomes(), vec![Outcome::Failure]);
    // The body is over.
    assert!(body.frame().await.is_none());
    assert!(http_body::Body::is_end_stream(&body));
}

#[tokio::test]
async fn errors_on_the_way_count_as_failures_and_local_rejections_as_ignored() {
    let log = Log::default();
    let breaker = CircuitBreaker::builder("errors")
        .on_event(log.listener())
        .build()
        .unwrap();

    // Connection refused: nothing listens on this port any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());
    let err = client.oneshot(get(&refused)).await.unwrap_err();
    assert!(err.is::<hyper_util::client::legacy::Error>(), "{err}");

    // A timeout layer inside the breaker: `Elapsed` is a failure.
    let hang = ChaosLayer::http("hang")
        .inject(Fault::latency(secs(3600)), 1.0)
        .build()
        .unwrap();
    let hang = Upstream::with_chaos(hang).await;
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .timeout(ms(100))
        .service(hyper_client());
    let err = client.oneshot(get(&hang.url("/"))).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");

    // A full bulkhead inside the breaker never reached the upstream: ignored.
    let bulkhead = Bulkhead::builder("pool")
        .max_concurrent(1)
        .max_queue(0)
        .build()
        .unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(bulkhead.layer())
        .service(hyper_client());
    let err = client.oneshot(get(&hang.url("/"))).await.unwrap_err();
    assert!(err.is::<tower_breaker::bulkhead::BulkheadFull>(), "{err}");

    assert_eq!(
        log.outcomes(),
        vec![Outcome::Failure, Outcome::Failure, Outcome::Ignored]
    );
    assert_eq!(hang.hits(), 1);
}

#[tokio::test]
async fn custom_rules_decide_what_a_status_means() {
    let server = Upstream::with_plan(
        FaultPlan::new()
            .then(Fault::status(404))
            .then(Fault::status(500)),
    )
    .await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("custom")
        .on_event(log.listener())
        .build()
        .unwrap();
    let classifier = HttpClassifier::builder()
        .status(
            http::StatusCode::NOT_FOUND,
            tower_breaker::http::ResponseClass::Failure,
        )
        .status_range(500..600, tower_breaker::http::ResponseClass::Ignored)
        .record_at_body_end(false)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.layer().record_with(classifier))
        .service(hyper_client());
    for code in [404, 500, 200] {
        let response = client
            .clone()
            .oneshot(get(&server.url("/v1/models")))
            .await
            .unwrap();
        assert_eq!(response.status(), code);
        // Recorded at the head, even for a success.
        assert!(!response.body().holds_permit());
    }
    assert_eq!(
        log.outcomes(),
        vec![Outcome::Failure, Outcome::Ignored, Outcome::Success]
    );
}

#[tokio::test]
async fn an_empty_success_is_recorded_at_once() {
    let server = Upstream::with_plan(FaultPlan::new().then(Fault::status(204).body(""))).await;
    let log = Log::default();
    let breaker = CircuitBreaker::builder("empty")
        .on_event(log.listener())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .service(hyper_client());
    let response = client.oneshot(get(&server.url("/"))).await.unwrap();
    assert_eq!(response.status(), 204);
    assert!(!response.body().holds_permit());
    drop(response);
    assert_eq!(log.outcomes(), vec![Outcome::Success]);
}
