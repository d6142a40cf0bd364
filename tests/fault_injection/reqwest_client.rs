//! The HTTP chaos layer in front of a real `reqwest::Client`: statuses and stream faults on
//! `reqwest::Response`, against a healthy upstream on 127.0.0.1 (no second server).

use crate::support::upstream::Upstream;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_breaker::chaos::{ChaosLayer, Fault, FaultPlan};

const STREAM: &str = r#"{"model":"m","stream":true}"#;

#[tokio::test(start_paused = true)]
async fn a_reqwest_client_goes_through_an_outage_of_statuses_and_stream_faults() {
    let upstream = Upstream::start().await;
    let http = reqwest::Client::new();
    let chaos = ChaosLayer::http("staging")
        .enabled_when(|head: &http::request::Parts| head.uri.path() == "/v1/chat/completions")
        .plan(
            FaultPlan::new()
                .then(Fault::service_unavailable())
                .then(Fault::rate_limited(Some(Duration::from_secs(2))))
                .then(Fault::cut_after(2))
                .then_healthy(1),
        )
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new().layer(chaos).service(http.clone());
    let request = || http.post(upstream.chat_url()).body(STREAM).build().unwrap();

    // Injected statuses: the upstream is never asked, the response has the request's URL.
    let unavailable = client.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.url().as_str(), upstream.chat_url());
    let limited = client.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "2");
    assert!(limited.text().await.unwrap().contains("rate_limit"));
    assert_eq!(upstream.hits(), 0);

    // A stream cut after two events, without its `[DONE]`.
    let cut = client.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(cut.status(), 200);
    let text = cut.text().await.unwrap();
    assert_eq!(text.matches("\n\n").count(), 2, "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    // Then healthy: the whole stream.
    let whole = client.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(whole.url().as_str(), upstream.chat_url());
    assert!(whole.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    // The upstream saw the two streamed requests only.
    assert_eq!(upstream.hits(), 2);
}

/// In front of a `reqwest` service, too: a request dropped during its injected latency is
/// never sent; one that waits it out is sent when the delay is over.
#[tokio::test(start_paused = true)]
async fn a_reqwest_request_dropped_during_its_latency_is_never_sent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{BoxError, Layer, service_fn};
    let sent = Arc::new(AtomicUsize::new(0));
    let client = service_fn({
        let sent = sent.clone();
        move |_: reqwest::Request| {
            sent.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(reqwest::Response::from(http::Response::new(""))) }
        }
    });
    let layer = ChaosLayer::http("r")
        .inject(Fault::latency(Duration::from_millis(100)), 1.0)
        .build()
        .unwrap();
    let mut svc = layer.layer(client);
    let request = || reqwest::Request::new(reqwest::Method::GET, "http://x.test/".parse().unwrap());
    let mut dropped = tokio_test::task::spawn(svc.ready().await.unwrap().call(request()));
    assert!(dropped.poll().is_pending());
    tokio::time::advance(Duration::from_millis(50)).await;
    drop(dropped);
    assert_eq!(sent.load(Ordering::SeqCst), 0);
    let response = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sent.load(Ordering::SeqCst), 1);
}
