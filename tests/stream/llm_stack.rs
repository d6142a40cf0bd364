//! `StandardResilience::llm()` guards streams by default: a stream that ends without its
//! complete event is a failure of the breaker; a JSON answer passes untouched.

use crate::upstream::{Body, Step, body, read};
use bytes::Bytes;
use std::time::Duration;
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_breaker::stack::StandardResilience;
use tower_breaker::stream::{FirstTokenTimeout, StreamTruncated};

/// An upstream that answers every call with a 200 of `content_type` and these frames.
fn upstream(
    content_type: &'static str,
    frames: Vec<Step>,
) -> impl Service<http::Request<String>, Response = http::Response<Body>, Error = BoxError, Future: Send>
+ Clone {
    service_fn(move |_: http::Request<String>| {
        let frames = frames.clone();
        async move {
            let mut response = http::Response::new(body(frames, None));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            Ok::<_, BoxError>(response)
        }
    })
}

fn send(text: &'static str) -> Step {
    Step::Send(Bytes::from_static(text.as_bytes()))
}

fn request() -> http::Request<String> {
    http::Request::post("https://api.openai.com/v1/chat/completions")
        .body(r#"{"model":"m","stream":true}"#.to_string())
        .unwrap()
}

const CONTENT: &str =
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_cleanly_without_done_or_finish_reason_fails_through_llm() {
    let resilience = StandardResilience::builder("openai").llm().build().unwrap();
    let breaker = resilience.breaker().clone();

    // Tokens, then a clean end of the body: no `finish_reason`, no `[DONE]`.
    let mut client = resilience.service(upstream("text/event-stream", vec![send(CONTENT)]));
    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    let cut = read(response.into_body()).await;
    let error = cut.error.expect("a cut stream is an error");
    assert!(error.is::<StreamTruncated>(), "{error}");
    assert_eq!(breaker.metrics().failed_calls, 1);

    // The whole answer is a success.
    let whole = vec![send(CONTENT), send("data: [DONE]\n\n")];
    let mut client = resilience.service(upstream("text/event-stream; charset=utf-8", whole));
    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    assert!(read(response.into_body()).await.error.is_none());
    assert_eq!(breaker.metrics().successful_calls, 1);

    // A non-streamed completion through the same stack: untouched, a success.
    let json = vec![send(r#"{"choices":[{"message":{"content":"Hi"}}]}"#)];
    let mut client = resilience.service(upstream("application/json", json));
    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    assert!(read(response.into_body()).await.error.is_none());
    assert_eq!(breaker.metrics().successful_calls, 2);

    // The role chunk, then silence: no first token within 60 s of the head.
    let stalled = vec![
        send("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"),
        Step::Stall,
    ];
    let mut client = resilience.service(upstream("text/event-stream", stalled));
    let started = tokio::time::Instant::now();
    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    let error = read(response.into_body()).await.error.expect("stalled");
    assert!(error.is::<FirstTokenTimeout>(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!(breaker.metrics().failed_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_stream_without_message_stop_fails_through_llm_anthropic() {
    let resilience = StandardResilience::builder("anthropic")
        .llm_anthropic()
        .build()
        .unwrap();
    let breaker = resilience.breaker().clone();
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
    let mut client = resilience.service(upstream("text/event-stream", vec![send(delta)]));
    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    let error = read(response.into_body()).await.error.expect("cut");
    assert!(error.is::<StreamTruncated>(), "{error}");
    let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let mut client =
        resilience.service(upstream("text/event-stream", vec![send(delta), send(stop)]));
    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    assert!(read(response.into_body()).await.error.is_none());
    let metrics = breaker.metrics();
    assert_eq!((metrics.successful_calls, metrics.failed_calls), (1, 1));
}
