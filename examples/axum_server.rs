//! Server side: an axum app whose handler depends on a flaky upstream, protected by a circuit
//! breaker and a bulkhead, with errors mapped to responses by `HandleErrorLayer` and a
//! `/health` endpoint.
//!
//! ```text
//! cargo run --example axum_server
//! ```
//!
//! The example starts the server on 127.0.0.1, sends it requests with a real HTTP client while
//! the upstream fails, prints what each request got, and exits.

use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::ServiceBuilder;
use tower_breaker::bulkhead::{Bulkhead, BulkheadFull, BulkheadTimeout};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitOpen, RateLimited, SlidingWindow};
use tower_breaker::fallback::retry_after_of;
use tower_breaker::health::HealthRegistry;

/// Maps the middleware's errors to responses: axum handlers must be infallible.
async fn handle_error(err: BoxError) -> Response {
    let (status, message) = if err.is::<CircuitOpen>() || err.is::<RateLimited>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the recommendation service is unavailable",
        )
    } else if err.is::<BulkheadFull>() || err.is::<BulkheadTimeout>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight",
        )
    } else if err.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::GATEWAY_TIMEOUT, "the upstream took too long")
    } else {
        (StatusCode::BAD_GATEWAY, "the upstream failed")
    };
    let mut res = (status, message).into_response();
    if let Some(wait) = retry_after_of(err.as_ref()) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let upstream_down = Arc::new(AtomicBool::new(false));
    let breaker = CircuitBreaker::builder("recommendations")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(Duration::from_secs(20))
        .build()?;
    let bulkhead = Bulkhead::builder("recommendations")
        .max_concurrent(32)
        .max_queue(64)
        .max_wait(Duration::from_millis(500))
        .build()?;
    let health = HealthRegistry::new();
    health
        .register_breaker(&breaker)
        .register_bulkhead(&bulkhead);

    // The handler calls a flaky upstream; its failure is an error for the breaker.
    let down = upstream_down.clone();
    let recommendations = tower::service_fn(move |_req: axum::extract::Request| {
        let down = down.clone();
        async move {
            if down.load(Ordering::Relaxed) {
                return Err::<Response, BoxError>("upstream: connection refused".into());
            }
            Ok("three books you will like".into_response())
        }
    });
    let app = Router::new()
        .route_service(
            "/recommendations",
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .layer(breaker.layer())
                .layer(bulkhead.layer())
                .timeout(Duration::from_secs(2))
                .service(recommendations),
        )
        .merge(health.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let show = |what: &str, res: &reqwest::Response| {
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| format!(" (Retry-After: {})", v.to_str().unwrap_or("?")))
            .unwrap_or_default();
        println!("{what:<28} {}{retry}", res.status());
    };
    let res = http.get(format!("{base}/recommendations")).send().await?;
    show("GET /recommendations", &res);
    upstream_down.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        let res = http.get(format!("{base}/recommendations")).send().await?;
        show("GET /recommendations (down)", &res);
    }
    let res = http.get(format!("{base}/health")).send().await?;
    show("GET /health", &res);
    println!("{}", res.text().await?);
    Ok(())
}
