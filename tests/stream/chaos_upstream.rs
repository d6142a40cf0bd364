//! End to end on the shared chaos upstream (a real axum server on 127.0.0.1 with a
//! `ChaosLayer` in front) through a real reqwest client: each streamed fault the chaos layer
//! injects is the error the guard promises, and a failure on the breaker. Real time: the
//! stalls last a minute and the deadlines 300 ms, so only the error's type is asserted (the
//! timing bounds are proved on paused time in the other modules).

use crate::support::upstream::Upstream;
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::stream::{FirstTokenTimeout, StreamGuardLayer, StreamIdle, StreamTruncated};

/// True when `error` or one of its sources is an `E`.
pub(crate) fn is<E: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[tokio::test]
async fn each_streamed_fault_of_the_chaos_upstream_is_its_guard_error_and_a_failure() {
    let minute = Duration::from_secs(60);
    let upstream = Upstream::builder()
        .chunk_interval(Duration::from_millis(5))
        .plan(
            FaultPlan::new()
                .then(Fault::stall_before_first_byte(minute))
                .then(Fault::keepalive_only(Duration::from_millis(50)))
                .then(Fault::stall_after(2, minute))
                .then(Fault::cut_after(2)),
        )
        .start()
        .await;
    let breaker = crate::upstream::counting_breaker("upstream");
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = upstream.chat_url();
    let client = reqwest::Client::new();
    let mut guarded = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(guard)
        .map_request(move |(): ()| {
            client
                .post(&url)
                .body(r#"{"model":"m","stream":true,"messages":[]}"#)
                .build()
                .unwrap()
        })
        .service(reqwest::Client::new());

    let mut outcomes: Vec<Result<String, BoxError>> = Vec::new();
    for _ in 0..5 {
        let outcome = match guarded.ready().await.unwrap().call(()).await {
            Err(error) => Err(error),
            Ok(response) => response.text().await.map_err(Into::into),
        };
        outcomes.push(outcome);
    }
    let err = |i: usize| outcomes[i].as_ref().unwrap_err().as_ref();
    assert!(is::<FirstTokenTimeout>(err(0)), "{:?}", outcomes[0]);
    assert!(is::<FirstTokenTimeout>(err(1)), "{:?}", outcomes[1]);
    assert!(is::<StreamIdle>(err(2)), "{:?}", outcomes[2]);
    assert!(is::<StreamTruncated>(err(3)), "{:?}", outcomes[3]);
    let healthy = outcomes[4].as_ref().unwrap();
    assert!(healthy.trim_end().ends_with("data: [DONE]"), "{healthy}");
    let metrics = breaker.metrics();
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (4, 1));
}
