//! A `ChaosLayer` in front of a real axum app: the staging set-up where a request header opts
//! in to faults, so you can watch your client's timeouts, retries and breakers handle them.
//!
//! ```text
//! cargo run --features chaos,http --example chaos_axum
//! ```
//!
//! The app answers OpenAI-style chat completions. Requests with `x-chaos: on` get 30 % 503s
//! (with `Retry-After`), 10 % 429s with OpenAI's rate-limit headers and 50 % added latency;
//! the others pass untouched. The seed is printed so that a run can be replayed exactly.

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::post;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{BoxError, ServiceBuilder};
use tower_breaker::chaos::{ChaosEvent, ChaosLayer, Fault, RateLimit};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let injected = Arc::new(AtomicUsize::new(0));
    let counter = injected.clone();
    let chaos = ChaosLayer::http("staging")
        .seed(2026)
        .enabled_when(|req: &http::request::Parts| {
            req.headers.get("x-chaos").is_some_and(|v| v == "on")
        })
        .inject(Fault::service_unavailable().header("retry-after", "1"), 0.3)
        .inject(
            Fault::rate_limited(Some(Duration::from_secs(2))).openai_limits(
                RateLimit::new(500, 0, Duration::from_secs(2)),
                RateLimit::new(30_000, 120, Duration::from_millis(400)),
            ),
            0.1,
        )
        .inject(
            Fault::latency_between(Duration::from_millis(5), Duration::from_millis(40)),
            0.5,
        )
        .on_event(move |event: &ChaosEvent| {
            if let ChaosEvent::FaultInjected { .. } = event {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()?;
    println!("chaos layer `{}` with seed {}", chaos.name(), chaos.seed());

    // The real app, with the chaos layer in front of its routes. Axum handlers must not fail:
    // an injected error (none here) would become a 502.
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
                )
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    (StatusCode::BAD_GATEWAY, e.to_string())
                }))
                .layer(chaos),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    for opt_in in [false, true] {
        let mut statuses = BTreeMap::new();
        let mut retry_after = None;
        let started = tokio::time::Instant::now();
        for _ in 0..40 {
            let mut request = client.post(&url).body(r#"{"model":"demo"}"#);
            if opt_in {
                request = request.header("x-chaos", "on");
            }
            let response = request.send().await?;
            if response.status() == 429 {
                retry_after = response
                    .headers()
                    .get("x-ratelimit-reset-requests")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
            }
            *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
        }
        println!(
            "{:<22} 40 requests in {:>6.1} ms: {statuses:?}",
            if opt_in {
                "with x-chaos: on"
            } else {
                "without the header"
            },
            started.elapsed().as_secs_f64() * 1e3
        );
        if let Some(reset) = retry_after {
            println!("{:<22} a 429 said x-ratelimit-reset-requests: {reset}", "");
        }
        if !opt_in && statuses.keys().any(|status| *status != 200) {
            return Err("a request without the header was faulted".into());
        }
    }
    println!("faults injected: {}", injected.load(Ordering::Relaxed));
    server.abort();
    Ok(())
}
