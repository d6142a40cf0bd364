//! The README program, against an upstream that answers 503 and 529, then 429 with and
//! without `Retry-After`, then goes down.

use crate::support::upstream::Upstream;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::circuit_breaker::{CircuitBreakerEvent, CircuitState};
use tower_breaker::fallback::{
    FallbackEvent, FallbackLayer, FallbackServed, MarkExtension, OnFailure, service_unavailable,
};
use tower_breaker::retry::{GiveUpReason, RetryEvent, RetryOnStatus};
use tower_breaker::stack::StandardResilience;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// Every event of one kind, in order.
#[derive(Clone)]
struct Log<E>(Arc<Mutex<Vec<E>>>);

impl<E: Clone + Send + 'static> Log<E> {
    fn new() -> Self {
        Self(Arc::default())
    }

    fn listener(&self) -> impl Fn(&E) + Send + Sync + 'static {
        let sink = self.0.clone();
        move |event: &E| sink.lock().unwrap().push(event.clone())
    }

    fn all(&self) -> Vec<E> {
        self.0.lock().unwrap().clone()
    }
}

/// The short `retry-after-ms` the outage's 503s carry, so that the test does not sleep the
/// SDKs' 0.5 s backoffs (the SDK rules honour it).
const OUTAGE_WAIT: &str = "5";

#[tokio::test]
async fn the_readme_program_retries_opens_cools_down_falls_back_and_reports_every_give_up() {
    let outage = || Fault::service_unavailable().header("retry-after-ms", OUTAGE_WAIT);
    let upstream = Upstream::with_plan(
        FaultPlan::new()
            // Request 1: 503, 529, then answered: the SDKs' retries, POST included.
            .then(Fault::service_unavailable().header("retry-after-ms", OUTAGE_WAIT))
            .then(Fault::overloaded().header("retry-after-ms", OUTAGE_WAIT))
            .then_healthy(1)
            // Request 2: 429 with a wait: a cool-down, then answered.
            .then(Fault::rate_limited(Some(Duration::from_millis(50))))
            .then_healthy(1)
            // Request 3: 429 without a wait: the breaker's own 1 s cool-down, then answered.
            .then(Fault::rate_limited(None))
            .then_healthy(1)
            // The outage: every request fails until the breaker opens.
            .then_times(30, outage()),
    )
    .await;

    let (retries, breaker_events, fallbacks) = (Log::new(), Log::new(), Log::new());
    // The README's program, with listeners to check it by.
    let resilience = StandardResilience::builder("openai")
        .llm()
        .on_retry_event(retries.listener())
        .on_breaker_event(breaker_events.listener())
        .build()
        .unwrap();
    let breaker = resilience.breaker().clone();
    let openai = ServiceBuilder::new()
        .layer(
            FallbackLayer::from_fn(service_unavailable)
                .on(OnFailure(RetryOnStatus::llm()))
                .mark(MarkExtension)
                .on_event(fallbacks.listener()),
        )
        .layer(resilience)
        .service(reqwest::Client::new());
    let chat = || {
        reqwest::Client::new()
            .post(upstream.chat_url())
            .header("content-type", "application/json")
            .body(CHAT)
            .build()
            .unwrap()
    };
    let ask = || async { openai.clone().oneshot(chat()).await };

    // 1: 503, 529, answered.
    let answer = ask().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("chat.completion"));
    assert_eq!(upstream.hits(), 3);

    // 2 and 3: rate-limited, cooled down, answered; no failure counted.
    for _ in 0..2 {
        assert_eq!(ask().await.unwrap().status(), 200);
    }
    assert_eq!(upstream.hits(), 7);
    assert_eq!(breaker.state(), CircuitState::Closed);
    let cool_downs = breaker_events
        .all()
        .iter()
        .filter(|e| {
            matches!(
                e,
                CircuitBreakerEvent::StateTransition {
                    to: CircuitState::RateLimited,
                    ..
                }
            )
        })
        .count();
    assert_eq!(cool_downs, 2, "{:?}", breaker_events.all());

    // The outage: answered from the fallback until and after the breaker opens.
    let mut outage_answers = Vec::new();
    for _ in 0..6 {
        let answer: reqwest::Response = ask().await.unwrap();
        outage_answers.push((
            answer.status(),
            answer.extensions().get::<FallbackServed>().is_some(),
        ));
    }
    assert_eq!(breaker.state(), CircuitState::Open, "{:?}", retries.all());
    assert!(
        outage_answers
            .iter()
            .all(|&(status, marked)| status == 503 && marked),
        "{outage_answers:?}"
    );
    let hits_when_open = upstream.hits();
    assert!(
        hits_when_open < 7 + 6 * 3,
        "the breaker cut the outage's traffic"
    );
    assert_eq!(ask().await.unwrap().status(), 503);
    assert_eq!(
        upstream.hits(),
        hits_when_open,
        "an open breaker calls nobody"
    );

    // Every request that did not get the upstream's answer is one give-up event and one
    // fallback answer.
    let gave_up: Vec<GiveUpReason> = retries
        .all()
        .into_iter()
        .filter_map(|e| match e {
            RetryEvent::GaveUp { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(gave_up.len(), 7, "{gave_up:?}");
    assert!(gave_up.contains(&GiveUpReason::CircuitOpen));
    let served = fallbacks
        .all()
        .iter()
        .filter(|e| matches!(e, FallbackEvent::Served(_)))
        .count();
    assert_eq!(served, 7);
}
