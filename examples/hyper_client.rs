//! hyper-util's legacy `Client` (HTTP/1.1) behind the standard resilience stack, reading
//! server-sent event streams to the end: a stream cut midway counts as a failure.
//!
//! ```text
//! cargo run --example hyper_client --features stack,http
//! ```
//!
//! `StandardResilience::builder(..).http()` wraps the client in a total timeout, an HTTP retry
//! policy, a circuit breaker with the HTTP classification, a bulkhead and an attempt timeout.
//! An axum server on 127.0.0.1 streams five SSE events per request. The breaker records a 200
//! when its body ends: a clean end is a success, a stream cut after two events a failure (its
//! head said 200). Two cuts open the breaker, the next call is rejected without a request, and
//! once the server is healthy again the probe's stream completes and closes the breaker.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_breaker::circuit_breaker::{CircuitBreaker, CircuitBreakerEvent, SlidingWindow};
use tower_breaker::stack::StandardResilience;

#[derive(Clone, Default)]
struct Upstream {
    cut_streams: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

/// Five events, 10 ms apart; when cutting, the connection breaks after the second.
async fn stream(State(up): State<Upstream>) -> impl IntoResponse {
    up.hits.fetch_add(1, Ordering::Relaxed);
    let cut = up.cut_streams.load(Ordering::Relaxed);
    let events = futures_util::stream::unfold(1, move |i| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        match i {
            6 => None,
            3 if cut => Some((Err(std::io::Error::other("upstream crashed")), 6)),
            _ => Some((Ok(format!("data: token {i}\n\n")), i + 1)),
        }
    });
    let sse = [("content-type", "text/event-stream")];
    (sse, Body::from_stream(events))
}

/// GETs `url` through `client` and reads the event stream to its end, printing as it goes.
async fn read_stream<S, B>(client: S, url: &str, start: Instant)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = BoxError>,
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (t, began) = (|| start.elapsed().as_millis(), Instant::now());
    let request = http::Request::get(url).body(Full::default()).unwrap();
    let response = match client.oneshot(request).await {
        Ok(response) => response,
        Err(e) => return println!("{:>5} ms  rejected in {:.1?}: {e}", t(), began.elapsed()),
    };
    // Nothing is recorded yet: the outcome waits for the end of the body.
    println!("{:>5} ms  {}, streaming", t(), response.status());
    let mut body = std::pin::pin!(response.into_body());
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let data = frame.into_data().unwrap_or_default();
                for event in String::from_utf8_lossy(&data).split_terminator("\n\n") {
                    println!("{:>5} ms    {event}", t());
                }
            }
            Some(Err(e)) => return println!("{:>5} ms    the stream broke: {e}", t()),
            None => return println!("{:>5} ms    end of stream", t()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let up = Upstream::default();
    let app = Router::new()
        .route("/v1/stream", get(stream))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/stream", listener.local_addr()?);
    // Send each event as it is written (no Nagle delay).
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let resilience = StandardResilience::builder("completions")
        .http()
        .total_timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(2))
        .breaker(
            CircuitBreaker::builder("completions")
                .sliding_window(SlidingWindow::consecutive(2))
                .wait_in_open(Duration::from_millis(300))
                .permitted_calls_in_half_open(1)
                .on_event(move |event: &CircuitBreakerEvent| {
                    let t = start.elapsed().as_millis();
                    match event {
                        CircuitBreakerEvent::StateTransition { from, to, .. } => {
                            println!("{t:>5} ms  breaker: {from} -> {to}")
                        }
                        CircuitBreakerEvent::CallRecorded { outcome, .. } => {
                            println!("{t:>5} ms  breaker recorded: {outcome:?}")
                        }
                        _ => {}
                    }
                }),
        )
        .build()?;
    let breaker = resilience.breaker().clone();
    // hyper-util's legacy client, HTTP/1.1 over plain TCP.
    let http1 = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new().layer(resilience).service(http1);

    println!("-- a healthy stream");
    read_stream(client.clone(), &url, start).await;

    println!("\n-- the server cuts its streams after two events");
    up.cut_streams.store(true, Ordering::Relaxed);
    for _ in 0..2 {
        read_stream(client.clone(), &url, start).await;
    }
    let sent = up.hits.load(Ordering::Relaxed);
    read_stream(client.clone(), &url, start).await;
    assert_eq!(up.hits.load(Ordering::Relaxed), sent); // the rejected call sent nothing

    println!("\n-- the server recovers; after 300 ms the breaker lets a probe through");
    up.cut_streams.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    read_stream(client.clone(), &url, start).await;

    let (m, hits) = (breaker.metrics(), up.hits.load(Ordering::Relaxed));
    let (rejected, state) = (m.not_permitted_calls, m.state);
    println!("\nsent to the server: {hits}; rejected by the breaker: {rejected}; now {state}");
    Ok(())
}
