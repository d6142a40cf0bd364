//! The governor over real HTTP: reqwest to the mock OpenAI-compatible upstream of
//! `tests/support`, whose chaos layer answers 429s with OpenAI's and Anthropic's rate-limit
//! headers. Real time, but no waiting on it: every pause asked for is an hour, so the
//! assertions cannot race the clock.

use crate::support::upstream::Upstream;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_breaker::chaos::{Fault, FaultPlan, RateLimit};
use tower_breaker::quota::{Exhausted, HttpHeaders, Quota, QuotaExceeded};
use tower_breaker::rejection::{Rejection, RejectionKind};

const HOUR: Duration = Duration::from_secs(3600);

async fn two_calls(fault: Fault) -> (Upstream, Quota<String>, tower::BoxError) {
    let upstream = Upstream::with_plan(FaultPlan::new().then(fault)).await;
    let quota = Quota::<String>::builder("openai")
        .max_wait(Duration::from_secs(1))
        .build()
        .expect("a valid quota");
    let client = reqwest::Client::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            quota
                .layer(|_: &reqwest::Request| "gpt".to_string())
                // Issue "Correctness, round two", 3d: the same observer as for `http::Response`.
                .observe(HttpHeaders::new()),
        )
        .service(client.clone());
    let request = || {
        client
            .post(upstream.chat_url())
            .body(r#"{"model":"gpt","messages":[]}"#)
            .build()
            .expect("a request")
    };
    let first = svc
        .ready()
        .await
        .expect("ready")
        .call(request())
        .await
        .expect("an answer");
    assert_eq!(first.status(), 429);
    let err = svc
        .ready()
        .await
        .expect("ready")
        .call(request())
        .await
        .expect_err("paused by the 429");
    (upstream, quota, err)
}

#[tokio::test]
async fn an_openai_429_pauses_the_key_for_its_retry_after_without_another_call() {
    let fault = Fault::rate_limited(Some(HOUR)).openai_limits(
        RateLimit::new(60, 0, HOUR),
        RateLimit::new(90_000, 12, Duration::from_millis(800)),
    );
    let (upstream, quota, err) = two_calls(fault.into()).await;
    assert_eq!(upstream.hits(), 1, "the second call never left");
    let exceeded = err
        .downcast_ref::<QuotaExceeded>()
        .expect("a quota rejection");
    assert_eq!(exceeded.budget(), Exhausted::Paused);
    assert!(
        exceeded.retry_after() > HOUR - Duration::from_secs(60),
        "{exceeded}"
    );
    let rejection = Rejection::of(err.as_ref()).expect("our own rejection");
    assert_eq!(rejection.kind(), RejectionKind::QuotaExceeded);
    // The limits were learned from the headers.
    let snapshot = quota.snapshot(&"gpt".to_string()).expect("a known key");
    assert_eq!(snapshot.requests_limit, Some(60));
    assert_eq!(snapshot.tokens_limit, Some(90_000));
}

#[tokio::test]
async fn an_anthropic_429_pauses_the_key_until_the_exhausted_budget_resets() {
    let fault = Fault::status(429).anthropic_limits(
        RateLimit::new(50, 0, HOUR),
        RateLimit::new(80_000, 79_000, Duration::from_secs(1)),
    );
    let (upstream, quota, err) = two_calls(fault.into()).await;
    assert_eq!(upstream.hits(), 1, "the second call never left");
    let exceeded = err
        .downcast_ref::<QuotaExceeded>()
        .expect("a quota rejection");
    assert_eq!(exceeded.budget(), Exhausted::Paused);
    // The RFC 3339 reset of the exhausted request budget, an hour away (to the second).
    assert!(
        exceeded.retry_after() > HOUR - Duration::from_secs(60),
        "{exceeded}"
    );
    let snapshot = quota.snapshot(&"gpt".to_string()).expect("a known key");
    assert_eq!(snapshot.requests_limit, Some(50));
}
