//! The stream guard's events through the `metrics` adapter: time to first token and how each
//! stream ended, from a guard layer and from the `.llm()` stack.

use crate::{Value, key, read_metrics};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use metrics_util::debugging::DebuggingRecorder;
use std::collections::BTreeMap;
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_breaker::metrics::MetricsListener;
use tower_breaker::stream::{FirstTokenTimeout, StreamGuardLayer};

const FIRST_TOKEN: &str = "tower_breaker_stream_first_token_seconds";
const STREAMS: &str = "tower_breaker_stream_calls_total";

const TOKEN: &str =
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, BoxError>>>;

/// A server-sent stream: nothing for `delay`, then `frames`, then (if `stall`) nothing ever.
fn sse(delay: Duration, frames: Vec<&'static str>, stall: bool) -> http::Response<Body> {
    let frames = stream::once(tokio::time::sleep(delay))
        .flat_map(move |()| stream::iter(frames.clone()))
        .map(|f| Ok(Frame::data(Bytes::from_static(f.as_bytes()))));
    let frames = match stall {
        true => frames.chain(stream::pending()).boxed(),
        false => frames.boxed(),
    };
    let mut response = http::Response::new(StreamBody::new(frames));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn guard(listener: &MetricsListener) -> StreamGuardLayer {
    StreamGuardLayer::builder()
        .name("openai")
        .first_token_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(5))
        .on_event(listener.clone())
        .build()
        .unwrap()
}

/// A first token 300 ms after the call is one sample of 0.3 s, and the whole answer one
/// `completed` stream.
#[tokio::test(start_paused = true)]
async fn a_first_token_after_300_ms_is_a_sample_of_0_3_s_and_the_stream_completes() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let listener = MetricsListener::new();
    let mut client = ServiceBuilder::new()
        .layer(guard(&listener))
        .service(service_fn(|()| async {
            Ok::<_, BoxError>(sse(Duration::from_millis(300), vec![TOKEN, DONE], false))
        }));

    let response = client.ready().await.unwrap().call(()).await.unwrap();
    response.into_body().collect().await.unwrap();

    let read = read_metrics(&snapshotter);
    assert_one_completed_stream(&read, "openai", 0.3);
}

/// One stream named `name` came, its first token after `ttft` seconds, and completed.
fn assert_one_completed_stream(read: &BTreeMap<String, Value>, name: &str, ttft: f64) {
    assert_eq!(
        read.get(&key(FIRST_TOKEN, &[("name", name)])),
        Some(&Value::Histogram(vec![ttft]))
    );
    assert_eq!(
        read.get(&key(STREAMS, &[("name", name), ("outcome", "completed")])),
        Some(&Value::Counter(1))
    );
    let ends: Vec<&String> = read.keys().filter(|k| k.starts_with(STREAMS)).collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
}

/// A stream whose head comes but no token within the deadline, and a call whose head never
/// comes within it, are each a `first_token_timeout`; neither is a first-token sample.
#[tokio::test(start_paused = true)]
async fn a_missed_first_token_deadline_counts_first_token_timeout() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let listener = MetricsListener::new();
    let mut client = ServiceBuilder::new()
        .layer(guard(&listener))
        .service(service_fn(|late_head: bool| async move {
            if late_head {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok::<_, BoxError>(sse(Duration::ZERO, vec![": keepalive\n\n"], true))
        }));

    for late_head in [false, true] {
        let err = client.ready().await.unwrap().call(late_head).await;
        let err = err.expect_err("no token within 1 s");
        let timeout = err
            .downcast_ref::<FirstTokenTimeout>()
            .expect("the guard's");
        assert_eq!(timeout.had_headers(), !late_head);
    }

    let read = read_metrics(&snapshotter);
    assert_eq!(
        read.get(&key(
            STREAMS,
            &[("name", "openai"), ("outcome", "first_token_timeout")]
        )),
        Some(&Value::Counter(2))
    );
    assert!(!read.contains_key(&key(FIRST_TOKEN, &[("name", "openai")])));
}

/// Cut, idle and dropped streams each count under their own outcome.
#[tokio::test(start_paused = true)]
async fn cut_idle_and_dropped_streams_count_under_their_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let listener = MetricsListener::new();
    let mut client = ServiceBuilder::new()
        .layer(guard(&listener))
        .service(service_fn(|kind: &'static str| async move {
            Ok::<_, BoxError>(sse(Duration::ZERO, vec![TOKEN], kind != "cut"))
        }));

    for kind in ["cut", "idle"] {
        let response = client.ready().await.unwrap().call(kind).await.unwrap();
        assert!(response.into_body().collect().await.is_err(), "{kind}");
    }
    let dropped = client.ready().await.unwrap().call("dropped").await.unwrap();
    drop(dropped);

    let read = read_metrics(&snapshotter);
    for outcome in ["truncated", "idle", "dropped"] {
        assert_eq!(
            read.get(&key(STREAMS, &[("name", "openai"), ("outcome", outcome)])),
            Some(&Value::Counter(1)),
            "{outcome}"
        );
    }
    assert_eq!(
        read.get(&key(FIRST_TOKEN, &[("name", "openai")])),
        Some(&Value::Histogram(vec![0.0, 0.0, 0.0]))
    );
}

