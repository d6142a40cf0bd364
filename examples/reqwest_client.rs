//! `reqwest::Client` behind a circuit breaker, a retry policy and timeouts, against a local
//! server that fails for a while, recovers, then rate-limits.
//!
//! ```text
//! cargo run --example reqwest_client --features reqwest,retry
//! ```
//!
//! `reqwest::Client` is a tower `Service<reqwest::Request>`, so the layers wrap it as they are:
//! a total timeout, a retry policy for reqwest (3 attempts, backoff, `Retry-After`), the breaker
//! with the HTTP classification, and an attempt timeout. An axum server on 127.0.0.1 answers 200,
//! then 503 from 300 ms to 1.5 s, then 200 again; a request goes out every 100 ms. The output
//! shows the breaker opening, calls rejected in microseconds without reaching the server, the
//! probes, the recovery, and then a 429 with `Retry-After: 1` putting the breaker in a cool-down.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reqwest::{Method, Request};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::circuit_breaker::{
    CircuitBreaker, CircuitBreakerEvent, CircuitOpen, RateLimited, SlidingWindow,
};
use tower_breaker::retry::{Backoff, RetryPolicy};

#[derive(Clone)]
struct Upstream {
    start: Instant,
    hits: Arc<AtomicUsize>,
    rate_limit_next: Arc<AtomicBool>,
}

async fn models(State(up): State<Upstream>) -> Response {
    up.hits.fetch_add(1, Ordering::Relaxed);
    if up.rate_limit_next.swap(false, Ordering::Relaxed) {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    let t = up.start.elapsed();
    if t >= Duration::from_millis(300) && t < Duration::from_millis(1500) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    r#"{"data":[{"id":"small-model"}]}"#.into_response()
}

/// One call through the stack; prints when it came back, how long it took, how many requests
/// reached the server and what the caller got.
async fn call<S>(client: S, url: &str, up: &Upstream)
where
    S: Service<Request, Response = reqwest::Response, Error = BoxError>,
{
    let (hits, began) = (up.hits.load(Ordering::Relaxed), Instant::now());
    let outcome = match client
        .oneshot(Request::new(Method::GET, url.parse().unwrap()))
        .await
    {
        Ok(response) => {
            let status = response.status();
            // A 200 is recorded as a success when its body has been read to the end.
            let body = response.text().await.unwrap_or_default();
            format!("{status} {body}").trim_end().to_string()
        }
        Err(e) if e.is::<CircuitOpen>() || e.is::<RateLimited>() => format!("rejected: {e}"),
        Err(e) => format!("error: {e}"),
    };
    let reached = up.hits.load(Ordering::Relaxed) - hits;
    let (t, took) = (up.start.elapsed().as_millis(), began.elapsed());
    println!("{t:>5} ms  {took:>8.1?}  {reached} sent  {outcome}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let up = Upstream {
        start,
        hits: Arc::default(),
        rate_limit_next: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/models", get(models))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/models", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let breaker = CircuitBreaker::builder("models-api")
        .sliding_window(SlidingWindow::consecutive(3))
        .wait_in_open(Duration::from_millis(400))
        .permitted_calls_in_half_open(1)
        .on_event(move |event: &CircuitBreakerEvent| {
            if let CircuitBreakerEvent::StateTransition { from, to, .. } = event {
                println!(
                    "{:>5} ms  breaker: {from} -> {to}",
                    start.elapsed().as_millis()
                );
            }
        })
        .build()?;
    let retry = RetryPolicy::builder()
        .reqwest()
        .max_attempts(3)
        .backoff(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(80),
        ))
        .build()?;
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(3)) // the whole call, retries and waits included
        .retry(retry) // outside the breaker: a retry of an open circuit fails fast
        .layer(breaker.http_layer()) // 5xx fail, 429 cools down, 200 counts at end of body
        .timeout(Duration::from_millis(500)) // one attempt
        .service(reqwest::Client::new());

    println!("The server answers 503 from 300 ms to 1500 ms; a GET every 100 ms.");
    println!("Columns: time, call duration, requests sent to the server, result. A probe that");
    println!("gets a 503 reopens the breaker, so its retry is rejected without being sent.\n");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..20 {
        tick.tick().await;
        call(client.clone(), &url, &up).await;
    }

    println!("\nThe server answers the next request 429 with Retry-After: 1");
    up.rate_limit_next.store(true, Ordering::Relaxed);
    tokio::join!(call(client.clone(), &url, &up), async {
        // Sent while the breaker is cooling down: rejected without a request.
        tokio::time::sleep(Duration::from_millis(200)).await;
        call(client.clone(), &url, &up).await
    });
    println!("(the retry waited out the server's Retry-After; its second attempt got the 200)");

    let m = breaker.metrics();
    println!(
        "\n{} requests reached the server; the breaker rejected {} calls; now {}",
        up.hits.load(Ordering::Relaxed),
        m.not_permitted_calls,
        m.state
    );
    Ok(())
}
