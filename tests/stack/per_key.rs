//! The one-call stack with one breaker per model: an outage or a cool-down of one model
//! leaves the others alone, and the retry asks the breaker of the request's model.

use crate::scripted::{chat, model, status, upstream};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_breaker::circuit_breaker::{CircuitOpen, CircuitState, SlidingWindow};
use tower_breaker::stack::StandardResilience;

#[tokio::test(start_paused = true)]
async fn a_model_in_outage_opens_its_own_breaker_and_the_other_model_is_unaffected() {
    let gateway = StandardResilience::builder("gateway")
        .llm()
        .configure_breaker(|b| b.sliding_window(SlidingWindow::consecutive(3)))
        .per_key(model)
        .build()
        .unwrap();
    let (upstream, calls) = upstream(|model: &str, _| match model {
        "down" => status(503, &[]),
        _ => status(200, &[]),
    });
    let svc = gateway.layer(upstream);

    // The SDKs' three attempts at the model that is down open its breaker.
    let answer = svc.clone().oneshot(chat("down")).await.unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(calls.of("down").len(), 3);
    let breakers = gateway.breakers();
    assert_eq!(
        breakers.state(&"down".to_string()),
        Some(CircuitState::Open)
    );
    // Its calls now fail fast and reach nobody...
    for _ in 0..5 {
        let err = svc.clone().oneshot(chat("down")).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    assert_eq!(calls.of("down").len(), 3);
    // ...while the other model's go through, its breaker closed.
    for _ in 0..5 {
        assert_eq!(svc.clone().oneshot(chat("up")).await.unwrap().status(), 200);
    }
    assert_eq!(calls.of("up").len(), 5);
    assert_eq!(
        breakers.state(&"up".to_string()),
        Some(CircuitState::Closed)
    );
    assert_eq!(breakers.get(&"down".to_string()).name(), "gateway:down");
}

#[tokio::test(start_paused = true)]
async fn the_retry_waits_for_the_cool_down_of_the_requests_own_model() {
    let start = Instant::now();
    let gateway = StandardResilience::builder("gateway")
        .llm()
        .per_key(model)
        .build()
        .unwrap();
    // The first call to "limited" is a 429 without a wait: its breaker's own 1 s cool-down,
    // longer than the 0.5 s (+-25 %) backoff.
    let (upstream, calls) = upstream(|model: &str, n| match (model, n) {
        ("limited", 0) => status(429, &[]),
        _ => status(200, &[]),
    });
    let svc = gateway.layer(upstream);

    let limited = tokio::spawn(svc.clone().oneshot(chat("limited")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let breakers = gateway.breakers();
    assert_eq!(
        breakers.state(&"limited".to_string()),
        Some(CircuitState::RateLimited)
    );
    // The other model is not cooling down: its call goes out at once.
    assert_eq!(
        svc.clone().oneshot(chat("free")).await.unwrap().status(),
        200
    );
    assert_eq!(calls.of("free"), [start + Duration::from_millis(100)]);
    // A new call to the limited model waits out that model's cool-down.
    let waiting = tokio::spawn(svc.clone().oneshot(chat("limited")));

    assert_eq!(limited.await.unwrap().unwrap().status(), 200);
    assert_eq!(waiting.await.unwrap().unwrap().status(), 200);
    // The retry and the waiting call went out at the very end of the limited model's
    // cool-down (from 0 to 1 s), not at the backoff's end inside it.
    let at: Vec<Duration> = calls.of("limited").iter().map(|t| *t - start).collect();
    assert_eq!(
        at,
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(1)
        ]
    );
}
