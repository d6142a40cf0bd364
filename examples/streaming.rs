//! Streamed LLM calls against a local OpenAI-style SSE provider (axum, on 127.0.0.1):
//!
//! 1. a provider that answers with headers and keepalive comments but never a token is
//!    abandoned at its first-token deadline, and the backup answers: the caller sees the
//!    backup's stream only;
//! 2. a stream cut mid-answer (a clean end without `data: [DONE]`) is reported to the caller
//!    as `StreamTruncated` and counted by the breaker as a failure.
//!
//! ```text
//! cargo run --all-features --example streaming
//! ```

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use std::time::{Duration, Instant};
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::circuit_breaker::CircuitBreaker;
use tower_breaker::failover::Failover;
use tower_breaker::stream::{FirstTokenTimeout, SseParser, StreamGuardLayer, StreamTruncated};

/// An SSE response that plays `frames`, one every `gap`, then ends (or, with `forever`,
/// repeats the last frame for as long as the client listens).
fn sse(frames: Vec<String>, gap: Duration, forever: bool) -> axum::response::Response {
    let stream = futures_util::stream::unfold((frames, 0usize), move |(frames, i)| async move {
        let frame = match frames.get(i) {
            Some(frame) => frame.clone(),
            None if forever => frames.last()?.clone(),
            None => return None,
        };
        tokio::time::sleep(gap).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(frame)), (frames, i + 1)))
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("a valid response")
}

fn chunk(content: &str, finish: Option<&str>) -> String {
    let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
    format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":{finish}}}]}}\n\n"
    )
}

fn answer(words: &[&str], done: bool) -> Vec<String> {
    let mut frames: Vec<String> = words.iter().map(|w| chunk(w, None)).collect();
    if done {
        frames.push(chunk("", Some("stop")));
        frames.push("data: [DONE]\n\n".to_string());
    }
    frames
}

async fn serve() -> Result<String, BoxError> {
    let app = Router::new()
        .route(
            "/stall/v1/chat/completions",
            post(|| async {
                sse(
                    vec![": keepalive\n\n".into()],
                    Duration::from_millis(100),
                    true,
                )
            }),
        )
        .route(
            "/ok/v1/chat/completions",
            post(|| async {
                sse(
                    answer(&["Hello", ",", " world", "!"], true),
                    Duration::from_millis(20),
                    false,
                )
            }),
        )
        .route(
            "/cut/v1/chat/completions",
            post(|| async {
                sse(
                    answer(&["The", " answer", " is"], false),
                    Duration::from_millis(20),
                    false,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

type Provider = BoxCloneService<&'static str, reqwest::Response, BoxError>;

/// One provider: breaker (outside, it records what the guard finds), stream guard, then a
/// reqwest client posting the prompt to `url`.
fn provider(url: String, breaker: &CircuitBreaker) -> Result<Provider, BoxError> {
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_millis(500))
        .build()?;
    let client = reqwest::Client::new();
    let service = ServiceBuilder::new()
        .layer(breaker.http_layer())
        .layer(guard)
        .map_request(move |prompt: &'static str| {
            let mut request =
                reqwest::Request::new(reqwest::Method::POST, url.parse().expect("a valid URL"));
            *request.body_mut() =
                Some(format!("{{\"stream\":true,\"prompt\":\"{prompt}\"}}").into());
            request
        })
        .service(client);
    Ok(BoxCloneService::new(service))
}

/// Reads a streamed answer: its text, or the error that ended it.
async fn read(mut response: reqwest::Response) -> (String, Option<reqwest::Error>) {
    let mut parser = SseParser::new();
    let mut text = String::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => parser.push(&bytes, |event| {
                if let Some(at) = event.data.find("\"content\":\"") {
                    let rest = &event.data[at + 11..];
                    text.push_str(&rest[..rest.find('"').unwrap_or(0)]);
                }
            }),
            Ok(None) => return (text, None),
            Err(e) => return (text, Some(e)),
        }
    }
}

/// `error` or the first of its sources that is an `E`.
fn cause<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let base = serve().await?;

    // 1. Failover before the first token.
    let stalling = CircuitBreaker::builder("stalling").build()?;
    let healthy = CircuitBreaker::builder("healthy").build()?;
    let mut failover = Failover::builder()
        .provider(
            "stalling",
            Some(stalling.clone()),
            provider(format!("{base}/stall/v1/chat/completions"), &stalling)?,
        )
        .provider(
            "healthy",
            Some(healthy.clone()),
            provider(format!("{base}/ok/v1/chat/completions"), &healthy)?,
        )
        .build();
    let started = Instant::now();
    let response = failover.ready().await?.call("Say hello").await?;
    let first_token = started.elapsed();
    let (text, error) = read(response).await;
    println!(
        "failover: first token after {first_token:.0?} (deadline 500ms + the backup's own time)"
    );
    println!("failover: answer {text:?}, stream error: {error:?}");
    println!(
        "failover: `stalling` failures {}, `healthy` successes {}",
        stalling.metrics().failed_calls,
        healthy.metrics().successful_calls
    );
    assert_eq!(text, "Hello, world!");
    assert!(error.is_none());
    assert!(first_token >= Duration::from_millis(500));
    assert_eq!(stalling.metrics().failed_calls, 1);
    assert_eq!(healthy.metrics().successful_calls, 1);

    // Without a backup, the stall is an error the caller can tell apart.
    let mut alone = provider(format!("{base}/stall/v1/chat/completions"), &stalling)?;
    let err = alone.ready().await?.call("Say hello").await.unwrap_err();
    println!("stall alone: {err}");
    assert!(err.is::<FirstTokenTimeout>());

    // 2. A cut stream is a failure, not a success.
    let cut_breaker = CircuitBreaker::builder("cut").build()?;
    let mut cut = provider(format!("{base}/cut/v1/chat/completions"), &cut_breaker)?;
    let response = cut.ready().await?.call("What is the answer?").await?;
    let (text, error) = read(response).await;
    let error = error.expect("the cut is reported");
    let truncated = cause::<StreamTruncated>(&error).expect("a StreamTruncated cause");
    println!("cut: got {text:?}, then: {truncated}");
    assert_eq!(text, "The answer is");
    let metrics = cut_breaker.metrics();
    println!(
        "cut: breaker `cut` failures {}, successes {}",
        metrics.failed_calls, metrics.successful_calls
    );
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (1, 0));
    Ok(())
}
