//! Staying under a provider's quota: a mock LLM provider on 127.0.0.1 limits requests and
//! tokens per window and says so in OpenAI's `x-ratelimit-*` headers; the same 60 calls are
//! sent by a client that only backs off after a 429, and by one paced by a `Quota` that
//! learns the limits from those headers.
//!
//!     cargo run --all-features --example quota
//!
//! (The provider's window is 1 s instead of a minute, so that the example takes seconds.)

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_breaker::quota::{HttpHeaders, Quota, format_go_duration};

const WINDOW: Duration = Duration::from_secs(1);
const REQUESTS: f64 = 20.0;
const TOKENS: f64 = 10_000.0;
const CALLS: usize = 60;
/// Every call's prompt and answer, in tokens.
const CALL_TOKENS: f64 = 400.0;

/// The provider's request and token buckets, refilled continuously.
struct Buckets {
    requests: f64,
    tokens: f64,
    at: Instant,
}

async fn chat(State(buckets): State<Arc<Mutex<Buckets>>>) -> (StatusCode, HeaderMap, String) {
    let (status, requests, tokens) = {
        let mut b = buckets.lock().expect("lock");
        let secs = b.at.elapsed().as_secs_f64() / WINDOW.as_secs_f64();
        b.at = Instant::now();
        b.requests = (b.requests + REQUESTS * secs).min(REQUESTS);
        b.tokens = (b.tokens + TOKENS * secs).min(TOKENS);
        if b.requests >= 1.0 && b.tokens >= CALL_TOKENS {
            b.requests -= 1.0;
            b.tokens -= CALL_TOKENS;
            (StatusCode::OK, b.requests, b.tokens)
        } else {
            (StatusCode::TOO_MANY_REQUESTS, b.requests, b.tokens)
        }
    };
    let mut headers = HeaderMap::new();
    let reset = |level: f64, limit: f64| {
        format_go_duration(WINDOW.mul_f64(((limit - level) / limit).clamp(0.0, 1.0)))
    };
    let pairs = [
        ("x-ratelimit-limit-requests", REQUESTS.to_string()),
        (
            "x-ratelimit-remaining-requests",
            (requests.max(0.0) as u64).to_string(),
        ),
        ("x-ratelimit-reset-requests", reset(requests, REQUESTS)),
        ("x-ratelimit-limit-tokens", TOKENS.to_string()),
        (
            "x-ratelimit-remaining-tokens",
            (tokens.max(0.0) as u64).to_string(),
        ),
        ("x-ratelimit-reset-tokens", reset(tokens, TOKENS)),
    ];
    for (name, value) in pairs {
        headers.insert(name, value.parse().expect("a header value"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Until both buckets have room for one call.
        let wait = ((1.0 - requests) / REQUESTS).max((CALL_TOKENS - tokens) / TOKENS);
        let ms = (wait.max(0.0) * WINDOW.as_secs_f64() * 1000.0).ceil() as u64;
        headers.insert("retry-after-ms", ms.into());
    }
    (
        status,
        headers,
        r#"{"choices":[{"message":{"content":"hi"}}]}"#.into(),
    )
}

async fn provider() -> String {
    let buckets = Arc::new(Mutex::new(Buckets {
        requests: REQUESTS,
        tokens: TOKENS,
        at: Instant::now(),
    }));
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(buckets);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1/chat/completions")
}

/// Sends `CALLS` calls from 10 tasks; a 429 is retried after 100 ms. Returns
/// the 429s seen and the time taken.
async fn run<S>(svc: S, client: reqwest::Client, url: String) -> (usize, Duration)
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone + Send + 'static,
    S::Error: std::fmt::Display + Send,
    S::Future: Send,
{
    let start = Instant::now();
    let rate_limited = Arc::new(Mutex::new(0));
    let next = Arc::new(Mutex::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (mut svc, client, url) = (svc.clone(), client.clone(), url.clone());
        let (rate_limited, next) = (rate_limited.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                {
                    let mut n = next.lock().expect("lock");
                    if *n == CALLS {
                        return;
                    }
                    *n += 1;
                }
                loop {
                    let request = client.post(&url).body("{}").build().expect("a request");
                    let svc = svc.ready().await.unwrap_or_else(|e| panic!("{e}"));
                    match svc.call(request).await {
                        Ok(r) if r.status() == 429 => {
                            *rate_limited.lock().expect("lock") += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Ok(_) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a task");
    }
    let seen = *rate_limited.lock().expect("lock");
    (seen, start.elapsed())
}

#[tokio::main]
async fn main() {
    let client = reqwest::Client::new();

    let url = provider().await;
    let (naive_429s, naive_time) = run(client.clone(), client.clone(), url).await;

    // A fresh provider (full buckets) for the governed client.
    let url = provider().await;
    let quota = Quota::<&str>::builder("mock-openai")
        .window(WINDOW)
        .max_wait(Duration::from_secs(10))
        .build()
        .expect("a valid quota");
    let governed = ServiceBuilder::new()
        .layer(
            quota
                .layer(|_: &reqwest::Request| "gpt")
                .cost(|_: &reqwest::Request| CALL_TOKENS as u64)
                .observe(HttpHeaders::new()),
        )
        .service(client.clone());
    let governed = tower::util::MapErr::new(governed, |e: tower::BoxError| e.to_string());
    let (governed_429s, governed_time) = run(governed, client, url).await;

    let snapshot = quota.snapshot(&"gpt").expect("a known key");
    println!(
        "{CALLS} calls to a provider allowing {REQUESTS} requests and {TOKENS} tokens a second:"
    );
    println!("  back off after 429s : {naive_429s:>3} 429s, {naive_time:.1?}");
    println!("  paced by the quota  : {governed_429s:>3} 429s, {governed_time:.1?}");
    println!(
        "  limits learned from the headers: {:?} requests, {:?} tokens per window",
        snapshot.requests_limit, snapshot.tokens_limit
    );
    assert!(governed_429s < naive_429s, "pacing avoids the 429s");
}
