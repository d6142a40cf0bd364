//! The README's "Calling an LLM API" program (with `MarkExtension`) against a mock OpenAI-compatible server on
//! 127.0.0.1 that answers 503 and 529, then 429 with and without a wait, then goes down: the
//! SDKs' retries, a rate-limit cool-down, an outage that opens the breaker, fallback answers,
//! and a log line for every request given up on. Runs in about two seconds and exits.
//!
//! `cargo run --all-features --example llm_client`

#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};
use tower::{ServiceBuilder, ServiceExt};
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::fallback::{
    FallbackLayer, FallbackServed, MarkExtension, OnFailure, service_unavailable,
};
use tower_breaker::retry::{RetryEvent, RetryOnStatus};
use tower_breaker::stack::StandardResilience;
use upstream::Upstream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tower::BoxError> {
    // The mock's outage answers carry a short `retry-after-ms`, which the SDK rules honour, so
    // that the demo does not sleep 0.5 s backoffs.
    let outage = || Fault::service_unavailable().header("retry-after-ms", "5");
    let server = Upstream::with_plan(
        FaultPlan::new()
            .then(outage())
            .then(Fault::overloaded().header("retry-after-ms", "5"))
            .then_healthy(1)
            .then(Fault::rate_limited(Some(Duration::from_millis(200))))
            .then_healthy(1)
            .then(Fault::rate_limited(None))
            .then_healthy(1)
            .then_times(100, outage()),
    )
    .await;

    // The README program.
    let resilience = StandardResilience::builder("openai")
        .llm()
        .on_retry_event(|e: &RetryEvent| match e {
            RetryEvent::Retrying { attempt, delay, .. } => {
                println!("    attempt {attempt} failed, retrying in {delay:.0?}")
            }
            RetryEvent::GaveUp { reason, .. } => println!("    gave up: {reason}"),
            _ => {}
        })
        .build()?;
    let breaker = resilience.breaker().clone();
    let openai = ServiceBuilder::new()
        .layer(
            FallbackLayer::from_fn(service_unavailable)
                .on(OnFailure(RetryOnStatus::llm()))
                .mark(MarkExtension), // so that this demo can tell fallback answers apart
        )
        .layer(resilience)
        .service(reqwest::Client::new());

    let script = [
        "503, then 529, then answered",
        "429 with retry-after-ms: 200",
        "429 without a wait (the breaker's 1 s cool-down)",
        "the outage begins",
        "the outage",
        "the outage",
        "the outage",
    ];
    for what in script {
        let request = reqwest::Client::new()
            .post(server.chat_url())
            .bearer_auth("sk-test")
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#)
            .build()?;
        let started = Instant::now();
        let hits = server.hits();
        println!("{what}:");
        let answer = openai.clone().oneshot(request).await?;
        let from = if answer.extensions().get::<FallbackServed>().is_some() {
            "the fallback"
        } else {
            "the API"
        };
        let retry_after = answer
            .headers()
            .get("retry-after")
            .map(|v| format!(", Retry-After: {}", v.to_str().unwrap_or("?")))
            .unwrap_or_default();
        println!(
            "  -> {} from {from}{retry_after} in {:.0?}; {} call(s) reached the API; breaker {}",
            answer.status(),
            started.elapsed(),
            server.hits() - hits,
            breaker.state(),
        );
    }
    assert_eq!(
        breaker.state().as_str(),
        "open",
        "the outage opened the breaker"
    );
    Ok(())
}
