//! async-openai through tower-breaker: the client's HTTP service (`with_http_service`) is a
//! `StandardResilience` stack with the LLM preset around async-openai's own `ReqwestService`,
//! against a mock OpenAI-compatible server on 127.0.0.1 that fails twice, then answers, then
//! goes down. Runs in a moment and exits.
//!
//! `cargo run --all-features --example async_openai`

#[path = "../tests/support/upstream.rs"]
mod upstream;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use std::time::Duration;
use tower_breaker::chaos::{Fault, FaultPlan};
use tower_breaker::retry::{Protocol, RetryPolicy};
use tower_breaker::stack::StandardResilience;
use upstream::Upstream;

/// The LLM retry rules for async-openai's requests: a `HttpRequestFactory` is replayed for
/// each attempt (it is `Clone`), every request may be retried (as async-openai's own retry
/// does), and the server's wait is honoured up to 60 s.
#[derive(Debug, Clone, Copy)]
struct OpenAiRequests;

impl<E> Protocol<HttpRequestFactory, reqwest::Response, E> for OpenAiRequests {
    fn clone_request(&self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(req.clone())
    }

    fn server_delay(&self, result: &Result<reqwest::Response, E>) -> Option<Duration> {
        let response = result.as_ref().ok()?;
        tower_breaker::http::retry_after(response.headers())
            .filter(|wait| *wait <= tower_breaker::retry::LLM_MAX_SERVER_DELAY)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let busy = || Fault::service_unavailable().header("retry-after-ms", "5");
    let server = Upstream::with_plan(
        FaultPlan::new()
            .then(busy())
            .then(Fault::overloaded().header("retry-after-ms", "5"))
            .then_healthy(1)
            .then_times(50, busy()),
    )
    .await;

    let resilience = StandardResilience::builder("openai")
        .llm()
        // The preset's rules and settings, with async-openai's request type.
        .retry(
            RetryPolicy::builder()
                .name("openai")
                .llm()
                .protocol(OpenAiRequests),
        )
        .configure_breaker(|breaker| breaker.minimum_calls(4))
        .build()?;
    let breaker = resilience.breaker().clone();
    let service = resilience.service(ReqwestService::new(reqwest::Client::new()));
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(server.base_url())
            .with_api_key("sk-test"),
    )
    .with_http_service(service);

    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Hi")
            .build()?
            .into()])
        .build()?;

    // 503, 529, then the answer: async-openai sees one call.
    let answer = client.chat().create(request.clone()).await?;
    let text = answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default();
    println!("answered after {} calls: {text:?}", server.hits());
    assert_eq!(server.hits(), 3);

    // The outage: the breaker opens, and async-openai gets its error without a call.
    let mut last = String::new();
    for _ in 0..4 {
        last = match client.chat().create(request.clone()).await {
            Ok(_) => "answered".to_string(),
            Err(e) => e.to_string(),
        };
    }
    println!("breaker {}; last error: {last}", breaker.state());
    assert_eq!(breaker.state().as_str(), "open");
    let hits = server.hits();
    assert!(client.chat().create(request).await.is_err());
    assert_eq!(server.hits(), hits, "an open breaker calls nobody");
    println!("{} calls reached the server in all", server.hits());
    Ok(())
}
