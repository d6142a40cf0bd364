//! Adversarial tests of the `.llm()` stack, its layers together (provider errors innermost,
//! attempt timeout, bulkhead, breaker with the stream recorder, retry, total timeout), from
//! its docs: an error body that never ends, a stream cut after its first token, a finished
//! stream read late, and the call dropped after every poll. Paused time throughout.

use crate::scripted::chat;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_breaker::stack::StandardResilience;
use tower_breaker::stream::StreamTruncated;

type Frames =
    Pin<Box<dyn futures_util::Stream<Item = Result<http_body::Frame<Bytes>, BoxError>> + Send>>;
type Body = StreamBody<Frames>;

/// A body that yields each `(delay, text)` after its delay, then ends (or hangs, if `hang`).
fn body(steps: Vec<(Duration, &'static str)>, hang: bool) -> Body {
    let frames = futures_util::stream::iter(steps)
        .then(|(delay, text)| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(text.as_bytes())))
        })
        .chain(
            futures_util::stream::iter(hang.then_some(()))
                .flat_map(|()| futures_util::stream::pending()),
        );
    StreamBody::new(Box::pin(frames) as Frames)
}

/// An upstream answering every call with `answer()`, counting the calls.
fn upstream(
    answer: impl Fn() -> http::Response<Body> + Clone + Send + Sync + 'static,
) -> (
    Arc<AtomicUsize>,
    impl Service<http::Request<String>, Response = http::Response<Body>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = service_fn(move |_: http::Request<String>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let answer = answer.clone();
        async move { Ok::<_, BoxError>(answer()) }
    });
    (calls, svc)
}

fn sse(steps: Vec<(Duration, &'static str)>) -> http::Response<Body> {
    http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(body(steps, false))
        .unwrap()
}

const TOKEN: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test(start_paused = true)]
async fn an_error_body_that_never_ends_is_bounded_by_the_stacks_timeouts() {
    // A 500 whose body never ends: the provider-error layer reads it inside the attempt
    // timeout, so each attempt ends at 60 s and the call within the 180 s total.
    let (calls, upstream) = upstream(|| {
        http::Response::builder()
            .status(500)
            .body(body(vec![(Duration::ZERO, "{\"error\":")], true))
            .unwrap()
    });
    let stack = StandardResilience::builder("openai").llm().build().unwrap();
    let svc = stack.service(upstream);
    let start = Instant::now();
    let result = svc.oneshot(chat("m")).await;
    assert!(result.is_err(), "a hanging error body is an error");
    assert!(
        start.elapsed() <= Duration::from_secs(180),
        "{:?}",
        start.elapsed()
    );
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_after_its_first_token_is_one_failure_and_never_retried() {
    let (calls, upstream) = upstream(|| sse(vec![(Duration::from_millis(200), TOKEN)]));
    let stack = StandardResilience::builder("openai").llm().build().unwrap();
    let svc = stack.service(upstream);
    let response = svc.oneshot(chat("m")).await.unwrap();
    let err = response.into_body().collect().await.unwrap_err();
    assert!(err.is::<StreamTruncated>(), "{err}");
    let metrics = stack.breaker().metrics();
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (1, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(stack.bulkhead().metrics().active, 0);
}

#[tokio::test(start_paused = true)]
async fn a_finished_stream_read_late_through_llm_is_a_success() {
    // Everything arrives at once; the caller reads the first token, then stalls for 45 s
    // (past the 30 s idle deadline) before it reads the rest.
    let (_, upstream) = upstream(|| {
        sse(vec![
            (Duration::ZERO, TOKEN),
            (Duration::ZERO, FINISH),
            (Duration::ZERO, USAGE),
            (Duration::ZERO, DONE),
        ])
    });
    let stack = StandardResilience::builder("openai").llm().build().unwrap();
    let svc = stack.service(upstream);
    let mut body = svc.oneshot(chat("m")).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, TOKEN);
    tokio::time::advance(Duration::from_secs(45)).await;
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, [FINISH, USAGE, DONE].concat());
    let metrics = stack.breaker().metrics();
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn an_llm_call_dropped_after_any_poll_leaves_no_slot_taken_and_no_failure() {
    // The head after 1 s, a token 1 s later; drop the call after 1, 2, 3... polls.
    let (_, upstream) = upstream(|| {
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(body(
                vec![(Duration::from_secs(1), TOKEN), (Duration::ZERO, DONE)],
                false,
            ))
            .unwrap()
    });
    let slow = tower::ServiceBuilder::new()
        .layer(tower::layer::layer_fn(|inner| {
            tower::util::MapFuture::new(inner, |f| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                f.await
            })
        }))
        .service(upstream);
    let stack = StandardResilience::builder("openai").llm().build().unwrap();
    let mut svc = stack.service(slow);
    for polls in 1..5 {
        let future = svc.ready().await.unwrap().call(chat("m"));
        let mut future = tokio_test::task::spawn(future);
        for _ in 0..polls {
            if future.poll().is_ready() {
                break;
            }
            tokio::time::advance(Duration::from_millis(700)).await;
        }
        drop(future);
        assert_eq!(stack.bulkhead().metrics().active, 0, "after {polls} polls");
        assert_eq!(
            stack.breaker().metrics().failed_calls,
            0,
            "after {polls} polls"
        );
    }
}
