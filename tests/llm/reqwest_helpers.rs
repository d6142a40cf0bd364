//! reqwest everywhere `http` works: the standard stack's `.reqwest()` flavour, idempotency
//! keys on `reqwest::Request`, and `CircuitBreaker::call` for clients that are not services.

use crate::support::upstream::Upstream;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, CircuitState, SlidingWindow};
use tower_breaker::http::HttpClassifier;
use tower_breaker::retry::IdempotencyKeyLayer;
use tower_breaker::stack::StandardResilience;
use tower_breaker::{BoxError, Outcome};

fn post(url: String) -> reqwest::Request {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"model":"m","messages":[]}"#)
        .build()
        .unwrap()
}

/// 503 twice (with a short `retry-after-ms`, so the test does not sleep the backoff), then
/// healthy.
async fn flaky() -> Upstream {
    let busy = || Fault::service_unavailable().header("retry-after-ms", "5");
    Upstream::with_plan(FaultPlan::new().then(busy()).then(busy())).await
}

#[tokio::test]
async fn the_standard_stack_wraps_a_reqwest_client_and_keyed_posts_are_retried() {
    let stack = || {
        StandardResilience::builder("api")
            .reqwest()
            .configure_retry(|retry| {
                retry.backoff(tower_breaker::backoff::Backoff::constant(
                    std::time::Duration::from_millis(5),
                ))
            })
            .build()
            .unwrap()
    };

    // Without a key, the HTTP rules send a POST once.
    let upstream = flaky().await;
    let client = stack().layer(reqwest::Client::new());
    let response = client.oneshot(post(upstream.chat_url())).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.hits(), 1);

    // With `IdempotencyKeyLayer` outside the retry, every attempt carries one key.
    let upstream = flaky().await;
    let client = ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::new())
        .layer(stack())
        .service(reqwest::Client::new());
    let response = client.oneshot(post(upstream.chat_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let keys: Vec<_> = upstream
        .received()
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned().expect("a key"))
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
}

#[tokio::test]
async fn circuit_breaker_call_guards_a_plain_client_and_records_429_as_a_cool_down() {
    let upstream = Upstream::with_plan(
        FaultPlan::new()
            .then(Fault::service_unavailable())
            .then(Fault::service_unavailable())
            .then_healthy(1)
            .then(Fault::rate_limited(Some(std::time::Duration::from_secs(
                30,
            )))),
    )
    .await;
    let breaker = CircuitBreaker::builder("genai")
        .sliding_window(SlidingWindow::consecutive(2))
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    // What a client library does inside: send, then fail on an error status.
    let generate = || {
        let request = client.post(upstream.chat_url()).body("{}").send();
        async move { request.await?.error_for_status() }
    };
    let failure = |r: &Result<reqwest::Response, reqwest::Error>| match r {
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    for _ in 0..2 {
        assert!(breaker.call(generate(), failure).await.is_err());
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let err: BoxError = breaker.call(generate(), failure).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(upstream.hits(), 2, "the rejected call never ran");

    // `call_with` and the HTTP classifier: a 429 is a cool-down, not a failure.
    breaker.reset();
    let send = || client.post(upstream.chat_url()).body("{}").send();
    let ok = breaker
        .call_with(send(), HttpClassifier::new())
        .await
        .unwrap();
    assert!(ok.text().await.unwrap().contains("chat.completion"));
    let limited = breaker
        .call_with(send(), HttpClassifier::new())
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(breaker.state(), CircuitState::RateLimited);
    assert_eq!(breaker.metrics().failed_calls, 0);
}
