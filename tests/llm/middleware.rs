//! `reqwest-middleware`: the breaker, bulkhead and retry middleware over a
//! `ClientWithMiddleware`, against the mock upstream.

use crate::support::upstream::Upstream;
use reqwest_middleware::ClientBuilder;
use std::sync::{Arc, Mutex};
use tower_breaker::bulkhead::Bulkhead;
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitState, SlidingWindow};
use tower_breaker::rejection::{Rejection, RejectionKind};
use tower_breaker::reqwest_middleware::{
    BulkheadMiddleware, CircuitBreakerMiddleware, RetryMiddleware,
};
use tower_breaker::retry::{GiveUpReason, RetryEvent, RetryPolicy};

#[tokio::test]
async fn the_middleware_retry_by_the_sdk_rules_open_on_an_outage_and_reject_without_a_call() {
    let busy = || Fault::service_unavailable().header("retry-after-ms", "5");
    let upstream = Upstream::with_plan(
        FaultPlan::new()
            .then(Fault::overloaded().header("retry-after-ms", "5"))
            .then_healthy(1)
            .then_times(20, busy()),
    )
    .await;
    let breaker = CircuitBreaker::builder("openai")
        .sliding_window(SlidingWindow::consecutive(2))
        .build()
        .unwrap();
    let bulkhead = Bulkhead::builder("openai")
        .max_concurrent(4)
        .build()
        .unwrap();
    let gave_up = Arc::new(Mutex::new(Vec::new()));
    let sink = gave_up.clone();
    let policy = RetryPolicy::builder()
        .llm()
        .breaker(&breaker)
        .on_event(move |e: &RetryEvent| {
            if let RetryEvent::GaveUp { reason, .. } = e {
                sink.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new(policy))
        .with(CircuitBreakerMiddleware::new(&breaker))
        .with(BulkheadMiddleware::new(&bulkhead))
        .build();
    let chat = || {
        client
            .post(upstream.chat_url())
            .body(r#"{"messages":[]}"#)
            .send()
    };

    // 529, answered: a POST retried by the SDK rules.
    let answer = chat().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(upstream.hits(), 2);
    assert_eq!(bulkhead.metrics().active, 1, "held until the body ends");
    assert!(answer.text().await.unwrap().contains("chat.completion"));
    assert_eq!(bulkhead.metrics().active, 0);

    // The outage: two failures open the breaker; the retry gives up with its error.
    let err = chat().await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open);
    let rejection = Rejection::of_any(&err).expect("the breaker's rejection");
    assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
    let hits = upstream.hits();
    assert_eq!(hits, 4);
    assert!(chat().await.is_err());
    assert_eq!(upstream.hits(), hits, "an open breaker calls nobody");
    assert_eq!(
        *gave_up.lock().unwrap(),
        [GiveUpReason::CircuitOpen, GiveUpReason::CircuitOpen]
    );
}