/// The `.llm()` stack guards streams inside its breaker; `on_stream_event` hands the guard's
/// events to the stack's metrics listener, named after the stack.
#[cfg(feature = "stack")]
#[tokio::test(start_paused = true)]
async fn the_llm_stack_reports_its_stream_guard_to_its_listener() {
    use tower_breaker::stack::StandardResilience;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let listener = MetricsListener::new();
    let stack = StandardResilience::builder("gpt")
        .llm()
        .on_event(listener.clone())
        .on_stream_event(listener.clone())
        .build()
        .unwrap();
    let mut client = stack.service(service_fn(|_: http::Request<String>| async {
        Ok::<_, BoxError>(sse(Duration::from_millis(300), vec![TOKEN, DONE], false))
    }));
    let request = || {
        http::Request::post("https://api.openai.com/v1/chat/completions")
            .body(r#"{"model":"m","stream":true}"#.to_string())
            .unwrap()
    };

    let response = client.ready().await.unwrap().call(request()).await.unwrap();
    response.into_body().collect().await.unwrap();

    let read = read_metrics(&snapshotter);
    // Behind the stack the guard is the breaker's recorder: it counts from the response head,
    // which came at once here.
    assert_one_completed_stream(&read, "gpt", 0.3);
    assert_eq!(
        read.get(&key(
            "tower_breaker_circuit_breaker_calls_total",
            &[("name", "gpt"), ("outcome", "success")]
        )),
        Some(&Value::Counter(1))
    );
}

/// One step of a scripted upstream stream.
#[derive(Debug, Clone, Copy)]
enum Step {
    Token,
    Keepalive,
    /// `finish_reason` then `[DONE]`: the answer is complete.
    Done,
    Wait(u64),
    /// The body fails.
    Fail,
}

/// How the caller treats the body: reads it to its end, or drops it after `n` frames.
#[derive(Debug, Clone, Copy)]
enum Reader {
    ToTheEnd,
    DropAfter(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => Just(Step::Token),
        2 => Just(Step::Keepalive),
        1 => Just(Step::Done),
        2 => (0..3_000u64).prop_map(Step::Wait),
        1 => Just(Step::Fail),
    ]
}

fn scripted(steps: Vec<Step>, stall: bool) -> http::Response<Body> {
    let frames = stream::iter(steps)
        .then(|step| async move {
            let data = match step {
                Step::Token => TOKEN,
                Step::Keepalive => ": keepalive\n\n",
                Step::Done => {
                    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
                }
                Step::Wait(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    ""
                }
                Step::Fail => return Err::<Frame<Bytes>, BoxError>("connection reset".into()),
            };
            Ok(Frame::data(Bytes::from_static(data.as_bytes())))
        })
        .filter(|f| std::future::ready(!matches!(f, Ok(f) if f.data_ref().is_some_and(|d| d.is_empty()))));
    let frames = match stall {
        true => frames.chain(stream::pending()).boxed(),
        false => frames.boxed(),
    };
    http::Response::new(StreamBody::new(frames))
}

/// The end the caller saw, as the outcome a stream event writes.
fn seen_end(error: Option<&BoxError>) -> &'static str {
    use tower_breaker::stream::{StreamIdle, StreamTruncated};
    match error {
        None => "completed",
        Some(e) if e.is::<FirstTokenTimeout>() => "first_token_timeout",
        Some(e) if e.is::<StreamIdle>() => "idle",
        Some(e) if e.is::<StreamTruncated>() => "truncated",
        Some(_) => "failed",
    }
}

/// Runs one scripted call through a guard with deadlines of 2 s; the events it reported and
/// the end the caller saw (`None` for a body dropped early).
fn run(steps: Vec<Step>, stall: bool, reader: Reader) -> (Vec<&'static str>, Option<&'static str>) {
    use std::sync::{Arc, Mutex};
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let guard = StreamGuardLayer::builder()
        .first_token_timeout(Duration::from_secs(2))
        .idle_timeout(Duration::from_secs(2))
        .on_event(move |e: &tower_breaker::stream::StreamEvent| {
            sink.lock().unwrap().push(e.outcome())
        })
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let seen = runtime.block_on(async move {
        let mut client = ServiceBuilder::new()
            .layer(guard)
            .service(service_fn(move |()| {
                let steps = steps.clone();
                async move { Ok::<_, BoxError>(scripted(steps, stall)) }
            }));
        let mut body = match client.ready().await.unwrap().call(()).await {
            Ok(response) => response.into_body(),
            Err(error) => return Some(seen_end(Some(&error))),
        };
        let mut read = 0;
        loop {
            if let Reader::DropAfter(n) = reader {
                if read == n {
                    return None;
                }
            }
            match body.frame().await {
                None => return Some(seen_end(None)),
                Some(Err(error)) => return Some(seen_end(Some(&error))),
                Some(Ok(_)) => read += 1,
            }
        }
    });
    let events = events.lock().unwrap().clone();
    (events, seen)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// Whatever the stream does and however the caller reads it, the guard reports at most
    /// one first token, before exactly one end, and that end is the one the caller saw (a
    /// body dropped early is `dropped`, or `completed` if its answer was complete).
    #[test]
    fn every_guarded_stream_reports_the_end_its_caller_saw_exactly_once(
        steps in proptest::collection::vec(step(), 0..10),
        stall in proptest::prelude::any::<bool>(),
        drop_after in proptest::option::of(0..6usize),
    ) {
        let reader = drop_after.map_or(Reader::ToTheEnd, Reader::DropAfter);
        let (events, seen) = run(steps, stall, reader);
        let (last, before) = events.split_last().expect("an end is always reported");
        proptest::prop_assert!(before.iter().all(|e| *e == "first_token"), "{:?}", events);
        proptest::prop_assert!(before.len() <= 1, "{:?}", events);
        match seen {
            Some(end) => proptest::prop_assert_eq!(*last, end),
            None => proptest::prop_assert!(matches!(*last, "dropped" | "completed"), "{:?}", events),
        }
    }
}
